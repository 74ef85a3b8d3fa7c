//! Unit tests for `media::rtp`.
use super::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

const HDR: RtpHeader = RtpHeader {
    marker: true,
    payload_type: 0,
    sequence: 0xBEEF,
    timestamp: 0xDEAD_BEEF,
    ssrc: 0x1234_5678,
};

/// A datagram with the given CSRC count, extension words and padding around `payload`.
fn build(csrcs: u8, ext_words: Option<u16>, padding: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    HDR.write_to(&mut v);
    v[0] |= csrcs & 0x0f;
    for i in 0..csrcs as u32 {
        v.extend_from_slice(&(0xC000_0000 + i).to_be_bytes());
    }
    if let Some(words) = ext_words {
        v[0] |= 0x10;
        v.extend_from_slice(&0xBEDEu16.to_be_bytes());
        v.extend_from_slice(&words.to_be_bytes());
        v.extend(std::iter::repeat_n(0xEE, 4 * words as usize));
    }
    v.extend_from_slice(payload);
    if padding > 0 {
        v[0] |= 0x20;
        v.extend(std::iter::repeat_n(0, padding as usize - 1));
        v.push(padding);
    }
    v
}

#[test]
fn parses_plain_pcmu() {
    let payload = [0xFFu8; 160];
    let d = build(0, None, 0, &payload);
    assert_eq!(d.len(), 172);
    let p = parse(&d).unwrap();
    assert_eq!(p.header, HDR);
    assert_eq!(p.payload, &payload[..]);
}

#[test]
fn honours_cc_x_p_in_every_combination() {
    let payload: Vec<u8> = (1..=7).collect();
    for csrcs in [0u8, 1, 15] {
        for ext in [None, Some(0u16), Some(3)] {
            for padding in [0u8, 1, 4, 255] {
                let d = build(csrcs, ext, padding, &payload);
                let p = parse(&d).unwrap_or_else(|e| panic!("{csrcs} {ext:?} {padding}: {e}"));
                assert_eq!(p.payload, &payload[..], "{csrcs} {ext:?} {padding}");
                assert_eq!(p.header, HDR);
            }
        }
    }
}

#[test]
fn payload_may_be_empty() {
    assert_eq!(parse(&build(0, None, 0, &[])).unwrap().payload, b"");
    assert_eq!(parse(&build(2, Some(1), 3, &[])).unwrap().payload, b"");
}

#[test]
fn rejects_too_short() {
    for len in 0..HEADER_LEN {
        let d = vec![0x80; len];
        assert_eq!(parse(&d), Err(RtpError::TooShort { len }));
    }
}

#[test]
fn rejects_bad_version() {
    for version in [0u8, 1, 3] {
        let mut d = build(0, None, 0, &[1, 2, 3]);
        d[0] = (d[0] & 0x3f) | (version << 6);
        assert_eq!(parse(&d), Err(RtpError::BadVersion { version }));
    }
}

#[test]
fn rejects_csrc_overrun() {
    let mut d = build(0, None, 0, &[0; 8]);
    d[0] |= 3; // 3 CSRCs need 24 bytes, there are 20
    assert_eq!(
        parse(&d),
        Err(RtpError::CsrcOverrun {
            csrc_count: 3,
            needed: 24,
            len: 20
        })
    );
    // Exactly enough is fine.
    d[0] = (d[0] & 0xf0) | 2;
    assert_eq!(parse(&d).unwrap().payload, b"");
}

#[test]
fn rejects_extension_overrun() {
    // X set but not even the 4-byte extension preamble fits.
    let mut d = build(1, None, 0, &[1, 2]);
    d[0] |= 0x10;
    assert_eq!(
        parse(&d),
        Err(RtpError::ExtensionOverrun {
            needed: 20,
            len: 18
        })
    );
    // The preamble fits, the declared 2 words do not.
    let mut d = build(0, Some(2), 0, &[]);
    d.truncate(d.len() - 1);
    assert_eq!(
        parse(&d),
        Err(RtpError::ExtensionOverrun {
            needed: 24,
            len: 23
        })
    );
}

#[test]
fn rejects_padding_overrun() {
    // 2 payload bytes then padding count 5: only 3 bytes after the header.
    let mut d = build(0, None, 0, &[1, 2, 5]);
    d[0] |= 0x20;
    assert_eq!(
        parse(&d),
        Err(RtpError::PaddingOverrun {
            padding: 5,
            available: 3
        })
    );
    // Padding may not eat into the extension.
    let mut d = build(0, Some(1), 0, &[2]);
    d[0] |= 0x20;
    assert_eq!(
        parse(&d),
        Err(RtpError::PaddingOverrun {
            padding: 2,
            available: 1
        })
    );
    // P set with nothing after the header: the count would be a header byte.
    let mut d = build(0, None, 0, &[]);
    d[0] |= 0x20;
    assert!(matches!(
        parse(&d),
        Err(RtpError::PaddingOverrun { available: 0, .. })
    ));
}

#[test]
fn rejects_zero_padding() {
    let mut d = build(0, None, 0, &[1, 2, 0]);
    d[0] |= 0x20;
    assert_eq!(parse(&d), Err(RtpError::ZeroPadding));
}

