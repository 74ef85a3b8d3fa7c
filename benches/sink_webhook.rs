//! Throughput of the webhook sink with delivery confirmation (figures in benches/README.md).
//!
//! `cargo bench --no-default-features --bench sink_webhook`: 20,000 events of ~400 bytes in
//! batches of 500 to a local axum receiver (in this process) that checks every signature,
//! in single mode (one POST per event) and batch mode (one POST per batch). Under
//! `cargo test --benches` it runs a tiny smoke pass.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use asr_gateway::events::outgoing::OutgoingEvent;
use asr_gateway::events::sink::Sink;
use asr_gateway::events::webhook::{verify_signature, WebhookConfig, WebhookSink};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use uuid::Uuid;

const BATCH: usize = 500;
const SECRET: &str = "bench-secret";

fn event(n: usize) -> OutgoingEvent {
    let id = Uuid::new_v4();
    let call = format!("bench-call-{}", n % 20);
    let json = format!(
        "{{\"specversion\":\"1.0\",\"id\":\"{id}\",\"source\":\"/asr-gateway/bench\",\
         \"type\":\"asr.transcript.final\",\"subject\":\"{call}\",\"time\":\"2025-01-01T00:00:00Z\",\
         \"datacontenttype\":\"application/json\",\"data\":{{\"seq\":{n},\"utterance\":1,\
         \"text\":\"the quick brown fox jumps over the lazy dog and keeps on running far away\",\
         \"confidence\":0.93,\"start_ms\":1200,\"end_ms\":3400,\"offset_ms\":3420}}}}"
    );
    OutgoingEvent {
        id,
        kind: "asr.transcript.final".into(),
        call_id: call,
        json: Bytes::from(json),
    }
}

/// Counts requests whose signature checks out; refuses the others.
async fn receive(State(ok): State<Arc<AtomicU64>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let sig = headers
        .get("x-asr-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if verify_signature(SECRET.as_bytes(), &body, sig) {
        ok.fetch_add(1, Ordering::Relaxed);
        StatusCode::NO_CONTENT
    } else {
        StatusCode::UNAUTHORIZED
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let count = if full { 20_000 } else { 200 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let accepted = Arc::new(AtomicU64::new(0));
        let app = Router::new()
            .route("/events", post(receive))
            .with_state(accepted.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let events: Vec<OutgoingEvent> = (0..count).map(event).collect();
        let bytes = events.iter().map(|e| e.json.len()).sum::<usize>() / count;
        for batch_mode in [false, true] {
            let sink = WebhookSink::new(WebhookConfig {
                url: url.clone().into(),
                secret: Some(SECRET.into()),
                batch: batch_mode,
                ..WebhookConfig::default()
            })
            .unwrap();
            sink.publish(&events[..1]).await.unwrap();
            let before = accepted.load(Ordering::Relaxed);
            let start = Instant::now();
            for batch in events.chunks(BATCH) {
                sink.publish(batch).await.unwrap();
            }
            let rate = count as f64 / start.elapsed().as_secs_f64();
            let requests = accepted.load(Ordering::Relaxed) - before;
            let mode = if batch_mode { "batch" } else { "single" };
            println!(
                "sink_webhook {mode}: {count} events x {bytes} B, batches of {BATCH}, {requests} signed POSTs: {rate:.0} events/s"
            );
        }
    });
}
