//! The gateway under test: a child `asr-gateway serve` the bench starts (or one already
//! running), driven through its HTTP API as call logic would, and read through `/metrics`.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use crate::metrics::read_sample;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot start the gateway ({exe}): {source}")]
    Spawn { exe: String, source: std::io::Error },
    #[error("the gateway exited before it was ready; its last words: {stderr}")]
    Exited { stderr: String },
    #[error("the gateway did not say where it listens within {0:?}")]
    NotReady(Duration),
    #[error("gateway HTTP API {url}: {detail}")]
    Http { url: String, detail: String },
    #[error("gateway HTTP API {url} answered {status}: {body}")]
    Api {
        url: String,
        status: u16,
        body: String,
    },
    #[error("gateway /metrics lacks {0}: is it an asr-gateway?")]
    MissingMetric(&'static str),
}

/// The gateway's counters at one moment (from `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct GatewayMetrics {
    pub rtp_packets: f64,
    pub rtp_lost: f64,
    pub rtp_late: f64,
    pub rtp_duplicate: f64,
    pub asr_audio_dropped: f64,
    pub sessions_active: f64,
    pub cpu_seconds: f64,
    pub resident_bytes: f64,
    pub resident_peak_bytes: f64,
}

/// A session the gateway made: its id and where its RTP goes.
#[derive(Debug, Clone)]
pub struct Reserved {
    pub session_id: String,
    pub media: SocketAddr,
}

pub struct Gateway {
    base: String,
    http: reqwest::Client,
    child: Option<Child>,
    /// The engine the child gateway said it uses.
    engine_endpoint: Option<String>,
}

impl Gateway {
    /// A gateway already running at `base` (`http://host:port`).
    pub fn remote(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http: client(),
            child: None,
            engine_endpoint: None,
        }
    }

    /// Start `exe [--config file] serve` with `env` overrides; returns it once its HTTP API
    /// listens, and its stdout (the events, as JSON lines). Its logs go to this stderr.
    pub async fn spawn(
        exe: &std::path::Path,
        config: Option<&std::path::Path>,
        env: &[(String, String)],
    ) -> Result<(Self, ChildStdout), GatewayError> {
        let mut command = Command::new(exe);
        if let Some(path) = config {
            command.arg("--config").arg(path);
        }
        command
            .arg("serve")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "warn");
        }
        let mut child = command.spawn().map_err(|source| GatewayError::Spawn {
            exe: exe.display().to_string(),
            source,
        })?;
        let stdout = child.stdout.take().expect("piped");
        let mut stderr = BufReader::new(child.stderr.take().expect("piped")).lines();
        let wait = Duration::from_secs(60);
        let mut said = Vec::new();
        let addr = tokio::time::timeout(wait, async {
            while let Ok(Some(line)) = stderr.next_line().await {
                if let Some(found) = listening_addr(&line) {
                    return Some(found);
                }
                eprintln!("gateway: {line}");
                said.push(line);
            }
            None
        })
        .await
        .map_err(|_| GatewayError::NotReady(wait))?;
        let Some((addr, engine_endpoint)) = addr else {
            let tail = said.iter().rev().take(5).rev().cloned();
            return Err(GatewayError::Exited {
                stderr: tail.collect::<Vec<_>>().join(" | "),
            });
        };
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                eprintln!("\ngateway: {line}");
            }
        });
        let gateway = Self {
            base: format!("http://{addr}"),
            http: client(),
            child: Some(child),
            engine_endpoint,
        };
        Ok((gateway, stdout))
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The engine a child gateway uses (its embedded one, or `asr.endpoint`).
    pub fn engine_endpoint(&self) -> Option<&str> {
        self.engine_endpoint.as_deref()
    }

    /// The child's process id, when the bench started it.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// `POST /v1/sessions`: reserve a port for `call_id`.
    pub async fn create_session(&self, call_id: &str) -> Result<Reserved, GatewayError> {
        let url = format!("{}/v1/sessions", self.base);
        let body = serde_json::json!({ "call_id": call_id });
        let response = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|e| http_error(&url, e))?;
        let value = answer(&url, response).await?;
        let bad = |detail: &str| GatewayError::Http {
            url: url.clone(),
            detail: format!("{detail} in {value}"),
        };
        let session_id = value["session_id"]
            .as_str()
            .ok_or_else(|| bad("no session_id"))?
            .to_owned();
        let port = value["port"].as_u64().ok_or_else(|| bad("no port"))? as u16;
        let host = value["host"].as_str().ok_or_else(|| bad("no host"))?;
        let media = resolve(host, port).ok_or_else(|| bad("unresolvable host"))?;
        Ok(Reserved { session_id, media })
    }

    /// `DELETE /v1/sessions/{id}`: end a session (it then emits `asr.session.ended`).
    pub async fn end_session(&self, session_id: &str) -> Result<(), GatewayError> {
        let url = format!("{}/v1/sessions/{session_id}", self.base);
        let response = self
            .http
            .delete(&url)
            .send()
            .await
            .map_err(|e| http_error(&url, e))?;
        answer(&url, response).await.map(drop)
    }

    pub async fn metrics(&self) -> Result<GatewayMetrics, GatewayError> {
        let url = format!("{}/metrics", self.base);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| http_error(&url, e))?;
        let text = response.text().await.map_err(|e| http_error(&url, e))?;
        let read =
            |name: &'static str| read_sample(&text, name).ok_or(GatewayError::MissingMetric(name));
        Ok(GatewayMetrics {
            rtp_packets: read("asrgw_rtp_packets_total")?,
            rtp_lost: read("asrgw_rtp_lost_total")?,
            rtp_late: read("asrgw_rtp_late_total")?,
            rtp_duplicate: read("asrgw_rtp_duplicate_total")?,
            asr_audio_dropped: read("asrgw_asr_audio_dropped_total")?,
            sessions_active: read("asrgw_sessions_active")?,
            cpu_seconds: read("process_cpu_seconds_total")?,
            resident_bytes: read("process_resident_memory_bytes")?,
            resident_peak_bytes: read("process_resident_memory_peak_bytes")?,
        })
    }

    /// Stop a child gateway as an operator would (SIGTERM: it ends its sessions cleanly).
    pub async fn shutdown(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            // SAFETY: kill with a pid we spawned and still own (not yet reaped).
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        // The gateway closes a keep-alive connection idle for its header timeout (10 s by
        // default); never reuse one that old, or a request can meet the closing socket.
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .expect("a default HTTP client builds")
}

