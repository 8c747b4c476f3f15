//! Operating characteristics of the gate, by simulation: nights drawn from the gate's own
//! noise model (ln value = row level + night offset + rep noise; the night offset common to
//! every row of a night, as a reboot or another tenant would be), judged by the gate's own
//! decision code ([`super::judge::plan_tests`], Holm, [`super::judge::row_verdict`], the
//! call shares). `tests/it/gate.rs` checks the targets with binomial margins;
//! `scripts/gate-oc.sh` prints the table in BENCHMARKS.md.

use super::history::{ANCHOR_NIGHTS, DEFAULT_LAST};
use super::judge::{holm_and_call, plan_tests, row_verdict, RowNights};
use super::shares;
use super::{GateTest, Verdict};
use crate::analysis::samples::Counts;
use crate::stats::nightly::{Night, Tolerance};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// The noise of a simulated nightly.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Noise {
    /// Per-rep sd of ln values within a night.
    pub within: f64,
    /// Sd of the night offset of ln values (common to every row of the night).
    pub between: f64,
    /// Gating rows (cells × metrics), each with the tolerance.
    pub rows: usize,
    /// Reps per night.
    pub reps: usize,
    /// Calls per rep (for the call shares).
    pub calls_per_rep: u32,
    /// Share of calls that fail on an ordinary night.
    pub fail_rate: f64,
    /// Nights stored before the first judged night (0: two-run mode against one night).
    pub history: usize,
}

/// What happens to the code.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Scenario {
    /// Nothing changes.
    Identical,
    /// Every row changes by this relative amount tonight (bad side).
    Step(f64),
    /// Every row gets worse by this relative amount each night, from the first judged
    /// night on (each judged night is stored before the next).
    Drift(f64),
    /// Every row gets worse by this relative amount from the first judged night on and
    /// stays there (each judged night is stored before the next).
    Shift(f64),
    /// One row's calls time out at this share tonight.
    Timeouts(f64),
}

/// The gate's settings in a simulation.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Gate {
    /// Relative tolerance T of every row.
    pub tolerance: f64,
    /// α.
    pub alpha: f64,
    /// `[compare] max_failed_share`.
    pub max_share: f64,
}

/// How a simulated night ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NightOutcome {
    /// Exit 1.
    Regression,
    /// Exit 0.
    Pass,
    /// Exit 3.
    Undecided,
}

/// Rates over the simulated trials.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Rates {
    /// Trials.
    pub trials: usize,
    /// Trials whose (first) judged night failed.
    pub failed: usize,
    /// … passed.
    pub passed: usize,
    /// Drift and shift: trials whose change was caught within 5 judged nights.
    pub caught_within_5: usize,
    /// Drift and shift: total judged nights to detection over the trials that caught it.
    pub nights_to_detect: usize,
    /// Drift and shift: trials first caught on judged night k (index k, 1 to 10).
    pub caught_on: [usize; 11],
}

impl Rates {
    /// Trials caught within `k` judged nights.
    pub fn within(&self, k: usize) -> usize {
        self.caught_on[..=k.min(10)].iter().sum()
    }
}

pub(crate) fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// One simulated night: per row its [`Night`] and call counts.
struct SimNight {
    id: String,
    rows: Vec<(Night, Counts)>,
}

fn draw_night(
    rng: &mut ChaCha8Rng,
    n: &Noise,
    id: String,
    shift: f64,
    timeouts: Option<f64>,
) -> SimNight {
    let offset = n.between * normal(rng);
    let rows = (0..n.rows)
        .map(|r| {
            let reps: Vec<f64> = (0..n.reps)
                .map(|_| (shift + offset + n.within * normal(rng)).exp())
                .collect();
            let night = Night::from_reps(&reps).unwrap_or(Night {
                mean: 0.0,
                var: 0.0,
                df: 0.0,
                n: 0,
            });
            let live = n.reps as u32 * n.calls_per_rep;
            let rate = match timeouts {
                Some(s) if r == 0 => s,
                _ => n.fail_rate,
            };
            let failed = (0..live).filter(|_| rng.gen::<f64>() < rate).count() as u32;
            let counts = Counts {
                calls: live,
                failed,
                ..Counts::default()
            };
            (night, counts)
        })
        .collect();
    SimNight { id, rows }
}

