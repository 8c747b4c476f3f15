//! `calls.jsonl.zst`, the call store: every call's request as sent (endpoint and JSON body:
//! prompt or messages, system prompt, options) and its full answer, beside the records, so
//! that anyone can check later what a cell actually asked and what the model said.
//!
//! One zstd frame per phase group, written with one `write` + `fsync` *before* the group's
//! records (so every stored phase has its texts). A crash between the two leaves a frame
//! whose phase is not in the records, and a crash mid-frame a torn last frame: resume cuts
//! both, as it cuts the records' torn tail, so a phase's texts are stored exactly once.
//! Decompressed, a frame is JSON lines of [`CallText`], one per call that was sent, in the
//! order of the group's records. Concatenated frames are themselves a valid zstd stream, so
//! `zstd -dc calls.jsonl.zst` reads the whole store as JSON lines.
//!
//! Secrets are never stored: the backends redact an API key and URL passwords before a
//! text reaches this module ([`crate::backend::Backend::redact`]).

use super::{io, StoreError};
use crate::backend::WireRequest;
use crate::record::{Phase, PhaseKey, Stage};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;

/// File name of the call store in a run directory.
pub const CALLS_ZST: &str = "calls.jsonl.zst";

/// zstd level: prompts repeat the same data summary, so even a fast level shrinks a frame
/// several times over.
const LEVEL: i32 = 3;

/// One call as stored: its key, the request as sent and the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallText {
    /// The key the call's record carries (`Record::call_id`).
    pub call_id: String,
    /// The call's cell (`Record::cell_id`), set by the store.
    pub cell_id: String,
    /// The call's repetition (`Record::rep`), set by the store.
    pub rep: u32,
    /// A warm-up unit's call or a reload probe (`Record::warmup`), set by the store.
    pub warmup: bool,
    /// The call's phase (`Record::phase`), set by the store.
    pub phase: Phase,
    /// The phase attempt (`Record::retry`), set by the store.
    #[serde(default)]
    pub retry: u32,
    /// "single", "A" or "B".
    pub agent: String,
    /// Which of the agent run's two calls this is (`analysis` for a reload probe).
    pub stage: Stage,
    /// The prompt set (`sweep-1`, `chimera-2025`, `small-1`; empty for a reload probe).
    #[serde(default)]
    pub prompt_version: String,
    /// `system` or `echo` (empty for an agent without persona, and for a reload probe).
    #[serde(default)]
    pub persona_mode: String,
    /// Attempts made; the request is the last attempt's (all attempts send the same).
    pub attempts: u32,
    /// Where the request went and its JSON body, exactly as sent, secrets redacted.
    pub request: WireRequest,
    /// The model's full answer; `None` when the call failed.
    pub response: Option<String>,
    /// Why the call failed (as in its record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CallText {
    /// The phase group the call belongs to.
    pub fn group(&self) -> (PhaseKey, u32) {
        (
            PhaseKey {
                cell_id: self.cell_id.clone(),
                rep: self.rep,
                warmup: self.warmup,
                phase: self.phase,
            },
            self.retry,
        )
    }
}

/// A call id for the `retry`-th attempt of its phase: `<id>~<retry>` (the id as is for the
/// first attempt). An id that already carries an attempt keeps only the new one.
pub fn id_for_attempt(id: &str, retry: u32) -> String {
    let base = id.split('~').next().unwrap_or(id);
    if retry == 0 {
        base.to_string()
    } else {
        format!("{base}~{retry}")
    }
}

/// One phase group's texts as one compressed frame.
pub(super) fn encode_frame(path: &Path, calls: &[CallText]) -> Result<Vec<u8>, StoreError> {
    let mut jsonl = Vec::with_capacity(calls.len() * 4096);
    for c in calls {
        serde_json::to_writer(&mut jsonl, c).map_err(|e| StoreError::BadRecord {
            path: path.to_path_buf(),
            line: 0,
            message: e.to_string(),
        })?;
        jsonl.push(b'\n');
    }
    zstd::bulk::compress(&jsonl, LEVEL).map_err(io(path))
}

/// A frame found in the call store.
#[derive(Debug)]
struct Frame {
    offset: u64,
    calls: Vec<CallText>,
}

