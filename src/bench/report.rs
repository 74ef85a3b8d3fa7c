//! What a bench run found: per step, per stream and in all; printed as a table, written
//! as JSON, and handed to the chart.

use std::fmt::Write as _;

use serde::Serialize;

use super::histogram::LatencySummary;
use crate::sender::netem::NetemCounts;

/// One load level held and measured.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub streams: usize,
    /// Length of the measuring window, s.
    pub seconds: f64,
    pub datagrams_sent: u64,
    /// Datagrams the gateway read in the window (`asrgw_rtp_packets_total`).
    pub gateway_received: u64,
    /// Packets the gateway counted lost (sequence gaps) beyond those the bench injected, %
    /// of datagrams sent.
    pub loss_percent: f64,
    /// Packet sent → its audio at the engine, every packet (null engine only).
    pub latency: Option<LatencySummary>,
    /// The same for each chunk's newest packet: the gateway's own delay, without the
    /// wait for a chunk to fill. The p99 threshold applies to this.
    pub processing_latency: Option<LatencySummary>,
    /// End of speech in the clip → final event, finals in this step.
    pub final_latency: Option<LatencySummary>,
    /// Gateway CPU, cores (CPU seconds per wall second).
    pub gateway_cores: f64,
    /// Gateway CPU per stream: ms of CPU per second of one stream.
    pub cpu_ms_per_stream_second: f64,
    pub rss_bytes: u64,
    /// (RSS now − RSS before the first session) / streams.
    pub rss_per_session_bytes: u64,
    /// How late the bench itself sent packets (its own health), p99, ms.
    pub pacer_late_p99_ms: Option<f64>,
    pub held: bool,
    /// The thresholds this step broke.
    pub broke: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamResult {
    pub index: usize,
    pub call_id: String,
    pub clip: String,
    pub packets: u64,
    pub datagrams_sent: u64,
    pub injected: NetemCounts,
    /// From the session's `asr.session.ended` stats; None when it never came.
    pub gateway_received: Option<u64>,
    pub gateway_lost: Option<u64>,
    pub gateway_duplicate: Option<u64>,
    pub latency: Option<LatencySummary>,
    pub engine_chunks: u64,
    pub engine_audio_ms: u64,
    pub engine_unmatched_packets: u64,
    pub finals_sent_by_engine: Option<u64>,
    pub finals_seen: u64,
    pub partials_sent_by_engine: Option<u64>,
    pub partials_seen: u64,
    pub final_latency_ms: Vec<f64>,
    pub wer: Option<f64>,
    /// The counts behind `wer`, pooled into the run's WER.
    #[serde(skip)]
    pub wer_count: super::wer::WerCount,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub streams: usize,
    pub packets: u64,
    pub datagrams_sent: u64,
    pub injected: NetemCounts,
    /// Sum of the sessions' `received` (duplicates included).
    pub gateway_received: u64,
    pub gateway_lost: u64,
    /// Datagrams sent minus datagrams the gateway's sessions received.
    pub unaccounted: i64,
    pub sessions_without_end: usize,
    pub latency: Option<LatencySummary>,
    pub processing_latency: Option<LatencySummary>,
    /// End of speech in the clip → the final event at the bench.
    pub final_latency: Option<LatencySummary>,
    /// End of speech in the clip → `asr.speech.ended` at the bench: the VAD hangover plus
    /// the gateway's own delay, whether or not packets kept flowing.
    pub endpoint_latency: Option<LatencySummary>,
    /// Speech-end→final time over utterance length (the engine's real-time factor when
    /// it decodes at end of speech).
    pub real_time_factor: Option<f64>,
    /// Word error rate over every complete clip pass with a reference transcript.
    pub wer: Option<f64>,
    pub wer_reference_words: usize,
    /// The same engine on the same clips, whole (`transcribe`); not with the null engine.
    pub offline: Option<super::offline::Baseline>,
    pub finals_sent_by_engine: Option<u64>,
    pub finals_seen: u64,
    pub partials_sent_by_engine: Option<u64>,
    pub partials_seen: u64,
    /// Engine results that never became events (null engine only).
    pub events_lost: Option<u64>,
    pub malformed_event_lines: u64,
    pub gateway_peak_rss_bytes: u64,
    pub pacer_send_errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub os: String,
}

