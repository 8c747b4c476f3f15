//! The embedded engine: llama.cpp in-process (via `llama-cpp-2`) running a GGUF model.
//!
//! Same contract as the HTTP backends: the [`ClientTimer`] starts when the request is handed to
//! the engine (before waiting for the engine lock, like a server queue) and the first non-empty
//! decoded piece is the first token. Server-side figures come from llama.cpp's own perf
//! counters (`ctx.timings()`): `prompt_eval_ms` is the prompt decode, `eval_ms` the decodes of
//! generated tokens (sampling excluded), as in llama.cpp's `llama_perf_context_print`.
//!
//! One engine thread owns the model and its context; calls queue for it over a channel (like
//! requests queue at a server). Keeping everything on one thread means one OpenMP team for the
//! whole process, and it lets the context live across calls without a self-referential struct:
//! the context borrows the model on that thread's stack.
//!
//! Cold calls, like Ollama: the model stays loaded while the reload key (model path + effective
//! GPU layers) is unchanged, and the context stays while `num_ctx` is unchanged (its KV cache and
//! perf counters are cleared per call, so no prompt is cached between calls). A call is cold when
//! it loaded the model or created a context because `num_ctx` changed (Ollama reloads then); a
//! cold call reports `load_ms` = model load (if any) + context creation, a warm call reports 0.0.

use super::{
    Backend, BackendError, BackendInfo, BoxFuture, ClientTimer, GenRequest, Generation,
    ServerMetrics, TimeoutPhase, WireRequest,
};
use crate::spec::{BackendConfig, ModelOptions, Timeouts, DEFAULT_MODEL_PATH};
use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::{send_logs_to_tracing, LogOptions};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::num::NonZeroU32;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// Version of the `llama-cpp-2` crate this engine is built on (pinned with `=` in Cargo.toml).
pub const LLAMA_CPP_2_VERSION: &str = "0.1.160";
/// Context size when `num_ctx` is unset.
pub const DEFAULT_NUM_CTX: u32 = 2048;
/// Maximum generated tokens when `num_predict` is unset.
pub const DEFAULT_NUM_PREDICT: u32 = 128;
/// Sampling seed when `seed` is unset: fixed, so that unset still means reproducible.
pub const DEFAULT_SEED: u32 = 42;
/// llama.cpp's sampling defaults (common_params_sampling) when an option is unset.
const DEFAULT_TEMPERATURE: f32 = 0.8;
const DEFAULT_TOP_K: i32 = 40;
const DEFAULT_TOP_P: f32 = 0.95;
/// Tokens the repeat penalty looks back over (llama.cpp's and Ollama's default).
const PENALTY_LAST_N: i32 = 64;
/// Named llama.cpp template used when the GGUF carries none (this Gemma 3 270M file has none).
const FALLBACK_TEMPLATE: &str = "gemma";
/// The command that fetches the default model.
const FETCH_COMMAND: &str = "scripts/fetch-model.sh";

/// `LlamaBackend::init()` may run once per process; keep the result for every backend.
static LLAMA: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

fn llama() -> Result<&'static LlamaBackend, BackendError> {
    LLAMA
        .get_or_init(|| {
            // llama.cpp logs go to `tracing` (debug level) instead of cluttering stderr.
            send_logs_to_tracing(LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| BackendError::Engine(format!("llama.cpp backend init failed: {e}")))
}

/// In-process llama.cpp backend. Cheap to share: clones share one engine.
#[derive(Clone)]
pub struct EmbeddedBackend {
    inner: Arc<Inner>,
}

struct Inner {
    model_path: PathBuf,
    threads: i32,
    timeouts: Timeouts,
    /// The queue into the engine thread, started on the first call (and again if it ever died).
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    /// sha256 of the model file, computed once.
    digest: tokio::sync::OnceCell<String>,
    /// Where the engine thread put the model at its last load (`Backend::server_state`).
    placement: Arc<Mutex<Option<Placement>>>,
}

/// Where the engine put the model's layers at its last load: what llama.cpp's own
/// `load_tensors: offloaded N/M layers to GPU` line says, computed the way llama.cpp does
/// (`llama_model::load_tensors`: `min(n_gpu_layers, n_layer + 1)` when a GPU device is
/// present, else 0); every field is set.
pub type Placement = super::EnginePlacement;

/// One call handed to the engine thread.
struct Job {
    req: GenRequest,
    timer: ClientTimer,
    cancel: Arc<AtomicBool>,
    reply: tokio::sync::oneshot::Sender<Result<Generation, BackendError>>,
}

/// What the engine thread needs to know about its backend (no handle back to it, so dropping
/// the last `EmbeddedBackend` closes the queue and ends the thread).
#[derive(Clone)]
struct EngineConfig {
    model_path: PathBuf,
    threads: i32,
    timeouts: Timeouts,
    placement: Arc<Mutex<Option<Placement>>>,
}

struct Loaded {
    model: LlamaModel,
    template: LlamaChatTemplate,
}

impl std::fmt::Debug for EmbeddedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBackend")
            .field("model_path", &self.inner.model_path)
            .field("threads", &self.inner.threads)
            .finish()
    }
}

