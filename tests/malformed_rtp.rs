//! Malformed datagrams, random bytes, foreign sources and oversized requests never crash the
//! gateway; each is counted or refused with a bounded reason.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use asr_gateway::metrics::read_sample;
use asr_gateway::sender::{self, SendOptions};
use common::{assert_heard, fixture, GatewayProcess};
use rand::{Rng, SeedableRng};

fn header(pt: u8, seq: u16) -> Vec<u8> {
    let mut h = vec![0x80, pt, 0, 0, 0, 0, 0, 160, 0, 0, 0, 7];
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h
}

/// One datagram per malformed case of RFC 3550 parsing, with the metric reason it must raise.
fn malformed_cases() -> Vec<(&'static str, Vec<u8>)> {
    let mut bad_version = header(0, 1);
    bad_version[0] = 0x40;
    let mut csrc_overrun = header(0, 2);
    csrc_overrun[0] = 0x80 | 0x0F; // 15 CSRCs promised, none present
    let mut ext_overrun = header(0, 3);
    ext_overrun[0] = 0x90; // X set
    ext_overrun.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x10]); // 16 words promised
    let mut padding_overrun = header(0, 4);
    padding_overrun[0] = 0xA0; // P set
    padding_overrun.extend_from_slice(&[0xFF; 3]);
    padding_overrun.push(200);
    let mut zero_padding = header(0, 5);
    zero_padding[0] = 0xA0;
    zero_padding.extend_from_slice(&[0xFF; 3]);
    zero_padding.push(0);
    vec![
        ("too_short", vec![0x80, 0x00, 0x00]),
        ("bad_version", bad_version),
        ("csrc_overrun", csrc_overrun),
        ("extension_overrun", ext_overrun),
        ("padding_overrun", padding_overrun),
        ("zero_padding", zero_padding),
    ]
}

#[test]
fn malformed_and_random_datagrams_are_counted_and_speech_still_recognized() {
    let mut gw = GatewayProcess::start("");
    let (id, target) = gw.create_session("malformed-1");
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (_, datagram) in malformed_cases() {
        caller.send_to(&datagram, target).unwrap();
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for _ in 0..500 {
        let len = rng.random_range(0..400);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        caller.send_to(&bytes, target).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(gw.healthy(), "gateway died on malformed input");
    let metrics = gw.metrics();
    for (reason, _) in malformed_cases() {
        let n = read_sample(
            &metrics,
            &format!("asrgw_rtp_malformed_total{{reason=\"{reason}\"}}"),
        )
        .unwrap_or(0.0);
        assert!(n >= 1.0, "reason {reason} not counted:\n{metrics}");
    }
    // Real speech from the same caller afterwards is still recognized.
    let (samples, rate) = sender::read_wav(&fixture("balance.wav")).unwrap();
    let packets = sender::packetize(&samples, rate, &SendOptions::pcmu(), 77, 1000).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let socket = tokio::net::UdpSocket::from_std({
            caller.set_nonblocking(true).unwrap();
            caller.try_clone().unwrap()
        })
        .unwrap();
        sender::send_packets(&socket, target, &packets, &SendOptions::pcmu())
            .await
            .unwrap();
    });
    std::thread::sleep(Duration::from_millis(900));
    gw.delete_session(&id);
    let ended = gw.wait_for(&id, "asr.session.ended", Duration::from_secs(60));
    let stats = &ended["data"]["stats"];
    assert!(
        stats["malformed"].as_u64().unwrap() >= malformed_cases().len() as u64,
        "{ended}"
    );
    // A few random datagrams are valid RTP by chance (V=2, a known payload type) and are
    // rightly accepted; every real packet must be too.
    assert!(
        stats["received"].as_u64().unwrap() >= packets.len() as u64,
        "{ended}"
    );
    assert_heard(&gw.transcript(&id), "what is my balance", 0.75);
}

