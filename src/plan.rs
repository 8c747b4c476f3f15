//! The plan: arms expanded into cells, cells × repetitions (+ warm-up) into ordered units.
//!
//! Cell ids are derived from the arm and the options alone, so they are stable across runs
//! and machines (that is what `sweep compare` matches on). Ordering is seeded and
//! reproducible. The default order is randomized blocks (see [`Order::Blocks`]); the
//! reload-minimizing order stays available and `plan` warns that it confounds factor levels
//! with time.

use crate::record::{Phase, PhaseKey};
use crate::spec::{
    AgentKind, BackendKind, ModelOptions, Order, Persona, PersonaMode, PromptVersion, Slot, Spec,
};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// LLM calls one agent run makes (analysis, then report).
pub const CALLS_PER_AGENT_RUN: usize = 2;

/// One agent inside a cell, with its final options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The agent's place in its arm: `single`, or `A` / `B` of a pair.
    pub slot: Slot,
    /// The agent's persona (`chimera`: none); `persona_mode` says whether its text is sent.
    pub persona: Persona,
    /// Whether the persona is sent (`system`) or only shown in the report (`echo`).
    #[serde(default)]
    pub persona_mode: PersonaMode,
    /// The prompt set the agent's two calls use.
    #[serde(default)]
    pub prompt_version: PromptVersion,
    /// The options sent with each of its calls: the arm's options merged with the cell's
    /// grid point (unset ones are not sent).
    pub options: ModelOptions,
    /// The model name sent to the backend (the arm's `model`, else `[backend] model`).
    pub model: String,
    /// Endpoint override; `None` uses the backend's endpoints.
    pub endpoint: Option<String>,
    /// Report title in the seed system's words (see [`member_titles`]).
    #[serde(default)]
    pub title: String,
}

/// The seed system's report titles for the agents of one cell. "Baseline" for an agent that
/// sends no options, else "Chimera"; then the role: a single agent is "Agent" (or its
/// persona, "Insight" / "Collector"); in a pair that sets one agent against an untuned one
/// (the seeds' baseline_vs_chimera: "Baseline Collector" and "Chimera Insight") the persona
/// names the role, otherwise the slot does ("Chimera Agent A", "Chimera Agent B", as in the
/// seeds' homo and hetero pairs, whatever their personas).
pub fn member_titles(members: &[Member]) -> Vec<String> {
    let tuned = members.iter().filter(|m| !m.options.is_empty()).count();
    let mixed = members.len() > 1 && tuned > 0 && tuned < members.len();
    members
        .iter()
        .map(|m| {
            let base = if m.options.is_empty() {
                "Baseline"
            } else {
                "Chimera"
            };
            let by_persona = m.slot == Slot::Single || mixed;
            match (m.persona, m.slot) {
                (Persona::Insight, _) if by_persona => format!("{base} Insight"),
                (Persona::Collector, _) if by_persona => format!("{base} Collector"),
                (_, Slot::Single) => format!("{base} Agent"),
                (_, slot) => format!("{base} Agent {}", slot.as_str()),
            }
        })
        .collect()
}

impl Member {
    /// True unless the agent is a further copy (2..N) at a workload level: the copies share
    /// one model, endpoint and reload key, so the first copy's reload probe loads it for all.
    pub fn takes_probe(&self) -> bool {
        !matches!(self.slot, Slot::Copy(k) if k > 1)
    }

    /// What forces the server to reload the model when it changes: the model, its context
    /// and offload, and the server-level options (a managed server restarts for those; the
    /// embedded engine makes a new context).
    pub fn reload_key(&self) -> String {
        let show = |v: Option<u32>| v.map(|x| x.to_string()).unwrap_or_else(|| "default".into());
        let mut key = format!(
            "{} num_ctx={} num_gpu={}",
            self.model,
            show(self.options.num_ctx),
            show(self.options.num_gpu)
        );
        let server = self.options.server_level().canonical();
        if !server.is_empty() {
            key.push_str(&format!(" server[{server}]"));
        }
        key
    }
}

/// One point of the grid: an arm with concrete options for each of its agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// `<arm>-<8 hex>`: stable across runs and machines.
    pub id: String,
    pub(crate) arm: String,
    pub(crate) agent: AgentKind,
    /// The grid point (factor values for tables).
    pub point: ModelOptions,
    pub(crate) members: Vec<Member>,
    /// The members' [`Member::reload_key`]s joined with ` + `: cells with the same key run
    /// without a model reload between them (see [`ReloadGroup`]).
    pub reload_key: String,
    /// A unit of N > 1 agents (`agents`) also runs them back to back (`speedup = true`).
    #[serde(default)]
    pub speedup: bool,
    /// Open loop (`rate`): the arrival process; the members are its arrivals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_loop: Option<crate::spec::OpenLoop>,
}

