//! Packet-loss concealment for codecs without their own (G.711, L16, G.722): the last pitch
//! period repeated with a fade-out, in the manner of ITU-T G.711 Appendix I.
//!
//! - While packets arrive, `handle_good` keeps the last 48.75 ms of decoded audio.
//! - On a loss, `conceal` estimates the pitch period of that history (66 to 200 Hz, by
//!   normalised autocorrelation) and repeats the last period, cross-fading each repeat's
//!   end into its start so the joins do not click. After 10 ms it repeats two periods,
//!   after 20 ms three, so a long loss does not buzz on one period. The level holds for
//!   10 ms, then falls by a fifth every 10 ms: 60 ms into a loss the output is silence.
//! - The first good frame after a loss is cross-faded from the concealment into the real
//!   signal over a quarter period.
//!
//! Everything is counted at the decoder's own rate; the bounds below are at 8 kHz and scale.

/// Shortest pitch period searched, samples at 8 kHz (200 Hz).
const MIN_PITCH_8K: usize = 40;
/// Longest pitch period searched, samples at 8 kHz (66.7 Hz).
const MAX_PITCH_8K: usize = 120;
/// History kept: three longest periods plus the quarter period the cross-fade reads.
const HISTORY_8K: usize = 3 * MAX_PITCH_8K + MAX_PITCH_8K / 4;
/// Full level lasts this long into a loss, samples at 8 kHz (10 ms).
const HOLD_8K: usize = 80;
/// After the hold, the level falls to zero over this long, samples at 8 kHz (50 ms).
const FADE_8K: usize = 400;

/// Concealment state of one stream.
#[derive(Debug, Clone)]
pub struct Concealer {
    /// Samples per 8 kHz sample (1 at 8 kHz, 2 at 16 kHz, ...), at least 1.
    scale: usize,
    /// The last good audio, oldest first; only the newest `HISTORY_8K * scale` samples
    /// are read, and it holds at most twice that.
    history: Vec<i16>,
    /// The loss in progress, if any.
    loss: Option<Loss>,
}

#[derive(Debug, Clone, Copy)]
struct Loss {
    /// Pitch period, samples.
    pitch: usize,
    /// Samples concealed since the loss began.
    done: usize,
}

impl Concealer {
    /// A concealer for audio at `rate` Hz (rates below 8 kHz count as 8 kHz).
    pub fn new(rate: u32) -> Self {
        let scale = (rate as usize / 8000).max(1);
        Self {
            scale,
            history: Vec::with_capacity(2 * HISTORY_8K * scale + 960),
            loss: None,
        }
    }

    /// Decoded audio from a real packet: after a loss its start is cross-faded from the
    /// concealment, then it becomes the history the next loss repeats.
    pub fn handle_good(&mut self, pcm: &mut [i16]) {
        if let Some(loss) = self.loss.take() {
            let fade = (loss.pitch / 4).min(pcm.len());
            for (i, sample) in pcm.iter_mut().take(fade).enumerate() {
                let synthetic = f32::from(self.synthesize(loss, loss.done + i));
                let w = (i + 1) as f32 / (fade + 1) as f32;
                *sample = mix(synthetic, f32::from(*sample), w);
            }
        }
        self.remember(pcm);
    }

    /// Append `samples` of concealment for lost packets to `out`: repeated pitch periods
    /// fading to silence, then silence. Without history (loss before any audio) silence.
    pub fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        let limit = (HOLD_8K + FADE_8K) * self.scale;
        let mut loss = match self.loss {
            Some(loss) => loss,
            None if self.history.len() >= self.history_cap() => Loss {
                pitch: self.estimate_pitch(),
                done: 0,
            },
            None => {
                out.resize(out.len() + samples, 0);
                return;
            }
        };
        out.reserve(samples);
        for _ in 0..samples {
            let sample = if loss.done < limit {
                self.synthesize(loss, loss.done)
            } else {
                0
            };
            out.push(sample);
            loss.done += 1;
        }
        self.loss = Some(loss);
    }

    /// Forget the history: the next audio does not continue the previous (a pause, a new
    /// source). A loss right after this is silence.
    pub fn clear(&mut self) {
        self.history.clear();
        self.loss = None;
    }

    fn history_cap(&self) -> usize {
        HISTORY_8K * self.scale
    }

    /// Keep `pcm` as the newest history. The buffer grows to twice the history before the
    /// old half is dropped, so a packet costs one copy of itself, not a shift of the history.
    fn remember(&mut self, pcm: &[i16]) {
        let cap = self.history_cap();
        self.history.extend_from_slice(pcm);
        if self.history.len() > 2 * cap {
            let excess = self.history.len() - cap;
            self.history.drain(..excess);
        }
    }

    /// The period whose lag best matches the most recent longest-period window.
    fn estimate_pitch(&self) -> usize {
        let (min, max) = (MIN_PITCH_8K * self.scale, MAX_PITCH_8K * self.scale);
        let h = &self.history;
        let end = h.len();
        let window = &h[end - max..];
        let mut best = (max, f64::MIN);
        for lag in min..=max {
            let past = &h[end - max - lag..end - lag];
            let (mut cross, mut energy) = (0.0f64, 0.0f64);
            for (&a, &b) in window.iter().zip(past) {
                cross += f64::from(a) * f64::from(b);
                energy += f64::from(b) * f64::from(b);
            }
            let score = if energy > 0.0 {
                cross / energy.sqrt()
            } else {
                0.0
            };
            if score > best.1 {
                best = (lag, score);
            }
        }
        best.0
    }

    /// Concealed sample `n` of `loss`, before the cut to silence.
    fn synthesize(&self, loss: Loss, n: usize) -> i16 {
        let h = &self.history;
        let end = h.len();
        let periods = 1 + (n / (HOLD_8K * self.scale)).min(2);
        let span = loss.pitch * periods;
        let quarter = loss.pitch / 4;
        let k = n % span;
        // Sample k of the repeated span; its last quarter period fades into what came a
        // span earlier, so the wrap back to its start continues smoothly.
        let value = if k + quarter < span {
            f32::from(h[end - span + k])
        } else {
            let i = k + quarter - span;
            let w = (i + 1) as f32 / (quarter + 1) as f32;
            f32::from(mix(
                f32::from(h[end - quarter + i]),
                f32::from(h[end - span - quarter + i]),
                w,
            ))
        };
        let gain = self.gain(n);
        (value * gain).round() as i16
    }

    /// Level at sample `n` of a loss: 1 for the hold, then a linear fall to 0.
    fn gain(&self, n: usize) -> f32 {
        let hold = HOLD_8K * self.scale;
        if n < hold {
            return 1.0;
        }
        let fade = (FADE_8K * self.scale) as f32;
        (1.0 - (n - hold) as f32 / fade).max(0.0)
    }
}

