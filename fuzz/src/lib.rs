//! The parsers under fuzzing, compiled straight from the main crate's sources under the
//! crate name `sweep`, so the targets read exactly like code using the real crate.
//!
//! Why not a dependency on `sweep`: that builds (and, under cargo fuzz, instruments)
//! polars, plotters and the rest, which these modules never use: on the 2-core CI
//! machines that alone took longer than the fuzz runs. If a module below starts using
//! another `crate::` module, add it here.
//!
//! Items that only the left-out modules (cli, runner, analysis, report) use are dead here:
//! hence the crate-wide `dead_code` allowance, for this partial build only.
#![allow(dead_code)]

#[path = "../../src/backend/mod.rs"]
pub mod backend;
#[path = "../../src/env.rs"]
pub mod env;
#[path = "../../src/metrics.rs"]
pub mod metrics;
#[path = "../../src/plan.rs"]
pub mod plan;
#[path = "../../src/record.rs"]
pub mod record;
#[path = "../../src/spec/mod.rs"]
pub mod spec;
#[path = "../../src/stats/mod.rs"]
pub mod stats;
#[path = "../../src/store/mod.rs"]
pub mod store;
/// Without its sampler (polars): records carry its per-call GPU windows.
#[path = "../../src/telemetry/mod.rs"]
pub mod telemetry;

/// The body of both stream targets: the first byte picks the network chunk size (a chunk may
/// split a line or a UTF-8 sequence anywhere), the rest is the body; every outcome must be a
/// typed error or a generation, never a panic.
pub fn fuzz_line_stream<P: backend::LineParser>(data: &[u8]) {
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let mut s = backend::LineStream::<P>::new(backend::ClientTimer::start());
    for piece in body.chunks(step) {
        match s.feed(piece) {
            Ok(true) => {
                let _ = s.finish();
                return;
            }
            Ok(false) => {}
            Err(_) => return,
        }
    }
    if s.end_of_body().is_ok() {
        let g = s
            .finish()
            .expect("end_of_body succeeded, so finish must too");
        assert!(g.timing.e2e_ms >= 0.0);
    }
}
