//! Encoders for what the sender emits: G.711 mu-law/A-law and big-endian L16.

use crate::media::codec::CodecKind;

/// Append the payload for `pcm` in `codec`. Only pcmu, pcma and L16 reach here.
pub fn encode(codec: CodecKind, pcm: &[i16], out: &mut Vec<u8>) {
    match codec {
        CodecKind::Pcmu => out.extend(pcm.iter().map(|&s| linear_to_ulaw(s))),
        CodecKind::Pcma => out.extend(pcm.iter().map(|&s| linear_to_alaw(s))),
        CodecKind::L16 { .. } => out.extend(pcm.iter().flat_map(|s| s.to_be_bytes())),
        _ => unreachable!("packetize rejects other codecs"),
    }
}

/// G.711 mu-law: bias 132, clip at 32635, 3-bit segment + 4-bit mantissa, all bits inverted.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut magnitude = sample as i32;
    let sign = if magnitude < 0 {
        magnitude = -magnitude;
        0x80
    } else {
        0
    };
    let magnitude = magnitude.min(CLIP) + BIAS;
    // Segment = position of the highest set bit above bit 7.
    let segment = (31 - (magnitude as u32).leading_zeros())
        .saturating_sub(7)
        .min(7) as i32;
    let mantissa = (magnitude >> (segment + 3)) & 0x0F;
    !(sign | (segment << 4) as u8 | mantissa as u8)
}

/// G.711 A-law on the 13-bit magnitude, even bits inverted (XOR 0x55).
pub fn linear_to_alaw(sample: i16) -> u8 {
    let (sign, magnitude) = if sample >= 0 {
        (0x80u8, (sample as i32) >> 3)
    } else {
        (0x00u8, (-(sample as i32) - 1) >> 3)
    };
    let magnitude = magnitude.min(0x0FFF);
    let code = if magnitude < 32 {
        (magnitude >> 1) as u8
    } else {
        let segment = (31 - (magnitude as u32).leading_zeros()) as i32 - 4;
        ((segment << 4) as u8) | ((magnitude >> segment) & 0x0F) as u8
    };
    (sign | code) ^ 0x55
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::Decoder;

    fn roundtrip(codec: CodecKind) -> Vec<(i16, i16)> {
        let pcm: Vec<i16> = (-32768..=32767).step_by(97).map(|s| s as i16).collect();
        let mut payload = Vec::new();
        encode(codec, &pcm, &mut payload);
        let mut decoded = Vec::new();
        Decoder::new(codec)
            .unwrap()
            .decode(&payload, &mut decoded)
            .unwrap();
        pcm.into_iter().zip(decoded).collect()
    }

    #[test]
    fn ulaw_roundtrip_error_is_within_the_segment_step() {
        for (orig, back) in roundtrip(CodecKind::Pcmu) {
            let err = (orig as i32 - back as i32).abs();
            // Step doubles per segment; the largest is 1024, so the error stays under 1/32 of the value + 1 step at zero.
            assert!(err <= (orig as i32).abs() / 16 + 8, "{orig} -> {back}");
        }
    }

    #[test]
    fn alaw_roundtrip_error_is_within_the_segment_step() {
        for (orig, back) in roundtrip(CodecKind::Pcma) {
            let err = (orig as i32 - back as i32).abs();
            assert!(err <= (orig as i32).abs() / 16 + 16, "{orig} -> {back}");
        }
    }

    #[test]
    fn silence_codes_match_asterisk() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_alaw(0), 0xD5);
    }

    #[test]
    fn l16_is_big_endian() {
        let mut out = Vec::new();
        encode(CodecKind::L16 { rate: 16000 }, &[0x0102, -2], &mut out);
        assert_eq!(out, vec![0x01, 0x02, 0xFF, 0xFE]);
    }
}
