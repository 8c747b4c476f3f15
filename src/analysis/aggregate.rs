//! The polars half of the analysis: per-cell counts, per-repetition summaries (the unit
//! of the statistics) and request-level distributions. Everything here is one lazy
//! query each, so a parquet scan reads only the columns it needs.

use super::metrics::Metric;
use super::AnalysisError;
use crate::stats::select_quantiles;
use polars::prelude::*;

/// Probabilities of the reported percentiles (type 7 = polars `QuantileMethod::Linear`).
pub const PERCENTILES: [(&str, f64); 5] = [
    ("p5", 0.05),
    ("p25", 0.25),
    ("p75", 0.75),
    ("p95", 0.95),
    ("p99", 0.99),
];

/// A call counts in the statistics when it is not warm-up, succeeded, is not a cold
/// (reload) call, and is not the sequential baseline of a pair (that phase exists only
/// to measure speedup).
pub fn measured() -> Expr {
    col("warmup")
        .not()
        .and(col("ok"))
        .and(col("cold").not())
        .and(col("phase").neq(lit("sequential")))
}

fn count_true(e: Expr) -> Expr {
    e.cast(DataType::UInt32).sum()
}

/// One row per cell: arm, first order index, and how many calls each rule excluded. (The
/// number of measured reps comes from [`distributions`], which groups by rep anyway.)
pub fn cell_counts(lf: LazyFrame) -> Result<DataFrame, AnalysisError> {
    Ok(lf
        .group_by([col("cell_id")])
        .agg([
            col("arm").first().alias("arm"),
            col("order").min().alias("first_order"),
            col("ok").len().cast(DataType::UInt32).alias("calls"),
            count_true(col("warmup")).alias("warmup"),
            count_true(col("warmup").not().and(col("cold"))).alias("cold"),
            count_true(col("warmup").not().and(col("ok").not())).alias("failed"),
            count_true(measured()).alias("measured"),
        ])
        .sort(["first_order", "cell_id"], SortMultipleOptions::default())
        .collect()?)
}

/// One row per (cell, agent): that agent's options (JSON text) — the factor values.
pub fn cell_options(lf: LazyFrame) -> Result<DataFrame, AnalysisError> {
    Ok(lf
        .group_by([col("cell_id"), col("agent")])
        .agg([col("options").first().alias("options")])
        .sort(["cell_id", "agent"], SortMultipleOptions::default())
        .collect()?)
}

/// The per-repetition values and the request-level distributions, from one pass over the
/// measured calls.
pub struct Distributions {
    /// One row per (cell, rep): `cell_id`, `rep`, then every metric of [`Metric::ALL`].
    pub per_rep: DataFrame,
    /// One row per cell: `cell_id`, then [`req_col`]`(m, stat)` for each requested metric.
    pub request: DataFrame,
}

