//! Publisher: renders each event once and hands it to every sink's outbox.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::events::model::Event;
use crate::events::outbox::{Outbox, OutboxConfig, OutboxError};
use crate::events::outgoing::OutgoingEvent;
use crate::events::sink::Sink;
use crate::metrics::Metrics;

/// Cheap to clone; every session holds one.
#[derive(Clone)]
pub struct Publisher {
    outboxes: Arc<Vec<Outbox>>,
    tap: broadcast::Sender<Event>,
}

impl Publisher {
    /// One outbox per sink; each replays its journal before new events.
    pub fn start(
        sinks: Vec<Arc<dyn Sink>>,
        config: &OutboxConfig,
        metrics: &Metrics,
    ) -> Result<Self, OutboxError> {
        let outboxes = sinks
            .into_iter()
            .map(|sink| {
                let counters = metrics.sink(sink.name());
                Outbox::start(sink, config.clone(), counters)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (tap, _) = broadcast::channel(4096);
        Ok(Self {
            outboxes: Arc::new(outboxes),
            tap,
        })
    }

    /// Hand an event to every sink. Never blocks: each outbox holds it in memory or in its
    /// journal until its sink confirms it.
    pub fn publish(&self, event: Event) {
        let outgoing = OutgoingEvent::from(&event);
        let _ = self.tap.send(event);
        for outbox in self.outboxes.iter() {
            outbox.push(outgoing.clone());
        }
    }

    /// Every event published from now on, for in-process observers (demo, tests).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tap.subscribe()
    }

    /// Deliver or journal everything queued, then stop the outboxes.
    pub async fn shutdown(&self) {
        let flushes = self.outboxes.iter().map(|o| o.shutdown());
        futures_util::future::join_all(flushes).await;
    }
}
