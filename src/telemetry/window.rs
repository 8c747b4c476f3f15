//! From sampled GPU readings to one call's window: energy (from the driver's cumulative
//! counter where every GPU has one, else the power curve integrated), mean and maximum
//! power, peak memory, mean utilisation; and the energy of overlapping calls split between
//! them, so that a pair's two concurrent calls do not both count the same joules.
//!
//! The readings are piecewise linear between samples: a window edge between two samples
//! takes the linearly interpolated value. A window that starts before the first sample or
//! ends after the last one has no figure (`None`), never a partial one.

use super::GpuRound;

/// The GPUs' readings summed (power, energy, memory) or averaged (utilisation) over every
/// GPU at one sampling instant. A figure is `None` when any GPU lacked it: a sum over part
/// of the GPUs would understate it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Unix epoch, milliseconds.
    pub t_ms: f64,
    pub(crate) power_w: Option<f64>,
    /// Cumulative energy counter, joules.
    pub energy_j: Option<f64>,
    pub(crate) memory_mib: Option<f64>,
    pub(crate) util_pct: Option<f64>,
}

// The window itself is a field of every record: a data type, so it lives with the record
// at the bottom of the crate (`crate::record::GpuWindow`); telemetry only computes it.
pub use crate::record::GpuWindow;

/// Sums the GPUs of each round.
pub fn points(rounds: &[GpuRound]) -> Vec<Point> {
    rounds
        .iter()
        .filter(|r| !r.gpus.is_empty())
        .map(|r| {
            let sum = |f: &dyn Fn(&super::GpuReading) -> Option<f64>| {
                r.gpus.iter().map(f).sum::<Option<f64>>()
            };
            let util = sum(&|g| g.util_pct).map(|u| u / r.gpus.len() as f64);
            Point {
                t_ms: r.t_ms,
                power_w: sum(&|g| g.power_w),
                energy_j: sum(&|g| g.energy_j),
                memory_mib: sum(&|g| g.memory_used_mib),
                util_pct: util,
            }
        })
        .collect()
}

/// Index `i` with `pts[i].t ≤ t ≤ pts[i + 1].t`, or `None` outside the sampled span.
fn bracket(pts: &[Point], t: f64) -> Option<usize> {
    if pts.len() < 2 || t < pts[0].t_ms || t > pts[pts.len() - 1].t_ms {
        return None;
    }
    let i = pts.partition_point(|p| p.t_ms <= t);
    Some(i.saturating_sub(1).min(pts.len() - 2))
}

/// The linear interpolation of `f` at `t` between `pts[i]` and `pts[i + 1]`.
fn lerp(pts: &[Point], i: usize, t: f64, f: fn(&Point) -> Option<f64>) -> Option<f64> {
    let (a, b) = (&pts[i], &pts[i + 1]);
    let (ya, yb) = (f(a)?, f(b)?);
    let span = b.t_ms - a.t_ms;
    if span <= 0.0 {
        return Some(yb);
    }
    Some(ya + (yb - ya) * (t - a.t_ms) / span)
}

/// ∫ f dt over [a, b] (f piecewise linear between samples), in f-units × seconds.
fn integral(pts: &[Point], a: f64, b: f64, f: fn(&Point) -> Option<f64>) -> Option<f64> {
    let (i, j) = (bracket(pts, a)?, bracket(pts, b)?);
    let mut knots = vec![(a, lerp(pts, i, a, f)?)];
    for p in &pts[i + 1..=j] {
        if p.t_ms > a && p.t_ms < b {
            knots.push((p.t_ms, f(p)?));
        }
    }
    knots.push((b, lerp(pts, j, b, f)?));
    Some(
        knots
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) / 1000.0 * (w[0].1 + w[1].1) / 2.0)
            .sum(),
    )
}

