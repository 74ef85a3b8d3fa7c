//! Serde models of the ARI events and objects the gateway needs (no transport here).
//!
//! Parsing is tolerant in the directions Asterisk grows and strict where the
//! gateway would otherwise act on garbage:
//! - unknown message types become [`Event::Unknown`], unknown fields are ignored;
//! - unknown channel states become [`ChannelState::Other`];
//! - a known event type that lacks a field the gateway relies on is a
//!   [`ParseError::MissingField`] naming the type and the field.
//!
//! Field names follow the ARI JSON model (`rest-api/api-docs/events.json` and
//! `channels.json`) and what Asterisk 23.4.1 was seen sending
//! (see ASTERISK-NOTES.md, "ARI events and control").

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Why an ARI JSON message or object could not be turned into a model.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The text is not JSON at all.
    #[error("ARI message is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// Valid JSON, but not an object.
    #[error("ARI message is not a JSON object")]
    NotAnObject,
    /// An object without a string `type`.
    #[error("ARI message has no string `type` field")]
    MissingType,
    /// A known message type (or object) without a field it must carry.
    #[error("ARI {kind} is missing required field `{field}`")]
    MissingField {
        /// The message type (`StasisStart`, ...) or object (`Channel`, ...).
        kind: String,
        /// The missing field, as named in the JSON.
        field: &'static str,
    },
    /// A field is present but has the wrong shape (wrong JSON type, nested field missing).
    #[error("ARI {kind} has an invalid field `{path}`: {source}")]
    InvalidField {
        /// The message type or object.
        kind: String,
        /// Path of the offending value, e.g. `channel.dialplan.priority`.
        path: String,
        /// serde's description.
        #[source]
        source: serde_json::Error,
    },
}

/// `Channel.state`. Never fails: a state this build does not know is kept in [`ChannelState::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChannelState {
    Down,
    Rsrved,
    OffHook,
    Dialing,
    Ring,
    Ringing,
    Up,
    Busy,
    /// `"Dialing Offhook"`.
    DialingOffhook,
    /// `"Pre-ring"`.
    PreRing,
    /// Asterisk's own `"Unknown"`.
    Unknown,
    /// Any other string, kept verbatim.
    Other(String),
}

impl ChannelState {
    /// The string Asterisk uses for this state.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Down => "Down",
            Self::Rsrved => "Rsrved",
            Self::OffHook => "OffHook",
            Self::Dialing => "Dialing",
            Self::Ring => "Ring",
            Self::Ringing => "Ringing",
            Self::Up => "Up",
            Self::Busy => "Busy",
            Self::DialingOffhook => "Dialing Offhook",
            Self::PreRing => "Pre-ring",
            Self::Unknown => "Unknown",
            Self::Other(s) => s,
        }
    }
}

impl From<&str> for ChannelState {
    fn from(s: &str) -> Self {
        match s {
            "Down" => Self::Down,
            "Rsrved" => Self::Rsrved,
            "OffHook" => Self::OffHook,
            "Dialing" => Self::Dialing,
            "Ring" => Self::Ring,
            "Ringing" => Self::Ringing,
            "Up" => Self::Up,
            "Busy" => Self::Busy,
            "Dialing Offhook" => Self::DialingOffhook,
            "Pre-ring" => Self::PreRing,
            "Unknown" => Self::Unknown,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for ChannelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ChannelState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ChannelState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Self::from(s.as_str()))
    }
}

/// `CallerID`: `caller` and `connected` of a channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerId {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub number: String,
}

/// `DialplanCEP`: where the channel is in the dialplan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialplanCep {
    #[serde(default)]
    pub context: String,
    #[serde(default)]
    pub exten: String,
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub app_name: String,
    #[serde(default)]
    pub app_data: String,
}

/// An ARI `Channel`.
///
/// `id`, `name` and `state` are required; the other fields Asterisk always sends
/// default to empty when absent, so a trimmed-down fake or an older Asterisk
/// still parses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub id: String,
    pub name: String,
    pub state: ChannelState,
    #[serde(default)]
    pub caller: CallerId,
    #[serde(default)]
    pub connected: CallerId,
    #[serde(default)]
    pub accountcode: String,
    #[serde(default)]
    pub dialplan: Option<DialplanCep>,
    #[serde(default)]
    pub creationtime: String,
    #[serde(default)]
    pub language: String,
    /// Channel variables, when Asterisk includes them (externalMedia response,
    /// or `channelvars` requested in `ari.conf`/`applications`).
    ///
    /// Values are normalised to strings: a JSON string is kept verbatim, a
    /// number or boolean becomes its JSON text (`40000`, `true`), an array or
    /// object its compact JSON text, and `null` drops the entry.
    #[serde(default, deserialize_with = "de_channelvars")]
    pub channelvars: Option<BTreeMap<String, String>>,
}

impl Channel {
    /// One channel variable, if present.
    pub fn channelvar(&self, name: &str) -> Option<&str> {
        self.channelvars.as_ref()?.get(name).map(String::as_str)
    }
}

