//! The decision: tonight's nights per gating row against its references (see the module doc
//! of [`super`]), Holm over the gating family, the three outcomes, the informational rows,
//! the call shares and the overall outcome.

use super::capacity;
use super::history::{Nights, MIN_HISTORY};
use super::shares::{self, ShareRow};
use super::{
    env_differences, Comparison, GateError, GateTest, LoadedRun, Method, MetricNights, Outcome,
    Reference, Row, RunSummary, Settings, Shift, Verdict,
};
use crate::analysis::workload::Capacity;
use crate::metrics::{Direction, Estimator, Metric};
use crate::stats;
use crate::stats::engine::{self, Decision, Params, Sample, MIN_REPS};
use crate::stats::nightly::{self, Call, Night, NightVariance, Series, Tolerance};
use std::collections::{BTreeMap, BTreeSet};

/// Level of the permutation test that splits a history into levels (and names the night a
/// shift began).
pub const CHANGE_POINT_ALPHA: f64 = 0.01;

/// The analysis owns the workload rule; the gate applies the same one.
pub use crate::analysis::WORKLOAD_TOLERANCE;

/// Cluster-bootstrap resamples of one night of a pooled tail.
const NIGHT_RESAMPLES: usize = 2000;

/// One gating row's nights: what the decision reads.
#[derive(Debug, Clone)]
pub struct RowNights {
    /// Cell id (with phase).
    pub key: String,
    /// The metric.
    pub metric: Metric,
    /// Its tolerance on the bad side.
    pub tolerance: Tolerance,
    /// Tonight.
    pub tonight: Night,
    /// Earlier nights of the window with this row, oldest first (run id, night).
    pub history: Vec<(String, Night)>,
    /// The anchor's nights with this row.
    pub anchor: Vec<(String, Night)>,
}

/// The night of one (group, metric) of a run, or why there is none.
fn night_of(run: &LoadedRun, key: &str, m: Metric, seed: u64) -> Result<Night, String> {
    let id = &run.manifest.run_id;
    let ms = run
        .samples
        .group(key)
        .and_then(|g| g.metric(m))
        .ok_or_else(|| format!("no {m} in {id}"))?;
    match ms.sample() {
        Sample::Reps(v) => {
            if v.len() < MIN_REPS {
                return Err(format!("need ≥ {MIN_REPS} reps, {id} has {}", v.len()));
            }
            Night::from_reps(v).ok_or_else(|| format!("a value ≤ 0 in {id}"))
        }
        Sample::Clusters(c) => {
            let q = match m.def().estimator {
                Estimator::PooledQuantile { q, .. } => q,
                _ => 0.5,
            };
            let calls: usize = c.iter().map(Vec::len).sum();
            let need = engine::min_calls_for_quantile(q);
            if c.len() < MIN_REPS || calls < need {
                return Err(format!(
                    "need ≥ {MIN_REPS} reps and ≥ {need} calls for a p{:.0}, {id} has {} / {calls}",
                    q * 100.0,
                    c.len()
                ));
            }
            Night::from_clusters(c, q, NIGHT_RESAMPLES, seed ^ engine::fnv(key))
                .ok_or_else(|| format!("no positive p{:.0} in {id}", q * 100.0))
        }
    }
}

/// Median output tokens of a group's complete reps.
fn output_tokens(run: &LoadedRun, key: &str) -> Option<f64> {
    let ms = run.samples.group(key)?.metric(Metric::OutputTokens)?;
    engine::point_estimate(Metric::OutputTokens, ms.sample())
}

/// The tolerance of a gating metric, or why it has none.
fn tolerance(m: Metric, t: f64) -> Result<Tolerance, String> {
    let worse_up = match m.direction() {
        Direction::LowerIsBetter => true,
        Direction::HigherIsBetter => false,
        Direction::Neither => return Err(format!("{m} has no better side: it cannot gate")),
    };
    Tolerance::new(worse_up, t).ok_or_else(|| format!("tolerance {t} is not usable for {m}"))
}