impl EmbeddedBackend {
    /// Checks the model file is there and initialises llama.cpp; the model itself loads on the
    /// first call so that this call is measured as the cold one.
    pub fn new(cfg: &BackendConfig) -> Result<Self, BackendError> {
        let model_path = cfg
            .model_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL_PATH));
        check_model_file(&model_path)?;
        llama()?;
        let threads = cfg
            .threads
            .map(|t| t.max(1))
            .unwrap_or_else(physical_cores)
            .min(i32::MAX as u32) as i32;
        Ok(Self {
            inner: Arc::new(Inner {
                model_path,
                threads,
                timeouts: cfg.timeouts.clone(),
                jobs: Mutex::new(None),
                digest: tokio::sync::OnceCell::new(),
                placement: Arc::default(),
            }),
        })
    }

    /// Threads llama.cpp uses for prompt and generation.
    pub fn threads(&self) -> u32 {
        self.inner.threads as u32
    }

    /// The GGUF file the engine runs (`model_path`, else the default path).
    pub fn model_path(&self) -> &Path {
        &self.inner.model_path
    }
}

fn check_model_file(path: &Path) -> Result<(), BackendError> {
    if path.is_file() {
        return Ok(());
    }
    Err(BackendError::ModelNotFound {
        model: path.display().to_string(),
        hint: format!(
            ": the GGUF file is missing; fetch it with `{FETCH_COMMAND}` (or set model_path)"
        ),
    })
}

impl Backend for EmbeddedBackend {
    fn generate<'a>(
        &'a self,
        req: &'a GenRequest,
    ) -> BoxFuture<'a, Result<Generation, BackendError>> {
        Box::pin(async move {
            let timer = ClientTimer::start();
            let cancel = CancelOnDrop::default();
            let (reply, answer) = tokio::sync::oneshot::channel();
            self.inner.submit(Job {
                req: req.clone(),
                timer,
                cancel: Arc::clone(&cancel.0),
                reply,
            })?;
            let result = answer.await;
            drop(cancel);
            result.map_err(|_| BackendError::Engine("the engine thread stopped mid-call".into()))?
        })
    }

    /// Nothing goes over a wire: the record is what the engine thread is handed, the
    /// messages it applies the chat template to, and the settings it resolves (defaults
    /// filled in), so that a stored call says what really ran.
    fn wire_request(&self, req: &GenRequest) -> WireRequest {
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = req.system.as_deref().filter(|s| !s.is_empty()) {
            messages.push(serde_json::json!({"role": "system", "content": system}));
        }
        messages.push(serde_json::json!({"role": "user", "content": req.prompt}));
        let o = &req.options;
        let mut settings = serde_json::json!({
            "num_ctx": o.num_ctx.unwrap_or(DEFAULT_NUM_CTX),
            "num_predict": o.num_predict.unwrap_or(DEFAULT_NUM_PREDICT),
            "gpu_layers": effective_gpu_layers(o),
            "threads": o.threads.unwrap_or(self.threads()),
            "chat_template": "from the GGUF, else llama.cpp's named template \"gemma\"",
        });
        for (name, v) in o.server_level().entries() {
            if name != "threads" {
                settings[name] = serde_json::json!(v.to_string());
            }
        }
        // An f32 as its shortest decimal (0.8, not 0.800000011920929).
        let short = |x: f32| x.to_string().parse::<f64>().unwrap_or(f64::from(x));
        if let Ok(s) = Sampling::from_options(o) {
            settings["temperature"] = serde_json::json!(short(s.temperature));
            settings["top_k"] = serde_json::json!(s.top_k);
            settings["top_p"] = serde_json::json!(short(s.top_p));
            settings["repeat_penalty"] = serde_json::json!(short(s.repeat_penalty));
            settings["seed"] = serde_json::json!(s.seed);
        }
        WireRequest {
            endpoint: format!("embedded:{}", self.inner.model_path.display()),
            body: serde_json::json!({
                "model": req.model,
                "messages": messages,
                "settings": settings,
            }),
        }
    }

    fn defaults_label(&self) -> String {
        crate::spec::BackendKind::Embedded.defaults_label().into()
    }

    fn preflight<'a>(
        &'a self,
        _model: &'a str,
    ) -> BoxFuture<'a, Result<BackendInfo, BackendError>> {
        Box::pin(async move {
            check_model_file(&self.inner.model_path)?;
            let path = self.inner.model_path.clone();
            let digest = self
                .inner
                .digest
                .get_or_try_init(|| async move {
                    tokio::task::spawn_blocking(move || sha256_file(&path))
                        .await
                        .map_err(|e| BackendError::Engine(format!("digest task failed: {e}")))?
                })
                .await?;
            Ok(BackendInfo {
                kind: "embedded".into(),
                version: Some(LLAMA_CPP_2_VERSION.into()),
                model_digest: Some(digest.clone()),
                endpoints: Vec::new(),
                defaults: effective_defaults(),
            })
        })
    }

    fn server_state<'a>(
        &'a self,
        _endpoint: Option<&'a str>,
    ) -> BoxFuture<'a, Option<serde_json::Value>> {
        Box::pin(async move {
            let p = self
                .inner
                .placement
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()?;
            Some(p.to_state())
        })
    }
}

