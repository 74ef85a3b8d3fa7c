//! The engine layer's edge: the one trait every wire protocol implements, and what flows through a stream.
//!
//! An `Engine` runs one recognition stream at a time per call of `run_stream`: it reads
//! `StreamInput`s (16-bit PCM at `StreamOptions::sample_rate`, and call mode's
//! end-of-speech markers) until the channel closes, and sends every result it gets to
//! `results`. It returns `Ok(())` once the engine has closed the stream after its last
//! result, or an `AsrFailure` saying why the stream broke. Everything around it (one task
//! per stream, backpressure, the final timeout, utterance numbering, failover with replay)
//! is the driver's job (`client.rs`), so a wire protocol is one small file in `wire/`.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::mpsc;

use crate::asr::types::{AsrFailure, StreamOptions, UtteranceId, Word};

/// What the driver sends into one engine stream, in media order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamInput {
    /// PCM at the stream's rate; `offset_ms` is the media time of the first sample.
    Audio { offset_ms: u64, samples: Vec<i16> },
    /// Call mode: the session's VAD saw `utterance` end here.
    EndOfSpeech {
        utterance: UtteranceId,
        offset_ms: u64,
    },
}

/// One result as the engine gave it, already checked against the bounds in `limits`.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineResult {
    /// The engine's own utterance id, 0 when it gives none (the driver then counts finals).
    pub utterance: UtteranceId,
    pub is_final: bool,
    pub text: String,
    pub confidence: f32,
    pub words: Vec<Word>,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// What `run_stream` returns: finished when the engine closed the stream.
pub type StreamRun = Pin<Box<dyn Future<Output = Result<(), AsrFailure>> + Send>>;

/// A speech recognizer reachable over one wire protocol.
pub trait Engine: Send + Sync {
    /// How operators know it: the profile entry's name, in logs, events and metrics.
    fn name(&self) -> &str;

    /// Run one stream. Must not block; all waiting happens in the returned future. When
    /// `results` is closed nobody wants the results any more: return `Ok(())`.
    fn run_stream(
        &self,
        options: StreamOptions,
        input: mpsc::Receiver<StreamInput>,
        results: mpsc::Sender<EngineResult>,
    ) -> StreamRun;
}

/// Bounds every engine's results are checked against before they reach a session.
pub mod limits {
    /// Most bytes of one transcript (about 30 s of speech is 3 KB).
    pub const MAX_TRANSCRIPT_BYTES: usize = 16 * 1024;
    /// Most word timings in one result, and bytes of one word.
    pub const MAX_WORDS: usize = 4096;
    pub const MAX_WORD_BYTES: usize = 256;
    /// Most bytes of an engine's error text copied into `asr.error`.
    pub const MAX_DETAIL_BYTES: usize = 512;
}

/// Check one result against `limits` and the sanity rules every protocol shares
/// (confidences in 0..1, nothing ending before it starts). A failing result means the
/// engine is broken or hostile: the stream fails with `InvalidResponse`.
pub fn check_result(r: &EngineResult) -> Result<(), AsrFailure> {
    use limits::*;
    let invalid = |detail: String| Err(AsrFailure::InvalidResponse { detail });
    if !(0.0..=1.0).contains(&r.confidence) {
        return invalid(format!("confidence {} outside 0..1", r.confidence));
    }
    if r.end_ms < r.start_ms {
        return invalid(format!(
            "result ends ({} ms) before it starts ({} ms)",
            r.end_ms, r.start_ms
        ));
    }
    if r.text.len() > MAX_TRANSCRIPT_BYTES || r.words.len() > MAX_WORDS {
        return invalid(format!(
            "result of {} bytes and {} words, over {MAX_TRANSCRIPT_BYTES} bytes or {MAX_WORDS} words",
            r.text.len(),
            r.words.len()
        ));
    }
    for w in &r.words {
        if w.word.len() > MAX_WORD_BYTES {
            return invalid(format!(
                "word of {} bytes, over {MAX_WORD_BYTES}",
                w.word.len()
            ));
        }
        if w.end_ms < w.start_ms || !(0.0..=1.0).contains(&w.confidence) {
            return invalid(format!(
                "word {:?} has times {}..{} ms, confidence {}",
                w.word, w.start_ms, w.end_ms, w.confidence
            ));
        }
    }
    Ok(())
}
