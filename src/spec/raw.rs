//! The experiment file as written: serde structs that keep every value's span so that
//! validation can point at the exact line and column. The same structs derive the JSON
//! Schema that `sweep schema` prints (editors validate against it): a span is invisible in
//! the schema (`schemars(with = ...)` names the type inside it), and the keys whose words
//! the validator checks (kinds, orders, option names, metric names) take their schema from
//! the same constants the validator uses, so the two cannot drift apart. What only the
//! validator can check (an unknown reference arm, a grid that excludes every point) stays
//! there.

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// An inline table of model options (or of a pair member's options plus its own keys).
pub type OptTable = BTreeMap<Spanned<String>, Spanned<toml::Value>>;
/// A grid: option name → list of values.
pub type GridTable = BTreeMap<Spanned<String>, Spanned<Vec<Spanned<toml::Value>>>>;

/// The whole experiment file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "sweep experiment file")]
pub struct RawSpec {
    #[schemars(with = "RawExperiment")]
    pub experiment: Spanned<RawExperiment>,
    #[schemars(with = "RawBackend")]
    pub backend: Spanned<RawBackend>,
    #[schemars(with = "RawCorpus")]
    pub corpus: Spanned<RawCorpus>,
    /// The arms: agent kind + model options (+ a grid). At least one.
    #[serde(default, rename = "arm")]
    #[schemars(with = "Vec<RawArm>", length(min = 1))]
    pub arms: Option<Spanned<Vec<Spanned<RawArm>>>>,
    #[serde(default)]
    #[schemars(with = "Option<RawCompare>")]
    pub compare: Option<Spanned<RawCompare>>,
    #[serde(default)]
    #[schemars(with = "Option<RawAnalysis>")]
    pub analysis: Option<Spanned<RawAnalysis>>,
    #[serde(default)]
    #[schemars(with = "Option<RawRun>")]
    pub run: Option<Spanned<RawRun>>,
    /// The service-level objective goodput and capacity are measured against.
    #[serde(default)]
    #[schemars(with = "Option<RawSlo>")]
    pub slo: Option<Spanned<RawSlo>>,
    /// A server sweep starts, restarts for each server configuration, and stops.
    #[serde(default)]
    #[schemars(with = "Option<RawServer>")]
    pub server: Option<Spanned<RawServer>>,
    /// Paper tables `sweep report` writes (today's default tables when there are none).
    #[serde(default, rename = "table")]
    #[schemars(with = "Option<Vec<RawTable>>")]
    pub tables: Option<Spanned<Vec<Spanned<RawTable>>>>,
}

/// `[experiment]`: name, repetitions, warm-up, order, reference arm.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawExperiment {
    /// Names the results folder: letters, digits, '_', '-', '.'.
    #[schemars(with = "String", regex(pattern = r"^[A-Za-z0-9_.-]+$"))]
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Measured repetitions per cell (default 5).
    #[serde(default)]
    #[schemars(with = "Option<i64>", range(min = 1, max = 100_000))]
    pub repetitions: Option<Spanned<i64>>,
    /// Warm-up units per cell, never in statistics (default 1).
    #[serde(default)]
    #[schemars(with = "Option<i64>", range(min = 0, max = 1000))]
    pub warmup: Option<Spanned<i64>>,
    #[serde(default)]
    #[schemars(with = "Option<i64>", range(min = 0))]
    pub seed: Option<Spanned<i64>>,
    /// Run order (default "blocks": randomized blocks).
    #[serde(default)]
    #[schemars(schema_with = "order_schema")]
    pub order: Option<Spanned<String>>,
    /// The arm every comparison is made against (default: the first arm).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub reference: Option<Spanned<String>>,
    /// Prompts of every arm unless it sets its own.
    #[serde(default)]
    #[schemars(schema_with = "prompt_version_schema")]
    pub prompt_version: Option<Spanned<String>>,
    /// Persona handling of every arm unless it sets its own.
    #[serde(default)]
    #[schemars(schema_with = "persona_mode_schema")]
    pub persona_mode: Option<Spanned<String>>,
}