/// The values this engine uses for options a request leaves unset (the manifest keeps them
/// so that tables can show a baseline's effective num_ctx, temperature …).
pub fn effective_defaults() -> std::collections::BTreeMap<String, String> {
    [
        ("num_ctx", DEFAULT_NUM_CTX.to_string()),
        ("num_predict", DEFAULT_NUM_PREDICT.to_string()),
        ("temperature", DEFAULT_TEMPERATURE.to_string()),
        ("top_k", DEFAULT_TOP_K.to_string()),
        ("top_p", DEFAULT_TOP_P.to_string()),
        ("repeat_penalty", "1".to_string()),
        ("seed", DEFAULT_SEED.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Tells the blocking generation loop to stop when the caller's future is dropped (a timeout
/// around `generate`), so the engine lock is not held for an abandoned call.
#[derive(Default)]
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn sha256_file(path: &Path) -> Result<String, BackendError> {
    let io = |e: std::io::Error| BackendError::Engine(format!("reading {}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Sampling settings resolved from the request's options and the engine defaults.
#[derive(Debug, Clone, PartialEq)]
struct Sampling {
    temperature: f32,
    top_k: i32,
    top_p: f32,
    repeat_penalty: f32,
    seed: u32,
}

impl Sampling {
    fn from_options(o: &ModelOptions) -> Result<Self, BackendError> {
        let finite = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(v as f32)
            } else {
                Err(BackendError::InvalidRequest(format!(
                    "{name} must be a finite number ≥ 0, got {v}"
                )))
            }
        };
        let repeat_penalty = o
            .repeat_penalty
            .map(|v| finite("repeat_penalty", v))
            .transpose()?
            .unwrap_or(1.0);
        if repeat_penalty <= 0.0 {
            return Err(BackendError::InvalidRequest(
                "repeat_penalty must be > 0 (1 disables it)".into(),
            ));
        }
        Ok(Self {
            temperature: o
                .temperature
                .map(|v| finite("temperature", v))
                .transpose()?
                .unwrap_or(DEFAULT_TEMPERATURE),
            top_k: o
                .top_k
                .map(|k| k.min(i32::MAX as u32) as i32)
                .unwrap_or(DEFAULT_TOP_K),
            top_p: o
                .top_p
                .map(|v| finite("top_p", v))
                .transpose()?
                .unwrap_or(DEFAULT_TOP_P),
            repeat_penalty,
            seed: o.seed.map(seed_u32).unwrap_or(DEFAULT_SEED),
        })
    }

    /// penalties → top_k → top_p → temp → dist(seed); greedy at temperature 0.
    fn chain(&self, n_vocab: i32) -> LlamaSampler {
        let mut s = Vec::with_capacity(5);
        if self.repeat_penalty != 1.0 {
            s.push(LlamaSampler::penalties(
                n_vocab,
                PENALTY_LAST_N,
                self.repeat_penalty,
                0.0,
                0.0,
            ));
        }
        if self.temperature <= 0.0 {
            s.push(LlamaSampler::greedy());
        } else {
            if self.top_k > 0 {
                s.push(LlamaSampler::top_k(self.top_k));
            }
            if self.top_p < 1.0 {
                s.push(LlamaSampler::top_p(self.top_p, 1));
            }
            s.push(LlamaSampler::temp(self.temperature));
            s.push(LlamaSampler::dist(self.seed));
        }
        LlamaSampler::chain(s, false)
    }
}

/// Seeds are u64 in the experiment file, u32 in llama.cpp: fold the high half in. u32::MAX is
/// llama.cpp's "random seed" marker, so it maps to u32::MAX − 1 to stay reproducible.
fn seed_u32(seed: u64) -> u32 {
    let folded = (seed as u32) ^ ((seed >> 32) as u32);
    if folded == u32::MAX {
        u32::MAX - 1
    } else {
        folded
    }
}

/// GPU layers that take effect: `num_gpu` only with the `cuda` feature; a CPU build ignores it.
fn effective_gpu_layers(o: &ModelOptions) -> Option<u32> {
    if cfg!(feature = "cuda") {
        o.num_gpu
    } else {
        None
    }
}

impl Inner {
    /// Queues a call for the engine thread, starting the thread if it is not running.
    fn submit(&self, job: Job) -> Result<(), BackendError> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let job = match jobs.as_ref() {
            Some(tx) => match tx.send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::SendError(job)) => job, // the thread died: start a new one
            },
            None => job,
        };
        let (tx, rx) = mpsc::channel();
        let cfg = EngineConfig {
            model_path: self.model_path.clone(),
            threads: self.threads,
            timeouts: self.timeouts.clone(),
            placement: Arc::clone(&self.placement),
        };
        std::thread::Builder::new()
            .name("sweep-llama".into())
            .spawn(move || engine_thread(&cfg, &rx))
            .map_err(|e| BackendError::Engine(format!("starting the engine thread: {e}")))?;
        tx.send(job)
            .map_err(|_| BackendError::Engine("the engine thread stopped at start".into()))?;
        *jobs = Some(tx);
        Ok(())
    }
}

/// The engine thread: loads the model for the first call's reload key, serves calls while the
/// key stays the same (reusing the context while `num_ctx` does), reloads when it changes, and
/// ends when every sender is gone. A panic inside llama-cpp-2 fails that call and drops the
/// model and context, so the next call starts clean (and cold).
fn engine_thread(cfg: &EngineConfig, jobs: &mpsc::Receiver<Job>) {
    let mut next = jobs.recv().ok();
    while let Some(first) = next.take() {
        let gpu_layers = effective_gpu_layers(&first.req.options);
        let t = Instant::now();
        let loaded = match catch_unwind(|| load(cfg, gpu_layers)) {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(e)) => {
                let _ = first.reply.send(Err(e));
                next = jobs.recv().ok();
                continue;
            }
            Err(_) => {
                let _ = first.reply.send(Err(panicked("loading the model")));
                next = jobs.recv().ok();
                continue;
            }
        };
        let mut session = Session {
            cfg,
            loaded: &loaded,
            ctx: None,
            model_load_ms: Some(ms_since(t)),
        };
        let mut job = first;
        loop {
            let Job {
                req,
                timer,
                cancel,
                reply,
            } = job;
            let served = catch_unwind(AssertUnwindSafe(|| session.serve(&req, timer, &cancel)));
            let healthy = served.is_ok();
            let _ = reply.send(served.unwrap_or_else(|_| Err(panicked("generating"))));
            let Ok(j) = jobs.recv() else {
                return; // every backend handle is gone
            };
            if !healthy || effective_gpu_layers(&j.req.options) != gpu_layers {
                next = Some(j);
                break;
            }
            job = j;
        }
        // `session` (and its context) drops here, before the model it borrows.
    }
}

