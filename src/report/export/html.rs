//! HTML: the tables as HTML, and `report.html`, one self-contained page (inline CSS and SVG,
//! no script, nothing fetched) with the headline, every table, the plots, the environment,
//! the exclusions, the verdicts and the experiment file. It opens from disk with no network.

use super::super::escape::xml;
use super::super::table::Table;
use std::fmt::Write as _;

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;color:#1b1f24;background:#fff}\
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}\
table{border-collapse:collapse;margin:.6rem 0 .3rem;font-size:.86rem}\
caption{caption-side:top;text-align:left;font-weight:600;padding-bottom:.4rem}\
thead th{border-top:2px solid #1b1f24;border-bottom:1px solid #1b1f24;padding:.25rem .6rem;text-align:left}\
td{padding:.2rem .6rem;white-space:nowrap}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}\
tbody tr:last-child td{border-bottom:2px solid #1b1f24}tr.rule td{border-top:1px solid #1b1f24}\
.notes{font-size:.78rem;color:#57606a;margin:0 0 1.4rem;padding-left:1.2rem}\
.verdict-worse{color:#b42318}.verdict-better{color:#067647}\
pre{background:#f6f8fa;padding:1rem;overflow:auto;font-size:.8rem;border-radius:6px}\
figure{margin:1rem 0}figure svg{max-width:100%;height:auto}figcaption{font-size:.85rem;color:#57606a}\
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem;font-size:.9rem}dt{font-weight:600}";

/// One table as HTML (`<table>` with its caption, then the notes).
pub fn table(t: &Table) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "<table id=\"{}\">", xml(&anchor(&t.label)));
    let _ = writeln!(s, "<caption>{}</caption>", xml(&t.caption));
    s.push_str("<thead><tr>");
    for c in &t.columns {
        let class = if c.is_number() { " class=\"num\"" } else { "" };
        let _ = write!(s, "<th{class}>{}</th>", xml(&c.header));
    }
    s.push_str("</tr></thead>\n<tbody>\n");
    for (r, texts) in t.rows.iter().zip(t.plain_rows()) {
        s.push_str(if r.rule_above {
            "<tr class=\"rule\">"
        } else {
            "<tr>"
        });
        for ((c, col), text) in r.cells.iter().zip(&t.columns).zip(texts) {
            let mut classes = Vec::new();
            if col.is_number() {
                classes.push("num".to_string());
            }
            if col.header == "verdict" && (c.text == "worse" || c.text == "better") {
                classes.push(format!("verdict-{}", c.text));
            }
            let class = if classes.is_empty() {
                String::new()
            } else {
                format!(" class=\"{}\"", classes.join(" "))
            };
            let body = if c.bold {
                format!("<strong>{}</strong>", xml(&text))
            } else {
                xml(&text)
            };
            let _ = write!(s, "<td{class}>{body}</td>");
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody>\n</table>\n");
    if !t.notes.is_empty() {
        s.push_str("<ul class=\"notes\">\n");
        for n in &t.notes {
            let _ = writeln!(s, "<li>{}</li>", xml(n));
        }
        s.push_str("</ul>\n");
    }
    s
}

fn anchor(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// What `report.html` shows besides the tables.
pub struct Page<'a> {
    pub(crate) title: String,
    /// A few lines under the title (run, experiment, what ran).
    pub summary: Vec<String>,
    /// The headline table (cells × TTFT / decode, verdicts).
    pub headline: Vec<&'a Table>,
    pub(crate) tables: Vec<&'a Table>,
    /// (caption, SVG text) of each plot.
    pub plots: Vec<(String, String)>,
    /// (what, value) of the environment.
    pub environment: Vec<(String, String)>,
    /// Exclusions per cell, one line each.
    pub exclusions: Vec<String>,
    /// Warnings a reader must see.
    pub warnings: Vec<String>,
    /// Methods paragraphs (heading, text).
    pub methods: Vec<(String, String)>,
    /// The experiment file(s): (name, text).
    pub experiment_files: Vec<(String, String)>,
}

/// An SVG file's markup, ready to inline (the XML declaration dropped).
pub fn inline_svg(svg: &str) -> String {
    let s = svg.trim_start();
    let s = if s.starts_with("<?xml") {
        s.split_once("?>").map(|x| x.1).unwrap_or(s)
    } else {
        s
    };
    s.trim().to_string()
}

/// The whole self-contained page.
pub fn page(p: &Page) -> String {
    let mut s =
        String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    s.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(s, "<title>{}</title>", xml(&p.title));
    let _ = writeln!(s, "<style>{STYLE}</style>\n</head>\n<body>");
    let _ = writeln!(s, "<h1>{}</h1>", xml(&p.title));
    for l in &p.summary {
        let _ = writeln!(s, "<p>{}</p>", xml(l));
    }
    if !p.warnings.is_empty() {
        s.push_str("<h2 id=\"warnings\">Warnings</h2>\n<ul>\n");
        for w in &p.warnings {
            let _ = writeln!(s, "<li>{}</li>", xml(w));
        }
        s.push_str("</ul>\n");
    }
    s.push_str("<h2 id=\"headline\">Headline and verdicts</h2>\n");
    for t in &p.headline {
        s.push_str(&table(t));
    }
    s.push_str("<h2 id=\"tables\">Tables</h2>\n");
    for t in &p.tables {
        s.push_str(&table(t));
    }
    if !p.plots.is_empty() {
        s.push_str("<h2 id=\"plots\">Plots</h2>\n");
        for (cap, svg) in &p.plots {
            let _ = writeln!(
                s,
                "<figure>\n{}\n<figcaption>{}</figcaption>\n</figure>",
                inline_svg(svg),
                xml(cap)
            );
        }
    }
    s.push_str("<h2 id=\"environment\">Environment</h2>\n<dl>\n");
    for (k, v) in &p.environment {
        let _ = writeln!(s, "<dt>{}</dt><dd>{}</dd>", xml(k), xml(v));
    }
    s.push_str("</dl>\n<h2 id=\"exclusions\">Exclusions</h2>\n<ul>\n");
    for e in &p.exclusions {
        let _ = writeln!(s, "<li>{}</li>", xml(e));
    }
    s.push_str("</ul>\n<h2 id=\"methods\">Methods</h2>\n");
    for (h, text) in &p.methods {
        let _ = writeln!(s, "<p><strong>{}.</strong> {}</p>", xml(h), xml(text));
    }
    s.push_str("<h2 id=\"experiment\">Experiment file</h2>\n");
    for (name, text) in &p.experiment_files {
        let _ = writeln!(
            s,
            "<p><code>{}</code></p>\n<pre>{}</pre>",
            xml(name),
            xml(text)
        );
    }
    s.push_str("</body>\n</html>\n");
    s
}

pub(crate) struct Html;

impl super::Exporter for Html {
    fn ext(&self) -> &'static str {
        "html"
    }

    fn tables(&self, tables: &[Table]) -> Option<String> {
        let mut s =
            String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        let _ = writeln!(
            s,
            "<title>tables</title>\n<style>{STYLE}</style>\n</head>\n<body>"
        );
        for t in tables {
            s.push_str(&table(t));
        }
        s.push_str("</body>\n</html>\n");
        Some(s)
    }
}
