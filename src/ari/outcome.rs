//! What a Stasis-mode call hands back to the dialplan: `ASR_STATUS`, `ASR_ERROR`,
//! `ASR_TRANSCRIPT` and `ASR_CONFIDENCE`, built from the session's finals and failures.
//!
//! With `until = "final"` the transcript is the first final (later finals, such as the
//! flush of an utterance cut off by the hand-back, are not the answer). With
//! `until = "stop"` it is every final in order, joined by spaces. An engine failure makes
//! the status `error` with its code, whatever was heard before it.

use crate::ingest::rtp_udp::OwnerNote;

/// Longest `ASR_TRANSCRIPT` handed back, bytes; longer text is cut at a char boundary.
pub const MAX_TRANSCRIPT_BYTES: usize = 4096;

/// Why a tap ended, as far as its result is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Recognition ended normally (first final, stop, max time, media gone).
    Done,
    /// The tap could not be set up or kept (ARI), with the `asr.error` code published.
    TapFailed(&'static str),
}

#[derive(Debug, Default)]
pub struct Outcome {
    /// Keep only the first final (`until = "final"`).
    first_only: bool,
    transcript: String,
    confidence_sum: f32,
    finals: u32,
    error: Option<&'static str>,
}

/// The variables to set on the channel, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct HandBack {
    pub status: &'static str,
    pub error: &'static str,
    pub transcript: String,
    pub confidence: String,
}

impl Outcome {
    pub fn new(first_only: bool) -> Self {
        Self {
            first_only,
            ..Self::default()
        }
    }

    /// Take one note from the session.
    pub fn handle_note(&mut self, note: OwnerNote) {
        match note {
            OwnerNote::Final { text, confidence } => {
                if self.first_only && self.finals > 0 {
                    return;
                }
                let text = text.trim();
                if text.is_empty() {
                    return;
                }
                if !self.transcript.is_empty() {
                    self.transcript.push(' ');
                }
                self.transcript.push_str(text);
                cut_at_char_boundary(&mut self.transcript, MAX_TRANSCRIPT_BYTES);
                self.confidence_sum += confidence;
                self.finals += 1;
            }
            OwnerNote::Failed { code } => {
                self.error.get_or_insert(code);
            }
        }
    }

    /// The answer is settled: a first final with `until = "final"`, or an engine failure.
    pub fn is_settled(&self) -> bool {
        self.error.is_some() || (self.first_only && self.finals > 0)
    }

    pub fn hand_back(&self, verdict: Verdict) -> HandBack {
        let error = match verdict {
            Verdict::TapFailed(code) => Some(code),
            Verdict::Done => self.error,
        };
        // A first final that arrived before a failure is still the answer asked for.
        let answered = self.first_only && self.finals > 0;
        let status = match (error, self.finals) {
            (Some(_), _) if !answered => "error",
            (_, 0) => "nomatch",
            _ => "ok",
        };
        let confidence = if self.finals == 0 {
            0.0
        } else {
            self.confidence_sum / self.finals as f32
        };
        HandBack {
            status,
            error: if status == "error" {
                error.unwrap_or_default()
            } else {
                ""
            },
            transcript: self.transcript.clone(),
            confidence: format!("{confidence:.2}"),
        }
    }
}

fn cut_at_char_boundary(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.truncate(text.trim_end().len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn final_(text: &str, confidence: f32) -> OwnerNote {
        OwnerNote::Final {
            text: text.into(),
            confidence,
        }
    }

    #[test]
    fn until_final_keeps_the_first_final_not_the_cut_off_flush() {
        let mut o = Outcome::new(true);
        o.handle_note(final_("Yes, I'm interested.", 0.9));
        assert!(o.is_settled());
        o.handle_note(final_("Thank", 0.3));
        let h = o.hand_back(Verdict::Done);
        assert_eq!(
            (
                h.status,
                h.error,
                h.transcript.as_str(),
                h.confidence.as_str()
            ),
            ("ok", "", "Yes, I'm interested.", "0.90")
        );
    }

    #[test]
    fn until_stop_joins_every_final() {
        let mut o = Outcome::new(false);
        o.handle_note(final_("I would like to pay my bills.", 0.8));
        assert!(!o.is_settled());
        o.handle_note(final_(" ", 0.1));
        o.handle_note(final_("Thank you, goodbye.", 0.6));
        let h = o.hand_back(Verdict::Done);
        assert_eq!(h.status, "ok");
        assert_eq!(
            h.transcript,
            "I would like to pay my bills. Thank you, goodbye."
        );
        assert_eq!(h.confidence, "0.70");
    }

    #[test]
    fn an_engine_failure_is_an_error_with_its_code() {
        let mut o = Outcome::new(true);
        o.handle_note(OwnerNote::Failed { code: "asr_busy" });
        assert!(o.is_settled());
        o.handle_note(OwnerNote::Failed {
            code: "asr_timeout",
        });
        let h = o.hand_back(Verdict::Done);
        assert_eq!((h.status, h.error), ("error", "asr_busy"));
        assert_eq!(h.transcript, "");
    }

    #[test]
    fn a_failure_after_the_first_final_keeps_the_answer() {
        let mut o = Outcome::new(true);
        o.handle_note(final_("what is my balance", 0.7));
        o.handle_note(OwnerNote::Failed { code: "asr_busy" });
        assert_eq!(o.hand_back(Verdict::Done).status, "ok");
        // With until = "stop" the failure cut recognition short: error, with what was heard.
        let mut o = Outcome::new(false);
        o.handle_note(final_("what is my balance", 0.7));
        o.handle_note(OwnerNote::Failed {
            code: "asr_unavailable",
        });
        let h = o.hand_back(Verdict::Done);
        assert_eq!((h.status, h.error), ("error", "asr_unavailable"));
        assert_eq!(h.transcript, "what is my balance");
    }

    #[test]
    fn nothing_heard_is_nomatch_and_a_failed_tap_is_an_error() {
        let o = Outcome::new(true);
        assert_eq!(o.hand_back(Verdict::Done).status, "nomatch");
        let h = o.hand_back(Verdict::TapFailed("ari_setup_timeout"));
        assert_eq!((h.status, h.error), ("error", "ari_setup_timeout"));
    }

    #[test]
    fn the_transcript_is_capped_at_a_char_boundary() {
        let mut o = Outcome::new(false);
        for _ in 0..2000 {
            o.handle_note(final_("é", 1.0));
        }
        let h = o.hand_back(Verdict::Done);
        assert!(h.transcript.len() <= MAX_TRANSCRIPT_BYTES);
        assert!(h.transcript.ends_with('é'));
    }
}
