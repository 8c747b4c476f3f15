//! Telemetry: what the GPUs and the host did while a run ran, sampled on a thread of its
//! own for the whole run, so that every result can be read against it.
//!
//! - GPUs ([`gpu`]): NVML (loaded at run time; no driver, no GPU telemetry, same binary),
//!   else `nvidia-smi --query-gpu`, every `SWEEP_GPU_INTERVAL_MS` (default 100 ms): per GPU
//!   utilisation, memory used, power, temperature, SM clock, and the driver's cumulative
//!   energy counter where the GPU has one.
//! - The host ([`host`]), every `SWEEP_HOST_INTERVAL_MS` (default 2 s): load average against
//!   the CPUs, the frequency governor, the CPU shares of sweep, of an LLM server running
//!   here, of every other process, and steal; with a GPU sampler, the other processes on
//!   the GPUs.
//!
//! Each call gets the summary of its own time window ([`window::GpuWindow`] on
//! `Record::gpu`: energy in J, mean/max power, peak memory, mean utilisation); the raw
//! samples go to `telemetry.parquet` beside the records and a summary of the session (the
//! machine's state, what made it busy, where the model sat) to `telemetry.json`. A missing
//! GPU, counter or reading is `null`, never 0. The GPUs' energy is the whole board's: idle
//! power is in it, and with `[run] concurrency` above 1 a call's share is split only with
//! the calls of its own phase, not with other phases running at the same time. The raw
//! samples of a session that crashed are lost (its records keep their windows).
//!
//! Settings (environment, read by [`TelemetryConfig::from_env`]): `SWEEP_TELEMETRY=off`
//! switches it all off; `SWEEP_GPU_SAMPLER` = `auto` | `nvml` | `nvidia-smi` | `none`;
//! `SWEEP_NVIDIA_SMI` names the nvidia-smi program (default: `nvidia-smi` on PATH).

pub mod gpu;
pub mod host;
pub mod noise;
pub mod offload;
// Writes telemetry.parquet: not in the fuzz build, which leaves polars out.
#[cfg(not(fuzzing))]
mod sampler;
pub mod window;

pub use gpu::{GpuChoice, GpuSampler};
pub use noise::MachineSummary;
pub use offload::{CellPlacement, Placement};
#[cfg(not(fuzzing))]
pub use sampler::{GpuSource, Telemetry};
pub use window::GpuWindow;

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// The raw samples of a run (GPU and host rows, long format).
pub const TELEMETRY_PARQUET: &str = "telemetry.parquet";
/// The sessions' summaries ([`TelemetryFile`]).
pub const TELEMETRY_JSON: &str = "telemetry.json";

/// What can go wrong with telemetry. Only a bad setting stops a run; a sampler or file error
/// costs the telemetry, never the results.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A GPU could not be read (NVML error, nvidia-smi failed, timed out or answered
    /// nothing usable).
    #[error("GPU sampler: {0}")]
    Gpu(String),
    /// A `SWEEP_*` telemetry variable has a value that is not allowed.
    #[error("telemetry setting {name}={value:?}: {why}")]
    Setting {
        /// The variable, e.g. `SWEEP_GPU_INTERVAL_MS`.
        name: &'static str,
        /// Its value as set.
        value: String,
        /// What is allowed instead.
        why: &'static str,
    },
    /// Writing `telemetry.json` atomically failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// `telemetry.json` could not be serialised (path, error).
    #[error("{0}: {1}")]
    Json(std::path::PathBuf, serde_json::Error),
    /// `telemetry.parquet` could not be built, read or written (path, Polars' message).
    #[error("{0}: {1}")]
    Polars(std::path::PathBuf, String),
}

