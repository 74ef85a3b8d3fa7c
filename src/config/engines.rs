//! `[asr.engines.NAME]` and `[asr.profiles]`: the engines a gateway may use, and which engines, in which order, a call's streams go to.
//!
//! ```toml
//! [asr.engines.primary]
//! endpoint = "http://10.0.0.5:50051"   # a server of the gateway's own protocol
//! max_streams = 200                    # 0 = no cap
//! [asr.engines.local]
//! endpoint = "embedded"                # the in-process Whisper engine
//! [asr.profiles]
//! default = ["primary", "local"]       # priority order: failover goes down the list
//! local-only = ["local"]
//! ```
//!
//! With no `[asr.engines]`, `asr.endpoint` (or, unset, the embedded engine) is the one
//! engine, named `default`, and the `default` profile.

use std::time::Duration;

use serde::Deserialize;

use super::{check, ConfigError};
use crate::asr::client::ClientConfig;
use crate::tls::TlsSettings;

/// The `endpoint` that means the in-process embedded engine.
pub const EMBEDDED: &str = "embedded";
/// Engine and profile names: 1 to 64 of A-Z a-z 0-9 - _ (they reach events and metrics).
pub const MAX_NAME_BYTES: usize = 64;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineEntry {
    /// Wire protocol: `asr-v1` (the gateway's own gRPC protocol).
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// `http(s)://host:port`, or `embedded`.
    pub endpoint: String,
    /// Most streams at once on this engine; when full, the next engine of the profile
    /// takes the stream. 0 = no cap.
    #[serde(default)]
    pub max_streams: usize,
    /// CA and client certificate for an `https://` endpoint; unset = `asr.tls`.
    #[serde(default)]
    pub tls: Option<TlsSettings>,
}

fn default_protocol() -> String {
    "asr-v1".into()
}

pub const KNOWN_PROTOCOLS: &[&str] = &["asr-v1"];