/// `[backend]`: which server (or the embedded engine) and model.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    #[schemars(schema_with = "kind_schema")]
    pub kind: Spanned<String>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub url: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>", length(min = 1))]
    pub urls: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub model: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub model_path: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(schema_with = "api_schema")]
    pub api: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Option<f64>", range(min = 0))]
    pub timeout_s: Option<Spanned<f64>>,
    #[serde(default)]
    #[schemars(with = "Option<f64>", range(min = 0))]
    pub connect_timeout_s: Option<Spanned<f64>>,
    #[serde(default)]
    #[schemars(with = "Option<f64>", range(min = 0))]
    pub first_token_timeout_s: Option<Spanned<f64>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub api_key_env: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Option<RawRetry>")]
    pub retry: Option<Spanned<RawRetry>>,
    #[serde(default)]
    #[schemars(with = "Option<i64>", range(min = 1))]
    pub threads: Option<Spanned<i64>>,
    #[serde(default)]
    pub cache_prompt: Option<bool>,
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    pub extra: Option<toml::Table>,
    /// Requests the server runs at once per model (Ollama's `OLLAMA_NUM_PARALLEL`).
    #[serde(default)]
    #[schemars(with = "Option<i64>", range(min = 1))]
    pub num_parallel: Option<Spanned<i64>>,
}

/// `[server]`: the backend sweep starts and stops itself (see `sweep::server`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// "llama-server", "ollama", "vllm" (which know their flags) or "custom".
    #[schemars(schema_with = "preset_schema")]
    pub preset: Spanned<String>,
    /// The program (default: the preset's name on PATH; required for "custom").
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub command: Option<Spanned<String>>,
    /// Extra arguments after the preset's own; for "custom", all of them. `{port}`, `{host}`,
    /// `{model}`, `{model_path}` and `{<option>}` (e.g. `{num_ctx}`) are filled in.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub args: Option<Spanned<Vec<Spanned<String>>>>,
    /// Environment of the server (placeholders as in `args`).
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub env: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    /// GGUF file llama-server loads (`-m`; default the project's Gemma 3 270M).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub model_path: Option<Spanned<String>>,
    /// Address the server listens on (default 127.0.0.1).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub host: Option<Spanned<String>>,
    /// Port (default: a free one chosen by sweep at the start of the run).
    #[serde(default)]
    #[schemars(with = "Option<i64>", range(min = 1, max = 65535))]
    pub port: Option<Spanned<i64>>,
    /// Path answered with 200 once the server is ready (preset default).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub health_path: Option<Spanned<String>>,
    /// Seconds from spawn to healthy before the start counts as failed (default 120).
    #[serde(default)]
    #[schemars(with = "Option<f64>", range(min = 0))]
    pub ready_timeout_s: Option<Spanned<f64>>,
    /// Seconds between SIGTERM and SIGKILL when stopping it (default 10).
    #[serde(default)]
    #[schemars(with = "Option<f64>", range(min = 0))]
    pub stop_grace_s: Option<Spanned<f64>>,
}

fn preset_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "enum": super::server::PRESET_WORDS })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    #[serde(default)]
    #[schemars(with = "Option<i64>", range(min = 1))]
    pub attempts: Option<Spanned<i64>>,
    #[serde(default)]
    #[schemars(with = "Option<i64>", range(min = 0))]
    pub backoff_ms: Option<Spanned<i64>>,
}

/// `[corpus]`: the files every agent ingests.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCorpus {
    #[schemars(with = "String", length(min = 1))]
    pub path: Spanned<String>,
    #[serde(default)]
    #[schemars(with = "Option<i64>", range(min = 1))]
    pub max_file_bytes: Option<Spanned<i64>>,
}

