//! Opening Asterisk's WebSockets (ARI events, media) with the ARI credentials in an HTTP Basic header and the server's TLS settings.
//!
//! Asterisk 23 checks the `Authorization` header before `api_key` on `/ari/events`
//! (`res/res_ari.c`, `authenticate_user`, run before the WebSocket upgrade), so the password
//! never goes into a URL, where proxies and access logs would keep it. `/media/<id>`
//! (`channels/chan_websocket.c`) checks no credentials at all: the connection id it handed
//! out is the capability. The header is sent there too, for a proxy in front that wants it.

use std::sync::Arc;

use base64::Engine;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// A WebSocket to Asterisk.
pub type AriSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Credentials and TLS for one Asterisk server's WebSockets. Debug output hides the
/// credentials.
#[derive(Clone)]
pub struct WsConnector {
    authorization: HeaderValue,
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for WsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsConnector").finish_non_exhaustive()
    }
}

impl WsConnector {
    /// `tls` is used for `wss://` URLs only.
    pub fn new(username: &str, password: &str, tls: Arc<rustls::ClientConfig>) -> Self {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        let mut authorization = HeaderValue::from_str(&format!("Basic {token}"))
            .expect("base64 is a valid header value");
        authorization.set_sensitive(true);
        Self { authorization, tls }
    }

    /// Open `url` (`ws://` or `wss://`), sending the credentials in `Authorization`, taking
    /// no message or frame over `max_message` bytes.
    /// The error text is tungstenite's, which does not repeat the request headers.
    pub async fn connect(
        &self,
        url: &str,
        max_message: usize,
    ) -> Result<AriSocket, tokio_tungstenite::tungstenite::Error> {
        let mut request = url.into_client_request()?;
        request
            .headers_mut()
            .insert(AUTHORIZATION, self.authorization.clone());
        let connector = Connector::Rustls(self.tls.clone());
        let limits = WebSocketConfig::default()
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message));
        let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(
            request,
            Some(limits),
            false,
            Some(connector),
        )
        .await?;
        Ok(socket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_credentials() {
        let tls = crate::tls::TlsSettings::default()
            .load("ari.servers[0].tls")
            .unwrap()
            .rustls_config();
        let c = WsConnector::new("asr", "s3cret", tls);
        let text = format!("{c:?}");
        assert!(!text.contains("s3cret") && !text.contains("YXNy"), "{text}");
        assert_eq!(
            c.authorization.to_str().unwrap(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("asr:s3cret")
            )
        );
    }
}
