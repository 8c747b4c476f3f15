//! The experiment file as written: serde structs that keep every value's span so that
//! validation can point at the exact line and column.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// An inline table of model options (or of a pair member's options plus its own keys).
pub type OptTable = BTreeMap<Spanned<String>, Spanned<toml::Value>>;
/// A grid: option name → list of values.
pub type GridTable = BTreeMap<Spanned<String>, Spanned<Vec<Spanned<toml::Value>>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    pub experiment: Spanned<RawExperiment>,
    pub backend: Spanned<RawBackend>,
    pub corpus: Spanned<RawCorpus>,
    #[serde(default, rename = "arm")]
    pub arms: Option<Spanned<Vec<Spanned<RawArm>>>>,
    #[serde(default)]
    pub compare: Option<Spanned<RawCompare>>,
    #[serde(default)]
    pub analysis: Option<Spanned<RawAnalysis>>,
    #[serde(default)]
    pub run: Option<Spanned<RawRun>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExperiment {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub repetitions: Option<Spanned<i64>>,
    #[serde(default)]
    pub warmup: Option<Spanned<i64>>,
    #[serde(default)]
    pub seed: Option<Spanned<i64>>,
    #[serde(default)]
    pub order: Option<Spanned<String>>,
    #[serde(default)]
    pub reference: Option<Spanned<String>>,
    #[serde(default)]
    pub prompt_version: Option<Spanned<String>>,
    #[serde(default)]
    pub persona_mode: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub kind: Spanned<String>,
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    #[serde(default)]
    pub urls: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub model: Option<Spanned<String>>,
    #[serde(default)]
    pub model_path: Option<Spanned<String>>,
    #[serde(default)]
    pub api: Option<Spanned<String>>,
    #[serde(default)]
    pub timeout_s: Option<Spanned<f64>>,
    #[serde(default)]
    pub connect_timeout_s: Option<Spanned<f64>>,
    #[serde(default)]
    pub first_token_timeout_s: Option<Spanned<f64>>,
    #[serde(default)]
    pub api_key_env: Option<Spanned<String>>,
    #[serde(default)]
    pub retry: Option<Spanned<RawRetry>>,
    #[serde(default)]
    pub threads: Option<Spanned<i64>>,
    #[serde(default)]
    pub cache_prompt: Option<bool>,
    #[serde(default)]
    pub extra: Option<toml::Table>,
    #[serde(default)]
    pub num_parallel: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    #[serde(default)]
    pub attempts: Option<Spanned<i64>>,
    #[serde(default)]
    pub backoff_ms: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCorpus {
    pub path: Spanned<String>,
    #[serde(default)]
    pub max_file_bytes: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArm {
    pub name: Spanned<String>,
    #[serde(default)]
    pub agent: Option<Spanned<String>>,
    #[serde(default)]
    pub persona: Option<Spanned<String>>,
    #[serde(default)]
    pub persona_mode: Option<Spanned<String>>,
    #[serde(default)]
    pub prompt_version: Option<Spanned<String>>,
    #[serde(default)]
    pub model: Option<Spanned<String>>,
    #[serde(default)]
    pub endpoint: Option<Spanned<String>>,
    #[serde(default)]
    pub max_tokens: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub keep_alive: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub options: Option<Spanned<OptTable>>,
    #[serde(default)]
    pub grid: Option<Spanned<GridTable>>,
    #[serde(default)]
    pub include: Option<Spanned<Vec<Spanned<OptTable>>>>,
    #[serde(default)]
    pub exclude: Option<Spanned<Vec<Spanned<OptTable>>>>,
    #[serde(default)]
    pub a: Option<Spanned<OptTable>>,
    #[serde(default)]
    pub b: Option<Spanned<OptTable>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompare {
    #[serde(default)]
    pub alpha: Option<Spanned<f64>>,
    #[serde(default)]
    pub thresholds: Option<BTreeMap<Spanned<String>, Spanned<f64>>>,
    #[serde(default)]
    pub max_failed_share: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnalysis {
    #[serde(default)]
    pub cold_load_ms: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRun {
    #[serde(default)]
    pub concurrency: Option<Spanned<i64>>,
    #[serde(default)]
    pub max_calls: Option<Spanned<i64>>,
    #[serde(default)]
    pub results_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub max_failed_share: Option<Spanned<f64>>,
    #[serde(default)]
    pub unreachable_streak: Option<Spanned<i64>>,
    #[serde(default)]
    pub outage_wait_s: Option<Spanned<f64>>,
}
