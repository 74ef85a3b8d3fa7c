//! The gRPC client against misbehaving test servers over real gRPC on 127.0.0.1: a stream
//! failing mid-way, an engine that never finishes, a busy engine, an engine that stops
//! reading, and no engine at all. Model-independent.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use asr_gateway::asr::client::{AsrClient, ClientConfig};
use asr_gateway::asr::proto::recognize_request::Request as Msg;
use asr_gateway::asr::proto::recognizer_server::{Recognizer, RecognizerServer};
use asr_gateway::asr::proto::{Hypothesis as WireHypothesis, RecognizeRequest, RecognizeResponse};
use asr_gateway::asr::types::{
    AsrAudio, AsrControl, AsrFailure, AsrRequest, AsrUpdate, StreamOptions,
};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

/// Guards against hangs only; nothing here measures speed.
const GUARD: Duration = Duration::from_secs(60);

#[derive(Clone, Copy)]
enum Mode {
    /// First call: one interim, then INTERNAL. Later calls: a final "ok" after the input ends.
    FailFirstMidStream,
    /// Reads everything, never answers, never closes.
    Hang,
    /// Answers RESOURCE_EXHAUSTED at once.
    Busy,
    /// Never reads the request stream.
    Stall,
}

struct Fake {
    mode: Mode,
    calls: Arc<AtomicUsize>,
}

type Out = Pin<Box<dyn Stream<Item = Result<RecognizeResponse, Status>> + Send>>;

