//! GPU samplers: NVML (through `nvml-wrapper`, which opens `libnvidia-ml.so.1` with
//! `dlopen` when the sampler starts, so a machine without the NVIDIA driver runs the same
//! binary with no GPU telemetry), and `nvidia-smi --query-gpu=… --format=csv` as the
//! fallback where NVML cannot be opened. A reading a GPU does not support is `None`, never 0.

use super::{GpuProcess, GpuReading, TelemetryError};

/// Reads every GPU once. Implemented by [`NvmlSampler`], [`SmiSampler`] and test fakes.
pub trait GpuSampler: Send {
    /// `nvml`, `nvidia-smi`, … (stored with every sample).
    fn source(&self) -> &str;
    /// One reading per GPU, in index order.
    fn sample(&mut self) -> Result<Vec<GpuReading>, TelemetryError>;
    /// Processes using the GPUs (asked at the host interval, not the GPU one).
    fn processes(&mut self) -> Vec<GpuProcess> {
        Vec::new()
    }
}

/// Which GPU sampler to use: `SWEEP_GPU_SAMPLER` = `auto` (NVML, else nvidia-smi, else
/// none), `nvml`, `nvidia-smi` or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuChoice {
    /// NVML, else nvidia-smi, else no GPU telemetry (the default).
    #[default]
    Auto,
    /// NVML only (`nvml`).
    Nvml,
    /// nvidia-smi only (`nvidia-smi` or `smi`).
    NvidiaSmi,
    /// No GPU telemetry (`none` or `off`).
    None,
}

impl GpuChoice {
    pub(crate) fn parse(s: &str) -> Option<GpuChoice> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Some(GpuChoice::Auto),
            "nvml" => Some(GpuChoice::Nvml),
            "nvidia-smi" | "smi" => Some(GpuChoice::NvidiaSmi),
            "none" | "off" => Some(GpuChoice::None),
            _ => None,
        }
    }
}

/// The sampler `choice` asks for, when the machine has it; `Err` says why there is none.
pub fn open(choice: GpuChoice, smi: &str) -> Result<Box<dyn GpuSampler>, String> {
    let nvml = || NvmlSampler::open().map(|s| Box::new(s) as Box<dyn GpuSampler>);
    let smi = || SmiSampler::open(smi).map(|s| Box::new(s) as Box<dyn GpuSampler>);
    match choice {
        GpuChoice::None => Err("GPU telemetry switched off (SWEEP_GPU_SAMPLER=none)".into()),
        GpuChoice::Nvml => nvml(),
        GpuChoice::NvidiaSmi => smi(),
        GpuChoice::Auto => nvml().or_else(|a| smi().map_err(|b| format!("{a}; {b}"))),
    }
}

/// NVML: utilisation, memory, power, temperature, SM clock and the cumulative energy
/// counter (Volta and newer) of every GPU.
pub struct NvmlSampler {
    nvml: nvml_wrapper::Nvml,
    count: u32,
}

impl NvmlSampler {
    pub(crate) fn open() -> Result<Self, String> {
        let nvml = nvml_wrapper::Nvml::init().map_err(|e| format!("NVML not available: {e}"))?;
        let count = nvml
            .device_count()
            .map_err(|e| format!("NVML device count: {e}"))?;
        if count == 0 {
            return Err("NVML sees no GPU".into());
        }
        Ok(Self { nvml, count })
    }
}

impl GpuSampler for NvmlSampler {
    fn source(&self) -> &str {
        "nvml"
    }

    fn sample(&mut self) -> Result<Vec<GpuReading>, TelemetryError> {
        use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
        let mut out = Vec::with_capacity(self.count as usize);
        for index in 0..self.count {
            let d = self
                .nvml
                .device_by_index(index)
                .map_err(|e| TelemetryError::Gpu(format!("NVML GPU {index}: {e}")))?;
            let util = d.utilization_rates().ok();
            out.push(GpuReading {
                index,
                util_pct: util.as_ref().map(|u| f64::from(u.gpu)),
                memory_used_mib: d
                    .memory_info()
                    .ok()
                    .map(|m| m.used as f64 / (1024.0 * 1024.0)),
                power_w: d.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
                energy_j: d
                    .total_energy_consumption()
                    .ok()
                    .map(|mj| mj as f64 / 1000.0),
                temperature_c: d.temperature(TemperatureSensor::Gpu).ok().map(f64::from),
                sm_clock_mhz: d.clock_info(Clock::SM).ok().map(f64::from),
            });
        }
        Ok(out)
    }

    fn processes(&mut self) -> Vec<GpuProcess> {
        use nvml_wrapper::enums::device::UsedGpuMemory;
        let mut out: Vec<GpuProcess> = Vec::new();
        for index in 0..self.count {
            let Ok(d) = self.nvml.device_by_index(index) else {
                continue;
            };
            let procs = d
                .running_compute_processes()
                .unwrap_or_default()
                .into_iter()
                .chain(d.running_graphics_processes().unwrap_or_default());
            for p in procs {
                if out.iter().any(|o| o.pid == p.pid && o.gpu == index) {
                    continue;
                }
                out.push(GpuProcess {
                    gpu: index,
                    pid: p.pid,
                    name: super::host::process_name(p.pid),
                    memory_mib: match p.used_gpu_memory {
                        UsedGpuMemory::Used(b) => Some(b as f64 / (1024.0 * 1024.0)),
                        UsedGpuMemory::Unavailable => None,
                    },
                });
            }
        }
        out
    }
}

/// The fields asked of `nvidia-smi --query-gpu`, in [`parse_smi_gpus`]'s order. (nvidia-smi
/// has no cumulative energy field: energy comes from integrating `power.draw`.)
pub const SMI_QUERY: &str =
    "index,utilization.gpu,memory.used,power.draw,temperature.gpu,clocks.sm";

