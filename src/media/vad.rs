//! Voice activity: webrtc-vad per frame and a `Segmenter` that finds utterances.

/// All durations in milliseconds. Defaults: pre-roll 300, hangover 600, min speech 100, max 30 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VadConfig {
    /// webrtc-vad aggressiveness, 0 (least) to 3 (most aggressive at calling audio non-speech).
    pub aggressiveness: u8,
    pub preroll_ms: u32,
    pub hangover_ms: u32,
    pub min_speech_ms: u32,
    pub max_utterance_ms: u32,
    /// 10, 20 or 30.
    pub frame_ms: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            aggressiveness: 2,
            preroll_ms: 300,
            hangover_ms: 600,
            min_speech_ms: 100,
            max_utterance_ms: 30_000,
            frame_ms: 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VadError {
    #[error("VAD runs at 8000, 16000, 32000 or 48000 Hz, not {0}")]
    UnsupportedRate(u32),
    #[error("VAD frames are 10, 20 or 30 ms, not {0}")]
    UnsupportedFrame(u32),
    #[error("VAD aggressiveness is 0 to 3, not {0}")]
    UnsupportedAggressiveness(u8),
    #[error("frame of {got} samples, expected {expected}")]
    FrameLength { got: usize, expected: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Silence,
    MaxLength,
}

/// What one frame meant. Sample positions count from the first sample ever pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameVerdict {
    /// Outside an utterance; the frame went into the pre-roll ring.
    Idle,
    /// Maybe speech, not yet `min_speech_ms`; held.
    Pending,
    /// Speech confirmed. `start_sample` includes pre-roll. Drain held audio (pre-roll + pending + this frame) with `drain_held`.
    Started { start_sample: u64 },
    /// Inside an utterance: forward this frame.
    InSpeech,
    /// This frame is the last of the utterance: forward it, then end it. `end_sample` is exclusive.
    Ended { end_sample: u64, reason: EndReason },
}

pub struct Segmenter {}

impl Segmenter {
    pub fn new(config: VadConfig, sample_rate: u32) -> Result<Self, VadError> {
        let _ = (config, sample_rate);
        todo!()
    }
    /// Samples per frame at this rate.
    pub fn frame_len(&self) -> usize {
        todo!()
    }
    pub fn push_frame(&mut self, frame: &[i16]) -> Result<FrameVerdict, VadError> {
        let _ = frame;
        todo!()
    }
    /// Append the held pre-roll and pending frames to `out`, oldest first, and clear them.
    pub fn drain_held(&mut self, out: &mut Vec<i16>) {
        let _ = out;
        todo!()
    }
    /// The sender paused for `samples` (talkspurt gap): silence passed without frames.
    /// Returns `Some(Ended)` if that closes the current utterance.
    pub fn skip(&mut self, samples: u64) -> Option<FrameVerdict> {
        let _ = samples;
        todo!()
    }
    /// End any open utterance now (session end). Returns its end if one was open.
    pub fn finish(&mut self) -> Option<u64> {
        todo!()
    }
    pub fn in_speech(&self) -> bool {
        todo!()
    }
}
