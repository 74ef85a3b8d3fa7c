//! Media ingest: the UDP RTP port pool, the AudioSocket server, the WebSocket media client,
//! per-session tasks and the session manager.

pub mod audiosocket;
pub mod manager;
pub mod ports;
pub mod rtp_framing;
pub mod rtp_udp;
pub mod ws_media;
