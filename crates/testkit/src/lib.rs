//! A protocol peer for tests and benchmarks: a local server on 127.0.0.1 (random port) that
//! speaks the exact wire format of Ollama and of OpenAI-compatible servers (llama.cpp's
//! `llama-server`, llama-cpp-python's server), written on plain tokio TCP with hand-made
//! HTTP/1.1 and chunked encoding so that every byte and every delay is under the test's
//! control. It records what it received, and injects faults on a per-request schedule
//! (fixed, sequenced, seeded or computed).
//!
//! By default it behaves like the real servers with their real numbers, not like what the
//! client under test expects:
//! - Ollama keeps per-server scheduler state ([`sched`]): the first request, and the first
//!   after a change of the options that force a reload (model, `num_ctx`, `num_gpu`, … as
//!   ollama/ollama `server/sched.go` `needsReload` compares them) or after an unload
//!   (`keep_alive` ran out, `keep_alive: 0`, [`MockConfig::evict_after`],
//!   [`MockServer::evict`]), is cold: 0.5–3 s of `load_duration`, spent before the first
//!   token. A warm request reports a few ms, different on every request (ollama/ollama
//!   `docs/api.md` examples: 1.0–6.7 ms; ollama/ollama issue #12443: it varies per prompt
//!   even with `keep_alive: -1`). `GET /api/ps` answers from the same state.
//! - llama-server sends `usage` only when asked (`stream_options.include_usage`), `timings`
//!   on its last chunk with per-request figures, and serves `POST /tokenize`, `GET /props`,
//!   `GET /slots`; the llama-cpp-python flavour sends neither usage nor timings and serves
//!   `POST /extras/tokenize` instead ([`OpenAiServer`]).
//! - Every count comes from one tokenizer and chat template ([`tokens`]), so a count from a
//!   tokenize endpoint differs from the streamed chunks and from the server's prompt count
//!   the way it does on the real servers.
//!
//! The server runs on its own thread with its own runtime, so its timing does not depend on
//! the runtime of the client under test.

pub mod sched;
pub mod tokens;
mod wire;

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Something going wrong on purpose, for one generation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Behave.
    None,
    /// Close the connection at once (with a TCP reset), sending nothing.
    Refuse,
    /// Send this many tokens, then reset the connection.
    ResetAfter(usize),
    /// Send this many tokens, then a line that is not JSON.
    MalformedAfter(usize),
    /// Send this many tokens, then end the body cleanly without the final object / `[DONE]`.
    TruncateAfter(usize),
    /// Read the request and never answer.
    Stall,
    /// Send this many tokens, then go silent with the connection open.
    StallAfter(usize),
    /// Answer with this HTTP status and an error body in the server family's format.
    Status(u16),
    /// Answer 404 with the server's own "model not found" message.
    ModelNotFound,
    /// Answer 401 with a body that quotes the request's `Authorization` header back, as some
    /// proxies do: a client must not let that text reach its logs or records.
    UnauthorizedEcho,
}

/// Which fault each generation request gets (requests are numbered from 0 in arrival order;
/// metadata endpoints are never faulted).
#[derive(Clone, Default)]
pub enum FaultPlan {
    #[default]
    None,
    Always(Fault),
    /// Request `i` gets `faults[i]`; requests past the end behave.
    Sequence(Vec<Fault>),
    /// Request `i` is faulted with probability `rate`, the fault drawn from `faults`, from
    /// an RNG seeded by `(seed, i)`: the same schedule on every run regardless of timing.
    Seeded {
        seed: u64,
        rate: f64,
        faults: Vec<Fault>,
    },
    Custom(Arc<dyn Fn(u64) -> Fault + Send + Sync>),
}

impl std::fmt::Debug for FaultPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FaultPlan::None => f.write_str("None"),
            FaultPlan::Always(x) => write!(f, "Always({x:?})"),
            FaultPlan::Sequence(v) => write!(f, "Sequence({v:?})"),
            FaultPlan::Seeded { seed, rate, faults } => {
                write!(
                    f,
                    "Seeded {{ seed: {seed}, rate: {rate}, faults: {faults:?} }}"
                )
            }
            FaultPlan::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl FaultPlan {
    /// The fault for generation request number `i`.
    pub fn fault_for(&self, i: u64) -> Fault {
        match self {
            FaultPlan::None => Fault::None,
            FaultPlan::Always(f) => f.clone(),
            FaultPlan::Sequence(v) => v.get(i as usize).cloned().unwrap_or(Fault::None),
            FaultPlan::Seeded { seed, rate, faults } => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(*seed);
                rng.set_stream(i);
                if faults.is_empty() || !rng.gen_bool(rate.clamp(0.0, 1.0)) {
                    Fault::None
                } else {
                    faults[rng.gen_range(0..faults.len())].clone()
                }
            }
            FaultPlan::Custom(f) => f(i),
        }
    }
}