/// One GPU at one instant. A reading the GPU does not give is `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuReading {
    /// The GPU's index as NVML / nvidia-smi number it.
    pub index: u32,
    /// Utilisation, % (0–100): share of the driver's last sample period in which a kernel
    /// ran (NVML `utilization.gpu`).
    pub util_pct: Option<f64>,
    /// Device memory in use, MiB (all processes, not only the model's).
    pub memory_used_mib: Option<f64>,
    /// Board power draw, W, as the driver reports it at the sampling instant.
    pub power_w: Option<f64>,
    /// The driver's cumulative energy counter (NVML, Volta and newer), J.
    pub energy_j: Option<f64>,
    /// GPU core temperature, °C.
    pub temperature_c: Option<f64>,
    /// Current SM (shader) clock, MHz; a drop under load shows throttling.
    pub sm_clock_mhz: Option<f64>,
}

/// Every GPU read at one instant (Unix epoch ms).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuRound {
    pub(crate) t_ms: f64,
    pub(crate) gpus: Vec<GpuReading>,
}

/// A process on a GPU.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuProcess {
    pub(crate) gpu: u32,
    pub(crate) pid: u32,
    pub(crate) name: String,
    pub(crate) memory_mib: Option<f64>,
}

/// A process's share of the machine's CPU between two host samples (all CPUs = 100%).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcShare {
    pub(crate) pid: u32,
    pub(crate) name: String,
    pub(crate) cpu_pct: f64,
}

/// The host at one instant; the CPU shares cover the time since the previous sample (all
/// CPUs = 100%; `None` on the first sample).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostSample {
    pub(crate) t_ms: f64,
    pub(crate) load1: Option<f64>,
    pub(crate) cores: Option<u32>,
    pub(crate) governors: Vec<String>,
    pub(crate) cpu_busy_pct: Option<f64>,
    /// sweep itself (the embedded engine runs inside it).
    pub cpu_self_pct: Option<f64>,
    /// Processes named like an LLM server ([`host::SERVER_NAMES`]): the workload.
    pub cpu_server_pct: Option<f64>,
    /// Everyone else.
    pub cpu_other_pct: Option<f64>,
    pub(crate) cpu_steal_pct: Option<f64>,
    /// The busiest other processes.
    pub top_other: Vec<ProcShare>,
    /// Processes on the GPUs other than sweep and an LLM server.
    pub gpu_other: Vec<GpuProcess>,
}

/// How telemetry samples.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// Sample at all (`SWEEP_TELEMETRY`; default on).
    pub enabled: bool,
    /// Which GPU sampler (`SWEEP_GPU_SAMPLER`; default `auto`).
    pub gpu: GpuChoice,
    /// The nvidia-smi program to run (`SWEEP_NVIDIA_SMI`; default `nvidia-smi` on PATH).
    pub nvidia_smi: String,
    /// Time between GPU samples (`SWEEP_GPU_INTERVAL_MS`, 10 ms–600 s; default 100 ms).
    pub gpu_interval: Duration,
    /// Time between host samples (`SWEEP_HOST_INTERVAL_MS`, 10 ms–600 s; default 2 s).
    pub host_interval: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            gpu: GpuChoice::Auto,
            nvidia_smi: "nvidia-smi".into(),
            gpu_interval: Duration::from_millis(100),
            host_interval: Duration::from_secs(2),
        }
    }
}

