//! The agent executor: runs a phase's agents over a backend and turns every call (ok,
//! failed, or skipped after a failed analysis) into exactly one record.

use super::{PhaseExecutor, PhaseJob, PhaseOutput};
use crate::agent::{self, AgentContext, AgentRun, CallResult};
use crate::backend::{Backend, BoxFuture};
use crate::corpus::Corpus;
use crate::plan::Member;
use crate::record::{Phase, Record, Stage};
use crate::spec::{CorpusConfig, RetryPolicy};
use std::sync::Arc;
use std::time::Instant;

/// Error kind stored for a report call that was not attempted because the analysis failed.
pub const SKIPPED_KIND: &str = "skipped_after_failure";

pub struct AgentExecutor {
    pub backend: Arc<dyn Backend>,
    pub corpus: CorpusConfig,
    pub retry: RetryPolicy,
    /// Recorded in every record (false only if a user turns nonces off).
    pub defeat_cache: bool,
}

impl AgentExecutor {
    /// Each agent run ingests the corpus itself, as the seed agents did; the time is its own.
    fn ingest(&self) -> (Result<Corpus, String>, f64) {
        let t = Instant::now();
        let c = Corpus::load(&self.corpus).map_err(|e| e.to_string());
        (c, t.elapsed().as_secs_f64() * 1000.0)
    }

    fn nonce(&self, job: &PhaseJob, m: &Member) -> String {
        if !self.defeat_cache {
            return String::new();
        }
        format!(
            "{}/{}/{}{}/{}/{}",
            job.run_id,
            job.cell.id,
            if job.unit.warmup { "w" } else { "r" },
            job.unit.rep + 1,
            m.slot.as_str(),
            job.phase.as_str()
        )
    }

    async fn run_members(&self, job: &PhaseJob) -> Result<(Vec<AgentRun>, Instant, f64), String> {
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
        let nonces: Vec<String> = members.iter().map(|m| self.nonce(job, m)).collect();
        let ctxs: Vec<AgentContext<'_>> = members
            .iter()
            .zip(&corpora)
            .zip(&nonces)
            .map(|((m, (c, ms)), n)| AgentContext {
                member: m,
                corpus: c,
                ingest_ms: *ms,
                nonce: n.clone(),
                retry: &self.retry,
            })
            .collect();
        let backend = self.backend.as_ref();
        let started = Instant::now();
        let runs = match job.phase {
            Phase::Single => vec![agent::run_agent(backend, &ctxs[0]).await],
            Phase::Concurrent => {
                let p = agent::run_pair(backend, &ctxs[0], &ctxs[1]).await;
                vec![p.a, p.b]
            }
            Phase::Sequential => {
                let p = agent::run_sequential(backend, &ctxs[0], &ctxs[1]).await;
                vec![p.a, p.b]
            }
        };
        let wall = started.elapsed().as_secs_f64() * 1000.0;
        Ok((runs, started, wall))
    }

    fn base_record(&self, job: &PhaseJob, m: &Member, stage: Stage) -> Record {
        Record {
            experiment: job.experiment.clone(),
            run_id: job.run_id.clone(),
            arm: job.cell.arm.clone(),
            cell_id: job.cell.id.clone(),
            options: m.options.to_map(),
            agent: m.slot.as_str().to_string(),
            persona: format!("{:?}", m.persona).to_lowercase(),
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
        r.start_offset_ms = s;
        r.end_offset_ms = e;
        r.phase_wall_ms = wall;
        r.agent_wall_ms = run.total_ms;
        r.ingest_ms = run.ingest_ms;
        r.attempts = call.attempts;
        r.cache_defeated = call.cache_defeated;
        match &call.result {
            Ok(g) => r.set_generation(g),
            Err(err) => r.set_error(err),
        }
        r
    }
}

impl PhaseExecutor for AgentExecutor {
    fn execute<'a>(&'a self, job: &'a PhaseJob) -> BoxFuture<'a, PhaseOutput> {
        Box::pin(async move {
            let mut out = PhaseOutput::default();
            let members = &job.cell.members;
            let (runs, epoch, wall) = match self.run_members(job).await {
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
            let mut first_call = true;
            for (m, run) in members.iter().zip(&runs) {
                for call in &run.calls {
                    let mut r = self.call_record(job, m, run, call, epoch, wall);
                    if first_call && job.cold_start {
                        r.cold = true;
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
                        m.title().to_lowercase().replace(' ', "_"),
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
}