fn gate_test(
    reference: Reference,
    tonight: &Night,
    refs: &[Night],
    nv: Option<&NightVariance>,
    tol: &Tolerance,
    alpha: f64,
) -> Option<GateTest> {
    let c = nightly::change_against(tonight, refs, nv)?;
    let (lower, upper) = nightly::bounds(&c, alpha);
    let ref_mean = refs.iter().map(|n| n.mean).sum::<f64>() / refs.len() as f64;
    Some(GateTest {
        reference,
        level: tonight.mean.exp(),
        reference_level: ref_mean.exp(),
        change: c.log.exp() - 1.0,
        lower,
        upper,
        p_regression: nightly::p_regression(&c, tol),
        p_regression_holm: None,
        p_pass: nightly::p_pass(&c, tol),
        log_change: c,
        call: Call::Undecided,
    })
}

/// What [`plan_tests`] found.
#[derive(Debug, Clone, Default)]
pub struct Planned {
    /// Per row, its tests (none: the row could not be tested; the string says why).
    pub tests: Vec<Result<Vec<GateTest>, String>>,
    /// Per gating metric, the between-night variance.
    pub nights: Vec<MetricNights>,
    /// Level shifts found in the rows' series, tonight included.
    pub shifts: Vec<Shift>,
}

/// The tests of every gating row. With `history` (≥ [`MIN_HISTORY`] nights in a row's
/// series) a row is tested against its recent level and its anchor with the metric's
/// between-night variance; otherwise against its newest night without one.
pub fn plan_tests(rows: &[RowNights], alpha: f64, seed: u64) -> Planned {
    // Each row's history split into levels.
    let breaks: Vec<Vec<usize>> = rows
        .iter()
        .map(|r| {
            if r.history.len() >= MIN_HISTORY {
                let means: Vec<f64> = r.history.iter().map(|n| n.1.mean).collect();
                nightly::change_points(&means, CHANGE_POINT_ALPHA, seed ^ engine::fnv(&r.key))
            } else {
                Vec::new()
            }
        })
        .collect();
    // The between-night variance per metric, pooled over its rows (cells).
    let metrics: BTreeSet<Metric> = rows.iter().map(|r| r.metric).collect();
    let mut nv: BTreeMap<Metric, Option<NightVariance>> = BTreeMap::new();
    let mut per_metric = Vec::new();
    for m in metrics {
        let series_nights: Vec<(Vec<Night>, &Vec<usize>)> = rows
            .iter()
            .zip(&breaks)
            .filter(|(r, _)| r.metric == m && r.history.len() >= MIN_HISTORY)
            .map(|(r, b)| (r.history.iter().map(|n| n.1).collect(), b))
            .collect();
        let series: Vec<Series<'_>> = series_nights
            .iter()
            .map(|(n, b)| Series {
                nights: n,
                breaks: b,
            })
            .collect();
        let v = nightly::night_variance(&series);
        nv.insert(m, v);
        per_metric.push(MetricNights {
            metric: m,
            variance: v,
        });
    }
    let mut planned = Planned {
        nights: per_metric,
        ..Planned::default()
    };
    for (r, b) in rows.iter().zip(&breaks) {
        let history = r.history.len() >= MIN_HISTORY;
        let nv_m = nv.get(&r.metric).copied().flatten();
        let mut tests = Vec::new();
        if history && nv_m.is_some() {
            let start = b.last().copied().unwrap_or(0);
            let recent = &r.history[start..];
            let recent_ids: Vec<String> = recent.iter().map(|n| n.0.clone()).collect();
            let anchor_ids: Vec<String> = r.anchor.iter().map(|n| n.0.clone()).collect();
            if recent_ids != anchor_ids {
                let refs: Vec<Night> = recent.iter().map(|n| n.1).collect();
                tests.extend(gate_test(
                    Reference::Recent { nights: recent_ids },
                    &r.tonight,
                    &refs,
                    nv_m.as_ref(),
                    &r.tolerance,
                    alpha,
                ));
            }
            if !r.anchor.is_empty() {
                let refs: Vec<Night> = r.anchor.iter().map(|n| n.1).collect();
                tests.extend(gate_test(
                    Reference::Anchor { nights: anchor_ids },
                    &r.tonight,
                    &refs,
                    nv_m.as_ref(),
                    &r.tolerance,
                    alpha,
                ));
            }
            // Level shifts over the whole series, tonight included: where did it begin?
            let mut means: Vec<f64> = r.history.iter().map(|n| n.1.mean).collect();
            means.push(r.tonight.mean);
            let cps =
                nightly::change_points(&means, CHANGE_POINT_ALPHA, seed ^ engine::fnv(&r.key));
            if let Some(&at) = cps.last() {
                let prev = cps.iter().rev().nth(1).copied().unwrap_or(0);
                let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
                let change = (mean(&means[at..]) - mean(&means[prev..at])).exp() - 1.0;
                let night = r
                    .history
                    .get(at)
                    .map(|n| n.0.clone())
                    .unwrap_or_else(|| "tonight".to_string());
                planned.shifts.push(Shift {
                    cell: r.key.clone(),
                    metric: r.metric,
                    night,
                    change,
                    worse: r.tolerance.bad_sign * change > 0.0,
                });
            }
        } else if let Some((id, newest)) = r.history.last() {
            tests.extend(gate_test(
                Reference::Baseline { run: id.clone() },
                &r.tonight,
                &[*newest],
                None,
                &r.tolerance,
                alpha,
            ));
        }
        planned.tests.push(if tests.is_empty() {
            Err("no reference night with enough reps".to_string())
        } else {
            Ok(tests)
        });
    }
    planned
}

