//! Bounded reorder buffer: `push(now, packet)` / `poll(now)`; dupes dropped, loss filled.
//!
//! Contract with the IO shell: after each `push`, call `poll(now)` until it returns `None`;
//! call `poll` again once `poll_timeout()` has passed; at session end call `flush()` until
//! `None`. Time is only ever the `now` passed in.
//!
//! In-order packets are released at once. A packet after a sequence gap is held until the
//! gap fills, until the oldest held packet has waited `holdback`, or until more than
//! `max_packets` are held; then the gap is declared `Lost` and the held packets flow on.
//!
//! Sequence discontinuities (RFC 3550 A.1 limits): a packet more than `MAX_DROPOUT` ahead
//! is a resync at once (a long outage or a sender restart; holding it or declaring
//! thousands lost helps nobody). A packet more than `MAX_MISORDER` behind is dropped as
//! `Late` unless its successor follows, which confirms a restart at a lower sequence. A
//! resync flushes what was held, emits `Talkspurt { skipped_ts }` with the wall-clock time
//! since the previous packet (timestamps may have restarted too, so they are not trusted),
//! and renumbers the new packets so `ext_sequence` and `ext_timestamp` stay continuous.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::media::rtp::{RtpHeader, SequenceUnwrapper, TimestampUnwrapper};

mod probation;
use probation::Probation;
pub use probation::SSRC_PROBATION;

/// RFC 3550 A.1: a forward sequence jump of this many packets or more is a resync, not loss.
const MAX_DROPOUT: u64 = 3000;
/// RFC 3550 A.1: packets up to this far behind are late or duplicate; further behind is
/// either stale or a restart. Must stay below 128 (the release history width).
const MAX_MISORDER: u64 = 100;

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
///
/// Within a stream (between `NewStream`s) `ext_sequence` rises by exactly one per slot
/// (packet or lost) and `ext_timestamp` follows the sender's clock, rebased on a resync.
/// A stream's first packet gets `65536 + sequence` and `2^32 + timestamp`.
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
    /// Also emitted (possibly with 0) for a sequence resync, see the module doc.
    Talkspurt { skipped_ts: u64 },
    /// SSRC changed: a new stream starts; sequence/timestamp state was reset.
    NewStream { ssrc: u32 },
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JitterStats {
    /// Every packet given to `push`, whatever its outcome.
    pub received: u64,
    /// Sequence slots declared lost.
    pub lost: u64,
    pub late: u64,
    pub duplicate: u64,
    /// Accepted packets that arrived after a higher sequence number.
    pub reordered: u64,
    /// Packets of a new SSRC dropped because the source never passed probation (a spoofer,
    /// or a stray sender, shows here).
    pub probation_dropped: u64,
    /// RFC 3550 A.8 interarrival jitter, in RTP clock units.
    pub jitter_ts: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Accepted,
    Duplicate,
    /// Arrived after its slot was played out or declared lost.
    Late,
    /// From a new SSRC that has not yet proved itself (see `probation`); held.
    Probation,
}

#[derive(Debug)]
struct Held {
    packet: MediaPacket,
    arrival: Instant,
}

/// Sequence and timing state of one SSRC; replaced on `NewStream`.
#[derive(Debug)]
struct Stream {
    ssrc: u32,
    seq: SequenceUnwrapper,
    ts: TimestampUnwrapper,
    /// Added (wrapping) to unwrapped values; changed only by a resync.
    seq_offset: u64,
    ts_offset: u64,
    /// First ext sequence neither released nor declared lost.
    next_seq: u64,
    /// Ext timestamp of the last released packet.
    last_ts: u64,
    /// Timestamp increment per packet (clock units), learned from consecutive packets.
    step: Option<u64>,
    /// Bit i set: slot `next_seq - 1 - i` was released; clear: lost or before the stream.
    history: u128,
    /// After a far-behind packet: the raw sequence whose arrival confirms a restart.
    probe: Option<u16>,
    /// RFC 3550 A.8 relative transit time of the previous accepted packet, clock units.
    last_transit: f64,
    last_arrival: Instant,
}

#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    stats: JitterStats,
    stream: Option<Stream>,
    /// Packets behind a gap: sorted by ext sequence, unique, front > `next_seq`.
    held: VecDeque<Held>,
    /// Decided outputs, in order, waiting for `poll`.
    out: VecDeque<JitterOutput>,
    /// Origin of arrival times for the jitter computation.
    epoch: Option<Instant>,
    /// Latest `now` seen: the answer of `poll_timeout` while outputs are waiting.
    last_now: Option<Instant>,
    /// A new SSRC proving itself before it replaces the current stream.
    probation: Probation,
}

impl JitterBuffer {
    pub fn new(config: JitterConfig) -> Self {
        Self {
            held: VecDeque::with_capacity(config.max_packets.min(1024) + 1),
            out: VecDeque::with_capacity(2 * config.max_packets.min(1024) + 4),
            config,
            stats: JitterStats::default(),
            stream: None,
            epoch: None,
            last_now: None,
            probation: Probation::default(),
        }
    }

