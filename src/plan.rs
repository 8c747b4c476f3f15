//! The plan: arms expanded into cells, cells × repetitions (+ warm-up) into ordered units.
//!
//! Cell ids are derived from the arm and the options alone, so they are stable across runs
//! and machines (that is what `sweep compare` matches on). Ordering is seeded and
//! reproducible; reload groups keep model reloads (num_ctx/num_gpu/model changes) rare.

use crate::spec::{AgentKind, ModelOptions, Order, Persona, Slot, Spec};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// LLM calls one agent run makes (analysis, then report).
pub const CALLS_PER_AGENT_RUN: usize = 2;

/// One agent inside a cell, with its final options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub slot: Slot,
    pub persona: Persona,
    pub options: ModelOptions,
    pub model: String,
    /// Endpoint override; `None` uses the backend's endpoints.
    pub endpoint: Option<String>,
}

impl Member {
    /// Report title, in the seeds' words: "Chimera Agent", "Chimera Agent B", "Chimera Insight",
    /// or "Baseline Agent" when no options are sent.
    pub fn title(&self) -> String {
        let base = if self.options.is_empty() {
            "Baseline"
        } else {
            "Chimera"
        };
        match (self.persona, self.slot) {
            (Persona::Insight, _) => format!("{base} Insight"),
            (Persona::Chimera, Slot::Single) => format!("{base} Agent"),
            (Persona::Chimera, slot) => format!("{base} Agent {}", slot.as_str()),
        }
    }

    /// What forces the server to reload the model when it changes.
    pub fn reload_key(&self) -> String {
        let show = |v: Option<u32>| v.map(|x| x.to_string()).unwrap_or_else(|| "default".into());
        format!(
            "{} num_ctx={} num_gpu={}",
            self.model,
            show(self.options.num_ctx),
            show(self.options.num_gpu)
        )
    }
}

/// One point of the grid: an arm with concrete options for each of its agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// `<arm>-<8 hex>`: stable across runs and machines.
    pub id: String,
    pub arm: String,
    pub agent: AgentKind,
    /// The grid point (factor values for tables).
    pub point: ModelOptions,
    pub members: Vec<Member>,
    pub reload_key: String,
}

impl Cell {
    /// LLM calls in one unit of this cell. A pair runs concurrently, then back to back
    /// (the measured sequential time that makes speedup real).
    pub fn calls_per_unit(&self) -> usize {
        match self.agent {
            AgentKind::Single => CALLS_PER_AGENT_RUN,
            AgentKind::Pair => 2 * self.members.len() * CALLS_PER_AGENT_RUN,
        }
    }

    /// `num_ctx=512, temperature=0.6` or `defaults`, for people.
    pub fn label(&self) -> String {
        match self.agent {
            AgentKind::Single => {
                let c = self.members[0].options.canonical();
                if c.is_empty() {
                    "defaults".into()
                } else {
                    c.replace(',', ", ")
                }
            }
            AgentKind::Pair => self
                .members
                .iter()
                .map(|m| {
                    let c = m.options.canonical();
                    format!(
                        "{}: {}",
                        m.slot.as_str(),
                        if c.is_empty() { "defaults".into() } else { c }
                    )
                })
                .collect::<Vec<_>>()
                .join(" | "),
        }
    }
}

/// One (cell, repetition) to execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    /// Index into [`Plan::cells`].
    pub cell: usize,
    /// 0-based repetition index, counted separately for warm-up and measured runs.
    pub rep: u32,
    pub warmup: bool,
    /// Position in the run order.
    pub order: usize,
}

/// Cells sharing a reload key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadGroup {
    pub key: String,
    pub cells: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub experiment: String,
    pub cells: Vec<Cell>,
    pub units: Vec<Unit>,
    pub groups: Vec<ReloadGroup>,
    pub shard: Option<Shard>,
}

/// Deterministic partition of cells: shard `index` of `count` (0-based index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl std::str::FromStr for Shard {
    type Err = String;
    /// Parses `i/N` with 0 ≤ i < N.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || format!("expected a shard as i/N with 0 ≤ i < N (e.g. 0/4), found {s:?}");
        let (i, n) = s.split_once('/').ok_or_else(err)?;
        let index: u32 = i.trim().parse().map_err(|_| err())?;
        let count: u32 = n.trim().parse().map_err(|_| err())?;
        if count == 0 || index >= count {
            return Err(err());
        }
        Ok(Shard { index, count })
    }
}

impl Plan {
    /// Expands every arm, orders the units, and (optionally) keeps one shard's cells.
    pub fn build(spec: &Spec, shard: Option<Shard>) -> Plan {
        let mut cells = expand_cells(spec);
        if let Some(sh) = shard {
            let mut ids: Vec<&str> = cells.iter().map(|c| c.id.as_str()).collect();
            ids.sort_unstable();
            let keep: Vec<String> = ids
                .iter()
                .enumerate()
                .filter(|(i, _)| *i as u32 % sh.count == sh.index)
                .map(|(_, id)| id.to_string())
                .collect();
            cells.retain(|c| keep.contains(&c.id));
        }
        let groups = reload_groups(&cells);
        let units = order_units(spec, &cells, &groups);
        Plan {
            experiment: spec.experiment.name.clone(),
            cells,
            units,
            groups,
            shard,
        }
    }

