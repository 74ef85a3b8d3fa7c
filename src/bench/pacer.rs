//! The pacing thread: sends every bench stream's 20 ms packets from its own socket on a
//! precise schedule (one OS thread, a timer heap, 1 ns timer slack), with impairments.
//!
//! Packets follow Asterisk's externalMedia: random SSRC and first sequence number, first
//! timestamp one frame, no marker (ASTERISK-NOTES.md). A stream's packet `k` is due at
//! `start + k * ptime`; jitter or reordering only ever delays it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::histogram::LatencyHistogram;
use super::streams::{Registry, StreamRecord};
use crate::media::rtp::RtpHeader;
use crate::sender::netem::{Fate, Netem, NetemCounts};

/// The payloads of one clip in one codec, 20 ms each, played in a loop.
#[derive(Debug)]
pub struct EncodedClip {
    pub payloads: Vec<Vec<u8>>,
    pub payload_type: u8,
    /// RTP timestamp units per packet (160 for 8 kHz clocks, 960 for Opus).
    pub timestamp_step: u32,
}

/// A stream to start sending.
pub struct StreamSpec {
    pub index: usize,
    /// Connected to the gateway's port for this session.
    pub socket: UdpSocket,
    pub clip: Arc<EncodedClip>,
    pub record: Arc<StreamRecord>,
    pub netem: Option<Netem>,
    /// Stop after this many packets (a clip played N times); None = until told.
    pub max_packets: Option<u64>,
    pub start: Instant,
}

/// What one stream did, when it ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct StreamSent {
    pub index: usize,
    /// Distinct packets (sequence numbers) the stream used, lost ones included.
    pub packets: u64,
    /// Datagrams on the wire: lost ones excluded, duplicates included.
    pub datagrams: u64,
    pub send_errors: u64,
    pub injected: NetemCounts,
}

/// Totals so far, read while running.
#[derive(Default)]
pub struct PacerCounters {
    pub datagrams: AtomicU64,
    pub active_streams: AtomicU64,
    pub send_errors: AtomicU64,
    /// Packets the impairments dropped, all streams.
    pub injected_lost: AtomicU64,
    /// How late the pacer sent packets after their due time: its own health.
    pub lateness: LatencyHistogram,
}

enum Command {
    Add(Box<StreamSpec>),
    /// Every stream sends its packets due before this instant, then ends.
    StopAll(Instant),
}

pub struct Pacer {
    commands: Sender<Command>,
    pub counters: Arc<PacerCounters>,
    thread: Option<JoinHandle<Vec<StreamSent>>>,
    /// Each stream's summary when it ends.
    pub ended: Receiver<StreamSent>,
}

impl Pacer {
    pub fn start(registry: Arc<Registry>) -> std::io::Result<Self> {
        let (commands, receiver) = mpsc::channel();
        let (ended_tx, ended) = mpsc::channel();
        let counters = Arc::new(PacerCounters::default());
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("bench-pacer".into())
            .spawn(move || run(receiver, registry, c, ended_tx))?;
        Ok(Self {
            commands,
            counters,
            thread: Some(thread),
            ended,
        })
    }

    pub fn add(&self, spec: StreamSpec) {
        let _ = self.commands.send(Command::Add(Box::new(spec)));
    }

