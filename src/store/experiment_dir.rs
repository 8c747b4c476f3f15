//! The runs of one experiment directory (`results/<experiment>/`, or a baseline directory
//! of saved nights): the one place that lists them and the one order they come in. Resume,
//! `--retry-failed`, the ETA, the gate's history and the baseline list all read it, so "the
//! newest run" means the same run everywhere — with a free-form `--run-id`, the order of the
//! names is not the order of the starts.

use super::{Manifest, StoreError, MANIFEST};
use std::path::{Path, PathBuf};

/// One run directory with its manifest.
#[derive(Debug, Clone)]
pub struct StoredRun {
    /// The run directory.
    pub dir: PathBuf,
    /// Its manifest, as read.
    pub manifest: Manifest,
}

impl StoredRun {
    /// The directory's file name (the run id, or a baseline entry's name).
    pub fn name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// The runs of a directory and the run directories whose manifest could not be read.
#[derive(Debug, Default)]
pub struct Runs {
    /// Oldest first, newest last: by the manifest's `started_at`, then run id, then name.
    pub runs: Vec<StoredRun>,
    /// A directory with a `manifest.json` that does not parse, and why.
    pub unreadable: Vec<(PathBuf, StoreError)>,
}

/// An experiment directory: run directories (each with a `manifest.json`) side by side.
#[derive(Debug, Clone)]
pub struct ExperimentDir {
    path: PathBuf,
}

impl ExperimentDir {
    /// The directory at `path` (it need not exist: then it has no runs).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every run directory in start order, newest last; a directory that does not exist
    /// (or cannot be read) has none. Entries without a `manifest.json` (hidden start-up
    /// leftovers, other files) are not runs and are left out silently.
    pub fn runs(&self) -> Runs {
        self.try_runs().unwrap_or_default()
    }

    /// [`ExperimentDir::runs`], where a missing or unreadable directory is an error (a
    /// baseline directory named on the command line must exist).
    pub fn try_runs(&self) -> Result<Runs, StoreError> {
        let mut out = Runs::default();
        let entries = std::fs::read_dir(&self.path).map_err(super::io(&self.path))?;
        for e in entries.filter_map(|e| e.ok()) {
            let dir = e.path();
            if !dir.join(MANIFEST).is_file() {
                continue;
            }
            match Manifest::read(&dir) {
                Ok(manifest) => out.runs.push(StoredRun { dir, manifest }),
                Err(err) => out.unreadable.push((dir, err)),
            }
        }
        out.runs.sort_by(|a, b| {
            (&a.manifest.started_at, &a.manifest.run_id, &a.dir).cmp(&(
                &b.manifest.started_at,
                &b.manifest.run_id,
                &b.dir,
            ))
        });
        out.unreadable.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(exp: &Path, name: &str, run_id: &str, started_at: &str) {
        let dir = exp.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let m = Manifest {
            experiment: "e".into(),
            run_id: run_id.into(),
            started_at: started_at.into(),
            ..Default::default()
        };
        std::fs::write(dir.join(MANIFEST), serde_json::to_string(&m).unwrap()).unwrap();
    }

    /// Name order and start order differ (a free-form `--run-id`): the runs come in start
    /// order, so the newest is the one started last, whatever its name.
    #[test]
    fn runs_come_in_start_order_not_name_order() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "zz-custom", "zz-custom", "2026-12-01T10:00:00Z");
        write(
            tmp.path(),
            "20261202-080000-abcd",
            "20261202-080000-abcd",
            "2026-12-02T08:00:00Z",
        );
        write(tmp.path(), "aa-custom", "aa-custom", "2026-12-03T09:00:00Z");
        std::fs::create_dir_all(tmp.path().join(".creating-x-1")).unwrap();
        std::fs::create_dir_all(tmp.path().join("broken")).unwrap();
        std::fs::write(tmp.path().join("broken").join(MANIFEST), "{not json").unwrap();
        let found = ExperimentDir::new(tmp.path()).runs();
        let names: Vec<String> = found.runs.iter().map(StoredRun::name).collect();
        assert_eq!(names, ["zz-custom", "20261202-080000-abcd", "aa-custom"]);
        assert_eq!(found.unreadable.len(), 1);
        assert!(found.unreadable[0].0.ends_with("broken"));
        assert!(ExperimentDir::new(tmp.path().join("none"))
            .runs()
            .runs
            .is_empty());
    }
}
