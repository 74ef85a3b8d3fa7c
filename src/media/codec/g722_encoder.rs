//! G.722 (ITU-T, 64 kbit/s SB-ADPCM) encoder: 16 kHz PCM in, one octet per two samples out.
//!
//! Written from the algorithm of ITU-T G.722 (mode 1, 64 kbit/s). The transmit QMF
//! splits each pair of 16 kHz input samples into one lower (0..4 kHz) and one higher
//! (4..8 kHz) sub-band sample at 8 kHz. The lower band is quantised to 6 bits, the
//! higher to 2, each against its adaptive predictor's estimate and scaled by its
//! adaptive quantiser scale. The encoder then adapts exactly as a decoder receiving
//! that codeword would: the scale adaptation and predictor state are the decoder's
//! own (`g722::LowBand`, `g722::HighBand`), so both ends stay in step by construction.
//!
//! Scaling matches the decoder's 16-bit convention: the sub-band signals are half
//! the input's scale (the Recommendation's 15-bit range), and `G722Decoder` on the
//! output reproduces the input at unity gain, 22 samples (1.375 ms) late. The
//! octets are identical to ffmpeg's G.722 encoder's on the test fixtures.

use super::g722::{il6_interval, sat16, HighBand, LowBand, QMF_H};

/// Decision levels of the lower sub-band 6-bit quantiser (Q6): interval `m` (1..30)
/// of the magnitude is `[Q6[m-1], Q6[m])` times the scale, the last one unbounded.
/// Recommendation's units; multiplied by 8 when used, like the output levels.
const Q6: [i32; 30] = [
    0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940,
    1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919,
];

/// Decision level of the higher sub-band 2-bit quantiser (Q2) between its intervals 1 and 2.
const Q2: i32 = 564;

/// 6-bit codeword per (sign, interval): `[0]` positive, `[1]` negative; index 1..=30.
/// The inverse of the decoder's codeword table (ILP and ILN in the Recommendation).
const IL6_CODE: [[u8; 31]; 2] = {
    let mut t = [[0u8; 31]; 2];
    let mut code = 4u8;
    while code < 64 {
        let (negative, interval) = il6_interval(code);
        t[negative as usize][interval] = code;
        code += 1;
    }
    t
};

/// 2-bit codeword per (sign, interval): `[0]` positive, `[1]` negative; index 1..=2.
/// The inverse of the decoder's QQ2 codeword layout.
const IH_CODE: [[u8; 3]; 2] = [[0, 3, 2], [0, 1, 0]];

/// Magnitude as the Recommendation's quantisers take it: one's complement for
/// negative values (`-x - 1`), so that -32768 maps to 32767 without overflow.
#[inline(always)]
fn magnitude(x: i32) -> i32 {
    if x >= 0 {
        x
    } else {
        -(x + 1)
    }
}

/// QUANTL: 6-bit codeword of the lower sub-band difference `el` at scale `det`.
#[inline(always)]
fn quantise_low(el: i32, det: i32) -> u8 {
    let wd = magnitude(el);
    // Thresholds rise with the level (det > 0), so the count of levels at or
    // below `wd` is the interval, less one.
    let interval = 1 + Q6[1..].partition_point(|&q| wd >= ((q << 3) * det) >> 15);
    IL6_CODE[(el < 0) as usize][interval]
}

/// QUANTH: 2-bit codeword of the higher sub-band difference `eh` at scale `det`.
#[inline(always)]
fn quantise_high(eh: i32, det: i32) -> u8 {
    let interval = if magnitude(eh) >= ((Q2 << 3) * det) >> 15 {
        2
    } else {
        1
    };
    IH_CODE[(eh < 0) as usize][interval]
}

/// Transmit QMF: 24-tap analysis filter bank, 2 PCM samples in, 2 sub-band samples out.
#[derive(Debug, Clone, Default)]
struct TransmitQmf {
    /// Input history, newest first: `x[k]` = xin(j - k), j the newest sample.
    x: [i32; 24],
}

