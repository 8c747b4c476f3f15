#!/usr/bin/env bash
# The test command: installs what the tests need (build packages, the model), then runs
# every test. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/install-report-deps.sh
bash scripts/fetch-model.sh
# Real servers for tests/it/real_server.rs, built once and cached in ~/.cache/sweep:
# llama.cpp's llama-server, and llama-cpp-python's server (no usage in its stream).
bash scripts/llama-server.sh >/dev/null
bash scripts/llama-cpp-python.sh >/dev/null
# Slurm (tests/it/cluster.rs starts a one-node cluster on 127.0.0.1) and the Kubernetes
# schema checker.
bash scripts/cluster-tools.sh
# The house rules first: formatted, no clippy warnings (cheap next to the tests).
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
# The Ollama-protocol peer that tests/it/managed_ollama.rs starts as `ollama serve` (Ollama
# itself is not in any package registry this project may use).
cargo build -p sweep-testkit --example peer
cargo test --all-targets "$@"
# Tests whose measurement is the machine's throughput run alone, after the parallel pass
# (they are #[ignore]d there): a neighbouring test on 2 cores would be what they measure.
cargo test --test it "$@" -- --ignored --test-threads=1 --exact \
    managed_server::levels_on_four_slots_raise_throughput_then_queue
