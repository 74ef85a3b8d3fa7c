//! ARI JSON of the fake (Channel, Bridge, Application objects) and the events WebSocket.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use serde_json::{json, Value};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use super::model::{Bridge, Chan, State};
use super::FakeAsterisk;

/// ARI's timestamp format: `2026-11-22T08:03:11.049+0000`.
pub(super) fn timestamp() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3f%z")
        .to_string()
}

/// The ARI Channel object (without `channelvars`).
pub(super) fn channel_json(ch: &Chan) -> Value {
    json!({
        "id": ch.id,
        "name": ch.name,
        "state": ch.state,
        "protocol_id": ch.protocol_id,
        "caller": {"name": ch.caller.0, "number": ch.caller.1},
        "connected": {"name": "", "number": ""},
        "accountcode": "",
        "dialplan": {
            "context": ch.dialplan.context,
            "exten": ch.dialplan.exten,
            "priority": ch.dialplan.priority,
            "app_name": ch.dialplan.app_name,
            "app_data": ch.dialplan.app_data,
        },
        "creationtime": ch.creationtime,
        "language": "en",
    })
}

/// The ARI Bridge object.
pub(super) fn bridge_json(b: &Bridge) -> Value {
    let technology = if b.bridge_type == "holding" {
        "holding_bridge"
    } else {
        "simple_bridge"
    };
    json!({
        "id": b.id,
        "technology": technology,
        "bridge_type": b.bridge_type,
        "bridge_class": "stasis",
        "creator": "Stasis",
        "name": b.name,
        "channels": b.channels,
        "creationtime": b.creationtime,
    })
}

/// One connected events WebSocket.
pub(super) struct EventSocket {
    pub id: u64,
    pub apps: Vec<String>,
    pub subscribe_all: bool,
    pub tx: UnboundedSender<SocketCmd>,
}

pub(super) enum SocketCmd {
    Text(String),
    /// Close frame 1000, then close.
    Close,
    /// Drop the connection (restart).
    Kill,
}

impl State {
    /// The ARI Application object.
    pub fn application_json(&self, app: &str) -> Value {
        let mut ids: BTreeSet<String> = self.subscriptions.get(app).cloned().unwrap_or_default();
        for ch in self.channels.values() {
            if ch.stasis.as_deref() == Some(app) {
                ids.insert(ch.id.clone());
            }
        }
        json!({
            "name": app,
            "channel_ids": ids,
            "bridge_ids": [],
            "endpoint_ids": [],
            "device_names": [],
            "events_allowed": [],
            "events_disallowed": [],
        })
    }

    /// Sends `event` (which has `type` and its fields) to every connected app in `apps`,
    /// and, with `include_all`, to apps connected with subscribeAll=true. Each copy gets
    /// `timestamp`, `application` and `asterisk_id`.
    pub fn publish(&mut self, apps: &BTreeSet<String>, include_all: bool, mut event: Value) {
        event["timestamp"] = json!(timestamp());
        event["asterisk_id"] = json!(self.asterisk_id);
        let mut dead = Vec::new();
        for socket in &self.sockets {
            for app in &socket.apps {
                if !(apps.contains(app) || (include_all && socket.subscribe_all)) {
                    continue;
                }
                event["application"] = json!(app);
                if socket.tx.send(SocketCmd::Text(event.to_string())).is_err() {
                    dead.push(socket.id);
                }
            }
        }
        self.sockets.retain(|s| !dead.contains(&s.id));
    }

    /// Sends `event` to one app only (StasisStart, StasisEnd).
    pub fn publish_to(&mut self, app: &str, event: Value) {
        let apps = BTreeSet::from([app.to_owned()]);
        self.publish(&apps, false, event);
    }

    /// Registers a socket before the upgrade completes, so no event emitted after the
    /// client sees `101 Switching Protocols` is lost.
    pub fn add_socket(
        &mut self,
        apps: Vec<String>,
        subscribe_all: bool,
    ) -> (u64, UnboundedReceiver<SocketCmd>) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.next += 1;
        let id = self.next;
        self.known_apps.extend(apps.iter().cloned());
        self.sockets.push(EventSocket {
            id,
            apps,
            subscribe_all,
            tx,
        });
        (id, rx)
    }
}

/// Pumps events to one events WebSocket until either side closes it.
pub(super) async fn run_event_socket(
    fake: FakeAsterisk,
    id: u64,
    mut ws: WebSocket,
    mut rx: UnboundedReceiver<SocketCmd>,
) {
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(SocketCmd::Text(text)) => {
                    if ws.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(SocketCmd::Close) => {
                    close_gracefully(&mut ws, 1000).await;
                    break;
                }
                Some(SocketCmd::Kill) | None => break,
            },
            msg = ws.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    fake.state().sockets.retain(|s| s.id != id);
}

/// Sends a close frame and waits (briefly) for the peer's.
pub(super) async fn close_gracefully(ws: &mut WebSocket, code: u16) {
    let frame = CloseFrame {
        code,
        reason: "".into(),
    };
    if ws.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(msg)) = ws.recv().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}
