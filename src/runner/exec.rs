//! The agent executor: runs a phase's agents over a backend and turns every call (ok,
//! failed, or skipped after a failed analysis) into exactly one record.
//!
//! Cold calls: when the runner changed the reload key before this phase, or the server says
//! the model is no longer loaded (evicted by keep_alive, another client), the executor first
//! sends a one-token reload probe per agent (stored as warm-up, phase `reload`, with the
//! reason) so that the measured calls are warm. A measured call whose server-reported load
//! time still exceeds `[analysis] cold_load_ms` is marked cold (`load_ms`).

use super::{PhaseExecutor, PhaseJob, PhaseOutput};
use crate::agent::{self, AgentContext, AgentRun, CallResult};
use crate::backend::{Backend, BackendError, BoxFuture, GenRequest, Generation};
use crate::corpus::Corpus;
use crate::plan::Member;
use crate::record::{ColdReason, Phase, Record, Stage};
use crate::spec::{CorpusConfig, ModelOptions, Persona, RetryPolicy};
use crate::store::CallText;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Error kind stored for a report call that was not attempted because the analysis failed.
pub const SKIPPED_KIND: &str = "skipped_after_failure";

pub(crate) struct AgentExecutor {
    pub backend: Arc<dyn Backend>,
    pub corpus: CorpusConfig,
    pub retry: RetryPolicy,
    /// Recorded in every record (false only if a user turns nonces off).
    pub defeat_cache: bool,
    /// `[analysis] cold_load_ms`: a measured call reporting a longer load is cold.
    pub cold_load_ms: f64,
    /// Differs in every process: a phase run again after a crash (or by --retry-failed)
    /// sends prompts no cache has seen.
    pub session: String,
    /// Executions so far in this process: a phase run again after an outage gets a fresh
    /// nonce too.
    pub executions: AtomicU64,
}

impl AgentExecutor {
    pub fn new(
        backend: Arc<dyn Backend>,
        corpus: CorpusConfig,
        retry: RetryPolicy,
        cold_load_ms: f64,
    ) -> Self {
        AgentExecutor {
            backend,
            corpus,
            retry,
            defeat_cache: true,
            cold_load_ms,
            session: session_id(),
            executions: AtomicU64::new(0),
        }
    }

    /// Each agent run ingests the corpus itself, as the seed agents did; the time is its own.
    fn ingest(&self) -> (Result<Corpus, String>, f64) {
        let t = Instant::now();
        let c = Corpus::load(&self.corpus).map_err(|e| e.to_string());
        (c, t.elapsed().as_secs_f64() * 1000.0)
    }

    /// `<run>/<cell>/<r|w><rep>/<agent>/<phase>/<session>.<execution>`: unique to this
    /// execution of the phase (the agent appends the stage, and the attempt on a retry).
    fn nonce(&self, job: &PhaseJob, m: &Member, execution: u64) -> String {
        if !self.defeat_cache {
            return String::new();
        }
        format!(
            "{}/{}/{}.{execution}",
            job.run_id,
            call_stem(job, m),
            self.session
        )
    }

    async fn run_members(
        &self,
        job: &PhaseJob,
        execution: u64,
    ) -> Result<(Vec<AgentRun>, Instant, f64), String> {
        let members: Vec<Member> = job
            .cell
            .members
            .iter()
            .map(|m| Member {
                endpoint: m.endpoint.clone().or_else(|| job.endpoint.clone()),
                ..m.clone()
            })
            .collect();
        let mut corpora = Vec::new();
        for _ in &members {
            let (c, ms) = self.ingest();
            corpora.push((c?, ms));
        }
        let nonces: Vec<String> = members
            .iter()
            .map(|m| self.nonce(job, m, execution))
            .collect();
        let ctxs: Vec<AgentContext<'_>> = members
            .iter()
            .zip(&corpora)
            .zip(&nonces)
            .map(|((m, (c, ms)), n)| AgentContext {
                member: m,
                corpus: c,
                ingest_ms: *ms,
                nonce: n.clone(),
                call_stem: call_stem(job, m),
                retry: &self.retry,
            })
            .collect();
        let backend = self.backend.as_ref();
        let started = Instant::now();
        let runs = match job.phase {
            Phase::Single => vec![agent::run_agent(backend, &ctxs[0]).await],
            Phase::Open => {
                let offsets = job.cell.arrival_offsets_ms(job.unit.rep, job.unit.warmup);
                agent::run_on_schedule(backend, &ctxs, started, &offsets).await
            }
            Phase::Concurrent => agent::run_together(backend, &ctxs).await,
            // (Reload probes are sent by `probes`, never planned as a phase.)
            Phase::Sequential | Phase::Reload => agent::run_one_by_one(backend, &ctxs).await,
        };
        let wall = started.elapsed().as_secs_f64() * 1000.0;
        Ok((runs, started, wall))
    }