    pub fn push(&mut self, now: Instant, header: &RtpHeader, payload: &[u8]) -> PushOutcome {
        self.stats.received += 1;
        self.last_now = Some(now);
        let epoch = *self.epoch.get_or_insert(now);
        // Arrival time in RTP clock units (RFC 3550 A.8).
        let arrival =
            now.saturating_duration_since(epoch).as_secs_f64() * self.config.clock_rate as f64;

        if self.stream.is_none() {
            self.start(now, arrival, header, payload);
            return PushOutcome::Accepted;
        }
        let Some(s) = self.stream.as_mut().filter(|s| s.ssrc == header.ssrc) else {
            return self.offer_new_source(now, header, payload);
        };
        self.stats.probation_dropped += self.probation.interrupt();

        let ext = s.seq.unwrap(header.sequence).wrapping_add(s.seq_offset);
        if ext < s.next_seq {
            let behind = s.next_seq - ext;
            if behind <= MAX_MISORDER {
                return if (s.history >> (behind - 1)) & 1 == 1 {
                    self.stats.duplicate += 1;
                    PushOutcome::Duplicate
                } else {
                    self.stats.late += 1;
                    PushOutcome::Late
                };
            }
            if s.probe != Some(header.sequence) {
                s.probe = Some(header.sequence.wrapping_add(1));
                self.stats.late += 1;
                return PushOutcome::Late;
            }
            self.resync(now, arrival, header, payload);
            return PushOutcome::Accepted;
        }
        if ext - s.next_seq >= MAX_DROPOUT {
            self.resync(now, arrival, header, payload);
            return PushOutcome::Accepted;
        }

        let pos = match self
            .held
            .binary_search_by_key(&ext, |h| h.packet.ext_sequence)
        {
            Ok(_) => {
                self.stats.duplicate += 1;
                return PushOutcome::Duplicate;
            }
            Err(pos) => pos,
        };
        if pos < self.held.len() {
            self.stats.reordered += 1;
        }
        s.probe = None;
        s.last_arrival = now;
        let ext_ts = s.ts.unwrap(header.timestamp).wrapping_add(s.ts_offset);
        let transit = arrival - ext_ts as f64;
        let d = (transit - s.last_transit).abs();
        s.last_transit = transit;
        self.stats.jitter_ts += (d - self.stats.jitter_ts) / 16.0;

        let packet = media_packet(header, ext, ext_ts, payload);
        self.held.insert(
            pos,
            Held {
                packet,
                arrival: now,
            },
        );
        self.release_contiguous();
        while self.held.len() > self.config.max_packets {
            self.release_front();
            self.release_contiguous();
        }
        PushOutcome::Accepted
    }

    pub fn poll(&mut self, now: Instant) -> Option<JitterOutput> {
        self.last_now = Some(now);
        if self.out.is_empty() && self.hold_deadline().is_some_and(|d| now >= d) {
            self.release_front();
            self.release_contiguous();
        }
        self.out.pop_front()
    }

