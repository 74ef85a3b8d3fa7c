//! The gateway against a real Asterisk (23.4.1 from `scripts/asterisk.sh`): both ARI modes,
//! every media transport, DTMF, hang-ups, bursts of calls and a restart, checking the words
//! heard, what the dialplan got back, and that no channel or bridge is left on Asterisk.
//!
//! Skipped, with the reason printed, when no Asterisk build is available (see
//! tests/real_asterisk). The engine is the embedded Whisper tiny.en.

mod common;
mod real_asterisk;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{assert_heard, GatewayProcess};
use real_asterisk::Asterisk;

const LONG: Duration = Duration::from_secs(60);

/// Reference words of each fixture (tests/fixtures/*.txt).
fn reference(fixture: &str) -> String {
    std::fs::read_to_string(common::fixture(&format!("{fixture}.txt")))
        .unwrap()
        .trim()
        .to_owned()
}

/// A gateway for `ast` with these `[ari]` keys, once its events socket is connected.
fn gateway(ast: &Asterisk, ari: &str, stasis: bool) -> GatewayProcess {
    let gw = GatewayProcess::start(&format!(
        "[ari]\nmedia_timeout_ms = 3000\n{ari}\n[ari.stasis]\nenabled = {stasis}\nmax_ms = 20000\n{}",
        ast.server_toml("pbx1")
    ));
    ast.wait_for_app();
    gw
}

fn rtp(format: &str) -> String {
    format!("transport = \"rtp\"\nformat = \"{format}\"\n")
}

const AUDIOSOCKET: &str =
    "transport = \"audiosocket\"\nformat = \"slin16\"\naudiosocket_listen = \"127.0.0.1:0\"\n";
const WEBSOCKET: &str = "transport = \"websocket\"\nformat = \"ulaw\"\n";

fn command(gw: &GatewayProcess, body: Value) -> u16 {
    reqwest::blocking::Client::new()
        .post(format!("http://{}/v1/commands", gw.http))
        .json(&body)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// Events of `kind` for `call` seen so far, waiting until there are `n`.
fn wait_events(gw: &mut GatewayProcess, call: &str, kind: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + LONG;
    loop {
        let found: Vec<Value> = gw
            .all()
            .into_iter()
            .filter(|e| e["type"] == kind && e["subject"] == call)
            .collect();
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} {kind} for call {call}; saw {:#?}",
            found.len(),
            gw.all()
                .iter()
                .filter(|e| e["subject"] == call)
                .collect::<Vec<_>>()
        );
        gw.pump(Duration::from_millis(100));
    }
}

fn session_of(event: &Value) -> String {
    event["data"]["session_id"].as_str().unwrap().to_owned()
}

/// A Stasis-mode call: the words heard (events and the dialplan's `ASR_TRANSCRIPT`), the
/// codec, `ASR_STATUS=ok`.
fn stasis_call(
    ast: &Asterisk,
    gw: &mut GatewayProcess,
    call: &str,
    formats: &str,
    fixture: &str,
    codec: &str,
) {
    ast.originate(
        call,
        "asr-stasis",
        formats,
        fixture,
        &[("PLAY_DELAY", "1"), ("PLAY_TAIL", "2")],
    );
    let started = wait_events(gw, call, "asr.session.started", 1).remove(0);
    let session = session_of(&started);
    // session.started is the session's first event.
    let first = gw.of(&session).into_iter().next().unwrap();
    assert_eq!(first["type"], "asr.session.started", "{first}");
    gw.wait_for(&session, "asr.transcript.final", LONG);
    // until = "final": the answer is the first utterance.
    let wanted = match fixture {
        "two-phrases" => "I would like to pay my bills".to_owned(),
        _ => reference(fixture),
    };
    let (status, error, transcript) = ast.wait_result(call, LONG);
    assert_eq!(
        (status.as_str(), error.as_str()),
        ("ok", ""),
        "{call}: {transcript}"
    );
    assert_heard(&transcript, &wanted, 0.75);
    let ended = gw.wait_for(&session, "asr.session.ended", LONG);
    assert_eq!(ended["data"]["codec"], codec, "{ended}");
    assert_eq!(ended["data"]["stats"]["foreign_source"], 0);
}

