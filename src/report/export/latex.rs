//! LaTeX: one `table` float per table, ready to `\input`: booktabs rules, siunitx `S`
//! columns (numbers aligned on the decimal point, an interval's ends in columns of their
//! own between `[`, `,` and `]`), `\label`, and the notes as real table notes
//! (threeparttable). A document that inputs them needs
//! `\usepackage{booktabs,siunitx,threeparttable}`; `all.tex` is such a document.

use super::super::escape;
use super::super::table::{fmt_num, Cell, ColKind, Column, Table};
use crate::spec::CiStyle;
use std::fmt::Write as _;

/// The packages a document needs to `\input` the tables.
pub const PREAMBLE: &str =
    "\\usepackage{booktabs}\n\\usepackage{siunitx}\n\\usepackage{threeparttable}\n";

/// LaTeX text: escaped, the symbols the tables use in math mode, anything else outside
/// ASCII that pdflatex's default input encoding cannot set replaced by `?`.
pub fn text(s: &str) -> String {
    let mut out = String::new();
    for ch in escape::latex(s).chars() {
        match ch {
            '±' => out.push_str("$\\pm$"),
            'Δ' => out.push_str("$\\Delta$"),
            '≥' => out.push_str("$\\geq$"),
            '≤' => out.push_str("$\\leq$"),
            '–' => out.push_str("--"),
            '—' => out.push_str("---"),
            'α' => out.push_str("$\\alpha$"),
            'δ' => out.push_str("$\\delta$"),
            'Σ' => out.push_str("$\\Sigma$"),
            '×' => out.push_str("$\\times$"),
            '→' => out.push_str("$\\to$"),
            '≈' => out.push_str("$\\approx$"),
            '·' => out.push_str("$\\cdot$"),
            '−' => out.push_str("$-$"),
            '√' => out.push_str("$\\surd$"),
            '†' => out.push_str("\\textsuperscript{\\dag}"),
            '’' => out.push('\''),
            c if c.is_ascii() => out.push(c),
            'é' => out.push_str("\\'e"),
            _ => out.push('?'),
        }
    }
    out
}

/// A text cell: `~` is the verdict "not significant".
fn text_cell(c: &Cell) -> String {
    let mut t = super::super::table::plain(c, &ColKind::Text);
    if c.text == "~" && c.suffix.is_empty() {
        t = "$\\sim$".into();
        return t;
    }
    t = text(&t);
    if c.bold && !t.is_empty() {
        format!("\\textbf{{{t}}}")
    } else {
        t
    }
}

/// How many `S` columns a number column takes: value, and lo/hi or ±.
fn width(col: &Column, t: &Table, i: usize) -> usize {
    match &col.kind {
        ColKind::Text => 1,
        ColKind::Number { ci, .. } => {
            if t.rows
                .iter()
                .any(|r| r.cells.get(i).is_some_and(|c| c.pm.is_some()))
            {
                2
            } else {
                match ci {
                    CiStyle::None => 1,
                    CiStyle::Pm => 2,
                    CiStyle::Brackets => 3,
                }
            }
        }
    }
}

/// siunitx `table-format` of a number column: integer digits of its largest entry, its
/// decimals, a sign when any entry has one.
fn table_format(t: &Table, i: usize, decimals: usize, signed: bool) -> String {
    let mut int = 1usize;
    let mut neg = false;
    for r in &t.rows {
        if let Some(c) = r.cells.get(i) {
            for v in [c.value, c.lo, c.hi, c.pm].into_iter().flatten() {
                let s = fmt_num(v, decimals, false);
                neg |= s.starts_with('-');
                let digits = s
                    .trim_start_matches('-')
                    .split('.')
                    .next()
                    .map_or(1, str::len);
                int = int.max(digits);
            }
        }
    }
    let sign = if signed || neg { "+" } else { "" };
    if decimals == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{decimals}")
    }
}

/// An `S` column: the format, a kept `+` on changes, bold detected from `\bfseries`.
fn s_col(fmt: &str) -> String {
    format!("S[table-format={fmt},retain-explicit-plus,detect-weight,mode=text]")
}

