//! gRPC client for the gateway's own protocol: one task per session, one stream per utterance or call.
//!
//! The session task reads `AsrRequest`s in order and never waits on the network or on the
//! session: each open stream has its own sub-task fed by a bounded channel, so utterance N's
//! final may still be pending while N+1 streams. A full channel fails that stream with
//! `Backpressure`; every other failure is mapped from the gRPC status. A failure ends only
//! its stream.
//!
//! An `https://` endpoint is reached over TLS (rustls): the engine's certificate must chain
//! to `asr.tls.ca_file` (else the bundled Mozilla roots), and `asr.tls.client_cert_file` +
//! `client_key_file` are presented when the engine asks for a client certificate.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

use crate::asr::proto::recognize_request::Request as Msg;
use crate::asr::proto::recognizer_client::RecognizerClient;
use crate::asr::proto::{
    AudioChunk, AudioEncoding, EndOfSpeech, RecognizeRequest, RecognizeResponse, StreamConfig,
};
use crate::asr::types::{
    AsrAudio, AsrControl, AsrFailure, AsrRequest, AsrUpdate, Hypothesis, StreamOptions,
    UtteranceId, Word,
};
use crate::tls::{TlsError, TlsSettings};

/// Requests queued per open stream: about 5 s of 20 ms frames.
const STREAM_BUFFER: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `http://host:port` or `https://host:port` of a server of `asr.v1.Recognizer`.
    pub endpoint: String,
    /// CA and client certificate for an `https://` endpoint (`asr.tls`).
    pub tls: TlsSettings,
    pub connect_timeout: Duration,
    /// After `End`, how long to wait for the engine to close the stream before `Timeout`.
    pub final_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid engine endpoint {endpoint:?}: {detail}")]
    BadEndpoint { endpoint: String, detail: String },
    #[error("{0}")]
    Tls(#[from] TlsError),
}

/// Cheap to clone: shares one HTTP/2 connection (lazily connected) across sessions.
#[derive(Clone)]
pub struct AsrClient {
    shared: Arc<Shared>,
}

struct Shared {
    channel: Channel,
    endpoint: String,
    final_timeout: Duration,
}

impl AsrClient {
    /// Must be called inside a Tokio runtime (the channel spawns its connection task).
    /// Nothing connects until the first stream opens.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let bad = |detail: &str| ClientError::BadEndpoint {
            endpoint: config.endpoint.clone(),
            detail: detail.to_string(),
        };
        let secure = config.endpoint.starts_with("https://");
        if !secure && !config.endpoint.starts_with("http://") {
            return Err(bad("expected http://host:port or https://host:port"));
        }
        let mut endpoint = Endpoint::from_shared(config.endpoint.clone())
            .map_err(|e| bad(&e.to_string()))?
            .connect_timeout(config.connect_timeout)
            // Notice a dead engine during a long call-mode stream.
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10));
        if secure {
            endpoint = endpoint
                .tls_config(tonic_tls(&config.tls)?)
                .map_err(|e| bad(&e.to_string()))?;
        }
        Ok(AsrClient {
            shared: Arc::new(Shared {
                channel: endpoint.connect_lazy(),
                endpoint: config.endpoint,
                final_timeout: config.final_timeout,
            }),
        })
    }

    /// Serve one session: read requests in order, open/close gRPC streams as told, send
    /// every result or failure to `updates`. Ends when `requests` closes and streams are done.
    pub fn spawn_session(
        &self,
        options: StreamOptions,
        requests: mpsc::Receiver<AsrRequest>,
        updates: mpsc::Sender<AsrUpdate>,
    ) -> JoinHandle<()> {
        tokio::spawn(run_session(self.shared.clone(), options, requests, updates))
    }
}

