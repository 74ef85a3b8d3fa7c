//! Voice activity: webrtc-vad per frame and a `Segmenter` that finds utterances.
//!
//! Sans-IO: frames of 16-bit mono PCM go in, one `FrameVerdict` per frame comes
//! out. Sample positions are `u64` counted from the first sample ever pushed
//! (pushed frames and `skip`ped gaps both advance the clock).

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
    #[error("VAD {setting} of {value} ms is out of range (at most {max} ms)")]
    OutOfRange {
        setting: &'static str,
        value: u32,
        max: u32,
    },
}

/// Upper bounds of the millisecond settings. They bound the pre-roll ring's size, so
/// untrusted values (a command's `vad` options) can never ask for a huge allocation.
pub const MAX_PREROLL_MS: u32 = 5_000;
pub const MAX_MIN_SPEECH_MS: u32 = 5_000;
pub const MAX_HANGOVER_MS: u32 = 60_000;
pub const MAX_UTTERANCE_MS: u32 = 600_000;

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

/// One webrtc-vad (libfvad) instance with a fixed rate and frame length.
pub struct WebRtcVad {
    inner: webrtc_vad::Vad,
    sample_rate: u32,
    /// Samples per frame at `sample_rate`.
    frame_len: usize,
}

// SAFETY: `webrtc_vad::Vad` is !Send only because it holds a raw `*mut Fvad`.
// That pointer is a private heap allocation made by `fvad_new` and owned solely
// by this value (freed once, in its Drop); it is never shared or aliased. The
// C state is plain data (filter and GMM state); libfvad keeps no thread-local
// or global mutable state (only `static const` tables). All calls go through
// `&mut self`, so the instance is used from one thread at a time, and moving it
// to another thread (a tokio task migrating between workers) is sound. It is
// deliberately not `Sync`.
unsafe impl Send for WebRtcVad {}

