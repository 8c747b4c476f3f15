//! The declarative experiment file: parse, validate, and hand the plan a checked [`Spec`].
//!
//! Every error names the file, line and column and what was expected; validation collects
//! all semantic problems at once rather than stopping at the first.

mod diag;
mod model;
mod options;
mod raw;
mod server;
mod table;
mod validate;

pub use model::*;

pub use diag::{Diagnostic, SourceMap};
pub use options::{
    ModelOptions, OptionValue, KV_CACHE_TYPES, OPTION_NAMES, SERVER_OPTION_NAMES,
    WORKLOAD_OPTION_NAMES,
};
pub use server::{
    route, separate_servers, Launch, Preset, Route, ServerConfig, DEFAULT_READY_TIMEOUT_S,
    DEFAULT_STOP_GRACE_S,
};
pub use table::{BoldRule, CiStyle, Columns, Statistic, TableSpec};

/// Words the validator accepts for `order`, backend `kind`, `api`, `agent` and `persona`
/// (the JSON Schema lists the same constants).
pub const ORDER_WORDS: &[&str] = &["blocks", "interleaved", "grouped", "random", "sequential"];
pub(crate) const BACKEND_KIND_WORDS: &[&str] = &["ollama", "openai", "embedded"];
pub(crate) const API_WORDS: &[&str] = &["generate", "chat"];
pub(crate) const AGENT_WORDS: &[&str] = &["single", "pair"];
pub(crate) const PERSONA_WORDS: &[&str] = &["chimera", "insight", "collector"];
/// `persona_mode` values.
pub const PERSONA_MODE_WORDS: &[&str] = &["system", "echo"];

/// The JSON Schema of the experiment file, generated from the structs that parse it
/// (`sweep schema`; editors pick it up through the `#:schema` directive).
pub fn json_schema() -> serde_json::Value {
    let mut s = schemars::schema_for!(raw::RawSpec);
    s.insert(
        "$id".into(),
        "https://sweep.invalid/experiment.schema.json".into(),
    );
    s.to_value()
}

use crate::metrics::Metric;
use raw::{GridTable, OptTable, RawArm, RawSpec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Why an experiment file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read (missing, a directory, no permission).
    #[error("{}: cannot read experiment file: {source}", path.display())]
    Io {
        /// The experiment file as given.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid experiment: every problem found, each located.
    #[error("{}", render_diags(.0))]
    Invalid(Vec<Diagnostic>),
}

fn render_diags(d: &[Diagnostic]) -> String {
    d.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

impl SpecError {
    /// The located problems of an invalid file (none for a read error).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            SpecError::Invalid(d) => d,
            SpecError::Io { .. } => &[],
        }
    }
}

impl Spec {
    /// Reads and validates an experiment file. Relative paths inside it are resolved
    /// against the current directory (the usual place to run sweep from: the repo root).
    ///
    /// Unlike [`Spec::parse`], it also checks what the file points at on this machine: the
    /// corpus must be an existing directory (a stored copy of a file, parsed later on
    /// another machine, need not).
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let bytes = std::fs::read(path).map_err(|source| SpecError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => return Err(not_utf8(path, e.as_bytes(), e.utf8_error().valid_up_to())),
        };
        Spec::validate(path, &text, true)
    }

    /// Validates experiment-file text; `file` is only used in messages.
    pub fn parse(file: &Path, text: &str) -> Result<Spec, SpecError> {
        Spec::validate(file, text, false)
    }

    fn validate(file: &Path, text: &str, check_paths: bool) -> Result<Spec, SpecError> {
        let map = SourceMap::new(file, text);
        // TOML allows no control character but tab and line ends, anywhere: one is binary
        // data (or a file in another encoding), better named as such than as a syntax error.
        if let Some((at, c)) = text
            .char_indices()
            .find(|(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            return Err(SpecError::Invalid(vec![map.at(
                Some(at..at),
                format!(
                    "binary data: control character U+{:04X} (an experiment file is TOML text)",
                    c as u32
                ),
            )]));
        }
        let raw: RawSpec = toml::from_str(text).map_err(|e| {
            SpecError::Invalid(vec![map.at(e.span(), humanize_toml_message(e.message()))])
        })?;
        validate::run(&map, file, text, raw, check_paths).map_err(SpecError::Invalid)
    }

    pub(crate) fn arm(&self, name: &str) -> Option<&Arm> {
        self.arms.iter().find(|a| a.name == name)
    }
}

/// A number as a person would write it: `1e300` rather than three hundred digits.
fn number(x: f64) -> String {
    if x.is_finite() && x.abs() >= 1e9 {
        format!("{x:e}")
    } else {
        x.to_string()
    }
}

/// Binary or non-UTF-8 input: located at the first byte that is not UTF-8 text.
fn not_utf8(file: &Path, bytes: &[u8], valid_up_to: usize) -> SpecError {
    let prefix = std::str::from_utf8(&bytes[..valid_up_to]).unwrap_or_default();
    let byte = bytes.get(valid_up_to).copied().unwrap_or_default();
    let map = SourceMap::new(file, prefix);
    SpecError::Invalid(vec![map.at(
        Some(valid_up_to..valid_up_to),
        format!(
            "not UTF-8 text: byte 0x{byte:02x} at offset {valid_up_to} (an experiment file is \
             TOML, which is UTF-8; is this a binary file or another encoding?)"
        ),
    )])
}

/// toml/serde messages speak of "sequence" and "map"; the file speaks of arrays and tables.
fn humanize_toml_message(m: &str) -> String {
    let m = m.trim_end().replace('\n', "; ");
    let m = m
        .replace("a sequence", "an array")
        .replace("a map", "a table")
        .replace("struct Raw", "table ");
    let mut out = m.to_string();
    if out.starts_with("missing field `") {
        out = format!("{out} (a required key is absent)");
    }
    out
}

trait FloorBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}

impl FloorBoundary for str {
    fn floor_char_boundary_compat(&self, mut i: usize) -> usize {
        while i > 0 && !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Option names set anywhere in an arm (for table factor columns).
pub fn factor_names(arms: &[Arm]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for a in arms {
        for p in &a.points {
            out.extend(p.to_map().into_keys());
        }
    }
    out
}
