//! G.722 (ITU-T, 64 kbit/s SB-ADPCM) decoder: 8-bit codewords in, 16 kHz PCM out.

pub struct G722Decoder {}
