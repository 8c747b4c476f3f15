//! The run loop: every phase not yet stored, in the plan's order, with the outage policy
//! (pause, probe, rerun the phases an outage met), progress and Ctrl-C/SIGTERM.

use super::*;

/// Executes every phase of the plan not yet stored (and, with `--retry-failed`, every
/// stored phase whose latest attempt failed), under the failure policy for outages.
pub(crate) async fn execute(
    spec: &Spec,
    plan: &Plan,
    store: &mut RunStore,
    run_id: &str,
    resumed: bool,
    executor: Arc<dyn PhaseExecutor>,
    opts: &RunOptions,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    // The phases still to run; jobs (which carry a copy of their cell) are made lazily as
    // the stream pulls them, so memory stays flat however many calls the sweep has.
    let planned = schedule::schedule(plan, &*store, opts.retry_failed.is_some(), opts.max_phases);
    let summary = RunSummary {
        run_id: run_id.to_string(),
        dir: store.dir().to_path_buf(),
        resumed,
        retried_phases: planned.retried,
        skipped_phases: planned.skipped,
        ..Default::default()
    };
    let (stored_calls, truncated) = (planned.stored_calls, planned.truncated);
    let jobs = schedule::jobs(
        plan,
        planned.pending,
        schedule::Placer::new(spec.backend.urls.clone()),
        run_id,
        &spec.experiment.name,
    );
    let total_calls = plan.total_calls();
    let mut progress = Progress::new(opts.progress);
    progress.emit(&Event::Started {
        resumed,
        run_id: run_id.to_string(),
        dir: store.dir().display().to_string(),
        units: plan.units.len(),
        calls: total_calls,
        already_stored: stored_calls,
    });
    let concurrency = opts.concurrency.unwrap_or(spec.run.concurrency).max(1) as usize;
    let n_jobs = jobs.len();
    // The failure policy closes this gate while it probes a backend that stopped answering:
    // phases already under way finish, no new one starts.
    let (gate, gate_rx) = tokio::sync::watch::channel(true);
    let passed_gate = Arc::new(AtomicUsize::new(0));
    let mut stream = gated(
        jobs,
        executor.clone(),
        gate_rx,
        passed_gate.clone(),
        concurrency,
    );
    let sink = Sink {
        store,
        summary,
        progress,
        measured_by_cell: BTreeMap::new(),
        done_calls: stored_calls,
        total_calls,
    };
    let mut lp = Loop::new(sink, spec, opts, gate, executor.clone());
    let store_failed = |source: StoreError, dir: &std::path::Path| RunError::StoreFailed {
        source,
        resume: resume_command(spec, plan, dir),
    };
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut term = terminate_signal();
    let mut delivered = 0usize;
    let mut stream_done = false;
    while !lp.stop {
        if lp.outage.as_ref().is_some_and(|o| o.probed.is_some()) {
            let in_flight =
                passed_gate.load(Ordering::SeqCst).saturating_sub(delivered) + lp.reruns.len();
            if in_flight == 0 {
                if let Err(e) = lp.resolve_outage() {
                    let dir = lp.sink.store.dir().to_path_buf();
                    return Err(store_failed(e, &dir));
                }
                continue;
            }
        }
        if stream_done && lp.reruns.is_empty() && lp.outage.is_none() {
            break;
        }
        let ev = {
            let probe = async {
                match lp.outage.as_mut().and_then(|o| o.probe.as_mut()) {
                    Some(p) => p.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                n = stream.next(), if !stream_done => Ev::Out(n.map(Box::new)),
                Some(x) = lp.reruns.next(), if !lp.reruns.is_empty() => Ev::Out(Some(Box::new(x))),
                p = probe => Ev::Probed(p),
                _ = &mut ctrl_c => Ev::Signal(StopSignal::Interrupt),
                _ = term.recv() => Ev::Signal(StopSignal::Terminate),
            }
        };
        let handled = match ev {
            Ev::Out(None) => {
                stream_done = true;
                Ok(())
            }
            Ev::Out(Some(done)) => {
                let (job, out) = *done;
                if job.outage_reruns == 0 {
                    delivered += 1;
                }
                lp.handle(job, out)
            }
            Ev::Probed(p) => {
                lp.probed(p);
                Ok(())
            }
            Ev::Signal(s) => {
                // Phases held by the failure policy are not stored: resume runs them again.
                lp.sink.summary.stopped_by = Some(s);
                break;
            }
        };
        if let Err(e) = handled {
            let dir = lp.sink.store.dir().to_path_buf();
            return Err(store_failed(e, &dir));
        }
    }
    drop(stream);
    if let Err(e) = lp.flush_suspects() {
        let dir = lp.sink.store.dir().to_path_buf();
        return Err(store_failed(e, &dir));
    }
    Ok(finish(
        lp.sink,
        Finish {
            spec,
            plan,
            run_id,
            n_jobs,
            truncated,
            started,
        },
    ))
}

/// The jobs' outputs as they finish, `concurrency` at a time; each job first waits for the
/// gate to be open (the failure policy closes it while it probes a backend that stopped
/// answering) and counts itself in `passed` when it goes through.
fn gated<'a>(
    jobs: impl Iterator<Item = PhaseJob> + 'a,
    executor: Arc<dyn PhaseExecutor>,
    gate: tokio::sync::watch::Receiver<bool>,
    passed: Arc<AtomicUsize>,
    concurrency: usize,
) -> impl futures_util::Stream<Item = (PhaseJob, PhaseOutput)> + Unpin + 'a {
    futures_util::stream::iter(jobs.map(move |job| {
        let ex = executor.clone();
        let mut open = gate.clone();
        let passed = passed.clone();
        async move {
            // An error means the runner is gone: nothing will read the output anyway.
            let _ = open.wait_for(|o| *o).await;
            passed.fetch_add(1, Ordering::SeqCst);
            let out = ex.execute(&job).await;
            (job, out)
        }
    }))
    .buffer_unordered(concurrency)
}