/// `[[arm]]`: an agent kind and its options (a grid expands into cells).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawArm {
    #[schemars(with = "String", regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub name: Spanned<String>,
    #[serde(default)]
    #[schemars(schema_with = "agent_schema")]
    pub agent: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(schema_with = "persona_schema")]
    pub persona: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(schema_with = "persona_mode_schema")]
    pub persona_mode: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(schema_with = "prompt_version_schema")]
    pub prompt_version: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub model: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub endpoint: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Option<i64>", range(min = 1, max = 1_000_000))]
    pub max_tokens: Option<Spanned<toml::Value>>,
    #[serde(default)]
    #[schemars(schema_with = "keep_alive_schema")]
    pub keep_alive: Option<Spanned<toml::Value>>,
    #[serde(default)]
    #[schemars(schema_with = "options_schema")]
    pub options: Option<Spanned<OptTable>>,
    #[serde(default)]
    #[schemars(schema_with = "grid_schema")]
    pub grid: Option<Spanned<GridTable>>,
    #[serde(default)]
    #[schemars(schema_with = "options_list_schema")]
    pub include: Option<Spanned<Vec<Spanned<OptTable>>>>,
    #[serde(default)]
    #[schemars(schema_with = "options_list_schema")]
    pub exclude: Option<Spanned<Vec<Spanned<OptTable>>>>,
    #[serde(default)]
    #[schemars(schema_with = "member_schema")]
    pub a: Option<Spanned<OptTable>>,
    #[serde(default)]
    #[schemars(schema_with = "member_schema")]
    pub b: Option<Spanned<OptTable>>,
    #[serde(default)]
    #[schemars(with = "Option<bool>")]
    pub speedup: Option<Spanned<bool>>,
    /// Open loop (`rate`): `poisson` (seeded exponential gaps, the default) or `constant`.
    #[serde(default)]
    #[schemars(with = "Option<String>", regex(pattern = r"^(poisson|constant)$"))]
    pub arrivals: Option<Spanned<String>>,
    /// Open loop (`rate`): arrivals (agent runs) per unit.
    #[serde(default)]
    #[schemars(with = "Option<u32>", range(min = 1, max = 64))]
    pub requests: Option<Spanned<i64>>,
    /// Open loop (`rate`): the schedule's window in seconds instead of a request count; each
    /// cell then has round(rate × duration_s) arrivals spread over it.
    #[serde(default)]
    #[schemars(with = "Option<f64>", range(min = 0.001, max = 3600))]
    pub duration_s: Option<Spanned<f64>>,
}

/// `[compare]`: what the regression gate checks.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCompare {
    #[serde(default)]
    #[schemars(with = "Option<f64>", range(min = 0, max = 1))]
    pub alpha: Option<Spanned<f64>>,
    #[serde(default)]
    #[schemars(schema_with = "thresholds_schema")]
    pub thresholds: Option<BTreeMap<Spanned<String>, Spanned<f64>>>,
    #[serde(default)]
    #[schemars(with = "Option<f64>", range(min = 0, max = 1))]
    pub max_failed_share: Option<Spanned<f64>>,
}

/// `[analysis]`: the rules that decide what is measured.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAnalysis {
    #[serde(default)]
    #[schemars(with = "Option<f64>")]
    pub cold_load_ms: Option<Spanned<f64>>,
}

/// `[slo]`: per-call latency limits and the share of calls that must meet them.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSlo {
    /// Time to first token at most, ms.
    #[serde(default)]
    #[schemars(with = "Option<f64>", range(min = 0))]
    pub ttft_ms: Option<Spanned<f64>>,
    /// Mean inter-token latency (time per output token after the first) at most, ms.
    #[serde(default)]
    #[schemars(with = "Option<f64>", range(min = 0))]
    pub itl_ms: Option<Spanned<f64>>,
    /// End-to-end latency at most, ms.
    #[serde(default)]
    #[schemars(with = "Option<f64>", range(min = 0))]
    pub e2e_ms: Option<Spanned<f64>>,
    /// Percent of a unit's calls that must meet every limit (default 90).
    #[serde(default)]
    #[schemars(with = "Option<f64>", range(min = 0, max = 100))]
    pub percentile: Option<Spanned<f64>>,
}

/// `[run]`: how the runner executes the plan.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRun {
    #[serde(default)]
    #[schemars(with = "Option<i64>", range(min = 1, max = 1024))]
    pub concurrency: Option<Spanned<i64>>,
    #[serde(default)]
    #[schemars(with = "Option<i64>", range(min = 1))]
    pub max_calls: Option<Spanned<i64>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub results_dir: Option<Spanned<String>>,
    /// Pause and probe the backend when this share of the last 20 calls failed.
    #[serde(default)]
    #[schemars(with = "Option<f64>", range(min = 0, max = 1))]
    pub max_failed_share: Option<Spanned<f64>>,
    /// … or when this many calls in a row could not reach the backend.
    #[serde(default)]
    #[schemars(with = "Option<i64>", range(min = 1, max = 10000))]
    pub unreachable_streak: Option<Spanned<i64>>,
    /// How long to probe before storing the phases as failed and stopping.
    #[serde(default)]
    #[schemars(with = "Option<f64>", range(min = 0, max = 86400))]
    pub outage_wait_s: Option<Spanned<f64>>,
}