/// Polars filters the measured calls, projects the columns and finds the (cell, rep) groups;
/// the statistics then run on contiguous slices, one cell per task: every metric's values
/// are gathered once per cell, per-rep medians are selected in place on each rep's slice, and
/// the request-level order statistics on the whole cell by one multi-selection. (Polars'
/// grouped median/quantile gathered the values once per statistic: seven gathers and
/// selections per metric, 2.3 s of the 5.5 s 10M-record analysis.) Non-finite values count as
/// missing.
pub fn distributions(lf: LazyFrame, metrics: &[Metric]) -> Result<Distributions, AnalysisError> {
    let value_cols: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
    let mut measured_rows = lf
        .filter(measured())
        .select(
            [col("cell_id"), col("rep").cast(DataType::UInt32)]
                .into_iter()
                .chain(value_cols.iter().map(|&c| col(c).cast(DataType::Float64)))
                .collect::<Vec<_>>(),
        )
        .collect()?;
    measured_rows.rechunk_mut_par();
    let groups = RepGroups::of(
        measured_rows.column("cell_id")?.str()?,
        measured_rows.column("rep")?.u32()?,
    );
    let columns: Vec<Values> = value_cols
        .iter()
        .map(|&c| Values::of(measured_rows.column(c)?.f64()?))
        .collect::<Result<_, AnalysisError>>()?;
    let column = |m: Metric| &columns[Metric::ALL.iter().position(|&x| x == m).unwrap_or(0)];

    use rayon::prelude::*;
    let per_cell: Vec<CellDistributions> = groups
        .cells
        .par_iter()
        .map(|&(start, end)| {
            let reps: Vec<&[IdxSize]> = (start..end).map(|g| groups.rows(g)).collect();
            cell_distributions(&reps, &column, metrics)
        })
        .collect();

    // Assemble the two frames in (cell_id, rep) and cell_id order.
    let mut rep_values: Vec<Vec<Option<f64>>> = (0..Metric::ALL.len())
        .map(|_| Vec::with_capacity(groups.len()))
        .collect();
    for cell in &per_cell {
        for (k, vals) in cell.per_rep.iter().enumerate() {
            rep_values[k].extend_from_slice(vals);
        }
    }
    let group_cells: Vec<&str> = (0..groups.len()).map(|g| groups.cell(g)).collect();
    let group_reps: Vec<u32> = (0..groups.len()).map(|g| groups.rep(g)).collect();
    let mut per_rep_cols: Vec<Column> = vec![
        Series::new("cell_id".into(), &group_cells).into(),
        Series::new("rep".into(), &group_reps).into(),
    ];
    for (m, vals) in Metric::ALL.iter().zip(rep_values) {
        per_rep_cols.push(Series::new(m.name().into(), vals).into());
    }
    let request_ids: Vec<&str> = groups.cells.iter().map(|&(s, _)| groups.cell(s)).collect();
    let mut request_cols: Vec<Column> = vec![Series::new("cell_id".into(), request_ids).into()];
    for (k, &m) in metrics.iter().enumerate() {
        for (j, stat) in super::request_stats().iter().enumerate() {
            let vals: Vec<Option<f64>> = per_cell.iter().map(|c| c.request[k][j]).collect();
            request_cols.push(Series::new(req_col(m, stat).into(), vals).into());
        }
    }
    Ok(Distributions {
        per_rep: DataFrame::new(groups.len(), per_rep_cols)?,
        request: DataFrame::new(groups.cells.len(), request_cols)?,
    })
}

/// A float column, read in place when it has no nulls; NaN for null and non-finite values.
struct Values<'a> {
    values: std::borrow::Cow<'a, [f64]>,
}

impl<'a> Values<'a> {
    fn of(ca: &'a Float64Chunked) -> Result<Self, AnalysisError> {
        let values = match ca.cont_slice() {
            Ok(s) if ca.null_count() == 0 => std::borrow::Cow::Borrowed(s),
            _ => std::borrow::Cow::Owned(ca.iter().map(|v| v.unwrap_or(f64::NAN)).collect()),
        };
        Ok(Self { values })
    }

    #[inline]
    fn get(&self, row: IdxSize) -> f64 {
        let v = self.values[row as usize];
        if v.is_finite() {
            v
        } else {
            f64::NAN
        }
    }
}

/// The measured rows grouped by (cell, rep), groups sorted by cell id then rep. Rows arrive
/// in run order, so consecutive rows mostly share a cell and rep: each row costs a string
/// comparison with its predecessor, and a hash lookup only where the cell or rep changes.
struct RepGroups<'a> {
    /// Cell id and rep of each group.
    keys: Vec<(&'a str, u32)>,
    /// Rows of group g: `flat[offsets[g]..offsets[g + 1]]`.
    flat: Vec<IdxSize>,
    offsets: Vec<usize>,
    /// Each cell's groups: [start, end) into the groups.
    cells: Vec<(usize, usize)>,
}

