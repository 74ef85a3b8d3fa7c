//! `POST /channels/externalMedia` (RTP/UDP, AudioSocket/TCP, WebSocket server mode)
//! and the app's connection to a server-mode media WebSocket (`/media/<id>`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::Response;
use serde_json::{json, Map, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

use super::ari::{error, ok, split_args, Params, Refused};
use super::events::channel_json;
use super::media::{self, Format, RtpStream};
use super::model::{Chan, Ext, Kind, Link, LinkCmd, State};
use super::request::{resolve, valid_host_port};
use super::FakeAsterisk;

/// `POST /channels/externalMedia` (RTP/UDP, AudioSocket/TCP, WebSocket server mode).
pub(super) async fn external_media(
    fake: &FakeAsterisk,
    p: &Params,
    variables: Option<Map<String, Value>>,
) -> Response {
    let get = |k: &str| p.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
    let Some(app) = get("app") else {
        return error(400, "app cannot be empty");
    };
    let encapsulation = get("encapsulation").unwrap_or("rtp").to_ascii_lowercase();
    let transport = get("transport").unwrap_or("udp").to_ascii_lowercase();
    let server = get("connection_type").is_some_and(|c| c.eq_ignore_ascii_case("server"));
    // Checked in this order, with these answers, by Asterisk 23.4.1 (seen).
    if transport == "websocket" && encapsulation != "none" {
        return error(400, "encapsulation must be 'none' for websocket transport");
    }
    if encapsulation == "rtp" && transport != "udp" {
        return error(400, "transport must be 'udp' for rtp encapsulation");
    }
    if encapsulation == "audiosocket" && transport != "tcp" {
        return error(400, "transport must be 'tcp' for audiosocket encapsulation");
    }
    if server && transport != "websocket" {
        return error(
            400,
            "'server' connection_type can only be used with the websocket transport",
        );
    }
    let websocket_server = transport == "websocket" && server;
    let host = get("external_host");
    if !websocket_server {
        let Some(host) = host else {
            return error(
                400,
                "external_host is required for all but websocket server connections",
            );
        };
        if !valid_host_port(host) {
            return error(
                400,
                "external_host must be <host>:<port> for all transports other than websocket",
            );
        }
    }
    let Some(format_name) = get("format") else {
        return error(400, "format cannot be empty");
    };
    let Some(format) = Format::parse(format_name) else {
        let message =
            format!("format {format_name}: the fake Asterisk only makes ulaw, alaw, slin, slin16");
        return error(400, &message);
    };
    let wanted_id = get("channelId").map(str::to_owned);
    if wanted_id.as_ref().is_some_and(|id| fake.channel_exists(id)) {
        return error(409, "Channel with given unique ID already exists");
    }
    let data = get("data");
    let host = host.unwrap_or("");
    let link = match (encapsulation.as_str(), transport.as_str()) {
        ("rtp", "udp") => {
            let Some(remote) = resolve(host).await else {
                return error(400, "external_host must be <host>:<port>");
            };
            let socket = match UdpSocket::bind("127.0.0.1:0").await {
                Ok(s) => s,
                Err(e) => return error(500, &format!("RTP socket: {e}")),
            };
            Link::Rtp {
                socket: Arc::new(socket),
                remote,
                stream: Arc::new(Mutex::new(RtpStream::new(format))),
            }
        }
        ("audiosocket", "tcp") => {
            let Some(data) = data else {
                return error(400, "data can not be empty");
            };
            let Ok(uuid) = uuid::Uuid::parse_str(data) else {
                return error(400, "data must be a UUID for AudioSocket");
            };
            let Some(remote) = resolve(host).await else {
                return error(400, "external_host must be <host>:<port>");
            };
            // Asterisk connects at once and sends the UUID frame.
            let connect = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(remote));
            let mut stream = match connect.await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return error(500, &format!("AudioSocket connect to {host}: {e}")),
                Err(_) => return error(500, &format!("AudioSocket connect to {host}: timeout")),
            };
            if let Err(e) = stream
                .write_all(&media::audiosocket_frame(0x01, uuid.as_bytes()))
                .await
            {
                return error(500, &format!("AudioSocket write to {host}: {e}"));
            }
            return finish_audiosocket(fake, app, format, host, data, stream, wanted_id, variables);
        }
        ("none", "websocket") if server => Link::WebSocket {
            conn_id: uuid::Uuid::new_v4().to_string(),
            tx: None,
        },
        ("none", "websocket") => {
            return error(
                501,
                "The fake Asterisk does WebSocket media in server mode only",
            )
        }
        _ => return error(501, "The encapsulation and/or transport is not supported"),
    };
    let mut guard = fake.state();
    let st = &mut *guard;
    let (generated, order) = st.new_id();
    let id = wanted_id.unwrap_or(generated);
    let pointer = 0x7f0b_8800_0000u64 + order * 0x100;
    let (name, state) = match &link {
        Link::Rtp { .. } => (format!("UnicastRTP/{host}-0x{pointer:x}"), "Up"),
        _ => (format!("WebSocket/INCOMING/0x{pointer:x}"), "Down"),
    };
    let mut channelvars = std::collections::BTreeMap::new();
    match &link {
        Link::Rtp { socket, .. } => {
            let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
            channelvars.insert(
                "UNICASTRTP_LOCAL_ADDRESS".to_owned(),
                "127.0.0.1".to_owned(),
            );
            channelvars.insert("UNICASTRTP_LOCAL_PORT".to_owned(), port.to_string());
        }
        Link::WebSocket { conn_id, .. } => {
            channelvars.insert("MEDIA_WEBSOCKET_CONNECTION_ID".to_owned(), conn_id.clone());
            channelvars.insert(
                "MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE".to_owned(),
                format.optimal_frame_size().to_string(),
            );
            st.media_ws.insert(conn_id.clone(), id.clone());
        }
        Link::AudioSocket { .. } => {}
    }
    let is_rtp = matches!(link, Link::Rtp { .. });
    let kind = Kind::External(Ext {
        format,
        link,
        flow: None,
    });
    let mut ch = Chan::new(id.clone(), name, order, kind);
    ch.state = state;
    ch.channelvars = channelvars;
    let body = register_external(st, ch, app, data, variables);
    if is_rtp {
        fake.schedule_stasis_start(st, id);
    }
    ok(body)
}

