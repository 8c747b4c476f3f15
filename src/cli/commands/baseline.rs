//! `sweep baseline`: keep nights, fix the anchor, roll back.

use super::*;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum BaselineCommand {
    /// Keep a compared run as a night of the history; a clean pass also becomes the
    /// current baseline. Refuses a run that was never compared unless --force.
    Save {
        /// The run directory to keep.
        run: PathBuf,
        /// Baseline directory (default: baselines/<experiment>).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keep it and make it current even without a clean pass (the first nights of an
        /// experiment).
        #[arg(long)]
        force: bool,
    },
    /// Fix the anchor: the nights every later night is held to (a slow drift cannot move
    /// it; only this command does).
    Anchor {
        /// The baseline directory.
        dir: PathBuf,
        /// The entries of the anchor (default: the newest 3), as `sweep baseline list`
        /// names them.
        entries: Vec<String>,
    },
    /// List a baseline directory's entries, the current one marked.
    List {
        /// The baseline directory (e.g. baselines/<experiment>).
        dir: PathBuf,
    },
    /// Point the baseline directory's `current` at an earlier entry (a rollback).
    Use {
        /// The baseline directory (e.g. baselines/<experiment>).
        dir: PathBuf,
        /// The entry to make current, as `sweep baseline list` names it.
        entry: String,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct BaselineArgs {
    #[command(subcommand)]
    pub(crate) action: BaselineCommand,
}

impl BaselineArgs {
    /// Runs `sweep baseline`.
    pub(crate) fn run(self) -> Result<Status, CliError> {
        let Self { action } = self;
        baseline(action)
    }
}

fn baseline(action: BaselineCommand) -> Result<Status, CliError> {
    match action {
        BaselineCommand::Save { run, dir, force } => {
            let saved = gate::baseline::save(&run, dir.as_deref(), force)?;
            if saved.promoted {
                if let Some(why) = &saved.why {
                    tracing::warn!("kept with --force although: {why}");
                }
                println!(
                    "baseline saved: {} → {} (now current)",
                    run.display(),
                    saved.entry.display()
                );
            } else {
                println!(
                    "night kept: {} → {} ({})",
                    run.display(),
                    saved.entry.display(),
                    saved.why.as_deref().unwrap_or("not a pass")
                );
            }
        }
        BaselineCommand::List { dir } => {
            let current = gate::baseline::current_entry(&dir)?;
            for e in gate::baseline::entries(&dir)? {
                let mark = current
                    .as_ref()
                    .is_some_and(|c| c.file_name().is_some_and(|n| n.to_string_lossy() == e));
                println!("{} {e}", if mark { "*" } else { " " });
            }
        }
        BaselineCommand::Use { dir, entry } => {
            gate::baseline::point_at(&dir, &entry)?;
            println!("{}: current baseline is now {entry}", dir.display());
        }
        BaselineCommand::Anchor { dir, entries } => {
            let anchor = gate::baseline::set_anchor(&dir, &entries)?;
            println!("{}: anchor is now {}", dir.display(), anchor.join(", "));
        }
    }
    Ok(Status::Ok)
}
