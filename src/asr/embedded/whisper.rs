//! ct2rs wrapper: one CTranslate2 Whisper replica (INT8, one thread) as a pool `Decoder`.

use std::path::Path;

use ct2rs::{ComputeType, Config, Whisper, WhisperOptions};

use super::pool::{DecodeError, Decoder};
use super::EngineError;

/// Silence put before each utterance, in samples at 16 kHz. Whisper was trained on
/// 30 s windows where speech rarely starts at the first sample; a short lead-in makes
/// tiny models noticeably steadier on clipped telephone utterances.
const LEAD_IN_SAMPLES: usize = 8000;

pub struct WhisperDecoder {
    model: Whisper,
    options: WhisperOptions,
    /// Lead-in plus the utterance; reused across decodes.
    padded: Vec<f32>,
}

impl WhisperDecoder {
    /// Load the model in `dir` for one worker thread. The CPU backend converts the stored
    /// float16 weights to INT8 here (and logs a harmless warning about it).
    pub fn load(dir: &Path) -> Result<Self, EngineError> {
        let config = Config {
            compute_type: ComputeType::INT8,
            num_threads_per_replica: 1,
            ..Config::default()
        };
        let model = Whisper::new(dir, config).map_err(|e| EngineError::ModelLoad {
            dir: dir.to_path_buf(),
            detail: format!("{e:#}"),
        })?;
        if model.sampling_rate() != super::SAMPLE_RATE_HZ as usize {
            return Err(EngineError::ModelLoad {
                dir: dir.to_path_buf(),
                detail: format!(
                    "preprocessor_config.json says sampling_rate {}, the engine needs {}",
                    model.sampling_rate(),
                    super::SAMPLE_RATE_HZ
                ),
            });
        }
        Ok(WhisperDecoder {
            model,
            options: WhisperOptions::default(),
            padded: Vec::new(),
        })
    }
}

impl Decoder for WhisperDecoder {
    fn decode(&mut self, samples: &[f32], language: Option<&str>) -> Result<String, DecodeError> {
        // English-only models take the "en" token; the prompt is built by ct2rs.
        let language = if self.model.is_multilingual() {
            language
        } else {
            Some("en")
        };
        self.padded.clear();
        self.padded.resize(LEAD_IN_SAMPLES, 0.0);
        self.padded.extend_from_slice(samples);
        let pieces = self
            .model
            .generate(&self.padded, language, false, &self.options)
            .map_err(|e| DecodeError {
                detail: format!("{e:#}"),
            })?;
        // One piece per 30 s window of audio.
        Ok(pieces.join(" "))
    }

    fn is_multilingual(&self) -> bool {
        self.model.is_multilingual()
    }
}
