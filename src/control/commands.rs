//! Commands from call logic (start, stop, update recognition), whatever transport brought them.
//!
//! Transports (HTTP, RabbitMQ, JetStream, Redis) hand the raw payload to a `CommandHandler`
//! and ack it once handled: `Accepted` → ack; `Rejected` → nack without requeue (or
//! dead-letter). The handler publishes the acknowledging event itself.

use std::future::Future;
use std::pin::Pin;

/// What became of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    Accepted,
    /// Malformed, unknown call, or refused: never redeliver.
    Rejected {
        reason: String,
    },
}

pub type CommandFuture<'a> = Pin<Box<dyn Future<Output = CommandOutcome> + Send + 'a>>;

/// Acts on one command payload (JSON bytes as received) and reports the outcome.
pub trait CommandHandler: Send + Sync {
    fn handle<'a>(&'a self, payload: &'a [u8]) -> CommandFuture<'a>;
}

use std::sync::Arc;

use serde::Deserialize;

use crate::ari::controller::{AriController, AriHub};
use crate::control::limits;
use crate::events::model::{Event, EventBody, SessionEvent};
use crate::events::publisher::Publisher;
use crate::ids::{is_safe_id, preview};
use crate::ingest::manager::{ManagerError, SessionInfo, SessionManager, SessionRequest};
use crate::ingest::rtp_udp::OptionsUpdate;
use crate::media::vad::{Segmenter, VadConfig};

/// Call id used in events about commands whose call id could not be read.
pub const UNKNOWN_CALL: &str = "unknown";

/// A command as call logic sends it (JSON). `command_id` is echoed in the acknowledging event.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Start recognition of a call's media.
    Start {
        command_id: Option<String>,
        call_id: String,
        #[serde(default)]
        media: MediaSource,
        #[serde(default)]
        options: CommandOptions,
    },
    /// End the call's session: its last finals, then `asr.session.ended`.
    Stop {
        command_id: Option<String>,
        call_id: String,
    },
    /// Change recognition options of a running call.
    Update {
        command_id: Option<String>,
        call_id: String,
        options: CommandOptions,
    },
}

/// Where the call's audio comes from.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum MediaSource {
    /// Reserve an RTP port; the accepted event's `external_host` says where to send.
    #[default]
    Rtp,
    /// Listen mode: tap this Asterisk channel (snoop + externalMedia + bridge).
    Ari {
        /// `[[ari.servers]]` id; may be left out when one server is configured.
        server: Option<String>,
        /// The channel id (`Channel.id`, e.g. `1795334591.22`).
        channel: String,
        /// `in` (default: the channel's own voice) or `both` (also what it hears, as a
        /// second stream; `asr.session.started` says which `speaker` each session is).
        #[serde(default)]
        directions: Directions,
    },
}

/// Which directions of an ARI channel to recognize.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Directions {
    #[default]
    In,
    Both,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandOptions {
    pub language: Option<String>,
    pub interim_results: Option<bool>,
    pub hints: Option<Vec<String>>,
    /// `start` only: the engine profile (`asr.profiles`); unset = `default`.
    pub engine_profile: Option<String>,
    pub vad: Option<VadOptions>,
}

/// VAD settings a command may change; unset keys keep their current value.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VadOptions {
    pub aggressiveness: Option<u8>,
    pub preroll_ms: Option<u32>,
    pub hangover_ms: Option<u32>,
    pub min_speech_ms: Option<u32>,
    pub max_utterance_ms: Option<u32>,
}

impl VadOptions {
    /// These options over `base`: what a command's VAD settings become (public for the
    /// command fuzz target, which checks them as the dispatcher does).
    pub fn apply(&self, base: VadConfig) -> VadConfig {
        VadConfig {
            aggressiveness: self.aggressiveness.unwrap_or(base.aggressiveness),
            preroll_ms: self.preroll_ms.unwrap_or(base.preroll_ms),
            hangover_ms: self.hangover_ms.unwrap_or(base.hangover_ms),
            min_speech_ms: self.min_speech_ms.unwrap_or(base.min_speech_ms),
            max_utterance_ms: self.max_utterance_ms.unwrap_or(base.max_utterance_ms),
            frame_ms: base.frame_ms,
        }
    }
}

/// Carries out commands on this gateway's sessions and acknowledges each with an event.
pub struct Dispatcher {
    manager: Arc<SessionManager>,
    publisher: Publisher,
    source: Arc<str>,
    /// The gateway's configured VAD defaults (updates are applied on top of them).
    vad_defaults: VadConfig,
    /// ARI controllers, for `media: {"type": "ari"}` starts; None when no server is set.
    ari: Option<Arc<AriHub>>,
}