/// `a` faded into `b` by weight `w` of `b`, as a clamped sample.
fn mix(a: f32, b: f32, w: f32) -> i16 {
    (a * (1.0 - w) + b * w)
        .round()
        .clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f64, len: usize, start: usize) -> Vec<i16> {
        (start..start + len)
            .map(|n| {
                (8000.0 * (2.0 * std::f64::consts::PI * hz * n as f64 / f64::from(rate)).sin())
                    as i16
            })
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
    }

    #[test]
    fn finds_the_pitch_of_a_periodic_signal() {
        // Periods whose double is out of the search range, so the answer is unique.
        for (rate, hz, period) in [(8000, 100.0, 80), (16000, 125.0, 128), (8000, 80.0, 100)] {
            let mut plc = Concealer::new(rate);
            let mut pcm = tone(rate, hz, 800 * (rate as usize / 8000), 0);
            plc.handle_good(&mut pcm);
            assert_eq!(plc.estimate_pitch(), period, "{hz} Hz at {rate} Hz");
        }
    }

    #[test]
    fn a_short_loss_continues_the_waveform() {
        let mut plc = Concealer::new(8000);
        let mut pcm = tone(8000, 100.0, 800, 0);
        plc.handle_good(&mut pcm);
        let mut out = Vec::new();
        plc.conceal(80, &mut out);
        // The first 10 ms at full level continue the 100 Hz tone almost exactly.
        let truth = tone(8000, 100.0, 80, 800);
        let err: f64 = out
            .iter()
            .zip(&truth)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
            .sum::<f64>()
            / 80.0;
        assert!(err < 200.0, "mean error {err} against an amplitude of 8000");
        assert!(rms(&out) > 5000.0);
    }

    #[test]
    fn the_level_fades_to_silence_by_60_ms() {
        let mut plc = Concealer::new(16000);
        let mut pcm = tone(16000, 150.0, 1600, 0);
        plc.handle_good(&mut pcm);
        let mut out = Vec::new();
        // In pieces, as the jitter buffer reports losses packet by packet.
        for _ in 0..5 {
            plc.conceal(320, &mut out);
        }
        let level = |ms: usize| rms(&out[ms * 16..(ms + 10) * 16]);
        assert!(level(0) > 5000.0);
        assert!(level(20) < level(10) && level(30) < level(20) && level(40) < level(30));
        assert!(out[60 * 16..].iter().all(|&s| s == 0));
    }

    #[test]
    fn without_history_a_loss_is_silence() {
        let mut plc = Concealer::new(8000);
        let mut out = vec![7];
        plc.conceal(160, &mut out);
        assert_eq!(out.len(), 161);
        assert!(out[1..].iter().all(|&s| s == 0));
        let mut pcm = tone(8000, 100.0, 800, 0);
        plc.handle_good(&mut pcm);
        plc.clear();
        plc.conceal(160, &mut out);
        assert!(out[161..].iter().all(|&s| s == 0));
    }

    #[test]
    fn the_first_frame_after_a_loss_starts_from_the_concealment() {
        let mut plc = Concealer::new(8000);
        let mut pcm = tone(8000, 100.0, 800, 0);
        plc.handle_good(&mut pcm);
        let mut out = Vec::new();
        plc.conceal(160, &mut out);
        // A resumed frame that starts at the opposite phase: its first sample is pulled
        // towards the concealment, and it ends untouched.
        let mut resumed: Vec<i16> = tone(8000, 100.0, 160, 960).iter().map(|&s| -s).collect();
        let original = resumed.clone();
        plc.handle_good(&mut resumed);
        assert_ne!(resumed[..10], original[..10]);
        assert_eq!(resumed[100..], original[100..]);
        // The loss is over: the next loss starts a new one from the resumed audio.
        assert!(plc.loss.is_none());
    }

    #[test]
    fn history_is_bounded() {
        let mut plc = Concealer::new(48000);
        for _ in 0..100 {
            let mut pcm = tone(48000, 200.0, 960, 0);
            plc.handle_good(&mut pcm);
            assert!(plc.history.len() <= 2 * HISTORY_8K * 6);
        }
        let mut big = vec![1i16; 100_000];
        plc.handle_good(&mut big);
        assert_eq!(plc.history.len(), HISTORY_8K * 6);
    }
}
