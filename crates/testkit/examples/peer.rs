//! The protocol peer as a standalone process, for what needs a server process rather than an
//! in-test server.
//!
//! `peer PORT [SLOTS] [TOKENS] [GAP_MS]` (`cargo run --release -p sweep-testkit --example
//! peer -- …`) serves llama-server's protocol on 127.0.0.1:PORT until killed: SLOTS slots
//! (default 64), TOKENS tokens per answer (default 8), GAP_MS ms before the first and between
//! tokens (default 5). BENCHMARKS.md drives it with sweep and guidellm side by side.
//!
//! `peer serve [TOKENS] [GAP_MS]` starts the way `ollama serve` does, for the tests of
//! sweep's managed Ollama: the address from `OLLAMA_HOST` (default 127.0.0.1:11434), at most
//! `OLLAMA_NUM_PARALLEL` generations at once (default 1, Ollama's default in current
//! releases), Ollama's load times, and it logs its settings to stderr as Ollama does.

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

fn serve_like_ollama() -> MockServer {
    let host = std::env::var("OLLAMA_HOST").unwrap_or_else(|_| "127.0.0.1:11434".into());
    let parallel: usize = std::env::var("OLLAMA_NUM_PARALLEL")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1);
    let gap = Duration::from_millis(arg(3, 20));
    eprintln!("server config env=\"map[OLLAMA_HOST:{host} OLLAMA_NUM_PARALLEL:{parallel}]\"");
    let server = MockServer::start_on(
        host.as_str(),
        MockConfig {
            tokens: arg(2, 8) as usize,
            first_token_delay: gap,
            inter_token_delay: gap,
            ollama_num_parallel: Some(parallel),
            record_requests: false,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("Error: listen tcp {host}: bind: {e}"));
    eprintln!("Listening on {} (version 0.6.5)", server.addr);
    server
}

fn main() {
    let _server = if std::env::args().nth(1).as_deref() == Some("serve") {
        serve_like_ollama()
    } else {
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
        server
    };
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
