//! nats-server restarted in the middle of a live call: the gateway's outbox holds the events
//! and delivers every one afterwards, once (JetStream dedups retries by `Nats-Msg-Id`).
//! Alone in its test binary, so no other test shares the outage.

mod common;

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use asr_gateway::sender::{self, SendOptions};
use common::{fixture, nats_events, GatewayProcess};

const NATS: &str = "127.0.0.1:4222";

fn daemon(args: &[&str]) {
    let status = Command::new("start-stop-daemon")
        .args(args)
        .status()
        .expect("start-stop-daemon runs");
    assert!(status.success(), "start-stop-daemon {args:?}: {status}");
}

fn wait_port(open: bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(NATS).is_ok() != open {
        assert!(Instant::now() < until, "port 4222 never became open={open}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_nats() {
    daemon(&[
        "--start",
        "--oknodo",
        "--background",
        "--exec",
        "/usr/sbin/nats-server",
        "--",
        "-a",
        "127.0.0.1",
        "-p",
        "4222",
        "-js",
        "-sd",
        "/var/lib/nats-server",
        "-l",
        "/var/log/nats-server.log",
    ]);
    wait_port(true);
}

/// Starts nats-server again even if the test fails while it is down.
struct StartOnDrop;

impl Drop for StartOnDrop {
    fn drop(&mut self) {
        start_nats();
    }
}

#[test]
fn nats_restart_mid_call_loses_no_event() {
    let u = std::process::id();
    let (stream, prefix) = (format!("TRS{u}"), format!("trs{u}"));
    let mut gw = GatewayProcess::start(&format!(
        "[events]\nsinks = [\"stdout\", \"nats\"]\n[events.nats]\nstream = \"{stream}\"\nsubject_prefix = \"{prefix}\"\n\
         [outbox]\njournal_dir = \"{}\"\nretry_max_ms = 500\n",
        std::env::temp_dir().join(format!("asrgw-restart-{u}")).display()
    ));
    let (id, target) = gw.create_session(&format!("restart-{u}"));
    let sending = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(sender::send_wav(
            &fixture("two-phrases.wav"),
            target,
            &SendOptions::pcmu(),
        ))
        .unwrap();
    });
    // Down during the first phrase's events, up again before the call ends.
    std::thread::sleep(Duration::from_millis(1500));
    {
        let _restart = StartOnDrop;
        daemon(&[
            "--stop",
            "--oknodo",
            "--retry",
            "30",
            "--exec",
            "/usr/sbin/nats-server",
        ]);
        wait_port(false);
        std::thread::sleep(Duration::from_secs(3));
    }
    sending.join().unwrap();
    std::thread::sleep(Duration::from_millis(900));
    gw.delete_session(&id);
    gw.wait_for(&id, "asr.session.ended", Duration::from_secs(60));
    let expected: Vec<String> = gw
        .of(&id)
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let metrics = gw.metrics();
    let retried =
        asr_gateway::metrics::read_sample(&metrics, "asrgw_sink_retried_total{sink=\"nats\"}")
            .unwrap_or(0.0);
    assert!(
        retried > 0.0,
        "the outage made the outbox retry:\n{metrics}"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let stored: Vec<String> = rt
        .block_on(nats_events(&stream, &prefix, expected.len()))
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(
        stored, expected,
        "every event once, in order, across the restart"
    );
}
