//! The environment a run happened in: host, CPU, memory, GPU and driver, git commit, and the
//! machine's state as the run started (load, frequency governor). Written into every
//! manifest so that `sweep compare` can refuse apples-to-oranges; the state during the run
//! is telemetry's (`telemetry.json`).

use serde::{Deserialize, Serialize};
use std::process::Command;

/// One GPU as `nvidia-smi` reports it (one line of its `--query-gpu` CSV).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// Product name, e.g. `NVIDIA H100 80GB HBM3` (nvidia-smi `name`).
    pub name: String,
    /// Driver version, e.g. `550.54.15` (nvidia-smi `driver_version`); empty when not given.
    pub driver: String,
    /// Total GPU memory, MiB (nvidia-smi `memory.total`); `None` when it is not a number.
    pub memory_mib: Option<u64>,
}

/// The machine a run happened on, as [`HostInfo::detect`] found it when the run started
/// (the manifest's `host`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Host name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`; empty when neither is there).
    pub hostname: String,
    /// Operating system the binary was built for (`std::env::consts::OS`, e.g. `linux`).
    pub os: String,
    /// CPU architecture the binary was built for (`std::env::consts::ARCH`, e.g. `x86_64`).
    pub arch: String,
    /// The CPU's `model name` from `/proc/cpuinfo` (empty where there is none).
    pub cpu_model: String,
    /// Threads available to this process (`available_parallelism`: honours affinity and
    /// cgroup quotas, so it can be below the machine's count); 1 when unknown.
    pub cpu_threads: usize,
    /// Total memory, bytes (`MemTotal` of `/proc/meminfo`); `None` where it cannot be read.
    pub memory_bytes: Option<u64>,
    /// NVIDIA GPUs found by `nvidia-smi` (or the program `SWEEP_NVIDIA_SMI` names); empty
    /// without one.
    pub gpus: Vec<GpuInfo>,
    /// The 1-minute load average when the run started (`/proc/loadavg`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_at_start: Option<f64>,
    /// The CPU frequency governors when the run started (empty where cpufreq is hidden).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub governors: Vec<String>,
}

impl HostInfo {
    /// Reads what the host says about itself; missing pieces stay empty, never fail.
    pub fn detect() -> HostInfo {
        HostInfo {
            hostname: hostname(),
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
            cpu_model: cpu_model(),
            cpu_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            memory_bytes: memory_bytes(),
            gpus: nvidia_gpus(),
            load_at_start: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .as_deref()
                .and_then(crate::telemetry::host::parse_loadavg),
            governors: crate::telemetry::host::governors(std::path::Path::new(
                "/sys/devices/system/cpu",
            )),
        }
    }

    /// The fields that make two runs' timings comparable.
    pub fn fingerprint(&self) -> String {
        let gpus: Vec<String> = self
            .gpus
            .iter()
            .map(|g| format!("{} ({})", g.name, g.driver))
            .collect();
        format!(
            "{} / {} / {}",
            self.cpu_model,
            if gpus.is_empty() {
                "no GPU".to_string()
            } else {
                gpus.join(", ")
            },
            self.arch
        )
    }
}

/// This machine's host name (empty when it cannot be read).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default()
}

fn memory_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// GPUs via `nvidia-smi` (or the program `SWEEP_NVIDIA_SMI` names) when it is installed;
/// empty otherwise.
fn nvidia_gpus() -> Vec<GpuInfo> {
    let smi = std::env::var("SWEEP_NVIDIA_SMI")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "nvidia-smi".into());
    let out = Command::new(smi)
        .args([
            "--query-gpu=name,driver_version,memory.total",
            "--format=csv,noheader,nounits",
        ])
        .output();
    let Ok(out) = out else { return Vec::new() };
    if !out.status.success() {
        return Vec::new();
    }
    parse_nvidia_smi(&String::from_utf8_lossy(&out.stdout))
}

fn parse_nvidia_smi(text: &str) -> Vec<GpuInfo> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split(',').map(str::trim);
            let name = parts.next()?.to_string();
            if name.is_empty() {
                return None;
            }
            let driver = parts.next().unwrap_or_default().to_string();
            let memory_mib = parts.next().and_then(|m| m.parse().ok());
            Some(GpuInfo {
                name,
                driver,
                memory_mib,
            })
        })
        .collect()
}

/// The current git commit of the working directory, with `-dirty` when there are changes.
pub fn git_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut c = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    if dirty {
        c.push_str("-dirty");
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nvidia_smi_csv() {
        let g = parse_nvidia_smi("NVIDIA H100 80GB HBM3, 550.54.15, 81559\n");
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].name, "NVIDIA H100 80GB HBM3");
        assert_eq!(g[0].driver, "550.54.15");
        assert_eq!(g[0].memory_mib, Some(81559));
        assert!(parse_nvidia_smi("").is_empty());
    }

    #[test]
    fn detect_never_fails() {
        let h = HostInfo::detect();
        assert!(h.cpu_threads >= 1);
        assert!(!h.arch.is_empty());
    }
}