/// Durations and counts reported verbatim in every final object (Ollama, in ns) or llama.cpp
/// `timings` object (converted to ms), instead of the per-request figures: for tests that
/// check exact numbers. The load time really spent still follows [`MockConfig::load`].
#[derive(Debug, Clone, PartialEq)]
pub struct ServerDurations {
    pub total_ns: u64,
    pub load_ns: u64,
    pub prompt_eval_count: u64,
    pub prompt_eval_ns: u64,
    /// `None`: the number of tokens sent.
    pub eval_count: Option<u64>,
    pub eval_ns: u64,
}

impl Default for ServerDurations {
    /// The numbers of ollama/ollama `docs/api.md`'s streaming `/api/generate` example with a
    /// warm load (its `load_duration` example of a loaded model, 5025959 ns, in place of the
    /// cold 6338219291 ns, and `total_duration` reduced by the difference).
    fn default() -> Self {
        Self {
            total_ns: 4_373_624_751,
            load_ns: 5_025_959,
            prompt_eval_count: 26,
            prompt_eval_ns: 130_079_000,
            eval_count: None,
            eval_ns: 4_232_710_000,
        }
    }
}

/// How long the Ollama peer takes to have the model ready for a request.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadTimes {
    /// `load_duration` of a request on a model already loaded with the same runner options:
    /// drawn per request (seeded) from this range and really spent before the first token.
    /// Default 1–30 ms: ollama/ollama `docs/api.md` shows 1.0–6.7 ms on a loaded model, and
    /// issue #12443 shows it varying per prompt with `keep_alive: -1`; the range is wider to
    /// cover slower hosts.
    pub warm: Range<Duration>,
    /// `load_duration` of a request that loads the model (first request, changed runner
    /// options, after an unload). Default 0.5–3 s: the docs' cold examples are 0.53–2.97 s
    /// (`load_duration` 534986708 … 2969184542 ns; one 6.3 s outlier for a bigger model), and
    /// design.md measured 0.4–0.6 s for Gemma 3 270M on these machines.
    pub cold: Range<Duration>,
    /// Share of a cold load the peer really sleeps before the first token; the reported
    /// `load_duration` (and `total_duration`) stay unscaled, in the real range. Default 0.1
    /// (50–300 ms slept) keeps tests fast while a cold request's TTFT stays visibly above a
    /// warm one's; 1.0 spends the whole reported time, as a real server does.
    pub cold_sleep_scale: f64,
}

impl Default for LoadTimes {
    fn default() -> Self {
        Self {
            warm: Duration::from_millis(1)..Duration::from_millis(30),
            cold: Duration::from_millis(500)..Duration::from_millis(3000),
            cold_sleep_scale: 0.1,
        }
    }
}

impl LoadTimes {
    /// No load time at all, reported or spent: for tests that measure something else.
    pub fn none() -> Self {
        Self {
            warm: Duration::ZERO..Duration::ZERO,
            cold: Duration::ZERO..Duration::ZERO,
            cold_sleep_scale: 0.0,
        }
    }

    /// The default ranges with the whole cold load really spent.
    pub fn real() -> Self {
        Self {
            cold_sleep_scale: 1.0,
            ..Self::default()
        }
    }
}

/// A model the server says it has, with what `/api/tags`, `/api/show` and `/api/ps` report
/// about it.
#[derive(Debug, Clone, PartialEq)]
pub struct MockModel {
    pub name: String,
    pub digest: String,
    /// Bytes of the weights file (`/api/tags` `size`).
    pub file_size: u64,
    /// Transformer blocks (`<arch>.block_count`). Ollama offloads `block_count + 1` layers
    /// (the output layer too): ollama/ollama `llm/llama_server.go` (`modelLayers:
    /// f.KV().BlockCount() + 1`).
    pub block_count: u32,
    /// KV-cache bytes per token of context (f16 K and V over every layer).
    pub kv_bytes_per_token: u64,
    /// Training context (`<arch>.context_length`, `/api/show` `model_info`); `num_ctx` is
    /// capped there (`effectiveContext` in ollama/ollama `server/sched.go`).
    pub context_length: u64,
    /// Multimodal: Ollama raises its `num_ctx` to at least 2048 (`getRunner`).
    pub vision: bool,
    pub family: String,
    pub parameter_size: String,
    pub quantization_level: String,
}

