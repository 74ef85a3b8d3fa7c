//! A fake Asterisk (an ARI subset plus externalMedia media) for the integration tests and one benchmark.
//!
//! A real Asterisk (23.4.1, `scripts/asterisk.sh`) is now the reference peer:
//! tests/asterisk_real.rs runs the scenarios of tests/ari.rs against it. The fake stays
//! for the faults a real one cannot be made to produce on demand (an ARI request answered
//! 500 or 409 once, the events socket dropped while the call goes on) and for fast runs.
//! It is not a general model of Asterisk: it does what the gateway's tests need, and where
//! it imitates Asterisk it follows ../shared/ASTERISK-NOTES.md ("Seen on 23.4.1" first).
//!
//! Checked against the real Asterisk by the same scenario (tests/asterisk_real.rs):
//! listen mode over RTP with hang-up teardown; Stasis mode answering, recognizing, setting
//! the result variables and continuing in the dialplan; both directions as two sessions
//! ended by one stop command; DTMF from `ChannelDtmfReceived` (RTP), AudioSocket `0x03`
//! and WebSocket `DTMF_END`; AudioSocket and WebSocket media in both modes; a hang-up
//! mid-utterance; a call gone before the snoop (404 "Provided channel was not found"); a
//! bridge taken away (media stops, the tap ends, the call goes on); a hang-up during
//! teardown; a call vanishing during setup; an Asterisk restart; wrong credentials; and
//! the externalMedia answers to mismatched encapsulation/transport (fixed here: the fake
//! answered 501 where Asterisk answers 400 with its own message, and named a missing
//! `external_host` differently). Also seen on the real one and deliberately not modelled:
//! a two-party mixing bridge runs as `simple_bridge`; a hung-up snoop lingers until a
//! media frame passes through the snooped channel (the audiohook detaches in the media
//! path), so a call that sends no media keeps it until the call ends; an AudioSocket
//! channel read with nothing queued holds its channel lock polling every 5 ms until the
//! app writes or closes (see src/ingest/audiosocket.rs).
//!
//! Behaviours taken from the notes:
//! - events: one text frame per event with `type`, `timestamp`
//!   (`2026-11-22T08:03:11.049+0000`), `application`, `asterisk_id`; Channel objects
//!   with id, name, state, protocol_id, caller, connected, accountcode, dialplan,
//!   creationtime, language; `ChannelDestroyed` cause 16 "Normal Clearing";
//!   `ChannelHangupRequest` with a cause; `ChannelDtmfReceived` on the caller's channel;
//!   auth by HTTP Basic or `api_key=user:pass`; several apps (`app=a,b`, `subscribeAll`);
//! - snoop (`spy=in` is the caller's voice; the target need not be in our app; a snoop
//!   sends a 20 ms frame per tick, silence when nothing is heard) and
//!   `/applications/{app}/subscription?eventSource=channel:{id}`;
//! - externalMedia: parameters in the query or the JSON body; `channelvars` only in the
//!   REST response (`UNICASTRTP_LOCAL_ADDRESS`/`_PORT`, `AUDIOSOCKET_UUID`/`_SERVICE`,
//!   `MEDIA_WEBSOCKET_CONNECTION_ID`/`_OPTIMAL_FRAME_SIZE`), never in StasisStart;
//! - RTP sent from exactly the advertised socket: ulaw PT 0 / 160 B, alaw PT 8 / 160 B,
//!   slin PT 10 / 320 B big-endian, slin16 PT 118 / 640 B; 20 ms; one random SSRC per
//!   channel, random first sequence, first timestamp = the frame size, no marker on the
//!   first packet; a stream that resumes after a pause keeps SSRC and sequence, sets the
//!   marker and jumps the timestamp by the time elapsed;
//! - AudioSocket (Asterisk is the TCP client): `01 00 10` + the 16 UUID bytes at once,
//!   nothing more until bridged, then `10 01 40` + 320 B (slin) or `12 02 80` + 640 B
//!   (slin16) little-endian every 20 ms (u-law/A-law bytes are still labelled 0x10);
//!   DTMF as 0x03; no 0x00 frame on hangup, just a TCP close; the app's `00 00 00`, its
//!   close, or anything but audio destroys the channel;
//! - WebSocket media, server mode: the channel stays Down without StasisStart until the
//!   app connects to `/media/<connection id>`; text `MEDIA_START ...` first; binary frames
//!   every 20 ms (ulaw 160 B, slin 320 B, slin16 640 B, little-endian); a second
//!   connection gets 409; hangup closes with code 1000; the app closing gives
//!   ChannelHangupRequest (cause 16), StasisEnd, ChannelDestroyed; DTMF as `DTMF_END`.
//!
//! Where the notes are silent, status codes and messages follow Asterisk's ARI
//! resources (`res/ari/resource_channels.c`, `resource_applications.c`,
//! `channels/chan_websocket.c`): 409 "Channel not in Stasis application" for control
//! operations on a channel outside Stasis, 422 "Channel not in Stasis application" from
//! addChannel before StasisStart, 422 "Event source does not exist" when subscribing to
//! an unknown channel, 501 for unsupported encapsulation/transport pairs. A channel
//! created through ARI whose app has no events socket at StasisStart time is hung up
//! (Stasis() fails for an unregistered app); so is one that leaves Stasis.
//!
//! Not implemented: originate, playback, recording, g722/opus formats, WebSocket
//! client mode, RFC 4733 on RTP (Asterisk sends none there), audio the app sends back
//! (ignored), bridge events other than ChannelEnteredBridge/ChannelLeftBridge.
//!
//! TLS: [`FakeAsterisk::start_with_tls`] serves HTTPS and WSS (as Asterisk's `tlsenable`)
//! and records how each `/ari/events` request authenticated ([`FakeAsterisk::events_requests`]).
//!
//! Layout: `ari` (HTTP entry, routing, REST handlers), `external` (externalMedia and the
//! media WebSocket upgrade), `request` (auth, parameters), `events` (ARI JSON, events
//! socket), `model` (channels, Stasis, hangups), `bridging` (bridges and the media flows
//! they start), `media` (frames, RTP numbering, AudioSocket and WebSocket transports).