/// tonic's TLS settings from `asr.tls`: the custom CA alone when set (else the bundled
/// roots), and the client certificate when set. The files are checked by loading them.
fn tonic_tls(settings: &TlsSettings) -> Result<ClientTlsConfig, TlsError> {
    let loaded = settings.load("asr.tls")?;
    let mut tls = ClientTlsConfig::new();
    tls = match loaded.ca_pem() {
        Some(ca) => tls.ca_certificate(Certificate::from_pem(ca)),
        None => tls.with_webpki_roots(),
    };
    if let Some((cert, key)) = loaded.identity_pem() {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Ok(tls)
}

/// The session's handle on one open stream. Dropping it closes the request side.
struct OpenStream {
    requests: mpsc::Sender<RecognizeRequest>,
    /// Dropped unsent = the request side was closed normally (starts the final timeout);
    /// sent = fail the stream with this failure now.
    abort: oneshot::Sender<AsrFailure>,
}

async fn run_session(
    shared: Arc<Shared>,
    mut options: StreamOptions,
    mut requests: mpsc::Receiver<AsrRequest>,
    updates: mpsc::Sender<AsrUpdate>,
) {
    let mut open: HashMap<UtteranceId, OpenStream> = HashMap::new();
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            // Reap finished stream tasks so a long call does not accumulate them.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            request = requests.recv() => match request {
                None => break,
                Some(AsrRequest::Control(AsrControl::Begin { stream, .. })) => {
                    // A stream still open under the same id is closed first.
                    open.remove(&stream);
                    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
                    tx.try_send(config_request(&options))
                        .expect("a new channel has room for the config");
                    let (abort, aborted) = oneshot::channel();
                    tasks.spawn(run_stream(shared.clone(), stream, rx, aborted, updates.clone()));
                    open.insert(stream, OpenStream { requests: tx, abort });
                }
                Some(AsrRequest::Audio(audio)) => {
                    let stream = audio.stream;
                    forward(&mut open, stream, audio_request(audio));
                }
                Some(AsrRequest::Control(AsrControl::EndOfSpeech { stream, utterance, offset_ms })) => {
                    let marker = Msg::EndOfSpeech(EndOfSpeech { utterance_id: utterance, offset_ms });
                    forward(&mut open, stream, RecognizeRequest { request: Some(marker) });
                }
                Some(AsrRequest::Control(AsrControl::End { stream })) => {
                    open.remove(&stream);
                }
                Some(AsrRequest::Control(AsrControl::Configure(new_options))) => {
                    options = new_options;
                }
            },
        }
    }
    // The session is done sending: close every request side and let the finals arrive.
    drop(open);
    while tasks.join_next().await.is_some() {}
}

/// Hand a request to its stream without waiting. Requests for streams that are not open
/// (never begun, or already failed and reported) are dropped.
fn forward(
    open: &mut HashMap<UtteranceId, OpenStream>,
    stream: UtteranceId,
    req: RecognizeRequest,
) {
    let Some(s) = open.get(&stream) else { return };
    match s.requests.try_send(req) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            if let Some(s) = open.remove(&stream) {
                let _ = s.abort.send(AsrFailure::Backpressure { stream });
            }
        }
        // The stream already ended; its task reported how.
        Err(TrySendError::Closed(_)) => {
            open.remove(&stream);
        }
    }
}

fn config_request(o: &StreamOptions) -> RecognizeRequest {
    RecognizeRequest {
        request: Some(Msg::Config(StreamConfig {
            encoding: AudioEncoding::Linear16 as i32,
            sample_rate_hz: o.sample_rate,
            language: o.language.clone(),
            interim_results: o.interim_results,
            hints: o.hints.clone(),
            session_id: o.session_id.clone(),
            call_id: o.call_id.clone(),
        })),
    }
}

