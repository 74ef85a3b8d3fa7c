//! Which engine a stream goes to: named profiles of engines in priority order, a concurrency cap per engine, and a circuit breaker.
//!
//! `Router::pick` hands out a `Lease` on the first engine of the profile that is under its
//! cap and not tripped, skipping engines this stream already tried. A failure trips the
//! engine's breaker: it sits out `cooldown` (doubling per failed probe, up to
//! `max_cooldown`), then one stream probes it; a stream that ends well closes the breaker.
//! When every untried engine is tripped, the one whose cooldown ends first is tried
//! anyway: a call is better served by a doubtful engine than by none. Time is passed in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::asr::engine::Engine;

/// The profile used when a call names none.
pub const DEFAULT_PROFILE: &str = "default";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    pub cooldown: Duration,
    pub max_cooldown: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            cooldown: Duration::from_secs(5),
            max_cooldown: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaker {
    Closed,
    /// Tripped: no stream until `until`, then one probe.
    Open {
        until: Instant,
        cooldown: Duration,
    },
    /// A probe is running; its end decides.
    Probing {
        cooldown: Duration,
    },
}

/// Counters of one engine, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct EngineCounters {
    pub active: AtomicUsize,
    pub streams: AtomicU64,
    pub failures: AtomicU64,
    /// Streams that left this engine for another one.
    pub switched_away: AtomicU64,
    pub busy_skips: AtomicU64,
}

pub struct EngineSlot {
    pub engine: Arc<dyn Engine>,
    /// Most streams at once; 0 = no cap.
    pub max_streams: usize,
    pub counters: EngineCounters,
    breaker: Mutex<Breaker>,
}

impl EngineSlot {
    pub fn new(engine: Arc<dyn Engine>, max_streams: usize) -> Self {
        Self {
            engine,
            max_streams,
            counters: EngineCounters::default(),
            breaker: Mutex::new(Breaker::Closed),
        }
    }

    pub fn name(&self) -> &str {
        self.engine.name()
    }