/// Holm over every test of the gating family, then each test's call.
pub fn holm_and_call(tests: &mut [&mut GateTest], alpha: f64) {
    let ps: Vec<f64> = tests.iter().map(|t| t.p_regression).collect();
    let adjusted = stats::holm(&ps);
    for (t, p) in tests.iter_mut().zip(adjusted) {
        t.p_regression_holm = Some(p);
        t.call = nightly::call(p, t.p_pass, alpha);
    }
}

/// A gating row's verdict from its tests' calls: a regression in any test; a pass when
/// every test passed (better when each shows the change on the good side).
pub fn row_verdict(tests: &[GateTest], tol: &Tolerance) -> Verdict {
    if tests.iter().any(|t| t.call == Call::Regression) {
        Verdict::Regression
    } else if !tests.is_empty() && tests.iter().all(|t| t.call == Call::Pass) {
        let better = tests.iter().all(|t| {
            let worst = if tol.bad_sign > 0.0 {
                t.upper
            } else {
                -t.lower
            };
            worst < 0.0
        });
        if better {
            Verdict::Improved
        } else {
            Verdict::Pass
        }
    } else {
        Verdict::Undecided
    }
}

/// Reps per night that would decide an undecided row if its change stays as measured.
fn reps_to_decide(r: &RowNights, tests: &[GateTest], family: usize, alpha: f64) -> Option<usize> {
    let sd_within = (r.tonight.var * r.tonight.n as f64).sqrt();
    let mut need: Option<usize> = None;
    for t in tests.iter().filter(|t| t.call == Call::Undecided) {
        let bad = r.tolerance.bad_sign * t.log_change.log;
        let gap = (bad - r.tolerance.limit).abs();
        // A regression is shown under Holm's first step at worst, a pass at α.
        let a = if bad > r.tolerance.limit {
            alpha / family.max(1) as f64
        } else {
            alpha
        };
        let k = t.reference.nights().len();
        // The between-night part of this test's variance: what the reps cannot remove.
        let within = r.tonight.var + r.tonight.var / k as f64;
        let between = ((t.log_change.se.powi(2) - within) / (1.0 + 1.0 / k as f64)).max(0.0);
        let n = super::power::reps_needed(sd_within, between, t.log_change.df, k, gap, a, 0.5)?;
        need = Some(need.map_or(n, |x: usize| x.max(n)));
    }
    need
}

