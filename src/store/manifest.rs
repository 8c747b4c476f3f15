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
    /// The experiment's name (`[experiment] name`): the run's parent directory.
    pub experiment: String,
    /// The run's id, its directory name: the one given (`--run-id`, a Slurm array task's
    /// `slurm-<job>-<task>`, a merge's output directory), else `<UTC yyyymmdd-HHMMSS>-<4 hex>`
    /// (`store::new_run_id`).
    pub run_id: String,
    /// The sweep version that made the run (the crate's `CARGO_PKG_VERSION`).
    pub sweep_version: String,
    /// The experiment file's path as given to `sweep run`.
    pub spec_file: String,
    /// sha256 (hex) of the experiment file's text (`Spec::hash`).
    pub spec_hash: String,
    /// The experiment file's full text.
    pub spec: String,
    /// The corpus directory as the experiment file names it.
    pub corpus_path: String,
    /// sha256 (hex) over the corpus' sorted relative paths and contents (never mtimes).
    pub corpus_hash: Option<String>,
    /// Files ingested from the corpus.
    pub corpus_files: Option<usize>,
    /// The git commit of the directory `sweep run` ran in, `-dirty` with uncommitted changes;
    /// `None` where git or a checkout is missing.
    pub git_commit: Option<String>,
    /// The machine, as detected when the run started.
    pub host: crate::env::HostInfo,
    /// What the backend's preflight reported (kind, version, model digest, endpoints).
    pub backend: crate::backend::BackendInfo,
    /// The shard of the cells this run executes; `None` for the whole plan (and a merge).
    pub shard: Option<crate::plan::Shard>,
    /// Cells in the plan (this shard's only, when sharded).
    pub planned_cells: usize,
    /// Units in the plan, warm-up included.
    pub planned_units: usize,
    /// LLM calls the planned units make, warm-up included, reload probes not
    /// ([`crate::plan::Plan::total_calls`]).
    pub planned_calls: usize,
    /// RFC 3339 UTC time the run was created (for a merge, its earliest shard's).
    pub started_at: String,
    /// RFC 3339 UTC time the run finished (every planned phase stored and `records.parquet`
    /// written); `None` while it is unfinished.
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
    /// The manifest a new run of `spec`'s `plan` starts with: the experiment file, the
    /// corpus it read, this machine and commit, what the backend's preflight reported
    /// (`backend`), the plan's size, the prompt sets and personas, and `call_texts` when the
    /// run keeps its call store. Unfinished until [`Manifest::write`] records `finished_at`.
    pub fn for_run(
        spec: &crate::spec::Spec,
        plan: &crate::plan::Plan,
        run_id: &str,
        corpus: &crate::corpus::Corpus,
        backend: crate::backend::BackendInfo,
        call_texts: Option<String>,
    ) -> Manifest {
        let mut prompt_versions: Vec<String> = plan
            .cells
            .iter()
            .flat_map(|c| {
                c.members
                    .iter()
                    .map(|m| m.prompt_version.as_str().to_string())
            })
            .collect();
        prompt_versions.sort();
        prompt_versions.dedup();
        Manifest {
            experiment: spec.experiment.name.clone(),
            run_id: run_id.to_string(),
            sweep_version: env!("CARGO_PKG_VERSION").to_string(),
            spec_file: spec.file.display().to_string(),
            spec_hash: spec.hash.clone(),
            spec: spec.source.clone(),
            corpus_path: spec.corpus.path.display().to_string(),
            corpus_hash: Some(corpus.hash.clone()),
            corpus_files: Some(corpus.len()),
            git_commit: crate::env::git_commit(),
            host: crate::env::HostInfo::detect(),
            backend,
            shard: plan.shard,
            planned_cells: plan.cells.len(),
            planned_units: plan.units.len(),
            planned_calls: plan.total_calls(),
            started_at: chrono::Utc::now().to_rfc3339(),
            finished_at: None,
            partial: false,
            records: None,
            cache_policy: format!(
                "unique nonce line per call; server prompt cache {}",
                if spec.backend.cache_prompt {
                    "ON (cache_prompt = true)"
                } else {
                    "off where the server allows (cache_prompt = false)"
                }
            ),
            merged_from: Vec::new(),
            prompt_versions,
            personas: crate::plan::persona_lines(spec),
            call_texts,
        }
    }

    /// Reads `manifest.json` of the run in `dir`; [`StoreError::NotARun`] without one.
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

    /// Where the run ran: each fact written one way, and what differs from another run.
    pub fn environment(&self) -> super::Environment<'_> {
        super::Environment::of(self)
    }
}
