//! Fuzz target: the AudioSocket stream decoder (`media::audiosocket::Decoder`) fed an
//! arbitrary byte stream cut at arbitrary points, and each audio frame framed as RTP the way
//! the ingest does (`ingest::rtp_framing::RtpFramer`), which must parse back.
//!
//! Input: byte 0 picks the payload bound (the default, or a small one so the fatal
//! "too large" path is reached), byte 1 seeds the cut points; the rest is the stream.
#![no_main]

use asr_gateway::ingest::rtp_framing::{RtpFramer, StreamFormat};
use asr_gateway::media::audiosocket::{Decoder, FrameKind, DEFAULT_MAX_PAYLOAD, HEADER_LEN};
use asr_gateway::media::rtp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let [bound, cut_seed, stream @ ..] = input else {
        return;
    };
    let max_payload = if bound & 1 == 0 {
        DEFAULT_MAX_PAYLOAD
    } else {
        usize::from(*bound)
    };
    let mut decoder = Decoder::with_max_payload(max_payload);
    let mut framer = RtpFramer::default();
    let mut pcm = Vec::new();
    let mut rest = stream;
    let mut cut = usize::from(*cut_seed) + 1;
    let mut pushed = 0usize;
    while !rest.is_empty() {
        let (piece, tail) = rest.split_at(cut.min(rest.len()));
        rest = tail;
        // Vary the cut so frames straddle pushes at different offsets.
        cut = cut * 7 % 61 + 1;
        decoder.push(piece);
        pushed += piece.len();
        while let Some(result) = decoder.poll() {
            let Ok(frame) = result else {
                continue;
            };
            assert!(frame.payload.len() <= max_payload);
            pcm.clear();
            frame
                .decode_audio(&mut pcm)
                .expect("validated audio is whole samples");
            if let FrameKind::Audio { rate } = frame.kind {
                assert_eq!(pcm.len() * 2, frame.payload.len());
                frame_as_rtp(&mut framer, rate, frame.payload);
            }
            let _ = (frame.uuid(), frame.dtmf());
        }
        // Held bytes never exceed what came in, nor one frame once drained.
        assert!(decoder.buffered() <= pushed);
        assert!(decoder.is_failed() || decoder.buffered() < HEADER_LEN + max_payload);
    }
});

/// What the AudioSocket ingest does with an audio frame: it must come out as valid RTP
/// carrying the same samples in network byte order.
fn frame_as_rtp(framer: &mut RtpFramer, rate: u32, payload: &[u8]) {
    let format = StreamFormat::SlinLe { rate };
    let packet = framer.frame(format, payload);
    let parsed = rtp::parse(&packet).expect("framed audio is valid RTP");
    assert_eq!(parsed.payload.len(), payload.len());
    for (le, be) in payload.chunks_exact(2).zip(parsed.payload.chunks_exact(2)) {
        assert_eq!([le[1], le[0]], [be[0], be[1]]);
    }
}
