//! The run store owns the run format: `results/<experiment>/<run-id>/` with
//! `manifest.json` ([`Manifest`]), the crash-safe `records.jsonl` log (one reader:
//! [`read_records`]), the call store `calls.jsonl.zst` ([`calls`]: every call's request and
//! answer, written and cut back with its phase), agent reports, `records.parquet` written when the run finishes
//! ([`columnar`]), the run lock ([`RunLock`]), atomic file writes ([`atomic`]) and merging
//! shard runs ([`merge()`]).
//!
//! Crash safety: each atomic group of records (one phase of a unit) is written with one
//! `write` and made durable with `fsync` before the runner moves on. A crash mid-write can
//! only leave a torn last line; resume detects it, warns, and cuts it off before appending,
//! so no record is ever written twice or glued to a torn one.

pub mod atomic;
pub mod calls;
#[cfg(not(fuzzing))]
pub mod columnar;
mod environment;
mod experiment_dir;
pub mod lock;
mod manifest;
mod merge;
mod records;

pub use calls::{read_calls, CallText, CALLS_ZST};
pub use environment::{Difference, Environment, Fact, SHORT_HASH};
pub use experiment_dir::{ExperimentDir, Runs, StoredRun};
pub use lock::{ExperimentLock, LockHolder, RunLock};
pub use manifest::{Manifest, RecordsDigest};
#[cfg(not(fuzzing))]
pub(crate) use merge::{merge, MergeError};
pub use records::{read_records, ReadOutcome};

use crate::record::{Phase, PhaseKey, Record};
use records::truncate;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub(crate) const MANIFEST: &str = "manifest.json";
/// File name of the crash-safe records log in a run directory (one JSON [`Record`] a line).
pub const RECORDS_JSONL: &str = "records.jsonl";
pub(crate) const RECORDS_PARQUET: &str = "records.parquet";
pub(crate) const REPORTS_DIR: &str = "reports";

/// Why the run store could not read or write a run.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file-system operation failed (disk full, permissions, a run directory that
    /// already exists): the machine's problem, see [`StoreError::is_io`].
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The directory has no `manifest.json`.
    #[error("{}: not a run directory (no {MANIFEST})", .0.display())]
    NotARun(PathBuf),
    /// `manifest.json` could not be parsed (or serialized).
    #[error("{}: bad manifest: {message}", path.display())]
    BadManifest {
        /// The manifest file.
        path: PathBuf,
        /// The JSON error.
        message: String,
    },
    /// A record (or call-store frame) that cannot be read or written: a bad line that is not
    /// the last, or a phase stored twice.
    #[error("{}:{line}: bad record: {message}", path.display())]
    BadRecord {
        /// The records log (or call store).
        path: PathBuf,
        /// 1-based line of the log (frame of the call store); 0 when writing.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// An append of a phase group that is already stored (or of an attempt not newer than
    /// the latest stored one): storing it would count its calls twice.
    #[error("refusing to store {0:?} twice")]
    Duplicate(PhaseKey),
    /// Another process holds the run's lock (another `sweep run` is writing to it).
    #[error("{}: the run is in use by another sweep ({}); wait for it to finish or stop it first", dir.display(), holder.as_ref().map(|h| h.to_string()).unwrap_or_else(|| "holder unknown".into()))]
    Locked {
        /// The run directory.
        dir: PathBuf,
        /// Who holds it, as the holder wrote into the lock file; `None` when unreadable.
        holder: Option<LockHolder>,
    },
    /// The run directory has neither records file: nothing to analyse.
    #[error("no records.parquet or records.jsonl in {}", .0.display())]
    NoRecords(PathBuf),
    /// Polars could not read or build the records' columnar frame.
    #[error("{}: {message}", path.display())]
    Columnar {
        /// The parquet or JSONL file being read.
        path: PathBuf,
        /// Polars' error (or why the path cannot be given to it).
        message: String,
    },
}

