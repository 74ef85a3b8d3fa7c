//! The fake's HTTP entry point: auth, injected failures, routing of the ARI REST
//! subset (channels, snoop, applications, bridges) and the events WebSocket upgrade.

use std::collections::HashMap;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Query, Request, State as Shared};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::events::{self, bridge_json, channel_json};
use super::external::{external_media, media_socket};
use super::model::{Chan, Kind, State};
use super::request::{authorized, merge_body, pct_decode};
use super::{FakeAsterisk, FakeConfig};

pub(super) type Params = HashMap<String, String>;

/// A refusal before the response is built: status and ARI error message.
pub(super) type Refused = (u16, String);

pub(super) fn reply(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(super) fn ok(body: Value) -> Response {
    reply(200, body)
}

pub(super) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// An ARI error: `{"message": ...}`.
pub(super) fn error(status: u16, message: &str) -> Response {
    reply(status, json!({ "message": message }))
}

/// Every request lands here (the router's fallback).
pub(super) async fn handle(Shared(fake): Shared<FakeAsterisk>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let method = parts.method.as_str().to_ascii_uppercase();
    let path = parts.uri.path().to_owned();
    let is_ari = path == "/ari" || path.starts_with("/ari/");
    let media_id = path.strip_prefix("/media/").map(pct_decode);
    if !is_ari && media_id.is_none() {
        return error(404, "Not Found");
    }
    if is_ari {
        fake.log_request(&method, &path);
    }
    if path == "/ari/events" {
        fake.log_events_request(
            parts.headers.contains_key(header::AUTHORIZATION),
            parts.uri.query().unwrap_or_default(),
        );
    }
    let params: Params = match Query::<Params>::try_from_uri(&parts.uri) {
        Ok(Query(p)) => p,
        Err(e) => return error(400, &format!("Malformed query string: {e}")),
    };
    if !authorized(&parts.headers, &params, fake.config()) {
        let mut response = error(401, "Authentication required");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"Asterisk REST Interface\""),
        );
        return response;
    }
    if let Some(status) = fake.take_failure(&method, &path) {
        let reason = StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        return error(status, &format!("{reason} (injected by the fake Asterisk)"));
    }
    if let Some(conn) = media_id {
        return media_socket(&fake, &mut parts, &conn).await;
    }
    if path == "/ari/events" && method == "GET" {
        return events_socket(&fake, &mut parts, &params).await;
    }
    let bytes = match axum::body::to_bytes(body, 1 << 20).await {
        Ok(b) => b,
        Err(e) => return error(400, &format!("Unreadable body: {e}")),
    };
    let (params, variables) = match merge_body(params, &bytes) {
        Ok(x) => x,
        Err(message) => return error(400, &message),
    };
    let segments: Vec<String> = path["/ari".len()..]
        .split('/')
        .filter(|s| !s.is_empty())
        .map(pct_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    if let ("POST", ["channels", "externalMedia"]) = (method.as_str(), segments.as_slice()) {
        return external_media(&fake, &params, variables).await;
    }
    route(&fake, &method, &segments, &params)
}

