//! One call's tap: snoop + externalMedia + mixing bridge around a gateway session, and its teardown.
//!
//! Setup (listen and Stasis mode alike) follows Asterisk's external-media pattern
//! (ASTERISK-NOTES.md): the snoop, the externalMedia channel and the bridge are requested
//! at once with ids the gateway chose, the session is told to accept RTP only from
//! `UNICASTRTP_LOCAL_ADDRESS:PORT`, and once both channels have had their StasisStart
//! (Asterisk refuses to bridge a channel before that) one `addChannel` joins them. That is
//! two ARI round trips on the critical path.
//!
//! Teardown deletes the bridge and both channels by id whether or not their creation was
//! confirmed (a request that timed out may still have created them; 404 is fine), so a call
//! that vanishes at any stage leaves nothing behind on the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::ari::client::{AriClient, AriError, ExternalMediaRequest};
use crate::ari::config::{AriConfig, MediaTransport, StasisThen};
use crate::ari::outcome::{Outcome, Verdict};
use crate::events::model::{EndCause, Event, EventBody, SessionEvent};
use crate::events::publisher::Publisher;
use crate::ingest::audiosocket::AudioSocketServer;
use crate::ingest::manager::{
    ManagerError, MediaKind, OwnedSession, SessionManager, SessionRequest,
};
use crate::ingest::rtp_framing::StreamFormat;
use crate::ingest::ws_media::{self, WsMediaTarget};
use crate::metrics::Metrics;

/// First word of the snoop's `appArgs`: marks channels the gateway created, so their
/// StasisStart is never taken for a new call.
pub const TAP_MARK: &str = "asrgw-tap";

/// `ASR_ERROR` of a Stasis call handed back because the gateway is shutting down.
const SHUTDOWN: &str = "gateway_shutdown";

/// How the call came to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapMode {
    /// A start command named a channel of another app; we subscribe to its events.
    Listen,
    /// The channel entered our Stasis app; we hand it back when done.
    Stasis,
}

/// What the controller forwards to a tap about its channels.
#[derive(Debug, Clone, PartialEq)]
pub enum TapEvent {
    /// StasisStart of one of our channels (snoop or externalMedia).
    StasisStart { channel: String },
    /// The call's channel, or one of ours, hung up or was destroyed.
    Gone { channel: String, why: String },
    /// The events socket came back: anything may have happened meanwhile.
    Reconnected,
    /// `ChannelDtmfReceived` on the call's channel.
    Dtmf { digit: char, duration_ms: u32 },
}

/// Shared by every tap of one server.
pub struct TapContext {
    pub client: AriClient,
    pub app: String,
    pub config: Arc<AriConfig>,
    pub manager: Arc<SessionManager>,
    pub publisher: Publisher,
    pub source: Arc<str>,
    pub metrics: Arc<Metrics>,
    /// Host Asterisk sends RTP to (`server.advertise_host`, else the RTP bind address).
    pub media_host: String,
    /// The AudioSocket server, when `ari.transport = "audiosocket"`.
    pub audiosocket: Option<Arc<AudioSocketServer>>,
}

/// The ids a tap creates on the server, chosen before any request so that events and
/// teardown can name them even if a request's answer is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapIds {
    pub snoop: String,
    pub media: String,
    pub bridge: String,
}

impl TapIds {
    pub fn new(tap: &str) -> Self {
        Self {
            snoop: format!("{tap}-snoop"),
            media: format!("{tap}-media"),
            bridge: format!("{tap}-bridge"),
        }
    }
}

/// One call being tapped.
pub struct Tap {
    pub mode: TapMode,
    /// Snoop direction: `in` (the channel's own voice) or `out` (what it hears).
    pub spy: &'static str,
    /// The Asterisk channel whose audio is recognized.
    pub channel: String,
    pub ids: TapIds,
    pub session: OwnedSession,
    /// What recognition gave so far (handed back in Stasis mode).
    pub outcome: Outcome,
}

