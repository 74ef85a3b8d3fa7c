//! A real Asterisk for the integration tests: built by `scripts/asterisk.sh` (cached), run
//! in a fresh folder per test with the config that script writes, driven over ARI.
//!
//! Calls are ARI-originated Local channels: `;1` (the id the test picks) is the call under
//! test, `;2` its far end in the `asr-play` context, which plays a fixture. Stasis-mode calls
//! run `asr-stasis` on `;1` and log `ASRGW-RESULT` with what the gateway handed back.
//!
//! Without an Asterisk build (no tarball, see `scripts/asterisk.sh`) the tests are skipped
//! with the reason printed; with `REAL_ASTERISK=required` (set by `scripts/test.sh`
//! when it built one) a missing Asterisk fails them instead.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const APP: &str = "asrgw";
const USER: &str = "asrgw";
const PASS: &str = "change-me";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Asterisk install to test against, or why there is none.
pub fn prefix() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("ASTERISK_PREFIX") {
        return Ok(PathBuf::from(p));
    }
    let out = Command::new(repo().join("scripts/asterisk.sh"))
        .arg("prefix")
        .output()
        .map_err(|e| format!("cannot run scripts/asterisk.sh: {e}"))?;
    if out.status.success() {
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// One real-Asterisk test at a time: they share the CPU with the engine, and each counts
/// every channel left on its Asterisk.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Start a fresh Asterisk, or None (printing why) when there is no build to use.
pub fn start() -> Option<Asterisk> {
    match prefix() {
        Ok(prefix) => Some(Asterisk::start(prefix)),
        Err(why) => {
            if std::env::var("REAL_ASTERISK").as_deref() == Ok("required") {
                panic!("no real Asterisk to test against: {why}");
            }
            eprintln!("SKIPPED: real-Asterisk test: {why}");
            None
        }
    }
}

pub struct Asterisk {
    prefix: PathBuf,
    pub run_dir: PathBuf,
    pub http_port: u16,
    child: Option<Child>,
    client: reqwest::blocking::Client,
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Asterisk {
    fn start(prefix: PathBuf) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let run_dir =
            std::env::temp_dir().join(format!("asrgw-asterisk-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&run_dir);
        let http_port = free_tcp_port();
        let out = Command::new(repo().join("scripts/asterisk.sh"))
            .args(["config"])
            .arg(&run_dir)
            .env("ASTERISK_PREFIX", &prefix)
            .env("HTTP_PORT", http_port.to_string())
            .env("FIXTURES", repo().join("tests/fixtures"))
            .output()
            .expect("run scripts/asterisk.sh config");
        assert!(
            out.status.success(),
            "asterisk.sh config: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut asterisk = Self {
            prefix,
            run_dir,
            http_port,
            child: None,
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        asterisk.boot();
        asterisk
    }

    fn conf(&self) -> PathBuf {
        self.run_dir.join("etc/asterisk.conf")
    }

    /// Start the process (foreground mode, as our child) and wait until fully booted.
    pub fn boot(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.run_dir.join("log/stdout"))
            .unwrap();
        let child = Command::new(self.prefix.join("sbin/asterisk"))
            .arg("-C")
            .arg(self.conf())
            .args(["-f", "-n"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start asterisk");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.try_cli("core waitfullybooted").is_some()
                && self.ari_get("/asterisk/info").is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Asterisk did not boot; see {}",
                self.run_dir.join("log").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `core stop now` and wait for the process to exit.
    pub fn stop(&mut self) {
        let _ = self.try_cli("core stop now");
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn try_cli(&self, command: &str) -> Option<String> {
        let out = Command::new(self.prefix.join("sbin/asterisk"))
            .arg("-C")
            .arg(self.conf())
            .args(["-rx", command])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A CLI command's output (the remote console), panicking if Asterisk does not answer.
    pub fn cli(&self, command: &str) -> String {
        self.try_cli(command)
            .unwrap_or_else(|| panic!("Asterisk CLI did not answer `{command}`"))
    }

    /// Channels up now (`core show channels count`).
    pub fn channel_count(&self) -> usize {
        let out = self.cli("core show channels count");
        out.lines()
            .find_map(|l| {
                l.strip_suffix(" active channels")
                    .or(l.strip_suffix(" active channel"))
            })
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected `core show channels count`: {out}"))
    }

    /// Bridges alive now (`bridge show all`: a header line, then one line per bridge).
    pub fn bridge_count(&self) -> usize {
        let out = self.cli("bridge show all");
        out.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("Bridge-ID"))
            .count()
    }

    /// Wait until no channel and no bridge is left (calls end by themselves in the dialplan).
    pub fn assert_nothing_left(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let (channels, bridges) = (self.channel_count(), self.bridge_count());
            if channels == 0 && bridges == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "left on Asterisk after {within:?}: {channels} channels, {bridges} bridges\n{}\n{}",
                self.cli("core show channels"),
                self.cli("bridge show all")
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The `[[ari.servers]]` entry for the gateway.
    pub fn server_toml(&self, id: &str) -> String {
        format!(
            "[[ari.servers]]\nid = \"{id}\"\nurl = \"{}\"\nusername = \"{USER}\"\npassword = \"{PASS}\"\napp = \"{APP}\"\n",
            self.url()
        )
    }

    /// Wait until the gateway's ARI events socket is connected (its app is registered).
    pub fn wait_for_app(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.ari_get(&format!("/applications/{APP}")).is_err() {
            assert!(
                Instant::now() < deadline,
                "the gateway never connected its ARI events socket"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn ari_get(&self, path: &str) -> Result<Value, String> {
        let r = self
            .client
            .get(format!("{}/ari{path}", self.url()))
            .basic_auth(USER, Some(PASS))
            .send()
            .map_err(|e| e.to_string())?;
        let status = r.status();
        if !status.is_success() {
            return Err(format!("GET {path}: {status}"));
        }
        r.json().map_err(|e| e.to_string())
    }

    fn ari(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, String) {
        let mut request = self
            .client
            .request(method, format!("{}/ari{path}", self.url()))
            .basic_auth(USER, Some(PASS));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let r = request.send().unwrap_or_else(|e| panic!("ARI {path}: {e}"));
        (r.status().as_u16(), r.text().unwrap_or_default())
    }

    /// Originate a call `id` (`;1`) whose far end plays `play` (a fixture name, no extension);
    /// `;1` then runs `context` (`asr-stasis` or `asr-hold`). `formats` is what the Local
    /// channel speaks (`ulaw`, `slin16`, ...). Extra channel variables go in `vars`.
    pub fn originate(
        &self,
        id: &str,
        context: &str,
        formats: &str,
        play: &str,
        vars: &[(&str, &str)],
    ) {
        let mut variables = serde_json::Map::new();
        variables.insert("PLAY_FILE".into(), json!(play));
        for (k, v) in vars {
            variables.insert((*k).into(), json!(v));
        }
        let path = format!(
            "/channels?endpoint=Local/s@asr-play&context={context}&extension=s&priority=1&channelId={id}&otherChannelId={id}-far&formats={formats}"
        );
        let (status, body) = self.ari(
            reqwest::Method::POST,
            &path,
            Some(json!({ "variables": variables })),
        );
        assert_eq!(status, 200, "originate {id}: {body}");
    }

    pub fn hangup(&self, channel: &str) -> u16 {
        self.delete(&format!("/channels/{channel}"))
    }

    /// `DELETE /ari{path}`; the status.
    pub fn delete(&self, path: &str) -> u16 {
        self.ari(reqwest::Method::DELETE, path, None).0
    }

    pub fn channel_exists(&self, id: &str) -> bool {
        self.ari_get(&format!("/channels/{id}")).is_ok()
    }

    /// Channels the gateway creates (snoops and externalMedia) still up, by name.
    pub fn gateway_channels(&self) -> Vec<String> {
        self.cli("core show channels concise")
            .lines()
            .filter_map(|l| l.split('!').next())
            .filter(|name| {
                ["Snoop/", "UnicastRTP/", "AudioSocket/", "WebSocket/"]
                    .iter()
                    .any(|kind| name.starts_with(kind))
            })
            .map(str::to_owned)
            .collect()
    }

    /// Wait until the gateway's channels and bridges are gone (the calls may go on).
    pub fn assert_no_taps_left(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let (channels, bridges) = (self.gateway_channels(), self.bridge_count());
            if channels.is_empty() && bridges == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "taps left on Asterisk after {within:?}: {channels:?}, {bridges} bridges"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the dialplan logged when the gateway handed `call` back: `(status, error,
    /// transcript)`, once it has.
    pub fn result_of(&self, call: &str) -> Option<(String, String, String)> {
        let log = std::fs::read_to_string(self.run_dir.join("log/full")).unwrap_or_default();
        // The line Verbose() logs, not the dialplan trace that quotes it.
        let marker = format!("app_verbose.c: ASRGW-RESULT call={call} ");
        let line = log.lines().find(|l| l.contains(&marker))?;
        let rest = &line[line.find(&marker)? + marker.len()..];
        let field = |name: &str, next: &str| -> String {
            let start = rest.find(&format!("{name}=")).map(|i| i + name.len() + 1);
            let end = rest.find(&format!(" {next}="));
            match (start, end) {
                (Some(s), Some(e)) if s <= e => rest[s..e].to_owned(),
                _ => String::new(),
            }
        };
        Some((
            field("status", "error"),
            field("error", "transcript"),
            field("transcript", "stasis"),
        ))
    }

    /// Wait for `call`'s hand-back line.
    pub fn wait_result(&self, call: &str, within: Duration) -> (String, String, String) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(r) = self.result_of(call) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway never handed call {call} back to the dialplan within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_path(&self) -> &Path {
        &self.run_dir
    }
}

impl Drop for Asterisk {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
