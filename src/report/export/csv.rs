//! CSV: one header row and the body rows; a number column with an interval is split into
//! `<header>`, `<header> lo`, `<header> hi` (or `± `) so that every field is one number
//! with the table's decimals. Captions and notes are in the Markdown, LaTeX and JSON.

use super::super::table::{fmt_num, plain, ColKind, Table};
use crate::analysis::csv_field;
use crate::spec::CiStyle;
use std::fmt::Write as _;

/// CSV of one table.
pub fn table(t: &Table) -> String {
    let mut s = String::new();
    let mut head = Vec::new();
    for (i, c) in t.columns.iter().enumerate() {
        head.push(csv_field(&c.header));
        if let ColKind::Number { ci, .. } = &c.kind {
            let pm = t
                .rows
                .iter()
                .any(|r| r.cells.get(i).is_some_and(|x| x.pm.is_some()));
            if pm || *ci == CiStyle::Pm {
                head.push(csv_field(&format!("{} ±", c.header)));
            } else if *ci == CiStyle::Brackets {
                head.push(csv_field(&format!("{} lo", c.header)));
                head.push(csv_field(&format!("{} hi", c.header)));
            }
        }
    }
    let _ = writeln!(s, "{}", head.join(","));
    for r in &t.rows {
        let mut f = Vec::new();
        for (i, col) in t.columns.iter().enumerate() {
            let c = r.cells.get(i).cloned().unwrap_or_default();
            match &col.kind {
                ColKind::Text => f.push(csv_field(&plain(&c, &col.kind))),
                ColKind::Number {
                    decimals,
                    ci,
                    signed,
                    ..
                } => {
                    let n = |v: Option<f64>| {
                        v.map(|x| fmt_num(x, *decimals, *signed))
                            .unwrap_or_default()
                    };
                    f.push(match c.value {
                        Some(v) => fmt_num(v, *decimals, *signed),
                        None => csv_field(&c.text),
                    });
                    let pm = t
                        .rows
                        .iter()
                        .any(|r| r.cells.get(i).is_some_and(|x| x.pm.is_some()));
                    if pm || *ci == CiStyle::Pm {
                        let h = c.pm.or_else(|| Some((c.hi? - c.lo?) / 2.0));
                        f.push(h.map(|x| fmt_num(x, *decimals, false)).unwrap_or_default());
                    } else if *ci == CiStyle::Brackets {
                        f.push(n(c.lo));
                        f.push(n(c.hi));
                    }
                }
            }
        }
        let _ = writeln!(s, "{}", f.join(","));
    }
    s
}

/// The CSV exporter (tables only).
pub struct Csv;

impl super::Exporter for Csv {
    fn ext(&self) -> &'static str {
        "csv"
    }

    fn tables(&self, tables: &[Table]) -> Option<String> {
        Some(tables.iter().map(table).collect::<Vec<_>>().join("\n"))
    }
}
