//! The outbox's shared state: the memory queue and the journal behind one std `Mutex`, and
//! the operations `push` and the delivery task perform on them.
//!
//! Invariants: memory seqs increase front to back and exceed every journaled seq; the
//! lock is never held across an `.await` (every method here is synchronous); journal IO runs
//! inside the lock, so the delivery task calls the IO-heavy ones from `spawn_blocking`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::events::journal::{Journal, JournalError};
use crate::events::outgoing::OutgoingEvent;
use crate::metrics::SinkMetrics;

use super::{OutboxConfig, OutboxStats};

/// After a journal write error, new events stay in memory (or are dropped when it is full)
/// for this long before the journal is tried again.
const JOURNAL_RETRY: Duration = Duration::from_secs(1);
/// At most one error log per cause per this interval.
const LOG_EVERY: Duration = Duration::from_secs(10);

pub(super) struct Shared {
    pub sink: &'static str,
    memory_max: usize,
    batch_max: usize,
    flush: Duration,
    pub metrics: Arc<SinkMetrics>,
    state: Mutex<State>,
    /// New events (a permit is kept if the task is busy).
    pub work: Notify,
    /// `Some(deadline)` once a stop was requested.
    pub stop: watch::Sender<Option<Instant>>,
    /// True once the task has journaled what was left and stopped.
    pub done: watch::Sender<bool>,
}

struct State {
    memory: VecDeque<(u64, OutgoingEvent)>,
    journal: Journal,
    /// The last publish failed or stalled: new events go straight to the journal.
    failing: bool,
    /// After `finish`: nothing is accepted any more.
    closed: bool,
    /// No journal writes before this, after a write error.
    journal_retry_at: Option<Instant>,
    journal_errors: RateLimit,
    closed_pushes: RateLimit,
}

/// Events handed to one `publish` call, with their seqs (increasing, not always contiguous).
#[derive(Debug, Default)]
pub(super) struct Batch {
    pub seqs: Vec<u64>,
    pub events: Vec<OutgoingEvent>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn last_seq(&self) -> Option<u64> {
        self.seqs.last().copied()
    }

    /// Forget events whose seq is below `floor` (dropped by the journal meanwhile).
    pub fn trim_below(&mut self, floor: u64) {
        let keep_from = self.seqs.partition_point(|&seq| seq < floor);
        if keep_from > 0 {
            self.seqs.drain(..keep_from);
            self.events.drain(..keep_from);
        }
    }
}