impl TelemetryConfig {
    /// The defaults, overridden by the `SWEEP_*` variables (see the module docs).
    pub fn from_env() -> Result<Self, TelemetryError> {
        let mut c = Self::default();
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        if let Some(v) = var("SWEEP_TELEMETRY") {
            c.enabled = match v.trim().to_ascii_lowercase().as_str() {
                "off" | "0" | "false" | "no" => false,
                "on" | "1" | "true" | "yes" => true,
                _ => {
                    return Err(TelemetryError::Setting {
                        name: "SWEEP_TELEMETRY",
                        value: v,
                        why: "expected on or off",
                    })
                }
            };
        }
        if let Some(v) = var("SWEEP_GPU_SAMPLER") {
            c.gpu = GpuChoice::parse(&v).ok_or(TelemetryError::Setting {
                name: "SWEEP_GPU_SAMPLER",
                value: v,
                why: "expected auto, nvml, nvidia-smi or none",
            })?;
        }
        if let Some(v) = var("SWEEP_NVIDIA_SMI") {
            c.nvidia_smi = v;
        }
        let ms = |name: &'static str, v: String| -> Result<Duration, TelemetryError> {
            match v.trim().parse::<u64>() {
                Ok(n) if (10..=600_000).contains(&n) => Ok(Duration::from_millis(n)),
                _ => Err(TelemetryError::Setting {
                    name,
                    value: v,
                    why: "expected milliseconds between 10 and 600000",
                }),
            }
        };
        if let Some(v) = var("SWEEP_GPU_INTERVAL_MS") {
            c.gpu_interval = ms("SWEEP_GPU_INTERVAL_MS", v)?;
        }
        if let Some(v) = var("SWEEP_HOST_INTERVAL_MS") {
            c.host_interval = ms("SWEEP_HOST_INTERVAL_MS", v)?;
        }
        Ok(c)
    }
}

/// One `sweep run` session's telemetry summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub(crate) started_at: String,
    pub(crate) finished_at: String,
    /// `nvml` or `nvidia-smi`; `None` without GPU telemetry.
    pub gpu_source: Option<String>,
    /// Why there is no GPU telemetry.
    pub gpu_unavailable: Option<String>,
    pub(crate) gpus: u32,
    pub(crate) gpu_samples: u32,
    pub(crate) host_samples: u32,
    pub(crate) gpu_interval_ms: u64,
    pub(crate) host_interval_ms: u64,
    pub(crate) machine: MachineSummary,
    /// What each reload probe found about where the model sat.
    pub placements: Vec<Placement>,
    /// The session's warnings (busy machine, offload), as the run summary showed them.
    pub warnings: Vec<String>,
}

/// `telemetry.json`: one entry per session of the run (a resumed run has several).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TelemetryFile {
    pub(crate) sessions: Vec<Session>,
}

impl TelemetryFile {
    /// The run's file, or an empty one when there is none (or it cannot be read: telemetry
    /// only informs).
    pub fn read(run_dir: &Path) -> TelemetryFile {
        let p = run_dir.join(TELEMETRY_JSON);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!("{}: not readable ({e}); ignored", p.display());
                TelemetryFile::default()
            }),
            Err(_) => TelemetryFile::default(),
        }
    }

    /// Every session's placements.
    pub fn placements(&self) -> Vec<Placement> {
        self.sessions
            .iter()
            .flat_map(|s| s.placements.iter().cloned())
            .collect()
    }
}

/// The notes the analysis of the run in `run_dir` adds for its readers: a busy machine
/// (tied to the `impossible` pair results the analysis flagged, or the absence of any busy
/// evidence for them) and models not where the options asked.
pub fn analysis_notes(run_dir: &Path, impossible: usize) -> Vec<String> {
    let f = TelemetryFile::read(run_dir);
    let machines: Vec<MachineSummary> = f.sessions.iter().map(|s| s.machine.clone()).collect();
    let mut out = noise::analysis_notes(&machines, impossible);
    out.extend(offload::warnings(&offload::by_placements(&f.placements())));
    out
}

/// Per-cell placements of the run in `run_dir` (for the num_gpu table).
pub fn cell_placements(run_dir: &Path) -> Vec<CellPlacement> {
    offload::by_placements(&TelemetryFile::read(run_dir).placements())
}

/// Parses a record's RFC 3339 timestamp as Unix epoch ms.
pub fn epoch_ms(rfc3339: &str) -> Option<f64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp_micros() as f64 / 1000.0)
}

/// A record's call window [start, end] in Unix epoch ms.
pub fn record_window(r: &crate::record::Record) -> Option<(f64, f64)> {
    let a = epoch_ms(&r.timestamp)?;
    let d = r.end_offset_ms - r.start_offset_ms;
    (d > 0.0 && d.is_finite()).then_some((a, a + d))
}
