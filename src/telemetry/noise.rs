//! Was the machine busy? The host samples of a run, boiled down to the evidence a reader of
//! the results needs (load against the CPUs, other processes' CPU, the frequency governor,
//! hypervisor steal, other processes on the GPU) and the warnings that follow from it.
//!
//! The thresholds are deliberately low: on a shared 2-core machine a compiler using a
//! tenth of the CPU already moves TTFT and pair speedups by more than the effects the gate
//! looks for (the issue behind this module saw a pair speedup of 2.32 on an engine that
//! serves one call at a time).

use super::{GpuProcess, HostSample};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Other processes using this share of the machine's CPU (all cores = 100%) on average
/// make the machine busy.
pub const OTHER_CPU_BUSY_PCT: f64 = 10.0;
/// A share of samples with the load average above the CPU count that makes it busy.
pub const LOAD_BUSY_SHARE: f64 = 0.10;
/// Hypervisor steal above this share of CPU time (on average) makes it busy.
pub const STEAL_BUSY_PCT: f64 = 5.0;

/// The machine's state over one `sweep run` (one session of a run; a resumed run has one
/// per session).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineSummary {
    /// Host samples with CPU shares (the first sample only sets the baseline).
    pub samples: u32,
    pub(crate) cores: Option<u32>,
    /// The first sample with CPU shares: the machine as the run started.
    pub start: Option<HostSample>,
    pub(crate) load1_max: Option<f64>,
    pub(crate) load1_median: Option<f64>,
    /// Share of samples whose 1-minute load average exceeded the CPU count.
    pub load_over_cores_share: Option<f64>,
    /// Mean and maximum share of the machine's CPU used by other processes (neither sweep
    /// nor an LLM server), %.
    pub other_cpu_mean_pct: Option<f64>,
    pub(crate) other_cpu_max_pct: Option<f64>,
    /// The other processes using the most CPU: name → mean share over the samples, %.
    pub top_other: BTreeMap<String, f64>,
    pub(crate) steal_mean_pct: Option<f64>,
    pub(crate) governors: Vec<String>,
    /// Processes on the GPUs other than sweep and an LLM server (largest memory seen).
    pub gpu_other: Vec<GpuProcess>,
    /// What made it busy, in words; empty when nothing did.
    pub busy: Vec<String>,
}

fn median(v: &mut [f64]) -> Option<f64> {
    crate::stats::select_quantiles(v, &[0.5]).map(|q| q[0])
}

/// The summary and its warnings.
pub fn summarize(samples: &[HostSample]) -> MachineSummary {
    let with_cpu: Vec<&HostSample> = samples
        .iter()
        .filter(|s| s.cpu_other_pct.is_some())
        .collect();
    let mut m = MachineSummary {
        samples: with_cpu.len() as u32,
        cores: samples.iter().find_map(|s| s.cores),
        start: with_cpu.first().map(|s| (*s).clone()),
        ..Default::default()
    };
    let mut loads: Vec<f64> = samples.iter().filter_map(|s| s.load1).collect();
    m.load1_max = loads.iter().copied().reduce(f64::max);
    if let Some(c) = m.cores.filter(|_| !loads.is_empty()) {
        let over = loads.iter().filter(|l| **l > f64::from(c)).count();
        m.load_over_cores_share = Some(over as f64 / loads.len() as f64);
    }
    m.load1_median = median(&mut loads);
    let other: Vec<f64> = with_cpu.iter().filter_map(|s| s.cpu_other_pct).collect();
    if !other.is_empty() {
        m.other_cpu_mean_pct = Some(other.iter().sum::<f64>() / other.len() as f64);
        m.other_cpu_max_pct = other.iter().copied().reduce(f64::max);
    }
    let steal: Vec<f64> = with_cpu.iter().filter_map(|s| s.cpu_steal_pct).collect();
    if !steal.is_empty() {
        m.steal_mean_pct = Some(steal.iter().sum::<f64>() / steal.len() as f64);
    }
    let mut by_name: BTreeMap<String, f64> = BTreeMap::new();
    for s in &with_cpu {
        for p in &s.top_other {
            *by_name.entry(p.name.clone()).or_default() += p.cpu_pct;
        }
    }
    let n = with_cpu.len().max(1) as f64;
    let mut top: Vec<(String, f64)> = by_name.into_iter().map(|(k, v)| (k, v / n)).collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    m.top_other = top.into_iter().take(3).collect();
    let mut gov: Vec<String> = samples.iter().flat_map(|s| s.governors.clone()).collect();
    gov.sort();
    gov.dedup();
    m.governors = gov;
    for p in samples.iter().flat_map(|s| &s.gpu_other) {
        match m.gpu_other.iter_mut().find(|o| o.pid == p.pid) {
            Some(o) => {
                o.memory_mib = match (o.memory_mib, p.memory_mib) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                }
            }
            None => m.gpu_other.push(p.clone()),
        }
    }
    m.busy = busy(&m);
    m
}

