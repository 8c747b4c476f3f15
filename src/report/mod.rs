//! Paper output from stored runs: tables (`tables/*.md|tex|csv|json`, `methods.md|tex`,
//! `all.tex`), SVG plots (`plots/*.svg`) and `report.html`. The tables are the experiment
//! file's `[[table]]` sections, or the default set when it declares none. No CLI parsing
//! here: the CLI builds [`ReportOptions`] and calls [`render`] (one run), [`render_runs`]
//! (several runs in one table), [`check`] (regenerate and diff against committed tables) or
//! [`headline`] (the end of `sweep run`).
//!
//! Output is byte-stable: the same run gives the same bytes (no timestamps, no hash-map
//! order), so committed tables can be checked in CI.

pub mod agents;
pub mod escape;
pub mod export;
pub mod methods;
pub mod plots;
pub mod table;
pub mod tables;
pub mod view;

pub use export::{Exporter, Format};
pub use table::Table;
pub use view::{LabelBy, RunView, View};

use crate::analysis::{self, AnalysisError, AnalysisOptions, Metric};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a report could not be written.
#[derive(Debug, Error)]
pub enum ReportError {
    /// Analysing a run (or reading its store) failed.
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    /// Creating, reading or removing a file or directory of the report failed (path, cause).
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    /// Drawing an SVG plot failed (plot file, plotters' message).
    #[error("plot {0}: {1}")]
    Plot(PathBuf, String),
    /// A `--group-by` axis that is neither `arm` nor a factor of the run (axis, the known
    /// factors).
    #[error("unknown axis `{0}` for --group-by/--columns (known: arm, {1})")]
    UnknownAxis(String, String),
    /// A polars query over the records failed.
    #[error("polars: {0}")]
    Polars(#[from] PolarsError),
    /// Serialising a JSON output (the tidy frame) failed.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Runs of different experiments (or different experiment files) asked to share tables.
    #[error("the runs are of different experiments ({0}); join them anyway with --allow-mixed")]
    MixedRuns(String),
    /// A request that cannot be rendered as asked (exit code 2, bad input).
    #[error("{0}")]
    Usage(String),
}

/// What to render.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportOptions {
    /// Table formats to write (default: every table format).
    pub formats: Vec<Format>,
    /// Axes (`arm` or a factor such as `temperature`) that split the default tables into
    /// sections.
    pub group_by: Vec<String>,
    /// An axis whose values become columns (the paper layout), written as extra tables
    /// `tables/<metric>_by_<axis>.*`.
    pub columns: Option<String>,
    /// Metrics of the default tables (default: TTFT, e2e latency, decode rate); the methods
    /// text also covers the metrics of the experiment file's `[[table]]` sections.
    pub metrics: Vec<Metric>,
    /// Significance level of the verdicts, passed to the analysis (Holm-adjusted p < α).
    pub alpha: f64,
    /// Reference arm override (else the manifest's).
    pub reference: Option<String>,
    /// Write SVG plots (only for a single run, not for joined runs).
    pub plots: bool,
    /// Write `report.html`.
    pub html: bool,
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
            html: true,
            allow_partial: false,
        }
    }
}

impl ReportOptions {
    fn analysis(&self) -> AnalysisOptions {
        AnalysisOptions {
            reference: self.reference.clone(),
            alpha: self.alpha,
            allow_partial: self.allow_partial,
            ..AnalysisOptions::default()
        }
    }
}

/// What a render wrote.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    /// Every file written.
    pub paths: Vec<PathBuf>,
    /// `report.html`, when written.
    pub html: Option<PathBuf>,
    /// The headline tables (cells × TTFT / decode with verdicts).
    pub headline: Vec<Table>,
    /// The workload-level tables (levels, capacity under the SLO), when the run has levels.
    pub workload: Vec<Table>,
    /// The differences the runs were joined over (several runs).
    pub joined_over: Vec<String>,
}

fn write(path: PathBuf, text: &str, out: &mut Vec<PathBuf>) -> Result<(), ReportError> {
    crate::store::atomic::write_atomic(&path, text.as_bytes()).map_err(AnalysisError::from)?;
    out.push(path);
    Ok(())
}