/// Why a tap ended, for logs.
#[derive(Debug, Clone, PartialEq)]
enum Ending {
    Gone(String),
    SessionEnded,
    /// Stasis mode: the answer is settled (the first final, or an engine failure).
    Settled,
    MaxTime,
    /// The tap could not be set up or kept; the `asr.error` code it published.
    Failed(&'static str),
}

/// The session for a new tap (reserves the RTP port). Fails before any ARI request.
pub async fn reserve(
    ctx: &TapContext,
    call_id: String,
    options: SessionRequest,
) -> Result<OwnedSession, ManagerError> {
    let media = match ctx.config.transport {
        MediaTransport::Rtp => MediaKind::Udp,
        MediaTransport::Audiosocket => MediaKind::Stream("audiosocket"),
        MediaTransport::Websocket => MediaKind::Stream("websocket"),
    };
    let request = SessionRequest {
        call_id,
        media_timeout: Some(Duration::from_millis(ctx.config.media_timeout_ms)),
        ..options
    };
    ctx.manager.create_owned(request, media).await
}

/// Set the tap up, run it until the call or session ends, tear it down.
pub async fn run(ctx: Arc<TapContext>, mut tap: Tap, mut events: mpsc::Receiver<TapEvent>) {
    let ending = match setup(&ctx, &mut tap, &mut events).await {
        Ok(()) => watch(&ctx, &mut tap, &mut events).await,
        Err(ending) => ending,
    };
    tracing::debug!(channel = %tap.channel, ?ending, "tap ending");
    teardown(&ctx, &mut tap, &ending).await;
}

async fn setup(
    ctx: &TapContext,
    tap: &mut Tap,
    events: &mut mpsc::Receiver<TapEvent>,
) -> Result<(), Ending> {
    let began = std::time::Instant::now();
    let c = &ctx.client;
    let ids = tap.ids.clone();
    let tap_args = format!("{TAP_MARK},{}", tap.session.info.session_id);
    let session_id = tap.session.info.session_id.clone();
    // A stream transport's audio sender: AudioSocket hands it to its server now (Asterisk
    // dials in with the UUID), WebSocket keeps it until it has connected.
    let mut frames = tap.session.frames.take();
    let (external_host, encapsulation, transport, connection_type, data) =
        match (ctx.config.transport, &ctx.audiosocket) {
            // Server mode: Asterisk waits for our connection.
            (MediaTransport::Websocket, _) => {
                ("INCOMING".to_owned(), "none", "websocket", "server", None)
            }
            (MediaTransport::Audiosocket, Some(server)) => {
                if let Some(sender) = frames.take() {
                    // The session id is a UUID: it names the call on the AudioSocket too.
                    server.register(&session_id, &session_id, sender);
                }
                let host = format!("{}:{}", ctx.media_host, server.local_addr().port());
                (
                    host,
                    "audiosocket",
                    "tcp",
                    "client",
                    Some(session_id.clone()),
                )
            }
            _ => {
                let host = format!("{}:{}", ctx.media_host, tap.session.info.port);
                (host, "rtp", "udp", "client", None)
            }
        };
    let media = ExternalMediaRequest {
        channel_id: ids.media.clone(),
        app: ctx.app.clone(),
        external_host,
        format: ctx.config.format.clone(),
        encapsulation,
        transport,
        connection_type,
        data,
    };
    let tap = &*tap;
    let prepare = async {
        match tap.mode {
            TapMode::Listen => c.subscribe_channel(&ctx.app, &tap.channel).await,
            TapMode::Stasis if ctx.config.stasis.answer => c.answer(&tap.channel).await,
            TapMode::Stasis => Ok(()),
        }
    };
    // Round trip 1: everything that does not depend on anything else, at once.
    let (prepared, snooped, external, bridged) = tokio::join!(
        prepare,
        c.snoop(&tap.channel, &ids.snoop, &ctx.app, &tap_args, tap.spy),
        c.external_media(&media),
        c.create_bridge(&ids.bridge),
    );
    // The snoop's answer first: its 404 says best that the call is gone.
    if let Some(error) = [snooped.err(), prepared.err(), bridged.err()]
        .into_iter()
        .flatten()
        .next()
    {
        return Err(fail(ctx, tap, "setup", &error));
    }
    let external = external.map_err(|e| fail(ctx, tap, "setup", &e))?;
    if let (MediaTransport::Websocket, Some(sender)) = (ctx.config.transport, frames) {
        connect_media_socket(ctx, tap, &external, sender).await?;
    } else if ctx.config.transport == MediaTransport::Audiosocket {
        // Asterisk dials in with the UUID: there is no source address to lock.
    } else if let Some(asterisk_rtp) = external.unicast_rtp() {
        lock_source(ctx, tap, asterisk_rtp).await?;
    } else {
        return Err(publish_error(
            ctx,
            tap,
            "ari_request_failed",
            format!(
                "ARI server {}: externalMedia answered without UNICASTRTP_LOCAL_ADDRESS/PORT",
                c.server()
            ),
        ));
    }
    // Both channels must be in our app before Asterisk lets us bridge them.
    let mut waiting = vec![ids.snoop.clone(), ids.media.clone()];
    let limit = tokio::time::sleep(Duration::from_millis(ctx.config.setup_timeout_ms));
    tokio::pin!(limit);
    while !waiting.is_empty() {
        tokio::select! {
            event = events.recv() => match event {
                Some(TapEvent::StasisStart { channel }) => waiting.retain(|c| *c != channel),
                Some(TapEvent::Gone { why, .. }) => return Err(Ending::Gone(why)),
                Some(TapEvent::Reconnected | TapEvent::Dtmf { .. }) => {}
                None => return Err(Ending::Failed(SHUTDOWN)),
            },
            () = &mut limit => {
                return Err(publish_error(ctx, tap, "ari_setup_timeout", format!(
                    "ARI server {}: no StasisStart for {} within {} ms",
                    c.server(), waiting.join(", "), ctx.config.setup_timeout_ms)));
            }
        }
    }
    // Round trip 2.
    c.add_channels(&ids.bridge, &[&ids.snoop, &ids.media])
        .await
        .map_err(|e| fail(ctx, tap, "bridging", &e))?;
    ctx.metrics.ari_taps_started.inc();
    ctx.metrics
        .ari_tap_setup
        .observe(began.elapsed().as_secs_f64());
    Ok(())
}

/// WebSocket server mode: connect to `/media/<connection id>`; the channel enters Stasis then.
async fn connect_media_socket(
    ctx: &TapContext,
    tap: &Tap,
    external: &crate::ari::model::ExternalMediaChannel,
    frames: mpsc::Sender<Vec<u8>>,
) -> Result<(), Ending> {
    let failed = |message: String| publish_error(ctx, tap, "ari_request_failed", message);
    let Some(connection) = external.websocket_connection_id() else {
        return Err(failed(format!(
            "ARI server {}: externalMedia answered without MEDIA_WEBSOCKET_CONNECTION_ID",
            ctx.client.server()
        )));
    };
    let Some(format) = StreamFormat::from_asterisk(&ctx.config.format) else {
        return Err(failed(format!(
            "format {} cannot be framed",
            ctx.config.format
        )));
    };
    let target = WsMediaTarget {
        url: ctx.client.media_url(connection),
        connector: ctx.client.websockets().clone(),
        format,
        session_id: tap.session.info.session_id.clone(),
    };
    ws_media::start(target, frames, ctx.manager.clone(), ctx.metrics.clone())
        .await
        .map_err(|e| failed(format!("ARI server {}: {e}", ctx.client.server())))
}

async fn lock_source(ctx: &TapContext, tap: &Tap, addr: SocketAddr) -> Result<(), Ending> {
    ctx.manager
        .lock_source(&tap.session.info.session_id, addr)
        .await
        .map_err(|_| Ending::SessionEnded)
}

/// Wait for the end of the call, of its media, or of recognition (Stasis mode).
async fn watch(ctx: &TapContext, tap: &mut Tap, events: &mut mpsc::Receiver<TapEvent>) -> Ending {
    let stasis = tap.mode == TapMode::Stasis;
    let max = tokio::time::sleep(if stasis {
        Duration::from_millis(ctx.config.stasis.max_ms)
    } else {
        Duration::MAX / 4
    });
    tokio::pin!(max);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(TapEvent::Gone { why, .. }) => return Ending::Gone(why),
                Some(TapEvent::Reconnected) => {
                    // The socket was down: a hangup may have been missed, and a listen tap
                    // renews its subscription (which also proves the channel still exists:
                    // Asterisk answers 422 for an unknown event source).
                    let check = match tap.mode {
                        TapMode::Listen => ctx.client.subscribe_channel(&ctx.app, &tap.channel).await,
                        TapMode::Stasis => ctx.client.channel(&tap.channel).await.map(drop),
                    };
                    if let Err(e) = check {
                        if e.is_gone() || e.status() == Some(422) {
                            return Ending::Gone(format!("channel {} no longer exists", tap.channel));
                        }
                    }
                }
                Some(TapEvent::Dtmf { digit, duration_ms }) => {
                    let _ = ctx.manager.dtmf(&tap.session.info.session_id, digit, duration_ms).await;
                }
                Some(TapEvent::StasisStart { .. }) => {}
                None => return Ending::Failed(SHUTDOWN),
            },
            note = tap.session.notes.recv() => match note {
                Some(note) => {
                    tap.outcome.handle_note(note);
                    // Stasis mode hands the call back as soon as the answer is known: the
                    // first final (until = "final") or an engine failure, at once.
                    if stasis && tap.outcome.is_settled() {
                        return Ending::Settled;
                    }
                }
                None => return Ending::SessionEnded,
            },
            _ = &mut tap.session.ended => return Ending::SessionEnded,
            () = &mut max => return Ending::MaxTime,
        }
    }
}