impl Cell {
    /// The arm the cell belongs to.
    pub fn arm(&self) -> &str {
        &self.arm
    }

    /// Its agents with their final options.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// A pair whose agents load the model differently (num_ctx, num_gpu, a server-level
    /// option): under `[server]` Agent B gets a server of its own.
    pub fn needs_two_servers(&self) -> bool {
        match self.members.as_slice() {
            [a, b] => crate::spec::separate_servers(&a.options, &b.options),
            _ => false,
        }
    }

    /// Agents run at once in this cell's load phase: 1, 2 for a pair, N at `agents = N`.
    pub fn agents_at_once(&self) -> usize {
        self.members.len()
    }

    /// The phases of a unit of this cell, in the order they run: a single agent; a pair (and
    /// N agents with `speedup`) together, then back to back; N agents together.
    pub fn phases(&self) -> &'static [Phase] {
        if self.open_loop.is_some() {
            return &[Phase::Open];
        }
        match self.agent {
            AgentKind::Single if self.members.len() == 1 => &[Phase::Single],
            AgentKind::Single if !self.speedup => &[Phase::Concurrent],
            AgentKind::Single | AgentKind::Pair => &[Phase::Concurrent, Phase::Sequential],
        }
    }

    /// LLM calls in one phase of a unit of this cell.
    pub fn calls_in_phase(&self, phase: Phase) -> usize {
        match phase {
            Phase::Single => CALLS_PER_AGENT_RUN,
            Phase::Reload => self.members.iter().filter(|m| m.takes_probe()).count(),
            _ => self.members.len() * CALLS_PER_AGENT_RUN,
        }
    }

    /// LLM calls in one unit of this cell. A pair runs concurrently, then back to back
    /// (the measured sequential time that makes speedup real).
    pub fn calls_per_unit(&self) -> usize {
        self.phases().iter().map(|p| self.calls_in_phase(*p)).sum()
    }

    /// `num_ctx=512, temperature=0.6` or `defaults` (the backend's words for it, e.g.
    /// `Ollama defaults`); a pair's agents with their persona (`A collector: …`) and, when
    /// it is only shown, `(echo)`.
    pub fn label(&self, defaults: &str) -> String {
        let opts = |m: &Member| {
            let c = m.options.canonical();
            if c.is_empty() {
                defaults.to_string()
            } else {
                c.replace(',', ", ")
            }
        };
        match self.agent {
            AgentKind::Single => opts(&self.members[0]),
            AgentKind::Pair => self
                .members
                .iter()
                .map(|m| {
                    format!(
                        "{} {}{}: {}",
                        m.slot.as_str(),
                        m.persona.as_str(),
                        match m.persona_mode {
                            PersonaMode::Echo => " (echo)",
                            PersonaMode::System => "",
                        },
                        opts(m)
                    )
                })
                .collect::<Vec<_>>()
                .join(" | "),
        }
    }
}

impl Cell {
    /// The planned start of each arrival of an open-loop unit, ms after the phase starts
    /// (empty for a closed-loop cell): the first at 0, then gaps of 1 / rate (constant) or
    /// exponential gaps of mean 1 / rate (Poisson) from a generator seeded by the cell, the
    /// rep and warm-up, so a resumed or re-run unit gets the same schedule. Over a window
    /// (`duration_s`), constant arrivals keep their gaps and Poisson ones are the process
    /// conditioned on round(rate × window) arrivals in it.
    pub fn arrival_offsets_ms(&self, rep: u32, warmup: bool) -> Vec<f64> {
        let Some(ol) = self.open_loop else {
            return Vec::new();
        };
        let rate = self
            .members
            .first()
            .and_then(|m| m.options.rate)
            .unwrap_or(1.0);
        let mean_gap_ms = 1000.0 / rate;
        let mut h = Sha256::new();
        h.update(format!("{}|{rep}|{warmup}|arrivals", self.id).as_bytes());
        let digest = h.finalize();
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&digest);
        let mut rng = ChaCha8Rng::from_seed(seed);
        let n = ol.arrivals_at(rate);
        if let (Some(w), crate::spec::Arrivals::Poisson) = (ol.window_ms, ol.arrivals) {
            // A Poisson process on [0, W) given its count n has its arrivals at n sorted
            // uniform times (the order-statistics property): the window and the count are
            // both fixed, so every rep plans the same records.
            let w = f64::from(w);
            let mut at: Vec<f64> = (0..n)
                .map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * w)
                .collect();
            at.sort_by(f64::total_cmp);
            return at;
        }
        let mut t = 0.0;
        (0..n)
            .map(|k| {
                if k > 0 {
                    t += match ol.arrivals {
                        crate::spec::Arrivals::Constant => mean_gap_ms,
                        crate::spec::Arrivals::Poisson => {
                            // U in (0, 1]: 53 random bits, never 0 (ln 0 = −∞).
                            let u = ((rng.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
                            -u.ln() * mean_gap_ms
                        }
                    };
                }
                t
            })
            .collect()
    }
}

