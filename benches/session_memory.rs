//! Per-session memory at steady state: RSS growth of N live sessions, each fed 5 s of speech.
//! Run: `cargo bench --bench session_memory`. Prints KiB per session (heap + codec state).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use asr_gateway::media::session::{Output, Session, SessionConfig};
use asr_gateway::sender::{self, SendOptions};

const SESSIONS: usize = 1000;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("linux /proc");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS line")
}

fn main() {
    // `cargo test --benches` runs this with --bench absent; keep that quick.
    let sessions = if std::env::args().any(|a| a == "--bench") {
        SESSIONS
    } else {
        10
    };
    let wav = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/two-phrases.wav");
    let (samples, rate) = sender::read_wav(&wav).expect("fixture");
    let packets = sender::packetize(&samples, rate, &SendOptions::pcmu(), 1, 0).expect("packetize");
    let config = SessionConfig {
        idle_timeout: None,
        ..SessionConfig::default()
    };
    let before = rss_kib();
    let start = Instant::now();
    let mut live = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        let mut s = Session::new(config.clone(), start).expect("session");
        let mut now = start;
        for p in packets.iter().take(250) {
            let _ = s.handle_rtp(now, p);
            while !matches!(s.poll_output(), Output::Timeout(_)) {}
            now += Duration::from_millis(20);
        }
        live.push(s);
    }
    let after = rss_kib();
    let per = (after.saturating_sub(before)) as f64 / sessions as f64;
    println!("session_memory: {sessions} sessions, RSS {before} KiB -> {after} KiB, {per:.1} KiB per session");
    drop(live);
}