impl StoreError {
    /// True when the error comes from the machine (disk full, permissions, I/O) rather than
    /// from what the user pointed sweep at.
    pub fn is_io(&self) -> bool {
        matches!(self, StoreError::Io { .. })
    }
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An open run directory that records are appended to.
#[derive(Debug)]
pub struct RunStore {
    /// Held for the store's life: no second writer can open this run.
    _lock: RunLock,
    dir: PathBuf,
    log: File,
    /// The call store, opened at its first write.
    calls: Option<File>,
    /// Store call texts (`sweep run --no-text` turns it off).
    keep_texts: bool,
    done: DoneSet,
    stored: usize,
}

/// The stored phases. Each cell id is kept once, so that a long sweep (one entry per phase)
/// costs a few bytes per phase rather than a copy of the cell id each.
#[derive(Debug, Default)]
struct DoneSet {
    /// Cell → (rep, warm-up, phase) → the latest stored attempt (`Record::retry`) and
    /// whether it has a failed call (what `sweep run --retry-failed` re-runs).
    by_cell: HashMap<String, HashMap<(u32, bool, Phase), Attempt>>,
    len: usize,
}

/// The latest stored attempt of a phase.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    retry: u32,
    failed: bool,
}

impl DoneSet {
    fn get(&self, cell_id: &str, rep: u32, warmup: bool, phase: Phase) -> Option<Attempt> {
        self.by_cell
            .get(cell_id)
            .and_then(|s| s.get(&(rep, warmup, phase)).copied())
    }

    fn latest(&self, cell_id: &str, rep: u32, warmup: bool, phase: Phase) -> Option<u32> {
        self.get(cell_id, rep, warmup, phase).map(|a| a.retry)
    }

    /// Notes a stored record (or group) of attempt `retry`; `failed` when it has a failed call.
    fn insert(&mut self, key: &PhaseKey, retry: u32, failed: bool) {
        let set = match self.by_cell.get_mut(key.cell_id.as_str()) {
            Some(s) => s,
            None => self.by_cell.entry(key.cell_id.clone()).or_default(),
        };
        match set.get_mut(&(key.rep, key.warmup, key.phase)) {
            Some(a) if retry > a.retry => *a = Attempt { retry, failed },
            Some(a) if retry == a.retry => a.failed |= failed,
            Some(_) => {}
            None => {
                set.insert((key.rep, key.warmup, key.phase), Attempt { retry, failed });
                self.len += 1;
            }
        }
    }

    /// Planned phases (reload probes aside) whose latest attempt has a failed call.
    fn failed(&self) -> usize {
        self.by_cell
            .values()
            .flat_map(|s| s.iter())
            .filter(|((_, _, phase), a)| a.failed && *phase != Phase::Reload)
            .count()
    }
}

/// What opening an existing run found.
#[derive(Debug, Default)]
pub struct ResumeInfo {
    /// Complete records kept in the log (every attempt, superseded ones included).
    pub records: usize,
    /// Distinct phases stored (reload probes included), whatever their outcome.
    pub phases_done: usize,
    /// Line number of a torn last line that was cut off.
    pub torn_line: Option<usize>,
    /// Records of an incomplete last phase that were cut off (that phase runs again).
    pub incomplete_records: usize,
    /// Call-store groups cut off: a torn last one, or ones whose phase the records lack.
    pub calls_cut: usize,
}

