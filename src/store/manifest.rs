//! `manifest.json`: a run's provenance (the experiment file and its hash, corpus, commit,
//! host, backend, model digest), its plan size, and, once it finishes, a digest of its
//! records so that readers can tell whether `records.parquet` still matches the log.

use super::{atomic, io, StoreError, MANIFEST};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What the records of a finished run looked like when it finished.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordsDigest {
    /// Records in `records.jsonl` (and rows in `records.parquet`).
    pub count: usize,
    /// Records of phases replaced by a later `--retry-failed` attempt.
    #[serde(default)]
    pub superseded: usize,
    /// Size of `records.jsonl` in bytes: a log changed after the run finished reads as stale.
    pub jsonl_bytes: u64,
    /// sha256 of `records.parquet` (absent when it could not be written).
    pub parquet_sha256: Option<String>,
}

/// Provenance of a run, written when it starts and completed when it ends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub experiment: String,
    pub run_id: String,
    pub sweep_version: String,
    pub spec_file: String,
    pub spec_hash: String,
    /// The experiment file's full text.
    pub spec: String,
    pub corpus_path: String,
    pub corpus_hash: Option<String>,
    pub corpus_files: Option<usize>,
    pub git_commit: Option<String>,
    pub host: crate::env::HostInfo,
    pub backend: crate::backend::BackendInfo,
    pub shard: Option<crate::plan::Shard>,
    pub planned_cells: usize,
    pub planned_units: usize,
    pub planned_calls: usize,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// How prompt caches were defeated (unique nonce per call; server cache off).
    pub cache_policy: String,
    /// The prompt sets the plan's agents use (`sweep-1`, `chimera-2025`, `small-1`).
    #[serde(default)]
    pub prompt_versions: Vec<String>,
    /// Each arm's agents and what happened to their persona: `baseline_vs_chimera/B insight
    /// echo` (`system`: sent as the system prompt; `echo`: shown in the report, not sent).
    #[serde(default)]
    pub personas: Vec<String>,
    /// The call store (`calls.jsonl.zst`: every call's request and answer) when the run keeps
    /// it; `None` with `sweep run --no-text` and in runs from before it.
    #[serde(default)]
    pub call_texts: Option<String>,
    /// Run ids merged into this one (`sweep merge`).
    #[serde(default)]
    pub merged_from: Vec<String>,
    /// A merge that lacks some planned cells (`sweep merge --allow-partial`): analysis and
    /// the gate refuse it unless asked.
    #[serde(default)]
    pub partial: bool,
    /// Set when the run finished (see [`RecordsDigest`]).
    #[serde(default)]
    pub records: Option<RecordsDigest>,
}

impl Manifest {
    pub fn read(dir: &Path) -> Result<Manifest, StoreError> {
        let path = dir.join(MANIFEST);
        if !path.exists() {
            return Err(StoreError::NotARun(dir.to_path_buf()));
        }
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        serde_json::from_str(&text).map_err(|e| StoreError::BadManifest {
            path,
            message: e.to_string(),
        })
    }

    /// Writes atomically (temp file + rename) so a crash never leaves half a manifest.
    pub fn write(&self, dir: &Path) -> Result<(), StoreError> {
        let path = dir.join(MANIFEST);
        let text = serde_json::to_string_pretty(self).map_err(|e| StoreError::BadManifest {
            path: path.clone(),
            message: e.to_string(),
        })?;
        atomic::write_atomic(&path, text.as_bytes())
    }

    /// The experiment file stored in the manifest, parsed (`None` when absent or no longer
    /// valid).
    pub fn spec(&self) -> Option<crate::spec::Spec> {
        if self.spec.trim().is_empty() {
            return None;
        }
        crate::spec::Spec::parse(Path::new(&self.spec_file), &self.spec).ok()
    }

    /// True once the run ended with every planned phase stored.
    pub fn is_finished(&self) -> bool {
        self.finished_at.is_some()
    }
}
