//! Where the model really sat: what the server said after each reload probe (Ollama
//! `/api/ps` `size`/`size_vram` on the probe's `loaded`; the layer count from `/api/show`,
//! the embedded engine's offloaded layers and llama.cpp's `/props` on its `server_state`),
//! per cell, and the warnings when it was not where the options asked: `num_gpu` above the
//! model's layer count (the same placement as any other value above it), a partial offload,
//! and a partial offload although every layer was asked for (VRAM pressure).

use crate::backend::EnginePlacement;
use crate::record::{Phase, Record};
use crate::spec::OptionValue;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An offload fraction at or above this is "all in VRAM" (Ollama's sizes include buffers
/// that may stay in host memory).
pub const FULL: f64 = 0.99;

/// What one reload probe found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub(crate) cell_id: String,
    pub(crate) agent: String,
    pub(crate) model: String,
    pub(crate) num_gpu: Option<i64>,
    /// `size_vram / size` (Ollama), or offloaded / total layers (embedded engine).
    pub fraction: Option<f64>,
    pub(crate) size: Option<u64>,
    pub(crate) size_vram: Option<u64>,
    pub(crate) layers_offloaded: Option<u64>,
    pub(crate) layers_total: Option<u64>,
    /// The engine said it sees no GPU device (the embedded engine's `gpu_devices` is empty):
    /// nothing can be in VRAM, so a zero offload with `num_gpu` unset is no news.
    #[serde(default)]
    pub(crate) no_gpu: bool,
    /// Whether the engine was built with a GPU backend (the embedded engine's `cuda_build`);
    /// `None` where the server does not say.
    #[serde(default)]
    pub(crate) gpu_build: Option<bool>,
}

/// The placement a reload probe recorded, if it recorded any.
pub fn placement(r: &Record) -> Option<Placement> {
    if r.phase != Phase::Reload || (r.loaded.is_none() && r.server_state.is_none()) {
        return None;
    }
    let engine = r
        .server_state
        .as_ref()
        .and_then(EnginePlacement::from_state)
        .unwrap_or_default();
    let (layers_offloaded, layers_total) = (engine.layers_offloaded, engine.layers_total);
    let loaded = r.loaded.as_ref();
    let fraction = loaded.and_then(|l| l.offload_fraction()).or_else(|| {
        match (layers_offloaded, layers_total) {
            (Some(o), Some(t)) if t > 0 => Some(o as f64 / t as f64),
            _ => None,
        }
    });
    Some(Placement {
        cell_id: r.cell_id.clone(),
        agent: r.agent.clone(),
        model: r.model.clone(),
        num_gpu: match r.options.get("num_gpu") {
            Some(OptionValue::Int(n)) => Some(*n),
            _ => None,
        },
        fraction,
        size: loaded.and_then(|l| l.size),
        size_vram: loaded.and_then(|l| l.size_vram),
        layers_offloaded,
        layers_total,
        no_gpu: engine.gpu_devices.as_ref().is_some_and(Vec::is_empty),
        gpu_build: engine.cuda_build,
    })
}

/// A cell's placements over its reloads (one member of a pair: `agent` A or B).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CellPlacement {
    pub(crate) cell_id: String,
    pub(crate) agent: String,
    pub(crate) model: String,
    pub(crate) num_gpu: Option<i64>,
    pub(crate) probes: u32,
    pub(crate) fraction_min: Option<f64>,
    pub(crate) fraction_max: Option<f64>,
    /// Median over the probes.
    pub fraction: Option<f64>,
    pub(crate) size_vram: Option<u64>,
    pub(crate) size: Option<u64>,
    pub(crate) layers_offloaded: Option<u64>,
    pub(crate) layers_total: Option<u64>,
    /// Every probe's engine saw no GPU device.
    #[serde(default)]
    pub(crate) no_gpu: bool,
    /// Whether the engine was built with a GPU backend, where it says.
    #[serde(default)]
    pub(crate) gpu_build: Option<bool>,
}

