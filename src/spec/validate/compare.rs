//! `[analysis]` and `[compare]`.

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
