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
    pub cell_id: String,
    pub arm: String,
    pub factors: String,
    pub metric: String,
    pub statistic: String,
    pub value: Option<f64>,
    pub note: String,
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
            ("measured", k.measured),
            ("reps", k.reps),
        ] {
            s.push("calls", stat, Some(v as f64), "");
        }
        for m in &c.metrics {
            let name = m.metric.name();
            s.rep_stats(name, &m.stats);
            for (stat, v) in &m.request {
                s.push(name, &format!("req_{stat}"), *v, "");
            }
            if let Some(cmp) = a.comparison(&c.cell_id, m.metric) {
                let note = cmp.ratio.reason().unwrap_or("").to_string();
                match cmp.delta_pct() {
                    Some((d, lo, hi)) => {
                        s.push(name, "delta_pct", Some(d), "");
                        s.push(name, "delta_pct_lo", Some(lo), "");
                        s.push(name, "delta_pct_hi", Some(hi), "");
                    }
                    None => s.push(name, "delta_pct", None, &note),
                }
                let (p, why) = opt(&cmp.mann_whitney, |t| t.p);
                s.push(name, "p_mwu", p, &why);
                let (p, why) = opt(&cmp.welch, |t| t.p);
                s.push(name, "p_welch", p, &why);
                s.push(name, "p_holm", cmp.p_holm, "");
                s.push(name, "p_bh", cmp.p_bh, "");
                let (v, why) = opt(&cmp.cliffs_delta, |v| *v);
                s.push(name, "cliffs_delta", v, &why);
                let (v, why) = opt(&cmp.hodges_lehmann, |v| *v);
                s.push(name, "hl_shift", v, &why);
                let (v, why) = opt(&cmp.cohens_d, |v| *v);
                s.push(name, "cohens_d", v, &why);
                s.push(name, "verdict", None, cmp.verdict.symbol());
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

/// Writes the tidy rows as CSV.
pub fn write_tidy_csv(path: &Path, rows: &[TidyRow]) -> Result<(), AnalysisError> {
    std::fs::write(path, tidy_csv(rows)).map_err(|e| AnalysisError::Io(path.to_path_buf(), e))
}
