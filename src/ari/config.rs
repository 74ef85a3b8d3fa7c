//! `[ari]` configuration: the Asterisk servers, the tap's media format, Stasis-mode hand-back.

use serde::Deserialize;

use crate::ari::client::AriServerConfig;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AriConfig {
    /// Asterisk servers to control; none = ARI off.
    pub servers: Vec<AriServerConfig>,
    /// externalMedia `format`: what Asterisk sends us (`ulaw`, `alaw`, `slin`, `slin16`;
    /// AudioSocket carries only `slin` and `slin16`).
    pub format: String,
    /// How Asterisk sends the audio: `rtp` (UDP, a port per call), `audiosocket` (TCP to
    /// `audiosocket_listen`, calls told apart by UUID) or `websocket` (the gateway connects
    /// to Asterisk's `/media/<connection id>`).
    pub transport: MediaTransport,
    /// Where the AudioSocket server listens (when `transport = "audiosocket"`); Asterisk is
    /// told to connect to `server.advertise_host` (else the RTP bind address) and this port.
    pub audiosocket_listen: std::net::SocketAddr,
    /// Most AudioSocket connections open at once (each has 5 s to name its call); more are
    /// closed as they arrive and counted in `asrgw_stream_connections_refused_total`.
    pub audiosocket_max_connections: usize,
    /// Longest wait for one ARI request, ms.
    pub request_timeout_ms: u64,
    /// Longest wait from the first request of a tap to its media flowing (StasisStart of the
    /// snoop and externalMedia channels), ms.
    pub setup_timeout_ms: u64,
    /// A tap whose media stops for this long is torn down, ms (a snoop sends 20 ms frames
    /// continuously, silence included, so a gap this long means it is gone).
    pub media_timeout_ms: u64,
    pub stasis: StasisConfig,
}

impl Default for AriConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            format: "ulaw".into(),
            transport: MediaTransport::Rtp,
            audiosocket_listen: "0.0.0.0:9092".parse().expect("literal"),
            audiosocket_max_connections: 4096,
            request_timeout_ms: 5_000,
            setup_timeout_ms: 5_000,
            media_timeout_ms: 5_000,
            stasis: StasisConfig::default(),
        }
    }
}

/// Calls the dialplan sends to `Stasis(<app>)`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StasisConfig {
    /// Recognize channels that enter our app; off = only listen mode (start commands).
    pub enabled: bool,
    /// Answer the channel first if it is not up yet.
    pub answer: bool,
    /// When recognition ends: `final` (the first final transcript) or `stop` (a stop command,
    /// hangup or `max_ms`).
    pub until: StasisUntil,
    /// Then: `continue` in the dialplan with ASR_* variables set, or `leave` it in Stasis
    /// for call logic.
    pub then: StasisThen,
    /// Longest recognition per call before it is handed back, ms.
    pub max_ms: u64,
    /// The engine profile (`asr.profiles`) for calls that enter Stasis; unset = `default`.
    pub engine_profile: Option<String>,
}

impl Default for StasisConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            answer: true,
            until: StasisUntil::Final,
            then: StasisThen::Continue,
            max_ms: 30_000,
            engine_profile: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaTransport {
    Rtp,
    Audiosocket,
    /// chan_websocket in server mode (Asterisk 20.16 / 21.11 / 22.6 / 23.0).
    Websocket,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StasisUntil {
    Final,
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StasisThen {
    Continue,
    Leave,
}

/// The formats a tap may ask externalMedia for, with the RTP Asterisk then sends.
pub const FORMATS: &[&str] = &["ulaw", "alaw", "slin", "slin16"];

impl AriConfig {
    /// Problems a running gateway would only meet later, as (key, value, allowed).
    pub fn problems(&self) -> Option<(String, String, String)> {
        if !FORMATS.contains(&self.format.as_str()) {
            return Some((
                "ari.format".into(),
                format!("{:?}", self.format),
                FORMATS.join(", "),
            ));
        }
        if self.transport == MediaTransport::Audiosocket
            && !matches!(self.format.as_str(), "slin" | "slin16")
        {
            return Some((
                "ari.format".into(),
                format!("{:?}", self.format),
                "slin or slin16 with ari.transport = \"audiosocket\"".into(),
            ));
        }
        for (key, value) in [
            ("ari.request_timeout_ms", self.request_timeout_ms),
            ("ari.setup_timeout_ms", self.setup_timeout_ms),
            ("ari.media_timeout_ms", self.media_timeout_ms),
            ("ari.stasis.max_ms", self.stasis.max_ms),
        ] {
            if value == 0 {
                return Some((key.into(), "0".into(), ">= 1".into()));
            }
        }
        let mut ids = std::collections::HashSet::new();
        for (i, server) in self.servers.iter().enumerate() {
            let key = |k: &str| format!("ari.servers[{i}].{k}");
            if server.id.is_empty() || !ids.insert(server.id.as_str()) {
                return Some((
                    key("id"),
                    format!("{:?}", server.id),
                    "a unique, non-empty id".into(),
                ));
            }
            if !(server.url.starts_with("http://") || server.url.starts_with("https://")) {
                return Some((
                    key("url"),
                    format!("{:?}", server.url),
                    "an http:// or https:// URL of Asterisk's HTTP server, e.g. http://10.0.0.5:8088"
                        .into(),
                ));
            }
            if server.app.is_empty() || server.app.contains([',', '/', ' ']) {
                return Some((
                    key("app"),
                    format!("{:?}", server.app),
                    "a Stasis application name without , / or spaces".into(),
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_problems() {
        let c = AriConfig::default();
        assert!(c.servers.is_empty());
        assert_eq!(c.problems(), None);
        let bad = AriConfig {
            format: "gsm".into(),
            ..AriConfig::default()
        };
        assert_eq!(bad.problems().unwrap().0, "ari.format");
        let server = AriServerConfig {
            id: "pbx".into(),
            url: "http://h:8088".into(),
            username: "u".into(),
            password: "p".into(),
            app: "asr".into(),
            tls: crate::tls::TlsSettings::default(),
        };
        let twice = AriConfig {
            servers: vec![server.clone(), server],
            ..AriConfig::default()
        };
        assert_eq!(twice.problems().unwrap().0, "ari.servers[1].id");
    }
}