/// One (cell, repetition) to execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    /// Index into [`Plan::cells`].
    pub cell: usize,
    /// 0-based repetition index, counted separately for warm-up and measured runs.
    pub rep: u32,
    /// A warm-up unit: run and stored, never in statistics.
    pub warmup: bool,
    /// Position in the run order.
    pub order: usize,
    /// The reload key changes before this unit (one endpoint, in run order): the runner
    /// sends a reload probe first.
    #[serde(default)]
    pub reload: bool,
}

/// Cells sharing a reload key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadGroup {
    pub(crate) key: String,
    /// Indices into [`Plan::cells`] of the cells with this key, in file order.
    pub cells: Vec<usize>,
}

/// What `sweep run` executes: the cells of the grid (of one shard, if sharded) and their
/// units in run order. Built from a [`Spec`] by [`Plan::build`]; the same spec and seed
/// always give the same plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub(crate) experiment: String,
    /// Every cell (only this shard's when sharded), in file order: arms, then their grid
    /// points.
    pub cells: Vec<Cell>,
    /// Warm-up and measured units in run order (see [`Order`]).
    pub units: Vec<Unit>,
    /// The cells grouped by reload key, in order of first appearance.
    pub groups: Vec<ReloadGroup>,
    pub(crate) shard: Option<Shard>,
}

/// Deterministic partition of cells: shard `index` of `count` (0-based index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This shard's number, 0-based (< `count`).
    pub index: u32,
    /// How many shards the cells are split into (≥ 1).
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

/// What `--shard` accepts: a fixed `i/N`, or `auto`: i/N from the scheduler's environment
/// (a Slurm array task, a Kubernetes indexed Job, explicit `SWEEP_SHARD_INDEX`), resolved by
/// [`crate::cluster::detect`] where the process runs, not where the command was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardArg {
    /// The shard given on the command line as `i/N`.
    Fixed(Shard),
    /// `auto`: the shard is read from the scheduler's environment when the run starts.
    Auto,
}

impl std::str::FromStr for ShardArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(ShardArg::Auto);
        }
        s.parse()
            .map(ShardArg::Fixed)
            .map_err(|e: String| format!("{e}, or `auto` (from the scheduler's environment)"))
    }
}

impl Plan {
    /// Every phase the plan stores, in run order: the unit's index, its cell and the phase's
    /// key (what resume, `--retry-failed` and a merge look up in the store).
    pub fn phase_keys(&self) -> impl Iterator<Item = (usize, &Cell, PhaseKey)> + '_ {
        self.units.iter().enumerate().flat_map(move |(i, unit)| {
            let cell = &self.cells[unit.cell];
            cell.phases().iter().map(move |&phase| {
                (
                    i,
                    cell,
                    PhaseKey {
                        cell_id: cell.id.clone(),
                        rep: unit.rep,
                        warmup: unit.warmup,
                        phase,
                    },
                )
            })
        })
    }

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

    /// [`Plan::build`], refusing a shard with no cells.
    pub fn checked(spec: &Spec, shard: Option<Shard>) -> Result<Plan, String> {
        let plan = Plan::build(spec, shard);
        if plan.units.is_empty() {
            return Err(match shard {
                Some(s) => format!(
                    "shard {}/{} has no cells (the experiment has fewer cells than shards)",
                    s.index, s.count
                ),
                None => "the plan is empty".into(),
            });
        }
        Ok(plan)
    }

    /// LLM calls the planned units make (warm-up included, reload probes not: see
    /// [`Plan::probe_calls`]).
    pub fn total_calls(&self) -> usize {
        self.units
            .iter()
            .map(|u| self.cells[u.cell].calls_per_unit())
            .sum()
    }

    /// Units that count for statistics (warm-up units left out).
    pub fn measured_units(&self) -> usize {
        self.units.iter().filter(|u| !u.warmup).count()
    }

    /// Number of times the run order moves to a different reload key (model reloads, each
    /// followed by a reload probe).
    pub fn reloads(&self) -> usize {
        self.units.iter().filter(|u| u.reload).count()
    }

    /// LLM calls of the reload probes (one per member of the cell after a reload).
    pub fn probe_calls(&self) -> usize {
        self.units
            .iter()
            .filter(|u| u.reload)
            .map(|u| self.cells[u.cell].calls_in_phase(Phase::Reload))
            .sum()
    }

    /// True when the order runs each reload group as one block of time.
    pub fn confounds_time(order: Order) -> bool {
        matches!(order, Order::Interleaved | Order::Sequential)
    }

    /// The cell with id `id`, if the plan has it.
    pub fn cell(&self, id: &str) -> Option<&Cell> {
        self.cells.iter().find(|c| c.id == id)
    }
}