pub use crate::env::SMI_TIMEOUT;

/// `nvidia-smi` run once per sample (a few tens of ms each on a real driver, which bounds the
/// rate it can sample at).
pub struct SmiSampler {
    program: String,
    timeout: std::time::Duration,
}

impl SmiSampler {
    /// Checks that `program` runs and lists at least one GPU.
    pub fn open(program: &str) -> Result<Self, String> {
        let mut s = Self {
            program: program.to_string(),
            timeout: SMI_TIMEOUT,
        };
        match s.sample() {
            Ok(g) if !g.is_empty() => Ok(s),
            Ok(_) => Err(format!("{program} lists no GPU")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Runs nvidia-smi through [`crate::env::run_nvidia_smi`] (killed after the timeout:
    /// the run must still be able to stop its sampler).
    fn run(&self, args: &[&str]) -> Result<String, TelemetryError> {
        crate::env::run_nvidia_smi(&self.program, args, self.timeout).map_err(TelemetryError::Gpu)
    }
}

impl GpuSampler for SmiSampler {
    fn source(&self) -> &str {
        "nvidia-smi"
    }

    fn sample(&mut self) -> Result<Vec<GpuReading>, TelemetryError> {
        let text = self.run(&[
            &format!("--query-gpu={SMI_QUERY}"),
            "--format=csv,noheader,nounits",
        ])?;
        Ok(parse_smi_gpus(&text))
    }

    fn processes(&mut self) -> Vec<GpuProcess> {
        self.run(&[
            "--query-compute-apps=gpu_bus_id,pid,process_name,used_memory",
            "--format=csv,noheader,nounits",
        ])
        .map(|t| parse_smi_apps(&t))
        .unwrap_or_default()
    }
}

/// A CSV field as a number: `[N/A]`, `[Not Supported]`, `N/A` and empty are `None`.
fn field(s: Option<&str>) -> Option<f64> {
    let s = s?.trim();
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// `nvidia-smi --query-gpu=SMI_QUERY --format=csv,noheader,nounits` output, one GPU a line.
pub fn parse_smi_gpus(text: &str) -> Vec<GpuReading> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let index = f.first()?.trim().parse::<u32>().ok()?;
            Some(GpuReading {
                index,
                util_pct: field(f.get(1).copied()),
                memory_used_mib: field(f.get(2).copied()),
                power_w: field(f.get(3).copied()),
                energy_j: None,
                temperature_c: field(f.get(4).copied()),
                sm_clock_mhz: field(f.get(5).copied()),
            })
        })
        .collect()
}

/// `nvidia-smi --query-compute-apps=gpu_bus_id,pid,process_name,used_memory` output. The
/// GPU is given by bus id, not index: it is reported as 0 here (the process list only says
/// who else is on a GPU).
pub fn parse_smi_apps(text: &str) -> Vec<GpuProcess> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            let pid = f.get(1)?.parse::<u32>().ok()?;
            let name = f.get(2).copied().unwrap_or_default();
            let name = name.rsplit('/').next().unwrap_or(name).to_string();
            Some(GpuProcess {
                gpu: 0,
                pid,
                name,
                memory_mib: field(f.get(3).copied()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smi_csv_with_unsupported_fields_gives_none_not_zero() {
        let g = parse_smi_gpus(
            "0, 87, 40213, 312.45, 61, 1980\n1, [N/A], 1024, [Not Supported], 40, 210\n\n",
        );
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].util_pct, Some(87.0));
        assert_eq!(g[0].memory_used_mib, Some(40213.0));
        assert_eq!(g[0].power_w, Some(312.45));
        assert_eq!(g[0].temperature_c, Some(61.0));
        assert_eq!(g[0].sm_clock_mhz, Some(1980.0));
        assert_eq!(g[0].energy_j, None);
        assert_eq!(g[1].util_pct, None);
        assert_eq!(g[1].power_w, None);
        assert!(parse_smi_gpus("No devices were found\n").is_empty());
    }

    #[test]
    fn a_hanging_nvidia_smi_is_killed_not_waited_for() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("nvidia-smi");
        std::fs::write(&p, "#!/bin/sh\nexec sleep 30\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut s = SmiSampler {
            program: p.display().to_string(),
            timeout: std::time::Duration::from_millis(200),
        };
        let t = std::time::Instant::now();
        let e = s.sample().unwrap_err().to_string();
        assert!(e.contains("did not answer"), "{e}");
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn smi_apps_name_the_process() {
        let p = parse_smi_apps(
            "00000000:3B:00.0, 4242, /usr/local/bin/ollama, 3120\n00000000:3B:00.0, 77, python3, [N/A]\n",
        );
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].pid, p[0].name.as_str()), (4242, "ollama"));
        assert_eq!(p[0].memory_mib, Some(3120.0));
        assert_eq!(p[1].memory_mib, None);
    }

    #[test]
    fn without_a_driver_nvml_says_why_and_auto_falls_back() {
        // On machines with an NVIDIA driver this opens; here (no driver) it must fail
        // cleanly, and `auto` with a missing nvidia-smi must say both reasons.
        if let Err(e) = NvmlSampler::open() {
            assert!(e.contains("NVML"), "{e}");
            let err = open(GpuChoice::Auto, "/nonexistent/nvidia-smi")
                .err()
                .unwrap();
            assert!(err.contains("NVML") && err.contains("nvidia-smi"), "{err}");
        }
        assert!(open(GpuChoice::None, "nvidia-smi").is_err());
        assert_eq!(GpuChoice::parse("nvidia-smi"), Some(GpuChoice::NvidiaSmi));
        assert_eq!(GpuChoice::parse("bogus"), None);
    }
}