/// `[[table]]`: one paper table `sweep report` writes as `tables/<name>.{md,tex,csv,json}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTable {
    /// File stem and default label: letters, digits, '_', '-'.
    #[schemars(with = "String", regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub name: Spanned<String>,
    /// One metric (or use `metrics`).
    #[serde(default)]
    #[schemars(schema_with = "metric_schema")]
    pub metric: Option<Spanned<String>>,
    /// Several metrics (each its own column group when `columns = "metrics"`).
    #[serde(default)]
    #[schemars(schema_with = "metrics_schema")]
    pub metrics: Option<Spanned<Vec<Spanned<String>>>>,
    /// The statistic of the per-rep values shown (default "median").
    #[serde(default)]
    #[schemars(schema_with = "statistic_schema")]
    pub statistic: Option<Spanned<String>>,
    /// Axes down the rows: `arm` or option names (default: every axis that varies).
    #[serde(default)]
    #[schemars(schema_with = "axes_schema")]
    pub rows: Option<Spanned<Vec<Spanned<String>>>>,
    /// `"metrics"` (default: one column per metric) or an axis whose values become columns.
    #[serde(default)]
    #[schemars(schema_with = "columns_schema")]
    pub columns: Option<Spanned<String>>,
    /// Which arms (default: every single-agent arm, or every pair arm when all are pairs).
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>", length(min = 1))]
    pub arms: Option<Spanned<Vec<Spanned<String>>>>,
    /// How the interval is written: "brackets" `v [lo, hi]`, "pm" `v ± half-width`, "none".
    #[serde(default)]
    #[schemars(schema_with = "ci_schema")]
    pub ci: Option<Spanned<String>>,
    /// Significant digits of the largest value of a column (default 3).
    #[serde(default)]
    #[schemars(with = "Option<i64>", range(min = 1, max = 8))]
    pub digits: Option<Spanned<i64>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub caption: Option<Spanned<String>>,
    /// LaTeX label (default `tab:<name>`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub label: Option<Spanned<String>>,
    /// Which entries are bold: "significant" (vs the reference, Holm), "best", "none".
    #[serde(default)]
    #[schemars(schema_with = "bold_schema")]
    pub bold: Option<Spanned<String>>,
    /// Add a Δ% vs reference column per metric (only with `columns = "metrics"`).
    #[serde(default)]
    #[schemars(with = "Option<bool>")]
    pub delta: Option<Spanned<bool>>,
}

// ---- schema pieces built from the validator's own words ----

fn words(words: &[&str]) -> Schema {
    json_schema!({ "type": "string", "enum": words })
}

fn order_schema(_: &mut SchemaGenerator) -> Schema {
    words(super::ORDER_WORDS)
}

fn kind_schema(_: &mut SchemaGenerator) -> Schema {
    words(super::BACKEND_KIND_WORDS)
}

fn api_schema(_: &mut SchemaGenerator) -> Schema {
    words(super::API_WORDS)
}

fn agent_schema(_: &mut SchemaGenerator) -> Schema {
    words(super::AGENT_WORDS)
}

fn persona_schema(_: &mut SchemaGenerator) -> Schema {
    words(super::PERSONA_WORDS)
}

fn persona_mode_schema(_: &mut SchemaGenerator) -> Schema {
    words(super::PERSONA_MODE_WORDS)
}

fn prompt_version_schema(_: &mut SchemaGenerator) -> Schema {
    let names: Vec<&str> = super::PromptVersion::ALL
        .iter()
        .map(|p| p.as_str())
        .collect();
    words(&names)
}

fn metric_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = crate::metrics::METRICS
        .iter()
        .flat_map(|d| std::iter::once(d.name).chain(d.aliases.iter().copied()))
        .collect();
    v.sort_unstable();
    v
}

