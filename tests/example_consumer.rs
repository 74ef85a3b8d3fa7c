//! The example Python consumer (examples/consumer.py, aio-pika) against the whole gateway over
//! RabbitMQ: it receives the call's transcripts, dedups by id, sends a stop command to the
//! gateway's command queue, and sees the session end.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use asr_gateway::sender::{self, SendOptions};
use common::{fixture, repo, GatewayProcess};

#[test]
fn python_consumer_receives_transcripts_and_stops_the_call() {
    let ok = Command::new("python3")
        .args(["-c", "import aio_pika"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "aio-pika missing: run scripts/setup.sh (python3 -m pip install -r examples/requirements.txt)");
    let u = format!("{}", std::process::id());
    let (exchange, queue) = (format!("test.events.{u}"), format!("test.commands.{u}"));
    let mut gw = GatewayProcess::start(&format!(
        "[events]\nsinks = [\"stdout\", \"rabbitmq\"]\n[events.rabbitmq]\nexchange = \"{exchange}\"\n\
         [commands]\nsources = [\"rabbitmq\"]\n[commands.rabbitmq]\nqueue = \"{queue}\"\n\
         dead_letter_exchange = \"{queue}.dlx\"\n"
    ));
    // A dotted call id, as Asterisk names channels.
    let call = format!("py.{u}");
    let (session, target) = gw.create_session(&call);
    let mut consumer = Command::new("python3")
        .arg(repo().join("examples/consumer.py"))
        .args([
            "--exchange",
            &exchange,
            "--commands-queue",
            &queue,
            "--call-id",
            &call,
        ])
        .args(["--stop-after", "1", "--timeout", "90"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    // Wait until it has bound its queue, so no event is published before it listens.
    let stderr = consumer.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    loop {
        let line = lines.next().expect("consumer stderr open").unwrap();
        eprintln!("[consumer] {line}");
        assert!(!line.starts_with("error"), "consumer failed: {line}");
        if line.starts_with("consuming") {
            break;
        }
    }
    std::thread::spawn(move || {
        lines
            .map_while(Result::ok)
            .for_each(|l| eprintln!("[consumer] {l}"))
    });
    // The call keeps sending (silence after the phrase), like a live channel, until stopped.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(sender::send_wav(
            &fixture("balance.wav"),
            target,
            &SendOptions::pcmu(),
        ))
        .unwrap();
    let ended = gw.wait_for(&session, "asr.session.ended", Duration::from_secs(90));
    assert_eq!(
        ended["data"]["cause"], "stopped",
        "the consumer's stop command ended the call: {ended}"
    );
    let output = consumer.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "consumer exited with {}: {stdout}",
        output.status
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["stop_sent"], true, "{summary}");
    assert_eq!(summary["session_ended"], true, "{summary}");
    assert!(summary["finals"].as_u64().unwrap() >= 1, "{summary}");
    assert!(
        stdout.to_lowercase().contains("balance"),
        "transcript printed: {stdout}"
    );
    let accepted = gw
        .all()
        .into_iter()
        .find(|e| e["type"] == "asr.command.accepted" && e["subject"] == call.as_str());
    assert!(
        accepted.is_some_and(|e| e["data"]["command"] == "stop"),
        "stop acknowledged by an event"
    );
}
