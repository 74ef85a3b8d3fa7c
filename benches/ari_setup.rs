//! Robocall setup rate: calls entering Stasis per second until their tap's media is bridged,
//! through the fake Asterisk (tests/fake_asterisk; Asterisk cannot be installed here).
//!
//! Run: `cargo bench --bench ari_setup` (2,000 calls offered at 250/s, each hung up 2 s
//! after it entered Stasis, so about 500 calls are live with media flowing). Prints the
//! achieved setup rate, the setup time percentiles from the gateway's own histogram, and
//! the ARI requests per call. Without `--bench` (as `cargo test` runs it) 20 calls.
//! `ARI_BENCH_RATE` and `ARI_BENCH_CALLS` change the offered rate and the number of calls.

#[path = "../tests/fake_asterisk/mod.rs"]
mod fake_asterisk;

use std::time::{Duration, Instant};

use asr_gateway::config::Config;
use asr_gateway::serve::Gateway;
use fake_asterisk::{FakeAsterisk, FakeConfig};

const APP: &str = "robocall";
const LIFETIME: Duration = Duration::from_secs(2);

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (calls, rate) = if full { (2000, 250.0) } else { (20, 100.0) };
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<f64>().ok());
    let calls = env("ARI_BENCH_CALLS").map_or(calls, |c| c as usize);
    let rate = env("ARI_BENCH_RATE").unwrap_or(rate);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(calls, rate));
}

async fn run(calls: usize, rate: f64) {
    let fake = FakeAsterisk::start(FakeConfig::default()).await;
    let dir = std::env::temp_dir().join(format!("asrgw-ari-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // The called party says nothing: this measures call control, not recognition.
    let silence = dir.join("silence.wav");
    write_silence(&silence);
    let c = FakeConfig::default();
    let config = Config::from_toml(&format!(
        r#"
[server]
http_listen = "127.0.0.1:0"
rtp_bind = "127.0.0.1"
rtp_port_min = 30000
rtp_port_max = 39999
instance = "bench"
[asr]
endpoint = "http://127.0.0.1:9"
[events]
sinks = []
[outbox]
journal_dir = "{journal}"
[ari]
media_timeout_ms = 60000
[ari.stasis]
until = "stop"
then = "leave"
max_ms = 600000
[[ari.servers]]
id = "bench"
url = "{url}"
username = "{user}"
password = "{password}"
app = "{APP}"
"#,
        journal = dir.join("journal").display(),
        url = fake.url(),
        user = c.username,
        password = c.password,
    ))
    .expect("bench config");
    let gateway = Gateway::start(config).await.expect("gateway starts");
    assert!(
        fake.wait_for_app(APP, Duration::from_secs(10)).await,
        "events socket"
    );

    let mut channels = Vec::with_capacity(calls);
    for _ in 0..calls {
        channels.push(fake.add_call(&silence).await);
    }
    let metrics = gateway.metrics().clone();
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for channel in &channels {
        ticker.tick().await;
        fake.enter_stasis(channel, APP, &[]).await;
        let (fake, channel) = (fake.clone(), channel.clone());
        tokio::spawn(async move {
            tokio::time::sleep(LIFETIME).await;
            fake.hangup(&channel).await;
        });
    }
    let offered = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (metrics.ari_taps_started.get() as usize) < calls && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let set_up = metrics.ari_taps_started.get() as usize;
    let elapsed = started.elapsed();
    // Every call is hung up; wait for the teardown to finish.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts = fake.counts();
        let balanced = counts.channels_created == counts.channels_destroyed
            && counts.bridges_created == counts.bridges_destroyed;
        if (balanced && counts.live_calls == 0) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let counts = fake.counts();
    let requests = fake.requests();
    let posts = |suffix: &str| {
        requests
            .iter()
            .filter(|(m, p)| m == "POST" && p.ends_with(suffix))
            .count()
    };
    let h = &metrics.ari_tap_setup;
    let ms = |q: f64| {
        h.quantile_bound(q)
            .map(|s| format!("<= {:.0} ms", s * 1000.0))
            .unwrap_or_else(|| "n/a".into())
    };
    println!("ari_setup: {calls} calls offered at {rate:.0}/s in {offered:.2?}");
    println!(
        "  taps bridged: {set_up} of {calls}; {:.0} calls/s from the first StasisStart to the last bridge",
        set_up as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  setup time (StasisStart seen -> media bridged): p50 {}  p99 {}  ({} samples)",
        ms(0.5),
        ms(0.99),
        h.count()
    );
    println!(
        "  ARI requests per call: answer {:.2}, snoop {:.2}, externalMedia {:.2}, bridge {:.2}, addChannel {:.2} \
         (round trips on the critical path: 2; the first four go out at once)",
        posts("/answer") as f64 / calls as f64,
        posts("/snoop") as f64 / calls as f64,
        posts("/externalMedia") as f64 / calls as f64,
        requests
            .iter()
            .filter(|(m, p)| m == "POST" && p.ends_with("/bridges"))
            .count() as f64
            / calls as f64,
        posts("/addChannel") as f64 / calls as f64,
    );
    println!(
        "  teardown: channels created {} destroyed {}, bridges created {} destroyed {}; RTP packets sent by the fake {}",
        counts.channels_created,
        counts.channels_destroyed,
        counts.bridges_created,
        counts.bridges_destroyed,
        fake.rtp_packets_sent()
    );
    assert_eq!(set_up, calls, "every call got its tap");
    assert_eq!(counts.channels_created, counts.channels_destroyed);
    assert_eq!(counts.bridges_created, counts.bridges_destroyed);
    gateway.shutdown().await;
}

fn write_silence(path: &std::path::Path) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("wav");
    for _ in 0..8000 {
        w.write_sample(0i16).expect("sample");
    }
    w.finalize().expect("wav");
}