    pub fn total_calls(&self) -> usize {
        self.units
            .iter()
            .map(|u| self.cells[u.cell].calls_per_unit())
            .sum()
    }

    pub fn measured_units(&self) -> usize {
        self.units.iter().filter(|u| !u.warmup).count()
    }

    /// Number of times the run order moves to a different reload key (model reloads).
    pub fn reloads(&self) -> usize {
        let mut n = 0;
        let mut last: Option<&str> = None;
        for u in &self.units {
            let k = self.cells[u.cell].reload_key.as_str();
            if last != Some(k) {
                n += 1;
                last = Some(k);
            }
        }
        n
    }

    pub fn cell(&self, id: &str) -> Option<&Cell> {
        self.cells.iter().find(|c| c.id == id)
    }
}

fn expand_cells(spec: &Spec) -> Vec<Cell> {
    let mut cells = Vec::new();
    for arm in &spec.arms {
        for point in &arm.points {
            let members: Vec<Member> = arm
                .members
                .iter()
                .map(|m| Member {
                    slot: m.slot,
                    persona: m.persona,
                    options: m.options.merged_with(point),
                    model: m
                        .model
                        .clone()
                        .unwrap_or_else(|| spec.backend.model.clone()),
                    endpoint: m.endpoint.clone(),
                })
                .collect();
            let id = cell_id(&arm.name, arm.agent, &members);
            let reload_key = members
                .iter()
                .map(Member::reload_key)
                .collect::<Vec<_>>()
                .join(" + ");
            cells.push(Cell {
                id,
                arm: arm.name.clone(),
                agent: arm.agent,
                point: point.clone(),
                members,
                reload_key,
            });
        }
    }
    cells
}

/// `<arm>-<first 8 hex of sha256(arm, agent, members' persona/model/options)>`.
/// Endpoints are left out on purpose: moving a server to another port is the same cell.
pub fn cell_id(arm: &str, agent: AgentKind, members: &[Member]) -> String {
    let mut h = Sha256::new();
    h.update(arm.as_bytes());
    h.update(match agent {
        AgentKind::Single => b"|single".as_slice(),
        AgentKind::Pair => b"|pair".as_slice(),
    });
    for m in members {
        h.update(
            format!(
                "|{}:{:?}:{}:{}",
                m.slot.as_str(),
                m.persona,
                m.model,
                m.options.canonical()
            )
            .as_bytes(),
        );
    }
    let digest = h.finalize();
    format!("{arm}-{}", &crate::spec::hex(&digest)[..8])
}

fn reload_groups(cells: &[Cell]) -> Vec<ReloadGroup> {
    let mut groups: Vec<ReloadGroup> = Vec::new();
    for (i, c) in cells.iter().enumerate() {
        match groups.iter_mut().find(|g| g.key == c.reload_key) {
            Some(g) => g.cells.push(i),
            None => groups.push(ReloadGroup {
                key: c.reload_key.clone(),
                cells: vec![i],
            }),
        }
    }
    groups
}

/// Seeded Fisher–Yates on ChaCha8's raw stream: stable across rand versions and platforms.
fn shuffle<T>(v: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

fn order_units(spec: &Spec, cells: &[Cell], groups: &[ReloadGroup]) -> Vec<Unit> {
    let e = &spec.experiment;
    let rounds: Vec<(bool, u32)> = (0..e.warmup)
        .map(|r| (true, r))
        .chain((0..e.repetitions).map(|r| (false, r)))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(e.seed);
    let mut out: Vec<(usize, u32, bool)> = Vec::new();
    match e.order {
        Order::Sequential => {
            for c in 0..cells.len() {
                for &(w, r) in &rounds {
                    out.push((c, r, w));
                }
            }
        }
        Order::Random => {
            for &(w, r) in &rounds {
                let mut idx: Vec<usize> = (0..cells.len()).collect();
                shuffle(&mut idx, &mut rng);
                out.extend(idx.into_iter().map(|c| (c, r, w)));
            }
        }
        Order::Interleaved => {
            let mut gorder: Vec<usize> = (0..groups.len()).collect();
            shuffle(&mut gorder, &mut rng);
            for g in gorder {
                for &(w, r) in &rounds {
                    let mut idx = groups[g].cells.clone();
                    shuffle(&mut idx, &mut rng);
                    out.extend(idx.into_iter().map(|c| (c, r, w)));
                }
            }
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(order, (cell, rep, warmup))| Unit {
            cell,
            rep,
            warmup,
            order,
        })
        .collect()
}
