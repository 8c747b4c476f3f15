//! sweep: a parameter-sweep harness for benchmarking LLM agents.
//!
//! An experiment file (TOML) sets out a grid: agent types × model options × repetitions.
//! sweep runs every cell of it against a real LLM backend (Ollama's native API, an
//! OpenAI-compatible server, or llama.cpp embedded in-process), stores every call
//! crash-safely, and turns the stored records into statistics, paper tables and plots, and a
//! regression verdict for nightly jobs. The `sweep` binary is a thin CLI over this library.
//!
//! Data flows one way: `spec` (parse, validate) → `plan` (grid → ordered units) →
//! `runner` (agents over a `backend`) → `store` → `analysis` (samples, through the one
//! statistics engine in `stats`) → `report` (every output format) and `gate` (the nightly
//! regression verdict). `metrics` is the one table of metric definitions everything reads.
//!
//! The modules stand on floors: each uses only modules on lower floors, never one above it
//! (`tests/it/architecture.rs` fails on any cycle between top-level modules):
//!
//! | floor | modules |
//! |---|---|
//! | 0 | `env` (host facts, the one `nvidia-smi` runner), `metrics`, `progress` |
//! | 1 | `stats` |
//! | 2 | `spec` |
//! | 3 | `backend`, `corpus`, `server` |
//! | 4 | `record` (with the GPU window every record carries) |
//! | 5 | `plan` |
//! | 6 | `agent`, `cluster`, `store` |
//! | 7 | `telemetry` |
//! | 8 | `analysis`, `runner` |
//! | 9 | `gate` |
//! | 10 | `report` |
//! | 11 | `cli` |
//!
//! The API a library user needs, in that order:
//! - [`spec::Spec::load`] reads and validates an experiment file ([`spec::Spec::parse`]
//!   validates text); validation errors point at file:line:col.
//! - [`plan::Plan::build`] expands the grid into cells and ordered units (what a run will do).
//! - [`runner::run_experiment`] runs a spec's plan under [`runner::RunOptions`] and returns a
//!   [`runner::RunSummary`]; the calls go to a [`backend::Backend`] made by [`backend::build`].
//! - A run directory is read through [`store`]: [`store::Manifest::read`] for its manifest,
//!   [`store::read_records`] for its [`record::Record`]s ([`store::RunStore`] writes them).
//! - [`analysis::analyze`] writes `analysis/summary.json` and the tidy CSV of a run.
//! - [`report::render`] writes its tables, plots and `report.html`.
//! - [`gate::load_run`] and [`gate::compare`] compare a run with a baseline (what
//!   `sweep compare` does, with its exit code).

#![warn(missing_docs)]

pub mod agent;
pub mod analysis;
pub mod backend;
pub mod cli;
pub(crate) mod cluster;
pub mod corpus;
pub mod env;
pub mod gate;
pub mod metrics;
pub mod plan;
pub(crate) mod progress;
pub mod record;
pub mod report;
pub mod runner;
pub mod server;
pub mod spec;
pub mod stats;
pub mod store;
pub mod telemetry;