/// The GPUs' energy over [a, b] (ms), J, and where it came from: the counter's rise when
/// every GPU has one and it did not go backwards, else the integrated power.
pub fn energy(pts: &[Point], a: f64, b: f64) -> Option<(f64, &'static str)> {
    if b < a {
        return None;
    }
    let (i, j) = (bracket(pts, a)?, bracket(pts, b)?);
    if let (Some(ea), Some(eb)) = (
        lerp(pts, i, a, |p| p.energy_j),
        lerp(pts, j, b, |p| p.energy_j),
    ) {
        let monotone = pts[i..=j + 1]
            .windows(2)
            .all(|w| matches!((w[0].energy_j, w[1].energy_j), (Some(x), Some(y)) if y >= x));
        if monotone {
            return Some((eb - ea, "counter"));
        }
    }
    integral(pts, a, b, |p| p.power_w).map(|e| (e, "power"))
}

/// The summary of one window [a, b] (ms), without the share (see [`apportion`]).
pub fn summarize(pts: &[Point], a: f64, b: f64, gpus: u32, source: &str) -> GpuWindow {
    let mut w = GpuWindow {
        gpus,
        source: source.to_string(),
        ..Default::default()
    };
    if b <= a {
        return w;
    }
    let (Some(i), Some(j)) = (bracket(pts, a), bracket(pts, b)) else {
        return w;
    };
    let secs = (b - a) / 1000.0;
    if let Some((e, how)) = energy(pts, a, b) {
        w.window_energy_j = Some(e);
        w.energy_source = Some(how.to_string());
        w.mean_power_w = Some(e / secs);
    }
    let inside = || pts[i + 1..=j].iter().filter(|p| p.t_ms > a && p.t_ms < b);
    w.samples = inside().count() as u32;
    let edges = [
        lerp(pts, i, a, |p| p.power_w),
        lerp(pts, j, b, |p| p.power_w),
    ];
    w.max_power_w = edges
        .into_iter()
        .chain(inside().map(|p| p.power_w))
        .collect::<Option<Vec<f64>>>()
        .and_then(|v| v.into_iter().reduce(f64::max));
    w.peak_memory_mib = pts[i..=j + 1]
        .iter()
        .map(|p| p.memory_mib)
        .collect::<Option<Vec<f64>>>()
        .and_then(|v| v.into_iter().reduce(f64::max));
    w.mean_util_pct = integral(pts, a, b, |p| p.util_pct).map(|u| u / secs);
    w
}

