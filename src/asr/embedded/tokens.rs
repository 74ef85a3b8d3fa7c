//! Whisper's special tokens: the decoder prompt for a window, and transcript text with every
//! special token removed.
//!
//! The prompt is reference Whisper's (openai-whisper's and faster-whisper's `sot_sequence` plus
//! `<|notimestamps|>`): English-only (`.en`) models get `<|startoftranscript|><|notimestamps|>`,
//! with no language or task token; multilingual models get
//! `<|startoftranscript|><|xx|><|transcribe|><|notimestamps|>`.
//! In Whisper's vocabulary every special token (end of text, start of transcript, languages,
//! tasks, timestamps) has an id at or above `<|endoftext|>`'s, so text is made from the ids
//! below it only, as the references do.

use std::path::Path;

use ct2rs::tokenizers::hf;

pub const START_OF_TRANSCRIPT: &str = "<|startoftranscript|>";
pub const TRANSCRIBE: &str = "<|transcribe|>";
pub const NO_TIMESTAMPS: &str = "<|notimestamps|>";
pub const END_OF_TEXT: &str = "<|endoftext|>";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("reading {path}: {detail}")]
    Load { path: String, detail: String },
    #[error("{path} has no {token} token; is it a Whisper tokenizer?")]
    NotWhisper { path: String, token: &'static str },
    #[error("language {0:?} is not one of this model's languages")]
    UnknownLanguage(String),
    #[error("decoding tokens to text: {0}")]
    Decode(String),
}

/// The prompt for one window. `language`: `None` for an English-only model, else the
/// language token (`<|de|>`) of a multilingual one.
pub fn prompt(language: Option<&str>) -> Vec<String> {
    match language {
        None => vec![START_OF_TRANSCRIPT.into(), NO_TIMESTAMPS.into()],
        Some(lang) => vec![
            START_OF_TRANSCRIPT.into(),
            lang.into(),
            TRANSCRIBE.into(),
            NO_TIMESTAMPS.into(),
        ],
    }
}

/// The model's tokenizer (tokenizer.json), for language tokens and for text.
pub struct Vocabulary {
    tokenizer: hf::Tokenizer,
    end_of_text: u32,
}

impl Vocabulary {
    pub fn load(tokenizer_json: &Path) -> Result<Self, TokenError> {
        let path = tokenizer_json.display().to_string();
        let tokenizer = hf::Tokenizer::from_file(tokenizer_json).map_err(|e| TokenError::Load {
            path: path.clone(),
            detail: format!("{e:#}"),
        })?;
        for token in [START_OF_TRANSCRIPT, NO_TIMESTAMPS] {
            if tokenizer.token_to_id(token).is_none() {
                return Err(TokenError::NotWhisper { path, token });
            }
        }
        let end_of_text = tokenizer
            .token_to_id(END_OF_TEXT)
            .ok_or(TokenError::NotWhisper {
                path,
                token: END_OF_TEXT,
            })?;
        Ok(Vocabulary {
            tokenizer,
            end_of_text,
        })
    }

    /// The language token for an ISO 639-1 code (`"de"` → `<|de|>`), if the model has it.
    pub fn language_token(&self, code: &str) -> Result<String, TokenError> {
        let token = format!("<|{code}|>");
        let known = code.len() <= 3
            && code.chars().all(|c| c.is_ascii_lowercase())
            && self.tokenizer.token_to_id(&token).is_some();
        if known {
            Ok(token)
        } else {
            Err(TokenError::UnknownLanguage(code.into()))
        }
    }

    /// The text of generated `ids`, without special tokens, trimmed.
    pub fn text(&self, ids: &[usize]) -> Result<String, TokenError> {
        let ids: Vec<u32> = ids
            .iter()
            .filter_map(|&id| u32::try_from(id).ok())
            .filter(|&id| id < self.end_of_text)
            .collect();
        let text = self
            .tokenizer
            .decode(&ids, true)
            .map_err(|e| TokenError::Decode(e.to_string()))?;
        Ok(text.trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A six-token Whisper-like vocabulary: three words, then the specials from id 4 on, the
    /// last (a timestamp) not even marked special, as some exports have it.
    const TINY: &str = r#"{"version":"1.0","truncation":null,"padding":null,
"added_tokens":[
{"id":4,"content":"<|endoftext|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
{"id":5,"content":"<|startoftranscript|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
{"id":6,"content":"<|de|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
{"id":7,"content":"<|transcribe|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
{"id":8,"content":"<|notimestamps|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
{"id":9,"content":"<|0.00|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":false}],
"normalizer":null,
"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true},
"post_processor":null,
"decoder":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true},
"model":{"type":"WordLevel","vocab":{"ĠHallo":0,"ĠWelt":1,"!":2,"Ġja":3},"unk_token":"!"}}"#;

    fn tiny() -> Vocabulary {
        let path =
            std::env::temp_dir().join(format!("asr-tiny-tokenizer-{}.json", std::process::id()));
        std::fs::write(&path, TINY).unwrap();
        let v = Vocabulary::load(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        v
    }

    #[test]
    fn english_only_prompt_has_no_language_or_task() {
        assert_eq!(prompt(None), ["<|startoftranscript|>", "<|notimestamps|>"]);
    }

    #[test]
    fn multilingual_prompt_names_language_and_task() {
        assert_eq!(
            prompt(Some("<|de|>")),
            [
                "<|startoftranscript|>",
                "<|de|>",
                "<|transcribe|>",
                "<|notimestamps|>"
            ]
        );
    }

    #[test]
    fn no_special_token_reaches_the_text() {
        let v = tiny();
        // Every special, including the timestamp the tokenizer does not call special.
        assert_eq!(v.text(&[5, 6, 7, 8, 0, 1, 9, 2, 4]).unwrap(), "Hallo Welt!");
        assert_eq!(v.text(&[8, 4]).unwrap(), "");
        assert_eq!(v.text(&[]).unwrap(), "");
        // Ids the tokenizer does not know are dropped too.
        assert_eq!(v.text(&[3, 70_000, usize::MAX]).unwrap(), "ja");
    }

    #[test]
    fn language_tokens_come_from_the_vocabulary() {
        let v = tiny();
        assert_eq!(v.language_token("de").unwrap(), "<|de|>");
        for bad in ["fr", "", "DE", "<|de|>", "de|><|en"] {
            assert!(
                matches!(v.language_token(bad), Err(TokenError::UnknownLanguage(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_tokenizer_without_whisper_tokens_is_refused() {
        let path =
            std::env::temp_dir().join(format!("asr-not-whisper-{}.json", std::process::id()));
        std::fs::write(&path, TINY.replace("<|notimestamps|>", "<|nots|>")).unwrap();
        let err = Vocabulary::load(&path).err().unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(
            matches!(
                err,
                TokenError::NotWhisper {
                    token: NO_TIMESTAMPS,
                    ..
                }
            ),
            "{err}"
        );
        assert!(matches!(
            Vocabulary::load(Path::new("/nonexistent/tokenizer.json")),
            Err(TokenError::Load { .. })
        ));
    }
}
