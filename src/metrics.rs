//! Process-wide counters and histograms, rendered as Prometheus text for `GET /metrics`.

pub mod process;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn set(&self, n: i64) {
        self.0.store(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A counter per label value. Only for rare paths (errors): it takes a lock.
#[derive(Debug, Default)]
pub struct LabeledCounter(Mutex<BTreeMap<&'static str, u64>>);

impl LabeledCounter {
    pub fn inc(&self, label: &'static str) {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(label)
            .or_default() += 1;
    }
    pub fn get(&self, label: &str) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(label)
            .copied()
            .unwrap_or(0)
    }
    pub fn total(&self) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum()
    }
    fn snapshot(&self) -> Vec<(&'static str, u64)> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }
}

/// Fixed-bucket histogram of seconds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
    pub fn observe(&self, seconds: f64) {
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
    /// The upper bound of the bucket holding quantile `q` (0..=1); None when empty or
    /// beyond the last bound.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = (q * count as f64).ceil().max(1.0) as u64;
        self.bounds
            .iter()
            .zip(&self.buckets)
            .find(|(_, b)| b.load(Ordering::Relaxed) >= rank)
            .map(|(bound, _)| *bound)
    }
    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count());
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {}", self.count());
    }
}

/// Seconds from a call's first ARI request to its media flowing.
const SETUP_BOUNDS: &[f64] = &[0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0];

const LATENCY_BOUNDS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

/// Per-sink delivery counters (label `sink`). Counts are events, not batches.
#[derive(Debug, Default)]
pub struct SinkMetrics {
    /// Events handed to the broker, retries included.
    pub published: Counter,
    /// Events the broker confirmed (publisher confirm, JetStream ack, XADD reply, 2xx).
    pub confirmed: Counter,
    /// Events sent again after a failed attempt.
    pub retried: Counter,
    /// Events written to the on-disk journal because memory was full or the broker down.
    pub spilled: Counter,
    /// Events dropped because even the journal's size bound was reached.
    pub dropped: Counter,
    /// Events waiting (memory + journal).
    pub queued: Gauge,
}

/// Every metric the gateway exports. Shared as `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    pub sessions_active: Gauge,
    pub sessions_started: Counter,
    pub sessions_ended: LabeledCounter,
    pub reservations_rejected: Counter,
    pub ports_free: Gauge,
    pub rtp_packets: Counter,
    pub rtp_bytes: Counter,
    pub rtp_lost: Counter,
    pub rtp_late: Counter,
    pub rtp_duplicate: Counter,
    pub rtp_reordered: Counter,
    pub rtp_malformed: LabeledCounter,
    pub rtp_undecodable: Counter,
    pub rtp_foreign_source: Counter,
    pub asr_audio_dropped: Counter,
    pub asr_errors: LabeledCounter,
    pub asr_final_latency: Histogram,
    /// ARI taps whose media flows (snoop, externalMedia and bridge set up).
    pub ari_taps_started: Counter,
    pub ari_tap_setup: Histogram,
    pub ari_taps_ended: Counter,
    /// ARI requests of a tap's setup that failed (an `asr.error` says which).
    pub ari_request_failures: Counter,
    /// Teardown requests that failed for another reason than "already gone".
    pub ari_teardown_failed: Counter,
    /// Messages on an ARI events socket that did not parse.
    pub ari_events_malformed: Counter,
    /// Silent frames written to a quiet AudioSocket connection (see ingest::audiosocket).
    pub audiosocket_keepalives: Counter,
    /// HTTP requests refused for a missing or wrong bearer token.
    pub http_unauthorized: Counter,
    /// HTTP connections closed at once because `server.http_max_connections` were open.
    pub http_connections_refused: Counter,
    /// HTTP connections closed for sending no complete request in time, or idling too long.
    pub http_connections_timed_out: Counter,
    /// AudioSocket and WebSocket media connections refused: over the cap or no handshake in time.
    pub stream_connections_refused: Counter,
    /// RTP packets of a new SSRC dropped for never passing probation (RFC 3550 A.1); spoofing shows here.
    pub rtp_ssrc_probation: Counter,
    sinks: Mutex<Vec<(&'static str, std::sync::Arc<SinkMetrics>)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            sessions_active: Gauge::default(),
            sessions_started: Counter::default(),
            sessions_ended: LabeledCounter::default(),
            reservations_rejected: Counter::default(),
            ports_free: Gauge::default(),
            rtp_packets: Counter::default(),
            rtp_bytes: Counter::default(),
            rtp_lost: Counter::default(),
            rtp_late: Counter::default(),
            rtp_duplicate: Counter::default(),
            rtp_reordered: Counter::default(),
            rtp_malformed: LabeledCounter::default(),
            rtp_undecodable: Counter::default(),
            rtp_foreign_source: Counter::default(),
            asr_audio_dropped: Counter::default(),
            asr_errors: LabeledCounter::default(),
            asr_final_latency: Histogram::new(LATENCY_BOUNDS),
            ari_taps_started: Counter::default(),
            ari_tap_setup: Histogram::new(SETUP_BOUNDS),
            ari_taps_ended: Counter::default(),
            ari_request_failures: Counter::default(),
            ari_teardown_failed: Counter::default(),
            ari_events_malformed: Counter::default(),
            audiosocket_keepalives: Counter::default(),
            http_unauthorized: Counter::default(),
            http_connections_refused: Counter::default(),
            http_connections_timed_out: Counter::default(),
            stream_connections_refused: Counter::default(),
            rtp_ssrc_probation: Counter::default(),
            sinks: Mutex::new(Vec::new()),
        }
    }
}

