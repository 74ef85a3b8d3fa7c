//! The live progress line of a bench run (stderr): streams, packets/s, loss, p99, CPU.

use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::gateway::{Gateway, GatewayMetrics};
use super::histogram::Snapshot;
use super::pacer::PacerCounters;
use super::streams::Registry;

const EVERY: Duration = Duration::from_secs(1);

pub struct Progress {
    quiet: bool,
    registry: Arc<Registry>,
    pacer: Arc<PacerCounters>,
    last: Option<(Instant, u64, GatewayMetrics, Snapshot)>,
    printed: bool,
}

impl Progress {
    pub fn new(quiet: bool, registry: Arc<Registry>, pacer: Arc<PacerCounters>) -> Self {
        Self {
            quiet,
            registry,
            pacer,
            last: None,
            printed: false,
        }
    }

    /// Wait `total`, refreshing the line every second.
    pub async fn wait(&mut self, gateway: &Gateway, total: Duration, streams: usize, phase: &str) {
        let end = tokio::time::Instant::now() + total;
        loop {
            let now = tokio::time::Instant::now();
            if now >= end {
                break;
            }
            tokio::time::sleep((end - now).min(EVERY)).await;
            self.tick(gateway, streams, streams, phase).await;
        }
    }

    /// Refresh the line if a second has passed since the last one.
    pub async fn tick(&mut self, gateway: &Gateway, streams: usize, target: usize, phase: &str) {
        if self.quiet
            || self
                .last
                .as_ref()
                .is_some_and(|(at, ..)| at.elapsed() < EVERY)
        {
            return;
        }
        let Ok(metrics) = gateway.metrics().await else {
            return;
        };
        let now = Instant::now();
        let sent = self.pacer.datagrams.load(Ordering::Relaxed);
        let latency = self.registry.latency.snapshot();
        if let Some((at, sent0, m0, lat0)) = &self.last {
            let secs = now.duration_since(*at).as_secs_f64();
            let sent_d = sent - sent0;
            let recv_d = (metrics.rtp_packets - m0.rtp_packets).max(0.0) as u64;
            let loss = if sent_d == 0 {
                0.0
            } else {
                sent_d.saturating_sub(recv_d) as f64 * 100.0 / sent_d as f64
            };
            let p99 = latency
                .since(lat0)
                .quantile_us(0.99)
                .map_or("-".into(), |us| format!("{:.2} ms", us as f64 / 1000.0));
            let cores = (metrics.cpu_seconds - m0.cpu_seconds) / secs;
            eprint!(
                "\r{phase:<8} streams {streams:>5}/{target:<5} packets/s {:>7.0}  loss {loss:>6.3} %  p99 {p99:>9}  gateway CPU {cores:>5.2} cores  ",
                sent_d as f64 / secs
            );
            let _ = std::io::stderr().flush();
            self.printed = true;
        }
        self.last = Some((now, sent, metrics, latency));
    }

    /// End the line so what follows starts on its own.
    pub fn finish(&mut self) {
        if self.printed {
            eprintln!();
            self.printed = false;
        }
    }
}