/// Each window's share of the energy: the time between consecutive window edges is split
/// equally between the windows open during it. `None` for a window any of whose stretches
/// has no energy figure (or that is empty).
pub fn apportion(pts: &[Point], windows: &[(f64, f64)]) -> Vec<Option<f64>> {
    let mut edges: Vec<f64> = windows
        .iter()
        .filter(|(a, b)| b > a)
        .flat_map(|&(a, b)| [a, b])
        .collect();
    edges.sort_by(f64::total_cmp);
    edges.dedup();
    let mut share: Vec<Option<f64>> = windows
        .iter()
        .map(|(a, b)| (b > a).then_some(0.0))
        .collect();
    for seg in edges.windows(2) {
        let (s, e) = (seg[0], seg[1]);
        let open: Vec<usize> = windows
            .iter()
            .enumerate()
            .filter(|(_, (a, b))| b > a && *a <= s && *b >= e)
            .map(|(k, _)| k)
            .collect();
        if open.is_empty() {
            continue;
        }
        let part = energy(pts, s, e).map(|(j, _)| j / open.len() as f64);
        for k in open {
            share[k] = match (share[k], part) {
                (Some(x), Some(p)) => Some(x + p),
                _ => None,
            };
        }
    }
    share
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(p: impl Fn(f64) -> f64, counter: Option<&dyn Fn(f64) -> f64>) -> Vec<Point> {
        (0..=200)
            .map(|k| {
                let t = 1_000.0 + k as f64 * 100.0;
                Point {
                    t_ms: t,
                    power_w: Some(p(t)),
                    energy_j: counter.map(|c| c(t)),
                    memory_mib: Some(1000.0 + k as f64),
                    util_pct: Some(50.0),
                }
            })
            .collect()
    }

    #[test]
    fn integrates_a_known_power_curve_within_one_percent() {
        // 200 W + 120 W·sin(2π t / 3.7 s), 100 ms samples; window 2.345 s → 14.61 s.
        let w = 2.0 * std::f64::consts::PI / 3_700.0;
        let pts = curve(|t| 200.0 + 120.0 * (w * t).sin(), None);
        let (a, b) = (2_345.0, 14_610.0);
        let exact = 200.0 * (b - a) / 1000.0 + 120.0 / w * ((w * a).cos() - (w * b).cos()) / 1000.0;
        let (got, how) = energy(&pts, a, b).unwrap();
        assert_eq!(how, "power");
        assert!(((got - exact) / exact).abs() < 0.01, "{got} vs {exact}");
        let s = summarize(&pts, a, b, 1, "test");
        assert!((s.mean_power_w.unwrap() - exact / ((b - a) / 1000.0)).abs() < 2.0);
        assert!(s.max_power_w.unwrap() <= 320.0 && s.max_power_w.unwrap() > 315.0);
        assert_eq!(s.samples, 123);
        assert_eq!(s.mean_util_pct, Some(50.0));
    }

    #[test]
    fn the_counter_wins_over_power_and_a_reset_falls_back() {
        // Power says 100 W, the counter says 250 J/s: the counter is the driver's own sum.
        let pts = curve(|_| 100.0, Some(&|t| 5_000.0 + 0.25 * t));
        let (e, how) = energy(&pts, 2_000.0, 4_000.0).unwrap();
        assert_eq!(how, "counter");
        assert!((e - 500.0).abs() < 1e-9);
        let mut reset = pts.clone();
        reset[15].energy_j = Some(1.0);
        let (e, how) = energy(&reset, 2_000.0, 4_000.0).unwrap();
        assert_eq!(how, "power");
        assert!((e - 200.0).abs() < 1e-9);
    }

    #[test]
    fn windows_outside_the_samples_or_without_readings_are_null() {
        let pts = curve(|_| 100.0, None);
        assert!(
            energy(&pts, 500.0, 2_000.0).is_none(),
            "starts before sampling"
        );
        assert!(
            energy(&pts, 2_000.0, 99_000.0).is_none(),
            "ends after the last sample"
        );
        let s = summarize(&pts, 2_000.0, 2_000.0, 1, "test");
        assert_eq!(s.window_energy_j, None);
        let mut gap = pts.clone();
        gap[20].power_w = None;
        assert!(
            energy(&gap, 2_500.0, 3_500.0).is_none(),
            "a missing power reading"
        );
        assert!(energy(&gap, 3_500.0, 4_500.0).is_some());
        assert_eq!(summarize(&gap, 2_500.0, 3_500.0, 1, "t").max_power_w, None);
        assert!(apportion(&gap, &[(2_500.0, 3_500.0)])[0].is_none());
    }

    #[test]
    fn overlapping_windows_split_the_energy() {
        let pts = curve(|_| 100.0, None);
        // A: 2–6 s, B: 4–8 s: 2 s alone each, 2 s shared.
        let s = apportion(
            &pts,
            &[(2_000.0, 6_000.0), (4_000.0, 8_000.0), (9_000.0, 9_000.0)],
        );
        assert!((s[0].unwrap() - 300.0).abs() < 1e-9);
        assert!((s[1].unwrap() - 300.0).abs() < 1e-9);
        assert_eq!(s[2], None);
        let total: f64 = s.iter().flatten().sum();
        assert!((total - energy(&pts, 2_000.0, 8_000.0).unwrap().0).abs() < 1e-9);
    }

    #[test]
    fn gpus_are_summed_and_a_gpu_without_a_figure_makes_it_null() {
        use super::super::{GpuReading, GpuRound};
        let g = |i, p: Option<f64>| GpuReading {
            index: i,
            power_w: p,
            memory_used_mib: Some(10.0),
            util_pct: Some(20.0 * (i + 1) as f64),
            ..Default::default()
        };
        let r = GpuRound {
            t_ms: 0.0,
            gpus: vec![g(0, Some(50.0)), g(1, Some(70.0))],
        };
        let p = points(&[r])[0];
        assert_eq!(p.power_w, Some(120.0));
        assert_eq!(p.memory_mib, Some(20.0));
        assert_eq!(p.util_pct, Some(30.0));
        assert_eq!(p.energy_j, None);
        let r = GpuRound {
            t_ms: 0.0,
            gpus: vec![g(0, Some(50.0)), g(1, None)],
        };
        assert_eq!(points(&[r])[0].power_w, None);
    }
}
