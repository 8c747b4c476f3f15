//! What a report is made from: the analyses of one or more runs, each cell tagged single
//! or pair (they never share a table), each factor's effective value (a cell that leaves
//! an option unset shows the backend's default, marked) and, when several runs are
//! joined, the label that tells their cells apart (`host`, `gpu`, `model` or `run`).

use crate::analysis::{Analysis, CellAnalysis};
use crate::spec::{AgentKind, Spec};
use crate::store::Manifest;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// What tells joined runs apart in a table (`--label-by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LabelBy {
    /// The manifest's hostname.
    Host,
    /// The GPU names joined with ` + `, or `CPU <model>` on a machine without a GPU.
    Gpu,
    /// The experiment file's `backend.model`.
    Model,
    /// The run id (also the fallback when the chosen label is empty).
    Run,
}

impl LabelBy {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LabelBy::Host => "host",
            LabelBy::Gpu => "gpu",
            LabelBy::Model => "model",
            LabelBy::Run => "run",
        }
    }

    /// The label of a run.
    pub fn label(self, a: &Analysis) -> String {
        let m = a.manifest.as_ref();
        let s = match self {
            LabelBy::Host => m.map(|m| m.host.hostname.clone()).unwrap_or_default(),
            LabelBy::Gpu => m
                .map(|m| {
                    if m.host.gpus.is_empty() {
                        format!("CPU {}", m.host.cpu_model)
                    } else {
                        m.host
                            .gpus
                            .iter()
                            .map(|g| g.name.clone())
                            .collect::<Vec<_>>()
                            .join(" + ")
                    }
                })
                .unwrap_or_default(),
            LabelBy::Model => m
                .and_then(|m| m.spec())
                .map(|s| s.backend.model)
                .unwrap_or_default(),
            LabelBy::Run => a.run_id.clone(),
        };
        if s.trim().is_empty() {
            a.run_id.clone()
        } else {
            s
        }
    }
}

/// One run's analysis as a report sees it.
#[derive(Debug, Clone)]
pub struct RunView {
    pub(crate) dir: PathBuf,
    pub(crate) a: Analysis,
    /// The run's label when several runs are joined.
    pub label: String,
    /// The experiment file, parsed from the manifest (arm kinds, declared tables).
    pub spec: Option<Spec>,
}

impl RunView {
    pub(crate) fn new(dir: PathBuf, a: Analysis) -> Self {
        let spec = a.manifest.as_ref().and_then(Manifest::spec);
        Self {
            dir,
            label: a.run_id.clone(),
            a,
            spec,
        }
    }

    /// Whether a cell belongs to a pair arm: the experiment file says so; without it, a
    /// cell with pair results or `A.`/`B.` factors is one.
    pub fn is_pair(&self, c: &CellAnalysis) -> bool {
        if let Some(arm) = self.spec.as_ref().and_then(|s| s.arm(&c.arm)) {
            return arm.agent == AgentKind::Pair;
        }
        self.a.pairs.iter().any(|p| p.cell_id == c.cell_id)
            || c.factors
                .keys()
                .any(|k| k.starts_with("A.") || k.starts_with("B."))
    }

    /// The backend's default of an option (`A.num_ctx` → `num_ctx`).
    pub fn default_of(&self, factor: &str) -> Option<&str> {
        let opt = factor
            .strip_prefix("A.")
            .or_else(|| factor.strip_prefix("B."))
            .unwrap_or(factor);
        let opt = if opt == "max_tokens" {
            "num_predict"
        } else {
            opt
        };
        self.a
            .manifest
            .as_ref()
            .and_then(|m| m.backend.defaults.get(opt))
            .map(String::as_str)
    }

    /// Position of an arm in the experiment file (cells sort by it).
    fn arm_rank(&self, arm: &str) -> usize {
        self.spec
            .as_ref()
            .and_then(|s| s.arms.iter().position(|a| a.name == arm))
            .unwrap_or(usize::MAX)
    }
}

/// A cell of some run.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub(crate) run: &'a RunView,
    pub(crate) cell: &'a CellAnalysis,
}

/// An axis value of a cell: the text and whether it is an effective default.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AxisValue {
    pub(crate) text: String,
    pub(crate) default: bool,
}

/// The runs of a report.
#[derive(Debug, Clone)]
pub struct View {
    pub(crate) runs: Vec<RunView>,
    /// The axis that tells runs apart (`host` …) when there are several.
    pub label_axis: Option<String>,
}

impl View {
    pub(crate) fn single(run: RunView) -> Self {
        Self {
            runs: vec![run],
            label_axis: None,
        }
    }