fn median_u64(v: &mut [u64]) -> Option<u64> {
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

/// Per (cell, agent) from a run's records, in cell order.
pub fn by_cell(records: &[Record]) -> Vec<CellPlacement> {
    let ps: Vec<Placement> = records
        .iter()
        .filter(|r| !r.superseded)
        .filter_map(placement)
        .collect();
    by_placements(&ps)
}

/// Per (cell, agent), in cell order.
pub fn by_placements(placements: &[Placement]) -> Vec<CellPlacement> {
    let mut groups: BTreeMap<(String, String), Vec<Placement>> = BTreeMap::new();
    for p in placements.iter().cloned() {
        groups
            .entry((p.cell_id.clone(), p.agent.clone()))
            .or_default()
            .push(p);
    }
    groups
        .into_iter()
        .map(|((cell_id, agent), ps)| {
            let mut fr: Vec<f64> = ps.iter().filter_map(|p| p.fraction).collect();
            fr.sort_by(f64::total_cmp);
            let mut vram: Vec<u64> = ps.iter().filter_map(|p| p.size_vram).collect();
            let mut size: Vec<u64> = ps.iter().filter_map(|p| p.size).collect();
            let mut off: Vec<u64> = ps.iter().filter_map(|p| p.layers_offloaded).collect();
            CellPlacement {
                model: ps[0].model.clone(),
                num_gpu: ps[0].num_gpu,
                probes: ps.len() as u32,
                fraction_min: fr.first().copied(),
                fraction_max: fr.last().copied(),
                fraction: fr.get(fr.len() / 2).copied(),
                size_vram: median_u64(&mut vram),
                size: median_u64(&mut size),
                layers_offloaded: median_u64(&mut off),
                layers_total: ps.iter().find_map(|p| p.layers_total),
                no_gpu: ps.iter().all(|p| p.no_gpu),
                gpu_build: ps.iter().find_map(|p| p.gpu_build),
                cell_id,
                agent,
            }
        })
        .collect()
}

fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / f64::from(1u32 << 30))
}

/// The warnings for the cells whose model was not (fully) where the options asked.
pub fn warnings(cells: &[CellPlacement]) -> Vec<String> {
    let mut out = Vec::new();
    for c in cells {
        let who = if c.agent == "single" {
            format!("cell {}", c.cell_id)
        } else {
            format!("cell {} agent {}", c.cell_id, c.agent)
        };
        let ng = c
            .num_gpu
            .map(|n| format!("num_gpu={n}"))
            .unwrap_or_else(|| "num_gpu unset".into());
        if let (Some(n), Some(l)) = (c.num_gpu, c.layers_total) {
            if n > l as i64 {
                out.push(format!(
                    "{who}: {ng} is above {}'s {l} layers: it asks for the same placement as \
                     num_gpu={l}, every layer (levels above the layer count do not differ)",
                    c.model
                ));
            }
        }
        if let (Some(n), Some(got)) = (c.num_gpu, c.layers_offloaded) {
            let want = c.layers_total.map_or(n as u64, |l| (n as u64).min(l));
            if got < want {
                let why = match (c.gpu_build, c.no_gpu) {
                    (Some(false), _) => "this sweep was built without the `cuda` feature",
                    (Some(true), true) => {
                        "the engine saw no usable GPU: no device, or a driver older than the \
                         build's CUDA runtime"
                    }
                    _ => "a build without the `cuda` feature, or no usable GPU",
                };
                out.push(format!(
                    "{who}: {ng} asked for {want} layers on the GPU but the engine offloaded {got}{} \
                     ({why})",
                    c.layers_total.map(|l| format!(" of {l}")).unwrap_or_default()
                ));
                continue;
            }
        }
        if c.no_gpu && c.num_gpu.is_none() {
            continue; // a CPU engine asked for nothing on a GPU and put nothing there
        }
        let Some(f) = c.fraction_min else { continue };
        let want_all = match (c.num_gpu, c.layers_total) {
            (None, _) => true,
            (Some(n), Some(l)) => n >= l as i64,
            (Some(_), None) => false,
        };
        let sizes = match (c.size_vram, c.size) {
            (Some(v), Some(s)) => format!(" ({} of {})", gib(v), gib(s)),
            _ => String::new(),
        };
        let spread = match (c.fraction_min, c.fraction_max) {
            (Some(a), Some(b)) if b - a > 0.05 => {
                format!(
                    "; it varied between reloads, {:.0}%–{:.0}%",
                    a * 100.0,
                    b * 100.0
                )
            }
            _ => String::new(),
        };
        if f < FULL && c.num_gpu.is_none() {
            out.push(format!(
                "{who}: only {:.0}% of {}{sizes} was in VRAM with num_gpu unset: Ollama keeps a \
                 model loaded with another num_gpu when a request leaves num_gpu unset (an \
                 earlier cell's placement), or VRAM was short (another model or process holds \
                 GPU memory){spread}",
                f * 100.0,
                c.model
            ));
        } else if f < FULL && want_all {
            out.push(format!(
                "{who}: only {:.0}% of {}{sizes} was in VRAM although {ng} asks for every layer: \
                 a partial offload from VRAM pressure (another model or process holds GPU \
                 memory){spread}",
                f * 100.0,
                c.model
            ));
        } else if f < FULL && c.num_gpu.is_some_and(|n| n > 0) {
            out.push(format!(
                "{who}: partial offload, {ng} put {:.0}% of {}{sizes} in VRAM{}; the rest runs \
                 on the CPU{spread}",
                f * 100.0,
                c.model,
                c.layers_total
                    .map(|l| format!(" ({} of {l} layers)", c.num_gpu.unwrap_or(0).min(l as i64)))
                    .unwrap_or_default()
            ));
        } else if !spread.is_empty() {
            out.push(format!("{who}: {}{}", c.model, &spread[1..]));
        }
    }
    out
}

