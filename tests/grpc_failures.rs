//! The gateway against a test engine that fails mid-stream, hangs or answers busy:
//! the session survives and an `asr.error` event says what happened.
//!
//! The test engine implements the gateway's own protocol (proto/asr/v1/asr.proto) and picks
//! its behaviour from the stream's call id.

mod common;

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use asr_gateway::asr::proto::recognizer_server::{Recognizer, RecognizerServer};
use asr_gateway::asr::proto::{recognize_request, Hypothesis, RecognizeRequest, RecognizeResponse};
use asr_gateway::sender::{self, SendOptions};
use common::{fixture, GatewayProcess};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// Streams of a `flaky` call refused before the engine takes one.
const FLAKY_FAILURES: u32 = 4;

#[derive(Default)]
struct ScriptedEngine {
    streams: Arc<AtomicU32>,
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<RecognizeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Recognizer for ScriptedEngine {
    type StreamingRecognizeStream = ResponseStream;

    async fn streaming_recognize(
        &self,
        request: Request<Streaming<RecognizeRequest>>,
    ) -> Result<Response<Self::StreamingRecognizeStream>, Status> {
        let mut input = request.into_inner();
        let Some(Ok(RecognizeRequest {
            request: Some(recognize_request::Request::Config(config)),
        })) = input.next().await
        else {
            return Err(Status::invalid_argument("first message must be config"));
        };
        let nth = self.streams.fetch_add(1, Ordering::Relaxed);
        let call = config.call_id.clone();
        if call.starts_with("busy") {
            return Err(Status::resource_exhausted("engine busy: test queue full"));
        }
        // A flaky call's first four streams find the engine down.
        if call.starts_with("flaky") && nth < FLAKY_FAILURES {
            return Err(Status::unavailable("test engine restarting"));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            let mut chunks = 0;
            while let Some(Ok(msg)) = input.next().await {
                if matches!(msg.request, Some(recognize_request::Request::Audio(_))) {
                    chunks += 1;
                }
                // The first stream of a fail-mid call dies after a few chunks.
                if call.starts_with("failmid") && nth == 0 && chunks == 3 {
                    let _ = tx
                        .send(Err(Status::internal("test engine crashed mid-stream")))
                        .await;
                    return;
                }
            }
            if call.starts_with("hang") {
                // Never answer, never close.
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            let done = RecognizeResponse {
                alternatives: vec![Hypothesis {
                    transcript: format!("heard {chunks} chunks"),
                    confidence: 0.5,
                    words: vec![],
                }],
                is_final: true,
                end_of_utterance: true,
                ..Default::default()
            };
            let _ = tx.send(Ok(done)).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

struct TestEngine {
    endpoint: String,
    _runtime: tokio::runtime::Runtime,
}

fn start_engine() -> TestEngine {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(RecognizerServer::new(ScriptedEngine::default()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    TestEngine {
        endpoint,
        _runtime: runtime,
    }
}

fn play(gw: &mut GatewayProcess, call_id: &str, wav: &str) -> (String, Vec<serde_json::Value>) {
    let (id, target) = gw.create_session(call_id);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(sender::send_wav(
        &fixture(wav),
        target,
        &SendOptions::pcmu(),
    ))
    .unwrap();
    std::thread::sleep(Duration::from_millis(900));
    gw.delete_session(&id);
    gw.wait_for(&id, "asr.session.ended", Duration::from_secs(30));
    let events = gw.of(&id);
    (id, events)
}

fn errors(events: &[serde_json::Value]) -> Vec<(String, Option<u64>)> {
    events
        .iter()
        .filter(|e| e["type"] == "asr.error")
        .map(|e| {
            (
                e["data"]["code"].as_str().unwrap().to_owned(),
                e["data"]["utterance"].as_u64(),
            )
        })
        .collect()
}

fn gateway(engine: &TestEngine) -> GatewayProcess {
    GatewayProcess::start(&format!(
        "[asr]\nendpoint = \"{}\"\nfinal_timeout_ms = 1500\n",
        engine.endpoint
    ))
}

#[test]
fn busy_engine_gives_an_error_event_and_the_session_ends_cleanly() {
    let engine = start_engine();
    let mut gw = gateway(&engine);
    let (_, events) = play(&mut gw, "busy-1", "balance.wav");
    assert_eq!(
        errors(&events),
        vec![("asr_busy".to_owned(), Some(1))],
        "{events:#?}"
    );
    assert!(gw.healthy());
}

#[test]
fn engine_failing_mid_stream_fails_that_utterance_only() {
    let engine = start_engine();
    let mut gw = gateway(&engine);
    let (_, events) = play(&mut gw, "failmid-1", "two-phrases.wav");
    assert_eq!(
        errors(&events),
        vec![("asr_stream_failed".to_owned(), Some(1))],
        "{events:#?}"
    );
    let finals: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "asr.transcript.final")
        .collect();
    assert_eq!(finals.len(), 1, "{events:#?}");
    assert_eq!(finals[0]["data"]["utterance"], 2);
}

#[test]
fn hanging_engine_times_out_and_the_session_still_ends() {
    let engine = start_engine();
    let mut gw = gateway(&engine);
    let (_, events) = play(&mut gw, "hang-1", "balance.wav");
    let errs = errors(&events);
    assert_eq!(
        errs,
        vec![("asr_timeout".to_owned(), Some(1))],
        "{events:#?}"
    );
    assert_eq!(events.last().unwrap()["type"], "asr.session.ended");
}

#[test]
fn unreachable_engine_is_reported() {
    // Nothing listens on this port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut gw = GatewayProcess::start(&format!(
        "[asr]\nendpoint = \"{endpoint}\"\nconnect_timeout_ms = 500\n"
    ));
    let (_, events) = play(&mut gw, "down-1", "balance.wav");
    assert_eq!(
        errors(&events),
        vec![("asr_unavailable".to_owned(), Some(1))],
        "{events:#?}"
    );
}

#[test]
fn call_mode_engine_outage_is_one_error_one_recovery_and_the_audio_of_the_wait_is_sent() {
    let engine = start_engine();
    let mut gw = GatewayProcess::start(&format!(
        "[asr]\nendpoint = \"{}\"\nmode = \"call\"\nfinal_timeout_ms = 3000\nretry_initial_ms = 100\nretry_max_ms = 400\n",
        engine.endpoint
    ));
    let (_, events) = play(&mut gw, "flaky-1", "two-phrases.wav");
    assert_eq!(
        errors(&events),
        vec![("asr_unavailable".to_owned(), None)],
        "{events:#?}"
    );
    let recovered: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "asr.recovered")
        .collect();
    assert_eq!(recovered.len(), 1, "{events:#?}");
    assert_eq!(recovered[0]["data"]["failures"], FLAKY_FAILURES);
    // The stream that worked got the audio kept while the engine was down: about all of it.
    let ended = events
        .iter()
        .find(|e| e["type"] == "asr.session.ended")
        .unwrap();
    let chunks_in_call = ended["data"]["duration_ms"].as_u64().unwrap() / 100;
    let heard: u64 = events
        .iter()
        .filter(|e| e["type"] == "asr.transcript.final")
        .filter_map(|e| {
            let text = e["data"]["text"].as_str()?;
            text.strip_prefix("heard ")?
                .strip_suffix(" chunks")?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(
        heard * 10 >= chunks_in_call * 9,
        "the engine heard {heard} of {chunks_in_call} chunks: {events:#?}"
    );
}
