//! The Chimera agent workflow: ingest (done once by the caller) → analysis call → report
//! call → report file, over any [`Backend`]. Pair runs start two agents together and, for a
//! real speedup figure, run the same pair back to back too.

pub mod extract;
pub mod prompts;
pub mod report_md;

use crate::backend::{Backend, BackendError, GenRequest, Generation};
use crate::corpus::Corpus;
use crate::plan::Member;
use crate::record::Stage;
use crate::spec::{PersonaMode, RetryPolicy};
use std::time::{Duration, Instant};

pub use extract::{parse_analysis, parse_analysis_chimera, parse_analysis_for, Analysis};
pub use prompts::{persona_text, COLLECTOR_PERSONA, INSIGHT_PERSONA};
pub use report_md::{ReportInput, RunMetrics};

/// What one agent run needs.
#[derive(Debug, Clone)]
pub struct AgentContext<'a> {
    /// The agent: model, options, persona, prompt version, endpoint.
    pub member: &'a Member,
    /// Already ingested (once per run, shared by every agent).
    pub corpus: &'a Corpus,
    /// Ingest time charged to this agent run (the seeds' "ingest" split), ms.
    pub ingest_ms: f64,
    /// Unique per agent run, e.g. `<run_id>/<cell>/<rep>/<agent>`; the stage is appended.
    /// Leads every prompt so no prompt cache can serve it. Empty disables it (then
    /// [`CallResult::cache_defeated`] is false).
    pub nonce: String,
    /// The stem of this agent run's call ids, e.g. `<cell>/r1/A/concurrent`; a call's id is
    /// `<stem>/<stage>` (what records and the call store key calls by).
    pub call_stem: String,
    /// The experiment's retry policy, applied to each call.
    pub retry: &'a RetryPolicy,
}

impl AgentContext<'_> {
    /// The id of this agent run's call of `stage`.
    pub fn call_id(&self, stage: Stage) -> String {
        if self.call_stem.is_empty() {
            stage.as_str().to_string()
        } else {
            format!("{}/{}", self.call_stem, stage.as_str())
        }
    }
}

/// One LLM call of an agent run, after retries.
#[derive(Debug, Clone)]
pub struct CallResult {
    /// Which call of the workflow (analysis or report).
    pub stage: Stage,
    /// `<call stem>/<stage>` (see [`AgentContext::call_stem`]).
    pub call_id: String,
    /// The request as sent by the last attempt (each attempt's prompt carries its own
    /// nonce; otherwise they are the same).
    pub request: GenRequest,
    /// When the first attempt started (monotonic clock).
    pub started_at: Instant,
    /// When the last attempt ended (retry backoff included in between).
    pub ended_at: Instant,
    /// The last attempt's generation, or its error.
    pub result: Result<Generation, BackendError>,
    /// Attempts made, including the successful one (≥ 1).
    pub attempts: u32,
    /// True when the prompt carried a unique nonce line.
    pub cache_defeated: bool,
}

impl CallResult {
    /// (start, end) in ms from `epoch` (e.g. the phase start), for records and overlap checks.
    pub fn offsets_ms(&self, epoch: Instant) -> (f64, f64) {
        let ms = |t: Instant| t.saturating_duration_since(epoch).as_secs_f64() * 1000.0;
        (ms(self.started_at), ms(self.ended_at))
    }
}

