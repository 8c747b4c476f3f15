//! `sweep merge`: joins the shard runs of one experiment into one run. Refuses runs of
//! different experiment files and a phase stored twice across shards; checks the union
//! against the experiment's plan, refusing a merge that lacks planned phases unless asked
//! (the merged run is then marked `partial`). The merged run is built under a hidden
//! staging name and renamed into place, so a failed merge leaves nothing behind.

use super::{io, read_records, Manifest, RunStore, StoreError, RECORDS_JSONL, REPORTS_DIR};
use crate::record::{Phase, PhaseKey, Record};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub(crate) enum MergeError {
    #[error("nothing to merge: name at least one run directory")]
    NoRuns,
    #[error("{} and {} come from different experiment files (spec hash differs); refusing to merge", a.display(), b.display())]
    DifferentSpecs { a: PathBuf, b: PathBuf },
    #[error("{} already exists; choose another --out", .0.display())]
    OutExists(PathBuf),
    #[error("the merged runs lack {missing} of {planned} planned phases ({cells} cells incomplete, e.g. {example}); \
             merge every shard, or pass --allow-partial to keep a run marked partial")]
    Incomplete {
        missing: usize,
        planned: usize,
        cells: usize,
        example: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a merge produced.
#[derive(Debug, Clone)]
pub struct Merged {
    pub manifest: Manifest,
    /// Planned phases that no shard stored (non-empty only with `allow_partial`).
    pub missing_phases: usize,
}

/// Joins shard stores of one experiment into a new run at `out`.
pub fn merge(runs: &[PathBuf], out: &Path, allow_partial: bool) -> Result<Merged, MergeError> {
    let mut manifests = Vec::new();
    for r in runs {
        manifests.push(Manifest::read(r)?);
    }
    let Some(first) = manifests.first() else {
        return Err(MergeError::NoRuns);
    };
    for (m, r) in manifests.iter().zip(runs) {
        if m.spec_hash != first.spec_hash {
            return Err(MergeError::DifferentSpecs {
                a: runs[0].clone(),
                b: r.clone(),
            });
        }
    }
    if out.exists() {
        return Err(MergeError::OutExists(out.to_path_buf()));
    }
    let mut merged = first.clone();
    merged.run_id = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(super::new_run_id);
    merged.shard = None;
    merged.merged_from = manifests.iter().map(|m| m.run_id.clone()).collect();
    merged.started_at = manifests
        .iter()
        .map(|m| m.started_at.clone())
        .min()
        .unwrap_or_default();
    merged.records = None;
    // Shards' call texts are merged with their records; all of them or it is not a full store.
    let texts_everywhere = runs.iter().all(|r| r.join(super::CALLS_ZST).is_file());
    merged.call_texts = texts_everywhere.then(|| super::CALLS_ZST.to_string());

    let mut all: Vec<(PathBuf, Vec<Record>)> = Vec::new();
    let mut stored: BTreeSet<PhaseKey> = BTreeSet::new();
    for r in runs {
        let read = read_records(&r.join(RECORDS_JSONL))?;
        if let Some((line, _)) = read.torn_tail {
            tracing::warn!(
                "{}:{line}: torn last line ignored while merging",
                r.join(RECORDS_JSONL).display()
            );
        }
        stored.extend(read.records.iter().map(Record::phase_key));
        all.push((r.clone(), read.records));
    }
    let (missing, planned, example, cells) = missing_phases(first, &stored);
    if missing > 0 && !allow_partial {
        return Err(MergeError::Incomplete {
            missing,
            planned,
            cells,
            example,
        });
    }
    merged.partial = missing > 0;
    if let Some(spec) = first.spec() {
        let plan = crate::plan::Plan::build(&spec, None);
        merged.planned_cells = plan.cells.len();
        merged.planned_units = plan.units.len();
        merged.planned_calls = plan.total_calls();
    }
    let all_finished = manifests.iter().all(|m| m.finished_at.is_some());

    let staging = staging_dir(out);
    let result = (|| -> Result<(), MergeError> {
        let mut store = RunStore::create(&staging, &merged)?;
        for (r, records) in all {
            let mut texts: std::collections::HashMap<String, super::CallText> =
                super::read_calls(&r)?
                    .into_iter()
                    .map(|c| (c.call_id.clone(), c))
                    .collect();
            let mut texts_of = |group: &[Record]| -> Vec<super::CallText> {
                group
                    .iter()
                    .filter_map(|g| texts.remove(g.call_id.as_deref()?))
                    .collect()
            };
            // Group consecutive records of one phase so each group stays atomic.
            let mut group: Vec<Record> = Vec::new();
            for mut rec in records {
                if group
                    .first()
                    .is_some_and(|g| (g.phase_key(), g.retry) != (rec.phase_key(), rec.retry))
                {
                    store.append_attempt_with_calls(&group, &texts_of(&group))?;
                    group.clear();
                }
                rec.run_id = merged.run_id.clone();
                group.push(rec);
            }
            store.append_attempt_with_calls(&group, &texts_of(&group))?;
            let reports = r.join(REPORTS_DIR);
            if reports.is_dir() {
                copy_dir(&reports, &staging.join(REPORTS_DIR))?;
            }
        }
        drop(store);
        if all_finished && missing == 0 {
            #[cfg(not(fuzzing))]
            super::columnar::finish(&staging, &merged.run_id)?;
        }
        std::fs::rename(&staging, out).map_err(io(out))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    let manifest = Manifest::read(out)?;
    Ok(Merged {
        manifest,
        missing_phases: missing,
    })
}

fn staging_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "merged".into());
    out.with_file_name(format!(".merging-{name}-{}", std::process::id()))
}

/// (missing phases, planned phases, an example, incomplete cells) against the plan of the
/// experiment file in the manifest; (0, 0, "", 0) when the manifest holds no usable spec.
fn missing_phases(m: &Manifest, stored: &BTreeSet<PhaseKey>) -> (usize, usize, String, usize) {
    let Some(spec) = m.spec() else {
        return (0, 0, String::new(), 0);
    };
    let plan = crate::plan::Plan::build(&spec, None);
    let mut planned = 0;
    let mut missing = 0;
    let mut example = String::new();
    let mut cells: BTreeSet<&str> = BTreeSet::new();
    for (_, cell, key) in plan.phase_keys() {
        planned += 1;
        if stored.contains(&key) {
            continue;
        }
        missing += 1;
        cells.insert(&cell.id);
        if example.is_empty() {
            example = format!(
                "{} rep {}{}{}",
                cell.id,
                key.rep + 1,
                if key.warmup { " (warm-up)" } else { "" },
                if key.phase == Phase::Single {
                    String::new()
                } else {
                    format!(" {}", key.phase.as_str())
                }
            );
        }
    }
    (missing, planned, example, cells.len())
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(to).map_err(io(to))?;
    for e in std::fs::read_dir(from).map_err(io(from))? {
        let e = e.map_err(io(from))?;
        let ty = e.file_type().map_err(io(&e.path()))?;
        let dest = to.join(e.file_name());
        if ty.is_dir() {
            copy_dir(&e.path(), &dest)?;
        } else if ty.is_file() {
            std::fs::copy(e.path(), &dest).map_err(io(&dest))?;
        }
    }
    Ok(())
}
