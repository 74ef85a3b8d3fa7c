//! What the sender, the null engine and the event reader share about each bench stream:
//! when each packet left, and what reached the engine, keyed by the stream's call id.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::histogram::LatencyHistogram;

/// Send times kept per stream: 1,024 packets, 20.48 s at 20 ms. Audio reaching the engine
/// later than that after its packet left is counted as unmatched, not measured.
const RING: usize = 1024;
const TIME_BITS: u32 = 40;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;

/// Call ids the bench gives its sessions: `bench-<index>`.
pub fn call_id(index: usize) -> String {
    format!("bench-{index}")
}

/// The stream index in a bench call id.
pub fn index_of(call_id: &str) -> Option<usize> {
    call_id.strip_prefix("bench-")?.parse().ok()
}

/// One stream's shared record. Written by one sender thread and one engine stream at a time.
pub struct StreamRecord {
    /// Slot `k % RING` holds `(k mod 2^24) << 40 | send time in µs since the epoch`.
    send_times: Box<[AtomicU64]>,
    /// Packet-to-engine latency of this stream's audio.
    pub latency: LatencyHistogram,
    /// Audio chunks and ms of audio the engine received.
    pub chunks: AtomicU64,
    pub audio_ms: AtomicU64,
    /// Engine audio whose packet's send time was no longer (or never) known.
    pub unmatched: AtomicU64,
    /// Results the null engine sent for this stream.
    pub partials_sent: AtomicU64,
    pub finals_sent: AtomicU64,
}

impl Default for StreamRecord {
    fn default() -> Self {
        Self {
            send_times: (0..RING).map(|_| AtomicU64::new(u64::MAX)).collect(),
            latency: LatencyHistogram::default(),
            chunks: AtomicU64::new(0),
            audio_ms: AtomicU64::new(0),
            unmatched: AtomicU64::new(0),
            partials_sent: AtomicU64::new(0),
            finals_sent: AtomicU64::new(0),
        }
    }
}

impl StreamRecord {
    /// Packet `k` of the stream left at `at_us` (µs since the registry's epoch).
    pub fn note_sent(&self, k: u64, at_us: u64) {
        let packed = ((k & 0xFF_FFFF) << TIME_BITS) | (at_us & TIME_MASK);
        self.send_times[(k % RING as u64) as usize].store(packed, Ordering::Relaxed);
    }

    /// When packet `k` left, if it is still remembered.
    pub fn sent_at_us(&self, k: u64) -> Option<u64> {
        let packed = self.send_times[(k % RING as u64) as usize].load(Ordering::Relaxed);
        (packed != u64::MAX && packed >> TIME_BITS == k & 0xFF_FFFF).then_some(packed & TIME_MASK)
    }
}

/// Every stream of a run, and the clock they share.
pub struct Registry {
    epoch: Instant,
    /// Packet time, ms (20: what Asterisk sends).
    pub ptime_ms: u64,
    streams: RwLock<Vec<Arc<StreamRecord>>>,
    /// Packet-to-engine latency of every packet's audio, over all streams: includes the
    /// wait for a gRPC chunk to fill (up to `asr.chunk_ms` − 20 ms) by design.
    pub latency: LatencyHistogram,
    /// The same for the newest packet of each chunk only: the gateway's own delay.
    pub processing: LatencyHistogram,
}

impl Registry {
    pub fn new(ptime_ms: u64) -> Self {
        Self {
            epoch: Instant::now(),
            ptime_ms,
            streams: RwLock::new(Vec::new()),
            latency: LatencyHistogram::default(),
            processing: LatencyHistogram::default(),
        }
    }

    pub fn now_us(&self) -> u64 {
        self.us_at(Instant::now())
    }

    pub fn us_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_micros() as u64
    }

    pub fn instant_at(&self, us: u64) -> Instant {
        self.epoch + Duration::from_micros(us)
    }

    /// The record of stream `index`, made (with any before it) on first use.
    pub fn stream(&self, index: usize) -> Arc<StreamRecord> {
        if let Some(s) = self.read().get(index) {
            return s.clone();
        }
        let mut streams = self.streams.write().unwrap_or_else(|p| p.into_inner());
        while streams.len() <= index {
            streams.push(Arc::default());
        }
        streams[index].clone()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<StreamRecord>>> {
        self.streams.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The engine received `samples` samples at `rate` Hz starting at media `offset_ms` of
    /// stream `record`, at `arrived_us`. Each packet whose 20 ms the chunk covers gives
    /// one latency sample: arrival minus that packet's send time; the chunk's newest
    /// packet also gives one processing sample. Media time 0 is the stream's first packet
    /// (the sender never drops or delays it).
    pub fn handle_audio(
        &self,
        record: &StreamRecord,
        offset_ms: u64,
        samples: u64,
        rate: u32,
        arrived_us: u64,
    ) {
        let duration_ms = samples * 1000 / u64::from(rate.max(1));
        record.chunks.fetch_add(1, Ordering::Relaxed);
        record.audio_ms.fetch_add(duration_ms, Ordering::Relaxed);
        let first = offset_ms / self.ptime_ms;
        let end = (offset_ms + duration_ms) / self.ptime_ms;
        for k in first..end {
            match record.sent_at_us(k) {
                Some(sent) if sent <= arrived_us => {
                    let us = arrived_us - sent;
                    record.latency.record_us(us);
                    self.latency.record_us(us);
                    if k + 1 == end {
                        self.processing.record_us(us);
                    }
                }
                _ => {
                    record.unmatched.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_ids_round_trip() {
        assert_eq!(index_of(&call_id(417)), Some(417));
        assert_eq!(index_of("demo-x"), None);
    }

    #[test]
    fn send_times_are_kept_for_a_ring_and_checked_by_index() {
        let r = StreamRecord::default();
        r.note_sent(5, 1_000);
        assert_eq!(r.sent_at_us(5), Some(1_000));
        assert_eq!(r.sent_at_us(6), None);
        r.note_sent(5 + RING as u64, 2_000);
        assert_eq!(r.sent_at_us(5), None, "overwritten by a later lap");
        assert_eq!(r.sent_at_us(5 + RING as u64), Some(2_000));
    }

    #[test]
    fn a_chunk_gives_one_sample_per_packet_it_covers() {
        let reg = Registry::new(20);
        let s = reg.stream(3);
        assert_eq!(reg.len(), 4);
        for k in 0..5 {
            s.note_sent(k, k * 20_000);
        }
        // 100 ms at 16 kHz from media time 0 arriving 1 ms after packet 4 left.
        reg.handle_audio(&s, 0, 1600, 16_000, 81_000);
        let lat = s.latency.snapshot();
        assert_eq!(lat.count(), 5);
        assert_eq!(lat.max_us(), Some(81_000));
        assert!(
            lat.quantile_us(0.0).unwrap() <= 1_040,
            "1 ms within a bucket"
        );
        let processing = reg.processing.snapshot();
        assert_eq!(processing.count(), 1, "one per chunk: its newest packet");
        assert_eq!(processing.max_us(), Some(1_000));
        // A chunk for packets never sent is unmatched, not measured.
        reg.handle_audio(&s, 200, 320, 16_000, 300_000);
        assert_eq!(s.unmatched.load(Ordering::Relaxed), 1);
        assert_eq!(reg.latency.snapshot().count(), 5);
        assert_eq!(s.chunks.load(Ordering::Relaxed), 2);
    }
}
