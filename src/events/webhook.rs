//! Webhook sink: HTTP POST with an HMAC-SHA256 signature header, timeout, retries with backoff.
//!
//! `https://` URLs go over TLS (rustls): the receiver's certificate must chain to
//! `tls.ca_file` (else the bundled Mozilla roots); `tls.client_cert_file` + `client_key_file`
//! are presented when the receiver asks for a client certificate.
//!
//! Wire form (CloudEvents HTTP binding, structured mode):
//! - `batch = false` (default): one POST per event, in batch order; body = the event's
//!   CloudEvents JSON byte for byte; `Content-Type: application/cloudevents+json`.
//! - `batch = true`: one POST per batch; body = a JSON array of the events in order;
//!   `Content-Type: application/cloudevents-batch+json`.
//!
//! Signature: `<header>: sha256=<lowercase hex of HMAC-SHA256(secret, body)>`, where body is
//! exactly the bytes of the request body and nothing else (no timestamp: every body carries
//! the events' `id` and `time`, and a replayed body is a duplicate the receiver drops by
//! `id`). Check it with [`verify_signature`]. Without a secret no signature header is sent.
//!
//! Outcomes per request: 2xx = delivered. 408, 429, 5xx, timeouts and connection errors are
//! retried inside `publish` with exponential backoff (429's `Retry-After` honoured up to
//! `backoff_max_ms`) up to `max_attempts` tries, then reported as a `SinkError` and the
//! outbox retries the batch later. Any other status (4xx, redirects, which are not followed)
//! is `SinkError::Rejected` at once. Re-sent events keep their id (at-least-once).

use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::Rng;
use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use reqwest::StatusCode;
use sha2::Sha256;

use crate::events::outgoing::OutgoingEvent;
use crate::events::sink::{Sink, SinkError, SinkFuture};
use crate::tls::{TlsError, TlsSettings};

const SINK: &str = "webhook";
pub const CONTENT_TYPE_SINGLE: &str = "application/cloudevents+json; charset=utf-8";
pub const CONTENT_TYPE_BATCH: &str = "application/cloudevents-batch+json; charset=utf-8";

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// `http://host:port/path` or `https://host:port/path`.
    pub url: crate::secret::SecretUrl,
    /// HMAC-SHA256 key. `None`: requests go unsigned (a warning is logged at startup).
    pub secret: Option<crate::secret::Secret>,
    /// Bound on each request (connect, send, response head and body).
    pub timeout_ms: u64,
    /// Tries per request inside one `publish`, the first included.
    pub max_attempts: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Name of the signature header.
    pub header: String,
    /// One POST per batch (JSON array) instead of one per event.
    pub batch: bool,
    /// CA and client certificate for an `https://` url.
    pub tls: TlsSettings,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: Default::default(),
            secret: None,
            timeout_ms: 5_000,
            max_attempts: 5,
            backoff_initial_ms: 200,
            backoff_max_ms: 5_000,
            header: "X-Asr-Signature".into(),
            batch: false,
            tls: TlsSettings::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook: url {url:?} is not a valid http:// or https:// URL: {reason}")]
    Url {
        url: crate::secret::SecretUrl,
        reason: &'static str,
    },
    #[error("webhook: header name {0:?} is not a valid HTTP header name")]
    Header(String),
    #[error("webhook: HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("webhook: {0}")]
    Tls(#[from] TlsError),
}

pub struct WebhookSink {
    http: reqwest::Client,
    config: WebhookConfig,
    header: HeaderName,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("url", &self.config.url)
            .field("batch", &self.config.batch)
            .finish_non_exhaustive()
    }
}

/// One failed try, and whether trying again may help.
struct Failure {
    error: SinkError,
    retry: bool,
    /// The receiver's `Retry-After`, when it gave one.
    retry_after: Option<Duration>,
}

