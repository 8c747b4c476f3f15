//! `sweep slurm` and `sweep k8s`: the scripts and manifests that run shards on a cluster.

use super::*;

#[derive(Debug, clap::Args)]
pub(crate) struct SlurmArgs {
    /// The experiment file (TOML).
    pub(crate) file: PathBuf,
    /// Array tasks, one shard each.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100000))]
    pub(crate) shards: u32,
    /// GPUs per task (`#SBATCH --gres=gpu:K`).
    #[arg(long, value_name = "K")]
    pub(crate) gpus_per_task: Option<u32>,
    /// CPUs per task (`#SBATCH --cpus-per-task=C`; default: Slurm's).
    #[arg(long, value_name = "C")]
    pub(crate) cpus_per_task: Option<u32>,
    /// Time limit per task (Slurm syntax: 90, 2:00:00, 1-12).
    #[arg(long, value_name = "TIME")]
    pub(crate) time: Option<String>,
    /// Slurm partition (`#SBATCH --partition`; default: the cluster's default).
    #[arg(long)]
    pub(crate) partition: Option<String>,
    /// Results directory on the shared filesystem (default: [run] results_dir).
    #[arg(long, value_name = "DIR")]
    pub(crate) results_dir: Option<PathBuf>,
    /// Where to write the scripts (default: slurm/<experiment>).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// The sweep executable on the compute nodes.
    #[arg(long, value_name = "PATH", default_value = "sweep")]
    pub(crate) sweep_bin: String,
}

impl SlurmArgs {
    /// Runs `sweep slurm`.
    pub(crate) fn run(self) -> Result<Status, CliError> {
        let Self {
            file,
            shards,
            gpus_per_task,
            cpus_per_task,
            time,
            partition,
            results_dir,
            out,
            sweep_bin,
        } = self;
        let spec = Spec::load(&file)?;
        crate::cluster::check_shards(&spec, shards)?;
        let cwd = std::env::current_dir().map_err(|source| CliError::Io {
            what: "current directory".into(),
            source,
        })?;
        let out = out.unwrap_or_else(|| Path::new("slurm").join(&spec.experiment.name));
        let opts = crate::cluster::slurm::SlurmOptions {
            spec_file: file,
            experiment: spec.experiment.name.clone(),
            shards,
            workdir: cwd.clone(),
            results_dir: results_dir.unwrap_or_else(|| spec.run.results_dir.clone()),
            log_dir: cwd.join(&out).join("logs"),
            gpus_per_task,
            cpus_per_task,
            time,
            partition,
            sweep_bin,
        };
        let s = crate::cluster::slurm::scripts(&opts)?;
        use crate::cluster::slurm::{ARRAY_FILE, MERGE_FILE, REQUEUE_FILE, SUBMIT_FILE};
        for (name, text) in [
            (ARRAY_FILE, &s.array),
            (MERGE_FILE, &s.merge),
            (SUBMIT_FILE, &s.submit),
            (REQUEUE_FILE, &s.requeue),
        ] {
            write_script(&out.join(name), text)?;
        }
        println!(
            "wrote {ARRAY_FILE} ({shards} tasks), {MERGE_FILE}, {SUBMIT_FILE} and \
             {REQUEUE_FILE} in {}; submit with: bash {}",
            out.display(),
            out.join(SUBMIT_FILE).display()
        );
        Ok(Status::Ok)
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct K8sArgs {
    /// The experiment file (TOML).
    pub(crate) file: PathBuf,
    /// Completions, one shard each.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100000))]
    pub(crate) shards: u32,
    /// Container image with sweep and the experiment file.
    #[arg(long, default_value = "sweep:latest")]
    pub(crate) image: String,
    /// Job name (default: sweep-<experiment>).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// The container's working directory, where FILE is relative to.
    #[arg(long, value_name = "DIR")]
    pub(crate) workdir: Option<PathBuf>,
    /// Pods at once (default: all).
    #[arg(long, value_name = "P")]
    pub(crate) parallelism: Option<u32>,
    /// GPUs per pod (`nvidia.com/gpu` limit).
    #[arg(long, value_name = "K")]
    pub(crate) gpus_per_task: Option<u32>,
    /// PersistentVolumeClaim for the results (ReadWriteMany across nodes).
    #[arg(long, default_value = "sweep-results")]
    pub(crate) claim: String,
    /// Where the claim is mounted in the pod.
    #[arg(long, value_name = "DIR", default_value = "/results")]
    pub(crate) results_mount: PathBuf,
    /// Failed pods allowed per index (disruptions do not count).
    #[arg(long, value_name = "K", default_value_t = 3)]
    pub(crate) backoff_per_index: u32,
    /// The sweep executable in the container.
    #[arg(long, value_name = "PATH", default_value = "sweep")]
    pub(crate) sweep_bin: String,
    /// Write the manifest here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
}

impl K8sArgs {
    /// Runs `sweep k8s`.
    pub(crate) fn run(self) -> Result<Status, CliError> {
        let Self {
            file,
            shards,
            image,
            name,
            workdir,
            parallelism,
            gpus_per_task,
            claim,
            results_mount,
            backoff_per_index,
            sweep_bin,
            out,
        } = self;
        let spec = Spec::load(&file)?;
        crate::cluster::check_shards(&spec, shards)?;
        use crate::cluster::k8s;
        let text = k8s::manifest(&k8s::K8sOptions {
            spec_file: file,
            name: name.unwrap_or_else(|| k8s::default_name(&spec.experiment.name)),
            experiment: spec.experiment.name.clone(),
            shards,
            image,
            workdir,
            parallelism,
            gpus_per_task,
            claim,
            results_mount,
            backoff_per_index,
            sweep_bin,
        })?;
        match out {
            Some(p) => {
                crate::store::atomic::write_atomic(&p, text.as_bytes())?;
                println!(
                    "wrote {} ({shards} completions); apply with: kubectl apply -f {}",
                    p.display(),
                    p.display()
                );
            }
            None => print!("{text}"),
        }
        Ok(Status::Ok)
    }
}

/// Writes a generated script, executable.
fn write_script(path: &Path, text: &str) -> Result<(), CliError> {
    crate::store::atomic::write_atomic(path, text.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(
            |source| CliError::Io {
                what: path.display().to_string(),
                source,
            },
        )?;
    }
    Ok(())
}
