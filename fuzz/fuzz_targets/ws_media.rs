//! Fuzz target: WebSocket media control text (`media::ws_media::parse`), plain and JSON forms;
//! a text frame that parses as `MEDIA_START` must name its format and fields faithfully.
#![no_main]

use asr_gateway::ingest::rtp_framing::StreamFormat;
use asr_gateway::media::ws_media::{self, Control};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    // Text frames are UTF-8 by the WebSocket protocol; the transport rejects anything else.
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    match ws_media::parse(text) {
        Ok(Control::MediaStart(start)) => {
            // What the ingest does next with it.
            let _ = StreamFormat::from_asterisk(&start.format);
        }
        Ok(_) => {}
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
