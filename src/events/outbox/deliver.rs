//! The delivery task, one per outbox: publish the oldest batch, retry that same batch with
//! exponential backoff until the sink confirms it, acknowledge it, repeat. On a stop request
//! it keeps going until the deadline, then journals what is left.

use std::future::pending;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Instant};

use crate::events::sink::{Sink, SinkError};

use super::queue::{Batch, RateLimit, Shared};
use super::{OutboxConfig, STALL_SPILL};

/// Backoff between attempts at one batch: `initial`, doubling, capped at `max`.
pub(super) struct Retry {
    initial: Duration,
    max: Duration,
}

impl From<&OutboxConfig> for Retry {
    fn from(config: &OutboxConfig) -> Self {
        // At least 1 ms, so a failing sink is never retried in a busy loop.
        let initial = Duration::from_millis(config.retry_initial_ms.max(1));
        Self {
            initial,
            max: Duration::from_millis(config.retry_max_ms).max(initial),
        }
    }
}

enum Failure {
    Sink(SinkError),
    /// The shutdown deadline passed with the publish still pending (it is abandoned).
    Deadline,
}

/// Marks the outbox done when the task ends, however it ends (also on panic or cancel).
struct DoneGuard(Arc<Shared>);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        self.0.done.send_replace(true);
    }
}

pub(super) async fn run(
    shared: Arc<Shared>,
    sink: Arc<dyn Sink>,
    retry: Retry,
    mut stop: watch::Receiver<Option<Instant>>,
) {
    let _done = DoneGuard(shared.clone());
    let mut inflight: Option<Batch> = None;
    // Failed attempts at the batch in flight.
    let mut attempts: u32 = 0;
    let mut backoff = retry.initial;
    let mut failure_log = RateLimit::default();
    loop {
        // A sink whose publish is ready at once must not keep this worker thread forever.
        tokio::task::consume_budget().await;
        let deadline = *stop.borrow_and_update();
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if shared.has_sync_work() {
            blocking(&shared, Shared::sync_journal).await;
        }
        if let Some(batch) = inflight.as_mut() {
            batch.trim_below(shared.done_below());
            if batch.is_empty() {
                inflight = None;
            }
        }
        if inflight.is_none() {
            attempts = 0;
            inflight = if shared.journal_drained() {
                shared.next_batch()
            } else {
                blocking(&shared, Shared::next_batch).await
            };
        }
        let Some(batch) = inflight.as_ref() else {
            if deadline.is_some() {
                break; // everything delivered
            }
            tokio::select! {
                () = shared.work.notified() => {}
                _ = stop.changed() => {}
            }
            continue;
        };
        let count = batch.len() as u64;
        shared.metrics.published.add(count);
        if attempts > 0 {
            shared.metrics.retried.add(count);
        }
        match publish(&shared, sink.as_ref(), batch, &mut stop).await {
            Ok(()) => {
                shared.metrics.confirmed.add(count);
                if attempts > 0 {
                    tracing::info!(sink = shared.sink, attempts, "sink recovered");
                }
                let last = batch.last_seq().expect("a batch in flight is not empty");
                inflight = None;
                if shared.journal_drained() {
                    shared.ack(last);
                } else {
                    blocking(&shared, move |s| s.ack(last)).await;
                }
                backoff = retry.initial;
            }
            Err(Failure::Deadline) => break,
            Err(Failure::Sink(err)) => {
                attempts += 1;
                if let Some(suppressed) = failure_log.allow() {
                    tracing::warn!(sink = shared.sink, error = %err, events = count, attempts,
                        retry_in_ms = backoff.as_millis() as u64, suppressed,
                        "publish failed; journaling new events and retrying the same batch");
                }
                blocking(&shared, Shared::enter_failing).await;
                let wake = Instant::now() + backoff;
                backoff = (backoff * 2).min(retry.max);
                wait_until(wake, &mut stop).await;
            }
        }
    }
    blocking(&shared, Shared::finish).await;
}

/// One publish attempt, bounded by the stop deadline. A publish pending longer than
/// `STALL_SPILL` switches the outbox to journaling (the attempt itself goes on).
async fn publish(
    shared: &Arc<Shared>,
    sink: &dyn Sink,
    batch: &Batch,
    stop: &mut watch::Receiver<Option<Instant>>,
) -> Result<(), Failure> {
    let mut send = sink.publish(&batch.events);
    let stall = sleep(STALL_SPILL);
    tokio::pin!(stall);
    let mut stalled = false;
    loop {
        let deadline = *stop.borrow_and_update();
        let limit = async {
            match deadline {
                Some(at) => sleep_until(at).await,
                None => pending().await,
            }
        };
        tokio::select! {
            result = &mut send => return result.map_err(Failure::Sink),
            () = &mut stall, if !stalled => {
                stalled = true;
                tracing::warn!(sink = shared.sink, after_ms = STALL_SPILL.as_millis() as u64,
                    "publish stalls; journaling new events meanwhile");
                blocking(shared, Shared::enter_failing).await;
            }
            () = limit => return Err(Failure::Deadline),
            _ = stop.changed(), if deadline.is_none() => {}
        }
    }
}

/// Sleep until `wake`, or until the stop deadline if sooner; a new stop request wakes early.
async fn wait_until(wake: Instant, stop: &mut watch::Receiver<Option<Instant>>) {
    let deadline = *stop.borrow_and_update();
    let wake = deadline.map_or(wake, |at| wake.min(at));
    tokio::select! {
        () = sleep_until(wake) => {}
        _ = stop.changed(), if deadline.is_none() => {}
    }
}

/// Run journal work on the blocking pool (the lock is taken in there, never across .await).
async fn blocking<R: Send + 'static>(
    shared: &Arc<Shared>,
    op: impl FnOnce(&Shared) -> R + Send + 'static,
) -> R {
    let shared = Arc::clone(shared);
    match tokio::task::spawn_blocking(move || op(&shared)).await {
        Ok(value) => value,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        // Cancelled: the runtime is shutting down and drops this task too.
        Err(_) => pending().await,
    }
}