impl RunStore {
    /// Creates `dir` (must not exist yet) and writes the manifest.
    pub fn create(dir: &Path, manifest: &Manifest) -> Result<RunStore, StoreError> {
        if dir.join(MANIFEST).exists() {
            return Err(StoreError::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "run directory already exists",
                ),
            });
        }
        // Build the run directory under a hidden name and rename it into place, so a crash
        // during creation never leaves a run directory without a manifest (which resume
        // could not recognise, and which would make the next run start a second directory).
        let parent = dir.parent().unwrap_or(Path::new("."));
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into());
        let staging = parent.join(format!(".creating-{name}-{}", std::process::id()));
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        clean_leftovers(parent);
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
        }
        std::fs::create_dir_all(&staging).map_err(io(&staging))?;
        let lock = RunLock::acquire(&staging)?;
        manifest.write(&staging)?;
        File::create(staging.join(RECORDS_JSONL)).map_err(io(&staging))?;
        if dir.exists() {
            // An empty directory left by an older version (or made by hand) is replaced.
            std::fs::remove_dir(dir).map_err(io(dir))?;
        }
        std::fs::rename(&staging, dir).map_err(io(dir))?;
        if let Ok(d) = File::open(parent) {
            let _ = d.sync_all();
        }
        let path = dir.join(RECORDS_JSONL);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok(RunStore {
            _lock: lock,
            dir: dir.to_path_buf(),
            log,
            calls: None,
            keep_texts: true,
            done: DoneSet::default(),
            stored: 0,
        })
    }

    /// Opens an existing run for resuming: reads what is stored, cuts off a torn tail.
    pub fn open(dir: &Path) -> Result<(RunStore, ResumeInfo), StoreError> {
        Manifest::read(dir)?;
        // Before anything is read or cut: a second writer would append to a log that this
        // one is about to truncate.
        let lock = RunLock::acquire(dir)?;
        let path = dir.join(RECORDS_JSONL);
        let read = read_records(&path)?;
        let mut info = ResumeInfo {
            records: read.records.len(),
            ..Default::default()
        };
        // A cut-short last phase starts at or before a torn last line: cutting it covers both.
        if let Some((lines, offset)) = read.incomplete_tail {
            tracing::warn!(
                "{}: the last phase has only {lines} of its records (a crash mid-write); \
                 cutting them off, that phase will run again",
                path.display()
            );
            truncate(&path, offset)?;
            info.incomplete_records = lines;
        } else if let Some((line, offset)) = read.torn_tail {
            tracing::warn!(
                "{}:{line}: torn last line (a crash mid-write); cutting it off, its phase will run again",
                path.display()
            );
            truncate(&path, offset)?;
            info.torn_line = Some(line);
        }
        let mut done = DoneSet::default();
        for r in &read.records {
            done.insert(&r.phase_key(), r.retry, !r.ok);
        }
        info.phases_done = done.len;
        // The call store keeps exactly the phases the records keep.
        let stored: std::collections::HashSet<(PhaseKey, u32)> = read
            .records
            .iter()
            .map(|r| (r.phase_key(), r.retry))
            .collect();
        let calls_path = dir.join(CALLS_ZST);
        let cut = calls::cut_to_stored(&calls_path, &stored)?;
        if cut.frames > 0 || cut.torn {
            tracing::warn!(
                "{}: cut {} call group(s) whose phase is not in the records{} (a crash \
                 mid-write); they run again",
                calls_path.display(),
                cut.frames,
                if cut.torn {
                    " and a torn last group"
                } else {
                    ""
                }
            );
        }
        info.calls_cut = cut.frames + usize::from(cut.torn);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok((
            RunStore {
                _lock: lock,
                dir: dir.to_path_buf(),
                log,
                calls: None,
                keep_texts: true,
                done,
                stored: read.records.len(),
            },
            info,
        ))
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether call texts are stored with their records (on unless `sweep run --no-text`).
    pub fn set_keep_call_texts(&mut self, keep: bool) {
        self.keep_texts = keep;
    }

    pub(crate) fn is_done(&self, key: &PhaseKey) -> bool {
        self.is_phase_done(&key.cell_id, key.rep, key.warmup, key.phase)
    }

    /// [`RunStore::is_done`] without building a key.
    pub fn is_phase_done(&self, cell_id: &str, rep: u32, warmup: bool, phase: Phase) -> bool {
        self.done.latest(cell_id, rep, warmup, phase).is_some()
    }

    /// The latest stored attempt of a phase (`None` when it was never stored).
    pub fn latest_attempt(&self, key: &PhaseKey) -> Option<u32> {
        self.done
            .latest(&key.cell_id, key.rep, key.warmup, key.phase)
    }

    /// True when the latest stored attempt of a phase has a failed call.
    pub fn has_failed(&self, cell_id: &str, rep: u32, warmup: bool, phase: Phase) -> bool {
        self.done
            .get(cell_id, rep, warmup, phase)
            .is_some_and(|a| a.failed)
    }

    /// How many planned phases (reload probes aside) have a failed call in their latest
    /// attempt: what `sweep run --retry-failed` would re-run.
    pub fn failed_phases(&self) -> usize {
        self.done.failed()
    }

    /// Appends a further attempt of a phase (`sweep run --retry-failed`, `sweep merge`): its
    /// records' `retry` must be above every attempt already stored for that phase.
    pub fn append_attempt(&mut self, records: &[Record]) -> Result<(), StoreError> {
        self.append_attempt_with_calls(records, &[])
    }

    /// [`RunStore::append_attempt`] with the calls' texts (see [`RunStore::append_with_calls`]).
    pub fn append_attempt_with_calls(
        &mut self,
        records: &[Record],
        calls: &[CallText],
    ) -> Result<(), StoreError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let key = first.phase_key();
        if self.latest_attempt(&key).is_some_and(|l| l >= first.retry) {
            return Err(StoreError::Duplicate(key));
        }
        self.write_group(records, calls)
    }

    /// Records in the log: those found on opening plus those appended since.
    pub fn stored(&self) -> usize {
        self.stored
    }

    /// Appends one atomic group (all records of one phase) with a single write + fsync.
    pub fn append(&mut self, records: &[Record]) -> Result<(), StoreError> {
        self.append_with_calls(records, &[])
    }

    /// Appends one phase group and the texts of its calls: the texts whose `call_id` a
    /// record of the group carries go to the call store first (one compressed frame, one
    /// write + fsync), then the records. A text no record names is not stored.
    pub fn append_with_calls(
        &mut self,
        records: &[Record],
        calls: &[CallText],
    ) -> Result<(), StoreError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let key = first.phase_key();
        if self.is_done(&key) {
            return Err(StoreError::Duplicate(key));
        }
        self.write_group(records, calls)
    }

    /// The group's texts, in record order, keyed by the attempt's call ids.
    fn group_texts(&self, records: &[Record], calls: &[CallText]) -> Vec<CallText> {
        if !self.keep_texts || calls.is_empty() {
            return Vec::new();
        }
        records
            .iter()
            .filter_map(|r| {
                let id = r.call_id.as_deref()?;
                let c = calls.iter().find(|c| c.call_id == id)?;
                Some(CallText {
                    call_id: calls::id_for_attempt(id, r.retry),
                    cell_id: r.cell_id.clone(),
                    rep: r.rep,
                    warmup: r.warmup,
                    phase: r.phase,
                    retry: r.retry,
                    ..c.clone()
                })
            })
            .collect()
    }

    /// Writes a group's call texts as one frame, durably; on failure cuts the store back.
    /// Returns the store's length before the frame (to cut it back if the records fail).
    fn write_texts(&mut self, texts: &[CallText]) -> Result<Option<u64>, StoreError> {
        if texts.is_empty() {
            return Ok(None);
        }
        let path = self.dir.join(CALLS_ZST);
        let frame = calls::encode_frame(&path, texts)?;
        if self.calls.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io(&path))?;
            self.calls = Some(f);
        }
        let Some(f) = self.calls.as_mut() else {
            return Ok(None);
        };
        let before = f.metadata().map_err(io(&path))?.len();
        if let Err(e) = f.write_all(&frame).and_then(|()| f.sync_data()) {
            if f.set_len(before).is_ok() {
                let _ = f.sync_data();
            }
            return Err(io(&path)(e));
        }
        Ok(Some(before))
    }

    /// One write + fsync of a phase group (after its call texts); on a short write the log
    /// (and the call store) is cut back.
    fn write_group(&mut self, records: &[Record], calls: &[CallText]) -> Result<(), StoreError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let key = first.phase_key();
        let retry = first.retry;
        let mut buf = Vec::with_capacity(records.len() * 1024);
        let group = u32::try_from(records.len()).unwrap_or(u32::MAX);
        for r in records {
            let r = Record {
                phase_records: group,
                call_id: r
                    .call_id
                    .as_deref()
                    .map(|id| calls::id_for_attempt(id, r.retry)),
                ..r.clone()
            };
            serde_json::to_writer(&mut buf, &r).map_err(|e| StoreError::BadRecord {
                path: self.dir.join(RECORDS_JSONL),
                line: 0,
                message: e.to_string(),
            })?;
            buf.push(b'\n');
        }
        let texts = self.group_texts(records, calls);
        let texts_from = self.write_texts(&texts)?;
        let path = self.dir.join(RECORDS_JSONL);
        let before = self.log.metadata().map_err(io(&path))?.len();
        if let Err(e) = self.log.write_all(&buf).and_then(|()| self.log.sync_data()) {
            // A short write (disk full, file size limit) may have left whole lines of this
            // phase behind; resume would then take the phase as done with records missing.
            // Cut the log back to the last complete phase (shrinking needs no space).
            if self.log.set_len(before).is_ok() {
                let _ = self.log.sync_data();
            }
            if let (Some(at), Some(f)) = (texts_from, self.calls.as_mut()) {
                if f.set_len(at).is_ok() {
                    let _ = f.sync_data();
                }
            }
            return Err(io(&path)(e));
        }
        self.done.insert(&key, retry, records.iter().any(|r| !r.ok));
        self.stored += records.len();
        Ok(())
    }

    /// Writes an agent report: `reports/<cell>/run_<k>/<agent>_report.md` (`warmup_<k>` for
    /// warm-up runs; k is 1-based).
    pub fn write_report(
        &self,
        cell_id: &str,
        rep: u32,
        warmup: bool,
        file_stem: &str,
        markdown: &str,
    ) -> Result<PathBuf, StoreError> {
        let run = if warmup {
            format!("warmup_{}", rep + 1)
        } else {
            format!("run_{}", rep + 1)
        };
        let dir = self.dir.join(REPORTS_DIR).join(cell_id).join(run);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join(format!("{file_stem}_report.md"));
        atomic::write_atomic(&path, markdown.as_bytes())?;
        Ok(path)
    }
}

