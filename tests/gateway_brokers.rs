//! The whole gateway against the real brokers on this machine: real RTP sessions in, every
//! event out to RabbitMQ, NATS JetStream, Redis Streams and a webhook exactly once and in order per
//! call; commands in over NATS and Redis; a killed gateway delivers its journal on restart.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asr_gateway::sender::{self, SendOptions};
use common::{fixture, nats_events, GatewayProcess};
use serde_json::Value;

fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// Send a fixture as PCMU from its own socket, then let the hangover pass.
fn play(target: std::net::SocketAddr, wav: &str) {
    runtime()
        .block_on(sender::send_wav(
            &fixture(wav),
            target,
            &SendOptions::pcmu(),
        ))
        .unwrap();
    std::thread::sleep(Duration::from_millis(900));
}

/// Event ids per call, in the order the stdout sink printed them (the reference).
fn reference(gw: &GatewayProcess, sessions: &[String]) -> HashMap<String, Vec<String>> {
    let mut per_call: HashMap<String, Vec<String>> = HashMap::new();
    for id in sessions {
        for e in gw.of(id) {
            let call = e["subject"].as_str().unwrap().to_owned();
            per_call
                .entry(call)
                .or_default()
                .push(e["id"].as_str().unwrap().to_owned());
        }
    }
    per_call
}

/// Every reference id arrived, duplicates only as same-id repeats, first arrivals in order per call.
fn assert_delivered(
    sink: &str,
    reference: &HashMap<String, Vec<String>>,
    got: &[(String, String)],
) {
    let mut first_seen: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut seen = HashSet::new();
    for (call, id) in got {
        if seen.insert(id.as_str()) {
            first_seen
                .entry(call.as_str())
                .or_default()
                .push(id.as_str());
        }
    }
    for (call, ids) in reference {
        let arrived: Vec<&str> = first_seen.get(call.as_str()).cloned().unwrap_or_default();
        let expected: Vec<&str> = ids.iter().map(String::as_str).collect();
        assert_eq!(
            arrived, expected,
            "{sink}: events of call {call} missing or out of order"
        );
    }
}

async fn redis_events(key: &str, expected: usize) -> Vec<(String, String)> {
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis at 127.0.0.1:6379");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let len: usize = redis::cmd("XLEN")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if len >= expected || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let out = reply
        .ids
        .iter()
        .map(|e| {
            let id: String = e.get("id").unwrap();
            let call: String = e.get("call_id").unwrap();
            (call, id)
        })
        .collect();
    let _: Result<redis::Value, _> = redis::cmd("DEL").arg(key).query_async(&mut conn).await;
    out
}

/// Declare the events exchange and a queue bound to all its events, as a consumer would
/// before the gateway starts publishing.
async fn rabbit_queue(exchange: &str, queue: &str) -> lapin::Channel {
    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let conn =
        lapin::Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f", Default::default())
            .await
            .expect("RabbitMQ at 127.0.0.1:5672");
    let channel = conn.create_channel().await.unwrap();
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            exchange.into(),
            lapin::ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await
        .unwrap();
    let options = QueueDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            "asr.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
}

