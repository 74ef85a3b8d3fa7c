//! What a stream has sent since its engine's last final: replayed into the next engine when the stream fails over, so no word is lost.
//!
//! Pure bookkeeping. Inputs are kept in order (audio and call mode's end-of-speech
//! markers). A final result says the engine is done with everything up to an
//! end-of-speech marker: the one with the final's utterance id, or, when the engine gives
//! no id, the oldest marker. A call-mode final with no marker to match (an engine that
//! ends utterances itself) is done with the audio up to its `end_ms`. In utterance mode
//! the stream's final means the stream is done, so everything goes. Audio is bounded: past `max_samples` the oldest
//! audio is dropped and counted.

use std::collections::VecDeque;

use crate::asr::engine::StreamInput;
use crate::asr::types::UtteranceId;

#[derive(Debug)]
pub struct Replay {
    inputs: VecDeque<StreamInput>,
    samples: usize,
    max_samples: usize,
    /// One stream for the whole call (several utterances), not one per utterance.
    call_mode: bool,
    /// Rate of the audio, Hz: turns sample counts into media ms.
    rate_hz: u64,
    /// Samples dropped because the buffer was full.
    pub dropped_samples: u64,
}

impl Replay {
    pub fn new(max_samples: usize, call_mode: bool, rate_hz: u32) -> Self {
        Self {
            inputs: VecDeque::new(),
            samples: 0,
            max_samples,
            call_mode,
            rate_hz: u64::from(rate_hz.max(1)),
            dropped_samples: 0,
        }
    }

    pub fn push(&mut self, input: &StreamInput) {
        if let StreamInput::Audio { samples, .. } = input {
            self.samples += samples.len();
        }
        self.inputs.push_back(input.clone());
        while self.samples > self.max_samples {
            let Some(pos) = self
                .inputs
                .iter()
                .position(|i| matches!(i, StreamInput::Audio { .. }))
            else {
                break;
            };
            if let Some(StreamInput::Audio { samples, .. }) = self.inputs.remove(pos) {
                self.samples -= samples.len();
                self.dropped_samples += samples.len() as u64;
            }
        }
    }

    /// The engine gave a final for `utterance` (0 = it gives no ids) ending at `end_ms`
    /// (media time).
    pub fn handle_final(&mut self, utterance: UtteranceId, end_ms: u64) {
        let marker = self.inputs.iter().position(|i| match i {
            StreamInput::EndOfSpeech { utterance: u, .. } => utterance == 0 || *u == utterance,
            StreamInput::Audio { .. } => false,
        });
        let through = match marker {
            Some(pos) => pos + 1,
            // One utterance per stream, and its final is in.
            None if !self.call_mode => self.inputs.len(),
            // The engine ended the utterance itself: drop the audio that ends by then.
            None => self
                .inputs
                .iter()
                .position(|i| match i {
                    StreamInput::Audio { offset_ms, samples } => {
                        *offset_ms + (samples.len() as u64 * 1000) / self.rate_hz > end_ms
                    }
                    StreamInput::EndOfSpeech { .. } => true,
                })
                .unwrap_or(self.inputs.len()),
        };
        for input in self.inputs.drain(..through) {
            if let StreamInput::Audio { samples, .. } = input {
                self.samples -= samples.len();
            }
        }
    }

    /// Everything kept, oldest first: what the next engine is sent before new input.
    pub fn inputs(&self) -> impl Iterator<Item = &StreamInput> {
        self.inputs.iter()
    }

    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// Audio samples kept.
    pub fn samples(&self) -> usize {
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audio(offset_ms: u64, n: usize) -> StreamInput {
        StreamInput::Audio {
            offset_ms,
            samples: vec![offset_ms as i16; n],
        }
    }

    fn eos(utterance: UtteranceId, offset_ms: u64) -> StreamInput {
        StreamInput::EndOfSpeech {
            utterance,
            offset_ms,
        }
    }

    fn offsets(r: &Replay) -> Vec<u64> {
        r.inputs()
            .map(|i| match i {
                StreamInput::Audio { offset_ms, .. } => *offset_ms,
                StreamInput::EndOfSpeech { offset_ms, .. } => 10_000 + offset_ms,
            })
            .collect()
    }

    #[test]
    fn call_mode_final_drops_through_its_marker_only() {
        let mut r = Replay::new(1000, true, 1000);
        for i in [
            audio(0, 10),
            audio(20, 10),
            eos(1, 40),
            audio(40, 10),
            eos(2, 60),
        ] {
            r.push(&i);
        }
        r.push(&audio(60, 10));
        r.handle_final(1, 50);
        assert_eq!(offsets(&r), vec![40, 10_060, 60]);
        assert_eq!(r.samples(), 20);
        // An engine without ids: the oldest marker.
        r.handle_final(0, 70);
        assert_eq!(offsets(&r), vec![60]);
        // A final whose marker has not come (the engine ended it itself) drops the
        // audio that ends by its end: 10 samples at 1 kHz from 60 ms end at 70 ms.
        r.push(&audio(70, 10));
        r.handle_final(3, 69);
        assert_eq!(offsets(&r), vec![60, 70]);
        r.handle_final(3, 70);
        assert_eq!(offsets(&r), vec![70]);
    }

    #[test]
    fn utterance_mode_final_clears_the_stream() {
        let mut r = Replay::new(1000, false, 1000);
        r.push(&audio(0, 10));
        r.push(&audio(20, 10));
        r.handle_final(7, 0);
        assert!(r.is_empty());
        assert_eq!(r.samples(), 0);
    }

    #[test]
    fn bounded_oldest_audio_dropped_and_counted_markers_kept() {
        let mut r = Replay::new(25, true, 1000);
        r.push(&audio(0, 10));
        r.push(&eos(1, 20));
        r.push(&audio(20, 10));
        r.push(&audio(40, 10));
        assert_eq!(offsets(&r), vec![10_020, 20, 40]);
        assert_eq!((r.samples(), r.dropped_samples), (20, 10));
    }
}