fn panicked(during: &str) -> BackendError {
    BackendError::Engine(format!(
        "llama.cpp binding panicked while {during}; the model will be reloaded"
    ))
}

/// The loaded model and, while `num_ctx` is unchanged, its context.
struct Session<'m> {
    cfg: &'m EngineConfig,
    loaded: &'m Loaded,
    /// The context and the `num_ctx` it was made for (llama.cpp may round its own figure).
    ctx: Option<(ContextKey, LlamaContext<'m>)>,
    /// Model load time, reported (once) by the next cold call.
    model_load_ms: Option<f64>,
}

/// The engine-level settings a context is created with: a call whose key differs gets a
/// new context (and is cold), as a server restart would be.
#[derive(Debug, Clone, PartialEq)]
struct ContextKey {
    n_ctx: u32,
    flash_attn: Option<bool>,
    kv_cache_type: Option<String>,
    batch_size: Option<u32>,
    ubatch_size: Option<u32>,
    threads: i32,
}

impl ContextKey {
    fn of(o: &ModelOptions, default_threads: i32) -> Self {
        ContextKey {
            n_ctx: o.num_ctx.unwrap_or(DEFAULT_NUM_CTX),
            flash_attn: o.flash_attn,
            kv_cache_type: o.kv_cache_type.clone(),
            batch_size: o.batch_size,
            ubatch_size: o.ubatch_size,
            threads: o
                .threads
                .map_or(default_threads, |t| t.min(i32::MAX as u32) as i32),
        }
    }

