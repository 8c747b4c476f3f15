#!/usr/bin/env bash
# What randomized blocks cost against the reload-minimizing order, measured: the gemma3 grid
# (experiments/gemma3.toml: its 5 arms, 16 cells and reload groups) on the embedded engine,
# run once with order = "blocks" and once with order = "interleaved", one after the other on
# the same machine. Prints per order: wall time, reload probes, calls. BENCHMARKS.md,
# "Run order: what randomized blocks cost", has the figures and the command.
#   scripts/order-cost.sh [REPS]        (default 2 reps + 1 warm-up per cell)
# Differences from gemma3.toml, all forced by the embedded engine on a CPU: backend embedded
# (Gemma 3 270M), no endpoints (one engine), num_ctx [1024, 1536, 2048] instead of [256, 512,
# 1024] (the prompts do not fit 256 tokens; the number of levels, so of reload groups, is the
# same), max_tokens = 32 and prompt_version = "small-1" (time), no [compare] table.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-2}
sweep=${SWEEP:-target/release/sweep}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for order in blocks interleaved; do
  cat >"$tmp/order-$order.toml" <<EOF
[experiment]
name = "order-$order"
repetitions = $reps
warmup = 1
seed = 42
order = "$order"
reference = "baseline"
prompt_version = "small-1"

[backend]
kind = "embedded"
model_path = "$PWD/models/gemma-3-270m-q4_k_m.gguf"
timeout_s = 300

[corpus]
path = "$PWD/experiments/corpus"

[run]
results_dir = "$tmp/results"

[[arm]]
name = "baseline"
agent = "single"
max_tokens = 32

[[arm]]
name = "chimera"
agent = "single"
max_tokens = 32
[arm.grid]
num_gpu = [80, 120]
num_ctx = [1024, 1536, 2048]
temperature = [0.6, 1.0]

[[arm]]
name = "baseline_vs_chimera"
agent = "pair"
a = { max_tokens = 32 }
b = { num_gpu = 80, num_ctx = 1536, temperature = 1.0, max_tokens = 32 }

[[arm]]
name = "chimera_homo"
agent = "pair"
a = { num_gpu = 80, num_ctx = 1536, temperature = 1.0, max_tokens = 32 }
b = { num_gpu = 80, num_ctx = 1536, temperature = 1.0, max_tokens = 32 }

[[arm]]
name = "chimera_hetero"
agent = "pair"
a = { num_gpu = 80, num_ctx = 1536, temperature = 1.0, max_tokens = 32 }
b = { num_gpu = 80, num_ctx = 2048, temperature = 1.0, max_tokens = 32 }
EOF
done
"$sweep" plan "$tmp/order-blocks.toml" | grep -E "reloads by order|LLM calls" || true
printf '%-12s %10s %8s %8s %8s\n' order wall_s reloads calls failed
for order in blocks interleaved; do
  start=$(date +%s.%N)
  "$sweep" run "$tmp/order-$order.toml" --quiet >/dev/null 2>"$tmp/order-$order.log"
  end=$(date +%s.%N)
  rec=$(ls -d "$tmp"/results/order-"$order"/*/ | head -1)records.jsonl
  python3 - "$rec" "$order" "$start" "$end" <<'PY'
import json, sys
rec, order, start, end = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
rows = [json.loads(l) for l in open(rec)]
reload = sum(1 for r in rows if r["phase"] == "reload")
calls = sum(1 for r in rows if r["phase"] != "reload")
failed = sum(1 for r in rows if r["phase"] != "reload" and not r["ok"])
print(f"{order:<12} {end - start:10.1f} {reload:8d} {calls:8d} {failed:8d}")
PY
done
