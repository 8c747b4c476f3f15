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
    Plain,
    Json,
    Quiet,
}

/// Something worth telling the person (or program) watching a run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Started {
        /// An unfinished run is being continued.
        resumed: bool,
        run_id: String,
        dir: String,
        units: usize,
        calls: usize,
        already_stored: usize,
    },
    Phase {
        done_calls: usize,
        total_calls: usize,
        cell: String,
        rep: u32,
        warmup: bool,
        phase: String,
        ok: usize,
        failed: usize,
        ttft_ms: Option<f64>,
        decode_tps: Option<f64>,
    },
    Failure {
        cell: String,
        kind: String,
        message: String,
    },
    Finished {
        run_id: String,
        dir: String,
        ok: usize,
        failed: usize,
        seconds: f64,
    },
    Interrupted {
        run_id: String,
        resume: String,
    },
}

pub struct Progress {
    mode: ProgressMode,
    bar: Option<ProgressBar>,
    errors: usize,
}

impl Progress {
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
