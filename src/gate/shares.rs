//! What the exclusion rules would hide: per cell, the share of failed calls (timeouts
//! included) and of cold calls (reloads, a load in the timing) tonight against the
//! reference nights. A share above `[compare] max_failed_share` that a one-sided Fisher
//! exact test at α shows higher than the reference's is a regression: a change that turns
//! calls into timeouts or reloads fails the gate instead of leaving the timings.

use crate::analysis::samples::Counts;
use serde::{Deserialize, Serialize};
use statrs::distribution::{DiscreteCDF, Hypergeometric};

/// Which calls a share counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareKind {
    /// Failed calls (errors and timeouts) of the current attempt.
    Failed,
    /// Successful calls with a model load in their timing (runner reload, server reload, a
    /// load time above `cold_load_ms`).
    Cold,
    /// Calls that missed the `[slo]` (failed ones included): the share a goodput collapse
    /// shows even where no unit had a good call left to take a logarithm of.
    OutsideSlo,
}

impl ShareKind {
    /// "failed (incl. timeouts)" or "cold (reloads)".
    pub fn label(self) -> &'static str {
        match self {
            ShareKind::Failed => "failed calls (timeouts included)",
            ShareKind::Cold => "cold calls (reloads)",
            ShareKind::OutsideSlo => "calls outside the SLO",
        }
    }
}

/// One cell's share of one kind of call, tonight against the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareRow {
    /// Cell id (with phase).
    pub cell: String,
    /// Which calls.
    pub kind: ShareKind,
    /// Tonight: (calls of the kind, live calls: not warm-up, not superseded).
    pub current: (u32, u32),
    /// The reference nights, summed.
    pub reference: (u32, u32),
    /// The limit on tonight's share.
    pub limit: f64,
    /// One-sided Fisher exact p of "tonight's share is not higher".
    pub p: f64,
    /// Above the limit and shown higher: fails the gate.
    pub fails: bool,
}

impl ShareRow {
    /// Tonight's share.
    pub fn share(&self) -> f64 {
        share(self.current)
    }

    /// The reference's share.
    pub fn reference_share(&self) -> f64 {
        share(self.reference)
    }
}

fn share((k, n): (u32, u32)) -> f64 {
    if n == 0 {
        0.0
    } else {
        f64::from(k) / f64::from(n)
    }
}

/// One-sided Fisher exact test that the first proportion is higher: P(X ≥ k1) for X
/// hypergeometric with the margins of the 2×2 table (scipy's `fisher_exact(...,
/// alternative="greater")`).
pub fn fisher_greater((k1, n1): (u32, u32), (k2, n2): (u32, u32)) -> f64 {
    if k1 == 0 || n1 == 0 {
        return 1.0;
    }
    let population = u64::from(n1) + u64::from(n2);
    let successes = u64::from(k1) + u64::from(k2);
    match Hypergeometric::new(population, successes, u64::from(n1)) {
        Ok(h) => h.sf(u64::from(k1) - 1).clamp(0.0, 1.0),
        Err(_) => 1.0,
    }
}

fn live(c: &Counts) -> u32 {
    c.calls.saturating_sub(c.warmup + c.superseded)
}

/// The failed and cold share rows of one cell, and with an SLO (`slo_limit`: the share of
/// calls it allows outside) the share of calls outside it.
pub fn rows(
    key: &str,
    now: &Counts,
    refs: &[Counts],
    limit: f64,
    slo_limit: Option<f64>,
    alpha: f64,
) -> Vec<ShareRow> {
    let sum = |f: fn(&Counts) -> u32| refs.iter().map(f).sum::<u32>();
    let reference_live = sum(live);
    let mut kinds = vec![
        (ShareKind::Failed, now.failed, sum(|c| c.failed), limit),
        (ShareKind::Cold, now.cold, sum(|c| c.cold), limit),
    ];
    if let Some(l) = slo_limit {
        kinds.push((
            ShareKind::OutsideSlo,
            now.slo_missed,
            sum(|c| c.slo_missed),
            l,
        ));
    }
    kinds
        .into_iter()
        .map(|(kind, k_now, k_ref, limit)| {
            let current = (k_now, live(now));
            let reference = (k_ref, reference_live);
            let p = fisher_greater(current, reference);
            ShareRow {
                cell: key.to_string(),
                kind,
                current,
                reference,
                limit,
                p,
                fails: share(current) > limit && p < alpha,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fisher_matches_scipy() {
        // scipy.stats.fisher_exact([[a, n1 − a], [c, n2 − c]], alternative="greater").
        for (now, base, want) in [
            ((7, 20), (0, 20), 0.004_158_004_158_004_158),
            ((3, 20), (1, 20), 0.302_494_802_494_802_54),
            ((14, 20), (2, 40), 2.062_572_020_032_171_5e-7),
            ((0, 20), (0, 20), 1.0),
        ] {
            let p = fisher_greater(now, base);
            assert!(
                (p - want).abs() <= 1e-9 * want.max(1e-300) + 1e-15,
                "{now:?} {base:?}: {p} vs {want}"
            );
        }
    }

    #[test]
    fn a_cell_of_timeouts_fails_and_a_stray_one_does_not() {
        let counts = |calls: u32, failed: u32| Counts {
            calls: calls + 2,
            warmup: 2,
            failed,
            ..Counts::default()
        };
        let r = rows("c", &counts(20, 10), &[counts(20, 0)], 0.10, None, 0.05);
        assert!(r[0].fails && r[0].kind == ShareKind::Failed, "{r:?}");
        assert!(!r[1].fails);
        // One timeout in 20 against none: under the limit.
        let r = rows("c", &counts(20, 1), &[counts(20, 0)], 0.10, None, 0.05);
        assert!(!r[0].fails);
        // Above the limit but no higher than the reference's usual share: not shown.
        let r = rows(
            "c",
            &counts(20, 3),
            &[counts(20, 3), counts(20, 2)],
            0.10,
            None,
            0.05,
        );
        assert!(!r[0].fails, "{r:?}");
    }

    #[test]
    fn a_collapse_outside_the_slo_fails_and_the_usual_misses_do_not() {
        let counts = |calls: u32, missed: u32| Counts {
            calls,
            slo_missed: missed,
            ..Counts::default()
        };
        // Every call outside a 90% SLO tonight, one in 20 before: fails.
        let r = rows(
            "c",
            &counts(20, 20),
            &[counts(20, 1)],
            0.10,
            Some(0.10),
            0.05,
        );
        assert_eq!(r.len(), 3);
        assert!(r[2].kind == ShareKind::OutsideSlo && r[2].fails, "{r:?}");
        // Two in 20 (10%, what a 90% SLO allows): not above the limit.
        let r = rows(
            "c",
            &counts(20, 2),
            &[counts(20, 0)],
            0.10,
            Some(0.10),
            0.05,
        );
        assert!(!r[2].fails);
        // Without an SLO there is no such row.
        assert_eq!(rows("c", &counts(20, 20), &[], 0.10, None, 0.05).len(), 2);
    }
}
