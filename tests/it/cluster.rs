//! Scale-out on real schedulers: the scripts `sweep slurm` writes, submitted to a one-node
//! Slurm cluster that this test starts on 127.0.0.1 (munged, slurmctld, slurmd from the
//! Debian packages `scripts/cluster-tools.sh` installs), with one task stopped by SIGTERM and
//! requeued; the manifest `sweep k8s` writes, checked against the Kubernetes OpenAPI schemas
//! and run pod by pod the way the kubelet would; and `--shard auto` refusing to guess.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use sweep::plan::{Plan, Shard};
use sweep::record::{Phase, Record};
use sweep::spec::Spec;
use sweep::store::read_records;
use sweep_testkit::FaultPlan;

use crate::common::{assert_complete, quiet_server, root, sweep};

/// Six single-agent cells (two per shard of three), five measured reps and a warm-up each:
/// twelve calls a cell, about a second a phase against the peer below, so a task runs long
/// enough to be stopped in the middle.
fn write_spec(dir: &Path, url: &str) -> PathBuf {
    let text = format!(
        r#"[experiment]
name = "clu"
repetitions = 5
warmup = 1
seed = 11

[backend]
kind = "ollama"
url = "{url}"
model = "gemma3:latest"
timeout_s = 20

[corpus]
path = "{corpus}"

[run]
results_dir = "{results}"

[[arm]]
name = "chimera"
[arm.grid]
num_ctx = [256, 512, 768]
temperature = [0.2, 0.8]
"#,
        corpus = root().join("experiments/corpus").display(),
        results = dir.join("results").display(),
    );
    let path = dir.join("clu.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every call of one shard's plan, each exactly once.
fn assert_shard_complete(spec: &Path, shard: Shard, records: &[Record]) {
    let plan = Plan::build(&Spec::load(spec).unwrap(), Some(shard));
    let mut seen: BTreeMap<(String, u32, bool, String, String), usize> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.phase != Phase::Reload && !r.superseded)
    {
        let key = (
            r.cell_id.clone(),
            r.rep,
            r.warmup,
            r.agent.clone(),
            r.stage.as_str().to_string(),
        );
        *seen.entry(key).or_default() += 1;
    }
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "shard {shard:?}: stored twice: {dups:?}");
    assert_eq!(seen.len(), plan.total_calls(), "shard {shard:?}");
}

/// Polls `f` every 250 ms until it gives a value; panics with `why()` after `limit`.
fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Option<T>,
    why: impl Fn() -> String,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}\n{}",
            why()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

// ---- a one-node Slurm cluster on 127.0.0.1 ----------------------------------------------

const SLURM_BINARIES: [&str; 7] = [
    "/usr/sbin/slurmctld",
    "/usr/sbin/slurmd",
    "/usr/sbin/munged",
    "/usr/bin/sbatch",
    "/usr/bin/squeue",
    "/usr/bin/scontrol",
    "/usr/bin/scancel",
];

/// Why this machine cannot run the Slurm test, when `scripts/cluster-tools.sh` found it
/// could not install Slurm (it writes the reason down). Slurm merely not installed yet is a
/// failure: the test command installs it.
fn slurm_unavailable() -> Option<String> {
    if SLURM_BINARIES.iter().all(|b| Path::new(b).exists()) {
        let uid = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Some("the local cluster needs root (slurmd starts jobs as their user)".into());
        }
        return None;
    }
    let cache = std::env::var_os("SWEEP_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/sweep")))?;
    match std::fs::read_to_string(cache.join("slurm-unavailable")) {
        Ok(why) => Some(why.trim().to_string()),
        Err(_) => panic!(
            "Slurm is not installed: run scripts/cluster-tools.sh (scripts/test.sh does) before \
             this test; it records why when Slurm cannot be installed, and the test then skips"
        ),
    }
}

/// Two different free ports on 127.0.0.1 (both held while the second is chosen, then
/// released for the daemons to take).
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = |l: &std::net::TcpListener| l.local_addr().unwrap().port();
    (port(&a), port(&b))
}