/// The column specification of the tabular, and per column its `S` format.
fn colspec(t: &Table) -> (String, Vec<String>) {
    let mut spec = String::new();
    let mut fmts = Vec::new();
    for (i, col) in t.columns.iter().enumerate() {
        match &col.kind {
            ColKind::Text => {
                spec.push('l');
                fmts.push(String::new());
            }
            ColKind::Number {
                decimals, signed, ..
            } => {
                let f = table_format(t, i, *decimals, *signed);
                let s = s_col(&f);
                let pm_f = table_format(t, i, *decimals, false);
                match width(col, t, i) {
                    1 => spec.push_str(&s),
                    2 => {
                        let _ = write!(spec, "{s}@{{\\,$\\pm$\\,}}{}", s_col(&pm_f));
                    }
                    _ => {
                        let _ = write!(
                            spec,
                            "{s}@{{\\,[}}{s}@{{,\\,}}{s}@{{]\\hspace{{2\\tabcolsep}}}}"
                        );
                    }
                }
                fmts.push(f);
            }
        }
    }
    (spec, fmts)
}

/// `[why]` when an interval is missing for a reason, else nothing.
fn why(c: &Cell) -> String {
    if c.why.is_empty() {
        String::new()
    } else {
        format!("[{}]", text(&c.why))
    }
}

/// The entries of a number cell over its `width` columns.
fn number_cells(c: &Cell, col: &Column, w: usize, fmt: &str) -> Vec<String> {
    let ColKind::Number {
        decimals, signed, ..
    } = &col.kind
    else {
        return vec![text_cell(c)];
    };
    let bold = |s: String| if c.bold { format!("\\bfseries {s}") } else { s };
    let n = |v: f64| fmt_num(v, *decimals, *signed);
    let mark = if c.default {
        "\\textsuperscript{\\dag}"
    } else {
        ""
    };
    let suffix = if c.suffix.is_empty() {
        String::new()
    } else {
        format!(" {}", text(&c.suffix))
    };
    let Some(v) = c.value else {
        // No value: the reason spans the whole group.
        let t = text(&c.text);
        return vec![format!(
            "\\multicolumn{{{w}}}{{c}}{{{}}}",
            if c.bold {
                format!("\\textbf{{{t}}}")
            } else {
                t
            }
        )];
    };
    match w {
        1 => {
            if mark.is_empty() && suffix.is_empty() {
                vec![bold(n(v))]
            } else {
                vec![format!(
                    "\\multicolumn{{1}}{{r}}{{{}{mark}{suffix}}}",
                    if c.bold {
                        format!("\\textbf{{{}}}", n(v))
                    } else {
                        n(v)
                    }
                )]
            }
        }
        2 => {
            let h = c.pm.or_else(|| match (c.lo, c.hi) {
                (Some(lo), Some(hi)) => Some((hi - lo) / 2.0),
                _ => None,
            });
            match h {
                Some(h) if mark.is_empty() && suffix.is_empty() => {
                    vec![bold(n(v)), bold(fmt_num(h, *decimals, false))]
                }
                Some(h) => vec![
                    bold(n(v)),
                    format!(
                        "\\multicolumn{{1}}{{l}}{{{}{mark}{suffix}}}",
                        fmt_num(h, *decimals, false)
                    ),
                ],
                None => vec![
                    format!(
                        "\\multicolumn{{1}}{{{}@{{\\,}}}}{{{}}}",
                        s_col(fmt),
                        bold(n(v))
                    ),
                    format!("\\multicolumn{{1}}{{l}}{{{}{mark}{suffix}}}", why(c)),
                ],
            }
        }
        _ => match (c.lo, c.hi) {
            (Some(lo), Some(hi)) if suffix.is_empty() && mark.is_empty() => {
                vec![bold(n(v)), bold(n(lo)), bold(n(hi))]
            }
            (Some(lo), Some(hi)) => vec![
                bold(n(v)),
                bold(n(lo)),
                format!(
                    "\\multicolumn{{1}}{{l}}{{{}]{mark}{suffix}}}",
                    if c.bold {
                        format!("\\textbf{{{}}}", n(hi))
                    } else {
                        n(hi)
                    }
                ),
            ],
            _ => vec![
                format!(
                    "\\multicolumn{{1}}{{{}@{{\\,}}}}{{{}}}",
                    s_col(fmt),
                    bold(n(v))
                ),
                format!("\\multicolumn{{2}}{{l}}{{{}{mark}{suffix}}}", why(c)),
            ],
        },
    }
}

