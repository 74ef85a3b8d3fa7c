//! Whisper's log-mel features, computed as reference Whisper's `transcribe` computes them.
//!
//! The steps, as in openai-whisper and faster-whisper: 16 kHz audio followed by zeros; a
//! 400-point periodic Hann STFT every 160 samples, centred (reflect padding on the left);
//! power spectrum; Slaney-style mel filter bank (librosa's default, the one shipped as
//! `mel_filters.npz`); `log10(max(power, 1e-10))`; clamp everything to the global maximum
//! minus 8 (the maximum taken over the whole utterance, not per frame or per window); then
//! `(x + 4) / 4`. The utterance has `len / 160` frames; each 30 s window the encoder sees holds
//! 3000 of them, and frames past the end of the audio are 0.0 (the references pad the
//! features, not the audio, before the encoder).

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

/// Samples per second the features are defined for.
pub const SAMPLE_RATE: usize = 16_000;
/// STFT size (25 ms).
pub const N_FFT: usize = 400;
/// STFT hop (10 ms): one feature frame per hop.
pub const HOP: usize = 160;
/// Frames in one encoder window (30 s).
pub const WINDOW_FRAMES: usize = 3000;
/// Power below this is taken as this before the logarithm.
const POWER_FLOOR: f64 = 1e-10;
/// Log-power more than this far below the utterance's maximum is raised to it (80 dB).
const DYNAMIC_RANGE: f32 = 8.0;

/// Reusable front end: the window, the FFT plan and the filter bank, plus scratch buffers.
pub struct FrontEnd {
    n_mels: usize,
    hann: Vec<f64>,
    fft: Arc<dyn Fft<f64>>,
    filters: Vec<MelFilter>,
    frame: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
    power: Vec<f64>,
}

/// One triangular mel filter: its non-zero weights, from FFT bin `first`.
struct MelFilter {
    first: usize,
    weights: Vec<f64>,
}

/// Normalised features of one utterance, mel-major: `data[mel * frames + frame]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogMel {
    n_mels: usize,
    frames: usize,
    data: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MelError {
    #[error("the model wants {0} mel bands; the front end makes 1 to 256")]
    Bands(usize),
}

impl FrontEnd {
    pub fn new(n_mels: usize) -> Result<Self, MelError> {
        if !(1..=256).contains(&n_mels) {
            return Err(MelError::Bands(n_mels));
        }
        let fft = FftPlanner::new().plan_fft_forward(N_FFT);
        let scratch = vec![Complex::default(); fft.get_inplace_scratch_len()];
        Ok(FrontEnd {
            n_mels,
            // Periodic Hann (numpy's hanning(401)[:-1], torch.hann_window(400)).
            hann: (0..N_FFT)
                .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N_FFT as f64).cos())
                .collect(),
            fft,
            filters: slaney_filters(n_mels),
            frame: vec![Complex::default(); N_FFT],
            scratch,
            power: vec![0.0; N_FFT / 2 + 1],
        })
    }

    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// Features of `samples` (16 kHz, nominally in [-1, 1]; non-finite samples count as 0).
    pub fn log_mel(&mut self, samples: &[f32]) -> LogMel {
        let frames = samples.len() / HOP;
        // One frame past the content, whose tail still holds audio, takes part in the
        // maximum as in faster-whisper (which computes it and drops it afterwards).
        let computed = frames + 1;
        let mut logs = vec![0f32; self.n_mels * computed];
        for t in 0..computed {
            self.power_spectrum(samples, t);
            for (m, filter) in self.filters.iter().enumerate() {
                let bins = &self.power[filter.first..filter.first + filter.weights.len()];
                let energy: f64 = bins.iter().zip(&filter.weights).map(|(p, w)| p * w).sum();
                logs[m * computed + t] = energy.max(POWER_FLOOR).log10() as f32;
            }
        }
        let max = logs.iter().copied().fold(f32::MIN, f32::max);
        let floor = max - DYNAMIC_RANGE;
        let mut data = Vec::with_capacity(self.n_mels * frames);
        for row in logs.chunks_exact(computed) {
            data.extend(row[..frames].iter().map(|&x| (x.max(floor) + 4.0) / 4.0));
        }
        LogMel {
            n_mels: self.n_mels,
            frames,
            data,
        }
    }

    /// `self.power` = |FFT|² of the Hann-windowed frame centred on sample `t * HOP`.
    fn power_spectrum(&mut self, samples: &[f32], t: usize) {
        // The references pad the audio on the right with (at least) one hop of zeros and
        // then reflect; every sample past the audio that a frame can reach is a zero.
        let padded = samples.len() + HOP;
        for (j, slot) in self.frame.iter_mut().enumerate() {
            let pos = (t * HOP + j) as i64 - (N_FFT / 2) as i64;
            let idx = reflect(pos, padded);
            let x = samples.get(idx).copied().filter(|x| x.is_finite());
            *slot = Complex::new(f64::from(x.unwrap_or(0.0)) * self.hann[j], 0.0);
        }
        self.fft
            .process_with_scratch(&mut self.frame, &mut self.scratch);
        for (p, c) in self.power.iter_mut().zip(&self.frame) {
            *p = c.norm_sqr();
        }
    }
}