impl Metrics {
    /// The counters of sink `name`, created on first use.
    pub fn sink(&self, name: &'static str) -> std::sync::Arc<SinkMetrics> {
        let mut sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, m)) = sinks.iter().find(|(n, _)| *n == name) {
            return m.clone();
        }
        let m = std::sync::Arc::new(SinkMetrics::default());
        sinks.push((name, m.clone()));
        m
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut scalar = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        scalar(
            "asrgw_sessions_active",
            "gauge",
            "Sessions running now.",
            self.sessions_active.get().to_string(),
        );
        scalar(
            "asrgw_sessions_started_total",
            "counter",
            "Sessions started.",
            self.sessions_started.get().to_string(),
        );
        scalar(
            "asrgw_ports_free",
            "gauge",
            "RTP ports free for new sessions.",
            self.ports_free.get().to_string(),
        );
        scalar(
            "asrgw_reservations_rejected_total",
            "counter",
            "Session requests refused because no RTP port was free.",
            self.reservations_rejected.get().to_string(),
        );
        scalar(
            "asrgw_rtp_packets_total",
            "counter",
            "Valid RTP packets received by sessions.",
            self.rtp_packets.get().to_string(),
        );
        scalar(
            "asrgw_rtp_bytes_total",
            "counter",
            "Bytes of valid RTP datagrams received.",
            self.rtp_bytes.get().to_string(),
        );
        scalar(
            "asrgw_rtp_lost_total",
            "counter",
            "RTP packets declared lost (filled with silence).",
            self.rtp_lost.get().to_string(),
        );
        scalar(
            "asrgw_rtp_late_total",
            "counter",
            "RTP packets dropped for arriving after their slot.",
            self.rtp_late.get().to_string(),
        );
        scalar(
            "asrgw_rtp_duplicate_total",
            "counter",
            "Duplicate RTP packets dropped.",
            self.rtp_duplicate.get().to_string(),
        );
        scalar(
            "asrgw_rtp_reordered_total",
            "counter",
            "RTP packets put back in order.",
            self.rtp_reordered.get().to_string(),
        );
        scalar(
            "asrgw_rtp_undecodable_total",
            "counter",
            "RTP packets with an unknown payload type or a payload that failed to decode.",
            self.rtp_undecodable.get().to_string(),
        );
        scalar(
            "asrgw_rtp_foreign_source_total",
            "counter",
            "Datagrams ignored because they came from another source than the session's.",
            self.rtp_foreign_source.get().to_string(),
        );
        scalar(
            "asrgw_asr_audio_dropped_total",
            "counter",
            "Audio chunks dropped because the ASR stream was not keeping up.",
            self.asr_audio_dropped.get().to_string(),
        );
        for (name, help, counter) in [
            (
                "asrgw_ari_taps_started_total",
                "ARI taps (snoop + externalMedia + bridge) whose media flows.",
                &self.ari_taps_started,
            ),
            (
                "asrgw_ari_taps_ended_total",
                "ARI taps torn down.",
                &self.ari_taps_ended,
            ),
            (
                "asrgw_ari_request_failures_total",
                "ARI requests of a tap's setup that failed.",
                &self.ari_request_failures,
            ),
            (
                "asrgw_ari_teardown_failures_total",
                "ARI teardown requests that failed (not counting already-gone objects).",
                &self.ari_teardown_failed,
            ),
            (
                "asrgw_ari_events_malformed_total",
                "ARI events-socket messages that did not parse.",
                &self.ari_events_malformed,
            ),
            (
                "asrgw_audiosocket_keepalives_total",
                "Silent frames written to AudioSocket connections on which Asterisk had gone quiet.",
                &self.audiosocket_keepalives,
            ),
            (
                "asrgw_http_unauthorized_total",
                "HTTP requests refused for a missing or wrong bearer token.",
                &self.http_unauthorized,
            ),
            (
                "asrgw_http_connections_refused_total",
                "HTTP connections closed at once because the connection cap was reached.",
                &self.http_connections_refused,
            ),
            (
                "asrgw_http_connections_timed_out_total",
                "HTTP connections closed for a slow request head or idling too long.",
                &self.http_connections_timed_out,
            ),
            (
                "asrgw_stream_connections_refused_total",
                "AudioSocket and WebSocket media connections refused: over the cap or no handshake in time.",
                &self.stream_connections_refused,
            ),
            (
                "asrgw_rtp_ssrc_probation_total",
                "RTP packets of a new SSRC dropped for never passing probation (RFC 3550 A.1): spoofed or stray.",
                &self.rtp_ssrc_probation,
            ),
        ] {
            scalar(name, "counter", help, counter.get().to_string());
        }

        render_labeled(
            &mut out,
            "asrgw_sessions_ended_total",
            "Sessions ended, by cause.",
            "cause",
            &self.sessions_ended,
        );
        render_labeled(
            &mut out,
            "asrgw_rtp_malformed_total",
            "Datagrams that were not valid RTP, by reason.",
            "reason",
            &self.rtp_malformed,
        );
        render_labeled(
            &mut out,
            "asrgw_asr_errors_total",
            "ASR stream failures, by code.",
            "code",
            &self.asr_errors,
        );
        self.render_sinks(&mut out);
        self.asr_final_latency.render(
            &mut out,
            "asrgw_asr_final_latency_seconds",
            "Wall time from end of speech to the final transcript.",
        );
        self.ari_tap_setup.render(
            &mut out,
            "asrgw_ari_tap_setup_seconds",
            "Wall time from a tap's first ARI request to its media bridged.",
        );
        process::render(&mut out, &process::sample());
        out
    }
}