async fn rabbit_events(
    channel: &lapin::Channel,
    queue: &str,
    expected: usize,
) -> Vec<(String, String)> {
    use lapin::options::BasicGetOptions;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < expected && Instant::now() < deadline {
        match channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            Some(message) => {
                let v: Value = serde_json::from_slice(&message.delivery.data).unwrap();
                let id = message
                    .delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|m| m.to_string());
                assert_eq!(
                    id.as_deref(),
                    v["id"].as_str(),
                    "message_id must be the event id"
                );
                out.push((
                    v["subject"].as_str().unwrap().to_owned(),
                    v["id"].as_str().unwrap().to_owned(),
                ));
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    out
}

/// A webhook receiver on a free port that checks the signature and keeps each body.
fn webhook_receiver(
    rt: &tokio::runtime::Runtime,
    secret: &'static str,
) -> (String, Arc<Mutex<Vec<Value>>>) {
    use axum::{body::Bytes, http::HeaderMap, http::StatusCode, routing::post, Router};
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    let app = Router::new().route(
        "/events",
        post(move |headers: HeaderMap, body: Bytes| {
            let store = store.clone();
            async move {
                let signature = headers
                    .get("X-Asr-Signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !asr_gateway::events::webhook::verify_signature(
                    secret.as_bytes(),
                    &body,
                    signature,
                ) {
                    return StatusCode::UNAUTHORIZED;
                }
                store
                    .lock()
                    .unwrap()
                    .push(serde_json::from_slice::<Value>(&body).unwrap());
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

#[test]
fn every_event_reaches_every_sink_once_and_in_order_per_call() {
    let rt = runtime();
    let u = unique();
    let (hook_url, hook) = webhook_receiver(&rt, "s3cret");
    let (stream, prefix, key) = (
        format!("TEV{u}"),
        format!("tev{u}"),
        format!("test:{u}:events"),
    );
    let (exchange, queue) = (format!("test.events.{u}"), format!("test.events.{u}.all"));
    let rabbit = rt.block_on(rabbit_queue(&exchange, &queue));
    let mut gw = GatewayProcess::start(&format!(
        "[events]\nsinks = [\"stdout\", \"rabbitmq\", \"nats\", \"redis\", \"webhook\"]\n\
         [events.rabbitmq]\nexchange = \"{exchange}\"\n\
         [events.nats]\nstream = \"{stream}\"\nsubject_prefix = \"{prefix}\"\n\
         [events.redis]\nstream = \"{key}\"\n\
         [events.webhook]\nurl = \"{hook_url}\"\nsecret = \"s3cret\"\n"
    ));
    let calls = ["yes-interested.wav", "call-back.wav", "balance.wav"];
    let targets: Vec<_> = calls
        .iter()
        .enumerate()
        .map(|(i, _)| gw.create_session(&format!("sinks-{u}.{i}")))
        .collect();
    std::thread::scope(|s| {
        for ((_, target), wav) in targets.iter().zip(calls) {
            s.spawn(move || play(*target, wav));
        }
    });
    let sessions: Vec<String> = targets.iter().map(|(id, _)| id.clone()).collect();
    for id in &sessions {
        gw.delete_session(id);
        gw.wait_for(id, "asr.session.ended", Duration::from_secs(60));
    }
    let reference = reference(&gw, &sessions);
    let total: usize = reference.values().map(Vec::len).sum();
    assert!(total >= calls.len() * 5, "too few events: {reference:?}");

    let amqp = rt.block_on(rabbit_events(&rabbit, &queue, total));
    assert_delivered("rabbitmq", &reference, &amqp);
    assert_eq!(
        amqp.len(),
        total,
        "nothing published twice without a failure"
    );
    let nats = rt.block_on(nats_events(&stream, &prefix, total));
    assert_delivered("nats", &reference, &nats);
    assert_eq!(
        nats.len(),
        total,
        "JetStream dedups by Nats-Msg-Id: exactly once"
    );
    let redis = rt.block_on(redis_events(&key, total));
    assert_delivered("redis", &reference, &redis);
    let deadline = Instant::now() + Duration::from_secs(30);
    while hook.lock().unwrap().len() < total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let hooked: Vec<(String, String)> = hook
        .lock()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["subject"].as_str().unwrap().to_owned(),
                v["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_delivered("webhook", &reference, &hooked);
    let metrics = gw.metrics();
    for sink in ["rabbitmq", "nats", "redis", "webhook"] {
        let confirmed = asr_gateway::metrics::read_sample(
            &metrics,
            &format!("asrgw_sink_confirmed_total{{sink=\"{sink}\"}}"),
        );
        assert!(
            confirmed.unwrap_or(0.0) >= total as f64,
            "{sink} confirmed {confirmed:?} of {total}"
        );
    }
}

#[test]
fn commands_over_nats_and_redis_start_and_stop_a_call() {
    let rt = runtime();
    let u = unique();
    let (cmd_stream, cmd_subject, redis_cmds) = (
        format!("TCMD{u}"),
        format!("tcmd{u}.commands"),
        format!("test:{u}:commands"),
    );
    let mut gw = GatewayProcess::start(&format!(
        "[commands]\nsources = [\"http\", \"nats\", \"redis\"]\n\
         [commands.nats]\nstream = \"{cmd_stream}\"\nsubject = \"{cmd_subject}\"\ndurable = \"gw{u}\"\n\
         [commands.redis]\nstream = \"{redis_cmds}\"\ngroup = \"gw{u}\"\ndead_letter_stream = \"{redis_cmds}:dead\"\n"
    ));
    let call = format!("cmd-{u}");
    // Start over NATS (the gateway created the work-queue stream).
    rt.block_on(async {
        let client = async_nats::connect("nats://127.0.0.1:4222").await.unwrap();
        let js = async_nats::jetstream::new(client);
        let deadline = Instant::now() + Duration::from_secs(20);
        while js.get_stream(&cmd_stream).await.is_err() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let start = serde_json::json!({"command": "start", "command_id": "c1", "call_id": call});
        js.publish(
            cmd_subject.clone(),
            serde_json::to_vec(&start).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    });
    let accepted = wait_for_type(&mut gw, &call, "asr.command.accepted");
    assert_eq!(accepted["data"]["command"], "start");
    assert_eq!(accepted["data"]["command_id"], "c1");
    let session_id = accepted["data"]["session_id"].as_str().unwrap().to_owned();
    let target = accepted["data"]["external_host"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    play(target, "balance.wav");
    // Stop over Redis, plus a malformed command that must be dead-lettered.
    rt.block_on(async {
        let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let stop =
            serde_json::json!({"command": "stop", "command_id": "c2", "call_id": call}).to_string();
        let _: String = redis::cmd("XADD")
            .arg(&redis_cmds)
            .arg("*")
            .arg("payload")
            .arg(stop)
            .query_async(&mut conn)
            .await
            .unwrap();
        let bad = r#"{"command":"launch","call_id":"x"}"#;
        let _: String = redis::cmd("XADD")
            .arg(&redis_cmds)
            .arg("*")
            .arg("payload")
            .arg(bad)
            .query_async(&mut conn)
            .await
            .unwrap();
    });
    let ended = gw.wait_for(&session_id, "asr.session.ended", Duration::from_secs(60));
    assert_eq!(ended["data"]["cause"], "stopped");
    assert!(
        gw.transcript(&session_id)
            .to_lowercase()
            .contains("balance"),
        "{}",
        gw.transcript(&session_id)
    );
    let rejected = wait_for_type(&mut gw, "x", "asr.command.rejected");
    assert!(
        rejected["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("launch"),
        "{rejected}"
    );
    // A stop for a call that is not running is rejected too (over HTTP).
    let response = reqwest::blocking::Client::new()
        .post(format!("http://{}/v1/commands", gw.http))
        .body(r#"{"command":"stop","call_id":"no-such-call"}"#)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    rt.block_on(async {
        let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let dead: usize = redis::cmd("XLEN")
            .arg(format!("{redis_cmds}:dead"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(dead, 1, "the malformed command is dead-lettered once");
        let _: Result<redis::Value, _> = redis::cmd("DEL")
            .arg(&redis_cmds)
            .arg(format!("{redis_cmds}:dead"))
            .query_async(&mut conn)
            .await;
        let js =
            async_nats::jetstream::new(async_nats::connect("nats://127.0.0.1:4222").await.unwrap());
        let _ = js.delete_stream(&cmd_stream).await;
    });
}

/// Wait for an event of `kind` whose subject is `call` (command events carry no session yet).
fn wait_for_type(gw: &mut GatewayProcess, call: &str, kind: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(e) = gw
            .all()
            .into_iter()
            .find(|e| e["type"] == kind && e["subject"] == call)
        {
            return e;
        }
        assert!(Instant::now() < deadline, "no {kind} for call {call}");
        gw.pump(Duration::from_millis(200));
    }
}

#[test]
fn a_killed_gateway_delivers_its_journal_after_restart() {
    let rt = runtime();
    let u = unique();
    let dir = std::env::temp_dir().join(format!("asrgw-journal-{u}"));
    let key = format!("test:{u}:journal");
    // Redis unreachable: events wait in the outbox and spill to the journal.
    let down = format!("[events]\nsinks = [\"stdout\", \"redis\"]\n[events.redis]\nurl = \"redis://127.0.0.1:1\"\nstream = \"{key}\"\n");
    let mut gw = GatewayProcess::start_in(&dir, &down);
    let (id, target) = gw.create_session(&format!("journal-{u}"));
    play(target, "yes-interested.wav");
    gw.delete_session(&id);
    gw.wait_for(&id, "asr.session.ended", Duration::from_secs(60));
    let reference = reference(&gw, std::slice::from_ref(&id));
    let total: usize = reference.values().map(Vec::len).sum();
    // Give the outbox time to see the sink fail and journal what it holds, then SIGKILL.
    std::thread::sleep(Duration::from_secs(3));
    gw.kill();
    let journal = dir.join("journal").join("redis");
    assert!(
        std::fs::read_dir(&journal).map(|d| d.count()).unwrap_or(0) > 0,
        "nothing journaled in {}",
        journal.display()
    );
    // Restart on the same journal with Redis reachable: the journal is delivered.
    let up = down.replace("redis://127.0.0.1:1", "redis://127.0.0.1:6379");
    let _gw = GatewayProcess::start_in(&dir, &up);
    let delivered = rt.block_on(redis_events(&key, total));
    assert_delivered("redis after restart", &reference, &delivered);
}