impl WebhookSink {
    pub fn new(config: WebhookConfig) -> Result<Self, WebhookError> {
        let url_error = |reason| WebhookError::Url {
            url: config.url.clone(),
            reason,
        };
        let url =
            reqwest::Url::parse(config.url.expose()).map_err(|_| url_error("does not parse"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(url_error("scheme must be http or https"));
        }
        let tls = config.tls.load("events.webhook.tls")?;
        let header = HeaderName::from_bytes(config.header.as_bytes())
            .map_err(|_| WebhookError::Header(config.header.clone()))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms.max(1)))
            .connect_timeout(Duration::from_millis(config.timeout_ms.max(1)))
            .redirect(reqwest::redirect::Policy::none())
            .use_preconfigured_tls(rustls::ClientConfig::clone(&tls.rustls_config()))
            .build()
            .map_err(WebhookError::Client)?;
        if config.secret.is_none() {
            tracing::warn!(url = %config.url, "webhook has no secret: requests are unsigned");
        }
        Ok(Self {
            http,
            config,
            header,
        })
    }

    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    /// POST one body, retrying per the module rules. Ok once a try got a 2xx.
    async fn deliver(
        &self,
        body: bytes::Bytes,
        content_type: &'static str,
    ) -> Result<(), SinkError> {
        let signature = self
            .config
            .secret
            .as_ref()
            .map(|secret| HeaderValue::from_str(&sign(secret.expose().as_bytes(), &body)))
            .transpose()
            .expect("hex signature is a valid header value");
        let attempts = self.config.max_attempts.max(1);
        let mut delay = Duration::from_millis(self.config.backoff_initial_ms);
        let max_delay = Duration::from_millis(self.config.backoff_max_ms);
        let mut attempt = 1;
        loop {
            let failure = match self
                .try_once(body.clone(), content_type, signature.as_ref())
                .await
            {
                Ok(()) => return Ok(()),
                Err(failure) => failure,
            };
            if !failure.retry {
                tracing::error!(url = %self.config.url, error = %failure.error,
                    "webhook receiver rejected the request; not retrying it here");
                return Err(failure.error);
            }
            if attempt >= attempts {
                tracing::warn!(url = %self.config.url, attempts, error = %failure.error,
                    "webhook delivery failed; giving the batch back to the outbox");
                return Err(failure.error);
            }
            tracing::debug!(url = %self.config.url, attempt, error = %failure.error, "webhook retry");
            // Jitter in [delay/2, delay] keeps many gateways from retrying in lockstep.
            let jittered = delay.mul_f64(rand::rng().random_range(0.5..=1.0));
            let wait = failure.retry_after.unwrap_or(jittered).min(max_delay);
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(max_delay);
            attempt += 1;
        }
    }

    async fn try_once(
        &self,
        body: bytes::Bytes,
        content_type: &'static str,
        signature: Option<&HeaderValue>,
    ) -> Result<(), Failure> {
        let mut request = self
            .http
            .post(self.config.url.expose())
            .header(CONTENT_TYPE, content_type)
            .header(
                USER_AGENT,
                concat!("asr-gateway/", env!("CARGO_PKG_VERSION")),
            )
            .body(body);
        if let Some(signature) = signature {
            request = request.header(self.header.clone(), signature.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_failure(e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // Drain the body so the connection goes back to the pool; its content is only a hint.
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(());
        }
        let detail = format!(
            "{} answered HTTP {status}: {}",
            self.config.url,
            text.chars().take(200).collect::<String>()
        );
        let retry = status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS;
        let error = if retry {
            SinkError::Unavailable { sink: SINK, detail }
        } else {
            SinkError::Rejected { sink: SINK, detail }
        };
        Err(Failure {
            error,
            retry,
            retry_after: retry_after.filter(|_| status == StatusCode::TOO_MANY_REQUESTS),
        })
    }

    fn transport_failure(&self, e: reqwest::Error) -> Failure {
        let error = if e.is_timeout() {
            SinkError::Timeout {
                sink: SINK,
                after_ms: self.config.timeout_ms,
            }
        } else {
            let cause = crate::tls::root_cause(&e);
            let mut detail = format!("{}: {}", self.config.url, e.without_url());
            if let Some(cause) = cause.filter(|c| !detail.contains(c.as_str())) {
                detail = format!("{detail}: {cause}");
            }
            SinkError::Unavailable { sink: SINK, detail }
        };
        Failure {
            error,
            retry: true,
            retry_after: None,
        }
    }
}

impl Sink for WebhookSink {
    fn name(&self) -> &'static str {
        SINK
    }

    fn publish<'a>(&'a self, events: &'a [OutgoingEvent]) -> SinkFuture<'a> {
        Box::pin(async move {
            if events.is_empty() {
                return Ok(());
            }
            if self.config.batch {
                self.deliver(batch_body(events), CONTENT_TYPE_BATCH).await
            } else {
                // In order, one at a time: event k is only sent once k-1 is delivered.
                for event in events {
                    self.deliver(event.json.clone(), CONTENT_TYPE_SINGLE)
                        .await?;
                }
                Ok(())
            }
        })
    }
}

