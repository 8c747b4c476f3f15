//! CSV: one header row and the body rows (footers live in the JSON and Markdown).

use super::super::tables::Table;
use crate::analysis::csv_field;
use std::fmt::Write as _;

/// CSV: header row, body rows, no footer (the footer is in the JSON and Markdown).
pub fn table(t: &Table) -> String {
    let mut s = String::new();
    let head: Vec<String> = t.headers.iter().map(|h| csv_field(h)).collect();
    let _ = writeln!(s, "{}", head.join(","));
    for r in &t.rows {
        let cells: Vec<String> = r.iter().map(|c| csv_field(&c.text)).collect();
        let _ = writeln!(s, "{}", cells.join(","));
    }
    s
}

pub struct Csv;

impl super::Exporter for Csv {
    fn ext(&self) -> &'static str {
        "csv"
    }

    fn tables(&self, tables: &[Table]) -> Option<String> {
        Some(tables.iter().map(table).collect::<Vec<_>>().join("\n"))
    }
}