impl WebRtcVad {
    /// `aggressiveness` 0..=3, `sample_rate` 8000/16000/32000/48000 Hz, `frame_ms` 10/20/30.
    pub fn new(aggressiveness: u8, sample_rate: u32, frame_ms: u32) -> Result<Self, VadError> {
        use webrtc_vad::{SampleRate, VadMode};
        let mode = match aggressiveness {
            0 => VadMode::Quality,
            1 => VadMode::LowBitrate,
            2 => VadMode::Aggressive,
            3 => VadMode::VeryAggressive,
            other => return Err(VadError::UnsupportedAggressiveness(other)),
        };
        let rate = match sample_rate {
            8000 => SampleRate::Rate8kHz,
            16000 => SampleRate::Rate16kHz,
            32000 => SampleRate::Rate32kHz,
            48000 => SampleRate::Rate48kHz,
            other => return Err(VadError::UnsupportedRate(other)),
        };
        if !matches!(frame_ms, 10 | 20 | 30) {
            return Err(VadError::UnsupportedFrame(frame_ms));
        }
        Ok(Self {
            inner: webrtc_vad::Vad::new_with_rate_and_mode(rate, mode),
            sample_rate,
            frame_len: (sample_rate / 1000 * frame_ms) as usize,
        })
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Samples per frame at this rate.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// True if webrtc-vad calls this frame speech. The frame must be exactly `frame_len` samples.
    pub fn is_speech(&mut self, frame: &[i16]) -> Result<bool, VadError> {
        let wrong = VadError::FrameLength {
            got: frame.len(),
            expected: self.frame_len,
        };
        // Checked here: the crate indexes `frame[0]` and would panic on an empty slice.
        if frame.len() != self.frame_len {
            return Err(wrong);
        }
        self.inner.is_voice_segment(frame).map_err(|()| wrong)
    }
}

/// Consecutive unvoiced frames tolerated inside Pending before it falls back to Idle.
/// A third unvoiced frame in a row abandons the candidate. Unvoiced frames do not
/// count towards `min_speech_ms`; only voiced ones do.
pub const PENDING_GAP_FRAMES: u32 = 2;

/// Frames webrtc-vad itself keeps saying "speech" after a short burst (libfvad's
/// `over_hang_max_1` table, by mode and frame length). A 2 ms click at mode 2 with
/// 20 ms frames comes back as 4 voiced frames (80 ms), so these frames are added to
/// the voiced count Pending needs: `min_speech_ms` then measures signal, not the
/// detector's own hold time.
pub fn webrtc_overhang_frames(aggressiveness: u8, frame_ms: u32) -> u32 {
    let quality = aggressiveness <= 1;
    match (quality, frame_ms) {
        (true, 10) => 8,
        (true, 20) => 4,
        (true, _) => 3,
        (false, 10) => 6,
        (false, 20) => 3,
        (false, _) => 2,
    }
}

/// Frames webrtc-vad keeps saying "speech" after a run of more than
/// `WEBRTC_LONG_RUN_FRAMES` voiced frames (libfvad's `over_hang_max_2` table).
pub fn webrtc_long_overhang_frames(aggressiveness: u8, frame_ms: u32) -> u32 {
    let quality = aggressiveness <= 1;
    match (quality, frame_ms) {
        (true, 10) => 14,
        (true, 20) => 7,
        (true, _) => 5,
        (false, 10) => 9,
        (false, 20) => 5,
        (false, _) => 3,
    }
}

/// A frame this quiet (RMS, 16-bit full scale = 32768: about -45 dBFS) is silence to the
/// ear even when webrtc-vad still holds it as speech.
pub const QUIET_RMS: f64 = 185.0;

fn is_quiet(frame: &[i16]) -> bool {
    let energy: f64 = frame.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    energy <= QUIET_RMS * QUIET_RMS * frame.len() as f64
}

/// A voiced run longer than this many frames gets the long overhang (libfvad's
/// `kMaxSpeechFrames`).
pub const WEBRTC_LONG_RUN_FRAMES: u32 = 6;

/// webrtc-vad's hold time in frames: how many of the `voiced_run` frames it called
/// speech just before its first "silence" were in fact silence already.
///
/// After a voiced run of `r` frames it holds `short` frames if `r` is at most
/// `WEBRTC_LONG_RUN_FRAMES`, else `long`. The detector's output run is at least
/// `r` plus the hold, so a run shorter than `WEBRTC_LONG_RUN_FRAMES + 1 + long`
/// must have ended on the short hold. A longer run is taken to end on the long
/// hold; that is wrong only when its last burst was short (a blip after a pause),
/// and then by `long - short` frames (2 at mode 2 with 20 ms frames).
fn webrtc_hold_frames(voiced_run: u32, short: u32, long: u32) -> u32 {
    let hold = if voiced_run > WEBRTC_LONG_RUN_FRAMES + long {
        long
    } else {
        short
    };
    // At least one frame of the run was real voice.
    hold.min(voiced_run.saturating_sub(1))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Pending {
        /// First sample of the first voiced frame.
        start: u64,
        /// Frames held since `start` (voiced and gap frames).
        frames: u32,
        voiced: u32,
        /// Unvoiced frames in a row at the tail.
        gap: u32,
    },
    InSpeech {
        start: u64,
        /// Silence (unvoiced frames and skipped samples) in a row, in samples.
        silent: u64,
    },
}

/// Finds utterances in a stream of fixed-size frames: pre-roll, min speech, hangover, max length.
///
/// Frames are `frame_len()` samples of 16-bit mono PCM at the rate given to `new`.
/// Durations in `VadConfig` are rounded up to whole frames (min speech, hangover
/// and max utterance at least one frame).
///
/// Rules:
/// - Idle → Pending on a voiced frame. Pending confirms (`Started`) once it holds
///   `min_speech` + `webrtc_overhang_frames` voiced frames; up to
///   `PENDING_GAP_FRAMES` unvoiced frames in a row may sit between them, one more
///   falls back to Idle (held frames stay as pre-roll).
/// - `start_sample` = first pending sample minus the pre-roll held (at most
///   `preroll_ms`, less after a start, an utterance end or a `skip`).
/// - In speech, `hangover_ms` of silence ends it (`Silence`) on the frame that
///   completes the hangover. webrtc-vad holds "speech" 2 to 9 frames itself after
///   voice stops (`webrtc_hold_frames`); those frames count as silence, so the
///   hangover is measured from the end of the voice, not from the detector's
///   first "silence".
/// - `max_utterance_ms` counts from `start_sample` (pre-roll included); reaching
///   it ends with `MaxLength` on that frame. If voice continues, the next voiced
///   frame opens Pending again, so no audio is lost between the two utterances.
pub struct Segmenter {
    vad: WebRtcVad,
    frame_len: usize,
    preroll_frames: u32,
    /// Voiced frames Pending needs: min speech plus webrtc-vad's own overhang.
    confirm_frames: u32,
    /// In samples, whole frames.
    hangover_samples: u64,
    /// webrtc-vad's hold after a short and after a long voiced run, in frames.
    hold_short_frames: u32,
    hold_long_frames: u32,
    /// Frames webrtc-vad called speech in a row, up to the last frame pushed.
    voiced_run: u32,
    /// Of those, the last ones in a row that were quiet (`QUIET_RMS`): the detector's
    /// hold over silence, if no louder frame follows.
    quiet_tail: u32,
    /// In samples, whole frames; measured from `start_sample` (pre-roll included).
    max_samples: u64,
    state: State,
    /// Samples pushed or skipped so far: the position of the next sample.
    clock: u64,
    /// Ring of whole frames: pre-roll then pending frames, oldest at `head`.
    /// Fixed capacity (`ring_frames * frame_len` samples) allocated once.
    /// Invariant: the `held` frames are contiguous in time and end at `clock`.
    ring: Vec<i16>,
    ring_frames: u32,
    head: u32,
    held: u32,
    /// Set by `Started`: `drain_held` hands the ring out only then.
    held_ready: bool,
}

fn frames_for(ms: u32, frame_ms: u32) -> u32 {
    ms.div_ceil(frame_ms)
}

impl Segmenter {
    pub fn new(config: VadConfig, sample_rate: u32) -> Result<Self, VadError> {
        for (setting, value, max) in [
            ("preroll_ms", config.preroll_ms, MAX_PREROLL_MS),
            ("min_speech_ms", config.min_speech_ms, MAX_MIN_SPEECH_MS),
            ("hangover_ms", config.hangover_ms, MAX_HANGOVER_MS),
            (
                "max_utterance_ms",
                config.max_utterance_ms,
                MAX_UTTERANCE_MS,
            ),
        ] {
            if value > max {
                return Err(VadError::OutOfRange {
                    setting,
                    value,
                    max,
                });
            }
        }
        let vad = WebRtcVad::new(config.aggressiveness, sample_rate, config.frame_ms)?;
        let frame_len = vad.frame_len();
        let fms = config.frame_ms;
        let preroll_frames = frames_for(config.preroll_ms, fms);
        let min_speech_frames = frames_for(config.min_speech_ms, fms).max(1);
        let confirm_frames = min_speech_frames + webrtc_overhang_frames(config.aggressiveness, fms);
        let hangover_frames = frames_for(config.hangover_ms, fms).max(1);
        let max_frames = frames_for(config.max_utterance_ms, fms).max(1);
        // Longest Pending: every voiced frame but the last followed by a full gap.
        let max_pending = confirm_frames + PENDING_GAP_FRAMES * (confirm_frames - 1);
        let ring_frames = preroll_frames + max_pending;
        Ok(Self {
            vad,
            frame_len,
            preroll_frames,
            confirm_frames,
            hangover_samples: u64::from(hangover_frames) * frame_len as u64,
            hold_short_frames: webrtc_overhang_frames(config.aggressiveness, fms),
            hold_long_frames: webrtc_long_overhang_frames(config.aggressiveness, fms),
            voiced_run: 0,
            quiet_tail: 0,
            max_samples: u64::from(max_frames) * frame_len as u64,
            state: State::Idle,
            clock: 0,
            ring: vec![0; ring_frames as usize * frame_len],
            ring_frames,
            head: 0,
            held: 0,
            held_ready: false,
        })
    }

