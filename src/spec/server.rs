//! `[server]`, validated: the server sweep starts and stops itself, and the one table of how
//! each option reaches the backend (a request field, a launch flag, an environment variable,
//! or nowhere). Validation and the launcher both read that table, so an option the file
//! accepts is always one the server really gets.

use super::{BackendKind, ModelOptions};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `[server] preset` words.
pub const PRESET_WORDS: &[&str] = &["llama-server", "ollama", "vllm", "custom"];

/// Which server `[server]` starts: the presets know their flags and health endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// llama.cpp's `llama-server` (OpenAI-compatible; `[backend] kind = "openai"`).
    LlamaServer,
    /// `ollama serve` (`[backend] kind = "ollama"`): server settings are its environment.
    Ollama,
    /// `vllm serve MODEL` (OpenAI-compatible).
    Vllm,
    /// Any command: `args` and `env` with `{placeholders}`.
    Custom,
}

impl Preset {
    /// The word the experiment file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::LlamaServer => "llama-server",
            Preset::Ollama => "ollama",
            Preset::Vllm => "vllm",
            Preset::Custom => "custom",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Preset> {
        [
            Preset::LlamaServer,
            Preset::Ollama,
            Preset::Vllm,
            Preset::Custom,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }

    /// The backend kind that talks to this server (`None`: any HTTP kind).
    pub fn backend_kind(self) -> Option<BackendKind> {
        match self {
            Preset::LlamaServer | Preset::Vllm => Some(BackendKind::Openai),
            Preset::Ollama => Some(BackendKind::Ollama),
            Preset::Custom => None,
        }
    }

    /// The program started when `command` is not given.
    pub fn default_command(self) -> Option<&'static str> {
        match self {
            Preset::LlamaServer => Some("llama-server"),
            Preset::Ollama => Some("ollama"),
            Preset::Vllm => Some("vllm"),
            Preset::Custom => None,
        }
    }

    /// The path answered with 200 once the server serves: llama-server's `/health` (503
    /// while the model loads), vLLM's `/health`, Ollama's `/api/version`.
    pub fn default_health_path(self) -> &'static str {
        match self {
            Preset::Ollama => "/api/version",
            _ => "/health",
        }
    }
}

/// How one option reaches what serves the calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A field of every request.
    Request,
    /// A launch flag (or flags) of the managed server.
    Flag,
    /// An environment variable of the managed server.
    Env,
    /// The embedded engine's model or context parameters.
    Engine,
    /// A `{placeholder}` of a custom server's `args` or `env`.
    Placeholder,
    /// The runner itself: a workload level (`agents`), never sent anywhere.
    Client,
}

/// Where `option` goes on this backend (with this managed server, if any), or why it cannot
/// be applied: an option no route carries would make its grid axis silently meaningless.
pub fn route(
    option: &str,
    kind: BackendKind,
    server: Option<&ServerConfig>,
) -> Result<Route, String> {
    if super::WORKLOAD_OPTION_NAMES.contains(&option) {
        return Ok(Route::Client);
    }
    // Sampling options and keep_alive: every backend takes them with each request.
    if !matches!(option, "num_ctx" | "num_gpu") && !super::SERVER_OPTION_NAMES.contains(&option) {
        return Ok(Route::Request);
    }
    if let Some(s) = server.filter(|s| s.preset == Preset::Custom) {
        if s.uses_placeholder(option) {
            return Ok(Route::Placeholder);
        }
        if kind == BackendKind::Ollama && matches!(option, "num_gpu" | "num_ctx") {
            return Ok(Route::Request);
        }
        return Err(format!(
            "{option} is not used by the custom server: write {{{option}}} into [server] args or \
             env where the server takes it, or remove it"
        ));
    }
    let preset = server.map(|s| s.preset);
    match (kind, preset, option) {
        (BackendKind::Embedded, _, "parallel") => Err(
            "parallel has no meaning for the embedded engine (it serves one call at a time); \
             use a managed llama-server (`[server] preset = \"llama-server\"`) for slots"
                .into(),
        ),
        (BackendKind::Embedded, _, _) => Ok(Route::Engine),
        (BackendKind::Ollama, _, "num_gpu" | "num_ctx") => Ok(Route::Request),
        (
            BackendKind::Ollama,
            Some(Preset::Ollama),
            "flash_attn" | "kv_cache_type" | "parallel",
        ) => Ok(Route::Env),
        (BackendKind::Ollama, Some(Preset::Ollama), _) => Err(format!(
            "{option} is not an Ollama server setting sweep can set (Ollama's are flash_attn, \
             kv_cache_type and parallel: OLLAMA_FLASH_ATTENTION, OLLAMA_KV_CACHE_TYPE, \
             OLLAMA_NUM_PARALLEL)"
        )),
        (BackendKind::Ollama, _, _) => Err(format!(
            "{option} is a server setting, not a request option: add [server] with preset = \
             \"ollama\" so that sweep starts `ollama serve` with it for each cell"
        )),
        (BackendKind::Openai, Some(Preset::LlamaServer), _) => Ok(Route::Flag),
        (BackendKind::Openai, Some(Preset::Vllm), "num_ctx" | "parallel" | "batch_size") => {
            Ok(Route::Flag)
        }
        (BackendKind::Openai, Some(Preset::Vllm), _) => Err(format!(
            "{option} has no vLLM flag sweep knows (it sets num_ctx → --max-model-len, parallel \
             → --max-num-seqs, batch_size → --max-num-batched-tokens); pass others in [server] \
             args"
        )),
        (BackendKind::Openai, _, "num_ctx") => Err(
            "num_ctx cannot be applied per request by an OpenAI-compatible server (it is a \
             launch flag: llama-server -c, vLLM --max-model-len), so every cell would measure \
             the same server: add [server] with preset = \"llama-server\" or \"vllm\" so that \
             sweep starts the server with it for each cell, or remove it"
                .into(),
        ),
        (BackendKind::Openai, _, "num_gpu") => Err(
            "num_gpu cannot be applied per request by an OpenAI-compatible server (it is \
             llama-server's launch flag -ngl), so every cell would measure the same server: add \
             [server] with preset = \"llama-server\" so that sweep starts the server with it for \
             each cell, or remove it"
                .into(),
        ),
        (BackendKind::Openai, _, _) => Err(format!(
            "{option} is a server setting, not a request option: add [server] (preset = \
             \"llama-server\", \"vllm\" or \"custom\") so that sweep starts the server with it"
        )),
    }
}

