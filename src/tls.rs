//! TLS settings shared by every connection that leaves the host (rustls, ring), and loading the PEM files they name.
//!
//! Client side: each section that connects somewhere (`asr`, `[[ari.servers]]`,
//! `events.*`, `commands.*`) has a `tls` table of [`TlsSettings`]. It only matters when the
//! URL asks for TLS (`https://`, `wss://`, `amqps://`, `rediss://`, `tls://`): then the
//! server must present a certificate signed by `ca_file` (or, without it, by one of the
//! Mozilla roots bundled with the gateway), and `client_cert_file` + `client_key_file`
//! are offered when the server asks for a client certificate (mutual TLS).
//!
//! Server side: [`ServerTls`] loads the HTTP API's certificate and key; [`TlsListener`]
//! accepts TLS connections for `axum::serve`.
//!
//! Errors name the config key and the file, never a key's content.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The `tls` table of a section that connects to a server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM file of the CA certificate(s) the server's certificate must chain to; unset =
    /// the bundled Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate chain offered for mutual TLS (with `client_key_file`).
    pub client_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub client_key_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("config key `{key}`: cannot read {path}: {source}")]
    Read {
        key: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config key `{key}`: {path} is not a usable PEM file: {detail}")]
    Pem {
        key: String,
        path: PathBuf,
        detail: String,
    },
    #[error("config key `{key}`: {path} holds no {what}")]
    Missing {
        key: String,
        path: PathBuf,
        what: &'static str,
    },
    #[error("config key `{key}` is set but `{other}` is not: set both or neither")]
    Unpaired { key: String, other: String },
    #[error("config key `{key}`: {detail}")]
    Rejected { key: String, detail: String },
}

/// A client certificate and its key, as PEM (for the libraries that take PEM) and DER.
struct Identity {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

/// [`TlsSettings`] with their files read and checked: what a client hands its library.
/// Debug output says which parts are present, never the key.
#[derive(Clone)]
pub struct ClientTls {
    ca_pem: Option<Arc<Vec<u8>>>,
    identity: Option<Arc<Identity>>,
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("custom_ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

impl TlsSettings {
    /// Read and check the files. `section` is the table's config key (e.g.
    /// `events.webhook.tls`); errors name `<section>.<field>` and the file.
    pub fn load(&self, section: &str) -> Result<ClientTls, TlsError> {
        let key = |field: &str| format!("{section}.{field}");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        let ca_pem = match &self.ca_file {
            Some(path) => {
                let key = key("ca_file");
                let pem = read(&key, path)?;
                for cert in certificates(&key, path, &pem)? {
                    roots.add(cert).map_err(|e| TlsError::Pem {
                        key: key.clone(),
                        path: path.clone(),
                        detail: e.to_string(),
                    })?;
                }
                Some(Arc::new(pem))
            }
            None => {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                None
            }
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rejected {
                key: section.to_owned(),
                detail: e.to_string(),
            })?
            .with_root_certificates(roots);
        let (config, identity) = match (&self.client_cert_file, &self.client_key_file) {
            (None, None) => (builder.with_no_client_auth(), None),
            (Some(_), None) => {
                return Err(TlsError::Unpaired {
                    key: key("client_cert_file"),
                    other: key("client_key_file"),
                })
            }
            (None, Some(_)) => {
                return Err(TlsError::Unpaired {
                    key: key("client_key_file"),
                    other: key("client_cert_file"),
                })
            }
            (Some(cert_path), Some(key_path)) => {
                let cert_key = key("client_cert_file");
                let cert_pem = read(&cert_key, cert_path)?;
                let chain = certificates(&cert_key, cert_path, &cert_pem)?;
                let key_key = key("client_key_file");
                let key_pem = read(&key_key, key_path)?;
                let private = private_key(&key_key, key_path, &key_pem)?;
                let config = builder.with_client_auth_cert(chain, private).map_err(|e| {
                    TlsError::Rejected {
                        key: key_key,
                        detail: format!("the key does not fit {}: {e}", cert_path.display()),
                    }
                })?;
                (config, Some(Arc::new(Identity { cert_pem, key_pem })))
            }
        };
        Ok(ClientTls {
            ca_pem,
            identity,
            config: Arc::new(config),
        })
    }
}

impl ClientTls {
    /// The rustls client configuration (no ALPN), for libraries that take one.
    pub fn rustls_config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// The `ca_file` as read, when one was set.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref().map(Vec::as_slice)
    }

    /// The client certificate chain and key as read (PEM), when set.
    pub fn identity_pem(&self) -> Option<(&[u8], &[u8])> {
        self.identity
            .as_deref()
            .map(|i| (i.cert_pem.as_slice(), i.key_pem.as_slice()))
    }
}

/// The gateway's own HTTPS certificate and key (`server.tls_cert`, `server.tls_key`).
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Load a certificate chain and its key; `cert_key` and `key_key` are their config keys.
    /// `alpn` lists the protocols offered (e.g. `h2`, `http/1.1`).
    pub fn load(
        cert_key: &str,
        cert_path: &Path,
        key_key: &str,
        key_path: &Path,
        alpn: &[&[u8]],
    ) -> Result<Self, TlsError> {
        let cert_pem = read(cert_key, cert_path)?;
        let chain = certificates(cert_key, cert_path, &cert_pem)?;
        let key_pem = read(key_key, key_path)?;
        let private = private_key(key_key, key_path, &key_pem)?;
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError::Rejected {
                    key: cert_key.to_owned(),
                    detail: e.to_string(),
                })?
                .with_no_client_auth()
                .with_single_cert(chain, private)
                .map_err(|e| TlsError::Rejected {
                    key: key_key.to_owned(),
                    detail: format!("the key does not fit {}: {e}", cert_path.display()),
                })?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Self {
            config: Arc::new(config),
        })
    }

    pub fn rustls_config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }
}

