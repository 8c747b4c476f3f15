//! Which run a `sweep run` writes to: a new one, the one named (`--run-id`, `--resume`,
//! `--retry-failed RUN`), the newest of this file (`--retry-failed`), or an unfinished one
//! of this file found automatically; all in the one start order of
//! [`store::ExperimentDir::runs`].

use super::*;

/// Opens (resume, `--retry-failed`) or creates the store. Returns the store, run id and
/// whether it continued an existing run.
///
/// Starters of one experiment choose one after the other (an [`store::ExperimentLock`] on
/// the experiment directory): two `sweep run` of one file started at once never make two
/// runs or share one; the second finds the first's run and is refused by its run lock.
pub(crate) fn open_store(
    spec: &Spec,
    plan: &Plan,
    opts: &RunOptions,
    manifest: impl FnOnce(&str) -> Manifest,
) -> Result<(RunStore, String, bool), RunError> {
    let exp_dir = opts
        .results_dir
        .clone()
        .unwrap_or_else(|| spec.run.results_dir.clone())
        .join(&spec.experiment.name);
    let named = [
        opts.run_id.as_ref(),
        opts.resume.as_ref(),
        opts.retry_failed.as_ref().and_then(Option::as_ref),
    ];
    for id in named.into_iter().flatten() {
        check_run_id(id)?;
    }
    let _choosing = store::ExperimentLock::acquire(&exp_dir)?;
    if let Some(retry) = &opts.retry_failed {
        let id = match retry {
            Some(id) => id.clone(),
            None => newest_run(&exp_dir, spec, plan).ok_or_else(|| {
                RunError::Setup(format!(
                    "--retry-failed: no run of {} under {} was made from this version of the \
                     file; name one: --retry-failed RUN_ID",
                    spec.file.display(),
                    exp_dir.display()
                ))
            })?,
        };
        let dir = exp_dir.join(&id);
        let m = Manifest::read(&dir)?;
        same_spec(spec, &id, &dir, &m)?;
        let (store, _info) = RunStore::open(&dir)?;
        return Ok((store, id, true));
    }
    let named_existing = opts.run_id.as_ref().and_then(|id| {
        let d = exp_dir.join(id);
        d.join(store::MANIFEST).exists().then(|| id.clone())
    });
    if let Some(id) = &named_existing {
        let m = Manifest::read(&exp_dir.join(id))?;
        if m.finished_at.is_some() {
            return Err(RunError::Setup(format!(
                "run {id} already exists and is finished; choose another --run-id"
            )));
        }
    }
    if let Some(id) = &opts.resume {
        let dir = exp_dir.join(id);
        let m = Manifest::read(&dir)?;
        same_spec(spec, id, &dir, &m)?;
        if m.finished_at.is_some() {
            return Err(RunError::Setup(format!(
                "run {id} is finished: nothing to resume (to run its failed calls again: \
                 sweep run {} --retry-failed {id})",
                spec.file.display()
            )));
        }
    }
    let resume_id = match (&opts.resume, named_existing) {
        (Some(id), _) => Some(id.clone()),
        (None, Some(id)) => Some(id),
        (None, None) if opts.run_id.is_some() => None,
        (None, None) if !opts.new_run => {
            let found = store::unfinished_runs(&exp_dir, &spec.hash)
                .into_iter()
                .find(|r| r.manifest.shard == plan.shard)
                .map(|r| r.name());
            if found.is_none() {
                edited_unfinished_run(spec, plan, &exp_dir)?;
            }
            found
        }
        (None, None) => None,
    };
    if let Some(id) = resume_id {
        let dir = exp_dir.join(&id);
        let m = Manifest::read(&dir)?;
        same_spec(spec, &id, &dir, &m)?;
        let (store, _info) = RunStore::open(&dir)?;
        return Ok((store, id, true));
    }
    let id = opts.run_id.clone().unwrap_or_else(store::new_run_id);
    let dir = exp_dir.join(&id);
    let store = RunStore::create(&dir, &manifest(&id))?;
    Ok((store, id, false))
}

/// A run id names a directory under the experiment's: one plain name, never a path.
pub(super) fn check_run_id(id: &str) -> Result<(), RunError> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(RunError::Setup(format!(
            "run id {id:?} must be a plain name of letters, digits, '-', '_' or '.' (not \
             starting with '.'; no '/'): it names a directory under the experiment's results"
        )))
    }
}

/// Refuses to continue a run made from another version of the experiment file, saying
/// where the two versions first differ.
pub(super) fn same_spec(spec: &Spec, id: &str, dir: &Path, m: &Manifest) -> Result<(), RunError> {
    if m.spec_hash == spec.hash {
        return Ok(());
    }
    Err(RunError::SpecChanged {
        run_id: id.to_string(),
        file: spec.file.display().to_string(),
        diff: first_difference(&m.spec, &spec.source),
        manifest: dir.join(store::MANIFEST).display().to_string(),
    })
}