    fn params(&self) -> Result<LlamaContextParams, BackendError> {
        let mut p = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(self.n_ctx))
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads)
            .with_no_perf(false);
        if let Some(fa) = self.flash_attn {
            // llama.h: LLAMA_FLASH_ATTN_TYPE_DISABLED = 0, _ENABLED = 1 (unset: _AUTO).
            p = p.with_flash_attention_policy(i32::from(fa));
        }
        if let Some(t) = &self.kv_cache_type {
            let t = kv_cache_type(t)?;
            p = p.with_type_k(t).with_type_v(t);
        }
        if let Some(n) = self.batch_size {
            p = p.with_n_batch(n);
        }
        if let Some(n) = self.ubatch_size {
            p = p.with_n_ubatch(n);
        }
        Ok(p)
    }

    fn describe(&self) -> String {
        let mut s = format!("num_ctx {}, threads {}", self.n_ctx, self.threads);
        if let Some(fa) = self.flash_attn {
            s += &format!(", flash_attn {fa}");
        }
        if let Some(t) = &self.kv_cache_type {
            s += &format!(", kv_cache_type {t}");
        }
        s
    }
}

/// `kv_cache_type` words (the spec's [`crate::spec::KV_CACHE_TYPES`]) as llama.cpp types.
fn kv_cache_type(name: &str) -> Result<KvCacheType, BackendError> {
    Ok(match name {
        "f32" => KvCacheType::F32,
        "f16" => KvCacheType::F16,
        "bf16" => KvCacheType::BF16,
        "q8_0" => KvCacheType::Q8_0,
        "q4_0" => KvCacheType::Q4_0,
        "q4_1" => KvCacheType::Q4_1,
        "iq4_nl" => KvCacheType::IQ4_NL,
        "q5_0" => KvCacheType::Q5_0,
        "q5_1" => KvCacheType::Q5_1,
        other => {
            return Err(BackendError::InvalidRequest(format!(
                "kv_cache_type {other:?} is not one of {}",
                crate::spec::KV_CACHE_TYPES.join(", ")
            )))
        }
    })
}

