//! Self-test of the fake Asterisk (tests/fake_asterisk): drives it over real sockets,
//! without the gateway, and checks what the gateway's tests rely on.

mod fake_asterisk;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use asr_gateway::ari::{ExternalMediaChannel, Message as AriMessage};
use asr_gateway::media::rtp;
use asr_gateway::media::ws_media::{self, Control};
use asr_gateway::sender::{packetize, read_wav, SendOptions};
use fake_asterisk::{FakeAsterisk, FakeConfig};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Failure guard for anything awaited (never a timing assertion).
const GUARD: Duration = Duration::from_secs(10);

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

async fn guarded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(GUARD, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A minimal ARI REST client (HTTP Basic with the default credentials).
struct Ari {
    http: reqwest::Client,
    base: String,
}

impl Ari {
    fn new(fake: &FakeAsterisk) -> Self {
        Ari {
            http: reqwest::Client::new(),
            base: format!("{}/ari", fake.url()),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        let request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .basic_auth("asterisk", Some("asterisk"));
        let response = guarded(path, request.send()).await.expect("ARI request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("ARI body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{path}: body not JSON ({e}): {text}"))
        };
        (status, body)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path).await
    }

    async fn post(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::POST, path).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path).await
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// An events WebSocket; every event must parse with the gateway's model.
struct Events {
    ws: Ws,
}

impl Events {
    async fn connect(fake: &FakeAsterisk, apps: &str) -> Self {
        let url = format!(
            "{}/ari/events?app={apps}&api_key=asterisk:asterisk",
            fake.ws_url()
        );
        let (ws, _) = guarded("events connect", tokio_tungstenite::connect_async(url))
            .await
            .expect("events socket");
        for app in apps.split(',') {
            assert!(
                fake.wait_for_app(app, GUARD).await,
                "app {app} not registered"
            );
        }
        Events { ws }
    }

    /// The next event, or None once the socket is closed.
    async fn next(&mut self) -> Option<Value> {
        loop {
            let msg = guarded("next event", self.ws.next()).await;
            match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
                Some(Ok(Message::Text(text))) => {
                    if let Err(e) = AriMessage::parse(text.as_str()) {
                        panic!("event does not parse with asr_gateway::ari::Message ({e}): {text}");
                    }
                    return Some(serde_json::from_str(text.as_str()).unwrap());
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// Events up to and including the first one of `kind` about channel `id`.
    async fn until(&mut self, kind: &str, id: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let event = self.next().await.unwrap_or_else(|| {
                panic!("socket closed waiting for {kind} of {id}; saw {seen:?}")
            });
            let hit = event["type"] == kind && event["channel"]["id"] == id;
            seen.push(event);
            if hit {
                return seen;
            }
        }
    }

    async fn wait(&mut self, kind: &str, id: &str) -> Value {
        self.until(kind, id).await.pop().unwrap()
    }
}

/// Types of the events about channel `id`, in order.
fn types_of(events: &[Value], id: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["channel"]["id"] == id)
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

/// `types` restricted to `kinds` (other events, e.g. bridge ones, may interleave).
fn only(types: &[String], kinds: &[&str]) -> Vec<String> {
    types
        .iter()
        .filter(|t| kinds.contains(&t.as_str()))
        .cloned()
        .collect()
}

/// Waits until the fake's RTP counter stops moving (the flow was stopped).
async fn assert_rtp_stops(fake: &FakeAsterisk) {
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = fake.rtp_packets_sent();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(fake.rtp_packets_sent(), before, "RTP still flowing");
}

fn ext_channel(body: &Value) -> ExternalMediaChannel {
    ExternalMediaChannel::parse(&body.to_string()).expect("externalMedia response parses")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_refused_without_credentials_and_accepted_with_them() {
    let fake = FakeAsterisk::start(FakeConfig::default()).await;
    let http = reqwest::Client::new();
    let info = format!("{}/ari/asterisk/info", fake.url());

    let r = http.get(&info).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"message": "Authentication required"}));

    let r = http
        .get(&info)
        .basic_auth("asterisk", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .get(format!("{info}?api_key=asterisk:wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    for request in [
        http.get(&info).basic_auth("asterisk", Some("asterisk")),
        http.get(format!("{info}?api_key=asterisk:asterisk")),
    ] {
        let r = request.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["system"]["version"], "23.4.1");
        assert_eq!(body["system"]["entity_id"], "02:fc:00:00:00:01");
    }

    // The events socket follows the same rules.
    let url = format!("{}/ari/events?app=gw", fake.ws_url());
    match tokio_tungstenite::connect_async(url.clone()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 401)
        }
        other => panic!("events without credentials: {other:?}"),
    }
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Authorization",
        "Basic YXN0ZXJpc2s6YXN0ZXJpc2s=".parse().unwrap(),
    );
    let (_ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("Basic auth accepted");
    assert!(fake.wait_for_app("gw", GUARD).await);

    // Unknown resources and unknown channels answer like ARI.
    let ari = Ari::new(&fake);
    assert_eq!(
        ari.get("/nothing/here").await,
        (404, json!({"message": "Resource not found"}))
    );
    assert_eq!(
        ari.get("/channels/42.42").await,
        (404, json!({"message": "Channel not found"}))
    );
    let (status, _) = ari
        .post("/channels/externalMedia?app=gw&external_host=nohost&format=ulaw")
        .await;
    assert_eq!(status, 400);

    let requests = fake.requests();
    assert_eq!(
        requests[0],
        ("GET".to_owned(), "/ari/asterisk/info".to_owned())
    );
    assert!(requests.contains(&("GET".to_owned(), "/ari/events".to_owned())));
    assert!(requests.contains(&("POST".to_owned(), "/ari/channels/externalMedia".to_owned())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_socket_receives_stasis_start_for_a_snoop() {
    let fake = FakeAsterisk::start(FakeConfig::default()).await;
    let ari = Ari::new(&fake);
    let mut events = Events::connect(&fake, "gw,other").await;
    let caller = fake.add_call(&fixture("balance.wav")).await;

    let (status, snoop) = ari
        .post(&format!(
            "/channels/{caller}/snoop?spy=in&whisper=none&app=gw&appArgs=tap,in&snoopId=snoop-1"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(snoop["id"], "snoop-1");
    assert!(snoop["name"]
        .as_str()
        .unwrap()
        .starts_with(&format!("Snoop/{caller}-")));

    let event = events.wait("StasisStart", "snoop-1").await;
    assert_eq!(event["application"], "gw");
    assert_eq!(event["args"], json!(["tap", "in"]));
    assert_eq!(event["asterisk_id"], "02:fc:00:00:00:01");
    let ts = event["timestamp"].as_str().unwrap();
    assert_eq!(ts.len(), "2026-11-22T08:03:11.049+0000".len(), "{ts}");
    assert!(
        ts.ends_with("+0000") && ts.as_bytes()[10] == b'T' && ts.as_bytes()[19] == b'.',
        "{ts}"
    );
    for field in [
        "id",
        "name",
        "state",
        "protocol_id",
        "caller",
        "connected",
        "accountcode",
        "dialplan",
        "creationtime",
        "language",
    ] {
        assert!(
            event["channel"].get(field).is_some(),
            "channel lacks {field}"
        );
    }
    assert_eq!(event["channel"]["dialplan"]["app_name"], "Stasis");
    assert!(fake.channel_exists("snoop-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_tap_carries_the_callers_voice_until_hangup() {
    let fake = FakeAsterisk::start(FakeConfig::default()).await;
    let ari = Ari::new(&fake);
    let mut gw = Events::connect(&fake, "gw").await;
    let mut tap = Events::connect(&fake, "tap").await;
    let voice = fixture("yes-interested.wav");
    let caller = fake.add_call(&voice).await;
    fake.enter_stasis(&caller, "gw", &["inbound"]).await;
    let start = gw.wait("StasisStart", &caller).await;
    assert_eq!(start["args"], json!(["inbound"]));

    // The tap app subscribes to the caller it does not own.
    let (status, app) = ari
        .post(&format!(
            "/applications/tap/subscription?eventSource=channel:{caller}"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(app["name"], "tap");
    assert!(app["channel_ids"]
        .as_array()
        .unwrap()
        .contains(&json!(caller)));
    let (status, _) = ari
        .post("/applications/tap/subscription?eventSource=channel:no.such")
        .await;
    assert_eq!(status, 422);

    fake.hold_stasis_starts();
    let (status, snoop) = ari
        .post(&format!(
            "/channels/{caller}/snoop?spy=in&whisper=none&app=tap&appArgs={caller}"
        ))
        .await;
    assert_eq!(status, 200);
    let snoop_id = snoop["id"].as_str().unwrap().to_owned();

    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = udp.local_addr().unwrap();
    let (status, body) = ari
        .post(&format!(
            "/channels/externalMedia?app=tap&external_host={target}&format=ulaw&encapsulation=rtp&transport=udp&connection_type=client&direction=both"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let em = ext_channel(&body);
    let em_id = em.channel.id.clone();
    let advertised = em.unicast_rtp().expect("UNICASTRTP_LOCAL_ADDRESS/PORT");
    assert_eq!(advertised.ip().to_string(), "127.0.0.1");
    assert!(em
        .channel
        .name
        .starts_with(&format!("UnicastRTP/{target}-0x")));

    let (status, bridge) = ari.post("/bridges?type=mixing&bridgeId=tap-1").await;
    assert_eq!(status, 200);
    assert_eq!(
        (bridge["id"].as_str(), bridge["bridge_type"].as_str()),
        (Some("tap-1"), Some("mixing"))
    );
    let add = format!("/bridges/tap-1/addChannel?channel={snoop_id},{em_id}");
    assert_eq!(
        ari.post(&add).await,
        (422, json!({"message": "Channel not in Stasis application"}))
    );

    fake.release_stasis_starts();
    let s = tap.wait("StasisStart", &snoop_id).await;
    assert_eq!(s["args"], json!([caller]));
    let s = tap.wait("StasisStart", &em_id).await;
    assert!(
        s["channel"].get("channelvars").is_none(),
        "UNICASTRTP_* only in the REST response"
    );
    assert_eq!(ari.post(&add).await.0, 204);

    // 60 packets (1.2 s) from exactly the advertised address, numbered like packetize().
    let mut packets: Vec<Vec<u8>> = Vec::new();
    let mut buf = [0u8; 2048];
    while packets.len() < 60 {
        let (n, from) = guarded("RTP", udp.recv_from(&mut buf)).await.unwrap();
        assert_eq!(from, advertised);
        packets.push(buf[..n].to_vec());
    }
    let first = rtp::parse(&packets[0]).unwrap().header;
    assert!(!first.marker);
    assert_eq!(first.timestamp, 160);
    for (i, p) in packets.iter().enumerate() {
        assert_eq!(p.len(), 172);
        let h = rtp::parse(p).unwrap().header;
        assert_eq!(h.payload_type, 0);
        assert_eq!(h.ssrc, first.ssrc);
        assert_eq!(h.sequence, first.sequence.wrapping_add(i as u16));
    }
    let (samples, rate) = read_wav(&voice).unwrap();
    let expected = packetize(
        &samples,
        rate,
        &SendOptions::pcmu(),
        first.ssrc,
        first.sequence,
    )
    .unwrap();
    assert_eq!(
        packets[..],
        expected[..60],
        "the caller's voice, as packetize() makes it"
    );

    fake.hangup(&caller).await;
    let seen = gw.until("ChannelDestroyed", &caller).await;
    assert_eq!(
        types_of(&seen, &caller),
        ["ChannelHangupRequest", "StasisEnd", "ChannelDestroyed"]
    );
    let destroyed = seen.last().unwrap();
    assert_eq!(
        (destroyed["cause"].as_i64(), destroyed["cause_txt"].as_str()),
        (Some(16), Some("Normal Clearing"))
    );
    let seen = tap.until("ChannelDestroyed", &snoop_id).await;
    assert_eq!(
        types_of(&seen, &caller),
        ["ChannelHangupRequest", "ChannelDestroyed"]
    );
    let snoop_types = types_of(&seen, &snoop_id);
    assert_eq!(
        snoop_types[snoop_types.len() - 2..],
        ["StasisEnd", "ChannelDestroyed"]
    );
    assert_rtp_stops(&fake).await;
    assert!(
        fake.channel_exists(&em_id),
        "RTP externalMedia stays until deleted"
    );

    assert_eq!(ari.delete("/bridges/tap-1").await.0, 204);
    assert_eq!(ari.delete(&format!("/channels/{em_id}")).await.0, 204);
    let seen = tap.until("ChannelDestroyed", &em_id).await;
    assert_eq!(
        types_of(&seen, &em_id),
        ["ChannelLeftBridge", "StasisEnd", "ChannelDestroyed"]
    );
    assert_eq!(ari.delete(&format!("/channels/{em_id}")).await.0, 404);
    let c = fake.counts();
    assert_eq!((c.channels_created, c.channels_destroyed), (2, 2));
    assert_eq!((c.bridges_created, c.bridges_destroyed), (1, 1));
    assert_eq!((c.live_channels, c.live_bridges, c.live_calls), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_next_injects_errors_and_counts_balance() {
    let fake = FakeAsterisk::start(FakeConfig::default()).await;
    let ari = Ari::new(&fake);
    let mut events = Events::connect(&fake, "gw").await;
    let caller = fake.add_call(&fixture("call-back.wav")).await;

    fake.fail_next("POST", "/bridges", 500, 2);
    for _ in 0..2 {
        let (status, body) = ari.post("/bridges?type=mixing").await;
        assert_eq!(status, 500);
        assert!(
            body["message"].as_str().unwrap().contains("injected"),
            "{body}"
        );
    }
    let (status, bridge) = ari.post("/bridges?type=mixing").await;
    assert_eq!(status, 200);
    let bridge_id = bridge["id"].as_str().unwrap().to_owned();
    assert_eq!(
        ari.post(&format!("/bridges?bridgeId={bridge_id}")).await.0,
        409
    );
    assert_eq!(
        ari.post(&format!("/bridges/{bridge_id}?type=mixing")).await,
        (200, bridge.clone())
    );

    let (_, snoop) = ari
        .post(&format!("/channels/{caller}/snoop?spy=both&app=gw"))
        .await;
    let snoop_id = snoop["id"].as_str().unwrap().to_owned();
    events.wait("StasisStart", &snoop_id).await;
    assert_eq!(
        ari.post(&format!(
            "/bridges/{bridge_id}/addChannel?channel={snoop_id}"
        ))
        .await
        .0,
        204
    );
    assert_eq!(
        fake.bridge_members(&bridge_id),
        Some(vec![snoop_id.clone()])
    );

    fake.fail_next("delete", "/channels/", 404, 1);
    assert_eq!(ari.delete(&format!("/channels/{snoop_id}")).await.0, 404);
    assert!(
        fake.channel_exists(&snoop_id),
        "an injected failure changes nothing"
    );
    assert_eq!(ari.delete(&format!("/channels/{snoop_id}")).await.0, 204);
    let seen = events.until("ChannelDestroyed", &snoop_id).await;
    assert_eq!(
        types_of(&seen, &snoop_id),
        [
            "ChannelEnteredBridge",
            "ChannelLeftBridge",
            "StasisEnd",
            "ChannelDestroyed"
        ]
    );
    assert_eq!(ari.delete(&format!("/bridges/{bridge_id}")).await.0, 204);

    // Stasis() fails for an app nobody listens to: the snoop hangs up by itself.
    let (status, orphan) = ari
        .post(&format!("/channels/{caller}/snoop?spy=in&app=nobody"))
        .await;
    assert_eq!(status, 200);
    let orphan_id = orphan["id"].as_str().unwrap();
    guarded("orphan snoop hangs up", async {
        while fake.channel_exists(orphan_id) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    let c = fake.counts();
    assert_eq!(
        (c.channels_created, c.channels_destroyed, c.live_channels),
        (2, 2, 0)
    );
    assert_eq!(
        (c.bridges_created, c.bridges_destroyed, c.live_bridges),
        (1, 1, 0)
    );
    assert_eq!(c.live_calls, 1);
    let requests = fake.requests();
    let posts = requests
        .iter()
        .filter(|r| *r == &("POST".to_owned(), "/ari/bridges".to_owned()))
        .count();
    assert_eq!(posts, 4);
    let deletes = requests
        .iter()
        .filter(|(m, p)| m == "DELETE" && p.ends_with(&snoop_id))
        .count();
    assert_eq!(deletes, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_drops_everything_and_comes_back_on_the_same_port() {
    let fake = FakeAsterisk::start(FakeConfig::default()).await;
    let ari = Ari::new(&fake);
    let mut events = Events::connect(&fake, "gw").await;
    let caller = fake.add_call(&fixture("two-phrases.wav")).await;
    let (_, snoop) = ari
        .post(&format!("/channels/{caller}/snoop?spy=in&app=gw"))
        .await;
    let snoop_id = snoop["id"].as_str().unwrap().to_owned();
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = udp.local_addr().unwrap();
    let (_, body) = ari
        .post(&format!(
            "/channels/externalMedia?app=gw&external_host={target}&format=slin16"
        ))
        .await;
    let em = ext_channel(&body);
    events.wait("StasisStart", &snoop_id).await;
    events.wait("StasisStart", &em.channel.id).await;
    let (_, bridge) = ari.post("/bridges").await;
    let bridge_id = bridge["id"].as_str().unwrap().to_owned();
    let add = format!(
        "/bridges/{bridge_id}/addChannel?channel={snoop_id},{}",
        em.channel.id
    );
    assert_eq!(ari.post(&add).await.0, 204);
    let mut buf = [0u8; 2048];
    let (n, from) = guarded("RTP", udp.recv_from(&mut buf)).await.unwrap();
    assert_eq!((n, from), (12 + 640, em.unicast_rtp().unwrap()));
    assert_eq!(rtp::parse(&buf[..n]).unwrap().header.payload_type, 118);

    let addr: SocketAddr = fake.addr();
    let restarting = fake.clone();
    let restart = tokio::spawn(async move { restarting.restart(Duration::from_secs(1)).await });
    // Events already queued may still arrive; then the socket closes.
    while events.next().await.is_some() {}
    guarded("connections refused while down", async {
        loop {
            match TcpStream::connect(addr).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    guarded("restart", restart).await.unwrap();

    assert_eq!(fake.addr(), addr);
    assert!(!fake.channel_exists(&caller) && !fake.channel_exists(&snoop_id));
    let c = fake.counts();
    assert_eq!((c.live_channels, c.live_bridges, c.live_calls), (0, 0, 0));
    assert_eq!(c.channels_destroyed, 0, "nothing was destroyed with events");
    assert!(fake.connected_apps().is_empty());
    assert_rtp_stops(&fake).await;
    let ari = Ari::new(&fake);
    assert_eq!(ari.get("/asterisk/info").await.0, 200);
    assert_eq!(ari.get(&format!("/bridges/{bridge_id}")).await.0, 404);
    assert_eq!(ari.get(&format!("/channels/{caller}")).await.0, 404);
    let mut events = Events::connect(&fake, "gw").await;
    let again = fake.add_call(&fixture("two-phrases.wav")).await;
    assert_ne!(again, caller);
    fake.enter_stasis(&again, "gw", &[]).await;
    events.wait("StasisStart", &again).await;
}

/// Reads one AudioSocket frame; None at EOF.
async fn read_frame(sock: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 3];
    if guarded("AudioSocket frame", sock.read_exact(&mut head))
        .await
        .is_err()
    {
        return None;
    }
    let mut payload = vec![0u8; u16::from_be_bytes([head[1], head[2]]) as usize];
    guarded("AudioSocket payload", sock.read_exact(&mut payload))
        .await
        .ok()?;
    Some((head[0], payload))
}

#[tokio::test]
async fn external_media_refuses_mismatched_encapsulation_and_transport_as_asterisk_does() {
    // Answers captured from Asterisk 23.4.1 (tests/asterisk_real.rs builds it).
    let fake = FakeAsterisk::start(FakeConfig::default()).await;
    let ari = Ari::new(&fake);
    let base = "/channels/externalMedia?app=gw&external_host=127.0.0.1:9&format=ulaw";
    for (query, message) in [
        (
            "&encapsulation=audiosocket&transport=udp",
            "transport must be 'tcp' for audiosocket encapsulation",
        ),
        (
            "&encapsulation=rtp&transport=tcp",
            "transport must be 'udp' for rtp encapsulation",
        ),
        (
            "&encapsulation=rtp&transport=websocket",
            "encapsulation must be 'none' for websocket transport",
        ),
        (
            "&connection_type=server",
            "'server' connection_type can only be used with the websocket transport",
        ),
    ] {
        let (status, body) = ari.post(&format!("{base}{query}")).await;
        assert_eq!(
            (status, body["message"].as_str()),
            (400, Some(message)),
            "{query}"
        );
    }
    let (status, body) = ari.post("/channels/externalMedia?app=gw&format=ulaw").await;
    assert_eq!(
        (status, body["message"].as_str()),
        (
            400,
            Some("external_host is required for all but websocket server connections")
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audiosocket_sends_the_uuid_then_audio_and_dtmf() {
    let fake = FakeAsterisk::start(FakeConfig::default()).await;
    let ari = Ari::new(&fake);
    let mut events = Events::connect(&fake, "gw").await;
    let caller = fake.add_call(&fixture("yes-interested.wav")).await;
    assert_eq!(
        ari.post(&format!(
            "/applications/gw/subscription?eventSource=channel:{caller}"
        ))
        .await
        .0,
        200
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap();
    let base = format!("/channels/externalMedia?app=gw&external_host={host}&format=slin&encapsulation=audiosocket&transport=tcp");
    assert_eq!(ari.post(&base).await.0, 400, "data is required");
    assert_eq!(ari.post(&format!("{base}&data=not-a-uuid")).await.0, 400);

    let uuid = uuid::Uuid::new_v4();
    let (status, body) = ari.post(&format!("{base}&data={uuid}")).await;
    assert_eq!(status, 200, "{body}");
    let em = ext_channel(&body);
    assert_eq!(em.audiosocket_uuid(), Some(uuid));
    assert_eq!(
        em.channel.channelvar("AUDIOSOCKET_SERVICE"),
        Some(host.to_string().as_str())
    );
    assert_eq!(em.channel.name, format!("AudioSocket/{host}-{uuid}"));
    let (mut sock, _) = guarded("AudioSocket connect", listener.accept())
        .await
        .unwrap();
    let mut hello = [0u8; 19];
    guarded("UUID frame", sock.read_exact(&mut hello))
        .await
        .unwrap();
    assert_eq!(hello[..3], [0x01, 0x00, 0x10]);
    assert_eq!(&hello[3..], uuid.as_bytes());
    events.wait("StasisStart", &em.channel.id).await;

    let (_, snoop) = ari
        .post(&format!("/channels/{caller}/snoop?spy=in&app=gw"))
        .await;
    let snoop_id = snoop["id"].as_str().unwrap().to_owned();
    events.wait("StasisStart", &snoop_id).await;
    let (_, bridge) = ari.post("/bridges?type=mixing").await;
    let bridge_id = bridge["id"].as_str().unwrap().to_owned();
    let add = format!(
        "/bridges/{bridge_id}/addChannel?channel={},{snoop_id}",
        em.channel.id
    );
    assert_eq!(ari.post(&add).await.0, 204);
    for _ in 0..10 {
        let (kind, payload) = read_frame(&mut sock).await.expect("audio frame");
        assert_eq!((kind, payload.len()), (0x10, 320));
    }

    fake.send_dtmf(&caller, '5', 120).await;
    let dtmf = events.wait("ChannelDtmfReceived", &caller).await;
    assert_eq!(
        (dtmf["digit"].as_str(), dtmf["duration_ms"].as_u64()),
        (Some("5"), Some(120))
    );
    loop {
        let (kind, payload) = read_frame(&mut sock).await.expect("DTMF frame");
        if kind == 0x03 {
            assert_eq!(payload, b"5");
            break;
        }
        assert_eq!(kind, 0x10);
    }

    // Hangup of the channel: Asterisk just closes TCP, no 0x00 frame.
    assert_eq!(
        ari.delete(&format!("/channels/{}", em.channel.id)).await.0,
        204
    );
    while let Some((kind, _)) = read_frame(&mut sock).await {
        assert_ne!(kind, 0x00, "no hangup frame from Asterisk");
    }
    let seen = events.until("ChannelDestroyed", &em.channel.id).await;
    let kinds = [
        "ChannelHangupRequest",
        "ChannelLeftBridge",
        "StasisEnd",
        "ChannelDestroyed",
    ];
    assert_eq!(only(&types_of(&seen, &em.channel.id), &kinds), kinds[1..]);

    // The app's hangup frame destroys the channel.
    let uuid = uuid::Uuid::new_v4();
    let slin16 = format!("/channels/externalMedia?app=gw&external_host={host}&format=slin16&encapsulation=audiosocket&transport=tcp&data={uuid}");
    let (_, body) = ari.post(&slin16).await;
    let em2 = ext_channel(&body);
    let (mut sock2, _) = guarded("second connect", listener.accept()).await.unwrap();
    sock2.read_exact(&mut hello).await.unwrap();
    events.wait("StasisStart", &em2.channel.id).await;
    sock2.write_all(&[0x00, 0x00, 0x00]).await.unwrap();
    let seen = events.until("ChannelDestroyed", &em2.channel.id).await;
    assert_eq!(
        types_of(&seen, &em2.channel.id),
        ["StasisEnd", "ChannelDestroyed"]
    );
    assert!(!fake.channel_exists(&em2.channel.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_media_starts_on_connect_and_refuses_a_second_connection() {
    let fake = FakeAsterisk::start(FakeConfig::default()).await;
    let ari = Ari::new(&fake);
    let mut events = Events::connect(&fake, "gw").await;
    let caller = fake.add_call(&fixture("balance.wav")).await;
    let create = "/channels/externalMedia?app=gw&format=ulaw&encapsulation=none&transport=websocket&connection_type=server";
    let (status, body) = ari.post(create).await;
    assert_eq!(status, 200, "{body}");
    let em = ext_channel(&body);
    let em_id = em.channel.id.clone();
    let conn = em
        .websocket_connection_id()
        .expect("connection id")
        .to_owned();
    assert_eq!(em.optimal_frame_size(), Some(160));
    assert_eq!(em.channel.state.as_str(), "Down");

    // Not in Stasis before the app connects.
    let (_, snoop) = ari
        .post(&format!("/channels/{caller}/snoop?spy=in&app=gw"))
        .await;
    let snoop_id = snoop["id"].as_str().unwrap().to_owned();
    events.wait("StasisStart", &snoop_id).await;
    let (_, bridge) = ari.post("/bridges").await;
    let bridge_id = bridge["id"].as_str().unwrap().to_owned();
    let add = format!("/bridges/{bridge_id}/addChannel?channel={snoop_id},{em_id}");
    assert_eq!(ari.post(&add).await.0, 422);

    let url = format!("{}/media/{conn}?api_key=asterisk:asterisk", fake.ws_url());
    let (mut media, _) = guarded(
        "media connect",
        tokio_tungstenite::connect_async(url.clone()),
    )
    .await
    .expect("media socket");
    let first = guarded("MEDIA_START", media.next()).await.unwrap().unwrap();
    let Control::MediaStart(start) = ws_media::parse(first.to_text().unwrap()).unwrap() else {
        panic!("first message is not MEDIA_START: {first:?}");
    };
    assert_eq!(
        (start.connection_id.as_str(), start.channel_id.as_str()),
        (conn.as_str(), em_id.as_str())
    );
    assert_eq!(
        (
            start.format.as_str(),
            start.optimal_frame_size,
            start.ptime_ms
        ),
        ("ulaw", 160, 20)
    );
    let s = events.wait("StasisStart", &em_id).await;
    assert_eq!(s["channel"]["state"], "Up");

    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 409)
        }
        other => panic!("second media connection: {other:?}"),
    }

    assert_eq!(ari.post(&add).await.0, 204);
    let mut frames = 0;
    while frames < 10 {
        match guarded("media frame", media.next()).await.unwrap().unwrap() {
            Message::Binary(b) => {
                assert_eq!(b.len(), 160);
                frames += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    fake.send_dtmf(&caller, '7', 100).await;
    loop {
        match guarded("DTMF_END", media.next()).await.unwrap().unwrap() {
            Message::Text(t) => {
                assert_eq!(
                    ws_media::parse(t.as_str()).unwrap(),
                    Control::DtmfEnd { digit: Some('7') }
                );
                break;
            }
            Message::Binary(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    // The app closing: ChannelHangupRequest (16), StasisEnd, ChannelDestroyed.
    media.close(None).await.unwrap();
    let seen = events.until("ChannelDestroyed", &em_id).await;
    let types = types_of(&seen, &em_id);
    let kinds = ["ChannelHangupRequest", "StasisEnd", "ChannelDestroyed"];
    assert_eq!(only(&types, &kinds), kinds);
    let request = seen
        .iter()
        .find(|e| e["type"] == "ChannelHangupRequest")
        .unwrap();
    assert_eq!(request["cause"], 16);

    // A caller hangup closes a bridged media WebSocket with 1000.
    let (_, body) = ari.post(create).await;
    let em2 = ext_channel(&body);
    let url = format!(
        "{}/media/{}?api_key=asterisk:asterisk",
        fake.ws_url(),
        em2.websocket_connection_id().unwrap()
    );
    let (mut media2, _) = guarded("media connect", tokio_tungstenite::connect_async(url))
        .await
        .unwrap();
    events.wait("StasisStart", &em2.channel.id).await;
    let add = format!("/bridges/{bridge_id}/addChannel?channel={}", em2.channel.id);
    assert_eq!(ari.post(&add).await.0, 204);
    fake.hangup(&caller).await;
    let code = loop {
        match guarded("close", media2.next()).await {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, Some(1000));
}
