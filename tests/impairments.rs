//! Loss, reordering and duplication injected on the wire are reported exactly in
//! `asr.session.ended`, and speech is still recognized.

mod common;

use std::time::Duration;

use asr_gateway::sender::{self, Impairments, SendOptions};
use common::{assert_heard, fixture, GatewayProcess};

#[test]
fn injected_loss_reorder_and_duplicates_are_reported_exactly() {
    let mut gw = GatewayProcess::start("");
    let (id, target) = gw.create_session("impaired-1");
    let mut options = SendOptions::pcmu();
    options.impairments = Impairments {
        loss: 0.03,
        duplicate: 0.03,
        reorder: 0.03,
        seed: 11,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt
        .block_on(sender::send_wav(
            &fixture("two-phrases.wav"),
            target,
            &options,
        ))
        .unwrap();
    let injected = report.injected;
    assert!(
        injected.lost > 0 && injected.duplicated > 0 && injected.reordered > 0,
        "{injected:?}"
    );
    std::thread::sleep(Duration::from_millis(900));
    gw.delete_session(&id);
    let ended = gw.wait_for(&id, "asr.session.ended", Duration::from_secs(90));
    let stats = &ended["data"]["stats"];
    assert_eq!(stats["lost"].as_u64(), Some(injected.lost), "{ended}");
    assert_eq!(
        stats["duplicate"].as_u64(),
        Some(injected.duplicated),
        "{ended}"
    );
    assert_eq!(
        stats["reordered"].as_u64(),
        Some(injected.reordered),
        "{ended}"
    );
    assert_eq!(stats["late"].as_u64(), Some(0), "{ended}");
    assert_eq!(
        stats["received"].as_u64(),
        Some(report.datagrams),
        "{ended}"
    );
    // Concealment keeps media time aligned with what was sent.
    let duration = ended["data"]["duration_ms"].as_u64().unwrap();
    assert!(
        duration.abs_diff(report.duration_ms) <= 40,
        "media {duration} ms vs sent {} ms",
        report.duration_ms
    );
    assert_heard(
        &gw.transcript(&id),
        "i would like to pay my bill thank you goodbye",
        0.6,
    );
}
