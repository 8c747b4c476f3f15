//! The runner's side of telemetry: a phase executor wrapped so that every record of a phase
//! gets the GPUs' summary over its own call window, every reload probe what the server says
//! about where the model sat, and the session's telemetry is written when the run ends.

use super::{PhaseExecutor, PhaseJob, PhaseOutput};
use crate::backend::{Backend, BoxFuture};
use crate::record::Record;
use crate::telemetry::{offload, Placement, Session, Telemetry};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A phase executor with telemetry around it.
pub struct Observed {
    inner: Arc<dyn PhaseExecutor>,
    backend: Arc<dyn Backend>,
    telemetry: Arc<Telemetry>,
    /// Ask Ollama's `/api/show` for the layer count (the backend is Ollama).
    ollama: bool,
    client: reqwest::Client,
    layers: Mutex<HashMap<(String, String), Option<u64>>>,
    placements: Mutex<Vec<Placement>>,
}

impl Observed {
    pub fn new(
        inner: Arc<dyn PhaseExecutor>,
        backend: Arc<dyn Backend>,
        telemetry: Arc<Telemetry>,
        ollama: bool,
    ) -> Self {
        Self {
            inner,
            backend,
            telemetry,
            ollama,
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            layers: Mutex::new(HashMap::new()),
            placements: Mutex::new(Vec::new()),
        }
    }

    /// The layer count of `model` on the Ollama server at `endpoint`, asked once.
    async fn ollama_layers(&self, endpoint: &str, model: &str) -> Option<u64> {
        let key = (endpoint.to_string(), model.to_string());
        if let Some(v) = self.layers.lock().ok()?.get(&key) {
            return *v;
        }
        let v = offload::ollama_layers(&self.client, endpoint, model).await;
        if let Ok(mut m) = self.layers.lock() {
            m.insert(key, v);
        }
        v
    }

    /// What the server says about its setup, on each reload probe.
    async fn describe_probes(&self, probes: &mut [Record]) {
        for r in probes.iter_mut() {
            let endpoint = (r.endpoint != "embedded").then(|| r.endpoint.clone());
            r.server_state = self.backend.server_state(endpoint.as_deref()).await;
            if self.ollama && r.server_state.is_none() {
                if let Some(e) = endpoint.as_deref() {
                    r.server_state = self.ollama_layers(e, &r.model).await.map(|l| {
                        crate::backend::EnginePlacement {
                            layers_total: Some(l),
                            ..Default::default()
                        }
                        .to_state()
                    });
                }
            }
            if let Some(p) = offload::placement(r) {
                if let Ok(mut v) = self.placements.lock() {
                    v.push(p);
                }
            }
        }
    }

    /// Attaches the GPU windows of one group of records (a thread may wait for a sample).
    async fn attach(&self, records: Vec<Record>) -> Vec<Record> {
        if records.is_empty() {
            return records;
        }
        let t = self.telemetry.clone();
        let fallback = records.clone();
        tokio::task::spawn_blocking(move || {
            let mut records = records;
            t.attach(&mut records);
            records
        })
        .await
        .unwrap_or(fallback)
    }

    /// Stops the sampler and writes the session's files into `run_dir`; the session's
    /// warnings (a busy machine, models not where the options asked).
    pub fn finish(&self, run_dir: &Path) -> Option<Session> {
        let placements = self
            .placements
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        match self.telemetry.finish(run_dir, placements) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("telemetry: {e}");
                None
            }
        }
    }
}

impl PhaseExecutor for Observed {
    fn execute<'a>(&'a self, job: &'a PhaseJob) -> BoxFuture<'a, PhaseOutput> {
        Box::pin(async move {
            let mut out = self.inner.execute(job).await;
            self.describe_probes(&mut out.probes).await;
            out.probes = self.attach(std::mem::take(&mut out.probes)).await;
            out.records = self.attach(std::mem::take(&mut out.records)).await;
            out
        })
    }

    fn probe<'a>(&'a self, job: &'a PhaseJob) -> BoxFuture<'a, Result<(), String>> {
        self.inner.probe(job)
    }
}
