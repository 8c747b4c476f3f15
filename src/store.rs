//! The run store: `results/<experiment>/<run-id>/` with `manifest.json`, the crash-safe
//! `records.jsonl` log, agent reports, and (at the end) `records.parquet`.
//!
//! Crash safety: each atomic group of records (one phase of a unit) is written with one
//! `write` and made durable with `fsync` before the runner moves on. A crash mid-write can
//! only leave a torn last line; resume detects it, warns, and cuts it off before appending,
//! so no record is ever written twice or glued to a torn one.

use crate::record::{Phase, PhaseKey, Record};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

pub const MANIFEST: &str = "manifest.json";
pub const RECORDS_JSONL: &str = "records.jsonl";
pub const RECORDS_PARQUET: &str = "records.parquet";
pub const REPORTS_DIR: &str = "reports";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a run directory (no {MANIFEST})", .0.display())]
    NotARun(PathBuf),
    #[error("{}: bad manifest: {message}", path.display())]
    BadManifest { path: PathBuf, message: String },
    #[error("{}:{line}: bad record: {message}", path.display())]
    BadRecord {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("refusing to store {0:?} twice")]
    Duplicate(PhaseKey),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
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
    /// Run ids merged into this one (`sweep merge`).
    #[serde(default)]
    pub merged_from: Vec<String>,
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
        let tmp = dir.join(format!("{MANIFEST}.tmp"));
        let text = serde_json::to_string_pretty(self).map_err(|e| StoreError::BadManifest {
            path: path.clone(),
            message: e.to_string(),
        })?;
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(text.as_bytes()).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(())
    }
}

/// What reading a records log found.
#[derive(Debug, Default)]
pub struct ReadOutcome {
    pub records: Vec<Record>,
    /// A torn (unterminated or unparseable) last line: its 1-based number and byte offset.
    pub torn_tail: Option<(usize, u64)>,
    /// Whole lines of a last phase that a crash cut short (fewer records than their
    /// `phase_records`): how many, and the byte offset where that phase starts. They are
    /// not in `records`.
    pub incomplete_tail: Option<(usize, u64)>,
}

/// Reads `records.jsonl`. A bad line in the middle is an error (the log is corrupt); a bad or
/// unterminated *last* line is a torn write from a crash and is reported, not returned.
pub fn read_records(path: &Path) -> Result<ReadOutcome, StoreError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ReadOutcome::default()),
        Err(e) => return Err(io(path)(e)),
    };
    let mut reader = BufReader::new(file);
    let mut out = ReadOutcome::default();
    let mut buf = Vec::new();
    let mut offset: u64 = 0;
    let mut line_no = 0;
    let mut pending: Option<(usize, u64, String)> = None;
    let mut starts: Vec<u64> = Vec::new(); // byte offset of each record's line
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if let Some((l, _, msg)) = pending.take() {
            // The bad line was not the last one: real corruption.
            return Err(StoreError::BadRecord {
                path: path.to_path_buf(),
                line: l,
                message: msg,
            });
        }
        let terminated = buf.last() == Some(&b'\n');
        let body = if terminated { &buf[..n - 1] } else { &buf[..] };
        let trimmed = body.trim_ascii();
        if trimmed.is_empty() && terminated {
            offset += n as u64;
            continue;
        }
        match serde_json::from_slice::<Record>(trimmed) {
            Ok(r) if terminated => {
                out.records.push(r);
                starts.push(offset);
            }
            Ok(_) => pending = Some((line_no, offset, "unterminated last line".into())),
            Err(e) => pending = Some((line_no, offset, e.to_string())),
        }
        offset += n as u64;
    }
    if let Some((l, off, _)) = pending {
        out.torn_tail = Some((l, off));
    }
    // The last phase group: complete only if all the records it was written with are there.
    if let Some(last) = out.records.last() {
        let key = last.phase_key();
        let expected = last.phase_records as usize;
        let group = out
            .records
            .iter()
            .rev()
            .take_while(|r| r.phase_key() == key)
            .count();
        if expected > 0 && group < expected {
            let first = out.records.len() - group;
            out.incomplete_tail = Some((group, starts[first]));
            out.records.truncate(first);
        }
    }
    Ok(out)
}

