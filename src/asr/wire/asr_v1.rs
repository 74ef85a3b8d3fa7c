//! The gateway's own gRPC protocol (`asr.v1.Recognizer`) as an `Engine`: the embedded engine and any engine that speaks it.
//!
//! An `https://` endpoint is reached over TLS (rustls): the engine's certificate must chain
//! to `tls.ca_file` (else the bundled Mozilla roots), and `tls.client_cert_file` +
//! `client_key_file` are presented when the engine asks for a client certificate.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::asr::engine::{check_result, Engine, EngineResult, StreamInput, StreamRun};
use crate::asr::proto::recognize_request::Request as Msg;
use crate::asr::proto::recognizer_client::RecognizerClient;
use crate::asr::proto::{
    AudioChunk, AudioEncoding, EndOfSpeech, RecognizeRequest, RecognizeResponse, StreamConfig,
};
use crate::asr::types::{AsrFailure, StreamOptions, Word};
use crate::asr::wire::grpc_status;
use crate::tls::{TlsError, TlsSettings};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `http://host:port` or `https://host:port` of a server of `asr.v1.Recognizer`.
    pub endpoint: String,
    /// CA and client certificate for an `https://` endpoint (`asr.tls`).
    pub tls: TlsSettings,
    pub connect_timeout: Duration,
    /// After the request side closes, how long to wait for the engine to close the stream
    /// before `Timeout`.
    pub final_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid engine endpoint {endpoint:?}: {detail}")]
    BadEndpoint { endpoint: String, detail: String },
    #[error("{0}")]
    Tls(#[from] TlsError),
}

/// Cheap to share: one HTTP/2 connection (lazily connected) for every stream.
pub struct AsrV1Engine {
    name: String,
    channel: Channel,
    endpoint: String,
    final_timeout: Duration,
}

impl AsrV1Engine {
    /// Must be called inside a Tokio runtime (the channel spawns its connection task).
    /// Nothing connects until the first stream opens.
    pub fn new(name: impl Into<String>, config: &ClientConfig) -> Result<Self, ClientError> {
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
        Ok(Self {
            name: name.into(),
            channel: endpoint.connect_lazy(),
            endpoint: config.endpoint.clone(),
            final_timeout: config.final_timeout,
        })
    }
}

