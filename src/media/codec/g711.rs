//! G.711 mu-law and A-law decoding through 256-entry tables.
//!
//! The tables are built at compile time from the G.711 segment/mantissa
//! definition. Output is 16-bit linear PCM at 8 kHz: G.711 codes 14-bit
//! (mu-law) or 13-bit (A-law) magnitudes, which are shifted up to the 16-bit
//! range (mu-law peaks at ±32124, A-law at ±32256), as every telephony stack does.

/// Code of mu-law silence (decodes to 0).
pub const ULAW_SILENCE: u8 = 0xFF;
/// Code of A-law silence (decodes to +8, the smallest positive step).
pub const ALAW_SILENCE: u8 = 0xD5;

/// mu-law code → 16-bit linear sample.
pub static ULAW_TO_LINEAR: [i16; 256] = ulaw_table();
/// A-law code → 16-bit linear sample.
pub static ALAW_TO_LINEAR: [i16; 256] = alaw_table();

/// Bias added before mu-law segmentation (33 in 14-bit units, 132 after the
/// 2-bit shift to the 16-bit range).
const ULAW_BIAS: i32 = 0x84;

/// mu-law: the code is transmitted inverted; bit 7 set means negative after
/// inversion, bits 6..4 are the segment, bits 3..0 the mantissa.
const fn ulaw_decode(code: u8) -> i16 {
    let u = !code;
    let segment = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << segment) - ULAW_BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// A-law: even bits are inverted on the line (XOR 0x55); bit 7 set means
/// positive; segment 0 is linear, segments 1..7 carry an implicit leading 1.
/// Each value is the middle of its quantisation interval.
const fn alaw_decode(code: u8) -> i16 {
    let a = code ^ 0x55;
    let segment = ((a >> 4) & 0x07) as i32;
    let mantissa = (a & 0x0F) as i32;
    let magnitude = if segment == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (segment - 1)
    };
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn ulaw_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = ulaw_decode(code as u8);
        code += 1;
    }
    table
}

const fn alaw_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = alaw_decode(code as u8);
        code += 1;
    }
    table
}

/// Decode mu-law bytes, appending one sample per byte to `out`.
#[inline]
pub fn decode_ulaw(payload: &[u8], out: &mut Vec<i16>) {
    out.extend(payload.iter().map(|&b| ULAW_TO_LINEAR[b as usize]));
}

/// Decode A-law bytes, appending one sample per byte to `out`.
#[inline]
pub fn decode_alaw(payload: &[u8], out: &mut Vec<i16>) {
    out.extend(payload.iter().map(|&b| ALAW_TO_LINEAR[b as usize]));
}

/// Encode one 16-bit sample to mu-law (for tests, load generation and replies).
pub fn encode_ulaw(sample: i16) -> u8 {
    // Work in 14-bit magnitude + bias, as G.711 defines it, at the 16-bit scale.
    let sign = if sample < 0 { 0x80u8 } else { 0 };
    let magnitude = (sample as i32).unsigned_abs().min(32635) as i32 + ULAW_BIAS;
    // Segment = position of the leading 1 above bit 7.
    let segment = (31 - magnitude.leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = ((magnitude >> (segment + 3)) & 0x0F) as u8;
    !(sign | ((segment as u8) << 4) | mantissa)
}

/// Encode one 16-bit sample to A-law (for tests, load generation and replies).
pub fn encode_alaw(sample: i16) -> u8 {
    let sign = if sample >= 0 { 0x80u8 } else { 0 };
    // A-law is 13-bit: drop 3 bits of the 16-bit scale.
    let magnitude = ((sample as i32).unsigned_abs().min(32767) >> 3) as i32;
    let (segment, mantissa) = if magnitude < 32 {
        (0, (magnitude >> 1) as u8)
    } else {
        let segment = 31 - magnitude.leading_zeros() as i32 - 4;
        (segment, ((magnitude >> segment) & 0x0F) as u8)
    };
    (sign | ((segment as u8) << 4) | mantissa) ^ 0x55
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ffmpeg's pcm_mulaw / pcm_alaw decoders on all 256 codes (see tests/fixtures/codec/README.md).
    const FFMPEG_ULAW: &[u8] = include_bytes!("../../../tests/fixtures/codec/g711_ulaw_all.s16le");
    const FFMPEG_ALAW: &[u8] = include_bytes!("../../../tests/fixtures/codec/g711_alaw_all.s16le");

    fn s16le(bytes: &[u8]) -> Vec<i16> {
        bytes
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn tables_match_ffmpeg() {
        assert_eq!(ULAW_TO_LINEAR.to_vec(), s16le(FFMPEG_ULAW));
        assert_eq!(ALAW_TO_LINEAR.to_vec(), s16le(FFMPEG_ALAW));
    }

    #[test]
    fn known_points() {
        assert_eq!(ULAW_TO_LINEAR[ULAW_SILENCE as usize], 0);
        assert_eq!(ULAW_TO_LINEAR[0x7F], 0);
        assert_eq!(ULAW_TO_LINEAR[0x00], -32124);
        assert_eq!(ULAW_TO_LINEAR[0x80], 32124);
        assert_eq!(ALAW_TO_LINEAR[ALAW_SILENCE as usize], 8);
        assert_eq!(ALAW_TO_LINEAR[0x55], -8);
        assert_eq!(ALAW_TO_LINEAR[0xAA], 32256);
        assert_eq!(ALAW_TO_LINEAR[0x2A], -32256);
    }

    #[test]
    fn tables_are_odd_and_monotonic_per_sign() {
        // Within one sign, a larger code magnitude means a larger amplitude.
        for i in 0..127usize {
            // mu-law: 0x80..0xFF positive, decreasing towards 0xFF.
            assert!(ULAW_TO_LINEAR[0x80 + i] > ULAW_TO_LINEAR[0x81 + i]);
            assert_eq!(ULAW_TO_LINEAR[0x80 + i], -ULAW_TO_LINEAR[i]);
            assert_eq!(ALAW_TO_LINEAR[0x80 + i], -ALAW_TO_LINEAR[i]);
        }
    }

    #[test]
    fn encoders_invert_the_tables() {
        for code in 0..=255u8 {
            let u = ULAW_TO_LINEAR[code as usize];
            // 0x7F and 0xFF both decode to 0; the encoder picks the positive one.
            let expected = if code == 0x7F { 0xFF } else { code };
            assert_eq!(encode_ulaw(u), expected, "ulaw {code:#04x} -> {u}");
            let a = ALAW_TO_LINEAR[code as usize];
            assert_eq!(encode_alaw(a), code, "alaw {code:#04x} -> {a}");
        }
    }

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let u = ULAW_TO_LINEAR[encode_ulaw(s) as usize] as i32;
            let a = ALAW_TO_LINEAR[encode_alaw(s) as usize] as i32;
            let s = s as i32;
            // Step size doubles per segment: at most 1/16 of the magnitude, floor 8 (16-bit scale).
            let tol = (s.abs() / 16).max(8) + 1;
            assert!((u - s).abs() <= tol.max(s.abs() - 32124), "ulaw {s} -> {u}");
            assert!((a - s).abs() <= tol.max(s.abs() - 32256), "alaw {s} -> {a}");
        }
    }

    #[test]
    fn decode_appends() {
        let mut out = vec![7];
        decode_ulaw(&[0xFF, 0x80], &mut out);
        decode_alaw(&[0xD5], &mut out);
        assert_eq!(out, vec![7, 0, 32124, 8]);
    }
}