impl TransmitQmf {
    /// Push one pair of 16 kHz samples in time order; returns (XL, XH).
    ///
    /// XA = sum h(2i) xin(j - 2i), XB = sum h(2i+1) xin(j - 2i - 1);
    /// XL = XA + XB, XH = XA - XB, at half the input scale (`>> 14`, the
    /// coefficients sum to 2^13). Bound: sum |h| = 12964, so |XL|, |XH| < 25929.
    #[inline(always)]
    fn analyze(&mut self, older: i16, newer: i16) -> (i32, i32) {
        self.x.copy_within(0..22, 2);
        self.x[1] = older as i32;
        self.x[0] = newer as i32;
        let mut xa = 0i32;
        let mut xb = 0i32;
        for i in 0..12 {
            xa += QMF_H[2 * i] * self.x[2 * i];
            xb += QMF_H[2 * i + 1] * self.x[2 * i + 1];
        }
        ((xa + xb) >> 14, (xa - xb) >> 14)
    }
}

/// A G.722 64 kbit/s encoder for one stream. Input: mono 16 kHz i16; output one octet
/// (bits 7..6 the higher band's codeword, 5..0 the lower band's) per two samples.
#[derive(Debug, Clone, Default)]
pub struct G722Encoder {
    low: LowBand,
    high: HighBand,
    qmf: TransmitQmf,
    /// An odd trailing sample of the last call, waiting for its pair's second sample.
    pending: Option<i16>,
}

impl G722Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Encode samples, appending one octet per completed sample pair to `out`.
    ///
    /// The stream is split into pairs regardless of call boundaries: an odd last
    /// sample is held until the next call. No allocation besides `out`'s growth.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
        let mut rest = pcm;
        if let Some(older) = self.pending.take() {
            match rest.split_first() {
                Some((&newer, tail)) => {
                    out.push(self.encode_pair(older, newer));
                    rest = tail;
                }
                None => {
                    self.pending = Some(older);
                    return;
                }
            }
        }
        let pairs = rest.chunks_exact(2);
        self.pending = pairs.remainder().first().copied();
        out.reserve(pairs.len());
        for pair in pairs {
            out.push(self.encode_pair(pair[0], pair[1]));
        }
    }

    /// Back to the initial state, dropping any held sample.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    #[inline(always)]
    fn encode_pair(&mut self, older: i16, newer: i16) -> u8 {
        let (xl, xh) = self.qmf.analyze(older, newer);
        // SUBTRA (16-bit saturating), QUANTL, then the local decoder's adaptation.
        let ilr = quantise_low(sat16(xl - self.low.estimate()), self.low.det());
        self.low.adapt(ilr);
        let ih = quantise_high(sat16(xh - self.high.estimate()), self.high.det());
        self.high.adapt(ih);
        (ih << 6) | ilr
    }
}

#[cfg(test)]
mod tests {
    use super::super::g722::{G722Decoder, QQ2, QQ6};
    use super::*;
    use crate::media::resample::Resampler;

    #[test]
    fn codeword_tables_invert_the_decoders() {
        for negative in [false, true] {
            for (interval, &code) in IL6_CODE[negative as usize].iter().enumerate().skip(1) {
                assert_eq!(il6_interval(code), (negative, interval), "code {code}");
            }
        }
        // Decision levels lie between consecutive output levels of the decoder (QQ6).
        for m in 1..30 {
            assert!(QQ6[m - 1] < Q6[m] && Q6[m] < QQ6[m], "Q6[{m}]");
        }
        const { assert!(QQ2[0] < Q2 && Q2 < QQ2[1]) };
        assert_eq!(IH_CODE[0][1], 3);
        assert_eq!(IH_CODE[0][2], 2);
        assert_eq!(IH_CODE[1][1], 1);
        assert_eq!(IH_CODE[1][2], 0);
    }

    #[test]
    fn quantiser_picks_the_interval() {
        // At det = 4096 the thresholds ((Q << 3) * det) >> 15 are exactly the table values.
        let det = 4096;
        assert_eq!(quantise_low(0, det), 61);
        assert_eq!(quantise_low(-1, det), 63);
        assert_eq!(quantise_low(34, det), 61);
        assert_eq!(quantise_low(35, det), 60);
        assert_eq!(quantise_low(-36, det), 62);
        assert_eq!(quantise_low(72, det), 59);
        assert_eq!(quantise_low(2918, det), 33);
        assert_eq!(quantise_low(2919, det), 32);
        assert_eq!(quantise_low(i16::MAX as i32, det), 32);
        assert_eq!(quantise_low(i16::MIN as i32, det), 4);
        assert_eq!(quantise_high(563, det), 3);
        assert_eq!(quantise_high(564, det), 2);
        assert_eq!(quantise_high(-565, det), 0);
        assert_eq!(quantise_high(-564, det), 1);
        assert_eq!(quantise_high(-5, det), 1);
    }

