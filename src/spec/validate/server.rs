//! `[server]`: the managed server sweep starts and stops.

use super::*;

impl Validator<'_> {
    /// `[server]`: the preset against the backend kind, the command, the address and the
    /// probe's limits, every default written here once.
    pub(super) fn server(&mut self, s: Spanned<raw::RawServer>) -> ServerConfig {
        let sspan = s.span();
        let s = s.into_inner();
        let preset = Preset::parse(s.preset.get_ref()).unwrap_or_else(|| {
            self.err(
                span_of(&s.preset),
                format!(
                    "server preset must be one of {}, found {:?}",
                    crate::spec::server::PRESET_WORDS
                        .iter()
                        .map(|w| format!("{w:?}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    s.preset.get_ref()
                ),
            );
            Preset::Custom
        });
        match (preset.backend_kind(), self.kind) {
            (_, BackendKind::Embedded) => self.err(
                Some(sspan.clone()),
                "[server] starts an HTTP server; the embedded engine runs in-process and takes \
                 its engine options (flash_attn, kv_cache_type, batch_size, ubatch_size, \
                 threads) directly: remove [server] or set [backend] kind = \"openai\"",
            ),
            (Some(want), have) if want != have => self.err(
                span_of(&s.preset),
                format!(
                    "preset {:?} serves [backend] kind = {:?}, but the backend is {:?}",
                    preset.as_str(),
                    want.as_str(),
                    have.as_str()
                ),
            ),
            _ => {}
        }
        let command = match (&s.command, preset.default_command()) {
            (Some(c), _) if c.get_ref().trim().is_empty() => {
                self.err(span_of(c), "server command must not be empty");
                String::new()
            }
            (Some(c), _) => c.get_ref().clone(),
            (None, Some(d)) => d.to_string(),
            (None, None) => {
                self.err(
                    span_of(&s.preset),
                    "a custom server needs command = \"/path/to/server\" (and args with \
                     {port} where it takes its port)",
                );
                String::new()
            }
        };
        let args: Vec<String> = s
            .args
            .map(|a| a.into_inner().into_iter().map(|x| x.into_inner()).collect())
            .unwrap_or_default();
        let mut env = BTreeMap::new();
        for (k, v) in s.env.map(|e| e.into_inner()).unwrap_or_default() {
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                self.err(
                    span_of(&v),
                    format!("environment variable name {k:?} must be letters, digits and '_'"),
                );
            }
            if k == "OLLAMA_HOST" && preset == Preset::Ollama {
                self.err(
                    span_of(&v),
                    "sweep sets OLLAMA_HOST to the address it starts Ollama on: set [server] \
                     host and port instead (port: a free one when unset)",
                );
            }
            env.insert(k, v.into_inner());
        }
        let model_path = match (&s.model_path, preset) {
            (Some(p), _) => Some(PathBuf::from(p.get_ref())),
            (None, Preset::LlamaServer) => Some(PathBuf::from(DEFAULT_MODEL_PATH)),
            (None, _) => None,
        };
        if let (true, Some(p), Preset::LlamaServer) = (self.check_paths, &model_path, preset) {
            if !p.is_file() {
                let span = s
                    .model_path
                    .as_ref()
                    .and_then(span_of)
                    .or(Some(sspan.clone()));
                self.err(
                    span,
                    format!(
                        "llama-server's model {} is not a file (scripts/fetch-model.sh fetches \
                         the default; set [server] model_path for another GGUF)",
                        p.display()
                    ),
                );
            }
        }
        let host = s
            .host
            .as_ref()
            .map(|h| h.get_ref().clone())
            .unwrap_or_else(|| crate::spec::server::DEFAULT_HOST.into());
        if host.is_empty() || host.contains('/') || host.contains(' ') {
            let span = s.host.as_ref().and_then(span_of);
            self.err(
                span,
                format!("server host must be an address like 127.0.0.1, found {host:?}"),
            );
        }
        let port = s
            .port
            .as_ref()
            .map(|p| self.int_in(p, "server port", 1, 65535) as u16);
        let health_path = match &s.health_path {
            Some(h) if !h.get_ref().starts_with('/') => {
                self.err(
                    span_of(h),
                    "health_path must start with '/' (e.g. \"/health\")",
                );
                preset.default_health_path().to_string()
            }
            Some(h) => h.get_ref().clone(),
            None => preset.default_health_path().to_string(),
        };
        let ready_timeout_s = s
            .ready_timeout_s
            .as_ref()
            .map(|t| self.positive_f64(t, "ready_timeout_s"))
            .unwrap_or(DEFAULT_READY_TIMEOUT_S);
        let stop_grace_s = s
            .stop_grace_s
            .as_ref()
            .map(|t| self.seconds_in(t, "stop_grace_s", 0.0))
            .unwrap_or(DEFAULT_STOP_GRACE_S);
        ServerConfig {
            preset,
            command,
            args,
            env,
            model_path,
            host,
            port,
            health_path,
            ready_timeout_s,
            stop_grace_s,
        }
    }
}
