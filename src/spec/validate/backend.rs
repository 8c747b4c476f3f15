//! `[backend]`, `[corpus]` paths, prompt versions and persona modes.

use super::*;

impl Validator<'_> {
    pub(super) fn prompt_version(
        &mut self,
        v: &Option<Spanned<String>>,
        default: PromptVersion,
    ) -> PromptVersion {
        let Some(v) = v else { return default };
        PromptVersion::parse(v.get_ref()).unwrap_or_else(|| {
            let names: Vec<String> = PromptVersion::ALL
                .iter()
                .map(|p| format!("{:?}", p.as_str()))
                .collect();
            self.err(
                span_of(v),
                format!(
                    "prompt_version must be one of {}, found {:?}",
                    names.join(", "),
                    v.get_ref()
                ),
            );
            default
        })
    }

    pub(super) fn persona_mode(
        &mut self,
        v: &Option<Spanned<String>>,
        default: PersonaMode,
    ) -> PersonaMode {
        match v.as_ref().map(|v| v.get_ref().as_str()) {
            None => default,
            Some("system") => PersonaMode::System,
            Some("echo") => PersonaMode::Echo,
            Some(other) => {
                self.err(
                    v.as_ref().and_then(span_of),
                    format!(
                        "persona_mode must be \"system\" (sent as the system prompt) or \"echo\" \
                         (shown in the report, not sent, as the seed system did), found {other:?}"
                    ),
                );
                default
            }
        }
    }

    /// The corpus must be an existing directory (relative paths are read from the current
    /// directory, as `sweep run` reads them).
    pub(super) fn corpus_dir(&mut self, span: &Spanned<String>, path: &Path) {
        let from = || {
            if path.is_relative() {
                std::env::current_dir()
                    .map(|d| format!(" (relative to the current directory {})", d.display()))
                    .unwrap_or_default()
            } else {
                String::new()
            }
        };
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => self.err(
                span_of(span),
                format!(
                    "corpus path {} is not a directory{}",
                    path.display(),
                    from()
                ),
            ),
            Err(e) => self.err(
                span_of(span),
                format!(
                    "corpus path {} cannot be read: {e}{}",
                    path.display(),
                    from()
                ),
            ),
        }
    }

    // Long (one section of the file, ≈200 lines) on purpose: each key is checked in the
    // order the section documents them and every problem is collected with its location;
    // the blocks are independent and short, and split by key they would only scatter one
    // section's rules over several functions.
    pub(super) fn backend(&mut self, b: Spanned<raw::RawBackend>) -> BackendConfig {
        let bspan = b.span();
        let b = b.into_inner();
        let kind = match b.kind.get_ref().as_str() {
            "ollama" => BackendKind::Ollama,
            "openai" => BackendKind::Openai,
            "embedded" => BackendKind::Embedded,
            other => {
                self.err(
                    span_of(&b.kind),
                    format!(
                        "backend kind must be \"ollama\", \"openai\" or \"embedded\", found {other:?}"
                    ),
                );
                BackendKind::Ollama
            }
        };
        let mut urls = Vec::new();
        if let Some(u) = &b.url {
            urls.push(u.clone());
        }
        if let Some(list) = &b.urls {
            if list.get_ref().is_empty() {
                self.err(span_of(list), "urls must list at least one endpoint");
            }
            urls.extend(list.get_ref().iter().cloned());
        }
        for u in &urls {
            self.check_url(u);
        }
        if let (Some(srv), Some(u)) = (&self.server, urls.first()) {
            let at = format!(
                "{}:{}",
                srv.host,
                srv.port.map_or("PORT".into(), |p| p.to_string())
            );
            self.err(
                span_of(u),
                format!(
                    "with [server], sweep starts the server and talks to it at {at}: remove \
                     url/urls (set [server] host and port to choose the address)"
                ),
            );
        }
        let mut urls: Vec<String> = urls.into_iter().map(|u| u.into_inner()).collect();
        if let Some(srv) = &self.server {
            // The port is chosen when the run starts (a free one where none is set); the
            // runner puts the real address here.
            urls = vec![format!("http://{}:{}", srv.host, srv.port.unwrap_or(0))];
        }
        if urls.is_empty() {
            match kind {
                BackendKind::Ollama => urls.push("http://127.0.0.1:11434".into()),
                BackendKind::Openai => self.err(
                    Some(bspan.clone()),
                    "backend kind \"openai\" needs url = \"http://host:port\" (the server's base URL, without /v1)",
                ),
                BackendKind::Embedded => {}
            }
        }
        let model = match (&b.model, kind) {
            (Some(m), _) if m.get_ref().trim().is_empty() => {
                self.err(span_of(m), "model must not be empty");
                String::new()
            }
            (Some(m), _) => m.get_ref().clone(),
            (None, BackendKind::Embedded) => DEFAULT_MODEL.into(),
            // llama-server serves the one model it loaded, whatever a request names.
            (None, _)
                if self
                    .server
                    .as_ref()
                    .is_some_and(|s| s.preset == Preset::LlamaServer) =>
            {
                self.server
                    .as_ref()
                    .and_then(|s| s.model_path.as_ref())
                    .and_then(|p| p.file_stem())
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_else(|| DEFAULT_MODEL.into())
            }
            (None, _) => {
                self.err(
                    Some(bspan.clone()),
                    "missing key `model` in [backend] (e.g. model = \"gemma3:latest\")",
                );
                String::new()
            }
        };
        let model_path = match (&b.model_path, kind) {
            (Some(p), BackendKind::Embedded) => Some(PathBuf::from(p.get_ref())),
            (Some(p), _) => {
                self.err(span_of(p), "model_path applies only to kind = \"embedded\"");
                None
            }
            (None, BackendKind::Embedded) => Some(PathBuf::from(DEFAULT_MODEL_PATH)),
            (None, _) => None,
        };
        let ollama_api = match b.api.as_ref().map(|a| a.get_ref().as_str()) {
            None | Some("generate") => OllamaApi::Generate,
            Some("chat") => OllamaApi::Chat,
            Some(other) => {
                let span = b.api.as_ref().and_then(span_of);
                self.err(
                    span,
                    format!("api must be \"generate\" or \"chat\", found {other:?}"),
                );
                OllamaApi::Generate
            }
        };
        let default_timeouts = Timeouts::default();
        let total_s = b
            .timeout_s
            .as_ref()
            .map(|t| self.positive_f64(t, "timeout_s"))
            .unwrap_or(default_timeouts.total_s);
        let connect_s = b
            .connect_timeout_s
            .as_ref()
            .map(|t| self.positive_f64(t, "connect_timeout_s"))
            .unwrap_or(default_timeouts.connect_s);
        let first_token_s = b
            .first_token_timeout_s
            .as_ref()
            .map(|t| self.positive_f64(t, "first_token_timeout_s"))
            .unwrap_or(total_s);
        let defaults = RetryPolicy::default();
        let retry = match &b.retry {
            None => defaults.clone(),
            Some(r) => {
                let r = r.get_ref();
                RetryPolicy {
                    attempts: r
                        .attempts
                        .as_ref()
                        .map(|a| self.int_in(a, "retry.attempts", 1, 100) as u32)
                        .unwrap_or(defaults.attempts),
                    backoff_ms: r
                        .backoff_ms
                        .as_ref()
                        .map(|a| self.int_in(a, "retry.backoff_ms", 0, 600_000) as u64)
                        .unwrap_or(defaults.backoff_ms),
                }
            }
        };
        let threads = b
            .threads
            .as_ref()
            .map(|t| self.int_in(t, "threads", 1, 1024) as u32);
        if let Some(env) = &b.api_key_env {
            let ok = !env.get_ref().is_empty()
                && env
                    .get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                self.err(
                    span_of(env),
                    "api_key_env must name an environment variable (letters, digits, '_'), not hold the key itself",
                );
            }
        }
        let extra = b
            .extra
            .map(|t| match serde_json::to_value(t) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            })
            .unwrap_or_default();
        BackendConfig {
            kind,
            urls,
            model,
            model_path,
            ollama_api,
            timeouts: Timeouts {
                connect_s,
                first_token_s,
                total_s,
            },
            api_key_env: b.api_key_env.map(|e| e.into_inner()),
            retry,
            threads,
            cache_prompt: b.cache_prompt.unwrap_or(false),
            extra,
            fresh_connections: self.server.is_some(),
        }
    }

    pub(super) fn check_url(&mut self, u: &Spanned<String>) {
        let s = u.get_ref();
        let rest = s
            .strip_prefix("http://")
            .or_else(|| s.strip_prefix("https://"));
        match rest {
            Some(r) if !r.is_empty() && !r.starts_with('/') => {}
            _ => self.err(
                span_of(u),
                format!("expected an http:// or https:// URL with a host, found {s:?}"),
            ),
        }
    }
}