    /// Is the breaker tripped at `now` (a probe is due or running counts as not tripped
    /// only for the caller that takes the probe)?
    pub fn tripped(&self, now: Instant) -> bool {
        match *self.lock() {
            Breaker::Closed => false,
            Breaker::Open { until, .. } => now < until,
            Breaker::Probing { .. } => true,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take a stream slot if under the cap.
    fn acquire(&self) -> bool {
        let cap = if self.max_streams == 0 {
            usize::MAX
        } else {
            self.max_streams
        };
        self.counters
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .is_ok()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouterError {
    #[error("engine profile {0:?} is not configured")]
    UnknownProfile(String),
    #[error("engine profile {profile:?} names engine {engine:?}, which is not configured")]
    UnknownEngine { profile: String, engine: String },
    #[error("engine profile {0:?} lists no engine")]
    EmptyProfile(String),
    #[error("no engine profile {DEFAULT_PROFILE:?}: set one, or configure a single engine")]
    NoDefault,
}

pub struct Router {
    slots: Vec<Arc<EngineSlot>>,
    profiles: HashMap<String, Vec<usize>>,
    policy: BreakerPolicy,
}

/// A stream's hold on one engine: frees the slot when dropped.
pub struct Lease {
    slot: Arc<EngineSlot>,
    index: usize,
    probing: bool,
}

impl Lease {
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.slot.engine
    }

    pub fn name(&self) -> &str {
        self.slot.name()
    }

    /// Index of the engine in the router, for `tried` lists.
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn counters(&self) -> &EngineCounters {
        &self.slot.counters
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.slot.counters.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Router {
    /// `engines` by name (with their caps); `profiles` name engines in priority order. A
    /// router needs a `default` profile; with one engine and no profiles, it is that engine.
    pub fn new(
        engines: Vec<EngineSlot>,
        profiles: &[(String, Vec<String>)],
        policy: BreakerPolicy,
    ) -> Result<Self, RouterError> {
        let slots: Vec<Arc<EngineSlot>> = engines.into_iter().map(Arc::new).collect();
        let index_of = |name: &str| slots.iter().position(|s| s.name() == name);
        let mut map = HashMap::new();
        for (profile, names) in profiles {
            if names.is_empty() {
                return Err(RouterError::EmptyProfile(profile.clone()));
            }
            let mut order = Vec::with_capacity(names.len());
            for name in names {
                let i = index_of(name).ok_or_else(|| RouterError::UnknownEngine {
                    profile: profile.clone(),
                    engine: name.clone(),
                })?;
                order.push(i);
            }
            map.insert(profile.clone(), order);
        }
        if !map.contains_key(DEFAULT_PROFILE) {
            if slots.len() != 1 {
                return Err(RouterError::NoDefault);
            }
            map.insert(DEFAULT_PROFILE.to_string(), vec![0]);
        }
        Ok(Self {
            slots,
            profiles: map,
            policy,
        })
    }

    /// One engine as the default profile, no cap.
    pub fn single(engine: Arc<dyn Engine>) -> Self {
        Self {
            slots: vec![Arc::new(EngineSlot::new(engine, 0))],
            profiles: HashMap::from([(DEFAULT_PROFILE.to_string(), vec![0])]),
            policy: BreakerPolicy::default(),
        }
    }

    pub fn has_profile(&self, profile: &str) -> bool {
        self.profiles.contains_key(profile)
    }

    pub fn engines(&self) -> &[Arc<EngineSlot>] {
        &self.slots
    }

    /// Per-engine series in Prometheus text format (label `engine`), appended to `out`.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        type Read = fn(&EngineSlot, Instant) -> u64;
        let series: [(&str, &str, &str, Read); 6] = [
            (
                "asrgw_engine_streams_active",
                "gauge",
                "Streams open on the engine now.",
                |s, _| s.counters.active.load(Ordering::Relaxed) as u64,
            ),
            (
                "asrgw_engine_streams_total",
                "counter",
                "Streams given to the engine, failovers included.",
                |s, _| s.counters.streams.load(Ordering::Relaxed),
            ),
            (
                "asrgw_engine_failures_total",
                "counter",
                "Streams the engine failed.",
                |s, _| s.counters.failures.load(Ordering::Relaxed),
            ),
            (
                "asrgw_engine_switches_total",
                "counter",
                "Streams that moved from the engine to the next of their profile.",
                |s, _| s.counters.switched_away.load(Ordering::Relaxed),
            ),
            (
                "asrgw_engine_full_total",
                "counter",
                "Times the engine was passed over because it was at max_streams.",
                |s, _| s.counters.busy_skips.load(Ordering::Relaxed),
            ),
            (
                "asrgw_engine_tripped",
                "gauge",
                "1 while the engine's circuit breaker keeps streams away.",
                |s, now| u64::from(s.tripped(now)),
            ),
        ];
        let now = Instant::now();
        for (name, kind, help, read) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for slot in &self.slots {
                let _ = writeln!(
                    out,
                    "{name}{{engine=\"{}\"}} {}",
                    slot.name(),
                    read(slot, now)
                );
            }
        }
    }

    /// The engine a stream of `profile` should use next, skipping `tried`. `None` when every
    /// untried engine is at its cap (or the profile is unknown, or all were tried).
    pub fn pick(&self, profile: &str, tried: &[usize], now: Instant) -> Option<Lease> {
        let order = self.profiles.get(profile)?;
        let untried = || order.iter().copied().filter(|i| !tried.contains(i));
        // Healthy engines first, in priority order; then a due probe.
        for i in untried() {
            let slot = &self.slots[i];
            let mut breaker = slot.lock();
            let probe_cooldown = match *breaker {
                Breaker::Closed => None,
                Breaker::Open { until, cooldown } if now >= until => Some(cooldown),
                _ => continue,
            };
            if !slot.acquire() {
                slot.counters.busy_skips.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if let Some(cooldown) = probe_cooldown {
                *breaker = Breaker::Probing { cooldown };
            }
            drop(breaker);
            return Some(self.lease(i, probe_cooldown.is_some()));
        }
        // Every untried engine is tripped or full: the soonest to recover, if it has room.
        let soonest = untried()
            .filter(|&i| !matches!(*self.slots[i].lock(), Breaker::Closed))
            .min_by_key(|&i| match *self.slots[i].lock() {
                Breaker::Open { until, .. } => Some(until),
                _ => None,
            })?;
        self.slots[soonest]
            .acquire()
            .then(|| self.lease(soonest, false))
    }

    fn lease(&self, index: usize, probing: bool) -> Lease {
        let slot = self.slots[index].clone();
        slot.counters.streams.fetch_add(1, Ordering::Relaxed);
        Lease {
            slot,
            index,
            probing,
        }
    }

    /// The stream on `lease` ended well (or gave a result): the engine works.
    pub fn succeeded(&self, lease: &Lease) {
        let mut breaker = lease.slot.lock();
        if lease.probing || matches!(*breaker, Breaker::Open { .. }) {
            *breaker = Breaker::Closed;
        }
    }

    /// The stream on `lease` failed because of the engine: trip its breaker.
    pub fn failed(&self, lease: &Lease, now: Instant) {
        lease.slot.counters.failures.fetch_add(1, Ordering::Relaxed);
        let mut breaker = lease.slot.lock();
        let cooldown = match *breaker {
            Breaker::Probing { cooldown } if lease.probing => {
                (cooldown * 2).min(self.policy.max_cooldown)
            }
            Breaker::Open { cooldown, .. } => cooldown,
            _ => self.policy.cooldown,
        };
        *breaker = Breaker::Open {
            until: now + cooldown,
            cooldown,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asr::engine::{EngineResult, StreamInput, StreamRun};
    use crate::asr::types::StreamOptions;
    use tokio::sync::mpsc;

    struct Named(&'static str);
    impl Engine for Named {
        fn name(&self) -> &str {
            self.0
        }
        fn run_stream(
            &self,
            _: StreamOptions,
            _: mpsc::Receiver<StreamInput>,
            _: mpsc::Sender<EngineResult>,
        ) -> StreamRun {
            Box::pin(async { Ok(()) })
        }
    }

    fn router(caps: &[(&'static str, usize)], profiles: &[(&str, &[&str])]) -> Router {
        let engines = caps
            .iter()
            .map(|&(n, cap)| EngineSlot::new(Arc::new(Named(n)), cap))
            .collect();
        let profiles: Vec<(String, Vec<String>)> = profiles
            .iter()
            .map(|(p, names)| (p.to_string(), names.iter().map(|n| n.to_string()).collect()))
            .collect();
        Router::new(engines, &profiles, BreakerPolicy::default()).unwrap()
    }

    #[test]
    fn priority_order_cap_and_release() {
        let r = router(&[("a", 1), ("b", 0)], &[("default", &["a", "b"])]);
        let now = Instant::now();
        let first = r.pick("default", &[], now).unwrap();
        assert_eq!(first.name(), "a");
        // a is full: the next stream goes to b.
        let second = r.pick("default", &[], now).unwrap();
        assert_eq!(second.name(), "b");
        drop(first);
        assert_eq!(r.pick("default", &[], now).unwrap().name(), "a");
        assert_eq!(
            r.engines()[0].counters.busy_skips.load(Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn failed_engine_sits_out_then_is_probed_once() {
        let r = router(&[("a", 0), ("b", 0)], &[("default", &["a", "b"])]);
        let t0 = Instant::now();
        let a = r.pick("default", &[], t0).unwrap();
        r.failed(&a, t0);
        // The same stream fails over to b; new streams avoid a while it cools down.
        assert_eq!(r.pick("default", &[a.index()], t0).unwrap().name(), "b");
        assert_eq!(r.pick("default", &[], t0).unwrap().name(), "b");
        // After the cooldown one stream probes a; others keep going to b meanwhile.
        let t1 = t0 + Duration::from_secs(5);
        let probe = r.pick("default", &[], t1).unwrap();
        assert_eq!(probe.name(), "a");
        assert_eq!(r.pick("default", &[], t1).unwrap().name(), "b");
        // A failed probe doubles the cooldown.
        r.failed(&probe, t1);
        assert_eq!(
            r.pick("default", &[], t1 + Duration::from_secs(9))
                .unwrap()
                .name(),
            "b"
        );
        let probe = r
            .pick("default", &[], t1 + Duration::from_secs(10))
            .unwrap();
        assert_eq!(probe.name(), "a");
        r.succeeded(&probe);
        assert_eq!(r.pick("default", &[], t1).unwrap().name(), "a");
    }

    #[test]
    fn all_tripped_tries_the_soonest_rather_than_none() {
        let r = router(&[("a", 0), ("b", 0)], &[("default", &["a", "b"])]);
        let t0 = Instant::now();
        let a = r.pick("default", &[], t0).unwrap();
        r.failed(&a, t0);
        let b = r.pick("default", &[], t0 + Duration::from_secs(1)).unwrap();
        r.failed(&b, t0 + Duration::from_secs(1));
        assert_eq!(r.pick("default", &[], t0).unwrap().name(), "a");
        // Nothing left once both were tried by this stream.
        assert!(r.pick("default", &[0, 1], t0).is_none());
    }

    #[test]
    fn profiles_are_checked() {
        let slots = || vec![EngineSlot::new(Arc::new(Named("a")), 0)];
        let p = |name: &str, engines: &[&str]| {
            vec![(
                name.to_string(),
                engines.iter().map(|e| e.to_string()).collect(),
            )]
        };
        let e = Router::new(slots(), &p("default", &["x"]), BreakerPolicy::default());
        assert!(matches!(e, Err(RouterError::UnknownEngine { .. })));
        let e = Router::new(slots(), &p("default", &[]), BreakerPolicy::default());
        assert!(matches!(e, Err(RouterError::EmptyProfile(_))));
        // One engine needs no profile; two do.
        let r = Router::new(slots(), &[], BreakerPolicy::default()).unwrap();
        assert!(r.has_profile("default"));
        let two = vec![
            EngineSlot::new(Arc::new(Named("a")), 0),
            EngineSlot::new(Arc::new(Named("b")), 0),
        ];
        let e = Router::new(two, &p("fast", &["a"]), BreakerPolicy::default());
        assert!(matches!(e, Err(RouterError::NoDefault)));
        assert!(r.pick("nope", &[], Instant::now()).is_none());
    }
}
