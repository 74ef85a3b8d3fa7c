//! Call mode after its engine stream fails: retry with backoff, one `asr.error` per failure
//! episode and one `asr.recovered` at its end, and the audio of the episode kept for the retry.
//!
//! From the first failure until the engine is seen to work again, every call-mode sample is
//! kept (bounded): the waits between tries, and what each try was sent before it failed too.
//! Each reopened stream starts with a copy of it, so a try that fails loses nothing.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How a failed call-mode stream is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait after the first failure; doubles per failure up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Audio kept while waiting, engine-rate samples; older audio is dropped (counted).
    pub keep_samples: usize,
    /// A retried stream that has not failed for this long counts as recovered.
    pub stable_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            keep_samples: 16_000 * 10,
            stable_after: Duration::from_secs(2),
        }
    }
}

/// The end of a failure episode, for `asr.recovered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    pub failures: u32,
    pub down: Duration,
}

#[derive(Debug)]
struct Episode {
    started: Instant,
    failures: u32,
    /// When the stream may be opened again; None once it has been.
    retry_at: Option<Instant>,
    /// When a reopened stream counts as recovered.
    stable_at: Option<Instant>,
}

/// The retry state of one session's call stream. Time is only what is passed in.
#[derive(Debug)]
pub struct CallRetry {
    policy: RetryPolicy,
    episode: Option<Episode>,
    /// Audio that arrived while waiting, and the media offset of its first sample.
    kept: VecDeque<i16>,
    kept_offset_ms: u64,
    engine_rate: u32,
    /// Samples dropped because `kept` was full.
    pub dropped_samples: u64,
}

impl CallRetry {
    pub fn new(policy: RetryPolicy, engine_rate: u32) -> Self {
        Self {
            policy,
            episode: None,
            kept: VecDeque::new(),
            kept_offset_ms: 0,
            engine_rate,
            dropped_samples: 0,
        }
    }

    /// The stream failed. True when this starts an episode (report it); later failures of
    /// the same episode only lengthen the wait.
    pub fn handle_failure(&mut self, now: Instant) -> bool {
        let starts = self.episode.is_none();
        let episode = self.episode.get_or_insert(Episode {
            started: now,
            failures: 0,
            retry_at: None,
            stable_at: None,
        });
        episode.failures += 1;
        let doublings = (episode.failures - 1).min(16);
        let backoff = self
            .policy
            .initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.policy.max_backoff);
        episode.retry_at = Some(now + backoff);
        episode.stable_at = None;
        starts
    }

    /// Whether a closed stream may be opened now.
    pub fn may_open(&self, now: Instant) -> bool {
        match &self.episode {
            None => true,
            Some(e) => e.retry_at.is_none_or(|at| now >= at),
        }
    }

    /// The stream was opened again; returns a copy of the audio kept since the episode
    /// began and its offset, to send first. It stays kept until the engine is seen to work.
    pub fn handle_reopen(&mut self, now: Instant) -> Option<(u64, Vec<i16>)> {
        if let Some(e) = self.episode.as_mut() {
            e.retry_at = None;
            e.stable_at = Some(now + self.policy.stable_after);
        }
        (!self.kept.is_empty()).then(|| (self.kept_offset_ms, self.kept.iter().copied().collect()))
    }

    /// Whether call audio must be kept: from a failure until the engine works again.
    pub fn is_keeping(&self) -> bool {
        self.episode.is_some()
    }

    /// The engine answered on the reopened stream: the episode is over.
    pub fn handle_result(&mut self, now: Instant) -> Option<Recovery> {
        let e = self.episode.take_if(|e| e.retry_at.is_none())?;
        self.kept.clear();
        Some(Recovery {
            failures: e.failures,
            down: now.saturating_duration_since(e.started),
        })
    }

    /// The reopened stream has not failed for `stable_after`: the episode is over.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Recovery> {
        let stable = self
            .episode
            .as_ref()
            .and_then(|e| e.stable_at)
            .is_some_and(|at| now >= at);
        if stable {
            self.handle_result(now)
        } else {
            None
        }
    }

    /// The next instant `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.episode.as_ref().and_then(|e| e.stable_at)
    }

    /// Keep audio of the episode; the oldest goes once full (counted).
    pub fn keep(&mut self, offset_ms: u64, samples: &[i16]) {
        if self.kept.is_empty() {
            self.kept_offset_ms = offset_ms;
        }
        self.kept.extend(samples);
        let over = self.kept.len().saturating_sub(self.policy.keep_samples);
        if over > 0 {
            self.kept.drain(..over);
            self.dropped_samples += over as u64;
            self.kept_offset_ms += over as u64 * 1000 / self.engine_rate.max(1) as u64;
        }
    }

    pub fn has_kept_audio(&self) -> bool {
        !self.kept.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            keep_samples: 8,
            stable_after: Duration::from_secs(1),
        }
    }

    #[test]
    fn one_report_per_episode_and_backoff_doubles_to_its_bound() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut r = CallRetry::new(policy(), 16_000);
        assert!(r.may_open(t0));
        assert!(r.handle_failure(t0));
        assert!(!r.may_open(ms(99)));
        assert!(r.may_open(ms(100)));
        assert!(r.handle_reopen(ms(100)).is_none());
        assert!(!r.handle_failure(ms(101)), "same episode: no second report");
        assert!(!r.may_open(ms(300)));
        assert!(r.may_open(ms(301)));
        r.handle_reopen(ms(301));
        assert!(!r.handle_failure(ms(302)));
        assert!(!r.may_open(ms(651)), "400 ms capped at 350");
        assert!(r.may_open(ms(652)));
    }

    #[test]
    fn recovery_comes_once_from_a_result_or_from_quiet_time() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut r = CallRetry::new(policy(), 16_000);
        r.handle_failure(t0);
        assert_eq!(r.handle_result(ms(50)), None, "not reopened yet");
        r.handle_reopen(ms(100));
        assert_eq!(r.poll_timeout(), Some(ms(1100)));
        assert_eq!(r.handle_timeout(ms(1099)), None);
        let rec = r.handle_timeout(ms(1100)).expect("stable for a second");
        assert_eq!(rec.failures, 1);
        assert_eq!(rec.down, Duration::from_millis(1100));
        assert_eq!(r.handle_timeout(ms(2000)), None);
        assert!(
            r.handle_failure(ms(3000)),
            "a new episode is reported again"
        );
        r.handle_reopen(ms(3100));
        assert_eq!(r.handle_result(ms(3200)).map(|x| x.failures), Some(1));
    }

    #[test]
    fn audio_of_the_wait_is_kept_within_its_bound() {
        let mut r = CallRetry::new(policy(), 1000);
        r.handle_failure(Instant::now());
        r.keep(40, &[1, 2, 3, 4, 5]);
        r.keep(45, &[6, 7, 8, 9, 10]);
        assert_eq!(r.dropped_samples, 2);
        let t = Instant::now();
        let (offset, audio) = r.handle_reopen(t).unwrap();
        assert_eq!(audio, [3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(offset, 42);
        // Kept until the engine is seen to work: a retry that fails loses nothing.
        assert!(r.is_keeping() && r.has_kept_audio());
        r.handle_result(t).expect("recovered");
        assert!(!r.is_keeping() && !r.has_kept_audio());
    }
}