/// Analyses the run (refreshing `analysis/`) and writes tables, plots and `report.html` into
/// it. Returns every file written.
pub fn render(run_dir: &Path, opts: &ReportOptions) -> Result<Vec<PathBuf>, ReportError> {
    render_run(run_dir, opts).map(|(r, _)| r.paths)
}

/// [`render`], also returning what was rendered and the analysis.
pub fn render_run(
    run_dir: &Path,
    opts: &ReportOptions,
) -> Result<(Rendered, analysis::Analysis), ReportError> {
    let a = analysis::analyze(run_dir, &opts.analysis())?;
    let view = View::single(RunView::new(run_dir.to_path_buf(), a.clone()));
    let r = render_view(&view, run_dir, opts)?;
    Ok((r, a))
}

/// Analyses several runs and writes tables that join them into `out`, each run's cells
/// labelled by `label_by`. Refuses runs of different experiments (or experiment files)
/// unless `allow_mixed`.
pub fn render_runs(
    runs: &[PathBuf],
    label_by: LabelBy,
    allow_mixed: bool,
    out: &Path,
    opts: &ReportOptions,
) -> Result<Rendered, ReportError> {
    let view = joined_view(runs, label_by, allow_mixed, opts)?;
    std::fs::create_dir_all(out).map_err(|e| ReportError::Io(out.to_path_buf(), e))?;
    let mut r = render_view(&view, out, opts)?;
    r.joined_over = view::joined_differences(&view.runs);
    Ok(r)
}

/// The view of several runs, labelled; checks they may share tables.
pub fn joined_view(
    runs: &[PathBuf],
    label_by: LabelBy,
    allow_mixed: bool,
    opts: &ReportOptions,
) -> Result<View, ReportError> {
    let mut views = Vec::new();
    for dir in runs {
        let a = analysis::analyze(dir, &opts.analysis())?;
        let mut v = RunView::new(dir.clone(), a);
        v.label = label_by.label(&v.a);
        views.push(v);
    }
    if !allow_mixed {
        let ident = |v: &RunView| {
            let m = v.a.manifest.as_ref();
            (
                v.a.experiment.clone(),
                m.map(|m| m.spec_hash.clone()).unwrap_or_default(),
            )
        };
        if let Some(first) = views.first() {
            let differ: Vec<String> = views
                .iter()
                .filter(|v| ident(v) != ident(first))
                .map(|v| {
                    format!(
                        "{} is experiment `{}`, file {}",
                        v.dir.display(),
                        v.a.experiment,
                        ident(v).1.get(..12).unwrap_or("unknown")
                    )
                })
                .collect();
            if !differ.is_empty() {
                return Err(ReportError::MixedRuns(format!(
                    "{} is experiment `{}`, file {}; {}",
                    first.dir.display(),
                    first.a.experiment,
                    ident(first).1.get(..12).unwrap_or("unknown"),
                    differ.join("; ")
                )));
            }
        }
    }
    let dups = view::duplicate_labels(&views);
    if !dups.is_empty() && views.len() > 1 {
        // Two runs with one label would merge into one row: tell them apart by run id.
        for v in &mut views {
            if dups.contains(&v.label) {
                v.label = format!("{} ({})", v.label, v.a.run_id);
            }
        }
    }
    let label_axis = (views.len() > 1).then(|| label_by.as_str().to_string());
    Ok(View {
        runs: views,
        label_axis,
    })
}

