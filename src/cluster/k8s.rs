//! `sweep k8s`: a Kubernetes indexed Job that runs one shard per completion index.
//!
//! - `--shard auto` reads `JOB_COMPLETION_INDEX`; the pod is not told the completions
//!   count, so the manifest sets `SWEEP_SHARD_COUNT`.
//! - The run id is `k8s-<Job uid>-<index>` (the uid from the pod's
//!   `batch.kubernetes.io/controller-uid` label through the downward API, the index by the
//!   kubelet's `$(VAR)` expansion): a pod that replaces a failed or evicted one resumes its
//!   index's run, and a new Job of the same name starts new runs.
//! - `restartPolicy: Never` with `backoffLimitPerIndex`, and a pod failure policy that does
//!   not count disruptions (preemption, eviction, node drain: Kubernetes sends SIGTERM, sweep
//!   stops cleanly and exits 143) against that limit.
//!
//! Every user-given string is written as a JSON string literal, which YAML reads as the same
//! double-quoted scalar, so no value can change the document's structure.

use super::{directive_value, GenerateError};
use std::path::PathBuf;

/// What the generated Job runs and asks Kubernetes for.
#[derive(Debug, Clone)]
pub struct K8sOptions {
    /// The experiment file, as the pods will open it (relative to `workdir`, or absolute).
    pub spec_file: PathBuf,
    /// Experiment name (names the results folder).
    pub experiment: String,
    /// Indexes (completions) = shards.
    pub shards: u32,
    /// Job name (a DNS label).
    pub name: String,
    /// Container image with sweep in it.
    pub image: String,
    /// The container's working directory (where `spec_file` is relative to), if not the
    /// image's own.
    pub workdir: Option<PathBuf>,
    /// Pods at once (default: every index).
    pub parallelism: Option<u32>,
    /// `nvidia.com/gpu` limit per pod; `None` or 0 asks for none.
    pub gpus_per_task: Option<u32>,
    /// PersistentVolumeClaim holding the results (ReadWriteMany when pods may land on
    /// several nodes).
    pub claim: String,
    /// Where the claim is mounted; the runs go to `<mount>/<experiment>/`.
    pub results_mount: PathBuf,
    /// Failed pods allowed per index before the index counts as failed.
    pub backoff_per_index: u32,
    /// The sweep executable inside the image.
    pub sweep_bin: String,
}

/// The run id of one index, with the kubelet's `$(VAR)` references.
pub const RUN_ID_ARG: &str = "k8s-$(JOB_UID)-$(JOB_COMPLETION_INDEX)";

/// `s` as a YAML double-quoted scalar (a JSON string literal is one).
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A DNS-1123 label: what Kubernetes accepts as a Job name (63 characters; the pods'
/// hostnames add the index, so keep it shorter).
fn check_name(name: &str) -> Result<(), GenerateError> {
    let ok = !name.is_empty()
        && name.len() <= 50
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(GenerateError::Invalid(format!(
            "--name {name:?}: a Job name is lowercase letters, digits and '-', at most 50 \
             characters, starting and ending with a letter or digit"
        )))
    }
}

