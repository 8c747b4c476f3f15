//! Paper output from a stored run: tables (`tables/*.md|tex|csv|json`) rendered from the
//! analysis' tidy frame, and SVG plots (`plots/*.svg`). No CLI parsing here: the CLI
//! builds [`ReportOptions`] and calls [`render`].

pub mod escape;
pub mod export;
pub mod plots;
pub mod tables;

pub use export::{Exporter, Format};

use crate::analysis::{self, AnalysisError, AnalysisOptions, Metric};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a report could not be written.
#[derive(Debug, Error)]
pub enum ReportError {
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("plot {0}: {1}")]
    Plot(PathBuf, String),
    #[error("unknown axis `{0}` for --group-by/--columns (known: arm, {1})")]
    UnknownAxis(String, String),
    #[error("polars: {0}")]
    Polars(#[from] PolarsError),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// What to render.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportOptions {
    pub formats: Vec<Format>,
    /// Axes (`arm` or a factor such as `temperature`) that split the tables into
    /// sections; the remaining factors are columns.
    pub group_by: Vec<String>,
    /// An axis whose values become columns (the paper layout), written as extra tables
    /// `tables/<metric>_by_<axis>.*`.
    pub columns: Option<String>,
    pub metrics: Vec<Metric>,
    pub alpha: f64,
    /// Reference arm override (else the manifest's).
    pub reference: Option<String>,
    pub plots: bool,
    /// Report a partial merge or an unfinished run.
    pub allow_partial: bool,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            formats: Format::TABLES.to_vec(),
            group_by: Vec::new(),
            columns: None,
            metrics: vec![Metric::TtftMs, Metric::E2eMs, Metric::DecodeTps],
            alpha: 0.05,
            reference: None,
            plots: true,
            allow_partial: false,
        }
    }
}

fn write(path: PathBuf, text: &str, out: &mut Vec<PathBuf>) -> Result<(), ReportError> {
    crate::store::atomic::write_atomic(&path, text.as_bytes()).map_err(AnalysisError::from)?;
    out.push(path);
    Ok(())
}

/// Analyses the run (refreshing `analysis/`) and writes tables and plots into it.
/// Returns every file written.
pub fn render(run_dir: &Path, opts: &ReportOptions) -> Result<Vec<PathBuf>, ReportError> {
    render_run(run_dir, opts).map(|(paths, _)| paths)
}

/// [`render`], also returning the analysis the tables were made from.
pub fn render_run(
    run_dir: &Path,
    opts: &ReportOptions,
) -> Result<(Vec<PathBuf>, analysis::Analysis), ReportError> {
    let aopts = AnalysisOptions {
        reference: opts.reference.clone(),
        alpha: opts.alpha,
        allow_partial: opts.allow_partial,
        ..AnalysisOptions::default()
    };
    let a = analysis::analyze(run_dir, &aopts)?;
    let paths = render_analysis(run_dir, &a, opts)?;
    Ok((paths, a))
}

