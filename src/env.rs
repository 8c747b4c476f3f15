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
                .and_then(parse_loadavg),
            governors: governors(std::path::Path::new("/sys/devices/system/cpu")),
        }
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

/// The 1-minute load average from `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

/// The distinct CPU frequency governors (`powersave`, `performance`, `schedutil`, …); empty
/// where cpufreq is not exposed (most VMs).
pub fn governors(sys_cpu: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(sys_cpu)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.starts_with("cpu")
                        && n[3..].chars().all(|c| c.is_ascii_digit())
                        && n.len() > 3
                })
                .filter_map(|e| {
                    std::fs::read_to_string(e.path().join("cpufreq/scaling_governor")).ok()
                })
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.dedup();
    out
}

fn memory_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// GPUs via `nvidia-smi` (or the program `SWEEP_NVIDIA_SMI` names) when it is installed;
/// empty otherwise (or when it does not answer within [`SMI_TIMEOUT`]).
fn nvidia_gpus() -> Vec<GpuInfo> {
    let smi = std::env::var("SWEEP_NVIDIA_SMI")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "nvidia-smi".into());
    run_nvidia_smi(
        &smi,
        &[
            "--query-gpu=name,driver_version,memory.total",
            "--format=csv,noheader,nounits",
        ],
        SMI_TIMEOUT,
    )
    .map(|text| parse_nvidia_smi(&text))
    .unwrap_or_default()
}

/// How long one `nvidia-smi` call may take before it is killed: a wedged driver can hang
/// it, and neither the manifest nor a stopping sampler may wait on it.
pub const SMI_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The one way sweep runs `nvidia-smi` (the host facts here, the telemetry sampler above):
/// `program args…`, killed after `timeout`; its stdout, or what went wrong. Its output is a
/// few lines, well within a pipe's buffer, so waiting before reading cannot block it.
pub fn run_nvidia_smi(
    program: &str,
    args: &[&str],
    timeout: std::time::Duration,
) -> Result<String, String> {
    let fail = |e: std::io::Error| format!("{program}: {e}");
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(fail)?;
    let started = std::time::Instant::now();
    while child.try_wait().map_err(fail)?.is_none() {
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{program} did not answer within {timeout:?}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let out = child.wait_with_output().map_err(fail)?;
    if !out.status.success() {
        return Err(format!(
            "{program} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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
