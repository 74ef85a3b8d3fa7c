//! Recognition event model: typed bodies and the CloudEvents 1.0 envelope.
//!
//! The sans-IO session emits `SessionEvent`s (body + media offset). The shell stamps each
//! one exactly once with a random id and the wall-clock time, making an `Event`; that id
//! then stays with the event through every sink and redelivery, so consumers can dedup.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::asr::types::Word;

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndCause {
    /// The owner ended it (`DELETE /v1/sessions/{id}`).
    Stopped,
    /// No packet for the idle timeout.
    IdleTimeout,
    /// The gateway is shutting down.
    Shutdown,
    /// The Asterisk channel it listened to hung up or vanished (ARI).
    Hangup,
    /// The gateway stopped without ending it (a crash or a kill); said by the next start.
    GatewayRestart,
}

/// Why an utterance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpeechEndCause {
    Silence,
    MaxLength,
    SessionEnd,
}

/// RTP receive statistics of a session (RFC 3550 A.8 jitter in ms).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StreamStats {
    pub received: u64,
    pub lost: u64,
    pub late: u64,
    pub duplicate: u64,
    pub reordered: u64,
    pub jitter_ms: f64,
    /// Datagrams that were not valid RTP.
    pub malformed: u64,
    /// Valid RTP with a payload type the map does not know, or that failed to decode.
    pub undecodable: u64,
    /// Datagrams from a source other than the one the session locked onto.
    pub foreign_source: u64,
    /// RTP packets of a new SSRC from the locked source dropped because that SSRC never
    /// passed probation (RFC 3550 A.1): spoofed or stray packets.
    pub probation_dropped: u64,
}

/// The typed part of each event; `kind()` gives its CloudEvents `type`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EventBody {
    SessionStarted {
        transport: &'static str,
        local_addr: String,
        engine_sample_rate: u32,
        mode: &'static str,
        /// `in` (the channel's own voice) or `out` (what it hears), when call logic asked
        /// for both directions of an ARI channel as separate streams; else None.
        speaker: Option<&'static str>,
    },
    SpeechStarted {
        utterance: u32,
        start_ms: u64,
    },
    SpeechEnded {
        utterance: u32,
        start_ms: u64,
        end_ms: u64,
        cause: SpeechEndCause,
    },
    TranscriptPartial {
        utterance: u32,
        text: String,
        confidence: f32,
        start_ms: u64,
        end_ms: u64,
    },
    TranscriptFinal {
        utterance: u32,
        text: String,
        confidence: f32,
        words: Vec<WordTiming>,
        start_ms: u64,
        end_ms: u64,
        /// Wall time from the end of speech to this result, ms (None when not measurable).
        latency_ms: Option<u64>,
    },
    SessionEnded {
        cause: EndCause,
        duration_ms: u64,
        /// Codec name of the media received (e.g. `pcmu`, `l16/16000`), None if none arrived.
        codec: Option<String>,
        payload_type: Option<u8>,
        utterances: u32,
        stats: StreamStats,
    },
    Error {
        code: &'static str,
        message: String,
        utterance: Option<u32>,
    },
    /// Call mode: the engine stream works again after a failure episode (one `asr.error`
    /// opened it).
    Recovered {
        /// Failed attempts in the episode, the first included.
        failures: u32,
        /// From the first failure to the recovery, ms.
        down_ms: u64,
    },
    /// A stream's engine failed and the stream moved to the next engine of its profile,
    /// which was sent the audio since the last final.
    EngineSwitched {
        /// Utterance mode: the utterance; call mode: None.
        utterance: Option<u32>,
        /// Engine names as configured (`asr.engines`).
        from: String,
        to: String,
        /// The failure's `asr.error` code and text.
        code: &'static str,
        reason: String,
        /// Audio sent again to the new engine, ms.
        replayed_ms: u64,
    },
    Dtmf {
        /// `0`-`9`, `*`, `#`, `A`-`D`.
        digit: String,
        /// How long the key was held, ms (0 when the source does not say).
        duration_ms: u32,
    },
    CommandAccepted {
        command: &'static str,
        command_id: Option<String>,
        /// For `start`: where to point the externalMedia channel (`host:port`).
        external_host: Option<String>,
    },
    CommandRejected {
        command: Option<String>,
        command_id: Option<String>,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WordTiming {
    pub word: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub confidence: f32,
}

impl From<&Word> for WordTiming {
    fn from(w: &Word) -> Self {
        Self {
            word: w.word.clone(),
            start_ms: w.start_ms,
            end_ms: w.end_ms,
            confidence: w.confidence,
        }
    }
}

/// Every event type the gateway emits, with its CloudEvents `type` string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    SessionStarted,
    SpeechStarted,
    SpeechEnded,
    TranscriptPartial,
    TranscriptFinal,
    SessionEnded,
    Error,
    Recovered,
    EngineSwitched,
    Dtmf,
    CommandAccepted,
    CommandRejected,
}