/// Compares two runs: tonight against one baseline night (no between-night variance).
pub fn compare(
    baseline: &LoadedRun,
    current: &LoadedRun,
    s: &Settings,
) -> Result<Comparison, GateError> {
    let diffs = env_differences(&baseline.manifest, &current.manifest);
    let nights = Nights {
        window: vec![baseline.clone()],
        anchor: Vec::new(),
        anchor_pinned: false,
        env_differences: diffs,
        comparable: 1,
        current: None,
    };
    judge(&nights, current, s, false)
}

/// Compares tonight with the nights of a history (see [`super::history`]); with fewer than
/// [`MIN_HISTORY`] nights, with the newest alone, saying what that assumes.
pub fn compare_nights(
    nights: &Nights,
    current: &LoadedRun,
    s: &Settings,
) -> Result<Comparison, GateError> {
    if nights.window.is_empty() {
        return Err(GateError::NoHistory(String::new()));
    }
    judge(nights, current, s, true)
}

/// What a comparison reads tonight against: the nights of the window (or the one fallback
/// night), the anchor, and whether the night model is on.
struct Sources<'a> {
    window: &'a [LoadedRun],
    anchor: &'a [LoadedRun],
    fallback: &'a LoadedRun,
    use_history: bool,
}

/// The keys of a run's groups (cells, with phases).
fn group_keys(run: &LoadedRun) -> BTreeSet<&str> {
    run.samples.groups.iter().map(|g| g.key.as_str()).collect()
}

/// Why a token-length-dependent metric of `key` is not comparable tonight, if it is not.
fn workload_note(current: &LoadedRun, window: &[LoadedRun], key: &str) -> Option<String> {
    let now = output_tokens(current, key)?;
    let mut v: Vec<f64> = window
        .iter()
        .filter_map(|r| output_tokens(r, key))
        .collect();
    let reference = stats::select_quantiles(&mut v, &[0.5]).map(|q| q[0])?;
    (reference > 0.0 && (now / reference - 1.0).abs() > WORKLOAD_TOLERANCE).then(|| {
        format!(
            "output lengths differ: median {reference:.0} → {now:.0} tokens ({:+.0}%), beyond the {:.0}% a duration of the whole generation can be compared across",
            (now / reference - 1.0) * 100.0,
            WORKLOAD_TOLERANCE * 100.0
        )
    })
}

/// A gating row's nights, and whether it fell back to one baseline night (too few usable
/// nights for the night model); the error says why it has none.
fn gating_nights(
    key: &str,
    m: Metric,
    tol: Tolerance,
    current: &LoadedRun,
    src: &Sources<'_>,
    seed: u64,
) -> Result<(RowNights, bool), String> {
    let tonight = night_of(current, key, m, seed)?;
    let mut history = Vec::new();
    let mut last_err = None;
    for r in src.window {
        match night_of(r, key, m, seed) {
            Ok(n) => history.push((r.manifest.run_id.clone(), n)),
            Err(e) => last_err = Some(e),
        }
    }
    let short = src.use_history && history.len() < MIN_HISTORY;
    if short {
        // One baseline night: the current entry when it has the row, else the newest.
        history = match night_of(src.fallback, key, m, seed) {
            Ok(n) => vec![(src.fallback.manifest.run_id.clone(), n)],
            Err(_) => history.pop().into_iter().collect(),
        };
    }
    if history.is_empty() {
        return Err(last_err.unwrap_or_else(|| "no reference night".into()));
    }
    let anchor = if src.use_history && history.len() >= MIN_HISTORY {
        src.anchor
            .iter()
            .filter_map(|r| {
                night_of(r, key, m, seed)
                    .ok()
                    .map(|n| (r.manifest.run_id.clone(), n))
            })
            .collect()
    } else {
        Vec::new()
    };
    let rn = RowNights {
        key: key.to_string(),
        metric: m,
        tolerance: tol,
        tonight,
        history,
        anchor,
    };
    Ok((rn, short))
}