/// What the end of a run needs besides what the loop stored.
struct Finish<'a> {
    spec: &'a Spec,
    plan: &'a Plan,
    run_id: &'a str,
    /// Phases scheduled for this run.
    n_jobs: usize,
    /// `--max-phases` cut the schedule short.
    truncated: bool,
    started: Instant,
}

/// The run's summary once the loop has ended: cells with nothing measured, what an outage
/// left unrun, whether the run is complete, the command that runs its failures again, and
/// the last progress event (finished, or how to resume).
fn finish(sink: Sink<'_>, f: Finish<'_>) -> RunSummary {
    let Finish {
        spec,
        plan,
        run_id,
        n_jobs,
        truncated,
        started,
    } = f;
    let Sink {
        store,
        mut summary,
        mut progress,
        measured_by_cell,
        ..
    } = sink;
    summary.empty_cells = measured_by_cell
        .into_iter()
        .filter(|(_, n)| *n == 0)
        .map(|(c, _)| c)
        .collect();
    if let Some(o) = summary.outage.as_mut() {
        o.not_run = n_jobs.saturating_sub(summary.phases_run);
    }
    summary.complete = !summary.interrupted()
        && !summary.stopped_on_failure
        && summary.outage.is_none()
        && summary.phases_run == n_jobs
        && !truncated;
    summary.remaining_failed_phases = store.failed_phases();
    if summary.remaining_failed_phases > 0 || summary.outage.is_some() {
        summary.retry_command = Some(retry_command(spec, plan, store.dir()));
    }
    if summary.interrupted() {
        progress.emit(&Event::Interrupted {
            run_id: run_id.to_string(),
            resume: resume_command(spec, plan, store.dir()),
        });
    } else if summary.outage.is_some() {
        progress.emit(&Event::Interrupted {
            run_id: run_id.to_string(),
            resume: retry_command(spec, plan, store.dir()),
        });
    } else {
        progress.emit(&Event::Finished {
            run_id: run_id.to_string(),
            dir: store.dir().display().to_string(),
            ok: summary.ok_calls,
            failed: summary.failed_calls,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    summary
}

/// What the run loop waited for.
pub(super) enum Ev {
    Out(Option<Box<(PhaseJob, PhaseOutput)>>),
    Probed(policy::Probed),
    Signal(StopSignal),
}

/// Times one phase may run again because an outage ended while it ran (a server that keeps
/// going down must not keep the run busy forever: after that the phase is stored as failed).
pub(super) const MAX_OUTAGE_RERUNS: u32 = 3;

/// A pause of the failure policy.
pub(super) struct Outage {
    trigger: policy::Trigger,
    /// Phases with failed calls that met the outage: run again if the backend comes back,
    /// stored as failed if it does not.
    held: Vec<(PhaseJob, PhaseOutput)>,
    probe: Option<BoxFuture<'static, policy::Probed>>,
    probed: Option<policy::Probed>,
}

/// Stores phases and keeps the tallies of the summary and the progress display.
pub(super) struct Sink<'s> {
    store: &'s mut RunStore,
    summary: RunSummary,
    progress: Progress,
    measured_by_cell: BTreeMap<String, usize>,
    done_calls: usize,
    total_calls: usize,
}

impl Sink<'_> {
    /// Stores one phase (its reload probes, reports and records) and counts it.
    fn put(&mut self, job: &PhaseJob, out: &PhaseOutput) -> Result<(), StoreError> {
        let store = &mut *self.store;
        store_probes(store, &out.probes, &out.calls)?;
        for (stem, md) in &out.reports {
            store.write_report(&job.cell.id, job.unit.rep, job.unit.warmup, stem, md)?;
        }
        if job.retry > 0 {
            store.append_attempt_with_calls(&out.records, &out.calls)?;
        } else {
            store.append_with_calls(&out.records, &out.calls)?;
        }
        let summary = &mut self.summary;
        summary.phases_run += 1;
        let ok = out.records.iter().filter(|r| r.ok).count();
        let failed = out.records.len() - ok;
        summary.ok_calls += ok;
        summary.failed_calls += failed;
        self.done_calls += out.records.len();
        for r in out.probes.iter().chain(&out.records) {
            if let Some(c) = r.cold_reason.filter(|_| r.cold) {
                *summary
                    .cold_by_reason
                    .entry(c.as_str().to_string())
                    .or_default() += 1;
            }
            if r.warmup {
                summary.warmup_calls += 1;
            }
        }
        if !job.unit.warmup && job.phase != Phase::Sequential {
            let measured = out.records.iter().filter(|r| r.ok && !r.cold).count();
            summary.measured_calls += measured;
            *self
                .measured_by_cell
                .entry(job.cell.id.clone())
                .or_default() += measured;
        }
        for r in out.records.iter().filter(|r| !r.ok) {
            let kind = r.error_kind.clone().unwrap_or_else(|| "unknown".into());
            *summary.failures_by_kind.entry(kind.clone()).or_default() += 1;
            self.progress.emit(&Event::Failure {
                cell: job.cell.id.clone(),
                kind,
                message: r.error_message.clone().unwrap_or_default(),
            });
        }
        let last_ok = out.records.iter().rev().find(|r| r.ok);
        self.progress.emit(&Event::Phase {
            done_calls: self.done_calls,
            total_calls: self.total_calls,
            cell: job.cell.id.clone(),
            rep: job.unit.rep,
            warmup: job.unit.warmup,
            phase: job.phase.as_str().to_string(),
            ok,
            failed,
            ttft_ms: last_ok.and_then(|r| r.ttft_ms),
            decode_tps: last_ok.and_then(|r| r.decode_tps),
        });
        Ok(())
    }
}

pub(super) fn has_failures(out: &PhaseOutput) -> bool {
    out.records.iter().any(|r| !r.ok)
}

/// The run loop's state: where each finished phase goes (stored, held as a suspect of an
/// outage, held during a pause) and what a pause ends in.
pub(super) struct Loop<'s> {
    sink: Sink<'s>,
    watch: policy::Watch,
    /// Off with --fail-fast (the first failure stops the run anyway).
    policy_on: bool,
    fail_fast: bool,
    /// Phases that ended on a call that could not connect, below the streak: stored once a
    /// later call gets through (isolated failures), held if the streak becomes an outage.
    suspects: Vec<(PhaseJob, PhaseOutput)>,
    outage: Option<Outage>,
    /// Phases running again after an outage ended (they bypass the gate).
    reruns: FuturesUnordered<BoxFuture<'static, (PhaseJob, PhaseOutput)>>,
    gate: tokio::sync::watch::Sender<bool>,
    executor: Arc<dyn PhaseExecutor>,
    wait: Duration,
    stop: bool,
}

