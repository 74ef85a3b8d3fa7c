//! The session manager: reserves a port per call, starts its task and ASR stream, ends it on request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::asr::client::AsrClient;
use crate::asr::types::StreamOptions;
use crate::config::Config;
use crate::events::live_sessions::LiveSessions;
use crate::events::model::EndCause;
use crate::events::publisher::Publisher;
use crate::ingest::ports::PortPool;
use crate::ingest::rtp_udp::{
    self, MediaInput, OptionsUpdate, OwnerNote, SessionCommand, SessionContext,
};
use crate::media::session::{InputError, Session, SessionConfig};
use crate::metrics::Metrics;

/// What call logic asks for when reserving a port. Unset options take the config's values.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    pub call_id: String,
    pub language: Option<String>,
    pub interim_results: Option<bool>,
    pub hints: Option<Vec<String>>,
    /// The engine profile (`asr.profiles`) for this call; unset = `default`.
    pub engine_profile: Option<String>,
    /// End the session after this long without media, instead of `session.idle_timeout_ms`
    /// (set by the ARI controller: a snoop sends continuously, so silence there means gone).
    #[serde(skip)]
    pub media_timeout: Option<Duration>,
    /// Which direction of an ARI channel this session hears (`in` or `out`), when call logic
    /// asked for both as separate streams; a call then has one session per speaker.
    #[serde(skip)]
    pub speaker: Option<&'static str>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionInfo {
    pub session_id: String,
    pub call_id: String,
    pub port: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// The call id as [`crate::ids::preview`] shows it.
    #[error("call_id {0} is invalid: use {rule}", rule = crate::ids::ID_RULE)]
    InvalidCallId(String),
    /// The profile name as [`crate::ids::preview`] shows it.
    #[error("engine profile {0} is not configured (asr.profiles)")]
    UnknownProfile(String),
    #[error("no free RTP port in {min}..={max}")]
    NoFreePort { min: u16, max: u16 },
    #[error("no session {0}")]
    NotFound(String),
    #[error("no active session for call {0}")]
    CallNotFound(String),
    #[error("call {0} already has a session on this gateway")]
    CallActive(String),
    #[error("the gateway is shutting down")]
    ShuttingDown,
    #[error("cannot start the session: {0}")]
    Session(#[from] InputError),
}

/// A session started by an owner that watches it (the ARI controller).
pub struct OwnedSession {
    pub info: SessionInfo,
    /// Resolves once the session task has ended (after its `asr.session.ended`).
    pub ended: oneshot::Receiver<()>,
    /// The session's finals, as published.
    pub notes: mpsc::Receiver<OwnerNote>,
    /// For a stream transport: where its RTP-framed audio goes (dropping it ends the call).
    pub frames: Option<mpsc::Sender<Vec<u8>>>,
}

/// How a session's media arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// A reserved UDP port (RTP).
    Udp,
    /// A stream transport task hands RTP-framed audio over a channel; the name goes in
    /// `asr.session.started`'s `transport`.
    Stream(&'static str),
}

/// Frames queued between a stream transport and its session (20 ms each).
const STREAM_FRAMES: usize = 64;

/// What `start` gives back: the session, its end notice if new, a stream transport's sender.
type StartedSession = (
    SessionInfo,
    Option<oneshot::Receiver<()>>,
    Option<mpsc::Sender<Vec<u8>>>,
);

/// Finals an owner may fall behind on before it misses copies (never the events).
const OWNER_NOTES: usize = 32;

struct Entry {
    call_id: String,
    speaker: Option<&'static str>,
    port: u16,
    commands: mpsc::Sender<SessionCommand>,
}

pub struct SessionManager {
    config: Arc<Config>,
    ports: PortPool,
    sessions: Mutex<HashMap<String, Entry>>,
    ended: Notify,
    asr: AsrClient,
    publisher: Publisher,
    metrics: Arc<Metrics>,
    source: Arc<str>,
    closing: std::sync::atomic::AtomicBool,
    /// The on-disk list of live sessions, when the gateway keeps one (see `events::live_sessions`).
    live: std::sync::OnceLock<Arc<LiveSessions>>,
}

impl SessionManager {
    pub fn new(
        config: Arc<Config>,
        asr: AsrClient,
        publisher: Publisher,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let ports = PortPool::new(config.server.rtp_port_min, config.server.rtp_port_max);
        metrics.ports_free.set(ports.free() as i64);
        Arc::new(Self {
            source: config.event_source().into(),
            config,
            ports,
            sessions: Mutex::new(HashMap::new()),
            ended: Notify::new(),
            asr,
            publisher,
            metrics,
            closing: std::sync::atomic::AtomicBool::new(false),
            live: std::sync::OnceLock::new(),
        })
    }

