//! Tests of the capacity chart: well-formed SVG, labels, one line per series, 0/1/many steps.

use super::*;

fn step(streams: usize, held: bool) -> ChartPoint {
    let n = streams as f64;
    ChartPoint {
        streams,
        p50_ms: 8.0 + n * 0.05,
        p95_ms: 12.0 + n * 0.12,
        p99_ms: 15.0 + n * 0.2,
        max_ms: 30.0 + n * 0.4,
        cpu_ms_per_stream_second: 3.5 - n * 0.002,
        gateway_cores: n * 0.0035,
        loss_percent: if held { 0.0 } else { 0.4 },
        held,
    }
}

fn limits() -> ChartLimits {
    ChartLimits {
        p99_ms: 250.0,
        cpu_cores: 1.5,
    }
}

/// Every tag closed in order (`<a ...>` ... `</a>` or `<a .../>`), text outside tags has no `<`.
fn assert_well_formed(svg: &str) {
    assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
    assert!(svg.trim_end().ends_with("</svg>"));
    let mut open = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').expect("unclosed tag") + start;
        let tag = &rest[start + 1..end];
        assert!(!tag.contains('<'), "tag inside tag: {tag}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop().as_deref(), Some(name), "close of {name}");
        } else if !tag.ends_with('/') {
            open.push(tag.split_whitespace().next().unwrap().to_owned());
        }
        rest = &rest[end + 1..];
    }
    assert!(open.is_empty(), "left open: {open:?}");
}

/// Point counts of the polylines stroked in `color` ("#RRGGBB").
fn polylines(svg: &str, color: &str) -> Vec<usize> {
    let stroke = format!("stroke=\"{color}\"");
    svg.split("<polyline")
        .skip(1)
        .map(|s| &s[..s.find("/>").unwrap()])
        .filter(|s| s.contains(&stroke))
        .map(|s| {
            let points = s.split("points=\"").nth(1).unwrap();
            points[..points.find('"').unwrap()]
                .split_whitespace()
                .count()
        })
        .collect()
}

fn hex(c: RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

#[test]
fn many_points_draw_every_series_once_with_labels() {
    let points: Vec<_> = [10, 20, 40, 80, 120, 160, 200, 240]
        .into_iter()
        .map(|n| step(n, n <= 160))
        .collect();
    let svg = render_svg("Capacity & latency: pcmu 8 kHz", &points, &limits()).unwrap();
    assert_well_formed(&svg);
    assert!(svg.contains("Capacity &amp; latency: pcmu 8 kHz"));
    for label in [
        "latency, ms",
        "concurrent streams",
        "CPU per stream, ms per stream-second",
        "gateway CPU, cores",
        "p99 limit 250 ms",
        "CPU budget 1.5 cores",
        "broke a threshold",
        "0.4% lost",
    ] {
        assert!(svg.contains(label), "missing {label}");
    }
    // Each solid series: one polyline through all steps, plus its 2-point legend swatch.
    for color in [P50, P95, P99, CPU, CORES] {
        let mut lines = polylines(&svg, &hex(color));
        lines.sort();
        assert_eq!(lines, [2, 8], "{}", hex(color));
    }
    // The dashed max and limits come as many short pieces.
    assert!(polylines(&svg, &hex(MAX)).len() > 8);
    assert!(polylines(&svg, &hex(LIMIT)).len() > 8);
    // Two broken steps, ringed in both panels, plus a legend ring per panel.
    let rings = svg
        .matches(&format!("fill=\"none\" stroke=\"{}\"", hex(LIMIT)))
        .count();
    assert_eq!(rings, 2 * 2 + 2, "{svg}");
}

#[test]
fn one_point_draws_markers_and_limits() {
    let svg = render_svg("one step", &[step(5, true)], &limits()).unwrap();
    assert_well_formed(&svg);
    assert!(svg.contains("one step"));
    for color in [P50, P95, P99, CPU, CORES] {
        let mut lines = polylines(&svg, &hex(color));
        lines.sort();
        assert_eq!(lines, [1, 2], "{}", hex(color));
    }
    assert!(!svg.contains("broke a threshold"));
    assert!(!svg.contains("lost"));
}

#[test]
fn zero_points_is_an_error() {
    let err = render_svg("empty", &[], &limits()).unwrap_err();
    assert!(matches!(err, ChartError::NoPoints));
}

#[test]
fn non_finite_values_are_rejected_by_name() {
    let mut bad = step(30, true);
    bad.p95_ms = f64::NAN;
    let err = render_svg("bad", &[bad], &limits())
        .unwrap_err()
        .to_string();
    assert!(err.contains("p95 at 30 streams"), "{err}");
    let negative = ChartLimits {
        p99_ms: -1.0,
        cpu_cores: 1.0,
    };
    assert!(render_svg("bad", &[step(1, true)], &negative).is_err());
}

#[test]
fn outlier_max_is_pinned_and_labelled() {
    let mut spike = step(40, true);
    spike.max_ms = 5000.0;
    let svg = render_svg("spike", &[step(20, true), spike], &limits()).unwrap();
    assert_well_formed(&svg);
    assert!(svg.contains("max 5000 ms"));
}

#[test]
fn all_zero_values_still_render() {
    let zero = ChartPoint {
        streams: 0,
        p50_ms: 0.0,
        p95_ms: 0.0,
        p99_ms: 0.0,
        max_ms: 0.0,
        cpu_ms_per_stream_second: 0.0,
        gateway_cores: 0.0,
        loss_percent: 0.0,
        held: true,
    };
    let zero_limits = ChartLimits {
        p99_ms: 0.0,
        cpu_cores: 0.0,
    };
    assert_well_formed(&render_svg("zeros", &[zero], &zero_limits).unwrap());
}

/// Writes a sample chart for eyeballing: `cargo test --lib bench::chart -- --ignored`.
#[test]
#[ignore]
fn write_sample() {
    let points: Vec<_> = [10, 25, 50, 75, 100, 150, 200, 250]
        .into_iter()
        .map(|n| {
            let mut p = step(n, n <= 150);
            if n == 250 {
                p.p99_ms = 310.0;
                p.max_ms = 2400.0;
                p.loss_percent = 1.7;
            }
            p
        })
        .collect();
    let svg = render_svg(
        "asr-gateway capacity: pcmu, 20 ms packets",
        &points,
        &limits(),
    )
    .unwrap();
    std::fs::write("/tmp/bench-chart-sample.svg", svg).unwrap();
}