/// Every whole frame, and the offset of a torn last one (a crash mid-write).
fn scan(path: &Path) -> Result<(Vec<Frame>, Option<u64>), StoreError> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), None)),
        Err(e) => return Err(io(path)(e)),
    };
    let mut frames = Vec::new();
    let mut off = 0usize;
    while off < data.len() {
        let rest = &data[off..];
        let size = zstd::zstd_safe::find_frame_compressed_size(rest)
            .ok()
            .filter(|&n| n > 0 && n <= rest.len());
        // No whole frame here: the last write was cut short.
        let Some(n) = size else {
            return Ok((frames, Some(off as u64)));
        };
        match decode(&rest[..n]) {
            Some(calls) => frames.push(Frame {
                offset: off as u64,
                calls,
            }),
            None if off + n == data.len() => return Ok((frames, Some(off as u64))),
            None => {
                return Err(StoreError::BadRecord {
                    path: path.to_path_buf(),
                    line: frames.len() + 1,
                    message: format!(
                        "frame {} (at byte {off}) is damaged and others follow it",
                        frames.len() + 1
                    ),
                })
            }
        }
        off += n;
    }
    Ok((frames, None))
}

fn decode(frame: &[u8]) -> Option<Vec<CallText>> {
    let text = zstd::stream::decode_all(frame).ok()?;
    text.split(|b| *b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
        .map(|l| serde_json::from_slice(l).ok())
        .collect()
}

/// Every stored call, in the order written. A torn last frame (a crash the run has not
/// resumed from yet) is left out.
pub fn read_calls(dir: &Path) -> Result<Vec<CallText>, StoreError> {
    let (frames, _) = scan(&dir.join(CALLS_ZST))?;
    Ok(frames.into_iter().flat_map(|f| f.calls).collect())
}

/// What [`cut_to_stored`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CallsCut {
    /// Whole frames of phases that are not in the records.
    pub frames: usize,
    /// A torn last frame was cut.
    pub torn: bool,
}

/// Cuts the call store back to the phases the records hold (`stored`: (phase, attempt)
/// pairs): from the first frame whose phase is not stored, or that is torn, to the end.
/// Such frames can only be at the end (a frame is written just before its records, and a
/// failed records write cuts its frame at once).
pub(super) fn cut_to_stored(
    path: &Path,
    stored: &HashSet<(PhaseKey, u32)>,
) -> Result<CallsCut, StoreError> {
    let (frames, torn) = scan(path)?;
    let first_orphan = frames.iter().position(|f| {
        f.calls
            .first()
            .is_some_and(|c| !stored.contains(&c.group()))
    });
    let (cut_at, orphans) = match first_orphan {
        Some(i) => (Some(frames[i].offset), frames.len() - i),
        None => (torn, 0),
    };
    let Some(at) = cut_at else {
        return Ok(CallsCut::default());
    };
    super::records::truncate(path, at)?;
    Ok(CallsCut {
        frames: orphans,
        torn: torn.is_some(),
    })
}

/// Which stored calls `sweep show` prints; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    /// A cell id, or an arm name (all its cells).
    pub cell: Option<String>,
    /// 1-based repetition, as in the reports' `run_<k>` (`warmup_<k>` with `warmup`).
    pub rep: Option<u32>,
    /// With `rep`: count warm-up runs instead of measured ones. Alone: only warm-up calls.
    pub warmup: bool,
    pub(crate) stage: Option<Stage>,
    /// "single", "A" or "B".
    pub agent: Option<String>,
    pub(crate) phase: Option<Phase>,
    /// A call id, or the start of one (`<cell>/r1/A` for an agent run's calls).
    pub call: Option<String>,
}

impl CallFilter {
    pub(crate) fn matches(&self, c: &CallText) -> bool {
        let cell = self.cell.as_deref().is_none_or(|want| {
            c.cell_id == want
                || c.cell_id
                    .strip_prefix(want)
                    .is_some_and(|rest| rest.starts_with('-') && !rest[1..].contains('-'))
        });
        let rep = match self.rep {
            Some(k) => c.phase != Phase::Reload && c.warmup == self.warmup && c.rep + 1 == k,
            None => !self.warmup || c.warmup,
        };
        cell && rep
            && self.stage.is_none_or(|s| c.stage == s)
            && self.agent.as_deref().is_none_or(|a| c.agent == a)
            && self.phase.is_none_or(|p| c.phase == p)
            && self
                .call
                .as_deref()
                .is_none_or(|id| c.call_id.starts_with(id))
    }
}

