//! Control messages of Asterisk's WebSocket media channel (chan_websocket), sans-IO.
//!
//! Binary frames carry raw media (one Asterisk frame each; slin little-endian)
//! and are not handled here. Text frames carry control, in one of two forms:
//!
//! - plain text: a command word then `key:value` tokens, e.g.
//!   `MEDIA_START connection_id:... channel:... channel_id:... format:ulaw optimal_frame_size:160 ptime:20`;
//! - JSON (`transport_data=f(json)`, 20.18 / 22.8 / 23.2): an object naming the
//!   message in `"event"` or `"command"`, with the same fields as members and,
//!   for `MEDIA_START`, a `channel_variables` object.
//!
//! Asterisk ignores text frames over [`MAX_TEXT_TO_ASTERISK`] bytes that it
//! receives, so anything the app sends must stay within it. Nothing here
//! limits what Asterisk sends (a JSON `MEDIA_START` with channel variables is
//! longer than that).

use std::collections::BTreeMap;

/// Text frames longer than this (in bytes) sent to Asterisk are ignored by it.
pub const MAX_TEXT_TO_ASTERISK: usize = 128;

/// The first message on a media WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaStart {
    pub connection_id: String,
    pub channel: String,
    pub channel_id: String,
    /// Asterisk format name (`ulaw`, `slin16`, ...), as sent.
    pub format: String,
    /// Bytes per frame Asterisk sends (160 for 20 ms ulaw).
    pub optimal_frame_size: u32,
    /// Frame duration in milliseconds (`ptime`).
    pub ptime_ms: u32,
    /// `channel_variables` of the JSON form; empty for the text form.
    pub channel_variables: BTreeMap<String, String>,
}

/// A parsed control message. Unknown names are [`Control::Other`], not errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    MediaStart(MediaStart),
    /// A DTMF digit ended; `None` if the message carried no usable `digit`.
    DtmfEnd {
        digit: Option<char>,
    },
    /// Asterisk's media queue is full: stop sending media.
    MediaXoff,
    /// Sending may resume.
    MediaXon,
    /// Fields as sent (scalars rendered as strings).
    Status(BTreeMap<String, String>),
    /// Fields as sent (scalars rendered as strings).
    Error(BTreeMap<String, String>),
    /// Any other message name, kept verbatim.
    Other(String),
}

/// Why a text frame could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsMediaError {
    #[error("empty WebSocket media control message")]
    Empty,
    #[error("WebSocket media control message is not valid JSON: {0}")]
    Json(String),
    #[error("JSON WebSocket media control message is not an object with a string \"event\" or \"command\"")]
    NoCommand,
    #[error("MEDIA_START is missing required field `{0}`")]
    MissingField(&'static str),
    #[error("MEDIA_START field `{field}` is not a non-negative integer: {value:?}")]
    BadNumber { field: &'static str, value: String },
}

/// Parse one text frame, in either form.
pub fn parse(text: &str) -> Result<Control, WsMediaError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(WsMediaError::Empty);
    }
    let (name, fields, vars) = if text.starts_with('{') {
        parse_json(text)?
    } else {
        parse_plain(text)
    };
    build(&name, fields, vars)
}

type Fields = BTreeMap<String, String>;

fn parse_plain(text: &str) -> (String, Fields, Fields) {
    let mut tokens = text.split_ascii_whitespace();
    let name = tokens.next().unwrap_or_default().to_owned();
    let fields = tokens
        .filter_map(|t| t.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    (name, fields, Fields::new())
}

fn parse_json(text: &str) -> Result<(String, Fields, Fields), WsMediaError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| WsMediaError::Json(e.to_string()))?;
    let serde_json::Value::Object(obj) = value else {
        return Err(WsMediaError::NoCommand);
    };
    let name = ["event", "command"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(|v| v.as_str()))
        .ok_or(WsMediaError::NoCommand)?
        .to_owned();
    let vars = match obj.get("channel_variables") {
        Some(serde_json::Value::Object(v)) => scalars(v),
        _ => Fields::new(),
    };
    Ok((name, scalars(&obj), vars))
}

/// String, number and boolean members as strings; others dropped.
fn scalars(obj: &serde_json::Map<String, serde_json::Value>) -> Fields {
    obj.iter()
        .filter_map(|(k, v)| {
            let s = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((k.clone(), s))
        })
        .collect()
}

fn build(name: &str, mut fields: Fields, vars: Fields) -> Result<Control, WsMediaError> {
    Ok(match name {
        "MEDIA_START" => {
            let mut take = |field: &'static str| {
                fields
                    .remove(field)
                    .ok_or(WsMediaError::MissingField(field))
            };
            let connection_id = take("connection_id")?;
            let channel = take("channel")?;
            let channel_id = take("channel_id")?;
            let format = take("format")?;
            let optimal_frame_size = number("optimal_frame_size", take("optimal_frame_size")?)?;
            let ptime_ms = number("ptime", take("ptime")?)?;
            Control::MediaStart(MediaStart {
                connection_id,
                channel,
                channel_id,
                format,
                optimal_frame_size,
                ptime_ms,
                channel_variables: vars,
            })
        }
        "DTMF_END" => {
            let mut chars = fields.get("digit").map(|d| d.chars()).into_iter().flatten();
            let digit = match (chars.next(), chars.next()) {
                (Some(c), None) => Some(c),
                _ => None,
            };
            Control::DtmfEnd { digit }
        }
        "MEDIA_XOFF" => Control::MediaXoff,
        "MEDIA_XON" => Control::MediaXon,
        "STATUS" => Control::Status(fields),
        "ERROR" => Control::Error(fields),
        other => Control::Other(other.to_owned()),
    })
}