fn top_names(m: &MachineSummary) -> String {
    let mut v: Vec<(&String, &f64)> = m.top_other.iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(a.1));
    v.iter()
        .map(|(k, x)| format!("{k} {x:.0}%"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What made the machine busy, each a clause ("other processes used 45% of the CPU on
/// average (yes 44%)").
fn busy(m: &MachineSummary) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(share), Some(c), Some(max)) = (m.load_over_cores_share, m.cores, m.load1_max) {
        if share >= LOAD_BUSY_SHARE {
            out.push(format!(
                "load average above the {c} CPUs in {:.0}% of samples (max {max:.2})",
                share * 100.0
            ));
        }
    }
    if let Some(mean) = m.other_cpu_mean_pct.filter(|x| *x >= OTHER_CPU_BUSY_PCT) {
        out.push(format!(
            "other processes used {mean:.0}% of the CPU on average (peak {:.0}%{}){}",
            m.other_cpu_max_pct.unwrap_or(mean),
            m.cores.map(|c| format!(" of {c} CPUs")).unwrap_or_default(),
            if m.top_other.is_empty() {
                String::new()
            } else {
                format!(": {}", top_names(m))
            }
        ));
    }
    if let Some(st) = m.steal_mean_pct.filter(|x| *x >= STEAL_BUSY_PCT) {
        out.push(format!(
            "the hypervisor took {st:.0}% of CPU time (steal: other virtual machines)"
        ));
    }
    if m.governors.iter().any(|g| g == "powersave") {
        out.push(
            "CPU frequency governor `powersave` (clocks drop under light load; use \
             `performance` for benchmarks)"
                .into(),
        );
    }
    if !m.gpu_other.is_empty() {
        let procs: Vec<String> = m
            .gpu_other
            .iter()
            .map(|p| {
                format!(
                    "{} (pid {}{})",
                    p.name,
                    p.pid,
                    p.memory_mib
                        .map(|x| format!(", {x:.0} MiB"))
                        .unwrap_or_default()
                )
            })
            .collect();
        out.push(format!("other processes on the GPU: {}", procs.join(", ")));
    }
    out
}

/// The run-level warning ("the machine was busy during the run: …"), when it was.
pub fn warning(m: &MachineSummary) -> Option<String> {
    (!m.busy.is_empty()).then(|| {
        format!(
            "the machine was busy during the run: {}; timings (and pair speedups) are not \
             those of a quiet machine",
            m.busy.join("; ")
        )
    })
}

/// Notes for the analysis of a run with these sessions: each busy session's warning and,
/// when the analysis flagged physically impossible pair results, the evidence tied to them
/// (or the absence of it).
pub fn analysis_notes(sessions: &[MachineSummary], impossible: usize) -> Vec<String> {
    let busy: Vec<&MachineSummary> = sessions.iter().filter(|m| !m.busy.is_empty()).collect();
    let mut out: Vec<String> = busy.iter().filter_map(|m| warning(m)).collect();
    if impossible > 0 {
        if busy.is_empty() {
            if sessions.iter().any(|m| m.samples > 0) {
                out.push(format!(
                    "{impossible} impossible pair result(s) above, yet the host samples show no \
                     busy machine (load, other processes' CPU, steal, governor): look at what \
                     else ran between the sequential and concurrent phases"
                ));
            }
        } else {
            out.push(format!(
                "the {impossible} impossible pair result(s) above coincide with the busy machine \
                 ({}): rerun on a quiet machine before reading any pair speedup",
                busy.iter()
                    .flat_map(|m| m.busy.iter().cloned())
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::ProcShare;
    use super::*;

    fn s(load: f64, other: f64, top: &[(&str, f64)]) -> HostSample {
        HostSample {
            load1: Some(load),
            cores: Some(2),
            cpu_other_pct: Some(other),
            cpu_steal_pct: Some(0.0),
            governors: vec!["performance".into()],
            top_other: top
                .iter()
                .map(|(n, p)| ProcShare {
                    pid: 9,
                    name: n.to_string(),
                    cpu_pct: *p,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_quiet_machine_gives_no_warning() {
        let m = summarize(&[s(0.5, 1.0, &[]), s(1.2, 3.0, &[("sshd", 1.0)])]);
        assert!(m.busy.is_empty(), "{:?}", m.busy);
        assert_eq!(warning(&m), None);
        assert!(analysis_notes(std::slice::from_ref(&m), 0).is_empty());
        assert!(analysis_notes(&[m], 1)[0].contains("no busy machine"));
    }

    #[test]
    fn load_other_cpu_governor_and_gpu_processes_are_named() {
        let mut a = s(3.5, 48.0, &[("yes", 47.0), ("sshd", 1.0)]);
        a.governors = vec!["powersave".into()];
        a.gpu_other = vec![GpuProcess {
            gpu: 0,
            pid: 77,
            name: "python3".into(),
            memory_mib: Some(2048.0),
        }];
        let m = summarize(&[a, s(2.5, 52.0, &[("yes", 51.0)])]);
        let w = warning(&m).unwrap();
        assert!(
            w.contains("load average above the 2 CPUs in 100% of samples (max 3.50)"),
            "{w}"
        );
        assert!(
            w.contains(
                "other processes used 50% of the CPU on average (peak 52% of 2 CPUs): yes 49%"
            ),
            "{w}"
        );
        assert!(w.contains("powersave"), "{w}");
        assert!(w.contains("python3 (pid 77, 2048 MiB)"), "{w}");
        let notes = analysis_notes(&[m], 2);
        assert_eq!(notes.len(), 2);
        assert!(
            notes[1].contains("2 impossible pair result(s) above coincide with the busy machine")
        );
    }
}
