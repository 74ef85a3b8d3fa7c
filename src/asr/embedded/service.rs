//! `asr.v1.Recognizer` on top of the decoder pool: one task per stream buffers 16 kHz audio,
//! decodes each utterance when it ends, and answers finals in order (interims best-effort).
//!
//! Per stream: config first (LINEAR16 at 16 kHz only); an utterance ends at each
//! `end_of_speech` and at the end of the request stream; after the last final the response
//! stream closes with OK. A final that finds the pool full ends the stream with
//! RESOURCE_EXHAUSTED. Confidence is always 0 (Whisper via ct2rs gives none) and no words
//! are returned. Hints are accepted and ignored.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::pool::{Pool, PoolError, Reply};
use super::SAMPLE_RATE_HZ;
use crate::asr::proto::recognize_request::Request as Msg;
use crate::asr::proto::recognizer_server::Recognizer;
use crate::asr::proto::{
    AudioEncoding, Hypothesis, RecognizeRequest, RecognizeResponse, StreamConfig,
};

/// Below this many samples (0.1 s at 16 kHz) an utterance is answered empty without decoding.
const MIN_DECODE_SAMPLES: usize = SAMPLE_RATE_HZ as usize / 10;
/// Audio whose loudest 20 ms window is quieter than this RMS (about -50 dBFS) is answered
/// empty without decoding: Whisper invents words ("Thank you", "Visiting") on silence.
const SILENCE_RMS: f32 = 0.003;
/// Window for the loudness check, samples (20 ms at 16 kHz).
const LOUDNESS_WINDOW: usize = SAMPLE_RATE_HZ as usize / 50;
/// Longest utterance accepted, samples (60 s at 16 kHz); bounds per-stream memory (~3.8 MB).
const MAX_UTTERANCE_SAMPLES: usize = SAMPLE_RATE_HZ as usize * 60;
/// Responses waiting for the transport, per stream.
const RESPONSE_BUFFER: usize = 8;

pub struct RecognizerService {
    pool: Pool,
    interim_interval: Option<Duration>,
}

impl RecognizerService {
    pub fn new(pool: Pool, interim_interval: Option<Duration>) -> Self {
        RecognizerService {
            pool,
            interim_interval,
        }
    }
}

type ResponseTx = mpsc::Sender<Result<RecognizeResponse, Status>>;

#[tonic::async_trait]
impl Recognizer for RecognizerService {
    type StreamingRecognizeStream = ReceiverStream<Result<RecognizeResponse, Status>>;

