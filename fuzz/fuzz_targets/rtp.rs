//! Fuzz target: RTP header parsing (`media::rtp::parse`) and RFC 4733 telephone-event parsing,
//! with the invariants a caller relies on checked on every accepted datagram.
#![no_main]

use asr_gateway::media::rtp::{self, RtpHeader, TelephoneEvent, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|datagram: &[u8]| {
    // The raw bytes as a telephone-event payload too: the session sees any payload there.
    check_telephone_event(datagram);

    let Ok(packet) = rtp::parse(datagram) else {
        return;
    };
    // The payload is a slice of the datagram, after the fixed header.
    let base = datagram.as_ptr() as usize;
    let start = packet.payload.as_ptr() as usize - base;
    assert!(start >= HEADER_LEN);
    assert!(start + packet.payload.len() <= datagram.len());

    // Writing the header back and parsing it again gives the same header.
    let mut rewritten = Vec::with_capacity(HEADER_LEN + packet.payload.len());
    packet.header.write_to(&mut rewritten);
    assert_eq!(rewritten.len(), HEADER_LEN);
    rewritten.extend_from_slice(packet.payload);
    let again = rtp::parse(&rewritten).expect("a written header parses");
    assert_eq!(again.header, packet.header);
    assert_eq!(again.payload, packet.payload);

    check_telephone_event(packet.payload);
    check_unwrappers(&packet.header, datagram);
});

fn check_telephone_event(payload: &[u8]) {
    match TelephoneEvent::parse(payload) {
        Ok(event) => {
            assert!(payload.len() >= 4);
            assert!(event.volume <= 63);
            assert_eq!(event.digit().is_some(), event.event <= 15);
        }
        Err(_) => assert!(payload.len() < 4),
    }
}

/// Sequence and timestamp unwrapping keep the low bits of every input, whatever the order.
fn check_unwrappers(header: &RtpHeader, datagram: &[u8]) {
    let mut sequences = rtp::SequenceUnwrapper::default();
    let mut timestamps = rtp::TimestampUnwrapper::default();
    let first = sequences.unwrap(header.sequence);
    assert_eq!(first, 65_536 + u64::from(header.sequence));
    assert_eq!(timestamps.unwrap(header.timestamp) as u32, header.timestamp);
    for pair in datagram.chunks_exact(4) {
        let sequence = u16::from_be_bytes([pair[0], pair[1]]);
        assert_eq!(sequences.unwrap(sequence) as u16, sequence);
        let timestamp = u32::from_be_bytes([pair[0], pair[1], pair[2], pair[3]]);
        assert_eq!(timestamps.unwrap(timestamp) as u32, timestamp);
    }
}