impl Dispatcher {
    pub fn new(
        manager: Arc<SessionManager>,
        publisher: Publisher,
        source: Arc<str>,
        vad_defaults: VadConfig,
        ari: Option<Arc<AriHub>>,
    ) -> Self {
        Self {
            manager,
            publisher,
            source,
            vad_defaults,
            ari,
        }
    }

    /// Handle one command; the outcome is also published as an event.
    pub async fn dispatch(&self, payload: &[u8]) -> CommandOutcome {
        if payload.len() > limits::MAX_COMMAND_BYTES {
            let reason = format!(
                "command is {} bytes; at most {}",
                payload.len(),
                limits::MAX_COMMAND_BYTES
            );
            return self.reject(None, None, None, reason);
        }
        let command: Command = match serde_json::from_slice(payload) {
            Ok(c) => c,
            Err(e) => {
                let head: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
                let text = |k: &str| head.get(k).and_then(|v| v.as_str()).map(str::to_owned);
                return self.reject(
                    text("command"),
                    text("command_id"),
                    text("call_id"),
                    format!("malformed command: {e}"),
                );
            }
        };
        if let Err(reason) = limits::check(&command) {
            let (name, command_id, call_id) = match &command {
                Command::Start {
                    command_id,
                    call_id,
                    ..
                } => ("start", command_id, call_id),
                Command::Stop {
                    command_id,
                    call_id,
                } => ("stop", command_id, call_id),
                Command::Update {
                    command_id,
                    call_id,
                    ..
                } => ("update", command_id, call_id),
            };
            return self.reject(
                Some(name.into()),
                command_id.clone(),
                Some(call_id.clone()),
                reason,
            );
        }
        match command {
            Command::Start {
                command_id,
                call_id,
                media,
                options,
            } => {
                let vad = match self.checked_vad(options.vad.as_ref()) {
                    Ok(v) => v,
                    Err(reason) => {
                        return self.reject(Some("start".into()), command_id, Some(call_id), reason)
                    }
                };
                let request = SessionRequest {
                    call_id: call_id.clone(),
                    language: options.language,
                    interim_results: options.interim_results,
                    hints: options.hints,
                    engine_profile: options.engine_profile,
                    media_timeout: None,
                    speaker: None,
                };
                let created = match &media {
                    MediaSource::Rtp => self.manager.create(request).await,
                    MediaSource::Ari {
                        server,
                        channel,
                        directions,
                    } => {
                        let controller = match self.ari_server(server.as_deref()) {
                            Ok(c) => c,
                            Err(reason) => {
                                return self.reject(
                                    Some("start".into()),
                                    command_id,
                                    Some(call_id),
                                    reason,
                                )
                            }
                        };
                        controller.listen(channel, request, *directions).await
                    }
                };
                match created {
                    Ok(info) => {
                        if let Some(vad) = vad {
                            let update = OptionsUpdate {
                                vad: Some(vad),
                                ..Default::default()
                            };
                            let _ = self.manager.update_call(&call_id, update).await;
                        }
                        // An ARI tap tells Asterisk where to send itself.
                        let host = matches!(media, MediaSource::Rtp)
                            .then(|| format!("{}:{}", self.manager.advertised_host(), info.port));
                        self.accept("start", command_id, &info, host)
                    }
                    Err(e) => self.reject(
                        Some("start".into()),
                        command_id,
                        Some(call_id),
                        e.to_string(),
                    ),
                }
            }
            Command::Stop {
                command_id,
                call_id,
            } => {
                match self
                    .manager
                    .stop_call(&call_id, crate::events::model::EndCause::Stopped)
                {
                    Ok(info) => self.accept("stop", command_id, &info, None),
                    Err(e) => self.reject(
                        Some("stop".into()),
                        command_id,
                        Some(call_id),
                        e.to_string(),
                    ),
                }
            }
            Command::Update {
                command_id,
                call_id,
                options,
            } => {
                let vad = match self.checked_vad(options.vad.as_ref()) {
                    Ok(v) => v,
                    Err(reason) => {
                        return self.reject(
                            Some("update".into()),
                            command_id,
                            Some(call_id),
                            reason,
                        )
                    }
                };
                let update = OptionsUpdate {
                    language: options.language,
                    interim_results: options.interim_results,
                    hints: options.hints,
                    vad,
                };
                match self.manager.update_call(&call_id, update).await {
                    Ok(info) => self.accept("update", command_id, &info, None),
                    Err(e @ ManagerError::CallNotFound(_)) => self.reject(
                        Some("update".into()),
                        command_id,
                        Some(call_id),
                        e.to_string(),
                    ),
                    Err(e) => self.reject(
                        Some("update".into()),
                        command_id,
                        Some(call_id),
                        e.to_string(),
                    ),
                }
            }
        }
    }

