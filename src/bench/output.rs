//! Where a bench result goes: the JSON file, the SVG chart, and the table on stdout.

use std::path::{Path, PathBuf};

use super::chart::{self, ChartLimits, ChartPoint};
use super::report::BenchResult;
use super::run::{BenchError, Outcome};

pub fn write(result: BenchResult, json: &Path, svg: &Path) -> Result<Outcome, BenchError> {
    let text = serde_json::to_string_pretty(&result).expect("the result serializes");
    write_file(json, &text)?;
    let points: Vec<ChartPoint> = result
        .steps
        .iter()
        .map(|s| {
            let l = s.processing_latency;
            ChartPoint {
                streams: s.streams,
                p50_ms: l.map_or(0.0, |l| l.p50_ms),
                p95_ms: l.map_or(0.0, |l| l.p95_ms),
                p99_ms: l.map_or(0.0, |l| l.p99_ms),
                max_ms: l.map_or(0.0, |l| l.max_ms),
                cpu_ms_per_stream_second: s.cpu_ms_per_stream_second,
                gateway_cores: s.gateway_cores,
                loss_percent: s.loss_percent,
                held: s.held,
            }
        })
        .collect();
    let title = format!(
        "asr-gateway bench: {} {}, engine {}, {} cores ({})",
        result.codec, result.asr_mode, result.engine, result.machine.cores, result.machine.cpu
    );
    let limits = ChartLimits {
        p99_ms: result.thresholds.max_p99_ms,
        cpu_cores: result.thresholds.max_cpu_cores,
    };
    let chart = match chart::render_svg(&title, &points, &limits) {
        Ok(svg_text) => {
            write_file(svg, &svg_text)?;
            Some(svg.to_path_buf())
        }
        Err(e) => {
            eprintln!("bench: no chart: {e}");
            None
        }
    };
    Ok(Outcome {
        result,
        json: json.to_path_buf(),
        chart,
    })
}

fn write_file(path: &Path, text: &str) -> Result<(), BenchError> {
    let fail = |e: std::io::Error| BenchError::Output {
        path: PathBuf::from(path),
        detail: e.to_string(),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    std::fs::write(path, text).map_err(fail)
}
