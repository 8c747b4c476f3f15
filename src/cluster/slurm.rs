//! `sweep slurm`: a job array that runs one shard per task, the merge job that runs when
//! every task has succeeded (`afterok`), and the submit script that submits both.
//!
//! Why the scripts look the way they do (each point tried on Slurm 22.05, see
//! `tests/it/cluster.rs`):
//! - The task `exec`s sweep, so sweep is the job's process and receives the SIGTERM Slurm
//!   sends on preemption, on `scontrol requeue` and at the time limit; it stops cleanly and
//!   the run stays resumable.
//! - The run id is `slurm-<array job id>-<task id>`: Slurm keeps both when it requeues a task,
//!   so the requeued task continues its own run (`--run-id` continues an unfinished run) and
//!   never another task's.
//! - `--open-mode=append` keeps the log of every attempt of a task in one file.
//! - A task that *failed* (e.g. stopped by `scancel --signal=TERM`, exit 143, or TIMEOUT)
//!   and is then requeued does finish its run, but Slurm has marked the merge job's
//!   `afterok` as never satisfiable and does not look again; nor does setting the same
//!   `afterok:<array>` again help, as the array keeps its worst exit code. A dependency on
//!   each task (`afterok:<array>_0:<array>_1:…`) is judged by the tasks' current states, so
//!   `requeue.sh` requeues and then sets that.

use super::{directive_value, shell_quote, GenerateError};
use std::path::{Path, PathBuf};

/// What the generated scripts run and ask Slurm for.
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    /// The experiment file, as the tasks will open it (relative to `workdir`, or absolute).
    pub spec_file: PathBuf,
    /// Experiment name (names the results folder).
    pub experiment: String,
    /// Array tasks = shards.
    pub shards: u32,
    /// Where the jobs run (`--chdir`); the shared filesystem path every node sees.
    pub workdir: PathBuf,
    /// Results directory (relative to `workdir`, or absolute); the experiment's runs are in
    /// `<results_dir>/<experiment>/`.
    pub results_dir: PathBuf,
    /// Job logs, one file per task (every attempt appended) and one for the merge job.
    pub log_dir: PathBuf,
    /// GPUs per task (`--gres=gpu:N`); `None` or 0 asks for none.
    pub gpus_per_task: Option<u32>,
    /// `--cpus-per-task`; `None` leaves Slurm's default.
    pub cpus_per_task: Option<u32>,
    /// Time limit per task, in Slurm's syntax (`30`, `2:00:00`, `1-12`).
    pub time: Option<String>,
    /// `--partition`; `None` leaves the cluster's default.
    pub partition: Option<String>,
    /// The sweep executable on the compute nodes.
    pub sweep_bin: String,
}

/// The four files `sweep slurm` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmScripts {
    /// `array.sbatch`: one shard per task.
    pub array: String,
    /// `merge.sbatch ARRAY_JOB_ID`: `sweep merge` then `sweep analyze`.
    pub merge: String,
    /// `submit.sh [SBATCH ARGS…]`: submits both, with the dependency.
    pub submit: String,
    /// `requeue.sh ARRAY_JOB_ID MERGE_JOB_ID TASK…`: requeues tasks (running or failed) and
    /// makes the merge job wait for them.
    pub requeue: String,
}

/// File name of [`SlurmScripts::array`].
pub const ARRAY_FILE: &str = "array.sbatch";
/// File name of [`SlurmScripts::merge`].
pub const MERGE_FILE: &str = "merge.sbatch";
/// File name of [`SlurmScripts::submit`].
pub const SUBMIT_FILE: &str = "submit.sh";
/// File name of [`SlurmScripts::requeue`].
pub const REQUEUE_FILE: &str = "requeue.sh";

/// The run id of one array task; a requeued task has the same one. Also used with shell
/// variables for arguments (`run_id("${SLURM_ARRAY_JOB_ID}", …)`), so the scripts and
/// `--shard auto` name runs alike.
pub fn run_id(array_job: &str, task: &str) -> String {
    format!("slurm-{array_job}-{task}")
}

/// The merged run of an array.
pub fn merged_run_id(array_job: &str) -> String {
    format!("slurm-{array_job}")
}

/// A path in a `#SBATCH` line: one word, as sbatch splits directives at spaces.
fn directive_path(flag: &str, p: &Path) -> Result<String, GenerateError> {
    directive_value(flag, &p.to_string_lossy())
}

/// Slurm's time syntax: minutes, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`.
fn check_time(t: &str) -> Result<String, GenerateError> {
    let err = || {
        GenerateError::Invalid(format!(
            "--time {t:?}: expected minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"
        ))
    };
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, t),
    };
    let fields: Vec<&str> = rest.split(':').collect();
    let numbers = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if days.is_some_and(|d| !numbers(d)) || fields.len() > 3 || !fields.iter().all(|f| numbers(f)) {
        return Err(err());
    }
    Ok(t.to_string())
}

