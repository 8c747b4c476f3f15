//! The benchmark corpus the agents ingest: every `.csv`, `.json` and `.md` under one root.
//!
//! Ingest is deterministic (paths sorted byte-wise, relative to the root, `/`-separated) so
//! that the data summary, and therefore the prompts, are the same on every machine.
//!
//! Modification times come from the filesystem, which is what a user pointing sweep at their
//! own reports expects, unless the corpus has its times recorded as data: git keeps no
//! mtimes, so a fresh clone of the shipped corpus (`experiments/corpus/`) would print the
//! checkout's time in every "Latest modified" line. Its intended times are recorded beside
//! it, in `<corpus dir>.mtimes.tsv` (`experiments/corpus.mtimes.tsv`, written by
//! `scripts/gen_corpus.py`): `path<TAB>unix seconds<TAB>sha256 of the content`. The loader
//! uses a recorded time for every file whose content still has the recorded hash (an edited
//! file gets its filesystem time again), so the data summary is the seeds' on any checkout
//! without a manual step. The corpus hash covers paths and contents only, never mtimes.

use crate::spec::CorpusConfig;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

/// Field names worth extracting as metrics (case-insensitive substring match on the full,
/// dot-flattened key).
const METRIC_WORDS: &[&str] = &["tok", "throughput", "latency", "ttft", "speed"];

/// Paths listed per kind in the data summary.
const SUMMARY_LISTED: usize = 5;

/// Why a corpus could not be ingested, or its recorded mtimes read or applied.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// The corpus root does not exist.
    #[error("corpus directory {path} does not exist")]
    Missing {
        /// The corpus root as configured.
        path: PathBuf,
    },
    /// The corpus root exists but is a file.
    #[error("corpus path {path} is not a directory")]
    NotADirectory {
        /// The corpus root as configured.
        path: PathBuf,
    },
    /// No usable file under the root (none of the three kinds, or all over
    /// `max_file_bytes`): a run would measure nothing.
    #[error("corpus {path} holds no .csv, .json or .md file: refusing a silent empty run")]
    Empty {
        /// The corpus root as configured.
        path: PathBuf,
    },
    /// Reading a directory, a file or its metadata, or setting a file's mtime, failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line of the mtimes file is not `path<TAB>unix-seconds[<TAB>sha256]` (while loading
    /// a corpus this only turns off the recorded times, with a warning).
    #[error("{path}, line {line}: expected `path<TAB>unix-seconds[<TAB>sha256]`")]
    BadMtimeLine {
        /// The mtimes file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
}

/// Kind of a corpus file, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// `.csv` (extension matched case-insensitively, as for the others).
    Csv,
    /// `.json`.
    Json,
    /// `.md`.
    Markdown,
}

impl FileKind {
    /// Order of the sections in the data summary (as in the seeds).
    pub const ALL: [FileKind; 3] = [FileKind::Csv, FileKind::Json, FileKind::Markdown];

    fn from_path(p: &Path) -> Option<Self> {
        let ext = p.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(FileKind::Csv),
            "json" => Some(FileKind::Json),
            "md" => Some(FileKind::Markdown),
            _ => None,
        }
    }

    /// Section label in the data summary.
    pub fn label(&self) -> &'static str {
        match self {
            FileKind::Csv => "CSV",
            FileKind::Json => "JSON",
            FileKind::Markdown => "MARKDOWN",
        }
    }
}

/// What parsing a file yielded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Parsed {
    /// Header fields and number of data rows.
    Csv {
        /// Fields of the first non-blank line (quotes removed, trimmed, BOM stripped).
        headers: Vec<String>,
        /// Non-blank lines after the header (a quoted field spanning lines counts per line).
        rows: usize,
    },
    /// Numeric fields whose names mention a metric word, keys flattened with dots.
    Json {
        /// Dot-flattened key → value.
        metrics: BTreeMap<String, f64>,
    },
    /// Number of heading lines.
    Markdown {
        /// Lines that start with `#` after leading whitespace.
        headings: usize,
    },
    /// The file could not be parsed (reason); it still counts as a corpus file.
    Unparsed(String),
}

