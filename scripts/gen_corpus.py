#!/usr/bin/env python3
"""Generates the shipped benchmark corpus, experiments/corpus/ (101 files: 28 CSV, 44 JSON,
29 Markdown), deterministically (seeded, standard library only).

Git keeps no modification times, so the intended mtimes go to experiments/corpus.mtimes.tsv
(path<TAB>unix seconds<TAB>sha256 of the content, outside the corpus so they are not part of
it). sweep's corpus loader reads that file beside the corpus directory and uses the recorded
time of every file whose content still has the recorded hash, so a fresh clone prints the
seeds' "Latest modified" lines with no step of its own. `--touch` also sets the files' mtimes
(for other tools that read the filesystem).

    python3 scripts/gen_corpus.py           # (re)write the corpus and the mtimes file
    python3 scripts/gen_corpus.py --touch   # also set the files' mtimes
"""

import argparse
import calendar
import hashlib
import json
import os
import random
import re
import shutil
import sys

SEED = 20251114
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "experiments")
CORPUS = os.path.join(ROOT, "corpus")
MTIMES = os.path.join(ROOT, "corpus.mtimes.tsv")

# Every name visible in the seeds comes first; the rest are invented in the same style and
# chosen so that the first five paths of each kind (sorted) are the seeds' five.
CSV = [
    "reports/gemma3/gemma3_1b-it-qat_baseline.csv",
    "reports/gemma3/gemma3_1b-it-qat_param_tuning.csv",
    "reports/gemma3/gemma3_1b-it-qat_param_tuning_summary.csv",
    "reports/gemma3/gemma3_270m_baseline.csv",
    "reports/gemma3/gemma3_270m_param_tuning.csv",
    "reports/gemma3/gemma3_270m_param_tuning_summary.csv",
    "reports/gemma3/gemma3_4b-it-qat_baseline.csv",
    "reports/gemma3/gemma3_4b-it-qat_param_tuning.csv",
    "reports/gemma3/gemma3_4b-it-qat_param_tuning_summary.csv",
    "reports/llama3/llama3.2_1b_baseline.csv",
    "reports/llama3/llama3.2_1b_param_tuning.csv",
    "reports/llama3/llama3.2_1b_param_tuning_summary.csv",
    "reports/llama3/llama3.2_3b_baseline.csv",
    "reports/llama3/llama3.2_3b_param_tuning.csv",
    "reports/llama3/llama3.2_3b_param_tuning_summary.csv",
    "reports/qwen2.5/qwen2.5_0.5b_baseline.csv",
    "reports/qwen2.5/qwen2.5_0.5b_param_tuning.csv",
    "reports/qwen2.5/qwen2.5_0.5b_param_tuning_summary.csv",
    "reports/qwen2.5/qwen2.5_1.5b_baseline.csv",
    "reports/qwen2.5/qwen2.5_1.5b_param_tuning.csv",
    "reports/qwen2.5/qwen2.5_1.5b_param_tuning_summary.csv",
    "reports/ollama/ollama_concurrency_sweep_20251108.csv",
    "reports/ollama/ollama_num_ctx_sweep_20251109.csv",
    "reports/ollama/ollama_num_gpu_sweep_20251110.csv",
    "reports/ollama/ollama_keep_alive_20251111.csv",
    "reports/tr108/tr108_agent_throughput_20251113.csv",
    "reports/tr108/tr108_agent_ttft_20251113.csv",
    "reports/tr108/tr108_multiagent_speedup_20251114.csv",
]

