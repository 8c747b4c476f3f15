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
cargo test --all-targets "$@"