/// The tables of a view: the first run's `[[table]]` sections, else the default set. Each
/// entry is a file stem and its tables.
pub fn build_tables(
    view: &View,
    opts: &ReportOptions,
) -> Result<Vec<(String, Vec<Table>)>, ReportError> {
    let declared = view
        .runs
        .first()
        .and_then(|r| r.spec.as_ref())
        .map(|s| s.tables.clone())
        .unwrap_or_default();
    if !declared.is_empty() {
        let mut out: Vec<(String, Vec<Table>)> = declared
            .iter()
            .map(|t| (t.name.clone(), vec![tables::declared(view, t)]))
            .collect();
        out.extend(workload_tables(view));
        return Ok(out);
    }
    let known: Vec<String> = view.axes(&{
        let mut e = view.entries(false);
        e.extend(view.entries(true));
        e
    });
    for g in opts.group_by.iter().chain(&opts.columns) {
        if !known.contains(g) {
            let names: Vec<&str> = known
                .iter()
                .filter(|k| *k != "arm")
                .map(String::as_str)
                .collect();
            return Err(ReportError::UnknownAxis(g.clone(), names.join(", ")));
        }
    }
    let mut out = Vec::new();
    for m in &opts.metrics {
        out.extend(tables::metric_tables(view, &[*m], &opts.group_by));
        if let Some(axis) = &opts.columns {
            out.extend(tables::pivot_tables(view, &[*m], axis, &opts.group_by));
        }
    }
    if let [rv] = view.runs.as_slice() {
        let placements = crate::telemetry::cell_placements(&rv.dir);
        if let Some(t) = tables::num_gpu_table(&rv.a, &placements) {
            out.push(("num_gpu".into(), vec![t]));
        }
    }
    if let [rv] = view.runs.as_slice() {
        if let Some(t) = tables::startup_table(&crate::server::read_events(&rv.dir)) {
            out.push(("server_startup".into(), vec![t]));
        }
    }
    if let Some(t) = tables::pair_table(view) {
        out.push(("pairs".into(), vec![t]));
    }
    out.extend(workload_tables(view));
    if let Some(t) = agents::agent_table(view)? {
        out.push(("pair_agents".into(), vec![t]));
    }
    Ok(out)
}

/// The workload-level tables (latency–throughput per level, capacity under the SLO): part
/// of every report of a run that has levels or an `[slo]`, declared tables or not.
fn workload_tables(view: &View) -> Vec<(String, Vec<Table>)> {
    let mut out = Vec::new();
    if let Some(t) = tables::workload_table(view) {
        out.push(("workload".into(), vec![t]));
    }
    if let Some(t) = tables::capacity_table(view) {
        out.push(("capacity".into(), vec![t]));
    }
    out
}

/// The headline tables: single-agent cells, then pair cells, × TTFT and decode throughput
/// with their intervals, the change vs the reference and the verdict.
pub fn headline(view: &View) -> Vec<Table> {
    let mut out = Vec::new();
    for pair in [false, true] {
        let entries = view.entries(pair);
        if entries.is_empty() {
            continue;
        }
        let spec = crate::spec::TableSpec {
            name: if pair { "headline_pairs" } else { "headline" }.into(),
            metrics: vec![Metric::TtftMs, Metric::DecodeTps],
            statistic: crate::spec::Statistic::Median,
            rows: Vec::new(),
            columns: crate::spec::Columns::Metrics,
            arms: entries.iter().map(|e| e.cell.arm.clone()).collect(),
            ci: crate::spec::CiStyle::Brackets,
            digits: 3,
            caption: Some(if pair {
                "Pair cells (concurrent phase, both agents): median [CI], change vs the reference"
                    .into()
            } else {
                "Single-agent cells: median [CI], change vs the reference".into()
            }),
            label: if pair {
                "tab:headline-pairs"
            } else {
                "tab:headline"
            }
            .into(),
            bold: crate::spec::BoldRule::Significant,
            delta: true,
        };
        let mut t = tables::declared(view, &spec);
        // The verdict words next to the numbers, and what each cell lost to exclusions.
        t.columns.push(table::Column::text("verdict TTFT / decode"));
        t.columns.push(table::Column::number(
            "excluded calls",
            0,
            crate::spec::CiStyle::None,
        ));
        let entries_sorted = view.entries(pair);
        for (row, e) in t.rows.iter_mut().zip(&entries_sorted) {
            let v = |m| {
                if e.cell.is_reference {
                    "(ref)".to_string()
                } else {
                    e.run
                        .a
                        .comparison(&e.cell.cell_id, m)
                        .map(|c| crate::analysis::verdict_word(c.verdict).to_string())
                        .unwrap_or_else(|| "n/a".into())
                }
            };
            let vt = v(Metric::TtftMs);
            let vd = v(Metric::DecodeTps);
            let word = if vt == vd { vt } else { format!("{vt} / {vd}") };
            row.cells.push(table::Cell::text(word));
            let k = &e.cell.counts;
            row.cells.push(table::Cell::value(Some(f64::from(
                k.warmup + k.cold + k.failed,
            ))));
        }
        out.push(t);
    }
    out
}

