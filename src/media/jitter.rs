//! Bounded reorder buffer: `push(now, packet)` / `poll(now)`; dupes dropped, loss filled.

use std::time::{Duration, Instant};

use crate::media::rtp::RtpHeader;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// How long a packet after a sequence gap is held waiting for the gap to fill.
    pub holdback: Duration,
    /// RTP clock rate of the stream, Hz (for interarrival jitter).
    pub clock_rate: u32,
    /// Hard cap on held packets, whatever the holdback.
    pub max_packets: usize,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self {
            holdback: Duration::from_millis(60),
            clock_rate: 8000,
            max_packets: 64,
        }
    }
}

/// A packet released in order. Timestamps are unwrapped to 64 bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPacket {
    pub ext_sequence: u64,
    pub ext_timestamp: u64,
    pub payload_type: u8,
    pub marker: bool,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JitterOutput {
    /// The next packet in sequence order.
    Packet(MediaPacket),
    /// `packets` were never received; `duration_ts` RTP clock units of silence keep media time aligned.
    Lost { packets: u32, duration_ts: u64 },
    /// Marker set with a timestamp jump: the sender paused. `skipped_ts` clock units passed without media.
    Talkspurt { skipped_ts: u64 },
    /// SSRC changed: a new stream starts; sequence/timestamp state was reset.
    NewStream { ssrc: u32 },
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JitterStats {
    pub received: u64,
    pub lost: u64,
    pub late: u64,
    pub duplicate: u64,
    pub reordered: u64,
    /// RFC 3550 A.8 interarrival jitter, in RTP clock units.
    pub jitter_ts: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Accepted,
    Duplicate,
    /// Arrived after its slot was played out or declared lost.
    Late,
}

#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    stats: JitterStats,
}

impl JitterBuffer {
    pub fn new(config: JitterConfig) -> Self {
        Self {
            config,
            stats: JitterStats::default(),
        }
    }

    pub fn push(&mut self, now: Instant, header: &RtpHeader, payload: &[u8]) -> PushOutcome {
        let _ = (now, header, payload, &self.config);
        todo!()
    }

    pub fn poll(&mut self, now: Instant) -> Option<JitterOutput> {
        let _ = now;
        todo!()
    }

    /// When `poll` may next release something held behind a gap.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    /// Release everything held, declaring gaps lost (end of session).
    pub fn flush(&mut self) -> Option<JitterOutput> {
        todo!()
    }

    pub fn stats(&self) -> &JitterStats {
        &self.stats
    }

    pub fn jitter_ms(&self) -> f64 {
        self.stats.jitter_ts * 1000.0 / self.config.clock_rate as f64
    }
}