/// A stored call for people: a header line with its key, the endpoint, the system prompt,
/// the prompt (or each message), the rest of the body (options) as JSON, then the answer.
pub fn render(c: &CallText) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "=== {}  (cell {}, {}{}, agent {}, phase {}, stage {}{}{}, attempts {})",
        c.call_id,
        c.cell_id,
        if c.warmup { "warm-up " } else { "rep " },
        c.rep + 1,
        c.agent,
        c.phase.as_str(),
        c.stage.as_str(),
        if c.prompt_version.is_empty() {
            String::new()
        } else {
            format!(", prompts {}", c.prompt_version)
        },
        if c.persona_mode.is_empty() {
            String::new()
        } else {
            format!(", persona {}", c.persona_mode)
        },
        c.attempts
    );
    let _ = writeln!(s, "POST {}", c.request.endpoint);
    let mut rest = c.request.body.clone();
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(t) => t.clone(),
        other => other.to_string(),
    };
    if let Some(obj) = rest.as_object_mut() {
        if let Some(sys) = obj.remove("system") {
            let _ = writeln!(s, "--- system\n{}", text(&sys));
        }
        if let Some(p) = obj.remove("prompt") {
            let _ = writeln!(s, "--- prompt\n{}", text(&p));
        }
        if let Some(serde_json::Value::Array(msgs)) = obj.remove("messages") {
            for m in &msgs {
                let role = m.get("role").map(text).unwrap_or_else(|| "message".into());
                let content = m.get("content").map(text).unwrap_or_default();
                let _ = writeln!(s, "--- {role}\n{content}");
            }
        }
    }
    let _ = writeln!(s, "--- request (other fields)\n{rest}");
    match (&c.response, &c.error) {
        (Some(r), _) => {
            let _ = writeln!(s, "--- response\n{r}");
        }
        (None, Some(e)) => {
            let _ = writeln!(s, "--- failed\n{e}");
        }
        (None, None) => {
            let _ = writeln!(s, "--- no response");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(cell: &str, rep: u32, stage: Stage) -> CallText {
        CallText {
            call_id: format!("{cell}/r{}/single/single/{}", rep + 1, stage.as_str()),
            cell_id: cell.into(),
            rep,
            warmup: false,
            phase: Phase::Single,
            retry: 0,
            agent: "single".into(),
            stage,
            prompt_version: "sweep-1".into(),
            persona_mode: String::new(),
            attempts: 1,
            request: WireRequest {
                endpoint: "http://127.0.0.1:11434/api/generate".into(),
                body: serde_json::json!({"prompt": "Run: x\n\nhello", "options": {"num_ctx": 512}}),
            },
            response: Some("an answer".into()),
            error: None,
        }
    }

    #[test]
    fn attempt_ids() {
        assert_eq!(
            id_for_attempt("c/r1/A/concurrent/report", 0),
            "c/r1/A/concurrent/report"
        );
        assert_eq!(
            id_for_attempt("c/r1/A/concurrent/report", 2),
            "c/r1/A/concurrent/report~2"
        );
        assert_eq!(
            id_for_attempt("c/r1/A/concurrent/report~2", 3),
            "c/r1/A/concurrent/report~3"
        );
    }

    #[test]
    fn frames_round_trip_and_orphans_and_torn_tails_are_cut() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(CALLS_ZST);
        let g1 = [call("c1", 0, Stage::Analysis), call("c1", 0, Stage::Report)];
        let g2 = [call("c1", 1, Stage::Analysis)];
        let mut bytes = encode_frame(&path, &g1).unwrap();
        let first = bytes.len() as u64;
        bytes.extend(encode_frame(&path, &g2).unwrap());
        let second = bytes.len() as u64;
        bytes.extend(&encode_frame(&path, &[call("c2", 0, Stage::Analysis)]).unwrap()[..9]);
        std::fs::write(&path, &bytes).unwrap();

        let all = read_calls(tmp.path()).unwrap();
        assert_eq!(all, [g1.to_vec(), g2.to_vec()].concat());
        // The whole file is one zstd stream of JSON lines (what `zstd -dc` prints).
        let whole = zstd::stream::decode_all(&bytes[..second as usize]).unwrap();
        assert_eq!(whole.iter().filter(|b| **b == b'\n').count(), 3);

        // Records hold both groups: only the torn frame goes.
        let stored: HashSet<_> = [g1[0].group(), g2[0].group()].into_iter().collect();
        let cut = cut_to_stored(&path, &stored).unwrap();
        assert_eq!(
            cut,
            CallsCut {
                frames: 0,
                torn: true
            }
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), second);
        // Records lost the second group (cut as incomplete): its frame goes too.
        let stored: HashSet<_> = [g1[0].group()].into_iter().collect();
        let cut = cut_to_stored(&path, &stored).unwrap();
        assert_eq!(
            cut,
            CallsCut {
                frames: 1,
                torn: false
            }
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), first);
        assert_eq!(read_calls(tmp.path()).unwrap(), g1.to_vec());
        // A missing store reads as empty and cuts nothing.
        let none = tmp.path().join("none").join(CALLS_ZST);
        assert_eq!(cut_to_stored(&none, &stored).unwrap(), CallsCut::default());
    }
}
