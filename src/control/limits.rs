//! Bounds on what a command may carry: every id is a plain id (crate::ids), and every
//! string copied into a session, an engine request or an event has a size cap. A command
//! over a bound is rejected with the reason; its oversized field is never echoed whole.

use crate::control::commands::{Command, CommandOptions, MediaSource};
use crate::ids::{is_safe_id, preview, ID_RULE};

/// Largest command payload, bytes.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Most hints (phrases to boost) per command.
pub const MAX_HINTS: usize = 256;
/// Longest hint, bytes.
pub const MAX_HINT_BYTES: usize = 256;
/// All hints together, bytes.
pub const MAX_HINTS_TOTAL_BYTES: usize = 16 * 1024;
/// Longest language tag (BCP 47 in practice stays far below), bytes.
pub const MAX_LANGUAGE_BYTES: usize = 35;
/// Longest rejection reason put into an event, bytes.
pub const MAX_REASON_BYTES: usize = 512;

/// Why `command` breaks a bound, if it does.
pub fn check(command: &Command) -> Result<(), String> {
    let (command_id, call_id, options, media) = match command {
        Command::Start {
            command_id,
            call_id,
            media,
            options,
        } => (command_id, call_id, Some(options), Some(media)),
        Command::Stop {
            command_id,
            call_id,
        } => (command_id, call_id, None, None),
        Command::Update {
            command_id,
            call_id,
            options,
        } => (command_id, call_id, Some(options), None),
    };
    id("call_id", call_id)?;
    if let Some(command_id) = command_id {
        id("command_id", command_id)?;
    }
    if let Some(MediaSource::Ari {
        server, channel, ..
    }) = media
    {
        // The channel id goes into ARI request paths with the gateway's own credentials.
        id("media.channel", channel)?;
        if let Some(server) = server {
            id("media.server", server)?;
        }
    }
    if let Some(options) = options {
        check_options(options)?;
    }
    Ok(())
}

fn id(field: &str, value: &str) -> Result<(), String> {
    if is_safe_id(value) {
        Ok(())
    } else {
        Err(format!(
            "{field} {} is invalid: use {ID_RULE}",
            preview(value)
        ))
    }
}

fn check_options(options: &CommandOptions) -> Result<(), String> {
    check_language_and_hints(options.language.as_deref(), options.hints.as_deref())
}

/// The bounds on `language` and `hints`, wherever they come from (a command's `options`, a
/// `POST /v1/sessions` body).
pub fn check_language_and_hints(
    language: Option<&str>,
    hints: Option<&[String]>,
) -> Result<(), String> {
    if let Some(language) = language {
        let plain = language
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
        if language.is_empty() || language.len() > MAX_LANGUAGE_BYTES || !plain {
            return Err(format!(
                "options.language {} is invalid: use a language tag of 1 to {MAX_LANGUAGE_BYTES} characters from A-Z a-z 0-9 - _",
                preview(language)
            ));
        }
    }
    if let Some(hints) = hints {
        if hints.len() > MAX_HINTS {
            return Err(format!(
                "options.hints has {} entries; at most {MAX_HINTS}",
                hints.len()
            ));
        }
        if let Some(long) = hints.iter().find(|h| h.len() > MAX_HINT_BYTES) {
            return Err(format!(
                "options.hints entry {} is longer than {MAX_HINT_BYTES} bytes",
                preview(long)
            ));
        }
        let total: usize = hints.iter().map(String::len).sum();
        if total > MAX_HINTS_TOTAL_BYTES {
            return Err(format!(
                "options.hints total {total} bytes; at most {MAX_HINTS_TOTAL_BYTES}"
            ));
        }
    }
    Ok(())
}

/// `reason` cut to [`MAX_REASON_BYTES`] at a char boundary.
pub fn bounded_reason(reason: String) -> String {
    crate::ids::cut_to(reason, MAX_REASON_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Command {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn plain_commands_pass() {
        let c = parse(
            r#"{"command":"start","command_id":"c-1","call_id":"1795334591.22",
                "media":{"type":"ari","server":"pbx1","channel":"1795334591.22"},
                "options":{"language":"en-US","hints":["balance","call me back"]}}"#,
        );
        assert_eq!(check(&c), Ok(()));
    }

    #[test]
    fn hostile_fields_are_named_and_never_echoed_whole() {
        let huge = "x".repeat(1_000_000);
        let cases = [
            (
                format!(r#"{{"command":"stop","call_id":"a","command_id":"{huge}"}}"#),
                "command_id",
            ),
            (
                r#"{"command":"stop","call_id":"a/../b"}"#.to_owned(),
                "call_id",
            ),
            (
                r#"{"command":"start","call_id":"a","media":{"type":"ari","server":"p?x=1","channel":"c"}}"#
                    .to_owned(),
                "media.server",
            ),
            (
                format!(r#"{{"command":"update","call_id":"a","options":{{"language":"{huge}"}}}}"#),
                "options.language",
            ),
            (
                format!(r#"{{"command":"update","call_id":"a","options":{{"hints":["{huge}"]}}}}"#),
                "options.hints",
            ),
        ];
        for (json, field) in cases {
            let reason = check(&parse(&json)).unwrap_err();
            assert!(reason.starts_with(field), "{reason}");
            assert!(reason.len() < 200, "{} bytes", reason.len());
        }
        let many: Vec<String> = (0..=MAX_HINTS).map(|i| format!("h{i}")).collect();
        let c = Command::Update {
            command_id: None,
            call_id: "a".into(),
            options: CommandOptions {
                hints: Some(many),
                ..Default::default()
            },
        };
        assert!(check(&c).unwrap_err().contains("257 entries"));
        let c = Command::Update {
            command_id: None,
            call_id: "a".into(),
            options: CommandOptions {
                hints: Some(vec!["y".repeat(200); 100]),
                ..Default::default()
            },
        };
        assert!(check(&c).unwrap_err().contains("total 20000 bytes"));
    }

    #[test]
    fn reasons_are_bounded() {
        assert_eq!(bounded_reason("short".into()), "short");
        let long = bounded_reason("é".repeat(1000));
        assert!(long.len() <= MAX_REASON_BYTES + 3 && long.ends_with("..."));
    }
}