fn de_channelvars<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    let raw: Option<BTreeMap<String, Value>> = Option::deserialize(d)?;
    Ok(raw.map(|vars| {
        vars.into_iter()
            .filter_map(|(k, v)| {
                let s = match v {
                    Value::Null => return None,
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                Some((k, s))
            })
            .collect()
    }))
}

/// One event from the ARI events WebSocket, selected by its `type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    StasisStart {
        args: Vec<String>,
        channel: Channel,
        /// Boxed: rare, and it would double the size of every `Event`.
        replace_channel: Option<Box<Channel>>,
    },
    StasisEnd {
        channel: Channel,
    },
    ChannelDestroyed {
        cause: i32,
        cause_txt: String,
        channel: Channel,
    },
    ChannelHangupRequest {
        cause: Option<i32>,
        soft: Option<bool>,
        channel: Channel,
    },
    ChannelDtmfReceived {
        digit: String,
        duration_ms: u32,
        channel: Channel,
    },
    ChannelStateChange {
        channel: Channel,
    },
    /// Any other `type`; its fields are not looked at.
    Unknown {
        kind: String,
    },
}

impl Event {
    /// The ARI `type` string of this event.
    pub fn kind(&self) -> &str {
        match self {
            Self::StasisStart { .. } => "StasisStart",
            Self::StasisEnd { .. } => "StasisEnd",
            Self::ChannelDestroyed { .. } => "ChannelDestroyed",
            Self::ChannelHangupRequest { .. } => "ChannelHangupRequest",
            Self::ChannelDtmfReceived { .. } => "ChannelDtmfReceived",
            Self::ChannelStateChange { .. } => "ChannelStateChange",
            Self::Unknown { kind } => kind,
        }
    }

    /// The channel the event is about (None for unknown types).
    pub fn channel(&self) -> Option<&Channel> {
        match self {
            Self::StasisStart { channel, .. }
            | Self::StasisEnd { channel }
            | Self::ChannelDestroyed { channel, .. }
            | Self::ChannelHangupRequest { channel, .. }
            | Self::ChannelDtmfReceived { channel, .. }
            | Self::ChannelStateChange { channel } => Some(channel),
            Self::Unknown { .. } => None,
        }
    }
}

/// A message from the events WebSocket: the common fields plus the typed event.
///
/// For the known event types `timestamp` and `application` are required (they
/// are required on every ARI `Event`). Other message types (`MissingParams`,
/// `RESTResponse`, ...) are plain ARI `Message`s that may lack them: there they
/// default to empty strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub timestamp: String,
    pub application: String,
    pub asterisk_id: Option<String>,
    pub event: Event,
}

impl FromStr for Message {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[derive(Deserialize)]
struct Common {
    #[serde(default)]
    timestamp: String,
    #[serde(default)]
    application: String,
    #[serde(default)]
    asterisk_id: Option<String>,
}

#[derive(Deserialize)]
struct StasisStartRaw {
    args: Vec<String>,
    channel: Channel,
    #[serde(default)]
    replace_channel: Option<Box<Channel>>,
}

#[derive(Deserialize)]
struct ChannelOnlyRaw {
    channel: Channel,
}

#[derive(Deserialize)]
struct ChannelDestroyedRaw {
    cause: i32,
    cause_txt: String,
    channel: Channel,
}

#[derive(Deserialize)]
struct ChannelHangupRequestRaw {
    #[serde(default)]
    cause: Option<i32>,
    #[serde(default)]
    soft: Option<bool>,
    channel: Channel,
}

#[derive(Deserialize)]
struct ChannelDtmfReceivedRaw {
    digit: String,
    duration_ms: u32,
    channel: Channel,
}

/// Required top-level fields per known type (besides `type`), or None for an unknown type.
fn required_fields(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "StasisStart" => &["timestamp", "application", "args", "channel"],
        "StasisEnd" | "ChannelStateChange" => &["timestamp", "application", "channel"],
        "ChannelDestroyed" => &["timestamp", "application", "cause", "cause_txt", "channel"],
        "ChannelHangupRequest" => &["timestamp", "application", "channel"],
        "ChannelDtmfReceived" => &[
            "timestamp",
            "application",
            "digit",
            "duration_ms",
            "channel",
        ],
        _ => return None,
    })
}

/// Required fields of a `Channel` object (the rest default).
const CHANNEL_REQUIRED: &[&str] = &["id", "name", "state"];

fn require(
    kind: &str,
    obj: &Map<String, Value>,
    fields: &[&'static str],
) -> Result<(), ParseError> {
    match fields.iter().find(|f| !obj.contains_key(**f)) {
        Some(field) => Err(ParseError::MissingField {
            kind: kind.to_owned(),
            field,
        }),
        None => Ok(()),
    }
}

fn typed<T: DeserializeOwned>(kind: &str, value: Value) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ParseError::InvalidField {
            kind: kind.to_owned(),
            path,
            source: e.into_inner(),
        }
    })
}

