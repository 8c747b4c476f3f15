//! The one reader of `records.jsonl`, the crash-safe log. Resume, merge, analysis and the
//! regression gate all read records through here (analysis and the gate via
//! [`super::columnar`], which builds its frame from this reader when the parquet copy
//! cannot be trusted).
//!
//! A bad line in the middle is corruption (an error with its line number); a bad or
//! unterminated *last* line is a torn write from a crash (reported, not returned); whole
//! lines of a last phase that a crash cut short are reported and left out; the same phase
//! stored twice is corruption. A phase re-run by `sweep run --retry-failed` is stored again
//! with a higher `retry`: the latest is current, the earlier ones are marked superseded.

use super::{io, StoreError};
use crate::record::{PhaseKey, Record};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::Path;

/// What reading a records log found.
#[derive(Debug, Default)]
pub struct ReadOutcome {
    /// Every complete record in log order; superseded attempts carry `superseded = true`.
    pub records: Vec<Record>,
    /// A torn (unterminated or unparseable) last line: its 1-based number and byte offset.
    pub torn_tail: Option<(usize, u64)>,
    /// Whole lines of a last phase that a crash cut short (fewer records than their
    /// `phase_records`): how many, and the byte offset where that phase starts. They are
    /// not in `records`.
    pub incomplete_tail: Option<(usize, u64)>,
    /// Records of phases that a later `--retry-failed` attempt replaced.
    pub superseded: usize,
}

impl ReadOutcome {
    /// The records that count: the latest attempt of every phase.
    pub fn current(&self) -> impl Iterator<Item = &Record> {
        self.records.iter().filter(|r| !r.superseded)
    }
}

/// Reads `records.jsonl` (a missing file reads as empty).
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
    let mut lines: Vec<usize> = Vec::new(); // line number of each record
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
        if std::str::from_utf8(trimmed).is_err() {
            pending = Some((line_no, offset, "not UTF-8 text".into()));
        } else {
            match serde_json::from_slice::<Record>(trimmed) {
                Ok(r) if terminated => {
                    out.records.push(r);
                    starts.push(offset);
                    lines.push(line_no);
                }
                Ok(_) => pending = Some((line_no, offset, "unterminated last line".into())),
                Err(e) => pending = Some((line_no, offset, e.to_string())),
            }
        }
        offset += n as u64;
    }
    if let Some((l, off, _)) = pending {
        out.torn_tail = Some((l, off));
    }
    // The last phase group: complete only if all the records it was written with are there.
    if let Some(last) = out.records.last() {
        let key = (last.phase_key(), last.retry);
        let expected = last.phase_records as usize;
        let group = out
            .records
            .iter()
            .rev()
            .take_while(|r| (r.phase_key(), r.retry) == key)
            .count();
        if expected > 0 && group < expected {
            let first = out.records.len() - group;
            out.incomplete_tail = Some((group, starts[first]));
            out.records.truncate(first);
        }
    }
    check_groups(path, &mut out, &lines)?;
    Ok(out)
}

/// Refuses a phase stored twice (same phase, same retry) and marks superseded attempts.
fn check_groups(path: &Path, out: &mut ReadOutcome, lines: &[usize]) -> Result<(), StoreError> {
    let mut first_line: HashMap<(PhaseKey, u32), usize> = HashMap::new();
    let mut latest: HashMap<PhaseKey, u32> = HashMap::new();
    let mut prev: Option<(PhaseKey, u32)> = None;
    for (i, r) in out.records.iter().enumerate() {
        let key = (r.phase_key(), r.retry);
        if prev.as_ref() == Some(&key) {
            continue;
        }
        if let Some(first) = first_line.get(&key) {
            return Err(StoreError::BadRecord {
                path: path.to_path_buf(),
                line: lines[i],
                message: format!(
                    "phase {} rep {}{} {} stored twice (first at line {first}): the log was \
                     appended to by two writers or edited",
                    key.0.cell_id,
                    key.0.rep + 1,
                    if key.0.warmup { " (warm-up)" } else { "" },
                    key.0.phase.as_str()
                ),
            });
        }
        let e = latest.entry(key.0.clone()).or_insert(key.1);
        *e = (*e).max(key.1);
        first_line.insert(key.clone(), lines[i]);
        prev = Some(key);
    }
    for r in &mut out.records {
        if latest.get(&r.phase_key()).is_some_and(|&l| r.retry < l) {
            r.superseded = true;
            out.superseded += 1;
        }
    }
    Ok(())
}

/// Cuts the log back to `len` bytes, durably.
pub(super) fn truncate(path: &Path, len: u64) -> Result<(), StoreError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io(path))?;
    f.set_len(len).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}