    /// Record every session's start and end in `live`, so a crash leaves a list to end.
    pub fn track_live_sessions(&self, live: Arc<LiveSessions>) {
        let _ = self.live.set(live);
    }

    /// Reserve a port, bind it and start the session. The first source to send to it owns it.
    /// Idempotent per call: a call already active here gets its existing session back, so a
    /// redelivered start command does not open a second session.
    pub async fn create(
        self: &Arc<Self>,
        request: SessionRequest,
    ) -> Result<SessionInfo, ManagerError> {
        self.start(request, None, MediaKind::Udp)
            .await
            .map(|(info, _, _)| info)
    }

    /// As `create`, with a receiver that fires when the session ends (None when the call
    /// already had a session: the existing one is returned).
    pub async fn create_watched(
        self: &Arc<Self>,
        request: SessionRequest,
    ) -> Result<(SessionInfo, Option<oneshot::Receiver<()>>), ManagerError> {
        self.start(request, None, MediaKind::Udp)
            .await
            .map(|(info, ended, _)| (info, ended))
    }

    /// Start a session for an owner that watches it end and reads its finals. Unlike
    /// `create`, a call that already has a session here is refused (`CallActive`).
    pub async fn create_owned(
        self: &Arc<Self>,
        request: SessionRequest,
        media: MediaKind,
    ) -> Result<OwnedSession, ManagerError> {
        if self
            .find_speaker(&request.call_id, request.speaker)
            .is_some()
        {
            return Err(ManagerError::CallActive(request.call_id));
        }
        let (notes_tx, notes) = mpsc::channel(OWNER_NOTES);
        let (info, ended, frames) = self.start(request, Some(notes_tx), media).await?;
        match ended {
            Some(ended) => Ok(OwnedSession {
                info,
                ended,
                notes,
                frames,
            }),
            None => Err(ManagerError::CallActive(info.call_id)),
        }
    }

    /// Accept the session's RTP only from `addr` from now on.
    pub async fn lock_source(
        &self,
        session_id: &str,
        addr: SocketAddr,
    ) -> Result<(), ManagerError> {
        self.tell(session_id, SessionCommand::LockSource(addr))
            .await
    }

    /// A DTMF digit heard on the session's call.
    pub async fn dtmf(
        &self,
        session_id: &str,
        digit: char,
        duration_ms: u32,
    ) -> Result<(), ManagerError> {
        self.tell(session_id, SessionCommand::Dtmf(digit, duration_ms))
            .await
    }

    async fn tell(&self, session_id: &str, command: SessionCommand) -> Result<(), ManagerError> {
        let commands = {
            let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            sessions.get(session_id).map(|e| e.commands.clone())
        };
        let commands = commands.ok_or_else(|| ManagerError::NotFound(session_id.into()))?;
        commands
            .send(command)
            .await
            .map_err(|_| ManagerError::NotFound(session_id.into()))
    }

