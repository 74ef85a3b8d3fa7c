//! ARI controller: one per Asterisk server; routes its events to taps, starts taps in both modes.
//!
//! - Stasis mode: a channel entering our app (not one the gateway created) gets a tap.
//! - Listen mode: a start command names a channel of another app; `listen` taps it.
//!
//! The events socket is read by one task; each tap runs in its own task and hears only the
//! events of its three channels (the call's, the snoop, the externalMedia). After the
//! socket comes back from a drop, every tap is told to check that its call still exists,
//! which also covers an Asterisk restart (all its channels gone).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};

use crate::ari::client::{AriClient, AriError, AriServerConfig};
use crate::ari::config::{AriConfig, MediaTransport, StasisUntil};
use crate::ari::events::{self, Feed};
use crate::ari::model::Event as AriEvent;
use crate::ari::outcome::Outcome;
use crate::ari::tap::{self, Tap, TapContext, TapEvent, TapIds, TapMode, TAP_MARK};
use crate::control::commands::Directions;
use crate::events::publisher::Publisher;
use crate::ingest::audiosocket::AudioSocketServer;
use crate::ingest::manager::{ManagerError, SessionInfo, SessionManager, SessionRequest};
use crate::ingest::rtp_framing::StreamFormat;
use crate::metrics::Metrics;
use crate::tls::ClientTls;

/// Events queued for one tap; a tap hears a handful per call.
const TAP_EVENTS: usize = 32;
/// Messages between the events socket and the router.
const FEED: usize = 1024;

/// Where a channel's events go.
struct Route {
    tx: mpsc::Sender<TapEvent>,
    /// The call's own channel (not the snoop or externalMedia).
    call: bool,
}

pub struct AriController {
    ctx: Arc<TapContext>,
    /// Channel id (the call's, the snoop's, the externalMedia's) → its tap's events.
    routes: Mutex<HashMap<String, Vec<Route>>>,
    /// Taps running now.
    active: Mutex<usize>,
    idle: Notify,
}

