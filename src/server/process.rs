//! One server process: spawned in its own process group with a parent-death signal, so that
//! nothing outlives sweep (not even after kill -9), its output captured to a file, stopped
//! with SIGTERM and then SIGKILL.

use crate::spec::Launch;
use std::fs::File;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A spawned server.
#[derive(Debug)]
pub struct ServerProcess {
    child: Mutex<Child>,
    pid: u32,
    log: PathBuf,
    /// When `spawn` returned: the origin of the start-up times.
    pub spawned_at: Instant,
    exit: Mutex<Option<ExitStatus>>,
}

/// A request for the spawner thread.
struct SpawnRequest {
    command: Command,
    reply: mpsc::Sender<io::Result<Child>>,
}

/// Linux sends the parent-death signal when the *thread* that forked the child exits, not
/// the process. Tokio's blocking threads come and go, so every server is forked from this
/// one thread, which lives as long as sweep.
fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("sweep-server-spawner".into())
            .spawn(move || {
                for mut req in rx {
                    let _ = req.reply.send(req.command.spawn());
                }
            })
            .expect("a thread can be started at all");
        Mutex::new(tx)
    })
}

impl ServerProcess {
    /// Starts `launch` with its output appended to `log`.
    pub fn spawn(launch: &Launch, log: &Path) -> io::Result<ServerProcess> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let out = File::options().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(&launch.program);
        cmd.args(&launch.args)
            .envs(&launch.env)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            // Its own group: a terminal's Ctrl-C reaches sweep only (which then stops the
            // server after draining), and stopping the group takes the server's children too.
            .process_group(0);
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // sweep died between fork and prctl: the signal will never come.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let (tx, rx) = mpsc::channel();
        spawner()
            .lock()
            .map_err(|_| io::Error::other("the spawner thread's lock is poisoned"))?
            .send(SpawnRequest {
                command: cmd,
                reply: tx,
            })
            .map_err(|_| io::Error::other("the spawner thread is gone"))?;
        let child = rx
            .recv()
            .map_err(|_| io::Error::other("the spawner thread is gone"))??;
        Ok(ServerProcess {
            pid: child.id(),
            child: Mutex::new(child),
            log: log.to_path_buf(),
            spawned_at: Instant::now(),
            exit: Mutex::new(None),
        })
    }

    /// Process id (also the process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The file its output goes to.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// How it exited, if it has.
    pub fn exited(&self) -> Option<ExitStatus> {
        let mut exit = self.exit.lock().unwrap_or_else(|e| e.into_inner());
        if exit.is_none() {
            let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
            if let Ok(Some(s)) = child.try_wait() {
                *exit = Some(s);
            }
        }
        *exit
    }

    /// SIGTERM to the group, SIGKILL after `grace`; returns how it ended.
    pub fn stop(&self, grace: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.exited() {
            self.signal_group(libc::SIGKILL);
            return Some(s);
        }
        self.signal_group(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(s) = self.exited() {
                // Stragglers of the group (a server's own children) go too.
                self.signal_group(libc::SIGKILL);
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signal_group(libc::SIGKILL);
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let s = child.wait().ok();
        *self.exit.lock().unwrap_or_else(|e| e.into_inner()) = s;
        s
    }

    fn signal_group(&self, sig: libc::c_int) {
        // SAFETY: kill(2) with a negative pid signals the group the child leads.
        unsafe {
            libc::kill(-(self.pid as libc::pid_t), sig);
        }
    }

    /// The last `lines` lines of its output.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

impl Drop for ServerProcess {
    /// A server is never left behind: on an error path or a panic the group is killed.
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.signal_group(libc::SIGKILL);
            let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
            let _ = child.wait();
        }
    }
}

/// How a process ended, in words.
pub fn describe_exit(s: ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "ended".into(),
    }
}

/// The last `lines` lines of a file (empty when unreadable).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A port nobody listens on now (the OS's choice), for a server sweep starts.
pub fn free_port(host: &str) -> io::Result<u16> {
    let l = std::net::TcpListener::bind((host, 0))?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn alive(pid: u32) -> bool {
        // SAFETY: signal 0 only checks that the process exists.
        unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
    }

    #[test]
    fn a_process_that_ignores_sigterm_is_killed_after_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let launch = Launch {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                "trap '' TERM; echo started; while true; do sleep 0.05; done".into(),
            ],
            env: BTreeMap::new(),
        };
        let p = ServerProcess::spawn(&launch, &dir.path().join("s.log")).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(p.exited().is_none());
        let t = Instant::now();
        let s = p.stop(Duration::from_millis(300)).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert_eq!(s.signal(), Some(libc::SIGKILL), "{s:?}");
        assert!(!alive(p.pid()));
        assert_eq!(p.log_tail(5), "started");
    }
}
