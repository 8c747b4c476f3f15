#!/usr/bin/env bash
# One command to a real sweep: installs build packages, fetches Gemma 3 270M, builds sweep
# and runs experiments/quickstart.toml on the embedded llama.cpp engine (CPU, in-process).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/fetch-model.sh
cargo run --release -- run experiments/quickstart.toml "$@"
