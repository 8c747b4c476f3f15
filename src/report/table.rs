//! The format-neutral table: typed columns (text, or numbers with an interval) so that each
//! exporter can align numbers on the decimal point (siunitx `S` columns in LaTeX, right
//! alignment elsewhere) with the same digits in every row of a column; short notes that
//! become real table notes; a caption that carries what is constant over the table.

use crate::spec::CiStyle;
use serde::{Deserialize, Serialize};

/// What a column holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ColKind {
    /// Words (arm names, factor values, verdicts).
    Text,
    /// Numbers, all with `decimals` decimals; `ci` says how an interval is written;
    /// `signed` prints a `+` on positive values (changes); `unit` follows each value (`%`).
    Number {
        /// Digits after the decimal point, the same in every row.
        decimals: usize,
        /// How a value's interval is written beside it.
        ci: CiStyle,
        /// Print `+` before positive values.
        signed: bool,
        /// Written after each value (`%`); empty for none.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        unit: String,
    },
}

/// One column: its header and kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub(crate) header: String,
    #[serde(flatten)]
    pub(crate) kind: ColKind,
}

impl Column {
    pub(crate) fn text(header: impl Into<String>) -> Self {
        Self {
            header: header.into(),
            kind: ColKind::Text,
        }
    }

    pub(crate) fn number(header: impl Into<String>, decimals: usize, ci: CiStyle) -> Self {
        Self {
            header: header.into(),
            kind: ColKind::Number {
                decimals,
                ci,
                signed: false,
                unit: String::new(),
            },
        }
    }

    pub(crate) fn is_number(&self) -> bool {
        matches!(self.kind, ColKind::Number { .. })
    }
}

/// One entry. A text column uses `text`; a number column `value` (with `lo`/`hi` or `pm`),
/// or `text` saying why there is no value; `why` says why an interval is missing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lo: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) hi: Option<f64>,
    /// A ± term that is not half an interval (the sd of `mean ± sd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pm: Option<f64>,
    /// Why the interval is missing ("need ≥ 6").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub why: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) bold: bool,
    /// An effective default (not set in the experiment file): marked † everywhere.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
    /// Written after the entry (`(ref)`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub suffix: String,
}

impl Cell {
    pub(crate) fn text(s: impl Into<String>) -> Self {
        Self {
            text: s.into(),
            ..Default::default()
        }
    }

    pub(crate) fn value(v: Option<f64>) -> Self {
        Self {
            value: v,
            text: if v.is_none() {
                "n/a".into()
            } else {
                String::new()
            },
            ..Default::default()
        }
    }

    pub(crate) fn with_ci(mut self, lo: Option<f64>, hi: Option<f64>, why: &str) -> Self {
        match (lo, hi) {
            (Some(l), Some(h)) => {
                self.lo = Some(l);
                self.hi = Some(h);
            }
            _ => {
                self.why = if why.is_empty() {
                    "n/a".into()
                } else {
                    why.into()
                }
            }
        }
        self
    }

    pub(crate) fn bold(mut self, b: bool) -> Self {
        self.bold = b;
        self
    }
}

/// One row; `rule_above` draws a rule before it (the geomean row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub(crate) cells: Vec<Cell>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) rule_above: bool,
}

/// A table, format-neutral.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// File stem (`ttft_ms`, `pairs`, or a `[[table]]` name).
    pub name: String,
    /// The caption: what the table shows, then what is constant over it.
    pub caption: String,
    /// LaTeX `\label` (and the HTML anchor).
    pub label: String,
    pub(crate) columns: Vec<Column>,
    pub(crate) rows: Vec<Row>,
    /// A few short lines: what the entries are, marks, exclusions, environment, warnings.
    pub notes: Vec<String>,
}