/// munged, slurmctld and slurmd of one test, in their own directory, as children of this
/// process; dropping it cancels every job and stops the daemons.
struct LocalSlurm {
    dir: PathBuf,
    conf: PathBuf,
    daemons: Vec<(&'static str, Child)>,
}

impl LocalSlurm {
    /// Writes the keys and `slurm.conf`, starts the daemons, waits for the node to be idle.
    fn start(dir: &Path, cpus: u32) -> LocalSlurm {
        for d in ["state", "spool", "log", "munge"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        // munged refuses a key readable by others, and a socket directory others cannot
        // enter.
        use std::os::unix::fs::PermissionsExt;
        let mut key = vec![0u8; 1024];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut key)
            .unwrap();
        let key_file = dir.join("munge/munge.key");
        std::fs::write(&key_file, key).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        for d in [dir, &dir.join("munge")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let socket = dir.join("munge/munge.socket");
        let (ctld_port, slurmd_port) = free_ports();
        let d = dir.display();
        // - Only 127.0.0.1: SlurmctldHost=localhost (Slurm takes it for this host), the node
        //   addressed as 127.0.0.1, and NoCtldInAddrAny/NoInAddrAny so that neither daemon
        //   binds INADDR_ANY (checked below).
        // - No cgroups: proctrack/linuxproc follows a job's processes by parent pid, which is
        //   all this test needs (signal and kill them). The cgroup v1 freezer does work in
        //   this sandbox, but it is a property of the host (a cgroup v2-only host needs
        //   systemd delegation), and slurmd leaves its slurm_<node> cgroup behind.
        // - cred_expire=5: a requeued job waits cred_expire+1 s before it may start again
        //   (default 120 s); sched_interval=1 looks at pending jobs every second (default 60).
        let conf = format!(
            "ClusterName=sweeptest
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={socket},cred_expire=5
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
KillWait=10
MinJobAge=600
NodeName=sweepnode NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=sweepnode Default=YES MaxTime=INFINITE State=UP
",
            socket = socket.display(),
        );
        let conf_path = dir.join("slurm.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut slurm = LocalSlurm {
            dir: dir.to_path_buf(),
            conf: conf_path,
            daemons: Vec::new(),
        };
        let spawn = |name: &'static str, cmd: &mut Command| -> (&'static str, Child) {
            let log = std::fs::File::create(dir.join(format!("log/{name}.out"))).unwrap();
            let child = cmd
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("start {name}: {e}"));
            (name, child)
        };
        let m = dir.join("munge");
        slurm.daemons.push(spawn(
            "munged",
            Command::new("/usr/sbin/munged")
                .arg("--foreground")
                .arg(format!("--socket={}", socket.display()))
                .arg(format!("--key-file={}", key_file.display()))
                .arg(format!("--pid-file={}", m.join("munged.pid").display()))
                .arg(format!("--seed-file={}", m.join("munged.seed").display()))
                .arg(format!("--log-file={}", m.join("munged.log").display())),
        ));
        wait_for(
            "munged's socket",
            Duration::from_secs(20),
            || socket.exists().then_some(()),
            || slurm.logs(),
        );
        // -D: in the foreground, as our child; -i: no state from an earlier cluster.
        slurm.daemons.push(spawn(
            "slurmctld",
            slurm.cmd("/usr/sbin/slurmctld").args(["-D", "-i"]),
        ));
        slurm.daemons.push(spawn(
            "slurmd",
            slurm
                .cmd("/usr/sbin/slurmd")
                .args(["-D", "-N", "sweepnode"]),
        ));
        wait_for(
            "the node to be idle",
            Duration::from_secs(60),
            || {
                let o = slurm
                    .cmd("/usr/bin/sinfo")
                    .args(["-h", "-o", "%T"])
                    .output()
                    .ok()?;
                (String::from_utf8_lossy(&o.stdout).trim() == "idle").then_some(())
            },
            || slurm.logs(),
        );
        slurm.assert_loopback_only(&[ctld_port, slurmd_port]);
        slurm
    }