impl Machine {
    pub fn this() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_owned())
            })
            .unwrap_or_else(|| std::env::consts::OS.into());
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            os,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub gateway_version: &'static str,
    pub started_at: String,
    pub command: String,
    pub machine: Machine,
    pub codec: String,
    pub engine: String,
    pub asr_mode: String,
    pub chunk_ms: u32,
    pub capacity_mode: bool,
    /// Largest stream count whose step held every threshold (capacity mode).
    pub capacity: Option<usize>,
    pub thresholds: Thresholds,
    pub steps: Vec<StepResult>,
    pub totals: Totals,
    pub streams: Vec<StreamResult>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Thresholds {
    pub max_loss_percent: f64,
    pub max_p99_ms: f64,
    pub max_cpu_cores: f64,
    pub max_final_p95_ms: f64,
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

impl BenchResult {
    /// The human-readable summary printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n== asr-gateway bench: {} streams of {}, engine {}, asr.mode {}, chunk {} ms ==",
            self.totals.streams, self.codec, self.engine, self.asr_mode, self.chunk_ms
        );
        let _ = writeln!(
            out,
            "{:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6} {:>11} {:>8}  held",
            "streams",
            "pkts/s",
            "loss %",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "audio p99",
            "final p95",
            "cores",
            "cpu ms/st·s",
            "KiB/sess",
        );
        let _ = writeln!(
            out,
            "(p50..max: packet sent → engine for each chunk's newest packet; audio p99: every packet, chunk fill wait included)"
        );
        for s in &self.steps {
            let l = s.processing_latency;
            let _ = writeln!(
                out,
                "{:>7} {:>8.0} {:>8.4} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6.3} {:>11.3} {:>8.1}  {}",
                s.streams,
                s.datagrams_sent as f64 / s.seconds.max(1e-9),
                s.loss_percent,
                ms(l.map(|l| l.p50_ms)),
                ms(l.map(|l| l.p95_ms)),
                ms(l.map(|l| l.p99_ms)),
                ms(l.map(|l| l.max_ms)),
                ms(s.latency.map(|l| l.p99_ms)),
                ms(s.final_latency.map(|l| l.p95_ms)).replace(".00", ""),
                s.gateway_cores,
                s.cpu_ms_per_stream_second,
                s.rss_per_session_bytes as f64 / 1024.0,
                if s.held {
                    "yes".to_owned()
                } else {
                    format!("no: {}", s.broke.join(", "))
                }
            );
        }
        let t = &self.totals;
        let _ = writeln!(
            out,
            "\npackets: {} sent as {} datagrams; gateway sessions received {}, lost {}; unaccounted {}; injected lost {} duplicated {} reordered {} jittered {}",
            t.packets, t.datagrams_sent, t.gateway_received, t.gateway_lost, t.unaccounted,
            t.injected.lost, t.injected.duplicated, t.injected.reordered, t.injected.jittered
        );
        if let (Some(p), Some(l)) = (t.processing_latency, t.latency) {
            let _ = writeln!(
                out,
                "packet → engine over the run, newest packet of each chunk (the gateway's delay): p50 {:.2} ms, p95 {:.2}, p99 {:.2}, max {:.2} ({} chunks)",
                p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms, p.samples
            );
            let _ = writeln!(
                out,
                "packet → engine over the run, every packet (chunk fill wait included): p50 {:.2} ms, p95 {:.2}, p99 {:.2}, max {:.2} ({} packets)",
                l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms, l.samples
            );
        }
        match t.final_latency {
            Some(l) => {
                let _ = writeln!(
                    out,
                    "end of speech → final: p50 {:.0} ms, p95 {:.0}, p99 {:.0}, max {:.0} ({} utterances); RTF {}",
                    l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms, l.samples,
                    t.real_time_factor.map_or("-".into(), |r| format!("{r:.3}"))
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "end of speech → final: no final covered a clip's end of speech"
                );
            }
        }
        if let Some(l) = t.endpoint_latency {
            let _ = writeln!(
                out,
                "end of speech → asr.speech.ended: p50 {:.0} ms, p95 {:.0}, p99 {:.0}, max {:.0} ({} utterances)",
                l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms, l.samples
            );
        }
        let _ = writeln!(
            out,
            "events: finals {} seen{}, partials {} seen{}; events lost {}; sessions without asr.session.ended {}",
            t.finals_seen,
            t.finals_sent_by_engine.map_or(String::new(), |n| format!(" of {n} sent")),
            t.partials_seen,
            t.partials_sent_by_engine.map_or(String::new(), |n| format!(" of {n} sent")),
            t.events_lost.map_or("-".into(), |n| n.to_string()),
            t.sessions_without_end
        );
        if let Some(wer) = t.wer {
            let _ = writeln!(
                out,
                "WER {:.1} % over {} reference words",
                wer * 100.0,
                t.wer_reference_words
            );
        }
        if let Some(b) = &t.offline {
            let _ = writeln!(
                out,
                "offline WER {} (same engine, whole files, telephone path {}); gateway/offline {}{}",
                b.offline_wer
                    .map_or("-".into(), |w| format!("{:.1} %", w * 100.0)),
                b.telephone_path,
                b.wer_ratio.map_or("-".into(), |r| format!("{r:.3}")),
                if b.offline_failures > 0 {
                    format!("; {} clips failed offline", b.offline_failures)
                } else {
                    String::new()
                }
            );
        }
        let _ = writeln!(
            out,
            "gateway peak RSS {:.1} MiB",
            t.gateway_peak_rss_bytes as f64 / 1048576.0
        );
        if self.capacity_mode {
            let _ = writeln!(
                out,
                "capacity: {} (largest step within loss ≤ {} %, p99 ≤ {} ms, CPU ≤ {} cores, final p95 ≤ {} ms)",
                self.capacity
                    .map_or("no step held".into(), |n| format!("{n} streams")),
                self.thresholds.max_loss_percent,
                self.thresholds.max_p99_ms,
                self.thresholds.max_cpu_cores,
                self.thresholds.max_final_p95_ms
            );
        }
        out
    }
}
