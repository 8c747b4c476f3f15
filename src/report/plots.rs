//! SVG plots (plotters): TTFT ECDF per arm, decode throughput box plots per cell, and
//! metric vs num_ctx lines with a CI band. Axis labels carry units; every series is in
//! the legend; long cell labels go on the y axis of a horizontal plot so they never
//! overlap.

use super::ReportError;
use crate::analysis::{Analysis, Avail, CellAnalysis, Metric};
use crate::stats::{self, OutlierLabel};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

const W: u32 = 900;
const H: u32 = 560;

fn color(i: usize) -> RGBColor {
    // Okabe–Ito: distinguishable for colour-blind readers.
    const P: [RGBColor; 8] = [
        RGBColor(0, 114, 178),
        RGBColor(213, 94, 0),
        RGBColor(0, 158, 115),
        RGBColor(204, 121, 167),
        RGBColor(230, 159, 0),
        RGBColor(86, 180, 233),
        RGBColor(0, 0, 0),
        RGBColor(240, 228, 66),
    ];
    P[i % P.len()]
}

fn err<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> ReportError + '_ {
    move |e| ReportError::Plot(path.to_path_buf(), e.to_string())
}

/// Range with 5% padding; a degenerate range is widened so the axis still draws.
fn padded(lo: f64, hi: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    let span = if hi > lo {
        hi - lo
    } else {
        lo.abs().max(1.0) * 0.1
    };
    (lo - 0.05 * span, hi + 0.05 * span)
}

/// Tick label with as many decimals as the axis span needs (no "950.0").
fn tick(v: f64, span: f64) -> String {
    let decimals = if span >= 20.0 {
        0
    } else if span >= 2.0 {
        1
    } else {
        2
    };
    format!("{v:.decimals$}")
}

