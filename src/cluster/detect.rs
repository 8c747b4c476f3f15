//! `--shard auto`: which shard this process is, from the scheduler's environment.
//!
//! - **Explicit** (a GitHub Actions matrix, any script): `SWEEP_SHARD_INDEX` and
//!   `SWEEP_SHARD_COUNT` (or `--shard-count`). Set on purpose, so it wins over the rest.
//! - **Slurm job array**: `SLURM_ARRAY_TASK_ID`, positioned by `SLURM_ARRAY_TASK_MIN` and
//!   `SLURM_ARRAY_TASK_STEP`, counted by `SLURM_ARRAY_TASK_COUNT` or `SLURM_ARRAY_TASK_MAX`
//!   (they must agree: an array given as a list such as `--array=1,5,9` is not a range and
//!   is refused). The run id defaults to `slurm-<array job id>-<task id>`, which a requeued
//!   task keeps.
//! - **Kubernetes indexed Job**: `JOB_COMPLETION_INDEX`; a pod is not told the Job's
//!   completions, so the count comes from `--shard-count` or `SWEEP_SHARD_COUNT` (the
//!   manifest `sweep k8s` writes sets it).
//!
//! Anything else is refused with what was looked for: a guessed shard would silently run
//! the wrong cells, or all of them in every task.

use crate::plan::Shard;

/// Where the shard came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    /// `SWEEP_SHARD_INDEX` / `SWEEP_SHARD_COUNT`, set on purpose (a CI matrix, a script).
    Explicit,
    /// A Slurm job array task (`SLURM_ARRAY_TASK_ID`).
    Slurm,
    /// A Kubernetes indexed Job pod (`JOB_COMPLETION_INDEX`).
    Kubernetes,
}

/// The shard this process runs, and what it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// Shard index (0-based) and count.
    pub shard: Shard,
    /// Which environment it was read from.
    pub scheduler: Scheduler,
    /// The variables it was read from, for the person reading the log.
    pub source: String,
    /// A run id the scheduler keeps across requeues and restarts of this task, when it
    /// gives one (Slurm: `slurm-<array job id>-<task id>`).
    pub run_id: Option<String>,
}

/// Why `--shard auto` could not tell the shard (the CLI exits 2: a guess would run the
/// wrong cells).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AutoShardError {
    /// None of the shard variables is set.
    #[error(
        "--shard auto: no scheduler tells this process its shard (looked for \
         SWEEP_SHARD_INDEX, SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX){hint}; pass --shard i/N"
    )]
    NoScheduler {
        /// Advice for where it runs (a GitHub Actions matrix), appended as is; may be empty.
        hint: String,
    },
    /// A Slurm job that is not an array task.
    #[error(
        "--shard auto: Slurm job {job} is not a job array (no SLURM_ARRAY_TASK_ID); submit \
         it with --array=0-<N-1> (`sweep slurm` writes such a script) or pass --shard i/N"
    )]
    NotAnArray {
        /// `SLURM_JOB_ID`.
        job: String,
    },
    /// A shard variable does not parse as a whole number.
    #[error("--shard auto: {var}={value:?} is not a whole number")]
    NotANumber {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// The variables contradict each other or `--shard-count` (index out of range, a count
    /// of 0, an array that is not a range).
    #[error("--shard auto: {0}")]
    Inconsistent(String),
    /// A Kubernetes indexed Job without a shard count (`--shard-count`, `SWEEP_SHARD_COUNT`).
    #[error(
        "--shard auto: a Kubernetes indexed Job (JOB_COMPLETION_INDEX={index}) does not tell \
         a pod its completions count; pass --shard-count N or set SWEEP_SHARD_COUNT"
    )]
    NoCount {
        /// `JOB_COMPLETION_INDEX`.
        index: u32,
    },
    /// Both Slurm and Kubernetes variables are set and nothing explicit says which wins.
    #[error(
        "--shard auto: both a Slurm array task (SLURM_ARRAY_TASK_ID) and a Kubernetes \
         indexed Job (JOB_COMPLETION_INDEX) are in the environment; set SWEEP_SHARD_INDEX \
         and SWEEP_SHARD_COUNT, or pass --shard i/N"
    )]
    Ambiguous,
}

