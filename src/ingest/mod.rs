//! Media ingest: the UDP RTP port pool, per-session tasks and the session manager.

pub mod manager;
pub mod ports;
pub mod rtp_udp;
