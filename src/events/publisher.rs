//! Publisher: a bounded queue from sessions to one task that hands batches to every sink.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::events::model::Event;
use crate::events::outgoing::OutgoingEvent;
use crate::events::sink::Sink;
use crate::metrics::Metrics;

/// Most events handed to a sink in one call.
const MAX_BATCH: usize = 256;

/// Cheap to clone; every session holds one. The sink task ends when the last clone drops.
#[derive(Clone)]
pub struct Publisher {
    queue: mpsc::Sender<Event>,
    tap: broadcast::Sender<Event>,
    metrics: Arc<Metrics>,
}

impl Publisher {
    /// Start the sink task. `capacity` bounds events waiting for the sinks.
    pub fn start(
        sinks: Vec<Box<dyn Sink>>,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> (Self, JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(capacity.max(1));
        let (tap, _) = broadcast::channel(4096);
        let task = tokio::spawn(run_sinks(rx, sinks, metrics.clone()));
        (
            Self {
                queue,
                tap,
                metrics,
            },
            task,
        )
    }

    /// Queue an event for the sinks. Never blocks: when the queue is full the event is
    /// dropped, counted in `asrgw_events_dropped_total` and logged.
    pub fn publish(&self, event: Event) {
        let _ = self.tap.send(event.clone());
        if let Err(err) = self.queue.try_send(event) {
            self.metrics.events_dropped.inc();
            let event = match err {
                mpsc::error::TrySendError::Full(e) | mpsc::error::TrySendError::Closed(e) => e,
            };
            tracing::error!(event_id = %event.id, event_type = event.kind().type_name(),
                "event queue full or closed: event dropped");
        }
    }

    /// Every event published from now on, for in-process observers (demo, tests).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tap.subscribe()
    }
}

async fn run_sinks(
    mut rx: mpsc::Receiver<Event>,
    sinks: Vec<Box<dyn Sink>>,
    metrics: Arc<Metrics>,
) {
    let mut received = Vec::with_capacity(MAX_BATCH);
    let mut batch: Vec<OutgoingEvent> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut received, MAX_BATCH).await > 0 {
        batch.extend(received.drain(..).map(|e| OutgoingEvent::from(&e)));
        for sink in &sinks {
            match sink.publish(&batch).await {
                Ok(()) => metrics.events_published.add(batch.len() as u64),
                Err(err) => {
                    metrics.events_failed.add(batch.len() as u64);
                    tracing::error!(sink = sink.name(), error = %err, count = batch.len(),
                        "sink failed: events not delivered");
                }
            }
        }
        batch.clear();
    }
}
