//! AudioSocket server: Asterisk dials in over TCP per externalMedia channel; audio goes to the
//! session registered for the call's UUID, framed as RTP (`rtp_framing`).
//!
//! Asterisk sends `0x01` + the UUID first, then 20 ms slin frames (little-endian) once the
//! channel is bridged, DTMF as `0x03`, and closes TCP on hangup (no `0x00`). The gateway
//! closing the socket destroys the channel. An unknown UUID, a first frame that is not a
//! UUID, or a fatal framing error closes the connection and is counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::ingest::manager::SessionManager;
use crate::ingest::rtp_framing::{RtpFramer, StreamFormat};
use crate::media::audiosocket::{Decoder, FrameKind};
use crate::metrics::Metrics;

/// How long a new connection may take to name its call.
const UUID_WAIT: Duration = Duration::from_secs(5);

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
}

impl AudioSocketServer {
    /// Listen on `addr` and serve connections until the process ends.
    pub async fn bind(
        addr: SocketAddr,
        manager: Arc<SessionManager>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Arc<Self>> {
        let listener = TcpListener::bind(addr).await?;
        let server = Arc::new(Self {
            local_addr: listener.local_addr()?,
            routes: Mutex::new(HashMap::new()),
            manager,
            metrics,
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
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(self.clone().serve(stream, peer));
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
            let read = if route.is_none() {
                match tokio::time::timeout(UUID_WAIT, stream.read(&mut buf)).await {
                    Ok(r) => r,
                    Err(_) => {
                        self.refuse(peer, "no UUID frame in time");
                        return;
                    }
                }
            } else {
                stream.read(&mut buf).await
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