    fn sine(freq: f64, amplitude: f64, samples: usize) -> Vec<i16> {
        let w = 2.0 * std::f64::consts::PI * freq / 16_000.0;
        (0..samples)
            .map(|n| (amplitude * (w * n as f64).sin()).round() as i16)
            .collect()
    }

    /// Encode in 20 ms frames (320 samples), as the sender does.
    fn encode_all(pcm: &[i16]) -> Vec<u8> {
        let mut enc = G722Encoder::new();
        let mut out = Vec::new();
        for frame in pcm.chunks(320) {
            enc.encode(frame, &mut out);
        }
        out
    }

    fn decode_all(codewords: &[u8]) -> Vec<i16> {
        let mut out = Vec::new();
        let mut dec = G722Decoder::new();
        for packet in codewords.chunks(160) {
            dec.decode(packet, &mut out);
        }
        out
    }

    /// SNR (dB) of `got[k + lag]` against `src[k]` for k from `skip`.
    fn snr_at(src: &[i16], got: &[i16], lag: usize, skip: usize) -> f64 {
        let n = src.len().min(got.len().saturating_sub(lag));
        let (mut sig, mut err) = (0.0f64, 0.0f64);
        for k in skip..n {
            let s = src[k] as f64;
            let e = got[k + lag] as f64 - s;
            sig += s * s;
            err += e * e;
        }
        10.0 * (sig / err).log10()
    }

    /// Best (lag, SNR) for lags 0..48, skipping the first `skip` samples (adaptation).
    fn best_snr(src: &[i16], got: &[i16], skip: usize) -> (usize, f64) {
        (0..48)
            .map(|lag| (lag, snr_at(src, got, lag, skip)))
            .max_by(|x, y| x.1.total_cmp(&y.1))
            .unwrap()
    }