/// Empirical CDF of request-level TTFT, one step line per arm.
pub fn ttft_ecdf(path: &Path, by_arm: &BTreeMap<String, Vec<f64>>) -> Result<(), ReportError> {
    let e = err(path);
    let all = by_arm.values().flatten().copied();
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let (lo, hi) = padded(lo, hi);
    let root = SVGBackend::new(path, (W, H)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "TTFT distribution per arm (measured calls)",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(lo..hi, 0.0..1.0)
        .map_err(&e)?;
    chart
        .configure_mesh()
        .x_desc("time to first token (ms)")
        .y_desc("fraction of calls ≤ x")
        .x_label_formatter(&|x| tick(*x, hi - lo))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(&e)?;
    for (i, (arm, vals)) in by_arm.iter().enumerate() {
        let mut v = vals.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len() as f64;
        let mut pts = vec![(lo, 0.0)];
        for (k, x) in v.iter().enumerate() {
            pts.push((*x, k as f64 / n));
            pts.push((*x, (k + 1) as f64 / n));
        }
        pts.push((hi, 1.0));
        let c = color(i);
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .map_err(&e)?
            .label(format!("{arm} (n = {})", v.len()))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(())
}

/// Horizontal box plots (Tukey whiskers at 1.5 IQR, outliers as circles) of per-call
/// decode throughput, one box per cell, cell labels on the y axis.
pub fn throughput_boxes(
    path: &Path,
    cells: &[(String, Vec<f64>)],
    x_label: &str,
) -> Result<(), ReportError> {
    let e = err(path);
    let cells: Vec<&(String, Vec<f64>)> = cells.iter().filter(|(_, v)| v.len() >= 4).collect();
    let (lo, hi) = cells
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    let (lo, hi) = padded(lo, hi);
    let longest = cells
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(4) as u32;
    let height = (120 + 45 * cells.len() as u32).max(300);
    let root = SVGBackend::new(path, (W.max(500 + 8 * longest), height)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let n = cells.len().max(1) as f64;
    let labels: Vec<String> = cells.iter().map(|(l, _)| l.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Decode throughput per cell (measured calls)",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(20 + 8 * longest)
        .build_cartesian_2d(lo..hi, -0.5..(n - 0.5))
        .map_err(&e)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .x_label_formatter(&|x| tick(*x, hi - lo))
        .y_labels(cells.len().max(1))
        .y_label_formatter(&|y| {
            let i = y.round();
            if (y - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .disable_y_mesh()
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(&e)?;
    for (i, (_, vals)) in cells.iter().enumerate() {
        let y = i as f64;
        let (Ok(s), Ok(t)) = (stats::summarize(vals), stats::tukey_fences(vals)) else {
            continue;
        };
        let inside: Vec<f64> = vals
            .iter()
            .zip(&t.labels)
            .filter(|(_, l)| **l == OutlierLabel::Inside)
            .map(|(v, _)| *v)
            .collect();
        let wlo = inside.iter().copied().fold(s.p25, f64::min);
        let whi = inside.iter().copied().fold(s.p75, f64::max);
        let c = color(i);
        let h = 0.3;
        chart
            .draw_series([
                Rectangle::new([(s.p25, y - h), (s.p75, y + h)], c.mix(0.3).filled()),
                Rectangle::new([(s.p25, y - h), (s.p75, y + h)], c.stroke_width(2)),
            ])
            .map_err(&e)?;
        chart
            .draw_series([
                PathElement::new(
                    vec![(s.median, y - h), (s.median, y + h)],
                    BLACK.stroke_width(3),
                ),
                PathElement::new(vec![(wlo, y), (s.p25, y)], c.stroke_width(2)),
                PathElement::new(vec![(s.p75, y), (whi, y)], c.stroke_width(2)),
                PathElement::new(
                    vec![(wlo, y - h / 2.0), (wlo, y + h / 2.0)],
                    c.stroke_width(2),
                ),
                PathElement::new(
                    vec![(whi, y - h / 2.0), (whi, y + h / 2.0)],
                    c.stroke_width(2),
                ),
            ])
            .map_err(&e)?;
        chart
            .draw_series(
                vals.iter()
                    .zip(&t.labels)
                    .filter(|(_, l)| **l != OutlierLabel::Inside)
                    .map(|(v, _)| Circle::new((*v, y), 4, c.stroke_width(2))),
            )
            .map_err(&e)?;
    }
    root.present().map_err(&e)?;
    Ok(())
}

/// One line per group of cells that differ only in num_ctx: the per-rep median with its
/// CI (order statistic; t-interval for the mean when too few reps; no band otherwise).
/// Returns false (and draws nothing) when no group has ≥ 2 num_ctx levels.
pub fn metric_vs_ctx(path: &Path, a: &Analysis, m: Metric) -> Result<bool, ReportError> {
    let e = err(path);
    type Pt = (f64, f64, Option<(f64, f64)>);
    let mut lines: BTreeMap<String, Vec<Pt>> = BTreeMap::new();
    for c in &a.cells {
        let Some(ctx) = c.factors.get("num_ctx").and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let Some(cm) = c.metric(m) else { continue };
        let Some(s) = cm.stats.summary.value() else {
            continue;
        };
        let band = match (&cm.stats.median_ci, &cm.stats.mean_ci) {
            (Avail::Value(i), _) => Some((i.lower, i.upper)),
            (_, Avail::Value(i)) => Some((i.lower, i.upper)),
            _ => None,
        };
        if ctx <= 0.0 {
            continue;
        }
        lines
            .entry(group_label(c))
            .or_default()
            .push((ctx.log2(), s.median, band));
    }
    lines.retain(|_, v| v.len() >= 2);
    if lines.is_empty() {
        return Ok(false);
    }
    let ((x0, x1), (y0, y1)) = extent(&lines);
    let (y0, y1) = padded(y0, y1);
    // Headroom for the legend so it never covers a line.
    let y1 = y1 + 0.08 * (y1 - y0) * (1 + lines.len()) as f64;
    let root = SVGBackend::new(path, (W, H)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{} vs context size (median of reps, CI band)", m.label()),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((x0 - 0.3)..(x1 + 0.3), y0..y1)
        .map_err(&e)?;
    // x is log2(num_ctx): one tick per power of two, labelled with the value.
    chart
        .configure_mesh()
        .x_desc("num_ctx (tokens, log scale)")
        .y_desc(m.label())
        .x_labels(((x1 - x0).round() as usize + 1).max(2))
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-6 {
                format!("{:.0}", x.round().exp2())
            } else {
                String::new()
            }
        })
        .disable_x_mesh()
        .y_label_formatter(&|y| tick(*y, y1 - y0))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(&e)?;
    for (i, (label, mut v)) in lines.into_iter().enumerate() {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        let c = color(i);
        if let Some(poly) = band_polygon(&v) {
            chart
                .draw_series([Polygon::new(poly, c.mix(0.18).filled())])
                .map_err(&e)?;
        }
        chart
            .draw_series(LineSeries::new(
                v.iter().map(|(x, y, _)| (*x, *y)),
                c.stroke_width(2),
            ))
            .map_err(&e)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3)));
        chart
            .draw_series(
                v.iter()
                    .map(|(x, y, _)| Circle::new((*x, *y), 4, c.filled())),
            )
            .map_err(&e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(true)
}

/// Arm plus every factor except num_ctx: the cells of one line.
fn group_label(c: &CellAnalysis) -> String {
    let rest: Vec<String> = c
        .factors
        .iter()
        .filter(|(k, _)| k.as_str() != "num_ctx")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if rest.is_empty() {
        c.arm.clone()
    } else {
        format!("{} ({})", c.arm, rest.join(", "))
    }
}

/// One point of a line: x, the median of the rep values, its CI band.
type FactorPt = (f64, f64, Option<(f64, f64)>);

/// The CI band of a line as a closed polygon (upper ends left to right, lower ends back);
/// `None` when a point has no band.
fn band_polygon(v: &[FactorPt]) -> Option<Vec<(f64, f64)>> {
    let band: Vec<(f64, f64, f64)> = v
        .iter()
        .filter_map(|(x, _, b)| b.map(|(l, h)| (*x, l, h)))
        .collect();
    if band.len() != v.len() {
        return None;
    }
    let mut poly: Vec<(f64, f64)> = band.iter().map(|(x, _, h)| (*x, *h)).collect();
    poly.extend(band.iter().rev().map(|(x, l, _)| (*x, *l)));
    Some(poly)
}

/// The x range and the y range (bands included) of the lines' points.
fn extent<K>(lines: &BTreeMap<K, Vec<FactorPt>>) -> ((f64, f64), (f64, f64)) {
    let pts = lines.values().flatten();
    let x = pts
        .clone()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    let y = pts.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        let (l, h) = p.2.unwrap_or((p.1, p.1));
        (a.min(l).min(p.1), b.max(h).max(p.1))
    });
    (x, y)
}

/// The cells' values of `m` against the numeric factor `factor`, one line per group of
/// cells that differ only in it (single-agent cells).
fn lines_vs(a: &Analysis, m: Metric, factor: &str) -> BTreeMap<String, Vec<FactorPt>> {
    let mut lines: BTreeMap<String, Vec<FactorPt>> = BTreeMap::new();
    for c in &a.cells {
        if c.factors.keys().any(|k| k.contains('.')) {
            continue;
        }
        let Some(x) = c.factors.get(factor).and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let Some(s) = c.metric(m).and_then(|cm| cm.stats.summary.value()) else {
            continue;
        };
        let cm = c.metric(m).map(|cm| &cm.stats);
        let band = match cm.map(|s| (&s.median_ci, &s.mean_ci)) {
            Some((Avail::Value(i), _)) | Some((_, Avail::Value(i))) => Some((i.lower, i.upper)),
            _ => None,
        };
        let rest: Vec<String> = c
            .factors
            .iter()
            .filter(|(k, _)| k.as_str() != factor)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let label = if rest.is_empty() {
            c.arm.clone()
        } else {
            format!("{} ({})", c.arm, rest.join(", "))
        };
        lines.entry(label).or_default().push((x, s.median, band));
    }
    lines.retain(|_, v| v.len() >= 2);
    for v in lines.values_mut() {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    lines
}

/// One panel: `m` against num_gpu, lines with CI bands.
fn num_gpu_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    m: Metric,
    lines: &BTreeMap<String, Vec<FactorPt>>,
    path: &Path,
) -> Result<(), ReportError> {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| {
        ReportError::Plot(path.to_path_buf(), x.to_string())
    };
    let ((x0, x1), (y0, y1)) = extent(lines);
    let (x0, x1) = padded(x0, x1);
    let (y0, y1) = padded(y0, y1);
    let y1 = y1 + 0.08 * (y1 - y0) * (1 + lines.len()) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{} vs num_gpu (median of reps, CI band)", m.label()),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("num_gpu (layers asked on the GPU)")
        .y_desc(m.label())
        .x_label_formatter(&|x| tick(*x, x1 - x0))
        .y_label_formatter(&|y| tick(*y, y1 - y0))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(e)?;
    for (i, (label, v)) in lines.iter().enumerate() {
        let c = color(i);
        if let Some(poly) = band_polygon(v) {
            chart
                .draw_series([Polygon::new(poly, c.mix(0.18).filled())])
                .map_err(e)?;
        }
        chart
            .draw_series(LineSeries::new(
                v.iter().map(|(x, y, _)| (*x, *y)),
                c.stroke_width(2),
            ))
            .map_err(e)?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3)));
        chart
            .draw_series(
                v.iter()
                    .map(|(x, y, _)| Circle::new((*x, *y), 4, c.filled())),
            )
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(e)?;
    Ok(())
}

/// Decode throughput (top) and GPU energy per output token (bottom) against num_gpu, one
/// line per group of cells that differ only in num_gpu. The energy panel is left out when
/// the run has no energy figures (no GPU telemetry). Returns false (and draws nothing) when
/// no group has ≥ 2 num_gpu levels.
pub fn num_gpu_plot(path: &Path, a: &Analysis) -> Result<bool, ReportError> {
    let tps = lines_vs(a, Metric::DecodeTps, "num_gpu");
    if tps.is_empty() {
        return Ok(false);
    }
    let energy = lines_vs(a, Metric::JPerToken, "num_gpu");
    let e = err(path);
    let height = if energy.is_empty() { H } else { 2 * H - 80 };
    let root = SVGBackend::new(path, (W, height)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    if energy.is_empty() {
        num_gpu_panel(&root, Metric::DecodeTps, &tps, path)?;
    } else {
        let (top, bottom) = root.split_vertically(height / 2);
        num_gpu_panel(&top, Metric::DecodeTps, &tps, path)?;
        num_gpu_panel(&bottom, Metric::JPerToken, &energy, path)?;
    }
    root.present().map_err(&e)?;
    Ok(true)
}

/// The median of a rep statistic, with its CI when there is one.
fn median_with_ci(r: &crate::analysis::RepStats) -> Option<(f64, Option<(f64, f64)>)> {
    let m = r.summary.value()?.median;
    let ci = r.median_ci.value().map(|i| (i.lower, i.upper));
    Some((m, ci))
}

/// Latency against achieved throughput over the workload levels, one line per
/// configuration: x = total tok/s, y = TTFT p50 (ms), each point labelled with its number
/// of agents, vertical whiskers the TTFT CI. False when no configuration has two levels.
pub fn latency_vs_throughput(
    path: &Path,
    w: &crate::analysis::workload::Workload,
) -> Result<bool, ReportError> {
    let e = err(path);
    type Pt = (f64, f64, Option<(f64, f64)>, f64, String);
    let mut lines: BTreeMap<&str, Vec<Pt>> = BTreeMap::new();
    for l in &w.levels {
        let (Some((x, _)), Some((y, ci))) =
            (median_with_ci(&l.total_tps), median_with_ci(&l.ttft_p50_ms))
        else {
            continue;
        };
        lines.entry(l.configuration.as_str()).or_default().push((
            x,
            y,
            ci,
            l.level(),
            l.level_text(),
        ));
    }
    lines.retain(|_, v| v.len() >= 2);
    if lines.is_empty() {
        return Ok(false);
    }
    let all = || lines.values().flatten();
    let x1 = all().map(|p| p.0).fold(0.0, f64::max);
    let y1 = all()
        .map(|p| p.2.map_or(p.1, |c| c.1.max(p.1)))
        .fold(0.0, f64::max);
    let (_, x1) = padded(0.0, x1);
    let (_, y1) = padded(0.0, y1);
    let y1 = y1 * (1.0 + 0.08 * (1 + lines.len()) as f64);
    let root = SVGBackend::new(path, (W, H)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "TTFT vs total throughput over the levels (median of reps, CI whiskers)",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x1, 0.0..y1)
        .map_err(&e)?;
    chart
        .configure_mesh()
        .x_desc("total output tokens/s (all agents of the unit)")
        .y_desc("TTFT p50 (ms)")
        .x_label_formatter(&|x| tick(*x, x1))
        .y_label_formatter(&|y| tick(*y, y1))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(&e)?;
    for (i, (label, mut v)) in lines.into_iter().enumerate() {
        v.sort_by(|a, b| a.3.total_cmp(&b.3));
        let c = color(i);
        chart
            .draw_series(LineSeries::new(
                v.iter().map(|p| (p.0, p.1)),
                c.stroke_width(2),
            ))
            .map_err(&e)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3)));
        chart
            .draw_series(v.iter().filter_map(|p| {
                p.2.map(|(lo, hi)| PathElement::new(vec![(p.0, lo), (p.0, hi)], c.stroke_width(1)))
            }))
            .map_err(&e)?;
        chart
            .draw_series(v.iter().map(|p| {
                EmptyElement::at((p.0, p.1))
                    + Circle::new((0, 0), 4, c.filled())
                    + Text::new(p.4.clone(), (6, -16), ("sans-serif", 13))
            }))
            .map_err(&e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(true)
}

/// The second axis of a Pareto plot (the first is tok/s per user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParetoAxis {
    /// Total output tok/s (higher is better).
    TotalThroughput,
    /// GPU energy per output token (lower is better; needs GPU telemetry).
    EnergyPerToken,
}

