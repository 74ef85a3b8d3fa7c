//! Fuzz target: ARI JSON from Asterisk: events-WebSocket messages (`ari::model::Message::parse`)
//! and the externalMedia response (`ari::model::ExternalMediaChannel::parse`) with the
//! accessors the controller calls on them.
#![no_main]

use asr_gateway::ari::model::{ExternalMediaChannel, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    // The WebSocket text frame and the HTTP body both reach the parser as UTF-8 text.
    let Ok(json) = std::str::from_utf8(bytes) else {
        return;
    };
    match Message::parse(json) {
        Ok(message) => {
            let _ = message.event.kind();
            if let Some(channel) = message.event.channel() {
                let _ = channel.state.as_str();
                let _ = channel.channelvar("ASR_LANG");
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Ok(external) = ExternalMediaChannel::parse(json) {
        let _ = external.unicast_rtp();
        let _ = external.audiosocket_uuid();
        let _ = external.websocket_connection_id();
        let _ = external.optimal_frame_size();
    }
});