impl Default for MockModel {
    /// `gemma3:latest` = Gemma 3 4B Q4_K_M as the Ollama library ships it: 3338801804 bytes,
    /// 34 blocks (ggml-org/llama.cpp `src/llama-model.cpp`: gemma3 `n_layer` 34 is the 4B),
    /// 4 KV heads × head_dim 256 (google/gemma-3-4b config) → 2 × 34 × 4 × 256 × 2 bytes of
    /// f16 K+V per token, 131072 training context, vision capable.
    fn default() -> Self {
        Self {
            name: "gemma3:latest".into(),
            digest: "a2af6cc3eb7fa8be8504abaf9b04e88f17a119ec3f04a3addf55f92841195f5a".into(),
            file_size: 3_338_801_804,
            block_count: 34,
            kv_bytes_per_token: 2 * 34 * 4 * 256 * 2,
            context_length: 131_072,
            vision: true,
            family: "gemma3".into(),
            parameter_size: "4.3B".into(),
            quantization_level: "Q4_K_M".into(),
        }
    }
}

impl MockModel {
    /// A model with the default's figures under another name.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Layers Ollama can offload: `block_count + 1`.
    pub fn layers(&self) -> u32 {
        self.block_count + 1
    }

    /// (`size`, `size_vram`) as `/api/ps` reports them for a runner with `opts`: weights +
    /// KV cache for `num_ctx` + a compute graph, of which the offloaded layers' share is in
    /// VRAM (`num_gpu` below [`MockModel::layers`]: a partial offload; unset or -1: all).
    /// A simplification of ollama/ollama's memory estimate, enough to give the offload
    /// fraction `size_vram / size` its real meaning.
    pub fn memory(&self, opts: &sched::RunnerOpts) -> (u64, u64) {
        const GRAPH: u64 = 256 * 1024 * 1024;
        let size = self.file_size + self.kv_bytes_per_token * opts.num_ctx + GRAPH;
        let layers = u64::from(self.layers());
        let on_gpu = if opts.num_gpu < 0 {
            layers
        } else {
            (opts.num_gpu as u64).min(layers)
        };
        (
            size,
            size / layers * on_gpu + if on_gpu == layers { size % layers } else { 0 },
        )
    }

    /// The `details` object of `/api/tags`, `/api/show` and `/api/ps`.
    pub fn details(&self) -> Value {
        json!({"parent_model": "", "format": "gguf", "family": self.family,
               "families": [self.family], "parameter_size": self.parameter_size,
               "quantization_level": self.quantization_level})
    }
}

/// Which OpenAI-compatible server `/v1/chat/completions` and its neighbours imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpenAiServer {
    /// llama.cpp's `llama-server` (ggml-org/llama.cpp `tools/server`): `usage` when
    /// `stream_options.include_usage` is set, `timings` on the last chunk, `POST /tokenize`,
    /// `GET /props`, `GET /slots`, `GET /health`, the prompt cache (`cache_prompt`, default
    /// true) reported as `cache_n`.
    #[default]
    LlamaServer,
    /// llama-cpp-python's server (abetlen/llama-cpp-python `llama_cpp/server/app.py`, as
    /// 0.3.36 answers: recorded in tests/fixtures/wire/llama_cpp_python_chat.sse): no
    /// `usage` (it ignores `stream_options`) and no `timings` when streaming, chunks written
    /// by Python's `json.dumps` (`", "`/`": "` separators, `\uXXXX` escapes), the role chunk
    /// sent with the first token, `POST /extras/tokenize` (`{"input": ...}`, BOS included)
    /// instead of `/tokenize`.
    LlamaCppPython,
}

