//! Recognition fidelity over real RTP: the gateway's WER against the offline WER of the
//! same engine on the same files (`bench`'s baseline), on the corpus of real human speech
//! (tests/fixtures/speech) and the bundled fixtures, over u-law, clean and with loss and
//! jitter. The goals of issue 11: ratio ≤ 1.02 clean, ≤ 1.15 with 5 % loss and 40 ms jitter.
#![cfg(feature = "whisper")]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use serde_json::Value;

/// One bench at a time: each runs its own gateway and engine on the machine's cores.
static SERIAL: Mutex<()> = Mutex::new(());

/// Run the bench with the embedded engine, one pass of every clip in `audio`, u-law.
fn bench(name: &str, audio: &str, extra: &[&str]) -> Value {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("asrgw-fidelity-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("result.json");
    let clips = std::fs::read_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(audio))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "wav"))
        })
        .count();
    let output = Command::new(env!("CARGO_BIN_EXE_asr-gateway"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "bench", "--quiet", "--engine", "embedded", "--codec", "pcmu",
        ])
        .args(["--audio", audio, "--loops", "1", "--ramp", "0.5"])
        .args(["--streams", &clips.to_string(), "--duration", "10"])
        .args(["--out", json.to_str().unwrap()])
        .args(["--chart", dir.join("chart.svg").to_str().unwrap()])
        .args(extra)
        .output()
        .expect("the gateway binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{stdout}");
    serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
}

/// Gateway WER, offline WER and their ratio from a bench result.
fn ratio(result: &Value) -> (f64, f64, f64) {
    let totals = &result["totals"];
    let offline = &totals["offline"];
    assert_eq!(offline["telephone_path"], "ulaw", "{offline}");
    assert_eq!(offline["offline_failures"], 0, "{offline}");
    // Every clip was played whole and scored, as it was offline.
    assert_eq!(
        totals["wer_reference_words"], offline["offline_reference_words"],
        "{totals}"
    );
    let gateway = totals["wer"].as_f64().expect("gateway WER");
    let offline_wer = offline["offline_wer"].as_f64().expect("offline WER");
    let ratio = offline["wer_ratio"]
        .as_f64()
        .unwrap_or_else(|| panic!("no ratio: gateway {gateway}, offline {offline_wer}"));
    (gateway, offline_wer, ratio)
}

#[test]
fn real_speech_over_clean_ulaw_rtp_is_heard_as_offline() {
    let (gateway, offline, ratio) = ratio(&bench("speech-clean", "tests/fixtures/speech", &[]));
    assert!(
        ratio <= 1.02,
        "gateway WER {gateway:.3}, offline {offline:.3}: ratio {ratio:.3} above 1.02"
    );
}

#[test]
fn real_speech_with_5_percent_loss_and_40_ms_jitter_stays_within_15_percent() {
    let lossy = ["--loss", "5", "--jitter-ms", "40", "--seed", "11"];
    let (gateway, offline, ratio) = ratio(&bench("speech-lossy", "tests/fixtures/speech", &lossy));
    assert!(
        ratio <= 1.15,
        "gateway WER {gateway:.3}, offline {offline:.3}: ratio {ratio:.3} above 1.15"
    );
}

#[test]
fn bundled_fixtures_over_clean_ulaw_rtp_are_heard_as_offline() {
    let (gateway, offline, ratio) = ratio(&bench("fixtures", "tests/fixtures", &[]));
    assert!(
        ratio <= 1.02,
        "gateway WER {gateway:.3}, offline {offline:.3}: ratio {ratio:.3} above 1.02"
    );
}