#[test]
fn stasis_mode_over_rtp_in_ulaw_alaw_slin_and_slin16() {
    let _serial = real_asterisk::serial();
    let Some(ast) = real_asterisk::start() else {
        return;
    };
    for (format, fixture, codec) in [
        ("ulaw", "call-back", "pcmu"),
        ("alaw", "yes-interested", "pcma"),
        ("slin", "balance", "l16/8000"),
        ("slin16", "two-phrases", "l16/16000"),
    ] {
        let mut gw = gateway(&ast, &rtp(format), true);
        stasis_call(
            &ast,
            &mut gw,
            &format!("stasis-{format}"),
            format,
            fixture,
            codec,
        );
        ast.assert_nothing_left(Duration::from_secs(20));
    }
    // until = "final" hands back the first final only: the second phrase is not in it.
    let (_, _, transcript) = ast.result_of("stasis-slin16").unwrap();
    assert!(
        !transcript.to_lowercase().contains("goodbye"),
        "handed back more than the first final: {transcript}"
    );
}

#[test]
fn listen_mode_both_directions_dtmf_and_the_stop_command() {
    let _serial = real_asterisk::serial();
    let Some(ast) = real_asterisk::start() else {
        return;
    };
    let mut gw = gateway(&ast, &rtp("ulaw"), false);
    // The far end says one phrase and keys 5; the call itself says another.
    ast.originate(
        "listen-1",
        "asr-hold",
        "ulaw",
        "yes-interested",
        &[
            ("PLAY_DELAY", "2"),
            ("PLAY_FILE2", "call-back"),
            ("DTMF", "5"),
            ("PLAY_TAIL", "30"),
            ("HOLD_TAIL", "30"),
        ],
    );
    let status = command(
        &gw,
        json!({"command": "start", "call_id": "listen-1",
               "media": {"type": "ari", "channel": "listen-1", "directions": "both"}}),
    );
    assert_eq!(status, 202);
    let started = wait_events(&mut gw, "listen-1", "asr.session.started", 2);
    let speaker = |who: &str| {
        started
            .iter()
            .find(|e| e["data"]["speaker"] == who)
            .map(session_of)
            .unwrap_or_else(|| panic!("no {who} session: {started:#?}"))
    };
    let (heard, said) = (speaker("in"), speaker("out"));
    gw.wait_for(&heard, "asr.transcript.final", LONG);
    gw.wait_for(&said, "asr.transcript.final", LONG);
    assert_heard(&gw.transcript(&heard), &reference("yes-interested"), 0.75);
    assert_heard(&gw.transcript(&said), &reference("call-back"), 0.75);
    let dtmf = gw.wait_for(&heard, "asr.dtmf", LONG);
    assert_eq!(dtmf["data"]["digit"], "5");

    // One stop ends both taps; the call itself goes on.
    assert_eq!(
        command(&gw, json!({"command": "stop", "call_id": "listen-1"})),
        202
    );
    for session in [&heard, &said] {
        let ended = gw.wait_for(session, "asr.session.ended", LONG);
        assert_eq!(ended["data"]["cause"], "stopped");
    }
    ast.assert_no_taps_left(Duration::from_secs(20));
    assert!(
        ast.channel_exists("listen-1"),
        "the call goes on after the stop"
    );
    assert_eq!(ast.hangup("listen-1"), 204);
    ast.assert_nothing_left(Duration::from_secs(20));
}

