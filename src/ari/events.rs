//! The ARI events WebSocket of one server: connects, reconnects with backoff, parses each message.
//!
//! Feeds the controller `Feed::Connected` after every (re)connect, so it can reconcile what
//! it holds with what the server still has, then one `Feed::Event` per message. A message
//! that does not parse is counted and logged (rate-limited), never fatal; unknown event
//! types arrive as `Event::Unknown` and are ignored by the controller.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::ari::client::AriServerConfig;
use crate::ari::model::Message;
use crate::ari::websocket::WsConnector;

/// First and longest wait between connection attempts.
/// Largest ARI event message taken (a ChannelVarset or a StasisStart is a few KiB).
const MAX_EVENT_MESSAGE: usize = 1024 * 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const LOG_EVERY: Duration = Duration::from_secs(10);

/// What the events socket tells the controller.
#[derive(Debug)]
pub enum Feed {
    /// (Re)connected: events flow from now on; anything before may have been missed.
    Connected,
    Event(Box<Message>),
    /// The socket closed or failed; reconnecting.
    Lost {
        detail: String,
    },
}

/// `ws(s)://host/ari/events?app=<app>&subscribeAll=false`. The credentials go in the
/// `Authorization` header ([`WsConnector`]), never in the URL.
pub fn events_url(config: &AriServerConfig) -> Result<reqwest::Url, String> {
    let base = config.url.trim_end_matches('/');
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}/ari/events")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}/ari/events")
    } else {
        return Err(format!("url {base:?} must start with http:// or https://"));
    };
    reqwest::Url::parse_with_params(
        &ws,
        [("app", config.app.as_str()), ("subscribeAll", "false")],
    )
    .map_err(|e| e.to_string())
}

/// Run until `stop` turns true. Each message goes to `feed`; a full feed waits (events
/// must not be lost between the socket and the controller).
pub async fn run(
    config: AriServerConfig,
    connector: WsConnector,
    feed: mpsc::Sender<Feed>,
    mut stop: watch::Receiver<bool>,
    malformed: impl Fn(),
) {
    let url = match events_url(&config) {
        Ok(url) => url,
        Err(detail) => {
            tracing::error!(server = %config.id, %detail, "ARI events: bad url");
            return;
        }
    };
    let mut backoff = BACKOFF_MIN;
    let mut last_warning: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        let connect = connector.connect(url.as_str(), MAX_EVENT_MESSAGE);
        let socket = tokio::select! {
            r = connect => r,
            () = stopped(&mut stop) => return,
        };
        let mut socket = match socket {
            Ok(socket) => socket,
            Err(e) => {
                tracing::warn!(server = %config.id, error = %e, retry_ms = backoff.as_millis() as u64,
                    "ARI events: cannot connect");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    () = stopped(&mut stop) => return,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_MIN;
        tracing::info!(server = %config.id, app = %config.app, "ARI events connected");
        if feed.send(Feed::Connected).await.is_err() {
            return;
        }
        let detail = loop {
            let next = tokio::select! {
                m = socket.next() => m,
                () = stopped(&mut stop) => {
                    let _ = socket.close(None).await;
                    return;
                }
            };
            let text = match next {
                Some(Ok(WsMessage::Text(text))) => text,
                Some(Ok(WsMessage::Close(frame))) => break format!("closed by server: {frame:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => break e.to_string(),
                None => break "closed".to_owned(),
            };
            match Message::parse(text.as_str()) {
                Ok(message) => {
                    if feed.send(Feed::Event(Box::new(message))).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    malformed();
                    if last_warning.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                        last_warning = Some(Instant::now());
                        tracing::warn!(server = %config.id, error = %e, "ARI events: message ignored");
                    }
                }
            }
        };
        tracing::warn!(server = %config.id, %detail, "ARI events lost; reconnecting");
        if feed.send(Feed::Lost { detail }).await.is_err() {
            return;
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(url: &str) -> AriServerConfig {
        AriServerConfig {
            id: "pbx1".into(),
            url: url.into(),
            username: "asr".into(),
            password: "p@ss word".into(),
            app: "asr-gateway".into(),
            tls: crate::tls::TlsSettings::default(),
        }
    }

    #[test]
    fn events_url_maps_the_scheme_and_carries_no_credentials() {
        let url = events_url(&server("http://10.0.0.5:8088/")).unwrap();
        assert_eq!(url.scheme(), "ws");
        assert_eq!(url.path(), "/ari/events");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert!(pairs.contains(&("app".into(), "asr-gateway".into())));
        assert!(pairs.iter().all(|(k, _)| k != "api_key"), "{url}");
        assert!(!url.as_str().contains("p@ss"), "{url}");
        assert_eq!(events_url(&server("https://pbx")).unwrap().scheme(), "wss");
        assert!(events_url(&server("pbx:8088")).is_err());
    }
}