/// A new run id: UTC time plus a random suffix, sortable by start time.
pub fn new_run_id() -> String {
    let now = chrono::Utc::now();
    let nanos = now.timestamp_subsec_nanos();
    let pid = std::process::id();
    format!(
        "{}-{:04x}",
        now.format("%Y%m%d-%H%M%S"),
        (nanos ^ pid.rotate_left(16)) & 0xffff
    )
}

/// Removes what a process killed while creating a run or a merge left behind: hidden
/// `.creating-<run>-<pid>` / `.merging-<run>-<pid>` directories whose process is gone.
pub fn clean_leftovers(exp_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(exp_dir) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with(".creating-") || name.starts_with(".merging-")) {
            continue;
        }
        let pid = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            tracing::debug!("removing a start-up leftover: {}", e.path().display());
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Unfinished runs of an experiment with the same spec hash, newest first (start order,
/// [`ExperimentDir::runs`]).
pub fn unfinished_runs(exp_dir: &Path, spec_hash: &str) -> Vec<StoredRun> {
    ExperimentDir::new(exp_dir)
        .runs()
        .runs
        .into_iter()
        .rev()
        .filter(|r| r.manifest.finished_at.is_none() && r.manifest.spec_hash == spec_hash)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Phase, Stage};

    fn rec(cell: &str, rep: u32, phase: Phase, stage: Stage) -> Record {
        Record {
            experiment: "e".into(),
            run_id: "r".into(),
            cell_id: cell.into(),
            rep,
            phase,
            stage,
            ok: true,
            ttft_ms: Some(12.5),
            ..Default::default()
        }
    }

    fn manifest() -> Manifest {
        Manifest {
            experiment: "e".into(),
            run_id: "r".into(),
            spec_hash: "h".into(),
            ..Default::default()
        }
    }

    #[test]
    fn append_read_and_refuse_duplicates() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let mut s = RunStore::create(&dir, &manifest()).unwrap();
        let group = [
            rec("c1", 0, Phase::Single, Stage::Analysis),
            rec("c1", 0, Phase::Single, Stage::Report),
        ];
        s.append(&group).unwrap();
        assert!(matches!(s.append(&group), Err(StoreError::Duplicate(_))));
        s.append(&[rec("c1", 1, Phase::Single, Stage::Analysis)])
            .unwrap();
        drop(s);
        let read = read_records(&dir.join(RECORDS_JSONL)).unwrap();
        assert_eq!(read.records.len(), 3);
        let stored = Record {
            phase_records: 2, // the store notes the group's size on each record
            ..group[0].clone()
        };
        assert_eq!(read.records[0], stored);
        assert_eq!(read.records[2].phase_records, 1);
        assert!(read.torn_tail.is_none());
        let (s, info) = RunStore::open(&dir).unwrap();
        assert_eq!(info.records, 3);
        assert_eq!(info.phases_done, 2);
        assert!(s.is_done(&group[0].phase_key()));
    }

    /// The store knows which phases' latest attempt failed, across a reopen, and a further
    /// attempt replaces that knowledge.
    #[test]
    fn failed_phases_follow_the_latest_attempt() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let mut s = RunStore::create(&dir, &manifest()).unwrap();
        let bad = Record {
            ok: false,
            error_kind: Some("connection_refused".into()),
            ..rec("c1", 0, Phase::Single, Stage::Analysis)
        };
        s.append(&[bad.clone(), rec("c1", 0, Phase::Single, Stage::Report)])
            .unwrap();
        s.append(&[rec("c1", 1, Phase::Single, Stage::Analysis)])
            .unwrap();
        assert!(s.has_failed("c1", 0, false, Phase::Single));
        assert!(!s.has_failed("c1", 1, false, Phase::Single));
        assert_eq!(s.failed_phases(), 1);
        drop(s);
        let (mut s, _) = RunStore::open(&dir).unwrap();
        assert_eq!(s.failed_phases(), 1);
        assert!(s.has_failed("c1", 0, false, Phase::Single));
        let again = Record {
            retry: 1,
            ..rec("c1", 0, Phase::Single, Stage::Analysis)
        };
        s.append_attempt(&[again]).unwrap();
        assert_eq!(s.failed_phases(), 0);
        drop(s);
        let (s, _) = RunStore::open(&dir).unwrap();
        assert_eq!(s.failed_phases(), 0);
        let read = read_records(&dir.join(RECORDS_JSONL)).unwrap();
        assert_eq!((read.records.len(), read.superseded), (4, 2));
    }

    #[test]
    fn torn_tail_is_cut_and_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let mut s = RunStore::create(&dir, &manifest()).unwrap();
        s.append(&[rec("c1", 0, Phase::Single, Stage::Analysis)])
            .unwrap();
        drop(s);
        let path = dir.join(RECORDS_JSONL);
        let good_len = std::fs::metadata(&path).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"experiment\":\"e\",\"run_id\":").unwrap();
        drop(f);
        let read = read_records(&path).unwrap();
        assert_eq!(read.records.len(), 1);
        assert_eq!(read.torn_tail, Some((2, good_len)));
        let (mut s, info) = RunStore::open(&dir).unwrap();
        assert_eq!(info.torn_line, Some(2));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
        s.append(&[rec("c1", 1, Phase::Single, Stage::Analysis)])
            .unwrap();
        drop(s);
        let read = read_records(&path).unwrap();
        assert_eq!(read.records.len(), 2);
        assert!(read.torn_tail.is_none());
    }

    /// A crash mid-write can leave whole lines of a phase (a pair phase writes 8 records):
    /// resume must not take that phase as done.
    #[test]
    fn incomplete_last_phase_is_cut_and_runs_again() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let mut s = RunStore::create(&dir, &manifest()).unwrap();
        let single = rec("c1", 0, Phase::Single, Stage::Analysis);
        s.append(std::slice::from_ref(&single)).unwrap();
        let pair: Vec<Record> = [Stage::Analysis, Stage::Report, Stage::Analysis]
            .into_iter()
            .map(|st| rec("c2", 0, Phase::Concurrent, st))
            .collect();
        s.append(&pair).unwrap();
        drop(s);
        let path = dir.join(RECORDS_JSONL);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[1].contains("\"phase_records\":3"), "{}", lines[1]);
        let keep_single = lines[0].len() as u64 + 1;
        // The crash: only the first two of the pair phase's three lines (and half the third).
        let cut = format!(
            "{}\n{}\n{}\n{}",
            lines[0],
            lines[1],
            lines[2],
            &lines[3][..20]
        );
        std::fs::write(&path, cut).unwrap();
        let read = read_records(&path).unwrap();
        assert_eq!(read.records.len(), 1);
        assert_eq!(read.incomplete_tail, Some((2, keep_single)));
        let (mut s, info) = RunStore::open(&dir).unwrap();
        assert_eq!(info.incomplete_records, 2);
        assert_eq!((info.records, info.phases_done), (1, 1));
        assert!(!s.is_done(&pair[0].phase_key()), "the cut phase runs again");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), keep_single);
        s.append(&pair).unwrap();
        drop(s);
        let read = read_records(&path).unwrap();
        assert_eq!(read.records.len(), 4);
        assert!(read.incomplete_tail.is_none() && read.torn_tail.is_none());
        // Logs written before `phase_records` existed (0) are taken as complete.
        let old = serde_json::to_string(&single).unwrap();
        assert!(old.contains("\"phase_records\":0"));
        std::fs::write(
            &path,
            format!("{}\n", old.replace(",\"phase_records\":0", "")),
        )
        .unwrap();
        assert_eq!(read_records(&path).unwrap().records.len(), 1);
    }

    #[test]
    fn corruption_in_the_middle_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(RECORDS_JSONL);
        let good = serde_json::to_string(&rec("c", 0, Phase::Single, Stage::Analysis)).unwrap();
        std::fs::write(&path, format!("{good}\nnot json\n{good}\n")).unwrap();
        match read_records(&path) {
            Err(StoreError::BadRecord { line, .. }) => assert_eq!(line, 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reports_go_under_cell_and_run() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let s = RunStore::create(&dir, &manifest()).unwrap();
        let p = s
            .write_report("cell-1", 0, false, "chimera_agent_b", "# hi")
            .unwrap();
        assert!(p.ends_with("reports/cell-1/run_1/chimera_agent_b_report.md"));
        let p = s.write_report("cell-1", 0, true, "x", "# hi").unwrap();
        assert!(p.ends_with("reports/cell-1/warmup_1/x_report.md"));
    }

    #[test]
    fn merge_joins_shards_and_refuses_other_specs() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        let mut sa = RunStore::create(&a, &manifest()).unwrap();
        sa.append(&[
            rec("c1", 0, Phase::Single, Stage::Analysis),
            rec("c1", 0, Phase::Single, Stage::Report),
        ])
        .unwrap();
        let mut sb = RunStore::create(&b, &manifest()).unwrap();
        sb.append(&[rec("c2", 0, Phase::Single, Stage::Analysis)])
            .unwrap();
        sb.write_report("c2", 0, false, "x", "# r").unwrap();
        let out = tmp.path().join("merged");
        let m = merge(&[a.clone(), b.clone()], &out, false)
            .unwrap()
            .manifest;
        assert_eq!(m.merged_from.len(), 2);
        let read = read_records(&out.join(RECORDS_JSONL)).unwrap();
        assert_eq!(read.records.len(), 3);
        assert!(read.records.iter().all(|r| r.run_id == "merged"));
        assert!(out.join("reports/c2/run_1/x_report.md").exists());
        // the same shard twice: a phase stored twice
        let again = tmp.path().join("again");
        assert!(merge(&[a.clone(), a.clone()], &again, false).is_err());
        // a different spec
        let c = tmp.path().join("c");
        let mut other = manifest();
        other.spec_hash = "other".into();
        RunStore::create(&c, &other).unwrap();
        let err = merge(&[a, c], &tmp.path().join("bad"), false).unwrap_err();
        assert!(
            err.to_string().contains("different experiment files"),
            "{err}"
        );
    }

    fn text(r: &Record) -> CallText {
        CallText {
            call_id: r.call_id.clone().unwrap(),
            cell_id: String::new(),
            rep: 0,
            warmup: false,
            phase: Phase::Single,
            retry: 0,
            agent: "single".into(),
            stage: r.stage,
            prompt_version: "sweep-1".into(),
            persona_mode: String::new(),
            attempts: 1,
            request: crate::backend::WireRequest {
                endpoint: "http://127.0.0.1:11434/api/generate".into(),
                body: serde_json::json!({"prompt": format!("asked {}", r.stage.as_str())}),
            },
            response: Some("answered".into()),
            error: None,
        }
    }

    /// Texts go with the records that name them (the store sets their key, and the attempt
    /// suffix of a later attempt); a text no record names, and every text with texts off,
    /// are not stored; a merge carries the shards' texts.
    #[test]
    fn call_texts_follow_their_records_and_merge() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let mut s = RunStore::create(&a, &manifest()).unwrap();
        let mut group = [
            rec("c1", 0, Phase::Single, Stage::Analysis),
            rec("c1", 0, Phase::Single, Stage::Report),
        ];
        group[0].call_id = Some("c1/r1/single/single/analysis".into());
        group[1].call_id = Some("c1/r1/single/single/report".into());
        let mut stray = text(&group[0]);
        stray.call_id = "nobody".into();
        s.append_with_calls(&group, &[text(&group[1]), text(&group[0]), stray])
            .unwrap();
        let again: Vec<Record> = group
            .iter()
            .map(|r| Record {
                retry: 1,
                ..r.clone()
            })
            .collect();
        let texts: Vec<CallText> = group.iter().map(text).collect();
        s.append_attempt_with_calls(&again, &texts).unwrap();
        s.set_keep_call_texts(false);
        let mut off = rec("c1", 1, Phase::Single, Stage::Analysis);
        off.call_id = Some("c1/r2/single/single/analysis".into());
        s.append_with_calls(std::slice::from_ref(&off), &[text(&off)])
            .unwrap();
        drop(s);
        let calls = read_calls(&a).unwrap();
        let ids: Vec<&str> = calls.iter().map(|c| c.call_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "c1/r1/single/single/analysis",
                "c1/r1/single/single/report",
                "c1/r1/single/single/analysis~1",
                "c1/r1/single/single/report~1"
            ]
        );
        assert!(calls.iter().all(|c| c.cell_id == "c1" && c.rep == 0));
        assert_eq!((calls[0].retry, calls[2].retry), (0, 1));
        let recs = read_records(&a.join(RECORDS_JSONL)).unwrap().records;
        assert_eq!(
            recs[3].call_id.as_deref(),
            Some("c1/r1/single/single/report~1")
        );

        let b = tmp.path().join("b");
        let mut sb = RunStore::create(&b, &manifest()).unwrap();
        let mut other = rec("c2", 0, Phase::Single, Stage::Analysis);
        other.call_id = Some("c2/r1/single/single/analysis".into());
        sb.append_with_calls(std::slice::from_ref(&other), &[text(&other)])
            .unwrap();
        drop(sb);
        let out = tmp.path().join("merged");
        let m = merge(&[a, b], &out, true).unwrap().manifest;
        assert_eq!(m.call_texts.as_deref(), Some(CALLS_ZST));
        let merged: Vec<String> = read_calls(&out)
            .unwrap()
            .into_iter()
            .map(|c| c.call_id)
            .collect();
        assert_eq!(merged.len(), 5);
        assert!(merged.contains(&"c2/r1/single/single/analysis".to_string()));
    }

    #[test]
    fn run_ids_sort_by_time() {
        let a = new_run_id();
        assert_eq!(a.len(), "20261123-101500-abcd".len());
    }
}
