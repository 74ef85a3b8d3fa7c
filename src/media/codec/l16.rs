//! L16: big-endian 16-bit linear PCM as carried over RTP.
