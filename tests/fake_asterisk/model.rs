//! The fake's call state (channels, bridges, Stasis membership) and what channel
//! lifecycle changes emit; bridge membership and media flows are in bridging.rs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::json;
use tokio::net::UdpSocket;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::AbortHandle;

use super::events::{self, EventSocket, SocketCmd};
use super::media::{Counters, Format, RtpStream, Voice};
use super::Counts;

pub(super) struct State {
    pub asterisk_id: String,
    /// Seconds part of generated channel ids (`1795334591.22`).
    pub epoch: u64,
    /// Never reset, so ids stay unique across restarts.
    pub next: u64,
    pub channels: HashMap<String, Chan>,
    pub bridges: HashMap<String, Bridge>,
    pub sockets: Vec<EventSocket>,
    /// app -> channel ids it subscribed to.
    pub subscriptions: HashMap<String, BTreeSet<String>>,
    /// Apps that had an events socket since the last restart.
    pub known_apps: BTreeSet<String>,
    /// Media WebSocket connection id -> channel id.
    pub media_ws: HashMap<String, String>,
    pub hold_starts: bool,
    /// Channels created through ARI awaiting their StasisStart, by creation order.
    pub pending: BTreeMap<u64, String>,
    pub created: Counts,
    pub counters: Arc<Counters>,
}

pub(super) struct Chan {
    pub id: String,
    pub name: String,
    pub state: &'static str,
    pub order: u64,
    pub creationtime: String,
    pub caller: (String, String),
    pub protocol_id: String,
    pub dialplan: Dialplan,
    /// Variables set through ARI (and at creation).
    pub vars: BTreeMap<String, String>,
    /// The `channelvars` of the externalMedia response.
    pub channelvars: BTreeMap<String, String>,
    /// The app whose Stasis the channel is in (StasisStart sent).
    pub stasis: Option<String>,
    /// The app (and args) a channel created through ARI is meant to enter.
    pub app: Option<(String, Vec<String>)>,
    pub via_ari: bool,
    pub bridge: Option<String>,
    pub kind: Kind,
}

pub(super) struct Dialplan {
    pub context: String,
    pub exten: String,
    pub priority: i64,
    pub app_name: String,
    pub app_data: String,
}

pub(super) enum Kind {
    Caller {
        voice: Arc<Voice>,
        /// When the voice started playing (first listener).
        voice_start: Option<Instant>,
    },
    Snoop {
        target: String,
        /// spy=in or both: hears the target's voice.
        hears_voice: bool,
    },
    External(Ext),
}

pub(super) struct Ext {
    pub format: Format,
    pub link: Link,
    /// Source channel ids of the running flow, and the flow task.
    pub flow: Option<(Vec<String>, AbortHandle)>,
}

pub(super) enum Link {
    Rtp {
        socket: Arc<UdpSocket>,
        remote: SocketAddr,
        stream: Arc<Mutex<RtpStream>>,
    },
    AudioSocket {
        tx: UnboundedSender<LinkCmd>,
    },
    WebSocket {
        conn_id: String,
        tx: Option<UnboundedSender<LinkCmd>>,
    },
}

/// Commands to the task owning an AudioSocket TCP stream or a media WebSocket.
pub(super) enum LinkCmd {
    /// Audio, already framed for the transport.
    Audio(Vec<u8>),
    Dtmf(char),
    /// Asterisk hangs up: TCP close / WebSocket close 1000.
    Close,
    /// Asterisk vanishes: drop the connection without a goodbye.
    Kill,
}

pub(super) struct Bridge {
    pub id: String,
    pub bridge_type: String,
    pub name: String,
    pub creationtime: String,
    pub channels: Vec<String>,
}

impl Chan {
    /// A channel with the defaults every kind shares.
    pub fn new(id: String, name: String, order: u64, kind: Kind) -> Self {
        Chan {
            id,
            name,
            state: "Up",
            order,
            creationtime: events::timestamp(),
            caller: (String::new(), String::new()),
            protocol_id: String::new(),
            dialplan: Dialplan {
                context: "default".into(),
                exten: "s".into(),
                priority: 1,
                app_name: String::new(),
                app_data: String::new(),
            },
            vars: BTreeMap::new(),
            channelvars: BTreeMap::new(),
            stasis: None,
            app: None,
            via_ari: false,
            bridge: None,
            kind,
        }
    }

    fn ext(&self) -> Option<&Ext> {
        match &self.kind {
            Kind::External(e) => Some(e),
            _ => None,
        }
    }