JSON = [
    "reports/ascii_demo_20251004_143244.json",
    "reports/ascii_demo_20251004_170151.json",
    "reports/ascii_demo_20251004_175024.json",
    "reports/compilation/conv_bench_20251002-170837.json",
    "reports/compilation/conv_cuda_bench_20251002-172037.json",
    "reports/compilation/conv_cuda_bench_20251003-091204.json",
    "reports/compilation/mlp_bench_20251002-165750.json",
    "reports/compilation/mlp_cuda_bench_20251002-171845.json",
    "reports/compilation/mlp_cuda_bench_20251003-093517.json",
    "reports/compilation/quant_bench_20251003-112406.json",
    "reports/compilation/rmsnorm_bench_20251003-095140.json",
    "reports/compilation/rmsnorm_cuda_bench_20251003-100422.json",
    "reports/compilation/transformer_bench_20251003-103344.json",
    "reports/compilation/transformer_cuda_bench_20251003-110215.json",
    "reports/gemma3/gemma3_1b-it-qat_bench_20251005-141230.json",
    "reports/gemma3/gemma3_1b-it-qat_bench_20251006-092211.json",
    "reports/gemma3/gemma3_270m_bench_20251005-143518.json",
    "reports/gemma3/gemma3_270m_bench_20251006-094402.json",
    "reports/gemma3/gemma3_4b-it-qat_bench_20251006-101733.json",
    "reports/llama3/llama3.2_1b_bench_20251006-110425.json",
    "reports/llama3/llama3.2_3b_bench_20251006-113052.json",
    "reports/ollama/ollama_concurrency_20251007-110850.json",
    "reports/ollama/ollama_keep_alive_20251007-113402.json",
    "reports/ollama/ollama_num_ctx_20251007-100230.json",
    "reports/ollama/ollama_num_gpu_20251007-103311.json",
    "reports/ollama/ollama_streaming_20251007-090112.json",
    "reports/ollama/ollama_streaming_20251007-091545.json",
    "reports/qwen2.5/qwen2.5_0.5b_bench_20251006-120318.json",
    "reports/qwen2.5/qwen2.5_1.5b_bench_20251006-122740.json",
    "reports/runtime/async_std_runtime_20251008-121930.json",
    "reports/runtime/python_agent_20251007-150144.json",
    "reports/runtime/python_agent_20251007-152610.json",
    "reports/runtime/python_multiagent_20251008-111836.json",
    "reports/runtime/python_multiagent_20251008-114203.json",
    "reports/runtime/rust_agent_20251007-140215.json",
    "reports/runtime/rust_agent_20251007-142933.json",
    "reports/runtime/rust_multiagent_20251008-101122.json",
    "reports/runtime/rust_multiagent_20251008-104507.json",
    "reports/runtime/tokio_runtime_20251008-120455.json",
    "reports/tr108/tr108_baseline_20251008-130412.json",
    "reports/tr108/tr108_chimera_20251008-134455.json",
    "reports/tr108/tr108_chimera_hetero_20251008-150918.json",
    "reports/tr108/tr108_chimera_homo_20251008-155231.json",
    "reports/tr108/tr108_summary_20251008-172051.json",
]

MD = [
    "reports/compilation/compilation_benchmark_lessons_20251002.md",
    "reports/compilation/conv_bench_20251002-170837.md",
    "reports/compilation/conv_cuda_bench_20251002-172037.md",
    "reports/compilation/mlp_bench_20251002-165750.md",
    "reports/compilation/mlp_cuda_bench_20251002-171845.md",
    "reports/compilation/quant_bench_20251003-112406.md",
    "reports/compilation/rmsnorm_bench_20251003-095140.md",
    "reports/compilation/transformer_bench_20251003-103344.md",
    "reports/gemma3/gemma3_1b-it-qat_baseline_report.md",
    "reports/gemma3/gemma3_1b-it-qat_param_tuning_report.md",
    "reports/gemma3/gemma3_270m_baseline_report.md",
    "reports/gemma3/gemma3_270m_param_tuning_report.md",
    "reports/gemma3/gemma3_4b-it-qat_param_tuning_report.md",
    "reports/llama3/llama3.2_1b_report.md",
    "reports/llama3/llama3.2_3b_report.md",
    "reports/ollama/ollama_num_ctx_findings_20251109.md",
    "reports/ollama/ollama_tuning_notes_20251111.md",
    "reports/qwen2.5/qwen2.5_report.md",
    "reports/runtime/multiagent_concurrency_20251013.md",
    "reports/runtime/runtime_comparison_20251014.md",
    "reports/runtime/rust_vs_python_agents_20251012.md",
    "reports/tr108/tr108_executive_summary_20251114.md",
    "reports/tr108/tr108_technical_report_20251113.md",
    "reports/tr109/tr109_lessons_learned_20251114.md",
    "reports/tr109/tr109_methodology_20251114.md",
    "reports/tr109/tr109_rust_agent_report_20251114.md",
    "reports/tr110/tr110_hetero_vs_homo_20251114.md",
    "reports/tr110/tr110_methodology_20251114.md",
    "reports/tr110/tr110_multiagent_report_20251114.md",
]