impl Table {
    /// Header texts.
    pub fn headers(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.header.as_str()).collect()
    }

    /// Rows as they are printed in plain text (Markdown, terminal, HTML), one string per
    /// column.
    pub fn plain_rows(&self) -> Vec<Vec<String>> {
        self.rows
            .iter()
            .map(|r| {
                r.cells
                    .iter()
                    .zip(&self.columns)
                    .map(|(c, col)| plain(c, &col.kind))
                    .collect()
            })
            .collect()
    }
}

/// The dagger that marks an effective default.
pub const DEFAULT_MARK: &str = "†";

/// A value with the column's decimals (`+` when signed), or `n/a`.
pub fn fmt_num(v: f64, decimals: usize, signed: bool) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    // -0.0 prints as 0.
    let v = if v == 0.0 { 0.0 } else { v };
    let s = format!("{v:.decimals$}");
    let s = if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    };
    if signed && !s.starts_with('-') {
        format!("+{s}")
    } else {
        s
    }
}

/// A cell as plain text in its column.
pub fn plain(c: &Cell, kind: &ColKind) -> String {
    let mut s = match kind {
        ColKind::Text => c.text.clone(),
        ColKind::Number {
            decimals,
            ci,
            signed,
            unit,
        } => match c.value {
            None => c.text.clone(),
            Some(v) => {
                let n = |x: f64| fmt_num(x, *decimals, *signed);
                let mut s = format!("{}{unit}", n(v));
                if let Some(pm) = c.pm {
                    s.push_str(&format!(" ± {}", fmt_num(pm, *decimals, false)));
                } else {
                    match (ci, c.lo, c.hi) {
                        (CiStyle::None, _, _) => {}
                        (CiStyle::Brackets, Some(lo), Some(hi)) => {
                            s.push_str(&format!(" [{}, {}]", n(lo), n(hi)))
                        }
                        (CiStyle::Pm, Some(lo), Some(hi)) => s.push_str(&format!(
                            " ± {}",
                            fmt_num((hi - lo) / 2.0, *decimals, false)
                        )),
                        (_, _, _) if !c.why.is_empty() => s.push_str(&format!(" [{}]", c.why)),
                        _ => {}
                    }
                }
                s
            }
        },
    };
    if c.default {
        s.push_str(DEFAULT_MARK);
    }
    if !c.suffix.is_empty() {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(&c.suffix);
    }
    s
}

/// Decimals that give the largest |value| of a column `digits` significant digits (at
/// least 0, at most 6), so every row of the column shows the same decimals.
pub fn decimals_for(values: impl IntoIterator<Item = f64>, digits: u32) -> usize {
    let max = values
        .into_iter()
        .filter(|v| v.is_finite())
        .map(f64::abs)
        .fold(0.0_f64, f64::max);
    if max == 0.0 {
        return digits.saturating_sub(1).min(6) as usize;
    }
    let int_digits = max.log10().floor() as i64 + 1;
    (i64::from(digits) - int_digits).clamp(0, 6) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_share_decimals_and_intervals_follow_the_style() {
        assert_eq!(decimals_for([712.3, 98.1], 3), 0);
        assert_eq!(decimals_for([39.61, 5.0], 3), 1);
        assert_eq!(decimals_for([0.0123], 3), 4);
        assert_eq!(fmt_num(-0.0001, 1, true), "+0.0");
        assert_eq!(fmt_num(1.23456, 2, true), "+1.23");
        let col = Column::number("x", 1, CiStyle::Brackets).kind;
        let c = Cell::value(Some(712.34)).with_ci(Some(700.0), Some(730.06), "");
        assert_eq!(plain(&c, &col), "712.3 [700.0, 730.1]");
        let pm = Column::number("x", 1, CiStyle::Pm).kind;
        assert_eq!(plain(&c, &pm), "712.3 ± 15.0");
        let none = Cell::value(Some(1.0)).with_ci(None, None, "need ≥ 6");
        assert_eq!(plain(&none, &col), "1.0 [need ≥ 6]");
        let mut d = Cell::text("2048");
        d.default = true;
        assert_eq!(plain(&d, &ColKind::Text), "2048†");
    }
}