/// Cuts the log back to `len` bytes, durably.
fn truncate(path: &Path, len: u64) -> Result<(), StoreError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io(path))?;
    f.set_len(len).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// An open run directory that records are appended to.
#[derive(Debug)]
pub struct RunStore {
    dir: PathBuf,
    log: File,
    done: DoneSet,
    stored: usize,
}

/// The stored phases. Each cell id is kept once, so that a long sweep (one entry per phase)
/// costs a few bytes per phase rather than a copy of the cell id each.
#[derive(Debug, Default)]
struct DoneSet {
    by_cell: HashMap<String, HashSet<(u32, bool, Phase)>>,
    len: usize,
}

impl DoneSet {
    fn contains(&self, cell_id: &str, rep: u32, warmup: bool, phase: Phase) -> bool {
        self.by_cell
            .get(cell_id)
            .is_some_and(|s| s.contains(&(rep, warmup, phase)))
    }

    fn insert(&mut self, key: &PhaseKey) {
        let set = match self.by_cell.get_mut(key.cell_id.as_str()) {
            Some(s) => s,
            None => self.by_cell.entry(key.cell_id.clone()).or_default(),
        };
        if set.insert((key.rep, key.warmup, key.phase)) {
            self.len += 1;
        }
    }
}

/// What opening an existing run found.
#[derive(Debug, Default)]
pub struct ResumeInfo {
    pub records: usize,
    pub phases_done: usize,
    /// Line number of a torn last line that was cut off.
    pub torn_line: Option<usize>,
    /// Records of an incomplete last phase that were cut off (that phase runs again).
    pub incomplete_records: usize,
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
        let staging = parent.join(format!(".creating-{name}"));
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
        }
        std::fs::create_dir_all(&staging).map_err(io(&staging))?;
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
            dir: dir.to_path_buf(),
            log,
            done: DoneSet::default(),
            stored: 0,
        })
    }

    /// Opens an existing run for resuming: reads what is stored, cuts off a torn tail.
    pub fn open(dir: &Path) -> Result<(RunStore, ResumeInfo), StoreError> {
        Manifest::read(dir)?;
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
            done.insert(&r.phase_key());
        }
        info.phases_done = done.len;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok((
            RunStore {
                dir: dir.to_path_buf(),
                log,
                done,
                stored: read.records.len(),
            },
            info,
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn is_done(&self, key: &PhaseKey) -> bool {
        self.is_phase_done(&key.cell_id, key.rep, key.warmup, key.phase)
    }

    /// [`RunStore::is_done`] without building a key.
    pub fn is_phase_done(&self, cell_id: &str, rep: u32, warmup: bool, phase: Phase) -> bool {
        self.done.contains(cell_id, rep, warmup, phase)
    }

    pub fn stored(&self) -> usize {
        self.stored
    }

    /// Appends one atomic group (all records of one phase) with a single write + fsync.
    pub fn append(&mut self, records: &[Record]) -> Result<(), StoreError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let key = first.phase_key();
        if self.is_done(&key) {
            return Err(StoreError::Duplicate(key));
        }
        let mut buf = Vec::with_capacity(records.len() * 1024);
        let group = u32::try_from(records.len()).unwrap_or(u32::MAX);
        for r in records {
            let r = Record {
                phase_records: group,
                ..r.clone()
            };
            serde_json::to_writer(&mut buf, &r).map_err(|e| StoreError::BadRecord {
                path: self.dir.join(RECORDS_JSONL),
                line: 0,
                message: e.to_string(),
            })?;
            buf.push(b'\n');
        }
        let path = self.dir.join(RECORDS_JSONL);
        let before = self.log.metadata().map_err(io(&path))?.len();
        if let Err(e) = self.log.write_all(&buf).and_then(|()| self.log.sync_data()) {
            // A short write (disk full, file size limit) may have left whole lines of this
            // phase behind; resume would then take the phase as done with records missing.
            // Cut the log back to the last complete phase (shrinking needs no space).
            if self.log.set_len(before).is_ok() {
                let _ = self.log.sync_data();
            }
            return Err(io(&path)(e));
        }
        self.done.insert(&key);
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
        std::fs::write(&path, markdown).map_err(io(&path))?;
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

/// Unfinished runs of an experiment with the same spec hash, newest first.
pub fn unfinished_runs(exp_dir: &Path, spec_hash: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(exp_dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            Manifest::read(p)
                .map(|m| m.finished_at.is_none() && m.spec_hash == spec_hash)
                .unwrap_or(false)
        })
        .collect();
    out.sort();
    out.reverse();
    out
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
        let m = merge(&[a.clone(), b.clone()], &out).unwrap();
        assert_eq!(m.merged_from.len(), 2);
        let read = read_records(&out.join(RECORDS_JSONL)).unwrap();
        assert_eq!(read.records.len(), 3);
        assert!(read.records.iter().all(|r| r.run_id == "merged"));
        assert!(out.join("reports/c2/run_1/x_report.md").exists());
        // the same shard twice: a phase stored twice
        let again = tmp.path().join("again");
        assert!(merge(&[a.clone(), a.clone()], &again).is_err());
        // a different spec
        let c = tmp.path().join("c");
        let mut other = manifest();
        other.spec_hash = "other".into();
        RunStore::create(&c, &other).unwrap();
        let err = merge(&[a, c], &tmp.path().join("bad")).unwrap_err();
        assert!(
            err.to_string().contains("different experiment files"),
            "{err}"
        );
    }

    #[test]
    fn run_ids_sort_by_time() {
        let a = new_run_id();
        assert_eq!(a.len(), "20261123-101500-abcd".len());
    }
}

