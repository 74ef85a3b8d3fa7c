//! CLI entry point: `serve`, `engine`, `demo`, `bench`, `transcribe`, `check-config`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use asr_gateway::config::Config;
use asr_gateway::serve::Gateway;

#[derive(Parser)]
#[command(
    name = "asr-gateway",
    version,
    about = "Media streaming and speech-recognition gateway for Asterisk"
)]
struct Cli {
    /// TOML config file; `ASRGW_<SECTION>__<KEY>` environment variables override it.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: RTP ports, HTTP API, ASR streams, events.
    Serve,
    /// Serve the embedded Whisper engine over the gateway's gRPC protocol.
    Engine {
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: std::net::SocketAddr,
        /// A CTranslate2 Whisper model directory (default: engine.model_dir).
        #[arg(long)]
        model_dir: Option<PathBuf>,
        #[arg(long)]
        workers: Option<usize>,
        #[arg(long)]
        queue: Option<usize>,
        /// Interim results every N ms by re-decoding the growing utterance (0 = off).
        #[arg(long)]
        interim_interval_ms: Option<u64>,
    },
    /// Run the gateway with its embedded engine and play the bundled sample calls as RTP.
    Demo {
        #[arg(long, default_value = "tests/fixtures")]
        fixtures: PathBuf,
    },
    /// Load generator: N concurrent RTP streams to a gateway (started as a child unless
    /// --gateway), measuring loss, packet-to-engine latency, CPU and memory per stream.
    Bench(Box<asr_gateway::bench::options::BenchOptions>),
    /// Recognize whole WAV files with an engine, offline (optionally through a telephone
    /// path): the baseline the gateway's WER is compared with. Prints one line per file
    /// (name, WER against its reference, transcript) and the pooled WER.
    Transcribe(asr_gateway::transcribe::TranscribeArgs),
    /// Validate the configuration and print the effective values.
    CheckConfig,
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Logs go to stderr: stdout carries events.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn load(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    Ok(Config::load(path, std::env::vars())?)
}

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("asr-gateway: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(Cli::parse())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Every error message here already names its cause; print it once, no backtrace.
            eprintln!("asr-gateway: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::CheckConfig => {
            let config = load(cli.config.as_deref())?;
            println!("{config:#?}");
            eprintln!("config ok");
        }
        Command::Serve => {
            let config = load(cli.config.as_deref())?;
            init_logging("info");
            let gateway = Gateway::start(config).await?;
            eprintln!(
                "asr-gateway listening: HTTP {}  engine {}",
                gateway.http_addr(),
                gateway.engine_endpoint()
            );
            shutdown_signal().await;
            tracing::info!("shutting down: ending sessions");
            gateway.shutdown().await;
        }
        Command::Engine {
            listen,
            model_dir,
            workers,
            queue,
            interim_interval_ms,
        } => {
            let mut config = load(cli.config.as_deref())?;
            init_logging("info");
            if let Some(dir) = model_dir {
                config.engine.model_dir = dir;
            }
            if let Some(n) = workers {
                config.engine.workers = n;
            }
            if let Some(n) = queue {
                config.engine.queue = n.max(1);
            }
            if let Some(ms) = interim_interval_ms {
                config.engine.interim_interval_ms = ms;
            }
            asr_gateway::asr::embedded::check_model_dir(&config.engine.model_dir)?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let bound = listener.local_addr().unwrap_or(listen);
            eprintln!(
                "asr-gateway engine: asr.v1.Recognizer on {bound}, model {}",
                config.engine.model_dir.display()
            );
            asr_gateway::asr::embedded::serve(config.engine(), listener, shutdown_signal()).await?;
        }
        Command::Bench(options) => {
            init_logging("warn");
            let command_line = std::env::args().collect::<Vec<_>>().join(" ");
            let outcome =
                asr_gateway::bench::run::run(&options, cli.config.as_deref(), command_line).await?;
            print!("{}", outcome.result.table());
            println!("result: {}", outcome.json.display());
            if let Some(chart) = &outcome.chart {
                println!("chart:  {}", chart.display());
            }
        }
        Command::Transcribe(args) => {
            let config = load(cli.config.as_deref())?;
            init_logging("warn");
            let results = asr_gateway::transcribe::run(config, &args).await?;
            for r in &results {
                println!("{}", r.line());
            }
            if let Some(total) = asr_gateway::transcribe::pooled_wer(&results) {
                if let Some(wer) = total.wer() {
                    println!(
                        "WER {:.1}% over {} reference words ({} files)",
                        wer * 100.0,
                        total.reference_words,
                        results.len()
                    );
                }
            }
            let failed = results.iter().filter(|r| r.failure.is_some()).count();
            anyhow::ensure!(failed == 0, "{failed} of {} files failed", results.len());
        }
        Command::Demo { fixtures } => {
            let config = load(cli.config.as_deref())?;
            init_logging("warn");
            let results = asr_gateway::demo::run(config, &fixtures).await?;
            println!();
            println!("== demo summary: one line per call ==");
            let mut all_heard = true;
            for r in &results {
                println!("{}", r.summary_line());
                all_heard &= !r.finals.is_empty();
            }
            anyhow::ensure!(all_heard, "a sample call produced no transcript");
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
