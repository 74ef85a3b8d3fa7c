//! Webhook sink against a real local HTTP receiver (axum): retries, rejections, signatures.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use asr_gateway::events::outgoing::OutgoingEvent;
use asr_gateway::events::sink::{Sink, SinkError};
use asr_gateway::events::webhook::{verify_signature, WebhookConfig, WebhookSink};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use uuid::Uuid;

const SECRET: &str = "webhook-test-secret";
/// A scripted status that means "never answer" (the sink's timeout must fire).
const HANG: u16 = 0;

fn event(n: usize) -> OutgoingEvent {
    let id = Uuid::new_v4();
    OutgoingEvent {
        id,
        kind: "asr.transcript.final".into(),
        call_id: "call-1".into(),
        json: Bytes::from(format!(
            "{{\"specversion\":\"1.0\",\"id\":\"{id}\",\"type\":\"asr.transcript.final\",\
             \"subject\":\"call-1\",\"data\":{{\"n\":{n},\"text\":\"h\u{e9}llo\"}}}}"
        )),
    }
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Hit {
    body: Bytes,
    content_type: String,
    signature_ok: bool,
}

#[derive(Clone)]
struct Receiver {
    /// Statuses to answer in turn; `fallback` once empty.
    script: Arc<Mutex<VecDeque<u16>>>,
    fallback: u16,
    hits: Arc<Mutex<Vec<Hit>>>,
}

async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let signature_ok = verify_signature(SECRET.as_bytes(), &body, &header("x-asr-signature"));
    r.hits.lock().unwrap().push(Hit {
        body,
        content_type: header("content-type"),
        signature_ok,
    });
    let status = r.script.lock().unwrap().pop_front().unwrap_or(r.fallback);
    if status == HANG {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let mut out = HeaderMap::new();
    if status == 429 {
        out.insert("retry-after", "0".parse().unwrap());
    }
    (StatusCode::from_u16(status.max(200)).unwrap(), out)
}

/// Start a receiver answering `script` then `fallback` forever. Returns its URL and log.
async fn receiver(script: &[u16], fallback: u16) -> (String, Arc<Mutex<Vec<Hit>>>) {
    let state = Receiver {
        script: Arc::new(Mutex::new(script.iter().copied().collect())),
        fallback,
        hits: Arc::default(),
    };
    let hits = state.hits.clone();
    let app = Router::new()
        .route("/events", post(receive))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/events"), hits)
}

fn sink(url: &str, max_attempts: u32, batch: bool) -> WebhookSink {
    WebhookSink::new(WebhookConfig {
        url: url.into(),
        secret: Some(SECRET.into()),
        timeout_ms: 2_000,
        max_attempts,
        backoff_initial_ms: 10,
        backoff_max_ms: 50,
        batch,
        ..WebhookConfig::default()
    })
    .unwrap()
}

fn id_of(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn two_server_errors_then_delivered_with_same_id_and_valid_signature() {
    let (url, hits) = receiver(&[500, 500], 200).await;
    let e = event(1);
    sink(&url, 5, false)
        .publish(std::slice::from_ref(&e))
        .await
        .unwrap();
    let hits = hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 3);
    for hit in &hits {
        assert_eq!(
            hit.body, e.json,
            "body must be the event JSON byte for byte"
        );
        assert_eq!(id_of(&hit.body), e.id.to_string());
        assert!(hit.signature_ok);
        assert!(
            hit.content_type.starts_with("application/cloudevents+json"),
            "{}",
            hit.content_type
        );
    }
}

#[tokio::test]
async fn always_500_fails_after_max_attempts() {
    let (url, hits) = receiver(&[], 500).await;
    let err = sink(&url, 3, false).publish(&[event(1)]).await.unwrap_err();
    assert!(matches!(err, SinkError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("500"), "{err}");
    assert_eq!(hits.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn client_error_is_rejected_without_retry() {
    let (url, hits) = receiver(&[], 400).await;
    let err = sink(&url, 5, false).publish(&[event(1)]).await.unwrap_err();
    assert!(matches!(err, SinkError::Rejected { .. }), "{err}");
    assert_eq!(hits.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn too_many_requests_and_request_timeout_are_retried() {
    let (url, hits) = receiver(&[429, 408], 204).await;
    sink(&url, 5, false).publish(&[event(1)]).await.unwrap();
    assert_eq!(hits.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn unreachable_receiver_is_an_error_not_a_panic() {
    // Bind then drop: the port is free and nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = sink(&format!("http://127.0.0.1:{port}/events"), 2, false)
        .publish(&[event(1)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SinkError::Unavailable { .. } | SinkError::Timeout { .. }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn silent_receiver_times_out() {
    let (url, hits) = receiver(&[], HANG).await;
    let sink = WebhookSink::new(WebhookConfig {
        url: url.into(),
        secret: Some(SECRET.into()),
        timeout_ms: 200,
        max_attempts: 2,
        backoff_initial_ms: 10,
        ..WebhookConfig::default()
    })
    .unwrap();
    let err = sink.publish(&[event(1)]).await.unwrap_err();
    assert!(
        matches!(err, SinkError::Timeout { after_ms: 200, .. }),
        "{err}"
    );
    assert_eq!(hits.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn single_mode_posts_each_event_in_order() {
    let (url, hits) = receiver(&[], 200).await;
    let events: Vec<OutgoingEvent> = (0..5).map(event).collect();
    sink(&url, 3, false).publish(&events).await.unwrap();
    let got: Vec<String> = hits
        .lock()
        .unwrap()
        .iter()
        .map(|h| id_of(&h.body))
        .collect();
    let want: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn batch_mode_posts_one_signed_json_array() {
    let (url, hits) = receiver(&[503], 200).await;
    let events: Vec<OutgoingEvent> = (0..10).map(event).collect();
    sink(&url, 3, true).publish(&events).await.unwrap();
    let hits = hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 2, "one 503, one retry of the same batch");
    assert_eq!(hits[0].body, hits[1].body);
    let hit = &hits[1];
    assert!(hit.signature_ok);
    assert!(
        hit.content_type
            .starts_with("application/cloudevents-batch+json"),
        "{}",
        hit.content_type
    );
    let array: Vec<serde_json::Value> = serde_json::from_slice(&hit.body).unwrap();
    let got: Vec<&str> = array.iter().map(|v| v["id"].as_str().unwrap()).collect();
    let want: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(got, want);
}
