//! Bearer tokens on the HTTP API: which paths need one, and a constant-time check of it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::control::quota::ClientKey;
use crate::metrics::Metrics;
use crate::secret::Secret;

/// The paths that may be served without a token, when config lists them.
pub const OPTIONALLY_PUBLIC: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The tokens the API accepts (kept only as SHA-256 digests) and the paths open to all.
pub struct ApiAuth {
    digests: Vec<[u8; 32]>,
    public_paths: Vec<String>,
    metrics: Arc<Metrics>,
}

impl ApiAuth {
    /// No tokens = every path is open (config allows that only on loopback or when asked).
    pub fn new(tokens: &[Secret], public_paths: &[String], metrics: Arc<Metrics>) -> Self {
        Self {
            digests: tokens
                .iter()
                .map(|t| digest(t.expose().as_bytes()))
                .collect(),
            public_paths: public_paths.to_vec(),
            metrics,
        }
    }

    pub fn is_enabled(&self) -> bool {
        !self.digests.is_empty()
    }

    /// Whether a request for `path` with these headers may proceed.
    pub fn allows(&self, path: &str, headers: &HeaderMap) -> bool {
        if !self.is_enabled() || self.public_paths.iter().any(|p| p == path) {
            return true;
        }
        self.token_index(headers).is_some()
    }

    /// Which configured token the request carries, if any.
    pub fn token_index(&self, headers: &HeaderMap) -> Option<usize> {
        let presented = digest(bearer(headers)?);
        // Every configured token is compared, whatever matched: the time taken does not say
        // which one, nor how much of it, was right.
        let mut found = u64::MAX;
        for (i, known) in self.digests.iter().enumerate() {
            found.conditional_assign(&(i as u64), known.ct_eq(&presented));
        }
        (found != u64::MAX).then_some(found as usize)
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    (scheme.eq_ignore_ascii_case(b"bearer ") && !token.is_empty()).then_some(token)
}

/// axum middleware: 401 with `WWW-Authenticate: Bearer` unless [`ApiAuth::allows`].
/// A request with a token is keyed by it for the reservation quota (see `control::quota`).
pub async fn require_token(
    State(auth): State<Arc<ApiAuth>>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(i) = auth.token_index(req.headers()) {
        req.extensions_mut().insert(ClientKey(format!("token:{i}")));
        return next.run(req).await;
    }
    if auth.allows(req.uri().path(), req.headers()) {
        return next.run(req).await;
    }
    auth.metrics.http_unauthorized.inc();
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(json!({ "error": "missing or wrong bearer token (Authorization: Bearer <token>)" })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(tokens: &[&str], public: &[&str]) -> ApiAuth {
        let tokens: Vec<Secret> = tokens.iter().map(|t| Secret::from(*t)).collect();
        let public: Vec<String> = public.iter().map(|p| p.to_string()).collect();
        ApiAuth::new(&tokens, &public, Arc::new(Metrics::default()))
    }

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn tokens_are_checked_on_every_private_path() {
        let a = auth(
            &["first-token-0123456789", "second-token-0123456789"],
            &["/healthz"],
        );
        assert!(a.allows("/v1/commands", &with("Bearer first-token-0123456789")));
        assert!(a.allows("/v1/sessions", &with("bearer second-token-0123456789")));
        assert!(!a.allows("/v1/sessions", &with("Bearer first-token-012345678")));
        assert!(!a.allows("/v1/sessions", &with("Bearer first-token-0123456789x")));
        assert!(!a.allows("/v1/sessions", &with("Basic first-token-0123456789")));
        assert!(!a.allows("/v1/sessions", &with("Bearer ")));
        assert!(!a.allows("/metrics", &HeaderMap::new()));
        assert!(a.allows("/healthz", &HeaderMap::new()));
    }

    #[test]
    fn no_tokens_means_open() {
        let a = auth(&[], &[]);
        assert!(!a.is_enabled());
        assert!(a.allows("/v1/commands", &HeaderMap::new()));
    }
}