/// Joins shard stores of one experiment into a new run at `out`. Refuses stores made from
/// different experiment files (spec hash) and any phase stored twice across shards.
pub fn merge(runs: &[PathBuf], out: &Path) -> Result<Manifest, MergeError> {
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
    let mut merged = first.clone();
    merged.run_id = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(new_run_id);
    merged.shard = None;
    merged.merged_from = manifests.iter().map(|m| m.run_id.clone()).collect();
    merged.planned_cells = manifests.iter().map(|m| m.planned_cells).sum();
    merged.planned_units = manifests.iter().map(|m| m.planned_units).sum();
    merged.planned_calls = manifests.iter().map(|m| m.planned_calls).sum();
    merged.started_at = manifests
        .iter()
        .map(|m| m.started_at.clone())
        .min()
        .unwrap_or_default();
    merged.finished_at = if manifests.iter().all(|m| m.finished_at.is_some()) {
        manifests.iter().filter_map(|m| m.finished_at.clone()).max()
    } else {
        None
    };
    let mut store = RunStore::create(out, &merged)?;
    for r in runs {
        let read = read_records(&r.join(RECORDS_JSONL))?;
        if let Some((line, _)) = read.torn_tail {
            tracing::warn!(
                "{}:{line}: torn last line ignored while merging",
                r.join(RECORDS_JSONL).display()
            );
        }
        // Group consecutive records of one phase so each group stays atomic.
        let mut group: Vec<Record> = Vec::new();
        for mut rec in read.records {
            if group
                .first()
                .is_some_and(|g| g.phase_key() != rec.phase_key())
            {
                store.append(&group)?;
                group.clear();
            }
            rec.run_id = merged.run_id.clone();
            group.push(rec);
        }
        store.append(&group)?;
        let reports = r.join(REPORTS_DIR);
        if reports.is_dir() {
            copy_dir(&reports, &out.join(REPORTS_DIR))?;
        }
    }
    Ok(merged)
}

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("nothing to merge: name at least one run directory")]
    NoRuns,
    #[error("{} and {} come from different experiment files (spec hash differs); refusing to merge", a.display(), b.display())]
    DifferentSpecs { a: PathBuf, b: PathBuf },
    #[error(transparent)]
    Store(#[from] StoreError),
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
