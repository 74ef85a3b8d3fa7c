//! Network impairments for test and load traffic: loss, duplication and reordering, seeded.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Probabilities per packet, 0.0 to 1.0. The first and last packets are never touched, so a
/// receiver can see every injected loss (a lost last packet is indistinguishable from the end).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairments {
    pub loss: f64,
    pub duplicate: f64,
    /// Swap a packet with the next one: it arrives one packet time late.
    pub reorder: f64,
    pub seed: u64,
}

impl Default for Impairments {
    fn default() -> Self {
        Self {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            seed: 1,
        }
    }
}

/// What a plan injected, to compare with what a receiver reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Injected {
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
}

/// Per 20 ms slot, the packet indexes to send in that slot, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub slots: Vec<Vec<usize>>,
    pub injected: Injected,
}

pub fn plan(packets: usize, impairments: &Impairments) -> Plan {
    let mut rng = StdRng::seed_from_u64(impairments.seed);
    let mut slots: Vec<Vec<usize>> = (0..packets).map(|i| vec![i]).collect();
    let mut injected = Injected::default();
    let mut i = 1;
    while i + 1 < packets {
        if rng.random_bool(impairments.loss.clamp(0.0, 1.0)) {
            slots[i].clear();
            injected.lost += 1;
            i += 1;
        } else if i + 2 < packets && rng.random_bool(impairments.reorder.clamp(0.0, 1.0)) {
            // Packet i leaves with packet i + 1, just after it.
            slots[i].clear();
            slots[i + 1] = vec![i + 1, i];
            injected.reordered += 1;
            i += 2;
        } else {
            if rng.random_bool(impairments.duplicate.clamp(0.0, 1.0)) {
                slots[i].push(i);
                injected.duplicated += 1;
            }
            i += 1;
        }
    }
    Plan { slots, injected }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_impairments_sends_each_packet_once_in_order() {
        let p = plan(10, &Impairments::default());
        assert_eq!(p.slots.concat(), (0..10).collect::<Vec<_>>());
        assert_eq!(p.injected, Injected::default());
    }

    #[test]
    fn injected_counts_match_the_plan() {
        let imp = Impairments {
            loss: 0.05,
            duplicate: 0.05,
            reorder: 0.05,
            seed: 7,
        };
        let p = plan(2000, &imp);
        let sent = p.slots.concat();
        let mut seen = vec![0u32; 2000];
        for &i in &sent {
            seen[i] += 1;
        }
        let missing = seen.iter().filter(|&&n| n == 0).count() as u64;
        let doubled = seen.iter().filter(|&&n| n == 2).count() as u64;
        let swapped = sent.windows(2).filter(|w| w[0] > w[1]).count() as u64;
        assert_eq!(missing, p.injected.lost);
        assert_eq!(doubled, p.injected.duplicated);
        assert_eq!(swapped, p.injected.reordered);
        assert!(p.injected.lost > 0 && p.injected.duplicated > 0 && p.injected.reordered > 0);
        assert_eq!(seen[0], 1);
        assert_eq!(seen[1999], 1);
    }

    #[test]
    fn same_seed_same_plan() {
        let imp = Impairments {
            loss: 0.1,
            duplicate: 0.1,
            reorder: 0.1,
            seed: 42,
        };
        assert_eq!(plan(500, &imp), plan(500, &imp));
    }
}
