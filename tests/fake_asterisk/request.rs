//! Request helpers of the fake: credentials, parameters (query and JSON body), path
//! segments, `host:port`.

use axum::http::{header, HeaderMap};
use serde_json::{Map, Value};

use super::ari::Params;
use super::FakeConfig;

pub(super) fn authorized(headers: &HeaderMap, p: &Params, config: &FakeConfig) -> bool {
    let expected = format!("{}:{}", config.username, config.password);
    if p.get("api_key").is_some_and(|k| *k == expected) {
        return true;
    }
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut words = value.split_whitespace();
    let scheme_ok = words
        .next()
        .is_some_and(|s| s.eq_ignore_ascii_case("basic"));
    scheme_ok
        && words
            .next()
            .and_then(base64_decode)
            .is_some_and(|d| d == expected.as_bytes())
}

/// Standard base64 (padding optional); None on a character outside the alphabet.
pub(super) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().take_while(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Decodes `%XX` escapes of a path segment.
pub(super) fn pct_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters plus the fields of a JSON object body (the query wins); the
/// body's `variables` object separately.
pub(super) fn merge_body(
    mut params: Params,
    body: &[u8],
) -> Result<(Params, Option<Map<String, Value>>), String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((params, None));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("Malformed JSON body: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("The JSON body must be an object".into());
    };
    let mut variables = None;
    for (key, value) in fields {
        let text = match value {
            Value::Object(map) if key == "variables" => {
                variables = Some(map);
                continue;
            }
            Value::Null => continue,
            Value::String(s) => s,
            other => other.to_string(),
        };
        params.entry(key).or_insert(text);
    }
    Ok((params, variables))
}

pub(super) fn valid_host_port(text: &str) -> bool {
    text.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0))
}

pub(super) async fn resolve(host_port: &str) -> Option<std::net::SocketAddr> {
    tokio::net::lookup_host(host_port)
        .await
        .ok()?
        .find(|a| a.is_ipv4())
}
