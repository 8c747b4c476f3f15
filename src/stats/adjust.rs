//! Multiple-comparison adjustment: Holm (family-wise, for verdicts) and
//! Benjamini–Hochberg (false discovery rate, for exploratory tables).
//! Both return adjusted p-values in input order; NaN inputs stay NaN and are not counted.

fn order(ps: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..ps.len()).filter(|&i| !ps[i].is_nan()).collect();
    idx.sort_by(|&a, &b| ps[a].total_cmp(&ps[b]));
    idx
}

/// Holm step-down: p₍ᵢ₎·(m − i + 1), made monotone, capped at 1.
pub fn holm(ps: &[f64]) -> Vec<f64> {
    let idx = order(ps);
    let m = idx.len();
    let mut out = vec![f64::NAN; ps.len()];
    let mut running = 0.0f64;
    for (i, &k) in idx.iter().enumerate() {
        running = running.max(((m - i) as f64 * ps[k]).min(1.0));
        out[k] = running;
    }
    out
}

/// Benjamini–Hochberg step-up: p₍ᵢ₎·m/i, made monotone from the top, capped at 1.
pub fn benjamini_hochberg(ps: &[f64]) -> Vec<f64> {
    let idx = order(ps);
    let m = idx.len();
    let mut out = vec![f64::NAN; ps.len()];
    let mut running = 1.0f64;
    for (i, &k) in idx.iter().enumerate().rev() {
        running = running.min(ps[k] * m as f64 / (i + 1) as f64);
        out[k] = running;
    }
    out
}