fn expand_cells(spec: &Spec) -> Vec<Cell> {
    let mut cells = Vec::new();
    for arm in &spec.arms {
        for point in &arm.points {
            // A single arm at `agents = N > 1` is N copies of its agent, numbered 1..N.
            let mut slots = Vec::new();
            for m in &arm.members {
                let copies = match arm.open_loop {
                    Some(ol) => ol.arrivals_at(m.options.merged_with(point).rate.unwrap_or(1.0)),
                    None => m.options.merged_with(point).agents_at_once(),
                };
                match copies {
                    n if (n > 1 || arm.open_loop.is_some()) && m.slot == Slot::Single => {
                        slots.extend((1..=n).map(|k| (m, Slot::Copy(k as u16))))
                    }
                    _ => slots.push((m, m.slot)),
                }
            }
            let mut members: Vec<Member> = slots
                .into_iter()
                .map(|(m, slot)| Member {
                    slot,
                    persona: m.persona,
                    persona_mode: m.persona_mode,
                    prompt_version: m.prompt_version,
                    options: m.options.merged_with(point),
                    model: m
                        .model
                        .clone()
                        .unwrap_or_else(|| spec.backend.model.clone()),
                    endpoint: m.endpoint.clone(),
                    title: String::new(),
                })
                .collect();
            let titles = member_titles(&members);
            for (m, t) in members.iter_mut().zip(titles) {
                m.title = t;
            }
            let id = cell_id(&arm.name, arm.agent, &members);
            // Copies share their first copy's key: every level of a configuration is one
            // reload group.
            let reload_key = members
                .iter()
                .filter(|m| m.takes_probe())
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
                speedup: arm.speedup,
                open_loop: arm.open_loop,
            });
        }
    }
    cells
}

/// `<arm>-<first 8 hex of sha256(arm, agent, members' persona/model/options)>`, plus the
/// persona mode and prompt version where they are not the defaults (so the cells of earlier
/// files keep their ids, and a changed request is never compared as the same cell).
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
        if m.persona_mode != PersonaMode::default() {
            h.update(format!(":persona_mode={}", m.persona_mode.as_str()).as_bytes());
        }
        if m.prompt_version != PromptVersion::default() {
            h.update(format!(":prompt_version={}", m.prompt_version.as_str()).as_bytes());
        }
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
    order_units_as(spec, spec.experiment.order, cells, groups)
}