/// `[server]`, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerConfig {
    /// Which server.
    pub preset: Preset,
    /// The program.
    pub command: String,
    /// Extra arguments (all of them for a custom server), with placeholders.
    pub args: Vec<String>,
    /// Environment set for the server, with placeholders.
    pub env: BTreeMap<String, String>,
    /// GGUF llama-server loads.
    pub model_path: Option<PathBuf>,
    /// Listen address.
    pub host: String,
    /// Fixed port; `None`: a free one chosen when the run starts.
    pub port: Option<u16>,
    /// Readiness probe path.
    pub health_path: String,
    /// Spawn → healthy deadline, seconds.
    pub ready_timeout_s: f64,
    /// SIGTERM → SIGKILL grace, seconds.
    pub stop_grace_s: f64,
}

/// Default `[server] ready_timeout_s`: vLLM compiles graphs for a minute or two.
pub const DEFAULT_READY_TIMEOUT_S: f64 = 120.0;
/// Default `[server] host`: the loopback interface (a managed server is sweep's own).
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// Default `[server] stop_grace_s`.
pub const DEFAULT_STOP_GRACE_S: f64 = 10.0;

impl ServerConfig {
    /// True when `{option}` appears in the arguments or the environment.
    pub fn uses_placeholder(&self, option: &str) -> bool {
        let p = format!("{{{option}}}");
        self.args.iter().any(|a| a.contains(&p)) || self.env.values().any(|v| v.contains(&p))
    }

    /// The options that decide which server process runs (a change is a restart): the
    /// server-level ones, plus `num_ctx`/`num_gpu` where they are launch flags.
    pub fn launch_options(&self, o: &ModelOptions, kind: BackendKind) -> ModelOptions {
        let mut out = ModelOptions::default();
        for (name, _) in o.entries() {
            if matches!(
                route(name, kind, Some(self)),
                Ok(Route::Flag | Route::Env | Route::Placeholder)
            ) {
                let one = single(o, name);
                out = out.merged_with(&one);
            }
        }
        out
    }

