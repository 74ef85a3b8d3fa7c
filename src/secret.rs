//! The one redaction rule: secrets and URL passwords print as `***` in `Debug`, `Display`,
//! `check-config`, logs and error events; only `expose()` gives the real value.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// What a hidden value prints as.
pub const REDACTED: &str = "***";

/// A password, token or key. Prints as `***`; empty prints as `""` so a missing value shows.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real value, for the one place that sends it (a header, a handshake).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str(REDACTED)
        }
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// A URL that may carry `user:password@`. Prints with the password (and any `password=`,
/// `token=`, `api_key=` or `key=` query value) replaced by `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real URL, for the client that connects with it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The printable form: same as `Display`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretUrl)
    }
}

impl From<String> for SecretUrl {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for SecretUrl {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// A list of secrets from a TOML array, or from one string of comma-separated values (so an
/// environment variable can hold several: `ASRGW_SERVER__API_TOKENS=tok1,tok2`).
pub fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Secret>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(list) => list
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(Secret::from)
            .collect(),
        OneOrMany::Many(list) => list.into_iter().map(Secret).collect(),
    })
}

/// Query parameters whose values are secrets wherever they appear.
const SECRET_QUERY_KEYS: [&str; 6] = ["password", "pass", "token", "api_key", "key", "secret"];

/// `scheme://user:pw@host/path?token=t` → `scheme://user:***@host/path?token=***`.
/// Works on text that is not a valid URL too: it never fails and never prints more.
pub fn redact_url(url: &str) -> String {
    let (before_query, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len());
    let (scheme, rest) = match before_query.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, before_query),
    };
    if let Some(s) = scheme {
        out.push_str(s);
        out.push_str("://");
    }
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(REDACTED);
                }
                // A lone userinfo is a token in some schemes (redis://token@host).
                None => out.push_str(REDACTED),
            }
            out.push('@');
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    out.push_str(path);
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if SECRET_QUERY_KEYS.contains(&k.to_ascii_lowercase().as_str()) => {
                    format!("{k}={REDACTED}")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s} {s:#?}"), "*** *** ***");
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
    }

    #[test]
    fn url_passwords_and_secret_query_values_are_hidden() {
        let cases = [
            (
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                "amqp://guest:***@127.0.0.1:5672/%2f",
            ),
            ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
            ("redis://tok@h", "redis://***@h"),
            (
                "https://u:p@h/hook?a=1&token=t&api_key=u:p",
                "https://u:***@h/hook?a=1&token=***&api_key=***",
            ),
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
            ("http://h/p@q", "http://h/p@q"),
            ("not a url :x@y", "not a url :***@y"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
            let u = SecretUrl::new(url);
            assert_eq!(u.to_string(), want);
            assert_eq!(format!("{u:?}"), format!("{want:?}"));
            assert_eq!(u.expose(), url);
        }
    }

    #[test]
    fn deserializes_from_plain_strings() {
        #[derive(Deserialize, Debug)]
        struct C {
            password: Secret,
            url: SecretUrl,
        }
        let c: C = toml::from_str("password = \"pw\"\nurl = \"amqp://a:pw@h\"").unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("pw"), "{shown}");
        assert_eq!(c.password.expose(), "pw");
        assert_eq!(c.url.expose(), "amqp://a:pw@h");
    }
}
