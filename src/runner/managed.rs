//! The phase executor under `[server]`: before a phase, the server of the phase's
//! configuration is running (started, or restarted after a configuration change or an exit);
//! a pair whose agents differ in what loads the model gets a second server for Agent B; a
//! phase that met a server exit runs again on the restarted server, as a phase that met an
//! outage does.

use super::event_loop::MAX_OUTAGE_RERUNS;
use super::{PhaseExecutor, PhaseJob, PhaseOutput};
use crate::backend::BoxFuture;
use crate::server::{Lease, ServerError, ServerManager};
use crate::spec::ModelOptions;
use std::sync::Arc;

pub(crate) struct ManagedExecutor {
    inner: Arc<dyn PhaseExecutor>,
    primary: Arc<ServerManager>,
    /// Agent B's server in the pairs that need two.
    secondary: Option<Arc<ServerManager>>,
}

/// The leases one phase holds, and the job pointed at their addresses.
struct Held<'a> {
    leases: Vec<Lease<'a>>,
    job: PhaseJob,
}

impl ManagedExecutor {
    pub fn new(
        inner: Arc<dyn PhaseExecutor>,
        primary: Arc<ServerManager>,
        secondary: Option<Arc<ServerManager>>,
    ) -> Self {
        ManagedExecutor {
            inner,
            primary,
            secondary,
        }
    }

    /// The configuration of the phase's (first) server, and Agent B's where it needs its own.
    fn configs(
        &self,
        job: &PhaseJob,
    ) -> (ModelOptions, Option<(Arc<ServerManager>, ModelOptions)>) {
        let m = &job.cell.members;
        let a = m
            .first()
            .map(|m| self.primary.config_of(&m.options))
            .unwrap_or_default();
        let b = match m.as_slice() {
            [_, y] if job.cell.needs_two_servers() => self.secondary.clone().map(|s| {
                let c = s.config_of(&y.options);
                (s, c)
            }),
            _ => None,
        };
        (a, b)
    }

    /// Always the primary first, then the secondary: one order, so no two phases wait on
    /// each other.
    async fn hold<'a>(
        &'a self,
        job: &PhaseJob,
        second: &'a Option<(Arc<ServerManager>, ModelOptions)>,
        a: &ModelOptions,
    ) -> Result<Held<'a>, ServerError> {
        let mut held = Held {
            leases: vec![self.primary.acquire(a).await?],
            job: job.clone(),
        };
        if let Some((s, b)) = second {
            held.leases.push(s.acquire(b).await?);
            if let Some(m) = held.job.cell.members.get_mut(1) {
                m.endpoint = Some(s.base_url());
            }
        }
        Ok(held)
    }
}

impl PhaseExecutor for ManagedExecutor {
    fn execute<'a>(&'a self, job: &'a PhaseJob) -> BoxFuture<'a, PhaseOutput> {
        Box::pin(async move {
            let (a, second) = self.configs(job);
            let mut reruns = job.outage_reruns;
            loop {
                let (leases, mut run) = match self.hold(job, &second, &a).await {
                    Ok(h) => (h.leases, h.job),
                    Err(e) => {
                        // The calls fail as unreachable and the outage policy takes over
                        // (its probe tries the start again).
                        tracing::warn!("managed server: {e}");
                        (Vec::new(), job.clone())
                    }
                };
                run.outage_reruns = reruns;
                let out = self.inner.execute(&run).await;
                let died = leases.iter().any(|l| l.died());
                if !died {
                    for l in &leases {
                        l.served(&job.cell.id);
                    }
                }
                drop(leases);
                if died && reruns < MAX_OUTAGE_RERUNS {
                    reruns += 1;
                    tracing::warn!(
                        "a managed server exited during {} {:?} of cell {}; restarting it and \
                         running the phase again",
                        if job.unit.warmup { "warm-up" } else { "rep" },
                        job.phase,
                        job.cell.id
                    );
                    continue;
                }
                return out;
            }
        })
    }

    fn probe<'a>(&'a self, job: &'a PhaseJob) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let (a, second) = self.configs(job);
            let held = self
                .hold(job, &second, &a)
                .await
                .map_err(|e| e.to_string())?;
            let r = self.inner.probe(&held.job).await;
            drop(held);
            r
        })
    }
}