    /// AudioSocket or connected media WebSocket: the channel to notify of DTMF/close.
    pub fn link_tx(&self) -> Option<&UnboundedSender<LinkCmd>> {
        match &self.ext()?.link {
            Link::AudioSocket { tx } => Some(tx),
            Link::WebSocket { tx, .. } => tx.as_ref(),
            Link::Rtp { .. } => None,
        }
    }
}

fn stasis_data(app: &str, args: &[String]) -> String {
    std::iter::once(app.to_owned())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(",")
}

impl State {
    pub fn new(asterisk_id: String, counters: Arc<Counters>) -> Self {
        let epoch = chrono::Utc::now().timestamp() as u64;
        State {
            asterisk_id,
            epoch,
            next: 0,
            channels: HashMap::new(),
            bridges: HashMap::new(),
            sockets: Vec::new(),
            subscriptions: HashMap::new(),
            known_apps: BTreeSet::new(),
            media_ws: HashMap::new(),
            hold_starts: false,
            pending: BTreeMap::new(),
            created: Counts::default(),
            counters,
        }
    }

    /// A fresh unique channel id and its creation order.
    pub fn new_id(&mut self) -> (String, u64) {
        self.next += 1;
        (format!("{}.{}", self.epoch, self.next), self.next)
    }

    pub fn counts(&self) -> Counts {
        let mut c = self.created;
        c.live_channels = self.channels.values().filter(|c| c.via_ari).count();
        c.live_calls = self.channels.values().filter(|c| !c.via_ari).count();
        c.live_bridges = self.bridges.len();
        c
    }

    pub fn add_caller(&mut self, voice: Arc<Voice>) -> String {
        let (id, order) = self.new_id();
        let name = format!("PJSIP/alice-{order:08x}");
        let mut ch = Chan::new(
            id.clone(),
            name,
            order,
            Kind::Caller {
                voice,
                voice_start: None,
            },
        );
        ch.caller = ("Alice".into(), "1001".into());
        ch.protocol_id = format!("{:016x}@127.0.0.1", rand::random::<u64>());
        ch.dialplan.context = "from-internal".into();
        ch.dialplan.exten = "100".into();
        self.channels.insert(id.clone(), ch);
        id
    }

    /// Registers a channel created through ARI (counted).
    pub fn insert_ari_channel(&mut self, mut ch: Chan) {
        ch.via_ari = true;
        if let Some((app, args)) = &ch.app {
            ch.dialplan.app_name = "Stasis".into();
            ch.dialplan.app_data = stasis_data(app, args);
        }
        self.created.channels_created += 1;
        self.channels.insert(ch.id.clone(), ch);
    }

    pub fn app_connected(&self, app: &str) -> bool {
        self.sockets.iter().any(|s| s.apps.iter().any(|a| a == app))
    }

    pub fn connected_apps(&self) -> Vec<String> {
        let set: BTreeSet<String> = self
            .sockets
            .iter()
            .flat_map(|s| s.apps.iter().cloned())
            .collect();
        set.into_iter().collect()
    }

    /// Puts the channel in `app`'s Stasis and sends StasisStart there.
    pub fn stasis_start(&mut self, id: &str, app: &str, args: &[String]) {
        match self.channels.get(id) {
            None => return,
            Some(ch) if ch.stasis.as_deref() == Some(app) => return,
            Some(ch) if ch.stasis.is_some() => self.stasis_end(id),
            Some(_) => {}
        }
        let Some(ch) = self.channels.get_mut(id) else {
            return;
        };
        ch.stasis = Some(app.to_owned());
        ch.dialplan.app_name = "Stasis".into();
        ch.dialplan.app_data = stasis_data(app, args);
        let event =
            json!({"type": "StasisStart", "args": args, "channel": events::channel_json(ch)});
        self.publish_to(app, event);
    }

    /// StasisStart of every pending channel created up to `order`, oldest first (so
    /// channels created in a row enter Stasis in that order).
    pub fn start_due(&mut self, order: u64) {
        let due: Vec<u64> = self.pending.range(..=order).map(|(o, _)| *o).collect();
        for o in due {
            if let Some(id) = self.pending.remove(&o) {
                self.start_pending(&id);
            }
        }
    }

    /// The delayed StasisStart of a channel created through ARI. Stasis() fails when
    /// the app has no events socket: the channel is then hung up, as Asterisk does.
    pub fn start_pending(&mut self, id: &str) {
        let Some(ch) = self.channels.get(id) else {
            return;
        };
        let Some((app, args)) = ch.app.clone() else {
            return;
        };
        if ch.stasis.is_some() {
            return;
        }
        if self.app_connected(&app) {
            self.stasis_start(id, &app, &args);
        } else {
            self.destroy(id, false);
        }
    }

