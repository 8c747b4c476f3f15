//! Plain text for a terminal, the way hyperfine and llama-bench end a run: the caption,
//! aligned columns (numbers to the right), the notes below.

use super::super::table::Table;
use std::fmt::Write as _;

/// One table as aligned text.
pub fn table(t: &Table) -> String {
    let rows = t.plain_rows();
    let headers = t.headers();
    let width = |s: &str| s.chars().count();
    let mut w: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(x) = w.get_mut(i) {
                *x = (*x).max(width(c));
            }
        }
    }
    let pad = |s: &str, i: usize| {
        let n = w[i].saturating_sub(width(s));
        if t.columns[i].is_number() {
            format!("{}{s}", " ".repeat(n))
        } else {
            format!("{s}{}", " ".repeat(n))
        }
    };
    let mut s = format!("{}\n\n", t.caption);
    let line: Vec<String> = headers.iter().enumerate().map(|(i, h)| pad(h, i)).collect();
    let _ = writeln!(s, "  {}", line.join("  ").trim_end());
    let total: usize = w.iter().sum::<usize>() + 2 * w.len().saturating_sub(1);
    let _ = writeln!(s, "  {}", "─".repeat(total));
    for (r, row) in t.rows.iter().zip(&rows) {
        if r.rule_above {
            let _ = writeln!(s, "  {}", "─".repeat(total));
        }
        let line: Vec<String> = row.iter().enumerate().map(|(i, c)| pad(c, i)).collect();
        let _ = writeln!(s, "  {}", line.join("  ").trim_end());
    }
    s.push('\n');
    for n in &t.notes {
        let _ = writeln!(s, "  {n}");
    }
    s
}

pub(crate) struct Terminal;

impl super::Exporter for Terminal {
    fn ext(&self) -> &'static str {
        "txt"
    }

    fn tables(&self, tables: &[Table]) -> Option<String> {
        Some(tables.iter().map(table).collect::<Vec<_>>().join("\n"))
    }
}
