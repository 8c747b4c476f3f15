#!/usr/bin/env bash
# Prints the gate's operating-characteristic table (BENCHMARKS.md, README's nightly section):
# 1 000 simulated nightlies per cell of the table, seeded, judged by the gate's own code.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --test it gate::operating_characteristics_table -- --ignored --nocapture 2>/dev/null | grep '^|'
