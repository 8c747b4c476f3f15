//! Model options: the knobs a cell turns (Ollama's option names are the canonical ones).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One value of a model option, kept exactly as written (no f32 round trip).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OptionValue {
    /// An integer option (`num_gpu`, `num_ctx`, `top_k`, `seed`, `num_predict`).
    Int(i64),
    /// A real-valued option (`temperature`, `top_p`, `repeat_penalty`).
    Float(f64),
    /// A text option (`keep_alive`, e.g. `"5m"`; `kv_cache_type`, e.g. `"q8_0"`).
    Text(String),
    /// A switch (`flash_attn`). Last, so that stored numbers and texts read back as before.
    Bool(bool),
}

impl std::fmt::Display for OptionValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptionValue::Int(v) => write!(f, "{v}"),
            // Rust's shortest round-trip formatting: 0.8 prints as "0.8".
            OptionValue::Float(v) => write!(f, "{v}"),
            OptionValue::Text(v) => write!(f, "{v}"),
            OptionValue::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// The options sent with a request. `None` means "not sent": the server default applies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelOptions {
    /// Model layers offloaded to the GPU (0 = CPU only); Ollama and the embedded engine,
    /// not sent to OpenAI-compatible servers. Part of the reload key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_gpu: Option<u32>,
    /// Context length, tokens; Ollama and the embedded engine, not sent to
    /// OpenAI-compatible servers. Part of the reload key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_ctx: Option<u32>,
    /// Sampling temperature (0 = greedy; validated to 0..=100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus-sampling cut-off, in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Sample only from the k most likely tokens (0 = no limit in Ollama and llama.cpp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Penalty on repeated tokens (> 0; 1 = none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_penalty: Option<f64>,
    /// Sampling seed: fixes the server's random draws, so sampling repeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Maximum tokens to generate (`max_tokens` for OpenAI-compatible servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_predict: Option<u32>,
    /// How long Ollama keeps the model loaded, e.g. "5m" (Ollama only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<String>,
    /// Server level: flash attention on or off (llama-server `-fa`, Ollama
    /// `OLLAMA_FLASH_ATTENTION`, the embedded engine's context). Never sent with a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flash_attn: Option<bool>,
    /// Server level: KV cache data type, e.g. `f16`, `q8_0` (llama-server `-ctk/-ctv`, Ollama
    /// `OLLAMA_KV_CACHE_TYPE`, vLLM `--kv-cache-dtype`, the embedded engine's context).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_cache_type: Option<String>,
    /// Server level: requests served at once (llama-server `-np`, Ollama
    /// `OLLAMA_NUM_PARALLEL`, vLLM `--max-num-seqs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<u32>,
    /// Server level: logical batch size, tokens (llama-server `-b`, vLLM
    /// `--max-num-batched-tokens`, the embedded engine's `n_batch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// Server level: physical batch size, tokens (llama-server `-ub`, the embedded engine's
    /// `n_ubatch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ubatch_size: Option<u32>,
    /// Server level: CPU threads (llama-server `-t`, the embedded engine's threads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
    /// Workload level: agents of the cell run at once as one unit (1 = one agent). Never
    /// sent: the runner starts that many copies of the arm's agent together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<u32>,
    /// Workload level: open-loop arrivals per second, each one agent run started on its
    /// planned time whether earlier ones have answered or not. Never sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
}

/// Names of every option, in canonical order.
pub const OPTION_NAMES: &[&str] = &[
    "num_gpu",
    "num_ctx",
    "temperature",
    "top_p",
    "top_k",
    "repeat_penalty",
    "seed",
    "num_predict",
    "keep_alive",
    "flash_attn",
    "kv_cache_type",
    "parallel",
    "batch_size",
    "ubatch_size",
    "threads",
    "agents",
    "rate",
];

/// The options a server (or the embedded engine) takes at start-up, never per request: a
/// change of one is a restart of a managed server (see [`crate::server`]). [`OPTION_NAMES`]
/// from `flash_attn` to `threads`.
pub const SERVER_OPTION_NAMES: &[&str] = OPTION_NAMES.split_at(9).1.split_at(6).0;

/// The workload levels: how the runner loads the server, never sent nor a server setting.
/// The tail of [`OPTION_NAMES`].
pub const WORKLOAD_OPTION_NAMES: &[&str] = OPTION_NAMES.split_at(15).1;