/// Files in `tables/` a render owns (and replaces): so that the directory holds exactly the
/// tables of this render, nothing left from an earlier configuration.
fn clear_generated(dir: &Path) -> Result<(), ReportError> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let p = e.path();
        let ours = p
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| matches!(x, "md" | "tex" | "csv" | "json" | "html"));
        if ours && p.is_file() {
            std::fs::remove_file(&p).map_err(|e| ReportError::Io(p.clone(), e))?;
        }
    }
    Ok(())
}

/// Writes every table, the methods, the plots and `report.html` of a view under `out`.
pub fn render_view(view: &View, out: &Path, opts: &ReportOptions) -> Result<Rendered, ReportError> {
    let built = build_tables(view, opts)?;
    let mut r = Rendered::default();
    let tdir = out.join("tables");
    std::fs::create_dir_all(&tdir).map_err(|e| ReportError::Io(tdir.clone(), e))?;
    clear_generated(&tdir)?;
    let mut tex_inputs = Vec::new();
    for (stem, ts) in &built {
        for &f in &opts.formats {
            if let Some(text) = f.exporter().tables(ts) {
                write(
                    tdir.join(format!("{stem}.{}", f.ext())),
                    &text,
                    &mut r.paths,
                )?;
            }
        }
        tex_inputs.push(stem.clone());
    }
    let metrics: Vec<Metric> = {
        let mut m: Vec<Metric> = opts.metrics.clone();
        if let Some(spec) = view.runs.first().and_then(|r| r.spec.as_ref()) {
            for t in &spec.tables {
                for x in &t.metrics {
                    if !m.contains(x) {
                        m.push(*x);
                    }
                }
            }
        }
        m
    };
    write(
        tdir.join("methods.md"),
        &methods::markdown(view, &metrics),
        &mut r.paths,
    )?;
    if opts.formats.contains(&Format::Latex) {
        write(
            tdir.join("methods.tex"),
            &methods::latex(view, &metrics),
            &mut r.paths,
        )?;
        let mut inputs = tex_inputs.clone();
        inputs.push("methods".into());
        write(
            tdir.join("all.tex"),
            &export::latex::document(&inputs),
            &mut r.paths,
        )?;
    }
    if view.runs.len() == 1 {
        let a = &view.runs[0].a;
        if opts.formats.contains(&Format::Json) {
            let tidy = serde_json::to_string_pretty(&a.tidy())? + "\n";
            write(tdir.join("tidy.json"), &tidy, &mut r.paths)?;
        }
        if opts.formats.contains(&Format::Csv) {
            write(
                tdir.join("tidy.csv"),
                &analysis::tidy_csv(&a.tidy()),
                &mut r.paths,
            )?;
        }
    }
    let mut plots: Vec<(String, PathBuf)> = Vec::new();
    if opts.plots && view.runs.len() == 1 {
        plots = write_plots(&view.runs[0], out)?;
        r.paths.extend(plots.iter().map(|p| p.1.clone()));
    }
    r.headline = headline(view);
    r.workload = workload_tables(view)
        .into_iter()
        .flat_map(|(_, t)| t)
        .collect();
    if opts.html {
        let all: Vec<&Table> = built.iter().flat_map(|(_, ts)| ts.iter()).collect();
        let mut svgs = Vec::new();
        for (cap, p) in &plots {
            let text = std::fs::read_to_string(p).map_err(|e| ReportError::Io(p.clone(), e))?;
            svgs.push((cap.clone(), text));
        }
        let page = html_page(view, &r.headline, &all, svgs, &metrics);
        let p = out.join("report.html");
        write(p.clone(), &export::html::page(&page), &mut r.paths)?;
        r.html = Some(p);
    }
    Ok(r)
}

