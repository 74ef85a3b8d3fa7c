//! HTTP API: `POST /v1/sessions`, `DELETE /v1/sessions/{id}`, `POST /v1/commands`,
//! `GET /metrics`, `GET /healthz`, `GET /readyz`, behind bearer tokens (see `control::auth`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, State};
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::control::auth::{require_token, ApiAuth};
use crate::control::commands::{CommandOutcome, Dispatcher};
use crate::control::http_server::PeerAddr;
use crate::control::limits;
use crate::control::quota::{ClientKey, ReservationQuota};
use crate::events::model::EndCause;
use crate::ingest::manager::{ManagerError, SessionManager, SessionRequest};
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct ApiState {
    pub manager: Arc<SessionManager>,
    /// Commands over HTTP, when `commands.sources` has `http`.
    pub commands: Option<Arc<Dispatcher>>,
    pub metrics: Arc<Metrics>,
    /// Where call logic is told to send media: `server.advertise_host`, else the RTP bind
    /// address. Never taken from the request.
    pub media_host: String,
    pub auth: Arc<ApiAuth>,
    /// Largest request body, bytes.
    pub body_limit: usize,
    /// Sessions one client may hold through this API.
    pub quota: Arc<ReservationQuota>,
}

pub fn router(state: ApiState) -> Router {
    let auth = state.auth.clone();
    let body_limit = state.body_limit;
    Router::new()
        .route("/v1/sessions", post(create_session))
        .route("/v1/sessions/{id}", delete(delete_session))
        .route("/v1/commands", post(command))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(auth, require_token))
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

async fn create_session(
    State(state): State<ApiState>,
    token: Option<Extension<ClientKey>>,
    peer: Option<Extension<PeerAddr>>,
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
    let client = match (token, peer) {
        (Some(Extension(key)), _) => key,
        (None, Some(Extension(PeerAddr(addr)))) => ClientKey(format!("ip:{}", addr.ip())),
        (None, None) => ClientKey("unknown".into()),
    };
    let Some(share) = state.quota.try_take(client) else {
        state.metrics.reservations_rejected.inc();
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "this client already holds {} sessions (server.max_sessions_per_client)",
                state.quota.per_client()
            ),
        );
    };
    match state.manager.create_watched(request).await {
        Ok((info, ended)) => {
            if let Some(ended) = ended {
                tokio::spawn(async move {
                    let _ = ended.await;
                    drop(share);
                });
            }
            let host = state.media_host.clone();
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
        Err(e @ (ManagerError::InvalidCallId(_) | ManagerError::UnknownProfile(_))) => {
            error(StatusCode::BAD_REQUEST, e)
        }
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
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], {
        let mut text = state.metrics.render();
        state.manager.engines().render_metrics(&mut text);
        text
    })
        .into_response()
}

async fn healthz(State(state): State<ApiState>) -> Response {
    Json(json!({ "status": "ok", "sessions": state.manager.active() })).into_response()
}

/// 200 while new sessions are taken; 503 once shutdown has begun.
async fn readyz(State(state): State<ApiState>) -> Response {
    if state.manager.is_shutting_down() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    Json(json!({ "status": "ready" })).into_response()
}
