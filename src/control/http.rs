//! HTTP API: `POST /v1/sessions`, `DELETE /v1/sessions/{id}`, `GET /metrics`, `GET /healthz`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::control::commands::{CommandOutcome, Dispatcher};
use crate::control::limits;
use crate::events::model::EndCause;
use crate::ingest::manager::{ManagerError, SessionManager, SessionRequest};
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct ApiState {
    pub manager: Arc<SessionManager>,
    /// Commands over HTTP, when `commands.sources` has `http`.
    pub commands: Option<Arc<Dispatcher>>,
    pub metrics: Arc<Metrics>,
    /// `server.advertise_host`, if set.
    pub advertise_host: Option<String>,
    /// Fallback host when neither advertise_host nor a Host header says.
    pub default_host: String,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/sessions", post(create_session))
        .route("/v1/sessions/{id}", delete(delete_session))
        .route("/v1/commands", post(command))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state)
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

async fn create_session(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: SessionRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid session request: {e}"),
            )
        }
    };
    let bounded =
        limits::check_language_and_hints(request.language.as_deref(), request.hints.as_deref());
    if let Err(reason) = bounded {
        return error(StatusCode::BAD_REQUEST, reason);
    }
    match state.manager.create(request).await {
        Ok(info) => {
            let host = state
                .advertise_host
                .clone()
                .or_else(|| request_host(&headers))
                .unwrap_or_else(|| state.default_host.clone());
            let media = format!("{host}:{}", info.port);
            let body = json!({
                "session_id": info.session_id,
                "call_id": info.call_id,
                "host": host,
                "port": info.port,
                "external_host": media,
            });
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(e @ ManagerError::InvalidCallId(_)) => error(StatusCode::BAD_REQUEST, e),
        Err(e @ (ManagerError::NoFreePort { .. } | ManagerError::ShuttingDown)) => {
            error(StatusCode::SERVICE_UNAVAILABLE, e)
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn command(State(state): State<ApiState>, body: Bytes) -> Response {
    let Some(dispatcher) = state.commands else {
        return error(
            StatusCode::NOT_FOUND,
            "HTTP commands are off: add \"http\" to commands.sources",
        );
    };
    match dispatcher.dispatch(&body).await {
        CommandOutcome::Accepted => {
            (StatusCode::ACCEPTED, Json(json!({ "outcome": "accepted" }))).into_response()
        }
        CommandOutcome::Rejected { reason } => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "outcome": "rejected", "reason": reason })),
        )
            .into_response(),
    }
}

async fn delete_session(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    match state.manager.stop(&id, EndCause::Stopped) {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(json!({ "session_id": id, "status": "ending" })),
        )
            .into_response(),
        Err(e @ ManagerError::NotFound(_)) => error(StatusCode::NOT_FOUND, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn metrics(State(state): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn healthz(State(state): State<ApiState>) -> Response {
    Json(json!({ "status": "ok", "sessions": state.manager.active() })).into_response()
}

/// The host part of the `Host` header: where call logic reached us is where media should go.
fn request_host(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::HOST)?.to_str().ok()?;
    let host = match value.strip_prefix('[') {
        Some(v6) => format!("[{}]", v6.split(']').next()?),
        None => value.split(':').next()?.to_owned(),
    };
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_parsing() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "10.0.0.7:8080".parse().unwrap());
        assert_eq!(request_host(&h).as_deref(), Some("10.0.0.7"));
        h.insert(header::HOST, "[::1]:8080".parse().unwrap());
        assert_eq!(request_host(&h).as_deref(), Some("[::1]"));
        h.insert(header::HOST, "gw.example".parse().unwrap());
        assert_eq!(request_host(&h).as_deref(), Some("gw.example"));
        assert_eq!(request_host(&HeaderMap::new()), None);
    }
}