    /// Every cell, in each run's order, single-agent or pair ones.
    pub fn entries(&self, pair: bool) -> Vec<Entry<'_>> {
        let mut v: Vec<Entry> = self
            .runs
            .iter()
            .flat_map(|r| r.a.cells.iter().map(move |c| Entry { run: r, cell: c }))
            .filter(|e| e.run.is_pair(e.cell) == pair)
            .collect();
        let factors = self.factor_names(&v);
        // A stable, readable order: run, arm as in the file, then factor values (numbers
        // numerically).
        v.sort_by(|x, y| {
            let rx = self.runs.iter().position(|r| std::ptr::eq(r, x.run));
            let ry = self.runs.iter().position(|r| std::ptr::eq(r, y.run));
            rx.cmp(&ry)
                .then(
                    x.run
                        .arm_rank(&x.cell.arm)
                        .cmp(&y.run.arm_rank(&y.cell.arm)),
                )
                .then_with(|| x.cell.arm.cmp(&y.cell.arm))
                .then_with(|| {
                    for f in &factors {
                        let o = cmp_values(&self.value(x, f).text, &self.value(y, f).text);
                        if o != std::cmp::Ordering::Equal {
                            return o;
                        }
                    }
                    x.cell.cell_id.cmp(&y.cell.cell_id)
                })
        });
        v
    }

    /// Every factor name set in some of these cells, sorted.
    pub fn factor_names(&self, entries: &[Entry]) -> Vec<String> {
        let set: BTreeSet<&String> = entries.iter().flat_map(|e| e.cell.factors.keys()).collect();
        set.into_iter().cloned().collect()
    }

    /// Every axis known over these cells: the run label, `arm`, the factors.
    pub fn axes(&self, entries: &[Entry]) -> Vec<String> {
        let mut v: Vec<String> = self.label_axis.iter().cloned().collect();
        v.push("arm".into());
        v.extend(self.factor_names(entries));
        v
    }

    /// A cell's value of an axis; an unset option shows the backend's default, marked.
    pub fn value(&self, e: &Entry, axis: &str) -> AxisValue {
        if Some(axis) == self.label_axis.as_deref() {
            return AxisValue {
                text: e.run.label.clone(),
                default: false,
            };
        }
        if axis == "arm" {
            return AxisValue {
                text: e.cell.arm.clone(),
                default: false,
            };
        }
        match e.cell.factors.get(axis) {
            Some(v) => AxisValue {
                text: v.clone(),
                default: false,
            },
            None => match e.run.default_of(axis) {
                Some(d) => AxisValue {
                    text: d.to_string(),
                    default: true,
                },
                None => AxisValue {
                    text: "default".into(),
                    default: false,
                },
            },
        }
    }

    /// The backends whose defaults a table shows, in words, for its note.
    pub fn defaults_source(&self) -> String {
        let kinds: BTreeSet<String> = self
            .runs
            .iter()
            .filter_map(|r| r.a.manifest.as_ref())
            .map(|m| match m.backend.kind.as_str() {
                "embedded" => "the embedded llama.cpp engine's defaults".to_string(),
                "ollama" => "the model's parameters reported by Ollama's /api/show".to_string(),
                k => format!("the {k} server's defaults"),
            })
            .collect();
        kinds.into_iter().collect::<Vec<_>>().join("; ")
    }

    /// Reference arms of the runs (normally one).
    pub fn reference_arms(&self) -> Vec<String> {
        let s: BTreeSet<String> = self
            .runs
            .iter()
            .map(|r| r.a.reference_arm.clone())
            .collect();
        s.into_iter().collect()
    }
}

/// Axis values in a readable order: numbers numerically, then words.
pub fn cmp_values(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// The differences between runs joined in one table, in words (`host: a, b`).
pub fn joined_differences(runs: &[RunView]) -> Vec<String> {
    let mut out = Vec::new();
    let envs: Vec<crate::store::Environment> = runs
        .iter()
        .filter_map(|r| r.a.manifest.as_ref().map(|m| m.environment()))
        .collect();
    for fact in crate::store::Fact::ALL {
        // Distinct whole values, each shown the one way the environment writes it.
        let mut seen: Vec<(String, String)> = Vec::new();
        for e in &envs {
            let v = e.value(fact);
            if !seen.iter().any(|(raw, _)| *raw == v) {
                seen.push((v, e.fact(fact)));
            }
        }
        if seen.len() > 1 {
            let vals: Vec<String> = seen.into_iter().map(|(_, shown)| shown).collect();
            out.push(format!("{}: {}", fact.label(), vals.join(" | ")));
        }
    }
    out
}

/// Counts per label: which labels are not unique.
pub fn duplicate_labels(runs: &[RunView]) -> Vec<String> {
    let mut n: BTreeMap<&str, usize> = BTreeMap::new();
    for r in runs {
        *n.entry(r.label.as_str()).or_default() += 1;
    }
    n.into_iter()
        .filter(|(_, k)| *k > 1)
        .map(|(l, _)| l.to_string())
        .collect()
}
