//! Progress of a long run: an indicatif bar on a terminal, plain lines in CI logs,
//! JSON events for machines, or nothing (`--quiet`).

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::io::{IsTerminal, Write};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// Bar when stderr is a terminal, plain lines otherwise.
    Auto,
    /// One line of text per event on stderr (what CI logs get).
    Plain,
    /// One JSON object per event on stdout (`{"event": "phase", ...}`), for programs.
    Json,
    /// Nothing (warnings still go through `tracing`).
    Quiet,
}

/// Something worth telling the person (or program) watching a run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run began executing (after preflight and opening the store).
    Started {
        /// An unfinished run is being continued.
        resumed: bool,
        /// The run's id.
        run_id: String,
        /// The run directory.
        dir: String,
        /// Planned units of the whole run (this shard).
        units: usize,
        /// Planned agent calls of the whole run.
        calls: usize,
        /// Calls of phases an earlier invocation already stored (not run again).
        already_stored: usize,
    },
    /// A phase was stored.
    Phase {
        /// Agent calls stored so far, those of earlier invocations included.
        done_calls: usize,
        /// Planned agent calls of the whole run.
        total_calls: usize,
        /// The phase's cell id.
        cell: String,
        /// Repetition number within the cell.
        rep: u32,
        /// A warm-up unit (not measured).
        warmup: bool,
        /// `single`, `concurrent` or `sequential`.
        phase: String,
        /// Calls of the phase that succeeded.
        ok: usize,
        /// Calls of the phase that failed.
        failed: usize,
        /// Client TTFT of the phase's last successful call, ms.
        ttft_ms: Option<f64>,
        /// Decode rate of the phase's last successful call, tokens/s.
        decode_tps: Option<f64>,
    },
    /// A call failed (after its retries); one event per failed call.
    Failure {
        /// The call's cell id.
        cell: String,
        /// Error kind ([`crate::backend::BackendError::kind`]).
        kind: String,
        /// The error message.
        message: String,
    },
    /// The run ended without a signal or an outage stop.
    Finished {
        /// The run's id.
        run_id: String,
        /// The run directory.
        dir: String,
        /// Agent calls that succeeded in this invocation.
        ok: usize,
        /// Agent calls that failed in this invocation.
        failed: usize,
        /// Wall time of this invocation's execution, s.
        seconds: f64,
    },
    /// A signal or an outage stopped the run; it is resumable.
    Interrupted {
        /// The run's id.
        run_id: String,
        /// The command that continues it.
        resume: String,
    },
}

/// Shows [`Event`]s in the chosen [`ProgressMode`].
pub struct Progress {
    mode: ProgressMode,
    bar: Option<ProgressBar>,
    errors: usize,
}

impl Progress {
    /// A display in `mode`; `Auto` becomes `Plain` when stderr is not a terminal.
    pub fn new(mode: ProgressMode) -> Progress {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Auto,
            ProgressMode::Auto => ProgressMode::Plain,
            m => m,
        };
        Progress {
            mode,
            bar: None,
            errors: 0,
        }
    }

    pub fn emit(&mut self, e: &Event) {
        match self.mode {
            ProgressMode::Quiet => {}
            ProgressMode::Json => {
                if let Ok(s) = serde_json::to_string(e) {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{s}");
                    let _ = out.flush();
                }
            }
            ProgressMode::Plain => eprintln!("{}", plain(e)),
            ProgressMode::Auto => self.bar_event(e),
        }
    }

    fn bar_event(&mut self, e: &Event) {
        match e {
            Event::Started {
                calls,
                already_stored,
                ..
            } => {
                eprintln!("{}", plain(e));
                let bar = ProgressBar::new(*calls as u64);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{bar:30.cyan/blue} {pos}/{len} calls  {elapsed_precise} eta {eta_precise}  {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.set_position(*already_stored as u64);
                self.bar = Some(bar);
            }
            Event::Phase {
                done_calls,
                cell,
                ttft_ms,
                decode_tps,
                failed,
                ..
            } => {
                self.errors += failed;
                if let Some(bar) = &self.bar {
                    bar.set_position(*done_calls as u64);
                    bar.set_message(format!(
                        "{cell}  ttft {}  {}  errors {}",
                        fmt_opt(*ttft_ms, "ms"),
                        fmt_opt(*decode_tps, "tok/s"),
                        self.errors
                    ));
                }
            }
            Event::Failure { .. } => {
                if let Some(bar) = &self.bar {
                    bar.println(plain(e));
                }
            }
            Event::Finished { .. } | Event::Interrupted { .. } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                eprintln!("{}", plain(e));
            }
        }
    }
}

fn fmt_opt(v: Option<f64>, unit: &str) -> String {
    v.map(|x| format!("{x:.1} {unit}"))
        .unwrap_or_else(|| format!("- {unit}"))
}

/// One line per event, for logs.
pub fn plain(e: &Event) -> String {
    match e {
        Event::Started {
            resumed,
            run_id,
            dir,
            units,
            calls,
            already_stored,
        } => format!(
            "{} {run_id}: {units} units, {calls} LLM calls ({already_stored} already stored) -> {dir}{}",
            if *resumed { "resuming run" } else { "run" },
            if *resumed { " (--new starts a fresh run)" } else { "" }
        ),
        Event::Phase {
            done_calls,
            total_calls,
            cell,
            rep,
            warmup,
            phase,
            ok,
            failed,
            ttft_ms,
            decode_tps,
        } => format!(
            "[{done_calls}/{total_calls}] {cell} {}{} {phase}: {ok} ok, {failed} failed, ttft {}, {}",
            if *warmup { "warmup " } else { "rep " },
            rep + 1,
            fmt_opt(*ttft_ms, "ms"),
            fmt_opt(*decode_tps, "tok/s")
        ),
        Event::Failure {
            cell,
            kind,
            message,
        } => format!("  failure in {cell}: {kind}: {message}"),
        Event::Finished {
            run_id,
            dir,
            ok,
            failed,
            seconds,
        } => format!(
            "run {run_id} finished in {seconds:.1} s: {ok} calls ok, {failed} failed -> {dir}"
        ),
        Event::Interrupted { run_id, resume } => {
            format!("run {run_id} interrupted; everything finished so far is stored. Resume with:\n  {resume}")
        }
    }
}
