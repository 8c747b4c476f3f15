//! The sampling thread, the per-record windows, and the files at the end of a session.

use super::gpu::{self, GpuSampler};
use super::host::{self, HostSampler};
use super::window::{self, GpuWindow};
use super::{
    noise, GpuRound, HostSample, Session, TelemetryConfig, TelemetryError, TelemetryFile,
    TELEMETRY_JSON, TELEMETRY_PARQUET,
};
use crate::record::Record;
use polars::prelude::*;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Consecutive failed GPU samples after which the sampler is given up (the driver went
/// away, nvidia-smi hangs): the run goes on without GPU telemetry.
const GPU_FAILURES: u32 = 10;
/// How long starting waits for the GPU sampler to open and read once.
const FIRST_GPU: Duration = Duration::from_secs(5);
/// The first host sample after this (the first one only sets the CPU baseline).
const FIRST_HOST: Duration = Duration::from_millis(500);

/// Wall-clock milliseconds derived from a monotonic clock: samples and records are compared
/// on the wall clock (records carry RFC 3339 times), and the monotonic base keeps the
/// samples' spacing exact.
#[derive(Debug, Clone, Copy)]
struct Clock {
    wall0_ms: f64,
    mono0: Instant,
}

impl Clock {
    fn new() -> Self {
        Self {
            wall0_ms: chrono::Utc::now().timestamp_micros() as f64 / 1000.0,
            mono0: Instant::now(),
        }
    }
    fn now_ms(&self) -> f64 {
        self.wall0_ms + self.mono0.elapsed().as_secs_f64() * 1000.0
    }
}

#[derive(Default)]
struct State {
    rounds: Vec<GpuRound>,
    host: Vec<HostSample>,
    gpu_source: Option<String>,
    gpu_unavailable: Option<String>,
    /// The GPU sampler is open and sampling.
    gpu_live: bool,
    /// The thread has opened (or failed to open) the GPU sampler.
    ready: bool,
    want_sample: bool,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the thread (a sample wanted, or stop).
    wake: Condvar,
    /// A new GPU round arrived (or the sampler was given up).
    fresh: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where the GPU sampler comes from.
pub enum GpuSource {
    /// Opened on the thread, per the configuration.
    Open(gpu::GpuChoice, String),
    /// Given (a test's fake).
    Given(Box<dyn GpuSampler>),
    /// No GPU sampler (telemetry off).
    None,
}

/// The running telemetry of one `sweep run` session.
pub struct Telemetry {
    cfg: TelemetryConfig,
    clock: Clock,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    started_at: String,
}

impl Telemetry {
    /// Starts sampling per `cfg` (nothing at all when it is switched off).
    pub fn start(cfg: TelemetryConfig) -> Telemetry {
        let src = if cfg.enabled {
            GpuSource::Open(cfg.gpu, cfg.nvidia_smi.clone())
        } else {
            GpuSource::None
        };
        let host = cfg.enabled.then(HostSampler::default);
        Self::start_with(cfg, src, host)
    }

    /// Starts sampling with the given GPU source and host sampler (tests pass fakes).
    pub fn start_with(
        cfg: TelemetryConfig,
        gpu: GpuSource,
        host: Option<HostSampler>,
    ) -> Telemetry {
        let clock = Clock::new();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            fresh: Condvar::new(),
        });
        let started_at = chrono::Utc::now().to_rfc3339();
        if matches!(gpu, GpuSource::None) && host.is_none() {
            shared.lock().ready = true;
            return Telemetry {
                cfg,
                clock,
                shared,
                thread: Mutex::new(None),
                started_at,
            };
        }
        let sh = shared.clone();
        let c = cfg.clone();
        let thread = std::thread::Builder::new()
            .name("sweep-telemetry".into())
            .spawn(move || run(&c, clock, &sh, gpu, host));
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!("telemetry thread could not start ({e}); running without it");
                shared.lock().ready = true;
                None
            }
        };
        // The first calls' windows must start after a GPU reading: wait for the sampler to
        // open and read once (NVML fails at once where there is no driver).
        {
            let deadline = Instant::now() + FIRST_GPU;
            let mut st = shared.lock();
            while !(st.ready && (!st.gpu_live || !st.rounds.is_empty())) {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                st = shared
                    .fresh
                    .wait_timeout(st, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
        Telemetry {
            cfg,
            clock,
            shared,
            thread: Mutex::new(thread),
            started_at,
        }
    }

    /// Now, on the samples' clock (Unix epoch ms).
    pub fn now_ms(&self) -> f64 {
        self.clock.now_ms()
    }

    /// Waits until the GPU sampler has a reading at or after `t_ms` (asking for one now),
    /// for at most `timeout`. False without a live GPU sampler, or when none came in time.
    pub fn wait_for_sample(&self, t_ms: f64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        while !st.ready {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .shared
                .fresh
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        loop {
            if !st.gpu_live {
                return false;
            }
            if st.rounds.last().is_some_and(|r| r.t_ms >= t_ms) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st.want_sample = true;
            self.shared.wake.notify_all();
            st = self
                .shared
                .fresh
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The GPUs' summary over [a, b] (epoch ms), without a share (see [`Telemetry::attach`]).
    pub fn window(&self, a: f64, b: f64) -> Option<GpuWindow> {
        let st = self.shared.lock();
        let source = st.gpu_source.clone()?;
        let gpus = st.rounds.last().map_or(0, |r| r.gpus.len() as u32);
        let pts = window::points(rounds_around(&st.rounds, a, b));
        Some(window::summarize(&pts, a, b, gpus, &source))
    }

    /// Gives each record of one phase the GPUs' summary over its call window, with its share
    /// of the energy (calls running at the same time split it). Waits (briefly) for a
    /// reading after the last window's end. Records without a window (a call that never
    /// started) keep `gpu = None`; without GPU telemetry nothing changes.
    pub fn attach(&self, records: &mut [Record]) {
        let windows: Vec<Option<(f64, f64)>> = records.iter().map(super::record_window).collect();
        let Some(end) = windows.iter().flatten().map(|w| w.1).reduce(f64::max) else {
            return;
        };
        let timeout = (self.cfg.gpu_interval * 3).max(Duration::from_secs(3));
        if !self.wait_for_sample(end, timeout) {
            if self.shared.lock().gpu_live {
                tracing::debug!("no GPU sample after a phase's end within {timeout:?}");
            } else {
                return;
            }
        }
        let st = self.shared.lock();
        let Some(source) = st.gpu_source.clone() else {
            return;
        };
        let start = windows
            .iter()
            .flatten()
            .map(|w| w.0)
            .reduce(f64::min)
            .unwrap_or(end);
        let pts = window::points(rounds_around(&st.rounds, start, end));
        let n_gpus = st.rounds.last().map_or(0, |r| r.gpus.len() as u32);
        drop(st);
        let spans: Vec<(f64, f64)> = windows.iter().map(|w| w.unwrap_or((0.0, 0.0))).collect();
        let shares = window::apportion(&pts, &spans);
        for ((r, w), share) in records.iter_mut().zip(&windows).zip(shares) {
            let Some((a, b)) = *w else { continue };
            let mut g = window::summarize(&pts, a, b, n_gpus, &source);
            g.energy_j = share;
            r.gpu = Some(g);
        }
    }

    /// Stops sampling and writes `telemetry.parquet` (appending to a resumed run's) and the
    /// session's entry in `telemetry.json` into `run_dir`. Returns the session (its
    /// warnings: a busy machine, and `offload` ones the caller adds before).
    pub fn finish(
        &self,
        run_dir: &Path,
        placements: Vec<super::Placement>,
    ) -> Result<Session, TelemetryError> {
        self.stop();
        let st = std::mem::take(&mut *self.shared.lock());
        let machine = noise::summarize(&st.host);
        let mut warnings: Vec<String> = noise::warning(&machine).into_iter().collect();
        warnings.extend(super::offload::warnings(&super::offload::by_placements(
            &placements,
        )));
        let session = Session {
            started_at: self.started_at.clone(),
            finished_at: chrono::Utc::now().to_rfc3339(),
            gpu_source: st.gpu_source.clone(),
            gpu_unavailable: st.gpu_unavailable.clone(),
            gpus: st
                .rounds
                .iter()
                .map(|r| r.gpus.len() as u32)
                .max()
                .unwrap_or(0),
            gpu_samples: st.rounds.len() as u32,
            host_samples: st.host.len() as u32,
            gpu_interval_ms: self.cfg.gpu_interval.as_millis() as u64,
            host_interval_ms: self.cfg.host_interval.as_millis() as u64,
            machine,
            placements,
            warnings,
        };
        if !self.cfg.enabled {
            return Ok(session);
        }
        write_parquet(
            &run_dir.join(TELEMETRY_PARQUET),
            &st.rounds,
            &st.host,
            st.gpu_source.as_deref().unwrap_or(""),
        )?;
        let mut file = TelemetryFile::read(run_dir);
        file.sessions.push(session.clone());
        let p = run_dir.join(TELEMETRY_JSON);
        let text =
            serde_json::to_vec_pretty(&file).map_err(|e| TelemetryError::Json(p.clone(), e))?;
        crate::store::atomic::write_atomic(&p, &text)?;
        Ok(session)
    }
}

impl Telemetry {
    /// Stops the thread and waits for it.
    fn stop(&self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        let t = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The rounds from the last one before `a` to the first one after `b`.
fn rounds_around(rounds: &[GpuRound], a: f64, b: f64) -> &[GpuRound] {
    let i = rounds.partition_point(|r| r.t_ms <= a).saturating_sub(1);
    let j = (rounds.partition_point(|r| r.t_ms < b) + 1).min(rounds.len());
    &rounds[i.min(j)..j]
}

/// The thread: opens the GPU sampler, then samples the GPUs every `gpu_interval` (and at
/// once when a window asks) and the host every `host_interval`, until stopped.
fn run(
    cfg: &TelemetryConfig,
    clock: Clock,
    sh: &Shared,
    src: GpuSource,
    mut host: Option<HostSampler>,
) {
    let mut gpu: Option<Box<dyn GpuSampler>> = match src {
        GpuSource::Given(g) => Some(g),
        GpuSource::None => None,
        GpuSource::Open(choice, smi) => match gpu::open(choice, &smi) {
            Ok(g) => Some(g),
            Err(why) => {
                tracing::debug!("no GPU telemetry: {why}");
                sh.lock().gpu_unavailable = Some(why);
                None
            }
        },
    };
    {
        let mut st = sh.lock();
        st.gpu_source = gpu.as_ref().map(|g| g.source().to_string());
        st.gpu_live = gpu.is_some();
        st.ready = true;
        sh.fresh.notify_all();
    }
    if let Some(h) = host.as_mut() {
        let s = h.sample(clock.now_ms());
        sh.lock().host.push(s);
    }
    let me = std::process::id();
    let mut failures = 0u32;
    let mut next_gpu = clock.now_ms();
    let mut next_host = clock.now_ms() + cfg.host_interval.min(FIRST_HOST).as_secs_f64() * 1000.0;
    loop {
        let (due_gpu, due_host) = {
            let mut st = sh.lock();
            loop {
                if st.stop {
                    return;
                }
                let now = clock.now_ms();
                let g = gpu.is_some() && (st.want_sample || now >= next_gpu);
                let h = host.is_some() && now >= next_host;
                if g || h {
                    if g {
                        st.want_sample = false;
                    }
                    break (g, h);
                }
                let mut wait = f64::INFINITY;
                if gpu.is_some() {
                    wait = wait.min(next_gpu - now);
                }
                if host.is_some() {
                    wait = wait.min(next_host - now);
                }
                let wait = Duration::from_secs_f64(wait.clamp(1.0, 60_000.0) / 1000.0);
                st = sh
                    .wake
                    .wait_timeout(st, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        };
        if due_gpu {
            if let Some(g) = gpu.as_mut() {
                let t0 = clock.now_ms();
                let got = g.sample();
                // The reading's time: the middle of the call (nvidia-smi takes tens of ms).
                let t = (t0 + clock.now_ms()) / 2.0;
                let mut st = sh.lock();
                match got {
                    Ok(gpus) if !gpus.is_empty() => {
                        failures = 0;
                        st.rounds.push(GpuRound { t_ms: t, gpus });
                    }
                    Ok(_) | Err(_) => {
                        failures += 1;
                        if failures >= GPU_FAILURES {
                            tracing::warn!(
                                "GPU telemetry stopped after {failures} failed samples in a row{}",
                                match got {
                                    Err(e) => format!(" (last: {e})"),
                                    Ok(_) => " (no GPU listed)".into(),
                                }
                            );
                            st.gpu_live = false;
                            st.gpu_unavailable = Some("the GPU sampler kept failing".into());
                        }
                    }
                }
                sh.fresh.notify_all();
                drop(st);
                if failures >= GPU_FAILURES {
                    gpu = None;
                }
                next_gpu = t0 + cfg.gpu_interval.as_secs_f64() * 1000.0;
            }
        }
        if due_host {
            if let Some(h) = host.as_mut() {
                let mut s = h.sample(clock.now_ms());
                if let Some(g) = gpu.as_mut() {
                    s.gpu_other = g
                        .processes()
                        .into_iter()
                        .filter(|p| p.pid != me && !host::is_server(&p.name))
                        .collect();
                }
                sh.lock().host.push(s);
                next_host = clock.now_ms() + cfg.host_interval.as_secs_f64() * 1000.0;
            }
        }
    }
}

/// Long format: one row per GPU per round (`kind` = `gpu`) and one per host sample (`kind`
/// = `host`); the columns of the other kind are null. Appends to an existing file of the
/// same layout (a resumed run); a file of another layout is kept under another name.
fn write_parquet(
    path: &Path,
    rounds: &[GpuRound],
    host: &[HostSample],
    gpu_source: &str,
) -> Result<(), TelemetryError> {
    let pe = |e: PolarsError| TelemetryError::Polars(path.to_path_buf(), e.to_string());
    let mut df = frame(rounds, host, gpu_source).map_err(pe)?;
    if path.is_file() {
        let old = std::fs::File::open(path)
            .map_err(|e| TelemetryError::Polars(path.to_path_buf(), e.to_string()))
            .and_then(|f| ParquetReader::new(f).finish().map_err(pe));
        match old {
            Ok(old) if old.schema() == df.schema() => {
                let mut all = old;
                all.vstack_mut(&df).map_err(pe)?;
                df = all;
            }
            Ok(_) | Err(_) => {
                let keep = path.with_extension(format!(
                    "{}.parquet",
                    chrono::Utc::now().format("%Y%m%dT%H%M%S")
                ));
                tracing::warn!(
                    "{} has another layout; kept as {}",
                    path.display(),
                    keep.display()
                );
                let _ = std::fs::rename(path, keep);
            }
        }
    }
    crate::store::columnar::write_frame(path, &mut df)?;
    Ok(())
}

fn frame(rounds: &[GpuRound], host: &[HostSample], gpu_source: &str) -> PolarsResult<DataFrame> {
    let n_gpu: usize = rounds.iter().map(|r| r.gpus.len()).sum();
    let n = n_gpu + host.len();
    let mut t_ms = Vec::with_capacity(n);
    let mut kind = Vec::with_capacity(n);
    let mut source = Vec::with_capacity(n);
    let mut gpu: Vec<Option<u32>> = Vec::with_capacity(n);
    let mut cols: [Vec<Option<f64>>; 13] = Default::default();
    let mut governor: Vec<Option<String>> = Vec::with_capacity(n);
    let mut top: Vec<Option<String>> = Vec::with_capacity(n);
    let mut gpu_other: Vec<Option<String>> = Vec::with_capacity(n);
    for r in rounds {
        for g in &r.gpus {
            t_ms.push(r.t_ms);
            kind.push("gpu");
            source.push(gpu_source.to_string());
            gpu.push(Some(g.index));
            let v = [
                g.util_pct,
                g.memory_used_mib,
                g.power_w,
                g.energy_j,
                g.temperature_c,
                g.sm_clock_mhz,
            ];
            for (c, x) in cols.iter_mut().zip(v.into_iter().chain([None; 7])) {
                c.push(x);
            }
            governor.push(None);
            top.push(None);
            gpu_other.push(None);
        }
    }
    for h in host {
        t_ms.push(h.t_ms);
        kind.push("host");
        source.push("procfs".to_string());
        gpu.push(None);
        let v = [
            h.load1,
            h.cores.map(f64::from),
            h.cpu_busy_pct,
            h.cpu_self_pct,
            h.cpu_server_pct,
            h.cpu_other_pct,
            h.cpu_steal_pct,
        ];
        for (c, x) in cols.iter_mut().zip([None; 6].into_iter().chain(v)) {
            c.push(x);
        }
        governor.push((!h.governors.is_empty()).then(|| h.governors.join(",")));
        top.push((!h.top_other.is_empty()).then(|| {
            h.top_other
                .iter()
                .map(|p| format!("{} ({}) {:.1}%", p.name, p.pid, p.cpu_pct))
                .collect::<Vec<_>>()
                .join("; ")
        }));
        gpu_other.push((!h.gpu_other.is_empty()).then(|| {
            h.gpu_other
                .iter()
                .map(|p| format!("{} ({})", p.name, p.pid))
                .collect::<Vec<_>>()
                .join("; ")
        }));
    }
    const NAMES: [&str; 13] = [
        "util_pct",
        "memory_used_mib",
        "power_w",
        "energy_j",
        "temperature_c",
        "sm_clock_mhz",
        "load1",
        "cores",
        "cpu_busy_pct",
        "cpu_self_pct",
        "cpu_server_pct",
        "cpu_other_pct",
        "cpu_steal_pct",
    ];
    let timestamp: Vec<String> = t_ms
        .iter()
        .map(|t| {
            chrono::DateTime::from_timestamp_micros((t * 1000.0) as i64)
                .map(|d| d.to_rfc3339())
                .unwrap_or_default()
        })
        .collect();
    let mut columns: Vec<Column> = vec![
        Series::new("t_ms".into(), t_ms).into(),
        Series::new("timestamp".into(), timestamp).into(),
        Series::new("kind".into(), kind).into(),
        Series::new("source".into(), source).into(),
        Series::new("gpu".into(), gpu).into(),
    ];
    for (name, c) in NAMES.iter().zip(cols) {
        columns.push(Series::new((*name).into(), c).into());
    }
    columns.push(Series::new("governor".into(), governor).into());
    columns.push(Series::new("top_other".into(), top).into());
    columns.push(Series::new("gpu_other".into(), gpu_other).into());
    DataFrame::new(n, columns)
}