# The newest file of each kind carries the seeds' "Latest modified" time exactly.
LATEST = {
    "reports/tr108/tr108_multiagent_speedup_20251114.csv": "2025-11-14 18:53:30",
    "reports/tr108/tr108_summary_20251008-172051.json": "2025-10-08 17:20:51",
    "reports/tr110/tr110_multiagent_report_20251114.md": "2025-11-14 18:54:07",
}
# Upper bound per kind for every other file (strictly before the kind's latest).
CAP = {"csv": "2025-11-14 18:53:29", "json": "2025-10-08 17:20:50", "md": "2025-11-14 18:54:06"}


def utc(text):
    return calendar.timegm(
        (int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]), int(text[17:19]), 0, 0, 0)
    )


def mtime_for(path, rng):
    """A plausible mtime: the timestamp in the name (or its date, or a default) plus a few
    minutes, never past the kind's cap."""
    if path in LATEST:
        return utc(LATEST[path])
    ext = path.rsplit(".", 1)[1]
    m = re.search(r"(\d{8})[-_](\d{6})", path)
    if m:
        d, t = m.group(1), m.group(2)
        base = utc(f"{d[0:4]}-{d[4:6]}-{d[6:8]} {t[0:2]}:{t[2:4]}:{t[4:6]}")
    else:
        m = re.search(r"(2025\d{4})", path)
        d = m.group(1) if m else "20251101"
        base = utc(f"{d[0:4]}-{d[4:6]}-{d[6:8]} 09:00:00") + rng.randint(0, 8 * 3600)
    return min(base + rng.randint(5, 900), utc(CAP[ext]))


def model_of(path):
    name = os.path.basename(path)
    for prefix, model in [
        ("gemma3_1b-it-qat", "gemma3:1b-it-qat"),
        ("gemma3_270m", "gemma3:270m"),
        ("gemma3_4b-it-qat", "gemma3:4b-it-qat"),
        ("llama3.2_1b", "llama3.2:1b"),
        ("llama3.2_3b", "llama3.2:3b"),
        ("qwen2.5_0.5b", "qwen2.5:0.5b"),
        ("qwen2.5_1.5b", "qwen2.5:1.5b"),
    ]:
        if name.startswith(prefix):
            return model
    return "gemma3:latest"


def speed_of(model):
    """Rough decode tok/s and TTFT ms of a model size, so the numbers hang together."""
    table = {
        "gemma3:270m": (182.0, 95.0),
        "qwen2.5:0.5b": (158.0, 110.0),
        "gemma3:1b-it-qat": (121.0, 160.0),
        "llama3.2:1b": (114.0, 170.0),
        "qwen2.5:1.5b": (88.0, 210.0),
        "llama3.2:3b": (63.0, 290.0),
        "gemma3:4b-it-qat": (47.0, 360.0),
    }
    return table.get(model, (102.0, 600.0))


def r2(x):
    return round(x, 2)


def percentiles(rng, center, spread):
    p50 = center * rng.uniform(0.95, 1.05)
    return {
        "p50": r2(p50),
        "p90": r2(p50 * (1 + spread * rng.uniform(0.8, 1.2))),
        "p95": r2(p50 * (1 + 1.4 * spread * rng.uniform(0.9, 1.1))),
        "p99": r2(p50 * (1 + 2.2 * spread * rng.uniform(0.9, 1.1))),
    }


