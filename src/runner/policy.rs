//! The failure policy for outages: when the backend stops answering (a streak of calls that
//! could not connect) or too many of the recent calls failed, the runner stops starting
//! phases, probes the backend with backoff for a bounded time, and then either re-runs the
//! phases that met the outage (the backend came back) or stores them as failed and stops
//! (it did not): a run never burns the rest of its plan on a server that is down, and never
//! ends as if an outage were a measurement.

use super::exec::SKIPPED_KIND;
use super::{PhaseExecutor, PhaseJob};
use crate::record::Record;
use crate::spec::{RunConfig, FAILED_SHARE_WINDOW};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Error kinds that mean the call could not reach the server or lost it: the connection
/// was refused, could not be made, or was cut (what a call in flight gets when the server
/// dies; a reset followed by calls that get through is an isolated failure).
pub const UNREACHABLE_KINDS: &[&str] =
    &["connection_refused", "connect", "timeout_connect", "reset"];

/// First wait between probes; it doubles up to [`MAX_PROBE_GAP`].
const FIRST_PROBE_GAP: Duration = Duration::from_millis(250);
const MAX_PROBE_GAP: Duration = Duration::from_secs(10);

/// Why the runner paused.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// This many calls in a row could not reach the backend.
    Unreachable(usize),
    /// `failed` of the last `of` calls failed.
    FailedShare { failed: usize, of: usize },
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Unreachable(n) => write!(f, "{n} calls in a row could not reach the backend"),
            Trigger::FailedShare { failed, of } => {
                write!(f, "{failed} of the last {of} calls failed")
            }
        }
    }
}

/// What one phase's records say about the backend.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Nothing wrong (or isolated failures): store it, and any phase held as a suspect.
    Clear,
    /// It ended on a call that could not connect, below the streak: hold it until the next
    /// phase tells whether this is an outage.
    Suspect,
    /// Pause and probe.
    Pause(Trigger),
}

/// Watches the calls as phases complete, in the order they complete.
#[derive(Debug)]
pub struct Watch {
    max_share: f64,
    max_streak: usize,
    /// The last [`FAILED_SHARE_WINDOW`] calls: true = failed.
    window: VecDeque<bool>,
    streak: usize,
}

impl Watch {
    pub fn new(cfg: &RunConfig) -> Self {
        Watch {
            max_share: cfg.max_failed_share,
            max_streak: cfg.unreachable_streak.max(1) as usize,
            window: VecDeque::with_capacity(FAILED_SHARE_WINDOW),
            streak: 0,
        }
    }

    /// Counts a phase's calls (a report call skipped after a failed analysis is not a call)
    /// and says what to do with the phase.
    pub fn observe(&mut self, records: &[Record]) -> Verdict {
        for r in records {
            let kind = r.error_kind.as_deref();
            if kind == Some(SKIPPED_KIND) {
                continue;
            }
            if self.window.len() == FAILED_SHARE_WINDOW {
                self.window.pop_front();
            }
            self.window.push_back(!r.ok);
            if kind.is_some_and(|k| UNREACHABLE_KINDS.contains(&k)) {
                self.streak += 1;
            } else {
                self.streak = 0;
            }
        }
        if self.streak >= self.max_streak {
            return Verdict::Pause(Trigger::Unreachable(self.streak));
        }
        let failed = self.window.iter().filter(|f| **f).count();
        if self.window.len() == FAILED_SHARE_WINDOW
            && failed as f64 > self.max_share * FAILED_SHARE_WINDOW as f64
        {
            return Verdict::Pause(Trigger::FailedShare {
                failed,
                of: FAILED_SHARE_WINDOW,
            });
        }
        if self.streak > 0 {
            Verdict::Suspect
        } else {
            Verdict::Clear
        }
    }

    /// Forgets what it saw (after a pause: the next decision is about what comes next).
    pub fn reset(&mut self) {
        self.window.clear();
        self.streak = 0;
    }
}

/// How probing ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Probed {
    /// The backend answered; `was_down` when an earlier probe had failed (an outage that
    /// ended: the phases that met it run again).
    Up { was_down: bool, after: Duration },
    /// Still not answering when the wait ran out.
    Down { waited: Duration, error: String },
}

