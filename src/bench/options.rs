//! `asr-gateway bench` options: what to send, to which gateway and engine, what breaks a step.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Args)]
pub struct BenchOptions {
    /// Gateway HTTP API (`http://host:8080`); default: start `asr-gateway serve` as a child.
    #[arg(long)]
    pub gateway: Option<String>,
    /// A WAV file or a folder of them; a `<name>.txt` beside a WAV (or a `.tsv` of
    /// `file<TAB>transcript` in the folder) is its reference transcript.
    #[arg(long, default_value = "tests/fixtures")]
    pub audio: PathBuf,
    /// Codec sent: pcmu, pcma, slin (L16 8 kHz), slin16, g722 or opus.
    #[arg(long, default_value = "pcmu")]
    pub codec: String,
    /// Concurrent streams (fixed run).
    #[arg(long, default_value_t = 10)]
    pub streams: usize,
    /// Seconds to hold the load once every stream runs (fixed run), or each capacity
    /// step's measuring window.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// New streams per second while ramping up.
    #[arg(long, default_value_t = 100.0)]
    pub ramp: f64,
    /// Plays of the file per stream, then the stream ends; 0 = loop until the run ends.
    #[arg(long, default_value_t = 0)]
    pub loops: u32,
    /// ASR engine: `null` (built in, measures the gateway alone), `embedded` (the
    /// gateway's own Whisper) or the `http://host:port` of any asr.v1.Recognizer.
    #[arg(long, default_value = "null")]
    pub engine: String,
    /// Where the null engine listens (a remote gateway must reach it here).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub engine_listen: SocketAddr,
    /// Null engine: end of speech → final, ms.
    #[arg(long, default_value_t = 100)]
    pub null_final_delay_ms: u64,
    /// Null engine: a partial every this many ms of utterance audio.
    #[arg(long, default_value_t = 1000)]
    pub null_partial_ms: u64,
    /// Child gateway `asr.mode`; default `call` with the null engine (every packet's
    /// audio reaches it), `utterance` otherwise.
    #[arg(long)]
    pub asr_mode: Option<AsrModeArg>,
    /// Child gateway `asr.chunk_ms`: audio per gRPC message (the gateway's default is
    /// 100). The oldest audio of a chunk waits chunk − 20 ms for it to fill, by design.
    #[arg(long, default_value_t = 100)]
    pub chunk_ms: u32,

    /// Impairments: packets lost, %.
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Mean loss burst length, packets (1 = independent losses).
    #[arg(long, default_value_t = 1.0)]
    pub loss_burst: f64,
    /// Extra delay per packet, uniform 0..=N ms.
    #[arg(long, default_value_t = 0.0)]
    pub jitter_ms: f64,
    /// Packets sent after their successor, %.
    #[arg(long, default_value_t = 0.0)]
    pub reorder: f64,
    /// Packets sent twice, %.
    #[arg(long, default_value_t = 0.0)]
    pub duplicate: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Ramp the stream count step by step until a threshold breaks; report the largest
    /// count that held.
    #[arg(long)]
    pub capacity: bool,
    /// Capacity: first step's streams.
    #[arg(long, default_value_t = 100)]
    pub start: usize,
    /// Capacity: streams added per step.
    #[arg(long, default_value_t = 100)]
    pub step: usize,
    /// Capacity: stop here even if nothing broke.
    #[arg(long, default_value_t = 2000)]
    pub max_streams: usize,
    /// Seconds after a ramp before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
    /// Threshold: loss above this %, over a step.
    #[arg(long, default_value_t = 0.1)]
    pub max_loss: f64,
    /// Threshold: p99 packet-to-engine latency of each chunk's newest packet above this, ms.
    #[arg(long, default_value_t = 20.0)]
    pub max_p99_ms: f64,
    /// Threshold: gateway CPU above this many cores.
    #[arg(long, default_value_t = 1.0)]
    pub max_cpu_cores: f64,
    /// Threshold (real engines): p95 end of speech → final above this, ms.
    #[arg(long, default_value_t = 3000.0)]
    pub max_final_p95_ms: f64,

    /// JSON result file.
    #[arg(long, default_value = "bench-results/bench.json")]
    pub out: PathBuf,
    /// SVG chart (latency and CPU per stream against stream count).
    #[arg(long, default_value = "bench-results/bench.svg")]
    pub chart: PathBuf,
    /// No live progress line.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AsrModeArg {
    Call,
    Utterance,
}

