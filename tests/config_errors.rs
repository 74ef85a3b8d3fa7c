//! Bad configuration exits non-zero before any port is bound, naming the key and what it allows.

mod common;

use std::process::{Command, Output};

fn run(args: &[&str], toml: &str, env: &[(&str, &str)]) -> Output {
    let dir = std::env::temp_dir().join(format!(
        "asrgw-config-{}-{}",
        std::process::id(),
        toml.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_asr-gateway"));
    cmd.args(args).arg("--config").arg(&path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn serve_fails_with(toml: &str, env: &[(&str, &str)], needles: &[&str]) {
    // Hold the HTTP port: a gateway that got as far as binding would fail differently.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let toml = format!("[server]\nhttp_listen = \"127.0.0.1:{port}\"\n{toml}");
    let out = run(&["serve"], &toml, env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve accepted a bad config");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "stderr lacks {needle:?}:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("Address already in use"),
        "bound a port before validating:\n{stderr}"
    );
}

#[test]
fn bad_enum_value_names_key_and_choices() {
    serve_fails_with(
        "[asr]\nmode = \"sentence\"\n",
        &[],
        &["asr.mode", "utterance", "call"],
    );
}

#[test]
fn out_of_range_value_names_key_and_range() {
    serve_fails_with(
        "[vad]\naggressiveness = 5\n",
        &[],
        &["vad.aggressiveness", "0, 1, 2 or 3"],
    );
    serve_fails_with("[asr]\nchunk_ms = 5\n", &[], &["asr.chunk_ms", "20..=100"]);
}

#[test]
fn unknown_key_is_named() {
    serve_fails_with(
        "[session]\nidle_timeout = 5\n",
        &[],
        &["idle_timeout", "idle_timeout_ms"],
    );
}

#[test]
fn environment_override_is_validated() {
    serve_fails_with(
        "",
        &[("ASRGW_VAD__FRAME_MS", "25")],
        &["vad.frame_ms", "10, 20 or 30"],
    );
}

#[test]
fn missing_model_is_named_before_binding() {
    serve_fails_with(
        "[engine]\nmodel_dir = \"/nonexistent/whisper\"\n",
        &[],
        &["/nonexistent/whisper", "model.bin", "fetch-model.sh"],
    );
}

#[test]
fn toml_syntax_error_is_reported() {
    serve_fails_with("[vad\nx=1\n", &[], &["not valid TOML"]);
}

#[test]
fn check_config_accepts_a_valid_file() {
    let out = run(&["check-config"], "[vad]\nhangover_ms = 800\n", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("hangover_ms: 800"));
}
