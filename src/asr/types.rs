//! Messages between a media session and its recognition stream, independent of any wire protocol.

use std::time::Duration;

/// Numbers the utterances of one session from 1. Call mode streams the whole call as utterance 0.
pub type UtteranceId = u32;

/// What the engine is asked to do for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOptions {
    pub session_id: String,
    pub call_id: String,
    /// Rate of the PCM the session sends, Hz.
    pub sample_rate: u32,
    /// BCP-47 tag; empty lets the engine choose.
    pub language: String,
    pub interim_results: bool,
    pub hints: Vec<String>,
    /// The engine profile the streams go to (`asr.profiles`); empty = the default profile.
    pub engine_profile: String,
}

/// Stream lifecycle, from session to client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsrControl {
    /// Open a stream. Utterance mode: one per utterance. Call mode: one per call (utterance 0).
    Begin { stream: UtteranceId, offset_ms: u64 },
    /// Call mode: VAD saw `utterance` end inside the open stream.
    EndOfSpeech {
        stream: UtteranceId,
        utterance: UtteranceId,
        offset_ms: u64,
    },
    /// Close the request side; the engine sends its last results and closes.
    End { stream: UtteranceId },
    /// Options changed (an `update` command): streams begun from now on use these.
    Configure(StreamOptions),
}

/// Linear PCM (mono, `StreamOptions::sample_rate`) for an open stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsrAudio {
    pub stream: UtteranceId,
    pub offset_ms: u64,
    pub samples: Vec<i16>,
}

/// One message from session to client, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsrRequest {
    Control(AsrControl),
    Audio(AsrAudio),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub word: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub confidence: f32,
}

/// A recognition hypothesis for one utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    pub stream: UtteranceId,
    /// The utterance it belongs to: the stream itself in utterance mode; in call mode the
    /// engine's `utterance_id`, or the client's count of finals when the engine gives none.
    pub utterance: UtteranceId,
    pub is_final: bool,
    pub text: String,
    pub confidence: f32,
    pub words: Vec<Word>,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// Why a recognition stream failed. The session survives every one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsrFailure {
    #[error("engine busy: {detail}")]
    Busy { detail: String },
    #[error("engine unreachable at {endpoint}: {detail}")]
    Unavailable { endpoint: String, detail: String },
    #[error("engine gave no result within {after:?}")]
    Timeout { after: Duration },
    #[error("engine stream failed ({code}): {detail}")]
    StreamFailed { code: String, detail: String },
    #[error("engine sent an invalid response: {detail}")]
    InvalidResponse { detail: String },
    #[error("audio for stream {stream} dropped: the engine is not keeping up")]
    Backpressure { stream: UtteranceId },
}

impl AsrFailure {
    /// Stable code for `asr.error` events and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            AsrFailure::Busy { .. } => "asr_busy",
            AsrFailure::Unavailable { .. } => "asr_unavailable",
            AsrFailure::Timeout { .. } => "asr_timeout",
            AsrFailure::StreamFailed { .. } => "asr_stream_failed",
            AsrFailure::InvalidResponse { .. } => "asr_invalid_response",
            AsrFailure::Backpressure { .. } => "asr_backpressure",
        }
    }
}

/// From client to session.
#[derive(Debug, Clone, PartialEq)]
pub enum AsrUpdate {
    Result(Hypothesis),
    /// The stream ended early; no more results will come for it.
    Failed {
        stream: UtteranceId,
        failure: AsrFailure,
    },
    /// The engine closed the stream normally after its last result.
    Closed {
        stream: UtteranceId,
    },
    /// The stream's engine failed and the stream moved to the next engine of its profile,
    /// which was sent the stream's audio since the last final (`replayed_ms` of it).
    EngineSwitched {
        stream: UtteranceId,
        from: String,
        to: String,
        failure: AsrFailure,
        replayed_ms: u64,
    },
}
