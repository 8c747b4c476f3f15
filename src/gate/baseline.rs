//! Baselines for the nightly gate: a directory (default `baselines/<experiment>`) holding
//! one entry per promoted run (`<YYYYMMDD>-<run-id>/`: manifest, records, the verdict that
//! promoted it) and a `current` file naming the entry `sweep compare` uses. History mode
//! reads the entries; `sweep baseline use` rolls the pointer back.
//!
//! Only a clean pass is promoted: a run whose stored verdict is a regression or
//! inconclusive, or that was never compared, is refused unless `--force` (the first
//! baseline of an experiment has nothing to be compared with and needs it).

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

/// Entries of a baseline directory, oldest first (by name: dates sort).
pub fn entries(dir: &Path) -> Result<Vec<String>, GateError> {
    let rd = std::fs::read_dir(dir).map_err(store::io(dir))?;
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(MANIFEST).is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    Ok(v)
}

/// What `baseline save` did.
#[derive(Debug, Clone)]
pub struct Saved {
    pub(crate) entry: PathBuf,
    /// Set when the run was kept without a clean pass (`--force`): why it would have been
    /// refused.
    pub forced_over: Option<String>,
}

/// Why `run` is not a clean pass, or `None` when it is one.
fn not_a_pass(run: &Path) -> Result<Option<GateError>, GateError> {
    let p = run.join(VERDICT_FILE);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Some(GateError::NotCompared(run.to_path_buf())))
        }
        Err(e) => return Err(StoreError::Io { path: p, source: e }.into()),
    };
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let outcome: Outcome = serde_json::from_value(v["outcome"].clone())
        .or_else(|_| serde_json::from_value(v.clone()))?;
    Ok(match outcome {
        Outcome::Pass => None,
        o => Some(GateError::NotAPass {
            dir: run.to_path_buf(),
            outcome: o.name().to_string(),
        }),
    })
}

/// `sweep baseline save RUN [--dir D] [--force]`: copies the run's manifest, records and
/// verdict into a new entry of the baseline directory and points `current` at it.
pub fn save(run: &Path, dir: Option<&Path>, force: bool) -> Result<Saved, GateError> {
    let manifest = Manifest::read(run)?;
    let src_records = run.join(RECORDS_JSONL);
    if store::read_records(&src_records)?.records.is_empty() {
        return Err(GateError::NoRecords(run.to_path_buf()));
    }
    let forced_over = match not_a_pass(run)? {
        None => None,
        Some(e) if force => Some(e.to_string()),
        Some(e) => return Err(e),
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
    point_at(&dest, &name)?;
    Ok(Saved { entry, forced_over })
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
