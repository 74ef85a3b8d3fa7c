//! Bridges of the fake: membership changes, their events, and the media flows they
//! start and stop (a snoop or caller and an externalMedia channel in one bridge).

use std::time::Instant;

use serde_json::json;

use super::events;
use super::media::{self, Format, Sink, Source};
use super::model::{Bridge, Chan, Kind, Link, LinkCmd, State};

impl State {
    /// AudioSocket / WebSocket externalMedia channels bridged with the channel or one
    /// of its snoops.
    pub fn coupled_links(&self, id: &str) -> Vec<String> {
        let mut out = Vec::new();
        for ch in self.channels.values() {
            let related =
                ch.id == id || matches!(&ch.kind, Kind::Snoop { target, .. } if target == id);
            let Some(bridge) = ch.bridge.as_ref().filter(|_| related) else {
                continue;
            };
            for member in &self.bridges[bridge].channels {
                let m = &self.channels[member];
                if m.link_tx().is_some() && !out.contains(member) {
                    out.push(member.clone());
                }
            }
        }
        out
    }

    pub fn dtmf(&mut self, id: &str, digit: char, duration_ms: u32) {
        if !self.channels.contains_key(id) {
            return;
        }
        self.channel_event(
            id,
            json!({"type": "ChannelDtmfReceived", "digit": digit.to_string(), "duration_ms": duration_ms}),
        );
        for ext in self.coupled_links(id) {
            if let Some(tx) = self.channels[&ext].link_tx() {
                let _ = tx.send(LinkCmd::Dtmf(digit));
            }
        }
    }

    pub fn create_bridge(&mut self, id: String, bridge_type: String, name: String) {
        self.created.bridges_created += 1;
        let bridge = Bridge {
            id: id.clone(),
            bridge_type,
            name,
            creationtime: events::timestamp(),
            channels: Vec::new(),
        };
        self.bridges.insert(id, bridge);
    }

    pub fn destroy_bridge(&mut self, id: &str) {
        let Some(members) = self.bridges.get(id).map(|b| b.channels.clone()) else {
            return;
        };
        for m in members {
            self.leave_bridge(&m);
        }
        self.bridges.remove(id);
        self.created.bridges_destroyed += 1;
    }

    pub fn join_bridge(&mut self, bridge_id: &str, id: &str) {
        if self.channels.get(id).and_then(|c| c.bridge.as_deref()) == Some(bridge_id) {
            return;
        }
        self.leave_bridge(id);
        let Some(bridge) = self.bridges.get_mut(bridge_id) else {
            return;
        };
        bridge.channels.push(id.to_owned());
        let bridge_json = events::bridge_json(bridge);
        if let Some(ch) = self.channels.get_mut(id) {
            ch.bridge = Some(bridge_id.to_owned());
        }
        self.channel_event(
            id,
            json!({"type": "ChannelEnteredBridge", "bridge": bridge_json}),
        );
        self.refresh_media(bridge_id);
    }

    pub fn leave_bridge(&mut self, id: &str) {
        let Some(ch) = self.channels.get_mut(id) else {
            return;
        };
        let Some(bridge_id) = ch.bridge.take() else {
            return;
        };
        if let Kind::External(ext) = &mut ch.kind {
            if let Some((_, flow)) = ext.flow.take() {
                flow.abort();
            }
        }
        let Some(bridge) = self.bridges.get_mut(&bridge_id) else {
            return;
        };
        bridge.channels.retain(|c| c != id);
        let bridge_json = events::bridge_json(bridge);
        self.channel_event(
            id,
            json!({"type": "ChannelLeftBridge", "bridge": bridge_json}),
        );
        self.refresh_media(&bridge_id);
    }

    /// (Re)starts the media flow of every externalMedia channel in the bridge whose
    /// set of sources changed: snoops and callers in the same bridge.
    pub fn refresh_media(&mut self, bridge_id: &str) {
        let Some(members) = self.bridges.get(bridge_id).map(|b| b.channels.clone()) else {
            return;
        };
        let is_source = |c: &Chan| matches!(c.kind, Kind::Snoop { .. } | Kind::Caller { .. });
        for ext_id in &members {
            let Some(Kind::External(ext)) = self.channels.get(ext_id).map(|c| &c.kind) else {
                continue;
            };
            let sources: Vec<String> = members
                .iter()
                .filter(|m| *m != ext_id && self.channels.get(*m).is_some_and(is_source))
                .cloned()
                .collect();
            if ext.flow.as_ref().map(|(s, _)| s) == Some(&sources)
                || (ext.flow.is_none() && sources.is_empty())
            {
                continue;
            }
            let format = ext.format;
            let sink = match &ext.link {
                Link::Rtp {
                    socket,
                    remote,
                    stream,
                } => Sink::Rtp {
                    socket: socket.clone(),
                    remote: *remote,
                    stream: stream.clone(),
                },
                Link::AudioSocket { tx } => Sink::AudioSocket(tx.clone()),
                Link::WebSocket { tx: Some(tx), .. } => Sink::WebSocket(tx.clone()),
                Link::WebSocket { tx: None, .. } => continue,
            };
            let media_sources: Vec<Source> =
                sources.iter().map(|s| self.source_of(s, format)).collect();
            let counters = self.counters.clone();
            let Some(Kind::External(ext)) = self.channels.get_mut(ext_id).map(|c| &mut c.kind)
            else {
                continue;
            };
            if let Some((_, old)) = ext.flow.take() {
                old.abort();
            }
            if !sources.is_empty() {
                let task = tokio::spawn(media::run_flow(sink, format, media_sources, counters));
                ext.flow = Some((sources, task.abort_handle()));
            }
        }
    }

    /// What a bridge member contributes: the voice of the caller it stands for (from
    /// the point of the caller's timeline reached now), or silence.
    pub fn source_of(&mut self, id: &str, format: Format) -> Source {
        let caller_id = match &self.channels[id].kind {
            Kind::Snoop {
                target,
                hears_voice: true,
            } => target.clone(),
            Kind::Caller { .. } => id.to_owned(),
            _ => return Source::silence(),
        };
        let Some(Kind::Caller { voice, voice_start }) =
            self.channels.get_mut(&caller_id).map(|c| &mut c.kind)
        else {
            return Source::silence();
        };
        let start = *voice_start.get_or_insert_with(Instant::now);
        let first_frame = (start.elapsed().as_millis() / media::PTIME.as_millis()) as u64;
        Source {
            pcm: Some(voice.pcm(format.rate())),
            first_frame,
        }
    }
}
