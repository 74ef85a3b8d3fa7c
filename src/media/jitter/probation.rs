//! RFC 3550 A.1 source probation: a new SSRC takes over a stream only after
//! `SSRC_PROBATION` packets of it in sequence, with no packet of the current SSRC between.
//!
//! A sender that really changed SSRC (a re-INVITE, a masquerade) stops the old one, so its
//! new source passes at once and its probation packets are replayed, not lost. A spoofer
//! interleaving packets with a live call is interrupted by the call's own packets every 20 ms
//! and never takes over; its packets are counted and dropped.

use std::time::Instant;

use crate::media::rtp::RtpHeader;

/// Packets in sequence a new SSRC must send before it replaces the current one.
pub const SSRC_PROBATION: usize = 4;

/// A packet of a candidate source, kept for replay once the source is accepted.
#[derive(Debug, Clone)]
pub(super) struct HeldPacket {
    pub arrival: Instant,
    pub header: RtpHeader,
    pub payload: Vec<u8>,
}

#[derive(Debug, Default)]
pub(super) struct Probation {
    candidate: Vec<HeldPacket>,
}

impl Probation {
    /// Packets of the candidate held now.
    #[cfg(test)]
    pub fn pending(&self) -> u64 {
        self.candidate.len() as u64
    }

    /// A packet of the current source arrived: any candidate loses its run. Returns how
    /// many held packets were dropped.
    pub fn interrupt(&mut self) -> u64 {
        let dropped = self.candidate.len() as u64;
        self.candidate.clear();
        dropped
    }

    /// A packet of another SSRC. Returns the candidate's packets, oldest first, once it has
    /// sent `SSRC_PROBATION` in sequence; until then `None` (the packet is held). `dropped`
    /// grows by the packets of a run this one broke.
    pub fn offer(
        &mut self,
        arrival: Instant,
        header: &RtpHeader,
        payload: &[u8],
        dropped: &mut u64,
    ) -> Option<Vec<HeldPacket>> {
        let continues = self.candidate.last().is_some_and(|last| {
            last.header.ssrc == header.ssrc
                && header.sequence == last.header.sequence.wrapping_add(1)
        });
        if !continues {
            *dropped += self.interrupt();
        }
        self.candidate.push(HeldPacket {
            arrival,
            header: *header,
            payload: payload.to_vec(),
        });
        (self.candidate.len() >= SSRC_PROBATION).then(|| std::mem::take(&mut self.candidate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(ssrc: u32, seq: u16) -> RtpHeader {
        RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: 0,
            ssrc,
        }
    }

    #[test]
    fn a_run_in_sequence_passes_and_is_replayed_whole() {
        let mut p = Probation::default();
        let now = Instant::now();
        let mut dropped = 0;
        for seq in 10..13 {
            assert!(p
                .offer(now, &h(7, seq), &[seq as u8], &mut dropped)
                .is_none());
        }
        let run = p
            .offer(now, &h(7, 13), &[13], &mut dropped)
            .expect("fourth in sequence passes");
        assert_eq!(dropped, 0);
        let seqs: Vec<u16> = run.iter().map(|x| x.header.sequence).collect();
        assert_eq!(seqs, [10, 11, 12, 13]);
        assert_eq!(run[3].payload, [13]);
    }

    #[test]
    fn gaps_other_sources_and_the_current_source_restart_the_run() {
        let mut p = Probation::default();
        let now = Instant::now();
        let mut dropped = 0;
        let mut offer =
            |p: &mut Probation, ssrc, seq| p.offer(now, &h(ssrc, seq), &[], &mut dropped).is_some();
        assert!(!offer(&mut p, 7, 1));
        assert!(!offer(&mut p, 7, 2));
        assert_eq!(p.interrupt(), 2);
        assert!(!offer(&mut p, 7, 3));
        assert!(!offer(&mut p, 7, 5));
        assert!(!offer(&mut p, 8, 6));
        assert!(!offer(&mut p, 8, 7));
        assert!(!offer(&mut p, 8, 8));
        assert!(offer(&mut p, 8, 9));
        // 7/3 broken by 7/5, which 8/6 broke in turn.
        assert_eq!(dropped, 2);
    }
}
