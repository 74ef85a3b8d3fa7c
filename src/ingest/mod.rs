//! Media ingest: the UDP RTP port pool, the AudioSocket server, per-session tasks and the
//! session manager.

pub mod audiosocket;
pub mod manager;
pub mod ports;
pub mod rtp_udp;
