//! What the end of a run says: the summary of what was measured and excluded, failures
//! by kind, and the command lines that continue the run.

use super::*;

/// The command line that continues this run (stored in `run_dir`), with `--results-dir`
/// when the run is not under the experiment file's own results directory.
pub(super) fn resume_command(spec: &Spec, plan: &Plan, run_dir: &std::path::Path) -> String {
    continue_command(spec, plan, run_dir, "--resume")
}

/// The command line that runs the failed phases of this run again (and any not yet run).
pub(super) fn retry_command(spec: &Spec, plan: &Plan, run_dir: &std::path::Path) -> String {
    continue_command(spec, plan, run_dir, "--retry-failed")
}

/// `sweep run FILE <flag> <run id>`, with the shard and results directory the run needs.
pub(super) fn continue_command(
    spec: &Spec,
    plan: &Plan,
    run_dir: &std::path::Path,
    flag: &str,
) -> String {
    let run_id = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let results = run_dir.parent().and_then(std::path::Path::parent);
    format!(
        "sweep run {} {flag} {run_id}{}{}",
        spec.file.display(),
        plan.shard
            .map(|s| format!(" --shard {}/{}", s.index, s.count))
            .unwrap_or_default(),
        results
            .filter(|r| *r != spec.run.results_dir)
            .map(|r| format!(" --results-dir {}", r.display()))
            .unwrap_or_default()
    )
}

/// The end-of-run summary: what was measured, what each rule excluded, failures by kind.
/// The end-of-run text (what `sweep run` prints last): the summary below.
impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&failure_summary(self))
    }
}

pub(super) fn failure_summary(s: &RunSummary) -> String {
    let cold: usize = s.cold_by_reason.values().sum();
    let reasons: Vec<String> = s
        .cold_by_reason
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let mut line = format!(
        "{} calls ok, {} measured; excluded: {} warm-up (reload probes included), {} cold{}",
        s.ok_calls,
        s.measured_calls,
        s.warmup_calls,
        cold,
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        }
    );
    if s.failures_by_kind.is_empty() {
        line.push_str(", no failures");
    } else {
        let kinds: Vec<String> = s
            .failures_by_kind
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        line.push_str(&format!(
            ", {} failed ({})",
            s.failed_calls,
            kinds.join(", ")
        ));
    }
    if s.outage_reruns > 0 {
        line.push_str(&format!(
            "; {} phase(s) ran again after the backend came back",
            s.outage_reruns
        ));
    }
    if !s.empty_cells.is_empty() {
        line.push_str(&format!(
            "\nnothing measured in {} cell(s) (every call excluded): {}",
            s.empty_cells.len(),
            s.empty_cells.join(", ")
        ));
    }
    if let Some(o) = &s.outage {
        line.push_str(&format!(
            "\nstopped: {}, and the backend did not answer for {} ({}); {} phase(s) not run",
            o.trigger,
            human_duration(o.waited_s),
            o.error,
            o.not_run
        ));
    }
    if let Some(cmd) = &s.retry_command {
        line.push_str(&format!(
            "\n{}: {} phase(s) have failed calls{}; when the backend is fine, run only those{} \
             again with:\n  {cmd}",
            if s.outage.is_some() {
                "unfinished with failures"
            } else {
                "finished with failures"
            },
            s.remaining_failed_phases,
            if s.retried_phases > 0 {
                format!(" ({} were retried in this run)", s.retried_phases)
            } else {
                String::new()
            },
            if s.outage.is_some() {
                " and the rest"
            } else {
                ""
            }
        ));
    }
    for w in &s.warnings {
        line.push_str(&format!("\nwarning: {w}"));
    }
    line
}