    /// Samples per frame at this rate.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// Position of the next sample (samples pushed plus samples skipped).
    pub fn position(&self) -> u64 {
        self.clock
    }

    pub fn push_frame(&mut self, frame: &[i16]) -> Result<FrameVerdict, VadError> {
        let voiced = self.vad.is_speech(frame)?;
        // Frames of the detector's own hold, known once it first says "silence".
        let held_silence = if voiced {
            self.voiced_run += 1;
            self.quiet_tail = if is_quiet(frame) {
                self.quiet_tail + 1
            } else {
                0
            };
            0
        } else {
            self.quiet_tail = 0;
            let hold = webrtc_hold_frames(
                self.voiced_run,
                self.hold_short_frames,
                self.hold_long_frames,
            );
            self.voiced_run = 0;
            u64::from(hold) * self.frame_len as u64
        };
        let frame_start = self.clock;
        self.clock += self.frame_len as u64;
        let verdict = match self.state {
            State::Idle => {
                self.hold(frame);
                if voiced {
                    self.state = State::Pending {
                        start: frame_start,
                        frames: 1,
                        voiced: 1,
                        gap: 0,
                    };
                    self.check_confirmed()
                } else {
                    self.trim_to_preroll();
                    FrameVerdict::Idle
                }
            }
            State::Pending {
                start,
                frames,
                voiced: n,
                gap,
            } => {
                self.hold(frame);
                let (n, gap) = if voiced { (n + 1, 0) } else { (n, gap + 1) };
                if gap > PENDING_GAP_FRAMES {
                    // Not speech after all: the held frames become pre-roll again.
                    self.state = State::Idle;
                    self.trim_to_preroll();
                    FrameVerdict::Idle
                } else {
                    self.state = State::Pending {
                        start,
                        frames: frames + 1,
                        voiced: n,
                        gap,
                    };
                    self.check_confirmed()
                }
            }
            State::InSpeech { start, silent } => {
                let silent = if voiced {
                    0
                } else {
                    silent + held_silence + self.frame_len as u64
                };
                if silent >= self.hangover_samples {
                    self.end_utterance(self.clock, EndReason::Silence)
                } else if self.clock - start >= self.max_samples {
                    self.end_utterance(self.clock, EndReason::MaxLength)
                } else {
                    self.state = State::InSpeech { start, silent };
                    FrameVerdict::InSpeech
                }
            }
        };
        Ok(verdict)
    }

