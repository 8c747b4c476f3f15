//! The tidy frame: one row per cell × metric × statistic. Tables are rendered from it
//! and it is written as CSV/JSON so that any tool can regenerate a table.

use super::{Analysis, AnalysisError, Avail, RepStats};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// One statistic of one metric of one cell. `value` is `None` when unavailable, and
/// `note` then says why ("need ≥ 6 values, have 3"); verdicts live in `note` too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TidyRow {
    pub(crate) cell_id: String,
    pub(crate) arm: String,
    pub(crate) factors: String,
    pub(crate) metric: String,
    pub(crate) statistic: String,
    pub(crate) value: Option<f64>,
    pub(crate) note: String,
}

struct Sink<'a> {
    rows: Vec<TidyRow>,
    cell: &'a str,
    arm: &'a str,
    factors: String,
}

impl Sink<'_> {
    fn push(&mut self, metric: &str, stat: &str, value: Option<f64>, note: &str) {
        self.rows.push(TidyRow {
            cell_id: self.cell.to_string(),
            arm: self.arm.to_string(),
            factors: self.factors.clone(),
            metric: metric.to_string(),
            statistic: stat.to_string(),
            value,
            note: note.to_string(),
        });
    }

    fn rep_stats(&mut self, metric: &str, s: &RepStats) {
        match &s.summary {
            Avail::Value(v) => {
                for (k, x) in [
                    ("n", Some(v.n as f64)),
                    ("mean", Some(v.mean)),
                    ("sd", v.sd),
                    ("cv", v.cv),
                    ("median", Some(v.median)),
                    ("p5", Some(v.p5)),
                    ("p25", Some(v.p25)),
                    ("p75", Some(v.p75)),
                    ("p95", Some(v.p95)),
                    ("p99", Some(v.p99)),
                    ("min", Some(v.min)),
                    ("max", Some(v.max)),
                ] {
                    self.push(metric, k, x, "");
                }
            }
            Avail::Unavailable { unavailable } => self.push(metric, "n", Some(0.0), unavailable),
        }
        for (name, ci) in [("mean_ci", &s.mean_ci), ("median_ci", &s.median_ci)] {
            match ci {
                Avail::Value(i) => {
                    self.push(metric, &format!("{name}_lo"), Some(i.lower), "");
                    self.push(metric, &format!("{name}_hi"), Some(i.upper), "");
                }
                Avail::Unavailable { unavailable } => {
                    self.push(metric, &format!("{name}_lo"), None, unavailable);
                    self.push(metric, &format!("{name}_hi"), None, unavailable);
                }
            }
        }
        match &s.outliers {
            Avail::Value(t) => self.push(metric, "outliers", Some(t.outliers() as f64), ""),
            Avail::Unavailable { unavailable } => self.push(metric, "outliers", None, unavailable),
        }
    }
}

fn opt<T>(a: &Avail<T>, f: impl Fn(&T) -> f64) -> (Option<f64>, String) {
    match a {
        Avail::Value(v) => (Some(f(v)), String::new()),
        Avail::Unavailable { unavailable } => (None, unavailable.clone()),
    }
}

/// Builds the tidy rows of an analysis.
pub fn rows(a: &Analysis) -> Vec<TidyRow> {
    let mut out = Vec::new();
    for c in &a.cells {
        let mut s = Sink {
            rows: Vec::new(),
            cell: &c.cell_id,
            arm: &c.arm,
            factors: c.factor_label(),
        };
        let k = &c.counts;
        for (stat, v) in [
            ("calls", k.calls),
            ("warmup", k.warmup),
            ("cold", k.cold),
            ("failed", k.failed),
            ("superseded", k.superseded),
            ("measured", k.measured),
            ("reps", k.reps),
        ] {
            s.push("calls", stat, Some(v as f64), "");
        }
        for (reason, v) in &k.cold_by_reason {
            s.push("calls", &format!("cold_{reason}"), Some(f64::from(*v)), "");
        }
        for m in &c.metrics {
            let name = m.metric.name();
            s.push(name, "estimate", m.estimate, "");
            let (lo, why) = opt(&m.estimate_ci, |i| i.lower);
            s.push(name, "estimate_ci_lo", lo, &why);
            let (hi, why) = opt(&m.estimate_ci, |i| i.upper);
            s.push(name, "estimate_ci_hi", hi, &why);
            let (cov, why) = opt(&m.estimate_ci, |i| i.coverage);
            s.push(name, "estimate_ci_coverage", cov, &why);
            s.push(name, "complete_reps", Some(m.n_reps as f64), "");
            s.push(
                name,
                "incomplete_reps",
                Some(f64::from(m.incomplete_reps)),
                "reps left out: a call excluded or without this metric",
            );
            if !m.metric.is_pooled() {
                s.rep_stats(name, &m.stats);
            }
            for (stat, v) in &m.request {
                s.push(name, &format!("req_{stat}"), *v, "");
            }
            if let Some(cmp) = a.comparison(&c.cell_id, m.metric) {
                let r = &cmp.result;
                let note = r.note.clone().unwrap_or_default();
                match cmp.delta_pct() {
                    Some((d, lo, hi)) => {
                        s.push(name, "delta_pct", Some(d), "");
                        s.push(name, "delta_pct_lo", Some(lo), "");
                        s.push(name, "delta_pct_hi", Some(hi), "");
                    }
                    None => s.push(name, "delta_pct", None, &note),
                }
                let test = r.test.as_ref();
                s.push(
                    name,
                    "p",
                    test.map(|t| t.p),
                    test.map(|t| t.name.as_str()).unwrap_or(&note),
                );
                s.push(name, "p_mwu", r.p_mann_whitney, "");
                s.push(name, "p_holm", cmp.p_holm, "");
                s.push(name, "p_bh", cmp.p_bh, "");
                s.push(name, "cliffs_delta", r.cliffs_delta, "");
                s.push(name, "hl_shift", r.hodges_lehmann, "");
                s.push(name, "cohens_d", r.cohens_d, "");
                s.push(name, "verdict", None, super::reference::symbol(cmp.verdict));
            } else if c.is_reference {
                s.push(name, "verdict", None, "(ref)");
            }
        }
        if let Some(p) = a.pairs.iter().find(|p| p.cell_id == c.cell_id) {
            s.rep_stats("speedup", &p.speedup);
            s.rep_stats("efficiency", &p.efficiency);
            for (agent, st) in &p.contention {
                s.rep_stats(&format!("contention_{agent}"), st);
            }
        }
        out.extend(s.rows);
    }
    out
}

/// RFC 4180 field quoting.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The tidy rows as CSV text.
pub fn tidy_csv(rows: &[TidyRow]) -> String {
    let mut out = String::from("cell_id,arm,factors,metric,statistic,value,note\n");
    for r in rows {
        let v = r.value.map(|v| format!("{v}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{}",
            csv_field(&r.cell_id),
            csv_field(&r.arm),
            csv_field(&r.factors),
            csv_field(&r.metric),
            csv_field(&r.statistic),
            v,
            csv_field(&r.note)
        );
    }
    out
}

/// Writes the tidy rows as CSV (atomically).
pub fn write_tidy_csv(path: &Path, rows: &[TidyRow]) -> Result<(), AnalysisError> {
    crate::store::atomic::write_atomic(path, tidy_csv(rows).as_bytes())?;
    Ok(())
}