/// When auto-resume finds nothing to continue: an unfinished run of this shard made from
/// another version of the file is an error naming it (the user chooses: restore, or --new),
/// never silently abandoned.
pub(super) fn edited_unfinished_run(
    spec: &Spec,
    plan: &Plan,
    exp_dir: &Path,
) -> Result<(), RunError> {
    let newest = store::ExperimentDir::new(exp_dir)
        .runs()
        .runs
        .into_iter()
        .rev()
        .find(|r| {
            let m = &r.manifest;
            m.finished_at.is_none() && m.shard == plan.shard && !m.partial
        });
    let Some(store::StoredRun { dir, manifest: m }) = newest else {
        return Ok(());
    };
    Err(RunError::SpecEdited {
        run_id: m.run_id.clone(),
        experiment: spec.experiment.name.clone(),
        file: spec.file.display().to_string(),
        diff: first_difference(&m.spec, &spec.source),
        manifest: dir.join(store::MANIFEST).display().to_string(),
    })
}

/// The newest run (by start time, [`store::ExperimentDir::runs`]) of this experiment file
/// and shard: what a bare `--retry-failed` continues.
pub(super) fn newest_run(exp_dir: &Path, spec: &Spec, plan: &Plan) -> Option<String> {
    store::ExperimentDir::new(exp_dir)
        .runs()
        .runs
        .into_iter()
        .rev()
        .map(|r| r.manifest)
        .find(|m| m.spec_hash == spec.hash && m.shard == plan.shard && m.merged_from.is_empty())
        .map(|m| m.run_id)
}

/// Where two versions of an experiment file first differ, for people: `line 12: was `…`,
/// now `…``.
pub(crate) fn first_difference(stored: &str, current: &str) -> String {
    fn show(l: Option<&str>) -> String {
        match l {
            None => "(end of file)".into(),
            Some(l) => {
                let t: String = l.trim_end().chars().take(60).collect();
                if l.trim_end().chars().count() > 60 {
                    format!("`{t}…`")
                } else {
                    format!("`{t}`")
                }
            }
        }
    }
    if stored.trim().is_empty() {
        return "its manifest keeps no copy of the file".into();
    }
    let (mut a, mut b) = (stored.lines(), current.lines());
    let mut n = 0;
    loop {
        n += 1;
        match (a.next(), b.next()) {
            (None, None) => return "they differ only in line endings or spacing at the end".into(),
            (x, y) if x != y => {
                return format!(
                    "first difference at line {n}: was {}, now {}",
                    show(x),
                    show(y)
                )
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str =
        "[experiment]\nname = \"t\"\n[backend]\nkind = \"embedded\"\n[corpus]\npath = \"c\"\n\
                        [[arm]]\nname = \"base\"\n";

    fn spec() -> Spec {
        Spec::parse(Path::new("t.toml"), SPEC).unwrap()
    }

    /// A stored run of this file: `finished` or not, started at `started_at`.
    fn stored(exp: &Path, id: &str, started_at: &str, finished: bool, spec: &Spec) {
        let dir = exp.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        Manifest {
            experiment: "t".into(),
            run_id: id.into(),
            spec_hash: spec.hash.clone(),
            spec: spec.source.clone(),
            started_at: started_at.into(),
            finished_at: finished.then(|| "2026-12-06T00:00:00Z".to_string()),
            ..Default::default()
        }
        .write(&dir)
        .unwrap();
    }

    /// With free-form run ids, name order and start order differ: `--retry-failed` (the
    /// newest run) and auto-resume (the newest unfinished run) both go by start time, so
    /// they agree on which run is the newest.
    #[test]
    fn the_newest_run_is_the_last_started_whatever_its_name() {
        let tmp = tempfile::tempdir().unwrap();
        let s = spec();
        let plan = Plan::build(&s, None);
        stored(tmp.path(), "zz-old", "2026-12-01T10:00:00Z", false, &s);
        stored(tmp.path(), "aa-new", "2026-12-03T10:00:00Z", false, &s);
        stored(tmp.path(), "mm-mid", "2026-12-02T10:00:00Z", true, &s);
        assert_eq!(newest_run(tmp.path(), &s, &plan).as_deref(), Some("aa-new"));
        let unfinished = store::unfinished_runs(tmp.path(), &s.hash);
        let names: Vec<String> = unfinished.iter().map(store::StoredRun::name).collect();
        assert_eq!(names, ["aa-new", "zz-old"], "newest first");
    }

    /// An unfinished run made from another version of the file is named, not abandoned:
    /// the newest such run by start time.
    #[test]
    fn an_edited_file_names_its_newest_unfinished_run() {
        let tmp = tempfile::tempdir().unwrap();
        let s = spec();
        let plan = Plan::build(&s, None);
        let old = Spec::parse(Path::new("t.toml"), &format!("{SPEC}# edited\n")).unwrap();
        stored(tmp.path(), "zz-first", "2026-12-01T10:00:00Z", false, &old);
        stored(tmp.path(), "aa-second", "2026-12-02T10:00:00Z", false, &old);
        match edited_unfinished_run(&s, &plan, tmp.path()) {
            Err(RunError::SpecEdited { run_id, .. }) => assert_eq!(run_id, "aa-second"),
            other => panic!("{other:?}"),
        }
        assert!(check_run_id("../x").is_err());
        assert!(check_run_id("nightly-1").is_ok());
    }
}