    /// Append the held pre-roll and pending frames to `out`, oldest first, and clear them.
    ///
    /// Only after `Started`; otherwise (the ring is still pre-roll) it appends nothing.
    /// Call it right after `Started`: held audio not drained is dropped when the utterance ends.
    pub fn drain_held(&mut self, out: &mut Vec<i16>) {
        if !self.held_ready {
            return;
        }
        out.reserve(self.held as usize * self.frame_len);
        for i in 0..self.held {
            let slot = ((self.head + i) % self.ring_frames) as usize * self.frame_len;
            out.extend_from_slice(&self.ring[slot..slot + self.frame_len]);
        }
        self.clear_ring();
    }

    /// The sender paused for `samples` (talkspurt gap): silence passed without frames.
    /// Returns `Some(Ended)` if that closes the current utterance.
    ///
    /// A non-empty gap clears the pre-roll (no longer contiguous) and abandons an
    /// unconfirmed Pending. In speech it counts towards the hangover; if that
    /// expires inside the gap, `end_sample` is where it expired (at most the new
    /// position). `skip(0)` does nothing.
    pub fn skip(&mut self, samples: u64) -> Option<FrameVerdict> {
        if samples == 0 {
            return None;
        }
        let gap_start = self.clock;
        self.clock += samples;
        match self.state {
            State::Idle | State::Pending { .. } => {
                self.state = State::Idle;
                self.clear_ring();
                None
            }
            State::InSpeech { start, silent } => {
                let silent_after = silent + samples;
                if silent_after >= self.hangover_samples {
                    let end = gap_start + (self.hangover_samples - silent);
                    Some(self.end_utterance(end, EndReason::Silence))
                } else {
                    self.state = State::InSpeech {
                        start,
                        silent: silent_after,
                    };
                    None
                }
            }
        }
    }

