//! WebSocket media channel, server mode: the gateway connects to Asterisk's `/media/<id>` and
//! frames each binary media frame as RTP (`rtp_framing`) for the call's session.
//!
//! Asterisk keeps the channel Down (no StasisStart) until this connection is made; its first
//! text frame is `MEDIA_START`, then binary frames every 20 ms (ulaw 160 B, slin LE).
//! `DTMF_END` becomes DTMF on the session; Asterisk closing the socket (hangup) ends the
//! session; the session ending drops the connection, which hangs the channel up.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::ingest::manager::SessionManager;
use crate::ingest::rtp_framing::{RtpFramer, StreamFormat};
use crate::media::ws_media::{self, Control};
use crate::metrics::Metrics;

/// Longest wait for the connection and the WebSocket handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest media message taken: Asterisk sends one 20 ms frame per message (640 bytes at
/// slin16); anything near this bound is not media.
const MAX_MESSAGE: usize = 64 * 1024;

/// Where and how to connect.
pub struct WsMediaTarget {
    /// `ws(s)://host:port/media/<connection id>`.
    pub url: String,
    /// The ARI server's credentials (as a header) and TLS settings.
    pub connector: crate::ari::websocket::WsConnector,
    /// The format asked of externalMedia (the frames carry nothing that says).
    pub format: StreamFormat,
    pub session_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WsMediaError {
    #[error("cannot open the media WebSocket: {0}")]
    Connect(String),
}

/// Connect, then feed the session until either side ends. Returns once connected (the
/// reading goes on in a task) so the caller can wait for the channel's StasisStart.
pub async fn start(
    target: WsMediaTarget,
    frames: mpsc::Sender<Vec<u8>>,
    manager: Arc<SessionManager>,
    metrics: Arc<Metrics>,
) -> Result<(), WsMediaError> {
    let connect = target.connector.connect(&target.url, MAX_MESSAGE);
    let socket = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connect).await {
        Ok(connected) => connected.map_err(|e| WsMediaError::Connect(e.to_string()))?,
        Err(_) => {
            metrics.stream_connections_refused.inc();
            return Err(WsMediaError::Connect(format!(
                "no handshake within {HANDSHAKE_TIMEOUT:?}"
            )));
        }
    };
    tokio::spawn(async move {
        let (mut write, mut read) = socket.split();
        let mut framer = RtpFramer::default();
        loop {
            let message = tokio::select! {
                m = read.next() => m,
                // The session ended: close, which hangs the channel up.
                () = frames.closed() => break,
            };
            match message {
                Some(Ok(Message::Binary(media))) => {
                    let packet = framer.frame(target.format, &media);
                    if frames.send(packet).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Text(text))) => match ws_media::parse(text.as_str()) {
                    Ok(Control::DtmfEnd { digit: Some(digit) }) => {
                        let _ = manager.dtmf(&target.session_id, digit, 0).await;
                    }
                    Ok(Control::MediaStart(start)) => {
                        if StreamFormat::from_asterisk(&start.format) != Some(target.format) {
                            tracing::warn!(session = %target.session_id, format = %start.format,
                                "media WebSocket announces another format than asked");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        metrics.rtp_malformed.inc("ws_media_control");
                        tracing::debug!(session = %target.session_id, error = %e, "media WebSocket control ignored");
                    }
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
        let _ = write.close().await;
        // Dropping `frames` tells the session the call is gone.
    });
    Ok(())
}