/// One engine as the router is to build it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnginePlan {
    pub name: String,
    /// `endpoint` is `embedded` for the in-process engine: the caller fills in its address.
    pub client: ClientConfig,
    pub max_streams: usize,
}

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl super::Config {
    /// Does any engine run in-process?
    pub fn uses_embedded_engine(&self) -> bool {
        if self.asr.engines.is_empty() {
            self.asr.endpoint.is_none()
        } else {
            self.asr.engines.values().any(|e| e.endpoint == EMBEDDED)
        }
    }

    /// The engines, in name order, each with its client settings.
    pub fn engine_plans(&self) -> Vec<EnginePlan> {
        let a = &self.asr;
        let client = |endpoint: &str, tls: &TlsSettings| ClientConfig {
            endpoint: endpoint.to_string(),
            tls: tls.clone(),
            connect_timeout: Duration::from_millis(a.connect_timeout_ms),
            final_timeout: Duration::from_millis(a.final_timeout_ms),
        };
        if a.engines.is_empty() {
            let endpoint = a.endpoint.as_deref().unwrap_or(EMBEDDED);
            return vec![EnginePlan {
                name: crate::asr::router::DEFAULT_PROFILE.into(),
                client: client(endpoint, &a.tls),
                max_streams: 0,
            }];
        }
        a.engines
            .iter()
            .map(|(name, e)| EnginePlan {
                name: name.clone(),
                client: client(&e.endpoint, e.tls.as_ref().unwrap_or(&a.tls)),
                max_streams: e.max_streams,
            })
            .collect()
    }

    /// Profiles as (name, engines in priority order).
    pub fn engine_profiles(&self) -> Vec<(String, Vec<String>)> {
        self.asr
            .profiles
            .iter()
            .map(|(p, e)| (p.clone(), e.clone()))
            .collect()
    }

    pub(super) fn validate_engines(&self) -> Result<(), ConfigError> {
        let a = &self.asr;
        if !a.engines.is_empty() && a.endpoint.is_some() {
            return Err(ConfigError::Field {
                key: "asr.endpoint".into(),
                message: "set either asr.endpoint (one engine) or [asr.engines.NAME] \
                          entries, not both"
                    .into(),
            });
        }
        for (name, e) in &a.engines {
            let key = |k: &str| format!("asr.engines.{name}.{k}");
            check(valid_name(name), "asr.engines", format!("{name:?}"), || {
                format!("names of 1 to {MAX_NAME_BYTES} characters from A-Z a-z 0-9 - _")
            })?;
            check(
                KNOWN_PROTOCOLS.contains(&e.protocol.as_str()),
                &key("protocol"),
                format!("{:?}", e.protocol),
                || KNOWN_PROTOCOLS.join(", "),
            )?;
            check(
                e.endpoint == EMBEDDED
                    || e.endpoint.starts_with("http://")
                    || e.endpoint.starts_with("https://"),
                &key("endpoint"),
                format!("{:?}", e.endpoint),
                || "an http:// or https:// URL, or \"embedded\"".into(),
            )?;
        }
        for (profile, names) in &a.profiles {
            check(
                valid_name(profile),
                "asr.profiles",
                format!("{profile:?}"),
                || format!("names of 1 to {MAX_NAME_BYTES} characters from A-Z a-z 0-9 - _"),
            )?;
            let key = format!("asr.profiles.{profile}");
            check(!names.is_empty(), &key, "[]", || {
                "at least one engine".into()
            })?;
            for name in names {
                let known = a.engines.contains_key(name)
                    || (a.engines.is_empty() && name == crate::asr::router::DEFAULT_PROFILE);
                check(known, &key, format!("{name:?}"), || {
                    let names: Vec<&str> = a.engines.keys().map(String::as_str).collect();
                    format!("engines configured in [asr.engines]: {}", names.join(", "))
                })?;
            }
        }
        if let Some(profile) = &self.ari.stasis.engine_profile {
            let known =
                a.profiles.contains_key(profile) || profile == crate::asr::router::DEFAULT_PROFILE;
            check(
                known,
                "ari.stasis.engine_profile",
                format!("{profile:?}"),
                || "a profile of asr.profiles".into(),
            )?;
        }
        if a.engines.len() > 1 {
            check(
                a.profiles.contains_key(crate::asr::router::DEFAULT_PROFILE),
                "asr.profiles.default",
                "unset",
                || "the engines calls use unless they name a profile, in priority order".into(),
            )?;
        }
        check(
            a.breaker_cooldown_ms > 0 && a.breaker_cooldown_ms <= a.breaker_max_cooldown_ms,
            "asr.breaker_cooldown_ms",
            a.breaker_cooldown_ms,
            || {
                format!(
                    "1..={} (asr.breaker_max_cooldown_ms)",
                    a.breaker_max_cooldown_ms
                )
            },
        )?;
        check(
            (1_000..=600_000).contains(&a.failover_replay_ms),
            "asr.failover_replay_ms",
            a.failover_replay_ms,
            || "1000..=600000".into(),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(toml: &str) -> Result<Config, ConfigError> {
        Config::from_toml(toml)
    }

    #[test]
    fn engines_and_profiles() {
        let c = parse(
            r#"
[asr.engines.primary]
endpoint = "http://10.0.0.5:50051"
max_streams = 2
[asr.engines.local]
endpoint = "embedded"
[asr.profiles]
default = ["primary", "local"]
"#,
        )
        .unwrap();
        assert!(c.uses_embedded_engine());
        let plans = c.engine_plans();
        let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["local", "primary"]);
        assert_eq!(plans[1].max_streams, 2);
        assert_eq!(
            c.engine_profiles(),
            vec![(
                "default".to_string(),
                vec!["primary".into(), "local".into()]
            )]
        );
    }

    #[test]
    fn single_engine_forms() {
        let c = parse("").unwrap();
        assert!(c.uses_embedded_engine());
        assert_eq!(c.engine_plans()[0].client.endpoint, EMBEDDED);
        let c = parse("[asr]\nendpoint = \"http://e:1\"\n").unwrap();
        assert!(!c.uses_embedded_engine());
        assert_eq!(c.engine_plans()[0].name, "default");
    }

    #[test]
    fn bad_engine_config_names_the_key() {
        let cases = [
            (
                "[asr]\nendpoint = \"http://e:1\"\n[asr.engines.a]\nendpoint = \"http://e:2\"\n",
                "asr.endpoint",
            ),
            ("[asr.engines.\"a b\"]\nendpoint = \"http://e:2\"\n", "asr.engines"),
            (
                "[asr.engines.a]\nendpoint = \"e:2\"\n",
                "asr.engines.a.endpoint",
            ),
            (
                "[asr.engines.a]\nendpoint = \"http://e:2\"\nprotocol = \"sip\"\n",
                "asr.engines.a.protocol",
            ),
            (
                "[asr.engines.a]\nendpoint = \"http://e:2\"\n[asr.profiles]\ndefault = [\"b\"]\n",
                "asr.profiles.default",
            ),
            (
                "[asr.engines.a]\nendpoint = \"http://e:2\"\n[asr.engines.b]\nendpoint = \"http://e:3\"\n",
                "asr.profiles.default",
            ),
        ];
        for (toml, key) in cases {
            let e = parse(toml).unwrap_err().to_string();
            assert!(e.contains(key), "{toml}: {e}");
        }
    }
}
