//! The run lock: an OS file lock (`flock`) on `<run>/.lock`, held for the life of a
//! `sweep run`. The kernel releases it when the process dies, so a kill -9 never leaves a
//! stale lock and resume works at once; a second `sweep run` on the same run is refused with
//! the holder's pid, host and start time (written into the lock file by the holder).

use super::StoreError;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file inside a run directory.
pub const LOCK_FILE: &str = ".lock";

/// Who holds a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub(crate) pid: u32,
    pub(crate) host: String,
    pub(crate) started_at: String,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on {} since {}",
            self.pid, self.host, self.started_at
        )
    }
}

/// A held run lock; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock of the run in `dir`, or fails with [`StoreError::Locked`] naming the
    /// holder.
    pub fn acquire(dir: &Path) -> Result<RunLock, StoreError> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(super::io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = serde_json::from_str::<LockHolder>(&text).ok();
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(super::io(&path)(e)),
        }
        let me = LockHolder {
            pid: std::process::id(),
            host: crate::env::hostname(),
            started_at: chrono::Utc::now().to_rfc3339(),
        };
        let text = serde_json::to_string(&me).unwrap_or_default();
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(text.as_bytes()))
            .and_then(|()| file.sync_data());
        written.map_err(super::io(&path))?;
        Ok(RunLock { _file: file, path })
    }

    /// The lock file held (`<run>/.lock`).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Held while a `sweep run` chooses which run of an experiment to continue or creates a
/// new one: an OS lock on the experiment directory itself (no file is added to it). Two
/// starters of one experiment file then choose one after the other, so the second sees the
/// run the first created and is refused by its [`RunLock`] instead of starting a second run.
///
/// Where a directory cannot be locked (NFS emulates `flock` with byte-range locks, which
/// need a file open for writing), a hidden `.<experiment>.lock` file next to the experiment
/// directory is locked instead.
#[derive(Debug)]
pub struct ExperimentLock {
    _file: Option<File>,
}

impl ExperimentLock {
    /// How long a starter waits for another one to finish choosing (that takes
    /// milliseconds; a longer wait means the other one is stuck).
    pub const WAIT: std::time::Duration = std::time::Duration::from_secs(30);

    /// Creates `exp_dir` if needed and locks it, waiting up to [`ExperimentLock::WAIT`].
    pub fn acquire(exp_dir: &Path) -> Result<ExperimentLock, StoreError> {
        std::fs::create_dir_all(exp_dir).map_err(super::io(exp_dir))?;
        let dir = File::open(exp_dir).map_err(super::io(exp_dir))?;
        let first = match Self::wait(&dir, exp_dir)? {
            Ok(()) => return Ok(ExperimentLock { _file: Some(dir) }),
            Err(e) => e,
        };
        let name = exp_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "experiment".into());
        let path = exp_dir
            .parent()
            .unwrap_or(Path::new("."))
            .join(format!(".{name}.lock"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(super::io(&path))?;
        match Self::wait(&file, &path)? {
            Ok(()) => Ok(ExperimentLock { _file: Some(file) }),
            Err(e) => {
                tracing::warn!(
                    "cannot lock {} ({first}) nor {} ({e}): two `sweep run` of this experiment \
                     started at the same moment could each start a run",
                    exp_dir.display(),
                    path.display()
                );
                Ok(ExperimentLock { _file: None })
            }
        }
    }

    /// Waits for the lock of `file`; the inner error says the file system cannot lock it.
    fn wait(file: &File, path: &Path) -> Result<Result<(), std::io::Error>, StoreError> {
        let start = std::time::Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Ok(())),
                Err(TryLockError::WouldBlock) if start.elapsed() < Self::WAIT => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(super::io(path)(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "another sweep has been choosing a run of this experiment for 30 s",
                    )))
                }
                Err(TryLockError::Error(e)) => return Ok(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_the_first_lets_go() {
        let d = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(d.path()).unwrap();
        match RunLock::acquire(d.path()) {
            Err(StoreError::Locked { holder, .. }) => {
                let h = holder.expect("the holder wrote its name");
                assert_eq!(h.pid, std::process::id());
            }
            other => panic!("{other:?}"),
        }
        drop(first);
        RunLock::acquire(d.path()).expect("released on drop");
    }

    #[test]
    fn experiment_lock_serialises_starters() {
        let d = tempfile::tempdir().unwrap();
        let exp = d.path().join("exp");
        let first = ExperimentLock::acquire(&exp).unwrap();
        assert!(exp.is_dir());
        let (tx, rx) = std::sync::mpsc::channel();
        let e2 = exp.clone();
        let t = std::thread::spawn(move || {
            let l = ExperimentLock::acquire(&e2).unwrap();
            tx.send(()).unwrap();
            drop(l);
        });
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_err());
        drop(first);
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        t.join().unwrap();
        assert_eq!(
            std::fs::read_dir(&exp).unwrap().count(),
            0,
            "no lock file added"
        );
    }
}
