//! SVG chart of a capacity run: latency and gateway CPU against concurrent streams.
//!
//! Two panels share the x axis (concurrent streams). Top: packet-to-engine latency p50,
//! p95, p99 (lines with markers) and max (thin dashed), with the p99 limit dashed in red.
//! Bottom: CPU per stream (ms per stream-second, left axis) and gateway CPU (cores, right
//! axis) with the CPU budget dashed in red on the cores axis. Steps that broke a threshold
//! get a red ring on their p99 and cores points; steps that lost packets are labelled.
//! Steps are drawn in order of streams. Zero steps is an error (`ChartError::NoPoints`)
//! rather than an empty chart: there is nothing honest to draw.

use plotters::coord::types::{RangedCoordf64, RangedCoordusize};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One measured load step.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartPoint {
    pub streams: usize,
    /// Packet-to-engine latency, ms.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Gateway CPU per stream: ms of CPU per second of stream.
    pub cpu_ms_per_stream_second: f64,
    /// Gateway CPU in all, cores (1.0 = one core busy).
    pub gateway_cores: f64,
    /// Packets lost, % of packets sent (0.5 = one in 200).
    pub loss_percent: f64,
    /// Whether the step held every threshold.
    pub held: bool,
}

/// The run's thresholds, drawn as dashed lines.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartLimits {
    /// ms.
    pub p99_ms: f64,
    /// Gateway CPU budget, cores.
    pub cpu_cores: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("no load steps to chart")]
    NoPoints,
    #[error("{what} is {value}; chart values must be finite and not negative")]
    BadValue { what: String, value: f64 },
    #[error("drawing the chart: {0}")]
    Draw(String),
}

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for ChartError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        ChartError::Draw(e.to_string())
    }
}

/// Pixels.
const SIZE: (u32, u32) = (960, 720);
/// Left and right axis label columns, and the legend column right of them, pixels. Both
/// panels use the same, so their plotting areas line up on x.
const AXIS_W: u32 = 72;
const LEGEND_W: u32 = 210;
const FONT: &str = "sans-serif";

const INK: RGBColor = RGBColor(0x33, 0x33, 0x33);
const GRID: RGBColor = RGBColor(0xe6, 0xe6, 0xe6);
const P50: RGBColor = RGBColor(0x56, 0xb4, 0xe9);
const P95: RGBColor = RGBColor(0x00, 0x72, 0xb2);
const P99: RGBColor = RGBColor(0xe6, 0x9f, 0x00);
const MAX: RGBColor = RGBColor(0x99, 0x99, 0x99);
const CPU: RGBColor = RGBColor(0x00, 0x9e, 0x73);
const CORES: RGBColor = RGBColor(0xcc, 0x79, 0xa7);
const LIMIT: RGBColor = RGBColor(0xd6, 0x27, 0x28);

/// The chart as an SVG document (`<svg ...>...</svg>`), `SIZE` pixels.
pub fn render_svg(
    title: &str,
    points: &[ChartPoint],
    limits: &ChartLimits,
) -> Result<String, ChartError> {
    if points.is_empty() {
        return Err(ChartError::NoPoints);
    }
    validate(points, limits)?;
    let mut sorted = points.to_vec();
    sorted.sort_by_key(|p| p.streams);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let body = root.titled(
            title,
            (FONT, 26).into_font().style(FontStyle::Bold).color(&INK),
        )?;
        let (top, bottom) = body.split_vertically(body.dim_in_pixel().1 * 52 / 100);
        let x_hi = sorted.iter().map(|p| p.streams).max().unwrap_or(0);
        let x_hi = x_hi + (x_hi / 20).max(1);
        draw_latency(&top, &sorted, limits, x_hi)?;
        draw_cpu(&bottom, &sorted, limits, x_hi)?;
        root.present()?;
    }
    Ok(svg)
}