    /// The command line and environment for one configuration, placeholders filled in.
    pub fn launch(&self, o: &ModelOptions, model: &str, port: u16) -> Launch {
        let mut args: Vec<String> = Vec::new();
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        let hostport = format!("{}:{port}", self.host);
        match self.preset {
            Preset::LlamaServer => {
                if let Some(p) = &self.model_path {
                    args.extend(["-m".into(), p.display().to_string()]);
                }
                // The name /v1/models lists (else the path), which the preflight looks for.
                args.extend(["--alias".into(), model.to_string()]);
                args.extend([
                    "--host".into(),
                    self.host.clone(),
                    "--port".into(),
                    port.to_string(),
                    // Verbosity 4 logs the context's real settings (n_ctx, flash_attn, the
                    // KV cache types), which the provenance check reads back.
                    "-lv".into(),
                    "4".into(),
                    // The queue gauges (requests processing / deferred) the runner samples
                    // while N agents or an open loop run.
                    "--metrics".into(),
                ]);
                let slots = o.parallel.unwrap_or(1);
                if let Some(n) = o.num_ctx {
                    // llama-server's -c is the whole KV cache, shared by the slots: each slot
                    // gets c / np. num_ctx is the context of one request (as in Ollama, which
                    // multiplies it by OLLAMA_NUM_PARALLEL), so -c = num_ctx × slots.
                    args.extend(["-c".into(), (u64::from(n) * u64::from(slots)).to_string()]);
                }
                if let Some(n) = o.num_gpu {
                    args.extend(["-ngl".into(), n.to_string()]);
                }
                if let Some(f) = o.flash_attn {
                    args.extend(["-fa".into(), if f { "on" } else { "off" }.into()]);
                }
                if let Some(t) = &o.kv_cache_type {
                    args.extend(["-ctk".into(), t.clone(), "-ctv".into(), t.clone()]);
                }
                // Always stated: llama-server's own default (-np -1: 4 slots with a unified KV
                // cache in recent builds) would change what num_ctx means between versions.
                args.extend(["-np".into(), slots.to_string()]);
                if let Some(n) = o.batch_size {
                    args.extend(["-b".into(), n.to_string()]);
                }
                if let Some(n) = o.ubatch_size {
                    args.extend(["-ub".into(), n.to_string()]);
                }
                if let Some(n) = o.threads {
                    args.extend(["-t".into(), n.to_string()]);
                }
            }
            Preset::Ollama => {
                args.push("serve".into());
                env.insert("OLLAMA_HOST".into(), hostport.clone());
                if let Some(f) = o.flash_attn {
                    env.insert(
                        "OLLAMA_FLASH_ATTENTION".into(),
                        if f { "1" } else { "0" }.into(),
                    );
                }
                if let Some(t) = &o.kv_cache_type {
                    env.insert("OLLAMA_KV_CACHE_TYPE".into(), t.clone());
                }
                if let Some(n) = o.parallel {
                    env.insert("OLLAMA_NUM_PARALLEL".into(), n.to_string());
                }
            }
            Preset::Vllm => {
                args.extend([
                    "serve".into(),
                    model.to_string(),
                    "--host".into(),
                    self.host.clone(),
                    "--port".into(),
                    port.to_string(),
                ]);
                if let Some(n) = o.num_ctx {
                    args.extend(["--max-model-len".into(), n.to_string()]);
                }
                if let Some(n) = o.parallel {
                    args.extend(["--max-num-seqs".into(), n.to_string()]);
                }
                if let Some(n) = o.batch_size {
                    args.extend(["--max-num-batched-tokens".into(), n.to_string()]);
                }
            }
            Preset::Custom => {}
        }
        let fill = |s: &str| -> String {
            let mut out = s
                .replace("{port}", &port.to_string())
                .replace("{host}", &self.host)
                .replace("{model}", model)
                .replace(
                    "{model_path}",
                    &self
                        .model_path
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                );
            for name in super::OPTION_NAMES {
                let p = format!("{{{name}}}");
                if out.contains(&p) {
                    let v = o
                        .entries()
                        .into_iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.to_string())
                        .unwrap_or_default();
                    out = out.replace(&p, &v);
                }
            }
            out
        };
        for a in &self.args {
            let a = fill(a);
            // An argument whose only content was an unset option's placeholder is dropped.
            if !a.is_empty() {
                args.push(a);
            }
        }
        for (k, v) in &self.env {
            env.insert(k.clone(), fill(v));
        }
        Launch {
            program: self.command.clone(),
            args,
            env,
        }
    }
}

/// True when a pair's agents need a server each: they differ in what loads the model
/// (num_ctx, num_gpu, a server-level option), which one server would reload at every switch
/// between them (Ollama keeps one runner per model) or cannot serve at all (a launch flag).
pub fn separate_servers(a: &ModelOptions, b: &ModelOptions) -> bool {
    (a.num_ctx, a.num_gpu, a.server_level()) != (b.num_ctx, b.num_gpu, b.server_level())
}

/// One option of `o` alone.
fn single(o: &ModelOptions, name: &str) -> ModelOptions {
    let mut out = ModelOptions::default();
    match name {
        "num_gpu" => out.num_gpu = o.num_gpu,
        "num_ctx" => out.num_ctx = o.num_ctx,
        "flash_attn" => out.flash_attn = o.flash_attn,
        "kv_cache_type" => out.kv_cache_type = o.kv_cache_type.clone(),
        "parallel" => out.parallel = o.parallel,
        "batch_size" => out.batch_size = o.batch_size,
        "ubatch_size" => out.ubatch_size = o.ubatch_size,
        "threads" => out.threads = o.threads,
        "temperature" => out.temperature = o.temperature,
        "top_p" => out.top_p = o.top_p,
        "top_k" => out.top_k = o.top_k,
        "repeat_penalty" => out.repeat_penalty = o.repeat_penalty,
        "seed" => out.seed = o.seed,
        "num_predict" => out.num_predict = o.num_predict,
        "keep_alive" => out.keep_alive = o.keep_alive.clone(),
        _ => {}
    }
    out
}

