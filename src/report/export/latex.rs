//! LaTeX: booktabs tables and a standalone document that compiles with pdflatex.

use super::super::escape;
use super::super::tables::Table;
use std::fmt::Write as _;

/// A LaTeX cell: escaped text, `±` as `$\pm$`, `Δ` as `$\Delta$`, bold when significant.
fn latex_cell(text: &str, bold: bool) -> String {
    if text == "~" {
        return "$\\sim$".into();
    }
    let e = escape::latex(text)
        .replace('±', "$\\pm$")
        .replace('Δ', "$\\Delta$")
        .replace('≥', "$\\geq$")
        .replace('–', "--")
        .replace('—', "---")
        .replace('α', "$\\alpha$")
        .replace('Σ', "$\\Sigma$")
        .replace('−', "$-$")
        .replace('≤', "$\\leq$")
        .replace('×', "$\\times$")
        .replace('·', "$\\cdot$")
        .replace('δ', "$\\delta$")
        .replace('√', "$\\surd$")
        .replace('→', "$\\rightarrow$");
    if bold && !e.is_empty() {
        format!("\\textbf{{{e}}}")
    } else {
        e
    }
}

/// A booktabs `table` environment (needs `\usepackage{booktabs}`).
pub fn table(t: &Table) -> String {
    let mut s = String::from("\\begin{table}[htbp]\n\\centering\n\\footnotesize\n");
    let _ = writeln!(s, "\\caption{{{}}}", latex_cell(&t.title, false));
    let _ = writeln!(s, "\\begin{{tabular}}{{{}}}", "l".repeat(t.headers.len()));
    s.push_str("\\toprule\n");
    let head: Vec<String> = t.headers.iter().map(|h| latex_cell(h, false)).collect();
    let _ = writeln!(s, "{} \\\\", head.join(" & "));
    s.push_str("\\midrule\n");
    for (i, r) in t.rows.iter().enumerate() {
        if i + 1 == t.rows.len() && r.first().is_some_and(|c| c.text == "geomean") {
            s.push_str("\\midrule\n");
        }
        let cells: Vec<String> = r.iter().map(|c| latex_cell(&c.text, c.bold)).collect();
        let _ = writeln!(s, "{} \\\\", cells.join(" & "));
    }
    s.push_str("\\bottomrule\n\\end{tabular}\n");
    for f in &t.footer {
        let _ = writeln!(
            s,
            "\\par\\smallskip\\parbox{{\\linewidth}}{{\\scriptsize {}}}",
            latex_cell(f, false)
        );
    }
    s.push_str("\\end{table}\n");
    s
}

/// A standalone document with every table (compiles with pdflatex).
pub fn latex_document(tables: &[Table]) -> String {
    let mut s = String::from(
        "\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage[utf8]{inputenc}\n\
         \\usepackage{booktabs}\n\\usepackage[margin=1.5cm,landscape]{geometry}\n\
         \\begin{document}\n",
    );
    for t in tables {
        s.push_str(&table(t));
    }
    s.push_str("\\end{document}\n");
    s
}

pub struct Latex;

impl super::Exporter for Latex {
    fn ext(&self) -> &'static str {
        "tex"
    }

    fn tables(&self, tables: &[Table]) -> Option<String> {
        Some(tables.iter().map(table).collect::<Vec<_>>().join("\n"))
    }
}
