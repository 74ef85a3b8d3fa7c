//! TLS where the gateway leaves the host, against local servers using a CA made at test time
//! (tests/common/test_ca.rs): gRPC to an engine (custom CA, mutual TLS, refusal without the
//! CA), ARI over https + wss driving a call through the fake Asterisk with the password in a
//! header, a webhook over https, and the gateway's own HTTP API over HTTPS.
//! Brokers (Redis, NATS, AMQP) are in tests/tls_brokers.rs.

mod common;
mod fake_asterisk;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use asr_gateway::asr::client::{AsrClient, ClientConfig};
use asr_gateway::asr::proto::recognize_request::Request as Msg;
use asr_gateway::asr::proto::recognizer_server::{Recognizer, RecognizerServer};
use asr_gateway::asr::proto::{Hypothesis as WireHypothesis, RecognizeRequest, RecognizeResponse};
use asr_gateway::asr::types::{
    AsrAudio, AsrControl, AsrFailure, AsrRequest, AsrUpdate, StreamOptions,
};
use asr_gateway::events::outgoing::OutgoingEvent;
use asr_gateway::events::sink::Sink;
use asr_gateway::events::webhook::{WebhookConfig, WebhookSink};
use asr_gateway::tls::{ServerTls, TlsSettings};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use common::test_ca::{Leaf, TestCa};
use common::{fixture, GatewayProcess};
use fake_asterisk::{FakeAsterisk, FakeConfig};

/// Guards against hangs only; nothing here measures speed.
const GUARD: Duration = Duration::from_secs(60);
const APP: &str = "asrgw-tls";

// ---------------------------------------------------------------- a TLS engine

type Out = Pin<Box<dyn Stream<Item = Result<RecognizeResponse, Status>> + Send>>;

/// An `asr.v1.Recognizer` that answers one final per utterance: `heard <n> chunks`.
struct CountingEngine;