#[test]
fn reasons_are_distinct_snake_case() {
    let all = [
        RtpError::TooShort { len: 0 },
        RtpError::BadVersion { version: 0 },
        RtpError::CsrcOverrun {
            csrc_count: 1,
            needed: 16,
            len: 12,
        },
        RtpError::ExtensionOverrun {
            needed: 16,
            len: 12,
        },
        RtpError::PaddingOverrun {
            padding: 1,
            available: 0,
        },
        RtpError::ZeroPadding,
    ];
    let labels: Vec<_> = all.iter().map(RtpError::reason).collect();
    assert_eq!(
        labels,
        [
            "too_short",
            "bad_version",
            "csrc_overrun",
            "extension_overrun",
            "padding_overrun",
            "zero_padding"
        ]
    );
}

#[test]
fn write_to_round_trips() {
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..1000 {
        let h = RtpHeader {
            marker: rng.random(),
            payload_type: rng.random_range(0..128),
            sequence: rng.random(),
            timestamp: rng.random(),
            ssrc: rng.random(),
        };
        let mut out = vec![0xAA];
        h.write_to(&mut out);
        out.extend_from_slice(b"xyz");
        assert_eq!(out.len(), 1 + HEADER_LEN + 3);
        let p = parse(&out[1..]).unwrap();
        assert_eq!((p.header, p.payload), (h, &b"xyz"[..]));
    }
}

#[test]
fn random_bytes_never_panic_and_payload_stays_inside() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut buf = [0u8; 96];
    let mut ok = 0;
    for _ in 0..200_000 {
        let len = rng.random_range(0..=buf.len());
        rng.fill(&mut buf[..len]);
        if rng.random_bool(0.9) && len > 0 {
            buf[0] = (buf[0] & 0x3f) | 0x80; // mostly V=2 to reach the deeper checks
        }
        let d = &buf[..len];
        if let Ok(p) = parse(d) {
            ok += 1;
            let start = p.payload.as_ptr() as usize - d.as_ptr() as usize;
            assert!(start >= HEADER_LEN && start + p.payload.len() <= len);
        }
    }
    assert!(ok > 1000, "only {ok} random datagrams parsed");
}

#[test]
fn sequence_unwraps_forward_across_wrap() {
    let mut u = SequenceUnwrapper::default();
    let first = u.unwrap(65534);
    assert_eq!(first, 65536 + 65534);
    assert_eq!(u.unwrap(65535), first + 1);
    assert_eq!(u.unwrap(0), first + 2);
    assert_eq!(u.unwrap(1), first + 3);
    // Across many wraps, stepping by 20000.
    let mut seq = 1u16;
    let mut ext = first + 3;
    for _ in 0..20 {
        seq = seq.wrapping_add(20000);
        ext += 20000;
        assert_eq!(u.unwrap(seq), ext);
    }
}

#[test]
fn sequence_reordered_around_wrap_maps_to_previous_cycle() {
    let mut u = SequenceUnwrapper::default();
    let a = u.unwrap(65533);
    let c = u.unwrap(1); // arrives before 65534, 65535, 0
    assert_eq!(c, a + 4);
    assert_eq!(u.unwrap(65535), a + 2);
    assert_eq!(u.unwrap(65534), a + 1);
    assert_eq!(u.unwrap(0), a + 3);
    assert_eq!(u.unwrap(2), a + 5);
}

#[test]
fn sequence_before_the_first_is_representable() {
    let mut u = SequenceUnwrapper::default();
    assert_eq!(u.unwrap(0), 65536);
    assert_eq!(u.unwrap(65535), 65535);
    assert_eq!(u.unwrap(1), 65537);
    // A far-behind value is placed behind, the highest does not move.
    assert_eq!(u.unwrap(1u16.wrapping_sub(32768)), 65537 - 32768);
    assert_eq!(u.unwrap(2), 65538);
}

#[test]
fn timestamp_unwraps_across_wrap_and_reorder() {
    let mut u = TimestampUnwrapper::default();
    let first = u.unwrap(u32::MAX - 159);
    assert_eq!(first, (1 << 32) + u32::MAX as u64 - 159);
    assert_eq!(u.unwrap(160), first + 320);
    assert_eq!(u.unwrap(0), first + 160); // late, from before the wrap's far side
    assert_eq!(u.unwrap(u32::MAX - 159), first);
    assert_eq!(u.unwrap(320), first + 480);
    // A talkspurt jump of 2^31 - 1 is still forward.
    assert_eq!(
        u.unwrap(320u32.wrapping_add(i32::MAX as u32)),
        first + 480 + i32::MAX as u64
    );
}

#[test]
fn telephone_event_parses() {
    let e = TelephoneEvent::parse(&[11, 0x80 | 10, 0x03, 0x20, 0xFF]).unwrap();
    assert_eq!(
        e,
        TelephoneEvent {
            event: 11,
            end: true,
            volume: 10,
            duration: 800
        }
    );
    assert_eq!(e.digit(), Some('#'));
    let e = TelephoneEvent::parse(&[5, 0x40 | 63, 0, 160]).unwrap(); // R bit ignored
    assert_eq!(
        (e.end, e.volume, e.duration, e.digit()),
        (false, 63, 160, Some('5'))
    );
    assert_eq!(
        TelephoneEvent::parse(&[15, 0, 0, 0]).unwrap().digit(),
        Some('D')
    );
    assert_eq!(TelephoneEvent::parse(&[16, 0, 0, 0]).unwrap().digit(), None);
    assert_eq!(
        TelephoneEvent::parse(&[1, 2, 3]),
        Err(TelephoneEventError::TooShort { len: 3 })
    );
}
