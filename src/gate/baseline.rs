//! Baselines for the nightly gate: a directory (default `baselines/<experiment>`) holding
//! one entry per compared night (`<YYYYMMDD>-<run-id>/`: manifest, records, its verdict), a
//! `current` file naming the newest clean pass, and an optional `anchor` file naming the
//! anchor's entries. `sweep compare` reads every entry as a night once there are ≥ 3 (all
//! compared nights, not only passes: a history of passes alone would understate the
//! night-to-night spread); `sweep baseline use` rolls the pointer back; `sweep baseline
//! anchor` moves the anchor, the only way it moves.
//!
//! Every compared night is kept; only a clean pass moves `current`. A run that was never
//! compared is refused unless `--force` (the first nights of an experiment have nothing to
//! be compared with and need it; forced entries do move `current`).

use super::{GateError, Outcome, VERDICT_FILE};
use crate::store::{self, atomic, Manifest, StoreError, MANIFEST, RECORDS_JSONL, RECORDS_PARQUET};
use std::path::{Path, PathBuf};

/// The pointer file inside a baseline directory.
pub const CURRENT: &str = "current";

/// The entry `current` names, when `dir` is a baseline directory with one.
pub fn current_entry(dir: &Path) -> Result<Option<PathBuf>, GateError> {
    let p = dir.join(CURRENT);
    let name = match std::fs::read_to_string(&p) {
        Ok(s) => s.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::Io { path: p, source: e }.into()),
    };
    let entry = dir.join(&name);
    if !entry.join(MANIFEST).is_file() {
        return Err(GateError::NoSuchEntry {
            dir: dir.to_path_buf(),
            name,
        });
    }
    Ok(Some(entry))
}

/// Entries of a baseline directory, oldest first: the nights in the order they were run
/// ([`store::ExperimentDir::runs`]), the order the gate's history reads them in; an entry
/// whose manifest cannot be read comes last (the history names it as skipped).
pub fn entries(dir: &Path) -> Result<Vec<String>, GateError> {
    // A missing or unreadable directory is an error here, not an empty list.
    let found = store::ExperimentDir::new(dir).try_runs()?;
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut v: Vec<String> = found.runs.iter().map(store::StoredRun::name).collect();
    v.extend(found.unreadable.iter().map(|(p, _)| name(p)));
    Ok(v)
}

/// The outcome stored in `run`'s verdict, or `None` when it was never compared.
fn stored_outcome(run: &Path) -> Result<Option<Outcome>, GateError> {
    let p = run.join(VERDICT_FILE);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::Io { path: p, source: e }.into()),
    };
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let outcome: Outcome = serde_json::from_value(v["outcome"].clone())
        .or_else(|_| serde_json::from_value(v.clone()))?;
    Ok(Some(outcome))
}

/// What `baseline save` did.
#[derive(Debug, Clone)]
pub struct Saved {
    pub(crate) entry: PathBuf,
    /// True when `current` now names the entry (a clean pass, or `--force`).
    pub promoted: bool,
    /// Why the entry is kept in the history without moving `current` (its outcome), or
    /// why `--force` was needed.
    pub why: Option<String>,
}

/// `sweep baseline save RUN [--dir D] [--force]`: copies the run's manifest, records and
/// verdict into a new entry of the baseline directory (every compared night is kept as
/// history) and points `current` at it when its comparison passed (or with `--force`).
pub fn save(run: &Path, dir: Option<&Path>, force: bool) -> Result<Saved, GateError> {
    let manifest = Manifest::read(run)?;
    let src_records = run.join(RECORDS_JSONL);
    if store::read_records(&src_records)?.records.is_empty() {
        return Err(GateError::NoRecords(run.to_path_buf()));
    }
    let (promoted, why) = match stored_outcome(run)? {
        Some(Outcome::Pass) => (true, None),
        Some(o) if force => (
            true,
            Some(format!(
                "its comparison ended {}; kept and made current by --force",
                o.name()
            )),
        ),
        Some(o) => (
            false,
            Some(format!(
                "its comparison ended {}: kept as a night of the history, `current` unchanged",
                o.name()
            )),
        ),
        None if force => (
            true,
            Some(GateError::NotCompared(run.to_path_buf()).to_string()),
        ),
        None => return Err(GateError::NotCompared(run.to_path_buf())),
    };
    let dest = match dir {
        Some(d) => d.to_path_buf(),
        None => Path::new("baselines").join(&manifest.experiment),
    };
    std::fs::create_dir_all(&dest).map_err(store::io(&dest))?;
    let same = std::fs::canonicalize(run).ok() == std::fs::canonicalize(&dest).ok();
    if same {
        return Err(GateError::SameDir(dest));
    }
    let date = manifest
        .started_at
        .get(..10)
        .map(|d| d.replace('-', ""))
        .filter(|d| d.len() == 8 && d.chars().all(|c| c.is_ascii_digit()))
        .unwrap_or_else(|| chrono::Utc::now().format("%Y%m%d").to_string());
    // Named after the run's directory (a run id could hold characters a name cannot).
    let run_name = std::fs::canonicalize(run)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| manifest.run_id.replace(['/', '\\'], "_"));
    let name = format!("{date}-{run_name}");
    let entry = dest.join(&name);
    atomic::copy_atomic(&src_records, &entry.join(RECORDS_JSONL))?;
    for f in [RECORDS_PARQUET, VERDICT_FILE] {
        let from = run.join(f);
        if from.is_file() {
            atomic::copy_atomic(&from, &entry.join(f))?;
        }
    }
    // Manifest last: an entry is only valid once its records are in place.
    atomic::copy_atomic(&run.join(MANIFEST), &entry.join(MANIFEST))?;
    if promoted {
        point_at(&dest, &name)?;
    }
    Ok(Saved {
        entry,
        promoted,
        why,
    })
}

/// `sweep baseline anchor DIR [ENTRY...]`: makes the named entries the anchor (default:
/// the newest [`super::ANCHOR_NIGHTS`] entries). Returns the anchor's entries.
pub fn set_anchor(dir: &Path, names: &[String]) -> Result<Vec<String>, GateError> {
    let all = entries(dir)?;
    let chosen: Vec<String> = if names.is_empty() {
        all.iter()
            .rev()
            .take(super::ANCHOR_NIGHTS)
            .rev()
            .cloned()
            .collect()
    } else {
        for n in names {
            if !all.contains(n) {
                return Err(GateError::NoSuchEntry {
                    dir: dir.to_path_buf(),
                    name: n.clone(),
                });
            }
        }
        names.to_vec()
    };
    if chosen.is_empty() {
        return Err(GateError::EmptyAnchor(dir.to_path_buf()));
    }
    let mut text =
        String::from("# sweep baseline anchor: the nights tonight is held to (one entry a line)\n");
    for c in &chosen {
        text.push_str(c);
        text.push('\n');
    }
    atomic::write_atomic(&dir.join(super::ANCHOR_FILE), text.as_bytes())?;
    Ok(chosen)
}

/// `sweep baseline use ENTRY`: points `current` at an existing entry (a rollback).
pub fn point_at(dir: &Path, name: &str) -> Result<(), GateError> {
    if !dir.join(name).join(MANIFEST).is_file() {
        return Err(GateError::NoSuchEntry {
            dir: dir.to_path_buf(),
            name: name.to_string(),
        });
    }
    atomic::write_atomic(&dir.join(CURRENT), format!("{name}\n").as_bytes())?;
    Ok(())
}