    /// Runs the phase's agents; in a concurrent or open-loop phase, samples the server's
    /// queue every 100 ms meanwhile (stopping at once for a server that reports none).
    async fn run_sampling_queue(
        &self,
        job: &PhaseJob,
        execution: u64,
    ) -> (
        Result<(Vec<AgentRun>, Instant, f64), String>,
        Option<crate::record::QueueWindow>,
    ) {
        if !matches!(job.phase, Phase::Concurrent | Phase::Open) {
            return (self.run_members(job, execution).await, None);
        }
        let endpoint = job
            .cell
            .members
            .first()
            .and_then(|m| m.endpoint.clone())
            .or_else(|| job.endpoint.clone());
        // `notify_one` keeps its permit when the sampler is not waiting yet: the end of the
        // phase is never missed, and the sampler stops at once instead of after a sleep.
        let done = tokio::sync::Notify::new();
        let members = async {
            let out = self.run_members(job, execution).await;
            done.notify_one();
            out
        };
        let sampler = async {
            let mut w = crate::record::QueueWindow::default();
            loop {
                match self.backend.queue(endpoint.as_deref()).await {
                    Some(q) => w.add(q),
                    None => return None,
                }
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                    _ = done.notified() => break,
                }
            }
            (w.samples > 0).then_some(w)
        };
        futures_util::future::join(members, sampler).await
    }

    /// Why this phase needs a reload probe first: the runner changed the reload key, or the
    /// server says a member's model is not loaded (or loaded with another context length).
    async fn probe_reason(&self, job: &PhaseJob, members: &[Member]) -> Option<ColdReason> {
        if job.cold_start {
            return Some(ColdReason::Reload);
        }
        for m in members {
            let Some(loaded) = self.backend.loaded(m.endpoint.as_deref()).await else {
                continue;
            };
            let here = loaded.iter().find(|l| same_model(&l.name, &m.model));
            let ctx_differs = match (here.and_then(|l| l.context_length), m.options.num_ctx) {
                (Some(have), Some(want)) => have != u64::from(want),
                _ => false,
            };
            if here.is_none() || ctx_differs {
                return Some(ColdReason::UnexpectedReload);
            }
        }
        None
    }

    /// One-token calls that take the model load (one per agent), stored as warm-up records
    /// of phase `reload`, with what the server says it loaded.
    async fn probes(
        &self,
        job: &PhaseJob,
        members: &[Member],
        reason: ColdReason,
        execution: u64,
    ) -> (Vec<Record>, Vec<CallText>) {
        let mut out = Vec::new();
        let mut texts = Vec::new();
        for m in members.iter().filter(|m| m.takes_probe()) {
            let options = ModelOptions {
                num_predict: Some(1),
                ..m.options.clone()
            };
            let req = GenRequest {
                model: m.model.clone(),
                system: None,
                prompt: format!(
                    "{}/reload-{}-{}\nReply with one word: ready.",
                    self.nonce(job, m, execution),
                    job.unit.order,
                    chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
                ),
                options,
                endpoint: m.endpoint.clone(),
            };
            let wall = chrono::Utc::now();
            let started = Instant::now();
            let result = self.backend.generate(&req).await;
            let mut r = self.base_record(job, m, Stage::Analysis);
            r.phase = Phase::Reload;
            r.warmup = true;
            // Unique per phase: a pair unit can probe before each of its two phases.
            r.rep = job.unit.order as u32 * 2 + u32::from(job.phase == Phase::Sequential);
            let id = format!(
                "{}/order{}/{}/{}/reload",
                job.cell.id,
                job.unit.order,
                job.phase.as_str(),
                m.slot.as_str()
            );
            r.call_id = Some(id.clone());
            r.prompt_version = None;
            r.persona_mode = None;
            let mut text = self.call_text(id, m, Stage::Analysis, 1, &req, &result);
            text.prompt_version.clear();
            text.persona_mode.clear();
            texts.push(text);
            r.timestamp = wall.to_rfc3339();
            r.attempts = 1;
            r.cache_defeated = self.defeat_cache;
            r.phase_wall_ms = started.elapsed().as_secs_f64() * 1000.0;
            r.end_offset_ms = r.phase_wall_ms;
            match &result {
                Ok(g) => r.set_generation(g),
                Err(e) => r.set_error(e),
            }
            r.mark_cold(reason);
            if let Some(loaded) = self.backend.loaded(m.endpoint.as_deref()).await {
                r.loaded = loaded.into_iter().find(|l| same_model(&l.name, &m.model));
            }
            out.push(r);
        }
        (out, texts)
    }

    /// What the call store keeps of a call: the request as the backend sends it and the
    /// answer, secrets redacted. (Cell, rep and attempt are the record's: the store sets them.)
    fn call_text(
        &self,
        call_id: String,
        m: &Member,
        stage: Stage,
        attempts: u32,
        req: &GenRequest,
        result: &Result<Generation, BackendError>,
    ) -> CallText {
        let b = self.backend.as_ref();
        CallText {
            call_id,
            cell_id: String::new(),
            rep: 0,
            warmup: false,
            phase: Phase::Single,
            retry: 0,
            agent: m.slot.as_str().to_string(),
            stage,
            prompt_version: m.prompt_version.as_str().to_string(),
            persona_mode: match m.persona {
                Persona::Chimera => String::new(),
                _ => m.persona_mode.as_str().to_string(),
            },
            attempts,
            request: b.wire_request(req),
            response: result.as_ref().ok().map(|g| b.redact(&g.text)),
            error: result.as_ref().err().map(|e| b.redact(&e.to_string())),
        }
    }

    fn base_record(&self, job: &PhaseJob, m: &Member, stage: Stage) -> Record {
        Record {
            experiment: job.experiment.clone(),
            run_id: job.run_id.clone(),
            arm: job.cell.arm.clone(),
            cell_id: job.cell.id.clone(),
            options: m.options.to_map(),
            agent: m.slot.as_str().to_string(),
            persona: m.persona.as_str().to_string(),
            persona_mode: Some(m.persona_mode.as_str().to_string()),
            prompt_version: Some(m.prompt_version.as_str().to_string()),
            phase: job.phase,
            stage,
            rep: job.unit.rep,
            warmup: job.unit.warmup,
            order: job.unit.order,
            timestamp: chrono::Utc::now().to_rfc3339(),
            model: m.model.clone(),
            endpoint: m
                .endpoint
                .clone()
                .or_else(|| job.endpoint.clone())
                .unwrap_or_else(|| "embedded".into()),
            attempts: 0,
            retry: job.retry,
            ..Default::default()
        }
    }

    fn call_record(
        &self,
        job: &PhaseJob,
        m: &Member,
        run: &AgentRun,
        call: &CallResult,
        epoch: Instant,
        wall: f64,
    ) -> Record {
        let mut r = self.base_record(job, m, call.stage);
        let (s, e) = call.offsets_ms(epoch);
        // The call's start on the wall clock (the record is written after the phase ends).
        r.timestamp =
            (job_wall(epoch) + chrono::Duration::microseconds((s * 1000.0) as i64)).to_rfc3339();
        r.start_offset_ms = s;
        r.end_offset_ms = e;
        r.phase_wall_ms = wall;
        r.agent_wall_ms = run.total_ms;
        r.ingest_ms = run.ingest_ms;
        r.attempts = call.attempts;
        r.cache_defeated = call.cache_defeated;
        r.call_id = Some(call.call_id.clone());
        match &call.result {
            Ok(g) => {
                r.set_generation(g);
                if r.load_ms.is_some_and(|l| l > self.cold_load_ms) {
                    r.mark_cold(ColdReason::LoadMs);
                }
            }
            Err(err) => r.set_error(err),
        }
        r
    }
}