impl Message {
    /// Parses one text frame of the events WebSocket.
    pub fn parse(json: &str) -> Result<Self, ParseError> {
        let value: Value = serde_json::from_str(json).map_err(ParseError::Json)?;
        Self::from_value(value)
    }

    /// Builds a message from already-parsed JSON.
    pub fn from_value(value: Value) -> Result<Self, ParseError> {
        let Value::Object(obj) = value else {
            return Err(ParseError::NotAnObject);
        };
        let kind = match obj.get("type") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(ParseError::MissingType),
        };
        let Some(required) = required_fields(&kind) else {
            // Unknown type: keep what common fields are usable, never fail.
            let common: Common = serde_json::from_value(Value::Object(obj)).unwrap_or(Common {
                timestamp: String::new(),
                application: String::new(),
                asterisk_id: None,
            });
            return Ok(Self {
                timestamp: common.timestamp,
                application: common.application,
                asterisk_id: common.asterisk_id,
                event: Event::Unknown { kind },
            });
        };
        require(&kind, &obj, required)?;
        for key in ["channel", "replace_channel"] {
            if let Some(Value::Object(ch)) = obj.get(key) {
                require(&format!("{kind} {key}"), ch, CHANNEL_REQUIRED)?;
            }
        }
        let value = Value::Object(obj);
        let common: Common = typed(&kind, value.clone())?;
        let event = match kind.as_str() {
            "StasisStart" => {
                let r: StasisStartRaw = typed(&kind, value)?;
                Event::StasisStart {
                    args: r.args,
                    channel: r.channel,
                    replace_channel: r.replace_channel,
                }
            }
            "StasisEnd" => Event::StasisEnd {
                channel: typed::<ChannelOnlyRaw>(&kind, value)?.channel,
            },
            "ChannelStateChange" => Event::ChannelStateChange {
                channel: typed::<ChannelOnlyRaw>(&kind, value)?.channel,
            },
            "ChannelDestroyed" => {
                let r: ChannelDestroyedRaw = typed(&kind, value)?;
                Event::ChannelDestroyed {
                    cause: r.cause,
                    cause_txt: r.cause_txt,
                    channel: r.channel,
                }
            }
            "ChannelHangupRequest" => {
                let r: ChannelHangupRequestRaw = typed(&kind, value)?;
                Event::ChannelHangupRequest {
                    cause: r.cause,
                    soft: r.soft,
                    channel: r.channel,
                }
            }
            "ChannelDtmfReceived" => {
                let r: ChannelDtmfReceivedRaw = typed(&kind, value)?;
                Event::ChannelDtmfReceived {
                    digit: r.digit,
                    duration_ms: r.duration_ms,
                    channel: r.channel,
                }
            }
            _ => unreachable!("required_fields() lists exactly the types matched here"),
        };
        Ok(Self {
            timestamp: common.timestamp,
            application: common.application,
            asterisk_id: common.asterisk_id,
            event,
        })
    }
}

/// The response of `POST /channels/externalMedia`: a Channel whose
/// `channelvars` describe the media endpoint Asterisk opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExternalMediaChannel {
    pub channel: Channel,
}

impl ExternalMediaChannel {
    /// Parses the REST response body.
    pub fn parse(json: &str) -> Result<Self, ParseError> {
        const KIND: &str = "externalMedia response";
        let value: Value = serde_json::from_str(json).map_err(ParseError::Json)?;
        let Value::Object(obj) = &value else {
            return Err(ParseError::NotAnObject);
        };
        require(KIND, obj, CHANNEL_REQUIRED)?;
        Ok(Self {
            channel: typed(KIND, value)?,
        })
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.channel
            .channelvar(name)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// Asterisk's RTP socket (`UNICASTRTP_LOCAL_ADDRESS`:`UNICASTRTP_LOCAL_PORT`):
    /// where to send RTP and the only source to accept it from. None unless both
    /// are present and valid (an IP literal and a port, the port as string or number).
    pub fn unicast_rtp(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.var("UNICASTRTP_LOCAL_ADDRESS")?.parse().ok()?;
        let port: u16 = self.var("UNICASTRTP_LOCAL_PORT")?.parse().ok()?;
        Some(SocketAddr::new(ip, port))
    }

    /// `AUDIOSOCKET_UUID` (the `data` given at creation), if it is a valid UUID.
    pub fn audiosocket_uuid(&self) -> Option<uuid::Uuid> {
        self.var("AUDIOSOCKET_UUID")?.parse().ok()
    }

    /// `MEDIA_WEBSOCKET_CONNECTION_ID`: connect to `/media/<id>` in server mode.
    pub fn websocket_connection_id(&self) -> Option<&str> {
        self.var("MEDIA_WEBSOCKET_CONNECTION_ID")
    }

    /// `MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE` in bytes (string or number).
    pub fn optimal_frame_size(&self) -> Option<usize> {
        self.var("MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE")?.parse().ok()
    }
}

#[cfg(test)]
mod tests;
