//! Per-packet network impairments for long-running streams (the load generator): random
//! or bursty loss, jitter, reordering and duplication, seeded so a run can be repeated.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Probabilities are per packet, 0.0 to 1.0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetemConfig {
    /// Share of packets lost, on average.
    pub loss: f64,
    /// Mean length of a loss burst, packets; 1 = independent losses. Bursts follow a
    /// two-state (Gilbert) model whose long-run loss is `loss`.
    pub burst: f64,
    /// Extra delay per packet, uniform in 0..=jitter_ms.
    pub jitter_ms: f64,
    /// Send a packet just after the next one.
    pub reorder: f64,
    pub duplicate: f64,
    pub seed: u64,
}

impl Default for NetemConfig {
    fn default() -> Self {
        Self {
            loss: 0.0,
            burst: 1.0,
            jitter_ms: 0.0,
            reorder: 0.0,
            duplicate: 0.0,
            seed: 1,
        }
    }
}

impl NetemConfig {
    pub fn is_clean(&self) -> bool {
        self.loss <= 0.0 && self.jitter_ms <= 0.0 && self.reorder <= 0.0 && self.duplicate <= 0.0
    }
}

/// What happens to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Lost,
    /// Sent `delay_us` after its slot, `copies` times (2 when duplicated).
    Sent {
        delay_us: u64,
        copies: u8,
    },
}

/// What a stream's impairments did so far, to compare with what the receiver reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct NetemCounts {
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub jittered: u64,
}

impl std::ops::AddAssign for NetemCounts {
    fn add_assign(&mut self, o: Self) {
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.jittered += o.jittered;
    }
}

/// One stream's impairment state.
pub struct Netem {
    config: NetemConfig,
    rng: StdRng,
    /// In the lossy state of the burst model.
    in_burst: bool,
    pub counts: NetemCounts,
}

impl Netem {
    /// `stream` varies the seed so streams of one run differ.
    pub fn new(config: NetemConfig, stream: u64) -> Self {
        let seed = config.seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Self {
            config,
            rng: StdRng::seed_from_u64(seed),
            in_burst: false,
            counts: NetemCounts::default(),
        }
    }

    /// The fate of the next packet; `ptime_us` is the packet interval.
    pub fn decide(&mut self, ptime_us: u64) -> Fate {
        if self.lose() {
            self.counts.lost += 1;
            return Fate::Lost;
        }
        let mut delay_us = 0;
        if self.config.jitter_ms > 0.0 {
            delay_us = self
                .rng
                .random_range(0.0..=self.config.jitter_ms * 1000.0)
                .round() as u64;
            self.counts.jittered += u64::from(delay_us > 0);
        }
        if self.chance(self.config.reorder) {
            // After the next packet's slot, whatever that one's own jitter.
            delay_us = delay_us.max(ptime_us + (self.config.jitter_ms * 1000.0) as u64 + 1);
            self.counts.reordered += 1;
        }
        let copies = if self.chance(self.config.duplicate) {
            self.counts.duplicated += 1;
            2
        } else {
            1
        };
        Fate::Sent { delay_us, copies }
    }

    fn lose(&mut self) -> bool {
        let loss = self.config.loss.clamp(0.0, 0.99);
        if loss == 0.0 {
            return false;
        }
        if self.config.burst <= 1.0 {
            return self.rng.random_bool(loss);
        }
        // Leave a burst with 1/burst per packet (mean length = burst); enter one at the
        // rate that makes the long-run lossy share equal `loss`.
        let leave = 1.0 / self.config.burst;
        let enter = (loss * leave / (1.0 - loss)).min(1.0);
        self.in_burst = if self.in_burst {
            !self.rng.random_bool(leave)
        } else {
            self.rng.random_bool(enter)
        };
        self.in_burst
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random_bool(p.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(config: NetemConfig, n: usize) -> (Vec<Fate>, NetemCounts) {
        let mut netem = Netem::new(config, 3);
        let fates = (0..n).map(|_| netem.decide(20_000)).collect();
        (fates, netem.counts)
    }

    #[test]
    fn clean_config_sends_everything_once_on_time() {
        let (fates, counts) = run(NetemConfig::default(), 1000);
        assert!(fates.iter().all(|f| *f
            == Fate::Sent {
                delay_us: 0,
                copies: 1
            }));
        assert_eq!(counts, NetemCounts::default());
    }

    #[test]
    fn random_loss_rate_is_near_the_setting_and_counted() {
        let config = NetemConfig {
            loss: 0.05,
            ..Default::default()
        };
        let (fates, counts) = run(config, 100_000);
        let lost = fates.iter().filter(|f| **f == Fate::Lost).count() as u64;
        assert_eq!(lost, counts.lost);
        assert!((4_500..5_500).contains(&lost), "lost {lost}");
    }

    #[test]
    fn bursty_loss_keeps_the_rate_and_lengthens_runs() {
        let config = NetemConfig {
            loss: 0.05,
            burst: 4.0,
            ..Default::default()
        };
        let (fates, counts) = run(config, 200_000);
        let lost: Vec<bool> = fates.iter().map(|f| *f == Fate::Lost).collect();
        let bursts = lost.windows(2).filter(|w| w[1] && !w[0]).count() as f64;
        let mean_burst = counts.lost as f64 / bursts;
        let rate = counts.lost as f64 / lost.len() as f64;
        assert!((0.04..0.06).contains(&rate), "rate {rate}");
        assert!((3.2..4.8).contains(&mean_burst), "mean burst {mean_burst}");
    }

    #[test]
    fn jitter_reorder_and_duplicates_are_bounded_and_counted() {
        let config = NetemConfig {
            jitter_ms: 5.0,
            reorder: 0.02,
            duplicate: 0.03,
            ..Default::default()
        };
        let (fates, counts) = run(config, 20_000);
        let mut reordered = 0;
        let mut doubled = 0;
        for f in &fates {
            let Fate::Sent { delay_us, copies } = *f else {
                panic!("no loss configured")
            };
            assert!(delay_us <= 25_001, "{delay_us}");
            reordered += u64::from(delay_us > 20_000);
            doubled += u64::from(copies == 2);
        }
        assert_eq!(reordered, counts.reordered);
        assert_eq!(doubled, counts.duplicated);
        assert!(counts.reordered > 200 && counts.duplicated > 400 && counts.jittered > 19_000);
    }

    #[test]
    fn same_seed_same_fates() {
        let config = NetemConfig {
            loss: 0.1,
            burst: 3.0,
            jitter_ms: 2.0,
            reorder: 0.1,
            duplicate: 0.1,
            seed: 9,
        };
        assert_eq!(run(config, 500).0, run(config, 500).0);
    }
}