/// Judges `tonight` against the stored nights (window: the newest [`DEFAULT_LAST`];
/// anchor: the first [`ANCHOR_NIGHTS`]) as `sweep compare` would.
fn judge(stored: &[SimNight], tonight: &SimNight, g: &Gate, seed: u64) -> NightOutcome {
    let Some(tol) = Tolerance::new(true, g.tolerance) else {
        return NightOutcome::Undecided;
    };
    let window = &stored[stored.len().saturating_sub(DEFAULT_LAST)..];
    let anchor = &stored[..stored.len().min(ANCHOR_NIGHTS)];
    let history_mode = stored.len() >= super::MIN_HISTORY;
    let rows: Vec<RowNights> = (0..tonight.rows.len())
        .map(|r| RowNights {
            key: format!("row{r}"),
            metric: crate::metrics::Metric::TtftMs,
            tolerance: tol,
            tonight: tonight.rows[r].0,
            history: window.iter().map(|s| (s.id.clone(), s.rows[r].0)).collect(),
            anchor: if history_mode {
                anchor.iter().map(|s| (s.id.clone(), s.rows[r].0)).collect()
            } else {
                Vec::new()
            },
        })
        .collect();
    let planned = plan_tests(&rows, g.alpha, seed);
    let mut tests: Vec<Vec<GateTest>> = planned
        .tests
        .into_iter()
        .map(|t| t.unwrap_or_default())
        .collect();
    {
        let mut all: Vec<&mut GateTest> = tests.iter_mut().flat_map(|t| t.iter_mut()).collect();
        holm_and_call(&mut all, g.alpha);
    }
    let verdicts: Vec<Verdict> = tests.iter().map(|t| row_verdict(t, &tol)).collect();
    let share_fails = (0..tonight.rows.len()).any(|r| {
        let refs: Vec<Counts> = window.iter().map(|s| s.rows[r].1.clone()).collect();
        shares::rows("row", &tonight.rows[r].1, &refs, g.max_share, None, g.alpha)
            .iter()
            .any(|s| s.fails)
    });
    if share_fails || verdicts.contains(&Verdict::Regression) {
        NightOutcome::Regression
    } else if verdicts
        .iter()
        .all(|v| matches!(v, Verdict::Pass | Verdict::Improved))
    {
        NightOutcome::Pass
    } else {
        NightOutcome::Undecided
    }
}

/// Simulates `trials` nightlies of `scenario` under `noise` and `gate`, seeded.
pub fn simulate(noise: &Noise, scenario: Scenario, gate: &Gate, trials: usize, seed: u64) -> Rates {
    let mut rates = Rates {
        trials,
        ..Rates::default()
    };
    for t in 0..trials {
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed ^ (t as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let baseline_nights = noise.history.max(1);
        let mut stored: Vec<SimNight> = (0..baseline_nights)
            .map(|j| draw_night(&mut rng, noise, format!("n{j}"), 0.0, None))
            .collect();
        let judge_seed = seed.wrapping_add(t as u64);
        match scenario {
            Scenario::Drift(_) | Scenario::Shift(_) => {
                for i in 1..=10usize {
                    let shift = match scenario {
                        Scenario::Drift(per_night) => i as f64 * per_night.ln_1p(),
                        Scenario::Shift(c) => c.ln_1p(),
                        _ => 0.0,
                    };
                    let id = format!("d{i}");
                    let night = draw_night(&mut rng, noise, id, shift, None);
                    let out = judge(&stored, &night, gate, judge_seed);
                    if out == NightOutcome::Regression {
                        rates.failed += 1;
                        rates.nights_to_detect += i;
                        rates.caught_on[i] += 1;
                        if i <= 5 {
                            rates.caught_within_5 += 1;
                        }
                        break;
                    }
                    stored.push(night);
                }
            }
            _ => {
                let (shift, timeouts) = match scenario {
                    Scenario::Step(c) => (c.ln_1p(), None),
                    Scenario::Timeouts(s) => (0.0, Some(s)),
                    _ => (0.0, None),
                };
                let night = draw_night(&mut rng, noise, "tonight".into(), shift, timeouts);
                match judge(&stored, &night, gate, judge_seed) {
                    NightOutcome::Regression => rates.failed += 1,
                    NightOutcome::Pass => rates.passed += 1,
                    NightOutcome::Undecided => {}
                }
            }
        }
    }
    rates
}