/// The rows of every key both sides have (engine statistics against the newest reference
/// night), the gating rows' nights (by row index), and how many rows fell back to one
/// baseline night.
fn build_rows(
    keys: &[&str],
    current: &LoadedRun,
    src: &Sources<'_>,
    s: &Settings,
    params: &Params,
) -> (Vec<Row>, Vec<(usize, RowNights)>, usize) {
    let mut rows: Vec<Row> = Vec::new();
    let mut row_nights: Vec<(usize, RowNights)> = Vec::new();
    let mut short_rows = 0usize;
    for &key in keys {
        let workload = workload_note(current, src.window, key);
        for m in s.metrics() {
            let Some(x) = current.samples.group(key).and_then(|g| g.metric(m)) else {
                continue;
            };
            let reference = src
                .window
                .iter()
                .rev()
                .find_map(|r| r.samples.group(key)?.metric(m));
            let Some(y) = reference else { continue };
            let p = Params {
                seed: params.seed ^ engine::fnv(key),
                ..params.clone()
            };
            let threshold = s.thresholds.get(&m).copied();
            let mut row = Row {
                cell: key.to_string(),
                metric: m,
                threshold,
                result: engine::two_sample(m, x.sample(), y.sample(), &p),
                tests: Vec::new(),
                p_holm: None,
                verdict: Verdict::Undecided,
                why: None,
                reps_to_decide: None,
            };
            let not_comparable = workload.clone().filter(|_| m.scales_with_output_tokens());
            match (threshold, not_comparable) {
                (Some(_), Some(w)) => row.why = Some(w),
                (Some(t), None) => {
                    let seed = s.seed ^ engine::fnv(key) ^ engine::fnv(m.name());
                    match tolerance(m, t)
                        .and_then(|tol| gating_nights(key, m, tol, current, src, seed))
                    {
                        Ok((rn, short)) => {
                            short_rows += usize::from(short);
                            row_nights.push((rows.len(), rn));
                        }
                        Err(e) => row.why = Some(e),
                    }
                }
                (None, Some(w)) => {
                    row.verdict = Verdict::NotComparable;
                    row.why = Some(w);
                }
                (None, None) => {}
            }
            rows.push(row);
        }
    }
    (rows, row_nights, short_rows)
}

/// Tests the gating rows, Holm over all their tests, verdicts; returns the family size and
/// what the planning found (between-night variances, level shifts).
fn decide_gating(
    rows: &mut [Row],
    row_nights: &[(usize, RowNights)],
    alpha: f64,
    seed: u64,
) -> (usize, Planned) {
    let inputs: Vec<RowNights> = row_nights.iter().map(|(_, r)| r.clone()).collect();
    let mut planned = plan_tests(&inputs, alpha, seed);
    let mut tested: Vec<(usize, usize, Vec<GateTest>)> = Vec::new();
    for (k, ((i, rn), t)) in row_nights
        .iter()
        .zip(std::mem::take(&mut planned.tests))
        .enumerate()
    {
        match t {
            Ok(tests) => tested.push((*i, k, tests)),
            Err(e) => rows[*i].why = Some(format!("{}: {e}", rn.key)),
        }
    }
    let family: usize = tested.iter().map(|(_, _, t)| t.len()).sum();
    {
        let mut all: Vec<&mut GateTest> = tested
            .iter_mut()
            .flat_map(|(_, _, t)| t.iter_mut())
            .collect();
        holm_and_call(&mut all, alpha);
    }
    for (i, k, tests) in tested {
        let rn = &row_nights[k].1;
        let r = &mut rows[i];
        r.verdict = row_verdict(&tests, &rn.tolerance);
        r.p_holm = tests
            .iter()
            .filter_map(|t| t.p_regression_holm)
            .min_by(f64::total_cmp);
        if r.verdict == Verdict::Undecided {
            r.reps_to_decide = reps_to_decide(rn, &tests, family, alpha);
            r.why = Some(match r.reps_to_decide {
                Some(n) => format!("≈ {n} reps a night would decide it if the change stays"),
                None => "no number of reps decides it: the change sits at the tolerance or the \
                         between-night spread alone is too large"
                    .to_string(),
            });
        }
        r.tests = tests;
    }
    (family, planned)
}