/// Eight hex digits that differ between processes (start time and pid).
fn session_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 32) ^ (nanos >> 64) as u64;
    format!("{:08x}", (mixed ^ (mixed >> 32)) as u32)
}

/// `<cell>/<r|w><rep>/<agent>/<phase>`: the stem of an agent run's call ids (and, after the
/// run id, its nonce).
fn call_stem(job: &PhaseJob, m: &Member) -> String {
    format!(
        "{}/{}{}/{}/{}",
        job.cell.id,
        if job.unit.warmup { "w" } else { "r" },
        job.unit.rep + 1,
        m.slot.as_str(),
        job.phase.as_str()
    )
}

/// The wall-clock time of a monotonic instant (now minus the time elapsed since it).
fn job_wall(epoch: Instant) -> chrono::DateTime<chrono::Utc> {
    let ago = chrono::Duration::from_std(epoch.elapsed()).unwrap_or_default();
    chrono::Utc::now() - ago
}

/// `gemma3` names the same model as `gemma3:latest`.
fn same_model(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        if s.contains(':') {
            s.to_string()
        } else {
            format!("{s}:latest")
        }
    };
    norm(a) == norm(b)
}

impl PhaseExecutor for AgentExecutor {
    fn execute<'a>(&'a self, job: &'a PhaseJob) -> BoxFuture<'a, PhaseOutput> {
        Box::pin(async move {
            let execution = self.executions.fetch_add(1, Ordering::Relaxed);
            let mut out = PhaseOutput::default();
            let members = &job.cell.members;
            let with_endpoints: Vec<Member> = members
                .iter()
                .map(|m| Member {
                    endpoint: m.endpoint.clone().or_else(|| job.endpoint.clone()),
                    ..m.clone()
                })
                .collect();
            if let Some(reason) = self.probe_reason(job, &with_endpoints).await {
                let (probes, texts) = self.probes(job, &with_endpoints, reason, execution).await;
                out.probes = probes;
                out.calls = texts;
            }
            let (members_out, queue) = self.run_sampling_queue(job, execution).await;
            let (runs, epoch, wall) = match members_out {
                Ok(x) => x,
                Err(msg) => {
                    // The corpus vanished mid-run: every planned call is a failed record.
                    for m in members {
                        for stage in [Stage::Analysis, Stage::Report] {
                            let mut r = self.base_record(job, m, stage);
                            r.error_kind = Some("corpus".into());
                            r.error_message = Some(msg.clone());
                            out.records.push(r);
                        }
                    }
                    return out;
                }
            };
            // A reload the probe did not take (it failed, or there was none) lands in the
            // first measured call.
            let probe_took_it = !out.probes.is_empty() && out.probes.iter().all(|r| r.ok);
            let mut first_call = true;
            let planned = job.cell.arrival_offsets_ms(job.unit.rep, job.unit.warmup);
            for (i, (m, run)) in members.iter().zip(&runs).enumerate() {
                // Open loop: the agent run's send-time error, from its first call's start.
                let sent = run.calls.first().map(|c| c.offsets_ms(epoch).0);
                let timing = planned.get(i).map(|p| (*p, sent.map(|s| s - p)));
                for call in &run.calls {
                    out.calls.push(self.call_text(
                        call.call_id.clone(),
                        m,
                        call.stage,
                        call.attempts,
                        &call.request,
                        &call.result,
                    ));
                    let mut r = self.call_record(job, m, run, call, epoch, wall);
                    if let Some((p, lag)) = timing {
                        r.planned_start_ms = Some(p);
                        r.start_lag_ms = lag;
                    }
                    r.server_queue = queue;
                    if first_call && job.cold_start && !probe_took_it {
                        r.mark_cold(ColdReason::Reload);
                    }
                    first_call = false;
                    out.records.push(r);
                }
                if run.report_skipped {
                    let mut r = self.base_record(job, m, Stage::Report);
                    r.error_kind = Some(SKIPPED_KIND.into());
                    r.error_message =
                        Some("report call not attempted: the analysis call failed".into());
                    r.phase_wall_ms = wall;
                    r.agent_wall_ms = run.total_ms;
                    r.ingest_ms = run.ingest_ms;
                    out.records.push(r);
                }
                if let Some(md) = &run.report_markdown {
                    let stem = format!(
                        "{}{}",
                        m.title.to_lowercase().replace(' ', "_"),
                        match job.phase {
                            Phase::Sequential => "_sequential",
                            _ => "",
                        }
                    );
                    out.reports.push((stem, md.clone()));
                }
            }
            out
        })
    }

    /// The backend's own preflight for each model of the phase: every endpoint answers and
    /// has the model.
    fn probe<'a>(&'a self, job: &'a PhaseJob) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut models: Vec<&str> = job.cell.members.iter().map(|m| m.model.as_str()).collect();
            models.sort_unstable();
            models.dedup();
            for model in models {
                self.backend
                    .preflight(model)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    }
}