/// Probes the backend `job` uses until it answers or `wait` has passed: at once, then after
/// 0.25 s, 0.5 s, 1 s, … (at most 10 s apart), each probe bounded by the time left.
pub async fn probe_until_up(ex: &dyn PhaseExecutor, job: &PhaseJob, wait: Duration) -> Probed {
    let start = Instant::now();
    let mut gap = FIRST_PROBE_GAP;
    let mut was_down = false;
    loop {
        let left = wait.saturating_sub(start.elapsed());
        // A probe of a hung server must not outlive the wait (at least a second each).
        let bound = left.max(Duration::from_secs(1));
        let error = match tokio::time::timeout(bound, ex.probe(job)).await {
            Ok(Ok(())) => {
                return Probed::Up {
                    was_down,
                    after: start.elapsed(),
                }
            }
            Ok(Err(e)) => e,
            Err(_) => format!("no answer within {:.1} s", bound.as_secs_f64()),
        };
        was_down = true;
        let left = wait.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Probed::Down {
                waited: start.elapsed(),
                error,
            };
        }
        tracing::debug!("backend still unreachable ({error}); next probe in {gap:?}");
        tokio::time::sleep(gap.min(left)).await;
        gap = (gap * 2).min(MAX_PROBE_GAP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: Option<&str>) -> Record {
        Record {
            ok: kind.is_none(),
            error_kind: kind.map(str::to_string),
            ..Default::default()
        }
    }

    fn cfg(share: f64, streak: u32) -> RunConfig {
        RunConfig {
            max_failed_share: share,
            unreachable_streak: streak,
            ..Default::default()
        }
    }

    #[test]
    fn a_streak_of_unreachable_calls_pauses_and_anything_else_breaks_it() {
        let mut w = Watch::new(&cfg(1.0, 3));
        let refused = rec(Some("connection_refused"));
        let skipped = rec(Some(SKIPPED_KIND));
        assert_eq!(
            w.observe(&[refused.clone(), skipped.clone()]),
            Verdict::Suspect
        );
        assert_eq!(w.observe(std::slice::from_ref(&refused)), Verdict::Suspect);
        // a server error is not an outage: the streak starts over
        assert_eq!(w.observe(&[rec(Some("http_5xx"))]), Verdict::Clear);
        assert_eq!(w.observe(std::slice::from_ref(&refused)), Verdict::Suspect);
        assert_eq!(w.observe(&[rec(Some("reset"))]), Verdict::Suspect);
        assert_eq!(
            w.observe(&[rec(Some("timeout_connect")), skipped]),
            Verdict::Pause(Trigger::Unreachable(3))
        );
        w.reset();
        assert_eq!(w.observe(&[refused, rec(None)]), Verdict::Clear);
    }

    #[test]
    fn the_failed_share_counts_the_last_calls_only() {
        let mut w = Watch::new(&cfg(0.5, 100));
        // 10 failed, then 10 ok: half, not above it
        for _ in 0..10 {
            assert_eq!(w.observe(&[rec(Some("http_5xx"))]), Verdict::Clear);
        }
        for _ in 0..10 {
            assert_eq!(w.observe(&[rec(None)]), Verdict::Clear);
        }
        // each failure now replaces the oldest (failed) call: still 10 of 20
        for _ in 0..10 {
            assert_eq!(w.observe(&[rec(Some("malformed"))]), Verdict::Clear);
        }
        // the 11th failure within the window passes the share
        assert_eq!(
            w.observe(&[rec(Some("truncated"))]),
            Verdict::Pause(Trigger::FailedShare {
                failed: 11,
                of: FAILED_SHARE_WINDOW
            })
        );
        // share 1: never pauses for failures
        let mut w = Watch::new(&cfg(1.0, 100));
        for _ in 0..40 {
            assert_eq!(w.observe(&[rec(Some("http_5xx"))]), Verdict::Clear);
        }
    }

    struct Flaky {
        up_after: Instant,
        probes: std::sync::atomic::AtomicUsize,
    }

    impl PhaseExecutor for Flaky {
        fn execute<'a>(
            &'a self,
            _job: &'a PhaseJob,
        ) -> crate::backend::BoxFuture<'a, super::super::PhaseOutput> {
            Box::pin(async { Default::default() })
        }

        fn probe<'a>(
            &'a self,
            _job: &'a PhaseJob,
        ) -> crate::backend::BoxFuture<'a, Result<(), String>> {
            self.probes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let up = Instant::now() >= self.up_after;
            Box::pin(async move {
                if up {
                    Ok(())
                } else {
                    Err("connection refused".into())
                }
            })
        }
    }

    fn job() -> PhaseJob {
        PhaseJob {
            cell: crate::plan::Cell {
                id: "c".into(),
                arm: "a".into(),
                agent: crate::spec::AgentKind::Single,
                point: Default::default(),
                members: Vec::new(),
                reload_key: String::new(),
                speedup: false,
                open_loop: None,
            },
            unit: crate::plan::Unit {
                cell: 0,
                rep: 0,
                warmup: false,
                order: 0,
                reload: false,
            },
            phase: crate::record::Phase::Single,
            endpoint: None,
            cold_start: false,
            run_id: "r".into(),
            experiment: "e".into(),
            retry: 0,
            outage_reruns: 0,
        }
    }

    #[tokio::test]
    async fn probing_backs_off_and_is_bounded() {
        let ex = Flaky {
            up_after: Instant::now(),
            probes: Default::default(),
        };
        let p = probe_until_up(&ex, &job(), Duration::from_secs(5)).await;
        assert!(
            matches!(
                p,
                Probed::Up {
                    was_down: false,
                    ..
                }
            ),
            "{p:?}"
        );

        let ex = Flaky {
            up_after: Instant::now() + Duration::from_millis(600),
            probes: Default::default(),
        };
        let p = probe_until_up(&ex, &job(), Duration::from_secs(5)).await;
        match p {
            Probed::Up { was_down, after } => {
                assert!(was_down);
                assert!(after >= Duration::from_millis(600), "{after:?}");
            }
            other => panic!("{other:?}"),
        }
        // probes at 0, 0.25, 0.75, 1.75 s: the one at 0.75 s finds it up
        assert_eq!(ex.probes.load(std::sync::atomic::Ordering::SeqCst), 3);

        let ex = Flaky {
            up_after: Instant::now() + Duration::from_secs(3600),
            probes: Default::default(),
        };
        let t = Instant::now();
        let p = probe_until_up(&ex, &job(), Duration::from_millis(1200)).await;
        assert!(matches!(p, Probed::Down { .. }), "{p:?}");
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(1200) && took < Duration::from_secs(3),
            "{took:?}"
        );
        // 0, 0.25, 0.75, then the last one at the deadline (1.2 s)
        assert_eq!(ex.probes.load(std::sync::atomic::Ordering::SeqCst), 4);
    }
}
