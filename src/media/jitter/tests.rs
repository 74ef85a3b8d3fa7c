//! Unit tests for `media::jitter`.
use super::*;

const SSRC: u32 = 0x5EED_0001;

fn hdr(seq: u16, ts: u32) -> RtpHeader {
    RtpHeader {
        marker: false,
        payload_type: 0,
        sequence: seq,
        timestamp: ts,
        ssrc: SSRC,
    }
}

fn marked(seq: u16, ts: u32) -> RtpHeader {
    RtpHeader {
        marker: true,
        ..hdr(seq, ts)
    }
}

/// A buffer plus a synthetic clock: `at(ms)` is `ms` after the test's origin.
struct Sim {
    jb: JitterBuffer,
    t0: Instant,
}

impl Sim {
    fn new(config: JitterConfig) -> Self {
        Self {
            jb: JitterBuffer::new(config),
            t0: Instant::now(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Push at `ms` (payload = the sequence bytes) and drain `poll`.
    fn push(&mut self, ms: u64, h: RtpHeader) -> (PushOutcome, String) {
        let outcome = self.jb.push(self.at(ms), &h, &h.sequence.to_be_bytes());
        (outcome, self.poll(ms))
    }

    /// Push an in-order packet at `ms` and return it as released.
    fn push_one(&mut self, ms: u64, h: RtpHeader) -> MediaPacket {
        self.jb.push(self.at(ms), &h, &h.sequence.to_be_bytes());
        match self.jb.poll(self.at(ms)) {
            Some(JitterOutput::Packet(p)) => p,
            other => panic!("expected a packet, got {other:?}"),
        }
    }

    fn poll(&mut self, ms: u64) -> String {
        let now = self.at(ms);
        show(std::iter::from_fn(|| self.jb.poll(now)))
    }

    fn flush(&mut self) -> String {
        show(std::iter::from_fn(|| self.jb.flush()))
    }
}

/// `P<seq>` packet (its payload carries the sender's sequence), `L<n>/<ts>` lost,
/// `T<ts>` talkspurt, `N<ssrc>` new stream.
fn show(outputs: impl Iterator<Item = JitterOutput>) -> String {
    let words: Vec<String> = outputs
        .map(|o| match o {
            JitterOutput::Packet(p) => {
                format!("P{}", u16::from_be_bytes([p.payload[0], p.payload[1]]))
            }
            JitterOutput::Lost {
                packets,
                duration_ts,
            } => format!("L{packets}/{duration_ts}"),
            JitterOutput::Talkspurt { skipped_ts } => format!("T{skipped_ts}"),
            JitterOutput::NewStream { ssrc } => format!("N{ssrc:x}"),
        })
        .collect();
    words.join(" ")
}

use PushOutcome::{Accepted, Duplicate, Late};

fn accepted(s: &str) -> (PushOutcome, String) {
    (Accepted, s.to_string())
}

/// Push seq `first + i` with timestamp `160 * (i + 1)` every 20 ms, `n` packets.
fn steady(sim: &mut Sim, first: u16, n: u16) {
    for i in 0..n {
        let seq = first.wrapping_add(i);
        let out = sim.push(20 * i as u64, hdr(seq, 160 * (i as u32 + 1)));
        assert_eq!(out, accepted(&format!("P{seq}")));
    }
}

#[test]
fn in_order_released_at_once_like_asterisk() {
    let mut sim = Sim::new(JitterConfig::default());
    steady(&mut sim, 40_000, 5);
    assert_eq!(sim.jb.poll_timeout(), None);
    assert_eq!(
        *sim.jb.stats(),
        JitterStats {
            received: 5,
            ..Default::default()
        }
    );
    // The first packet's timestamp is the frame size; ext values start in cycle 1.
    let mut jb = JitterBuffer::new(JitterConfig::default());
    jb.push(sim.t0, &hdr(7, 160), &[0xFF; 160]);
    let Some(JitterOutput::Packet(p)) = jb.poll(sim.t0) else {
        panic!("first packet not released");
    };
    assert_eq!(
        (p.ext_sequence, p.ext_timestamp),
        (65536 + 7, (1 << 32) + 160)
    );
    assert_eq!(p.payload, vec![0xFF; 160]);
}

#[test]
fn gap_declared_lost_after_holdback() {
    let mut sim = Sim::new(JitterConfig::default());
    steady(&mut sim, 1, 2);
    assert_eq!(sim.push(60, hdr(4, 640)), accepted(""));
    assert_eq!(sim.jb.poll_timeout(), Some(sim.at(120)));
    assert_eq!(sim.push(80, hdr(5, 800)), accepted(""));
    assert_eq!(
        sim.jb.poll_timeout(),
        Some(sim.at(120)),
        "oldest held counts"
    );
    assert_eq!(sim.poll(119), "");
    assert_eq!(sim.poll(120), "L1/160 P4 P5");
    assert_eq!(sim.jb.poll_timeout(), None);
    assert_eq!(sim.jb.stats().lost, 1);
    assert_eq!(sim.push(100, hdr(6, 960)), accepted("P6"));
}

#[test]
fn reorder_within_window_is_not_loss() {
    let mut sim = Sim::new(JitterConfig::default());
    steady(&mut sim, 1, 2);
    assert_eq!(sim.push(40, hdr(4, 640)), accepted(""));
    assert_eq!(sim.push(45, hdr(3, 480)), accepted("P3 P4"));
    assert_eq!(sim.push(60, hdr(5, 800)), accepted("P5"));
    let st = sim.jb.stats();
    assert_eq!((st.reordered, st.lost, st.late), (1, 0, 0));
}

#[test]
fn two_gaps_released_by_the_oldest_arrival() {
    let mut sim = Sim::new(JitterConfig::default());
    steady(&mut sim, 1, 1);
    // 5 arrives first, then 3: 2 and 4 missing. 5 has waited longest.
    assert_eq!(sim.push(10, hdr(5, 800)), accepted(""));
    assert_eq!(sim.push(30, hdr(3, 480)), accepted(""));
    assert_eq!(sim.jb.stats().reordered, 1);
    assert_eq!(sim.jb.poll_timeout(), Some(sim.at(70)));
    assert_eq!(sim.poll(70), "L1/160 P3 L1/160 P5");
}

#[test]
fn late_after_its_slot_was_declared_lost() {
    let mut sim = Sim::new(JitterConfig::default());
    steady(&mut sim, 1, 2);
    sim.push(60, hdr(4, 640));
    assert_eq!(sim.poll(120), "L1/160 P4");
    assert_eq!(sim.push(130, hdr(3, 480)), (Late, String::new()));
    // Before the stream's first packet is late too.
    assert_eq!(sim.push(131, hdr(0, 0)), (Late, String::new()));
    assert_eq!(sim.push(140, hdr(5, 800)), accepted("P5"));
    let st = sim.jb.stats();
    assert_eq!((st.late, st.lost, st.received), (2, 1, 6));
}

#[test]
fn duplicates_held_or_released_are_dropped() {
    let mut sim = Sim::new(JitterConfig::default());
    steady(&mut sim, 1, 2);
    assert_eq!(sim.push(40, hdr(2, 320)), (Duplicate, String::new()));
    assert_eq!(sim.push(60, hdr(4, 640)), accepted(""));
    assert_eq!(sim.push(61, hdr(4, 640)), (Duplicate, String::new()));
    assert_eq!(sim.push(62, hdr(3, 480)), accepted("P3 P4"));
    assert_eq!(sim.push(63, hdr(3, 480)), (Duplicate, String::new()));
    let st = sim.jb.stats();
    assert_eq!((st.duplicate, st.reordered, st.received), (3, 1, 7));
}

#[test]
fn marker_with_timestamp_jump_is_a_talkspurt() {
    let mut sim = Sim::new(JitterConfig::default());
    // Timestamps 160, 320, 480; then 2.5 s of silence (20000 units), sequence contiguous.
    steady(&mut sim, 100, 3);
    assert_eq!(
        sim.push(2560, marked(103, 480 + 160 + 20_000)),
        accepted("T20000 P103")
    );
    assert_eq!(
        sim.push(2580, hdr(104, 480 + 320 + 20_000)),
        accepted("P104")
    );
    // Marker without a jump, or a jump without a marker: no talkspurt.
    assert_eq!(
        sim.push(2600, marked(105, 480 + 480 + 20_000)),
        accepted("P105")
    );
    assert_eq!(sim.jb.stats().lost, 0);
    // A marker on the very first packet means nothing.
    let mut sim = Sim::new(JitterConfig::default());
    assert_eq!(sim.push(0, marked(9, 160)), accepted("P9"));
}

#[test]
fn talkspurt_after_loss_splits_lost_and_skipped_time() {
    let mut sim = Sim::new(JitterConfig::default());
    // Timestamps 160, 320; then 3 is missing (one frame) and 8000 units of silence pass.
    steady(&mut sim, 1, 2);
    assert_eq!(
        sim.push(1000, marked(4, 320 + 2 * 160 + 8000)),
        accepted("")
    );
    assert_eq!(sim.poll(1060), "L1/160 T8000 P4");
}

#[test]
fn lost_duration_comes_from_surrounding_timestamps() {
    let mut sim = Sim::new(JitterConfig::default());
    // No step learned yet: spacing is inferred from the timestamps (640 - 160 over 3).
    assert_eq!(sim.push(0, hdr(1, 160)), accepted("P1"));
    assert_eq!(sim.push(60, hdr(4, 640)), accepted(""));
    assert_eq!(sim.poll(120), "L2/320 P4");
    // Learned step 160 (4 -> 5); a lossy gap without marker keeps all its time.
    assert_eq!(sim.push(140, hdr(5, 800)), accepted("P5"));
    assert_eq!(sim.push(200, hdr(8, 800 + 3 * 160 + 40)), accepted(""));
    assert_eq!(sim.poll(260), "L2/360 P8");
}

#[test]
fn ssrc_change_flushes_then_starts_a_new_stream() {
    let mut sim = Sim::new(JitterConfig::default());
    steady(&mut sim, 1, 2);
    sim.push(60, hdr(4, 640));
    let other = |i: u16| RtpHeader {
        ssrc: 0xABC,
        ..hdr(30_000 + i, 999_999 + 160 * i as u32)
    };
    // The new source is held in probation, then replayed whole.
    for i in 0..SSRC_PROBATION as u16 - 1 {
        assert_eq!(
            sim.push(70 + i as u64, other(i)),
            (PushOutcome::Probation, String::new())
        );
    }
    assert_eq!(
        sim.push(80, other(3)),
        accepted("L1/160 P4 Nabc P30000 P30001 P30002 P30003")
    );
    assert_eq!(sim.push(90, other(4)), accepted("P30004"));
    // An old-stream number is just a number in the new stream's space.
    let st = sim.jb.stats();
    assert_eq!((st.received, st.lost, st.probation_dropped), (8, 1, 0));
    assert_eq!(sim.jb.poll_timeout(), None);
}

#[test]
fn sequence_and_timestamp_wrap_through_the_buffer() {
    let mut sim = Sim::new(JitterConfig::default());
    let ts = |i: u32| (u32::MAX - 200).wrapping_add(160 * i);
    assert_eq!(sim.push(0, hdr(65534, ts(0))), accepted("P65534"));
    assert_eq!(sim.push(20, hdr(0, ts(2))), accepted(""));
    assert_eq!(sim.push(25, hdr(65535, ts(1))), accepted("P65535 P0"));
    assert_eq!(sim.push(40, hdr(1, ts(3))), accepted("P1"));
    let p = sim.push_one(60, hdr(2, ts(4)));
    assert_eq!(p.ext_sequence, 2 * 65536 + 2);
    assert_eq!(p.ext_timestamp, (1 << 32) + (u32::MAX - 200) as u64 + 640);
    let st = sim.jb.stats();
    assert_eq!((st.lost, st.reordered), (0, 1));
}

#[test]
fn interarrival_jitter_matches_hand_computation() {
    // 8 kHz, 160 units per packet. Arrivals 0, 20, 45, 60 ms = 0, 160, 360, 480 units.
    // D = 0, 40, -40  =>  J = 0, 40/16 = 2.5, 2.5 + (40 - 2.5)/16 = 4.84375.
    let mut sim = Sim::new(JitterConfig::default());
    for (ms, seq) in [(0, 1u16), (20, 2), (45, 3), (60, 4)] {
        sim.push(ms, hdr(seq, 160 * seq as u32));
    }
    assert_eq!(sim.jb.stats().jitter_ts, 4.84375);
    assert_eq!(sim.jb.jitter_ms(), 4.84375 / 8.0);
}

#[test]
fn max_packets_bounds_what_is_held() {
    let mut sim = Sim::new(JitterConfig {
        max_packets: 3,
        ..Default::default()
    });
    steady(&mut sim, 1, 1);
    for (i, seq) in [3u16, 5, 7].into_iter().enumerate() {
        assert_eq!(sim.push(i as u64, hdr(seq, 160 * seq as u32)), accepted(""));
    }
    // A fourth held packet forces the oldest gap out, without any time passing.
    assert_eq!(sim.push(3, hdr(9, 1440)), accepted("L1/160 P3"));
    assert_eq!(sim.flush(), "L1/160 P5 L1/160 P7 L1/160 P9");
    assert_eq!(sim.jb.stats().lost, 4);
    // max_packets 0: no reordering at all.
    let mut sim = Sim::new(JitterConfig {
        max_packets: 0,
        ..Default::default()
    });
    steady(&mut sim, 1, 1);
    assert_eq!(sim.push(1, hdr(3, 480)), accepted("L1/160 P3"));
    assert_eq!(sim.push(2, hdr(2, 320)), (Late, String::new()));
}

#[test]
fn flush_releases_everything_in_order() {
    let mut sim = Sim::new(JitterConfig::default());
    steady(&mut sim, 1, 1);
    sim.push(20, hdr(5, 800));
    sim.push(21, hdr(3, 480));
    assert_eq!(sim.flush(), "L1/160 P3 L1/160 P5");
    assert_eq!(sim.jb.flush(), None);
    assert_eq!(sim.jb.poll_timeout(), None);
}

#[test]
fn poll_timeout_is_immediate_while_outputs_wait() {
    let mut sim = Sim::new(JitterConfig::default());
    sim.jb.push(sim.at(5), &hdr(1, 160), &[1]);
    assert_eq!(sim.jb.poll_timeout(), Some(sim.at(5)));
    assert!(sim.jb.poll(sim.at(5)).is_some());
    assert_eq!(sim.jb.poll_timeout(), None);
}

#[test]
fn forward_jump_resyncs_without_mass_loss() {
    let mut sim = Sim::new(JitterConfig::default());
    steady(&mut sim, 1, 3); // last arrival at 40 ms
    sim.push(50, hdr(5, 800)); // held behind a gap

    // 5000 ahead, 1 s after the last arrival, unrelated timestamp.
    let out = sim.push(1050, hdr(5 + 5000, 7));
    // Wall clock: 1000 ms = 8000 units, minus one 160-unit frame.
    assert_eq!(out, accepted("L1/160 P5 T7840 P5005"));
    assert_eq!(sim.push(1070, hdr(5006, 167)), accepted("P5006"));
    assert_eq!(sim.jb.stats().lost, 1);
    // Numbering stays continuous across the resync.
    let p = sim.push_one(1090, hdr(5007, 327));
    assert_eq!(p.ext_sequence, 65536 + 8);
    assert_eq!(p.ext_timestamp, (1 << 32) + 800 + 8000 + 320);
}

#[test]
fn far_behind_packet_needs_its_successor_to_resync() {
    let mut sim = Sim::new(JitterConfig::default());
    steady(&mut sim, 2000, 3);
    // A stale packet 500 behind: dropped, the stream goes on.
    assert_eq!(sim.push(60, hdr(1500, 5)), (Late, String::new()));
    assert_eq!(sim.push(61, hdr(2003, 640)), accepted("P2003"));
    // A restart 1000 lower: the first is dropped, its successor confirms.
    assert_eq!(sim.push(80, hdr(1000, 9000)), (Late, String::new()));
    // Skipped: wall clock since 2003 arrived (39 ms = 312 units) minus one frame.
    assert_eq!(sim.push(100, hdr(1001, 9160)), accepted("T152 P1001"));
    let p = sim.push_one(120, hdr(1002, 9320));
    assert_eq!(p.ext_sequence, 65536 + 2005, "numbering continues");
    assert_eq!(sim.push(121, hdr(1000, 9000)), (Late, String::new()));
    let st = sim.jb.stats();
    assert_eq!((st.late, st.lost, st.duplicate), (3, 0, 0));
}

/// Checks that numbering is continuous within a stream (packets plus lost slots).
fn tally(o: JitterOutput, next: &mut Option<u64>, released: &mut u64) {
    match o {
        JitterOutput::Packet(p) => {
            if let Some(n) = *next {
                assert_eq!(p.ext_sequence, n);
            }
            *next = Some(p.ext_sequence + 1);
            *released += 1;
        }
        JitterOutput::Lost { packets, .. } => *next = next.map(|n| n + packets as u64),
        JitterOutput::Talkspurt { .. } => {}
        JitterOutput::NewStream { .. } => *next = None,
    }
}

#[test]
fn random_traffic_keeps_numbering_and_counts_consistent() {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let mut rng = StdRng::seed_from_u64(3550);
    let config = JitterConfig {
        max_packets: 8,
        ..Default::default()
    };
    let mut jb = JitterBuffer::new(config);
    let t0 = Instant::now();
    let (mut ms, mut seq, mut ts, mut ssrc) = (0u64, 65000u16, u32::MAX - 5000, 1u32);
    let mut recent: Vec<RtpHeader> = Vec::new();
    let (mut accepted, mut dup, mut late, mut released) = (0u64, 0u64, 0u64, 0u64);
    let mut probation = 0u64;
    let mut next: Option<u64> = None;
    for _ in 0..20_000 {
        ms += rng.random_range(0..40);
        let h = match rng.random_range(0..100) {
            0..=79 => {
                seq = seq.wrapping_add(if rng.random_bool(0.05) { 3 } else { 1 });
                ts = ts.wrapping_add(160);
                hdr(seq, ts)
            }
            80..=94 if !recent.is_empty() => recent[rng.random_range(0..recent.len())],
            95..=97 => {
                seq = seq.wrapping_add(rng.random());
                hdr(seq, rng.random())
            }
            98 => {
                ssrc += 1;
                hdr(seq, ts)
            }
            _ => marked(
                seq.wrapping_add(1),
                ts.wrapping_add(rng.random_range(0..50_000)),
            ),
        };
        let h = RtpHeader { ssrc, ..h };
        recent.push(h);
        if recent.len() > 30 {
            recent.remove(0);
        }
        let now = t0 + Duration::from_millis(ms);
        match jb.push(now, &h, &[0]) {
            Accepted => accepted += 1,
            Duplicate => dup += 1,
            Late => late += 1,
            PushOutcome::Probation => probation += 1,
        }
        assert!(jb.held.len() <= config.max_packets);
        while let Some(o) = jb.poll(now) {
            tally(o, &mut next, &mut released);
        }
        if rng.random_bool(0.01) {
            while let Some(o) = jb.flush() {
                tally(o, &mut next, &mut released);
            }
        }
    }
    let st = *jb.stats();
    assert_eq!(st.received, accepted + dup + late + probation);
    assert_eq!((st.duplicate, st.late), (dup, late));
    while let Some(o) = jb.flush() {
        tally(o, &mut next, &mut released);
    }
    // A source that passed probation is replayed whole: its held packets come out too.
    let passed_probation = probation - st.probation_dropped - jb.probation.pending();
    assert_eq!(
        released,
        accepted + passed_probation,
        "every accepted packet comes out once"
    );
    assert!(dup > 0 && late > 0 && st.lost > 0 && st.reordered > 0);
}

#[test]
fn spoofed_ssrc_between_a_live_streams_packets_never_takes_over() {
    let mut sim = Sim::new(JitterConfig::default());
    let spoof = |seq: u16| RtpHeader {
        ssrc: 0xBAD,
        ..hdr(seq, 12_345)
    };
    let mut released = Vec::new();
    for i in 0..200u16 {
        let ms = 20 * i as u64;
        let (outcome, out) = sim.push(ms, hdr(1 + i, 160 * (i as u32 + 1)));
        assert_eq!(outcome, Accepted);
        released.push(out);
        // Three spoofed packets in sequence after every real one: always interrupted.
        for k in 0..3 {
            let (outcome, out) = sim.push(ms + 1 + k, spoof(1000 + 3 * i + k as u16));
            assert_eq!((outcome, out.as_str()), (PushOutcome::Probation, ""));
        }
    }
    let want: Vec<String> = (1..=200).map(|s| format!("P{s}")).collect();
    assert_eq!(released, want);
    let st = sim.jb.stats();
    assert_eq!((st.lost, st.probation_dropped), (0, 199 * 3));
}
