#!/usr/bin/env python3
"""The same analysis as `benches/aggregate.rs` (analysis::analyze_frame) in pandas +
numpy/scipy, on the same parquet file, for the speed comparison in BENCHMARKS.md.

    pip install pandas pyarrow scipy
    cargo bench --bench aggregate -- gen /tmp/sweep_bench_10m.parquet
    python3 benches/aggregate_pandas.py /tmp/sweep_bench_10m.parquet

Steps (each as in the Rust code): per-cell counts; per-(cell, rep) values (median of
latencies, token-weighted throughputs); request-level distribution per cell and metric
(n, mean, sd, median, p5/p25/p75/p95/p99, min, max); per-cell summaries and CIs across
reps (t-interval, order-statistic median CI, Tukey fences); comparisons against the
reference cell (bootstrap ratio of medians with 2000 resamples, Mann-Whitney U, Welch t
on logs, Holm and BH per metric, Cliff's delta, Hodges-Lehmann, Cohen's d); Kruskal-Wallis
and one-way ANOVA across each factor.
"""
import json
import sys
import time

import numpy as np
import pandas as pd
from scipy import stats

METRICS = ["ttft_ms", "e2e_ms", "itl_p50_ms", "decode_tps", "e2e_tps",
           "prompt_eval_ms", "eval_ms", "load_ms", "output_tokens"]
LATENCY = ["ttft_ms", "e2e_ms", "itl_p50_ms", "prompt_eval_ms", "eval_ms", "load_ms"]
QS = [0.05, 0.25, 0.75, 0.95, 0.99]
COLUMNS = ["experiment", "run_id", "arm", "cell_id", "options", "agent", "phase", "rep",
           "warmup", "order", "ok", "cold", "output_tokens", "phase_wall_ms",
           "ttft_ms", "e2e_ms", "itl_p50_ms", "decode_tps", "e2e_tps", "prompt_eval_ms",
           "eval_ms", "load_ms"]


def holm(p):
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    adj = np.empty_like(p)
    running = 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (len(p) - i) * p[k]))
        adj[k] = running
    return adj


def median_ci(x, level=0.95):
    x = np.sort(x)
    n = len(x)
    if n < 6:
        return None
    k = 1
    while k < n // 2 and stats.binom.cdf(k, n, 0.5) <= (1 - level) / 2:
        k += 1
    return x[k - 1], x[n - k]


def rep_stats(v):
    v = np.asarray(v, dtype=float)
    out = {"n": len(v), "mean": v.mean(), "median": np.median(v)}
    out.update({f"p{int(q * 100)}": np.quantile(v, q) for q in QS})
    if len(v) >= 2:
        out["sd"] = v.std(ddof=1)
        out["mean_ci"] = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    out["median_ci"] = median_ci(v)
    if len(v) >= 4:
        q1, q3 = np.quantile(v, [0.25, 0.75])
        out["outliers"] = int(((v < q1 - 1.5 * (q3 - q1)) | (v > q3 + 1.5 * (q3 - q1))).sum())
    return out


def compare(x, y, metric, rng):
    x, y = np.asarray(x, float), np.asarray(y, float)
    bx = rng.choice(x, size=(2000, len(x)), replace=True)
    by = rng.choice(y, size=(2000, len(y)), replace=True)
    ratios = np.median(bx, axis=1) / np.median(by, axis=1)
    lo, hi = np.quantile(ratios, [0.025, 0.975])
    mw = stats.mannwhitneyu(x, y, alternative="two-sided")
    log = metric != "output_tokens"
    wt = stats.ttest_ind(np.log(x) if log else x, np.log(y) if log else y, equal_var=False)
    d = np.subtract.outer(x, y)
    pooled = np.sqrt(((len(x) - 1) * x.var(ddof=1) + (len(y) - 1) * y.var(ddof=1))
                     / (len(x) + len(y) - 2))
    return {"ratio": np.median(x) / np.median(y), "lo": lo, "hi": hi, "p": mw.pvalue,
            "welch_p": wt.pvalue, "cliff": np.sign(d).mean(), "hl": np.median(d),
            "d": (x.mean() - y.mean()) / pooled if pooled > 0 else np.nan}


