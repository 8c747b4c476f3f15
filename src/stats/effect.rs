//! Effect sizes: Cliff's δ (dominance), the Hodges–Lehmann shift (robust location
//! difference) and Cohen's d (standardised mean difference).

use super::{check_finite, mean, median_sorted, need, var, StatsError};

fn two(what: &'static str, x: &[f64], y: &[f64], n: usize) -> Result<(), StatsError> {
    need(what, n, x.len())?;
    need(what, n, y.len())?;
    check_finite(what, x)?;
    check_finite(what, y)
}

/// Cliff's δ = (#{xᵢ > yⱼ} − #{xᵢ < yⱼ}) / (n₁n₂), in [−1, 1]. O(n₁n₂): reps are few.
pub fn cliffs_delta(x: &[f64], y: &[f64]) -> Result<f64, StatsError> {
    two("Cliff's delta", x, y, 1)?;
    let mut s = 0i64;
    for a in x {
        for b in y {
            s += (a > b) as i64 - (a < b) as i64;
        }
    }
    Ok(s as f64 / (x.len() * y.len()) as f64)
}

/// Hodges–Lehmann shift: the median of all pairwise differences xᵢ − yⱼ.
pub fn hodges_lehmann(x: &[f64], y: &[f64]) -> Result<f64, StatsError> {
    two("Hodges-Lehmann shift", x, y, 1)?;
    let mut d: Vec<f64> = x
        .iter()
        .flat_map(|a| y.iter().map(move |b| a - b))
        .collect();
    d.sort_by(f64::total_cmp);
    Ok(median_sorted(&d))
}

/// Cohen's d with the pooled (n − 1) standard deviation. Needs n ≥ 2 per group.
pub fn cohens_d(x: &[f64], y: &[f64]) -> Result<f64, StatsError> {
    const WHAT: &str = "Cohen's d";
    two(WHAT, x, y, 2)?;
    let (n1, n2) = (x.len() as f64, y.len() as f64);
    let pooled = (((n1 - 1.0) * var(x) + (n2 - 1.0) * var(y)) / (n1 + n2 - 2.0)).sqrt();
    if pooled == 0.0 {
        return Err(StatsError::Degenerate { what: WHAT });
    }
    Ok((mean(x) - mean(y)) / pooled)
}
