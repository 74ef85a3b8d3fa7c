//! Test harness: runs the real `asr-gateway serve` binary and reads its stdout events.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

#[cfg(feature = "whisper")]
pub mod engine;
pub mod test_ca;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

/// The embedded engine's model; tests that transcribe need it (scripts/setup.sh fetches it).
pub fn model_dir() -> PathBuf {
    let dir = repo().join("models/whisper-tiny.en");
    assert!(
        dir.join("model.bin").is_file(),
        "model missing at {}: run scripts/setup.sh (or scripts/fetch-model.sh) first",
        dir.display()
    );
    dir
}

/// A distinct 50-port RTP range per gateway started by this test process.
pub fn port_base() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    20000 + (std::process::id() % 100) as u16 * 400 + NEXT.fetch_add(1, Ordering::Relaxed) % 8 * 50
}

pub struct GatewayProcess {
    child: Child,
    events: mpsc::Receiver<Value>,
    seen: Vec<Value>,
    pub http: SocketAddr,
    client: reqwest::blocking::Client,
}

impl GatewayProcess {
    /// Start `asr-gateway serve` with this extra TOML (appended to a test base config), in
    /// a fresh state directory (outbox journal).
    pub fn start(extra_toml: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "asrgw-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        Self::start_in(&dir, extra_toml)
    }

    /// Start in `dir` (kept across restarts: its journal survives a killed gateway).
    pub fn start_in(dir: &std::path::Path, extra_toml: &str) -> Self {
        Self::start_configured(dir, "", extra_toml)
    }

    /// As `start`, with more keys in the `[server]` section (one per line).
    pub fn start_server(server_keys: &str, extra_toml: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "asrgw-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        Self::start_configured(&dir, server_keys, extra_toml)
    }

