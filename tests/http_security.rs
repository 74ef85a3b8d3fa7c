//! The HTTP API under hostile clients: bearer tokens, no `Host` echo, bounded connections,
//! bodies and reservations, and ports given back when a reservation gets no media.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use asr_gateway::metrics::read_sample;
use common::GatewayProcess;
use reqwest::blocking::{Client, Response};
use reqwest::StatusCode;

const TOKEN: &str = "test-token-0123456789abcdef";
/// No embedded engine: these tests need none, and an unreachable one costs nothing.
const NO_ENGINE: &str = "[asr]\nendpoint = \"http://127.0.0.1:9\"\n";

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn url(gw: &GatewayProcess, path: &str) -> String {
    format!("http://{}{path}", gw.http)
}

fn session_request(gw: &GatewayProcess, call: &str, token: Option<&str>) -> Response {
    let mut req = client()
        .post(url(gw, "/v1/sessions"))
        .json(&serde_json::json!({ "call_id": call }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().unwrap()
}

fn metric(gw: &GatewayProcess, token: Option<&str>, name: &str) -> f64 {
    let mut req = client().get(url(gw, "/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let text = req.send().unwrap().text().unwrap();
    read_sample(&text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}"))
}

/// Wait up to `limit` for `check` to hold; false if it never did.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn tokens_guard_every_private_path_and_probes_stay_open() {
    let server = format!("api_tokens = [\"{TOKEN}\"]\nadvertise_host = \"10.9.8.7\"");
    let gw = GatewayProcess::start_server(&server, NO_ENGINE);
    let none = session_request(&gw, "auth-1", None);
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let wrong = session_request(&gw, "auth-1", Some("test-token-0123456789abcdeX"));
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let short = session_request(&gw, "auth-1", Some("test-token"));
    assert_eq!(short.status(), StatusCode::UNAUTHORIZED);
    for (method, path) in [
        (reqwest::Method::DELETE, "/v1/sessions/x"),
        (reqwest::Method::POST, "/v1/commands"),
    ] {
        let r = client().request(method, url(&gw, path)).send().unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = client().get(url(&gw, path)).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path} is public by default");
    }
    // With the token; a forged Host header changes nothing.
    let ok = client()
        .post(url(&gw, "/v1/sessions"))
        .bearer_auth(TOKEN)
        .header("host", "attacker.example:8080")
        .json(&serde_json::json!({ "call_id": "auth-2" }))
        .send()
        .unwrap();
    assert_eq!(ok.status(), StatusCode::CREATED);
    let body: serde_json::Value = ok.json().unwrap();
    assert_eq!(body["host"], "10.9.8.7", "{body}");
    let external = body["external_host"].as_str().unwrap();
    assert!(external.starts_with("10.9.8.7:"), "{body}");
    assert_eq!(metric(&gw, None, "asrgw_http_unauthorized_total"), 5.0);
}

#[test]
fn probes_can_be_protected_and_host_comes_from_the_bind_address() {
    let server = format!("api_tokens = \"{TOKEN}\"\npublic_paths = [\"/healthz\"]");
    let gw = GatewayProcess::start_server(&server, NO_ENGINE);
    let get = |path: &str, token: Option<&str>| {
        let mut r = client().get(url(&gw, path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().unwrap().status()
    };
    assert_eq!(get("/healthz", None), StatusCode::OK);
    assert_eq!(get("/readyz", None), StatusCode::UNAUTHORIZED);
    assert_eq!(get("/metrics", None), StatusCode::UNAUTHORIZED);
    assert_eq!(get("/metrics", Some(TOKEN)), StatusCode::OK);
    let created = client()
        .post(url(&gw, "/v1/sessions"))
        .bearer_auth(TOKEN)
        .header("host", "attacker.example")
        .json(&serde_json::json!({ "call_id": "host-1" }))
        .send()
        .unwrap();
    let body: serde_json::Value = created.json().unwrap();
    assert_eq!(body["host"], "127.0.0.1", "the RTP bind address: {body}");
}

/// A request head that never ends, as slowloris sends it.
fn half_open(gw: &GatewayProcess) -> TcpStream {
    let mut s = TcpStream::connect(gw.http).unwrap();
    s.write_all(b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n")
        .unwrap();
    s
}

#[test]
fn two_thousand_half_open_connections_do_not_take_the_api_down() {
    let gw = GatewayProcess::start("[asr]\nendpoint = \"http://127.0.0.1:9\"\n");
    let held: Vec<TcpStream> = (0..2000).map(|_| half_open(&gw)).collect();
    assert_eq!(held.len(), 2000);
    let health = client().get(url(&gw, "/healthz")).send().unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let created = session_request(&gw, "slowloris-1", None);
    assert_eq!(created.status(), StatusCode::CREATED);
    assert!(gw.healthy());
}

#[test]
fn a_slow_request_head_and_an_idle_connection_are_closed() {
    let server = "http_header_timeout_ms = 300\nhttp_idle_timeout_ms = 600";
    let gw = GatewayProcess::start_server(server, NO_ENGINE);
    let mut slow = half_open(&gw);
    let mut idle = TcpStream::connect(gw.http).unwrap();
    for (name, s) in [("slow head", &mut slow), ("idle", &mut idle)] {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap_or(0);
        // Closed: EOF, or at most an error response before it.
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{name}: {text}");
        if n > 0 {
            assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "{name} still open");
        }
    }
    assert!(metric(&gw, None, "asrgw_http_connections_timed_out_total") >= 2.0);
}

#[test]
fn the_connection_cap_refuses_extra_connections_and_frees_slots() {
    let gw = GatewayProcess::start_server("http_max_connections = 20", NO_ENGINE);
    let held: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(gw.http).unwrap())
        .collect();
    let mut extra = TcpStream::connect(gw.http).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 64];
    assert_eq!(
        extra.read(&mut buf).unwrap_or(0),
        0,
        "the 21st connection was served"
    );
    drop(held);
    assert!(
        eventually(Duration::from_secs(20), || client()
            .get(url(&gw, "/healthz"))
            .send()
            .is_ok_and(|r| r.status() == StatusCode::OK)),
        "slots never came back"
    );
    assert!(metric(&gw, None, "asrgw_http_connections_refused_total") >= 1.0);
}

#[test]
fn bodies_over_the_limit_are_refused() {
    let gw = GatewayProcess::start_server("http_body_limit = 4096", NO_ENGINE);
    let r = client()
        .post(url(&gw, "/v1/commands"))
        .header("content-type", "application/json")
        .body(vec![b' '; 10_000])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(gw.healthy());
}

#[test]
fn a_client_holds_at_most_its_quota_of_sessions() {
    let gw = GatewayProcess::start_server("max_sessions_per_client = 3", NO_ENGINE);
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = session_request(&gw, &format!("quota-{i}"), None);
        assert_eq!(r.status(), StatusCode::CREATED);
        let body: serde_json::Value = r.json().unwrap();
        ids.push(body["session_id"].as_str().unwrap().to_owned());
    }
    let refused = session_request(&gw, "quota-3", None);
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.text().unwrap().contains("max_sessions_per_client"));
    assert_eq!(gw.delete_session(&ids[0]), 202);
    assert!(
        eventually(Duration::from_secs(30), || session_request(
            &gw, "quota-3", None
        )
        .status()
            == StatusCode::CREATED),
        "the ended session's share never came back"
    );
    assert!(metric(&gw, None, "asrgw_reservations_rejected_total") >= 1.0);
}

#[test]
fn a_reservation_without_media_gives_its_port_back() {
    let extra = format!("{NO_ENGINE}[session]\nfirst_media_timeout_ms = 300\n");
    let mut gw = GatewayProcess::start(&extra);
    let (id, _) = gw.create_session("no-media-1");
    let ended = gw.wait_for(&id, "asr.session.ended", Duration::from_secs(30));
    assert_eq!(ended["data"]["cause"], "idle_timeout", "{ended}");
    assert!(eventually(Duration::from_secs(10), || metric(
        &gw,
        None,
        "asrgw_ports_free"
    ) == 50.0));
}
