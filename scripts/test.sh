#!/usr/bin/env bash
# The test command: installs what the tests need (build packages, the model), then runs
# every test. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/fetch-model.sh
# llama.cpp's llama-server for tests/real_server.rs: built once, cached in ~/.cache/sweep.
bash scripts/llama-server.sh >/dev/null
cargo test --all-targets "$@"
