//! Fuzz target: a command payload as a transport hands it over, through the same stages as
//! `control::commands::Dispatcher::dispatch` before it touches a session: the size bound, JSON
//! into `Command` (or, refused, the fields read back for the rejection event), the bounds of
//! `control::limits`, the bounded reason, and the VAD options the segmenter must accept.
#![no_main]

use asr_gateway::control::commands::{Command, CommandOptions};
use asr_gateway::control::limits;
use asr_gateway::ids::is_safe_id;
use asr_gateway::media::vad::{Segmenter, VadConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    if payload.len() > limits::MAX_COMMAND_BYTES {
        return;
    }
    let command: Command = match serde_json::from_slice(payload) {
        Ok(command) => command,
        Err(e) => {
            let head: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
            let _ =
                ["command", "command_id", "call_id"].map(|k| head.get(k).and_then(|v| v.as_str()));
            check_reason(format!("malformed command: {e}"));
            return;
        }
    };
    if let Err(reason) = limits::check(&command) {
        check_reason(reason);
        return;
    }
    let (call_id, options) = match &command {
        Command::Start {
            call_id, options, ..
        }
        | Command::Update {
            call_id, options, ..
        } => (call_id, Some(options)),
        Command::Stop { call_id, .. } => (call_id, None),
    };
    assert!(
        is_safe_id(call_id),
        "an accepted command has a plain call id"
    );
    if let Some(CommandOptions { vad: Some(vad), .. }) = options {
        let config = vad.apply(VadConfig::default());
        if let Err(e) = Segmenter::new(config, 16_000) {
            check_reason(format!("invalid vad options: {e}"));
        }
    }
});

/// A rejection's reason goes into an event: it must stay bounded whatever the input held.
fn check_reason(reason: String) {
    let bounded = limits::bounded_reason(reason);
    assert!(bounded.len() <= limits::MAX_REASON_BYTES + "...".len());
}