    /// StasisEnd to the app the channel is in; it leaves Stasis.
    pub fn stasis_end(&mut self, id: &str) {
        let Some(ch) = self.channels.get_mut(id) else {
            return;
        };
        let Some(app) = ch.stasis.take() else {
            return;
        };
        let event = json!({"type": "StasisEnd", "channel": events::channel_json(ch)});
        self.publish_to(&app, event);
    }

    /// Apps that receive the channel's events: its Stasis app and subscribers.
    pub fn subscribers(&self, id: &str) -> BTreeSet<String> {
        let mut apps: BTreeSet<String> = self
            .subscriptions
            .iter()
            .filter(|(_, ids)| ids.contains(id))
            .map(|(app, _)| app.clone())
            .collect();
        if let Some(app) = self.channels.get(id).and_then(|c| c.stasis.clone()) {
            apps.insert(app);
        }
        apps
    }

    /// A channel event (`type` and extra fields) to its subscribers and subscribeAll apps.
    pub fn channel_event(&mut self, id: &str, mut event: serde_json::Value) {
        let Some(ch) = self.channels.get(id) else {
            return;
        };
        event["channel"] = events::channel_json(ch);
        let apps = self.subscribers(id);
        self.publish(&apps, true, event);
    }

    /// Hangs the channel up. `request`: a ChannelHangupRequest comes first (the far
    /// end hung up); without it, as for `DELETE`: StasisEnd then ChannelDestroyed.
    pub fn destroy(&mut self, id: &str, request: bool) {
        if !self.channels.contains_key(id) {
            return;
        }
        let snoops: Vec<String> = self
            .channels
            .values()
            .filter(|c| matches!(&c.kind, Kind::Snoop { target, .. } if target == id))
            .map(|c| c.id.clone())
            .collect();
        let coupled = match self.channels[id].kind {
            Kind::Caller { .. } => self.coupled_links(id),
            _ => Vec::new(),
        };
        if request {
            self.channel_event(id, json!({"type": "ChannelHangupRequest", "cause": 16}));
        }
        self.leave_bridge(id);
        // Still subscribed after StasisEnd: ChannelDestroyed reaches the app too.
        let apps = self.subscribers(id);
        self.stasis_end(id);
        let ch = self.channels.remove(id).expect("checked above");
        let event = json!({
            "type": "ChannelDestroyed",
            "cause": 16,
            "cause_txt": "Normal Clearing",
            "channel": events::channel_json(&ch),
        });
        self.publish(&apps, true, event);
        for ids in self.subscriptions.values_mut() {
            ids.remove(id);
        }
        self.pending.retain(|_, p| p != id);
        if ch.via_ari {
            self.created.channels_destroyed += 1;
        }
        if let Kind::External(ext) = ch.kind {
            if let Some((_, flow)) = ext.flow {
                flow.abort();
            }
            match ext.link {
                Link::AudioSocket { tx } => {
                    let _ = tx.send(LinkCmd::Close);
                }
                Link::WebSocket { conn_id, tx } => {
                    self.media_ws.remove(&conn_id);
                    if let Some(tx) = tx {
                        let _ = tx.send(LinkCmd::Close);
                    }
                }
                Link::Rtp { .. } => {}
            }
        }
        for s in snoops {
            self.destroy(&s, false);
        }
        for e in coupled {
            self.destroy(&e, false);
        }
    }

    /// Closes every events socket (gracefully, or abruptly for a restart).
    pub fn drop_sockets(&mut self, abrupt: bool) {
        for s in self.sockets.drain(..) {
            let _ = s.tx.send(if abrupt {
                SocketCmd::Kill
            } else {
                SocketCmd::Close
            });
        }
    }

    /// Asterisk restarts: everything vanishes without events.
    pub fn wipe(&mut self) {
        self.drop_sockets(true);
        for (_, ch) in self.channels.drain() {
            if let Kind::External(ext) = ch.kind {
                if let Some((_, flow)) = ext.flow {
                    flow.abort();
                }
                match ext.link {
                    Link::AudioSocket { tx } | Link::WebSocket { tx: Some(tx), .. } => {
                        let _ = tx.send(LinkCmd::Kill);
                    }
                    _ => {}
                }
            }
        }
        self.bridges.clear();
        self.subscriptions.clear();
        self.known_apps.clear();
        self.media_ws.clear();
        self.pending.clear();
    }
}

impl State {
    /// The app connected to a media WebSocket (MEDIA_START sent): Up, then StasisStart.
    pub fn media_ws_started(&mut self, id: &str) {
        if let Some(ch) = self.channels.get_mut(id) {
            ch.state = "Up";
        }
        self.start_pending(id);
    }
}
