//! AudioSocket server: Asterisk dials in over TCP per externalMedia channel; audio goes to the
//! session registered for the call's UUID, framed as RTP (`rtp_framing`).
//!
//! Asterisk sends `0x01` + the UUID first, then 20 ms slin frames (little-endian) once the
//! channel is bridged, DTMF as `0x03`, and closes TCP on hangup (no `0x00`). The gateway
//! closing the socket destroys the channel. An unknown UUID, a first frame that is not a
//! UUID, or a fatal framing error closes the connection and is counted.
//!
//! The connection closes the moment its session stops taking media, never later. Asterisk
//! 23's AudioSocket channel reads the app's side of the socket while holding its channel
//! lock, and when it is woken with nothing to read it polls every 5 ms until a byte or
//! the close arrives (`ast_audiosocket_receive_frame_with_hangup`); ARI requests that look
//! channels up by id queue behind the lock meanwhile. A connection kept open (and silent)
//! after its session ended froze a whole Asterisk under a burst of calls (issue 9).
//!
//! While a session runs, the same wait can start whenever Asterisk reads the channel with
//! nothing queued (its Stasis loop does, after running an ARI command on the channel), and
//! it blocks the frames Asterisk would send us. So when Asterisk has sent nothing for
//! [`KEEPALIVE_AFTER`] the gateway writes one frame of silence in the channel's format:
//! that read returns, and the silence goes nowhere (the externalMedia channel is bridged
//! only with the snoop, which takes no audio with `whisper=none`). A healthy tap receives a
//! frame every 20 ms and writes nothing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::ingest::manager::SessionManager;
use crate::ingest::rtp_framing::{RtpFramer, StreamFormat};
use crate::media::audiosocket::{encode_silence, Decoder, FrameKind};
use crate::metrics::Metrics;

/// How long a new connection may take to name its call.
const UUID_WAIT: Duration = Duration::from_secs(5);
/// Asterisk quiet this long on a named connection: write a frame of silence.
pub const KEEPALIVE_AFTER: Duration = Duration::from_millis(60);
/// Length of that frame.
const KEEPALIVE_MS: u32 = 20;

/// A session waiting for (or receiving) its AudioSocket connection.
struct Route {
    session_id: String,
    frames: mpsc::Sender<Vec<u8>>,
}

pub struct AudioSocketServer {
    local_addr: SocketAddr,
    routes: Mutex<HashMap<String, Route>>,
    manager: Arc<SessionManager>,
    metrics: Arc<Metrics>,
    /// The keepalive frame: silence at the rate externalMedia was asked for.
    silence: Vec<u8>,
    /// Connections open at once, named or not; more are closed as they arrive (counted).
    slots: Arc<tokio::sync::Semaphore>,
}

impl AudioSocketServer {
    /// Listen on `addr` and serve connections until the process ends. `rate` is the slin
    /// rate the channels are created with (8000 or 16000 Hz).
    pub async fn bind(
        addr: SocketAddr,
        rate: u32,
        max_connections: usize,
        manager: Arc<SessionManager>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Arc<Self>> {
        let silence = encode_silence(rate, KEEPALIVE_MS).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("AudioSocket has no audio type for {rate} Hz"),
            )
        })?;
        let listener = TcpListener::bind(addr).await?;
        let server = Arc::new(Self {
            local_addr: listener.local_addr()?,
            routes: Mutex::new(HashMap::new()),
            manager,
            metrics,
            silence,
            slots: Arc::new(tokio::sync::Semaphore::new(max_connections)),
        });
        tokio::spawn(server.clone().accept(listener));
        Ok(server)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Expect a connection for `uuid` (lowercase, hyphenated) feeding session `session_id`.
    pub fn register(&self, uuid: &str, session_id: &str, frames: mpsc::Sender<Vec<u8>>) {
        let route = Route {
            session_id: session_id.to_owned(),
            frames,
        };
        self.lock().insert(uuid.to_ascii_lowercase(), route);
    }

    /// Forget `uuid` if no connection took it (the tap failed before Asterisk dialled in).
    pub fn unregister(&self, uuid: &str) {
        self.lock().remove(&uuid.to_ascii_lowercase());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Route>> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn accept(self: Arc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                        self.metrics.stream_connections_refused.inc();
                        tracing::warn!(%peer, "AudioSocket connection refused: ari.audiosocket_max_connections are open");
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let server = self.clone();
                    tokio::spawn(async move {
                        server.serve(stream, peer).await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "AudioSocket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn serve(self: Arc<Self>, mut stream: TcpStream, peer: SocketAddr) {
        let mut decoder = Decoder::new();
        let mut buf = vec![0u8; 4096];
        let mut route: Option<Route> = None;
        let mut framer = RtpFramer::default();
        loop {
            let read = match &route {
                None => match tokio::time::timeout(UUID_WAIT, stream.read(&mut buf)).await {
                    Ok(r) => r,
                    Err(_) => {
                        self.metrics.stream_connections_refused.inc();
                        self.refuse(peer, "no UUID frame in time");
                        return;
                    }
                },
                // The session stopped taking media: close now, not at Asterisk's next frame.
                // A connection left open and silent can hold Asterisk's channel lock forever
                // (see the module doc).
                Some(current) => tokio::select! {
                    r = stream.read(&mut buf) => r,
                    () = current.frames.closed() => return,
                    () = tokio::time::sleep(KEEPALIVE_AFTER) => {
                        // Never block on it: a full socket buffer means Asterisk is reading
                        // nothing at all, and the next round tries again.
                        if stream.try_write(&self.silence).is_ok() {
                            self.metrics.audiosocket_keepalives.inc();
                        }
                        continue;
                    }
                },
            };
            let n = match read {
                Ok(0) | Err(_) => return, // hangup: dropping the route ends the session
                Ok(n) => n,
            };
            decoder.push(&buf[..n]);
            while let Some(frame) = decoder.poll() {
                let frame = match frame {
                    Ok(frame) => frame,
                    Err(e) if e.is_fatal() => {
                        self.refuse(peer, &e.to_string());
                        return;
                    }
                    Err(e) => {
                        self.metrics.rtp_malformed.inc("audiosocket_frame");
                        tracing::debug!(%peer, error = %e, "AudioSocket frame skipped");
                        continue;
                    }
                };
                let Some(current) = &route else {
                    let Some(uuid) = frame.uuid() else {
                        self.refuse(peer, "first frame is not a UUID");
                        return;
                    };
                    match self.lock().remove(&uuid) {
                        Some(r) => route = Some(r),
                        None => {
                            self.refuse(peer, &format!("unknown call {uuid}"));
                            return;
                        }
                    }
                    continue;
                };
                match frame.kind {
                    FrameKind::Audio { rate } => {
                        let packet = framer.frame(StreamFormat::SlinLe { rate }, frame.payload);
                        if current.frames.send(packet).await.is_err() {
                            // The session ended: closing the socket hangs the channel up.
                            return;
                        }
                    }
                    FrameKind::Dtmf => {
                        if let Some(digit) = frame.dtmf() {
                            let _ = self.manager.dtmf(&current.session_id, digit, 0).await;
                        }
                    }
                    FrameKind::Hangup => return,
                    FrameKind::Error => {
                        tracing::warn!(%peer, payload = ?frame.payload, "AudioSocket error frame from Asterisk");
                    }
                    FrameKind::Uuid | FrameKind::Unknown(_) => {}
                }
            }
        }
    }

    fn refuse(&self, peer: SocketAddr, why: &str) {
        self.metrics.rtp_malformed.inc("audiosocket_refused");
        tracing::warn!(%peer, %why, "AudioSocket connection closed");
    }
}