/// Writes the tables and plots of an analysis already made.
pub fn render_analysis(
    run_dir: &Path,
    a: &analysis::Analysis,
    opts: &ReportOptions,
) -> Result<Vec<PathBuf>, ReportError> {
    let known = tables::factor_names(a);
    for g in opts.group_by.iter().chain(&opts.columns) {
        if g != "arm" && !known.contains(g) {
            return Err(ReportError::UnknownAxis(g.clone(), known.join(", ")));
        }
    }
    let mut out = Vec::new();
    let tdir = run_dir.join("tables");
    std::fs::create_dir_all(&tdir).map_err(|e| ReportError::Io(tdir.clone(), e))?;

    let mut all = Vec::new();
    for &m in &opts.metrics {
        let ts = tables::metric_tables(a, &[m], &opts.group_by);
        write_tables(&tdir, m.name(), &ts, &opts.formats, &mut out)?;
        all.extend(ts);
        if let Some(axis) = &opts.columns {
            let ts = tables::pivot_tables(a, &[m], axis, &opts.group_by);
            let stem = format!("{}_by_{axis}", m.name());
            write_tables(&tdir, &stem, &ts, &opts.formats, &mut out)?;
            all.extend(ts);
        }
    }
    if let Some(t) = tables::num_gpu_table(a, &crate::telemetry::cell_placements(run_dir)) {
        write_tables(
            &tdir,
            "num_gpu",
            std::slice::from_ref(&t),
            &opts.formats,
            &mut out,
        )?;
        all.push(t);
    }
    if let Some(t) = tables::pair_table(a) {
        write_tables(
            &tdir,
            "pairs",
            std::slice::from_ref(&t),
            &opts.formats,
            &mut out,
        )?;
        all.push(t);
    }
    if opts.formats.contains(&Format::Latex) {
        write(
            tdir.join("all.tex"),
            &export::latex::latex_document(&all),
            &mut out,
        )?;
    }
    if opts.formats.contains(&Format::Json) {
        let tidy = serde_json::to_string_pretty(&a.tidy())?;
        write(tdir.join("tidy.json"), &tidy, &mut out)?;
    }
    if opts.formats.contains(&Format::Csv) {
        write(
            tdir.join("tidy.csv"),
            &analysis::tidy_csv(&a.tidy()),
            &mut out,
        )?;
    }

    if opts.plots {
        let pdir = run_dir.join("plots");
        std::fs::create_dir_all(&pdir).map_err(|e| ReportError::Io(pdir.clone(), e))?;
        let calls = measured_calls(run_dir)?;
        let p = pdir.join("ttft_ecdf.svg");
        plots::ttft_ecdf(&p, &calls.ttft_by_arm)?;
        out.push(p);
        let labels: BTreeMap<&str, String> = a
            .cells
            .iter()
            .map(|c| {
                (
                    c.cell_id.as_str(),
                    format!("{}: {}", c.arm, c.factor_label()),
                )
            })
            .collect();
        let boxes: Vec<(String, Vec<f64>)> = a
            .cells
            .iter()
            .filter_map(|c| {
                calls
                    .decode_by_cell
                    .get(&c.cell_id)
                    .map(|v| (labels[c.cell_id.as_str()].clone(), v.clone()))
            })
            .collect();
        let p = pdir.join("decode_tps_box.svg");
        plots::throughput_boxes(&p, &boxes, "decode throughput (tok/s, server clock)")?;
        out.push(p);
        for m in [Metric::TtftMs, Metric::DecodeTps] {
            let p = pdir.join(format!("{}_vs_num_ctx.svg", m.name()));
            if plots::metric_vs_ctx(&p, a, m)? {
                out.push(p);
            }
        }
        let p = pdir.join("num_gpu.svg");
        if plots::num_gpu_plot(&p, a)? {
            out.push(p);
        }
    }
    Ok(out)
}

fn write_tables(
    dir: &Path,
    stem: &str,
    ts: &[tables::Table],
    formats: &[Format],
    out: &mut Vec<PathBuf>,
) -> Result<(), ReportError> {
    for &f in formats {
        if let Some(text) = f.exporter().tables(ts) {
            write(dir.join(format!("{stem}.{}", f.ext())), &text, out)?;
        }
    }
    Ok(())
}

/// Request-level values the plots need (measured calls only).
struct Calls {
    ttft_by_arm: BTreeMap<String, Vec<f64>>,
    decode_by_cell: BTreeMap<String, Vec<f64>>,
}

fn measured_calls(run_dir: &Path) -> Result<Calls, ReportError> {
    let manifest = crate::store::Manifest::read(run_dir).map_err(AnalysisError::from)?;
    let loaded = crate::store::columnar::load(run_dir, &manifest).map_err(AnalysisError::from)?;
    let df = analysis::samples::with_defaults(loaded.frame)?
        .filter(analysis::measured())
        .select([
            col("arm"),
            col("cell_id"),
            col("ttft_ms"),
            col("decode_tps"),
        ])
        .collect()?;
    let arm = df.column("arm")?.str()?.clone();
    let cell = df.column("cell_id")?.str()?.clone();
    let ttft = df.column("ttft_ms")?.f64()?.clone();
    let dec = df.column("decode_tps")?.f64()?.clone();
    let mut c = Calls {
        ttft_by_arm: BTreeMap::new(),
        decode_by_cell: BTreeMap::new(),
    };
    for (((a, id), t), d) in arm.iter().zip(cell.iter()).zip(ttft.iter()).zip(dec.iter()) {
        if let (Some(a), Some(t)) = (a, t) {
            c.ttft_by_arm.entry(a.to_string()).or_default().push(t);
        }
        if let (Some(id), Some(d)) = (id, d) {
            c.decode_by_cell.entry(id.to_string()).or_default().push(d);
        }
    }
    Ok(c)
}