/// Informational rows: the analysis rule (threshold 0) in their own Holm family.
fn decide_informational(rows: &mut [Row], alpha: f64) {
    let info: Vec<usize> = (0..rows.len())
        .filter(|&i| !rows[i].gates() && rows[i].verdict != Verdict::NotComparable)
        .collect();
    let ps: Vec<f64> = info
        .iter()
        .map(|&i| {
            rows[i]
                .result
                .test
                .as_ref()
                .map(|t| t.p)
                .unwrap_or(f64::NAN)
        })
        .collect();
    for (k, p) in stats::holm(&ps).into_iter().enumerate() {
        let r = &mut rows[info[k]];
        r.p_holm = Some(p).filter(|p| !p.is_nan());
        r.verdict = match engine::decide(&r.result, r.p_holm, 0.0, alpha) {
            Decision::Worse => Verdict::Regression,
            Decision::Better => Verdict::Improved,
            Decision::Inconclusive | Decision::Constant => {
                r.why = r.result.note.clone();
                Verdict::Undecided
            }
            Decision::OtherWorkload => Verdict::NotComparable,
            Decision::NoChange | Decision::Changed | Decision::WithinThreshold => Verdict::NoChange,
        };
    }
}

/// Per cell, its failed and cold call shares against the window's nights.
fn call_shares(
    keys: &[&str],
    current: &LoadedRun,
    window: &[LoadedRun],
    s: &Settings,
) -> Vec<ShareRow> {
    keys.iter()
        .flat_map(|key| {
            let now = current.samples.group(key).map(|g| g.counts.clone());
            let refs: Vec<_> = window
                .iter()
                .filter_map(|r| r.samples.group(key).map(|g| g.counts.clone()))
                .collect();
            now.map(|n| {
                shares::rows(
                    key,
                    &n,
                    &refs,
                    s.max_failed_share,
                    s.max_slo_miss_share,
                    s.alpha,
                )
            })
            .unwrap_or_default()
        })
        .collect()
}

/// Groups that ran but have no measured calls, with why.
fn empty_groups<'a>(runs: impl Iterator<Item = &'a LoadedRun>) -> Vec<String> {
    runs.flat_map(|run| {
        run.samples.empty_groups().into_iter().map(|g| {
            format!(
                "{} in {} ({})",
                g.key,
                run.manifest.run_id,
                g.counts.exclusions()
            )
        })
    })
    .collect()
}

/// What one baseline night assumes, for the notes.
fn one_night_note(have: usize) -> String {
    let more = MIN_HISTORY.saturating_sub(have).max(1);
    format!(
        "compared with one baseline night: the false-alarm rate assumes no night-to-night \
         variance (a reboot, clocks, thermal state or another tenant would count as a change); \
         {more} stored night{} more make it honest (≥ {MIN_HISTORY} nights: `sweep baseline \
         save` every compared night)",
        if more == 1 { "" } else { "s" }
    )
}

