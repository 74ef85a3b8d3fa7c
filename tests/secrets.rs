//! Secrets never leave: `check-config` and the logs of a gateway with every sink and command
//! source configured (all unreachable, so every error path logs) show none of them.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECRETS: [&str; 9] = [
    "rabbit-SECRET-1",
    "nats-SECRET-2",
    "redis-SECRET-3",
    "hook-SECRET-4",
    "hmac-SECRET-5",
    "cmdrabbit-SECRET-6",
    "cmdnats-SECRET-7",
    "cmdredis-SECRET-8",
    "api-SECRET-9-0123456789",
];

/// Every sink and command source, each with its secret, each pointing at a closed port.
fn config(dir: &std::path::Path, with_ari: bool) -> std::path::PathBuf {
    let s = SECRETS;
    let ari = if with_ari {
        "[[ari.servers]]\nid = \"pbx1\"\nurl = \"http://127.0.0.1:9\"\nusername = \"asterisk\"\npassword = \"ari-SECRET-10\"\n"
    } else {
        ""
    };
    let toml = format!(
        "[server]\nhttp_listen = \"127.0.0.1:0\"\nrtp_bind = \"127.0.0.1\"\nrtp_port_min = 23000\nrtp_port_max = 23010\napi_tokens = [\"{}\"]\n\
         [asr]\nendpoint = \"http://127.0.0.1:9\"\n\
         [events]\nsinks = [\"stdout\", \"rabbitmq\", \"nats\", \"redis\", \"webhook\"]\n\
         [events.rabbitmq]\nurl = \"amqp://guest:{}@127.0.0.1:9/%2f\"\n\
         [events.nats]\nurl = \"nats://natsuser:{}@127.0.0.1:9\"\n\
         [events.redis]\nurl = \"redis://:{}@127.0.0.1:9/0\"\n\
         [events.webhook]\nurl = \"http://hookuser:{}@127.0.0.1:9/hook\"\nsecret = \"{}\"\n\
         [commands]\nsources = [\"http\", \"rabbitmq\", \"nats\", \"redis\"]\n\
         [commands.rabbitmq]\nurl = \"amqp://guest:{}@127.0.0.1:9/%2f\"\n\
         [commands.nats]\nurl = \"nats://natsuser:{}@127.0.0.1:9\"\n\
         [commands.redis]\nurl = \"redis://:{}@127.0.0.1:9/0\"\n\
         [outbox]\njournal_dir = \"{}\"\n{ari}",
        s[8],
        s[0],
        s[1],
        s[2],
        s[3],
        s[4],
        s[5],
        s[6],
        s[7],
        dir.join("journal").display(),
    );
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS.iter().chain(&["ari-SECRET-10"]) {
        assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("asrgw-secrets-{name}-{}", std::process::id()))
}

#[test]
fn check_config_hides_every_secret() {
    let path = config(&temp_dir("check"), true);
    let out = Command::new(env!("CARGO_BIN_EXE_asr-gateway"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert_no_secret("check-config", &text);
    // It still shows the rest of each URL and that a secret is set.
    assert!(text.contains("amqp://guest:***@127.0.0.1:9/%2f"), "{text}");
    assert!(text.contains("redis://:***@127.0.0.1:9/0"), "{text}");
    assert!(text.contains("secret: Some(\n"), "{text}");
}

#[test]
fn a_gateway_with_every_sink_unreachable_logs_no_secret() {
    let dir = temp_dir("serve");
    let path = config(&dir, false);
    let mut child = Command::new(env!("CARGO_BIN_EXE_asr-gateway"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let collected = log.clone();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let mut all = collected.lock().unwrap();
            all.push_str(&line);
            all.push('\n');
        }
    });
    let mut stdout = child.stdout.take().unwrap();
    let events = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let http = loop {
        let text = log.lock().unwrap().clone();
        if let Some(rest) = text.split("asr-gateway listening: HTTP ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never listened:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // A session's events go to every sink, which all fail and retry for a while.
    let client = reqwest::blocking::Client::new();
    let created: serde_json::Value = client
        .post(format!("http://{http}/v1/sessions"))
        .bearer_auth(SECRETS[8])
        .json(&serde_json::json!({ "call_id": "secrets-1" }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = created["session_id"].as_str().expect("session created");
    client
        .delete(format!("http://{http}/v1/sessions/{id}"))
        .bearer_auth(SECRETS[8])
        .send()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    reader.join().unwrap();
    let log = log.lock().unwrap().clone();
    let events = events.join().unwrap();
    assert!(events.contains("asr.session.ended"), "{events}");
    // The failures were logged (so the secrets had their chance to leak).
    for needle in ["rabbitmq", "nats", "redis", "webhook"] {
        assert!(
            log.to_lowercase().contains(needle),
            "nothing logged about {needle}:\n{log}"
        );
    }
    assert_no_secret("the log", &log);
    assert_no_secret("stdout", &events);
}