    /// Listening sockets of the daemons' ports are bound to 127.0.0.1, not 0.0.0.0
    /// (/proc/net/tcp: local address in hex, state 0A = LISTEN).
    fn assert_loopback_only(&self, ports: &[u16]) {
        let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        for port in ports {
            let listening: Vec<&str> = tcp
                .lines()
                .skip(1)
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    let (addr, p) = f.get(1)?.split_once(':')?;
                    (f.get(3) == Some(&"0A") && u16::from_str_radix(p, 16).ok()? == *port)
                        .then_some(addr)
                })
                .collect();
            assert!(
                !listening.is_empty() || tcp.is_empty(),
                "nothing listens on port {port}"
            );
            assert!(
                listening.iter().all(|a| *a == "0100007F"),
                "port {port} is bound beyond 127.0.0.1: {listening:?}"
            );
        }
    }

    /// A Slurm command against this cluster.
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.conf).stdin(Stdio::null());
        c
    }

    /// `scontrol show job -o ID` as fields (`JobState`, `ExitCode`, `Restarts`, …).
    fn job(&self, id: &str) -> BTreeMap<String, String> {
        let o = self
            .cmd("/usr/bin/scontrol")
            .args(["show", "job", "-o", id])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn state(&self, id: &str) -> String {
        self.job(id).remove("JobState").unwrap_or_default()
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let o = self.cmd(program).args(args).output().unwrap();
        assert!(o.status.success(), "{program} {args:?}: {}", text(&o));
        o
    }

    /// The daemons' logs and the queue, for a failure message.
    fn logs(&self) -> String {
        let mut s = String::new();
        for f in [
            "munged.out",
            "slurmctld.out",
            "slurmd.out",
            "slurmctld.log",
            "slurmd.log",
        ] {
            let t = std::fs::read_to_string(self.dir.join("log").join(f)).unwrap_or_default();
            let tail: Vec<&str> = t.lines().rev().take(15).collect();
            s += &format!("--- {f} (last lines)\n");
            for l in tail.iter().rev() {
                s += l;
                s.push('\n');
            }
        }
        if let Ok(o) = self.cmd("/usr/bin/squeue").arg("-a").output() {
            s += &format!("--- squeue\n{}", String::from_utf8_lossy(&o.stdout));
        }
        s
    }
}