fn metric_schema(_: &mut SchemaGenerator) -> Schema {
    words(&metric_names())
}

fn metrics_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "array", "minItems": 1, "items": metric_schema(&mut SchemaGenerator::default()) })
}

fn statistic_schema(_: &mut SchemaGenerator) -> Schema {
    words(super::table::STATISTIC_WORDS)
}

fn ci_schema(_: &mut SchemaGenerator) -> Schema {
    words(super::table::CI_WORDS)
}

fn bold_schema(_: &mut SchemaGenerator) -> Schema {
    words(super::table::BOLD_WORDS)
}

fn axes_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "array", "uniqueItems": true,
                   "items": { "type": "string", "pattern": super::table::axis_pattern() } })
}

fn columns_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "anyOf": [
        { "const": "metrics" },
        { "pattern": super::table::axis_pattern() }
    ] })
}

fn thresholds_schema(_: &mut SchemaGenerator) -> Schema {
    let props: serde_json::Map<String, serde_json::Value> = metric_names()
        .into_iter()
        .map(|m| {
            (
                m.to_string(),
                serde_json::json!({ "type": "number", "exclusiveMinimum": 0 }),
            )
        })
        .collect();
    json_schema!({ "type": "object", "properties": props, "additionalProperties": false })
}

fn keep_alive_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": ["string", "integer"] })
}

/// The schema of one option's value (the validator's ranges, see `Validator::set_option`).
fn option_value_schema(name: &str) -> serde_json::Value {
    use serde_json::json;
    match name {
        "num_gpu" | "top_k" | "seed" => json!({ "type": "integer", "minimum": 0 }),
        "num_ctx" | "num_predict" | "max_tokens" => json!({ "type": "integer", "minimum": 1 }),
        "temperature" => json!({ "type": "number", "minimum": 0 }),
        "top_p" => json!({ "type": "number", "exclusiveMinimum": 0, "maximum": 1 }),
        "repeat_penalty" => json!({ "type": "number", "exclusiveMinimum": 0 }),
        "keep_alive" => json!({ "type": ["string", "integer"] }),
        "flash_attn" => json!({ "type": "boolean" }),
        "kv_cache_type" => json!({ "type": "string", "enum": super::KV_CACHE_TYPES }),
        "parallel" | "batch_size" | "ubatch_size" | "threads" => {
            json!({ "type": "integer", "minimum": 1 })
        }
        "agents" => json!({ "type": "integer", "minimum": 1, "maximum": super::MAX_AGENTS }),
        "rate" => json!({ "type": "number", "exclusiveMinimum": 0, "maximum": super::MAX_RATE }),
        _ => json!({}),
    }
}

fn option_props(extra: &[(&str, serde_json::Value)]) -> serde_json::Map<String, serde_json::Value> {
    let mut props: serde_json::Map<String, serde_json::Value> = super::OPTION_NAMES
        .iter()
        .chain(std::iter::once(&"max_tokens"))
        .map(|n| (n.to_string(), option_value_schema(n)))
        .collect();
    for (k, v) in extra {
        props.insert(k.to_string(), v.clone());
    }
    props
}

fn options_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "object", "properties": option_props(&[]), "additionalProperties": false })
}

fn options_list_schema(g: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "array", "items": options_schema(g) })
}

fn grid_schema(_: &mut SchemaGenerator) -> Schema {
    let props: serde_json::Map<String, serde_json::Value> = option_props(&[])
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                serde_json::json!({ "type": "array", "minItems": 1, "uniqueItems": true, "items": v }),
            )
        })
        .collect();
    json_schema!({ "type": "object", "minProperties": 1, "properties": props, "additionalProperties": false })
}

fn member_schema(_: &mut SchemaGenerator) -> Schema {
    let persona = serde_json::to_value(words(super::PERSONA_WORDS)).unwrap_or_default();
    let mode = serde_json::to_value(words(super::PERSONA_MODE_WORDS)).unwrap_or_default();
    let props = option_props(&[
        ("persona", persona),
        ("persona_mode", mode),
        ("endpoint", serde_json::json!({ "type": "string" })),
        ("model", serde_json::json!({ "type": "string" })),
    ]);
    json_schema!({ "type": "object", "properties": props, "additionalProperties": false })
}