/// numpy's "reflect" padding: index `pos` of a signal of `len` (> 1) samples mirrored about
/// its first and last samples (which are not repeated), however far outside it lies.
fn reflect(pos: i64, len: usize) -> usize {
    let period = 2 * (len as i64 - 1);
    let m = pos.rem_euclid(period);
    (if m >= len as i64 { period - m } else { m }) as usize
}

/// Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
fn hz_to_mel(hz: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    if hz < 1000.0 {
        hz / F_SP
    } else {
        1000.0 / F_SP + (hz / 1000.0).ln() / (6.4f64.ln() / 27.0)
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    let knee = 1000.0 / F_SP;
    if mel < knee {
        mel * F_SP
    } else {
        1000.0 * ((mel - knee) * (6.4f64.ln() / 27.0)).exp()
    }
}

/// `n_mels` triangular filters from 0 Hz to Nyquist over the `N_FFT / 2 + 1` FFT bins,
/// centres evenly spaced in mel, each scaled by 2 / its width in Hz (Slaney area normalisation).
fn slaney_filters(n_mels: usize) -> Vec<MelFilter> {
    let top = hz_to_mel(SAMPLE_RATE as f64 / 2.0);
    let edges: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(top * i as f64 / (n_mels + 1) as f64))
        .collect();
    let bin_hz = |k: usize| k as f64 * SAMPLE_RATE as f64 / N_FFT as f64;
    (0..n_mels)
        .map(|m| {
            let (lo, mid, hi) = (edges[m], edges[m + 1], edges[m + 2]);
            let scale = 2.0 / (hi - lo);
            let weights: Vec<f64> = (0..=N_FFT / 2)
                .map(|k| {
                    let f = bin_hz(k);
                    let rising = (f - lo) / (mid - lo);
                    let falling = (hi - f) / (hi - mid);
                    rising.min(falling).max(0.0) * scale
                })
                .collect();
            let first = weights.iter().position(|&w| w > 0.0).unwrap_or(0);
            let last = weights.iter().rposition(|&w| w > 0.0).unwrap_or(first);
            MelFilter {
                first,
                weights: weights[first..=last].to_vec(),
            }
        })
        .collect()
}

impl LogMel {
    /// Frames of audio (10 ms each); 0 for less than one hop.
    #[cfg(test)]
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// 30 s encoder windows needed to cover the audio.
    pub fn windows(&self) -> usize {
        self.frames.div_ceil(WINDOW_FRAMES)
    }

    /// Window `w` as the encoder takes it, `[n_mels][WINDOW_FRAMES]` row-major, into `out`;
    /// frames past the audio are 0.0.
    pub fn window_into(&self, w: usize, out: &mut Vec<f32>) {
        out.clear();
        out.resize(self.n_mels * WINDOW_FRAMES, 0.0);
        let start = (w * WINDOW_FRAMES).min(self.frames);
        let len = (self.frames - start).min(WINDOW_FRAMES);
        for (m, row) in out.chunks_exact_mut(WINDOW_FRAMES).enumerate() {
            let from = m * self.frames + start;
            row[..len].copy_from_slice(&self.data[from..from + len]);
        }
    }