/// One ingested corpus file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusFile {
    /// Relative to the corpus root, `/`-separated.
    pub path: String,
    /// From the file's extension.
    pub kind: FileKind,
    pub(crate) size: u64,
    pub(crate) modified: Option<DateTime<Utc>>,
    /// `modified` is the time recorded in the corpus' mtimes file, not the filesystem's.
    #[serde(default)]
    pub modified_recorded: bool,
    /// What parsing yielded (or why it failed).
    pub parsed: Parsed,
    /// What the seed system harvested from this file for its report prompt (`csv_<column>`
    /// from the first ten rows, `json_<path>` of numeric fields), in file order.
    #[serde(default)]
    pub harvested: Vec<(String, serde_json::Value)>,
}

/// An ingested corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Corpus {
    pub(crate) root: PathBuf,
    /// Sorted by path.
    pub files: Vec<CorpusFile>,
    /// Files skipped or not parsed, one line each (also logged with `tracing::warn!`).
    pub warnings: Vec<String>,
    /// sha256 (hex) over sorted relative paths and contents, for the run manifest.
    pub hash: String,
    /// Sum of the sizes of the ingested files, in bytes (skipped files not counted).
    pub total_bytes: u64,
    /// Wall time of the ingest, ms.
    pub ingest_ms: f64,
}

impl Corpus {
    /// Walks and parses the corpus named in the experiment file.
    pub fn load(cfg: &CorpusConfig) -> Result<Corpus, CorpusError> {
        Self::load_path(&cfg.path, cfg.max_file_bytes)
    }