fn number(field: &'static str, value: String) -> Result<u32, WsMediaError> {
    value
        .parse()
        .map_err(|_| WsMediaError::BadNumber { field, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT_START: &str = "MEDIA_START connection_id:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0 channel:WebSocket/media-0x7f0b88007500 channel_id:1795334591.22 format:ulaw optimal_frame_size:160 ptime:20";

    fn expected_start() -> MediaStart {
        MediaStart {
            connection_id: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into(),
            channel: "WebSocket/media-0x7f0b88007500".into(),
            channel_id: "1795334591.22".into(),
            format: "ulaw".into(),
            optimal_frame_size: 160,
            ptime_ms: 20,
            channel_variables: BTreeMap::new(),
        }
    }

    #[test]
    fn media_start_text_form() {
        assert_eq!(parse(TEXT_START), Ok(Control::MediaStart(expected_start())));
    }

    #[test]
    fn media_start_json_form_with_channel_variables() {
        let json = r#"{"event":"MEDIA_START","connection_id":"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0","channel":"WebSocket/media-0x7f0b88007500","channel_id":"1795334591.22","format":"ulaw","optimal_frame_size":160,"ptime":20,"channel_variables":{"DIALEDPEERNUMBER":"","ASR_LANG":"en"}}"#;
        let mut want = expected_start();
        want.channel_variables
            .insert("DIALEDPEERNUMBER".into(), String::new());
        want.channel_variables
            .insert("ASR_LANG".into(), "en".into());
        assert_eq!(parse(json), Ok(Control::MediaStart(want)));

        let command = r#"{"command":"MEDIA_START","connection_id":"c","channel":"ch","channel_id":"1.2","format":"slin16","optimal_frame_size":"640","ptime":"20"}"#;
        let Ok(Control::MediaStart(m)) = parse(command) else {
            panic!("not a MEDIA_START");
        };
        assert_eq!((m.format.as_str(), m.optimal_frame_size), ("slin16", 640));
    }

    #[test]
    fn media_start_missing_or_bad_fields() {
        assert_eq!(
            parse(
                "MEDIA_START connection_id:a channel:b format:ulaw optimal_frame_size:160 ptime:20"
            ),
            Err(WsMediaError::MissingField("channel_id"))
        );
        assert_eq!(
            parse(
                r#"{"event":"MEDIA_START","connection_id":"a","channel":"b","channel_id":"c","format":"ulaw","optimal_frame_size":160}"#
            ),
            Err(WsMediaError::MissingField("ptime"))
        );
        assert_eq!(
            parse("MEDIA_START connection_id:a channel:b channel_id:c format:ulaw optimal_frame_size:big ptime:20"),
            Err(WsMediaError::BadNumber {
                field: "optimal_frame_size",
                value: "big".into()
            })
        );
    }

    #[test]
    fn dtmf_end_both_forms() {
        assert_eq!(
            parse("DTMF_END digit:5"),
            Ok(Control::DtmfEnd { digit: Some('5') })
        );
        assert_eq!(
            parse(r##"{"event":"DTMF_END","digit":"#"}"##),
            Ok(Control::DtmfEnd { digit: Some('#') })
        );
        assert_eq!(parse("DTMF_END"), Ok(Control::DtmfEnd { digit: None }));
    }

    #[test]
    fn flow_control_status_error() {
        assert_eq!(parse("MEDIA_XOFF"), Ok(Control::MediaXoff));
        assert_eq!(parse(r#"{"event":"MEDIA_XON"}"#), Ok(Control::MediaXon));
        let Ok(Control::Status(f)) = parse("STATUS queue_length:3 xon_level:1") else {
            panic!("not STATUS");
        };
        assert_eq!(f.get("queue_length").map(String::as_str), Some("3"));
        let Ok(Control::Error(f)) = parse(r#"{"event":"ERROR","error_text":"bad command"}"#) else {
            panic!("not ERROR");
        };
        assert_eq!(f.get("error_text").map(String::as_str), Some("bad command"));
    }

    #[test]
    fn unknown_commands_are_other_not_errors() {
        assert_eq!(
            parse("MEDIA_BUFFERING_COMPLETED correlation_id:7"),
            Ok(Control::Other("MEDIA_BUFFERING_COMPLETED".into()))
        );
        assert_eq!(
            parse(r#"{"command":"SET_MEDIA_DIRECTION","correlation_id":"x"}"#),
            Ok(Control::Other("SET_MEDIA_DIRECTION".into()))
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert_eq!(parse("  "), Err(WsMediaError::Empty));
        assert_eq!(parse(r#"{"foo":1}"#), Err(WsMediaError::NoCommand));
        assert!(matches!(parse("{not json"), Err(WsMediaError::Json(_))));
    }
}
