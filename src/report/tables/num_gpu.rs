//! `num_gpu`: where the model sat, what it bought.

use super::*;

/// The num_gpu table: per cell, what `num_gpu` asked, where the model really sat (share in
/// VRAM, VRAM bytes, layers offloaded, from what the server said after each reload), and
/// what it bought (decode tok/s, GPU energy per output token). `None` when no cell sets
/// `num_gpu` and no reload probe recorded a placement. Single-agent cells only (a pair's
/// members can differ).
pub fn num_gpu_table(
    a: &Analysis,
    placements: &[crate::telemetry::CellPlacement],
) -> Option<Table> {
    let place = |id: &str| {
        placements
            .iter()
            .find(|p| p.cell_id == id && p.agent == "single")
    };
    let mut cells: Vec<&CellAnalysis> = a
        .cells
        .iter()
        .filter(|c| !c.factors.keys().any(|k| k.contains('.')))
        .filter(|c| c.factors.contains_key("num_gpu") || place(&c.cell_id).is_some())
        .collect();
    if cells.is_empty() {
        return None;
    }
    let ng = |c: &CellAnalysis| c.factors.get("num_gpu").and_then(|v| v.parse::<f64>().ok());
    cells.sort_by(|x, y| {
        (x.arm.as_str(), ng(x).unwrap_or(-1.0))
            .partial_cmp(&(y.arm.as_str(), ng(y).unwrap_or(-1.0)))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut others: Vec<String> = cells
        .iter()
        .flat_map(|c| c.factors.keys().cloned())
        .filter(|f| f != "num_gpu")
        .collect();
    others.sort();
    others.dedup();
    let lvl = level_pct(a);
    let mut columns = vec![Column::text("arm"), Column::text("num_gpu")];
    columns.extend(others.iter().map(Column::text));
    columns.extend([
        Column::text("in VRAM"),
        Column::text("VRAM (GiB)"),
        Column::text("layers on GPU"),
        Column::number(format!("decode tok/s [{lvl} CI]"), 1, CiStyle::Brackets),
        Column::number(format!("J/token [{lvl} CI]"), 3, CiStyle::Brackets),
    ]);
    let rows = cells
        .iter()
        .map(|c| {
            let p = place(&c.cell_id);
            let mut row = vec![
                Cell::text(c.arm.clone()),
                Cell::text(
                    c.factors
                        .get("num_gpu")
                        .cloned()
                        .unwrap_or_else(|| "unset".into()),
                ),
            ];
            for f in &others {
                row.push(Cell::text(
                    c.factors.get(f).cloned().unwrap_or_else(|| "–".into()),
                ));
            }
            let frac = match p.map(|p| (p.fraction_min, p.fraction_max)) {
                Some((Some(lo), Some(hi))) if hi - lo > 0.005 => {
                    format!("{:.0}–{:.0}%", lo * 100.0, hi * 100.0)
                }
                Some((Some(lo), _)) => format!("{:.0}%", lo * 100.0),
                _ => "n/a".into(),
            };
            row.push(Cell::text(frac));
            row.push(Cell::text(
                p.and_then(|p| p.size_vram)
                    .map(|b| format!("{:.2}", b as f64 / f64::from(1u32 << 30)))
                    .unwrap_or_else(|| "n/a".into()),
            ));
            row.push(Cell::text(
                match p.map(|p| (p.layers_offloaded, p.layers_total)) {
                    Some((Some(o), Some(t))) => format!("{o}/{t}"),
                    Some((None, Some(t))) => format!("?/{t}"),
                    _ => "n/a".into(),
                },
            ));
            for m in [Metric::DecodeTps, Metric::JPerToken] {
                row.push(stat_cell(c.metric(m), Statistic::Median));
            }
            Row {
                cells: row,
                rule_above: false,
            }
        })
        .collect();
    let notes = vec![
        format!(
            "in VRAM: size_vram / size (Ollama /api/ps) or offloaded / total layers (embedded); \
             entries: median over reps [{lvl} CI]; J/token: n/a without GPU telemetry."
        ),
        "How placement and energy are measured, and the run's warnings: see Methods \
         (methods.md, methods.tex)."
            .to_string(),
    ];
    let mut t = Table {
        name: "num_gpu".into(),
        caption: "num_gpu: where the model sat, speed and energy".into(),
        label: "tab:num_gpu".into(),
        columns,
        rows,
        notes: Vec::new(),
    };
    fit_decimals(&mut t, 3);
    t.notes = notes;
    Some(t)
}