/// The shard from `env` (a variable lookup: [`std::env::var`] in the CLI, a table in tests).
/// `count` is `--shard-count`: required for an indexed Job, a cross-check elsewhere.
pub fn detect(
    env: impl Fn(&str) -> Option<String>,
    count: Option<u32>,
) -> Result<Detected, AutoShardError> {
    let num = |var: &'static str| -> Result<Option<u32>, AutoShardError> {
        match env(var) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| AutoShardError::NotANumber { var, value: v }),
        }
    };
    // `--shard-count` and SWEEP_SHARD_COUNT name the same number; two different ones is a
    // mistake, not a choice.
    let given_count = match (count, num("SWEEP_SHARD_COUNT")?) {
        (Some(a), Some(b)) if a != b => {
            return Err(AutoShardError::Inconsistent(format!(
                "--shard-count {a} and SWEEP_SHARD_COUNT={b} differ"
            )))
        }
        (a, b) => a.or(b),
    };
    let shard = |index: u32, count: u32, what: &str| -> Result<Shard, AutoShardError> {
        if count == 0 || index >= count {
            return Err(AutoShardError::Inconsistent(format!(
                "{what}: shard {index} of {count} is out of range (0 ≤ i < N)"
            )));
        }
        Ok(Shard { index, count })
    };

    if let Some(index) = num("SWEEP_SHARD_INDEX")? {
        let Some(n) = given_count else {
            return Err(AutoShardError::Inconsistent(format!(
                "SWEEP_SHARD_INDEX={index} needs SWEEP_SHARD_COUNT or --shard-count"
            )));
        };
        return Ok(Detected {
            shard: shard(index, n, "SWEEP_SHARD_INDEX")?,
            scheduler: Scheduler::Explicit,
            source: format!("SWEEP_SHARD_INDEX={index}, count {n}"),
            run_id: None,
        });
    }

    let slurm_task = num("SLURM_ARRAY_TASK_ID")?;
    let k8s_index = num("JOB_COMPLETION_INDEX")?;
    match (slurm_task, k8s_index) {
        (Some(_), Some(_)) => Err(AutoShardError::Ambiguous),
        (Some(task), None) => slurm(&env, task, given_count, &num, &shard),
        (None, Some(index)) => {
            let n = given_count.ok_or(AutoShardError::NoCount { index })?;
            Ok(Detected {
                shard: shard(index, n, "JOB_COMPLETION_INDEX")?,
                scheduler: Scheduler::Kubernetes,
                source: format!("JOB_COMPLETION_INDEX={index}, count {n}"),
                run_id: None,
            })
        }
        (None, None) => {
            if let Some(job) = env("SLURM_JOB_ID") {
                return Err(AutoShardError::NotAnArray { job });
            }
            let hint = if env("GITHUB_ACTIONS").as_deref() == Some("true") {
                "; in a GitHub Actions matrix set SWEEP_SHARD_INDEX: ${{ strategy.job-index }} \
                 and SWEEP_SHARD_COUNT: ${{ strategy.job-total }}"
                    .to_string()
            } else {
                String::new()
            };
            Err(AutoShardError::NoScheduler { hint })
        }
    }
}