    /// When `poll` may next release something held behind a gap.
    /// While outputs are already waiting, the last `now` seen (poll at once).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.out.is_empty() {
            return self.last_now;
        }
        self.hold_deadline()
    }

    /// Release everything held, declaring gaps lost (end of session).
    pub fn flush(&mut self) -> Option<JitterOutput> {
        if self.out.is_empty() {
            if let Some(s) = self.stream.as_mut() {
                s.probe = None;
            }
            self.release_front();
            self.release_contiguous();
        }
        self.out.pop_front()
    }

    pub fn stats(&self) -> &JitterStats {
        &self.stats
    }

    pub fn jitter_ms(&self) -> f64 {
        self.stats.jitter_ts * 1000.0 / self.config.clock_rate as f64
    }

    /// Oldest held arrival + holdback; `None` if nothing is held (or it is unrepresentable).
    fn hold_deadline(&self) -> Option<Instant> {
        let oldest = self.held.iter().map(|h| h.arrival).min()?;
        oldest.checked_add(self.config.holdback)
    }

    /// A packet of another SSRC than the current stream's: held until the source passes
    /// probation, then the current stream ends and the new one starts with every held packet.
    fn offer_new_source(
        &mut self,
        now: Instant,
        header: &RtpHeader,
        payload: &[u8],
    ) -> PushOutcome {
        let dropped = &mut self.stats.probation_dropped;
        let Some(run) = self.probation.offer(now, header, payload, dropped) else {
            return PushOutcome::Probation;
        };
        self.release_all();
        self.out
            .push_back(JitterOutput::NewStream { ssrc: header.ssrc });
        let mut run = run.into_iter();
        if let Some(first) = run.next() {
            let epoch = self.epoch.unwrap_or(first.arrival);
            let arrival = first.arrival.saturating_duration_since(epoch).as_secs_f64()
                * self.config.clock_rate as f64;
            self.start(first.arrival, arrival, &first.header, &first.payload);
        }
        for held in run {
            // Counted once already, on arrival.
            self.stats.received -= 1;
            self.push(held.arrival, &held.header, &held.payload);
        }
        self.last_now = Some(now);
        PushOutcome::Accepted
    }

    /// First packet of a stream: it defines the sequence and timestamp origin.
    fn start(&mut self, now: Instant, arrival: f64, header: &RtpHeader, payload: &[u8]) {
        let mut seq = SequenceUnwrapper::default();
        let mut ts = TimestampUnwrapper::default();
        let ext = seq.unwrap(header.sequence);
        let ext_ts = ts.unwrap(header.timestamp);
        let mut s = Stream {
            ssrc: header.ssrc,
            seq,
            ts,
            seq_offset: 0,
            ts_offset: 0,
            next_seq: ext,
            last_ts: ext_ts,
            step: None,
            history: 0,
            probe: None,
            last_transit: arrival - ext_ts as f64,
            last_arrival: now,
        };
        let packet = media_packet(header, ext, ext_ts, payload);
        release(&mut s, &mut self.out, &mut self.stats, packet, false);
        self.stream = Some(s);
    }

    /// Sequence discontinuity within a stream: flush, report, renumber (see module doc).
    fn resync(&mut self, now: Instant, arrival: f64, header: &RtpHeader, payload: &[u8]) {
        self.release_all();
        let Some(s) = self.stream.as_mut() else {
            return;
        };
        let step = s.step.unwrap_or(0);
        let elapsed = now.saturating_duration_since(s.last_arrival).as_secs_f64()
            * self.config.clock_rate as f64;
        let advance = (elapsed as u64).max(step);

        s.seq = SequenceUnwrapper::default();
        s.seq_offset = s.next_seq.wrapping_sub(s.seq.unwrap(header.sequence));
        s.ts = TimestampUnwrapper::default();
        let ext_ts = s.last_ts.saturating_add(advance);
        s.ts_offset = ext_ts.wrapping_sub(s.ts.unwrap(header.timestamp));
        s.history = 0;
        s.probe = None;
        s.last_transit = arrival - ext_ts as f64;
        s.last_arrival = now;

        self.out.push_back(JitterOutput::Talkspurt {
            skipped_ts: advance - step,
        });
        let packet = media_packet(header, s.next_seq, ext_ts, payload);
        release(s, &mut self.out, &mut self.stats, packet, false);
    }

    fn release_front(&mut self) {
        if let (Some(s), Some(h)) = (self.stream.as_mut(), self.held.pop_front()) {
            release(s, &mut self.out, &mut self.stats, h.packet, true);
        }
    }

    fn release_contiguous(&mut self) {
        while let (Some(s), Some(h)) = (self.stream.as_ref(), self.held.front()) {
            if h.packet.ext_sequence != s.next_seq {
                break;
            }
            self.release_front();
        }
    }

    fn release_all(&mut self) {
        while !self.held.is_empty() {
            self.release_front();
        }
    }
}

fn media_packet(header: &RtpHeader, ext: u64, ext_ts: u64, payload: &[u8]) -> MediaPacket {
    MediaPacket {
        ext_sequence: ext,
        ext_timestamp: ext_ts,
        payload_type: header.payload_type,
        marker: header.marker,
        payload: payload.to_vec(),
    }
}

/// Queue `p` (ext sequence >= `next_seq`), preceded by `Lost` for the slots it skips and by
/// `Talkspurt` if `check` and its marker and timestamp say the sender paused.
fn release(
    s: &mut Stream,
    out: &mut VecDeque<JitterOutput>,
    stats: &mut JitterStats,
    p: MediaPacket,
    check: bool,
) {
    let missing = p.ext_sequence - s.next_seq;
    if check {
        let delta = p.ext_timestamp.saturating_sub(s.last_ts);
        let slots = missing + 1;
        // Without a learned step, assume the missing packets were evenly spaced.
        let spacing = s.step.unwrap_or(delta / slots);
        let explained = spacing.saturating_mul(slots);
        let talkspurt = p.marker && s.step.is_some() && delta > explained;
        if missing > 0 {
            let duration_ts = if talkspurt {
                spacing.saturating_mul(missing)
            } else {
                delta.saturating_sub(spacing)
            };
            out.push_back(JitterOutput::Lost {
                packets: u32::try_from(missing).unwrap_or(u32::MAX),
                duration_ts,
            });
            stats.lost += missing;
        }
        if talkspurt {
            out.push_back(JitterOutput::Talkspurt {
                skipped_ts: delta - explained,
            });
        } else if missing == 0 && !p.marker && delta > 0 {
            s.step = Some(delta);
        }
    }
    let shift = missing + 1;
    s.history = if shift >= 128 { 0 } else { s.history << shift } | 1;
    s.next_seq = p.ext_sequence + 1;
    s.last_ts = p.ext_timestamp;
    out.push_back(JitterOutput::Packet(p));
}

#[cfg(test)]
mod tests;
