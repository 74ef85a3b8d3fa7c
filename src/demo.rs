//! The demo: the gateway with its embedded engine, fed bundled calls as real RTP.
//!
//! Each sample call gets a session through the HTTP API, exactly as call logic would,
//! and is sent from its own UDP socket at real-time pace. Events go to the configured
//! sinks (stdout JSON lines by default); a one-line summary per call follows.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::broadcast;

use crate::config::Config;
use crate::events::model::{Event, EventBody};
use crate::sender::{self, SendOptions, SendReport};
use crate::serve::{Gateway, ServeError};
use crate::text_norm::normalize_words;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("HTTP API: {0}")]
    Http(#[from] reqwest::Error),
    #[error("HTTP API answered {status}: {body}")]
    Api { status: u16, body: String },
    #[error("sending {file}: {source}")]
    Send {
        file: String,
        #[source]
        source: sender::SendError,
    },
    #[error("session {0} did not end within the wait")]
    NoEnd(String),
}

/// A bundled call: a fixture and how Asterisk would send it.
#[derive(Debug, Clone)]
pub struct SampleCall {
    pub file: &'static str,
    pub options: SendOptions,
}

/// u-law 8 kHz as Asterisk sends by default, plus one slin16 call.
pub fn sample_calls() -> Vec<SampleCall> {
    vec![
        SampleCall {
            file: "yes-interested.wav",
            options: SendOptions::pcmu(),
        },
        SampleCall {
            file: "call-back.wav",
            options: SendOptions::pcmu(),
        },
        SampleCall {
            file: "balance.wav",
            options: SendOptions::pcmu(),
        },
        SampleCall {
            file: "two-phrases.wav",
            options: SendOptions::slin16(),
        },
    ]
}

/// What one call produced.
#[derive(Debug, Clone)]
pub struct CallResult {
    pub call_id: String,
    pub codec: String,
    pub sent: SendReport,
    pub finals: Vec<String>,
    pub duration_ms: u64,
    pub received: u64,
    pub lost: u64,
    pub reference: Option<String>,
}

impl CallResult {
    pub fn transcript(&self) -> String {
        self.finals.join(" ")
    }

    /// Share of reference words found in the transcript (1.0 when there is no reference).
    pub fn word_recall(&self) -> f64 {
        let Some(reference) = &self.reference else {
            return 1.0;
        };
        let heard = normalize_words(&self.transcript());
        let wanted = normalize_words(reference);
        if wanted.is_empty() {
            return 1.0;
        }
        wanted.iter().filter(|w| heard.contains(w)).count() as f64 / wanted.len() as f64
    }

    pub fn summary_line(&self) -> String {
        format!(
            "{:<22} {:<10} {:>5.1} s  packets sent {:>4} received {:>4} lost {:>2}  words {:>3.0}%  \"{}\"",
            self.call_id,
            self.codec,
            self.duration_ms as f64 / 1000.0,
            self.sent.datagrams,
            self.received,
            self.lost,
            self.word_recall() * 100.0,
            self.transcript()
        )
    }
}

/// Start the gateway, play every sample call concurrently, return per-call results.
pub async fn run(config: Config, fixtures: &Path) -> Result<Vec<CallResult>, DemoError> {
    let gateway = Gateway::start(config).await?;
    let events = gateway.subscribe();
    let base = format!("http://{}", gateway.http_addr());
    let http = reqwest::Client::new();
    let mut calls = Vec::new();
    for call in sample_calls() {
        let path = fixtures.join(call.file);
        calls.push(play(
            http.clone(),
            base.clone(),
            path,
            call.options,
            events.resubscribe(),
        ));
    }
    let results = futures_join_all(calls).await;
    gateway.shutdown().await;
    results.into_iter().collect()
}

async fn futures_join_all<F>(futures: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("demo call task panicked"));
    }
    out
}

async fn play(
    http: reqwest::Client,
    base: String,
    path: PathBuf,
    options: SendOptions,
    mut events: broadcast::Receiver<Event>,
) -> Result<CallResult, DemoError> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("call")
        .to_owned();
    let call_id = format!("demo-{stem}");
    let response = http
        .post(format!("{base}/v1/sessions"))
        .json(&serde_json::json!({ "call_id": call_id }))
        .send()
        .await?;
    if !response.status().is_success() {
        return Err(DemoError::Api {
            status: response.status().as_u16(),
            body: response.text().await.unwrap_or_default(),
        });
    }
    let created: serde_json::Value = response.json().await?;
    let session_id = created["session_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let target: SocketAddr = format!(
        "{}:{}",
        created["host"].as_str().unwrap_or("127.0.0.1"),
        created["port"]
    )
    .parse()
    .map_err(|_| DemoError::Api {
        status: 201,
        body: created.to_string(),
    })?;
    let sent = sender::send_wav(&path, target, &options)
        .await
        .map_err(|source| DemoError::Send {
            file: path.display().to_string(),
            source,
        })?;
    // Let the VAD hangover pass so the last utterance ends on silence, then end the call.
    tokio::time::sleep(Duration::from_millis(900)).await;
    http.delete(format!("{base}/v1/sessions/{session_id}"))
        .send()
        .await?;
    let mut result = CallResult {
        call_id,
        codec: String::new(),
        sent,
        finals: Vec::new(),
        duration_ms: 0,
        received: 0,
        lost: 0,
        reference: std::fs::read_to_string(path.with_extension("txt"))
            .ok()
            .map(|s| s.trim().to_owned()),
    };
    let mut finals: HashMap<u32, String> = HashMap::new();
    let wait = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(wait);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(e) if *e.session_id == *session_id => match e.body {
                    EventBody::TranscriptFinal { utterance, text, .. } => {
                        finals.entry(utterance).or_default().push_str(&text);
                    }
                    EventBody::SessionEnded { codec, duration_ms, stats, .. } => {
                        result.codec = codec.unwrap_or_default();
                        result.duration_ms = duration_ms;
                        result.received = stats.received;
                        result.lost = stats.lost;
                        break;
                    }
                    _ => {}
                },
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Err(DemoError::NoEnd(session_id)),
            },
            () = &mut wait => return Err(DemoError::NoEnd(session_id)),
        }
    }
    let mut ordered: Vec<_> = finals.into_iter().collect();
    ordered.sort_by_key(|(u, _)| *u);
    result.finals = ordered
        .into_iter()
        .map(|(_, t)| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    Ok(result)
}