/// The units in `order` (seeded by the experiment's seed), with their reload flags.
fn order_units_as(spec: &Spec, order: Order, cells: &[Cell], groups: &[ReloadGroup]) -> Vec<Unit> {
    let e = &spec.experiment;
    let rounds: Vec<(bool, u32)> = (0..e.warmup)
        .map(|r| (true, r))
        .chain((0..e.repetitions).map(|r| (false, r)))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(e.seed);
    let mut out: Vec<(usize, u32, bool)> = Vec::new();
    match order {
        Order::Blocks => {
            for &(w, r) in &rounds {
                let mut gorder: Vec<usize> = (0..groups.len()).collect();
                shuffle(&mut gorder, &mut rng);
                for g in gorder {
                    let mut idx = groups[g].cells.clone();
                    shuffle(&mut idx, &mut rng);
                    out.extend(idx.into_iter().map(|c| (c, r, w)));
                }
            }
        }
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
    let mut last: Option<&str> = None;
    out.into_iter()
        .enumerate()
        .map(|(order, (cell, rep, warmup))| {
            let key = cells[cell].reload_key.as_str();
            let reload = last != Some(key);
            last = Some(key);
            Unit {
                cell,
                rep,
                warmup,
                order,
                reload,
            }
        })
        .collect()
}

impl Plan {
    /// The reloads the same cells would take in another order (for `plan`'s comparison).
    pub fn reloads_in(&self, spec: &Spec, order: Order) -> usize {
        order_units_as(spec, order, &self.cells, &self.groups)
            .iter()
            .filter(|u| u.reload)
            .count()
    }
}

/// The human-readable plan: one row per cell, then totals.
pub fn render(spec: &Spec, plan: &Plan) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let e = &spec.experiment;
    let _ = writeln!(
        s,
        "experiment {}  (backend {}, model {}, order {}, seed {}, reference {})",
        e.name,
        spec.backend.kind.as_str(),
        spec.backend.model,
        e.order.as_str(),
        e.seed,
        e.reference
    );
    if let Some(sh) = plan.shard {
        let _ = writeln!(s, "shard {}/{}", sh.index, sh.count);
    }
    let _ = writeln!(s);
    render_cells(&mut s, spec, plan);
    let warm = plan.units.len() - plan.measured_units();
    let _ = writeln!(s);
    let _ = writeln!(s, "{}", prompts_line(plan));
    let _ = writeln!(
        s,
        "cells: {}  (arms: {})",
        plan.cells.len(),
        spec.arms.len()
    );
    let _ = writeln!(
        s,
        "units: {}  ({} measured = {} cells × {} repetitions, {} warm-up)",
        plan.units.len(),
        plan.measured_units(),
        plan.cells.len(),
        e.repetitions,
        warm
    );
    let how = calls_explained(plan);
    let _ = writeln!(s, "LLM calls: {}  ({})", plan.total_calls(), how.join("; "));
    let _ = writeln!(
        s,
        "reload groups: {}  (model, num_ctx, num_gpu, server-level options); reloads in run order: {} (each followed \
         by a reload probe: {} one-token calls, stored as warm-up)",
        plan.groups.len(),
        plan.reloads(),
        plan.probe_calls()
    );
    if let Some(srv) = &spec.server {
        let _ = writeln!(
            s,
            "managed server: {} ({}); server configurations: {}; starts in run order: {} (a \
             restart is a reload, with its probe)",
            srv.preset.as_str(),
            srv.command,
            server_configs(spec, plan).len(),
            server_starts(spec, plan)
        );
        let two: Vec<&str> = plan
            .cells
            .iter()
            .filter(|c| c.needs_two_servers())
            .map(|c| c.arm.as_str())
            .collect();
        if !two.is_empty() {
            // Cells are in arm order: equal arm names are neighbours.
            let mut arms = two.clone();
            arms.dedup();
            let _ = writeln!(
                s,
                "  + a second server for Agent B in {} pair cell(s) whose agents load the model \
                 differently ({}): the two agents never share a runner",
                two.len(),
                arms.join(", ")
            );
        }
    }
    let blocks = plan.reloads_in(spec, Order::Blocks);
    let grouped = plan.reloads_in(spec, Order::Interleaved);
    let _ = writeln!(
        s,
        "order {}: reloads by order: blocks {blocks}, interleaved (fewest reloads) {grouped}",
        e.order.as_str()
    );
    for w in warnings(spec, plan) {
        let _ = writeln!(s, "warning: {w}");
    }
    s
}