/// tonic's TLS settings: the custom CA alone when set (else the bundled roots), and the
/// client certificate when set. The files are checked by loading them.
pub fn tonic_tls(settings: &TlsSettings) -> Result<ClientTlsConfig, TlsError> {
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

impl Engine for AsrV1Engine {
    fn name(&self) -> &str {
        &self.name
    }

    fn run_stream(
        &self,
        options: StreamOptions,
        input: mpsc::Receiver<StreamInput>,
        results: mpsc::Sender<EngineResult>,
    ) -> StreamRun {
        let channel = self.channel.clone();
        let endpoint = self.endpoint.clone();
        let deadline = self.final_timeout;
        Box::pin(async move {
            let requests = tokio_stream::once(config_request(&options))
                .chain(ReceiverStream::new(input).map(request));
            let mut client = RecognizerClient::new(channel);
            let status = |s: &tonic::Status| grpc_status::failure(s, &endpoint, deadline);
            let mut responses = client
                .streaming_recognize(requests)
                .await
                .map_err(|s| status(&s))?
                .into_inner();
            loop {
                match responses.message().await {
                    Ok(Some(response)) => {
                        let result = engine_result(response)?;
                        if results.send(result).await.is_err() {
                            return Ok(());
                        }
                    }
                    Ok(None) => return Ok(()),
                    Err(s) => return Err(status(&s)),
                }
            }
        })
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

fn request(input: StreamInput) -> RecognizeRequest {
    let message = match input {
        StreamInput::Audio { offset_ms, samples } => {
            // LINEAR16 on the wire is little-endian.
            let mut audio = Vec::with_capacity(samples.len() * 2);
            for s in &samples {
                audio.extend_from_slice(&s.to_le_bytes());
            }
            Msg::Audio(AudioChunk { audio, offset_ms })
        }
        StreamInput::EndOfSpeech {
            utterance,
            offset_ms,
        } => Msg::EndOfSpeech(EndOfSpeech {
            utterance_id: utterance,
            offset_ms,
        }),
    };
    RecognizeRequest {
        request: Some(message),
    }
}

/// Map one response; a final without alternatives is an empty transcript.
fn engine_result(r: RecognizeResponse) -> Result<EngineResult, AsrFailure> {
    let best = match r.alternatives.into_iter().next() {
        Some(best) => best,
        None if r.is_final => Default::default(),
        None => {
            return Err(AsrFailure::InvalidResponse {
                detail: "interim result without alternatives".into(),
            })
        }
    };
    let result = EngineResult {
        utterance: r.utterance_id,
        is_final: r.is_final,
        text: best.transcript,
        confidence: best.confidence,
        words: best
            .words
            .into_iter()
            .map(|w| Word {
                word: w.word,
                start_ms: w.start_ms,
                end_ms: w.end_ms,
                confidence: w.confidence,
            })
            .collect(),
        start_ms: r.start_ms,
        end_ms: r.end_ms,
    };
    check_result(&result)?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asr::engine::limits::{MAX_TRANSCRIPT_BYTES, MAX_WORD_BYTES};
    use crate::asr::proto;

    fn response(is_final: bool, alternatives: Vec<proto::Hypothesis>) -> RecognizeResponse {
        RecognizeResponse {
            alternatives,
            is_final,
            end_of_utterance: is_final,
            start_ms: 10,
            end_ms: 20,
            utterance_id: 3,
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
        let huge = "word ".repeat(MAX_TRANSCRIPT_BYTES / 5 + 1);
        let e = engine_result(response(true, vec![alt(&huge, 0.5)])).unwrap_err();
        assert_eq!(e.code(), "asr_invalid_response");
        assert!(e.to_string().len() < 200, "{e}");
        let mut long_word = alt("x", 0.5);
        long_word.words = vec![proto::WordInfo {
            word: "x".repeat(MAX_WORD_BYTES + 1),
            ..Default::default()
        }];
        let e = engine_result(response(true, vec![long_word])).unwrap_err();
        assert!(e.to_string().len() < 200, "{e}");
    }

    #[test]
    fn results_keep_the_engines_utterance_and_empty_finals() {
        let r = engine_result(response(false, vec![alt("hi", 0.5)])).unwrap();
        assert_eq!((r.utterance, r.is_final, r.text.as_str()), (3, false, "hi"));
        let r = engine_result(response(true, vec![])).unwrap();
        assert_eq!((r.is_final, r.text.as_str()), (true, ""));
    }

    #[test]
    fn malformed_responses() {
        let bad = [
            response(false, vec![]),
            response(true, vec![alt("x", 1.5)]),
            response(true, vec![alt("x", f32::NAN)]),
            RecognizeResponse {
                start_ms: 30,
                ..response(true, vec![alt("x", 0.1)])
            },
        ];
        for r in bad {
            let e = engine_result(r).unwrap_err();
            assert_eq!(e.code(), "asr_invalid_response", "{e}");
        }
    }

    #[test]
    fn audio_is_little_endian_and_markers_keep_their_ids() {
        let r = request(StreamInput::Audio {
            offset_ms: 40,
            samples: vec![1, -2],
        });
        let Some(Msg::Audio(chunk)) = r.request else {
            panic!("{r:?}")
        };
        assert_eq!((chunk.audio, chunk.offset_ms), (vec![1, 0, 0xfe, 0xff], 40));
        let r = request(StreamInput::EndOfSpeech {
            utterance: 2,
            offset_ms: 900,
        });
        let Some(Msg::EndOfSpeech(m)) = r.request else {
            panic!("{r:?}")
        };
        assert_eq!((m.utterance_id, m.offset_ms), (2, 900));
    }

    #[tokio::test]
    async fn endpoints_are_checked() {
        let cfg = |e: &str| ClientConfig {
            endpoint: e.into(),
            tls: TlsSettings::default(),
            connect_timeout: Duration::from_secs(1),
            final_timeout: Duration::from_secs(1),
        };
        assert!(AsrV1Engine::new("a", &cfg("127.0.0.1:50051")).is_err());
        assert!(AsrV1Engine::new("a", &cfg("https://engine:443")).is_ok());
        assert!(AsrV1Engine::new("a", &cfg("grpc://engine:443")).is_err());
        assert!(AsrV1Engine::new("a", &cfg("http://engine:50051")).is_ok());
    }
}
