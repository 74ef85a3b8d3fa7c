//! ffmpeg sends fixture speech as RTP the way Asterisk does (PCMU, PCMA, slin16) to `serve`;
//! the final transcript must contain the expected words.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{assert_heard, fixture, GatewayProcess};

/// Send `wav` with ffmpeg to `target`: 20 ms packets with Asterisk's static payload types.
fn ffmpeg_send(wav: &str, target: std::net::SocketAddr, codec: &str) {
    let (rate, encoder, pt, packet) = match codec {
        "pcmu" => ("8000", "pcm_mulaw", "0", 12 + 160),
        "pcma" => ("8000", "pcm_alaw", "8", 12 + 160),
        "slin16" => ("16000", "pcm_s16be", "118", 12 + 640),
        other => panic!("no ffmpeg recipe for {other}"),
    };
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
        .arg(fixture(wav))
        .args([
            "-ac",
            "1",
            "-ar",
            rate,
            "-c:a",
            encoder,
            "-payload_type",
            pt,
            "-f",
            "rtp",
        ])
        .arg(format!("rtp://{target}?pkt_size={packet}"))
        .status()
        .expect("ffmpeg runs (apt-get install ffmpeg)");
    assert!(status.success(), "ffmpeg failed: {status}");
}

fn transcribe_with_ffmpeg(codec: &str, wav: &str, expected_codec: &str) {
    let mut gw = GatewayProcess::start("");
    let (id, target) = gw.create_session(&format!("ffmpeg-{codec}"));
    ffmpeg_send(wav, target, codec);
    // Let the VAD hangover close the utterance on silence, then end the call.
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(gw.delete_session(&id), 202);
    let ended = gw.wait_for(&id, "asr.session.ended", Duration::from_secs(60));
    assert_eq!(ended["data"]["codec"], expected_codec, "{ended}");
    assert_eq!(ended["data"]["stats"]["lost"], 0, "{ended}");
    let reference = std::fs::read_to_string(fixture(wav).with_extension("txt")).unwrap();
    assert_heard(&gw.transcript(&id), &reference, 0.75);
    let kinds: Vec<_> = gw
        .of(&id)
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("asr.session.started"),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"asr.speech.started".to_owned()),
        "{kinds:?}"
    );
    assert!(kinds.contains(&"asr.speech.ended".to_owned()), "{kinds:?}");
}

#[test]
fn pcmu_from_ffmpeg_is_transcribed() {
    transcribe_with_ffmpeg("pcmu", "call-back.wav", "pcmu");
}

#[test]
fn pcma_from_ffmpeg_is_transcribed() {
    transcribe_with_ffmpeg("pcma", "balance.wav", "pcma");
}

#[test]
fn slin16_from_ffmpeg_is_transcribed() {
    transcribe_with_ffmpeg("slin16", "yes-interested.wav", "l16/16000");
}