fn validate(points: &[ChartPoint], limits: &ChartLimits) -> Result<(), ChartError> {
    let check = |what: String, value: f64| {
        if value.is_finite() && value >= 0.0 {
            Ok(())
        } else {
            Err(ChartError::BadValue { what, value })
        }
    };
    check("the p99 limit".into(), limits.p99_ms)?;
    check("the CPU budget".into(), limits.cpu_cores)?;
    for p in points {
        let n = p.streams;
        check(format!("p50 at {n} streams"), p.p50_ms)?;
        check(format!("p95 at {n} streams"), p.p95_ms)?;
        check(format!("p99 at {n} streams"), p.p99_ms)?;
        check(format!("max at {n} streams"), p.max_ms)?;
        check(
            format!("CPU per stream at {n} streams"),
            p.cpu_ms_per_stream_second,
        )?;
        check(format!("gateway cores at {n} streams"), p.gateway_cores)?;
        check(format!("loss at {n} streams"), p.loss_percent)?;
    }
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Chart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordusize, RangedCoordf64>>;

/// A legend entry's sample mark.
#[derive(Debug, Clone, Copy)]
enum Mark {
    /// Line with a point marker: colour, stroke width px.
    Line(RGBColor, u32),
    Dashed(RGBColor, u32),
    /// The red ring of a step that broke a threshold.
    Ring,
}

fn draw_latency(
    area: &Area,
    points: &[ChartPoint],
    limits: &ChartLimits,
    x_hi: usize,
) -> Result<(), ChartError> {
    // The axis fits p99 and its limit with headroom; max joins it unless it is an
    // outlier (over twice that), then it is pinned to the top and labelled.
    let core = points
        .iter()
        .map(|p| p.p99_ms)
        .fold(limits.p99_ms, f64::max);
    let core = if core > 0.0 { core } else { 1.0 };
    let highest_max = points.iter().map(|p| p.max_ms).fold(0.0, f64::max);
    let y_hi = if highest_max <= core * 2.0 {
        (core * 1.2).max(highest_max * 1.05)
    } else {
        core * 1.2
    };

    // No right axis here: its column is margin, so both panels' plots line up.
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .margin_right(LEGEND_W + AXIS_W)
        .caption(
            "Packet-to-engine latency",
            (FONT, 17).into_font().color(&INK),
        )
        .x_label_area_size(44)
        .y_label_area_size(AXIS_W)
        .build_cartesian_2d(0..x_hi, 0.0..y_hi)?;
    style_mesh(&mut chart, "latency, ms", INK, y_hi)?;

    let line = |color: RGBColor, width: u32, pick: fn(&ChartPoint) -> f64| {
        let coords = points.iter().map(move |p| (p.streams, pick(p)));
        LineSeries::new(coords, color.stroke_width(width)).point_size(3)
    };
    let max_points = points.iter().map(|p| (p.streams, p.max_ms.min(y_hi)));
    chart.draw_series(DashedLineSeries::new(
        max_points.clone(),
        6,
        4,
        MAX.stroke_width(1),
    ))?;
    // Dots too, so a lone step's max still shows.
    chart.draw_series(max_points.map(|at| Circle::new(at, 2, MAX.filled())))?;
    chart.draw_series(line(P50, 2, |p| p.p50_ms))?;
    chart.draw_series(line(P95, 2, |p| p.p95_ms))?;
    chart.draw_series(line(P99, 3, |p| p.p99_ms))?;
    let limit_line = [(0, limits.p99_ms), (x_hi, limits.p99_ms)];
    chart.draw_series(DashedLineSeries::new(
        limit_line,
        8,
        5,
        LIMIT.stroke_width(2),
    ))?;

    let note = (FONT, 12).into_font().color(&INK);
    for p in points.iter().filter(|p| p.max_ms > y_hi) {
        let text = format!("max {:.0} ms ↑", p.max_ms);
        let style = note.pos(Pos::new(HPos::Center, VPos::Top));
        chart.draw_series([Text::new(text, (p.streams, y_hi), style)])?;
    }
    for p in points.iter().filter(|p| p.loss_percent > 0.0) {
        let text = if p.loss_percent < 0.1 {
            "<0.1% lost".to_owned()
        } else {
            format!("{:.1}% lost", p.loss_percent)
        };
        let style = note.pos(Pos::new(HPos::Center, VPos::Bottom));
        chart.draw_series([
            EmptyElement::at((p.streams, p.p99_ms)) + Text::new(text, (0, -11), style)
        ])?;
    }
    let broken = points.iter().filter(|p| !p.held);
    chart.draw_series(broken.map(|p| ring((p.streams, p.p99_ms))))?;

    let mut legend = vec![
        ("p50".to_owned(), Mark::Line(P50, 2)),
        ("p95".to_owned(), Mark::Line(P95, 2)),
        ("p99".to_owned(), Mark::Line(P99, 3)),
        ("max".to_owned(), Mark::Dashed(MAX, 1)),
        (
            format!("p99 limit {} ms", limits.p99_ms),
            Mark::Dashed(LIMIT, 2),
        ),
    ];
    if points.iter().any(|p| !p.held) {
        legend.push(("broke a threshold".to_owned(), Mark::Ring));
    }
    draw_legend(area, &chart, &legend)
}

fn draw_cpu(
    area: &Area,
    points: &[ChartPoint],
    limits: &ChartLimits,
    x_hi: usize,
) -> Result<(), ChartError> {
    let cpu_hi = headroom(
        points
            .iter()
            .map(|p| p.cpu_ms_per_stream_second)
            .fold(0.0, f64::max),
    );
    let cores_hi = headroom(
        points
            .iter()
            .map(|p| p.gateway_cores)
            .fold(limits.cpu_cores, f64::max),
    );

    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .margin_right(LEGEND_W)
        .caption("Gateway CPU", (FONT, 17).into_font().color(&INK))
        .x_label_area_size(44)
        .y_label_area_size(AXIS_W)
        .right_y_label_area_size(AXIS_W)
        .build_cartesian_2d(0..x_hi, 0.0..cpu_hi)?
        .set_secondary_coord(0..x_hi, 0.0..cores_hi);
    // Each y axis's ticks take its line's colour, so the lines pair with their axes.
    style_mesh(
        &mut chart,
        "CPU per stream, ms per stream-second",
        CPU,
        cpu_hi,
    )?;
    chart
        .configure_secondary_axes()
        .y_desc("gateway CPU, cores")
        .y_label_formatter(&|v| tick(*v, cores_hi))
        .axis_style(INK)
        .label_style((FONT, 13).into_font().color(&CORES))
        .axis_desc_style((FONT, 14).into_font().color(&INK))
        .draw()?;

    let per_stream = points
        .iter()
        .map(|p| (p.streams, p.cpu_ms_per_stream_second));
    chart.draw_series(LineSeries::new(per_stream, CPU.stroke_width(2)).point_size(3))?;
    let cores = points.iter().map(|p| (p.streams, p.gateway_cores));
    chart.draw_secondary_series(LineSeries::new(cores, CORES.stroke_width(2)).point_size(3))?;
    let budget = [(0, limits.cpu_cores), (x_hi, limits.cpu_cores)];
    chart.draw_secondary_series(DashedLineSeries::new(budget, 8, 5, LIMIT.stroke_width(2)))?;
    let broken = points.iter().filter(|p| !p.held);
    chart.draw_secondary_series(broken.map(|p| ring((p.streams, p.gateway_cores))))?;

    let mut legend = vec![
        ("CPU per stream (left)".to_owned(), Mark::Line(CPU, 2)),
        ("gateway cores (right)".to_owned(), Mark::Line(CORES, 2)),
        (
            format!("CPU budget {} cores", limits.cpu_cores),
            Mark::Dashed(LIMIT, 2),
        ),
    ];
    if points.iter().any(|p| !p.held) {
        legend.push(("broke a threshold".to_owned(), Mark::Ring));
    }
    draw_legend(area, &chart, &legend)
}

/// Light grid, readable labels, x described as streams, left y as `y_desc` with ticks in `y_color`.
fn style_mesh(
    chart: &mut Chart,
    y_desc: &str,
    y_color: RGBColor,
    y_hi: f64,
) -> Result<(), ChartError> {
    chart
        .configure_mesh()
        .x_desc("concurrent streams")
        .y_desc(y_desc)
        .y_label_formatter(&|v| tick(*v, y_hi))
        .bold_line_style(GRID)
        .light_line_style(WHITE)
        .axis_style(INK)
        .x_label_style((FONT, 13).into_font().color(&INK))
        .y_label_style((FONT, 13).into_font().color(&y_color))
        .axis_desc_style((FONT, 14).into_font().color(&INK))
        .draw()?;
    Ok(())
}

fn ring(at: (usize, f64)) -> Circle<(usize, f64), i32> {
    Circle::new(at, 8, LIMIT.stroke_width(2))
}

/// The legend in the column right of the right axis, its top level with the plot's top.
/// Drawn by hand on the panel: plotters' own legend cannot leave the plotting area.
fn draw_legend(area: &Area, chart: &Chart, entries: &[(String, Mark)]) -> Result<(), ChartError> {
    let (xs, ys) = chart.plotting_area().get_pixel_range();
    let (base_x, base_y) = area.get_base_pixel();
    let x = xs.end - base_x + AXIS_W as i32 + 14;
    let font = (FONT, 14)
        .into_font()
        .color(&INK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (label, mark)) in entries.iter().enumerate() {
        let y = ys.start - base_y + 10 + 24 * i as i32;
        match *mark {
            Mark::Line(color, width) => {
                area.draw(&PathElement::new(
                    [(x, y), (x + 24, y)],
                    color.stroke_width(width),
                ))?;
                area.draw(&Circle::new((x + 12, y), 3, color.filled()))?;
            }
            Mark::Dashed(color, width) => {
                let style = color.stroke_width(width);
                area.draw(&PathElement::new([(x, y), (x + 9, y)], style))?;
                area.draw(&PathElement::new([(x + 15, y), (x + 24, y)], style))?;
            }
            Mark::Ring => area.draw(&Circle::new((x + 12, y), 7, LIMIT.stroke_width(2)))?,
        }
        area.draw(&Text::new(label.as_str(), (x + 32, y), font.clone()))?;
    }
    Ok(())
}

/// Top of an axis: 25 % above the highest value, 1.0 when everything is zero.
fn headroom(highest: f64) -> f64 {
    if highest > 0.0 {
        highest * 1.25
    } else {
        1.0
    }
}

/// Tick label with as many decimals as an axis reaching `top` needs.
fn tick(value: f64, top: f64) -> String {
    let decimals = if top >= 20.0 {
        0
    } else if top >= 2.0 {
        1
    } else {
        2
    };
    format!("{value:.decimals$}")
}

#[cfg(test)]
mod tests;