    /// End every stream at `at`, wait for the thread and return what each stream sent.
    pub fn stop_all(mut self, at: Instant) -> Vec<StreamSent> {
        let _ = self.commands.send(Command::StopAll(at));
        drop(self.commands);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

struct Live {
    spec: StreamSpec,
    ssrc: u32,
    first_sequence: u16,
    /// Last packet index to send (inclusive), once known.
    last: Option<u64>,
    sent: StreamSent,
    /// Packets scheduled for a later send (jitter, reordering, duplicates).
    delayed: u32,
    ended: bool,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    /// Packet `k`'s slot: decide its fate, schedule the next slot.
    Slot,
    /// Send packet `k` now (it was delayed).
    Send,
}

type Entry = Reverse<(u64, usize, u64, Due)>;

fn run(
    commands: Receiver<Command>,
    registry: Arc<Registry>,
    counters: Arc<PacerCounters>,
    ended_tx: Sender<StreamSent>,
) -> Vec<StreamSent> {
    lower_timer_slack();
    let ptime_us = registry.ptime_ms * 1000;
    let mut streams: Vec<Live> = Vec::new();
    let mut heap: BinaryHeap<Entry> = BinaryHeap::new();
    let mut stop_at: Option<u64> = None;
    let mut commands_open = true;
    let mut buf = Vec::with_capacity(1500);
    loop {
        // Commands, without blocking while packets are due.
        loop {
            let command = if heap.is_empty() && commands_open && stop_at.is_none() {
                commands.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                commands.recv_timeout(Duration::ZERO)
            };
            match command {
                Ok(Command::Add(spec)) => {
                    let slot = stream_slot(&mut streams, *spec, stop_at, ptime_us, &registry);
                    let start = registry.us_at(streams[slot].spec.start);
                    heap.push(Reverse((start, slot, 0, Due::Slot)));
                    counters.active_streams.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Command::StopAll(at)) => {
                    let at = registry.us_at(at);
                    stop_at = Some(at);
                    for live in &mut streams {
                        let last = last_before(at, registry.us_at(live.spec.start), ptime_us);
                        live.last = Some(live.last.map_or(last, |l| l.min(last)));
                    }
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    commands_open = false;
                    break;
                }
            }
        }
        let Some(Reverse((due, _, _, _))) = heap.peek() else {
            if !commands_open || stop_at.is_some() {
                break;
            }
            continue;
        };
        let now = registry.now_us();
        if *due > now {
            // Wake for the packet, or within 5 ms to take new commands.
            std::thread::sleep(Duration::from_micros((*due - now).min(5_000)));
            continue;
        }
        let Reverse((due, slot, k, kind)) = heap.pop().expect("peeked");
        let live = &mut streams[slot];
        match kind {
            Due::Slot => {
                if live.last.is_some_and(|last| k > last) {
                    if live.delayed == 0 {
                        finish(live, &counters, &ended_tx);
                    } else {
                        // Delayed copies are still to go: look again a slot later.
                        heap.push(Reverse((due + ptime_us, slot, k, Due::Slot)));
                    }
                    continue;
                }
                live.sent.packets += 1;
                let edge = k == 0 || live.last == Some(k);
                let fate = match (&mut live.spec.netem, edge) {
                    (Some(netem), false) => netem.decide(ptime_us),
                    _ => Fate::Sent {
                        delay_us: 0,
                        copies: 1,
                    },
                };
                if fate == Fate::Lost {
                    counters.injected_lost.fetch_add(1, Ordering::Relaxed);
                }
                if let Fate::Sent { delay_us, copies } = fate {
                    for copy in 0..copies {
                        let at = due + delay_us + u64::from(copy);
                        if at == due {
                            send(live, k, due, &registry, &counters, &mut buf);
                        } else {
                            live.delayed += 1;
                            heap.push(Reverse((at, slot, k, Due::Send)));
                        }
                    }
                }
                heap.push(Reverse((due + ptime_us, slot, k + 1, Due::Slot)));
            }
            Due::Send => {
                live.delayed -= 1;
                send(live, k, due, &registry, &counters, &mut buf);
            }
        }
    }
    for live in &mut streams {
        finish(live, &counters, &ended_tx);
    }
    streams.iter().map(|l| l.sent).collect()
}

/// Register a new stream; returns its slot.
fn stream_slot(
    streams: &mut Vec<Live>,
    spec: StreamSpec,
    stop_at: Option<u64>,
    ptime_us: u64,
    registry: &Registry,
) -> usize {
    let stop_last = stop_at.map(|at| last_before(at, registry.us_at(spec.start), ptime_us));
    let clip_last = spec.max_packets.map(|m| m.saturating_sub(1));
    let last = match (stop_last, clip_last) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let sent = StreamSent {
        index: spec.index,
        ..Default::default()
    };
    streams.push(Live {
        spec,
        ssrc: rand::random(),
        first_sequence: rand::random(),
        last,
        sent,
        delayed: 0,
        ended: false,
    });
    streams.len() - 1
}

/// Index of the last packet whose slot is before `stop` for a stream started at `start`.
fn last_before(stop: u64, start: u64, ptime_us: u64) -> u64 {
    stop.saturating_sub(start).saturating_sub(1) / ptime_us
}

fn send(
    live: &mut Live,
    k: u64,
    due: u64,
    registry: &Registry,
    counters: &PacerCounters,
    buf: &mut Vec<u8>,
) {
    let clip = &live.spec.clip;
    let header = RtpHeader {
        marker: false,
        payload_type: clip.payload_type,
        sequence: live.first_sequence.wrapping_add(k as u16),
        // Asterisk's first timestamp is one frame.
        timestamp: ((k + 1) as u32).wrapping_mul(clip.timestamp_step),
        ssrc: live.ssrc,
    };
    buf.clear();
    header.write_to(buf);
    buf.extend_from_slice(&clip.payloads[(k % clip.payloads.len() as u64) as usize]);
    let now = registry.now_us();
    // Before the send: the engine may see the audio before this thread runs again.
    live.spec.record.note_sent(k, now);
    match live.spec.socket.send(buf) {
        Ok(_) => {
            live.sent.datagrams += 1;
            counters.datagrams.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            live.sent.send_errors += 1;
            counters.send_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    counters.lateness.record_us(now.saturating_sub(due));
}

fn finish(live: &mut Live, counters: &PacerCounters, ended_tx: &Sender<StreamSent>) {
    if live.ended {
        return;
    }
    live.ended = true;
    if let Some(netem) = &live.spec.netem {
        live.sent.injected = netem.counts;
    }
    counters.active_streams.fetch_sub(1, Ordering::Relaxed);
    let _ = ended_tx.send(live.sent);
}

/// Linux wakes sleeping threads up to 50 µs late by default ("timer slack"); 1 ns makes
/// `sleep` wake on time at the cost of fewer coalesced wake-ups.
fn lower_timer_slack() {
    #[cfg(target_os = "linux")]
    {
        // prctl is variadic: pass the slack at the width the kernel reads (unsigned long).
        let slack_ns: libc::c_ulong = 1;
        // SAFETY: PR_SET_TIMERSLACK takes a plain integer and affects only this thread.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, slack_ns, 0, 0, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sender::netem::NetemConfig;

    fn clip() -> Arc<EncodedClip> {
        Arc::new(EncodedClip {
            payloads: (0..3u8).map(|i| vec![i; 160]).collect(),
            payload_type: 0,
            timestamp_step: 160,
        })
    }

    fn pair() -> (UdpSocket, UdpSocket) {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (tx, rx)
    }

    #[test]
    fn sends_a_clip_looped_as_asterisk_numbers_it() {
        let registry = Arc::new(Registry::new(20));
        let pacer = Pacer::start(registry.clone()).unwrap();
        let (tx, rx) = pair();
        pacer.add(StreamSpec {
            index: 0,
            socket: tx,
            clip: clip(),
            record: registry.stream(0),
            netem: None,
            max_packets: Some(7),
            start: Instant::now(),
        });
        let mut buf = [0u8; 1500];
        let mut packets = Vec::new();
        for _ in 0..7 {
            let n = rx.recv(&mut buf).unwrap();
            let p = crate::media::rtp::parse(&buf[..n]).unwrap();
            packets.push((p.header.sequence, p.header.timestamp, p.payload[0]));
        }
        let ended = pacer.ended.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((ended.packets, ended.datagrams), (7, 7));
        let seq0 = packets[0].0;
        for (k, (seq, ts, first_byte)) in packets.iter().enumerate() {
            assert_eq!(*seq, seq0.wrapping_add(k as u16));
            assert_eq!(*ts, (k as u32 + 1) * 160);
            assert_eq!(*first_byte, (k % 3) as u8);
        }
        for k in 0..7 {
            assert!(registry.stream(0).sent_at_us(k).is_some());
        }
        assert!(pacer.stop_all(Instant::now()).len() == 1);
    }

    #[test]
    fn impairments_are_applied_and_reported() {
        let registry = Arc::new(Registry::new(20));
        let pacer = Pacer::start(registry.clone()).unwrap();
        let (tx, rx) = pair();
        let config = NetemConfig {
            loss: 0.2,
            duplicate: 0.2,
            ..Default::default()
        };
        pacer.add(StreamSpec {
            index: 4,
            socket: tx,
            clip: clip(),
            record: registry.stream(4),
            netem: Some(Netem::new(config, 4)),
            max_packets: Some(60),
            start: Instant::now(),
        });
        let ended = pacer.ended.recv_timeout(Duration::from_secs(10)).unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 1500];
        let mut received = 0;
        while rx.recv(&mut buf).is_ok() {
            received += 1;
        }
        assert_eq!(ended.index, 4);
        assert_eq!(ended.packets, 60);
        assert!(ended.injected.lost > 0 && ended.injected.duplicated > 0);
        assert_eq!(
            ended.datagrams,
            60 - ended.injected.lost + ended.injected.duplicated
        );
        assert_eq!(received, ended.datagrams);
        pacer.stop_all(Instant::now());
    }
}