impl<'m> Session<'m> {
    fn serve(
        &mut self,
        req: &GenRequest,
        mut timer: ClientTimer,
        cancel: &AtomicBool,
    ) -> Result<Generation, BackendError> {
        let began = Instant::now();
        let check = |timer: &ClientTimer| -> Result<(), BackendError> {
            if cancel.load(Ordering::Relaxed) {
                return Err(BackendError::Engine("call abandoned by the caller".into()));
            }
            check_timeouts(&self.cfg.timeouts, timer)
        };
        check(&timer)?; // the caller may have given up while the call was queued

        let opts = &req.options;
        let n_ctx = opts.num_ctx.unwrap_or(DEFAULT_NUM_CTX);
        if n_ctx == 0 {
            return Err(BackendError::InvalidRequest("num_ctx must be > 0".into()));
        }
        let n_predict = opts.num_predict.unwrap_or(DEFAULT_NUM_PREDICT);
        let sampling = Sampling::from_options(opts)?;
        let model = &self.loaded.model;

        let prompt = render_prompt(model, &self.loaded.template, req)?;
        let tokens = model.vocab().tokenize(prompt.as_bytes(), true, true);
        if tokens.is_empty() {
            return Err(BackendError::InvalidRequest("the prompt is empty".into()));
        }
        // At least one free slot is needed to generate anything.
        if tokens.len() >= n_ctx as usize {
            return Err(BackendError::InvalidRequest(format!(
                "prompt is {} tokens but num_ctx is {n_ctx}: it needs num_ctx > prompt tokens",
                tokens.len()
            )));
        }

        // Reuse the context while num_ctx is unchanged; otherwise this call is cold.
        let mut load_ms = 0.0;
        // The model load this call waited for happened before `began`; like Ollama's
        // total_duration (which holds its load_duration), the call's total includes it.
        let mut model_load_ms = 0.0;
        let key = ContextKey::of(opts, self.cfg.threads);
        if self.ctx.as_ref().is_none_or(|(k, _)| *k != key) {
            self.ctx = None; // free the old context first
            let t = Instant::now();
            let ctx = model.new_context(llama()?, key.params()?).map_err(|e| {
                BackendError::Engine(format!("context creation ({}): {e}", key.describe()))
            })?;
            model_load_ms = self.model_load_ms.take().unwrap_or(0.0);
            load_ms = model_load_ms + ms_since(t);
            self.ctx = Some((key, ctx));
        }
        let Some((_, ctx)) = self.ctx.as_mut() else {
            return Err(BackendError::Engine("no context".into()));
        };
        // Settle whatever an abandoned call left queued first: llama.cpp books a pending decode
        // into the perf counters at the next synchronize, which would otherwise land in this
        // call's prompt_eval_ms (found by the queueing test).
        ctx.synchronize();
        ctx.clear_kv_cache();
        ctx.reset_timings();

        // Prompt, in chunks of the context's batch size; logits only for the last token.
        let n_batch = (ctx.n_batch() as usize).max(1);
        let mut batch = LlamaBatch::new(n_batch, 1);
        let last = tokens.len() - 1;
        for (c, chunk) in tokens.chunks(n_batch).enumerate() {
            batch.clear();
            for (j, &tok) in chunk.iter().enumerate() {
                let pos = c * n_batch + j;
                batch
                    .add(tok, pos as i32, &[0], pos == last)
                    .map_err(|e| BackendError::Engine(format!("batch: {e}")))?;
            }
            ctx.decode(&mut batch)
                .map_err(|e| BackendError::Engine(format!("prompt decode: {e}")))?;
            check(&timer)?;
        }

        // Generation.
        let mut sampler = sampling.chain(model.n_vocab());
        let vocab = model.vocab();
        let max_new = (n_predict as usize).min(n_ctx as usize - tokens.len());
        let mut pos = tokens.len();
        let mut text = String::new();
        let mut utf8 = Utf8Stream::default();
        let mut piece = Vec::with_capacity(32);
        let mut output_tokens: u64 = 0;
        while (output_tokens as usize) < max_new {
            let tok = sampler.sample(ctx, batch.n_tokens() - 1);
            if vocab.is_eog(tok) {
                break;
            }
            output_tokens += 1;
            piece.clear();
            vocab.token_to_piece_into(tok, &mut piece, false, None);
            let grew = utf8.push(&piece, &mut text);
            timer.chunk(grew);
            if output_tokens as usize >= max_new {
                break;
            }
            check(&timer)?;
            batch.clear();
            batch
                .add(tok, pos as i32, &[0], true)
                .map_err(|e| BackendError::Engine(format!("batch: {e}")))?;
            ctx.decode(&mut batch)
                .map_err(|e| BackendError::Engine(format!("decode: {e}")))?;
            pos += 1;
        }
        if utf8.finish(&mut text) {
            timer.chunk(true);
        }
        let timing = timer.finish();
        let perf = ctx.timings();
        let server = ServerMetrics {
            load_ms: Some(load_ms),
            prompt_eval_ms: Some(perf.t_p_eval_ms()),
            eval_ms: Some(perf.t_eval_ms()),
            total_ms: Some(model_load_ms + ms_since(began)),
            prompt_tokens: Some(tokens.len() as u64),
            output_tokens: Some(output_tokens),
            tokens_source: Some("usage".to_string()),
        };
        Ok(Generation {
            text,
            timing,
            server,
        })
    }
}