def csv_text(path, rng):
    model = model_of(path)
    tps, ttft = speed_of(model)
    name = os.path.basename(path)
    rows = []
    if "param_tuning_summary" in name:
        header = ["num_gpu", "num_ctx", "temperature", "runs", "mean_tokens_per_second", "sd_tokens_per_second", "mean_ttft_ms", "p95_latency_ms"]
        for gpu in (60, 80, 120):
            for ctx in (512, 1024, 2048):
                for temp in (0.6, 1.0):
                    t = tps * rng.uniform(0.85, 1.1) * (1.0 if gpu >= 80 else 0.8)
                    rows.append([gpu, ctx, temp, 5, r2(t), r2(t * rng.uniform(0.01, 0.05)), r2(ttft * (ctx / 1024) ** 0.3 * rng.uniform(0.9, 1.2)), r2(1000 * 512 / t * rng.uniform(1.0, 1.15))])
    elif "param_tuning" in name:
        header = ["run_id", "model", "num_gpu", "num_ctx", "temperature", "tokens_per_second", "ttft_ms", "total_latency_ms", "eval_count"]
        i = 0
        for gpu in (60, 80, 120):
            for ctx in (512, 1024, 2048):
                for rep in range(2):
                    i += 1
                    t = tps * rng.uniform(0.85, 1.1) * (1.0 if gpu >= 80 else 0.8)
                    n = rng.randint(380, 900)
                    rows.append([i, model, gpu, ctx, rng.choice([0.6, 1.0]), r2(t), r2(ttft * rng.uniform(0.85, 1.3)), r2(n / t * 1000 + ttft), n])
    elif "baseline" in name:
        header = ["run", "model", "prompt_tokens", "eval_count", "tokens_per_second", "ttft_ms", "load_duration_ms", "total_latency_ms"]
        for run in range(1, 11):
            t = tps * rng.uniform(0.9, 1.08)
            n = rng.randint(300, 950)
            load = r2(rng.uniform(400, 900)) if run == 1 else r2(rng.uniform(0.05, 0.4))
            rows.append([run, model, rng.randint(180, 420), n, r2(t), r2(ttft * rng.uniform(0.9, 1.2) + (load if run == 1 else 0)), load, r2(n / t * 1000 + ttft)])
    elif "concurrency" in name or "speedup" in name:
        header = ["scenario", "agents", "concurrent_wall_s", "sequential_wall_s", "speedup", "efficiency_pct", "throughput_tok_s"]
        for scen in ("baseline_vs_chimera", "chimera_homo", "chimera_hetero"):
            for agents in (1, 2, 3, 4):
                seq = rng.uniform(45, 65) * agents
                sp = 1.0 if agents == 1 else rng.uniform(1.2, min(1.95, agents * 0.9))
                rows.append([scen, agents, r2(seq / sp), r2(seq), r2(sp), r2(sp / agents * 100), r2(tps * rng.uniform(0.8, 1.0))])
    elif "num_ctx" in name:
        header = ["num_ctx", "runs", "tokens_per_second", "ttft_ms", "p95_latency_ms", "vram_mb"]
        for ctx in (256, 512, 1024, 2048, 4096, 8192):
            rows.append([ctx, 5, r2(tps * rng.uniform(0.9, 1.05)), r2(ttft * (ctx / 1024) ** 0.35), r2(rng.uniform(4000, 9000)), rng.randint(1800, 6200)])
    elif "num_gpu" in name:
        header = ["num_gpu", "runs", "tokens_per_second", "ttft_ms", "load_duration_ms"]
        for gpu in (0, 20, 40, 60, 80, 100, 120):
            frac = min(gpu, 80) / 80
            rows.append([gpu, 5, r2(tps * (0.25 + 0.75 * frac) * rng.uniform(0.95, 1.05)), r2(ttft * (2.5 - 1.5 * frac)), r2(rng.uniform(300, 900))])
    elif "keep_alive" in name:
        header = ["keep_alive", "request", "cold", "load_duration_ms", "ttft_ms"]
        for ka in ("0", "30s", "5m", "-1"):
            for req in range(1, 4):
                cold = ka == "0" or req == 1
                load = r2(rng.uniform(450, 800)) if cold else r2(rng.uniform(0.05, 0.3))
                rows.append([ka, req, str(cold).lower(), load, r2(ttft + load)])
    else:  # tr108 agent throughput / ttft
        header = ["agent", "config", "run", "throughput_tok_s", "ttft_ms", "total_duration_ms", "tokens_generated"]
        for agent in ("baseline", "chimera_a", "chimera_b", "insight"):
            for run in range(1, 6):
                t = rng.uniform(40, 110)
                n = rng.randint(1800, 2700)
                rows.append([agent, "num_gpu=80;num_ctx=512" if agent != "baseline" else "defaults", run, r2(t), r2(rng.uniform(500, 950)), r2(n / t * 1000), n])
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    return "\n".join(lines) + "\n"


