//! Integration tests for `stats` (against scipy reference values), `analysis` and `report`.

use serde_json::Value;
use sweep::stats::{self, MwuMethod, OutlierLabel, Statistic, StatsError};

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/stats_reference.json"
    );
    let text = std::fs::read_to_string(path).expect("fixture present");
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn vals(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn sample(f: &Value, name: &str) -> Vec<f64> {
    vals(&f["samples"][name])
}

#[track_caller]
fn close(got: f64, want: f64, rel: f64, what: &str) {
    let tol = rel * want.abs().max(1e-300);
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, scipy {want} (rel tol {rel})"
    );
}

#[test]
fn describe_matches_numpy() {
    let f = fixture();
    for (name, d) in f["describe"].as_object().unwrap() {
        let xs = sample(&f, name);
        let s = stats::summarize(&xs).unwrap();
        assert_eq!(s.n as u64, d["n"].as_u64().unwrap());
        for (k, got) in [
            ("mean", s.mean),
            ("median", s.median),
            ("min", s.min),
            ("max", s.max),
            ("p5", s.p5),
            ("p25", s.p25),
            ("p75", s.p75),
            ("p95", s.p95),
            ("p99", s.p99),
        ] {
            close(got, d[k].as_f64().unwrap(), 1e-12, &format!("{name}.{k}"));
        }
        if let Some(sd) = d["sd"].as_f64() {
            close(s.sd.unwrap(), sd, 1e-10, &format!("{name}.sd"));
            close(s.cv.unwrap(), d["cv"].as_f64().unwrap(), 1e-10, "cv");
        } else {
            assert!(s.sd.is_none(), "{name}: sd must be None below n = 2");
        }
        match stats::tukey_fences(&xs) {
            Ok(t) => {
                close(
                    t.lower,
                    d["tukey_lower"].as_f64().unwrap(),
                    1e-12,
                    "lower fence",
                );
                close(
                    t.upper,
                    d["tukey_upper"].as_f64().unwrap(),
                    1e-12,
                    "upper fence",
                );
                let want: Vec<OutlierLabel> =
                    serde_json::from_value(d["tukey_labels"].clone()).unwrap();
                assert_eq!(t.labels, want, "{name} labels");
            }
            Err(e) => assert!(d.get("tukey_lower").is_none(), "{name}: {e}"),
        }
    }
    assert_eq!(
        stats::tukey_fences(&sample(&f, "outliers"))
            .unwrap()
            .outliers(),
        2
    );
}

#[test]
fn confidence_intervals_match_scipy() {
    let f = fixture();
    for (name, e) in f["ci"].as_object().unwrap() {
        let xs = sample(&f, name);
        for (key, level) in [("mean_t95", 0.95), ("mean_t90", 0.90)] {
            if let Some(want) = e.get(key) {
                let want = vals(want);
                let got = stats::mean_ci_t(&xs, level).unwrap();
                close(got.lower, want[0], 1e-9, &format!("{name}.{key}.lo"));
                close(got.upper, want[1], 1e-9, &format!("{name}.{key}.hi"));
            }
        }
        match (e.get("median_os95"), stats::median_ci(&xs, 0.95)) {
            (Some(want), Ok(got)) => {
                let want = vals(want);
                assert_eq!(
                    [got.lower, got.upper],
                    [want[0], want[1]],
                    "{name} median CI"
                );
                assert!(got.coverage >= 0.95);
            }
            (None, Err(StatsError::TooFew { need, have, .. })) => {
                assert_eq!(need, 6);
                assert_eq!(have, xs.len());
            }
            (w, g) => panic!("{name}: scipy {w:?}, ours {g:?}"),
        }
    }
    assert!(matches!(
        stats::mean_ci_t(&[1.0], 0.95),
        Err(StatsError::TooFew { need: 2, .. })
    ));
}

