#!/usr/bin/env bash
# One command to a real sweep: installs build packages, fetches Gemma 3 270M, builds sweep
# and runs experiments/quickstart.toml on the embedded llama.cpp engine (CPU, in-process).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/fetch-model.sh
# The quickstart profile (Cargo.toml): Rust code unoptimised, llama.cpp still built Release by
# its own CMake — a third of the release build's time, the same sweep time (BENCHMARKS.md).
# For long sweeps and the benches, `cargo build --release`.
cargo run --profile quickstart -- run experiments/quickstart.toml "$@"