def json_doc(path, rng):
    name = os.path.basename(path)
    stamp = re.search(r"(\d{8})[-_](\d{6})", name)
    ts = None
    if stamp:
        d, t = stamp.group(1), stamp.group(2)
        ts = f"{d[0:4]}-{d[4:6]}-{d[6:8]}T{t[0:2]}:{t[2:4]}:{t[4:6]}Z"
    if name.startswith("ascii_demo"):
        frames = rng.randint(120, 240)
        return {
            "timestamp": ts,
            "demo": "ascii_stream",
            "model": "gemma3:latest",
            "frames": frames,
            "render": {"fps": r2(rng.uniform(24, 60)), "frame_latency_ms": percentiles(rng, rng.uniform(8, 20), 0.3)},
            "llm": {"tokens_per_second": r2(rng.uniform(95, 115)), "ttft_ms": r2(rng.uniform(450, 800)), "eval_count": rng.randint(500, 1500)},
        }
    if "/compilation/" in path:
        op = name.split("_bench")[0].replace("_cuda", "")
        cuda = "_cuda_" in name
        compute = rng.uniform(0.4, 16.0) if cuda else rng.uniform(2.0, 40.0)
        launch = rng.uniform(0.005, 0.02)
        transfer = rng.uniform(0.004, 0.012) if cuda else 0.0
        total = compute + launch + transfer
        lat = percentiles(rng, total, 0.02)
        return {
            "timestamp": ts,
            "benchmark": name.rsplit("_", 1)[0],
            "operator": op,
            "device": "cuda:0" if cuda else "cpu",
            "model_variant": rng.choice(["gemma3-270m", "gemma3-1b"]),
            "config": {"batch_size": rng.choice([1, 4, 8, 16]), "dtype": rng.choice(["float16", "bfloat16", "float32"]), "block_size": rng.choice([256, 512, 1024]) if cuda else None, "compile_mode": rng.choice(["default", "reduce-overhead", "max-autotune"])},
            "iterations": 50,
            "kernel_launch_time": round(launch, 4),
            "data_transfer": round(transfer, 4),
            "compute_time": round(compute, 4),
            "total_latency": round(total, 6),
            "latency_s": lat,
            "throughput_samples_per_s": r2(50 / total),
            "speedup_vs_eager": r2(rng.uniform(0.9, 2.6)),
        }
    model = model_of(path)
    tps, ttft = speed_of(model)
    runs = []
    for i in range(rng.randint(3, 6)):
        t = tps * rng.uniform(0.9, 1.08)
        n = rng.randint(300, 1200)
        runs.append({
            "run": i + 1,
            "tokens_per_second": r2(t),
            "ttft_ms": r2(ttft * rng.uniform(0.9, 1.3)),
            "eval_count": n,
            "eval_duration_ms": r2(n / t * 1000),
            "prompt_eval_duration_ms": r2(rng.uniform(40, 400)),
            "load_duration_ms": r2(rng.uniform(0.05, 900) if i == 0 else rng.uniform(0.05, 0.4)),
        })
    tp = [r["tokens_per_second"] for r in runs]
    doc = {
        "timestamp": ts,
        "model": model,
        "ollama": {"url": "http://localhost:11434", "version": "0.12.10"},
        "options": {"num_gpu": rng.choice([60, 80, 120]), "num_ctx": rng.choice([512, 1024, 2048]), "temperature": rng.choice([0.6, 0.8, 1.0])},
        "runs": runs,
        "summary": {
            "mean_tokens_per_second": r2(sum(tp) / len(tp)),
            "ttft_ms": percentiles(rng, ttft, 0.2),
            "latency_ms": percentiles(rng, sum(r["eval_duration_ms"] for r in runs) / len(runs), 0.15),
        },
    }
    if "multiagent" in name or "/tr108/" in path:
        seq = rng.uniform(95, 125)
        sp = rng.uniform(1.2, 1.95)
        doc["concurrency"] = {"agents": 2, "concurrent_wall_s": r2(seq / sp), "sequential_wall_s": r2(seq), "speedup": r2(sp), "efficiency_pct": r2(sp / 2 * 100)}
    if "runtime" in name or "_agent_" in name:
        doc["runtime"] = {"name": name.split("_20")[0], "rss_mb": r2(rng.uniform(18, 160)), "startup_ms": r2(rng.uniform(2, 400))}
    return doc


