//! Opus decoding through libopus (audiopus), mono, 48 kHz output.

pub struct OpusDecoder {}
