//! sweep: parameter-sweep experiment harness for benchmarking LLM agents.
//!
//! Data flows one way: `spec` (parse, validate) → `plan` (grid → ordered units) →
//! `runner` (agents over a `backend`) → `store` → `analysis` (samples, through the one
//! statistics engine in `stats`) → `report` (every output format) and `gate` (the nightly
//! regression verdict). `metrics` is the one table of metric definitions everything reads.

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
pub mod spec;
pub mod stats;
pub mod store;
pub mod telemetry;
