//! The serialized form every sink and the journal share: an event rendered once to JSON.

use bytes::Bytes;
use uuid::Uuid;

use crate::events::model::Event;

/// An event ready for the wire. Cloning is cheap (the JSON is shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEvent {
    /// CloudEvents `id`: the same on every delivery and redelivery.
    pub id: Uuid,
    /// CloudEvents `type`, e.g. `asr.transcript.final`.
    pub kind: String,
    /// The call id (CloudEvents `subject`), used in routing keys, subjects and stream keys.
    pub call_id: String,
    /// The CloudEvents JSON object, one line, no trailing newline.
    pub json: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("journal line is not a CloudEvents JSON object: {0}")]
    Json(#[from] serde_json::Error),
    #[error("journal line lacks `{0}`")]
    Missing(&'static str),
}

impl From<&Event> for OutgoingEvent {
    fn from(event: &Event) -> Self {
        Self {
            id: event.id,
            kind: event.kind().type_name().to_owned(),
            call_id: event.call_id.to_string(),
            json: Bytes::from(event.to_json()),
        }
    }
}

impl OutgoingEvent {
    /// Rebuild from the JSON line `to_json` made (journal replay). The JSON is kept byte for byte.
    pub fn from_json(json: Bytes) -> Result<Self, DecodeError> {
        #[derive(serde::Deserialize)]
        struct Head {
            id: Option<Uuid>,
            #[serde(rename = "type")]
            kind: Option<String>,
            subject: Option<String>,
        }
        let head: Head = serde_json::from_slice(&json)?;
        Ok(Self {
            id: head.id.ok_or(DecodeError::Missing("id"))?,
            kind: head.kind.ok_or(DecodeError::Missing("type"))?,
            call_id: head.subject.ok_or(DecodeError::Missing("subject"))?,
            json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::model::{EventBody, SessionEvent};

    #[test]
    fn roundtrips_through_json_keeping_bytes_and_id() {
        let event = Event::stamp(
            "/asr-gateway/t".into(),
            "s".into(),
            "call-1".into(),
            SessionEvent {
                offset_ms: 5,
                body: EventBody::SpeechStarted {
                    utterance: 1,
                    start_ms: 0,
                },
            },
            chrono::Utc::now(),
        );
        let out = OutgoingEvent::from(&event);
        assert_eq!(out.kind, "asr.speech.started");
        assert_eq!(out.call_id, "call-1");
        let back = OutgoingEvent::from_json(out.json.clone()).unwrap();
        assert_eq!(back, out);
        assert!(OutgoingEvent::from_json(Bytes::from_static(b"{\"type\":\"x\"}")).is_err());
        assert!(OutgoingEvent::from_json(Bytes::from_static(b"not json")).is_err());
    }
}