/// How a [`MockServer`] behaves. The default is the realistic behaviour described in the
/// crate docs.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Token chunks per generation.
    pub tokens: usize,
    /// Text of every token chunk.
    pub token_text: String,
    /// From the model ready (after any load) to the first token chunk.
    pub first_token_delay: Duration,
    /// Between successive token chunks (scheduled on absolute deadlines, so no drift).
    pub inter_token_delay: Duration,
    /// `None` (default): per-request figures. With both delays zero the peer answers at once
    /// but reports prompt and decode times at the real servers' rates (seeded ±5%): Ollama
    /// 200 prompt tok/s and 61 decode tok/s (the `docs/api.md` example: 26 tokens in
    /// 130.079 ms, 259 in 4.23271 s); llama-server 410 and 39 tok/s (design.md, Gemma 3 270M
    /// on these machines: 288 prompt tokens in ~0.70 s, 38–40 tok/s). With a delay set it
    /// reports what it really spent, as a real server does. `Some`: fixed figures.
    pub durations: Option<ServerDurations>,
    /// Ollama's model-load times (cold and warm); [`LoadTimes::none`] for none.
    pub load: LoadTimes,
    /// Seed of every per-request draw (load times, rates); request `i` draws from stream `i`.
    pub seed: u64,
    /// Generation requests (numbered from 0, as for faults) after which the Ollama peer
    /// unloads every model, as a keep-alive expiry or another client's model would.
    pub evict_after: Vec<u64>,
    /// Models listed in `/api/tags` and `/v1/models`; generation for any other model is a 404.
    pub models: Vec<MockModel>,
    pub version: String,
    pub faults: FaultPlan,
    /// Serve `/v1/models` (false: 404, like servers without a model list).
    pub openai_models_endpoint: bool,
    pub openai_server: OpenAiServer,
    /// llama-server: put the `timings` object on the last chunk.
    pub openai_timings: bool,
    /// llama-server: honour `stream_options.include_usage` (false: never send `usage`, like
    /// servers that ignore the option).
    pub openai_usage: bool,
    /// Serve the flavour's tokenize endpoint (false: 404, as on servers without one).
    pub tokenize_endpoint: bool,
    /// Replay these body pieces (one per token slot, with the configured delays) instead of
    /// generating a stream; see [`MockConfig::replay_file`]. No load state, no load time.
    pub replay: Option<Vec<Vec<u8>>>,
    /// Keep every request for [`MockServer::requests`] (false for long benchmark runs, whose
    /// request log would otherwise grow without bound).
    pub record_requests: bool,
    /// llama-server's slots (`-np`; 4 when not given, as the llama-server of
    /// scripts/llama-server.sh starts): at most this many generations run at once, and a
    /// request that finds every slot busy waits, first come first served, until one frees
    /// (llama.cpp `tools/server/server.cpp`: no idle slot → `queue_tasks.defer(task)`, and
    /// a freed slot takes the oldest deferred task). The wait is in the client's TTFT, not in
    /// the server's `timings`. The other flavours run every request at once.
    pub slots: usize,
    /// llama-server's `--metrics`: serve `GET /metrics` (Prometheus text with the queue
    /// gauges `llamacpp:requests_processing` and `llamacpp:requests_deferred`, counted
    /// from the slots above). Off by default, as on the real server, which then answers 501
    /// "This server does not support metrics endpoint. Start it with `--metrics`".
    pub metrics_endpoint: bool,
    /// Ollama's `OLLAMA_NUM_PARALLEL`: `Some(n)` runs at most n generations at once and
    /// queues the rest first come first served, as Ollama's runner does (ollama/ollama
    /// `llm/server.go`: every completion acquires `s.sem`, a weighted semaphore of
    /// `numParallel`; 1 by default in current releases). `None` (default): no limit.
    pub ollama_num_parallel: Option<usize>,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            tokens: 8,
            token_text: "tok ".into(),
            first_token_delay: Duration::ZERO,
            inter_token_delay: Duration::ZERO,
            durations: None,
            load: LoadTimes::default(),
            seed: 0x5eed,
            evict_after: Vec::new(),
            models: vec![MockModel::default()],
            version: "0.6.5".into(),
            faults: FaultPlan::None,
            openai_models_endpoint: true,
            openai_server: OpenAiServer::LlamaServer,
            openai_timings: true,
            openai_usage: true,
            tokenize_endpoint: true,
            replay: None,
            record_requests: true,
            slots: 4,
            metrics_endpoint: false,
            ollama_num_parallel: None,
        }
    }
}

impl MockConfig {
    /// Replays a recorded stream: NDJSON files line by line, SSE files (any `data:` line)
    /// event by event (blocks separated by a blank line).
    pub fn replay_file(mut self, path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let pieces: Vec<Vec<u8>> = if text.lines().any(|l| l.starts_with("data:")) {
            text.split("\n\n")
                .filter(|e| !e.trim().is_empty())
                .map(|e| format!("{}\n\n", e.trim_matches('\n')).into_bytes())
                .collect()
        } else {
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| format!("{l}\n").into_bytes())
                .collect()
        };
        self.replay = Some(pieces);
        Ok(self)
    }

    /// A llama-cpp-python server.
    pub fn llama_cpp_python() -> Self {
        Self {
            openai_server: OpenAiServer::LlamaCppPython,
            ..Self::default()
        }
    }
}

