//! Events and commands over TLS to real brokers, with a CA made at test time: a private
//! `redis-server --tls-port` and `nats-server` with a TLS config (both requiring a client
//! certificate), and AMQPS through a TLS-terminating proxy in front of the plain RabbitMQ on
//! 127.0.0.1:5672 (which is left as it is).

mod common;

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asr_gateway::control::commands::{CommandFuture, CommandHandler, CommandOutcome};
use asr_gateway::events::outgoing::OutgoingEvent;
use asr_gateway::events::sink::Sink;
use asr_gateway::tls::TlsSettings;
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};

use common::test_ca::{Leaf, TestCa};

/// Guards against hangs only; nothing here measures speed.
const GUARD: Duration = Duration::from_secs(60);

fn event(n: usize) -> OutgoingEvent {
    let id = uuid::Uuid::new_v4();
    OutgoingEvent {
        id,
        kind: "asr.transcript.final".into(),
        call_id: "tls-call".into(),
        json: bytes::Bytes::from(format!("{{\"id\":\"{id}\",\"n\":{n}}}")),
    }
}

fn with_client_cert(ca: &TestCa, client: &Leaf) -> TlsSettings {
    TlsSettings {
        ca_file: Some(ca.ca_file.clone()),
        client_cert_file: Some(client.cert_file.clone()),
        client_key_file: Some(client.key_file.clone()),
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something accepts TCP on `port`.
async fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + GUARD;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "{what} never listened on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A broker process of this test, killed on drop.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Records every command payload; accepts them all.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl CommandHandler for Recorder {
    fn handle<'a>(&'a self, payload: &'a [u8]) -> CommandFuture<'a> {
        Box::pin(async move {
            self.0
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(payload).into_owned());
            CommandOutcome::Accepted
        })
    }
}

impl Recorder {
    fn saw(&self, text: &str) -> bool {
        self.0.lock().unwrap().iter().any(|p| p == text)
    }
}