fn html_page<'a>(
    view: &View,
    headline: &'a [Table],
    tables: &[&'a Table],
    plots: Vec<(String, String)>,
    metrics: &[Metric],
) -> export::html::Page<'a> {
    let first = &view.runs[0].a;
    let title = if view.runs.len() == 1 {
        format!("sweep report: {} / {}", first.experiment, first.run_id)
    } else {
        format!(
            "sweep report: {} ({} runs by {})",
            first.experiment,
            view.runs.len(),
            view.label_axis.clone().unwrap_or_default()
        )
    };
    let mut summary = Vec::new();
    for rv in &view.runs {
        let t = rv.a.total_counts();
        summary.push(format!(
            "Run {} ({}): {} cells, {} calls, {} measured; reference arm `{}`.",
            rv.a.run_id,
            rv.dir.display(),
            rv.a.cells.len(),
            t.calls,
            t.measured,
            rv.a.reference_arm
        ));
    }
    let mut environment = Vec::new();
    for rv in &view.runs {
        let prefix = if view.runs.len() > 1 {
            format!("{}: ", rv.label)
        } else {
            String::new()
        };
        if let Some(m) = &rv.a.manifest {
            environment.push((format!("{prefix}host"), m.host.hostname.clone()));
            environment.push((
                format!("{prefix}CPU"),
                format!("{} ({} threads)", m.host.cpu_model, m.host.cpu_threads),
            ));
            environment.push((
                format!("{prefix}GPU"),
                if m.host.gpus.is_empty() {
                    "none".into()
                } else {
                    m.host
                        .gpus
                        .iter()
                        .map(|g| format!("{} (driver {})", g.name, g.driver))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ));
            environment.push((
                format!("{prefix}backend"),
                format!(
                    "{} {}",
                    m.backend.kind,
                    m.backend.version.clone().unwrap_or_default()
                ),
            ));
            if !m.backend.defaults.is_empty() {
                environment.push((
                    format!("{prefix}backend defaults"),
                    m.backend
                        .defaults
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                ));
            }
            environment.push((
                format!("{prefix}model digest"),
                m.backend
                    .model_digest
                    .clone()
                    .unwrap_or_else(|| "unknown".into()),
            ));
            environment.push((
                format!("{prefix}commit"),
                m.git_commit.clone().unwrap_or_else(|| "unknown".into()),
            ));
            environment.push((format!("{prefix}sweep"), m.sweep_version.clone()));
            environment.push((format!("{prefix}started"), m.started_at.clone()));
        }
    }
    let mut exclusions = Vec::new();
    let mut warnings = Vec::new();
    for rv in &view.runs {
        for c in &rv.a.cells {
            let k = &c.counts;
            exclusions.push(format!(
                "{}{} ({}): {} calls, {} measured; excluded {}",
                if view.runs.len() > 1 {
                    format!("{}: ", rv.label)
                } else {
                    String::new()
                },
                c.cell_id,
                c.factor_label(),
                k.calls,
                k.measured,
                k.exclusions()
            ));
        }
        warnings.extend(rv.a.notes.iter().cloned());
    }
    let experiment_files = view
        .runs
        .iter()
        .filter_map(|rv| {
            rv.a.manifest
                .as_ref()
                .map(|m| (format!("{} ({})", m.spec_file, rv.a.run_id), m.spec.clone()))
        })
        .collect();
    export::html::Page {
        title,
        summary,
        headline: headline.iter().collect(),
        tables: tables.to_vec(),
        plots,
        environment,
        exclusions,
        warnings,
        methods: methods::paragraphs(view, metrics),
        experiment_files,
    }
}