    /// Walks `root` (never following a symlink out of it), parses every file, hashes it all.
    pub fn load_path(root: &Path, max_file_bytes: u64) -> Result<Corpus, CorpusError> {
        let t0 = Instant::now();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CorpusError::Io { path, source }
        };
        let meta = match std::fs::metadata(root) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CorpusError::Missing {
                    path: root.to_path_buf(),
                })
            }
            Err(e) => return Err(io(root)(e)),
        };
        if !meta.is_dir() {
            return Err(CorpusError::NotADirectory {
                path: root.to_path_buf(),
            });
        }
        let canon_root = root.canonicalize().map_err(io(root))?;
        let mut warnings = Vec::new();
        let recorded = recorded_mtimes(root, &mut warnings);
        let mut found: Vec<(String, PathBuf, FileKind)> = Vec::new();
        walk(&canon_root, root, "", &mut found, &mut warnings)?;
        found.sort_by(|a, b| a.0.cmp(&b.0));

        let mut files = Vec::with_capacity(found.len());
        let mut hasher = Sha256::new();
        let mut total_bytes = 0;
        for (rel, full, kind) in found {
            let meta = std::fs::metadata(&full).map_err(io(&full))?;
            if meta.len() > max_file_bytes {
                warn(
                    &mut warnings,
                    format!(
                        "{rel}: skipped, {} bytes is over max_file_bytes = {max_file_bytes}",
                        meta.len()
                    ),
                );
                continue;
            }
            let bytes = std::fs::read(&full).map_err(io(&full))?;
            hasher.update((rel.len() as u64).to_le_bytes());
            hasher.update(rel.as_bytes());
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(&bytes);
            total_bytes += bytes.len() as u64;
            let parsed = parse(kind, &bytes);
            if let Parsed::Unparsed(why) = &parsed {
                warn(&mut warnings, format!("{rel}: not parsed ({why})"));
            }
            let recorded_time = recorded.get(&rel).and_then(|(secs, sha)| {
                let same = sha
                    .as_deref()
                    .is_none_or(|want| crate::spec::hex(&Sha256::digest(&bytes)) == want);
                same.then(|| DateTime::<Utc>::from_timestamp(*secs, 0))
                    .flatten()
            });
            files.push(CorpusFile {
                modified_recorded: recorded_time.is_some(),
                modified: recorded_time.or_else(|| meta.modified().ok().map(DateTime::<Utc>::from)),
                harvested: harvest(kind, &bytes),
                path: rel,
                kind,
                size: bytes.len() as u64,
                parsed,
            });
        }
        if files.is_empty() {
            return Err(CorpusError::Empty {
                path: root.to_path_buf(),
            });
        }
        Ok(Corpus {
            root: root.to_path_buf(),
            files,
            warnings,
            hash: crate::spec::hex(&hasher.finalize()),
            total_bytes,
            ingest_ms: t0.elapsed().as_secs_f64() * 1000.0,
        })
    }

    /// Number of ingested files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True when no file was ingested (never for a corpus from [`Corpus::load`], which
    /// refuses an empty one).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The files of one kind, in path order.
    pub fn of_kind(&self, kind: FileKind) -> impl Iterator<Item = &CorpusFile> {
        self.files.iter().filter(move |f| f.kind == kind)
    }

    /// The seeds' data summary, byte for byte: `Total files analyzed: N`, then per kind
    /// present `KIND Files (k)`, up to five paths, `... and M more`, `Latest modified: …`,
    /// sections separated by a blank line; ends with one newline.
    pub fn data_summary(&self) -> String {
        let mut sections = Vec::new();
        for kind in FileKind::ALL {
            let files: Vec<&CorpusFile> = self.of_kind(kind).collect();
            if files.is_empty() {
                continue;
            }
            let mut s = format!("{} Files ({})\n", kind.label(), files.len());
            for f in files.iter().take(SUMMARY_LISTED) {
                s.push_str(&format!("  - {}\n", f.path));
            }
            if files.len() > SUMMARY_LISTED {
                s.push_str(&format!(
                    "  ... and {} more\n",
                    files.len() - SUMMARY_LISTED
                ));
            }
            if let Some(latest) = files.iter().filter_map(|f| f.modified).max() {
                s.push_str(&format!(
                    "  Latest modified: {}\n",
                    latest.format("%Y-%m-%d %H:%M:%S UTC")
                ));
            }
            sections.push(s);
        }
        format!(
            "Total files analyzed: {}\n\n{}",
            self.files.len(),
            sections.join("\n")
        )
    }

    /// The seed system's metric set for its report prompt (`extract_performance_metrics_from_data`
    /// in Chimeraforge src/rust/demo_multiagent/src/main.rs): `total_files_analyzed`,
    /// `data_types`, `total_file_size_bytes`, then every file's harvest (the first value of
    /// a key wins, files in path order), `json_documents`, `markdown_heading_count`.
    pub fn chimera_metrics(&self) -> BTreeMap<String, serde_json::Value> {
        use serde_json::Value;
        let mut m = BTreeMap::new();
        m.insert("total_files_analyzed".into(), Value::from(self.files.len()));
        let kinds: std::collections::BTreeSet<&str> = self
            .files
            .iter()
            .map(|f| match f.kind {
                FileKind::Csv => "csv",
                FileKind::Json => "json",
                FileKind::Markdown => "markdown",
            })
            .collect();
        m.insert(
            "data_types".into(),
            Value::from(kinds.into_iter().collect::<Vec<_>>()),
        );
        m.insert(
            "total_file_size_bytes".into(),
            Value::from(self.total_bytes),
        );
        for f in &self.files {
            for (k, v) in &f.harvested {
                m.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let json_documents = self
            .files
            .iter()
            .filter(|f| matches!(f.parsed, Parsed::Json { .. }))
            .count();
        if json_documents > 0 {
            m.entry("json_documents".into())
                .or_insert(Value::from(json_documents));
        }
        let headings: usize = self
            .files
            .iter()
            .map(|f| match f.parsed {
                Parsed::Markdown { headings } => headings,
                _ => 0,
            })
            .sum();
        if headings > 0 {
            m.entry("markdown_heading_count".into())
                .or_insert(Value::from(headings));
        }
        m
    }

    /// Up to `limit` extracted metrics (`path: key = value`), for the report prompt.
    pub fn metric_digest(&self, limit: usize) -> Vec<String> {
        let mut out = Vec::new();
        for f in &self.files {
            if let Parsed::Json { metrics } = &f.parsed {
                for (k, v) in metrics {
                    if out.len() >= limit {
                        return out;
                    }
                    out.push(format!("{}: {k} = {v}", f.path));
                }
            }
        }
        out
    }
}

fn warn(warnings: &mut Vec<String>, msg: String) {
    tracing::warn!(target: "sweep::corpus", "{msg}");
    warnings.push(msg);
}

/// Recursive walk. Symlinks are resolved and kept only when they point to a file inside the
/// root (a symlinked directory is never entered: no loops, no escapes).
fn walk(
    canon_root: &Path,
    dir: &Path,
    rel: &str,
    out: &mut Vec<(String, PathBuf, FileKind)>,
    warnings: &mut Vec<String>,
) -> Result<(), CorpusError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CorpusError::Io { path, source }
    };
    let entries = std::fs::read_dir(dir).map_err(io(dir))?;
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            warn(
                warnings,
                format!("{}: skipped, name is not UTF-8", path.display()),
            );
            continue;
        };
        let rel_path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let ft = entry.file_type().map_err(io(&path))?;
        if ft.is_symlink() {
            let target = match path.canonicalize() {
                Ok(t) => t,
                Err(_) => {
                    warn(warnings, format!("{rel_path}: skipped, dangling symlink"));
                    continue;
                }
            };
            if !target.starts_with(canon_root) {
                warn(
                    warnings,
                    format!("{rel_path}: skipped, symlink points outside the corpus root"),
                );
                continue;
            }
            if target.is_file() {
                if let Some(kind) = FileKind::from_path(&path) {
                    out.push((rel_path, target, kind));
                }
            } else {
                warn(
                    warnings,
                    format!("{rel_path}: skipped, symlinked directory not followed"),
                );
            }
        } else if ft.is_dir() {
            walk(canon_root, &path, &rel_path, out, warnings)?;
        } else if ft.is_file() {
            if let Some(kind) = FileKind::from_path(&path) {
                out.push((rel_path, path, kind));
            }
        }
    }
    Ok(())
}