/// Retry `publish` until the sink takes the batch (it connects in the background).
async fn publish_until_taken(sink: &dyn Sink, events: &[OutgoingEvent]) {
    let deadline = Instant::now() + GUARD;
    loop {
        match sink.publish(events).await {
            Ok(()) => return,
            Err(e) => assert!(Instant::now() < deadline, "never delivered: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_command(recorder: &Recorder, text: &str, mut send: impl AsyncFnMut()) {
    let deadline = Instant::now() + GUARD;
    while !recorder.saw(text) {
        assert!(Instant::now() < deadline, "command {text} never handled");
        send().await;
        for _ in 0..20 {
            if recorder.saw(text) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

// ---------------------------------------------------------------- Redis

/// `redis-server` with TLS only (`--port 0`), requiring a client certificate of `ca`.
async fn redis_tls(ca: &TestCa, server: &Leaf) -> (Spawned, u16) {
    let port = free_port();
    let child = Command::new("/usr/bin/redis-server")
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--tls-port")
        .arg(port.to_string())
        .arg("--tls-cert-file")
        .arg(&server.cert_file)
        .arg("--tls-key-file")
        .arg(&server.key_file)
        .arg("--tls-ca-cert-file")
        .arg(&ca.ca_file)
        .args(["--tls-auth-clients", "yes", "--dir"])
        .arg(ca.dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn /usr/bin/redis-server");
    let spawned = Spawned(child);
    wait_listening(port, "redis-server").await;
    (spawned, port)
}

#[tokio::test]
async fn redis_events_and_commands_over_tls() {
    let ca = TestCa::new("redis");
    let (_redis, port) = redis_tls(&ca, &ca.server("redis")).await;
    let url = format!("rediss://localhost:{port}");
    let tls = with_client_cert(&ca, &ca.client("gateway"));

    use asr_gateway::events::redis_streams::{RedisConfig, RedisSink};
    let sink = RedisSink::new(RedisConfig {
        url: url.clone().into(),
        stream: "tls:events".into(),
        tls: tls.clone(),
        ..RedisConfig::default()
    })
    .unwrap();
    let events: Vec<_> = (0..3).map(event).collect();
    publish_until_taken(&sink, &events).await;

    // Read back over TLS with a client of our own.
    let reader = ca.client("reader");
    let client = redis::Client::build_with_tls(
        url.as_str(),
        redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: reader.cert_pem.clone().into_bytes(),
                client_key: reader.key_pem.clone().into_bytes(),
            }),
            root_cert: Some(ca.ca_pem.clone().into_bytes()),
        },
    )
    .unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let stored: usize = redis::cmd("XLEN")
        .arg("tls:events")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored, 3);

    // Without a client certificate the server refuses us.
    let refused = RedisSink::new(RedisConfig {
        url: url.clone().into(),
        stream: "tls:refused".into(),
        timeout_ms: 2_000,
        tls: TlsSettings {
            ca_file: Some(ca.ca_file.clone()),
            ..TlsSettings::default()
        },
        ..RedisConfig::default()
    })
    .unwrap();
    assert!(refused.publish(&events[..1]).await.is_err());

    use asr_gateway::control::redis_streams::{self as commands, RedisCommandsConfig};
    let recorder = Arc::new(Recorder::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let consumer = tokio::spawn(commands::run(
        RedisCommandsConfig {
            url: url.into(),
            stream: "tls:commands".into(),
            consumer: Some("tls-test".into()),
            block_ms: 200,
            tls,
            ..RedisCommandsConfig::default()
        },
        recorder.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let command = "{\"command\":\"stop\",\"call_id\":\"over-tls\"}";
    let _: String = redis::cmd("XADD")
        .arg("tls:commands")
        .arg("*")
        .arg("payload")
        .arg(command)
        .query_async(&mut conn)
        .await
        .unwrap();
    wait_for_command(&recorder, command, async || {}).await;
    let _ = stop.send(());
    tokio::time::timeout(GUARD, consumer)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

// ---------------------------------------------------------------- NATS

/// `nats-server -js` with TLS (`verify`: a client certificate of `ca` is required).
async fn nats_tls(ca: &TestCa, server: &Leaf) -> (Spawned, u16) {
    let port = free_port();
    let store: PathBuf = ca.dir().join("jetstream");
    let conf = ca.dir().join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: \"127.0.0.1:{port}\"\njetstream {{ store_dir: \"{}\" }}\n\
             tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n  timeout: 5\n}}\n",
            store.display(),
            server.cert_file.display(),
            server.key_file.display(),
            ca.ca_file.display()
        ),
    )
    .unwrap();
    let child = Command::new("/usr/sbin/nats-server")
        .arg("-js")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn /usr/sbin/nats-server");
    let spawned = Spawned(child);
    wait_listening(port, "nats-server").await;
    (spawned, port)
}

#[tokio::test]
async fn nats_events_and_commands_over_tls() {
    let ca = TestCa::new("nats");
    let (_nats, port) = nats_tls(&ca, &ca.server("nats")).await;
    let url = format!("tls://localhost:{port}");
    let tls = with_client_cert(&ca, &ca.client("gateway"));

    use asr_gateway::events::nats::{NatsConfig, NatsSink};
    let sink = NatsSink::connect(NatsConfig {
        url: url.clone().into(),
        stream: "TLS_EVENTS".into(),
        subject_prefix: "tlsasr".into(),
        tls: tls.clone(),
        ..NatsConfig::default()
    })
    .await
    .unwrap();
    let events: Vec<_> = (0..3).map(event).collect();
    // A PubAck per event: the server stored them.
    publish_until_taken(&sink, &events).await;

    let reader = ca.client("reader");
    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(ca.ca_file.clone())
        .add_client_certificate(reader.cert_file.clone(), reader.key_file.clone())
        .require_tls(true)
        .connect(url.as_str())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("TLS_EVENTS").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 3);

    use asr_gateway::control::nats::{self as commands, NatsCommandsConfig};
    let recorder = Arc::new(Recorder::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let consumer = tokio::spawn(commands::run(
        NatsCommandsConfig {
            url: url.into(),
            stream: "TLS_COMMANDS".into(),
            subject: "tls-commands".into(),
            tls,
            ..NatsCommandsConfig::default()
        },
        recorder.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let command = "{\"command\":\"stop\",\"call_id\":\"over-nats-tls\"}";
    // The consumer creates the stream once connected: publish until it is there.
    wait_for_command(&recorder, command, async || {
        if let Ok(ack) = js.publish("tls-commands", command.into()).await {
            let _ = ack.await;
        }
    })
    .await;
    let _ = stop.send(());
    tokio::time::timeout(GUARD, consumer)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

// ---------------------------------------------------------------- AMQPS

const RABBITMQ: &str = "127.0.0.1:5672";

/// A TLS-terminating TCP proxy to the plain RabbitMQ; returns its port.
async fn amqps_proxy(server: &Leaf) -> u16 {
    let acceptor = tokio_rustls::TlsAcceptor::from(TestCa::server_config(server, None, &[]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut upstream) = tokio::net::TcpStream::connect(RABBITMQ).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn amqps_events_and_commands_through_a_tls_proxy() {
    let ca = TestCa::new("amqp");
    let port = amqps_proxy(&ca.server("rabbitmq")).await;
    let url = format!("amqps://guest:guest@localhost:{port}/%2f");
    let tls = TlsSettings {
        ca_file: Some(ca.ca_file.clone()),
        ..TlsSettings::default()
    };
    let tag = uuid::Uuid::new_v4().simple().to_string();

    // A plain connection watches what arrives.
    let plain = Connection::connect(
        &format!("amqp://guest:guest@{RABBITMQ}/%2f"),
        ConnectionProperties::default(),
    )
    .await
    .expect("these tests need RabbitMQ on 127.0.0.1:5672");
    let channel = plain.create_channel().await.unwrap();
    let exchange = format!("asr.tls.{tag}");
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            // As the sink declares it.
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let queue = format!("asr.tls.q.{tag}");
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::exclusive().auto_delete(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut arrivals = channel
        .basic_consume(
            queue.as_str().into(),
            "tls-test".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();

    use asr_gateway::events::rabbitmq::{RabbitConfig, RabbitSink};
    let sink = RabbitSink::connect(RabbitConfig {
        url: url.clone().into(),
        exchange: exchange.clone(),
        tls: tls.clone(),
        ..RabbitConfig::default()
    })
    .unwrap();
    let events: Vec<_> = (0..3).map(event).collect();
    publish_until_taken(&sink, &events).await;
    for sent in &events {
        let delivery = tokio::time::timeout(GUARD, arrivals.next())
            .await
            .expect("an event arrives")
            .unwrap()
            .unwrap();
        assert_eq!(delivery.data, sent.json.to_vec());
    }
    sink.close().await;

    use asr_gateway::control::rabbitmq::{self as commands, RabbitCommandsConfig};
    let recorder = Arc::new(Recorder::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let command_queue = format!("asr.tls.commands.{tag}");
    let consumer = tokio::spawn(commands::run(
        RabbitCommandsConfig {
            url: url.into(),
            queue: command_queue.clone(),
            dead_letter_exchange: format!("asr.tls.dlx.{tag}"),
            tls,
            ..RabbitCommandsConfig::default()
        },
        recorder.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let command = "{\"command\":\"stop\",\"call_id\":\"over-amqps\"}";
    // The consumer declares its queue once connected: publish until it is there.
    wait_for_command(&recorder, command, async || {
        let _ = channel
            .basic_publish(
                "".into(),
                command_queue.as_str().into(),
                BasicPublishOptions::default(),
                command.as_bytes(),
                BasicProperties::default(),
            )
            .await;
    })
    .await;
    let _ = stop.send(());
    tokio::time::timeout(GUARD, consumer)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    for q in [command_queue.clone(), format!("{command_queue}.dead")] {
        let _ = channel
            .queue_delete(q.as_str().into(), Default::default())
            .await;
    }
    for x in [exchange, format!("asr.tls.dlx.{tag}")] {
        let _ = channel
            .exchange_delete(x.as_str().into(), Default::default())
            .await;
    }
}