#[allow(clippy::too_many_arguments)]
fn finish_audiosocket(
    fake: &FakeAsterisk,
    app: &str,
    format: Format,
    host: &str,
    data: &str,
    stream: TcpStream,
    wanted_id: Option<String>,
    variables: Option<Map<String, Value>>,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut guard = fake.state();
    let st = &mut *guard;
    let (generated, order) = st.new_id();
    let id = wanted_id.unwrap_or(generated);
    let link = Link::AudioSocket { tx };
    let mut ch = Chan::new(
        id.clone(),
        format!("AudioSocket/{host}-{data}"),
        order,
        Kind::External(Ext {
            format,
            link,
            flow: None,
        }),
    );
    ch.channelvars
        .insert("AUDIOSOCKET_UUID".into(), data.to_owned());
    ch.channelvars
        .insert("AUDIOSOCKET_SERVICE".into(), host.to_owned());
    let body = register_external(st, ch, app, Some(data), variables);
    tokio::spawn(media::run_audiosocket(fake.clone(), id.clone(), stream, rx));
    fake.schedule_stasis_start(st, id);
    ok(body)
}

/// Inserts an externalMedia channel; the response body (Channel + `channelvars`).
/// Asterisk passes `data` to Stasis as the app arguments.
fn register_external(
    st: &mut State,
    mut ch: Chan,
    app: &str,
    data: Option<&str>,
    variables: Option<Map<String, Value>>,
) -> Value {
    ch.app = Some((app.to_owned(), split_args(data.map(str::to_owned).as_ref())));
    for (k, v) in variables.unwrap_or_default() {
        let v = match v {
            Value::String(s) => s,
            other => other.to_string(),
        };
        ch.vars.insert(k, v);
    }
    let id = ch.id.clone();
    st.insert_ari_channel(ch);
    let ch = &st.channels[&id];
    let mut body = channel_json(ch);
    body["channelvars"] = json!(ch.channelvars);
    body
}

/// `GET /media/<connection id>`: the app connects to a server-mode media WebSocket.
pub(super) async fn media_socket(fake: &FakeAsterisk, parts: &mut Parts, conn: &str) -> Response {
    let upgrade = match WebSocketUpgrade::from_request_parts(parts, &()).await {
        Ok(u) => u,
        Err(e) => return error(400, &format!("/media needs a WebSocket upgrade: {e}")),
    };
    let attached = {
        let mut guard = fake.state();
        let st = &mut *guard;
        attach_media_ws(st, conn)
    };
    match attached {
        Err((status, message)) => error(status, &message),
        Ok((id, rx, media_start)) => {
            let fake = fake.clone();
            upgrade
                .protocols(["media"])
                .on_upgrade(move |ws| media::run_media_ws(fake, id, ws, rx, media_start))
        }
    }
}

type Attached = (
    String,
    tokio::sync::mpsc::UnboundedReceiver<LinkCmd>,
    String,
);

fn attach_media_ws(st: &mut State, conn: &str) -> Result<Attached, Refused> {
    let Some(id) = st.media_ws.get(conn).cloned() else {
        return Err((404, "WebSocket instance not found".into()));
    };
    let Some(ch) = st.channels.get_mut(&id) else {
        return Err((404, "WebSocket instance not found".into()));
    };
    let name = ch.name.clone();
    let Kind::External(ext) = &mut ch.kind else {
        return Err((404, "WebSocket instance not found".into()));
    };
    let format = ext.format;
    let Link::WebSocket { tx, .. } = &mut ext.link else {
        return Err((404, "WebSocket instance not found".into()));
    };
    if tx.is_some() {
        return Err((
            409,
            "Another websocket connection exists for this connection id".into(),
        ));
    }
    let (sender, rx) = tokio::sync::mpsc::unbounded_channel();
    *tx = Some(sender);
    let media_start = format!(
        "MEDIA_START connection_id:{conn} channel:{name} channel_id:{id} format:{} optimal_frame_size:{} ptime:20",
        format.name(),
        format.optimal_frame_size()
    );
    Ok((id, rx, media_start))
}
