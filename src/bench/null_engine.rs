//! The `null` engine: an `asr.v1.Recognizer` that recognizes nothing. It timestamps every
//! audio chunk on arrival (packet-to-engine latency) and answers synthetic partials and
//! finals after a set delay, so a bench measures the gateway alone, without ASR cost.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::streams::{self, Registry, StreamRecord};
use crate::asr::proto::recognize_request::Request as Msg;
use crate::asr::proto::recognizer_server::{Recognizer, RecognizerServer};
use crate::asr::proto::{AudioEncoding, Hypothesis, RecognizeRequest, RecognizeResponse};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NullEngineConfig {
    /// From end of speech (or end of stream) to the final, as a real engine's decode time.
    pub final_delay: Duration,
    /// A partial every this much audio of an utterance, when the stream asks for interims.
    pub partial_every_ms: u64,
}

impl Default for NullEngineConfig {
    fn default() -> Self {
        Self {
            final_delay: Duration::from_millis(100),
            partial_every_ms: 1000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NullEngineError {
    #[error("null engine cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running null engine; dropping it stops the server.
pub struct NullEngine {
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl NullEngine {
    pub async fn start(
        listen: SocketAddr,
        registry: Arc<Registry>,
        config: NullEngineConfig,
    ) -> Result<Self, NullEngineError> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| NullEngineError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| NullEngineError::Bind {
                addr: listen,
                source,
            })?;
        let (stop, stopped) = oneshot::channel::<()>();
        let service = RecognizerServer::new(NullRecognizer { registry, config });
        tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "null engine stopped");
            }
        });
        Ok(Self { addr, _stop: stop })
    }
}

struct NullRecognizer {
    registry: Arc<Registry>,
    config: NullEngineConfig,
}

type ResponseTx = mpsc::Sender<Result<RecognizeResponse, Status>>;

#[tonic::async_trait]
impl Recognizer for NullRecognizer {
    type StreamingRecognizeStream = ReceiverStream<Result<RecognizeResponse, Status>>;

    async fn streaming_recognize(
        &self,
        request: Request<Streaming<RecognizeRequest>>,
    ) -> Result<Response<Self::StreamingRecognizeStream>, Status> {
        let (tx, rx) = mpsc::channel(16);
        let (registry, config) = (self.registry.clone(), self.config);
        tokio::spawn(async move {
            if let Err(status) = serve_stream(registry, config, request.into_inner(), &tx).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The utterance being heard: media span so far, and audio since the last partial.
#[derive(Default)]
struct Heard {
    start_ms: Option<u64>,
    end_ms: u64,
    since_partial_ms: u64,
}

async fn serve_stream(
    registry: Arc<Registry>,
    config: NullEngineConfig,
    mut requests: Streaming<RecognizeRequest>,
    tx: &ResponseTx,
) -> Result<(), Status> {
    let stream_config = match requests.message().await {
        Ok(Some(RecognizeRequest {
            request: Some(Msg::Config(c)),
        })) => c,
        Ok(_) => {
            return Err(Status::invalid_argument(
                "the first message must be the config",
            ))
        }
        Err(_) => return Ok(()),
    };
    let record: Option<Arc<StreamRecord>> =
        streams::index_of(&stream_config.call_id).map(|i| registry.stream(i));
    let bytes_per_sample = match stream_config.encoding() {
        AudioEncoding::Linear16 => 2,
        AudioEncoding::Mulaw | AudioEncoding::Alaw => 1,
        AudioEncoding::Unspecified => {
            return Err(Status::invalid_argument("audio encoding unspecified"))
        }
    };
    let rate = stream_config.sample_rate_hz.max(1);
    let interims = stream_config.interim_results;
    let mut heard = Heard::default();
    let mut utterances = 0u32;
    // Finals (and partials) waiting for their due time, in order.
    let mut due: VecDeque<(Instant, RecognizeResponse)> = VecDeque::new();
    let mut input_done = false;
    loop {
        if input_done && due.is_empty() {
            return Ok(());
        }
        let next_due = due.front().map(|(at, _)| *at);
        tokio::select! {
            biased;
            () = sleep_until(next_due), if next_due.is_some() => {
                let (_, response) = due.pop_front().expect("due is non-empty");
                if let Some(r) = &record {
                    let counter = if response.is_final { &r.finals_sent } else { &r.partials_sent };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                if tx.send(Ok(response)).await.is_err() {
                    return Ok(());
                }
            }
            msg = requests.message(), if !input_done => match msg {
                Ok(Some(RecognizeRequest { request: Some(Msg::Audio(chunk)) })) => {
                    let arrived_us = registry.now_us();
                    let samples = (chunk.audio.len() / bytes_per_sample) as u64;
                    if let Some(r) = &record {
                        registry.handle_audio(r, chunk.offset_ms, samples, rate, arrived_us);
                    }
                    let ms = samples * 1000 / u64::from(rate);
                    heard.start_ms.get_or_insert(chunk.offset_ms);
                    heard.end_ms = chunk.offset_ms + ms;
                    heard.since_partial_ms += ms;
                    if interims && heard.since_partial_ms >= config.partial_every_ms {
                        heard.since_partial_ms = 0;
                        due.push_back((Instant::now(), response(&heard, utterances + 1, false)));
                    }
                }
                Ok(Some(RecognizeRequest { request: Some(Msg::EndOfSpeech(end)) })) => {
                    heard.end_ms = heard.end_ms.max(end.offset_ms);
                    utterances += 1;
                    let id = if end.utterance_id == 0 { utterances } else { end.utterance_id };
                    let at = Instant::now() + config.final_delay;
                    due.push_back((at, response(&heard, id, true)));
                    heard = Heard::default();
                }
                Ok(Some(RecognizeRequest { request: Some(Msg::Config(_)) })) => {
                    return Err(Status::invalid_argument("config sent twice"));
                }
                Ok(Some(RecognizeRequest { request: None })) => {}
                Ok(None) => {
                    input_done = true;
                    if heard.start_ms.is_some() {
                        utterances += 1;
                        let at = Instant::now() + config.final_delay;
                        due.push_back((at, response(&heard, 0, true)));
                    }
                }
                Err(_) => return Ok(()),
            },
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn response(heard: &Heard, utterance_id: u32, is_final: bool) -> RecognizeResponse {
    let kind = if is_final { "final" } else { "partial" };
    RecognizeResponse {
        alternatives: vec![Hypothesis {
            transcript: format!("null {kind} {utterance_id}"),
            confidence: 1.0,
            words: vec![],
        }],
        is_final,
        end_of_utterance: is_final,
        start_ms: heard.start_ms.unwrap_or(0),
        end_ms: heard.end_ms,
        utterance_id,
    }
}