fn text(t: &str, is_final: bool) -> RecognizeResponse {
    RecognizeResponse {
        alternatives: vec![WireHypothesis {
            transcript: t.into(),
            confidence: 0.0,
            words: vec![],
        }],
        is_final,
        end_of_utterance: is_final,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Recognizer for Fake {
    type StreamingRecognizeStream = Out;

    async fn streaming_recognize(
        &self,
        request: Request<Streaming<RecognizeRequest>>,
    ) -> Result<Response<Out>, Status> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        match self.mode {
            Mode::Busy => {
                return Err(Status::resource_exhausted(
                    "engine busy: 1 workers, queue of 0 full",
                ))
            }
            Mode::FailFirstMidStream => {
                tokio::spawn(async move {
                    let first = inbound.message().await.unwrap().unwrap();
                    assert!(matches!(first.request, Some(Msg::Config(_))));
                    if call == 0 {
                        let _ = inbound.message().await;
                        let _ = tx.send(Ok(text("partial", false))).await;
                        let _ = tx.send(Err(Status::internal("decoder crashed"))).await;
                    } else {
                        while let Ok(Some(_)) = inbound.message().await {}
                        let _ = tx.send(Ok(text("ok", true))).await;
                    }
                });
            }
            Mode::Hang => {
                tokio::spawn(async move {
                    while let Ok(Some(_)) = inbound.message().await {}
                    let _keep_open = tx;
                    std::future::pending::<()>().await;
                });
            }
            Mode::Stall => {
                tokio::spawn(async move {
                    let _keep = (inbound, tx);
                    std::future::pending::<()>().await;
                });
            }
        }
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

async fn fake_server(mode: Mode) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = Fake {
        mode,
        calls: Arc::default(),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RecognizerServer::new(fake))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    format!("http://{addr}")
}

fn client(endpoint: String, final_timeout: Duration) -> AsrClient {
    AsrClient::new(ClientConfig {
        tls: Default::default(),
        endpoint,
        connect_timeout: Duration::from_secs(5),
        final_timeout,
    })
    .unwrap()
}

fn options() -> StreamOptions {
    StreamOptions {
        session_id: "s1".into(),
        call_id: "c1".into(),
        sample_rate: 16_000,
        language: "en-US".into(),
        interim_results: true,
        hints: vec![],
        engine_profile: String::new(),
    }
}

fn begin(stream: u32) -> AsrRequest {
    AsrRequest::Control(AsrControl::Begin {
        stream,
        offset_ms: 0,
    })
}

fn end(stream: u32) -> AsrRequest {
    AsrRequest::Control(AsrControl::End { stream })
}

fn audio(stream: u32, n: u64) -> AsrRequest {
    AsrRequest::Audio(AsrAudio {
        stream,
        offset_ms: n * 20,
        samples: vec![100; 320],
    })
}

/// Run a session over `requests`, then collect every update until the client is done.
async fn session(client: &AsrClient, requests: Vec<AsrRequest>) -> Vec<AsrUpdate> {
    let (req_tx, req_rx) = mpsc::channel(64);
    let (upd_tx, mut upd_rx) = mpsc::channel(64);
    let task = client.spawn_session(options(), req_rx, upd_tx);
    let collect = tokio::spawn(async move {
        let mut all = vec![];
        while let Some(u) = upd_rx.recv().await {
            all.push(u);
        }
        all
    });
    for r in requests {
        req_tx.send(r).await.unwrap();
    }
    drop(req_tx);
    tokio::time::timeout(GUARD, task)
        .await
        .expect("session ended")
        .unwrap();
    collect.await.unwrap()
}

#[tokio::test]
async fn failure_mid_stream_ends_only_that_stream() {
    let c = client(fake_server(Mode::FailFirstMidStream).await, GUARD);
    let mut reqs = vec![begin(1), audio(1, 0), audio(1, 1)];
    // Give the failure time to arrive, so stream 2 is a new call.
    let updates = {
        let (req_tx, req_rx) = mpsc::channel(64);
        let (upd_tx, mut upd_rx) = mpsc::channel(64);
        let task = c.spawn_session(options(), req_rx, upd_tx);
        for r in reqs.drain(..) {
            req_tx.send(r).await.unwrap();
        }
        let mut got = vec![];
        while !matches!(got.last(), Some(AsrUpdate::Failed { .. })) {
            got.push(
                tokio::time::timeout(GUARD, upd_rx.recv())
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        for r in [end(1), begin(2), audio(2, 0), end(2)] {
            req_tx.send(r).await.unwrap();
        }
        drop(req_tx);
        while let Some(u) = tokio::time::timeout(GUARD, upd_rx.recv()).await.unwrap() {
            got.push(u);
        }
        task.await.unwrap();
        got
    };
    assert_eq!(updates.len(), 4, "{updates:?}");
    assert!(
        matches!(&updates[0], AsrUpdate::Result(h) if h.stream == 1 && !h.is_final && h.text == "partial")
    );
    match &updates[1] {
        AsrUpdate::Failed {
            stream: 1,
            failure: AsrFailure::StreamFailed { code, detail },
        } => {
            assert_eq!(code, "INTERNAL");
            assert_eq!(detail, "decoder crashed");
        }
        other => panic!("expected StreamFailed, got {other:?}"),
    }
    assert!(
        matches!(&updates[2], AsrUpdate::Result(h) if h.stream == 2 && h.utterance == 2 && h.is_final && h.text == "ok")
    );
    assert_eq!(updates[3], AsrUpdate::Closed { stream: 2 });
}

#[tokio::test]
async fn hanging_engine_times_out_after_end() {
    let after = Duration::from_millis(300);
    let c = client(fake_server(Mode::Hang).await, after);
    let updates = session(&c, vec![begin(1), audio(1, 0), end(1)]).await;
    assert_eq!(
        updates,
        vec![AsrUpdate::Failed {
            stream: 1,
            failure: AsrFailure::Timeout { after }
        }]
    );
}

#[tokio::test]
async fn resource_exhausted_is_busy() {
    let c = client(fake_server(Mode::Busy).await, GUARD);
    let updates = session(&c, vec![begin(1), audio(1, 0), end(1)]).await;
    assert_eq!(
        updates,
        vec![AsrUpdate::Failed {
            stream: 1,
            failure: AsrFailure::Busy {
                detail: "1 workers, queue of 0 full".into()
            }
        }]
    );
}

#[tokio::test]
async fn an_engine_that_stops_reading_fails_the_stream_with_backpressure() {
    let c = client(fake_server(Mode::Stall).await, Duration::from_millis(300));
    // 120 s of audio, far more than HTTP/2 windows plus the driver's buffers (the
    // session's channel, the stream task's queue and the engine's channel: 256 each).
    let mut reqs = vec![begin(1)];
    reqs.extend((0..6000).map(|n| audio(1, n)));
    reqs.push(end(1));
    let updates = session(&c, reqs).await;
    assert_eq!(
        updates,
        vec![AsrUpdate::Failed {
            stream: 1,
            failure: AsrFailure::Backpressure { stream: 1 }
        }]
    );
}

#[tokio::test]
async fn no_engine_is_unavailable() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let c = client(endpoint.clone(), GUARD);
    let updates = session(&c, vec![begin(1), audio(1, 0), end(1)]).await;
    match &updates[..] {
        [AsrUpdate::Failed {
            stream: 1,
            failure: AsrFailure::Unavailable { endpoint: e, .. },
        }] => assert_eq!(e, &endpoint),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_gone_session_stops_the_client_quietly() {
    let c = client(fake_server(Mode::FailFirstMidStream).await, GUARD);
    let (req_tx, req_rx) = mpsc::channel(8);
    let (upd_tx, upd_rx) = mpsc::channel(1);
    let task = c.spawn_session(options(), req_rx, upd_tx);
    drop(upd_rx);
    for r in [begin(1), audio(1, 0), end(1)] {
        req_tx.send(r).await.unwrap();
    }
    drop(req_tx);
    tokio::time::timeout(GUARD, task).await.unwrap().unwrap();
}
