//! The committed JSON Schemas (docs/schemas/) against what the code really emits and accepts.
//!
//! - Every `EventKind` has `docs/schemas/<type>.json`, a valid draft 2020-12 schema whose `type`
//!   constant is that type, and no schema exists for a type the gateway does not emit.
//! - Real events of every kind (built with the public model and `Event::to_json`, with and
//!   without their optional values) validate against their schema, formats included.
//! - Broken events (missing field, wrong type, extra field, wrong type name...) fail, so a
//!   schema that accepts anything, or a model change that drifts from the schema, is caught.
//! - Command payloads: valid ones validate and parse as `Command`; invalid ones fail both.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use asr_gateway::control::commands::Command;
use asr_gateway::events::model::{
    EndCause, Event, EventBody, EventKind, SessionEvent, SpeechEndCause, StreamStats, WordTiming,
};
use chrono::Utc;
use jsonschema::Validator;
use serde_json::{json, Value};

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schemas")
}

fn load_schema(name: &str) -> Value {
    let path = schema_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("schema {} missing: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A draft 2020-12 validator that also checks `format` (uuid, date-time).
fn validator(name: &str) -> Validator {
    let schema = load_schema(name);
    jsonschema::draft202012::meta::validate(&schema)
        .unwrap_or_else(|e| panic!("{name}.json is not a valid 2020-12 schema: {e}"));
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{name}.json does not compile: {e}"))
}

fn errors(v: &Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

const SESSION: &str = "6f0c1e9e-3b8a-4c2e-9f3a-0d6c1b2a7e41";
/// An Asterisk-style unique id: the dot matters to routing keys and subjects.
const CALL: &str = "1795334591.22";

fn stamp(session_id: &str, call_id: &str, offset_ms: u64, body: EventBody) -> Event {
    Event::stamp(
        Arc::from("/asr-gateway/gw1"),
        Arc::from(session_id),
        Arc::from(call_id),
        SessionEvent { offset_ms, body },
        Utc::now(),
    )
}

fn word(w: &str, start_ms: u64, end_ms: u64, confidence: f32) -> WordTiming {
    WordTiming {
        word: w.into(),
        start_ms,
        end_ms,
        confidence,
    }
}

/// Real events of one kind, covering each optional value both set and unset. The match is
/// exhaustive: a new `EventKind` does not compile until it has samples here (and a schema).
fn samples(kind: EventKind) -> Vec<Event> {
    let session = |offset, body| stamp(SESSION, CALL, offset, body);
    match kind {
        EventKind::SessionStarted => vec![
            session(
                0,
                EventBody::SessionStarted {
                    transport: "rtp",
                    local_addr: "0.0.0.0:40000".into(),
                    engine_sample_rate: 16000,
                    mode: "utterance",
                    speaker: None,
                },
            ),
            session(
                0,
                EventBody::SessionStarted {
                    transport: "audiosocket",
                    local_addr: "audiosocket".into(),
                    engine_sample_rate: 16000,
                    mode: "call",
                    speaker: Some("out"),
                },
            ),
        ],
        EventKind::SpeechStarted => vec![session(
            540,
            EventBody::SpeechStarted {
                utterance: 1,
                start_ms: 220,
            },
        )],
        EventKind::SpeechEnded => [
            SpeechEndCause::Silence,
            SpeechEndCause::MaxLength,
            SpeechEndCause::SessionEnd,
        ]
        .into_iter()
        .map(|cause| {
            session(
                2720,
                EventBody::SpeechEnded {
                    utterance: 1,
                    start_ms: 220,
                    end_ms: 2120,
                    cause,
                },
            )
        })
        .collect(),
        EventKind::TranscriptPartial => vec![session(
            1600,
            EventBody::TranscriptPartial {
                utterance: 1,
                text: "yes I am".into(),
                confidence: 0.5,
                start_ms: 0,
                end_ms: 0,
            },
        )],
        EventKind::TranscriptFinal => vec![
            session(
                2140,
                EventBody::TranscriptFinal {
                    utterance: 1,
                    text: "Yes, I am interested.".into(),
                    confidence: 0.0,
                    words: vec![],
                    start_ms: 220,
                    end_ms: 2120,
                    latency_ms: Some(612),
                },
            ),
            session(
                4000,
                EventBody::TranscriptFinal {
                    utterance: 2,
                    text: "no".into(),
                    confidence: 1.0,
                    words: vec![word("no", 2600, 2800, 0.93), word("", 2800, 2800, 0.0)],
                    start_ms: 2600,
                    end_ms: 2800,
                    latency_ms: None,
                },
            ),
        ],
        EventKind::SessionEnded => vec![
            session(
                9860,
                EventBody::SessionEnded {
                    cause: EndCause::Stopped,
                    duration_ms: 9860,
                    codec: Some("pcmu".into()),
                    payload_type: Some(0),
                    utterances: 3,
                    stats: StreamStats {
                        received: 493,
                        lost: 2,
                        late: 1,
                        duplicate: 1,
                        reordered: 3,
                        jitter_ms: 0.37,
                        malformed: 1,
                        undecodable: 4,
                        foreign_source: 5,
                        probation_dropped: 6,
                    },
                },
            ),
            session(
                30000,
                EventBody::SessionEnded {
                    cause: EndCause::IdleTimeout,
                    duration_ms: 0,
                    codec: None,
                    payload_type: None,
                    utterances: 0,
                    stats: StreamStats::default(),
                },
            ),
            session(
                1200,
                EventBody::SessionEnded {
                    cause: EndCause::Hangup,
                    duration_ms: 1200,
                    codec: Some("pcmu".into()),
                    payload_type: Some(0),
                    utterances: 0,
                    stats: StreamStats::default(),
                },
            ),
            session(
                500,
                EventBody::SessionEnded {
                    cause: EndCause::Shutdown,
                    duration_ms: 500,
                    codec: Some("l16/16000".into()),
                    payload_type: Some(118),
                    utterances: 0,
                    stats: StreamStats::default(),
                },
            ),
        ],
        EventKind::Error => vec![
            session(
                0,
                EventBody::Error {
                    code: "ari_request_failed",
                    message: "setup: ARI server pbx1: POST /channels/1/snoop answered 404: Channel not found".into(),
                    utterance: None,
                },
            ),
            session(
                3000,
                EventBody::Error {
                    code: "asr_timeout",
                    message: "no final result within 15000 ms".into(),
                    utterance: Some(2),
                },
            ),
            session(
                10,
                EventBody::Error {
                    code: "asr_unavailable",
                    message: "engine unreachable".into(),
                    utterance: None,
                },
            ),
        ],
        EventKind::Recovered => vec![session(
            2400,
            EventBody::Recovered {
                failures: 3,
                down_ms: 1870,
            },
        )],
        EventKind::EngineSwitched => vec![
            session(
                4180,
                EventBody::EngineSwitched {
                    utterance: Some(2),
                    from: "primary".into(),
                    to: "backup".into(),
                    code: "asr_unavailable",
                    reason: "engine unreachable at http://10.0.0.5:50051: connection reset".into(),
                    replayed_ms: 1460,
                },
            ),
            session(
                61_000,
                EventBody::EngineSwitched {
                    utterance: None,
                    from: "backup".into(),
                    to: "primary".into(),
                    code: "asr_stream_failed",
                    reason: "engine stream failed (UNAUTHENTICATED): bad key".into(),
                    replayed_ms: 0,
                },
            ),
        ],
        EventKind::Dtmf => vec![session(
            4180,
            EventBody::Dtmf {
                digit: "#".into(),
                duration_ms: 240,
            },
        )],
        // As the command dispatcher makes them: offset 0; session id empty when rejected.
        EventKind::CommandAccepted => vec![
            session(
                0,
                EventBody::CommandAccepted {
                    command: "start",
                    command_id: Some("c-1".into()),
                    external_host: Some("10.0.0.7:40000".into()),
                },
            ),
            session(
                0,
                EventBody::CommandAccepted {
                    command: "stop",
                    command_id: None,
                    external_host: None,
                },
            ),
            session(
                0,
                EventBody::CommandAccepted {
                    command: "update",
                    command_id: Some("c-3".into()),
                    external_host: None,
                },
            ),
        ],
        EventKind::CommandRejected => vec![
            stamp(
                "",
                CALL,
                0,
                EventBody::CommandRejected {
                    command: Some("stop".into()),
                    command_id: Some("c-9".into()),
                    reason: "call not found".into(),
                },
            ),
            stamp(
                "",
                asr_gateway::control::commands::UNKNOWN_CALL,
                0,
                EventBody::CommandRejected {
                    command: None,
                    command_id: None,
                    reason: "malformed command: expected value at line 1 column 1".into(),
                },
            ),
        ],
    }
}

fn to_value(event: &Event) -> Value {
    serde_json::from_str(&event.to_json()).expect("to_json is JSON")
}

#[test]
fn every_event_kind_has_a_schema_and_no_schema_is_orphaned() {
    let mut expected: BTreeSet<String> = EventKind::ALL
        .iter()
        .map(|k| format!("{}.json", k.type_name()))
        .collect();
    for kind in EventKind::ALL {
        let name = kind.type_name();
        let schema = load_schema(name);
        assert_eq!(
            schema["properties"]["type"]["const"], name,
            "{name}.json: `type` must be the constant {name:?}"
        );
        assert_eq!(
            schema["properties"]["data"]["additionalProperties"], false,
            "{name}.json: data must refuse unknown fields"
        );
        validator(name);
    }
    expected.insert("command.json".into());
    let found: BTreeSet<String> = std::fs::read_dir(schema_dir())
        .expect("docs/schemas exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    assert_eq!(
        found, expected,
        "docs/schemas/ must hold exactly these files"
    );
}

#[test]
fn real_events_of_every_kind_match_their_schema() {
    for kind in EventKind::ALL {
        let v = validator(kind.type_name());
        let events = samples(kind);
        assert!(!events.is_empty(), "{kind:?}: no samples");
        for event in events {
            assert_eq!(event.kind(), kind, "sample of the wrong kind");
            let json = to_value(&event);
            let errs = errors(&v, &json);
            assert!(errs.is_empty(), "{}: {errs:#?}\n{json}", kind.type_name());
            assert_eq!(json["subject"], json["data"]["call_id"]);
            // An event must not match the schema of any other type.
            for other in EventKind::ALL.into_iter().filter(|o| *o != kind) {
                assert!(
                    !validator(other.type_name()).is_valid(&json),
                    "{} event passes {}.json",
                    kind.type_name(),
                    other.type_name()
                );
            }
        }
    }
}

/// Apply `edit` to a copy of `event`'s JSON; the result must fail `schema`.
fn assert_rejected(v: &Validator, event: &Event, what: &str, edit: impl FnOnce(&mut Value)) {
    let mut json = to_value(event);
    assert!(
        v.is_valid(&json),
        "{what}: the unedited event must be valid"
    );
    edit(&mut json);
    assert!(
        !v.is_valid(&json),
        "{what}: the broken event passed validation:\n{json}"
    );
}

fn data(json: &mut Value) -> &mut serde_json::Map<String, Value> {
    json["data"].as_object_mut().unwrap()
}

#[test]
fn broken_events_fail_validation() {
    let finals = samples(EventKind::TranscriptFinal);
    let final_ = &finals[0];
    let v = validator("asr.transcript.final");
    assert_rejected(&v, final_, "missing text", |j| {
        data(j).remove("text");
    });
    assert_rejected(&v, final_, "missing latency_ms (null is not absent)", |j| {
        data(j).remove("latency_ms");
    });
    assert_rejected(&v, final_, "utterance as a string", |j| {
        j["data"]["utterance"] = json!("1");
    });
    assert_rejected(&v, final_, "negative start_ms", |j| {
        j["data"]["start_ms"] = json!(-1);
    });
    assert_rejected(&v, final_, "confidence above 1", |j| {
        j["data"]["confidence"] = json!(1.5);
    });
    assert_rejected(&v, final_, "unknown data field", |j| {
        j["data"]["speaker"] = json!("A");
    });
    assert_rejected(&v, final_, "unknown envelope field", |j| {
        j["traceparent"] = json!("00-x");
    });
    assert_rejected(&v, final_, "missing session_id", |j| {
        data(j).remove("session_id");
    });
    assert_rejected(&v, final_, "word without timing", |j| {
        j["data"]["words"] = json!([{"word": "yes", "confidence": 0.9}]);
    });
    assert_rejected(&v, final_, "id not a UUID", |j| {
        j["id"] = json!("42");
    });
    assert_rejected(&v, final_, "time not RFC 3339", |j| {
        j["time"] = json!("yesterday");
    });
    assert_rejected(&v, final_, "other specversion", |j| {
        j["specversion"] = json!("0.3");
    });
    assert_rejected(&v, final_, "other type", |j| {
        j["type"] = json!("asr.transcript.partial");
    });
    assert_rejected(&v, final_, "no data", |j| {
        j.as_object_mut().unwrap().remove("data");
    });

    let ended = &samples(EventKind::SessionEnded)[0];
    let v = validator("asr.session.ended");
    assert_rejected(&v, ended, "stats missing a counter", |j| {
        j["data"]["stats"].as_object_mut().unwrap().remove("lost");
    });
    assert_rejected(&v, ended, "unknown cause", |j| {
        j["data"]["cause"] = json!("power_cut");
    });
    assert_rejected(&v, ended, "payload type without codec", |j| {
        j["data"]["codec"] = json!(null);
    });

    let error = &samples(EventKind::Error)[0];
    let v = validator("asr.error");
    assert_rejected(&v, error, "unknown error code", |j| {
        j["data"]["code"] = json!("asr_exploded");
    });
    assert_rejected(&v, error, "utterance 0", |j| {
        j["data"]["utterance"] = json!(0);
    });

    let accepted = &samples(EventKind::CommandAccepted)[0];
    let v = validator("asr.command.accepted");
    assert_rejected(&v, accepted, "start without external_host", |j| {
        j["data"]["external_host"] = json!(null);
    });
    assert_rejected(&v, accepted, "unknown command", |j| {
        j["data"]["command"] = json!("pause");
    });

    let rejected = &samples(EventKind::CommandRejected)[0];
    let v = validator("asr.command.rejected");
    assert_rejected(&v, rejected, "rejected command without reason", |j| {
        data(j).remove("reason");
    });
    assert_rejected(&v, rejected, "command_id as a number", |j| {
        j["data"]["command_id"] = json!(7);
    });
}

#[test]
fn commands_match_command_json_and_the_parser() {
    let v = validator("command");
    let valid = [
        json!({"command": "start", "call_id": "1795334591.22"}),
        json!({"command": "start", "command_id": "c-1", "call_id": "42", "media": {"type": "rtp"},
               "options": {"language": "en", "interim_results": true, "hints": ["yes", "no"],
                           "vad": {"aggressiveness": 3, "preroll_ms": 200, "hangover_ms": 800,
                                   "min_speech_ms": 100, "max_utterance_ms": 20000}}}),
        json!({"command": "start", "command_id": null, "call_id": "42",
               "options": {"language": null, "vad": null}}),
        json!({"command": "start", "call_id": "42", "media": {"type": "ari", "channel": "1795334591.22"}}),
        json!({"command": "start", "call_id": "42",
               "media": {"type": "ari", "server": "pbx1", "channel": "1795334591.22"}}),
        json!({"command": "start", "call_id": "42",
               "media": {"type": "ari", "channel": "1795334591.22", "directions": "both"}}),
        json!({"command": "stop", "call_id": "42"}),
        json!({"command": "stop", "command_id": "c-2", "call_id": "42"}),
        json!({"command": "update", "call_id": "42", "options": {}}),
        json!({"command": "update", "command_id": "c-3", "call_id": "42",
               "options": {"interim_results": false, "vad": {"hangover_ms": 900}}}),
    ];
    for payload in &valid {
        let errs = errors(&v, payload);
        assert!(errs.is_empty(), "{payload}: {errs:#?}");
        serde_json::from_value::<Command>(payload.clone())
            .unwrap_or_else(|e| panic!("schema-valid {payload} does not parse: {e}"));
    }
    // Refused by the parser and by the schema alike.
    let invalid = [
        json!({"command": "dance", "call_id": "42"}),
        json!({"command": "stop"}),
        json!({"call_id": "42"}),
        json!({"command": "stop", "call_id": 42}),
        json!({"command": "stop", "call_id": "42", "options": {}}),
        json!({"command": "update", "call_id": "42"}),
        json!({"command": "start", "call_id": "1", "options": {"langauge": "en"}}),
        json!({"command": "start", "call_id": "1", "media": {"type": "ari_channel"}}),
        json!({"command": "start", "call_id": "1", "media": {"type": "ari"}}),
        json!({"command": "start", "call_id": "1", "media": {"type": "ari", "channel": "c", "directions": "out"}}),
        json!({"command": "start", "call_id": "1", "media": {"type": "ari", "channel": "c", "spy": "out"}}),
        json!({"command": "start", "call_id": "1", "media": null}),
        json!({"command": "start", "call_id": "1", "options": {"hints": "yes"}}),
        json!({"command": "start", "call_id": "1", "options": {"vad": {"hangover": 5}}}),
        json!({"command": "start", "call_id": "1", "options": {"vad": {"preroll_ms": -5}}}),
        json!({"command": "start", "call_id": "1", "command_id": 5}),
        json!({"command": "start", "call_id": "1", "priority": "high"}),
        json!(["start"]),
    ];
    for payload in &invalid {
        assert!(!v.is_valid(payload), "schema accepts {payload}");
        assert!(
            serde_json::from_value::<Command>(payload.clone()).is_err(),
            "parser accepts {payload}; the schema should too"
        );
    }
    // Parsed, then refused by the dispatcher (webrtc-vad has modes 0 to 3): the schema says so.
    let runtime_refused = json!({"command": "start", "call_id": "1",
                                 "options": {"vad": {"aggressiveness": 4}}});
    assert!(serde_json::from_value::<Command>(runtime_refused.clone()).is_ok());
    assert!(!v.is_valid(&runtime_refused));
}