/// One agent run. Never an `Err`: failures are in the calls.
#[derive(Debug, Clone)]
pub struct AgentRun {
    /// Analysis, then report (absent when the analysis call failed).
    pub calls: Vec<CallResult>,
    /// Ingest time charged to this run (copied from [`AgentContext::ingest_ms`]), ms.
    pub ingest_ms: f64,
    /// Wall time of the analysis call, retries and backoff included, ms (client clock).
    pub analysis_ms: f64,
    /// Wall time of the report call, retries and backoff included, ms; `None` when the
    /// report call was not attempted.
    pub report_ms: Option<f64>,
    /// Ingest plus the wall time from the first call's start to the last call's end.
    pub total_ms: f64,
    /// True when the analysis call failed and the report call was therefore skipped.
    pub report_skipped: bool,
    /// The corpus summary the analysis prompt carried ([`Corpus::data_summary`]).
    pub data_summary: String,
    /// What was read from the analysis text; `None` when the analysis call failed.
    pub analysis: Option<Analysis>,
    /// The seeds' per-run metrics over the successful calls.
    pub metrics: RunMetrics,
    /// The report file; `None` unless both calls succeeded.
    pub report_markdown: Option<String>,
    /// When the analysis call started (monotonic clock; ingest is not in this span).
    pub started_at: Instant,
    /// When the last call ended.
    pub ended_at: Instant,
}

impl AgentRun {
    /// True when the run produced its report file (both calls succeeded).
    pub fn ok(&self) -> bool {
        self.report_markdown.is_some()
    }
}

/// The system prompt sent for an agent: its persona in `system` mode; nothing in `echo` mode
/// (the persona is only shown in the report, as the seed system did) or without a persona.
pub fn system_prompt(member: &Member) -> Option<&'static str> {
    match member.persona_mode {
        PersonaMode::System => persona_text(member.persona),
        PersonaMode::Echo => None,
    }
}

/// Calls the backend under the retry policy: only `retryable()` errors are retried, with
/// backoff `backoff_ms * 2^(k-1)` before retry k; every attempt is counted.
pub async fn call_with_retry(
    backend: &dyn Backend,
    req: &GenRequest,
    policy: &RetryPolicy,
) -> (Result<Generation, BackendError>, u32) {
    let (result, attempts, _) = call_attempts(backend, |_| req.clone(), policy).await;
    (result, attempts)
}

/// [`call_with_retry`] with the request of attempt k (1-based) made by `request(k)`, so that
/// each attempt can carry its own nonce. Returns the last attempt's request too.
pub async fn call_attempts(
    backend: &dyn Backend,
    request: impl Fn(u32) -> GenRequest,
    policy: &RetryPolicy,
) -> (Result<Generation, BackendError>, u32, GenRequest) {
    let max = policy.attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let req = request(attempt);
        match backend.generate(&req).await {
            Ok(g) => return (Ok(g), attempt, req),
            Err(e) if e.retryable() && attempt < max => {
                let factor = 1u64 << (attempt - 1).min(16);
                tracing::warn!(
                    target: "sweep::agent",
                    "attempt {attempt}/{max} failed ({}): {e}; retrying",
                    e.kind()
                );
                tokio::time::sleep(Duration::from_millis(
                    policy.backoff_ms.saturating_mul(factor),
                ))
                .await;
            }
            Err(e) => return (Err(e), attempt, req),
        }
    }
}

/// The nonce of attempt k of a call: the agent run's own for the first, with `/attempt<k>`
/// after it for a retry, so that no prompt cache can serve a retry what it kept from the
/// failed attempt.
pub fn attempt_nonce(nonce: &str, attempt: u32) -> String {
    if nonce.is_empty() || attempt <= 1 {
        nonce.to_string()
    } else {
        format!("{nonce}/attempt{attempt}")
    }
}

/// One call of a stage; `prompt(nonce)` builds its prompt with the attempt's nonce.
async fn stage_call(
    backend: &dyn Backend,
    ctx: &AgentContext<'_>,
    stage: Stage,
    prompt: impl Fn(&str) -> String,
) -> CallResult {
    let make = |attempt: u32| GenRequest {
        model: ctx.member.model.clone(),
        system: system_prompt(ctx.member).map(str::to_owned),
        prompt: prompt(&attempt_nonce(&ctx.nonce, attempt)),
        options: ctx.member.options.clone(),
        endpoint: ctx.member.endpoint.clone(),
    };
    let started_at = Instant::now();
    let (result, attempts, request) = call_attempts(backend, make, ctx.retry).await;
    CallResult {
        stage,
        call_id: ctx.call_id(stage),
        request,
        started_at,
        ended_at: Instant::now(),
        result,
        attempts,
        cache_defeated: !ctx.nonce.is_empty(),
    }
}