#[test]
fn a_second_source_is_ignored_and_counted() {
    let mut gw = GatewayProcess::start("");
    let (id, target) = gw.create_session("foreign-1");
    let (samples, rate) = sender::read_wav(&fixture("yes-interested.wav")).unwrap();
    let packets = sender::packetize(&samples, rate, &SendOptions::pcmu(), 5, 10).unwrap();
    let intruder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let owner = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // The owner's first packet locks the port; then the intruder sends the same call.
        owner.send_to(&packets[0], target).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        for p in &packets[..20] {
            intruder.send_to(p, target).unwrap();
        }
        sender::send_packets(&owner, target, &packets[1..], &SendOptions::pcmu())
            .await
            .unwrap();
    });
    std::thread::sleep(Duration::from_millis(900));
    gw.delete_session(&id);
    let ended = gw.wait_for(&id, "asr.session.ended", Duration::from_secs(60));
    assert_eq!(ended["data"]["stats"]["foreign_source"], 20, "{ended}");
    assert_eq!(ended["data"]["stats"]["duplicate"], 0, "{ended}");
    let metrics = gw.metrics();
    assert_eq!(
        read_sample(&metrics, "asrgw_rtp_foreign_source_total"),
        Some(20.0)
    );
}

/// `POST /v1/sessions` bodies over a bound are refused, naming the field, never echoing it.
#[test]
fn oversized_session_requests_are_refused_with_a_short_reason() {
    let gw = GatewayProcess::start("");
    let post = |body: serde_json::Value| {
        let r = reqwest::blocking::Client::new()
            .post(format!("http://{}/v1/sessions", gw.http))
            .json(&body)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().unwrap())
    };
    let huge = "x".repeat(100_000);
    for (body, field) in [
        (serde_json::json!({"call_id": huge}), "call_id"),
        (
            serde_json::json!({"call_id": "ok-1", "language": huge}),
            "options.language",
        ),
        (
            serde_json::json!({"call_id": "ok-2", "hints": vec!["hint"; 1000]}),
            "options.hints",
        ),
        (
            serde_json::json!({"call_id": "ok-3", "hints": [huge]}),
            "options.hints",
        ),
    ] {
        let (status, text) = post(body);
        assert_eq!(status, 400, "{text}");
        assert!(text.contains(field), "{text}");
        assert!(
            text.len() < 300,
            "the field is echoed whole: {} bytes",
            text.len()
        );
    }
    let (status, text) = post(serde_json::json!({"call_id": "ok-4", "hints": ["balance"]}));
    assert_eq!(status, 201, "{text}");
    assert!(gw.healthy());
}

/// Spoofed packets with a new SSRC from the caller's own address (as anyone on the path can
/// send), three after every real one, do not reset the stream nor reach the engine: the
/// transcript is the caller's, and the spoofed packets are counted.
#[test]
fn a_spoofed_ssrc_from_the_callers_address_changes_nothing() {
    let mut gw = GatewayProcess::start("");
    let (id, target) = gw.create_session("spoofed-1");
    let (samples, rate) = sender::read_wav(&fixture("balance.wav")).unwrap();
    let packets = sender::packetize(&samples, rate, &SendOptions::pcmu(), 0x1111, 100).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let spoofed = rt.block_on(async {
        let caller = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut seq: u16 = 40_000;
        let mut spoofed = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for p in &packets {
            tick.tick().await;
            caller.send_to(p, target).await.unwrap();
            for _ in 0..3 {
                // Loud noise under another SSRC, in sequence among themselves.
                let mut spoof = header(0, seq);
                spoof[8..12].copy_from_slice(&0xBAD0_0BADu32.to_be_bytes());
                spoof.extend((0..160).map(|_| rng.random::<u8>() & 0x8F));
                caller.send_to(&spoof, target).await.unwrap();
                seq = seq.wrapping_add(1);
                spoofed += 1;
            }
        }
        spoofed
    });
    std::thread::sleep(Duration::from_millis(900));
    gw.delete_session(&id);
    let ended = gw.wait_for(&id, "asr.session.ended", Duration::from_secs(60));
    let stats = &ended["data"]["stats"];
    // The last run of three, never interrupted, is still held when the session ends.
    assert_eq!(
        stats["probation_dropped"].as_u64(),
        Some(spoofed - 3),
        "{ended}"
    );
    assert_eq!(stats["lost"].as_u64(), Some(0), "{ended}");
    assert_heard(&gw.transcript(&id), "what is my balance", 0.75);
    let metrics = gw.metrics();
    assert_eq!(
        read_sample(&metrics, "asrgw_rtp_ssrc_probation_total"),
        Some((spoofed - 3) as f64)
    );
}