async fn teardown(ctx: &TapContext, tap: &mut Tap, ending: &Ending) {
    let session_id = tap.session.info.session_id.clone();
    if let Some(server) = &ctx.audiosocket {
        server.unregister(&session_id);
    }
    let cause = match ending {
        Ending::Gone(_) => EndCause::Hangup,
        _ => EndCause::Stopped,
    };
    // Stop the media first (the session flushes its last utterance to the engine).
    let (_, (), (), ()) = tokio::join!(
        async {
            let _ = ctx.manager.stop(&session_id, cause);
        },
        delete(ctx, "bridge", &tap.ids.bridge),
        delete(ctx, "channel", &tap.ids.snoop),
        delete(ctx, "channel", &tap.ids.media),
    );
    if tap.mode == TapMode::Stasis && !matches!(ending, Ending::Gone(_)) {
        if !tap.outcome.is_settled() && !matches!(ending, Ending::Failed(_)) {
            // Stopped or out of time: the session flushes its last utterance; wait for
            // its final (or failure), then hand the channel back with the result.
            let wait =
                Duration::from_millis(ctx.config.request_timeout_ms) + Duration::from_secs(20);
            let notes = &mut tap.session.notes;
            let outcome = &mut tap.outcome;
            let _ = tokio::time::timeout(wait, async {
                while let Some(note) = notes.recv().await {
                    outcome.handle_note(note);
                    if outcome.is_settled() {
                        break;
                    }
                }
            })
            .await;
        }
        hand_back(ctx, tap, ending).await;
    }
    ctx.metrics.ari_taps_ended.inc();
}