fn parse(kind: FileKind, bytes: &[u8]) -> Parsed {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => return Parsed::Unparsed(format!("not UTF-8: {e}")),
    };
    match kind {
        FileKind::Csv => parse_csv(text),
        FileKind::Json => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => {
                let mut metrics = BTreeMap::new();
                flatten_metrics(&v, "", &mut metrics);
                Parsed::Json { metrics }
            }
            Err(e) => Parsed::Unparsed(format!("invalid JSON: {e}")),
        },
        FileKind::Markdown => Parsed::Markdown {
            headings: text
                .lines()
                .filter(|l| l.trim_start().starts_with('#'))
                .count(),
        },
    }
}

fn parse_csv(text: &str) -> Parsed {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    match lines.next() {
        Some(header) => Parsed::Csv {
            headers: split_csv_line(header.trim_start_matches('\u{feff}')),
            rows: lines.count(),
        },
        None => Parsed::Unparsed("empty CSV".into()),
    }
}

/// Splits one CSV line (RFC 4180 quoting, `""` for a quote inside quotes).
fn split_csv_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(c),
        }
    }
    fields.push(cur.trim().to_string());
    fields
}

fn is_metric_name(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    METRIC_WORDS.iter().any(|w| lower.contains(w))
}

fn flatten_metrics(v: &serde_json::Value, prefix: &str, out: &mut BTreeMap<String, f64>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                flatten_metrics(v, &join(k), out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten_metrics(v, &join(&i.to_string()), out);
            }
        }
        serde_json::Value::Number(n) if !prefix.is_empty() && is_metric_name(prefix) => {
            if let Some(x) = n.as_f64() {
                out.insert(prefix.to_string(), x);
            }
        }
        _ => {}
    }
}

/// The recorded mtimes file of a corpus root: `<root>.mtimes.tsv` beside the directory.
pub fn mtimes_file(root: &Path) -> PathBuf {
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "corpus".into());
    root.with_file_name(format!("{name}.mtimes.tsv"))
}

/// The recorded times (and content hashes) of the corpus at `root`, if it has a mtimes file;
/// a file that cannot be read is a warning, never an error (the filesystem's times apply).
fn recorded_mtimes(
    root: &Path,
    warnings: &mut Vec<String>,
) -> std::collections::HashMap<String, (i64, Option<String>)> {
    let file = mtimes_file(root);
    if !file.is_file() {
        return Default::default();
    }
    match read_mtimes_with_hashes(&file) {
        Ok(rows) => rows.into_iter().map(|(p, t, h)| (p, (t, h))).collect(),
        Err(e) => {
            warn(warnings, format!("recorded mtimes not used: {e}"));
            Default::default()
        }
    }
}

/// Reads a mtimes file: `path<TAB>unix-seconds[<TAB>sha256]` lines (`#` starts a comment).
pub fn read_mtimes_with_hashes(
    file: &Path,
) -> Result<Vec<(String, i64, Option<String>)>, CorpusError> {
    let text = std::fs::read_to_string(file).map_err(|source| CorpusError::Io {
        path: file.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || CorpusError::BadMtimeLine {
            path: file.to_path_buf(),
            line: i + 1,
        };
        let mut cols = line.split('\t');
        let (Some(p), Some(t)) = (cols.next(), cols.next()) else {
            return Err(bad());
        };
        let secs = t.trim().parse().map_err(|_| bad())?;
        let sha = cols
            .next()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty());
        if sha
            .as_deref()
            .is_some_and(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(bad());
        }
        out.push((p.to_string(), secs, sha));
    }
    Ok(out)
}