/// KV cache types llama.cpp accepts for `-ctk/-ctv` (its `kv_cache_types` list, common/arg.cpp).
pub const KV_CACHE_TYPES: &[&str] = &[
    "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1",
];

impl ModelOptions {
    /// True when nothing is set: the server's defaults apply.
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }

    /// The set options as (name, value) pairs in canonical order.
    pub fn entries(&self) -> Vec<(&'static str, OptionValue)> {
        let mut out = Vec::new();
        let int = |v: u64| OptionValue::Int(v as i64);
        if let Some(v) = self.num_gpu {
            out.push(("num_gpu", int(v.into())));
        }
        if let Some(v) = self.num_ctx {
            out.push(("num_ctx", int(v.into())));
        }
        if let Some(v) = self.temperature {
            out.push(("temperature", OptionValue::Float(v)));
        }
        if let Some(v) = self.top_p {
            out.push(("top_p", OptionValue::Float(v)));
        }
        if let Some(v) = self.top_k {
            out.push(("top_k", int(v.into())));
        }
        if let Some(v) = self.repeat_penalty {
            out.push(("repeat_penalty", OptionValue::Float(v)));
        }
        if let Some(v) = self.seed {
            out.push(("seed", int(v)));
        }
        if let Some(v) = self.num_predict {
            out.push(("num_predict", int(v.into())));
        }
        if let Some(v) = &self.keep_alive {
            out.push(("keep_alive", OptionValue::Text(v.clone())));
        }
        if let Some(v) = self.flash_attn {
            out.push(("flash_attn", OptionValue::Bool(v)));
        }
        if let Some(v) = &self.kv_cache_type {
            out.push(("kv_cache_type", OptionValue::Text(v.clone())));
        }
        if let Some(v) = self.parallel {
            out.push(("parallel", int(v.into())));
        }
        if let Some(v) = self.batch_size {
            out.push(("batch_size", int(v.into())));
        }
        if let Some(v) = self.ubatch_size {
            out.push(("ubatch_size", int(v.into())));
        }
        if let Some(v) = self.threads {
            out.push(("threads", int(v.into())));
        }
        if let Some(v) = self.agents {
            out.push(("agents", int(v.into())));
        }
        if let Some(v) = self.rate {
            out.push(("rate", OptionValue::Float(v)));
        }
        out
    }

    /// The options without the workload level: what one agent of the cell runs with, the
    /// same at every level (the configuration a capacity curve is drawn for).
    pub fn without_workload(&self) -> ModelOptions {
        ModelOptions {
            agents: None,
            rate: None,
            ..self.clone()
        }
    }

    /// Agents run at once (1 when unset).
    pub fn agents_at_once(&self) -> u32 {
        self.agents.unwrap_or(1).max(1)
    }

    /// Only the server-level options (see [`SERVER_OPTION_NAMES`]).
    pub fn server_level(&self) -> ModelOptions {
        ModelOptions {
            flash_attn: self.flash_attn,
            kv_cache_type: self.kv_cache_type.clone(),
            parallel: self.parallel,
            batch_size: self.batch_size,
            ubatch_size: self.ubatch_size,
            threads: self.threads,
            ..Default::default()
        }
    }

    /// Only the options sent with a request (the server-level and workload ones removed).
    pub fn request_level(&self) -> ModelOptions {
        ModelOptions {
            agents: None,
            rate: None,
            flash_attn: None,
            kv_cache_type: None,
            parallel: None,
            batch_size: None,
            ubatch_size: None,
            threads: None,
            ..self.clone()
        }
    }

    /// The set options as an ordered map (for records and tables).
    pub fn to_map(&self) -> BTreeMap<String, OptionValue> {
        self.entries()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    /// `other`'s set fields win over ours.
    pub fn merged_with(&self, other: &ModelOptions) -> ModelOptions {
        ModelOptions {
            num_gpu: other.num_gpu.or(self.num_gpu),
            num_ctx: other.num_ctx.or(self.num_ctx),
            temperature: other.temperature.or(self.temperature),
            top_p: other.top_p.or(self.top_p),
            top_k: other.top_k.or(self.top_k),
            repeat_penalty: other.repeat_penalty.or(self.repeat_penalty),
            seed: other.seed.or(self.seed),
            num_predict: other.num_predict.or(self.num_predict),
            keep_alive: other.keep_alive.clone().or_else(|| self.keep_alive.clone()),
            flash_attn: other.flash_attn.or(self.flash_attn),
            kv_cache_type: other
                .kv_cache_type
                .clone()
                .or_else(|| self.kv_cache_type.clone()),
            parallel: other.parallel.or(self.parallel),
            batch_size: other.batch_size.or(self.batch_size),
            ubatch_size: other.ubatch_size.or(self.ubatch_size),
            threads: other.threads.or(self.threads),
            agents: other.agents.or(self.agents),
            rate: other.rate.or(self.rate),
        }
    }

    /// Canonical text, stable across runs and machines: `num_ctx=512,temperature=0.6`.
    pub fn canonical(&self) -> String {
        let mut s = String::new();
        for (i, (k, v)) in self.entries().iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "{k}={v}");
        }
        s
    }

    /// The seeds' configuration line: `num_gpu=80, num_ctx=512, temp=1, top_p=default, …`,
    /// or `defaults` (the backend's label, e.g. `Ollama defaults`, see
    /// [`super::BackendKind::defaults_label`]) when nothing is sent.
    pub fn config_line(&self, defaults: &str) -> String {
        if self.is_empty() {
            return defaults.to_string();
        }
        fn show<T: std::fmt::Display>(v: &Option<T>) -> String {
            v.as_ref()
                .map(|x| x.to_string())
                .unwrap_or_else(|| "default".into())
        }
        let mut line = format!(
            "num_gpu={}, num_ctx={}, temp={}, top_p={}, top_k={}, repeat_penalty={}",
            show(&self.num_gpu),
            show(&self.num_ctx),
            show(&self.temperature),
            show(&self.top_p),
            show(&self.top_k),
            show(&self.repeat_penalty),
        );
        if let Some(v) = self.seed {
            let _ = write!(line, ", seed={v}");
        }
        if let Some(v) = self.num_predict {
            let _ = write!(line, ", num_predict={v}");
        }
        if let Some(v) = &self.keep_alive {
            let _ = write!(line, ", keep_alive={v}");
        }
        let server = self.server_level().canonical();
        if !server.is_empty() {
            let _ = write!(line, ", server: {}", server.replace(',', ", "));
        }
        if let Some(v) = self.agents {
            let _ = write!(line, ", agents={v}");
        }
        if let Some(v) = self.rate {
            let _ = write!(line, ", rate={v}/s");
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_line_matches_seed_format() {
        let o = ModelOptions {
            num_gpu: Some(80),
            num_ctx: Some(512),
            temperature: Some(1.0),
            ..Default::default()
        };
        assert_eq!(
            o.config_line("Ollama defaults"),
            "num_gpu=80, num_ctx=512, temp=1, top_p=default, top_k=default, repeat_penalty=default"
        );
        assert_eq!(
            ModelOptions::default().config_line("Ollama defaults"),
            "Ollama defaults"
        );
    }

    #[test]
    fn canonical_has_no_float_noise() {
        let o = ModelOptions {
            temperature: Some(0.8),
            top_p: Some(0.9),
            ..Default::default()
        };
        assert_eq!(o.canonical(), "temperature=0.8,top_p=0.9");
    }

    #[test]
    fn option_name_families_split_where_the_fields_do() {
        assert_eq!(
            SERVER_OPTION_NAMES,
            [
                "flash_attn",
                "kv_cache_type",
                "parallel",
                "batch_size",
                "ubatch_size",
                "threads"
            ]
        );
        assert_eq!(WORKLOAD_OPTION_NAMES, ["agents", "rate"]);
        let o = ModelOptions {
            agents: Some(4),
            num_ctx: Some(512),
            ..Default::default()
        };
        assert_eq!(o.canonical(), "num_ctx=512,agents=4");
        assert_eq!(o.request_level().canonical(), "num_ctx=512");
        assert_eq!(o.without_workload().canonical(), "num_ctx=512");
        assert!(o.server_level().is_empty());
        assert_eq!(o.agents_at_once(), 4);
    }

    #[test]
    fn merge_prefers_other() {
        let a = ModelOptions {
            num_ctx: Some(256),
            temperature: Some(0.6),
            ..Default::default()
        };
        let b = ModelOptions {
            num_ctx: Some(1024),
            ..Default::default()
        };
        let m = a.merged_with(&b);
        assert_eq!(m.num_ctx, Some(1024));
        assert_eq!(m.temperature, Some(0.6));
    }
}