/// The plan's cell rows: number, id, arm, agent, reload group, calls, options.
fn render_cells(s: &mut String, spec: &Spec, plan: &Plan) {
    use std::fmt::Write as _;
    let id_w = plan
        .cells
        .iter()
        .map(|c| c.id.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let arm_w = plan
        .cells
        .iter()
        .map(|c| c.arm.len())
        .max()
        .unwrap_or(3)
        .max(3);
    let _ = writeln!(
        s,
        "{:>3}  {:<id_w$}  {:<arm_w$}  {:<6}  {:>5}  {:>5}  options",
        "#", "cell", "arm", "agent", "group", "calls"
    );
    for (i, c) in plan.cells.iter().enumerate() {
        let group = plan
            .groups
            .iter()
            .position(|g| g.cells.contains(&i))
            .map(|g| g + 1)
            .unwrap_or(0);
        let calls: usize = plan
            .units
            .iter()
            .filter(|u| u.cell == i)
            .map(|_| c.calls_per_unit())
            .sum();
        let agent = match c.agent {
            AgentKind::Single => "single",
            AgentKind::Pair => "pair",
        };
        let _ = writeln!(
            s,
            "{:>3}  {:<id_w$}  {:<arm_w$}  {:<6}  {:>5}  {:>5}  {}",
            i + 1,
            c.id,
            c.arm,
            agent,
            group,
            calls,
            c.label(spec.backend.kind.defaults_label())
        );
    }
}

/// How the LLM calls add up, in words: per agent run, pairs, agents at once, open loop.
fn calls_explained(plan: &Plan) -> Vec<String> {
    let has_pairs = plan.cells.iter().any(|c| c.agent == AgentKind::Pair);
    let levels: Vec<usize> = {
        let mut v: Vec<usize> = plan
            .cells
            .iter()
            .filter(|c| c.agent == AgentKind::Single && c.open_loop.is_none())
            .map(Cell::agents_at_once)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let mut how = vec!["2 per agent run".to_string()];
    if has_pairs {
        how.push("a pair unit runs concurrently and then back to back: 8 calls".into());
    }
    if levels.iter().any(|n| *n > 1) {
        how.push(format!(
            "agents at once: {} (a unit of N agents: 2N calls, 4N with speedup)",
            levels
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    // Open loop: the arrival process per unit, then its rates.
    let mut processes: Vec<(String, Vec<String>)> = Vec::new();
    for c in plan.cells.iter().filter(|c| c.open_loop.is_some()) {
        if let (Some(ol), Some(r)) = (c.open_loop, c.members[0].options.rate) {
            let p = match ol.window_ms {
                None => format!("{} {} arrivals per unit", ol.requests, ol.arrivals.as_str()),
                Some(w) => format!(
                    "{} arrivals over {} s per unit",
                    ol.arrivals.as_str(),
                    f64::from(w) / 1000.0
                ),
            };
            let r = r.to_string();
            match processes.iter_mut().find(|(q, _)| *q == p) {
                Some((_, rs)) if !rs.contains(&r) => rs.push(r),
                Some(_) => {}
                None => processes.push((p, vec![r])),
            }
        }
    }
    for (p, rs) in processes {
        how.push(format!("open loop: {p} at {}/s", rs.join(", ")));
    }
    how
}

/// A managed server's configuration for each unit, in run order (empty without `[server]`).
fn unit_server_configs(spec: &Spec, plan: &Plan) -> Vec<String> {
    let Some(srv) = &spec.server else {
        return Vec::new();
    };
    plan.units
        .iter()
        .map(|u| {
            plan.cells[u.cell]
                .members
                .first()
                .map(|m| {
                    srv.launch_options(&m.options, spec.backend.kind)
                        .canonical()
                })
                .unwrap_or_default()
        })
        .collect()
}

/// The distinct managed-server configurations of the plan.
pub fn server_configs(spec: &Spec, plan: &Plan) -> Vec<String> {
    let mut v = unit_server_configs(spec, plan);
    v.sort();
    v.dedup();
    v
}

/// Server starts the run order makes: the first, then one per change of configuration.
pub fn server_starts(spec: &Spec, plan: &Plan) -> usize {
    let v = unit_server_configs(spec, plan);
    if v.is_empty() {
        return 0;
    }
    1 + v.windows(2).filter(|w| w[0] != w[1]).count()
}

/// `prompts: sweep-1 (13 cells), chimera-2025 (3 cells); personas: system 4 agents, echo 2`:
/// which prompt set and persona handling the plan's agents use (also in every record).
pub fn prompts_line(plan: &Plan) -> String {
    use std::collections::BTreeMap;
    let mut versions: BTreeMap<&str, usize> = BTreeMap::new();
    let mut modes: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &plan.cells {
        for m in &c.members {
            *versions.entry(m.prompt_version.as_str()).or_default() += 1;
            if m.persona != Persona::Chimera {
                *modes.entry(m.persona_mode.as_str()).or_default() += 1;
            }
        }
    }
    let list = |m: &BTreeMap<&str, usize>| {
        m.iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "prompts: {} agents; personas: {}",
        list(&versions),
        if modes.is_empty() {
            "none".to_string()
        } else {
            format!(
                "{} agents (system = sent as the system prompt, echo = shown in the report, \
                 not sent)",
                list(&modes)
            )
        }
    )
}

/// Each arm's agents and what happens to their persona, for the manifest:
/// `baseline_vs_chimera/B insight echo`, `baseline/single chimera none`.
pub fn persona_lines(spec: &Spec) -> Vec<String> {
    spec.arms
        .iter()
        .flat_map(|a| {
            a.members.iter().map(move |m| {
                format!(
                    "{}/{} {} {}",
                    a.name,
                    m.slot.as_str(),
                    m.persona.as_str(),
                    match m.persona {
                        Persona::Chimera => "none",
                        _ => m.persona_mode.as_str(),
                    }
                )
            })
        })
        .collect()
}

/// Pair arms whose two agents send to one Ollama endpoint: with the server's parallelism
/// unknown (or 1), "concurrent" may mean queued; with different reload keys, Ollama (one
/// runner per model) reloads the model whenever the agents alternate.
fn shared_endpoint_warnings(spec: &Spec, plan: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    if spec.backend.kind != BackendKind::Ollama {
        return out;
    }
    let norm = |e: &Option<String>| e.as_deref().map(|u| u.trim_end_matches('/').to_string());
    for arm in spec.arms.iter().filter(|a| a.agent == AgentKind::Pair) {
        let eps: Vec<Option<String>> = arm.members.iter().map(|m| norm(&m.endpoint)).collect();
        if eps.windows(2).any(|w| w[0] != w[1]) {
            continue;
        }
        // Under [server], a pair whose agents load the model differently has a server each.
        let own_servers = |c: &Cell| spec.server.is_some() && c.needs_two_servers();
        let cells = || plan.cells.iter().filter(|c| c.arm == arm.name);
        if cells().all(own_servers) {
            continue;
        }
        let url = match &spec.server {
            Some(_) => "the managed Ollama".to_string(),
            None => eps
                .first()
                .cloned()
                .flatten()
                .or_else(|| match spec.backend.urls.as_slice() {
                    [one] => Some(one.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| "the backend's endpoint".into()),
        };
        match spec.num_parallel {
            None => out.push(format!(
                "arm {:?}: agents A and B share one Ollama endpoint ({url}) whose parallelism is \
                 unknown: with OLLAMA_NUM_PARALLEL=1 the concurrent phase queues one agent \
                 behind the other and the speedup measures the queue. Start Ollama with \
                 OLLAMA_NUM_PARALLEL=2 and declare it ([backend] num_parallel = 2), or give b \
                 its own endpoint (b = {{ endpoint = \"http://127.0.0.1:11435\", … }}); see \
                 README, \"The seed study and real concurrency with Ollama\"",
                arm.name
            )),
            Some(1) if spec.server.is_some() => out.push(format!(
                "arm {:?}: agents A and B share one Ollama endpoint ({url}) declared to run one \
                 request at a time (no parallel option, no OLLAMA_NUM_PARALLEL in [server] env): \
                 the concurrent phase is queued; set options = {{ parallel = 2 }} on the arm or \
                 env = {{ OLLAMA_NUM_PARALLEL = \"2\" }} in [server]",
                arm.name
            )),
            Some(1) => out.push(format!(
                "arm {:?}: agents A and B share one Ollama endpoint ({url}) declared to run one \
                 request at a time ([backend] num_parallel = 1): the concurrent phase is queued",
                arm.name
            )),
            Some(_) => {}
        }
        // Agents on servers of their own never make each other reload.
        let differing = cells()
            .filter(|c| !own_servers(c))
            .filter(|c| {
                c.members
                    .windows(2)
                    .any(|w| w[0].reload_key() != w[1].reload_key())
            })
            .count();
        if differing > 0 {
            out.push(format!(
                "arm {:?}: in {differing} cell(s) A and B load the model with different \
                 num_ctx/num_gpu on one Ollama endpoint ({url}); Ollama keeps one runner per \
                 model and reloads it when the options change, so the pair's calls reload \
                 (cold) as the agents alternate: give b its own endpoint",
                arm.name
            ));
        }
    }
    out
}

/// What `validate` and `plan` warn about: an order that confounds factor levels with time,
/// fewer reps than a regression verdict needs, pair agents sharing one Ollama endpoint.
pub fn warnings(spec: &Spec, plan: &Plan) -> Vec<String> {
    let mut out = shared_endpoint_warnings(spec, plan);
    let e = &spec.experiment;
    if Plan::confounds_time(e.order) && plan.groups.len() > 1 {
        out.push(format!(
            "order = \"{}\" runs each reload group (num_ctx, num_gpu, model) as one block of \
             time: any drift over the run (heat, other load, server state) reads as an effect of \
             those factors; order = \"blocks\" (the default) randomizes the groups in every round",
            e.order.as_str()
        ));
    }
    let need = crate::stats::engine::MIN_REPS as u32;
    if spec.compare.declared && e.repetitions < need {
        out.push(format!(
            "repetitions = {} but a regression verdict needs ≥ {need} reps per side: every \
             comparison of this experiment would be inconclusive (exit 3); `sweep power RUN` \
             says how many reps detect the [compare] thresholds",
            e.repetitions
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Arrivals, OpenLoop};

    fn open_cell(arrivals: Arrivals, rate: f64, requests: u32) -> Cell {
        open_cell_over(arrivals, rate, requests, None)
    }

    fn open_cell_over(
        arrivals: Arrivals,
        rate: f64,
        requests: u32,
        window_ms: Option<u32>,
    ) -> Cell {
        let member = Member {
            slot: Slot::Copy(1),
            persona: Persona::Chimera,
            persona_mode: PersonaMode::System,
            prompt_version: PromptVersion::Sweep1,
            options: ModelOptions {
                rate: Some(rate),
                ..Default::default()
            },
            model: "m".into(),
            endpoint: None,
            title: String::new(),
        };
        Cell {
            id: "open-0000".into(),
            arm: "open".into(),
            agent: AgentKind::Single,
            point: ModelOptions::default(),
            members: vec![member; requests as usize],
            reload_key: String::new(),
            speedup: false,
            open_loop: Some(OpenLoop {
                arrivals,
                requests,
                window_ms,
            }),
        }
    }

    #[test]
    fn constant_arrivals_are_evenly_spaced_from_zero() {
        let c = open_cell(Arrivals::Constant, 4.0, 5);
        assert_eq!(
            c.arrival_offsets_ms(0, false),
            [0.0, 250.0, 500.0, 750.0, 1000.0]
        );
    }

    #[test]
    fn poisson_arrivals_are_reproducible_and_differ_per_rep() {
        let c = open_cell(Arrivals::Poisson, 2.0, 10);
        assert_eq!(
            c.arrival_offsets_ms(3, false),
            c.arrival_offsets_ms(3, false)
        );
        assert_ne!(
            c.arrival_offsets_ms(3, false),
            c.arrival_offsets_ms(4, false)
        );
        assert_ne!(
            c.arrival_offsets_ms(3, false),
            c.arrival_offsets_ms(3, true)
        );
    }

    /// The Poisson gaps are exponential with mean 1 / rate: 200 reps × 63 gaps at 50/s
    /// (mean 20 ms). The mean is checked to 3 standard errors (the exponential's sd equals
    /// its mean, so SE = 20 / √12 600 = 0.178 ms: ±0.53 ms), and the shape with a χ² test
    /// over 10 bins of equal probability under Exp(20 ms): 9 degrees of freedom, refused
    /// above 27.88 (the 0.999 quantile). Seeds are the cell id and rep: fixed.
    #[test]
    fn poisson_gaps_are_exponential_with_the_asked_mean() {
        let c = open_cell(Arrivals::Poisson, 50.0, 64);
        let mut gaps = Vec::new();
        for rep in 0..200 {
            let t = c.arrival_offsets_ms(rep, false);
            assert_eq!(t[0], 0.0);
            gaps.extend(t.windows(2).map(|w| w[1] - w[0]));
        }
        let n = gaps.len() as f64;
        let mean = gaps.iter().sum::<f64>() / n;
        let se = 20.0 / n.sqrt();
        assert!((mean - 20.0).abs() < 3.0 * se, "mean gap {mean:.3} ms");
        let mut bins = [0usize; 10];
        for g in &gaps {
            // Exp CDF 1 − e^(−g/20): bin k holds CDF ∈ [k/10, (k+1)/10).
            let cdf = 1.0 - (-g / 20.0).exp();
            bins[((cdf * 10.0) as usize).min(9)] += 1;
        }
        let expect = n / 10.0;
        let chi2: f64 = bins
            .iter()
            .map(|&o| (o as f64 - expect).powi(2) / expect)
            .sum();
        assert!(chi2 < 27.88, "χ² = {chi2:.2} over bins {bins:?}");
    }

    #[test]
    fn constant_arrivals_over_a_window_keep_their_gaps() {
        // 4/s over 1.25 s: round(5) arrivals, 250 ms apart from 0.
        let c = open_cell_over(Arrivals::Constant, 4.0, 1, Some(1250));
        assert_eq!(
            c.arrival_offsets_ms(0, false),
            [0.0, 250.0, 500.0, 750.0, 1000.0]
        );
    }

    /// Over a window W, Poisson arrivals given their count are i.i.d. uniform on [0, W):
    /// 200 reps × 64 arrivals (50/s over 1.28 s), a χ² test over 10 equal bins of the
    /// window, 9 degrees of freedom, refused above 27.88 (the 0.999 quantile); each rep's
    /// times sorted and inside the window. Seeds are the cell id and rep: fixed.
    #[test]
    fn poisson_arrivals_over_a_window_are_uniform_in_it() {
        let c = open_cell_over(Arrivals::Poisson, 50.0, 1, Some(1280));
        let mut bins = [0usize; 10];
        let mut n = 0usize;
        for rep in 0..200 {
            let t = c.arrival_offsets_ms(rep, false);
            assert_eq!(t.len(), 64);
            assert!(t.windows(2).all(|w| w[0] <= w[1]));
            for x in t {
                assert!((0.0..1280.0).contains(&x), "{x}");
                bins[((x / 128.0) as usize).min(9)] += 1;
                n += 1;
            }
        }
        let expect = n as f64 / 10.0;
        let chi2: f64 = bins
            .iter()
            .map(|&o| (o as f64 - expect).powi(2) / expect)
            .sum();
        assert!(chi2 < 27.88, "χ² = {chi2:.2} over bins {bins:?}");
    }
}
