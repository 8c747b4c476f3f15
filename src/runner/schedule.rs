//! What a run still has to do, decided before anything runs: the phases of the plan not yet
//! stored, in the plan's order; with `--retry-failed`, also the stored phases whose latest
//! attempt failed, each as the next attempt; and, as the phases are handed out, which
//! endpoint each goes to and whether it is the first after a reload-key change there (its
//! first call is cold).

use crate::plan::{Cell, Plan};
use crate::record::{Phase, PhaseKey};
use std::collections::HashMap;

/// What the schedule needs to know about the phases already stored (the run store answers).
pub(super) trait StoredPhases {
    /// Some attempt of the phase is stored.
    fn is_done(&self, key: &PhaseKey) -> bool;
    /// Its latest stored attempt has a failed call.
    fn has_failed(&self, key: &PhaseKey) -> bool;
    /// Its latest stored attempt (0 = the first).
    fn latest_attempt(&self, key: &PhaseKey) -> Option<u32>;
}

impl StoredPhases for crate::store::RunStore {
    fn is_done(&self, k: &PhaseKey) -> bool {
        self.is_phase_done(&k.cell_id, k.rep, k.warmup, k.phase)
    }
    fn has_failed(&self, k: &PhaseKey) -> bool {
        crate::store::RunStore::has_failed(self, &k.cell_id, k.rep, k.warmup, k.phase)
    }
    fn latest_attempt(&self, k: &PhaseKey) -> Option<u32> {
        crate::store::RunStore::latest_attempt(self, k)
    }
}

/// The phases to run and what was left as stored.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Schedule {
    /// (unit index, phase, attempt), in plan order: a few bytes each, so the list stays
    /// small however many calls the sweep has (jobs are made from it lazily).
    pub(super) pending: Vec<(usize, Phase, u32)>,
    /// Stored phases that run again (`--retry-failed`).
    pub(super) retried: usize,
    /// Stored phases left as they are.
    pub(super) skipped: usize,
    /// Calls of the skipped phases.
    pub(super) stored_calls: usize,
    /// `max_phases` cut the list short.
    pub(super) truncated: bool,
}

/// The schedule of `plan` given what is stored.
pub(super) fn schedule(
    plan: &Plan,
    stored: &impl StoredPhases,
    retry_failed: bool,
    max_phases: Option<usize>,
) -> Schedule {
    let mut s = Schedule::default();
    for (i, cell, key) in plan.phase_keys() {
        if !stored.is_done(&key) {
            s.pending.push((i, key.phase, 0));
        } else if retry_failed && stored.has_failed(&key) {
            let next = stored.latest_attempt(&key).map_or(0, |l| l + 1);
            s.pending.push((i, key.phase, next));
            s.retried += 1;
        } else {
            s.skipped += 1;
            s.stored_calls += cell.calls_in_phase(key.phase);
        }
    }
    if let Some(max) = max_phases {
        s.truncated = s.pending.len() > max;
        s.pending.truncate(max);
    }
    s.pending.shrink_to_fit();
    s
}

/// Hands out endpoints round-robin and remembers each endpoint's last reload key: a phase
/// whose cell's key differs from the last one on its endpoint starts cold.
pub(super) struct Placer {
    endpoints: Vec<String>,
    last_key: HashMap<Option<String>, String>,
}

impl Placer {
    /// Over `endpoints` (none: the embedded engine).
    pub(super) fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            last_key: HashMap::new(),
        }
    }

    /// The endpoint of the `n`-th phase handed out and whether it starts cold.
    pub(super) fn place(&mut self, n: usize, cell: &Cell) -> (Option<String>, bool) {
        let endpoint = if self.endpoints.is_empty() {
            None
        } else {
            Some(self.endpoints[n % self.endpoints.len()].clone())
        };
        let cold = self.last_key.get(&endpoint) != Some(&cell.reload_key);
        if cold {
            self.last_key
                .insert(endpoint.clone(), cell.reload_key.clone());
        }
        (endpoint, cold)
    }
}