/// `gemma3` names the same model as `gemma3:latest`.
pub(crate) fn norm(m: &str) -> String {
    if m.contains(':') {
        m.to_string()
    } else {
        format!("{m}:latest")
    }
}

/// One request as the server received it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON, when it is JSON.
    pub json: Option<Value>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// State shared by the server's connections.
pub(crate) struct Shared {
    pub(crate) cfg: MockConfig,
    pub(crate) requests: Mutex<Vec<RecordedRequest>>,
    pub(crate) generation_index: AtomicU64,
    /// Ollama's loaded models.
    pub(crate) sched: Mutex<sched::Scheduler>,
    /// llama-server's one slot: the last prompt's tokens (its prompt cache) and figures for
    /// `GET /slots`.
    pub(crate) slot: Mutex<wire::Slot>,
    /// llama-server's slots as permits (FIFO: tokio's semaphore is fair).
    pub(crate) slots: tokio::sync::Semaphore,
    /// Requests waiting for a slot now (llama-server's deferred tasks).
    pub(crate) deferred: AtomicU64,
}

/// A running mock server. Dropping it (or [`MockServer::shutdown`]) stops it.
pub struct MockServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for MockServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockServer {
    /// Binds 127.0.0.1 on a random port and serves on a dedicated thread. Works from both
    /// synchronous and asynchronous code.
    pub fn start(cfg: MockConfig) -> std::io::Result<MockServer> {
        MockServer::start_on("127.0.0.1:0", cfg)
    }

    /// [`MockServer::start`] on a given address, e.g. the port of a server that was shut
    /// down: a server restarted where clients already point.
    pub fn start_on(
        addr: impl std::net::ToSocketAddrs,
        cfg: MockConfig,
    ) -> std::io::Result<MockServer> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        // One semaphore serves either flavour's limit: llama-server's slots, or Ollama's
        // OLLAMA_NUM_PARALLEL where it is set.
        let cfg_slots = cfg.ollama_num_parallel.unwrap_or(cfg.slots).max(1);
        let shared = Arc::new(Shared {
            cfg,
            requests: Mutex::new(Vec::new()),
            generation_index: AtomicU64::new(0),
            sched: Mutex::new(sched::Scheduler::default()),
            slot: Mutex::new(wire::Slot::default()),
            slots: tokio::sync::Semaphore::new(cfg_slots),
            deferred: AtomicU64::new(0),
        });
        let (stop, stop_rx) = watch::channel(false);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("mock-server-{}", addr.port()))
            .spawn(move || {
                rt.block_on(async move {
                    if let Ok(l) = tokio::net::TcpListener::from_std(listener) {
                        wire::serve(l, sh, stop_rx).await;
                    }
                });
            })?;
        Ok(MockServer {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// How many generation requests arrived (faulted ones included), recorded or not.
    pub fn generation_requests(&self) -> u64 {
        self.shared
            .generation_index
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Unloads every model now, as a keep-alive expiry, `ollama stop` or another client's
    /// model would: the next Ollama request is cold and `/api/ps` lists nothing.
    pub fn evict(&self) {
        if let Ok(mut s) = self.shared.sched.lock() {
            s.unload_all();
        }
    }

    /// Stops accepting, drops every open connection and joins the server thread.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// A URL on which nothing listens (connection refused): a port bound then released.
pub fn refused_url() -> std::io::Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    drop(l);
    Ok(format!("http://{addr}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_plan_is_deterministic_and_near_rate() {
        let plan = FaultPlan::Seeded {
            seed: 7,
            rate: 0.25,
            faults: vec![Fault::Status(500), Fault::ResetAfter(1)],
        };
        let a: Vec<Fault> = (0..400).map(|i| plan.fault_for(i)).collect();
        let b: Vec<Fault> = (0..400).map(|i| plan.fault_for(i)).collect();
        assert_eq!(a, b);
        let n = a.iter().filter(|f| **f != Fault::None).count();
        assert!((60..140).contains(&n), "{n} faults of 400 at rate 0.25");
        assert!(a.contains(&Fault::Status(500)) && a.contains(&Fault::ResetAfter(1)));
    }

    #[test]
    fn sequence_then_none() {
        let plan = FaultPlan::Sequence(vec![Fault::Stall]);
        assert_eq!(plan.fault_for(0), Fault::Stall);
        assert_eq!(plan.fault_for(1), Fault::None);
    }
}