#![allow(dead_code)]

mod ari;
mod bridging;
mod events;
mod external;
mod media;
mod model;
mod request;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use model::State;

/// Credentials and identity of the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeConfig {
    /// ARI user (HTTP Basic user, or the part of `api_key` before the colon).
    pub username: String,
    /// ARI password.
    pub password: String,
    /// `asterisk_id` of every event and `system.entity_id` of `/asterisk/info`.
    pub asterisk_id: String,
}

impl Default for FakeConfig {
    /// `asterisk` / `asterisk`, id `02:fc:00:00:00:01`.
    fn default() -> Self {
        Self {
            username: "asterisk".into(),
            password: "asterisk".into(),
            asterisk_id: "02:fc:00:00:00:01".into(),
        }
    }
}

/// Channel and bridge bookkeeping. `*_created` / `*_destroyed` count only what was
/// created through ARI (snoop and externalMedia channels, bridges); channels and bridges
/// that vanish in a [`FakeAsterisk::restart`] are not counted as destroyed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub channels_created: usize,
    pub channels_destroyed: usize,
    pub bridges_created: usize,
    pub bridges_destroyed: usize,
    /// Channels created through ARI that exist now.
    pub live_channels: usize,
    /// Bridges that exist now.
    pub live_bridges: usize,
    /// Callers' channels ([`FakeAsterisk::add_call`]) that exist now.
    pub live_calls: usize,
}

/// Handle to a running fake Asterisk; cheap to clone (all clones drive the same fake).
#[derive(Clone)]
pub struct FakeAsterisk {
    inner: Arc<Inner>,
}