    /// Feature `mel` of frame `frame`.
    #[cfg(test)]
    pub fn get(&self, mel: usize, frame: usize) -> Option<f32> {
        (mel < self.n_mels && frame < self.frames).then(|| self.data[mel * self.frames + frame])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1.2 s: silent for 0.25 s, then a 0.5-amplitude chirp rising 7000 Hz per 1.2 s from
    /// 100 Hz at t = 0, plus a 0.01-amplitude 3 kHz tone throughout.
    fn chirp() -> Vec<f32> {
        (0..19_200)
            .map(|i| {
                let t = i as f64 / 16_000.0;
                let tau = 2.0 * std::f64::consts::PI;
                let x = 0.5 * (tau * (100.0 * t + 7000.0 / 1.2 * t * t / 2.0)).sin()
                    + 0.01 * (tau * 3000.0 * t).sin();
                if i < 4000 {
                    0.0
                } else {
                    x as f32
                }
            })
            .collect()
    }

    /// Values from faster-whisper 1.2.1's FeatureExtractor on `chirp()` (numpy 2.4), which
    /// agrees with openai-whisper's filter bank (mel_filters.npz) to 1.3e-9.
    #[test]
    fn matches_the_reference_front_end() {
        let mel = FrontEnd::new(80).unwrap().log_mel(&chirp());
        assert_eq!(mel.frames(), 120);
        assert_eq!(mel.windows(), 1);
        let spots = [
            (0, 0, -0.605_741_74),
            (0, 24, -0.386_195_18),
            (3, 26, -0.457_945_7),
            (38, 25, 1.283_572_6),
            (35, 25, 0.930_63),
            (38, 26, 1.383_012_3),
            (35, 26, 0.487_572_85),
            (55, 50, 1.317_821_1),
            (52, 50, 0.086_848_32),
            (65, 75, 1.312_127_8),
            (62, 75, -0.420_828_34),
            (72, 100, 1.277_687_1),
            (69, 100, -0.605_741_74),
            (77, 119, 1.240_975_9),
            (74, 119, -0.007_278_442),
            (79, 119, 0.195_198_24),
            (40, 119, -0.507_543_3),
        ];
        for (m, t, want) in spots {
            let got = mel.get(m, t).unwrap();
            assert!(
                (got - want).abs() < 1e-4,
                "mel {m} frame {t}: {got} vs reference {want}"
            );
        }
        let sum: f64 = (0..80)
            .flat_map(|m| (0..120).map(move |t| (m, t)))
            .map(|(m, t)| f64::from(mel.get(m, t).unwrap()))
            .sum();
        assert!((sum - -4_731.764_898_777).abs() < 0.05, "sum {sum}");
    }

    /// Against openai-whisper's mel_filters.npz (mel_80): support, sum and peak of a few rows.
    #[test]
    fn filter_bank_is_slaneys() {
        let f = slaney_filters(80);
        let nonzero: usize = f.iter().map(|r| r.weights.len()).sum();
        assert_eq!(nonzero, 391);
        for (m, first, last, sum, peak) in [
            (0, 1, 1, 0.024_862_595, 0.024_862_595),
            (1, 1, 2, 0.024_862_593, 0.022_871_772),
            (10, 10, 11, 0.024_862_593, 0.019_908_218),
            (40, 42, 44, 0.026_664_86, 0.014_735_566),
            (79, 186, 199, 0.024_925_34, 0.003_164_711_9),
        ] {
            let r = &f[m];
            assert_eq!(
                (r.first, r.first + r.weights.len() - 1),
                (first, last),
                "row {m}"
            );
            let s: f64 = r.weights.iter().sum();
            let p = r.weights.iter().copied().fold(0.0, f64::max);
            assert!(
                (s - sum).abs() < 1e-7 && (p - peak).abs() < 1e-7,
                "row {m}: {s} {p}"
            );
        }
    }

    #[test]
    fn long_audio_is_cut_into_30_s_windows_padded_with_zeros() {
        let samples: Vec<f32> = (0..16_000 * 31)
            .map(|i| ((i % 37) as f32 - 18.0) / 40.0)
            .collect();
        let mel = FrontEnd::new(80).unwrap().log_mel(&samples);
        assert_eq!(mel.frames(), 3100);
        assert_eq!(mel.windows(), 2);
        let mut out = Vec::new();
        mel.window_into(1, &mut out);
        assert_eq!(out.len(), 80 * WINDOW_FRAMES);
        assert_eq!(out[99], mel.get(0, 3099).unwrap());
        assert_eq!(out[100], 0.0);
        assert_eq!(out[WINDOW_FRAMES + 5], mel.get(1, 3005).unwrap());
        assert!(out[WINDOW_FRAMES + 100..2 * WINDOW_FRAMES]
            .iter()
            .all(|&x| x == 0.0));
    }

    #[test]
    fn odd_input_gives_features_not_panics() {
        let mut fe = FrontEnd::new(80).unwrap();
        for samples in [
            vec![],
            vec![0.3; 1],
            vec![0.3; 159],
            vec![f32::NAN, f32::INFINITY, 1.0, -1.0, 0.5],
            vec![0.0; 1600],
            vec![1.0; 500],
        ] {
            let mel = fe.log_mel(&samples);
            assert_eq!(mel.frames(), samples.len() / HOP);
            let mut out = Vec::new();
            for w in 0..mel.windows() {
                mel.window_into(w, &mut out);
                assert!(out.iter().all(|x| x.is_finite()));
            }
        }
        // Digital silence: every feature sits at the floor, (-10 + 4) / 4.
        let mel = fe.log_mel(&[0.0; 1600]);
        assert_eq!(mel.get(0, 0), Some(-1.5));
        assert!(FrontEnd::new(0).is_err());
    }

    #[test]
    fn reflect_padding_is_numpys() {
        // numpy.pad([0, 1, 2, 3], 5, mode="reflect") = [1 2 3 2 1 | 0 1 2 3 | 2 1 0 1 2]
        let got: Vec<usize> = (-5..9).map(|p| reflect(p, 4)).collect();
        assert_eq!(got, [1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2]);
    }
}
