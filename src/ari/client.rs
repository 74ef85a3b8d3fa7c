//! ARI REST client: the few requests the gateway makes (snoop, externalMedia, bridges, hangup).
//!
//! One `AriClient` per configured Asterisk server. Authentication is HTTP Basic with the
//! `ari.conf` user; the same header opens the events and media WebSockets (`websocket.rs`).
//! An `https://` server is reached over TLS with its `tls` settings (custom CA, client
//! certificate). Every failure names the server and the request, and keeps Asterisk's own
//! `message`.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;

use crate::ari::model::{Channel, ExternalMediaChannel, ParseError};
use crate::ari::websocket::WsConnector;
use crate::tls::{ClientTls, TlsSettings};

/// One Asterisk server the gateway controls (`[[ari.servers]]`). Debug output hides the password.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AriServerConfig {
    /// Names the server in logs, errors, events and commands (`media.server`).
    pub id: String,
    /// Base URL of Asterisk's HTTP server, e.g. `http://10.0.0.5:8088` or
    /// `https://pbx.example:8089` (no `/ari`). https also makes the WebSockets `wss://`.
    pub url: String,
    /// An `ari.conf` user.
    pub username: String,
    pub password: crate::secret::Secret,
    /// The Stasis application the gateway registers; dialplan `Stasis(<app>)` sends calls to it.
    #[serde(default = "default_app")]
    pub app: String,
    /// CA and client certificate for an `https://` url.
    #[serde(default)]
    pub tls: TlsSettings,
}

impl std::fmt::Debug for AriServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AriServerConfig")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .field("app", &self.app)
            .field("tls", &self.tls)
            .finish()
    }
}

fn default_app() -> String {
    "asr-gateway".into()
}

#[derive(Debug, thiserror::Error)]
pub enum AriError {
    #[error("ARI server {server}: credentials refused (401) on {request}; check username and password against ari.conf")]
    Unauthorized { server: String, request: String },
    #[error("ARI server {server}: {request} answered {status}: {message}")]
    Status {
        server: String,
        request: String,
        status: u16,
        message: String,
    },
    #[error("ARI server {server} unreachable on {request}: {detail}")]
    Unreachable {
        server: String,
        request: String,
        detail: String,
    },
    #[error("ARI server {server}: {request} gave an unusable answer: {source}")]
    InvalidResponse {
        server: String,
        request: String,
        #[source]
        source: ParseError,
    },
}

impl AriError {
    /// HTTP status Asterisk answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            AriError::Status { status, .. } => Some(*status),
            AriError::Unauthorized { .. } => Some(401),
            _ => None,
        }
    }

    /// 404: the channel or bridge is gone (hung up, or never existed).
    pub fn is_gone(&self) -> bool {
        self.status() == Some(404)
    }
}

/// What `POST /channels/externalMedia` is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalMediaRequest {
    pub channel_id: String,
    pub app: String,
    /// `host:port` Asterisk sends to (RTP, AudioSocket) or the websocket_client entry.
    pub external_host: String,
    /// `ulaw`, `alaw`, `slin`, `slin16`, ...
    pub format: String,
    /// `rtp`, `audiosocket` or `none` (websocket).
    pub encapsulation: &'static str,
    /// `udp`, `tcp` or `websocket`.
    pub transport: &'static str,
    /// `client` (default) or `server` (websocket only).
    pub connection_type: &'static str,
    /// AudioSocket: the session UUID.
    pub data: Option<String>,
}

/// REST calls against one Asterisk server.
#[derive(Clone)]
pub struct AriClient {
    server: String,
    base: String,
    username: String,
    password: String,
    http: reqwest::Client,
    websockets: WsConnector,
}

#[derive(Deserialize)]
struct AriMessage {
    #[serde(default)]
    message: String,
}

