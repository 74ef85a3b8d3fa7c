//! Sample-rate conversion with rubato, keeping filter state across frames.

#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    #[error("cannot build a resampler from {from} Hz to {to} Hz: {reason}")]
    Construction { from: u32, to: u32, reason: String },
}

/// Converts a mono i16 stream from one rate to another; passthrough when equal.
pub struct Resampler {}

impl Resampler {
    pub fn new(from_rate: u32, to_rate: u32) -> Result<Self, ResampleError> {
        let _ = (from_rate, to_rate);
        todo!()
    }
    /// Feed any number of samples; appends every output sample now available to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let _ = (input, out);
        todo!()
    }
    /// Push out what is buffered (end of stream), padding with silence.
    pub fn flush(&mut self, out: &mut Vec<i16>) {
        let _ = out;
        todo!()
    }
    /// Output samples of delay the filter adds.
    pub fn delay(&self) -> usize {
        todo!()
    }
}