struct Inner {
    config: FakeConfig,
    addr: SocketAddr,
    /// Serve HTTPS / WSS with this certificate instead of plain HTTP.
    tls: Option<asr_gateway::tls::ServerTls>,
    /// Every `/ari/events` request: (carried an `Authorization` header, its query string).
    events_requests: Mutex<Vec<(bool, String)>>,
    state: Mutex<State>,
    rules: Mutex<Vec<FailRule>>,
    log: Mutex<Vec<(String, String)>>,
    counters: Arc<media::Counters>,
    server: Mutex<Option<Server>>,
    stasis_delay_ms: AtomicU64,
}

struct FailRule {
    method: String,
    path: String,
    status: u16,
    left: usize,
}

struct Server {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// StasisStart for a channel created through ARI comes this long after the response
/// unless changed with [`FakeAsterisk::set_stasis_start_delay`].
const DEFAULT_STASIS_DELAY: Duration = Duration::from_millis(20);

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

impl FakeAsterisk {
    /// Starts the fake on 127.0.0.1 with a random port. Needs a tokio runtime.
    pub async fn start(config: FakeConfig) -> FakeAsterisk {
        Self::start_with_tls(config, None).await
    }

    /// Like [`Self::start`], serving HTTPS and WSS with `tls` when given.
    pub async fn start_with_tls(
        config: FakeConfig,
        tls: Option<asr_gateway::tls::ServerTls>,
    ) -> FakeAsterisk {
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0))).expect("fake Asterisk: bind");
        let addr = listener.local_addr().expect("fake Asterisk: local address");
        let counters = Arc::new(media::Counters::default());
        let state = State::new(config.asterisk_id.clone(), counters.clone());
        let fake = FakeAsterisk {
            inner: Arc::new(Inner {
                config,
                addr,
                tls,
                events_requests: Mutex::new(Vec::new()),
                state: Mutex::new(state),
                rules: Mutex::new(Vec::new()),
                log: Mutex::new(Vec::new()),
                counters,
                server: Mutex::new(None),
                stasis_delay_ms: AtomicU64::new(DEFAULT_STASIS_DELAY.as_millis() as u64),
            }),
        };
        let server = fake.serve(listener);
        *lock(&fake.inner.server) = Some(server);
        fake
    }

    fn serve(&self, listener: TcpListener) -> Server {
        let (stop, stopped) = oneshot::channel::<()>();
        let app = axum::Router::new()
            .fallback(ari::handle)
            .with_state(self.clone());
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = match &self.inner.tls {
            Some(tls) => {
                let listener = asr_gateway::tls::TlsListener::new(listener, tls)
                    .expect("fake Asterisk: TLS listener");
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown)
                        .await;
                })
            }
            None => tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await;
            }),
        };
        Server { stop, task }
    }

    /// `http://127.0.0.1:PORT` (ARI is under `/ari`, media WebSockets under `/media`);
    /// `https://localhost:PORT` when serving TLS.
    pub fn url(&self) -> String {
        match self.inner.tls {
            Some(_) => format!("https://localhost:{}", self.inner.addr.port()),
            None => format!("http://{}", self.inner.addr),
        }
    }

    /// `ws://127.0.0.1:PORT` (events at `/ari/events`, media at `/media/<id>`);
    /// `wss://localhost:PORT` when serving TLS.
    pub fn ws_url(&self) -> String {
        match self.inner.tls {
            Some(_) => format!("wss://localhost:{}", self.inner.addr.port()),
            None => format!("ws://{}", self.inner.addr),
        }
    }

    /// Every `/ari/events` request so far: (carried an `Authorization` header, its query).
    pub fn events_requests(&self) -> Vec<(bool, String)> {
        lock(&self.inner.events_requests).clone()
    }

    /// The HTTP server's address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The configuration the fake was started with.
    pub fn config(&self) -> &FakeConfig {
        &self.inner.config
    }

    /// A caller's channel (state Up, name like `PJSIP/alice-00000001`, unique id like
    /// `1795334591.22`), not in any Stasis app. `voice` is a mono WAV: what the caller
    /// says (the `in` direction). It plays once, from the moment media of this caller
    /// first flows to an externalMedia channel (through a snoop with spy=in/both, or the
    /// caller's channel bridged directly); later listeners hear the same timeline;
    /// after it, silence. Panics if the WAV cannot be read.
    pub async fn add_call(&self, voice: &Path) -> String {
        let voice = media::Voice::load(voice);
        self.state().add_caller(voice)
    }

    /// The channel runs `Stasis(app, args)`: StasisStart to `app`. As in Asterisk,
    /// Stasis() fails when no events socket is connected for `app`: then nothing
    /// happens and the channel stays out of Stasis (see [`Self::wait_for_app`]).
    pub async fn enter_stasis(&self, channel_id: &str, app: &str, args: &[&str]) {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let mut st = self.state();
        if st.app_connected(app) {
            st.stasis_start(channel_id, app, &args);
        }
    }

    /// The caller hangs up: ChannelHangupRequest (cause 16), ChannelLeftBridge if
    /// bridged, StasisEnd (if in Stasis), ChannelDestroyed (16, "Normal Clearing").
    /// Then its snoop channels are destroyed (StasisEnd + ChannelDestroyed each), which
    /// stops their media, and AudioSocket / WebSocket externalMedia channels bridged
    /// with the caller or its snoops are closed (TCP close / close code 1000) and
    /// destroyed. RTP externalMedia channels stay until deleted.
    pub async fn hangup(&self, channel_id: &str) {
        self.state().destroy(channel_id, true);
    }

    /// ChannelDtmfReceived on the channel; if an AudioSocket or media WebSocket is
    /// bridged with the channel or one of its snoops, also a 0x03 frame / a
    /// `DTMF_END digit:<d> channel_id:<ext id>` text message on it.
    pub async fn send_dtmf(&self, channel_id: &str, digit: char, duration_ms: u32) {
        self.state().dtmf(channel_id, digit, duration_ms);
    }

    /// Closes every events WebSocket (close code 1000); the gateway must reconnect.
    /// Channels, bridges and media are kept. Events emitted while an app has no socket
    /// are lost.
    pub async fn drop_event_sockets(&self) {
        self.state().drop_sockets(false);
    }

    /// Asterisk restarts: every socket is closed abruptly, all channels and bridges
    /// vanish without events, media stops, subscriptions and registered apps are
    /// forgotten; the HTTP server refuses connections for `down`, then listens again
    /// on the same port. Returns once it listens again.
    pub async fn restart(&self, down: Duration) {
        let server = lock(&self.inner.server).take();
        let mut task = None;
        if let Some(server) = server {
            let _ = server.stop.send(());
            task = Some(server.task);
        }
        self.state().wipe();
        if let Some(mut task) = task {
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        tokio::time::sleep(down).await;
        // The port was ours a moment ago; retry briefly in case the kernel lags.
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match listen(self.inner.addr) {
                Ok(listener) => break listener,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!(
                    "fake Asterisk: cannot listen again on {}: {e}",
                    self.inner.addr
                ),
            }
        };
        let server = self.serve(listener);
        *lock(&self.inner.server) = Some(server);
    }

    /// The next `count` requests whose method equals `method` (case-insensitive) and
    /// whose path contains `path_contains` (e.g. `/snoop`, `/bridges`) fail with
    /// `status` and an ARI error body `{"message": ...}`, after authentication and
    /// before anything else happens. Applies to `/ari/events` and `/media/` too.
    pub fn fail_next(&self, method: &str, path_contains: &str, status: u16, count: usize) {
        if count == 0 {
            return;
        }
        lock(&self.inner.rules).push(FailRule {
            method: method.to_ascii_uppercase(),
            path: path_contains.to_owned(),
            status,
            left: count,
        });
    }

    /// Consumes one matching failure rule, if any: its status.
    fn take_failure(&self, method: &str, path: &str) -> Option<u16> {
        let mut rules = lock(&self.inner.rules);
        let index = rules
            .iter()
            .position(|r| r.method == method && path.contains(&r.path))?;
        let status = rules[index].status;
        rules[index].left -= 1;
        if rules[index].left == 0 {
            rules.remove(index);
        }
        Some(status)
    }

    /// Channel and bridge counts (see [`Counts`]).
    pub fn counts(&self) -> Counts {
        self.state().counts()
    }

    /// (method, path) of every request under `/ari`, in arrival order, including
    /// refused ones (401, injected failures). The path has no query string.
    pub fn requests(&self) -> Vec<(String, String)> {
        lock(&self.inner.log).clone()
    }

    fn log_request(&self, method: &str, path: &str) {
        lock(&self.inner.log).push((method.to_owned(), path.to_owned()));
    }

    fn log_events_request(&self, authorization: bool, query: &str) {
        lock(&self.inner.events_requests).push((authorization, query.to_owned()));
    }

    /// RTP packets sent by all externalMedia channels so far.
    pub fn rtp_packets_sent(&self) -> u64 {
        self.inner.counters.rtp_packets.load(Ordering::Relaxed)
    }

    /// Media frames sent by all externalMedia channels so far, every transport
    /// (RTP packets, AudioSocket audio frames, WebSocket binary frames).
    pub fn media_frames_sent(&self) -> u64 {
        self.inner.counters.frames.load(Ordering::Relaxed)
    }

    /// Whether a channel with this id exists now (callers included).
    pub fn channel_exists(&self, id: &str) -> bool {
        self.state().channels.contains_key(id)
    }

    /// The channel as `GET /ari/channels/{id}` would return it.
    pub fn channel(&self, id: &str) -> Option<Value> {
        let st = self.state();
        st.channels.get(id).map(events::channel_json)
    }

    /// Ids of the channels in the bridge, if it exists.
    pub fn bridge_members(&self, bridge_id: &str) -> Option<Vec<String>> {
        self.state()
            .bridges
            .get(bridge_id)
            .map(|b| b.channels.clone())
    }

    /// Apps with at least one connected events socket, sorted.
    pub fn connected_apps(&self) -> Vec<String> {
        self.state().connected_apps()
    }

    /// Waits until an events socket for `app` is connected; false on timeout.
    pub async fn wait_for_app(&self, app: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.state().app_connected(app) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Delay between the REST response that creates a snoop or externalMedia channel
    /// and its StasisStart (default 20 ms).
    pub fn set_stasis_start_delay(&self, delay: Duration) {
        self.inner
            .stasis_delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// From now on, StasisStart of channels created through ARI (snoop, externalMedia)
    /// is held back until [`Self::release_stasis_starts`]: lets a test see the 422 of
    /// an early addChannel deterministically.
    pub fn hold_stasis_starts(&self) {
        self.state().hold_starts = true;
    }

    /// Emits the held StasisStarts (in creation order) and stops holding.
    pub fn release_stasis_starts(&self) {
        let mut st = self.state();
        st.hold_starts = false;
        st.start_due(u64::MAX);
    }

    /// StasisStart for a channel just created through ARI, after the configured delay.
    /// Called with the state locked (`st`).
    fn schedule_stasis_start(&self, st: &mut State, id: String) {
        let delay = Duration::from_millis(self.inner.stasis_delay_ms.load(Ordering::Relaxed));
        let Some(order) = st.channels.get(&id).map(|c| c.order) else {
            return;
        };
        st.pending.insert(order, id);
        let fake = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mut st = fake.state();
            if !st.hold_starts {
                st.start_due(order);
            }
        });
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }
}

/// Locks, ignoring poisoning (a panicking test thread must not hide the real failure).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