fn route(fake: &FakeAsterisk, method: &str, segments: &[&str], p: &Params) -> Response {
    let mut guard = fake.state();
    let st = &mut *guard;
    match (method, segments) {
        ("GET", ["asterisk", "info"]) => ok(info_json(fake.config())),
        ("GET", ["asterisk", "ping"]) => ok(json!({
            "asterisk_id": st.asterisk_id,
            "ping": "pong",
            "timestamp": events::timestamp(),
        })),
        ("GET", ["applications"]) => {
            let apps: Vec<Value> = st
                .known_apps
                .iter()
                .map(|a| st.application_json(a))
                .collect();
            ok(Value::Array(apps))
        }
        ("GET", ["applications", app]) if st.known_apps.contains(*app) => {
            ok(st.application_json(app))
        }
        ("GET", ["applications", _]) => error(404, "Application not found"),
        ("POST", ["applications", app, "subscription"]) => subscribe(st, app, p, true),
        ("DELETE", ["applications", app, "subscription"]) => subscribe(st, app, p, false),
        ("GET", ["channels"]) => {
            let mut chans: Vec<&Chan> = st.channels.values().collect();
            chans.sort_by_key(|c| c.order);
            ok(Value::Array(chans.into_iter().map(channel_json).collect()))
        }
        ("GET", ["channels", id]) => match st.channels.get(*id) {
            Some(ch) => ok(channel_json(ch)),
            None => error(404, "Channel not found"),
        },
        ("DELETE", ["channels", id]) => {
            if !st.channels.contains_key(*id) {
                return error(404, "Channel not found");
            }
            st.destroy(id, false);
            no_content()
        }
        ("POST", ["channels", id, "answer"]) => match controlled(st, id, true) {
            Err((status, message)) => error(status, &message),
            Ok(ch) => {
                ch.state = "Up";
                no_content()
            }
        },
        ("POST", ["channels", id, "continue"]) => match controlled(st, id, true) {
            Err((status, message)) => error(status, &message),
            Ok(ch) => {
                // Channels created through ARI hang up when they leave Stasis.
                let hang_up = ch.via_ari;
                st.stasis_end(id);
                if hang_up {
                    st.destroy(id, false);
                }
                no_content()
            }
        },
        ("POST", ["channels", id, "variable"]) => {
            let Some(name) = p.get("variable").filter(|v| !v.is_empty()) else {
                return error(400, "Variable name is required");
            };
            match controlled(st, id, false) {
                Err((status, message)) => error(status, &message),
                Ok(ch) => {
                    let value = p.get("value").cloned().unwrap_or_default();
                    ch.vars.insert(name.clone(), value);
                    no_content()
                }
            }
        }
        ("GET", ["channels", id, "variable"]) => {
            let Some(name) = p.get("variable").filter(|v| !v.is_empty()) else {
                return error(400, "Variable name is required");
            };
            match controlled(st, id, false) {
                Err((status, message)) => error(status, &message),
                Ok(ch) => match ch.vars.get(name).or_else(|| ch.channelvars.get(name)) {
                    Some(v) => ok(json!({ "value": v })),
                    None => error(404, "Provided variable was not found"),
                },
            }
        }
        ("POST", ["channels", id, "snoop"]) => snoop(fake, st, id, p, None),
        ("POST", ["channels", id, "snoop", snoop_id]) => snoop(fake, st, id, p, Some(snoop_id)),
        ("GET", ["bridges"]) => {
            let mut bridges: Vec<Value> = st.bridges.values().map(bridge_json).collect();
            bridges.sort_by(|a, b| a["creationtime"].as_str().cmp(&b["creationtime"].as_str()));
            ok(Value::Array(bridges))
        }
        ("POST", ["bridges"]) => create_bridge(st, p.get("bridgeId").map(String::as_str), p, false),
        ("POST", ["bridges", id]) => create_bridge(st, Some(id), p, true),
        ("GET", ["bridges", id]) => match st.bridges.get(*id) {
            Some(b) => ok(bridge_json(b)),
            None => error(404, "Bridge not found"),
        },
        ("DELETE", ["bridges", id]) => {
            if !st.bridges.contains_key(*id) {
                return error(404, "Bridge not found");
            }
            st.destroy_bridge(id);
            no_content()
        }
        ("POST", ["bridges", id, "addChannel"]) => bridge_members(st, id, p, true),
        ("POST", ["bridges", id, "removeChannel"]) => bridge_members(st, id, p, false),
        _ => error(404, "Resource not found"),
    }
}

