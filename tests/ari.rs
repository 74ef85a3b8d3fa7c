//! ARI control end to end: the real `asr-gateway serve` binary against the fake Asterisk
//! (tests/fake_asterisk, which follows ASTERISK-NOTES.md), RTP media, the embedded engine.
//!
//! Every test checks that what the gateway created on Asterisk (snoop and externalMedia
//! channels, bridges) was destroyed again.

mod common;
mod fake_asterisk;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{assert_heard, fixture, GatewayProcess};
use fake_asterisk::{FakeAsterisk, FakeConfig};

const APP: &str = "asrgw";
const LONG: Duration = Duration::from_secs(60);

/// The fake runs on its own runtime: the gateway harness is blocking.
struct Pbx {
    rt: tokio::runtime::Runtime,
    fake: FakeAsterisk,
}

impl Pbx {
    fn start() -> Self {
        Self::start_with(FakeConfig::default())
    }

    fn start_with(config: FakeConfig) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let fake = rt.block_on(FakeAsterisk::start(config));
        Self { rt, fake }
    }

    fn server_toml(&self, id: &str) -> String {
        let c = FakeConfig::default();
        format!(
            "[[ari.servers]]\nid = \"{id}\"\nurl = \"{}\"\nusername = \"{}\"\npassword = \"{}\"\napp = \"{APP}\"\n",
            self.fake.url(),
            c.username,
            c.password
        )
    }

    fn call(&self, wav: &str) -> String {
        self.rt.block_on(self.fake.add_call(&fixture(wav)))
    }

    fn hangup(&self, channel: &str) {
        self.rt.block_on(self.fake.hangup(channel));
    }

    /// No ARI request reached the fake since it had logged `before` of them.
    fn assert_no_requests_since(&self, before: usize) {
        let after = self.fake.requests();
        assert_eq!(
            after.len(),
            before,
            "requests reached Asterisk: {:?}",
            &after[before..]
        );
    }

    /// Wait until every channel and bridge the gateway created is destroyed.
    fn assert_nothing_left(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let c = self.fake.counts();
            if c.channels_created == c.channels_destroyed
                && c.bridges_created == c.bridges_destroyed
            {
                return;
            }
            assert!(Instant::now() < deadline, "left behind on Asterisk: {c:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A gateway controlling these (server, id) pairs, once its events socket is on each.
fn gateway(servers: &[(&Pbx, &str)], stasis: bool) -> GatewayProcess {
    gateway_with(servers, stasis, "")
}

/// As `gateway`, with more `[ari]` keys.
fn gateway_with(servers: &[(&Pbx, &str)], stasis: bool, ari: &str) -> GatewayProcess {
    let toml: String = servers
        .iter()
        .map(|(pbx, id)| pbx.server_toml(id))
        .collect();
    let gw = GatewayProcess::start(&format!(
        "[ari]\nmedia_timeout_ms = 3000\n{ari}[ari.stasis]\nenabled = {stasis}\n{toml}"
    ));
    for (pbx, id) in servers {
        let connected = pbx
            .rt
            .block_on(pbx.fake.wait_for_app(APP, Duration::from_secs(30)));
        assert!(
            connected,
            "the gateway never opened the events socket of {id}"
        );
    }
    gw
}

/// POST a command; (HTTP status, answer).
fn command(gw: &GatewayProcess, body: Value) -> (u16, Value) {
    let r = reqwest::blocking::Client::new()
        .post(format!("http://{}/v1/commands", gw.http))
        .json(&body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn listen(gw: &GatewayProcess, call_id: &str, media: Value) -> (u16, Value) {
    command(
        gw,
        json!({"command": "start", "command_id": "c1", "call_id": call_id, "media": media}),
    )
}

fn stop(gw: &GatewayProcess, call_id: &str) -> u16 {
    command(gw, json!({"command": "stop", "call_id": call_id})).0
}

/// The session of the first event of `kind` for `call_id`.
fn wait_call(gw: &mut GatewayProcess, call_id: &str, kind: &str, timeout: Duration) -> Value {
    gw.wait_for_call(call_id, kind, timeout)
}

fn session_of(event: &Value) -> String {
    event["data"]["session_id"].as_str().unwrap().to_owned()
}

#[test]
fn listen_mode_transcribes_a_channel_and_tears_down_on_hangup() {
    let pbx = Pbx::start();
    let mut gw = gateway(&[(&pbx, "pbx1")], false);
    let channel = pbx.call("yes-interested.wav");

    let (status, body) = listen(&gw, "call-a", json!({"type": "ari", "channel": channel}));
    assert_eq!(status, 202, "{body}");
    let accepted = wait_call(&mut gw, "call-a", "asr.command.accepted", LONG);
    assert_eq!(accepted["data"]["external_host"], Value::Null);
    let session = session_of(&accepted);

    let started = gw.wait_for(&session, "asr.session.started", LONG);
    assert_eq!(started["data"]["transport"], "rtp");
    gw.wait_for(&session, "asr.transcript.final", LONG);
    assert_heard(&gw.transcript(&session), "yes I am interested", 0.75);

    pbx.hangup(&channel);
    let ended = gw.wait_for(&session, "asr.session.ended", LONG);
    assert_eq!(ended["data"]["cause"], "hangup");
    assert_eq!(ended["data"]["codec"], "pcmu");
    assert_eq!(
        ended["data"]["stats"]["foreign_source"], 0,
        "RTP came from the advertised UNICASTRTP address"
    );
    pbx.assert_nothing_left();

    // The critical path: the first round (subscribe, snoop, externalMedia, bridge) in
    // parallel, then addChannel. Nothing else before media flows.
    let requests = pbx.fake.requests();
    let setup: Vec<&(String, String)> = requests
        .iter()
        .take_while(|(_, path)| !path.ends_with("/addChannel"))
        .filter(|(m, _)| m == "POST")
        .collect();
    assert_eq!(
        setup.len(),
        4,
        "setup requests before addChannel: {setup:?}"
    );
    let c = pbx.fake.counts();
    assert_eq!((c.channels_created, c.bridges_created), (2, 1), "{c:?}");
}

/// Listen and Stasis mode over a stream transport: transcripts, DTMF, hangup, cleanup.
fn stream_transport_in_both_modes(ari: &str, transport: &str, codec: &str) {
    let pbx = Pbx::start();
    let mut gw = gateway_with(&[(&pbx, "pbx1")], true, ari);
    // Listen mode.
    let channel = pbx.call("yes-interested.wav");
    let call = format!("{transport}-listen");
    let (status, body) = listen(&gw, &call, json!({"type": "ari", "channel": channel}));
    assert_eq!(status, 202, "{body}");
    let started = wait_call(&mut gw, &call, "asr.session.started", LONG);
    assert_eq!(started["data"]["transport"], transport);
    let session = session_of(&started);
    gw.wait_for(&session, "asr.transcript.final", LONG);
    assert_heard(&gw.transcript(&session), "yes I am interested", 0.75);
    pbx.rt.block_on(pbx.fake.send_dtmf(&channel, '#', 100));
    let dtmf = gw.wait_for(&session, "asr.dtmf", LONG);
    assert_eq!(dtmf["data"]["digit"], "#");
    pbx.hangup(&channel);
    let ended = gw.wait_for(&session, "asr.session.ended", LONG);
    assert_eq!(ended["data"]["cause"], "hangup");
    assert_eq!(ended["data"]["codec"], codec);

    // Stasis mode.
    let channel = pbx.call("balance.wav");
    pbx.rt.block_on(pbx.fake.enter_stasis(&channel, APP, &[]));
    let started = wait_call(&mut gw, &channel, "asr.session.started", LONG);
    let session = session_of(&started);
    gw.wait_for(&session, "asr.transcript.final", LONG);
    assert_heard(&gw.transcript(&session), "what is my balance", 0.6);
    gw.wait_for(&session, "asr.session.ended", LONG);
    pbx.assert_nothing_left();
    let c = pbx.fake.counts();
    assert_eq!((c.channels_created, c.bridges_created), (4, 2), "{c:?}");
}

#[test]
fn audiosocket_transport_in_both_modes() {
    stream_transport_in_both_modes(
        "transport = \"audiosocket\"\nformat = \"slin16\"\naudiosocket_listen = \"127.0.0.1:0\"\n",
        "audiosocket",
        "l16/16000",
    );
}

#[test]
fn websocket_transport_in_both_modes() {
    stream_transport_in_both_modes("transport = \"websocket\"\n", "websocket", "pcmu");
}

#[test]
fn stasis_mode_answers_recognizes_and_continues_in_the_dialplan() {
    let pbx = Pbx::start();
    let mut gw = gateway(&[(&pbx, "pbx1")], true);
    let channel = pbx.call("call-back.wav");
    pbx.rt.block_on(pbx.fake.enter_stasis(&channel, APP, &[]));

    let started = wait_call(&mut gw, &channel, "asr.session.started", LONG);
    let session = session_of(&started);
    gw.wait_for(&session, "asr.transcript.final", LONG);
    assert_heard(
        &gw.transcript(&session),
        "please call me back tomorrow",
        0.6,
    );
    gw.wait_for(&session, "asr.session.ended", LONG);

    // Handed back: result variables, then continue.
    let deadline = Instant::now() + Duration::from_secs(20);
    let continue_path = format!("/ari/channels/{channel}/continue");
    while !pbx
        .fake
        .requests()
        .iter()
        .any(|(m, p)| m == "POST" && *p == continue_path)
    {
        assert!(
            Instant::now() < deadline,
            "never continued: {:?}",
            pbx.fake.requests()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let requests = pbx.fake.requests();
    let variables = requests
        .iter()
        .filter(|(_, p)| *p == format!("/ari/channels/{channel}/variable"))
        .count();
    assert!(variables >= 2, "result variables not set: {requests:?}");
    assert!(
        requests
            .iter()
            .any(|(_, p)| *p == format!("/ari/channels/{channel}/answer")),
        "not answered: {requests:?}"
    );
    pbx.assert_nothing_left();
}

#[test]
fn hangup_before_the_snoop_reports_an_error_and_leaves_nothing() {
    let pbx = Pbx::start();
    let mut gw = gateway(&[(&pbx, "pbx1")], false);
    let channel = pbx.call("balance.wav");
    // The call is gone before the gateway's snoop reaches Asterisk.
    pbx.hangup(&channel);
    let (status, _) = listen(
        &gw,
        "gone-early",
        json!({"type": "ari", "channel": channel}),
    );
    assert_eq!(status, 202);
    let error = wait_call(&mut gw, "gone-early", "asr.error", LONG);
    assert_eq!(error["data"]["code"], "ari_request_failed");
    let message = error["data"]["message"].as_str().unwrap();
    assert!(
        message.contains("pbx1") && message.contains("404"),
        "{message}"
    );
    let ended = wait_call(&mut gw, "gone-early", "asr.session.ended", LONG);
    assert_eq!(ended["data"]["cause"], "hangup");
    pbx.assert_nothing_left();
}

#[test]
fn hangup_mid_utterance_ends_the_session_with_its_speech() {
    let pbx = Pbx::start();
    let mut gw = gateway(&[(&pbx, "pbx1")], false);
    let channel = pbx.call("two-phrases.wav");
    listen(&gw, "mid", json!({"type": "ari", "channel": channel}));
    wait_call(&mut gw, "mid", "asr.speech.started", LONG);
    pbx.hangup(&channel);
    let ended = wait_call(&mut gw, "mid", "asr.speech.ended", LONG);
    let session = session_of(&ended);
    let ended = gw.wait_for(&session, "asr.session.ended", LONG);
    assert_eq!(ended["data"]["cause"], "hangup");
    pbx.assert_nothing_left();
}

#[test]
fn both_directions_are_two_sessions_labelled_by_speaker() {
    let pbx = Pbx::start();
    let mut gw = gateway(&[(&pbx, "pbx1")], false);
    let channel = pbx.call("yes-interested.wav");
    let media = json!({"type": "ari", "channel": channel, "directions": "both"});
    let (status, body) = listen(&gw, "two-way", media);
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + LONG;
    let started = loop {
        let started: Vec<Value> = gw
            .all()
            .into_iter()
            .filter(|e| e["type"] == "asr.session.started" && e["subject"] == "two-way")
            .collect();
        if started.len() == 2 {
            break started;
        }
        assert!(Instant::now() < deadline, "sessions: {started:#?}");
        gw.pump(Duration::from_millis(100));
    };
    let speaker_session = |speaker: &str| {
        started
            .iter()
            .find(|e| e["data"]["speaker"] == speaker)
            .map(session_of)
            .unwrap_or_else(|| panic!("no {speaker} session: {started:#?}"))
    };
    let (heard, out) = (speaker_session("in"), speaker_session("out"));
    gw.wait_for(&heard, "asr.transcript.final", LONG);
    assert_heard(&gw.transcript(&heard), "yes I am interested", 0.75);

    // One stop command ends both streams of the call.
    assert_eq!(stop(&gw, "two-way"), 202);
    gw.wait_for(&heard, "asr.session.ended", LONG);
    gw.wait_for(&out, "asr.session.ended", LONG);
    pbx.assert_nothing_left();
    let c = pbx.fake.counts();
    assert_eq!((c.channels_created, c.bridges_created), (4, 2), "{c:?}");
    let snoops: Vec<String> = pbx
        .fake
        .requests()
        .into_iter()
        .filter(|(_, p)| p.ends_with("/snoop"))
        .map(|(_, p)| p)
        .collect();
    assert_eq!(snoops.len(), 2, "{snoops:?}");
    pbx.hangup(&channel);
}

#[test]
fn media_that_stops_ends_the_tap() {
    let pbx = Pbx::start();
    let mut gw = gateway(&[(&pbx, "pbx1")], false);
    let channel = pbx.call("balance.wav");
    listen(&gw, "silent", json!({"type": "ari", "channel": channel}));
    let started = wait_call(&mut gw, "silent", "asr.session.started", LONG);
    let session = session_of(&started);
    gw.wait_for(&session, "asr.speech.started", LONG);
    // Someone else takes the bridge away: the call is up, but no media reaches the gateway.
    let c = FakeConfig::default();
    let gone = reqwest::blocking::Client::new()
        .delete(format!("{}/ari/bridges/{session}-bridge", pbx.fake.url()))
        .basic_auth(&c.username, Some(&c.password))
        .send()
        .unwrap();
    assert_eq!(gone.status().as_u16(), 204);
    let ended = gw.wait_for(&session, "asr.session.ended", LONG);
    assert_eq!(ended["data"]["cause"], "idle_timeout");
    pbx.assert_nothing_left();
    assert!(pbx.fake.channel_exists(&channel), "the call itself goes on");
    pbx.hangup(&channel);
}

#[test]
fn hangup_during_teardown_leaves_nothing() {
    let pbx = Pbx::start();
    let mut gw = gateway(&[(&pbx, "pbx1")], false);
    let channel = pbx.call("yes-interested.wav");
    listen(&gw, "teardown", json!({"type": "ari", "channel": channel}));
    let started = wait_call(&mut gw, "teardown", "asr.session.started", LONG);
    let session = session_of(&started);
    // A stop command starts the teardown; the caller hangs up while it runs.
    assert_eq!(stop(&gw, "teardown"), 202);
    pbx.hangup(&channel);
    let ended = gw.wait_for(&session, "asr.session.ended", LONG);
    assert!(
        ["stopped", "hangup"].contains(&ended["data"]["cause"].as_str().unwrap()),
        "{ended}"
    );
    pbx.assert_nothing_left();
    assert!(gw.healthy());
}

#[test]
fn ari_errors_are_reported_per_call_and_leave_nothing() {
    let pbx = Pbx::start();
    let mut gw = gateway(&[(&pbx, "pbx1")], false);
    for (i, (method, path, status)) in [
        ("POST", "/bridges", 500u16),
        ("POST", "/externalMedia", 409),
        ("POST", "/addChannel", 500),
    ]
    .into_iter()
    .enumerate()
    {
        let channel = pbx.call("balance.wav");
        pbx.fake.fail_next(method, path, status, 1);
        let call = format!("err-{i}");
        listen(&gw, &call, json!({"type": "ari", "channel": channel}));
        let error = wait_call(&mut gw, &call, "asr.error", LONG);
        assert_eq!(error["data"]["code"], "ari_request_failed");
        let message = error["data"]["message"].as_str().unwrap();
        assert!(message.contains(&status.to_string()), "{message}");
        wait_call(&mut gw, &call, "asr.session.ended", LONG);
        pbx.assert_nothing_left();
        pbx.hangup(&channel);
    }
    assert!(gw.healthy(), "the gateway keeps running");
}

#[test]
fn events_socket_drop_is_survived_and_a_missed_hangup_is_noticed() {
    let pbx = Pbx::start();
    let mut gw = gateway(&[(&pbx, "pbx1")], false);
    let channel = pbx.call("yes-interested.wav");
    listen(&gw, "drop", json!({"type": "ari", "channel": channel}));
    let started = wait_call(&mut gw, "drop", "asr.session.started", LONG);
    let session = session_of(&started);

    pbx.rt.block_on(pbx.fake.drop_event_sockets());
    gw.wait_for(&session, "asr.transcript.final", LONG);
    // Hang up right after the drop: the event may be missed; the reconnect check finds it.
    pbx.rt.block_on(pbx.fake.drop_event_sockets());
    pbx.hangup(&channel);
    let ended = gw.wait_for(&session, "asr.session.ended", LONG);
    assert_eq!(ended["data"]["cause"], "hangup");
    pbx.assert_nothing_left();

    // And the socket is back: a new call works.
    let channel = pbx.call("balance.wav");
    listen(
        &gw,
        "after-drop",
        json!({"type": "ari", "channel": channel}),
    );
    let accepted = wait_call(&mut gw, "after-drop", "asr.session.started", LONG);
    gw.wait_for(&session_of(&accepted), "asr.transcript.final", LONG);
    pbx.hangup(&channel);
    pbx.assert_nothing_left();
}

#[test]
fn asterisk_restart_ends_its_calls_and_new_calls_work_after() {
    let pbx = Pbx::start();
    let mut gw = gateway(&[(&pbx, "pbx1")], false);
    let channel = pbx.call("two-phrases.wav");
    listen(
        &gw,
        "before-restart",
        json!({"type": "ari", "channel": channel}),
    );
    let started = wait_call(&mut gw, "before-restart", "asr.session.started", LONG);
    let session = session_of(&started);

    pbx.rt
        .block_on(pbx.fake.restart(Duration::from_millis(1500)));
    let ended = gw.wait_for(&session, "asr.session.ended", LONG);
    assert!(
        ["hangup", "idle_timeout"].contains(&ended["data"]["cause"].as_str().unwrap()),
        "{ended}"
    );

    let channel = pbx.call("balance.wav");
    listen(
        &gw,
        "after-restart",
        json!({"type": "ari", "channel": channel}),
    );
    let started = wait_call(&mut gw, "after-restart", "asr.session.started", LONG);
    gw.wait_for(&session_of(&started), "asr.transcript.final", LONG);
    assert!(gw.healthy());
}

#[test]
fn two_asterisk_servers_at_once() {
    let east = Pbx::start();
    let west = Pbx::start();
    let mut gw = gateway(&[(&east, "east"), (&west, "west")], false);
    let a = east.call("yes-interested.wav");
    let b = west.call("balance.wav");
    listen(
        &gw,
        "on-east",
        json!({"type": "ari", "server": "east", "channel": a}),
    );
    listen(
        &gw,
        "on-west",
        json!({"type": "ari", "server": "west", "channel": b}),
    );
    // Without a server name the gateway cannot choose: rejected, naming both.
    let (status, body) = listen(&gw, "unnamed", json!({"type": "ari", "channel": a}));
    assert_eq!(status, 400);
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.contains("east") && reason.contains("west"),
        "{reason}"
    );

    for (call, reference) in [
        ("on-east", "yes I am interested"),
        ("on-west", "what is my balance"),
    ] {
        let started = wait_call(&mut gw, call, "asr.session.started", LONG);
        let session = session_of(&started);
        gw.wait_for(&session, "asr.transcript.final", LONG);
        assert_heard(&gw.transcript(&session), reference, 0.6);
    }
    east.hangup(&a);
    west.hangup(&b);
    east.assert_nothing_left();
    west.assert_nothing_left();
    assert_eq!(east.fake.counts().channels_created, 2);
    assert_eq!(west.fake.counts().channels_created, 2);
}

#[test]
fn a_channel_vanishing_mid_setup_leaves_nothing_behind() {
    let pbx = Pbx::start();
    let mut gw = gateway(&[(&pbx, "pbx1")], false);
    for i in 0..5 {
        let channel = pbx.call("balance.wav");
        let call = format!("vanish-{i}");
        listen(&gw, &call, json!({"type": "ari", "channel": channel}));
        // Hang up while the tap is being set up (the exact stage varies run to run).
        std::thread::sleep(Duration::from_millis(i * 3));
        pbx.hangup(&channel);
        wait_call(&mut gw, &call, "asr.session.ended", LONG);
    }
    pbx.assert_nothing_left();
    assert!(gw.healthy());
}

#[test]
fn dtmf_on_the_channel_becomes_an_event() {
    let pbx = Pbx::start();
    let mut gw = gateway(&[(&pbx, "pbx1")], false);
    let channel = pbx.call("balance.wav");
    listen(&gw, "keys", json!({"type": "ari", "channel": channel}));
    let started = wait_call(&mut gw, "keys", "asr.session.started", LONG);
    let session = session_of(&started);
    pbx.rt.block_on(pbx.fake.send_dtmf(&channel, '7', 160));
    let dtmf = gw.wait_for(&session, "asr.dtmf", LONG);
    assert_eq!(dtmf["data"]["digit"], "7");
    assert_eq!(dtmf["data"]["duration_ms"], 160);
    pbx.hangup(&channel);
    pbx.assert_nothing_left();
}

#[test]
fn wrong_credentials_stop_startup_naming_the_server() {
    let pbx = Pbx::start();
    let servers = format!(
        "[[ari.servers]]\nid = \"pbx-main\"\nurl = \"{}\"\nusername = \"asterisk\"\npassword = \"s3cret-wrong\"\n",
        pbx.fake.url()
    );
    common::assert_refused_credentials_stop_startup(&servers, "pbx-main", "s3cret-wrong");
}

/// Toll fraud through path injection (issue 10): a start command whose channel id would
/// add a query or path segments to an ARI request is rejected before any request is made.
#[test]
fn injected_channel_ids_are_rejected_and_never_reach_asterisk() {
    let pbx = Pbx::start();
    let mut gw = gateway(&[(&pbx, "pbx1")], false);
    let before = pbx.fake.requests().len();
    let payloads = [
        "x?endpoint=PJSIP/900123456&app=asrgw".to_owned(),
        "../asterisk/modules/res_pjsip.so".to_owned(),
        "1795334591.22/../../channels".to_owned(),
        "a%2F..%2Fasterisk".to_owned(),
        "x".repeat(60_000),
    ];
    for (i, channel) in payloads.iter().enumerate() {
        let call = format!("inject-{i}");
        let (status, body) = listen(&gw, &call, json!({"type": "ari", "channel": channel}));
        assert_eq!(status, 400, "{body}");
        let reason = body["reason"].as_str().unwrap();
        assert!(reason.contains("media.channel"), "{reason}");
        assert!(
            reason.len() < 200,
            "the id is echoed whole: {} bytes",
            reason.len()
        );
        let rejected = wait_call(&mut gw, &call, "asr.command.rejected", LONG);
        assert_eq!(rejected["data"]["reason"], reason);
    }
    // A command of 100 KB is refused for its size before it is parsed; one of 1 MB is over
    // the HTTP body limit and never read whole.
    let big = "x".repeat(100_000);
    let (status, body) = listen(&gw, "inject-big", json!({"type": "ari", "channel": big}));
    assert_eq!(status, 400);
    assert!(
        body["reason"].as_str().unwrap().contains("at most 65536"),
        "{body}"
    );
    let huge = "x".repeat(1_000_000);
    let (status, body) = listen(&gw, "inject-huge", json!({"type": "ari", "channel": huge}));
    assert_eq!(status, 413, "{body}");
    pbx.assert_no_requests_since(before);
    assert!(gw.healthy());
}

/// The same injection over every command broker: each payload is rejected, none reaches
/// Asterisk.
#[test]
fn injected_channel_ids_over_every_broker_never_reach_asterisk() {
    let pbx = Pbx::start();
    let u = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let (rabbit_queue, nats_stream, nats_subject, redis_stream) = (
        format!("test.inject.{u}"),
        format!("TINJ{u}"),
        format!("tinj{u}.commands"),
        format!("test:inject:{u}"),
    );
    let mut gw = GatewayProcess::start(&format!(
        "[commands]\nsources = [\"rabbitmq\", \"nats\", \"redis\"]\n\
         [commands.rabbitmq]\nqueue = \"{rabbit_queue}\"\ndead_letter_exchange = \"{rabbit_queue}.dlx\"\n\
         [commands.nats]\nstream = \"{nats_stream}\"\nsubject = \"{nats_subject}\"\ndurable = \"gw{u}\"\n\
         [commands.redis]\nstream = \"{redis_stream}\"\ngroup = \"gw{u}\"\ndead_letter_stream = \"{redis_stream}:dead\"\n\
         [ari.stasis]\nenabled = false\n{}",
        pbx.server_toml("pbx1")
    ));
    assert!(pbx
        .rt
        .block_on(pbx.fake.wait_for_app(APP, Duration::from_secs(30))));
    let before = pbx.fake.requests().len();
    let start = |call: &str| {
        json!({"command": "start", "call_id": call,
               "media": {"type": "ari", "channel": "x?endpoint=PJSIP/900123456&app=asrgw"}})
        .to_string()
    };
    let calls = [
        format!("rmq-{u}"),
        format!("nats-{u}"),
        format!("redis-{u}"),
    ];
    pbx.rt.block_on(async {
        // RabbitMQ: to the command queue through the default exchange.
        use lapin::options::BasicPublishOptions;
        let amqp = lapin::Connection::connect(
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            lapin::ConnectionProperties::default(),
        )
        .await
        .unwrap();
        // A passive declare of a missing queue closes its channel: a new one per try.
        let mut channel = amqp.create_channel().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while channel
            .queue_declare(
                rabbit_queue.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the gateway never declared its queue"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            channel = amqp.create_channel().await.unwrap();
        }
        channel
            .basic_publish(
                "".into(),
                rabbit_queue.as_str().into(),
                BasicPublishOptions::default(),
                start(&calls[0]).as_bytes(),
                Default::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        // NATS JetStream.
        let js =
            async_nats::jetstream::new(async_nats::connect("nats://127.0.0.1:4222").await.unwrap());
        let deadline = Instant::now() + Duration::from_secs(20);
        while js.get_stream(&nats_stream).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the gateway never created its stream"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        js.publish(nats_subject.clone(), start(&calls[1]).into())
            .await
            .unwrap()
            .await
            .unwrap();
        // Redis Streams.
        let redis = redis::Client::open("redis://127.0.0.1:6379").unwrap();
        let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
        let _: String = redis::cmd("XADD")
            .arg(&redis_stream)
            .arg("*")
            .arg("payload")
            .arg(start(&calls[2]))
            .query_async(&mut conn)
            .await
            .unwrap();
    });
    for call in &calls {
        let rejected = wait_call(&mut gw, call, "asr.command.rejected", LONG);
        let reason = rejected["data"]["reason"].as_str().unwrap();
        assert!(reason.contains("media.channel"), "{reason}");
    }
    pbx.assert_no_requests_since(before);
    // The gateway first: its consumers would declare what is deleted below again.
    drop(gw);
    pbx.rt.block_on(async {
        let js =
            async_nats::jetstream::new(async_nats::connect("nats://127.0.0.1:4222").await.unwrap());
        let _ = js.delete_stream(&nats_stream).await;
        let redis = redis::Client::open("redis://127.0.0.1:6379").unwrap();
        let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
        let _: Result<redis::Value, _> = redis::cmd("DEL")
            .arg(&redis_stream)
            .arg(format!("{redis_stream}:dead"))
            .query_async(&mut conn)
            .await;
        let amqp = lapin::Connection::connect(
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            lapin::ConnectionProperties::default(),
        )
        .await
        .unwrap();
        let channel = amqp.create_channel().await.unwrap();
        for queue in [rabbit_queue.clone(), format!("{rabbit_queue}.dead")] {
            let _ = channel
                .queue_delete(queue.as_str().into(), Default::default())
                .await;
        }
        let _ = channel
            .exchange_delete(
                format!("{rabbit_queue}.dlx").as_str().into(),
                Default::default(),
            )
            .await;
    });
}