def main(path):
    t0 = time.perf_counter()
    df = pd.read_parquet(path, columns=COLUMNS)
    t_read = time.perf_counter() - t0

    counts = df.groupby("cell_id").agg(
        arm=("arm", "first"), first_order=("order", "min"), calls=("ok", "size"),
        warmup=("warmup", "sum"))
    nw = ~df["warmup"]
    counts["cold"] = (nw & df["cold"]).groupby(df["cell_id"]).sum()
    counts["failed"] = (nw & ~df["ok"]).groupby(df["cell_id"]).sum()
    measured = nw & df["ok"] & ~df["cold"] & (df["phase"] != "sequential")
    counts["measured"] = measured.groupby(df["cell_id"]).sum()
    m = df[measured].copy()
    counts["reps"] = m.groupby("cell_id")["rep"].nunique()
    counts = counts.sort_values(["first_order"])
    options = df.groupby(["cell_id", "agent"])["options"].first()

    # Per-rep values.
    m["tok"] = m["output_tokens"].astype(float)
    m["tok_eval"] = m["tok"].where(m["eval_ms"].notna())
    m["eval_s"] = m["eval_ms"].where(m["tok"].notna()) / 1000.0
    # Client clock: the tokens after the first over (e2e - TTFT); a call of under two tokens
    # adds nothing to either sum.
    m["client_s"] = (m["e2e_ms"] - m["ttft_ms"]) / 1000.0
    short = m["tok"] < 2
    m["tok_client"] = (m["tok"] - 1).where(m["client_s"].notna()).mask(short, 0.0)
    m["client_s"] = m["client_s"].where(m["tok"].notna()).mask(short, 0.0)
    g = m.groupby(["cell_id", "rep"])
    reps = g[LATENCY].median()
    reps["output_tokens"] = g["tok"].median()
    sums = g[["tok_eval", "eval_s", "tok_client", "client_s"]].sum()
    reps["decode_tps"] = sums["tok_eval"] / sums["eval_s"]
    reps["e2e_tps"] = sums["tok_client"] / sums["client_s"]
    reps = reps.reset_index()

    # Request-level distributions.
    m["output_tokens"] = m["tok"]
    gc = m.groupby("cell_id")[METRICS]
    request = pd.concat(
        [gc.count(), gc.mean(), gc.std(ddof=1), gc.median()]
        + [gc.quantile(q, interpolation="linear") for q in QS] + [gc.min(), gc.max()],
        axis=1, keys=["n", "mean", "sd", "median"] + [f"p{int(q * 100)}" for q in QS]
        + ["min", "max"])
    t_polars_equiv = time.perf_counter() - t0

    # Statistics across reps, comparisons, axis tests.
    rng = np.random.default_rng(42)
    cells = list(counts.index)
    ref_arm = counts["arm"].iloc[0]
    ref_cell = counts.index[counts["arm"] == ref_arm][0]
    by_cell = {c: grp for c, grp in reps.groupby("cell_id")}
    summaries, comparisons = {}, []
    for metric in METRICS:
        ps = []
        for c in cells:
            v = by_cell[c][metric].dropna().to_numpy()
            summaries[(c, metric)] = rep_stats(v)
            if c != ref_cell:
                r = compare(v, by_cell[ref_cell][metric].dropna().to_numpy(), metric, rng)
                comparisons.append(r)
                ps.append(r["p"])
        holm(ps)
        stats.false_discovery_control(ps, method="bh")
    factors = {}
    for (cell, _agent), text in options.items():
        for k, v in json.loads(text).items():
            factors.setdefault(k, {}).setdefault(str(v), []).append(cell)
    axis = 0
    for k, levels in factors.items():
        if len(levels) < 2:
            continue
        for metric in METRICS:
            groups = [np.concatenate([by_cell[c][metric].to_numpy() for c in cs])
                      for cs in levels.values()]
            stats.kruskal(*groups)
            stats.f_oneway(*groups)
            axis += 1
    total = time.perf_counter() - t0
    print(json.dumps({"impl": "pandas", "rows": int(counts["calls"].sum()),
                      "measured": int(counts["measured"].sum()), "cells": len(cells),
                      "comparisons": len(comparisons), "axis_tests": axis,
                      "read_s": round(t_read, 3), "aggregate_s": round(t_polars_equiv, 3),
                      "seconds": round(total, 3)}))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/sweep_bench_10m.parquet")
