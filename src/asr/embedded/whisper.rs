//! One CTranslate2 Whisper replica (INT8, one thread) as a pool `Decoder`, driven as the
//! model's authors drive it: our own log-mel features (`mel`), reference Whisper's prompt and
//! text without special tokens (`tokens`), 30 s windows joined for longer audio.

use std::path::Path;

use ct2rs::sys::{self, StorageView, WhisperOptions};
use ct2rs::{ComputeType, Config};

use super::mel::{self, FrontEnd};
use super::pool::{DecodeError, Decoder};
use super::tokens::{self, Vocabulary};
use super::EngineError;

pub struct WhisperDecoder {
    model: sys::Whisper,
    vocabulary: Vocabulary,
    front_end: FrontEnd,
    /// Beam search with ct2rs's defaults: beam 5, patience 1, no length or repetition
    /// penalty, 448 tokens at most, blank and the config's tokens suppressed at the start.
    /// These are faster-whisper's values at temperature 0.
    options: WhisperOptions,
    /// One encoder window of features; reused across decodes.
    window: Vec<f32>,
}

/// What the model directory's preprocessor_config.json must say for our front end to apply.
#[derive(serde::Deserialize)]
struct Preprocessor {
    sampling_rate: usize,
    n_fft: usize,
    hop_length: usize,
    feature_size: usize,
    #[serde(default)]
    nb_max_frames: Option<usize>,
}

impl WhisperDecoder {
    /// Load the model in `dir` for one worker thread. The CPU backend converts the stored
    /// float16 weights to INT8 here (and logs a harmless warning about it).
    pub fn load(dir: &Path) -> Result<Self, EngineError> {
        let fail = |detail: String| EngineError::ModelLoad {
            dir: dir.to_path_buf(),
            detail,
        };
        let config = Config {
            compute_type: ComputeType::INT8,
            num_threads_per_replica: 1,
            ..Config::default()
        };
        let model = sys::Whisper::new(dir, config).map_err(|e| fail(format!("{e:#}")))?;
        let vocabulary =
            Vocabulary::load(&dir.join("tokenizer.json")).map_err(|e| fail(e.to_string()))?;
        let pre_path = dir.join("preprocessor_config.json");
        let pre: Preprocessor = std::fs::read(&pre_path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .map_err(|e| fail(format!("{}: {e}", pre_path.display())))?;
        let wanted = (
            mel::SAMPLE_RATE,
            mel::N_FFT,
            mel::HOP,
            model.n_mels(),
            mel::WINDOW_FRAMES,
        );
        let got = (
            pre.sampling_rate,
            pre.n_fft,
            pre.hop_length,
            pre.feature_size,
            pre.nb_max_frames.unwrap_or(mel::WINDOW_FRAMES),
        );
        if got != wanted || mel::SAMPLE_RATE != super::SAMPLE_RATE_HZ as usize {
            return Err(fail(format!(
                "{} describes features (sampling_rate, n_fft, hop_length, feature_size, \
                 nb_max_frames) = {got:?}; this engine computes {wanted:?}",
                pre_path.display()
            )));
        }
        let front_end = FrontEnd::new(model.n_mels()).map_err(|e| fail(e.to_string()))?;
        Ok(WhisperDecoder {
            model,
            vocabulary,
            front_end,
            options: WhisperOptions::default(),
            window: Vec::new(),
        })
    }

    /// The language token to prompt with, detecting it on `features` when not given.
    fn language_token(
        &self,
        language: Option<&str>,
        features: &StorageView,
    ) -> Result<Option<String>, DecodeError> {
        if !self.model.is_multilingual() {
            // English-only models take no language token, whatever was asked.
            return Ok(None);
        }
        match language {
            Some(code) => Ok(Some(self.vocabulary.language_token(code).map_err(failed)?)),
            None => {
                let detected = self.model.detect_language(features).map_err(failed)?;
                let best = detected
                    .into_iter()
                    .next()
                    .and_then(|langs| langs.into_iter().next())
                    .ok_or_else(|| failed("language detection returned nothing"))?;
                Ok(Some(best.language))
            }
        }
    }
}

fn failed(e: impl std::fmt::Display) -> DecodeError {
    DecodeError {
        detail: e.to_string(),
    }
}

impl Decoder for WhisperDecoder {
    fn decode(&mut self, samples: &[f32], language: Option<&str>) -> Result<String, DecodeError> {
        let features = self.front_end.log_mel(samples);
        let n_mels = self.front_end.n_mels();
        // Taken out for the loop, where a view borrows it while `self` is used too.
        let mut window = std::mem::take(&mut self.window);
        let result = self.decode_windows(&features, n_mels, language, &mut window);
        self.window = window;
        result
    }

    fn is_multilingual(&self) -> bool {
        self.model.is_multilingual()
    }
}

impl WhisperDecoder {
    /// Each 30 s window of `features` decoded on its own (no previous text in the prompt),
    /// the texts joined with spaces.
    fn decode_windows(
        &self,
        features: &mel::LogMel,
        n_mels: usize,
        language: Option<&str>,
        window: &mut Vec<f32>,
    ) -> Result<String, DecodeError> {
        let mut prompt: Vec<String> = Vec::new();
        let mut pieces = Vec::new();
        for w in 0..features.windows() {
            features.window_into(w, window);
            let view =
                StorageView::new(&[1, n_mels, mel::WINDOW_FRAMES], window, Default::default())
                    .map_err(failed)?;
            if prompt.is_empty() {
                // The language of the first window holds for the whole utterance.
                let lang = self.language_token(language, &view)?;
                prompt = tokens::prompt(lang.as_deref());
            }
            let result = self
                .model
                .generate(&view, std::slice::from_ref(&prompt), &self.options)
                .map_err(failed)?
                .into_iter()
                .next()
                .ok_or_else(|| failed("the model returned no result"))?;
            let ids = result.sequences_ids.first().map_or(&[][..], Vec::as_slice);
            let text = self.vocabulary.text(ids).map_err(failed)?;
            if !text.is_empty() {
                pieces.push(text);
            }
        }
        Ok(pieces.join(" "))
    }
}