/// A server command line: what is spawned and recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    /// The program.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Variables set on top of sweep's own environment.
    pub env: BTreeMap<String, String>,
}

impl Launch {
    /// The command line as a shell would show it (environment first, values with secrets
    /// redacted: any variable whose name says KEY, TOKEN, SECRET or PASSWORD).
    pub fn display_redacted(&self) -> String {
        let mut parts: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", redact(k, v)))
            .collect();
        parts.push(self.program.clone());
        parts.extend(self.args.iter().map(|a| {
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                a.clone()
            }
        }));
        parts.join(" ")
    }

    /// The environment with secrets redacted (for the records).
    pub fn env_redacted(&self) -> BTreeMap<String, String> {
        self.env
            .iter()
            .map(|(k, v)| (k.clone(), redact(k, v)))
            .collect()
    }
}

fn redact(name: &str, value: &str) -> String {
    let n = name.to_ascii_uppercase();
    if ["KEY", "TOKEN", "SECRET", "PASSWORD"]
        .iter()
        .any(|w| n.contains(w))
    {
        "<redacted>".into()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llama() -> ServerConfig {
        ServerConfig {
            preset: Preset::LlamaServer,
            command: "llama-server".into(),
            args: vec!["--no-webui".into()],
            env: BTreeMap::from([("HF_TOKEN".into(), "abc".into())]),
            model_path: Some("m.gguf".into()),
            host: "127.0.0.1".into(),
            port: None,
            health_path: "/health".into(),
            ready_timeout_s: 1.0,
            stop_grace_s: 1.0,
        }
    }

    #[test]
    fn llama_server_flags_and_per_slot_context() {
        let o = ModelOptions {
            num_ctx: Some(512),
            parallel: Some(2),
            flash_attn: Some(false),
            kv_cache_type: Some("q8_0".into()),
            temperature: Some(0.6),
            ..Default::default()
        };
        let l = llama().launch(&o, "gemma", 8080);
        let line = l.args.join(" ");
        assert!(line.contains("-c 1024"), "{line}");
        assert!(line.contains("-np 2 "), "{line}");
        assert!(line.contains("-fa off"), "{line}");
        assert!(line.contains("-ctk q8_0 -ctv q8_0"), "{line}");
        assert!(line.ends_with("--no-webui"), "{line}");
        assert!(
            !line.contains("0.6"),
            "temperature is a request option: {line}"
        );
        assert_eq!(
            llama().launch_options(&o, BackendKind::Openai).canonical(),
            "num_ctx=512,flash_attn=false,kv_cache_type=q8_0,parallel=2"
        );
        assert!(l
            .display_redacted()
            .starts_with("HF_TOKEN=<redacted> llama-server"));
    }

    #[test]
    fn server_option_names_are_the_tail_of_the_option_names() {
        assert_eq!(
            super::super::SERVER_OPTION_NAMES,
            [
                "flash_attn",
                "kv_cache_type",
                "parallel",
                "batch_size",
                "ubatch_size",
                "threads"
            ]
        );
        assert_eq!(
            route("temperature", BackendKind::Openai, None),
            Ok(Route::Request)
        );
        assert_eq!(
            route("keep_alive", BackendKind::Ollama, None),
            Ok(Route::Request)
        );
    }

    #[test]
    fn silent_axes_are_refused() {
        let e = route("num_ctx", BackendKind::Openai, None).unwrap_err();
        assert!(e.contains("[server]"), "{e}");
        assert!(route("num_gpu", BackendKind::Openai, None).is_err());
        assert!(route("flash_attn", BackendKind::Ollama, None).is_err());
        assert_eq!(
            route("num_ctx", BackendKind::Ollama, None),
            Ok(Route::Request)
        );
        assert_eq!(
            route("num_ctx", BackendKind::Openai, Some(&llama())),
            Ok(Route::Flag)
        );
        assert!(route("parallel", BackendKind::Embedded, None).is_err());
        let mut custom = llama();
        custom.preset = Preset::Custom;
        custom.args = vec!["--ctx".into(), "{num_ctx}".into()];
        assert_eq!(
            route("num_ctx", BackendKind::Openai, Some(&custom)),
            Ok(Route::Placeholder)
        );
        assert!(route("flash_attn", BackendKind::Openai, Some(&custom)).is_err());
        let l = custom.launch(&ModelOptions::default(), "m", 1);
        assert_eq!(
            l.args,
            vec!["--ctx".to_string()],
            "unset placeholder dropped"
        );
    }
}