impl<'s> Loop<'s> {
    /// The loop over `sink`, with the failure policy of `spec` (off with `--fail-fast`) and the
    /// gate that holds new phases back during an outage.
    fn new(
        sink: Sink<'s>,
        spec: &Spec,
        opts: &RunOptions,
        gate: tokio::sync::watch::Sender<bool>,
        executor: Arc<dyn PhaseExecutor>,
    ) -> Self {
        Loop {
            sink,
            watch: policy::Watch::new(&spec.run),
            policy_on: !opts.fail_fast,
            fail_fast: opts.fail_fast,
            suspects: Vec::new(),
            outage: None,
            reruns: FuturesUnordered::new(),
            gate,
            executor,
            wait: Duration::try_from_secs_f64(spec.run.outage_wait_s)
                .unwrap_or(Duration::from_secs_f64(crate::spec::DEFAULT_OUTAGE_WAIT_S)),
            stop: false,
        }
    }

    /// The outage's probe answered: the loop resolves the outage once nothing is in flight.
    fn probed(&mut self, p: policy::Probed) {
        if let Some(o) = self.outage.as_mut() {
            o.probe = None;
            o.probed = Some(p);
        }
    }

    /// At the end of a run that was not stopped, the phases still held as suspects were
    /// isolated failures, not an outage: they are stored as they are.
    fn flush_suspects(&mut self) -> Result<(), StoreError> {
        if self.sink.summary.stopped_by.is_some() {
            return Ok(());
        }
        for (job, out) in std::mem::take(&mut self.suspects) {
            self.sink.put(&job, &out)?;
        }
        Ok(())
    }
}

