//! sweep's integration tests: one binary (one link of polars and llama.cpp instead of nine),
//! one module per area, in the way ripgrep's `tests/tests.rs` does it.

mod agents;
mod analysis;
mod architecture;
mod backends;
mod calls;
mod cluster;
mod common;
mod embedded;
mod gate;
mod hardening;
mod managed_ollama;
mod managed_server;
mod measure;
mod real_server;
mod report;
mod runner;
mod spec_and_plan;
mod telemetry;
mod workload;