impl AriController {
    /// Check the server takes our credentials, then follow its events. Fails (naming the
    /// server) on wrong credentials; an unreachable server is only logged, since Asterisk
    /// may start after the gateway: the events socket keeps trying.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        server: AriServerConfig,
        config: Arc<AriConfig>,
        manager: Arc<SessionManager>,
        publisher: Publisher,
        source: Arc<str>,
        metrics: Arc<Metrics>,
        media_host: String,
        audiosocket: Option<Arc<AudioSocketServer>>,
        stop: watch::Receiver<bool>,
        tls: &ClientTls,
    ) -> Result<Arc<Self>, AriError> {
        let client = AriClient::new(
            &server,
            Duration::from_millis(config.request_timeout_ms),
            tls,
        );
        match client.check().await {
            Ok(()) => {
                tracing::info!(server = %server.id, url = %server.url, app = %server.app, "ARI server answers")
            }
            Err(e @ AriError::Unreachable { .. }) => {
                tracing::warn!(error = %e, "ARI server not reachable yet; its events socket keeps trying")
            }
            Err(e) => return Err(e),
        }
        let controller = Arc::new(Self {
            ctx: Arc::new(TapContext {
                client,
                app: server.app.clone(),
                config,
                manager,
                publisher,
                source,
                metrics: metrics.clone(),
                media_host,
                audiosocket,
            }),
            routes: Mutex::new(HashMap::new()),
            active: Mutex::new(0),
            idle: Notify::new(),
        });
        let (feed_tx, feed_rx) = mpsc::channel(FEED);
        let connector = controller.ctx.client.websockets().clone();
        tokio::spawn(events::run(server, connector, feed_tx, stop, move || {
            metrics.ari_events_malformed.inc()
        }));
        tokio::spawn(controller.clone().route(feed_rx));
        Ok(controller)
    }

    pub fn server(&self) -> &str {
        self.ctx.client.server()
    }

    /// Listen mode: tap `channel` (of any app) for `request.call_id`. Returns once the
    /// session is reserved; setup continues in the background and reports failures as
    /// `asr.error`. A call already tapped here gets its session back.
    pub async fn listen(
        self: &Arc<Self>,
        channel: &str,
        request: SessionRequest,
        directions: Directions,
    ) -> Result<SessionInfo, ManagerError> {
        if let Some(existing) = self.ctx.manager.find_call(&request.call_id) {
            return Ok(existing);
        }
        match directions {
            Directions::In => self.begin(TapMode::Listen, channel, request).await,
            Directions::Both => {
                let out = SessionRequest {
                    speaker: Some("out"),
                    ..request.clone()
                };
                let heard = SessionRequest {
                    speaker: Some("in"),
                    ..request
                };
                let info = self.begin(TapMode::Listen, channel, heard).await?;
                self.begin(TapMode::Listen, channel, out).await?;
                Ok(info)
            }
        }
    }

    async fn begin(
        self: &Arc<Self>,
        mode: TapMode,
        channel: &str,
        request: SessionRequest,
    ) -> Result<SessionInfo, ManagerError> {
        let call_id = request.call_id.clone();
        let request_spy = request.speaker.unwrap_or("in");
        let session = tap::reserve(&self.ctx, call_id, request).await?;
        let info = session.info.clone();
        let ids = TapIds::new(&info.session_id);
        let (events_tx, events_rx) = mpsc::channel(TAP_EVENTS);
        let channels = [channel.to_owned(), ids.snoop.clone(), ids.media.clone()];
        {
            let mut routes = self.lock_routes();
            for (i, id) in channels.iter().enumerate() {
                let route = Route {
                    tx: events_tx.clone(),
                    call: i == 0,
                };
                // Several taps may listen to one call (one per direction).
                routes.entry(id.clone()).or_default().push(route);
            }
        }
        *self.active.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        let tap = Tap {
            mode,
            spy: request_spy,
            channel: channel.to_owned(),
            ids,
            session,
            outcome: Outcome::new(self.ctx.config.stasis.until == StasisUntil::Final),
        };
        let controller = self.clone();
        tokio::spawn(async move {
            tap::run(controller.ctx.clone(), tap, events_rx).await;
            {
                let mut routes = controller.lock_routes();
                for id in &channels {
                    if let Some(list) = routes.get_mut(id) {
                        list.retain(|r| !r.tx.same_channel(&events_tx));
                        if list.is_empty() {
                            routes.remove(id);
                        }
                    }
                }
            }
            let mut active = controller.active.lock().unwrap_or_else(|p| p.into_inner());
            *active -= 1;
            if *active == 0 {
                controller.idle.notify_waiters();
            }
        });
        Ok(info)
    }

    /// Taps running now.
    pub fn active(&self) -> usize {
        *self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait until every tap has torn down (sessions are ended by the manager's shutdown).
    pub async fn wait_idle(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.active() > 0 {
            let idle = self.idle.notified();
            if self.active() == 0 || tokio::time::timeout_at(deadline, idle).await.is_err() {
                break;
            }
        }
        if self.active() > 0 {
            tracing::error!(server = %self.server(), taps = self.active(), "ARI taps still tearing down at shutdown");
        }
    }

    fn lock_routes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Route>>> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn forward(&self, channel: &str, event: TapEvent) -> bool {
        let senders: Vec<mpsc::Sender<TapEvent>> = match self.lock_routes().get(channel) {
            Some(list) => list.iter().map(|r| r.tx.clone()).collect(),
            None => return false,
        };
        for tx in senders {
            // Closed: the tap is finishing (e.g. the events of its own teardown).
            if let Err(mpsc::error::TrySendError::Full(event)) = tx.try_send(event.clone()) {
                tracing::warn!(server = %self.server(), %channel, ?event, "tap not reading its events; one dropped");
            }
        }
        true
    }

    async fn route(self: Arc<Self>, mut feed: mpsc::Receiver<Feed>) {
        let mut connected_before = false;
        while let Some(item) = feed.recv().await {
            match item {
                Feed::Connected => {
                    if connected_before {
                        // Three routes share a tap: tell each tap once (by its call's route).
                        let taps: Vec<mpsc::Sender<TapEvent>> = self
                            .lock_routes()
                            .values()
                            .flatten()
                            .filter(|r| r.call)
                            .map(|r| r.tx.clone())
                            .collect();
                        for tx in taps {
                            let _ = tx.try_send(TapEvent::Reconnected);
                        }
                    }
                    connected_before = true;
                }
                Feed::Lost { .. } => {}
                Feed::Event(message) => self.handle_event(message.event).await,
            }
        }
    }

    async fn handle_event(self: &Arc<Self>, event: AriEvent) {
        match event {
            AriEvent::StasisStart { args, channel, .. } => {
                let id = channel.id;
                if self.forward(
                    &id,
                    TapEvent::StasisStart {
                        channel: id.clone(),
                    },
                ) {
                    return;
                }
                if args.first().map(String::as_str) == Some(TAP_MARK) {
                    // One of ours from a tap that already ended: tear it down.
                    let _ = self.ctx.client.hangup(&id).await;
                    return;
                }
                if !self.ctx.config.stasis.enabled {
                    return;
                }
                let request = SessionRequest {
                    call_id: id.clone(),
                    engine_profile: self.ctx.config.stasis.engine_profile.clone(),
                    ..SessionRequest::default()
                };
                if let Err(e) = self.begin(TapMode::Stasis, &id, request).await {
                    tracing::warn!(server = %self.server(), channel = %id, error = %e, "cannot recognize the call that entered Stasis");
                }
            }
            AriEvent::StasisEnd { channel } => {
                let why = format!("channel {} left Stasis", channel.id);
                self.forward(
                    &channel.id.clone(),
                    TapEvent::Gone {
                        channel: channel.id,
                        why,
                    },
                );
            }
            AriEvent::ChannelHangupRequest { channel, cause, .. } => {
                let why = format!(
                    "channel {} hung up (cause {})",
                    channel.id,
                    cause.unwrap_or(0)
                );
                self.forward(
                    &channel.id.clone(),
                    TapEvent::Gone {
                        channel: channel.id,
                        why,
                    },
                );
            }
            AriEvent::ChannelDestroyed {
                channel, cause_txt, ..
            } => {
                let why = format!("channel {} destroyed ({cause_txt})", channel.id);
                self.forward(
                    &channel.id.clone(),
                    TapEvent::Gone {
                        channel: channel.id,
                        why,
                    },
                );
            }
            AriEvent::ChannelDtmfReceived {
                digit,
                duration_ms,
                channel,
            } => {
                // Only the call's own channel: a snoop does not carry the caller's keys.
                let is_call = self
                    .lock_routes()
                    .get(&channel.id)
                    .is_some_and(|list| list.iter().any(|r| r.call));
                if let (true, Some(digit)) = (is_call, digit.chars().next()) {
                    self.forward(&channel.id, TapEvent::Dtmf { digit, duration_ms });
                }
            }
            AriEvent::ChannelStateChange { .. } | AriEvent::Unknown { .. } => {}
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AriStartError {
    #[error("{0}")]
    Server(#[from] AriError),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen for AudioSocket on {addr} (ari.audiosocket_listen): {source}")]
    AudioSocket {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The slin rate of an AudioSocket externalMedia format (config allows slin and slin16).
fn audiosocket_rate(format: &str) -> u32 {
    match StreamFormat::from_asterisk(format) {
        Some(StreamFormat::SlinLe { rate }) => rate,
        _ => 8_000,
    }
}

/// Every configured server's controller.
pub struct AriHub {
    controllers: Vec<Arc<AriController>>,
    stop: watch::Sender<bool>,
}

impl AriHub {
    /// Start a controller per `[[ari.servers]]`; None when none is configured.
    pub async fn start(
        config: &AriConfig,
        manager: Arc<SessionManager>,
        publisher: Publisher,
        source: Arc<str>,
        metrics: Arc<Metrics>,
        media_host: String,
    ) -> Result<Option<Self>, AriStartError> {
        if config.servers.is_empty() {
            return Ok(None);
        }
        let audiosocket = match config.transport {
            MediaTransport::Rtp | MediaTransport::Websocket => None,
            MediaTransport::Audiosocket => Some(
                AudioSocketServer::bind(
                    config.audiosocket_listen,
                    audiosocket_rate(&config.format),
                    config.audiosocket_max_connections,
                    manager.clone(),
                    metrics.clone(),
                )
                .await
                .map_err(|source| AriStartError::AudioSocket {
                    addr: config.audiosocket_listen,
                    source,
                })?,
            ),
        };
        let shared = Arc::new(config.clone());
        let (stop, stopped) = watch::channel(false);
        let mut controllers = Vec::new();
        for (i, server) in config.servers.iter().enumerate() {
            let tls = server.tls.load(&format!("ari.servers[{i}].tls"))?;
            controllers.push(
                AriController::start(
                    server.clone(),
                    shared.clone(),
                    manager.clone(),
                    publisher.clone(),
                    source.clone(),
                    metrics.clone(),
                    media_host.clone(),
                    audiosocket.clone(),
                    stopped.clone(),
                    &tls,
                )
                .await?,
            );
        }
        Ok(Some(Self { controllers, stop }))
    }

    /// The server `id`, or the only one when `id` is None.
    pub fn server(&self, id: Option<&str>) -> Option<&Arc<AriController>> {
        match id {
            Some(id) => self.controllers.iter().find(|c| c.server() == id),
            None if self.controllers.len() == 1 => self.controllers.first(),
            None => None,
        }
    }

    pub fn server_ids(&self) -> Vec<String> {
        self.controllers
            .iter()
            .map(|c| c.server().to_owned())
            .collect()
    }

    /// Wait for taps to tear down (after the sessions were ended), then close the sockets.
    pub async fn shutdown(&self, timeout: Duration) {
        for controller in &self.controllers {
            controller.wait_idle(timeout).await;
        }
        let _ = self.stop.send(true);
    }
}
