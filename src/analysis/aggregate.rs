//! The polars half of the analysis: per-cell counts, per-repetition summaries (the unit
//! of the statistics) and request-level distributions. Everything here is one lazy
//! query each, so a parquet scan reads only the columns it needs.

use super::metrics::Metric;
use super::AnalysisError;
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

/// One row per cell: arm, first order index, and how many calls each rule excluded.
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
            col("rep")
                .filter(measured())
                .n_unique()
                .cast(DataType::UInt32)
                .alias("reps"),
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

/// One row per (cell, rep): the rep's value of every metric over its measured calls.
pub fn per_rep(lf: LazyFrame) -> Result<DataFrame, AnalysisError> {
    let tokens = col("output_tokens").cast(DataType::Float64);
    let client_decode_s = (col("e2e_ms") - col("ttft_ms")) / lit(1000.0);
    let mut aggs = Vec::new();
    for m in Metric::ALL {
        let e = match m {
            Metric::DecodeTps => {
                let has = col("eval_ms")
                    .is_not_null()
                    .and(tokens.clone().is_not_null());
                tokens.clone().filter(has.clone()).sum()
                    / (col("eval_ms").filter(has) / lit(1000.0)).sum()
            }
            Metric::E2eTps => {
                let has = client_decode_s
                    .clone()
                    .is_not_null()
                    .and(tokens.clone().is_not_null());
                tokens.clone().filter(has.clone()).sum() / client_decode_s.clone().filter(has).sum()
            }
            Metric::OutputTokens => tokens.clone().median(),
            _ => col(m.name()).median(),
        };
        aggs.push(e.alias(m.name()));
    }
    Ok(lf
        .filter(measured())
        .group_by([col("cell_id"), col("rep")])
        .agg(aggs)
        .sort(["cell_id", "rep"], SortMultipleOptions::default())
        .collect()?)
}

/// Name of a request-level statistic column: `ttft_ms__p95`.
pub fn req_col(m: Metric, stat: &str) -> String {
    format!("{}__{stat}", m.name())
}

/// One row per cell: the request-level (per call) distribution of every metric.
pub fn request_level(lf: LazyFrame, metrics: &[Metric]) -> Result<DataFrame, AnalysisError> {
    let mut aggs = Vec::new();
    for &m in metrics {
        let c = col(m.name()).cast(DataType::Float64);
        aggs.push(
            c.clone()
                .count()
                .cast(DataType::UInt32)
                .alias(req_col(m, "n")),
        );
        aggs.push(c.clone().mean().alias(req_col(m, "mean")));
        aggs.push(c.clone().std(1).alias(req_col(m, "sd")));
        aggs.push(c.clone().median().alias(req_col(m, "median")));
        for (name, p) in PERCENTILES {
            aggs.push(
                c.clone()
                    .quantile(lit(p), QuantileMethod::Linear)
                    .alias(req_col(m, name)),
            );
        }
        aggs.push(c.clone().min().alias(req_col(m, "min")));
        aggs.push(c.max().alias(req_col(m, "max")));
    }
    Ok(lf
        .filter(measured())
        .group_by([col("cell_id")])
        .agg(aggs)
        .sort(["cell_id"], SortMultipleOptions::default())
        .collect()?)
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
