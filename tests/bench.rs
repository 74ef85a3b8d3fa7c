//! `asr-gateway bench` end to end: a short, small load against a gateway the bench starts
//! itself (a child process), real RTP over loopback and the built-in null engine over real
//! gRPC. Asserts accounting only, never speed.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("asrgw-bench-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Run the bench with `args`; returns its JSON result and stdout.
fn bench(name: &str, args: &[&str]) -> (Value, String) {
    let dir = out_dir(name);
    let json = dir.join("result.json");
    let svg = dir.join("chart.svg");
    let output = Command::new(env!("CARGO_BIN_EXE_asr-gateway"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "bench",
            "--quiet",
            "--audio",
            "tests/fixtures",
            "--ramp",
            "50",
            "--settle",
            "0.5",
        ])
        .args([
            "--out",
            json.to_str().unwrap(),
            "--chart",
            svg.to_str().unwrap(),
        ])
        .args(args)
        .output()
        .expect("the gateway binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "bench failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg"), "chart is SVG");
    (result, stdout)
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn every_packet_sent_is_accounted_for_and_every_stream_reaches_the_engine() {
    let (result, stdout) = bench("clean", &["--streams", "4", "--duration", "3"]);
    assert!(stdout.contains("packet → engine"), "{stdout}");
    let totals = &result["totals"];
    assert_eq!(u(&totals["streams"]), 4);
    assert_eq!(u(&totals["sessions_without_end"]), 0);
    assert!(u(&totals["datagrams_sent"]) > 4 * 100, "{totals}");
    assert_eq!(totals["unaccounted"].as_i64(), Some(0), "{totals}");
    assert_eq!(u(&totals["gateway_lost"]), 0);
    assert_eq!(u(&totals["events_lost"]), 0, "{totals}");
    let streams = result["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 4);
    for s in streams {
        assert_eq!(s["gateway_received"], s["datagrams_sent"], "{s}");
        assert!(
            u(&s["engine_chunks"]) > 0,
            "the null engine got no audio: {s}"
        );
        // Call mode: the engine hears the whole stream, up to the last partial chunk.
        let sent_ms = u(&s["packets"]) * 20;
        assert!(u(&s["engine_audio_ms"]) + 200 >= sent_ms, "{s}");
        assert!(s["latency"]["samples"].as_u64().unwrap() > 0, "{s}");
    }
    let steps = result["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(u(&steps[0]["streams"]), 4);
}

#[test]
fn injected_loss_is_the_loss_the_gateway_reports() {
    let (result, _) = bench(
        "impaired",
        &[
            "--streams",
            "3",
            "--duration",
            "4",
            "--loss",
            "4",
            "--loss-burst",
            "2",
            "--duplicate",
            "2",
            "--reorder",
            "2",
            "--jitter-ms",
            "8",
            "--seed",
            "7",
        ],
    );
    let totals = &result["totals"];
    assert!(u(&totals["injected"]["lost"]) > 0, "{totals}");
    assert!(u(&totals["injected"]["duplicated"]) > 0, "{totals}");
    assert_eq!(totals["unaccounted"].as_i64(), Some(0), "{totals}");
    for s in result["streams"].as_array().unwrap() {
        assert_eq!(s["gateway_lost"], s["injected"]["lost"], "{s}");
        assert_eq!(s["gateway_duplicate"], s["injected"]["duplicated"], "{s}");
        assert_eq!(s["gateway_received"], s["datagrams_sent"], "{s}");
        assert!(u(&s["engine_chunks"]) > 0, "{s}");
    }
}

#[test]
fn bad_options_are_named_before_anything_starts() {
    let output = Command::new(env!("CARGO_BIN_EXE_asr-gateway"))
        .args(["bench", "--codec", "mp3", "--audio", "tests/fixtures"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--codec \"mp3\""), "{stderr}");
}