/// Name, type, help and reader of one per-sink series.
type SinkSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&SinkMetrics) -> i64,
);

impl Metrics {
    fn render_sinks(&self, out: &mut String) {
        let sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let series: [SinkSeries; 6] = [
            (
                "asrgw_sink_published_total",
                "counter",
                "Events handed to the sink, retries included.",
                |m| m.published.get() as i64,
            ),
            (
                "asrgw_sink_confirmed_total",
                "counter",
                "Events the sink confirmed delivered.",
                |m| m.confirmed.get() as i64,
            ),
            (
                "asrgw_sink_retried_total",
                "counter",
                "Events sent again after a failed attempt.",
                |m| m.retried.get() as i64,
            ),
            (
                "asrgw_sink_spilled_total",
                "counter",
                "Events written to the on-disk journal.",
                |m| m.spilled.get() as i64,
            ),
            (
                "asrgw_sink_dropped_total",
                "counter",
                "Events dropped at the journal's size bound.",
                |m| m.dropped.get() as i64,
            ),
            (
                "asrgw_sink_queued",
                "gauge",
                "Events waiting for the sink (memory and journal).",
                |m| m.queued.get(),
            ),
        ];
        for (name, kind, help, read) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (sink, m) in &sinks {
                let _ = writeln!(out, "{name}{{sink=\"{sink}\"}} {}", read(m));
            }
        }
    }
}

fn render_labeled(out: &mut String, name: &str, help: &str, label: &str, counter: &LabeledCounter) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (value, n) in counter.snapshot() {
        let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {n}");
    }
}

/// Read one sample from Prometheus text, e.g. `asrgw_rtp_malformed_total{reason="too_short"}`.
pub fn read_sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_labels_and_histogram() {
        let m = Metrics::default();
        m.rtp_packets.add(5);
        m.rtp_malformed.inc("too_short");
        m.rtp_malformed.inc("too_short");
        m.asr_final_latency.observe(0.3);
        let text = m.render();
        assert_eq!(read_sample(&text, "asrgw_rtp_packets_total"), Some(5.0));
        assert_eq!(
            read_sample(&text, "asrgw_rtp_malformed_total{reason=\"too_short\"}"),
            Some(2.0)
        );
        assert_eq!(
            read_sample(&text, "asrgw_asr_final_latency_seconds_bucket{le=\"0.25\"}"),
            Some(0.0)
        );
        assert_eq!(
            read_sample(&text, "asrgw_asr_final_latency_seconds_bucket{le=\"0.5\"}"),
            Some(1.0)
        );
        assert_eq!(
            read_sample(&text, "asrgw_asr_final_latency_seconds_count"),
            Some(1.0)
        );
    }
}