/// `[e1,e2,...]`: each event's JSON kept byte for byte.
fn batch_body(events: &[OutgoingEvent]) -> bytes::Bytes {
    let mut body = Vec::with_capacity(events.iter().map(|e| e.json.len() + 1).sum::<usize>() + 2);
    body.push(b'[');
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&event.json);
    }
    body.push(b']');
    body.into()
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length")
}

/// The signature header value for `body`: `sha256=<hex>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// True when `header_value` is `sha256=<hex>` of HMAC-SHA256(`secret`, `body`).
/// The comparison is constant-time; hex case is ignored.
pub fn verify_signature(secret: &[u8], body: &[u8], header_value: &str) -> bool {
    let Some(hex_sig) = header_value.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = mac(secret);
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_roundtrip_and_tamper() {
        let sig = sign(b"k", b"{\"id\":1}");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert!(verify_signature(b"k", b"{\"id\":1}", &sig));
        assert!(verify_signature(
            b"k",
            b"{\"id\":1}",
            &sig.to_uppercase().replace("SHA256=", "sha256=")
        ));
        assert!(!verify_signature(b"k", b"{\"id\":2}", &sig));
        assert!(!verify_signature(b"other", b"{\"id\":1}", &sig));
        assert!(!verify_signature(b"k", b"{\"id\":1}", &sig[7..]));
        assert!(!verify_signature(b"k", b"{\"id\":1}", "sha256=zz"));
    }

    #[test]
    fn known_vector() {
        // RFC 4231 test case 2.
        let sig = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn batch_body_is_a_json_array_of_the_exact_events() {
        let ev = |s: &'static str| OutgoingEvent {
            id: uuid::Uuid::new_v4(),
            kind: "t".into(),
            call_id: "c".into(),
            json: bytes::Bytes::from_static(s.as_bytes()),
        };
        let body = batch_body(&[ev("{\"a\":1}"), ev("{\"b\":2}")]);
        assert_eq!(&body[..], b"[{\"a\":1},{\"b\":2}]");
    }

    #[test]
    fn config_validation() {
        let ok = |url: &str| {
            WebhookSink::new(WebhookConfig {
                url: url.into(),
                ..WebhookConfig::default()
            })
        };
        assert!(ok("http://127.0.0.1:9/x").is_ok());
        assert!(ok("https://example.com/").is_ok());
        assert!(ok("ftp://example.com/").is_err());
        assert!(ok("").is_err());
        assert!(ok("ftp://x/").is_err());
        let c: WebhookConfig = toml::from_str("url = \"http://h/\"\nsecret = \"s\"").unwrap();
        assert_eq!((c.max_attempts, c.header.as_str()), (5, "X-Asr-Signature"));
        assert!(toml::from_str::<WebhookConfig>("retries = 3").is_err());
    }
}
