//! The parsers under fuzzing, compiled straight from the main crate's sources under the
//! crate name `sweep`, so the targets read exactly like code using the real crate.
//!
//! Why not a dependency on `sweep`: that builds (and, under cargo fuzz, instruments)
//! polars, plotters and the rest, which these modules never use: on the 2-core CI
//! machines that alone took longer than the fuzz runs. If a module below starts using
//! another `crate::` module, add it here.

#[path = "../../src/backend/mod.rs"]
pub mod backend;
#[path = "../../src/env.rs"]
pub mod env;
#[path = "../../src/plan.rs"]
pub mod plan;
#[path = "../../src/record.rs"]
pub mod record;
#[path = "../../src/spec/mod.rs"]
pub mod spec;
#[path = "../../src/store.rs"]
pub mod store;