impl EventKind {
    pub const ALL: [EventKind; 12] = [
        EventKind::SessionStarted,
        EventKind::SpeechStarted,
        EventKind::SpeechEnded,
        EventKind::TranscriptPartial,
        EventKind::TranscriptFinal,
        EventKind::SessionEnded,
        EventKind::Error,
        EventKind::Recovered,
        EventKind::EngineSwitched,
        EventKind::Dtmf,
        EventKind::CommandAccepted,
        EventKind::CommandRejected,
    ];

    pub fn type_name(self) -> &'static str {
        match self {
            EventKind::SessionStarted => "asr.session.started",
            EventKind::SpeechStarted => "asr.speech.started",
            EventKind::SpeechEnded => "asr.speech.ended",
            EventKind::TranscriptPartial => "asr.transcript.partial",
            EventKind::TranscriptFinal => "asr.transcript.final",
            EventKind::SessionEnded => "asr.session.ended",
            EventKind::Error => "asr.error",
            EventKind::Recovered => "asr.recovered",
            EventKind::EngineSwitched => "asr.engine.switched",
            EventKind::Dtmf => "asr.dtmf",
            EventKind::CommandAccepted => "asr.command.accepted",
            EventKind::CommandRejected => "asr.command.rejected",
        }
    }
}

impl EventBody {
    pub fn kind(&self) -> EventKind {
        match self {
            EventBody::SessionStarted { .. } => EventKind::SessionStarted,
            EventBody::SpeechStarted { .. } => EventKind::SpeechStarted,
            EventBody::SpeechEnded { .. } => EventKind::SpeechEnded,
            EventBody::TranscriptPartial { .. } => EventKind::TranscriptPartial,
            EventBody::TranscriptFinal { .. } => EventKind::TranscriptFinal,
            EventBody::SessionEnded { .. } => EventKind::SessionEnded,
            EventBody::Error { .. } => EventKind::Error,
            EventBody::Recovered { .. } => EventKind::Recovered,
            EventBody::EngineSwitched { .. } => EventKind::EngineSwitched,
            EventBody::Dtmf { .. } => EventKind::Dtmf,
            EventBody::CommandAccepted { .. } => EventKind::CommandAccepted,
            EventBody::CommandRejected { .. } => EventKind::CommandRejected,
        }
    }
}

/// What the sans-IO session emits: a body at a media-time offset (ms since session start).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionEvent {
    pub offset_ms: u64,
    pub body: EventBody,
}

/// A stamped event, ready for any sink. Immutable once made.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: Uuid,
    pub time: DateTime<Utc>,
    /// CloudEvents `source`, e.g. `/asr-gateway/<instance>`.
    pub source: std::sync::Arc<str>,
    pub session_id: std::sync::Arc<str>,
    pub call_id: std::sync::Arc<str>,
    pub offset_ms: u64,
    pub body: EventBody,
}

