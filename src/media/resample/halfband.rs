//! Exact 2× upsampling (8 → 16 kHz, the common telephony case) with a polyphase
//! half-band FIR: per input sample one output is the input delayed, the other a
//! 48-tap dot product. Tiny state (47 samples), no FFT, no buffering.
//!
//! The prototype is a 95-tap windowed sinc (Blackman) cut off at the input's Nyquist
//! frequency; its even-indexed taps form the computed phase and its centre tap (0.5,
//! times the interpolation gain 2) the delayed phase. Group delay: 47 output samples.

/// Computed-phase taps.
const TAPS: usize = 48;
/// Input samples kept between calls: the computed phase reaches back TAPS − 1.
const HISTORY: usize = TAPS - 1;
/// Output samples of delay: the prototype's centre, (95 − 1) / 2.
pub const DELAY: usize = 47;

/// Computed-phase coefficients, newest input first, gain 2 folded in.
fn coefficients() -> [f32; TAPS] {
    const LEN: usize = 2 * TAPS - 1;
    let centre = (LEN - 1) as f64 / 2.0;
    let mut c = [0f32; TAPS];
    for (k, slot) in c.iter_mut().enumerate() {
        // Even prototype index i = 2k; offsets from the centre are odd, never zero.
        let i = 2 * k;
        let x = (i as f64 - centre) / 2.0;
        let sinc = (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x);
        let phase = 2.0 * std::f64::consts::PI * i as f64 / (LEN - 1) as f64;
        let blackman = 0.42 - 0.5 * phase.cos() + 0.08 * (2.0 * phase).cos();
        *slot = (0.5 * sinc * blackman * 2.0) as f32;
    }
    // Normalise the phase to unity DC gain, as the delayed phase has.
    let sum: f32 = c.iter().sum();
    c.iter_mut().for_each(|v| *v /= sum);
    c
}

pub struct HalfBand {
    coefficients: [f32; TAPS],
    /// The last HISTORY inputs, then the current call's inputs; cleared back to HISTORY.
    window: Vec<f32>,
    /// Inputs since the start or the last reset, for `flush`.
    pub fed: u64,
}

impl Default for HalfBand {
    fn default() -> Self {
        Self {
            coefficients: coefficients(),
            window: vec![0.0; HISTORY],
            fed: 0,
        }
    }
}

impl HalfBand {
    /// Two output samples per input sample, appended to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        self.fed += input.len() as u64;
        self.window.extend(input.iter().map(|&s| s as f32));
        out.reserve(input.len() * 2);
        for n in 0..input.len() {
            // window[n .. n + TAPS] ends at input n; the coefficients are newest-first.
            let span = &self.window[n..n + TAPS];
            let computed: f32 = span
                .iter()
                .rev()
                .zip(&self.coefficients)
                .map(|(x, c)| x * c)
                .sum();
            // The delayed phase: input n − 23 (the centre tap lands between them).
            let delayed = self.window[n + TAPS - 1 - (DELAY - 1) / 2];
            out.push(to_i16(computed));
            out.push(to_i16(delayed));
        }
        let keep_from = self.window.len() - HISTORY;
        self.window.copy_within(keep_from.., 0);
        self.window.truncate(HISTORY);
    }

    /// Forget the history: the next call starts from silence.
    pub fn reset(&mut self) {
        self.window.clear();
        self.window.resize(HISTORY, 0.0);
        self.fed = 0;
    }
}

fn to_i16(v: f32) -> i16 {
    v.round().clamp(i16::MIN as f32, i16::MAX as f32) as i16
}
