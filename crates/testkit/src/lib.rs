//! A protocol peer for tests and benchmarks: a local server on 127.0.0.1 (random port) that
//! speaks the exact wire format of Ollama and of an OpenAI-compatible server, written on
//! plain tokio TCP with hand-made HTTP/1.1 and chunked encoding so that every byte and every
//! delay is under the test's control. It records what it received, and injects faults on a
//! per-request schedule (fixed, sequenced, seeded or computed).
//!
//! The server runs on its own thread with its own runtime, so its timing does not depend on
//! the runtime of the client under test.

mod wire;

use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::net::SocketAddr;
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

/// Durations and counts the server reports in its final object (Ollama, in ns) or in the
/// llama.cpp `timings` object (converted to ms).
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
    fn default() -> Self {
        Self {
            total_ns: 1_234_567_891,
            load_ns: 45_678_912,
            prompt_eval_count: 26,
            prompt_eval_ns: 130_079_000,
            eval_count: None,
            eval_ns: 1_032_710_001,
        }
    }
}

/// A model the server says it has.
#[derive(Debug, Clone, PartialEq)]
pub struct MockModel {
    pub name: String,
    pub digest: String,
}

/// How a [`MockServer`] behaves.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Token chunks per generation.
    pub tokens: usize,
    /// Text of every token chunk.
    pub token_text: String,
    /// From the request fully read to the first token chunk.
    pub first_token_delay: Duration,
    /// Between successive token chunks (scheduled on absolute deadlines, so no drift).
    pub inter_token_delay: Duration,
    pub durations: ServerDurations,
    /// Models listed in `/api/tags` and `/v1/models`; generation for any other model is a 404.
    pub models: Vec<MockModel>,
    pub version: String,
    pub faults: FaultPlan,
    /// Serve `/v1/models` (false: 404, like servers without a model list).
    pub openai_models_endpoint: bool,
    /// Include llama.cpp's `timings` object in the final SSE chunk.
    pub openai_timings: bool,
    /// Send a usage chunk (as when `stream_options.include_usage` is set).
    pub openai_usage: bool,
    /// Replay these body pieces (one per token slot, with the configured delays) instead of
    /// generating a stream; see [`MockConfig::replay_file`].
    pub replay: Option<Vec<Vec<u8>>>,
    /// Keep every request for [`MockServer::requests`] (false for long benchmark runs, whose
    /// request log would otherwise grow without bound).
    pub record_requests: bool,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            tokens: 8,
            token_text: "tok ".into(),
            first_token_delay: Duration::ZERO,
            inter_token_delay: Duration::ZERO,
            durations: ServerDurations::default(),
            models: vec![MockModel {
                name: "gemma3:latest".into(),
                digest: "a2af6cc3eb7fa8be8504abaf9b04e88f17a119ec3f04a3addf55f92841195f5a".into(),
            }],
            version: "0.6.5".into(),
            faults: FaultPlan::None,
            openai_models_endpoint: true,
            openai_timings: true,
            openai_usage: true,
            replay: None,
            record_requests: true,
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
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            cfg,
            requests: Mutex::new(Vec::new()),
            generation_index: AtomicU64::new(0),
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