impl Drop for LocalSlurm {
    /// Cancels every job (their processes are slurmstepd's, not ours), waits for the queue to
    /// empty, then stops the daemons we started: SIGTERM, and SIGKILL after 10 s.
    fn drop(&mut self) {
        if self.daemons.iter().any(|(n, _)| *n == "slurmctld") {
            let _ = self
                .cmd("/usr/bin/scancel")
                .args(["--full", "--signal=KILL", "--user=root"])
                .output();
            let _ = self.cmd("/usr/bin/scancel").arg("--user=root").output();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                // Pending, running or completing (finished jobs are not listed).
                let o = self.cmd("/usr/bin/squeue").arg("-h").output();
                let busy = o.map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .any(|l| !l.trim().is_empty())
                });
                if !busy.unwrap_or(false) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        for (_, child) in self.daemons.iter_mut().rev() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Job states that Slurm will not change by itself (COMPLETING is not one: the job's
/// processes are still being ended).
const FINISHED: [&str; 9] = [
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "PREEMPTED",
    "NODE_FAIL",
    "BOOT_FAIL",
    "DEADLINE",
    "OUT_OF_MEMORY",
];

/// A task's run directory and how many measured-or-not calls (reload probes aside) it has
/// stored.
fn stored_calls(run: &Path) -> usize {
    read_records(&run.join("records.jsonl"))
        .map(|o| {
            o.records
                .iter()
                .filter(|r| r.phase != Phase::Reload)
                .count()
        })
        .unwrap_or(0)
}

/// The scripts `sweep slurm` writes, on a real Slurm: an array of three tasks (two CPUs, so
/// two at a time) against the Ollama peer, and the afterok merge job. Task 1 is stopped with
/// `scancel --signal=TERM` (as an admin would; the job ends FAILED, exit 143) and requeued
/// with `scontrol requeue`; task 0 is requeued while running (`scontrol requeue`, Slurm's own
/// SIGTERM, as on preemption). Both must resume their runs: the records stored before the
/// stop are kept byte for byte, no phase is stored twice, and the merged run is the plan
/// exactly.
#[test]
fn slurm_array_with_requeued_tasks_merges_the_whole_plan() {
    if let Some(why) = slurm_unavailable() {
        // Under CI the real cluster is part of the suite: missing, the test fails with the
        // reason instead of passing without having run.
        assert!(
            std::env::var_os("CI").is_none(),
            "Slurm is required under CI and is not available: {why}"
        );
        eprintln!("SKIPPED slurm_array_with_requeued_tasks_merges_the_whole_plan: {why}");
        return;
    }
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let server = quiet_server(12, 40, FaultPlan::None);
    let spec = write_spec(tmp.path(), &server.url());
    let slurm = LocalSlurm::start(&tmp.path().join("cluster"), 2);

    // The scripts, written where the experiment is (the jobs' --chdir), with the file given
    // relative to it.
    let out = sweep()
        .current_dir(tmp.path())
        .args(["slurm", "clu.toml", "--shards", "3", "--cpus-per-task", "1"])
        .args(["--time", "10:00", "--out", "jobs", "--sweep-bin"])
        .arg(env!("CARGO_BIN_EXE_sweep"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let submit = slurm
        .cmd("bash")
        .arg(tmp.path().join("jobs/submit.sh"))
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(
        submit.status.success(),
        "{}\n{}",
        text(&submit),
        slurm.logs()
    );
    let stdout = String::from_utf8_lossy(&submit.stdout).into_owned();
    let last = stdout.lines().last().unwrap_or_default();
    let ids: BTreeMap<&str, &str> = last
        .trim_start_matches("submitted ")
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let (array, merge) = (ids["array"].to_string(), ids["merge"].to_string());
    let task = |i: u32| format!("{array}_{i}");
    let runs = tmp.path().join("results/clu");
    let run_dir = |i: u32| runs.join(format!("slurm-{array}-{i}"));
    let log = |i: u32| {
        std::fs::read_to_string(
            tmp.path()
                .join(format!("jobs/logs/sweep-clu-{array}_{i}.out")),
        )
        .unwrap_or_default()
    };
    let why = || {
        format!(
            "{}\ntask logs:\n{}\n{}\n{}",
            slurm.logs(),
            log(0),
            log(1),
            log(2)
        )
    };

    // Tasks 0 and 1 run first (one CPU each). Each is stopped once it has stored a few
    // phases, long before its end (24 calls).
    let started_storing = |i: u32| {
        wait_for(
            &format!("task {i} to store some phases"),
            Duration::from_secs(90),
            || (stored_calls(&run_dir(i)) >= 4).then_some(()),
            why,
        )
    };
    started_storing(0);

    // Task 0: requeued while running (requeue.sh: scontrol requeue); Slurm sends SIGTERM
    // itself, as on preemption.
    let requeue = |i: u32| {
        let o = slurm
            .cmd("bash")
            .arg(tmp.path().join("jobs/requeue.sh"))
            .args([&array, &merge, &i.to_string()])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "requeue.sh: {}\n{}",
            text(&o),
            slurm.logs()
        );
    };
    requeue(0);
    wait_for(
        "task 0 to stop after its requeue",
        Duration::from_secs(60),
        || {
            log(0)
                .contains(&format!("--resume slurm-{array}-0"))
                .then_some(())
        },
        why,
    );
    let kept_0 = std::fs::read(run_dir(0).join("records.jsonl")).unwrap();

    // Task 1: SIGTERM to the job's processes; sweep stops cleanly, the task ends FAILED.
    started_storing(1);
    slurm.run("/usr/bin/scancel", &["--signal=TERM", "--full", &task(1)]);
    let ended = wait_for(
        "task 1 to end after SIGTERM",
        Duration::from_secs(60),
        || {
            let j = slurm.job(&task(1));
            let s = j.get("JobState").cloned().unwrap_or_default();
            FINISHED.contains(&s.as_str()).then_some(j)
        },
        why,
    );
    assert_eq!(ended["JobState"], "FAILED", "{ended:?}");
    assert_eq!(
        ended["ExitCode"], "143:0",
        "sweep exits 143 on SIGTERM: {ended:?}"
    );
    assert!(
        log(1).contains(&format!("--resume slurm-{array}-1")),
        "no resume hint in task 1's log:\n{}",
        log(1)
    );
    let kept_1 = std::fs::read(run_dir(1).join("records.jsonl")).unwrap();
    // Requeue it with the script that also renews the merge job's dependency (Slurm gave up
    // on it when task 1 failed).
    requeue(1);

    // Everything, the merge job included, ends.
    let merged = wait_for(
        "the merge job to end",
        Duration::from_secs(300),
        || {
            let s = slurm.state(&merge);
            FINISHED.contains(&s.as_str()).then_some(s)
        },
        why,
    );
    let merge_log = std::fs::read_to_string(
        tmp.path()
            .join(format!("jobs/logs/sweep-clu-merge-{merge}.out")),
    )
    .unwrap_or_default();
    assert_eq!(merged, "COMPLETED", "{merge_log}\n{}", why());

    // Each requeued task ran twice and resumed: what it stored before the stop is still the
    // start of its records, it said it resumed, and its shard is complete with no phase
    // stored twice.
    for (i, kept) in [(0, &kept_0), (1, &kept_1)] {
        let j = slurm.job(&task(i));
        assert_eq!(j["JobState"], "COMPLETED", "task {i}: {j:?}");
        assert_eq!(j["Restarts"], "1", "task {i}: {j:?}");
        let now = std::fs::read(run_dir(i).join("records.jsonl")).unwrap();
        assert!(
            now.len() > kept.len() && now.starts_with(kept),
            "task {i}'s records before the stop were not kept"
        );
        assert!(
            log(i).contains(&format!("resuming run slurm-{array}-{i}")),
            "task {i} did not resume:\n{}",
            log(i)
        );
        let recs = read_records(&run_dir(i).join("records.jsonl"))
            .unwrap()
            .records;
        assert_shard_complete(&spec, Shard { index: i, count: 3 }, &recs);
    }
    assert_eq!(slurm.job(&task(2))["JobState"], "COMPLETED");

    // The merged run: every planned call exactly once, analysed.
    let merged_run = runs.join(format!("slurm-{array}"));
    let recs = read_records(&merged_run.join("records.jsonl"))
        .unwrap()
        .records;
    assert_complete(&spec, &recs);
    assert!(
        merged_run.join("analysis/summary.json").is_file(),
        "{merge_log}"
    );
    eprintln!(
        "slurm: 3 tasks, 2 requeued, merged and analysed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

// ---- Kubernetes ---------------------------------------------------------------------------

/// kubernetes-validate from the environment `scripts/cluster-tools.sh` installs; absent,
/// fail loudly as for the other tools the test command installs.
fn kubernetes_validate() -> PathBuf {
    let out = Command::new("bash")
        .arg(root().join("scripts/cluster-tools.sh"))
        .arg("--validator")
        .output()
        .expect("run scripts/cluster-tools.sh --validator");
    assert!(
        out.status.success(),
        "kubernetes-validate is not installed: run scripts/cluster-tools.sh before this test. \
         Script said: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// YAML → JSON with the PyYAML that kubernetes-validate brings.
fn yaml_to_json(validator: &Path, yaml: &Path) -> serde_json::Value {
    let python = validator.with_file_name("python");
    let o = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(yaml)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The kubelet's `$(VAR)` expansion of a container argument.
fn expand(arg: &str, env: &BTreeMap<String, String>) -> String {
    let mut s = arg.to_string();
    for (k, v) in env {
        s = s.replace(&format!("$({k})"), v);
    }
    s
}

/// The indexed Job `sweep k8s` writes passes the Kubernetes 1.37 OpenAPI schema strictly
/// (unknown fields are errors), a broken one does not, and its fields are the ones that make
/// it work. Then each index's pod is run here the way the kubelet would run it (its env, the
/// downward-API uid, `$(VAR)` expansion), one pod replaced after SIGTERM: the three runs merge
/// into the whole plan.
#[test]
fn k8s_manifest_is_valid_and_its_pods_shard_the_plan() {
    let validator = kubernetes_validate();
    let server = quiet_server(6, 20, FaultPlan::None);
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), &server.url());
    let mount = tmp.path().join("volume");
    let manifest = tmp.path().join("job.yaml");
    let out = sweep()
        .current_dir(tmp.path())
        .args(["k8s", "clu.toml", "--shards", "3", "--gpus-per-task", "1"])
        .args(["--image", "registry.example/sweep:0.1", "--workdir", "/app"])
        .arg("--results-mount")
        .arg(&mount)
        .arg("--out")
        .arg(&manifest)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let check = |path: &Path| {
        Command::new(&validator)
            .args(["--strict", "--no-warn", "-k", "1.37.0"])
            .arg(path)
            .output()
            .unwrap()
    };
    let o = check(&manifest);
    assert!(o.status.success(), "{}", text(&o));
    // The checker does reject: a misspelt field, and a wrong type.
    let good = std::fs::read_to_string(&manifest).unwrap();
    for (from, to) in [
        ("completionMode:", "completionMod:"),
        ("parallelism: 3", "parallelism: \"three\""),
    ] {
        let bad = tmp.path().join("bad.yaml");
        std::fs::write(&bad, good.replacen(from, to, 1)).unwrap();
        assert!(!check(&bad).status.success(), "accepted {to}");
    }

    let job = yaml_to_json(&validator, &manifest);
    assert_eq!(job["kind"], "Job");
    assert_eq!(job["apiVersion"], "batch/v1");
    let js = &job["spec"];
    assert_eq!(js["completionMode"], "Indexed");
    assert_eq!(js["completions"], 3);
    assert_eq!(js["parallelism"], 3);
    assert_eq!(js["template"]["spec"]["restartPolicy"], "Never");
    assert_eq!(
        js["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["type"],
        "DisruptionTarget"
    );
    let c = &js["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "registry.example/sweep:0.1");
    assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], 1);
    assert_eq!(
        c["volumeMounts"][0]["mountPath"],
        mount.display().to_string()
    );
    assert_eq!(
        js["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "sweep-results"
    );
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for e in c["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap().to_string();
        if let Some(v) = e["value"].as_str() {
            env.insert(name, v.to_string());
        } else {
            assert_eq!(
                e["valueFrom"]["fieldRef"]["fieldPath"],
                "metadata.labels['batch.kubernetes.io/controller-uid']"
            );
            // What the downward API gives: the Job's uid.
            env.insert(name, "0b6a3c1e-5f1d-4c1a-9e39-2f6a1c7d9e10".into());
        }
    }
    assert_eq!(env["SWEEP_SHARD_COUNT"], "3");
    assert_eq!(c["command"][0], "sweep");

    // The pods: each index with the kubelet's env and expansion, in the working directory
    // (here the test's, where clu.toml is). Index 1's first pod is stopped by SIGTERM (a
    // node drain); its replacement resumes.
    let pod = |index: u32| {
        let mut pod_env = env.clone();
        // The Job controller adds JOB_COMPLETION_INDEX to every container.
        pod_env.insert("JOB_COMPLETION_INDEX".into(), index.to_string());
        let args: Vec<String> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| expand(a.as_str().unwrap(), &pod_env))
            .collect();
        let mut cmd = sweep();
        cmd.current_dir(tmp.path())
            .env_clear()
            .envs(&pod_env)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    };
    let uid = &env["JOB_UID"];
    let runs = mount.join("clu");
    let first = pod(1).spawn().unwrap();
    wait_for(
        "pod 1 to store some phases",
        Duration::from_secs(60),
        || (stored_calls(&runs.join(format!("k8s-{uid}-1"))) >= 2).then_some(()),
        String::new,
    );
    let _ = Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status();
    let o = first.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(143), "{}", text(&o));
    // The replacement of pod 1 and the other two pods, at once (parallelism 3).
    let pods: Vec<_> = (0..3).map(|i| pod(i).spawn().unwrap()).collect();
    for (i, p) in pods.into_iter().enumerate() {
        let o = p.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "pod {i}: {}", text(&o));
        if i == 1 {
            assert!(
                String::from_utf8_lossy(&o.stderr).contains("resuming run"),
                "{}",
                text(&o)
            );
        }
    }
    // A pod re-run after its index finished has nothing to do and succeeds.
    let o = pod(2).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already finished"),
        "{}",
        text(&o)
    );

    let shard_runs: Vec<PathBuf> = (0..3)
        .map(|i| runs.join(format!("k8s-{uid}-{i}")))
        .collect();
    let merged = runs.join(format!("k8s-{uid}"));
    let o = sweep()
        .arg("merge")
        .args(&shard_runs)
        .arg("--out")
        .arg(&merged)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let recs = read_records(&merged.join("records.jsonl")).unwrap().records;
    assert_complete(&spec, &recs);
}

/// Outside any scheduler `--shard auto` refuses (exit 2) and says what it looked for; inside
/// a Slurm job that is not an array, it says to submit an array.
#[test]
fn shard_auto_refuses_when_no_scheduler_tells() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "http://127.0.0.1:9");
    let run = |env: &[(&str, &str)]| {
        let mut c = sweep();
        c.env_clear()
            .envs(env.iter().copied())
            .args(["run", "-q", "--shard", "auto"])
            .arg(&spec);
        c.output().unwrap()
    };
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("SLURM_ARRAY_TASK_ID") && err.contains("JOB_COMPLETION_INDEX"),
        "{err}"
    );
    let o = run(&[("SLURM_JOB_ID", "5")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a job array"));
    // More shards than cells: the generators refuse before anything is submitted.
    for cmd in ["slurm", "k8s"] {
        let o = sweep()
            .current_dir(tmp.path())
            .args([cmd, "clu.toml", "--shards", "7", "--out", "x"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("use 1 to 6 shards"),
            "{}",
            text(&o)
        );
    }
}