fn load(cfg: &EngineConfig, gpu_layers: Option<u32>) -> Result<Loaded, BackendError> {
    check_model_file(&cfg.model_path)?;
    let mut params = LlamaModelParams::default();
    if let Some(n) = gpu_layers {
        params = params.with_n_gpu_layers(n);
    }
    let model = LlamaModel::load_from_file(llama()?, &cfg.model_path, &params)
        .map_err(|e| BackendError::Engine(format!("loading {}: {e}", cfg.model_path.display())))?;
    let placement = placement_of(&model, params.n_gpu_layers(), gpu_layers);
    *cfg.placement.lock().unwrap_or_else(|p| p.into_inner()) = Some(placement);
    let template = match model.chat_template(None) {
        Ok(t) => t,
        Err(_) => LlamaChatTemplate::new(FALLBACK_TEMPLATE)
            .map_err(|e| BackendError::Engine(format!("chat template: {e}")))?,
    };
    Ok(Loaded { model, template })
}

/// The layers llama.cpp offloads for `n_gpu_layers` (negative: all) on this machine's GPU
/// devices.
fn placement_of(model: &LlamaModel, n_gpu_layers: i32, requested: Option<u32>) -> Placement {
    use llama_cpp_2::{list_llama_ggml_backend_devices, LlamaBackendDeviceType};
    let gpu_devices: Vec<String> = list_llama_ggml_backend_devices()
        .into_iter()
        .filter(|d| {
            matches!(
                d.device_type,
                LlamaBackendDeviceType::Gpu | LlamaBackendDeviceType::IntegratedGpu
            )
        })
        .map(|d| {
            format!(
                "{}: {} ({} MiB)",
                d.name,
                d.description,
                d.memory_total / (1024 * 1024)
            )
        })
        .collect();
    let layers_total = u64::from(model.n_layer()) + 1;
    let want = u64::try_from(n_gpu_layers).unwrap_or(layers_total);
    Placement {
        gpu_layers_requested: requested,
        layers_offloaded: Some(if gpu_devices.is_empty() {
            0
        } else {
            want.min(layers_total)
        }),
        layers_total: Some(layers_total),
        gpu_devices: Some(gpu_devices),
        cuda_build: Some(cfg!(feature = "cuda")),
    }
}

fn check_timeouts(t: &Timeouts, timer: &ClientTimer) -> Result<(), BackendError> {
    let elapsed_s = timer.elapsed_ms() / 1000.0;
    if t.total_s > 0.0 && elapsed_s > t.total_s {
        return Err(BackendError::Timeout {
            phase: TimeoutPhase::Total,
            after_s: t.total_s,
        });
    }
    if !timer.has_first_token() && t.first_token_s > 0.0 && elapsed_s > t.first_token_s {
        return Err(BackendError::Timeout {
            phase: TimeoutPhase::FirstToken,
            after_s: t.first_token_s,
        });
    }
    Ok(())
}

/// The chat-formatted prompt: the system prompt as a system message, then the user turn, then
/// the opening of the assistant turn.
fn render_prompt(
    model: &LlamaModel,
    template: &LlamaChatTemplate,
    req: &GenRequest,
) -> Result<String, BackendError> {
    let msg = |role: &str, content: &str| {
        LlamaChatMessage::new(role.into(), content.into())
            .map_err(|e| BackendError::InvalidRequest(format!("{role} message: {e}")))
    };
    let mut chat = Vec::with_capacity(2);
    if let Some(system) = req.system.as_deref().filter(|s| !s.is_empty()) {
        chat.push(msg("system", system)?);
    }
    chat.push(msg("user", &req.prompt)?);
    model
        .apply_chat_template(template, &chat, true)
        .map_err(|e| BackendError::Engine(format!("applying the chat template: {e}")))
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Turns token pieces (bytes) into text without ever emitting half a character: bytes of an
/// incomplete UTF-8 sequence wait for the next piece; invalid bytes become U+FFFD.
#[derive(Debug, Default)]
struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Appends the complete characters now available; true when `out` grew.
    fn push(&mut self, bytes: &[u8], out: &mut String) -> bool {
        let before = out.len();
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = start + e.valid_up_to();
                    if let Ok(s) = std::str::from_utf8(&self.pending[start..valid]) {
                        out.push_str(s);
                    }
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            start = valid + bad;
                        }
                        None => {
                            start = valid;
                            break;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
        out.len() > before
    }

    /// Flushes a trailing incomplete sequence (lossily); true when `out` grew.
    fn finish(&mut self, out: &mut String) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        out.push_str(&String::from_utf8_lossy(&self.pending));
        self.pending.clear();
        true
    }
}

