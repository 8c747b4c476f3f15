//! Where a run ran, as its manifest records it: the one owner of how each fact (host, CPU,
//! GPU and driver, backend, model digest, commit, experiment file) is written and of what
//! makes two runs differ. The gate (comparable nights), the report (its methods and the
//! facts a joined report's runs differ in) and the run summary all read it, so a digest is
//! cut to the same length and a GPU written the same way everywhere.

use super::Manifest;
use std::fmt;

/// Hex characters of a hash or digest shown to people (48 bits: two different ones read
/// apart); comparisons use the whole value.
pub const SHORT_HASH: usize = 12;

/// One fact of an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fact {
    /// `[experiment] name`.
    Experiment,
    /// The experiment file's sha256.
    ExperimentFile,
    /// The host name.
    Host,
    /// The CPU model.
    Cpu,
    /// The GPUs and their driver.
    Gpu,
    /// The backend's kind and version.
    Backend,
    /// The model file's digest.
    ModelDigest,
    /// The git commit sweep ran at.
    Commit,
}

impl Fact {
    /// What two runs must share for their timings to be compared (the gate refuses a
    /// baseline that differs in one unless told `--allow-env-change`).
    pub const TIMING: [Fact; 4] = [
        Fact::ModelDigest,
        Fact::Gpu,
        Fact::Cpu,
        Fact::ExperimentFile,
    ];

    /// Every fact, in the order a joined report lists the ones its runs differ in.
    pub const ALL: [Fact; 8] = [
        Fact::Experiment,
        Fact::ExperimentFile,
        Fact::Host,
        Fact::Cpu,
        Fact::Gpu,
        Fact::Backend,
        Fact::ModelDigest,
        Fact::Commit,
    ];

    /// Its name for people.
    pub fn label(self) -> &'static str {
        match self {
            Fact::Experiment => "experiment",
            Fact::ExperimentFile => "experiment file",
            Fact::Host => "host",
            Fact::Cpu => "CPU",
            Fact::Gpu => "GPU",
            Fact::Backend => "backend",
            Fact::ModelDigest => "model digest",
            Fact::Commit => "commit",
        }
    }
}

/// Two environments that differ in one fact: its value in each, as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Which fact.
    pub fact: Fact,
    /// Its value in the first environment ("unknown" when not recorded).
    pub first: String,
    /// Its value in the second.
    pub second: String,
}

/// A manifest's environment (see [`Manifest::environment`]).
#[derive(Debug, Clone, Copy)]
pub struct Environment<'a> {
    m: &'a Manifest,
}

fn short(s: &str) -> &str {
    s.get(..SHORT_HASH).unwrap_or(s)
}

impl<'a> Environment<'a> {
    pub(crate) fn of(m: &'a Manifest) -> Self {
        Self { m }
    }

    /// The whole value of a fact, as compared (empty when not recorded).
    pub fn value(&self, f: Fact) -> String {
        let m = self.m;
        match f {
            Fact::Experiment => m.experiment.clone(),
            Fact::ExperimentFile => m.spec_hash.clone(),
            Fact::Host => m.host.hostname.clone(),
            Fact::Cpu => m.host.cpu_model.clone(),
            Fact::Gpu => self.gpus(),
            Fact::Backend => format!(
                "{} {}",
                m.backend.kind,
                m.backend.version.clone().unwrap_or_default()
            )
            .trim()
            .to_string(),
            Fact::ModelDigest => m.backend.model_digest.clone().unwrap_or_default(),
            Fact::Commit => m.git_commit.clone().unwrap_or_default(),
        }
    }

    /// A fact as shown: hashes and digests cut to [`SHORT_HASH`] characters, "unknown" when
    /// not recorded.
    pub fn fact(&self, f: Fact) -> String {
        let v = self.value(f);
        let v = match f {
            Fact::ExperimentFile | Fact::ModelDigest | Fact::Commit => short(&v).to_string(),
            _ => v,
        };
        if v.is_empty() {
            "unknown".into()
        } else {
            v
        }
    }

