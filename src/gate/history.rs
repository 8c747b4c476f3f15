//! History mode: the current run against the last K earlier runs. Per (group, metric) the
//! earlier runs' estimates, on ln scale, give a mean m and sd s; the current estimate y is
//! tested against the prediction distribution, t = (ln y − m) / (s·√(1 + 1/K)) with K − 1
//! df, and the change's range is the 1 − α prediction interval. The same decision rule and
//! families as the two-run gate.

use super::{
    empty_groups, env_differences, finish_rows, inconclusive_reasons, load_run, outcome_of,
    Comparison, GateError, LoadedRun, Method, Row, RunSummary, Settings, Verdict,
};
use crate::metrics::Metric;
use crate::stats::engine::{
    self, ChangeCi, Params, Sides, Status, TestResult, TwoSample, MIN_REPS,
};
use crate::store::MANIFEST;
use statrs::distribution::{ContinuousCDF, StudentsT};
use std::collections::BTreeSet;
use std::path::Path;

/// Fewest earlier runs for a history verdict (a prediction interval needs a spread).
pub const MIN_HISTORY: usize = 3;

/// Loads the newest `last` runs under `dir` (each subdirectory holding a manifest), oldest
/// first, leaving out `current` itself. Unreadable runs are skipped with a note.
pub fn load_history(
    dir: &Path,
    last: usize,
    current: &Path,
    metrics: &[Metric],
) -> Result<(Vec<LoadedRun>, Vec<String>), GateError> {
    let entries = std::fs::read_dir(dir).map_err(crate::store::io(dir))?;
    let me = std::fs::canonicalize(current).ok();
    let mut notes = Vec::new();
    let mut runs = Vec::new();
    for e in entries.filter_map(|e| e.ok()) {
        let p = e.path();
        if !p.join(MANIFEST).exists() || std::fs::canonicalize(&p).ok() == me {
            continue;
        }
        match load_run(&p, metrics, false) {
            Ok(r) => runs.push(r),
            Err(err) => notes.push(format!("history: skipped {} ({err})", p.display())),
        }
    }
    runs.sort_by(|a, b| {
        (&a.manifest.started_at, &a.manifest.run_id)
            .cmp(&(&b.manifest.started_at, &b.manifest.run_id))
    });
    let skip = runs.len().saturating_sub(last);
    Ok((runs.split_off(skip), notes))
}

