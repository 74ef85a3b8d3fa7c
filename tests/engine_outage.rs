//! An engine that is down and a gateway that is killed: neither floods nor strands consumers.
//! Call mode with no engine gives one `asr.error` per session, not one per frame; sessions a
//! killed gateway left live are ended by its next start (cause `gateway_restart`).

mod common;

use std::time::Duration;

use asr_gateway::sender::{self, SendOptions};
use common::{fixture, send_speech, GatewayProcess};

#[test]
fn call_mode_without_an_engine_reports_one_error_not_one_per_frame() {
    let mut gw = GatewayProcess::start(
        "[asr]\nendpoint = \"http://127.0.0.1:9\"\nmode = \"call\"\nretry_initial_ms = 100\nretry_max_ms = 400\n",
    );
    let (id, target) = gw.create_session("outage-1");
    send_speech(target, "two-phrases.wav");
    gw.delete_session(&id);
    gw.wait_for(&id, "asr.session.ended", Duration::from_secs(60));
    let errors: Vec<_> = gw
        .of(&id)
        .into_iter()
        .filter(|e| e["type"] == "asr.error")
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0]["data"]["code"], "asr_unavailable");
    let metrics = gw.metrics();
    assert_eq!(
        asr_gateway::metrics::read_sample(
            &metrics,
            "asrgw_asr_errors_total{code=\"asr_unavailable\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
}

#[test]
fn sessions_live_at_a_crash_are_ended_by_the_next_start() {
    let dir = std::env::temp_dir().join(format!("asrgw-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = "[asr]\nendpoint = \"http://127.0.0.1:9\"\n";
    let mut gw = GatewayProcess::start_in(&dir, config);
    let (live, target) = gw.create_session("crash-live-1");
    let (done, _) = gw.create_session("crash-done-1");
    gw.wait_for(&live, "asr.session.started", Duration::from_secs(10));
    assert_eq!(gw.delete_session(&done), 202);
    gw.wait_for(&done, "asr.session.ended", Duration::from_secs(30));
    let (samples, rate) = sender::read_wav(&fixture("balance.wav")).unwrap();
    let packets = sender::packetize(&samples, rate, &SendOptions::pcmu(), 7, 1).unwrap();
    let caller = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for p in &packets[..10] {
        caller.send_to(p, target).unwrap();
    }
    gw.kill();
    let mut gw = GatewayProcess::start_in(&dir, config);
    let ended = gw.wait_for(&live, "asr.session.ended", Duration::from_secs(30));
    assert_eq!(ended["data"]["cause"], "gateway_restart", "{ended}");
    assert_eq!(ended["data"]["call_id"], "crash-live-1");
    gw.pump(Duration::from_millis(500));
    assert!(
        gw.of(&done).is_empty(),
        "a session that ended cleanly was ended again"
    );
}
