#!/usr/bin/env python3
"""Reference values for src/stats, computed with scipy/numpy.

Writes tests/fixtures/stats_reference.json. Rerun with:
    pip install scipy numpy && python3 scripts/stats_reference.py
The Rust tests (tests/it/analysis.rs) read the JSON and compare every function.
"""
import json
import os

import numpy as np
import scipy
from scipy import stats

rng = np.random.default_rng(20261123)


def r(a):
    return [float(v) for v in a]


samples = {
    "n2": r([712.5, 698.25]),
    "n5": r(rng.lognormal(6.5, 0.1, 5)),
    "n6": r(rng.lognormal(6.5, 0.1, 6)),
    "n7": r(rng.lognormal(3.6, 0.05, 7)),
    "n10": r(rng.lognormal(6.5, 0.2, 10)),
    "n20": r(rng.normal(40.0, 1.5, 20)),
    "n31": r(rng.lognormal(6.6, 0.15, 31)),
    "ties12": r(np.round(rng.normal(10.0, 2.0, 12))),
    "ties15": r(np.round(rng.normal(11.0, 2.0, 15))),
    "outliers": r(np.concatenate([rng.normal(700, 10, 14), [1500.0, 120.0]])),
    "big40": r(rng.lognormal(6.55, 0.2, 40)),
}

out = {
    "generator": "scripts/stats_reference.py",
    "scipy": scipy.__version__,
    "numpy": np.__version__,
    "samples": samples,
}

# Descriptive statistics: numpy percentile default is linear (Hyndman–Fan type 7).
describe = {}
for name, xs in samples.items():
    a = np.array(xs)
    d = {
        "n": len(a),
        "mean": float(a.mean()),
        "median": float(np.median(a)),
        "min": float(a.min()),
        "max": float(a.max()),
    }
    for p in (5, 25, 75, 95, 99):
        d[f"p{p}"] = float(np.percentile(a, p, method="linear"))
    if len(a) >= 2:
        d["sd"] = float(a.std(ddof=1))
        d["cv"] = d["sd"] / d["mean"]
    if len(a) >= 4:
        q1, q3 = np.percentile(a, [25, 75])
        lo, hi = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
        d["tukey_lower"] = float(lo)
        d["tukey_upper"] = float(hi)
        d["tukey_labels"] = ["low" if v < lo else "high" if v > hi else "inside" for v in a]
    describe[name] = d
out["describe"] = describe

# Confidence intervals.
ci = {}
for name, xs in samples.items():
    a = np.array(xs)
    e = {}
    if len(a) >= 2:
        lo, hi = stats.t.interval(0.95, len(a) - 1, loc=a.mean(), scale=stats.sem(a))
        e["mean_t95"] = [float(lo), float(hi)]
        lo, hi = stats.t.interval(0.90, len(a) - 1, loc=a.mean(), scale=stats.sem(a))
        e["mean_t90"] = [float(lo), float(hi)]
    if len(a) >= 6:
        # Distribution-free (binomial order-statistic) CI for the median.
        c = stats.quantile_test(a, q=np.median(a), p=0.5).confidence_interval(0.95)
        e["median_os95"] = [float(c.low), float(c.high)]
    ci[name] = e
out["ci"] = ci

# Percentile bootstrap of median(x)/median(y): scipy's own resampler, so the Rust
# value (ChaCha8) can only agree within Monte Carlo error; the tests use a tolerance.
boot = []
for xn, yn in [("n10", "n31"), ("n20", "big40"), ("n31", "big40")]:
    x, y = np.array(samples[xn]), np.array(samples[yn])
    res = stats.bootstrap(
        (x, y),
        lambda a, b, axis=-1: np.median(a, axis=axis) / np.median(b, axis=axis),
        method="percentile",
        n_resamples=20000,
        confidence_level=0.95,
        random_state=np.random.default_rng(7),
        vectorized=True,
    )
    boot.append({
        "x": xn, "y": yn,
        "estimate": float(np.median(x) / np.median(y)),
        "ci": [float(res.confidence_interval.low), float(res.confidence_interval.high)],
    })
out["bootstrap_ratio_median"] = boot

# Two-sample tests and effect sizes.
pairs = [
    ("n5", "n6"), ("n6", "n7"), ("n10", "n31"), ("n20", "n10"), ("ties12", "ties15"),
    ("n31", "big40"), ("n2", "n5"), ("outliers", "n10"),
]
EXACT_MAX_N = 30  # must match MWU_EXACT_MAX_N in src/stats/twosample.rs
two = []
for xn, yn in pairs:
    x, y = np.array(samples[xn]), np.array(samples[yn])
    w = stats.ttest_ind(x, y, equal_var=False)
    wl = stats.ttest_ind(np.log(x), np.log(y), equal_var=False)
    has_ties = len(np.unique(np.concatenate([x, y]))) < len(x) + len(y)
    exact = (not has_ties) and len(x) <= EXACT_MAX_N and len(y) <= EXACT_MAX_N
    m = stats.mannwhitneyu(x, y, alternative="two-sided", use_continuity=True,
                           method="exact" if exact else "asymptotic")
    diff = np.subtract.outer(x, y)
    pooled = np.sqrt(((len(x) - 1) * x.var(ddof=1) + (len(y) - 1) * y.var(ddof=1))
                     / (len(x) + len(y) - 2))
    two.append({
        "x": xn, "y": yn,
        "welch_t": float(w.statistic), "welch_df": float(w.df), "welch_p": float(w.pvalue),
        "welch_log_t": float(wl.statistic), "welch_log_p": float(wl.pvalue),
        "mwu_u": float(m.statistic), "mwu_p": float(m.pvalue),
        "mwu_method": "exact" if exact else "asymptotic",
        "cliffs_delta": float((np.sign(diff)).mean()),
        "hodges_lehmann": float(np.median(diff)),
        "cohens_d": float((x.mean() - y.mean()) / pooled),
    })
out["two_sample"] = two

# Multiple-comparison adjustment.
def holm(p):
    p = np.asarray(p)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[k]))
        adj[k] = running
    return adj

pv = [0.01, 0.04, 0.03, 0.005, 0.2, 0.04, 0.9, 0.0001]
out["adjust"] = {
    "p": pv,
    "holm": r(holm(pv)),
    "bh": r(stats.false_discovery_control(pv, method="bh")),
}

# k-sample tests across an axis.
ks = []
for names in [("n10", "n31", "big40"), ("ties12", "ties15", "n7"), ("n5", "n6")]:
    g = [np.array(samples[n]) for n in names]
    k = stats.kruskal(*g)
    f = stats.f_oneway(*g)
    ks.append({
        "groups": list(names),
        "kruskal_h": float(k.statistic), "kruskal_p": float(k.pvalue),
        "anova_f": float(f.statistic), "anova_p": float(f.pvalue),
    })
out["k_sample"] = ks

path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "stats_reference.json")
with open(path, "w") as fh:
    json.dump(out, fh, indent=1)
    fh.write("\n")
print("wrote", os.path.normpath(path))