fn ms_between(a: Instant, b: Instant) -> f64 {
    b.saturating_duration_since(a).as_secs_f64() * 1000.0
}

/// Runs one agent: analysis call, then (if it succeeded) report call, then the report file.
pub async fn run_agent(backend: &dyn Backend, ctx: &AgentContext<'_>) -> AgentRun {
    let data_summary = ctx.corpus.data_summary();
    let version = ctx.member.prompt_version;
    let started_at = Instant::now();
    let analysis_call = stage_call(backend, ctx, Stage::Analysis, |nonce| {
        prompts::analysis_prompt(version, nonce, &data_summary)
    })
    .await;
    let analysis_ms = ms_between(analysis_call.started_at, analysis_call.ended_at);
    let mut calls = vec![analysis_call];
    let analysis = match &calls[0].result {
        Ok(g) => Some(parse_analysis_for(version, &g.text)),
        Err(_) => None,
    };
    let mut report_ms = None;
    if let Some(a) = &analysis {
        let call = stage_call(backend, ctx, Stage::Report, |nonce| {
            prompts::report_prompt(version, nonce, a, ctx.corpus)
        })
        .await;
        report_ms = Some(ms_between(call.started_at, call.ended_at));
        calls.push(call);
    }
    let ended_at = Instant::now();
    let total_ms = ctx.ingest_ms + ms_between(started_at, ended_at);
    let gens: Vec<&Generation> = calls
        .iter()
        .filter_map(|c| c.result.as_ref().ok())
        .collect();
    let metrics = RunMetrics::from_generations(&gens);
    let report_markdown = match (&analysis, calls.get(1).map(|c| &c.result)) {
        (Some(a), Some(Ok(report))) => {
            let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
            let ids: Vec<(&str, String)> = calls
                .iter()
                .map(|c| (c.stage.as_str(), c.call_id.clone()))
                .collect();
            let defaults = backend.defaults_label();
            Some(report_md::render(&ReportInput {
                member: ctx.member,
                date: &date,
                report_text: &report.text,
                files_analyzed: ctx.corpus.len(),
                data_summary: &data_summary,
                ingest_ms: ctx.ingest_ms,
                analysis_ms,
                report_ms: report_ms.unwrap_or_default(),
                total_ms,
                metrics: &metrics,
                analysis: a,
                persona: persona_text(ctx.member.persona),
                defaults_label: &defaults,
                calls: &ids,
            }))
        }
        _ => None,
    };
    AgentRun {
        calls,
        ingest_ms: ctx.ingest_ms,
        analysis_ms,
        report_ms,
        total_ms,
        report_skipped: analysis.is_none(),
        data_summary,
        analysis,
        metrics,
        report_markdown,
        started_at,
        ended_at,
    }
}

/// Two agent runs and the wall time they took together.
#[derive(Debug, Clone)]
pub struct PhaseRun {
    /// Agent A's run.
    pub a: AgentRun,
    /// Agent B's run.
    pub b: AgentRun,
    /// First start to last end, ms.
    pub wall_ms: f64,
    /// When the phase started (the epoch for [`CallResult::offsets_ms`]).
    pub started_at: Instant,
}

impl PhaseRun {
    /// The phase that began at `started_at` and ended now, with the two agents' runs.
    fn ended_now(started_at: Instant, a: AgentRun, b: AgentRun) -> Self {
        PhaseRun {
            a,
            b,
            wall_ms: ms_between(started_at, Instant::now()),
            started_at,
        }
    }
}