impl AriClient {
    /// `tls` is `config.tls` loaded (see [`TlsSettings::load`]).
    pub fn new(config: &AriServerConfig, timeout: Duration, tls: &ClientTls) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(64)
            .use_preconfigured_tls(rustls::ClientConfig::clone(&tls.rustls_config()))
            .build()
            .expect("a reqwest client with a timeout and a rustls config builds");
        Self {
            server: config.id.clone(),
            base: format!("{}/ari", config.url.trim_end_matches('/')),
            username: config.username.clone(),
            password: config.password.expose().to_owned(),
            http,
            websockets: WsConnector::new(
                &config.username,
                config.password.expose(),
                tls.rustls_config(),
            ),
        }
    }

    /// Opens this server's WebSockets with its credentials and TLS settings.
    pub fn websockets(&self) -> &WsConnector {
        &self.websockets
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// `ws(s)://host/media/<connection id>`: where to connect to a WebSocket media channel
    /// made with `connection_type=server` (open it with [`Self::websockets`]; no credentials
    /// go in the URL).
    pub fn media_url(&self, connection_id: &str) -> String {
        let root = self.base.trim_end_matches("/ari");
        if let Some(rest) = root.strip_prefix("https://") {
            format!("wss://{rest}/media/{}", segment(connection_id))
        } else {
            format!(
                "ws://{}/media/{}",
                root.trim_start_matches("http://"),
                segment(connection_id)
            )
        }
    }

    /// `GET /asterisk/info`: proves the server answers and takes our credentials.
    pub async fn check(&self) -> Result<(), AriError> {
        self.call(Method::GET, "/asterisk/info", &[])
            .await
            .map(drop)
    }

    /// Snoop on `channel_id` into our app; `spy` is `in`, `out` or `both`.
    pub async fn snoop(
        &self,
        channel_id: &str,
        snoop_id: &str,
        app: &str,
        app_args: &str,
        spy: &str,
    ) -> Result<Channel, AriError> {
        let path = format!("/channels/{}/snoop", segment(channel_id));
        let query = [
            ("spy", spy),
            ("whisper", "none"),
            ("app", app),
            ("appArgs", app_args),
            ("snoopId", snoop_id),
        ];
        let body = self.call(Method::POST, &path, &query).await?;
        self.parse_channel(&path, &body)
    }

    pub async fn external_media(
        &self,
        request: &ExternalMediaRequest,
    ) -> Result<ExternalMediaChannel, AriError> {
        let path = "/channels/externalMedia";
        let mut query = vec![
            ("channelId", request.channel_id.as_str()),
            ("app", request.app.as_str()),
            ("external_host", request.external_host.as_str()),
            ("format", request.format.as_str()),
            ("encapsulation", request.encapsulation),
            ("transport", request.transport),
            ("connection_type", request.connection_type),
        ];
        if let Some(data) = &request.data {
            query.push(("data", data));
        }
        let body = self.call(Method::POST, path, &query).await?;
        ExternalMediaChannel::parse(&body).map_err(|source| AriError::InvalidResponse {
            server: self.server.clone(),
            request: format!("POST {path}"),
            source,
        })
    }

    pub async fn create_bridge(&self, bridge_id: &str) -> Result<(), AriError> {
        let query = [("type", "mixing"), ("bridgeId", bridge_id)];
        self.call(Method::POST, "/bridges", &query).await.map(drop)
    }

    pub async fn add_channels(&self, bridge_id: &str, channels: &[&str]) -> Result<(), AriError> {
        let path = format!("/bridges/{}/addChannel", segment(bridge_id));
        let list = channels.join(",");
        self.call(Method::POST, &path, &[("channel", &list)])
            .await
            .map(drop)
    }

    pub async fn destroy_bridge(&self, bridge_id: &str) -> Result<(), AriError> {
        let path = format!("/bridges/{}", segment(bridge_id));
        self.call(Method::DELETE, &path, &[]).await.map(drop)
    }

    /// `GET /channels/{id}`: the channel, or a 404 error once it is gone.
    pub async fn channel(&self, channel_id: &str) -> Result<Channel, AriError> {
        let path = format!("/channels/{}", segment(channel_id));
        let body = self.call(Method::GET, &path, &[]).await?;
        self.parse_channel(&path, &body)
    }

    pub async fn hangup(&self, channel_id: &str) -> Result<(), AriError> {
        let path = format!("/channels/{}", segment(channel_id));
        self.call(Method::DELETE, &path, &[]).await.map(drop)
    }

    pub async fn answer(&self, channel_id: &str) -> Result<(), AriError> {
        let path = format!("/channels/{}/answer", segment(channel_id));
        self.call(Method::POST, &path, &[]).await.map(drop)
    }

    pub async fn set_variable(
        &self,
        channel_id: &str,
        name: &str,
        value: &str,
    ) -> Result<(), AriError> {
        let path = format!("/channels/{}/variable", segment(channel_id));
        self.call(Method::POST, &path, &[("variable", name), ("value", value)])
            .await
            .map(drop)
    }

    /// Leave Stasis and continue in the dialplan where the channel was.
    pub async fn continue_in_dialplan(&self, channel_id: &str) -> Result<(), AriError> {
        let path = format!("/channels/{}/continue", segment(channel_id));
        self.call(Method::POST, &path, &[]).await.map(drop)
    }

    /// Receive a channel's events (hangup, DTMF) although it is not in our app.
    pub async fn subscribe_channel(&self, app: &str, channel_id: &str) -> Result<(), AriError> {
        let path = format!("/applications/{}/subscription", segment(app));
        let source = format!("channel:{channel_id}");
        self.call(Method::POST, &path, &[("eventSource", &source)])
            .await
            .map(drop)
    }

    fn parse_channel(&self, path: &str, body: &str) -> Result<Channel, AriError> {
        ExternalMediaChannel::parse(body)
            .map(|m| m.channel)
            .map_err(|source| AriError::InvalidResponse {
                server: self.server.clone(),
                request: format!("POST {path}"),
                source,
            })
    }

    /// One request; the body on 2xx, a typed error otherwise.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<String, AriError> {
        let request = format!("{method} {path}");
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(&self.username, Some(&self.password))
            .query(query)
            .send()
            .await
            .map_err(|e| AriError::Unreachable {
                server: self.server.clone(),
                request: request.clone(),
                detail: without_url(&e),
            })?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(body);
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(AriError::Unauthorized {
                server: self.server.clone(),
                request,
            });
        }
        // Asterisk's message (or its body) goes into `asr.error`: bounded like any outside text.
        let message = serde_json::from_str::<AriMessage>(&body)
            .map(|m| m.message)
            .unwrap_or(body);
        let message = crate::ids::cut_to(message, 200);
        Err(AriError::Status {
            server: self.server.clone(),
            request,
            status: status.as_u16(),
            message,
        })
    }
}

