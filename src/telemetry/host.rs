//! The machine's state from procfs and sysfs (Linux): load average against the CPUs, the
//! CPU frequency governor, and who used the CPU between two samples: sweep itself, the LLM
//! server when it runs here (processes named like one: `ollama`, `llama-server`, `vllm`),
//! everyone else, and the hypervisor (steal). Elsewhere every figure is `None`.

use super::{HostSample, ProcShare};
use std::collections::HashMap;
use std::path::Path;

/// Process names (`/proc/<pid>/comm`, 15 characters at most) taken for the LLM server being
/// measured, not for competition: their CPU is the workload.
pub const SERVER_NAMES: [&str; 4] = ["ollama", "llama-server", "llama_server", "vllm"];

/// How many of the busiest other processes a sample names.
const TOP: usize = 3;

/// Cumulative CPU times, clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    pub(crate) total: u64,
    pub(crate) idle: u64,
    pub(crate) steal: u64,
}

/// The first (`cpu `) line of `/proc/stat`: user nice system idle iowait irq softirq steal
/// (guest time is already inside user and nice).
pub fn parse_proc_stat(text: &str) -> Option<(CpuTimes, usize)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    if v.len() < 4 {
        return None;
    }
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    let cpus = text
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    Some((
        CpuTimes {
            total: v.iter().sum(),
            idle: get(3) + get(4),
            steal: get(7),
        },
        cpus,
    ))
}

/// (name, utime + stime ticks) from a `/proc/<pid>/stat` line. The name may hold spaces and
/// parentheses: it runs from the first `(` to the last `)`.
pub fn parse_pid_stat(text: &str) -> Option<(String, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    let ut: u64 = rest.get(11)?.parse().ok()?;
    let st: u64 = rest.get(12)?.parse().ok()?;
    Some((name, ut + st))
}

// The load average and the governors are host facts: `env` owns them (below telemetry).
pub use crate::env::{governors, parse_loadavg};

/// `/proc/<pid>/comm`, or `pid <n>` when it cannot be read.
pub fn process_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| format!("pid {pid}"))
}

/// True for a process named like an LLM server ([`SERVER_NAMES`]).
pub fn is_server(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    SERVER_NAMES.iter().any(|s| n.contains(s))
}

/// Samples the host: each call compares with the previous one.
pub struct HostSampler {
    proc_dir: std::path::PathBuf,
    sys_cpu: std::path::PathBuf,
    me: u32,
    prev_cpu: Option<CpuTimes>,
    prev_procs: HashMap<u32, (String, u64)>,
}

impl Default for HostSampler {
    fn default() -> Self {
        Self::new(Path::new("/proc"), Path::new("/sys/devices/system/cpu"))
    }
}

impl HostSampler {
    pub(crate) fn new(proc_dir: &Path, sys_cpu: &Path) -> Self {
        Self {
            proc_dir: proc_dir.to_path_buf(),
            sys_cpu: sys_cpu.to_path_buf(),
            me: std::process::id(),
            prev_cpu: None,
            prev_procs: HashMap::new(),
        }
    }

