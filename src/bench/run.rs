//! One bench run: start (or reach) the gateway and the engine, ramp streams step by step,
//! measure each step, stop, gather every stream's accounting, and build the result.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::corpus::{self, Clip};
use super::events::{ClipTiming, EventLog};
use super::gateway::{Gateway, GatewayError, GatewayMetrics, Reserved};
use super::null_engine::{NullEngine, NullEngineConfig, NullEngineError};
use super::offline::{self, Baseline};
use super::options::{AsrModeArg, BenchOptions, EngineChoice, OptionsError};
use super::pacer::{EncodedClip, Pacer, StreamSent, StreamSpec};
use super::progress::Progress;
use super::report::{BenchResult, Machine, StepResult, StreamResult, Thresholds, Totals};
use super::streams::{self, Registry};
use super::wer;
use crate::sender::netem::{Netem, NetemConfig};
use crate::sender::{self, SendOptions};

const PTIME_MS: u64 = 20;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Options(#[from] OptionsError),
    #[error("audio: {0}")]
    Corpus(#[from] corpus::CorpusError),
    #[error("--codec {0:?}: use pcmu, pcma, slin, slin16, g722 or opus")]
    Codec(String),
    #[error("encoding {clip}: {source}")]
    Encode {
        clip: String,
        source: sender::SendError,
    },
    #[error(transparent)]
    Engine(#[from] NullEngineError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error("bench socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing {path}: {detail}")]
    Output { path: PathBuf, detail: String },
}

/// Where the result went.
pub struct Outcome {
    pub result: BenchResult,
    pub json: PathBuf,
    pub chart: Option<PathBuf>,
}

struct Started {
    index: usize,
    clip: usize,
    session: Reserved,
}

pub async fn run(
    options: &BenchOptions,
    config_file: Option<&Path>,
    command_line: String,
) -> Result<Outcome, BenchError> {
    let engine = options.validate()?;
    let steps = options.steps();
    let send_options = SendOptions::for_codec(&options.codec)
        .ok_or_else(|| BenchError::Codec(options.codec.clone()))?;
    let clips = corpus::load(&options.audio)?;
    let encoded = clips
        .iter()
        .map(|c| encode_clip(c, &send_options))
        .collect::<Result<Vec<_>, _>>()?;

    let registry = Arc::new(Registry::new(PTIME_MS));
    let events = Arc::new(EventLog::default());
    let null = match engine {
        EngineChoice::Null => Some(
            NullEngine::start(
                options.engine_listen,
                registry.clone(),
                NullEngineConfig {
                    final_delay: Duration::from_millis(options.null_final_delay_ms),
                    partial_every_ms: options.null_partial_ms,
                },
            )
            .await?,
        ),
        _ => None,
    };
    let asr_mode = options.asr_mode.unwrap_or(match engine {
        EngineChoice::Null => AsrModeArg::Call,
        _ => AsrModeArg::Utterance,
    });
    let mode_name = match asr_mode {
        AsrModeArg::Call => "call",
        AsrModeArg::Utterance => "utterance",
    };

    let max_streams = steps.iter().copied().max().unwrap_or(1);
    let journal = journal_dir();
    let (gateway, reader) = match &options.gateway {
        Some(url) => {
            if let Some(null) = &null {
                eprintln!(
                    "bench: null engine on {}; the gateway at {url} must use it (asr.endpoint = \"http://{}\")",
                    null.addr, null.addr
                );
            }
            (Gateway::remote(url), None)
        }
        None => {
            let env = child_env(
                options,
                &engine,
                null.as_ref().map(|n| n.addr),
                mode_name,
                max_streams,
                &journal,
            );
            let exe = std::env::current_exe()?;
            let (gateway, stdout) = Gateway::spawn(&exe, config_file, &env).await?;
            let lines = super::gateway::event_lines(stdout);
            let reader = super::events::spawn_reader(lines, events.clone(), registry.clone());
            (gateway, Some(reader))
        }
    };
    let events_seen = reader.is_some();

    let baseline = gateway.metrics().await?;
    let pacer = Pacer::start(registry.clone())?;
    let netem = NetemConfig {
        loss: options.loss / 100.0,
        burst: options.loss_burst,
        jitter_ms: options.jitter_ms,
        reorder: options.reorder / 100.0,
        duplicate: options.duplicate / 100.0,
        seed: options.seed,
    };
    let mut progress = Progress::new(options.quiet, registry.clone(), pacer.counters.clone());
    let mut started: Vec<Started> = Vec::new();
    let mut results: Vec<StepResult> = Vec::new();
    let mut failure: Option<BenchError> = None;

    'steps: for &target in &steps {
        // Ramp: one new stream every 1/ramp s, each with its own socket, as calls arrive.
        let interval = Duration::from_secs_f64(1.0 / options.ramp);
        let mut next = tokio::time::Instant::now();
        while started.len() < target {
            let index = started.len();
            let clip = index % clips.len();
            match start_stream(
                &gateway,
                &pacer,
                &registry,
                &events,
                index,
                &clips[clip],
                &encoded[clip],
                &netem,
                options.loops,
            )
            .await
            {
                Ok(session) => started.push(Started {
                    index,
                    clip,
                    session,
                }),
                Err(e) => {
                    failure = Some(e);
                    break 'steps;
                }
            }
            next += interval;
            tokio::time::sleep_until(next).await;
            progress.tick(&gateway, started.len(), target, "ramp").await;
        }
        progress
            .wait(
                &gateway,
                Duration::from_secs_f64(options.settle),
                started.len(),
                "settle",
            )
            .await;
        let step = measure_step(
            options,
            &gateway,
            &registry,
            &events,
            &pacer,
            &mut progress,
            &baseline,
            started.len(),
        )
        .await;
        match step {
            Ok(step) => {
                let held = step.held;
                results.push(step);
                if options.capacity && !held {
                    break;
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    progress.finish();

    // Stop sending, then end every session so each reports its stats.
    let sent = tokio::task::spawn_blocking(move || pacer.stop_all(Instant::now()))
        .await
        .unwrap_or_default();
    eprintln!("bench: sent; ending {} sessions", started.len());
    end_sessions(&gateway, &started).await;
    if events_seen {
        wait_for_ends(&events, started.len() as u64, Duration::from_secs(30)).await;
    }
    let final_metrics = gateway.metrics().await.ok();
    // Offline, the clips the streams played, each once.
    let played: Vec<Clip> = clips
        .iter()
        .enumerate()
        .filter(|(k, _)| started.iter().any(|s| s.clip == *k))
        .map(|(_, c)| c.clone())
        .collect();
    let offline = offline_baseline(&engine, &gateway, &played, &options.codec, config_file).await;
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(&journal);
    if let Some(reader) = reader {
        let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    }
    drop(null);
    if let Some(e) = failure {
        if results.is_empty() {
            return Err(e);
        }
        eprintln!("bench: stopped early: {e}");
    }

    let engine_name = match &engine {
        EngineChoice::Null => "null".to_owned(),
        EngineChoice::Embedded => "embedded".to_owned(),
        EngineChoice::Endpoint(url) => url.clone(),
    };
    let streams = stream_results(
        &started,
        &clips,
        &sent,
        &registry,
        &events,
        events_seen,
        engine == EngineChoice::Null,
    );
    let totals = totals(
        &streams,
        &registry,
        &events,
        events_seen,
        engine == EngineChoice::Null,
        final_metrics,
        offline,
    );
    let thresholds = Thresholds {
        max_loss_percent: options.max_loss,
        max_p99_ms: options.max_p99_ms,
        max_cpu_cores: options.max_cpu_cores,
        max_final_p95_ms: options.max_final_p95_ms,
    };
    let capacity = options
        .capacity
        .then(|| results.iter().filter(|s| s.held).map(|s| s.streams).max())
        .flatten();
    let result = BenchResult {
        gateway_version: env!("CARGO_PKG_VERSION"),
        started_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        command: command_line,
        machine: Machine::this(),
        codec: options.codec.clone(),
        engine: engine_name,
        asr_mode: mode_name.to_owned(),
        chunk_ms: options.chunk_ms,
        capacity_mode: options.capacity,
        capacity,
        thresholds,
        steps: results,
        totals,
        streams,
    };
    super::output::write(result, &options.out, &options.chart)
}

/// Environment for a child `asr-gateway serve`: loopback media on a port range wide
/// enough for the run, events on stdout for the bench to read.
fn child_env(
    options: &BenchOptions,
    engine: &EngineChoice,
    null: Option<SocketAddr>,
    mode: &str,
    max_streams: usize,
    journal: &Path,
) -> Vec<(String, String)> {
    let min = 20_000u32;
    let max = (min + max_streams as u32 + 200).min(60_999);
    let mut env = vec![
        ("ASRGW_SERVER__HTTP_LISTEN", "\"127.0.0.1:0\"".to_owned()),
        ("ASRGW_SERVER__RTP_BIND", "\"127.0.0.1\"".to_owned()),
        ("ASRGW_SERVER__RTP_PORT_MIN", min.to_string()),
        ("ASRGW_SERVER__RTP_PORT_MAX", max.to_string()),
        ("ASRGW_ASR__MODE", format!("\"{mode}\"")),
        ("ASRGW_ASR__CHUNK_MS", options.chunk_ms.to_string()),
        ("ASRGW_EVENTS__SINKS", "[\"stdout\"]".to_owned()),
        // Its own event journal, so benches (and a gateway) can run side by side.
        (
            "ASRGW_OUTBOX__JOURNAL_DIR",
            format!("{:?}", journal.display().to_string()),
        ),
    ];
    match (engine, null) {
        (EngineChoice::Null, Some(addr)) => {
            env.push(("ASRGW_ASR__ENDPOINT", format!("\"http://{addr}\"")));
            env.push(("ASRGW_ASR__INTERIM_RESULTS", "true".to_owned()));
        }
        (EngineChoice::Endpoint(url), _) => env.push(("ASRGW_ASR__ENDPOINT", format!("\"{url}\""))),
        _ => {}
    }
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// A fresh journal directory for a child gateway, under the system temp dir.
fn journal_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "asrgw-bench-journal-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ))
}

fn encode_clip(clip: &Clip, options: &SendOptions) -> Result<Arc<EncodedClip>, BenchError> {
    let packets =
        sender::packetize(&clip.samples, clip.sample_rate, options, 0, 0).map_err(|source| {
            BenchError::Encode {
                clip: clip.name.clone(),
                source,
            }
        })?;
    Ok(Arc::new(EncodedClip {
        payloads: packets.into_iter().map(|p| p[12..].to_vec()).collect(),
        payload_type: options.payload_type,
        timestamp_step: options.codec.clock_rate() * options.ptime_ms / 1000,
    }))
}

#[allow(clippy::too_many_arguments)]
async fn start_stream(
    gateway: &Gateway,
    pacer: &Pacer,
    registry: &Registry,
    events: &EventLog,
    index: usize,
    clip: &Clip,
    encoded: &Arc<EncodedClip>,
    netem: &NetemConfig,
    loops: u32,
) -> Result<Reserved, BenchError> {
    let session = gateway.create_session(&streams::call_id(index)).await?;
    let local: SocketAddr = if session.media.ip().is_loopback() {
        (session.media.ip(), 0).into()
    } else if session.media.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(session.media)?;
    let clip_packets = encoded.payloads.len() as u64;
    events.expect_stream(
        index,
        ClipTiming {
            clip_ms: clip_packets * PTIME_MS,
            speech_end_ms: clip.speech_end_ms,
        },
    );
    pacer.add(StreamSpec {
        index,
        socket,
        clip: encoded.clone(),
        record: registry.stream(index),
        netem: (!netem.is_clean()).then(|| Netem::new(*netem, index as u64)),
        max_packets: (loops > 0).then(|| clip_packets * u64::from(loops)),
        start: Instant::now() + Duration::from_millis(1),
    });
    Ok(session)
}

#[allow(clippy::too_many_arguments)]
async fn measure_step(
    options: &BenchOptions,
    gateway: &Gateway,
    registry: &Registry,
    events: &EventLog,
    pacer: &Pacer,
    progress: &mut Progress,
    baseline: &GatewayMetrics,
    streams: usize,
) -> Result<StepResult, BenchError> {
    let m0 = gateway.metrics().await?;
    let lat0 = registry.latency.snapshot_window();
    let proc0 = registry.processing.snapshot_window();
    let final0 = events.final_latency.snapshot_window();
    let injected0 = pacer.counters.injected_lost.load(Ordering::Relaxed);
    let late0 = pacer.counters.lateness.snapshot_window();
    let sent0 = pacer.counters.datagrams.load(Ordering::Relaxed);
    let t0 = Instant::now();
    progress
        .wait(
            gateway,
            Duration::from_secs_f64(options.duration),
            streams,
            "measure",
        )
        .await;
    let m1 = gateway.metrics().await?;
    let seconds = t0.elapsed().as_secs_f64();
    let sent = pacer.counters.datagrams.load(Ordering::Relaxed) - sent0;
    let latency = registry.latency.snapshot_window().since(&lat0).summary();
    let processing_latency = registry
        .processing
        .snapshot_window()
        .since(&proc0)
        .summary();
    let final_latency = events
        .final_latency
        .snapshot_window()
        .since(&final0)
        .summary();
    let late = pacer.counters.lateness.snapshot_window().since(&late0);
    let received = (m1.rtp_packets - m0.rtp_packets).max(0.0) as u64;
    // The gateway's own loss count (sequence gaps), less what the bench dropped on purpose:
    // exact where sent − received would count packets in flight at the window's edges.
    let injected = pacer.counters.injected_lost.load(Ordering::Relaxed) - injected0;
    let lost = ((m1.rtp_lost - m0.rtp_lost).max(0.0) as u64).saturating_sub(injected);
    let loss_percent = if sent == 0 {
        0.0
    } else {
        lost as f64 * 100.0 / sent as f64
    };
    let cpu = (m1.cpu_seconds - m0.cpu_seconds).max(0.0);
    let gateway_cores = cpu / seconds;
    let rss = m1.resident_bytes as u64;
    let mut broke = Vec::new();
    if loss_percent > options.max_loss {
        broke.push(format!("loss {loss_percent:.3} % > {} %", options.max_loss));
    }
    if let Some(l) = processing_latency.filter(|l| l.p99_ms > options.max_p99_ms) {
        broke.push(format!(
            "p99 {:.2} ms > {} ms",
            l.p99_ms, options.max_p99_ms
        ));
    }
    if let Some(l) = final_latency.filter(|l| l.p95_ms > options.max_final_p95_ms) {
        broke.push(format!(
            "final p95 {:.0} ms > {} ms",
            l.p95_ms, options.max_final_p95_ms
        ));
    }
    if gateway_cores > options.max_cpu_cores {
        broke.push(format!(
            "CPU {gateway_cores:.2} cores > {}",
            options.max_cpu_cores
        ));
    }
    Ok(StepResult {
        streams,
        seconds,
        datagrams_sent: sent,
        gateway_received: received,
        loss_percent,
        latency,
        processing_latency,
        final_latency,
        gateway_cores,
        cpu_ms_per_stream_second: cpu * 1000.0 / (streams.max(1) as f64 * seconds),
        rss_bytes: rss,
        rss_per_session_bytes: rss.saturating_sub(baseline.resident_bytes as u64)
            / streams.max(1) as u64,
        pacer_late_p99_ms: late.quantile_us(0.99).map(|us| us as f64 / 1000.0),
        held: broke.is_empty(),
        broke,
    })
}

async fn end_sessions(gateway: &Gateway, started: &[Started]) {
    let failures = futures_util::stream::iter(started)
        .map(|s| gateway.end_session(&s.session.session_id))
        .buffer_unordered(32)
        .filter(|r| std::future::ready(r.is_err()))
        .count()
        .await;
    if failures > 0 {
        eprintln!("bench: {failures} sessions could not be ended through the API (already gone?)");
    }
}

async fn wait_for_ends(events: &EventLog, expected: u64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while events.ended() < expected && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stream_results(
    started: &[Started],
    clips: &[Clip],
    sent: &[StreamSent],
    registry: &Registry,
    events: &EventLog,
    events_seen: bool,
    null_engine: bool,
) -> Vec<StreamResult> {
    let sent: HashMap<usize, &StreamSent> = sent.iter().map(|s| (s.index, s)).collect();
    let seen = events.streams();
    started
        .iter()
        .map(|s| {
            let record = registry.stream(s.index);
            let out = sent.get(&s.index).copied().copied().unwrap_or_default();
            let ev = seen.get(&s.index).cloned().unwrap_or_default();
            let ended = ev.ended;
            let clip = &clips[s.clip];
            // The null engine's transcripts are synthetic: no WER.
            let scored = events_seen && !null_engine;
            let wer = clip
                .transcript
                .as_ref()
                .filter(|_| scored)
                .map(|reference| pass_wer(reference, &ev.finals, out.packets, clip_packets(clip)));
            StreamResult {
                index: s.index,
                call_id: streams::call_id(s.index),
                clip: clip.name.clone(),
                packets: out.packets,
                datagrams_sent: out.datagrams,
                injected: out.injected,
                gateway_received: ended.map(|e| e.received),
                gateway_lost: ended.map(|e| e.lost),
                gateway_duplicate: ended.map(|e| e.duplicate),
                latency: record.latency.snapshot().summary(),
                engine_chunks: record.chunks.load(Ordering::Relaxed),
                engine_audio_ms: record.audio_ms.load(Ordering::Relaxed),
                engine_unmatched_packets: record.unmatched.load(Ordering::Relaxed),
                finals_sent_by_engine: null_engine
                    .then(|| record.finals_sent.load(Ordering::Relaxed)),
                finals_seen: ev.finals.len() as u64,
                partials_sent_by_engine: null_engine
                    .then(|| record.partials_sent.load(Ordering::Relaxed)),
                partials_seen: ev.partials,
                final_latency_ms: ev.final_latency_ms,
                wer: wer.and_then(|w| w.wer()),
                wer_count: wer.unwrap_or_default(),
                errors: ev.errors,
            }
        })
        .collect()
}

fn clip_packets(clip: &Clip) -> u64 {
    (clip.samples.len() as u64 * 1000 / u64::from(clip.sample_rate.max(1))).div_ceil(PTIME_MS)
}

/// WER of the finals of every complete pass of the clip against its reference.
fn pass_wer(
    reference: &str,
    finals: &[super::events::FinalSeen],
    packets: u64,
    clip_packets: u64,
) -> wer::WerCount {
    let clip_ms = clip_packets.max(1) * PTIME_MS;
    let passes = packets / clip_packets.max(1);
    let mut total = wer::WerCount::default();
    for pass in 0..passes {
        let text: Vec<&str> = finals
            .iter()
            .filter(|f| super::events::pass_of(f.end_ms, clip_ms) == pass)
            .map(|f| f.text.as_str())
            .collect();
        total += wer::count(reference, &text.join(" "));
    }
    total
}

/// The offline column, when the engine is a real one and some clip has a reference.
/// A failure is reported and leaves the column out; the bench's own figures stand.
async fn offline_baseline(
    engine: &EngineChoice,
    gateway: &Gateway,
    clips: &[Clip],
    codec: &str,
    config_file: Option<&Path>,
) -> Option<Baseline> {
    let endpoint = match engine {
        EngineChoice::Null => return None,
        EngineChoice::Endpoint(url) => url.clone(),
        EngineChoice::Embedded => gateway.engine_endpoint()?.to_owned(),
    };
    if !clips.iter().any(|c| c.transcript.is_some()) {
        return None;
    }
    let language = crate::config::Config::load(config_file, std::env::vars())
        .map_or_else(|_| "en".to_owned(), |c| c.asr.language);
    eprintln!("bench: offline baseline: the same clips, whole, through {endpoint}");
    match offline::baseline(&endpoint, clips, codec, &language).await {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("bench: offline baseline failed: {e}");
            None
        }
    }
}

fn totals(
    streams: &[StreamResult],
    registry: &Registry,
    events: &EventLog,
    events_seen: bool,
    null_engine: bool,
    final_metrics: Option<GatewayMetrics>,
    offline: Option<Baseline>,
) -> Totals {
    let mut t = Totals {
        streams: streams.len(),
        ..Default::default()
    };
    let mut wer_total = wer::WerCount::default();
    let mut finals_sent = 0;
    let mut partials_sent = 0;
    for s in streams {
        t.packets += s.packets;
        t.datagrams_sent += s.datagrams_sent;
        t.injected += s.injected;
        t.gateway_received += s.gateway_received.unwrap_or(0);
        t.gateway_lost += s.gateway_lost.unwrap_or(0);
        t.sessions_without_end += usize::from(events_seen && s.gateway_received.is_none());
        t.finals_seen += s.finals_seen;
        t.partials_seen += s.partials_seen;
        finals_sent += s.finals_sent_by_engine.unwrap_or(0);
        partials_sent += s.partials_sent_by_engine.unwrap_or(0);
        wer_total += s.wer_count;
    }
    t.unaccounted = t.datagrams_sent as i64 - t.gateway_received as i64;
    t.latency = registry.latency.snapshot().summary();
    t.processing_latency = registry.processing.snapshot().summary();
    t.final_latency = events.final_latency.snapshot().summary();
    t.endpoint_latency = events.endpoint_latency.snapshot().summary();
    let audio = events.utterance_audio_ms.load(Ordering::Relaxed);
    t.real_time_factor =
        (audio > 0).then(|| events.utterance_wait_ms.load(Ordering::Relaxed) as f64 / audio as f64);
    t.wer = wer_total.wer();
    t.wer_reference_words = wer_total.reference_words;
    t.offline = offline.map(|mut b| {
        b.set_gateway_wer(t.wer);
        b
    });
    if null_engine {
        t.finals_sent_by_engine = Some(finals_sent);
        t.partials_sent_by_engine = Some(partials_sent);
        if events_seen {
            t.events_lost = Some(
                finals_sent.saturating_sub(t.finals_seen)
                    + partials_sent.saturating_sub(t.partials_seen),
            );
        }
    }
    t.malformed_event_lines = events.malformed.load(Ordering::Relaxed);
    t.gateway_peak_rss_bytes = final_metrics.map_or(0, |m| m.resident_peak_bytes as u64);
    t
}

#[cfg(test)]
mod tests {
    use super::pass_wer;
    use crate::bench::events::FinalSeen;

    fn seen(end_ms: u64, text: &str) -> FinalSeen {
        FinalSeen {
            start_ms: 0,
            end_ms,
            text: text.into(),
        }
    }

    #[test]
    fn finals_are_scored_against_the_pass_they_end_in() {
        // A 1 s clip (50 packets) played twice, then part of a third pass.
        let finals = [
            seen(900, "yes i am"),
            // Cut by the clip's end and flushed a little after it: still pass 0.
            seen(1_030, "interested"),
            seen(1_900, "yes i am interested"),
            // The third pass is incomplete: not scored.
            seen(2_500, "yes"),
        ];
        let count = pass_wer("yes i am interested", &finals, 120, 50);
        assert_eq!(count.reference_words, 8);
        assert_eq!(count.substitutions + count.deletions + count.insertions, 0);
    }
}