/// reqwest's error text without the URL (the server id already names it).
/// `id` as one URL path segment: every byte but `A-Z a-z 0-9 - . _ ~` percent-encoded, so
/// no id can add a segment, a query or a `..` to an ARI request. Ids are checked at the
/// edge (crate::ids); this is the second line of defence.
fn segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'~')
            || (b == b'.' && !id.bytes().all(|c| c == b'.'))
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn without_url(e: &reqwest::Error) -> String {
    let mut detail = e.to_string();
    if let Some(url) = e.url() {
        detail = detail.replace(&format!(" for url ({url})"), "");
    }
    if let Some(cause) = crate::tls::root_cause(e).filter(|c| !detail.contains(c.as_str())) {
        detail = format!("{detail}: {cause}");
    }
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        format!("cannot connect: {detail}")
    } else {
        detail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_config_defaults_the_app_and_refuses_unknown_keys() {
        let c: AriServerConfig = toml::from_str(
            "id = \"pbx1\"\nurl = \"http://h:8088\"\nusername = \"u\"\npassword = \"p\"",
        )
        .unwrap();
        assert_eq!(c.app, "asr-gateway");
        assert!(toml::from_str::<AriServerConfig>(
            "id = \"a\"\nurl = \"u\"\nusername = \"u\"\npassword = \"p\"\npasword = \"x\""
        )
        .is_err());
    }

    #[test]
    fn errors_say_which_server_and_whether_the_object_is_gone() {
        let e = AriError::Status {
            server: "pbx1".into(),
            request: "POST /channels/1/snoop".into(),
            status: 404,
            message: "Channel not found".into(),
        };
        assert!(e.is_gone());
        let text = e.to_string();
        assert!(
            text.contains("pbx1") && text.contains("Channel not found"),
            "{text}"
        );
        let e = AriError::Unauthorized {
            server: "pbx2".into(),
            request: "GET /asterisk/info".into(),
        };
        assert!(e.to_string().contains("pbx2"));
        assert!(!e.is_gone());
    }

    #[test]
    fn ids_become_one_path_segment() {
        assert_eq!(segment("1795334591.22"), "1795334591.22");
        assert_eq!(
            segment("x?endpoint=PJSIP/900123456&"),
            "x%3Fendpoint%3DPJSIP%2F900123456%26"
        );
        assert_eq!(segment(".."), "%2E%2E");
        assert_eq!(
            segment("../asterisk/modules/res_pjsip.so"),
            "..%2Fasterisk%2Fmodules%2Fres_pjsip.so"
        );
        assert_eq!(segment("a b%"), "a%20b%25");
    }
}
