//! Payload encoding for what the sender emits: G.711 mu-law/A-law and big-endian L16.

use crate::media::codec::{g711, CodecKind};

/// Append the payload for `pcm` in `codec`. Only pcmu, pcma and L16 reach here.
pub fn encode(codec: CodecKind, pcm: &[i16], out: &mut Vec<u8>) {
    match codec {
        CodecKind::Pcmu => out.extend(pcm.iter().map(|&s| g711::encode_ulaw(s))),
        CodecKind::Pcma => out.extend(pcm.iter().map(|&s| g711::encode_alaw(s))),
        CodecKind::L16 { .. } => out.extend(pcm.iter().flat_map(|s| s.to_be_bytes())),
        _ => unreachable!("packetize rejects other codecs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::Decoder;

    #[test]
    fn encoded_payloads_decode_back_within_g711_steps() {
        let pcm: Vec<i16> = (-32768..=32767).step_by(97).map(|s| s as i16).collect();
        for codec in [CodecKind::Pcmu, CodecKind::Pcma] {
            let mut payload = Vec::new();
            encode(codec, &pcm, &mut payload);
            assert_eq!(payload.len(), pcm.len());
            let mut decoded = Vec::new();
            Decoder::new(codec)
                .unwrap()
                .decode(&payload, &mut decoded)
                .unwrap();
            for (orig, back) in pcm.iter().zip(&decoded) {
                let err = (*orig as i32 - *back as i32).abs();
                assert!(
                    err <= (*orig as i32).abs() / 16 + 16,
                    "{codec:?}: {orig} -> {back}"
                );
            }
        }
    }

    #[test]
    fn l16_is_big_endian() {
        let mut out = Vec::new();
        encode(CodecKind::L16 { rate: 16000 }, &[0x0102, -2], &mut out);
        assert_eq!(out, vec![0x01, 0x02, 0xFF, 0xFE]);
    }
}