/// The phase jobs of `pending`, made one by one as they are pulled (each carries a copy
/// of its cell), placed on endpoints by `placer`.
pub(super) fn jobs<'a>(
    plan: &'a Plan,
    pending: Vec<(usize, Phase, u32)>,
    mut placer: Placer,
    run_id: &'a str,
    experiment: &'a str,
) -> impl ExactSizeIterator<Item = super::PhaseJob> + 'a {
    pending
        .into_iter()
        .enumerate()
        .map(move |(n, (i, phase, retry))| {
            let unit = plan.units[i];
            let cell = &plan.cells[unit.cell];
            let (endpoint, cold_start) = placer.place(n, cell);
            super::PhaseJob {
                cell: cell.clone(),
                unit,
                phase,
                endpoint,
                cold_start,
                run_id: run_id.to_string(),
                experiment: experiment.to_string(),
                retry,
                outage_reruns: 0,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Spec;
    use std::collections::BTreeMap;
    use std::path::Path;

    /// Stored phases as a test states them: key → (latest attempt, failed).
    #[derive(Default)]
    struct Stored(BTreeMap<(String, u32, bool, Phase), (u32, bool)>);

    impl StoredPhases for Stored {
        fn is_done(&self, k: &PhaseKey) -> bool {
            self.0
                .contains_key(&(k.cell_id.clone(), k.rep, k.warmup, k.phase))
        }
        fn has_failed(&self, k: &PhaseKey) -> bool {
            self.0
                .get(&(k.cell_id.clone(), k.rep, k.warmup, k.phase))
                .is_some_and(|a| a.1)
        }
        fn latest_attempt(&self, k: &PhaseKey) -> Option<u32> {
            self.0
                .get(&(k.cell_id.clone(), k.rep, k.warmup, k.phase))
                .map(|a| a.0)
        }
    }

    fn plan() -> Plan {
        let text = "[experiment]\nname = \"t\"\nrepetitions = 2\nwarmup = 1\n[backend]\nkind = \"embedded\"\n\
                    [corpus]\npath = \"c\"\n[[arm]]\nname = \"base\"\n[[arm]]\nname = \"duo\"\nagent = \"pair\"\n\
                    a = {}\nb = {}\n";
        Plan::build(&Spec::parse(Path::new("t.toml"), text).unwrap(), None)
    }

    #[test]
    fn stored_phases_are_skipped_failed_ones_rerun_as_the_next_attempt() {
        let plan = plan();
        let all = schedule(&plan, &Stored::default(), false, None);
        // Every unit's phases, in plan order: single cells one phase, pairs two.
        let phases: usize = plan
            .units
            .iter()
            .map(|u| plan.cells[u.cell].phases().len())
            .sum();
        assert_eq!(all.pending.len(), phases);
        assert!(
            all.pending.windows(2).all(|w| w[0].0 <= w[1].0),
            "plan order"
        );
        assert!(all.pending.iter().all(|p| p.2 == 0));

        // Store the first phase ok and the second failed at attempt 1.
        let mut stored = Stored::default();
        let key = |n: usize| {
            let (i, phase, _) = all.pending[n];
            let u = plan.units[i];
            (plan.cells[u.cell].id.clone(), u.rep, u.warmup, phase)
        };
        stored.0.insert(key(0), (0, false));
        stored.0.insert(key(1), (1, true));
        let resumed = schedule(&plan, &stored, false, None);
        assert_eq!(resumed.pending.len(), phases - 2);
        assert_eq!(resumed.skipped, 2);
        let retry = schedule(&plan, &stored, true, None);
        assert_eq!(retry.pending.len(), phases - 1);
        assert_eq!((retry.retried, retry.skipped), (1, 1));
        assert_eq!(retry.pending[0], (all.pending[1].0, all.pending[1].1, 2));
        let cut = schedule(&plan, &Stored::default(), false, Some(3));
        assert_eq!(cut.pending.len(), 3);
        assert!(cut.truncated);
    }

    #[test]
    fn a_phase_starts_cold_after_a_reload_key_change_on_its_endpoint() {
        let plan = plan();
        let base = &plan.cells[0];
        let mut other = base.clone();
        other.reload_key = format!("{}-other", base.reload_key);
        let mut one = Placer::new(Vec::new());
        assert_eq!(one.place(0, base), (None, true));
        assert_eq!(one.place(1, base), (None, false));
        assert_eq!(one.place(2, &other), (None, true));
        // Two endpoints: each keeps its own last key.
        let mut two = Placer::new(vec!["http://a".into(), "http://b".into()]);
        assert_eq!(two.place(0, base), (Some("http://a".into()), true));
        assert_eq!(two.place(1, base), (Some("http://b".into()), true));
        assert_eq!(two.place(2, base), (Some("http://a".into()), false));
    }
}