impl Loop<'_> {
    fn handle(&mut self, job: PhaseJob, out: PhaseOutput) -> Result<(), StoreError> {
        if !self.policy_on {
            self.sink.put(&job, &out)?;
            if self.fail_fast && has_failures(&out) {
                self.sink.summary.stopped_on_failure = true;
                self.stop = true;
            }
            return Ok(());
        }
        if let Some(o) = self.outage.as_mut() {
            if has_failures(&out) {
                o.held.push((job, out));
                return Ok(());
            }
            return self.sink.put(&job, &out);
        }
        match self.watch.observe(&out.records) {
            policy::Verdict::Clear => {
                for (j, o) in std::mem::take(&mut self.suspects) {
                    self.sink.put(&j, &o)?;
                }
                self.sink.put(&job, &out)
            }
            policy::Verdict::Suspect => {
                self.suspects.push((job, out));
                Ok(())
            }
            policy::Verdict::Pause(trigger) => {
                self.gate.send_replace(false);
                self.sink.summary.pauses += 1;
                tracing::warn!(
                    "pausing the run: {trigger}; probing the backend for up to {} before \
                     failing the phases that met it",
                    human_duration(self.wait.as_secs_f64())
                );
                let ex = self.executor.clone();
                let probe_job = job.clone();
                let wait = self.wait;
                let probe: BoxFuture<'static, policy::Probed> =
                    Box::pin(
                        async move { policy::probe_until_up(ex.as_ref(), &probe_job, wait).await },
                    );
                let mut held = std::mem::take(&mut self.suspects);
                held.push((job, out));
                self.outage = Some(Outage {
                    trigger,
                    held,
                    probe: Some(probe),
                    probed: None,
                });
                Ok(())
            }
        }
    }

    /// Ends a pause once probing is over and no phase is under way.
    fn resolve_outage(&mut self) -> Result<(), StoreError> {
        let Some(o) = self.outage.take() else {
            return Ok(());
        };
        let probed = o.probed.unwrap_or(policy::Probed::Down {
            waited: Duration::ZERO,
            error: "not probed".into(),
        });
        match probed {
            policy::Probed::Up {
                was_down: true,
                after,
            } => {
                let mut again = 0;
                for (mut job, out) in o.held {
                    if has_failures(&out) && job.outage_reruns < MAX_OUTAGE_RERUNS {
                        job.outage_reruns += 1;
                        again += 1;
                        let ex = self.executor.clone();
                        self.reruns.push(Box::pin(async move {
                            let out = ex.execute(&job).await;
                            (job, out)
                        }));
                    } else {
                        self.sink.put(&job, &out)?;
                    }
                }
                self.sink.summary.outage_reruns += again;
                tracing::warn!(
                    "the backend answers again after {}; running the {again} phase(s) that \
                     met the outage again",
                    human_duration(after.as_secs_f64())
                );
            }
            policy::Probed::Up {
                was_down: false, ..
            } => {
                tracing::warn!(
                    "{}, but the backend answers: the failures are the calls' own; continuing",
                    o.trigger
                );
                for (job, out) in o.held {
                    self.sink.put(&job, &out)?;
                }
            }
            policy::Probed::Down { waited, error } => {
                for (job, out) in o.held {
                    self.sink.put(&job, &out)?;
                }
                tracing::warn!(
                    "the backend did not answer for {} ({error}); stopping the run",
                    human_duration(waited.as_secs_f64())
                );
                self.sink.summary.outage = Some(OutageStop {
                    trigger: o.trigger.to_string(),
                    waited_s: waited.as_secs_f64(),
                    error,
                    not_run: 0,
                });
                self.stop = true;
                return Ok(());
            }
        }
        self.watch.reset();
        self.gate.send_replace(true);
        Ok(())
    }
}

/// Stores a phase's reload probes as their own warm-up group (a further attempt when a
/// resumed run probes a unit again).
pub(super) fn store_probes(
    store: &mut RunStore,
    probes: &[Record],
    calls: &[crate::store::CallText],
) -> Result<(), StoreError> {
    let Some(first) = probes.first() else {
        return Ok(());
    };
    match store.latest_attempt(&first.phase_key()) {
        None => store.append_with_calls(probes, calls),
        Some(l) => {
            let again: Vec<Record> = probes
                .iter()
                .map(|r| Record {
                    retry: l + 1,
                    ..r.clone()
                })
                .collect();
            store.append_attempt_with_calls(&again, calls)
        }
    }
}