fn heard(chunks: usize) -> RecognizeResponse {
    RecognizeResponse {
        alternatives: vec![WireHypothesis {
            transcript: format!("heard {chunks} chunks"),
            confidence: 0.5,
            words: vec![],
        }],
        is_final: true,
        end_of_utterance: true,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Recognizer for CountingEngine {
    type StreamingRecognizeStream = Out;

    async fn streaming_recognize(
        &self,
        request: Request<Streaming<RecognizeRequest>>,
    ) -> Result<Response<Out>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut chunks = 0;
            while let Ok(Some(message)) = inbound.message().await {
                match message.request {
                    Some(Msg::Audio(_)) => chunks += 1,
                    Some(Msg::EndOfSpeech(_)) if chunks > 0 => {
                        let _ = tx.send(Ok(heard(chunks))).await;
                        chunks = 0;
                    }
                    _ => {}
                }
            }
            if chunks > 0 {
                let _ = tx.send(Ok(heard(chunks))).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// Serve the engine over TLS with `server`'s certificate; with `clients_of`, only to clients
/// holding a certificate of that CA. Returns `https://127.0.0.1:PORT`.
async fn tls_engine(server: &Leaf, clients_of: Option<&TestCa>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut tls =
        ServerTlsConfig::new().identity(Identity::from_pem(&server.cert_pem, &server.key_pem));
    if let Some(ca) = clients_of {
        tls = tls.client_ca_root(Certificate::from_pem(&ca.ca_pem));
    }
    let server = tonic::transport::Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(RecognizerServer::new(CountingEngine));
    tokio::spawn(
        server.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    format!("https://127.0.0.1:{}", addr.port())
}

fn asr_client(endpoint: &str, tls: TlsSettings) -> AsrClient {
    AsrClient::new(ClientConfig {
        endpoint: endpoint.into(),
        tls,
        connect_timeout: Duration::from_secs(5),
        final_timeout: GUARD,
    })
    .unwrap()
}

/// One utterance of three chunks; every update until the session ends.
async fn one_utterance(client: &AsrClient) -> Vec<AsrUpdate> {
    let (req_tx, req_rx) = mpsc::channel(16);
    let (upd_tx, mut upd_rx) = mpsc::channel(16);
    let options = StreamOptions {
        session_id: "s1".into(),
        call_id: "c1".into(),
        sample_rate: 16_000,
        language: "en".into(),
        interim_results: false,
        hints: vec![],
        engine_profile: String::new(),
    };
    let task = client.spawn_session(options, req_rx, upd_tx);
    req_tx
        .send(AsrRequest::Control(AsrControl::Begin {
            stream: 1,
            offset_ms: 0,
        }))
        .await
        .unwrap();
    for n in 0..3u64 {
        req_tx
            .send(AsrRequest::Audio(AsrAudio {
                stream: 1,
                offset_ms: n * 20,
                samples: vec![100; 320],
            }))
            .await
            .unwrap();
    }
    req_tx
        .send(AsrRequest::Control(AsrControl::End { stream: 1 }))
        .await
        .unwrap();
    drop(req_tx);
    tokio::time::timeout(GUARD, task)
        .await
        .expect("session ends")
        .unwrap();
    let mut updates = vec![];
    while let Ok(u) = upd_rx.try_recv() {
        updates.push(u);
    }
    updates
}

fn with_ca(ca: &TestCa) -> TlsSettings {
    TlsSettings {
        ca_file: Some(ca.ca_file.clone()),
        ..TlsSettings::default()
    }
}

fn with_client_cert(ca: &TestCa, client: &Leaf) -> TlsSettings {
    TlsSettings {
        ca_file: Some(ca.ca_file.clone()),
        client_cert_file: Some(client.cert_file.clone()),
        client_key_file: Some(client.key_file.clone()),
    }
}

#[tokio::test]
async fn grpc_over_tls_with_the_custom_ca() {
    let ca = TestCa::new("grpc");
    let endpoint = tls_engine(&ca.server("engine"), None).await;
    let updates = one_utterance(&asr_client(&endpoint, with_ca(&ca))).await;
    assert!(
        matches!(updates.as_slice(), [AsrUpdate::Result(h), AsrUpdate::Closed { stream: 1 }] if h.is_final && h.text == "heard 3 chunks"),
        "{updates:?}"
    );
}

#[tokio::test]
async fn grpc_mutual_tls_needs_the_client_certificate() {
    let ca = TestCa::new("grpc-mtls");
    let clients = TestCa::new("grpc-clients");
    let endpoint = tls_engine(&ca.server("engine"), Some(&clients)).await;
    let updates = one_utterance(&asr_client(
        &endpoint,
        with_client_cert(&ca, &clients.client("gateway")),
    ))
    .await;
    assert!(
        matches!(updates.as_slice(), [AsrUpdate::Result(h), AsrUpdate::Closed { .. }] if h.text == "heard 3 chunks"),
        "{updates:?}"
    );
    // Without a client certificate the engine refuses the connection.
    let updates = one_utterance(&asr_client(&endpoint, with_ca(&ca))).await;
    assert!(
        matches!(updates.as_slice(), [AsrUpdate::Failed { .. }]),
        "a client without a certificate got: {updates:?}"
    );
}

#[tokio::test]
async fn grpc_without_the_ca_is_refused_naming_the_certificate() {
    let ca = TestCa::new("grpc-unknown");
    let endpoint = tls_engine(&ca.server("engine"), None).await;
    // The bundled public roots do not know the test CA.
    let updates = one_utterance(&asr_client(&endpoint, TlsSettings::default())).await;
    let [AsrUpdate::Failed { failure, .. }] = updates.as_slice() else {
        panic!("expected one failure: {updates:?}");
    };
    let text = failure.to_string();
    assert!(matches!(failure, AsrFailure::Unavailable { .. }), "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
}

#[tokio::test]
async fn a_bad_ca_file_fails_naming_the_key() {
    let dir = TestCa::new("bad");
    let junk = dir.dir().join("junk.pem");
    std::fs::write(&junk, "no certificate here\n").unwrap();
    let settings = TlsSettings {
        ca_file: Some(junk.clone()),
        ..TlsSettings::default()
    };
    let e = AsrClient::new(ClientConfig {
        endpoint: "https://127.0.0.1:1".into(),
        tls: settings,
        connect_timeout: Duration::from_secs(1),
        final_timeout: GUARD,
    })
    .err()
    .expect("a CA file without a certificate is refused")
    .to_string();
    assert!(
        e.contains("asr.tls.ca_file") && e.contains(&*junk.to_string_lossy()),
        "{e}"
    );
    // The same from the config, before anything starts.
    let toml = format!(
        "[asr]\nendpoint = \"https://engine:443\"\n[asr.tls]\nca_file = \"{}\"\n",
        junk.display()
    );
    let e = asr_gateway::config::Config::from_toml(&toml)
        .unwrap_err()
        .to_string();
    assert!(e.contains("asr.tls.ca_file"), "{e}");
    for (section, key) in [
        (
            "[[ari.servers]]\nid = \"pbx\"\nurl = \"https://pbx:8089\"\nusername = \"u\"\npassword = \"p\"\n[ari.servers.tls]\n",
            "ari.servers[0].tls.ca_file",
        ),
        (
            "[events]\nsinks = [\"redis\"]\n[events.redis.tls]\n",
            "events.redis.tls.ca_file",
        ),
        (
            "[commands]\nsources = [\"nats\"]\n[commands.nats.tls]\n",
            "commands.nats.tls.ca_file",
        ),
    ] {
        let toml = format!("{section}ca_file = \"{}\"\n", junk.display());
        let e = asr_gateway::config::Config::from_toml(&toml)
            .unwrap_err()
            .to_string();
        assert!(e.contains(key) && e.contains(&*junk.to_string_lossy()), "{e}");
    }
}

// ---------------------------------------------------------------- ARI over https + wss

/// The fake Asterisk over TLS and a TLS engine, on one runtime.
struct Pbx {
    rt: tokio::runtime::Runtime,
    fake: FakeAsterisk,
    engine: String,
}

#[test]
fn ari_over_https_and_wss_drives_a_call_with_the_password_in_a_header() {
    let ca = TestCa::new("ari");
    let clients = TestCa::new("ari-clients");
    let gateway_cert = clients.client("gateway");
    let pbx_cert = ca.server("pbx");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tls = ServerTls::load(
        "test",
        &pbx_cert.cert_file,
        "test",
        &pbx_cert.key_file,
        &[b"http/1.1"],
    )
    .unwrap();
    let fake = rt.block_on(FakeAsterisk::start_with_tls(
        FakeConfig::default(),
        Some(tls),
    ));
    let engine = rt.block_on(tls_engine(&ca.server("engine"), Some(&clients)));
    let pbx = Pbx { rt, fake, engine };
    assert!(pbx.fake.url().starts_with("https://localhost:"));
    let login = FakeConfig::default();
    let toml = format!(
        "[asr]\nendpoint = \"{engine}\"\n[asr.tls]\nca_file = \"{ca}\"\nclient_cert_file = \"{cert}\"\nclient_key_file = \"{key}\"\n\
         [ari]\nmedia_timeout_ms = 3000\ntransport = \"websocket\"\n[ari.stasis]\nenabled = false\n\
         [[ari.servers]]\nid = \"pbx1\"\nurl = \"{url}\"\nusername = \"{user}\"\npassword = \"{password}\"\napp = \"{APP}\"\n\
         [ari.servers.tls]\nca_file = \"{ca}\"\n",
        engine = pbx.engine,
        ca = ca.ca_file.display(),
        cert = gateway_cert.cert_file.display(),
        key = gateway_cert.key_file.display(),
        url = pbx.fake.url(),
        user = login.username,
        password = login.password,
    );
    let mut gw = GatewayProcess::start(&toml);
    assert!(
        pbx.rt
            .block_on(pbx.fake.wait_for_app(APP, Duration::from_secs(30))),
        "the gateway never opened the events socket over wss"
    );
    let channel = pbx
        .rt
        .block_on(pbx.fake.add_call(&fixture("yes-interested.wav")));
    let r = reqwest::blocking::Client::new()
        .post(format!("http://{}/v1/commands", gw.http))
        .json(
            &json!({"command": "start", "command_id": "c1", "call_id": "tls-call",
            "media": {"type": "ari", "channel": channel}}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let started = wait_call(&mut gw, "tls-call", "asr.session.started");
    assert_eq!(started["data"]["transport"], "websocket");
    let session = started["data"]["session_id"].as_str().unwrap().to_owned();
    // Media came over wss, the transcript over gRPC with mutual TLS.
    let fin = gw.wait_for(&session, "asr.transcript.final", GUARD);
    let text = fin["data"]["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("heard ") && !text.starts_with("heard 0"),
        "{fin}"
    );
    pbx.rt.block_on(pbx.fake.hangup(&channel));
    gw.wait_for(&session, "asr.session.ended", GUARD);

    let events = pbx.fake.events_requests();
    assert!(!events.is_empty());
    for (authorization, query) in &events {
        assert!(
            *authorization,
            "events socket opened without Authorization: {query}"
        );
        assert!(
            !query.contains("api_key"),
            "api_key in the events URL: {query}"
        );
        assert!(
            !query.contains(&login.password),
            "password in the events URL: {query}"
        );
    }
    assert!(
        pbx.fake
            .requests()
            .iter()
            .all(|(_, path)| !path.contains("api_key")),
        "{:?}",
        pbx.fake.requests()
    );
    drop(gw);
}

/// The first event of `kind` for `call_id`.
fn wait_call(gw: &mut GatewayProcess, call_id: &str, kind: &str) -> Value {
    gw.wait_for_call(call_id, kind, GUARD)
}

// ---------------------------------------------------------------- webhook over https

fn event(n: usize) -> OutgoingEvent {
    let id = uuid::Uuid::new_v4();
    OutgoingEvent {
        id,
        kind: "asr.transcript.final".into(),
        call_id: "call-1".into(),
        json: bytes::Bytes::from(format!("{{\"id\":\"{id}\",\"n\":{n}}}")),
    }
}

/// An HTTPS receiver (axum behind the gateway's own TLS listener); returns its URL and
/// the bodies it got.
async fn https_receiver(leaf: &Leaf) -> (String, Arc<Mutex<Vec<String>>>) {
    let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = bodies.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let tls = ServerTls::load(
        "test",
        &leaf.cert_file,
        "test",
        &leaf.key_file,
        &[b"http/1.1"],
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let listener = asr_gateway::tls::TlsListener::new(listener, &tls).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("https://localhost:{port}/hook"), bodies)
}

#[tokio::test]
async fn webhook_over_https_with_the_custom_ca() {
    let ca = TestCa::new("webhook");
    let (url, bodies) = https_receiver(&ca.server("receiver")).await;
    let sink = WebhookSink::new(WebhookConfig {
        url: url.clone().into(),
        tls: with_ca(&ca),
        max_attempts: 1,
        ..WebhookConfig::default()
    })
    .unwrap();
    let events: Vec<_> = (0..3).map(event).collect();
    sink.publish(&events).await.expect("delivered over https");
    let got = bodies.lock().unwrap().clone();
    let sent: Vec<String> = events
        .iter()
        .map(|e| String::from_utf8(e.json.to_vec()).unwrap())
        .collect();
    assert_eq!(got, sent);

    // Without the CA the receiver's certificate is not trusted: nothing is delivered.
    let untrusting = WebhookSink::new(WebhookConfig {
        url: url.into(),
        max_attempts: 1,
        ..WebhookConfig::default()
    })
    .unwrap();
    let e = untrusting.publish(&events[..1]).await.unwrap_err();
    assert_eq!(bodies.lock().unwrap().len(), 3, "{e}");
    assert!(e.to_string().contains("certificate"), "{e}");
}

// ---------------------------------------------------------------- the HTTP API over HTTPS

#[tokio::test]
async fn the_http_api_serves_https_with_its_certificate() {
    let ca = TestCa::new("api");
    let leaf = ca.server("api");
    let toml = format!(
        "[server]\nhttp_listen = \"127.0.0.1:0\"\nrtp_bind = \"127.0.0.1\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\
         [asr]\nendpoint = \"http://127.0.0.1:1\"\n[events]\nsinks = []\n[commands]\nsources = [\"http\"]\n\
         [outbox]\njournal_dir = \"{}\"\n",
        leaf.cert_file.display(),
        leaf.key_file.display(),
        ca.dir().join("journal").display(),
    );
    let config = asr_gateway::config::Config::from_toml(&toml).unwrap();
    let gateway = asr_gateway::serve::Gateway::start(config).await.unwrap();
    let port = gateway.http_addr().port();
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = trusting
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .expect("https request with the test CA");
    assert!(r.status().is_success(), "{}", r.status());
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://localhost:{port}/healthz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
    gateway.shutdown().await;
}

#[test]
fn a_tls_key_without_a_certificate_is_refused_naming_both_keys() {
    let e = asr_gateway::config::Config::from_toml("[server]\ntls_key = \"/x/key.pem\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("server.tls_key") && e.contains("server.tls_cert"),
        "{e}"
    );
}