    fn start_configured(dir: &std::path::Path, server_keys: &str, extra_toml: &str) -> Self {
        let ports = port_base();
        let base = format!(
            "[server]\nhttp_listen = \"127.0.0.1:0\"\nrtp_bind = \"127.0.0.1\"\nrtp_port_min = {}\nrtp_port_max = {}\ninstance = \"test\"\n{server_keys}\n",
            ports,
            ports + 49
        );
        let mut toml = base;
        if !extra_toml.contains("[engine]") && !extra_toml.contains("endpoint") {
            toml.push_str(&format!(
                "[engine]\nmodel_dir = \"{}\"\n",
                model_dir().display()
            ));
        }
        if !extra_toml.contains("[outbox]") {
            toml.push_str(&format!(
                "[outbox]\njournal_dir = \"{}\"\n",
                dir.join("journal").display()
            ));
        }
        toml.push_str(extra_toml);
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("gateway.toml");
        std::fs::write(&config, &toml).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_asr-gateway"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn asr-gateway");
        let (tx, events) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let event: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        let stderr = child.stderr.take().unwrap();
        let (addr_tx, addr_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[gateway] {line}");
                if let Some(rest) = line.strip_prefix("asr-gateway listening: HTTP ") {
                    let addr = rest.split_whitespace().next().unwrap().to_owned();
                    let _ = addr_tx.send(addr);
                }
            }
        });
        let http = addr_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("gateway did not report its HTTP address")
            .parse()
            .unwrap();
        Self {
            child,
            events,
            seen: Vec::new(),
            http,
            client: reqwest::blocking::Client::new(),
        }
    }

    /// Reserve a session; returns (session_id, RTP target).
    pub fn create_session(&self, call_id: &str) -> (String, SocketAddr) {
        self.create_session_with(serde_json::json!({ "call_id": call_id }))
    }

    /// Reserve a session with this request body (`call_id` and options).
    pub fn create_session_with(&self, body: Value) -> (String, SocketAddr) {
        let r: Value = self
            .client
            .post(format!("http://{}/v1/sessions", self.http))
            .json(&body)
            .send()
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .unwrap();
        let target = format!("{}:{}", r["host"].as_str().unwrap(), r["port"])
            .parse()
            .unwrap();
        (r["session_id"].as_str().unwrap().to_owned(), target)
    }

    pub fn delete_session(&self, id: &str) -> u16 {
        self.client
            .delete(format!("http://{}/v1/sessions/{id}", self.http))
            .send()
            .unwrap()
            .status()
            .as_u16()
    }

    pub fn metrics(&self) -> String {
        self.client
            .get(format!("http://{}/metrics", self.http))
            .send()
            .unwrap()
            .text()
            .unwrap()
    }

    pub fn healthy(&self) -> bool {
        self.client
            .get(format!("http://{}/healthz", self.http))
            .send()
            .map(|r| r.status().is_success())
            .unwrap_or(false)
    }

    /// Wait for an event of `kind` for `session_id`; panics after `timeout`.
    pub fn wait_for(&mut self, session_id: &str, kind: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self
                .seen
                .iter()
                .find(|e| e["type"] == kind && e["data"]["session_id"] == session_id)
            {
                return e.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) => self.seen.push(e),
                Err(_) => panic!(
                    "no {kind} for {session_id} within {timeout:?}; saw {:#?}",
                    self.of(session_id)
                ),
            }
        }
    }

    /// Wait for an event of `kind` whose subject is `call_id`; panics after `timeout`.
    pub fn wait_for_call(&mut self, call_id: &str, kind: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self
                .seen
                .iter()
                .find(|e| e["type"] == kind && e["subject"] == call_id)
            {
                return e.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {kind} for call {call_id}; saw {:#?}",
                self.seen
            );
            self.pump(Duration::from_millis(100));
        }
    }

    /// Every event seen so far, in arrival order.
    pub fn all(&self) -> Vec<Value> {
        self.seen.clone()
    }

    /// Read events for up to `wait`.
    pub fn pump(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        while let Ok(e) = self
            .events
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(e);
        }
    }

    /// Every event seen so far for a session, in arrival order.
    pub fn of(&self, session_id: &str) -> Vec<Value> {
        self.seen
            .iter()
            .filter(|e| e["data"]["session_id"] == session_id)
            .cloned()
            .collect()
    }

    /// The final transcripts of a session, joined.
    pub fn transcript(&self, session_id: &str) -> String {
        self.of(session_id)
            .iter()
            .filter(|e| e["type"] == "asr.transcript.final")
            .map(|e| e["data"]["text"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl GatewayProcess {
    /// SIGKILL: no shutdown, no flush.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit (sessions end, outboxes flush or journal).
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Run `serve` with these `[[ari.servers]]` (whose password the server refuses) and no
/// engine; assert it exits naming the server, without printing `password`.
pub fn assert_refused_credentials_stop_startup(servers_toml: &str, server: &str, password: &str) {
    let dir = std::env::temp_dir().join(format!(
        "asrgw-creds-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!("[server]\nhttp_listen = \"127.0.0.1:0\"\n[asr]\nendpoint = \"http://127.0.0.1:9\"\n{servers_toml}"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_asr-gateway"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with wrong credentials");
    assert!(
        stderr.contains(server) && stderr.contains("credentials"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(password),
        "the password reached the log: {stderr}"
    );
}

/// Lowercase words without punctuation.
pub fn words(text: &str) -> Vec<String> {
    asr_gateway::text_norm::normalize_words(text)
}

/// Assert that most reference words were heard (Whisper tiny on 8 kHz audio is not perfect).
pub fn assert_heard(transcript: &str, reference: &str, min_recall: f64) {
    let heard = words(transcript);
    let wanted = words(reference);
    let found = wanted.iter().filter(|w| heard.contains(w)).count();
    let recall = found as f64 / wanted.len() as f64;
    assert!(
        recall >= min_recall,
        "heard {transcript:?}, expected {reference:?} (recall {recall:.2} < {min_recall})"
    );
}

/// (call id, event id) of every message in a JetStream stream, once it holds `expected`
/// (or 30 s passed); checks `Nats-Msg-Id` is the event id, then deletes the stream.
pub async fn nats_events(stream: &str, prefix: &str, expected: usize) -> Vec<(String, String)> {
    use tokio_stream::StreamExt;
    let client = async_nats::connect("nats://127.0.0.1:4222")
        .await
        .expect("NATS at 127.0.0.1:4222");
    let js = async_nats::jetstream::new(client);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut s = js
            .get_stream(stream)
            .await
            .expect("stream created by the gateway");
        let count = s.info().await.unwrap().state.messages as usize;
        if count >= expected || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s = js.get_stream(stream).await.unwrap();
    let total = s.cached_info().state.messages as usize;
    let consumer = s
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: format!("{prefix}.>"),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::new();
    while out.len() < total {
        let m = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        let header = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.to_string());
        assert_eq!(
            header.as_deref(),
            v["id"].as_str(),
            "Nats-Msg-Id must be the event id"
        );
        out.push((
            v["subject"].as_str().unwrap().to_owned(),
            v["id"].as_str().unwrap().to_owned(),
        ));
    }
    let _ = js.delete_stream(stream).await;
    out
}

/// `asr-gateway engine`: the embedded engine alone in its own process, on a free port.
pub struct EngineProcess {
    child: Child,
    pub endpoint: String,
}

impl EngineProcess {
    pub fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_asr-gateway"))
            .args(["engine", "--listen", "127.0.0.1:0", "--model-dir"])
            .arg(model_dir())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn asr-gateway engine");
        let stderr = child.stderr.take().unwrap();
        let (addr_tx, addr_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[engine] {line}");
                if let Some(rest) = line.strip_prefix("asr-gateway engine: asr.v1.Recognizer on ") {
                    let addr = rest.split(',').next().unwrap().to_owned();
                    let _ = addr_tx.send(addr);
                }
            }
        });
        let addr: String = addr_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("engine did not report its address");
        Self {
            child,
            endpoint: format!("http://{addr}"),
        }
    }

    /// SIGKILL: the engine dies with its streams open, as in a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Real speech from a fixture to `target` as u-law RTP from a fresh socket, paced like Asterisk.
pub fn send_speech(target: SocketAddr, file: &str) {
    use asr_gateway::sender::{self, SendOptions};
    let (samples, rate) = sender::read_wav(&fixture(file)).unwrap();
    let packets = sender::packetize(&samples, rate, &SendOptions::pcmu(), 0x2222, 1).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sender::send_packets(&socket, target, &packets, &SendOptions::pcmu())
            .await
            .unwrap();
    });
}