/// Stasis mode (words, hand-back) and listen mode (DTMF, hang-up) over a stream transport.
fn stream_transport(ari: &str, transport: &str, formats: &str, codec: &str) {
    let _serial = real_asterisk::serial();
    let Some(ast) = real_asterisk::start() else {
        return;
    };
    let mut gw = gateway(&ast, ari, true);
    stasis_call(
        &ast,
        &mut gw,
        &format!("{transport}-stasis"),
        formats,
        "call-back",
        codec,
    );

    let call = format!("{transport}-listen");
    ast.originate(
        &call,
        "asr-hold",
        formats,
        "yes-interested",
        &[("PLAY_DELAY", "2"), ("DTMF", "#"), ("PLAY_TAIL", "30")],
    );
    let status = command(
        &gw,
        json!({"command": "start", "call_id": call, "media": {"type": "ari", "channel": call}}),
    );
    assert_eq!(status, 202);
    let started = wait_events(&mut gw, &call, "asr.session.started", 1).remove(0);
    assert_eq!(started["data"]["transport"], transport);
    let session = session_of(&started);
    gw.wait_for(&session, "asr.transcript.final", LONG);
    // The start command's acceptance follows the session's own first event.
    let events = gw.of(&session);
    assert_eq!(events[0]["type"], "asr.session.started", "{events:#?}");
    assert!(
        events.iter().any(|e| e["type"] == "asr.command.accepted"),
        "{events:#?}"
    );
    assert_heard(&gw.transcript(&session), &reference("yes-interested"), 0.75);
    let dtmf = gw.wait_for(&session, "asr.dtmf", LONG);
    assert_eq!(dtmf["data"]["digit"], "#");
    assert_eq!(ast.hangup(&call), 204);
    let ended = gw.wait_for(&session, "asr.session.ended", LONG);
    assert_eq!(ended["data"]["cause"], "hangup");
    ast.assert_nothing_left(Duration::from_secs(20));
}

#[test]
fn audiosocket_transport_in_both_modes() {
    stream_transport(AUDIOSOCKET, "audiosocket", "slin16", "l16/16000");
}

#[test]
fn websocket_transport_in_both_modes() {
    stream_transport(WEBSOCKET, "websocket", "ulaw", "pcmu");
}

#[test]
fn hangup_mid_utterance_ends_the_session_and_leaves_nothing() {
    let _serial = real_asterisk::serial();
    let Some(ast) = real_asterisk::start() else {
        return;
    };
    let mut gw = gateway(&ast, &rtp("ulaw"), false);
    ast.originate(
        "mid-1",
        "asr-hold",
        "ulaw",
        "two-phrases",
        &[("PLAY_DELAY", "2"), ("PLAY_TAIL", "30")],
    );
    assert_eq!(
        command(
            &gw,
            json!({"command": "start", "call_id": "mid-1", "media": {"type": "ari", "channel": "mid-1"}})
        ),
        202
    );
    let speech = wait_events(&mut gw, "mid-1", "asr.speech.started", 1).remove(0);
    let session = session_of(&speech);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(ast.hangup("mid-1"), 204);
    let ended = gw.wait_for(&session, "asr.session.ended", LONG);
    assert_eq!(ended["data"]["cause"], "hangup");
    // The cut utterance still ended and went to the engine.
    gw.wait_for(&session, "asr.speech.ended", LONG);
    ast.assert_nothing_left(Duration::from_secs(20));
}