def md_text(path, rng):
    name = os.path.basename(path)[:-3]
    title = name.replace("_", " ").replace("-", " ")
    model = model_of(path)
    tps, ttft = speed_of(model)
    t1, t2 = r2(tps * rng.uniform(0.9, 1.0)), r2(tps * rng.uniform(1.0, 1.12))
    lines = [
        f"# {title}",
        "",
        f"Model: `{model}` on a single GPU host, Ollama 0.12.x, 5 runs per configuration.",
        "",
        "## Summary",
        "",
        f"- Decode throughput ranged from **{t1} tok/s** to **{t2} tok/s**.",
        f"- Median TTFT was **{r2(ttft * rng.uniform(0.9, 1.2))} ms**; p95 **{r2(ttft * rng.uniform(1.3, 1.8))} ms**.",
        f"- The first call after an option change paid a model load of about {r2(rng.uniform(400, 900))} ms.",
        "",
        "## Results",
        "",
        "| config | tok/s | TTFT ms | p95 latency ms |",
        "|---|---|---|---|",
    ]
    for gpu, ctx in ((60, 512), (80, 512), (80, 1024), (120, 2048)):
        t = tps * rng.uniform(0.85, 1.1)
        lines.append(f"| num_gpu={gpu}, num_ctx={ctx} | {r2(t)} | {r2(ttft * rng.uniform(0.9, 1.3))} | {r2(512 / t * 1000 * rng.uniform(1.0, 1.2))} |")
    lines += [
        "",
        "## Notes",
        "",
        rng.choice([
            "- Larger contexts cost TTFT but not decode speed.",
            "- Partial offload (num_gpu below the layer count) halves throughput.",
            "- Repeated identical prompts hit the prompt cache; TTFT numbers from them are not comparable.",
            "- Two agents on one server contend for the same GPU; speedup stays well below 2x.",
        ]),
        rng.choice([
            "- Temperature has no measurable effect on speed.",
            "- Keep-alive avoids the reload cost between runs.",
            "- Compile modes matter more on small batch sizes.",
        ]),
        "",
    ]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--touch", action="store_true", help="set the files' mtimes to the recorded ones")
    args = ap.parse_args()
    assert (len(CSV), len(JSON), len(MD)) == (28, 44, 29), "corpus must be 28 CSV, 44 JSON, 29 MD"
    rng = random.Random(SEED)
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    mtimes = []
    for path in sorted(CSV + JSON + MD):
        full = os.path.join(CORPUS, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        if path.endswith(".csv"):
            text = csv_text(path, rng)
        elif path.endswith(".json"):
            text = json.dumps(json_doc(path, rng), indent=2) + "\n"
        else:
            text = md_text(path, rng)
        with open(full, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        with open(full, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        mtimes.append((path, mtime_for(path, rng), sha))
    with open(MTIMES, "w", encoding="utf-8", newline="\n") as f:
        f.write("# path\tmtime (unix seconds, UTC)\tsha256 of the content; written by scripts/gen_corpus.py,\n")
        f.write("# read by sweep's corpus loader (a file whose content differs gets its filesystem time)\n")
        for path, t, sha in mtimes:
            f.write(f"{path}\t{t}\t{sha}\n")
    if args.touch:
        for path, t, _ in mtimes:
            os.utime(os.path.join(CORPUS, path), (t, t))
    print(f"wrote {len(mtimes)} files under {os.path.normpath(CORPUS)}", file=sys.stderr)


if __name__ == "__main__":
    main()