fn info_json(config: &FakeConfig) -> Value {
    json!({
        "build": {"os": "Linux", "kernel": "6.1.0", "machine": "x86_64", "options": "",
                  "date": "2026-01-01 00:00:00 UTC", "user": "fake"},
        "system": {"version": "23.4.1", "entity_id": config.asterisk_id},
        "config": {"name": "", "default_language": "en", "setid": {"user": "", "group": ""}},
        "status": {"startup_time": events::timestamp(), "last_reload_time": events::timestamp()},
    })
}

/// A channel that ARI may control: 404 if unknown, 409 outside Stasis, and with
/// `needs_state` 412 while Down.
fn controlled<'a>(st: &'a mut State, id: &str, needs_state: bool) -> Result<&'a mut Chan, Refused> {
    match st.channels.get_mut(id) {
        None => Err((404, "Channel not found".into())),
        Some(ch) if ch.stasis.is_none() => Err((409, "Channel not in Stasis application".into())),
        Some(ch) if needs_state && ch.state == "Down" => {
            Err((412, "Channel in invalid state".into()))
        }
        Some(ch) => Ok(ch),
    }
}

/// `POST`/`DELETE /applications/{app}/subscription?eventSource=...`.
fn subscribe(st: &mut State, app: &str, p: &Params, add: bool) -> Response {
    let Some(sources) = p.get("eventSource").filter(|s| !s.is_empty()) else {
        return error(400, "Missing parameter eventSource");
    };
    if !st.known_apps.contains(app) {
        return error(404, "Application not found");
    }
    let mut channels = Vec::new();
    for source in sources.split(',').map(str::trim) {
        if let Some(id) = source.strip_prefix("channel:") {
            let known = if add {
                st.channels.contains_key(id)
            } else {
                st.subscriptions.get(app).is_some_and(|s| s.contains(id))
            };
            if !known {
                let message = if add {
                    "Event source does not exist"
                } else {
                    "Event source was not subscribed to"
                };
                return error(422, message);
            }
            channels.push(id.to_owned());
        } else if let Some(id) = source.strip_prefix("bridge:") {
            if add && !st.bridges.contains_key(id) {
                return error(422, "Event source does not exist");
            }
        } else if !(source.starts_with("endpoint:") || source.starts_with("deviceState:")) {
            return error(400, "Invalid event source URI scheme");
        }
    }
    let subscribed = st.subscriptions.entry(app.to_owned()).or_default();
    for id in channels {
        if add {
            subscribed.insert(id);
        } else {
            subscribed.remove(&id);
        }
    }
    ok(st.application_json(app))
}

fn direction(value: Option<&String>, what: &str) -> Result<&'static str, Refused> {
    match value.map(String::as_str).unwrap_or("") {
        "" | "none" => Ok("none"),
        "in" => Ok("in"),
        "out" => Ok("out"),
        "both" => Ok("both"),
        _ => Err((400, format!("Invalid direction specified for {what}"))),
    }
}

pub(super) fn split_args(value: Option<&String>) -> Vec<String> {
    match value.map(String::as_str) {
        None | Some("") => Vec::new(),
        Some(s) => s.split(',').map(str::to_owned).collect(),
    }
}