/// LINEAR16 on the wire is little-endian.
fn audio_request(a: AsrAudio) -> RecognizeRequest {
    let mut bytes = Vec::with_capacity(a.samples.len() * 2);
    for s in &a.samples {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    RecognizeRequest {
        request: Some(Msg::Audio(AudioChunk {
            audio: bytes,
            offset_ms: a.offset_ms,
        })),
    }
}

/// How a stream's call ended when it did not fail.
enum Ended {
    /// The engine closed the response side normally.
    Closed,
    /// `updates` is closed: nobody wants the results any more.
    SessionGone,
}

/// One stream's sub-task: runs the call and reports its end (`Closed` or `Failed`) once.
async fn run_stream(
    shared: Arc<Shared>,
    stream: UtteranceId,
    requests: mpsc::Receiver<RecognizeRequest>,
    mut aborted: oneshot::Receiver<AsrFailure>,
    updates: mpsc::Sender<AsrUpdate>,
) {
    let call = call(&shared, stream, requests, &updates);
    tokio::pin!(call);
    let outcome = tokio::select! {
        r = &mut call => r,
        control = &mut aborted => match control {
            Ok(failure) => Err(failure),
            // The request side is closed: the engine has `final_timeout` to finish.
            Err(_) => match tokio::time::timeout(shared.final_timeout, &mut call).await {
                Ok(r) => r,
                Err(_) => Err(AsrFailure::Timeout { after: shared.final_timeout }),
            },
        },
    };
    let update = match outcome {
        Ok(Ended::SessionGone) => return,
        Ok(Ended::Closed) => AsrUpdate::Closed { stream },
        Err(failure) => {
            tracing::debug!(stream, %failure, "recognition stream failed");
            AsrUpdate::Failed { stream, failure }
        }
    };
    let _ = updates.send(update).await;
}

async fn call(
    shared: &Shared,
    stream: UtteranceId,
    requests: mpsc::Receiver<RecognizeRequest>,
    updates: &mpsc::Sender<AsrUpdate>,
) -> Result<Ended, AsrFailure> {
    let mut client = RecognizerClient::new(shared.channel.clone());
    let mut responses = client
        .streaming_recognize(ReceiverStream::new(requests))
        .await
        .map_err(|s| failure(&s, shared))?
        .into_inner();
    // Call mode without engine utterance ids: the utterance is the count of finals so far + 1.
    let mut finals = 0;
    loop {
        match responses.message().await {
            Ok(Some(response)) => {
                let hypothesis = hypothesis(stream, &mut finals, response)?;
                if updates.send(AsrUpdate::Result(hypothesis)).await.is_err() {
                    return Ok(Ended::SessionGone);
                }
            }
            Ok(None) => return Ok(Ended::Closed),
            Err(s) => return Err(failure(&s, shared)),
        }
    }
}

/// Most bytes of one transcript an engine may send (about 30 s of speech is 3 KB).
const MAX_TRANSCRIPT_BYTES: usize = 16 * 1024;
/// Most word timings in one result, and bytes of one word.
const MAX_WORDS: usize = 4096;
const MAX_WORD_BYTES: usize = 256;
/// Most bytes of an engine's error text copied into `asr.error`.
const MAX_DETAIL_BYTES: usize = 512;

/// Map one response; a final without alternatives is an empty transcript. Results over the
/// bounds above are invalid responses: the engine is broken or hostile.
fn hypothesis(
    stream: UtteranceId,
    finals: &mut u32,
    r: RecognizeResponse,
) -> Result<Hypothesis, AsrFailure> {
    let invalid = |detail: String| AsrFailure::InvalidResponse { detail };
    let best = match r.alternatives.into_iter().next() {
        Some(best) => best,
        None if r.is_final => Default::default(),
        None => return Err(invalid("interim result without alternatives".into())),
    };
    if !(0.0..=1.0).contains(&best.confidence) {
        return Err(invalid(format!(
            "confidence {} outside 0..1",
            best.confidence
        )));
    }
    if r.end_ms < r.start_ms {
        return Err(invalid(format!(
            "result ends ({} ms) before it starts ({} ms)",
            r.end_ms, r.start_ms
        )));
    }
    if best.transcript.len() > MAX_TRANSCRIPT_BYTES || best.words.len() > MAX_WORDS {
        return Err(invalid(format!(
            "result of {} bytes and {} words, over {MAX_TRANSCRIPT_BYTES} bytes or {MAX_WORDS} words",
            best.transcript.len(),
            best.words.len()
        )));
    }
    let mut words = Vec::with_capacity(best.words.len());
    for w in best.words {
        if w.word.len() > MAX_WORD_BYTES {
            return Err(invalid(format!(
                "word of {} bytes, over {MAX_WORD_BYTES}",
                w.word.len()
            )));
        }
        if w.end_ms < w.start_ms || !(0.0..=1.0).contains(&w.confidence) {
            return Err(invalid(format!(
                "word {:?} has times {}..{} ms, confidence {}",
                w.word, w.start_ms, w.end_ms, w.confidence
            )));
        }
        words.push(Word {
            word: w.word,
            start_ms: w.start_ms,
            end_ms: w.end_ms,
            confidence: w.confidence,
        });
    }
    let utterance = match (stream, r.utterance_id) {
        (0, 0) => *finals + 1,
        (0, id) => id,
        (stream, _) => stream,
    };
    if r.is_final {
        *finals += 1;
    }
    Ok(Hypothesis {
        stream,
        utterance,
        is_final: r.is_final,
        text: best.transcript,
        confidence: best.confidence,
        words,
        start_ms: r.start_ms,
        end_ms: r.end_ms,
    })
}

/// Map a gRPC status (from the engine or from the transport) to a failure.
fn failure(s: &Status, shared: &Shared) -> AsrFailure {
    let mut detail = if s.message().is_empty() {
        s.code().description().to_string()
    } else {
        crate::ids::cut_to(s.message().to_string(), MAX_DETAIL_BYTES)
    };
    // A connection that failed says only "transport error"; its root cause (refused, an
    // untrusted certificate) is what the operator needs.
    if let Some(cause) = crate::tls::root_cause(s).filter(|c| !detail.contains(c.as_str())) {
        detail = format!("{detail}: {cause}");
    }
    match s.code() {
        Code::ResourceExhausted => AsrFailure::Busy {
            // Our engine's message starts with "engine busy: "; the failure says it already.
            detail: detail
                .strip_prefix("engine busy: ")
                .unwrap_or(&detail)
                .to_string(),
        },
        Code::Unavailable => AsrFailure::Unavailable {
            endpoint: shared.endpoint.clone(),
            detail,
        },
        Code::DeadlineExceeded => AsrFailure::Timeout {
            after: shared.final_timeout,
        },
        code if is_transport_error(s) => AsrFailure::Unavailable {
            endpoint: shared.endpoint.clone(),
            detail: format!("{detail} ({})", code_name(code)),
        },
        code => AsrFailure::StreamFailed {
            code: code_name(code).to_string(),
            detail,
        },
    }
}

/// The status came from the connection (connect error, reset), not from the engine.
fn is_transport_error(s: &Status) -> bool {
    let mut source = std::error::Error::source(s);
    while let Some(e) = source {
        if e.is::<tonic::transport::Error>() || e.is::<std::io::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// The canonical gRPC name of a status code, as in `asr.error` events.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asr::proto;

    fn response(
        is_final: bool,
        alternatives: Vec<proto::Hypothesis>,
        utterance_id: u32,
    ) -> RecognizeResponse {
        RecognizeResponse {
            alternatives,
            is_final,
            end_of_utterance: is_final,
            start_ms: 10,
            end_ms: 20,
            utterance_id,
        }
    }

    fn alt(text: &str, confidence: f32) -> proto::Hypothesis {
        proto::Hypothesis {
            transcript: text.into(),
            confidence,
            words: vec![],
        }
    }

    #[test]
    fn oversized_results_are_invalid_not_copied() {
        let mut finals = 0;
        let huge = "word ".repeat(MAX_TRANSCRIPT_BYTES / 5 + 1);
        let e = hypothesis(1, &mut finals, response(true, vec![alt(&huge, 0.5)], 0)).unwrap_err();
        assert_eq!(e.code(), "asr_invalid_response");
        assert!(e.to_string().len() < 200, "{e}");
        let mut long_word = alt("x", 0.5);
        long_word.words = vec![proto::WordInfo {
            word: "x".repeat(MAX_WORD_BYTES + 1),
            ..Default::default()
        }];
        let e = hypothesis(1, &mut finals, response(true, vec![long_word], 0)).unwrap_err();
        assert!(e.to_string().len() < 200, "{e}");
    }

    #[test]
    fn utterance_numbering() {
        let mut finals = 0;
        // Utterance mode: the stream is the utterance.
        let h = hypothesis(7, &mut finals, response(true, vec![alt("hi", 0.5)], 3)).unwrap();
        assert_eq!((h.stream, h.utterance, h.text.as_str()), (7, 7, "hi"));
        // Call mode: engine ids win; otherwise count finals.
        let mut finals = 0;
        let h = hypothesis(0, &mut finals, response(false, vec![alt("a", 0.0)], 0)).unwrap();
        assert_eq!(h.utterance, 1);
        let h = hypothesis(0, &mut finals, response(true, vec![], 0)).unwrap();
        assert_eq!((h.utterance, h.text.as_str()), (1, ""));
        let h = hypothesis(0, &mut finals, response(true, vec![alt("b", 0.0)], 0)).unwrap();
        assert_eq!(h.utterance, 2);
        let h = hypothesis(0, &mut finals, response(true, vec![alt("c", 0.0)], 9)).unwrap();
        assert_eq!(h.utterance, 9);
    }

    #[test]
    fn malformed_responses() {
        let mut f = 0;
        let bad = [
            response(false, vec![], 0),
            response(true, vec![alt("x", 1.5)], 0),
            response(true, vec![alt("x", f32::NAN)], 0),
            RecognizeResponse {
                start_ms: 30,
                ..response(true, vec![alt("x", 0.1)], 0)
            },
        ];
        for r in bad {
            let e = hypothesis(1, &mut f, r).unwrap_err();
            assert_eq!(e.code(), "asr_invalid_response", "{e}");
        }
    }

    #[tokio::test]
    async fn status_mapping() {
        let client = AsrClient::new(ClientConfig {
            endpoint: "http://127.0.0.1:1".into(),
            tls: TlsSettings::default(),
            connect_timeout: Duration::from_secs(1),
            final_timeout: Duration::from_secs(2),
        })
        .unwrap();
        let sh = &client.shared;
        let busy = failure(
            &Status::resource_exhausted("engine busy: 1 workers, queue of 1 full"),
            sh,
        );
        assert_eq!(busy.to_string(), "engine busy: 1 workers, queue of 1 full");
        assert!(matches!(
            failure(&Status::unavailable("x"), sh),
            AsrFailure::Unavailable { .. }
        ));
        assert!(matches!(
            failure(&Status::deadline_exceeded("x"), sh),
            AsrFailure::Timeout { .. }
        ));
        let f = failure(&Status::invalid_argument("bad rate"), sh);
        assert_eq!(
            f,
            AsrFailure::StreamFailed {
                code: "INVALID_ARGUMENT".into(),
                detail: "bad rate".into()
            }
        );
    }

    #[tokio::test]
    async fn endpoints_are_checked() {
        let cfg = |e: &str| ClientConfig {
            endpoint: e.into(),
            tls: TlsSettings::default(),
            connect_timeout: Duration::from_secs(1),
            final_timeout: Duration::from_secs(1),
        };
        assert!(AsrClient::new(cfg("127.0.0.1:50051")).is_err());
        assert!(AsrClient::new(cfg("https://engine:443")).is_ok());
        assert!(AsrClient::new(cfg("grpc://engine:443")).is_err());
        assert!(AsrClient::new(cfg("http://engine:50051")).is_ok());
    }
}