    fn procs(&self) -> HashMap<u32, (String, u64)> {
        let Ok(rd) = std::fs::read_dir(&self.proc_dir) else {
            return HashMap::new();
        };
        rd.filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| {
                let text =
                    std::fs::read_to_string(self.proc_dir.join(format!("{pid}/stat"))).ok()?;
                parse_pid_stat(&text).map(|x| (pid, x))
            })
            .collect()
    }

    /// One sample at `t_ms`; the CPU shares cover the time since the previous call (`None` on
    /// the first call, which only sets the baseline).
    pub fn sample(&mut self, t_ms: f64) -> HostSample {
        let stat = std::fs::read_to_string(self.proc_dir.join("stat")).ok();
        let parsed = stat.as_deref().and_then(parse_proc_stat);
        let cores = parsed
            .map(|(_, n)| n)
            .filter(|n| *n > 0)
            .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()));
        let procs = self.procs();
        let mut s = HostSample {
            t_ms,
            load1: std::fs::read_to_string(self.proc_dir.join("loadavg"))
                .ok()
                .as_deref()
                .and_then(parse_loadavg),
            cores: cores.map(|n| n as u32),
            governors: governors(&self.sys_cpu),
            ..Default::default()
        };
        if let (Some((now, _)), Some(prev)) = (parsed, self.prev_cpu) {
            let dt = now.total.saturating_sub(prev.total);
            if dt > 0 {
                let pct = |x: u64| 100.0 * x as f64 / dt as f64;
                let idle = now.idle.saturating_sub(prev.idle);
                s.cpu_busy_pct = Some(pct(dt.saturating_sub(idle)));
                s.cpu_steal_pct = Some(pct(now.steal.saturating_sub(prev.steal)));
                let (mut me, mut server, mut other) = (0u64, 0u64, 0u64);
                let mut others: Vec<ProcShare> = Vec::new();
                for (pid, (name, ticks)) in &procs {
                    // A process born since the last sample: all its time is new. (Kernel
                    // workers rename themselves as they work: the pid is the key.)
                    let before = self.prev_procs.get(pid).map_or(0, |(_, t)| *t);
                    let d = ticks.saturating_sub(before);
                    if *pid == self.me {
                        me += d;
                    } else if is_server(name) {
                        server += d;
                    } else {
                        other += d;
                        if d > 0 {
                            others.push(ProcShare {
                                pid: *pid,
                                name: name.clone(),
                                cpu_pct: pct(d),
                            });
                        }
                    }
                }
                others.sort_by(|a, b| b.cpu_pct.total_cmp(&a.cpu_pct));
                others.truncate(TOP);
                s.cpu_self_pct = Some(pct(me));
                s.cpu_server_pct = Some(pct(server));
                s.cpu_other_pct = Some(pct(other).min(100.0));
                s.top_other = others;
            }
        }
        self.prev_cpu = parsed.map(|(c, _)| c);
        self.prev_procs = procs;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_and_pid_stat_parse() {
        let (c, n) = parse_proc_stat(
            "cpu  100 5 50 800 20 1 2 7 0 0\ncpu0 50 2 25 400 10 0 1 3 0 0\ncpu1 50 3 25 400 10 1 1 4 0 0\nintr 1\n",
        )
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(c.total, 985);
        assert_eq!(c.idle, 820);
        assert_eq!(c.steal, 7);
        let (name, t) = parse_pid_stat(
            "4242 (tokio-rt (w) x) R 1 4242 4242 0 -1 4194560 100 0 0 0 37 5 0 0 20 0 9 0 1000 0 0",
        )
        .unwrap();
        assert_eq!(name, "tokio-rt (w) x");
        assert_eq!(t, 42);
        assert_eq!(parse_loadavg("2.50 1.10 0.90 3/400 1234\n"), Some(2.5));
        assert!(is_server("ollama_llama_se") && is_server("llama-server") && !is_server("yes"));
    }

    #[test]
    fn a_fake_proc_tree_gives_the_shares_of_self_server_and_others() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        let me = std::process::id();
        let write = |rel: &str, text: &str| {
            let f = p.join(rel);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, text).unwrap();
        };
        let stat = |pid: u32, name: &str, ticks: u64| {
            format!("{pid} ({name}) S 1 1 1 0 -1 0 0 0 0 0 {ticks} 0 0 0 20 0 1 0 1 0 0")
        };
        write("stat", "cpu  0 0 0 1000 0 0 0 0\ncpu0 0\ncpu1 0\n");
        write("loadavg", "3.20 2.00 1.00 1/1 1\n");
        write(&format!("{me}/stat"), &stat(me, "sweep", 0));
        write("11/stat", &stat(11, "yes", 0));
        write("12/stat", &stat(12, "ollama", 0));
        let sys = p.join("sys");
        write("sys/cpu0/cpufreq/scaling_governor", "powersave\n");
        write("sys/cpu1/cpufreq/scaling_governor", "powersave\n");
        let mut h = HostSampler::new(p, &sys);
        let first = h.sample(0.0);
        assert_eq!(
            first.cpu_other_pct, None,
            "the first sample is the baseline"
        );
        assert_eq!(first.load1, Some(3.2));
        assert_eq!(first.cores, Some(2));
        assert_eq!(first.governors, vec!["powersave".to_string()]);
        // 200 ticks later: 100 busy in `yes`, 40 in sweep, 20 in ollama, 40 idle-free rest.
        write("stat", "cpu  200 0 0 1040 0 0 0 0\ncpu0 0\ncpu1 0\n");
        write(&format!("{me}/stat"), &stat(me, "sweep", 40));
        write("11/stat", &stat(11, "yes", 100));
        write("12/stat", &stat(12, "ollama", 20));
        let s = h.sample(1000.0);
        let close = |x: Option<f64>, ticks: f64| {
            assert!(
                (x.unwrap() - ticks / 240.0 * 100.0).abs() < 1e-9,
                "{x:?} vs {ticks}"
            );
        };
        close(s.cpu_busy_pct, 200.0);
        close(s.cpu_self_pct, 40.0);
        close(s.cpu_server_pct, 20.0);
        close(s.cpu_other_pct, 100.0);
        assert_eq!(s.top_other.len(), 1);
        assert_eq!(s.top_other[0].name, "yes");
        assert_eq!(s.cpu_steal_pct, Some(0.0));
    }

    #[test]
    fn the_real_host_samples_without_failing() {
        let mut h = HostSampler::default();
        let _ = h.sample(0.0);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let s = h.sample(50.0);
        assert!(s.cores.unwrap_or(1) >= 1);
        if let Some(o) = s.cpu_other_pct {
            assert!((0.0..=100.0).contains(&o), "{o}");
        }
    }
}