    /// End any open utterance now (session end). Returns its end if one was open.
    ///
    /// An unconfirmed Pending is dropped. The segmenter stays usable (Idle, clock kept).
    pub fn finish(&mut self) -> Option<u64> {
        let open = matches!(self.state, State::InSpeech { .. });
        self.state = State::Idle;
        self.clear_ring();
        open.then_some(self.clock)
    }

    /// In speech: how much more silence ends the utterance (the rest of the hangover),
    /// samples. `None` when no utterance is open.
    ///
    /// For input that stops (packets that stop coming), not for frames still to come:
    /// the quiet frames the detector is holding as speech at the tail are counted as
    /// silence already, as its first "silence" frame would have counted them.
    pub fn silence_to_end(&self) -> Option<u64> {
        match self.state {
            State::InSpeech { silent, .. } => {
                let hold = webrtc_hold_frames(
                    self.voiced_run,
                    self.hold_short_frames,
                    self.hold_long_frames,
                )
                .min(self.quiet_tail);
                let silent = silent + u64::from(hold) * self.frame_len as u64;
                Some(self.hangover_samples.saturating_sub(silent))
            }
            _ => None,
        }
    }

    pub fn in_speech(&self) -> bool {
        matches!(self.state, State::InSpeech { .. })
    }

    /// Pending → InSpeech once `confirm_frames` voiced frames are held.
    fn check_confirmed(&mut self) -> FrameVerdict {
        let State::Pending {
            start,
            frames,
            voiced,
            ..
        } = self.state
        else {
            return FrameVerdict::Idle;
        };
        if voiced < self.confirm_frames {
            return FrameVerdict::Pending;
        }
        let preroll = self.held - frames;
        let start_sample = start - u64::from(preroll) * self.frame_len as u64;
        self.state = State::InSpeech {
            start: start_sample,
            silent: 0,
        };
        self.held_ready = true;
        FrameVerdict::Started { start_sample }
    }

    fn end_utterance(&mut self, end_sample: u64, reason: EndReason) -> FrameVerdict {
        self.state = State::Idle;
        self.clear_ring();
        FrameVerdict::Ended { end_sample, reason }
    }

    /// Copy a frame into the ring; drops the oldest frame if full.
    /// `ring_frames >= 1` always; only Idle pre-roll ever overflows it (Pending fits by sizing).
    fn hold(&mut self, frame: &[i16]) {
        if self.held == self.ring_frames {
            debug_assert!(matches!(self.state, State::Idle));
            self.drop_oldest();
        }
        let slot = ((self.head + self.held) % self.ring_frames) as usize * self.frame_len;
        self.ring[slot..slot + self.frame_len].copy_from_slice(frame);
        self.held += 1;
    }

    fn trim_to_preroll(&mut self) {
        while self.held > self.preroll_frames {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        self.head = (self.head + 1) % self.ring_frames;
        self.held -= 1;
    }

    fn clear_ring(&mut self) {
        self.head = 0;
        self.held = 0;
        self.held_ready = false;
    }
}

#[cfg(test)]
mod tests;