#[derive(Serialize)]
struct CloudEvent<'a> {
    specversion: &'static str,
    id: String,
    source: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    subject: &'a str,
    time: String,
    datacontenttype: &'static str,
    data: EventData<'a>,
}

#[derive(Serialize)]
struct EventData<'a> {
    session_id: &'a str,
    call_id: &'a str,
    offset_ms: u64,
    #[serde(flatten)]
    body: &'a EventBody,
}

impl Event {
    pub fn stamp(
        source: std::sync::Arc<str>,
        session_id: std::sync::Arc<str>,
        call_id: std::sync::Arc<str>,
        event: SessionEvent,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: Uuid::new_v4(),
            time: now,
            source,
            session_id,
            call_id,
            offset_ms: event.offset_ms,
            body: event.body,
        }
    }

    pub fn kind(&self) -> EventKind {
        self.body.kind()
    }

    /// The CloudEvents 1.0 structured-mode JSON object, on one line.
    pub fn to_json(&self) -> String {
        let envelope = CloudEvent {
            specversion: "1.0",
            id: self.id.to_string(),
            source: &self.source,
            kind: self.kind().type_name(),
            subject: &self.call_id,
            time: self.time.to_rfc3339_opts(SecondsFormat::Millis, true),
            datacontenttype: "application/json",
            data: EventData {
                session_id: &self.session_id,
                call_id: &self.call_id,
                offset_ms: self.offset_ms,
                body: &self.body,
            },
        };
        // Serializing plain structs of strings and numbers cannot fail.
        serde_json::to_string(&envelope).expect("event serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(body: EventBody) -> Event {
        Event::stamp(
            "/asr-gateway/test".into(),
            "s-1".into(),
            "call-7".into(),
            SessionEvent {
                offset_ms: 1234,
                body,
            },
            Utc::now(),
        )
    }

    #[test]
    fn envelope_is_cloudevents_with_common_fields() {
        let e = stamp(EventBody::SpeechStarted {
            utterance: 2,
            start_ms: 900,
        });
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "asr.speech.started");
        assert_eq!(v["id"], e.id.to_string());
        assert_eq!(v["subject"], "call-7");
        assert_eq!(v["source"], "/asr-gateway/test");
        assert_eq!(v["datacontenttype"], "application/json");
        assert_eq!(v["data"]["session_id"], "s-1");
        assert_eq!(v["data"]["call_id"], "call-7");
        assert_eq!(v["data"]["offset_ms"], 1234);
        assert_eq!(v["data"]["utterance"], 2);
        assert_eq!(v["data"]["start_ms"], 900);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        assert!(!e.to_json().contains('\n'));
    }

    #[test]
    fn ids_are_unique_and_stable() {
        let a = stamp(EventBody::SpeechStarted {
            utterance: 1,
            start_ms: 0,
        });
        let b = stamp(EventBody::SpeechStarted {
            utterance: 1,
            start_ms: 0,
        });
        assert_ne!(a.id, b.id);
        assert_eq!(a.to_json(), a.clone().to_json());
    }

    #[test]
    fn session_ended_carries_stats_and_codec() {
        let e = stamp(EventBody::SessionEnded {
            cause: EndCause::IdleTimeout,
            duration_ms: 5000,
            codec: Some("pcmu".into()),
            payload_type: Some(0),
            utterances: 3,
            stats: StreamStats {
                received: 250,
                lost: 2,
                ..Default::default()
            },
        });
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v["type"], "asr.session.ended");
        assert_eq!(v["data"]["cause"], "idle_timeout");
        assert_eq!(v["data"]["codec"], "pcmu");
        assert_eq!(v["data"]["stats"]["received"], 250);
        assert_eq!(v["data"]["stats"]["lost"], 2);
    }

    #[test]
    fn every_kind_has_a_distinct_type_name() {
        let mut names: Vec<_> = EventKind::ALL.iter().map(|k| k.type_name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), EventKind::ALL.len());
    }
}