/// A `table` float (needs booktabs, siunitx, threeparttable).
pub fn table(t: &Table) -> String {
    let (spec, fmts) = colspec(t);
    let widths: Vec<usize> = t
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| width(c, t, i))
        .collect();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "% Generated by `sweep report`; needs \\usepackage{{booktabs,siunitx,threeparttable}}."
    );
    s.push_str("\\begin{table}[htbp]\n\\centering\n\\footnotesize\n\\begin{threeparttable}\n");
    let _ = writeln!(s, "\\caption{{{}}}", text(&t.caption));
    let _ = writeln!(s, "\\label{{{}}}", t.label);
    let _ = writeln!(s, "\\begin{{tabular}}{{{spec}}}");
    s.push_str("\\toprule\n");
    let head: Vec<String> = t
        .columns
        .iter()
        .zip(&widths)
        .map(|(c, w)| match (&c.kind, w) {
            (ColKind::Text, _) => text(&c.header),
            (_, w) => format!("\\multicolumn{{{w}}}{{c}}{{{}}}", text(&c.header)),
        })
        .collect();
    let _ = writeln!(s, "{} \\\\", head.join(" & "));
    s.push_str("\\midrule\n");
    for r in &t.rows {
        if r.rule_above {
            s.push_str("\\midrule\n");
        }
        let mut cells = Vec::new();
        for (i, col) in t.columns.iter().enumerate() {
            let empty = Cell::default();
            let c = r.cells.get(i).unwrap_or(&empty);
            match &col.kind {
                ColKind::Text => cells.push(text_cell(c)),
                ColKind::Number { .. } => {
                    if c.value.is_none() && c.text.is_empty() {
                        cells.push(format!("\\multicolumn{{{}}}{{c}}{{}}", widths[i]));
                    } else {
                        cells.extend(number_cells(c, col, widths[i], &fmts[i]));
                    }
                }
            }
        }
        let _ = writeln!(s, "{} \\\\", cells.join(" & "));
    }
    s.push_str("\\bottomrule\n\\end{tabular}\n");
    if !t.notes.is_empty() {
        s.push_str("\\begin{tablenotes}[flushleft]\n\\scriptsize\n");
        for n in &t.notes {
            let _ = writeln!(s, "\\item {}", text(n));
        }
        s.push_str("\\end{tablenotes}\n");
    }
    s.push_str("\\end{threeparttable}\n\\end{table}\n");
    s
}

/// A standalone document that `\input`s the given table files and the methods (compiles
/// with pdflatex).
pub fn document(inputs: &[String]) -> String {
    let mut s = String::from(
        "% Generated by `sweep report`: every table of this run in one document.\n\
         \\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage[utf8]{inputenc}\n",
    );
    s.push_str(PREAMBLE);
    s.push_str("\\usepackage[margin=1.5cm,landscape]{geometry}\n\\begin{document}\n");
    for i in inputs {
        let _ = writeln!(s, "\\input{{{i}}}");
    }
    s.push_str("\\end{document}\n");
    s
}

/// The LaTeX exporter (tables only).
pub struct Latex;

impl super::Exporter for Latex {
    fn ext(&self) -> &'static str {
        "tex"
    }

    fn tables(&self, tables: &[Table]) -> Option<String> {
        Some(tables.iter().map(table).collect::<Vec<_>>().join("\n"))
    }
}