    async fn streaming_recognize(
        &self,
        request: Request<Streaming<RecognizeRequest>>,
    ) -> Result<Response<Self::StreamingRecognizeStream>, Status> {
        let (tx, rx) = mpsc::channel(RESPONSE_BUFFER);
        let (pool, every) = (self.pool.clone(), self.interim_interval);
        let requests = request.into_inner();
        tokio::spawn(async move {
            if let Err(status) = run(pool, every, requests, &tx).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Audio of the utterance in progress. Times are media ms from the client's offsets.
#[derive(Default)]
struct Utterance {
    /// 16 kHz mono in [-1, 1].
    samples: Vec<f32>,
    /// Offset of its first chunk, ms.
    start_ms: Option<u64>,
}

impl Utterance {
    fn span_ms(&self) -> (u64, u64) {
        let start = self.start_ms.unwrap_or(0);
        let len_ms = self.samples.len() as u64 * 1000 / u64::from(SAMPLE_RATE_HZ);
        (start, start + len_ms)
    }
}

/// A final in the making; answered strictly in submission order.
struct PendingFinal {
    reply: Reply,
    start_ms: u64,
    end_ms: u64,
    utterance_id: u32,
}

/// An interim decode of the utterance in progress, as it was at `end_ms`.
struct PendingInterim {
    reply: Reply,
    start_ms: u64,
    end_ms: u64,
}

/// Serve one stream. `Err` is the status that ends it; `Ok` closes it normally (or the client left).
async fn run(
    pool: Pool,
    interim_every: Option<Duration>,
    mut requests: Streaming<RecognizeRequest>,
    tx: &ResponseTx,
) -> Result<(), Status> {
    let config = match requests.message().await {
        Ok(Some(RecognizeRequest {
            request: Some(Msg::Config(c)),
        })) => c,
        Ok(Some(_)) => {
            return Err(Status::invalid_argument(
                "the first message of a stream must be its config (StreamConfig)",
            ))
        }
        Ok(None) => {
            return Err(Status::invalid_argument(
                "the stream ended before its config (StreamConfig)",
            ))
        }
        Err(_) => return Ok(()),
    };
    let language = accept_config(&config, pool.is_multilingual())?;
    let mut ticker = match interim_every.filter(|_| config.interim_results) {
        Some(every) => {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            Some(t)
        }
        None => None,
    };

    let mut current = Utterance::default();
    let mut finals: VecDeque<PendingFinal> = VecDeque::new();
    let mut interim: Option<PendingInterim> = None;
    let mut interim_len = 0usize;
    let mut input_done = false;
    // The last end_of_speech utterance id seen (0 = none or unnumbered).
    let mut last_marker: Option<u32> = None;

    loop {
        if input_done && finals.is_empty() {
            return Ok(());
        }
        tokio::select! {
            biased;
            done = next_final(&mut finals) => {
                let pending = finals.pop_front().expect("next_final only resolves when non-empty");
                let text = match done {
                    Ok(Ok(raw)) => clean_transcript(&raw),
                    Ok(Err(e)) => return Err(Status::internal(e.to_string())),
                    Err(_) => return Err(Status::internal("a decoder worker stopped")),
                };
                let response = final_response(text, &pending);
                if tx.send(Ok(response)).await.is_err() {
                    return Ok(());
                }
            }
            done = next_interim(&mut interim) => {
                let pending = interim.take().expect("next_interim only resolves when set");
                // Interims are best-effort: decoder errors are skipped.
                let Ok(Ok(raw)) = done else { continue };
                let text = clean_transcript(&raw);
                if text.is_empty() {
                    continue;
                }
                let response = RecognizeResponse {
                    alternatives: vec![Hypothesis { transcript: text, confidence: 0.0, words: vec![] }],
                    is_final: false,
                    end_of_utterance: false,
                    start_ms: pending.start_ms,
                    end_ms: pending.end_ms,
                    utterance_id: last_marker.map_or(0, |m| if m == 0 { 0 } else { m + 1 }),
                };
                if tx.send(Ok(response)).await.is_err() {
                    return Ok(());
                }
            }
            _ = tick(&mut ticker), if !input_done => {
                // Only when earlier finals are out, so results stay in order.
                let grown = current.samples.len() != interim_len;
                if finals.is_empty() && interim.is_none() && grown
                    && worth_decoding(&current.samples)
                {
                    if let Some(reply) = pool.try_submit_interim(current.samples.clone(), language.clone()) {
                        let (start_ms, end_ms) = current.span_ms();
                        interim_len = current.samples.len();
                        interim = Some(PendingInterim { reply, start_ms, end_ms });
                    }
                }
            }
            msg = requests.message(), if !input_done => {
                let request = match msg {
                    Ok(Some(r)) => r.request,
                    Ok(None) => {
                        input_done = true;
                        // A trailing utterance, or the only one of a stream without markers.
                        if last_marker.is_none() || !current.samples.is_empty() {
                            let utt = std::mem::take(&mut current);
                            finals.push_back(finalize(&pool, utt, 0, &language)?);
                        }
                        interim = None;
                        continue;
                    }
                    // The client reset or cancelled the stream: nobody is listening.
                    Err(_) => return Ok(()),
                };
                match request {
                    Some(Msg::Audio(chunk)) => {
                        append_audio(&mut current, &chunk.audio, chunk.offset_ms)?;
                    }
                    Some(Msg::EndOfSpeech(marker)) => {
                        let utt = std::mem::take(&mut current);
                        finals.push_back(finalize(&pool, utt, marker.utterance_id, &language)?);
                        last_marker = Some(marker.utterance_id);
                        interim = None;
                        interim_len = 0;
                    }
                    Some(Msg::Config(_)) => {
                        return Err(Status::invalid_argument(
                            "config may only be sent once, as the first message of a stream",
                        ))
                    }
                    None => return Err(Status::invalid_argument("empty request: no config, audio or end_of_speech")),
                }
            }
        }
    }
}

/// Check the config; returns the language to decode with (`None` = detect).
fn accept_config(config: &StreamConfig, multilingual: bool) -> Result<Option<String>, Status> {
    let encoding = AudioEncoding::try_from(config.encoding);
    if encoding != Ok(AudioEncoding::Linear16) || config.sample_rate_hz != SAMPLE_RATE_HZ {
        let name = encoding.map_or("an unknown encoding", |e| e.as_str_name());
        return Err(Status::invalid_argument(format!(
            "unsupported audio: {name} at {} Hz; this engine accepts only AUDIO_ENCODING_LINEAR16 \
             (16-bit little-endian mono PCM) at {SAMPLE_RATE_HZ} Hz",
            config.sample_rate_hz
        )));
    }
    let tag = config.language.trim();
    let primary = tag
        .split(['-', '_'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if primary.is_empty() {
        return Ok(if multilingual {
            None
        } else {
            Some("en".into())
        });
    }
    if !(2..=3).contains(&primary.len()) || !primary.chars().all(|c| c.is_ascii_lowercase()) {
        return Err(Status::invalid_argument(format!(
            "language {tag:?} is not a BCP-47 tag such as \"en-US\""
        )));
    }
    if !multilingual && primary != "en" {
        return Err(Status::invalid_argument(format!(
            "this engine's model is English-only; language {tag:?} is not supported \
             (send \"en\", \"en-US\" or leave it empty)"
        )));
    }
    Ok(Some(primary))
}

/// Append LINEAR16 (little-endian) bytes as f32 samples.
fn append_audio(utt: &mut Utterance, bytes: &[u8], offset_ms: u64) -> Result<(), Status> {
    if !bytes.len().is_multiple_of(2) {
        return Err(Status::invalid_argument(format!(
            "audio chunk of {} bytes: LINEAR16 needs an even number of bytes",
            bytes.len()
        )));
    }
    if utt.samples.len() + bytes.len() / 2 > MAX_UTTERANCE_SAMPLES {
        return Err(Status::invalid_argument(format!(
            "utterance longer than {} s; send end_of_speech markers between utterances",
            MAX_UTTERANCE_SAMPLES / SAMPLE_RATE_HZ as usize
        )));
    }
    if utt.start_ms.is_none() && !bytes.is_empty() {
        utt.start_ms = Some(offset_ms);
    }
    utt.samples.extend(
        bytes
            .chunks_exact(2)
            .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0),
    );
    Ok(())
}

/// Whether `samples` hold anything Whisper should look at: long enough and not silent.
fn worth_decoding(samples: &[f32]) -> bool {
    samples.len() >= MIN_DECODE_SAMPLES
        && samples.chunks(LOUDNESS_WINDOW).any(|w| {
            let energy: f32 = w.iter().map(|s| s * s).sum();
            (energy / w.len() as f32).sqrt() >= SILENCE_RMS
        })
}

/// Queue the final decode of `utt`; very short or silent audio gets an empty answer without decoding.
fn finalize(
    pool: &Pool,
    utt: Utterance,
    utterance_id: u32,
    language: &Option<String>,
) -> Result<PendingFinal, Status> {
    let (start_ms, end_ms) = utt.span_ms();
    let reply = if !worth_decoding(&utt.samples) {
        let (done, reply) = oneshot::channel();
        let _ = done.send(Ok(String::new()));
        reply
    } else {
        pool.submit_final(utt.samples, language.clone())
            .map_err(|e| match e {
                PoolError::Busy { .. } => Status::resource_exhausted(e.to_string()),
                PoolError::Stopped => Status::unavailable(e.to_string()),
            })?
    };
    Ok(PendingFinal {
        reply,
        start_ms,
        end_ms,
        utterance_id,
    })
}

fn final_response(text: String, p: &PendingFinal) -> RecognizeResponse {
    RecognizeResponse {
        alternatives: vec![Hypothesis {
            transcript: text,
            confidence: 0.0,
            words: vec![],
        }],
        is_final: true,
        end_of_utterance: true,
        start_ms: p.start_ms,
        end_ms: p.end_ms,
        utterance_id: p.utterance_id,
    }
}

type Decoded = Result<Result<String, super::DecodeError>, oneshot::error::RecvError>;

/// The oldest pending final's outcome; never resolves while there is none.
async fn next_final(finals: &mut VecDeque<PendingFinal>) -> Decoded {
    match finals.front_mut() {
        Some(p) => (&mut p.reply).await,
        None => std::future::pending().await,
    }
}

async fn next_interim(interim: &mut Option<PendingInterim>) -> Decoded {
    match interim {
        Some(p) => (&mut p.reply).await,
        None => std::future::pending().await,
    }
}

async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Whisper's text without sound-event markers ("[BLANK_AUDIO]", "(silence)", "♪"), trimmed,
/// with runs of whitespace collapsed; empty when nothing alphanumeric is left.
pub(crate) fn clean_transcript(raw: &str) -> String {
    let (mut square, mut round) = (0u32, 0u32);
    let mut kept = String::with_capacity(raw.len());
    for ch in raw.chars() {
        match ch {
            '[' => square += 1,
            ']' if square > 0 => square -= 1,
            '(' => round += 1,
            ')' if round > 0 => round -= 1,
            '♪' => {}
            _ if square == 0 && round == 0 => kept.push(ch),
            _ => {}
        }
    }
    let text = kept.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().any(char::is_alphanumeric) {
        text
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_dropped() {
        assert_eq!(clean_transcript(" [BLANK_AUDIO]"), "");
        assert_eq!(clean_transcript("(silence) "), "");
        assert_eq!(clean_transcript(" ♪ ♪ "), "");
        assert_eq!(clean_transcript(" - ."), "");
        assert_eq!(
            clean_transcript("  Yes, I am  [laughs] interested. "),
            "Yes, I am interested."
        );
    }

    fn config(encoding: AudioEncoding, rate: u32, language: &str) -> StreamConfig {
        StreamConfig {
            encoding: encoding as i32,
            sample_rate_hz: rate,
            language: language.into(),
            ..Default::default()
        }
    }

    #[test]
    fn only_linear16_at_16k() {
        let ok = accept_config(&config(AudioEncoding::Linear16, 16_000, "en-US"), false);
        assert_eq!(ok.unwrap(), Some("en".to_string()));
        let e = accept_config(&config(AudioEncoding::Mulaw, 8_000, ""), false).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("AUDIO_ENCODING_MULAW at 8000 Hz"));
        assert!(e.message().contains("LINEAR16"));
        let e = accept_config(&config(AudioEncoding::Linear16, 8_000, ""), false).unwrap_err();
        assert!(e.message().contains("16000 Hz"));
    }

    #[test]
    fn languages() {
        let c = |l| config(AudioEncoding::Linear16, 16_000, l);
        assert_eq!(accept_config(&c(""), true).unwrap(), None);
        assert_eq!(accept_config(&c(""), false).unwrap(), Some("en".into()));
        assert_eq!(accept_config(&c("de-DE"), true).unwrap(), Some("de".into()));
        let e = accept_config(&c("de-DE"), false).unwrap_err();
        assert!(e.message().contains("English-only"));
        assert!(accept_config(&c("english"), true).is_err());
    }

    #[test]
    fn audio_is_le_pcm_and_bounded() {
        let mut u = Utterance::default();
        append_audio(&mut u, &[0x00, 0x80, 0xff, 0x7f], 40).unwrap();
        assert_eq!(u.samples, vec![-1.0, 32767.0 / 32768.0]);
        assert_eq!(u.start_ms, Some(40));
        assert!(append_audio(&mut u, &[1, 2, 3], 0).is_err());
        let big = vec![0u8; MAX_UTTERANCE_SAMPLES * 2];
        assert!(append_audio(&mut u, &big, 0).is_err());
        u.samples = vec![0.0; 16_000];
        assert_eq!(u.span_ms(), (40, 1040));
    }

    #[test]
    fn silence_is_not_worth_decoding() {
        assert!(!worth_decoding(&[0.0; 16000]));
        assert!(!worth_decoding(&[0.001; 16000]));
        assert!(!worth_decoding(&[0.5; 800]), "shorter than 0.1 s");
        let mut word_in_silence = vec![0.0f32; 32000];
        for (i, s) in word_in_silence[16000..16320].iter_mut().enumerate() {
            *s = if i % 2 == 0 { 0.1 } else { -0.1 };
        }
        assert!(worth_decoding(&word_in_silence));
    }
}
