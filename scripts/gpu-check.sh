#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU and driver (R580 or newer for the CUDA 13
# toolkit scripts/build-cuda.sh installs): builds sweep with the `cuda` feature, runs a small
# sweep on the embedded engine (Gemma 3 270M) over num_gpu = 0, 8, 99, and asserts that
#   1. GPU telemetry is there and not zero (every call has a GPU window with energy > 0),
#   2. the layers the engine offloaded follow num_gpu (0, 8, all of them),
#   3. decode speed rises with num_gpu (median decode tok/s at 0 < 8 < 99, and every call at 99
#      faster than every call at 0: medians alone rise by chance one time in six).
# It prints the figures (for BENCHMARKS.md) and exits 0 only when all three hold; 1 when a
# check fails, 2 when the machine cannot run it (no nvidia-smi, a driver older than R580, no
# model, build failed).
#
#   scripts/gpu-check.sh                  # build (scripts/build-cuda.sh), then check
#   SWEEP_BIN=path/to/sweep scripts/gpu-check.sh   # check an existing cuda build
#   GPU_CHECK_REPS (default 3) and GPU_CHECK_TOKENS (default 128) size the sweep.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v nvidia-smi >/dev/null || { echo "gpu-check: no nvidia-smi: not a GPU machine" >&2; exit 2; }
gpus=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader) \
  || { echo "gpu-check: nvidia-smi cannot reach a GPU" >&2; exit 2; }
echo "$gpus" >&2
# The CUDA 13 runtime that scripts/build-cuda.sh links needs driver R580 or newer; an older
# driver makes ggml report "CUDA driver version is insufficient" and run on the CPU.
driver=$(echo "$gpus" | head -n 1 | cut -d, -f2 | tr -d ' ')
if [ "${driver%%.*}" -lt 580 ] 2>/dev/null; then
  echo "gpu-check: driver $driver is older than R580, which the CUDA 13 build needs" >&2
  exit 2
fi
bash scripts/fetch-model.sh >/dev/null || { echo "gpu-check: model fetch failed" >&2; exit 2; }

LIBDIR=$(bash scripts/build-cuda.sh --print-libdir)
if [ -z "${SWEEP_BIN:-}" ]; then
  # A GPU machine has cores to spare: build in parallel unless told otherwise.
  CUDA_JOBS=${CUDA_JOBS:-$(nproc)} CUDA_NICE=${CUDA_NICE:-0} bash scripts/build-cuda.sh \
    || { echo "gpu-check: the cuda build failed" >&2; exit 2; }
  SWEEP_BIN=${CUDA_TARGET_DIR:-target/cuda}/${CUDA_PROFILE:-release}
  [ "${CUDA_PROFILE:-release}" = dev ] && SWEEP_BIN=${CUDA_TARGET_DIR:-target/cuda}/debug
  SWEEP_BIN=$SWEEP_BIN/sweep
fi
export LD_LIBRARY_PATH=$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cat > "$WORK/gpu-check.toml" <<EOF
[experiment]
name = "gpu-check"
repetitions = ${GPU_CHECK_REPS:-3}
warmup = 1
seed = 11
reference = "gpu"

[backend]
kind = "embedded"
model_path = "$PWD/models/gemma-3-270m-q4_k_m.gguf"
timeout_s = 300

[corpus]
path = "$PWD/experiments/corpus"

[run]
results_dir = "$WORK/results"

[[arm]]
name = "gpu"
agent = "single"
max_tokens = ${GPU_CHECK_TOKENS:-128}
[arm.grid]
num_gpu = [0, 8, 99]
EOF

"$SWEEP_BIN" run "$WORK/gpu-check.toml" --progress plain --run-id check
RUN=$WORK/results/gpu-check/check
"$SWEEP_BIN" report "$RUN" >/dev/null

python3 - "$RUN" <<'PY'
import json, statistics, sys
run = sys.argv[1]
recs = [json.loads(l) for l in open(f"{run}/records.jsonl") if l.strip()]
tele = json.load(open(f"{run}/telemetry.json"))["sessions"][-1]
fail = []
print(f"GPU telemetry: {tele.get('gpu_source')} on {tele.get('gpus')} GPU(s), "
      f"{tele.get('gpu_samples')} samples; unavailable: {tele.get('gpu_unavailable')}")
if tele.get("gpu_source") not in ("nvml", "nvidia-smi") or not tele.get("gpus"):
    fail.append("no GPU telemetry")
calls = [r for r in recs if r["ok"] and r["phase"] != "reload"]
bad = [r for r in calls if not (r.get("gpu") or {}).get("window_energy_j")]
if bad:
    fail.append(f"{len(bad)} of {len(calls)} calls without GPU energy")
by = {}
for r in recs:
    n = r["options"].get("num_gpu")
    if r["phase"] == "reload":
        st = r.get("server_state") or {}
        by.setdefault(n, {}).setdefault("layers", set()).add(
            (st.get("layers_offloaded"), st.get("layers_total")))
    elif r["ok"] and not r["warmup"] and not r["cold"] and r.get("decode_tps"):
        d = by.setdefault(n, {})
        d.setdefault("tps", []).append(r["decode_tps"])
        g = r.get("gpu") or {}
        if g.get("energy_j") and r.get("output_tokens"):
            d.setdefault("jpt", []).append(g["energy_j"] / r["output_tokens"])
        if g.get("mean_power_w"):
            d.setdefault("w", []).append(g["mean_power_w"])
med = {}
for n in sorted(by):
    d = by[n]
    med[n] = statistics.median(d.get("tps", [0.0]))
    print(f"num_gpu={n}: layers offloaded/total {sorted(d.get('layers', []))}, "
          f"decode {med[n]:.1f} tok/s (median of {len(d.get('tps', []))} calls), "
          f"{statistics.median(d['jpt']) if d.get('jpt') else float('nan'):.3f} J/token, "
          f"{statistics.median(d['w']) if d.get('w') else float('nan'):.0f} W")
    for off, tot in d.get("layers", []):
        want = min(n, tot) if tot is not None else None
        if off is None or off != want:
            fail.append(f"num_gpu={n}: offloaded {off} of {tot}, expected {want}")
if sorted(med) != [0, 8, 99]:
    fail.append(f"cells measured: {sorted(med)}")
elif not (med[0] < med[8] < med[99]):
    fail.append(f"decode tok/s does not rise with num_gpu: {med}")
elif min(by[99]["tps"]) <= max(by[0]["tps"]):
    # Medians of three cells rise by chance one time in six; the whole offload must beat
    # the CPU on every call (by chance: 1 in 924 with the default 6 calls a cell).
    fail.append(f"decode tok/s at num_gpu=99 ({min(by[99]['tps']):.1f} slowest) does not "
                f"clear num_gpu=0 ({max(by[0]['tps']):.1f} fastest)")
for f in fail:
    print("FAIL:", f)
sys.exit(1 if fail else 0)
PY
echo "gpu-check: all checks passed" >&2