fn judge(
    nights: &Nights,
    current: &LoadedRun,
    s: &Settings,
    history_mode: bool,
) -> Result<Comparison, GateError> {
    if !stats::is_open_unit(s.alpha) {
        return Err(GateError::BadAlpha(s.alpha));
    }
    let params = Params {
        resamples: s.resamples,
        ..Params::gate(s.alpha, s.seed)
    };
    let newest = nights
        .window
        .last()
        .ok_or_else(|| GateError::NoHistory(String::new()))?;
    let use_history = history_mode && nights.window.len() >= MIN_HISTORY;
    // Too short a history: the baseline directory's current entry (the newest clean pass),
    // else the newest night.
    let fallback = nights.current.as_ref().unwrap_or(newest);
    let reference_run = if use_history { newest } else { fallback };
    let mut notes: Vec<String> = nights
        .window
        .iter()
        .flat_map(|r| r.notes.iter())
        .chain(&current.notes)
        .cloned()
        .collect();
    notes.dedup();
    let mut cmp = Comparison {
        method: Method::TwoRuns,
        baseline: RunSummary::of(reference_run),
        current: RunSummary::of(current),
        settings: s.clone(),
        params: params.clone(),
        gating_tests: 0,
        env_differences: nights.env_differences.clone(),
        rows: Vec::new(),
        shares: Vec::new(),
        capacity: Vec::new(),
        shifts: Vec::new(),
        notes: Vec::new(),
        outcome: Outcome::Pass,
    };
    if !cmp.env_differences.is_empty() && !s.allow_env_change {
        cmp.outcome = Outcome::NotComparable {
            differences: cmp.env_differences.clone(),
        };
        cmp.notes = notes;
        return Ok(cmp);
    }
    if !use_history {
        notes.push(one_night_note(nights.window.len()));
    }
    // Cells on one side only.
    let reference_keys: BTreeSet<&str> = nights.window.iter().flat_map(group_keys).collect();
    let current_keys = group_keys(current);
    let mut missing = Vec::new();
    for k in current_keys.difference(&reference_keys) {
        missing.push(format!("{k} (new, not in the baseline)"));
    }
    for k in group_keys(reference_run).difference(&current_keys) {
        missing.push(format!("{k} (missing from the current run)"));
    }
    notes.extend(missing.iter().map(|m| format!("cell {m}")));

    let src = Sources {
        window: if use_history {
            &nights.window
        } else {
            std::slice::from_ref(fallback)
        },
        anchor: &nights.anchor,
        fallback,
        use_history,
    };
    let keys: Vec<&str> = current_keys
        .intersection(&reference_keys)
        .copied()
        .collect();
    let (mut rows, row_nights, short_rows) = build_rows(&keys, current, &src, s, &params);
    if short_rows > 0 {
        notes.push(format!(
            "{short_rows} gating row(s) had fewer than {MIN_HISTORY} nights with enough reps: \
             compared with one baseline night, which assumes no night-to-night variance"
        ));
    }
    let (family, planned) = decide_gating(&mut rows, &row_nights, s.alpha, s.seed);
    decide_informational(&mut rows, s.alpha);
    let share_rows = call_shares(&keys, current, src.window, s);
    let window: Vec<(String, &[Capacity])> = src
        .window
        .iter()
        .map(|r| (r.manifest.run_id.clone(), r.capacity.as_slice()))
        .collect();
    let capacity_rows = capacity::rows(&current.capacity, &window, s.alpha);
    rows.sort_by(|a, b| {
        b.fails()
            .cmp(&a.fails())
            .then(b.gates().cmp(&a.gates()))
            .then(a.verdict.cmp(&b.verdict))
            .then(b.badness().total_cmp(&a.badness()))
            .then(a.cell.cmp(&b.cell))
            .then(a.metric.cmp(&b.metric))
    });
    let empty = empty_groups(src.window.iter().chain(std::iter::once(current)));
    cmp.outcome = outcome_of(&rows, &share_rows, &capacity_rows, &missing, &empty);
    if use_history {
        cmp.method = Method::History {
            runs: nights
                .window
                .iter()
                .map(|r| r.manifest.run_id.clone())
                .collect(),
            anchor: nights
                .anchor
                .iter()
                .map(|r| r.manifest.run_id.clone())
                .collect(),
            nights: planned.nights,
        };
    }
    cmp.gating_tests = family;
    cmp.rows = rows;
    cmp.shares = share_rows;
    cmp.capacity = capacity_rows;
    cmp.shifts = planned.shifts;
    cmp.notes = notes;
    Ok(cmp)
}