/// 50 calls into Stasis at 10/s: every call is handed back (`ok` with its words, or
/// `error` with the engine's code when it is saturated), ARI keeps answering throughout,
/// and nothing is left on Asterisk afterwards.
fn burst(ast: &Asterisk, gw: &mut GatewayProcess, tag: &str, formats: &str) {
    const CALLS: usize = 50;
    let fixtures = ["yes-interested", "call-back", "balance"];
    let began = Instant::now();
    for i in 0..CALLS {
        let due = began + Duration::from_millis(100 * i as u64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        // originate() fails the test if ARI does not answer within 10 s (a frozen Asterisk).
        ast.originate(
            &format!("{tag}-{i}"),
            "asr-stasis",
            formats,
            fixtures[i % fixtures.len()],
            // The caller waits for the answer (the dialplan hangs up after the hand-back).
            &[("PLAY_DELAY", "1"), ("PLAY_TAIL", "60")],
        );
    }
    let (mut ok, mut errors) = (0, 0);
    for i in 0..CALLS {
        let call = format!("{tag}-{i}");
        let (status, error, transcript) = ast.wait_result(&call, Duration::from_secs(90));
        match status.as_str() {
            "ok" => {
                ok += 1;
                assert_heard(&transcript, &reference(fixtures[i % fixtures.len()]), 0.5);
            }
            "error" => {
                errors += 1;
                assert!(error.starts_with("asr_"), "{call}: error code {error:?}");
            }
            other => {
                panic!("{call}: ASR_STATUS={other:?} error={error:?} transcript={transcript:?}")
            }
        }
    }
    assert!(ok > 0, "{tag}: no call recognized ({errors} errors)");
    ast.assert_nothing_left(Duration::from_secs(30));
    let keepalives = gw
        .metrics()
        .lines()
        .find_map(|l| {
            l.strip_prefix("asrgw_audiosocket_keepalives_total ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    eprintln!(
        "{tag}: {ok} recognized, {errors} engine errors, {:.1} s, AudioSocket keepalives so far {keepalives}",
        began.elapsed().as_secs_f64()
    );
    gw.pump(Duration::from_millis(10));
}

#[test]
fn bursts_of_50_calls_over_every_transport_leave_nothing() {
    let _serial = real_asterisk::serial();
    let Some(ast) = real_asterisk::start() else {
        return;
    };
    for (tag, ari, formats) in [
        ("b-ulaw", rtp("ulaw"), "ulaw"),
        ("b-alaw", rtp("alaw"), "alaw"),
        ("b-slin", rtp("slin"), "slin"),
        ("b-slin16", rtp("slin16"), "slin16"),
        ("b-ws", WEBSOCKET.to_owned(), "ulaw"),
    ] {
        let mut gw = gateway(&ast, &ari, true);
        burst(&ast, &mut gw, tag, formats);
    }
}

/// The burst that froze Asterisk (issue 9), three times in a row on one Asterisk.
#[test]
fn audiosocket_bursts_three_times_in_a_row_leave_nothing() {
    let _serial = real_asterisk::serial();
    let Some(ast) = real_asterisk::start() else {
        return;
    };
    let mut gw = gateway(&ast, AUDIOSOCKET, true);
    for round in 0..3 {
        burst(&ast, &mut gw, &format!("b-as{round}"), "slin16");
    }
}

#[test]
fn asterisk_restart_under_a_live_tap() {
    let _serial = real_asterisk::serial();
    let Some(mut ast) = real_asterisk::start() else {
        return;
    };
    let mut gw = gateway(&ast, &rtp("ulaw"), false);
    ast.originate(
        "before",
        "asr-hold",
        "ulaw",
        "two-phrases",
        &[("PLAY_DELAY", "2"), ("PLAY_TAIL", "30")],
    );
    command(
        &gw,
        json!({"command": "start", "call_id": "before", "media": {"type": "ari", "channel": "before"}}),
    );
    let speech = wait_events(&mut gw, "before", "asr.speech.started", 1).remove(0);
    let session = session_of(&speech);

    ast.stop();
    let ended = gw.wait_for(&session, "asr.session.ended", LONG);
    assert!(
        ["hangup", "idle_timeout"].contains(&ended["data"]["cause"].as_str().unwrap()),
        "{ended}"
    );
    ast.boot();
    // The gateway's events socket comes back by itself; a new call is recognized.
    ast.wait_for_app();
    ast.originate(
        "after",
        "asr-hold",
        "ulaw",
        "call-back",
        &[("PLAY_DELAY", "2"), ("PLAY_TAIL", "10")],
    );
    assert_eq!(
        command(
            &gw,
            json!({"command": "start", "call_id": "after", "media": {"type": "ari", "channel": "after"}})
        ),
        202
    );
    let started = wait_events(&mut gw, "after", "asr.session.started", 1).remove(0);
    let session = session_of(&started);
    gw.wait_for(&session, "asr.transcript.final", LONG);
    assert_heard(&gw.transcript(&session), &reference("call-back"), 0.75);
    assert_eq!(ast.hangup("after"), 204);
    ast.assert_nothing_left(Duration::from_secs(20));
    assert!(gw.healthy());
}

#[test]
fn an_unreachable_engine_hands_the_call_back_with_an_error_not_a_nomatch() {
    let _serial = real_asterisk::serial();
    let Some(ast) = real_asterisk::start() else {
        return;
    };
    // Nothing listens on port 9; max_ms is far beyond the wait below, so a hand-back that
    // waited for it would fail this test.
    let gw = GatewayProcess::start(&format!(
        "[asr]\nendpoint = \"http://127.0.0.1:9\"\n[ari]\nformat = \"ulaw\"\n[ari.stasis]\nenabled = true\nmax_ms = 120000\n{}",
        ast.server_toml("pbx1")
    ));
    ast.wait_for_app();
    ast.originate(
        "no-engine",
        "asr-stasis",
        "ulaw",
        "balance",
        &[("PLAY_DELAY", "1"), ("PLAY_TAIL", "2")],
    );
    let (status, error, transcript) = ast.wait_result("no-engine", Duration::from_secs(60));
    assert_eq!(
        (status.as_str(), error.as_str(), transcript.as_str()),
        ("error", "asr_unavailable", "")
    );
    ast.assert_nothing_left(Duration::from_secs(20));
    drop(gw);
}

fn listen(gw: &GatewayProcess, call: &str) -> u16 {
    command(
        gw,
        json!({"command": "start", "call_id": call, "media": {"type": "ari", "channel": call}}),
    )
}

/// The teardown paths the fake Asterisk models (tests/ari.rs), on the real one: a call gone
/// before the snoop, media that stops, a hang-up during teardown, a call vanishing at
/// every stage of setup.
#[test]
fn every_teardown_path_leaves_nothing() {
    let _serial = real_asterisk::serial();
    let Some(ast) = real_asterisk::start() else {
        return;
    };
    let mut gw = gateway(&ast, &rtp("ulaw"), false);
    let hold = [("PLAY_DELAY", "2"), ("PLAY_TAIL", "30")];

    // Gone before the snoop: Asterisk answers 404, the gateway says so and ends the session.
    ast.originate("gone-early", "asr-hold", "ulaw", "balance", &hold);
    assert_eq!(ast.hangup("gone-early"), 204);
    assert_eq!(listen(&gw, "gone-early"), 202);
    let error = wait_events(&mut gw, "gone-early", "asr.error", 1).remove(0);
    assert_eq!(error["data"]["code"], "ari_request_failed");
    let message = error["data"]["message"].as_str().unwrap();
    assert!(
        message.contains("pbx1") && message.contains("404"),
        "{message}"
    );
    let ended = wait_events(&mut gw, "gone-early", "asr.session.ended", 1).remove(0);
    assert_eq!(ended["data"]["cause"], "hangup");
    ast.assert_no_taps_left(Duration::from_secs(20));

    // Media that stops (someone takes the bridge away): the tap ends, the call goes on.
    ast.originate("silent", "asr-hold", "ulaw", "balance", &hold);
    assert_eq!(listen(&gw, "silent"), 202);
    let speech = wait_events(&mut gw, "silent", "asr.speech.started", 1).remove(0);
    let session = session_of(&speech);
    assert_eq!(ast.delete(&format!("/bridges/{session}-bridge")), 204);
    let ended = gw.wait_for(&session, "asr.session.ended", LONG);
    assert_eq!(ended["data"]["cause"], "idle_timeout");
    ast.assert_no_taps_left(Duration::from_secs(20));
    assert!(ast.channel_exists("silent"), "the call itself goes on");
    ast.hangup("silent");

    // A stop command starts the teardown; the caller hangs up while it runs.
    ast.originate("teardown", "asr-hold", "ulaw", "yes-interested", &hold);
    assert_eq!(listen(&gw, "teardown"), 202);
    let started = wait_events(&mut gw, "teardown", "asr.session.started", 1).remove(0);
    assert_eq!(
        command(&gw, json!({"command": "stop", "call_id": "teardown"})),
        202
    );
    ast.hangup("teardown");
    let ended = gw.wait_for(&session_of(&started), "asr.session.ended", LONG);
    assert!(
        ["stopped", "hangup"].contains(&ended["data"]["cause"].as_str().unwrap()),
        "{ended}"
    );

    // The call vanishes while its tap is being set up (the stage varies with the delay).
    for i in 0..5u64 {
        let call = format!("vanish-{i}");
        ast.originate(&call, "asr-hold", "ulaw", "balance", &hold);
        assert_eq!(listen(&gw, &call), 202);
        std::thread::sleep(Duration::from_millis(i * 3));
        ast.hangup(&call);
        wait_events(&mut gw, &call, "asr.session.ended", 1);
    }
    ast.assert_nothing_left(Duration::from_secs(30));
    assert!(gw.healthy());
}

#[test]
fn wrong_credentials_stop_startup_naming_the_server() {
    let _serial = real_asterisk::serial();
    let Some(ast) = real_asterisk::start() else {
        return;
    };
    let servers = ast
        .server_toml("pbx-main")
        .replace("change-me", "s3cret-not-for-logs");
    common::assert_refused_credentials_stop_startup(&servers, "pbx-main", "s3cret-not-for-logs");
}

/// Every bundled fixture played through Asterisk is heard as completely over u-law as over
/// slin16: the telephone codec costs no word the wideband path keeps.
///
/// Not yet true, so not run by default (`cargo test --test asterisk_real -- --ignored`).
/// The u-law audio Asterisk sends, captured and transcribed whole, has every word; the
/// gateway's utterance of it loses one. Whisper tiny.en turns "interested" into
/// "interrupted" depending only on where the utterance starts: cut at 1.69 s (the VAD's
/// start minus its 300 ms pre-roll) it errs, cut at 1.5 s or 1.875 s it does not.
#[test]
#[ignore = "tiny.en is sensitive to the utterance's start on narrowband audio; see the doc comment"]
fn ulaw_is_heard_as_completely_as_slin16() {
    let _serial = real_asterisk::serial();
    let Some(ast) = real_asterisk::start() else {
        return;
    };
    let fixtures = ["yes-interested", "call-back", "balance", "two-phrases"];
    let mut errors = std::collections::HashMap::new();
    for format in ["ulaw", "slin16"] {
        let mut gw = gateway(&ast, &rtp(format), false);
        let play = [("PLAY_DELAY", "1"), ("PLAY_TAIL", "2")];
        for fixture in fixtures {
            let call = format!("par-{format}-{fixture}");
            ast.originate(&call, "asr-hold", format, fixture, &play);
            assert_eq!(listen(&gw, &call), 202);
        }
        for fixture in fixtures {
            let call = format!("par-{format}-{fixture}");
            let started = wait_events(&mut gw, &call, "asr.session.started", 1).remove(0);
            let session = session_of(&started);
            let ended = gw.wait_for(&session, "asr.session.ended", LONG);
            assert_eq!(ended["data"]["cause"], "hangup", "{ended}");
            let heard = gw.transcript(&session);
            let count = asr_gateway::bench::wer::count(&reference(fixture), &heard);
            eprintln!("{call}: {heard:?} ({count:?})");
            errors.insert(
                (format, fixture),
                count.substitutions + count.deletions + count.insertions,
            );
        }
        ast.assert_nothing_left(Duration::from_secs(20));
    }
    for fixture in fixtures {
        let (ulaw, slin16) = (errors[&("ulaw", fixture)], errors[&("slin16", fixture)]);
        assert!(
            ulaw <= slin16,
            "{fixture}: {ulaw} word errors over u-law, {slin16} over slin16"
        );
    }
}