/// The plots of one run; returns (caption, path) of each written.
fn write_plots(rv: &RunView, out: &Path) -> Result<Vec<(String, PathBuf)>, ReportError> {
    let a = &rv.a;
    let mut written = Vec::new();
    let pdir = out.join("plots");
    std::fs::create_dir_all(&pdir).map_err(|e| ReportError::Io(pdir.clone(), e))?;
    let calls = measured_calls(&rv.dir)?;
    let p = pdir.join("ttft_ecdf.svg");
    plots::ttft_ecdf(&p, &calls.ttft_by_arm)?;
    written.push(("TTFT ECDF per arm (measured calls)".to_string(), p));
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
    written.push(("Decode throughput per cell (measured calls)".to_string(), p));
    for m in [Metric::TtftMs, Metric::DecodeTps] {
        let p = pdir.join(format!("{}_vs_num_ctx.svg", m.name()));
        if plots::metric_vs_ctx(&p, a, m)? {
            written.push((format!("{} vs num_ctx, median with CI band", m.label()), p));
        }
    }
    let p = pdir.join("latency_vs_throughput.svg");
    if plots::latency_vs_throughput(&p, &a.workload)? {
        written.push((
            "TTFT vs total throughput over the workload levels".to_string(),
            p,
        ));
    }
    let p = pdir.join("pareto.svg");
    if a.workload.is_shown() && plots::pareto(&p, &a.workload, plots::ParetoAxis::TotalThroughput)?
    {
        written.push((
            "Pareto front of tokens/s per user against total tokens/s".to_string(),
            p,
        ));
    }
    let p = pdir.join("pareto_energy.svg");
    if a.workload.is_shown()
        && !a.workload.pareto_energy.is_empty()
        && plots::pareto(&p, &a.workload, plots::ParetoAxis::EnergyPerToken)?
    {
        written.push((
            "Pareto front of tokens/s per user against GPU energy per token".to_string(),
            p,
        ));
    }
    let p = pdir.join("num_gpu.svg");
    if plots::num_gpu_plot(&p, a)? {
        written.push((
            "Decode throughput and GPU energy per token vs num_gpu".to_string(),
            p,
        ));
    }
    Ok(written)
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

/// What `--check` found.
#[derive(Debug, Clone, Default)]
pub struct CheckOutcome {
    /// Files compared.
    pub compared: usize,
    /// Unified diffs of the files that differ, missing or extra files named.
    pub differences: Vec<String>,
}

impl CheckOutcome {
    /// True when every regenerated file matches the committed one.
    pub fn clean(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Regenerates the tables of `runs` in a scratch directory and compares them, file by file,
/// with the committed `tables/` directory `committed`: a file that differs, is missing or
/// is extra is a difference (with a unified diff).
pub fn check(
    runs: &[PathBuf],
    label_by: LabelBy,
    allow_mixed: bool,
    committed: &Path,
    opts: &ReportOptions,
) -> Result<CheckOutcome, ReportError> {
    let scratch = std::env::temp_dir().join(format!(
        "sweep-report-check-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let opts = ReportOptions {
        plots: false,
        html: false,
        ..opts.clone()
    };
    let result = (|| {
        let view = if runs.len() == 1 {
            let a = analysis::analyze(&runs[0], &opts.analysis())?;
            View::single(RunView::new(runs[0].clone(), a))
        } else {
            joined_view(runs, label_by, allow_mixed, &opts)?
        };
        std::fs::create_dir_all(&scratch).map_err(|e| ReportError::Io(scratch.clone(), e))?;
        render_view(&view, &scratch, &opts)?;
        compare_dirs(&scratch.join("tables"), committed)
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn list(dir: &Path) -> Result<Vec<String>, ReportError> {
    let mut v = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| ReportError::Io(dir.to_path_buf(), e))?;
    for e in rd.flatten() {
        if e.path().is_file() {
            v.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    v.sort();
    Ok(v)
}

fn compare_dirs(fresh: &Path, committed: &Path) -> Result<CheckOutcome, ReportError> {
    let new = list(fresh)?;
    let old = list(committed)?;
    let mut out = CheckOutcome::default();
    for name in &new {
        let a = std::fs::read_to_string(fresh.join(name))
            .map_err(|e| ReportError::Io(fresh.join(name), e))?;
        if !old.contains(name) {
            out.differences.push(format!(
                "{}: missing (the report writes it)",
                committed.join(name).display()
            ));
            continue;
        }
        out.compared += 1;
        let b = std::fs::read_to_string(committed.join(name))
            .map_err(|e| ReportError::Io(committed.join(name), e))?;
        if a != b {
            let diff = similar::TextDiff::from_lines(&b, &a)
                .unified_diff()
                .context_radius(2)
                .header(
                    &format!("{} (committed)", committed.join(name).display()),
                    &format!("{name} (regenerated)"),
                )
                .to_string();
            out.differences.push(diff);
        }
    }
    for name in &old {
        let generated = matches!(
            Path::new(name).extension().and_then(|x| x.to_str()),
            Some("md" | "tex" | "csv" | "json" | "html")
        );
        if generated && !new.contains(name) {
            out.differences.push(format!(
                "{}: not written by the report any more (stale)",
                committed.join(name).display()
            ));
        }
    }
    Ok(out)
}