/// `POST /channels/{id}/snoop`: the snoop channel now, its StasisStart just after.
fn snoop(
    fake: &FakeAsterisk,
    st: &mut State,
    target: &str,
    p: &Params,
    path_id: Option<&str>,
) -> Response {
    let spy = match direction(p.get("spy"), "spy") {
        Ok(d) => d,
        Err((status, message)) => return error(status, &message),
    };
    let whisper = match direction(p.get("whisper"), "whisper") {
        Ok(d) => d,
        Err((status, message)) => return error(status, &message),
    };
    if spy == "none" && whisper == "none" {
        return error(
            400,
            "Direction must be specified for at least spy or whisper",
        );
    }
    let Some(app) = p.get("app").filter(|a| !a.is_empty()) else {
        return error(400, "Application name is required");
    };
    if !st.channels.contains_key(target) {
        return error(404, "Provided channel was not found");
    }
    let wanted = path_id
        .or(p.get("snoopId").map(String::as_str))
        .filter(|s| !s.is_empty());
    if wanted.is_some_and(|id| st.channels.contains_key(id)) {
        return error(500, "Snoop channel could not be created");
    }
    let (generated, order) = st.new_id();
    let id = wanted.map(str::to_owned).unwrap_or(generated);
    let kind = Kind::Snoop {
        target: target.to_owned(),
        hears_voice: spy == "in" || spy == "both",
    };
    let mut ch = Chan::new(
        id.clone(),
        format!("Snoop/{target}-{order:08x}"),
        order,
        kind,
    );
    ch.app = Some((app.clone(), split_args(p.get("appArgs"))));
    st.insert_ari_channel(ch);
    let body = channel_json(&st.channels[&id]);
    fake.schedule_stasis_start(st, id);
    ok(body)
}

fn create_bridge(st: &mut State, id: Option<&str>, p: &Params, upsert: bool) -> Response {
    const TYPES: [&str; 7] = [
        "mixing",
        "holding",
        "dtmf_events",
        "proxy_media",
        "video_sfu",
        "video_single",
        "sdp_label",
    ];
    let types = p.get("type").map(String::as_str).unwrap_or("mixing");
    if !types.split(',').all(|t| TYPES.contains(&t.trim())) {
        return error(400, "Invalid bridge type");
    }
    let bridge_type = if types.contains("holding") {
        "holding"
    } else {
        "mixing"
    };
    let id = id.filter(|i| !i.is_empty());
    if let Some(existing) = id.and_then(|i| st.bridges.get(i)) {
        return if upsert {
            ok(bridge_json(existing))
        } else {
            error(409, "Bridge with this ID already exists")
        };
    }
    let id = id
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let name = p.get("name").cloned().unwrap_or_default();
    st.create_bridge(id.clone(), bridge_type.to_owned(), name);
    ok(bridge_json(&st.bridges[&id]))
}

/// `addChannel` / `removeChannel`: all-or-nothing validation, then the change.
fn bridge_members(st: &mut State, bridge: &str, p: &Params, add: bool) -> Response {
    let Some(list) = p.get("channel").filter(|c| !c.is_empty()) else {
        return error(400, "Missing parameter channel");
    };
    if !st.bridges.contains_key(bridge) {
        return error(404, "Bridge not found");
    }
    let ids: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    for id in &ids {
        match st.channels.get(*id) {
            None => return error(400, "Channel not found"),
            Some(ch) if add && ch.stasis.is_none() => {
                return error(422, "Channel not in Stasis application")
            }
            Some(ch) if !add && ch.bridge.as_deref() != Some(bridge) => {
                return error(422, "Channel not in this bridge")
            }
            Some(_) => {}
        }
    }
    for id in ids {
        if add {
            st.join_bridge(bridge, id);
        } else {
            st.leave_bridge(id);
        }
    }
    no_content()
}

/// `GET /ari/events?app=a[,b]&subscribeAll=...` upgraded to the events WebSocket.
async fn events_socket(fake: &FakeAsterisk, parts: &mut Parts, p: &Params) -> Response {
    let apps: Vec<String> = p
        .get("app")
        .map(|a| {
            a.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if apps.is_empty() {
        return error(400, "Missing parameter app");
    }
    let subscribe_all = p
        .get("subscribeAll")
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "yes" | "1"));
    let upgrade = match WebSocketUpgrade::from_request_parts(parts, &()).await {
        Ok(u) => u,
        Err(e) => return error(400, &format!("/ari/events needs a WebSocket upgrade: {e}")),
    };
    let (id, rx) = fake.state().add_socket(apps, subscribe_all);
    let fake = fake.clone();
    upgrade
        .protocols(["ari"])
        .on_upgrade(move |ws| events::run_event_socket(fake, id, ws, rx))
}