    /// The session for `request`; with the receiver that fires when it ends if it is new
    /// (None when the call already had one), and the frame sender of a stream transport.
    async fn start(
        self: &Arc<Self>,
        request: SessionRequest,
        owner: Option<mpsc::Sender<OwnerNote>>,
        media: MediaKind,
    ) -> Result<StartedSession, ManagerError> {
        if self.closing.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ManagerError::ShuttingDown);
        }
        validate_call_id(&request.call_id)?;
        if let Some(profile) = &request.engine_profile {
            if !self.asr.router().has_profile(profile) {
                return Err(ManagerError::UnknownProfile(crate::ids::preview(profile)));
            }
        }
        if let Some(existing) = self.find_speaker(&request.call_id, request.speaker) {
            return Ok((existing, None, None));
        }
        let session_id = uuid::Uuid::new_v4().to_string();
        // Port 0: a stream transport holds no UDP port.
        let (input, port, frames, transport, local_addr) = match media {
            MediaKind::Udp => {
                let (socket, port) = self.bind_free_port().await?;
                let local = SocketAddr::new(self.config.server.rtp_bind, port).to_string();
                (MediaInput::Udp(socket), port, None, "rtp", local)
            }
            MediaKind::Stream(transport) => {
                let (tx, rx) = mpsc::channel(STREAM_FRAMES);
                (
                    MediaInput::Frames(rx),
                    0,
                    Some(tx),
                    transport,
                    transport.to_owned(),
                )
            }
        };
        let mut config = self.session_config(&request, local_addr);
        config.transport = transport;
        let mut session = match Session::new(config, Instant::now()) {
            Ok(s) => s,
            Err(e) => {
                self.release(port);
                return Err(e.into());
            }
        };
        let (asr_tx, asr_requests) = mpsc::channel(self.config.session.asr_queue);
        let (asr_updates, asr_rx) = mpsc::channel(64);
        let options = StreamOptions {
            session_id: session_id.clone(),
            call_id: request.call_id.clone(),
            sample_rate: self.config.asr.sample_rate,
            language: request
                .language
                .clone()
                .unwrap_or_else(|| self.config.asr.language.clone()),
            interim_results: request
                .interim_results
                .unwrap_or(self.config.asr.interim_results),
            hints: request
                .hints
                .clone()
                .unwrap_or_else(|| self.config.asr.hints.clone()),
            engine_profile: request.engine_profile.clone().unwrap_or_default(),
        };
        let (commands, commands_rx) = mpsc::channel(8);
        {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((id, entry)) = sessions
                .iter()
                .find(|(_, e)| e.call_id == request.call_id && e.speaker == request.speaker)
            {
                // Lost a race with another start for the same call: use that session.
                let existing = SessionInfo {
                    session_id: id.clone(),
                    call_id: entry.call_id.clone(),
                    port: entry.port,
                };
                drop(sessions);
                self.release(port);
                return Ok((existing, None, None));
            }
            let entry = Entry {
                call_id: request.call_id.clone(),
                speaker: request.speaker,
                port,
                commands,
            };
            sessions.insert(session_id.clone(), entry);
        }
        if let Some(live) = self.live.get() {
            live.started(&session_id, &request.call_id);
        }
        self.asr
            .spawn_session(options.clone(), asr_requests, asr_updates);
        self.metrics.sessions_started.inc();
        self.metrics.sessions_active.add(1);
        let ctx = SessionContext {
            session_id: session_id.clone().into(),
            call_id: request.call_id.clone().into(),
            source: self.source.clone(),
            publisher: self.publisher.clone(),
            metrics: self.metrics.clone(),
            options,
            owner,
        };
        rtp_udp::publish_started(&mut session, &ctx);
        let manager = self.clone();
        let id = session_id.clone();
        let (ended_tx, ended) = oneshot::channel();
        tokio::spawn(async move {
            rtp_udp::run(input, session, ctx, asr_tx, asr_rx, commands_rx).await;
            manager
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            manager.release(port);
            if let Some(live) = manager.live.get() {
                live.ended(&id);
            }
            manager.metrics.sessions_active.add(-1);
            manager.ended.notify_waiters();
            let _ = ended_tx.send(());
        });
        let info = SessionInfo {
            session_id,
            call_id: request.call_id,
            port,
        };
        Ok((info, Some(ended), frames))
    }

    /// Ask a session to end; it emits `asr.session.ended` once its finals are in.
    pub fn stop(&self, session_id: &str, cause: EndCause) -> Result<(), ManagerError> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let entry = sessions
            .get(session_id)
            .ok_or_else(|| ManagerError::NotFound(session_id.into()))?;
        // A full or closed channel means the session is already ending.
        let _ = entry.commands.try_send(SessionCommand::Stop(cause));
        Ok(())
    }

    /// The session of an active call, if any.
    pub fn find_call(&self, call_id: &str) -> Option<SessionInfo> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions
            .iter()
            .find(|(_, e)| e.call_id == call_id)
            .map(|(id, e)| SessionInfo {
                session_id: id.clone(),
                call_id: e.call_id.clone(),
                port: e.port,
            })
    }

    /// The session of a call for one speaker (None: the call's only stream).
    fn find_speaker(&self, call_id: &str, speaker: Option<&'static str>) -> Option<SessionInfo> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions
            .iter()
            .find(|(_, e)| e.call_id == call_id && e.speaker == speaker)
            .map(|(id, e)| SessionInfo {
                session_id: id.clone(),
                call_id: e.call_id.clone(),
                port: e.port,
            })
    }

    /// Ids of every session of a call (one, or one per speaker).
    fn call_sessions(&self, call_id: &str) -> Vec<String> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions
            .iter()
            .filter(|(_, e)| e.call_id == call_id)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// End the sessions of a call (stop command).
    pub fn stop_call(&self, call_id: &str, cause: EndCause) -> Result<SessionInfo, ManagerError> {
        let info = self
            .find_call(call_id)
            .ok_or_else(|| ManagerError::CallNotFound(call_id.into()))?;
        for id in self.call_sessions(call_id) {
            let _ = self.stop(&id, cause);
        }
        Ok(info)
    }

    /// Change a call's recognition options (update command).
    pub async fn update_call(
        &self,
        call_id: &str,
        update: OptionsUpdate,
    ) -> Result<SessionInfo, ManagerError> {
        let info = self
            .find_call(call_id)
            .ok_or_else(|| ManagerError::CallNotFound(call_id.into()))?;
        for id in self.call_sessions(call_id) {
            self.tell(&id, SessionCommand::Update(update.clone()))
                .await
                .map_err(|_| ManagerError::CallNotFound(call_id.into()))?;
        }
        Ok(info)
    }

    /// The engine sample rate sessions run VAD at (to validate VAD updates).
    pub fn engine_rate(&self) -> u32 {
        self.config.asr.sample_rate
    }

    /// Host to give call logic for `external_host`, when it cannot be taken from a request.
    /// The engines sessions stream to, with their counters.
    pub fn engines(&self) -> &crate::asr::router::Router {
        self.asr.router()
    }

    pub fn advertised_host(&self) -> String {
        match &self.config.server.advertise_host {
            Some(host) => host.clone(),
            None if self.config.server.rtp_bind.is_unspecified() => "127.0.0.1".to_owned(),
            None => self.config.server.rtp_bind.to_string(),
        }
    }

    /// True once `shutdown` has begun: no new sessions are taken.
    pub fn is_shutting_down(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn active(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// End every session and wait (up to `timeout`) for their last events.
    pub async fn shutdown(&self, timeout: Duration) {
        self.closing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let ids: Vec<String> = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        for id in ids {
            let _ = self.stop(&id, EndCause::Shutdown);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while self.active() > 0 {
            let ended = self.ended.notified();
            if self.active() == 0 || tokio::time::timeout_at(deadline, ended).await.is_err() {
                break;
            }
        }
        let left = self.active();
        if left > 0 {
            tracing::error!(
                sessions = left,
                "shutdown timed out with sessions still open"
            );
        }
    }

    async fn bind_free_port(&self) -> Result<(UdpSocket, u16), ManagerError> {
        let range = self.ports.free();
        for _ in 0..range {
            let Some(port) = self.ports.take() else { break };
            match UdpSocket::bind(SocketAddr::new(self.config.server.rtp_bind, port)).await {
                Ok(socket) => {
                    self.metrics.ports_free.set(self.ports.free() as i64);
                    return Ok((socket, port));
                }
                Err(err) => {
                    tracing::warn!(port, error = %err, "RTP port busy outside the gateway; trying the next");
                    self.ports.release(port);
                }
            }
        }
        self.metrics.reservations_rejected.inc();
        Err(ManagerError::NoFreePort {
            min: self.config.server.rtp_port_min,
            max: self.config.server.rtp_port_max,
        })
    }

    fn release(&self, port: u16) {
        if port == 0 {
            return;
        }
        self.ports.release(port);
        self.metrics.ports_free.set(self.ports.free() as i64);
    }

    fn session_config(&self, request: &SessionRequest, local_addr: String) -> SessionConfig {
        let c = &self.config;
        SessionConfig {
            mode: c.asr.mode,
            engine_rate: c.asr.sample_rate,
            chunk_ms: c.asr.chunk_ms,
            interim_results: request.interim_results.unwrap_or(c.asr.interim_results),
            vad: c.vad(),
            payload_types: c.payload_map().expect("validated at load"),
            jitter_holdback: Duration::from_millis(c.session.jitter_holdback_ms),
            jitter_max_packets: c.session.jitter_max_packets,
            idle_timeout: request.media_timeout.or(c.idle_timeout()),
            first_media_timeout: (c.session.first_media_timeout_ms > 0)
                .then(|| Duration::from_millis(c.session.first_media_timeout_ms)),
            // The client reports its own timeout first; this is the backstop.
            final_timeout: Duration::from_millis(c.asr.final_timeout_ms) + Duration::from_secs(2),
            transport: "rtp",
            local_addr,
            speaker: request.speaker,
            call_retry: c.call_retry(),
        }
    }
}

fn validate_call_id(call_id: &str) -> Result<(), ManagerError> {
    if crate::ids::is_safe_id(call_id) {
        Ok(())
    } else {
        Err(ManagerError::InvalidCallId(crate::ids::preview(call_id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_ids_are_checked() {
        assert!(validate_call_id("1795334591.22").is_ok());
        assert!(validate_call_id("call:abc-1_2").is_ok());
        assert!(validate_call_id("").is_err());
        assert!(validate_call_id("a b").is_err());
        assert!(validate_call_id("x.*.y").is_err());
        assert!(validate_call_id(&"a".repeat(129)).is_err());
    }
}