impl<'a> RepGroups<'a> {
    fn of(cell_ids: &'a StringChunked, reps: &'a UInt32Chunked) -> Self {
        use std::collections::HashMap;
        let mut index: HashMap<(&'a str, u32), u32> = HashMap::new();
        let mut keys: Vec<(&'a str, u32)> = Vec::new();
        let mut group_of_row: Vec<u32> = Vec::with_capacity(cell_ids.len());
        let mut prev: Option<((&'a str, u32), u32)> = None;
        for (cell, rep) in cell_ids.iter().zip(reps.iter()) {
            let key = (cell.unwrap_or(""), rep.unwrap_or(0));
            let g = match prev {
                Some((k, g)) if k == key => g,
                _ => {
                    let g = *index.entry(key).or_insert_with(|| {
                        keys.push(key);
                        (keys.len() - 1) as u32
                    });
                    prev = Some((key, g));
                    g
                }
            };
            group_of_row.push(g);
        }
        // Sort the groups by (cell id, rep) and lay their rows out contiguously.
        let mut order: Vec<u32> = (0..keys.len() as u32).collect();
        order.sort_by(|&a, &b| keys[a as usize].cmp(&keys[b as usize]));
        let mut rank = vec![0u32; keys.len()];
        for (r, &g) in order.iter().enumerate() {
            rank[g as usize] = r as u32;
        }
        let mut counts = vec![0usize; keys.len()];
        for g in &mut group_of_row {
            *g = rank[*g as usize];
            counts[*g as usize] += 1;
        }
        let mut offsets = Vec::with_capacity(keys.len() + 1);
        offsets.push(0);
        for c in &counts {
            offsets.push(offsets.last().copied().unwrap_or(0) + c);
        }
        let mut next = offsets.clone();
        let mut flat: Vec<IdxSize> = vec![0; group_of_row.len()];
        for (row, &g) in group_of_row.iter().enumerate() {
            flat[next[g as usize]] = row as IdxSize;
            next[g as usize] += 1;
        }
        let keys: Vec<(&'a str, u32)> = order.iter().map(|&g| keys[g as usize]).collect();
        let mut cells: Vec<(usize, usize)> = Vec::new();
        for (g, key) in keys.iter().enumerate() {
            match cells.last_mut() {
                Some(last) if keys[last.0].0 == key.0 => last.1 = g + 1,
                _ => cells.push((g, g + 1)),
            }
        }
        Self {
            keys,
            flat,
            offsets,
            cells,
        }
    }

    fn len(&self) -> usize {
        self.keys.len()
    }
    fn rows(&self, g: usize) -> &[IdxSize] {
        &self.flat[self.offsets[g]..self.offsets[g + 1]]
    }
    fn cell(&self, g: usize) -> &'a str {
        self.keys[g].0
    }
    fn rep(&self, g: usize) -> u32 {
        self.keys[g].1
    }
}

/// One cell's results: per metric of [`Metric::ALL`] its per-rep values; per requested
/// metric the request-level statistics in [`super::request_stats`] order.
struct CellDistributions {
    per_rep: Vec<Vec<Option<f64>>>,
    request: Vec<Vec<Option<f64>>>,
}

fn cell_distributions<'v>(
    reps: &[&[IdxSize]],
    column: &impl Fn(Metric) -> &'v Values<'v>,
    metrics: &[Metric],
) -> CellDistributions {
    let tokens = column(Metric::OutputTokens);
    let mut per_rep = Vec::with_capacity(Metric::ALL.len());
    let mut request = vec![Vec::new(); metrics.len()];
    let mut values: Vec<f64> = Vec::new();
    let mut bounds: Vec<(usize, usize)> = Vec::with_capacity(reps.len());
    for m in Metric::ALL {
        let col = column(m);
        // The cell's values, rep after rep.
        values.clear();
        bounds.clear();
        for rows in reps {
            let start = values.len();
            values.extend(rows.iter().map(|&r| col.get(r)).filter(|v| !v.is_nan()));
            bounds.push((start, values.len()));
        }
        let rep_vals: Vec<Option<f64>> = match m {
            // Token-weighted: Σ tokens / Σ decode seconds over calls that have both.
            Metric::DecodeTps => {
                let eval = column(Metric::EvalMs);
                reps.iter()
                    .map(|rows| ratio_of_sums(rows, tokens, |r| eval.get(r) / 1000.0))
                    .collect()
            }
            Metric::E2eTps => {
                let (e2e, ttft) = (column(Metric::E2eMs), column(Metric::TtftMs));
                reps.iter()
                    .map(|rows| {
                        ratio_of_sums(rows, tokens, |r| (e2e.get(r) - ttft.get(r)) / 1000.0)
                    })
                    .collect()
            }
            _ => bounds
                .iter()
                .map(|&(s, e)| select_quantiles(&mut values[s..e], &[0.5]).map(|q| q[0]))
                .collect(),
        };
        per_rep.push(rep_vals);
        if let Some(k) = metrics.iter().position(|&x| x == m) {
            request[k] = request_stats_of(&mut values);
        }
    }
    CellDistributions { per_rep, request }
}

/// Σ tokens / Σ seconds over the rows where both are present (NaN when nothing is).
fn ratio_of_sums(
    rows: &[IdxSize],
    tokens: &Values,
    seconds: impl Fn(IdxSize) -> f64,
) -> Option<f64> {
    let (mut num, mut den) = (0.0, 0.0);
    for &r in rows {
        let (t, s) = (tokens.get(r), seconds(r));
        if !t.is_nan() && !s.is_nan() {
            num += t;
            den += s;
        }
    }
    Some(num / den)
}

/// n, mean, sd (n − 1), median, p5, p25, p75, p95, p99, min, max of `v` (reordered).
fn request_stats_of(v: &mut [f64]) -> Vec<Option<f64>> {
    let n = v.len();
    if n == 0 {
        let mut out = vec![None; 11];
        out[0] = Some(0.0);
        return out;
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    let sd = (n > 1).then(|| {
        let ss: f64 = v.iter().map(|x| (x - mean) * (x - mean)).sum();
        (ss / (n - 1) as f64).sqrt()
    });
    let probs: Vec<f64> = std::iter::once(0.5)
        .chain(PERCENTILES.iter().map(|&(_, p)| p))
        .chain([0.0, 1.0])
        .collect();
    let q = select_quantiles(v, &probs).unwrap_or_default();
    let mut out = vec![Some(n as f64), Some(mean), sd];
    out.extend(q.into_iter().map(Some));
    out
}

/// Name of a request-level statistic column: `ttft_ms__p95`.
pub fn req_col(m: Metric, stat: &str) -> String {
    format!("{}__{stat}", m.name())
}

/// Values of a numeric column as `Option<f64>` (nulls kept).
pub fn f64_col(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>, AnalysisError> {
    let c = df.column(name)?.cast(&DataType::Float64)?;
    Ok(c.f64()?.iter().collect())
}

/// Values of a string column.
pub fn str_col(df: &DataFrame, name: &str) -> Result<Vec<String>, AnalysisError> {
    Ok(df
        .column(name)?
        .str()?
        .iter()
        .map(|s| s.unwrap_or_default().to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn request_stats_match_summaries(v in prop::collection::vec(-1e3f64..1e3, 2..200)) {
            let s = stats::summarize(&v).unwrap();
            let got = request_stats_of(&mut v.clone());
            let want = [
                v.len() as f64, s.mean, s.sd.unwrap(), s.median, s.p5, s.p25, s.p75, s.p95, s.p99,
                s.min, s.max,
            ];
            for (g, w) in got.iter().zip(want) {
                prop_assert!((g.unwrap() - w).abs() < 1e-9 * (1.0 + w.abs()), "{g:?} vs {w}");
            }
        }
    }

    #[test]
    fn empty_and_single_values() {
        let empty = request_stats_of(&mut []);
        assert_eq!(empty[0], Some(0.0));
        assert!(empty[1..].iter().all(Option::is_none));
        let one = request_stats_of(&mut [2.0]);
        assert_eq!(one[2], None, "no sd from one value");
        assert_eq!(one[3], Some(2.0));
    }
}
