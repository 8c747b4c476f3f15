//! `[analysis]`, `[slo]` and `[compare]`.

use super::*;

impl Validator<'_> {
    pub(super) fn analysis(&mut self, a: Option<Spanned<raw::RawAnalysis>>) -> AnalysisConfig {
        let mut cfg = AnalysisConfig::default();
        let Some(a) = a else { return cfg };
        let a = a.into_inner();
        if let Some(v) = &a.cold_load_ms {
            let x = *v.get_ref();
            if x.is_finite() && x > 0.0 && x <= 3_600_000.0 {
                cfg.cold_load_ms = x;
            } else {
                self.err(
                    span_of(v),
                    format!("cold_load_ms must be a positive number of milliseconds (e.g. 250), found {x}"),
                );
            }
        }
        cfg
    }

    pub(super) fn slo(&mut self, a: Option<Spanned<raw::RawSlo>>) -> Option<SloConfig> {
        let a = a?;
        let span = span_of(&a);
        let a = a.into_inner();
        let mut limit = |v: &Option<Spanned<f64>>, name: &str| {
            let v = v.as_ref()?;
            let x = *v.get_ref();
            if x.is_finite() && x > 0.0 && x <= MAX_SECONDS * 1000.0 {
                Some(x)
            } else {
                self.err(
                    span_of(v),
                    format!("{name} must be a positive number of milliseconds, found {x}"),
                );
                None
            }
        };
        let ttft_ms = limit(&a.ttft_ms, "ttft_ms");
        let itl_ms = limit(&a.itl_ms, "itl_ms");
        let e2e_ms = limit(&a.e2e_ms, "e2e_ms");
        let mut percentile = DEFAULT_SLO_PERCENTILE;
        if let Some(v) = &a.percentile {
            let x = *v.get_ref();
            if x > 0.0 && x <= 100.0 {
                percentile = x;
            } else {
                self.err(
                    span_of(v),
                    format!("percentile must be in (0, 100] (percent of calls), found {x}"),
                );
            }
        }
        if a.ttft_ms.is_none() && a.itl_ms.is_none() && a.e2e_ms.is_none() {
            self.err(
                span,
                "[slo] needs at least one limit: ttft_ms, itl_ms or e2e_ms (e.g. ttft_ms = 2000)",
            );
            return None;
        }
        Some(SloConfig {
            ttft_ms,
            itl_ms,
            e2e_ms,
            percentile,
        })
    }

    pub(super) fn compare(&mut self, c: Option<Spanned<raw::RawCompare>>) -> CompareConfig {
        let mut cfg = CompareConfig::default();
        let Some(c) = c else { return cfg };
        cfg.declared = true;
        let c = c.into_inner();
        if let Some(v) = &c.max_failed_share {
            let x = *v.get_ref();
            if (0.0..=1.0).contains(&x) {
                cfg.max_failed_share = x;
            } else {
                self.err(
                    span_of(v),
                    format!(
                        "max_failed_share must be a share between 0 and 1 (0.1 = 10%), found {x}"
                    ),
                );
            }
        }
        if let Some(a) = &c.alpha {
            let x = *a.get_ref();
            if !crate::stats::is_open_unit(x) {
                self.err(
                    span_of(a),
                    format!("alpha must be strictly between 0 and 1, found {x}"),
                );
            } else {
                cfg.alpha = x;
            }
        }
        for (k, v) in c.thresholds.unwrap_or_default() {
            let Some(metric) = Metric::parse(k.get_ref()) else {
                self.err(
                    span_of(&k),
                    format!(
                        "unknown threshold metric {:?}; expected one of: {}",
                        k.get_ref(),
                        Metric::all_names().join(", ")
                    ),
                );
                continue;
            };
            let x = *v.get_ref();
            if !(x.is_finite() && x >= 0.0) {
                self.err(
                    span_of(&v),
                    format!("threshold must be a relative change ≥ 0 (0.05 = 5%), found {x}"),
                );
                continue;
            }
            cfg.thresholds.insert(metric, x);
        }
        cfg
    }
}
