//! Endpointing on the clock: RTP that stops right after speech (as Asterisk's silent
//! bridge does) still ends the utterance after the VAD hangover, and its final arrives
//! while the session is open, not when the idle timeout ends the session.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{assert_heard, fixture, GatewayProcess};

/// `yes-interested.wav` has 0.5 s of silence, speech, then 1.2 s of silence (3.07 s).
const SPEECH_END_S: f64 = 3.07 - 1.2;

#[test]
fn rtp_stopping_100_ms_after_speech_gets_its_final_before_the_session_ends() {
    // An idle timeout far beyond the test's patience: only endpointing on the clock can
    // end this utterance in time.
    let mut gw = GatewayProcess::start("[session]\nidle_timeout_ms = 120000\n");
    let (id, target) = gw.create_session("rtp-stops");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
        .arg(fixture("yes-interested.wav"))
        .args(["-t", &format!("{:.2}", SPEECH_END_S + 0.1)])
        .args(["-ac", "1", "-ar", "8000", "-c:a", "pcm_mulaw"])
        .args(["-payload_type", "0", "-f", "rtp"])
        .arg(format!("rtp://{target}?pkt_size=172"))
        .status()
        .expect("ffmpeg runs (apt-get install ffmpeg)");
    assert!(status.success(), "ffmpeg failed: {status}");

    let ended = gw.wait_for(&id, "asr.speech.ended", Duration::from_secs(30));
    assert_eq!(ended["data"]["cause"], "silence", "{ended}");
    let final_event = gw.wait_for(&id, "asr.transcript.final", Duration::from_secs(30));
    let kinds: Vec<String> = gw
        .of(&id)
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        !kinds.iter().any(|k| k == "asr.session.ended"),
        "the final came from the session ending, not from endpointing: {kinds:?}"
    );
    let reference = std::fs::read_to_string(fixture("yes-interested.txt")).unwrap();
    assert_heard(
        final_event["data"]["text"].as_str().unwrap_or_default(),
        &reference,
        0.75,
    );
    assert_eq!(gw.delete_session(&id), 202);
    gw.wait_for(&id, "asr.session.ended", Duration::from_secs(30));
}
