//! The default sink: one CloudEvents JSON object per line on stdout.

use std::io::Write;

use crate::events::outgoing::OutgoingEvent;
use crate::events::sink::{Sink, SinkError, SinkFuture};

#[derive(Debug, Default)]
pub struct StdoutSink;

impl Sink for StdoutSink {
    fn name(&self) -> &'static str {
        "stdout"
    }

    fn publish<'a>(&'a self, events: &'a [OutgoingEvent]) -> SinkFuture<'a> {
        Box::pin(async move {
            let mut text = Vec::with_capacity(events.iter().map(|e| e.json.len() + 1).sum());
            for event in events {
                text.extend_from_slice(&event.json);
                text.push(b'\n');
            }
            // One locked write per batch keeps lines whole.
            let mut out = std::io::stdout().lock();
            out.write_all(&text)
                .and_then(|()| out.flush())
                .map_err(|source| SinkError::Io {
                    sink: "stdout",
                    source,
                })
        })
    }
}