/// A pair measured both ways.
#[derive(Debug, Clone)]
pub struct PairRun {
    /// A and B started together.
    pub concurrent: PhaseRun,
    /// A then B, back to back.
    pub sequential: PhaseRun,
    /// sequential wall / concurrent wall (both measured).
    pub speedup: f64,
    /// speedup / 2 (1.0 = perfect overlap of two agents).
    pub efficiency: f64,
}

/// Starts A and B together (`tokio::join!`); each uses its own options and endpoint.
/// Both futures are polled by the calling task, so a backend must not block the thread
/// while generating (the embedded engine decodes on its own thread).
pub async fn run_pair(
    backend: &dyn Backend,
    a: &AgentContext<'_>,
    b: &AgentContext<'_>,
) -> PhaseRun {
    let started_at = Instant::now();
    let (ra, rb) = tokio::join!(run_agent(backend, a), run_agent(backend, b));
    PhaseRun::ended_now(started_at, ra, rb)
}

/// Starts every agent of a unit together (a workload level of N agents): all futures are
/// polled by the calling task, as in [`run_pair`]. Runs come back in the agents' order.
pub async fn run_together(backend: &dyn Backend, agents: &[AgentContext<'_>]) -> Vec<AgentRun> {
    futures_util::future::join_all(agents.iter().map(|a| run_agent(backend, a))).await
}

/// An open-loop unit: agent k starts `offsets_ms[k]` after `epoch`, whether the earlier
/// ones have answered or not (all futures polled together, as in [`run_together`]).
pub async fn run_on_schedule(
    backend: &dyn Backend,
    agents: &[AgentContext<'_>],
    epoch: Instant,
    offsets_ms: &[f64],
) -> Vec<AgentRun> {
    futures_util::future::join_all(agents.iter().zip(offsets_ms).map(|(a, off)| async move {
        tokio::time::sleep_until((epoch + std::time::Duration::from_secs_f64(off / 1000.0)).into())
            .await;
        run_agent(backend, a).await
    }))
    .await
}

/// Every agent of a unit one after the other: the measured sequential baseline of a
/// workload level's speedup.
pub async fn run_one_by_one(backend: &dyn Backend, agents: &[AgentContext<'_>]) -> Vec<AgentRun> {
    let mut runs = Vec::with_capacity(agents.len());
    for a in agents {
        runs.push(run_agent(backend, a).await);
    }
    runs
}

/// A then B, back to back: the measured sequential baseline.
pub async fn run_sequential(
    backend: &dyn Backend,
    a: &AgentContext<'_>,
    b: &AgentContext<'_>,
) -> PhaseRun {
    let started_at = Instant::now();
    let ra = run_agent(backend, a).await;
    let rb = run_agent(backend, b).await;
    PhaseRun::ended_now(started_at, ra, rb)
}

/// The concurrent phase, then the sequential one, with speedup and efficiency. Nonces get
/// `/concurrent` or `/sequential` appended so the second phase cannot hit the cache of the
/// first. (The runner may instead call [`run_pair`] and [`run_sequential`] itself, e.g. to
/// alternate their order across repetitions.)
pub async fn run_pair_measured(
    backend: &dyn Backend,
    a: &AgentContext<'_>,
    b: &AgentContext<'_>,
) -> PairRun {
    fn tagged<'c>(c: &AgentContext<'c>, tag: &str) -> AgentContext<'c> {
        let mut c = c.clone();
        if !c.nonce.is_empty() {
            c.nonce = format!("{}/{tag}", c.nonce);
        }
        c.call_stem = format!("{}/{tag}", c.call_stem);
        c
    }
    let concurrent = run_pair(backend, &tagged(a, "concurrent"), &tagged(b, "concurrent")).await;
    let sequential =
        run_sequential(backend, &tagged(a, "sequential"), &tagged(b, "sequential")).await;
    let speedup = if concurrent.wall_ms > 0.0 {
        sequential.wall_ms / concurrent.wall_ms
    } else {
        f64::NAN
    };
    PairRun {
        concurrent,
        sequential,
        speedup,
        efficiency: speedup / 2.0,
    }
}