    fn gpus(&self) -> String {
        let g = &self.m.host.gpus;
        if g.is_empty() {
            return "no GPU".into();
        }
        g.iter()
            .map(|g| format!("{} (driver {})", g.name, g.driver))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The facts among `facts` whose whole values differ between `self` and `other`.
    pub fn differences(&self, other: &Environment, facts: &[Fact]) -> Vec<Difference> {
        facts
            .iter()
            .filter(|f| self.value(**f) != other.value(**f))
            .map(|&fact| Difference {
                fact,
                first: self.fact(fact),
                second: other.fact(fact),
            })
            .collect()
    }
}

/// "host h, CPU c (n threads), GPU g (driver d), backend b v, model digest x, commit y,
/// sweep v": what the methods text states once for the run.
impl fmt::Display for Environment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.m;
        let h = &m.host;
        let mut parts = Vec::new();
        if !h.hostname.is_empty() {
            parts.push(format!("host {}", h.hostname));
        }
        if !h.cpu_model.is_empty() {
            parts.push(format!("CPU {} ({} threads)", h.cpu_model, h.cpu_threads));
        }
        if h.gpus.is_empty() {
            parts.push("no GPU".into());
        } else {
            parts.push(format!("GPU {}", self.gpus()));
        }
        if !m.backend.kind.is_empty() {
            parts.push(format!("backend {}", self.value(Fact::Backend)));
        }
        if m.backend.model_digest.is_some() {
            parts.push(format!("model digest {}", self.fact(Fact::ModelDigest)));
        }
        if m.git_commit.is_some() {
            parts.push(format!("commit {}", self.fact(Fact::Commit)));
        }
        if !m.sweep_version.is_empty() {
            parts.push(format!("sweep {}", m.sweep_version));
        }
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(digest: &str, gpu: Option<&str>) -> Manifest {
        let mut m = Manifest {
            experiment: "e".into(),
            spec_hash: "ab".repeat(32),
            sweep_version: "0.1.0".into(),
            git_commit: Some("0123456789abcdef".into()),
            ..Default::default()
        };
        m.host.hostname = "node_1".into();
        m.host.cpu_model = "Xeon".into();
        m.host.cpu_threads = 8;
        m.host.arch = "x86_64".into();
        if let Some(g) = gpu {
            m.host.gpus.push(crate::env::GpuInfo {
                name: g.into(),
                driver: "550.54.15".into(),
                memory_mib: None,
            });
        }
        m.backend.kind = "embedded".into();
        m.backend.version = Some("0.1.160".into());
        m.backend.model_digest = Some(digest.into());
        m
    }

    #[test]
    fn each_fact_is_written_one_way_and_compared_whole() {
        let a = manifest(&format!("{}1", "f".repeat(63)), Some("H100"));
        let b = manifest(&format!("{}2", "f".repeat(63)), None);
        let (ea, eb) = (a.environment(), b.environment());
        assert_eq!(
            ea.to_string(),
            "host node_1, CPU Xeon (8 threads), GPU H100 (driver 550.54.15), backend embedded \
             0.1.160, model digest ffffffffffff, commit 0123456789ab, sweep 0.1.0"
        );
        // Digests equal in their first 12 characters still differ: compared whole.
        let d = ea.differences(&eb, &Fact::TIMING);
        let facts: Vec<Fact> = d.iter().map(|x| x.fact).collect();
        assert_eq!(facts, [Fact::ModelDigest, Fact::Gpu]);
        assert_eq!(d[1].second, "no GPU");
        assert_eq!(d[0].first, "ffffffffffff");
        assert!(ea.differences(&ea, &Fact::ALL).is_empty());
        let empty = Manifest::default();
        assert_eq!(empty.environment().fact(Fact::Commit), "unknown");
    }
}