/// Which engine the run uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineChoice {
    Null,
    Embedded,
    Endpoint(String),
}

#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("--engine {0:?}: use null, embedded or http://host:port")]
    Engine(String),
    #[error("--{name} {value}: {expected}")]
    Range {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("--engine embedded needs a gateway the bench starts (drop --gateway, or point --engine at the remote gateway's engine)")]
    EmbeddedRemote,
}

impl BenchOptions {
    pub fn engine_choice(&self) -> Result<EngineChoice, OptionsError> {
        match self.engine.as_str() {
            "null" => Ok(EngineChoice::Null),
            "embedded" => Ok(EngineChoice::Embedded),
            url if url.starts_with("http://") || url.starts_with("https://") => {
                Ok(EngineChoice::Endpoint(url.to_owned()))
            }
            other => Err(OptionsError::Engine(other.to_owned())),
        }
    }

    /// Every option that has a range, checked before anything starts.
    pub fn validate(&self) -> Result<EngineChoice, OptionsError> {
        let range = |name, value: f64, ok: bool, expected| {
            if ok {
                Ok(())
            } else {
                Err(OptionsError::Range {
                    name,
                    value: value.to_string(),
                    expected,
                })
            }
        };
        let percent = "a percentage, 0 to 100";
        range(
            "loss",
            self.loss,
            (0.0..=99.0).contains(&self.loss),
            percent,
        )?;
        range(
            "reorder",
            self.reorder,
            (0.0..=100.0).contains(&self.reorder),
            percent,
        )?;
        range(
            "duplicate",
            self.duplicate,
            (0.0..=100.0).contains(&self.duplicate),
            percent,
        )?;
        range(
            "loss-burst",
            self.loss_burst,
            self.loss_burst >= 1.0,
            "1 or more packets",
        )?;
        range(
            "jitter-ms",
            self.jitter_ms,
            (0.0..=1000.0).contains(&self.jitter_ms),
            "0 to 1000 ms",
        )?;
        range(
            "ramp",
            self.ramp,
            self.ramp > 0.0,
            "more than 0 streams per second",
        )?;
        range(
            "duration",
            self.duration,
            self.duration > 0.0,
            "more than 0 seconds",
        )?;
        range(
            "settle",
            self.settle,
            self.settle >= 0.0,
            "0 or more seconds",
        )?;
        let streams = if self.capacity {
            self.start.min(self.step)
        } else {
            self.streams
        };
        range(
            "streams",
            streams as f64,
            streams >= 1,
            "1 or more (and --start, --step)",
        )?;
        range(
            "chunk-ms",
            self.chunk_ms as f64,
            (20..=100).contains(&self.chunk_ms) && self.chunk_ms.is_multiple_of(20),
            "20, 40, 60, 80 or 100",
        )?;
        let engine = self.engine_choice()?;
        if engine == EngineChoice::Embedded && self.gateway.is_some() {
            return Err(OptionsError::EmbeddedRemote);
        }
        Ok(engine)
    }

    /// The stream counts to hold, in order.
    pub fn steps(&self) -> Vec<usize> {
        if !self.capacity {
            return vec![self.streams];
        }
        let mut steps = Vec::new();
        let mut n = self.start;
        while n <= self.max_streams {
            steps.push(n);
            n += self.step;
        }
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchOptions,
    }

    fn parse(args: &[&str]) -> BenchOptions {
        Cli::parse_from(std::iter::once("bench").chain(args.iter().copied())).bench
    }

    #[test]
    fn capacity_steps_run_from_start_by_step_to_max() {
        let o = parse(&[
            "--capacity",
            "--start",
            "100",
            "--step",
            "250",
            "--max-streams",
            "700",
        ]);
        assert_eq!(o.steps(), vec![100, 350, 600]);
        assert_eq!(parse(&["--streams", "7"]).steps(), vec![7]);
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse(&["--loss", "120"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--loss 120"), "{e}");
        let e = parse(&["--engine", "whisper"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("null, embedded"), "{e}");
        let e = parse(&["--chunk-ms", "30"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("chunk-ms"), "{e}");
        assert_eq!(
            parse(&["--engine", "http://10.0.0.2:50051"])
                .validate()
                .unwrap(),
            EngineChoice::Endpoint("http://10.0.0.2:50051".into())
        );
    }
}