/// The Job name for an experiment: `sweep-<experiment>`, lowercased, other characters as '-'.
pub fn default_name(experiment: &str) -> String {
    let mut s: String = format!("sweep-{experiment}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s.truncate(50);
    s.trim_end_matches('-').to_string()
}

/// The indexed Job manifest (YAML).
pub fn manifest(o: &K8sOptions) -> Result<String, GenerateError> {
    let n = o.shards;
    if n == 0 {
        return Err(GenerateError::Invalid("--shards must be at least 1".into()));
    }
    check_name(&o.name)?;
    directive_value("--image", &o.image)?;
    let parallelism = o.parallelism.unwrap_or(n).clamp(1, n);
    let mount = o.results_mount.to_string_lossy();
    if !o.results_mount.is_absolute() {
        return Err(GenerateError::Invalid(format!(
            "--results-mount {mount:?} must be an absolute path"
        )));
    }
    let args = [
        "run",
        &o.spec_file.to_string_lossy(),
        "--shard",
        "auto",
        "--run-id",
        RUN_ID_ARG,
        "--results-dir",
        &mount,
        "--progress",
        "plain",
    ]
    .iter()
    .map(|a| q(a))
    .collect::<Vec<_>>()
    .join(", ");
    let workdir = o
        .workdir
        .as_ref()
        .map(|w| format!("          workingDir: {}\n", q(&w.to_string_lossy())))
        .unwrap_or_default();
    let gpus = o
        .gpus_per_task
        .filter(|g| *g > 0)
        .map(|g| {
            format!(
                "          resources:\n            limits:\n              nvidia.com/gpu: {g}\n"
            )
        })
        .unwrap_or_default();
    let runs = o.results_mount.join(&o.experiment);
    Ok(format!(
        r#"# Written by `sweep k8s` for experiment {exp}: an indexed Job, shard i of {n} in the pod
# of completion index i. Apply, wait, then merge the {n} runs on the results volume:
#   kubectl apply -f job.yaml
#   kubectl wait --for=condition=complete --timeout=24h job/{name}
#   uid=$(kubectl get job {name} -o jsonpath='{{.metadata.uid}}')
#   sweep merge {runs}/k8s-$uid-{{0..{last}}} --out {runs}/k8s-$uid
# (run the merge where the claim is mounted, e.g. in a pod of the same image).
apiVersion: batch/v1
kind: Job
metadata:
  name: {qname}
  labels:
    app.kubernetes.io/name: sweep
    sweep/experiment: {qexp}
spec:
  completionMode: Indexed
  completions: {n}
  parallelism: {parallelism}
  backoffLimitPerIndex: {backoff}
  podFailurePolicy:
    rules:
      # Preemption, eviction, node drain: sweep stopped cleanly on SIGTERM; the new pod
      # resumes the index's run, and this does not count as a failure.
      - action: Ignore
        onPodConditions:
          - type: DisruptionTarget
  template:
    metadata:
      labels:
        app.kubernetes.io/name: sweep
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 60
      containers:
        - name: sweep
          image: {image}
{workdir}          command: [{bin}]
          args: [{args}]
          env:
            - name: SWEEP_SHARD_COUNT
              value: "{n}"
            - name: JOB_UID
              valueFrom:
                fieldRef:
                  fieldPath: "metadata.labels['batch.kubernetes.io/controller-uid']"
{gpus}          volumeMounts:
            - name: results
              mountPath: {qmount}
      volumes:
        - name: results
          persistentVolumeClaim:
            claimName: {claim}
"#,
        exp = o.experiment,
        name = o.name,
        qname = q(&o.name),
        qexp = q(&o.experiment),
        last = n - 1,
        runs = runs.display(),
        backoff = o.backoff_per_index,
        image = q(&o.image),
        bin = q(&o.sweep_bin),
        qmount = q(&mount),
        claim = q(&o.claim),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> K8sOptions {
        K8sOptions {
            spec_file: "experiments/gemma3.toml".into(),
            experiment: "gemma3".into(),
            shards: 4,
            name: default_name("gemma3"),
            image: "registry.example/sweep:1".into(),
            workdir: Some("/app".into()),
            parallelism: None,
            gpus_per_task: Some(1),
            claim: "sweep-results".into(),
            results_mount: "/results".into(),
            backoff_per_index: 3,
            sweep_bin: "sweep".into(),
        }
    }

    #[test]
    fn manifest_has_the_indexed_job_fields() {
        let m = manifest(&opts()).unwrap();
        for s in [
            "completionMode: Indexed",
            "completions: 4",
            "parallelism: 4",
            "value: \"4\"",
            "nvidia.com/gpu: 1",
            "\"--shard\", \"auto\"",
            "\"k8s-$(JOB_UID)-$(JOB_COMPLETION_INDEX)\"",
            "workingDir: \"/app\"",
        ] {
            assert!(m.contains(s), "{s}\n{m}");
        }
    }

    #[test]
    fn names_and_values_cannot_break_the_document() {
        assert_eq!(default_name("Gemma_3.x"), "sweep-gemma-3-x");
        let mut o = opts();
        o.name = "Bad Name".into();
        assert!(manifest(&o).is_err());
        let mut o = opts();
        o.image = "a\nkind: Pod".into();
        assert!(manifest(&o).is_err());
        let mut o = opts();
        o.spec_file = "a\"b: c\n- d".into();
        let m = manifest(&o).unwrap();
        assert!(m.contains(r#""a\"b: c\n- d""#), "{m}");
        let mut o = opts();
        o.results_mount = "results".into();
        assert!(manifest(&o).is_err());
    }
}