/// Physical cores (hyper-threads share a core's vector units, which llama.cpp saturates);
/// falls back to the logical CPU count where /proc/cpuinfo says nothing.
fn physical_cores() -> u32 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| physical_cores_from_cpuinfo(&s))
        .or_else(|| {
            std::thread::available_parallelism()
                .ok()
                .map(|n| n.get() as u32)
        })
        .unwrap_or(1)
}

/// Distinct (physical id, core id) pairs in /proc/cpuinfo text.
fn physical_cores_from_cpuinfo(text: &str) -> Option<u32> {
    let mut cores = std::collections::BTreeSet::new();
    for block in text.split("\n\n") {
        let field = |name: &str| {
            block.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == name).then(|| v.trim().to_string())
            })
        };
        if let Some(core) = field("core id") {
            cores.insert((field("physical id").unwrap_or_default(), core));
        }
    }
    (!cores.is_empty()).then_some(cores.len() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_stream_holds_split_characters() {
        let mut s = Utf8Stream::default();
        let mut out = String::new();
        let e = "é".as_bytes();
        assert!(!s.push(&e[..1], &mut out));
        assert_eq!(out, "");
        assert!(s.push(&e[1..], &mut out));
        assert_eq!(out, "é");
        let crab = "a🦀".as_bytes();
        assert!(s.push(&crab[..3], &mut out));
        assert_eq!(out, "éa");
        assert!(!s.push(&crab[3..4], &mut out));
        assert!(s.push(&crab[4..], &mut out));
        assert_eq!(out, "éa🦀");
        assert!(!s.finish(&mut out));
    }

    #[test]
    fn utf8_stream_replaces_invalid_and_flushes_tail() {
        let mut s = Utf8Stream::default();
        let mut out = String::new();
        assert!(s.push(&[b'x', 0xFF, b'y', 0xE2, 0x82], &mut out));
        assert_eq!(out, "x\u{FFFD}y");
        assert!(s.finish(&mut out));
        assert_eq!(out, "x\u{FFFD}y\u{FFFD}");
    }

    #[test]
    fn physical_cores_counts_distinct_cores_not_threads() {
        let smt = "processor\t: 0\nphysical id\t: 0\ncore id\t: 0\n\n\
                   processor\t: 1\nphysical id\t: 0\ncore id\t: 0\n\n\
                   processor\t: 2\nphysical id\t: 0\ncore id\t: 1\n\n\
                   processor\t: 3\nphysical id\t: 1\ncore id\t: 0\n";
        assert_eq!(physical_cores_from_cpuinfo(smt), Some(3));
        assert_eq!(physical_cores_from_cpuinfo("processor\t: 0\n"), None);
        assert!(physical_cores() >= 1);
    }

    #[test]
    fn seeds_fold_to_u32_and_avoid_the_random_marker() {
        assert_eq!(seed_u32(7), 7);
        assert_eq!(seed_u32(1 << 32), 1);
        assert_eq!(seed_u32(u32::MAX as u64), u32::MAX - 1);
    }

    #[test]
    fn sampling_defaults_and_validation() {
        let s = Sampling::from_options(&ModelOptions::default()).unwrap();
        assert_eq!(s.seed, DEFAULT_SEED);
        assert_eq!(s.repeat_penalty, 1.0);
        let bad = ModelOptions {
            temperature: Some(f64::NAN),
            ..Default::default()
        };
        assert_eq!(
            Sampling::from_options(&bad).unwrap_err().kind(),
            "invalid_request"
        );
        let zero_penalty = ModelOptions {
            repeat_penalty: Some(0.0),
            ..Default::default()
        };
        assert!(Sampling::from_options(&zero_penalty).is_err());
    }

    /// The label the reports print for an agent that sends no options says what the engine
    /// really uses.
    #[test]
    fn defaults_label_names_the_engine_defaults() {
        assert_eq!(
            crate::spec::BackendKind::Embedded.defaults_label(),
            format!("engine defaults (num_ctx {DEFAULT_NUM_CTX}, {DEFAULT_NUM_PREDICT} tokens)")
        );
    }

    #[test]
    fn missing_model_error_names_the_fetch_command() {
        let err = check_model_file(Path::new("/nonexistent/model.gguf")).unwrap_err();
        assert_eq!(err.kind(), "model_not_found");
        assert!(err.to_string().contains("scripts/fetch-model.sh"), "{err}");
    }
}