/// The innermost cause of `error`, when it has one. Libraries wrap a failed handshake in
/// "error sending request" or "transport error"; the cause says what was wrong (an
/// unknown issuer, a name mismatch, a refused client certificate).
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut inner = error.source()?;
    while let Some(next) = inner.source() {
        inner = next;
    }
    Some(inner.to_string())
}

/// Makes ring the process-wide rustls provider, for the libraries that build their own
/// rustls configuration from it (redis). Harmless when already done.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Longest a client may take over the TLS handshake before its connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS connections for `axum::serve`: accepts TCP, shakes hands in a task per connection
/// (a slow client holds up no one), and hands over the ones that succeeded. Failed
/// handshakes are logged at debug level and dropped.
pub struct TlsListener {
    ready: mpsc::Receiver<(
        tokio_rustls::server::TlsStream<TcpStream>,
        std::net::SocketAddr,
    )>,
    local_addr: std::net::SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, tls: &ServerTls) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.rustls_config());
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::debug!(error = %e, "TLS listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let acceptor = acceptor.clone();
                let ready = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = ready.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            ready,
            local_addr,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept task is gone (it only ends when this listener is dropped).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key: key.to_owned(),
        path: path.to_owned(),
        source,
    })
}

/// Every `CERTIFICATE` block of a PEM file; at least one.
fn certificates(
    key: &str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            key: key.to_owned(),
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Missing {
            key: key.to_owned(),
            path: path.to_owned(),
            what: "PEM certificate",
        });
    }
    Ok(certs)
}

/// The first private key of a PEM file. The error never quotes the file.
fn private_key(key: &str, path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|_| TlsError::Missing {
        key: key.to_owned(),
        path: path.to_owned(),
        what: "PEM private key (PKCS#8, PKCS#1 or SEC1)",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("asrgw-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn no_files_means_the_bundled_roots() {
        let tls = TlsSettings::default().load("asr.tls").unwrap();
        assert!(tls.ca_pem().is_none() && tls.identity_pem().is_none());
        assert_eq!(
            format!("{tls:?}"),
            "ClientTls { custom_ca: false, client_certificate: false }"
        );
    }

    #[test]
    fn errors_name_the_key_and_the_file() {
        let missing = TlsSettings {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsSettings::default()
        };
        let e = missing.load("events.webhook.tls").unwrap_err().to_string();
        assert!(
            e.contains("events.webhook.tls.ca_file") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
        let junk = temp("junk.pem", "not a certificate\n");
        let e = TlsSettings {
            ca_file: Some(junk.clone()),
            ..TlsSettings::default()
        }
        .load("asr.tls")
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("asr.tls.ca_file") && e.contains("no PEM certificate"),
            "{e}"
        );
        let e = TlsSettings {
            client_cert_file: Some(junk),
            ..TlsSettings::default()
        }
        .load("asr.tls")
        .unwrap_err()
        .to_string();
        assert!(e.contains("asr.tls.client_key_file"), "{e}");
    }

    #[test]
    fn a_key_file_that_is_not_a_key_is_named_but_not_quoted() {
        let secret =
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA@@\n-----END PRIVATE KEY-----\n";
        let key = temp("key.pem", secret);
        let e = ServerTls::load("server.tls_cert", &key, "server.tls_key", &key, &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.tls_cert"), "{e}");
        assert!(!e.contains("c2VjcmV0"), "{e}");
    }
}
