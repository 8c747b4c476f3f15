//! Scale-out on cluster schedulers without a coordinator: every task runs one shard of the
//! cells (`sweep run --shard auto`, i/N read from the scheduler's environment by
//! [`detect`]), stores it under a run id derived from the scheduler's job id (so a requeued or
//! restarted task resumes its own run), and `sweep merge` joins the shards.
//!
//! The generators ([`slurm::scripts`], [`k8s::manifest`]) only return text; the CLI writes
//! it. Everything a user can put into a generated file is validated or shell-quoted here,
//! because a scheduler runs these files unattended.

pub mod detect;
pub mod k8s;
pub mod slurm;

pub use detect::detect;

use crate::plan::Plan;
use crate::spec::Spec;

/// Why a generator refused its options.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// An option that cannot go into the generated file (out of range, or text that could
    /// end a directive or inject one); the message names the flag.
    #[error("{0}")]
    Invalid(String),
}

/// Refuses a shard count the experiment cannot fill: a shard without cells would fail its
/// task (`sweep run` refuses an empty plan) and with it the afterok merge. Shard i takes
/// every N-th cell by sorted id ([`Plan::build`]), so every shard has cells exactly when
/// N ≤ cells.
pub fn check_shards(spec: &Spec, shards: u32) -> Result<usize, GenerateError> {
    let cells = Plan::build(spec, None).cells.len();
    if shards == 0 || shards as usize > cells {
        return Err(GenerateError::Invalid(format!(
            "--shards {shards}: the experiment has {cells} cells, so use 1 to {cells} shards \
             (a shard without cells would fail its task)"
        )));
    }
    Ok(cells)
}

/// `s` as one word for a POSIX shell: single-quoted, each `'` written as `'\''`.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A value for a scheduler directive (`#SBATCH --partition=…`, a YAML scalar name): one
/// line of printable characters without spaces, so it cannot end the directive or add one.
pub(crate) fn directive_value(flag: &str, value: &str) -> Result<String, GenerateError> {
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(GenerateError::Invalid(format!(
            "{flag} must be one word without spaces, found {value:?}"
        )));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_survives_the_shell() {
        for s in [
            "plain",
            "a b",
            "it's",
            "$(rm -rf /)",
            "",
            "x\ny",
            "`id`",
            "\\",
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), s, "{s:?}");
        }
    }

    #[test]
    fn directive_values_are_one_word() {
        assert!(directive_value("--partition", "gpu").is_ok());
        assert!(directive_value("--partition", "gpu\n#SBATCH --x").is_err());
        assert!(directive_value("--partition", "a b").is_err());
        assert!(directive_value("--partition", "").is_err());
    }
}