fn http_error(url: &str, e: reqwest::Error) -> GatewayError {
    GatewayError::Http {
        url: url.to_owned(),
        detail: e.to_string(),
    }
}

async fn answer(url: &str, response: reqwest::Response) -> Result<serde_json::Value, GatewayError> {
    let status = response.status();
    let body = response.text().await.map_err(|e| http_error(url, e))?;
    if !status.is_success() {
        return Err(GatewayError::Api {
            url: url.to_owned(),
            status: status.as_u16(),
            body,
        });
    }
    serde_json::from_str(&body).map_err(|e| GatewayError::Http {
        url: url.to_owned(),
        detail: format!("not JSON ({e}): {body}"),
    })
}

/// `asr-gateway listening: HTTP 127.0.0.1:8080  engine http://...` → the HTTP address
/// and the engine endpoint.
fn listening_addr(line: &str) -> Option<(SocketAddr, Option<String>)> {
    let rest = line.split("asr-gateway listening: HTTP ").nth(1)?;
    let mut words = rest.split_whitespace();
    let addr = words.next()?.parse().ok()?;
    let engine = match (words.next(), words.next()) {
        (Some("engine"), Some(endpoint)) => Some(endpoint.to_owned()),
        _ => None,
    };
    Some((addr, engine))
}

/// `host` as the gateway advertised it (`10.0.0.5`, `[::1]` or a name), with `port`.
fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    (bare, port).to_socket_addrs().ok()?.next()
}

/// The events a child gateway prints, one JSON line each.
pub type EventLines = tokio::io::Lines<BufReader<ChildStdout>>;

pub fn event_lines(stdout: ChildStdout) -> EventLines {
    BufReader::new(stdout).lines()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_listening_line() {
        let line = "asr-gateway listening: HTTP 127.0.0.1:41234  engine http://127.0.0.1:5";
        assert_eq!(
            listening_addr(line),
            Some((
                "127.0.0.1:41234".parse().unwrap(),
                Some("http://127.0.0.1:5".into())
            ))
        );
        assert_eq!(listening_addr("something else"), None);
    }

    #[test]
    fn resolves_advertised_hosts() {
        assert_eq!(resolve("[::1]", 7), Some("[::1]:7".parse().unwrap()));
        assert_eq!(resolve("10.1.2.3", 7), Some("10.1.2.3:7".parse().unwrap()));
        assert!(resolve("localhost", 7).is_some());
    }
}
