//! JUnit XML for CI systems: one testcase per gating (cell, metric); a failure element for
//! each regression, skipped for undecided rows; an inconclusive or not-comparable outcome is
//! an error testcase of its own, so no CI shows it green.

use super::Exporter;
use crate::gate::{Comparison, Outcome, Row, Verdict};
use crate::report::escape::xml;
use crate::report::table::Table;
use std::fmt::Write as _;

pub(crate) struct Junit;

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:+.1}%", x * 100.0))
        .unwrap_or_else(|| "—".into())
}

fn detail(r: &Row) -> String {
    let ci = r.result.ci.as_ref();
    format!(
        "{}: baseline {}, current {}, change {}, CI [{}, {}], p (Holm) {}, threshold {}",
        r.verdict_label(),
        r.result
            .reference_estimate
            .map(|v| format!("{v:.3}"))
            .unwrap_or_else(|| "—".into()),
        r.result
            .estimate
            .map(|v| format!("{v:.3}"))
            .unwrap_or_else(|| "—".into()),
        pct(r.result.change),
        pct(ci.map(|c| c.lower)),
        pct(ci.map(|c| c.upper)),
        r.p_holm
            .map(|p| format!("{p:.3}"))
            .unwrap_or_else(|| "—".into()),
        pct(r.threshold)
    )
}

impl Exporter for Junit {
    fn ext(&self) -> &'static str {
        "xml"
    }

    fn tables(&self, _tables: &[Table]) -> Option<String> {
        None
    }

    fn gate(&self, c: &Comparison) -> Option<String> {
        let rows: Vec<&Row> = c.rows.iter().filter(|r| r.gates()).collect();
        let failures = c.regressions();
        let skipped = rows
            .iter()
            .filter(|r| r.verdict == Verdict::Inconclusive)
            .count();
        let outcome_error = match &c.outcome {
            Outcome::Inconclusive { reasons } => Some(reasons.join("; ")),
            Outcome::NotComparable { differences } => Some(
                differences
                    .iter()
                    .map(|d| format!("{}: {} → {}", d.what, d.baseline, d.current))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            _ => None,
        };
        let errors = usize::from(outcome_error.is_some());
        let tests = rows.len() + errors;
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            s,
            "<testsuites name=\"sweep compare\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\">"
        );
        let _ = writeln!(
            s,
            "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\">",
            xml(&format!("sweep compare {}", c.current.experiment))
        );
        if let Some(why) = outcome_error {
            let _ = writeln!(
                s,
                "    <testcase classname=\"gate\" name=\"{}\" time=\"0\">\n      <error message=\"{}\" type=\"{}\"/>\n    </testcase>",
                c.outcome.name(),
                xml(&why),
                c.outcome.name()
            );
        }
        for r in rows {
            let _ = write!(
                s,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"0\"",
                xml(&r.cell),
                r.metric.name()
            );
            if r.fails() {
                let _ = writeln!(
                    s,
                    ">\n      <failure message=\"{}\" type=\"regression\">{}</failure>\n    </testcase>",
                    xml(&format!("{} regressed", r.metric.name())),
                    xml(&detail(r))
                );
            } else if r.verdict == Verdict::Inconclusive {
                let _ = writeln!(
                    s,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                    xml(r.result.note.as_deref().unwrap_or("inconclusive"))
                );
            } else {
                let _ = writeln!(
                    s,
                    ">\n      <system-out>{}</system-out>\n    </testcase>",
                    xml(&detail(r))
                );
            }
        }
        s.push_str("  </testsuite>\n</testsuites>\n");
        Some(s)
    }
}
