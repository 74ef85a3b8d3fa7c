//! The sans-IO media core: bytes and `now` in, audio, control and events out.

pub mod audiosocket;
pub mod codec;
pub mod jitter;
pub mod resample;
pub mod rtp;
pub mod session;
pub mod vad;
pub mod ws_media;
