//! The llama-server protocol peer as a standalone process, for measurements that drive it
//! with other clients side by side (BENCHMARKS.md: the open-loop send-time error of sweep
//! and of guidellm against the same local server).
//!
//! `cargo run --release -p sweep-testkit --example peer -- PORT [SLOTS] [TOKENS] [GAP_MS]`
//! serves on 127.0.0.1:PORT until killed: SLOTS slots (default 64), TOKENS tokens per
//! answer (default 8), GAP_MS ms before the first and between tokens (default 5).

use std::time::Duration;
use sweep_testkit::{MockConfig, MockModel, MockServer};

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .map(|a| {
            a.parse()
                .unwrap_or_else(|_| panic!("argument {i}: not a number: {a}"))
        })
        .unwrap_or(default)
}

fn main() {
    let port = arg(1, 8123);
    let gap = Duration::from_millis(arg(4, 5));
    let server = MockServer::start_on(
        ("127.0.0.1", port as u16),
        MockConfig {
            slots: arg(2, 64) as usize,
            tokens: arg(3, 8) as usize,
            first_token_delay: gap,
            inter_token_delay: gap,
            record_requests: false,
            models: vec![MockModel::named("peer")],
            ..Default::default()
        },
    )
    .expect("bind the peer's port");
    println!("peer serving on {}", server.url());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
