//! Engine routing over real RTP: a call names its profile, and a call whose engine is killed mid-utterance is heard exactly as an undisturbed call.
//!
//! Two `asr-gateway engine` processes (the embedded Whisper engine, each in its own
//! process) behind one gateway, profile `default = [primary, backup]`. One test function,
//! so only two engines share the machine.

mod common;

use std::time::Duration;

use asr_gateway::metrics::read_sample;
use asr_gateway::text_norm::normalize_words;
use common::{send_speech, EngineProcess, GatewayProcess};
use serde_json::json;

const LONG: Duration = Duration::from_secs(120);

/// Play the fixture as one call and return its session's events once it has ended.
fn call(gw: &mut GatewayProcess, body: serde_json::Value) -> String {
    let (id, target) = gw.create_session_with(body);
    send_speech(target, "two-phrases.wav");
    assert_eq!(gw.delete_session(&id), 202);
    gw.wait_for(&id, "asr.session.ended", LONG);
    id
}

fn engine_count(gw: &GatewayProcess, series: &str, engine: &str) -> f64 {
    let metrics = gw.metrics();
    read_sample(&metrics, &format!("{series}{{engine=\"{engine}\"}}"))
        .unwrap_or_else(|| panic!("no {series} for {engine}:\n{metrics}"))
}

#[test]
fn profiles_route_calls_and_a_killed_engine_loses_no_words() {
    let mut primary = EngineProcess::start();
    let backup = EngineProcess::start();
    let mut gw = GatewayProcess::start(&format!(
        "[asr.engines.primary]\nendpoint = \"{}\"\n\
         [asr.engines.backup]\nendpoint = \"{}\"\n\
         [asr]\nbreaker_cooldown_ms = 60000\n\
         [asr.profiles]\ndefault = [\"primary\", \"backup\"]\nbackup-only = [\"backup\"]\n",
        primary.endpoint, backup.endpoint
    ));

    // A profile that is not configured is refused before a port is reserved.
    let refused = reqwest::blocking::Client::new()
        .post(format!("http://{}/v1/sessions", gw.http))
        .json(&json!({ "call_id": "no-such-profile", "engine_profile": "gold" }))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.text().unwrap().contains("engine profile"));

    // The call's profile is honoured: all its streams go to the backup.
    let chosen = call(
        &mut gw,
        json!({ "call_id": "profile-backup", "engine_profile": "backup-only" }),
    );
    assert_eq!(
        engine_count(&gw, "asrgw_engine_streams_total", "primary"),
        0.0
    );
    let backup_streams = engine_count(&gw, "asrgw_engine_streams_total", "backup");
    assert_eq!(backup_streams, 2.0, "two utterances");
    let on_backup = gw.transcript(&chosen);

    // Undisturbed, on the default profile: the primary.
    let calm = call(&mut gw, json!({ "call_id": "failover-calm" }));
    assert_eq!(
        engine_count(&gw, "asrgw_engine_streams_total", "primary"),
        2.0
    );
    let undisturbed = gw.transcript(&calm);
    common::assert_heard(
        &undisturbed,
        "I would like to pay my bill thank you goodbye",
        0.8,
    );
    assert_eq!(normalize_words(&on_backup), normalize_words(&undisturbed));

    // The primary dies while the first utterance is on it.
    let (hit, target) = gw.create_session_with(json!({ "call_id": "failover-hit" }));
    let caller = std::thread::spawn(move || send_speech(target, "two-phrases.wav"));
    gw.wait_for(&hit, "asr.speech.started", LONG);
    std::thread::sleep(Duration::from_millis(400));
    let killed_at = chrono::Utc::now();
    primary.kill();
    caller.join().unwrap();
    assert_eq!(gw.delete_session(&hit), 202);
    gw.wait_for(&hit, "asr.session.ended", LONG);

    let events = gw.of(&hit);
    let switched: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "asr.engine.switched")
        .collect();
    assert_eq!(switched.len(), 1, "{switched:#?}");
    let data = &switched[0]["data"];
    // For benches/README.md, not asserted: kill to the switch, wall time.
    if let Some(at) = switched[0]["time"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    {
        eprintln!(
            "failover: engine killed to asr.engine.switched in {} ms",
            (at.with_timezone(&chrono::Utc) - killed_at).num_milliseconds()
        );
    }
    assert_eq!(
        (data["from"].as_str(), data["to"].as_str()),
        (Some("primary"), Some("backup"))
    );
    assert_eq!(data["utterance"], 1, "{data}");
    assert_eq!(data["code"], "asr_unavailable", "{data}");
    assert!(data["replayed_ms"].as_u64().unwrap() > 0, "{data}");
    let errors: Vec<_> = events.iter().filter(|e| e["type"] == "asr.error").collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(
        normalize_words(&gw.transcript(&hit)),
        normalize_words(&undisturbed),
        "the failed-over call must be heard as the undisturbed one"
    );
    assert_eq!(
        engine_count(&gw, "asrgw_engine_switches_total", "primary"),
        1.0
    );
    // The second utterance went straight to the backup: the primary sits out its
    // cooldown (60 s here).
    assert_eq!(
        engine_count(&gw, "asrgw_engine_streams_total", "primary"),
        3.0
    );
    assert_eq!(engine_count(&gw, "asrgw_engine_tripped", "primary"), 1.0);
}