    fn speech_16k() -> Vec<i16> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/balance.wav");
        let reader = hound::WavReader::open(path).unwrap();
        let rate = reader.spec().sample_rate;
        let samples: Vec<i16> = reader.into_samples().map(Result::unwrap).collect();
        let mut resampler = Resampler::new(rate, 16_000).unwrap();
        let mut out = Vec::new();
        resampler.process(&samples, &mut out);
        resampler.flush(&mut out);
        out
    }

    /// Skip 25 ms (400 samples) of scale-factor adaptation from the initial state.
    const SKIP: usize = 400;

    #[test]
    fn sine_round_trip_snr() {
        let src = sine(1000.0, 16384.0, 8000);
        let bytes = encode_all(&src);
        assert_eq!(bytes.len(), src.len() / 2);
        let (lag, snr) = best_snr(&src, &decode_all(&bytes), SKIP);
        eprintln!("G.722 encoder, 1 kHz sine: SNR {snr:.1} dB at lag {lag}");
        assert!(snr > 35.0, "SNR {snr:.1} dB at lag {lag}");
    }

    #[test]
    fn speech_round_trip_snr() {
        let src = speech_16k();
        let out = decode_all(&encode_all(&src));
        let (lag, snr) = best_snr(&src, &out, SKIP);
        eprintln!("G.722 encoder, speech: SNR {snr:.1} dB at lag {lag}");
        // Each 24-tap QMF delays by 11.5 samples, but the sub-band sample made when
        // xin(2n+1) arrives is decoded into output slots 2n, 2n+1: 23 - 1 = 22.
        // Swapping the pair order in `analyze` breaks alias cancellation (~8 dB).
        assert_eq!(lag, 22);
        assert!(snr > 20.0, "SNR {snr:.1} dB");
    }

    #[test]
    fn tones_across_the_band_survive() {
        // Aliasing between the sub-bands cancels only if the transmit QMF pairs the
        // samples the way the receive QMF expects: check near and above 4 kHz too.
        for freq in [300.0, 2500.0, 3900.0, 4100.0, 6000.0] {
            let src = sine(freq, 8000.0, 8000);
            let (lag, snr) = best_snr(&src, &decode_all(&encode_all(&src)), SKIP);
            eprintln!("G.722 encoder, {freq} Hz: SNR {snr:.1} dB at lag {lag}");
            assert!(snr > 15.0, "{freq} Hz: SNR {snr:.1} dB at lag {lag}");
        }
    }

    #[test]
    fn call_boundaries_do_not_matter() {
        let src = speech_16k();
        let whole = encode_all(&src);
        let mut enc = G722Encoder::new();
        let mut split = Vec::new();
        let mut rest = &src[..];
        for size in [1usize, 7, 2, 319, 0, 3].iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at((*size).min(rest.len()));
            enc.encode(now, &mut split);
            rest = later;
        }
        assert_eq!(split, whole);
    }

    #[test]
    fn encode_does_not_reallocate_with_capacity() {
        let src = sine(1000.0, 10000.0, 320 * 10);
        let mut enc = G722Encoder::new();
        let mut out = Vec::with_capacity(160 * 10);
        let ptr = out.as_ptr();
        for frame in src.chunks(320) {
            enc.encode(frame, &mut out);
        }
        assert_eq!(out.len(), 1600);
        assert_eq!(out.as_ptr(), ptr);
    }

    #[test]
    fn extremes_never_panic() {
        let mut enc = G722Encoder::new();
        let mut out = Vec::new();
        let square: Vec<i16> = (0..3200)
            .map(|n| if n / 3 % 2 == 0 { i16::MAX } else { i16::MIN })
            .collect();
        enc.encode(&square, &mut out);
        enc.encode(&[i16::MIN; 1600], &mut out);
        enc.encode(&[0; 1600], &mut out);
        let decoded = decode_all(&out);
        assert_eq!(decoded.len(), 3200 + 1600 + 1600);
        enc.reset();
        let mut again = Vec::new();
        enc.encode(&square, &mut again);
        assert_eq!(again[..], out[..1600]);
    }

    fn s16le(bytes: &[u8]) -> Vec<i16> {
        bytes
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect()
    }

    /// ffmpeg's G.722 encoder follows the Recommendation's arithmetic too: the same
    /// input must give the same octets (fixtures and commands: tests/fixtures/codec/README.md).
    #[test]
    fn bit_exact_with_ffmpeg_encoder_fixtures() {
        let speech = s16le(include_bytes!(
            "../../../tests/fixtures/codec/speech_16k.s16le"
        ));
        let ours = encode_all(&speech);
        let theirs = include_bytes!("../../../tests/fixtures/codec/speech.g722");
        assert_eq!(ours.len(), theirs.len());
        let first_diff = ours.iter().zip(theirs).position(|(a, b)| a != b);
        assert_eq!(first_diff, None, "speech differs from octet {first_diff:?}");
        let (lag, snr) = best_snr(&speech, &decode_all(&ours), 0);
        eprintln!("G.722 encoder, fixture speech: SNR {snr:.1} dB at lag {lag}");
        // The fixture's source: 0.5 s of round(16384 sin(2 pi n / 16)).
        let tone = sine(1000.0, 16384.0, 8000);
        let theirs = include_bytes!("../../../tests/fixtures/codec/sine1k.g722");
        assert_eq!(encode_all(&tone), theirs.to_vec());
    }

    /// The independent check: ffmpeg's G.722 decoder on our bitstream.
    #[test]
    fn ffmpeg_decodes_our_bitstream() {
        if std::process::Command::new("ffmpeg")
            .arg("-version")
            .output()
            .is_err()
        {
            eprintln!("ffmpeg not on PATH: skipping the ffmpeg decode of our G.722");
            return;
        }
        let dir = std::env::temp_dir().join(format!("g722-enc-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, src, min_snr) in [
            ("sine", sine(1000.0, 16384.0, 8000), 35.0),
            ("speech", speech_16k(), 20.0),
        ] {
            let input = dir.join(format!("{name}.g722"));
            let output = dir.join(format!("{name}.raw"));
            std::fs::write(&input, encode_all(&src)).unwrap();
            let status = std::process::Command::new("ffmpeg")
                .args([
                    "-hide_banner",
                    "-loglevel",
                    "error",
                    "-y",
                    "-f",
                    "g722",
                    "-i",
                ])
                .arg(&input)
                .args(["-f", "s16le", "-ar", "16000"])
                .arg(&output)
                .status()
                .unwrap();
            assert!(status.success(), "ffmpeg failed on {name}");
            let got: Vec<i16> = std::fs::read(&output)
                .unwrap()
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            assert!(got.len() + 64 >= src.len(), "{name}: {} samples", got.len());
            let (lag, snr) = best_snr(&src, &got, SKIP);
            eprintln!("G.722 encoder, {name} decoded by ffmpeg: SNR {snr:.1} dB at lag {lag}");
            assert!(snr > min_snr, "{name}: SNR {snr:.1} dB at lag {lag}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