    /// The controller of ARI server `id` (or the only one), or why there is none.
    fn ari_server(&self, id: Option<&str>) -> Result<&Arc<AriController>, String> {
        let Some(hub) = &self.ari else {
            return Err("media type ari needs an [[ari.servers]] entry in the config".into());
        };
        hub.server(id).ok_or_else(|| match id {
            Some(id) => format!(
                "unknown ARI server {id:?}; configured: {}",
                hub.server_ids().join(", ")
            ),
            None => format!(
                "several ARI servers are configured ({}): name one in media.server",
                hub.server_ids().join(", ")
            ),
        })
    }

    /// VAD options on top of the configured defaults, refused if the segmenter would refuse them.
    fn checked_vad(&self, options: Option<&VadOptions>) -> Result<Option<VadConfig>, String> {
        let Some(options) = options else {
            return Ok(None);
        };
        let vad = options.apply(self.vad_defaults);
        Segmenter::new(vad, self.manager.engine_rate())
            .map_err(|e| format!("invalid vad options: {e}"))?;
        Ok(Some(vad))
    }

    fn accept(
        &self,
        command: &'static str,
        command_id: Option<String>,
        info: &SessionInfo,
        external_host: Option<String>,
    ) -> CommandOutcome {
        let body = EventBody::CommandAccepted {
            command,
            command_id,
            external_host,
        };
        self.publish(&info.session_id, &info.call_id, body);
        CommandOutcome::Accepted
    }

    fn reject(
        &self,
        command: Option<String>,
        command_id: Option<String>,
        call_id: Option<String>,
        reason: String,
    ) -> CommandOutcome {
        // Whatever the input held, only plain ids and a bounded reason go into the event.
        let plain = |v: Option<String>| v.filter(|v| is_safe_id(v));
        let (command, command_id) = (plain(command), plain(command_id));
        let reason = limits::bounded_reason(reason);
        tracing::warn!(?command, ?command_id, call_id = ?call_id.as_deref().map(preview), %reason, "command rejected");
        let call_id = plain(call_id).unwrap_or_else(|| UNKNOWN_CALL.into());
        let body = EventBody::CommandRejected {
            command,
            command_id,
            reason: reason.clone(),
        };
        self.publish("", &call_id, body);
        CommandOutcome::Rejected { reason }
    }

    fn publish(&self, session_id: &str, call_id: &str, body: EventBody) {
        let event = SessionEvent { offset_ms: 0, body };
        self.publisher.publish(Event::stamp(
            self.source.clone(),
            session_id.into(),
            call_id.into(),
            event,
            chrono::Utc::now(),
        ));
    }
}

impl CommandHandler for Dispatcher {
    fn handle<'a>(&'a self, payload: &'a [u8]) -> CommandFuture<'a> {
        Box::pin(self.dispatch(payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Command, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn commands_parse() {
        let start = parse(r#"{"command":"start","command_id":"c1","call_id":"42","options":{"language":"en","vad":{"hangover_ms":800}}}"#).unwrap();
        match start {
            Command::Start {
                command_id,
                call_id,
                media,
                options,
            } => {
                assert_eq!(command_id.as_deref(), Some("c1"));
                assert_eq!(call_id, "42");
                assert_eq!(media, MediaSource::Rtp);
                assert_eq!(options.vad.unwrap().hangover_ms, Some(800));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(r#"{"command":"stop","call_id":"42"}"#).unwrap(),
            Command::Stop { .. }
        ));
        assert!(matches!(
            parse(r#"{"command":"update","call_id":"42","options":{"interim_results":true}}"#)
                .unwrap(),
            Command::Update { .. }
        ));
    }

    #[test]
    fn malformed_commands_are_refused_with_the_reason() {
        let e = parse(r#"{"command":"dance","call_id":"42"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("dance") && e.contains("start"), "{e}");
        let e = parse(r#"{"command":"stop"}"#).unwrap_err().to_string();
        assert!(e.contains("call_id"), "{e}");
        let e = parse(r#"{"command":"start","call_id":"1","options":{"langauge":"en"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("langauge"), "{e}");
        let e = parse(r#"{"command":"start","call_id":"1","media":{"type":"ari_channel"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ari_channel"), "{e}");
        assert!(parse("not json").is_err());
    }

    #[test]
    fn vad_options_apply_over_defaults() {
        let o = VadOptions {
            hangover_ms: Some(900),
            ..Default::default()
        };
        let v = o.apply(VadConfig::default());
        assert_eq!(v.hangover_ms, 900);
        assert_eq!(v.preroll_ms, VadConfig::default().preroll_ms);
    }
}