/// A Slurm array task's position in its array.
fn slurm(
    env: &impl Fn(&str) -> Option<String>,
    task: u32,
    given_count: Option<u32>,
    num: &impl Fn(&'static str) -> Result<Option<u32>, AutoShardError>,
    shard: &impl Fn(u32, u32, &str) -> Result<Shard, AutoShardError>,
) -> Result<Detected, AutoShardError> {
    let min = num("SLURM_ARRAY_TASK_MIN")?;
    let max = num("SLURM_ARRAY_TASK_MAX")?;
    let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1);
    let listed = num("SLURM_ARRAY_TASK_COUNT")?;
    if step == 0 {
        return Err(AutoShardError::Inconsistent(
            "SLURM_ARRAY_TASK_STEP=0".into(),
        ));
    }
    // Without MIN, only COUNT can place the task, and then the array must start at 0.
    let first = min.unwrap_or(0);
    let span = match max {
        Some(max) if max < first => {
            return Err(AutoShardError::Inconsistent(format!(
                "SLURM_ARRAY_TASK_MAX={max} is below SLURM_ARRAY_TASK_MIN={first}"
            )))
        }
        Some(max) if !(max - first).is_multiple_of(step) => {
            return Err(AutoShardError::Inconsistent(format!(
                "the array {first}-{max}:{step} is not a range of whole steps"
            )))
        }
        Some(max) => Some((max - first) / step + 1),
        None => None,
    };
    let count = match (listed, span) {
        (Some(c), Some(s)) if c != s => {
            return Err(AutoShardError::Inconsistent(format!(
                "the array has {c} tasks (SLURM_ARRAY_TASK_COUNT) but spans {s} \
                 (SLURM_ARRAY_TASK_MIN..MAX): it was given as a list, not a range; submit \
                 it as --array=0-<N-1>"
            )))
        }
        (Some(c), _) => c,
        (None, Some(s)) if min.is_some() => s,
        _ => {
            return Err(AutoShardError::Inconsistent(format!(
                "SLURM_ARRAY_TASK_ID={task} without SLURM_ARRAY_TASK_MIN/MAX or \
                 SLURM_ARRAY_TASK_COUNT: the array's size is unknown"
            )))
        }
    };
    if task < first || !(task - first).is_multiple_of(step) {
        return Err(AutoShardError::Inconsistent(format!(
            "SLURM_ARRAY_TASK_ID={task} is not in the array {first}-…:{step}"
        )));
    }
    let index = (task - first) / step;
    if let Some(n) = given_count.filter(|n| *n != count) {
        return Err(AutoShardError::Inconsistent(format!(
            "the Slurm array has {count} tasks but the shard count given is {n}"
        )));
    }
    let run_id = env("SLURM_ARRAY_JOB_ID")
        .filter(|j| !j.trim().is_empty())
        .map(|j| super::slurm::run_id(j.trim(), &task.to_string()));
    Ok(Detected {
        shard: shard(index, count, "SLURM_ARRAY_TASK_ID")?,
        scheduler: Scheduler::Slurm,
        source: format!(
            "SLURM_ARRAY_TASK_ID={task} of an array of {count} from {first} step {step}"
        ),
        run_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::ShardArg;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn sh(index: u32, count: u32) -> Shard {
        Shard { index, count }
    }

    /// What `sbatch --array=0-2` sets in task 1, as printed by a real Slurm 22.05 task.
    #[test]
    fn slurm_array_task_from_min_max_count() {
        let vars = [
            ("SLURM_JOB_ID", "12"),
            ("SLURM_ARRAY_JOB_ID", "10"),
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_STEP", "1"),
        ];
        let d = detect(env(&vars), None).unwrap();
        assert_eq!(d.shard, sh(1, 3));
        assert_eq!(d.scheduler, Scheduler::Slurm);
        assert_eq!(d.run_id.as_deref(), Some("slurm-10-1"));
        // The same count given by flag is a cross-check that passes.
        assert_eq!(detect(env(&vars), Some(3)).unwrap().shard, sh(1, 3));
        assert!(matches!(
            detect(env(&vars), Some(4)),
            Err(AutoShardError::Inconsistent(_))
        ));
    }

    #[test]
    fn slurm_array_not_starting_at_zero_or_with_a_step() {
        // --array=5-7
        let vars = [
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_MIN", "5"),
            ("SLURM_ARRAY_TASK_MAX", "7"),
        ];
        assert_eq!(detect(env(&vars), None).unwrap().shard, sh(2, 3));
        // --array=0-8:4 → tasks 0, 4, 8
        let vars = [
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "8"),
            ("SLURM_ARRAY_TASK_STEP", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        assert_eq!(detect(env(&vars), None).unwrap().shard, sh(1, 3));
        // Only ID and COUNT: the array starts at 0.
        let vars = [
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        assert_eq!(detect(env(&vars), None).unwrap().shard, sh(3, 4));
    }

    #[test]
    fn slurm_arrays_that_are_not_ranges_are_refused() {
        // --array=1,5,9: COUNT 3 but MIN..MAX spans 9
        let vars = [
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_MAX", "9"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        let e = detect(env(&vars), None).unwrap_err();
        assert!(e.to_string().contains("list, not a range"), "{e}");
        // no size at all
        let e = detect(env(&[("SLURM_ARRAY_TASK_ID", "0")]), None).unwrap_err();
        assert!(e.to_string().contains("size is unknown"), "{e}");
        // not a number
        let e = detect(env(&[("SLURM_ARRAY_TASK_ID", "x")]), None).unwrap_err();
        assert!(matches!(e, AutoShardError::NotANumber { .. }), "{e}");
        // COUNT without MIN and a task beyond it
        let vars = [
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        assert!(detect(env(&vars), None).is_err());
    }

    #[test]
    fn a_slurm_job_that_is_not_an_array_is_refused() {
        let e = detect(env(&[("SLURM_JOB_ID", "77")]), None).unwrap_err();
        assert_eq!(e, AutoShardError::NotAnArray { job: "77".into() });
        assert!(e.to_string().contains("--array=0-<N-1>"));
    }

    #[test]
    fn kubernetes_indexed_job_needs_its_count() {
        let vars = [("JOB_COMPLETION_INDEX", "2")];
        assert_eq!(
            detect(env(&vars), None).unwrap_err(),
            AutoShardError::NoCount { index: 2 }
        );
        let d = detect(env(&vars), Some(4)).unwrap();
        assert_eq!((d.shard, d.scheduler), (sh(2, 4), Scheduler::Kubernetes));
        let vars = [("JOB_COMPLETION_INDEX", "2"), ("SWEEP_SHARD_COUNT", "3")];
        assert_eq!(detect(env(&vars), None).unwrap().shard, sh(2, 3));
        // index beyond the count
        let vars = [("JOB_COMPLETION_INDEX", "3"), ("SWEEP_SHARD_COUNT", "3")];
        assert!(matches!(
            detect(env(&vars), None),
            Err(AutoShardError::Inconsistent(_))
        ));
        // flag and env disagree
        let vars = [("JOB_COMPLETION_INDEX", "0"), ("SWEEP_SHARD_COUNT", "3")];
        assert!(detect(env(&vars), Some(2)).is_err());
    }

    /// A GitHub Actions matrix says nothing by itself; the workflow sets the explicit pair.
    #[test]
    fn explicit_env_for_a_ci_matrix() {
        let e = detect(env(&[("GITHUB_ACTIONS", "true")]), None).unwrap_err();
        assert!(e.to_string().contains("strategy.job-index"), "{e}");
        let vars = [
            ("GITHUB_ACTIONS", "true"),
            ("SWEEP_SHARD_INDEX", "0"),
            ("SWEEP_SHARD_COUNT", "2"),
        ];
        let d = detect(env(&vars), None).unwrap();
        assert_eq!((d.shard, d.scheduler), (sh(0, 2), Scheduler::Explicit));
        // explicit wins over a scheduler's variables
        let vars = [
            ("SWEEP_SHARD_INDEX", "1"),
            ("SWEEP_SHARD_COUNT", "2"),
            ("JOB_COMPLETION_INDEX", "0"),
        ];
        assert_eq!(detect(env(&vars), None).unwrap().shard, sh(1, 2));
        assert!(detect(env(&[("SWEEP_SHARD_INDEX", "0")]), None).is_err());
    }

    #[test]
    fn nothing_or_both_is_refused() {
        let e = detect(env(&[]), None).unwrap_err();
        assert!(matches!(e, AutoShardError::NoScheduler { .. }));
        assert!(e.to_string().contains("pass --shard i/N"), "{e}");
        let vars = [
            ("SLURM_ARRAY_TASK_ID", "0"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
            ("JOB_COMPLETION_INDEX", "0"),
        ];
        assert_eq!(
            detect(env(&vars), Some(2)).unwrap_err(),
            AutoShardError::Ambiguous
        );
    }

    #[test]
    fn shard_arg_parses_auto_and_fixed() {
        assert_eq!("auto".parse::<ShardArg>(), Ok(ShardArg::Auto));
        assert_eq!("1/3".parse::<ShardArg>(), Ok(ShardArg::Fixed(sh(1, 3))));
        let e = "3/3".parse::<ShardArg>().unwrap_err();
        assert!(e.contains("or `auto`"), "{e}");
    }
}