/// Compares the current run against earlier runs (see the module doc). Earlier runs in a
/// different environment are left out (with a note) unless the change is allowed.
pub fn compare_history(
    history: &[LoadedRun],
    current: &LoadedRun,
    s: &Settings,
) -> Result<Comparison, GateError> {
    if !crate::stats::is_open_unit(s.alpha) {
        return Err(GateError::BadAlpha(s.alpha));
    }
    let mut notes = current.notes.clone();
    let mut diffs_seen = Vec::new();
    let mut used = Vec::new();
    for h in history {
        let d = env_differences(&h.manifest, &current.manifest);
        if d.is_empty() || s.allow_env_change {
            for x in d {
                if !diffs_seen.contains(&x) {
                    diffs_seen.push(x);
                }
            }
            used.push(h);
        } else {
            notes.push(format!(
                "history: left out {} (not comparable: {})",
                h.manifest.run_id,
                d.iter()
                    .map(|x| x.what.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let Some(newest) = used.last() else {
        return Err(GateError::NoHistory(notes.join("; ")));
    };
    let c = RunSummary::of(current);
    let mut baseline = RunSummary::of(newest);
    baseline.run_id = format!("last {} runs", used.len());
    let mut rows = Vec::new();
    let keys: BTreeSet<&str> = current
        .samples
        .groups
        .iter()
        .map(|g| g.key.as_str())
        .collect();
    for key in keys {
        let Some(gc) = current.samples.group(key) else {
            continue;
        };
        for m in s.metrics() {
            let Some(x) = gc.metric(m) else { continue };
            let earlier: Vec<f64> = used
                .iter()
                .filter_map(|h| h.samples.group(key)?.metric(m))
                .filter(|ms| ms.n() > 0)
                .filter_map(|ms| engine::point_estimate(m, ms.sample()))
                .filter(|v| *v > 0.0)
                .collect();
            rows.push(Row {
                cell: key.to_string(),
                metric: m,
                threshold: s.thresholds.get(&m).copied(),
                result: history_result(m, &earlier, x.sample(), s.alpha),
                p_holm: None,
                verdict: Verdict::Inconclusive,
            });
        }
    }
    let (rows, gating_tests) = finish_rows(rows, s.alpha);
    let empty = empty_groups(current);
    let reasons = inconclusive_reasons(&rows, &[&c], &[], &empty, s);
    let outcome = outcome_of(&rows, reasons);
    Ok(Comparison {
        method: Method::History {
            runs: used.iter().map(|h| h.manifest.run_id.clone()).collect(),
        },
        baseline,
        current: c,
        settings: s.clone(),
        params: Params {
            resamples: 0,
            ..Params::gate(s.alpha, 0)
        },
        gating_tests,
        env_differences: diffs_seen,
        rows,
        notes,
        outcome,
    })
}

/// The prediction-interval test of the current estimate against earlier estimates.
pub(crate) fn history_result(
    metric: Metric,
    earlier: &[f64],
    current: engine::Sample<'_>,
    alpha: f64,
) -> TwoSample {
    let logs: Vec<f64> = earlier.iter().map(|v| v.ln()).collect();
    let k = logs.len();
    let m = logs.iter().sum::<f64>() / k.max(1) as f64;
    let estimate = engine::point_estimate(metric, current);
    let mut t = TwoSample::untested(
        metric,
        (current.reps(), k),
        estimate,
        (k > 0).then(|| m.exp()),
    );
    if k < MIN_HISTORY || current.reps() < MIN_REPS {
        t.note = Some(format!(
            "need ≥ {MIN_HISTORY} earlier runs and ≥ {MIN_REPS} current reps, have {k} / {}",
            current.reps()
        ));
        return t;
    }
    let Some(y) = estimate.filter(|v| *v > 0.0).map(f64::ln) else {
        t.status = Status::Undefined;
        t.note = Some("no positive current estimate".into());
        return t;
    };
    let sd = (logs.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (k as f64 - 1.0)).sqrt();
    let se = sd * (1.0 + 1.0 / k as f64).sqrt();
    if se <= 1e-12 {
        t.status = Status::Constant;
        t.note = Some("earlier runs all identical: no spread for a prediction interval".into());
        return t;
    }
    let Ok(dist) = StudentsT::new(0.0, 1.0, k as f64 - 1.0) else {
        t.status = Status::Undefined;
        return t;
    };
    let stat = (y - m) / se;
    let q = dist.inverse_cdf(1.0 - alpha / 2.0);
    t.test = Some(TestResult {
        name: "t prediction interval on ln(per-run estimates)".into(),
        p: (2.0 * dist.sf(stat.abs())).min(1.0),
        statistic: Some(stat),
        df: Some(k as f64 - 1.0),
    });
    t.ci = Some(ChangeCi {
        lower: (y - m - q * se).exp() - 1.0,
        upper: (y - m + q * se).exp() - 1.0,
        level: 1.0 - alpha,
        sides: Sides::TwoSided,
        method: format!("{:.0}% prediction interval", (1.0 - alpha) * 100.0),
        resamples: 0,
        seed: 0,
        mc_error_lower: 0.0,
        mc_error_upper: 0.0,
    });
    t.status = Status::Tested;
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prediction_interval_matches_closed_form() {
        // K = 3 → df = 2, where the t survival function is 1/2 − t/(2√(2 + t²)).
        let meds = [0.0f64, 0.1, 0.2].map(f64::exp);
        let cur = [0.4f64.exp(); 6];
        let r = history_result(Metric::TtftMs, &meds, engine::Sample::Reps(&cur), 0.05);
        let se = 0.1 * (4.0f64 / 3.0).sqrt();
        let t = 0.3 / se;
        let p = 1.0 - t / (2.0 + t * t).sqrt();
        assert!((r.test.as_ref().unwrap().p - p).abs() < 1e-9, "{r:?}");
        let q = 4.302_652_729_911_275; // t(0.975, 2)
        let ci = r.ci.unwrap();
        assert!((ci.lower - ((0.3 - q * se).exp() - 1.0)).abs() < 1e-6);
        assert!((ci.upper - ((0.3 + q * se).exp() - 1.0)).abs() < 1e-6);
        assert!((r.change.unwrap() - (0.3f64.exp() - 1.0)).abs() < 1e-9);
        // Two earlier runs are too few.
        let few = history_result(Metric::TtftMs, &meds[..2], engine::Sample::Reps(&cur), 0.05);
        assert_eq!(few.status, Status::TooFew);
        assert!(few.test.is_none());
    }
}