/// Reads a mtimes file's `(path, unix seconds)` pairs (see [`read_mtimes_with_hashes`]).
pub fn read_mtimes(file: &Path) -> Result<Vec<(String, i64)>, CorpusError> {
    Ok(read_mtimes_with_hashes(file)?
        .into_iter()
        .map(|(p, t, _)| (p, t))
        .collect())
}

/// The seed system's numeric reading of a field: trailing `%` and `s` cut, `,` removed.
fn seed_numeric(value: &str) -> Option<f64> {
    value
        .trim()
        .trim_end_matches(['%', 's'])
        .replace(',', "")
        .parse::<f64>()
        .ok()
}

/// What the seed system took from one file for its report prompt: `csv_<column>` of the
/// metric-named columns from the first ten data rows (a number when it reads as one, else
/// the text), `json_<path>` (`a.b[0].c`) of metric-named numbers and numeric strings.
fn harvest(kind: FileKind, bytes: &[u8]) -> Vec<(String, serde_json::Value)> {
    use serde_json::Value;
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Vec::new();
    };
    /// The first value of a key wins, as in the seed system's map.
    fn put(k: String, v: Value, out: &mut Vec<(String, Value)>) {
        if !out.iter().any(|(have, _)| *have == k) {
            out.push((k, v));
        }
    }
    let mut out: Vec<(String, Value)> = Vec::new();
    match kind {
        FileKind::Csv => {
            let mut lines = text.lines().filter(|l| !l.trim().is_empty());
            let Some(header) = lines.next() else {
                return out;
            };
            let headers = split_csv_line(header.trim_start_matches('\u{feff}'));
            for row in lines.take(10) {
                let fields = split_csv_line(row);
                for (i, h) in headers.iter().enumerate() {
                    if !is_metric_name(h) {
                        continue;
                    }
                    let raw = fields.get(i).map(|s| s.trim()).unwrap_or("");
                    let v = seed_numeric(raw)
                        .map(Value::from)
                        .unwrap_or_else(|| Value::from(raw));
                    put(format!("csv_{h}"), v, &mut out);
                }
            }
        }
        FileKind::Json => {
            fn walk(v: &Value, path: &str, out: &mut Vec<(String, Value)>) {
                match v {
                    Value::Object(map) => {
                        for (k, v) in map {
                            let p = if path.is_empty() {
                                k.clone()
                            } else {
                                format!("{path}.{k}")
                            };
                            walk(v, &p, out);
                        }
                    }
                    Value::Array(items) => {
                        for (i, v) in items.iter().enumerate() {
                            walk(v, &format!("{path}[{i}]"), out);
                        }
                    }
                    Value::Number(n) if !path.is_empty() && is_metric_name(path) => {
                        if let Some(x) = n.as_f64() {
                            put(format!("json_{path}"), Value::from(x), out);
                        }
                    }
                    Value::String(t) if !path.is_empty() && is_metric_name(path) => {
                        if let Some(x) = seed_numeric(t) {
                            put(format!("json_{path}"), Value::from(x), out);
                        }
                    }
                    _ => {}
                }
            }
            if let Ok(v) = serde_json::from_str::<Value>(text) {
                walk(&v, "", &mut out);
            }
        }
        FileKind::Markdown => {}
    }
    out
}

/// Sets each listed file's mtime under `root` (for reproducible "Latest modified" lines).
pub fn apply_mtimes(root: &Path, mtimes: &[(String, i64)]) -> Result<(), CorpusError> {
    for (rel, secs) in mtimes {
        let path = root.join(rel);
        let when = if *secs >= 0 {
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs.unsigned_abs())
        } else {
            SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(secs.unsigned_abs())
        };
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(when))
            .map_err(|source| CorpusError::Io { path, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_header_with_quotes() {
        assert_eq!(
            split_csv_line(r#"a, "b,c" ,"say ""hi""""#),
            vec!["a", "b,c", r#"say "hi""#]
        );
    }

    #[test]
    fn json_metrics_are_flattened_and_filtered() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"model":"x","runs":[{"tokens_per_second":10.5,"run":1}],
               "summary":{"ttft_ms":{"p50":3}},"Latency":2,"name_speed":"fast"}"#,
        )
        .unwrap();
        let mut m = BTreeMap::new();
        flatten_metrics(&v, "", &mut m);
        let keys: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            vec!["Latency", "runs.0.tokens_per_second", "summary.ttft_ms.p50"]
        );
        assert_eq!(m["summary.ttft_ms.p50"], 3.0);
    }
}