async fn hand_back(ctx: &TapContext, tap: &Tap, ending: &Ending) {
    if ctx.config.stasis.then == StasisThen::Leave {
        return;
    }
    let verdict = match ending {
        Ending::Failed(code) => Verdict::TapFailed(code),
        _ => Verdict::Done,
    };
    let result = tap.outcome.hand_back(verdict);
    let c = &ctx.client;
    let vars = [
        ("ASR_STATUS", result.status),
        ("ASR_ERROR", result.error),
        ("ASR_TRANSCRIPT", result.transcript.as_str()),
        ("ASR_CONFIDENCE", result.confidence.as_str()),
        ("ASR_SESSION_ID", tap.session.info.session_id.as_str()),
    ];
    for (name, value) in vars {
        if let Err(e) = c.set_variable(&tap.channel, name, value).await {
            tracing::warn!(channel = %tap.channel, error = %e, "cannot set result variable");
            return;
        }
    }
    if let Err(e) = c.continue_in_dialplan(&tap.channel).await {
        tracing::warn!(channel = %tap.channel, error = %e, "cannot continue the channel in the dialplan");
    }
}

async fn delete(ctx: &TapContext, kind: &str, id: &str) {
    let result = match kind {
        "bridge" => ctx.client.destroy_bridge(id).await,
        _ => ctx.client.hangup(id).await,
    };
    match result {
        Ok(()) => {}
        // Never created, or already gone with the call.
        Err(e) if e.is_gone() => {}
        Err(e) => {
            ctx.metrics.ari_teardown_failed.inc();
            tracing::warn!(%kind, %id, error = %e, "ARI teardown request failed");
        }
    }
}

/// Publish the failure as `asr.error` and say the tap failed (or that its channel is gone).
fn fail(ctx: &TapContext, tap: &Tap, stage: &str, error: &AriError) -> Ending {
    ctx.metrics.ari_request_failures.inc();
    let failed = publish_error(ctx, tap, "ari_request_failed", format!("{stage}: {error}"));
    if error.is_gone() {
        Ending::Gone(error.to_string())
    } else {
        failed
    }
}

/// Publish `asr.error` with `code`; the tap fails with it.
fn publish_error(ctx: &TapContext, tap: &Tap, code: &'static str, message: String) -> Ending {
    tracing::warn!(channel = %tap.channel, %code, %message, "tap error");
    let info = &tap.session.info;
    ctx.publisher.publish(Event::stamp(
        ctx.source.clone(),
        info.session_id.as_str().into(),
        info.call_id.as_str().into(),
        SessionEvent {
            offset_ms: 0,
            body: EventBody::Error {
                code,
                message,
                utterance: None,
            },
        },
        chrono::Utc::now(),
    ));
    Ending::Failed(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_ids_are_derived_from_the_tap() {
        let ids = TapIds::new("abc");
        assert_eq!(ids.snoop, "abc-snoop");
        assert_eq!(ids.media, "abc-media");
        assert_eq!(ids.bridge, "abc-bridge");
    }
}
