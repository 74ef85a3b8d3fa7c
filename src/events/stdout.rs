//! The default sink: one CloudEvents JSON object per line on stdout.

use std::io::Write;

use crate::events::model::Event;
use crate::events::sink::{Sink, SinkError, SinkFuture};

#[derive(Debug, Default)]
pub struct StdoutSink;

impl Sink for StdoutSink {
    fn name(&self) -> &'static str {
        "stdout"
    }

    fn publish<'a>(&'a self, events: &'a [Event]) -> SinkFuture<'a> {
        Box::pin(async move {
            let mut text = String::with_capacity(events.len() * 256);
            for event in events {
                text.push_str(&event.to_json());
                text.push('\n');
            }
            // A batch is at most a few hundred lines; one locked write keeps lines whole.
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|source| SinkError::Io {
                    sink: "stdout",
                    source,
                })
        })
    }
}
