//! The nights a comparison reads: every run under a directory (a baseline directory's
//! entries, or a results directory's runs), oldest first by start time, those in another
//! environment left out; the window (the newest [`DEFAULT_LAST`] by default) and the
//! anchor (the entries named in the directory's [`ANCHOR_FILE`], else its first
//! [`ANCHOR_NIGHTS`] comparable nights, so a passing night never moves it).

use super::{env_differences, load_run, EnvDifference, GateError, LoadedRun};
use crate::metrics::Metric;
use crate::store::Manifest;
use std::path::{Path, PathBuf};

/// Fewest earlier nights for the night-level model (a between-night variance needs a
/// residual spread after a level and a trend).
pub const MIN_HISTORY: usize = 3;

/// Nights in the default anchor.
pub const ANCHOR_NIGHTS: usize = 3;

/// Nights in the default window.
pub const DEFAULT_LAST: usize = 14;

/// The file in a baseline directory that names the anchor's entries, one per line
/// (`sweep baseline anchor` writes it).
pub const ANCHOR_FILE: &str = "anchor";

/// The nights of a history, loaded.
#[derive(Debug, Clone, Default)]
pub struct Nights {
    /// The window: the newest comparable nights, oldest first.
    pub window: Vec<LoadedRun>,
    /// The anchor nights, oldest first (they may also be in the window).
    pub anchor: Vec<LoadedRun>,
    /// True when the anchor came from the [`ANCHOR_FILE`], false for the default.
    pub anchor_pinned: bool,
    /// Environment differences of nights that were kept because the change was allowed.
    pub env_differences: Vec<EnvDifference>,
    /// Comparable nights in the directory (window or not).
    pub comparable: usize,
    /// A baseline directory's current entry (the newest clean pass): the reference when the
    /// history is too short for the night model.
    pub current: Option<LoadedRun>,
}

/// The anchor's entry names from `dir`'s [`ANCHOR_FILE`], when it has one.
pub fn anchor_names(dir: &Path) -> Result<Option<Vec<String>>, GateError> {
    let p = dir.join(ANCHOR_FILE);
    match std::fs::read_to_string(&p) {
        Ok(t) => Ok(Some(
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from)
                .collect(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(crate::store::StoreError::Io { path: p, source: e }.into()),
    }
}

fn dir_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Loads the nights under `dir` for a comparison with the run in `current` (left out of
/// them): see the module doc. Nights that cannot be read, are unfinished, or differ in
/// environment (unless `allow_env_change`) are left out with a note.
pub fn load_history(
    dir: &Path,
    last: usize,
    current: &Path,
    current_manifest: &Manifest,
    allow_env_change: bool,
    metrics: &[Metric],
) -> Result<(Nights, Vec<String>), GateError> {
    let me = std::fs::canonicalize(current).ok();
    let current_entry = super::baseline::current_entry(dir).ok().flatten();
    let mut notes = Vec::new();
    // Oldest first, in the one order every reader of a run directory uses.
    // A missing or unreadable directory is an error here, not an empty history.
    let stored = crate::store::ExperimentDir::new(dir).try_runs()?;
    for (p, err) in &stored.unreadable {
        notes.push(format!("history: skipped {} ({err})", p.display()));
    }
    let found: Vec<(PathBuf, Manifest)> = stored
        .runs
        .into_iter()
        .filter(|r| std::fs::canonicalize(&r.dir).ok() != me)
        // A night is never its own history (a saved copy of tonight has its run id).
        .filter(|r| r.manifest.run_id != current_manifest.run_id)
        .map(|r| (r.dir, r.manifest))
        .collect();
    let mut nights = Nights::default();
    let mut comparable: Vec<(PathBuf, Manifest)> = Vec::new();
    for (p, m) in found {
        let d = env_differences(&m, current_manifest);
        if d.is_empty() || allow_env_change {
            for x in d {
                if !nights.env_differences.contains(&x) {
                    nights.env_differences.push(x);
                }
            }
            comparable.push((p, m));
        } else {
            notes.push(format!(
                "history: left out {} (not comparable: {})",
                m.run_id,
                d.iter()
                    .map(|x| x.what.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    nights.comparable = comparable.len();
    let pinned = anchor_names(dir)?;
    let anchor_idx: Vec<usize> = match &pinned {
        Some(names) => {
            let idx: Vec<usize> = comparable
                .iter()
                .enumerate()
                .filter(|(_, (p, m))| names.contains(&dir_name(p)) || names.contains(&m.run_id))
                .map(|(i, _)| i)
                .collect();
            if idx.len() < names.len() {
                notes.push(format!(
                    "history: the anchor names {} entr{} of which {} {} comparable here",
                    names.len(),
                    if names.len() == 1 { "y" } else { "ies" },
                    idx.len(),
                    if idx.len() == 1 { "is" } else { "are" }
                ));
            }
            idx
        }
        None => (0..comparable.len().min(ANCHOR_NIGHTS)).collect(),
    };
    nights.anchor_pinned = pinned.is_some();
    let first_window = comparable.len().saturating_sub(last.max(1));
    let mut loaded: Vec<Option<LoadedRun>> = vec![None; comparable.len()];
    for i in anchor_idx
        .iter()
        .copied()
        .chain(first_window..comparable.len())
    {
        if loaded[i].is_some() {
            continue;
        }
        match load_run(&comparable[i].0, metrics, false) {
            Ok(r) => loaded[i] = Some(r),
            Err(err) => notes.push(format!(
                "history: skipped {} ({err})",
                comparable[i].0.display()
            )),
        }
    }
    nights.anchor = anchor_idx
        .iter()
        .filter_map(|&i| loaded[i].clone())
        .collect();
    nights.window = (first_window..comparable.len())
        .filter_map(|i| loaded[i].clone())
        .collect();
    if let Some(entry) = current_entry {
        let canon = std::fs::canonicalize(&entry).ok();
        nights.current = comparable
            .iter()
            .position(|(p, _)| std::fs::canonicalize(p).ok() == canon)
            .and_then(|i| match &loaded[i] {
                Some(r) => Some(r.clone()),
                None => load_run(&comparable[i].0, metrics, false).ok(),
            });
    }
    Ok((nights, notes))
}