/// The array, merge and submit scripts for `opts`.
pub fn scripts(opts: &SlurmOptions) -> Result<SlurmScripts, GenerateError> {
    let n = opts.shards;
    if n == 0 {
        return Err(GenerateError::Invalid("--shards must be at least 1".into()));
    }
    let exp = &opts.experiment;
    let workdir = directive_path("the working directory", &opts.workdir)?;
    let logs = directive_path("the log directory", &opts.log_dir)?;
    let sweep = shell_quote(&opts.sweep_bin);
    let spec = shell_quote(&opts.spec_file.to_string_lossy());
    let results = shell_quote(&opts.results_dir.to_string_lossy());
    let runs = shell_quote(&opts.results_dir.join(exp).to_string_lossy());

    let mut resources = String::new();
    if let Some(p) = &opts.partition {
        resources += &format!(
            "#SBATCH --partition={}\n",
            directive_value("--partition", p)?
        );
    }
    let mut task_resources = resources.clone();
    if let Some(c) = opts.cpus_per_task {
        task_resources += &format!("#SBATCH --cpus-per-task={c}\n");
    }
    if let Some(g) = opts.gpus_per_task.filter(|g| *g > 0) {
        task_resources += &format!("#SBATCH --gres=gpu:{g}\n");
    }
    if let Some(t) = &opts.time {
        task_resources += &format!("#SBATCH --time={}\n", check_time(t)?);
    }
    let task_run = run_id("${SLURM_ARRAY_JOB_ID}", "${SLURM_ARRAY_TASK_ID}");

    let array = format!(
        r#"#!/bin/bash
#SBATCH --job-name=sweep-{exp}
#SBATCH --array=0-{last}
#SBATCH --ntasks=1
{task_resources}#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --chdir={workdir}
#SBATCH --output={logs}/%x-%A_%a.out
#
# Written by `sweep slurm` for experiment {exp}: {n} shards, one per array task. Submit
# with {SUBMIT_FILE} (this array, then {MERGE_FILE} once every task has succeeded).
#
# --shard auto takes shard i of {n} from SLURM_ARRAY_TASK_ID (--shard-count checks that
# the array has {n} tasks). The run id, slurm-<array job id>-<task id>, stays the same
# when Slurm requeues the task, so a requeued task resumes its own run: every phase it
# stored is kept and skipped.
# `exec` makes sweep the job's process: the SIGTERM Slurm sends on preemption, on
# `scontrol requeue` and at the time limit stops it cleanly (exit 143, resumable).
#
# Stop a running task and let it continue later, or restart one that ended FAILED (exit
# 143 after scancel --signal=TERM, TIMEOUT):
#   bash {REQUEUE_FILE} <array job id> <merge job id> <task id>…
# (it also renews the merge job's dependency, which Slurm gives up on when a task fails).
exec {sweep} run {spec} --shard auto --shard-count {n} --run-id "{task_run}" \
    --results-dir {results} --progress plain
"#,
        last = n - 1,
    );

    let shard_runs: Vec<String> = (0..n)
        .map(|i| format!("\"$runs/{}\"", run_id("$array", &i.to_string())))
        .collect();
    let merged = merged_run_id("$array");
    let merge = format!(
        r#"#!/bin/bash
#SBATCH --job-name=sweep-{exp}-merge
#SBATCH --ntasks=1
{resources}#SBATCH --chdir={workdir}
#SBATCH --output={logs}/%x-%j.out
#
# Written by `sweep slurm` for experiment {exp}: joins the {n} shard runs of one array into
# one run and analyses it. {SUBMIT_FILE} submits it with --dependency=afterok:<array job
# id>; to run it again by hand:  sbatch {MERGE_FILE} <array job id>
# sweep merge refuses (exit 2) when a planned phase is missing from every shard.
set -euo pipefail
array="${{1:?usage: sbatch {MERGE_FILE} ARRAY_JOB_ID}}"
runs={runs}
out="$runs/{merged}"
# The merge builds under a staging directory and renames it: an existing $out is complete.
if [ ! -e "$out" ]; then
    {sweep} merge \
        {shard_list} \
        --out "$out"
fi
exec {sweep} analyze "$out"
"#,
        shard_list = shard_runs.join(" \\\n        "),
    );

    let submit = format!(
        r#"#!/bin/bash
# Written by `sweep slurm` for experiment {exp}: submits {ARRAY_FILE} ({n} tasks), then
# {MERGE_FILE} with --dependency=afterok on the whole array. Arguments are passed to the
# array's sbatch (e.g. --account=myproject). The last line says the job ids.
set -euo pipefail
here="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
mkdir -p {logs_q}
array="$(sbatch --parsable "$@" "$here/{ARRAY_FILE}")"
array="${{array%%;*}}"
merge="$(sbatch --parsable --dependency="afterok:$array" "$here/{MERGE_FILE}" "$array")"
merge="${{merge%%;*}}"
echo "array job $array: {n} tasks storing {runs_shown}/{task_shown}"
echo "merge job $merge: when every task has succeeded, {runs_shown}/{merged}"
echo "logs: {logs_shown}"
echo "requeue tasks (running or failed) with: bash $here/{REQUEUE_FILE} $array $merge <task>..."
echo "submitted array=$array merge=$merge"
"#,
        logs_q = shell_quote(&logs),
        runs_shown = opts.results_dir.join(exp).display(),
        task_shown = run_id("$array", "<task>"),
        logs_shown = opts.log_dir.display(),
    );
    let requeue = format!(
        r#"#!/bin/bash
# Written by `sweep slurm` for experiment {exp}: requeues array tasks, which then resume
# their runs (same run id), and makes the merge job wait for them.
#   usage: {REQUEUE_FILE} ARRAY_JOB_ID MERGE_JOB_ID TASK_ID...
# A running task gets SIGTERM from Slurm and stops cleanly (exit 143). A task that ended
# FAILED is requeued too; as Slurm gave up on the merge job's afterok when it failed (and
# an afterok on the whole array stays unsatisfiable, the array keeping its worst exit
# code), the merge job's dependency is set again on each of the {n} tasks.
set -euo pipefail
usage="usage: {REQUEUE_FILE} ARRAY_JOB_ID MERGE_JOB_ID TASK_ID..."
array="${{1:?$usage}}"
merge="${{2:?$usage}}"
shift 2
[ "$#" -gt 0 ] || {{ echo "$usage" >&2; exit 2; }}
for task in "$@"; do
    scontrol requeue "${{array}}_$task"
done
deps=""
for ((i = 0; i < {n}; i++)); do
    deps+="${{deps:+:}}${{array}}_$i"
done
scontrol update JobId="$merge" Dependency="afterok:$deps"
echo "requeued task(s) $* of array $array; merge job $merge waits for all {n} tasks"
"#
    );
    Ok(SlurmScripts {
        array,
        merge,
        submit,
        requeue,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> SlurmOptions {
        SlurmOptions {
            spec_file: "experiments/gemma3.toml".into(),
            experiment: "gemma3".into(),
            shards: 3,
            workdir: "/shared/proj".into(),
            results_dir: "results".into(),
            log_dir: "/shared/proj/slurm/gemma3/logs".into(),
            gpus_per_task: Some(1),
            cpus_per_task: Some(4),
            time: Some("2:00:00".into()),
            partition: Some("gpu".into()),
            sweep_bin: "sweep".into(),
        }
    }

    #[test]
    fn array_script_runs_one_shard_per_task_under_the_job_id() {
        let s = scripts(&opts()).unwrap();
        for line in [
            "#SBATCH --array=0-2",
            "#SBATCH --gres=gpu:1",
            "#SBATCH --cpus-per-task=4",
            "#SBATCH --time=2:00:00",
            "#SBATCH --partition=gpu",
            "#SBATCH --requeue",
            "#SBATCH --chdir=/shared/proj",
            "exec sweep run experiments/gemma3.toml --shard auto --shard-count 3 \
             --run-id \"slurm-${SLURM_ARRAY_JOB_ID}-${SLURM_ARRAY_TASK_ID}\"",
        ] {
            assert!(s.array.contains(line), "{line}\n{}", s.array);
        }
        // Every directive comes before the first command (sbatch stops reading there).
        let first_cmd = s.array.find("\nexec ").unwrap();
        assert!(s.array.rfind("#SBATCH").unwrap() < first_cmd);
        assert!(s.merge.contains("\"$runs/slurm-$array-2\""));
        assert!(!s.merge.contains("slurm-$array-3"));
        assert!(s.merge.contains("#SBATCH --partition=gpu"));
        assert!(!s.merge.contains("--gres"));
        assert!(s.submit.contains("--dependency=\"afterok:$array\""));
    }

    #[test]
    fn options_that_would_break_a_directive_are_refused() {
        let mut o = opts();
        o.partition = Some("gpu\n#SBATCH --uid=0".into());
        assert!(scripts(&o).is_err());
        let mut o = opts();
        o.time = Some("2h".into());
        assert!(scripts(&o).is_err());
        let mut o = opts();
        o.workdir = "/my dir".into();
        assert!(scripts(&o).is_err());
        for t in ["30", "5:00", "1:00:00", "1-12", "1-0:30", "2-00:00:00"] {
            assert!(check_time(t).is_ok(), "{t}");
        }
        for t in ["", "1:2:3:4", "a", "1-", "-1", "1--2"] {
            assert!(check_time(t).is_err(), "{t}");
        }
    }

    #[test]
    fn paths_with_quotes_are_quoted() {
        let mut o = opts();
        o.spec_file = "exp's.toml".into();
        let s = scripts(&o).unwrap();
        assert!(s.array.contains(r"'exp'\''s.toml'"), "{}", s.array);
    }

    #[test]
    fn scripts_are_valid_bash() {
        let s = scripts(&opts()).unwrap();
        for text in [&s.array, &s.merge, &s.submit, &s.requeue] {
            let out = std::process::Command::new("bash")
                .arg("-n")
                .arg("-c")
                .arg(text)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}\n{text}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