#[test]
fn bootstrap_ratio_agrees_with_scipy_within_monte_carlo_error() {
    let f = fixture();
    for b in f["bootstrap_ratio_median"].as_array().unwrap() {
        let x = sample(&f, b["x"].as_str().unwrap());
        let y = sample(&f, b["y"].as_str().unwrap());
        let got = stats::bootstrap_ratio_ci(&x, &y, Statistic::Median, 0.95, 20_000, 42).unwrap();
        close(
            got.estimate,
            b["estimate"].as_f64().unwrap(),
            1e-12,
            "ratio",
        );
        let want = vals(&b["ci"]);
        let width = want[1] - want[0];
        // Different generators: endpoints agree to a small fraction of the width.
        assert!(
            (got.lower - want[0]).abs() < 0.1 * width,
            "{got:?} vs {want:?}"
        );
        assert!(
            (got.upper - want[1]).abs() < 0.1 * width,
            "{got:?} vs {want:?}"
        );
        let again = stats::bootstrap_ratio_ci(&x, &y, Statistic::Median, 0.95, 20_000, 42).unwrap();
        assert_eq!(got, again, "same seed, same interval");
    }
}

#[test]
fn two_sample_tests_and_effect_sizes_match_scipy() {
    let f = fixture();
    for t in f["two_sample"].as_array().unwrap() {
        let (xn, yn) = (t["x"].as_str().unwrap(), t["y"].as_str().unwrap());
        let x = sample(&f, xn);
        let y = sample(&f, yn);
        let g = |k: &str| t[k].as_f64().unwrap();
        let w = stats::welch_t(&x, &y).unwrap();
        close(w.t, g("welch_t"), 1e-9, "welch t");
        close(w.df, g("welch_df"), 1e-9, "welch df");
        close(w.p, g("welch_p"), 1e-7, "welch p");
        let wl = stats::welch_t_log(&x, &y).unwrap();
        close(wl.t, g("welch_log_t"), 1e-9, "welch log t");
        close(wl.p, g("welch_log_p"), 1e-7, "welch log p");
        let m = stats::mann_whitney_u(&x, &y).unwrap();
        let method = match m.method {
            MwuMethod::Exact => "exact",
            MwuMethod::Asymptotic => "asymptotic",
        };
        assert_eq!(method, t["mwu_method"].as_str().unwrap(), "{xn} vs {yn}");
        close(m.u, g("mwu_u"), 1e-12, "U");
        close(m.p, g("mwu_p"), 1e-9, &format!("{xn} vs {yn} MWU p"));
        close(
            stats::cliffs_delta(&x, &y).unwrap(),
            g("cliffs_delta"),
            1e-12,
            "δ",
        );
        close(
            stats::hodges_lehmann(&x, &y).unwrap(),
            g("hodges_lehmann"),
            1e-12,
            "HL",
        );
        close(stats::cohens_d(&x, &y).unwrap(), g("cohens_d"), 1e-10, "d");
    }
    assert!(matches!(
        stats::mann_whitney_u(&[1.0], &[2.0, 3.0]),
        Err(StatsError::TooFew {
            need: 2,
            have: 1,
            ..
        })
    ));
}

#[test]
fn adjustments_and_k_sample_tests_match_scipy() {
    let f = fixture();
    let p = vals(&f["adjust"]["p"]);
    for (got, want) in stats::holm(&p).iter().zip(vals(&f["adjust"]["holm"])) {
        close(*got, want, 1e-12, "holm");
    }
    for (got, want) in stats::benjamini_hochberg(&p)
        .iter()
        .zip(vals(&f["adjust"]["bh"]))
    {
        close(*got, want, 1e-12, "bh");
    }
    for k in f["k_sample"].as_array().unwrap() {
        let groups: Vec<Vec<f64>> = k["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| sample(&f, n.as_str().unwrap()))
            .collect();
        let refs: Vec<&[f64]> = groups.iter().map(|g| g.as_slice()).collect();
        let kw = stats::kruskal_wallis(&refs).unwrap();
        close(kw.statistic, k["kruskal_h"].as_f64().unwrap(), 1e-10, "H");
        close(kw.p, k["kruskal_p"].as_f64().unwrap(), 1e-8, "KW p");
        let an = stats::anova_oneway(&refs).unwrap();
        close(an.statistic, k["anova_f"].as_f64().unwrap(), 1e-10, "F");
        close(an.p, k["anova_p"].as_f64().unwrap(), 1e-8, "ANOVA p");
    }
}