impl Shared {
    pub fn new(
        sink: &'static str,
        config: &OutboxConfig,
        metrics: Arc<SinkMetrics>,
        journal: Journal,
        stop: watch::Sender<Option<Instant>>,
    ) -> Self {
        metrics.queued.set(journal.pending() as i64);
        Self {
            sink,
            memory_max: config.memory_events,
            batch_max: config.batch_max.max(1),
            flush: Duration::from_millis(config.shutdown_flush_ms),
            metrics,
            state: Mutex::new(State {
                memory: VecDeque::with_capacity(config.memory_events.min(4096)),
                journal,
                failing: false,
                closed: false,
                journal_retry_at: None,
                journal_errors: RateLimit::default(),
                closed_pushes: RateLimit::default(),
            }),
            work: Notify::new(),
            stop,
            done: watch::channel(false).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug; the state itself stays consistent enough
        // (every method leaves it valid between statements that can panic).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_gauge(&self, st: &State) {
        let queued = st.memory.len() as u64 + st.journal.pending();
        self.metrics.queued.set(queued as i64);
    }

    pub fn push(&self, event: OutgoingEvent) {
        let mut st = self.lock();
        if st.closed {
            self.metrics.dropped.inc();
            if let Some(suppressed) = st.closed_pushes.allow() {
                tracing::error!(sink = self.sink, event_id = %event.id, suppressed,
                    "event pushed after the outbox shut down: dropped");
            }
            return;
        }
        let seq = st.journal.alloc_seq();
        if !st.failing && st.memory.len() < self.memory_max {
            st.memory.push_back((seq, event));
        } else {
            self.spill(&mut st, Some((seq, event)));
        }
        self.set_gauge(&st);
        drop(st);
        self.work.notify_one();
    }

    /// Append memory, then `extra`, to the journal. Whatever the journal did not take stays
    /// in memory (`extra` too, if there is room; else it is dropped, counted and logged).
    fn spill(&self, st: &mut State, extra: Option<(u64, OutgoingEvent)>) {
        let now = Instant::now();
        let journal_ok = st.journal_retry_at.is_none_or(|at| now >= at);
        let mut extra_taken = false;
        if journal_ok {
            let State {
                memory, journal, ..
            } = st;
            let before = memory.len();
            let all = memory
                .iter()
                .chain(extra.iter())
                .map(|(seq, event)| (*seq, event));
            let appended = journal.append(all);
            self.metrics.spilled.add(appended.written as u64);
            memory.drain(..appended.taken.min(before));
            extra_taken = appended.taken > before;
            match appended.error {
                None => st.journal_retry_at = None,
                Some(err) => {
                    st.journal_retry_at = Some(now + JOURNAL_RETRY);
                    self.log_journal_error(st, &err);
                }
            }
        }
        if let (Some(event), false) = (extra, extra_taken) {
            if st.memory.len() < self.memory_max {
                st.memory.push_back(event);
            } else {
                self.metrics.dropped.inc();
                if let Some(suppressed) = st.journal_errors.allow() {
                    tracing::error!(sink = self.sink, event_id = %event.1.id, suppressed,
                        "journal unwritable and memory full: event dropped");
                }
            }
        }
    }

    fn log_journal_error(&self, st: &mut State, err: &JournalError) {
        if let Some(suppressed) = st.journal_errors.allow() {
            tracing::error!(sink = self.sink, error = %err, suppressed,
                "journal write failed: keeping events in memory while there is room");
        }
    }

    /// The oldest undelivered events: from the journal while it has any, then from memory.
    /// Does journal IO unless `journal_drained()`.
    pub fn next_batch(&self) -> Option<Batch> {
        let mut st = self.lock();
        let mut batch = Batch::default();
        if !st.journal.is_drained() {
            for (seq, event) in st.journal.read_batch(self.batch_max) {
                batch.seqs.push(seq);
                batch.events.push(event);
            }
        }
        if batch.is_empty() {
            for (seq, event) in st.memory.iter().take(self.batch_max) {
                batch.seqs.push(*seq);
                batch.events.push(event.clone());
            }
        }
        self.set_gauge(&st);
        (!batch.is_empty()).then_some(batch)
    }

    /// True when the next `next_batch` or `ack` needs no journal IO.
    pub fn journal_drained(&self) -> bool {
        self.lock().journal.is_drained()
    }

    pub fn done_below(&self) -> u64 {
        self.lock().journal.done_below()
    }

    /// Everything up to `last_seq` was delivered. Does journal IO unless `journal_drained()`.
    pub fn ack(&self, last_seq: u64) {
        let mut st = self.lock();
        while st.memory.front().is_some_and(|(seq, _)| *seq <= last_seq) {
            st.memory.pop_front();
        }
        st.journal.ack(last_seq);
        st.failing = false;
        self.set_gauge(&st);
    }

    /// The sink failed or stalls: journal memory, send new events to the journal. Returns
    /// the journal's `done_below` (events below it were dropped: trim them from the batch).
    pub fn enter_failing(&self) -> u64 {
        let mut st = self.lock();
        st.failing = true;
        if !st.memory.is_empty() {
            self.spill(&mut st, None);
        }
        self.set_gauge(&st);
        st.journal.done_below()
    }

    pub fn has_sync_work(&self) -> bool {
        self.lock().journal.has_sync_work()
    }

    /// fsync sealed segments, outside the lock.
    pub fn sync_journal(&self) {
        let work = self.lock().journal.take_sync_work();
        if let Err(e) = work.run() {
            tracing::warn!(sink = self.sink, error = %e, "journal fsync failed");
        }
    }

    /// Journal what is left in memory, close the journal; later pushes are dropped.
    pub fn finish(&self) {
        let mut st = self.lock();
        st.journal_retry_at = None;
        if !st.memory.is_empty() {
            self.spill(&mut st, None);
        }
        let lost = st.memory.len();
        if lost > 0 {
            self.metrics.dropped.add(lost as u64);
            tracing::error!(
                sink = self.sink,
                dropped = lost,
                "shutdown: events could not be journaled and are dropped"
            );
            st.memory.clear();
        }
        if let Err(e) = st.journal.close() {
            tracing::error!(sink = self.sink, error = %e, "shutdown: closing the journal failed");
        }
        st.closed = true;
        let journaled = st.journal.pending();
        self.set_gauge(&st);
        if journaled > 0 {
            tracing::info!(
                sink = self.sink,
                events = journaled,
                "outbox stopped; undelivered events are journaled for the next start"
            );
        }
    }

    /// Ask the task to stop within `shutdown_flush_ms` (the first request sets the deadline).
    pub fn request_stop(&self) {
        let deadline = Instant::now() + self.flush;
        self.stop.send_if_modified(|stop| {
            let first = stop.is_none();
            if first {
                *stop = Some(deadline);
            }
            first
        });
    }

    pub fn stats(&self) -> OutboxStats {
        let st = self.lock();
        OutboxStats {
            memory_events: st.memory.len(),
            journal_events: st.journal.pending(),
            journal_bytes: st.journal.bytes(),
            journal_segments: st.journal.segments(),
            skipped_lines: st.journal.skipped(),
            failing: st.failing,
        }
    }
}

/// Allows one log line per `LOG_EVERY`, reporting how many were suppressed in between.
#[derive(Debug, Default)]
pub(super) struct RateLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    /// `Some(suppressed since the last allowed)` if a log line may be written now.
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}