/// The layer count Ollama offloads for `model`: `<arch>.block_count` from `POST /api/show`
/// `model_info`, plus the output layer (ollama/ollama `llm/server.go`: block count + 1).
pub async fn ollama_layers(client: &reqwest::Client, base: &str, model: &str) -> Option<u64> {
    let resp = client
        .post(format!("{}/api/show", base.trim_end_matches('/')))
        .json(&serde_json::json!({ "model": model }))
        .send()
        .await
        .ok()?
        .error_for_status()
        .ok()?;
    let v: serde_json::Value = resp.json().await.ok()?;
    let info = v.get("model_info")?.as_object()?;
    info.iter()
        .find(|(k, _)| k.ends_with(".block_count"))
        .and_then(|(_, b)| b.as_u64())
        .map(|b| b + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::LoadedModel;

    fn probe(
        cell: &str,
        num_gpu: Option<i64>,
        size: u64,
        vram: u64,
        layers: Option<u64>,
    ) -> Record {
        let mut r = Record {
            cell_id: cell.into(),
            agent: "single".into(),
            model: "gemma3:latest".into(),
            phase: Phase::Reload,
            loaded: Some(LoadedModel {
                name: "gemma3:latest".into(),
                size: Some(size),
                size_vram: Some(vram),
                ..Default::default()
            }),
            server_state: layers.map(|l| serde_json::json!({ "layers_total": l })),
            ..Default::default()
        };
        if let Some(n) = num_gpu {
            r.options.insert("num_gpu".into(), OptionValue::Int(n));
        }
        r
    }

    #[test]
    fn partial_offload_above_layer_count_and_vram_pressure_are_told_apart() {
        let recs = vec![
            probe("c10", Some(10), 3500, 1000, Some(35)),
            probe("c80", Some(80), 3500, 3500, Some(35)),
            probe("auto", None, 3500, 2100, Some(35)),
            probe("full", None, 3500, 3500, Some(35)),
            probe("c99", Some(99), 3500, 3000, Some(35)),
        ];
        let cells = by_cell(&recs);
        assert_eq!(cells.len(), 5);
        let c10 = cells.iter().find(|c| c.cell_id == "c10").unwrap();
        assert!((c10.fraction.unwrap() - 1000.0 / 3500.0).abs() < 1e-12);
        let w = warnings(&cells);
        assert_eq!(w.len(), 5, "{w:#?}");
        assert!(w
            .iter()
            .any(|x| x.starts_with("cell c99: only 86%") && x.contains("VRAM pressure")));
        assert!(w.iter().any(
            |x| x.starts_with("cell c10: partial offload, num_gpu=10 put 29%")
                && x.contains("(10 of 35 layers)")
        ));
        assert!(w
            .iter()
            .any(|x| x.starts_with("cell c80: num_gpu=80 is above gemma3:latest's 35 layers")));
        assert!(w
            .iter()
            .any(|x| x.starts_with("cell auto: only 60%") && x.contains("num_gpu unset")));
    }

    /// The type the embedded engine writes is the one the check reads: a field renamed on
    /// one side cannot silently turn the offload check off.
    #[test]
    fn the_writers_placement_is_what_the_check_reads() {
        let written = EnginePlacement {
            gpu_layers_requested: Some(8),
            layers_offloaded: Some(3),
            layers_total: Some(19),
            gpu_devices: Some(vec!["CUDA0: NVIDIA H100 (81559 MiB)".into()]),
            cuda_build: Some(true),
        };
        let mut r = probe("e", Some(8), 1, 1, None);
        r.loaded = None;
        r.server_state = Some(written.to_state());
        let p = placement(&r).unwrap();
        assert_eq!(
            (p.layers_offloaded, p.layers_total, p.no_gpu, p.gpu_build),
            (Some(3), Some(19), false, Some(true))
        );
        assert_eq!(p.fraction, Some(3.0 / 19.0));
        // A llama-server's /props state carries no placement.
        let props = serde_json::json!({"props": {"n_ctx": 4096, "total_slots": 1}});
        assert_eq!(EnginePlacement::from_state(&props), None);
    }

    #[test]
    fn an_engine_that_offloaded_fewer_layers_than_asked_is_named() {
        let mut r = probe("e8", Some(8), 1, 1, None);
        r.loaded = None;
        r.server_state = Some(serde_json::json!({"layers_offloaded": 0, "layers_total": 19}));
        let w = warnings(&by_cell(&[r]));
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("asked for 8 layers on the GPU but the engine offloaded 0 of 19"),
            "{}",
            w[0]
        );
        // The embedded engine on a machine without a GPU: with num_gpu unset it asked for
        // nothing on a GPU (the quickstart), so no warning; with num_gpu set, the one above.
        let mut cpu = probe("cpu", None, 1, 1, None);
        cpu.loaded = None;
        cpu.server_state = Some(serde_json::json!({
            "layers_offloaded": 0, "layers_total": 19, "gpu_devices": [], "cuda_build": false
        }));
        let cells = by_cell(&[cpu.clone()]);
        assert!(cells[0].no_gpu && cells[0].fraction == Some(0.0));
        assert!(warnings(&cells).is_empty(), "{:?}", warnings(&cells));
        cpu.options.insert("num_gpu".into(), OptionValue::Int(80));
        let w = warnings(&by_cell(&[cpu.clone()]));
        assert_eq!(w.len(), 2, "above the layers, none offloaded");
        assert!(
            w[1].ends_with("(this sweep was built without the `cuda` feature)"),
            "{}",
            w[1]
        );
        // A `cuda` build that saw no device (what scripts/build-cuda.sh's binary does on a
        // machine without an NVIDIA driver: "CUDA driver version is insufficient").
        cpu.server_state = Some(serde_json::json!({
            "layers_offloaded": 0, "layers_total": 19, "gpu_devices": [], "cuda_build": true
        }));
        let w = warnings(&by_cell(&[cpu]));
        assert!(
            w[1].ends_with("(the engine saw no usable GPU: no device, or a driver older than the build's CUDA runtime)"),
            "{}",
            w[1]
        );
        let not_probe = Record {
            phase: Phase::Single,
            ..probe("x", None, 1, 0, None)
        };
        assert!(placement(&not_probe).is_none());
    }
}