/// Every cell as a point of (tok/s per user, `axis`), colour by configuration, the Pareto
/// front drawn through its points. False with fewer than two points.
pub fn pareto(
    path: &Path,
    w: &crate::analysis::workload::Workload,
    axis: ParetoAxis,
) -> Result<bool, ReportError> {
    let e = err(path);
    let (front_ids, caption, y_desc) = match axis {
        ParetoAxis::TotalThroughput => (
            &w.pareto,
            "Pareto front: tokens/s per user vs total tokens/s (medians of reps)",
            "total output tokens/s",
        ),
        ParetoAxis::EnergyPerToken => (
            &w.pareto_energy,
            "Pareto front: tokens/s per user vs GPU energy per token (medians of reps)",
            "GPU energy per output token, J (lower is better)",
        ),
    };
    let pts: Vec<(&str, f64, f64, String, bool)> = w
        .levels
        .iter()
        .filter_map(|l| {
            let (u, _) = median_with_ci(&l.user_tps)?;
            let (t, _) = match axis {
                ParetoAxis::TotalThroughput => median_with_ci(&l.total_tps)?,
                ParetoAxis::EnergyPerToken => median_with_ci(l.energy_per_token_j.as_ref()?)?,
            };
            Some((
                l.configuration.as_str(),
                u,
                t,
                l.level_text(),
                front_ids.contains(&l.cell_id),
            ))
        })
        .collect();
    if pts.len() < 2 {
        return Ok(false);
    }
    let confs: Vec<&str> = {
        let mut c: Vec<&str> = pts.iter().map(|p| p.0).collect();
        c.sort_unstable();
        c.dedup();
        c
    };
    let (_, x1) = padded(0.0, pts.iter().map(|p| p.1).fold(0.0, f64::max));
    let (_, y1) = padded(0.0, pts.iter().map(|p| p.2).fold(0.0, f64::max));
    let y1 = y1 * (1.0 + 0.08 * (1 + confs.len()) as f64);
    let root = SVGBackend::new(path, (W, H)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x1, 0.0..y1)
        .map_err(&e)?;
    chart
        .configure_mesh()
        .x_desc("tokens/s per user (1000 / mean TPOT)")
        .y_desc(y_desc)
        .x_label_formatter(&|x| tick(*x, x1))
        .y_label_formatter(&|y| tick(*y, y1))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(&e)?;
    let mut front: Vec<(f64, f64)> = pts.iter().filter(|p| p.4).map(|p| (p.1, p.2)).collect();
    front.sort_by(|a, b| a.0.total_cmp(&b.0));
    chart
        .draw_series(LineSeries::new(front, BLACK.stroke_width(1)))
        .map_err(&e)?
        .label("Pareto front")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    for (i, conf) in confs.iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(pts.iter().filter(|p| p.0 == *conf).map(|p| {
                EmptyElement::at((p.1, p.2))
                    + Circle::new((0, 0), if p.4 { 6 } else { 4 }, c.filled())
                    + Text::new(p.3.clone(), (7, -16), ("sans-serif", 13))
            }))
            .map_err(&e)?
            .label(conf.to_string())
            .legend(move |(x, y)| Circle::new((x + 10, y), 5, c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(true)
}