/// Regression beats undecided beats pass.
fn outcome_of(
    rows: &[Row],
    shares: &[ShareRow],
    capacity: &[capacity::CapacityRow],
    missing: &[String],
    empty: &[String],
) -> Outcome {
    let failing = rows.iter().filter(|r| r.fails()).count()
        + shares.iter().filter(|s| s.fails).count()
        + capacity.iter().filter(|c| c.fails).count();
    if failing > 0 {
        return Outcome::Regression { rows: failing };
    }
    let mut reasons = Vec::new();
    let undecided: Vec<&Row> = rows
        .iter()
        .filter(|r| r.gates() && r.verdict == Verdict::Undecided)
        .collect();
    if let Some(first) = undecided.first() {
        reasons.push(format!(
            "{} of {} gating rows undecided (e.g. {} {}: {})",
            undecided.len(),
            rows.iter().filter(|r| r.gates()).count(),
            first.cell,
            first.metric,
            first.why.as_deref().unwrap_or("no test")
        ));
    }
    // A capacity that could not be tested compared nothing: it must not pass silently.
    let untested: Vec<&capacity::CapacityRow> = capacity.iter().filter(|c| c.untested()).collect();
    if let Some(first) = untested.first() {
        reasons.push(format!(
            "capacity untested in {} of {} configuration(s) (e.g. {}: {})",
            untested.len(),
            capacity.len(),
            first.configuration,
            first.why.as_deref().unwrap_or_default()
        ));
    }
    if !rows.iter().any(|r| r.gates()) {
        reasons.push(
            "no gating row: no metric has a threshold, or there was nothing to compare".into(),
        );
    }
    if !missing.is_empty() {
        reasons.push(format!(
            "{} cell(s) on one side only: {}",
            missing.len(),
            missing.join(", ")
        ));
    }
    if !empty.is_empty() {
        reasons.push(format!(
            "nothing measured in {} cell(s): {}",
            empty.len(),
            empty.join("; ")
        ));
    }
    if reasons.is_empty() {
        Outcome::Pass
    } else {
        Outcome::Undecided { reasons }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A capacity row that could not be tested (too few reps) compared nothing: with no
    /// other problem the outcome is undecided and names it, never a pass.
    #[test]
    fn an_untested_capacity_is_undecided_not_a_pass() {
        let row = capacity::CapacityRow {
            configuration: "baseline num_ctx=512".into(),
            level_name: "agents".into(),
            current: vec![2.0],
            reference: vec![("night-1".into(), vec![2.0])],
            p: None,
            p_holm: None,
            fails: false,
            why: Some("1 rep tonight, 3 needed".into()),
        };
        let outcome = outcome_of(&[], &[], std::slice::from_ref(&row), &[], &[]);
        let Outcome::Undecided { reasons } = outcome else {
            panic!("expected undecided, got {outcome:?}");
        };
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("capacity untested in 1 of 1")
                    && r.contains("baseline num_ctx=512")),
            "{reasons:?}"
        );
        let tested = capacity::CapacityRow { why: None, ..row };
        let outcome = outcome_of(&[], &[], &[tested], &[], &[]);
        let Outcome::Undecided { reasons } = outcome else {
            panic!("expected undecided (no gating row), got {outcome:?}");
        };
        assert!(!reasons.iter().any(|r| r.contains("capacity untested")));
    }
}
