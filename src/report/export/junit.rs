//! JUnit XML for CI systems: one testcase per gating (cell, metric) and per cell's call
//! share; a failure element for each regression, skipped for undecided rows (and capacities
//! too few reps could test); an undecided or not-comparable outcome is an error testcase of
//! its own, so no CI shows it green.

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
    let tests: Vec<String> = r
        .tests
        .iter()
        .map(|t| {
            format!(
                "against the {}: {:.3} → {:.3}, change {} [{}, {}], p regression (Holm) {}, p pass {:.3}",
                t.reference.label(),
                t.reference_level,
                t.level,
                pct(Some(t.change)),
                pct(Some(t.lower)),
                pct(Some(t.upper)),
                t.p_regression_holm
                    .map(|p| format!("{p:.3}"))
                    .unwrap_or_else(|| "—".into()),
                t.p_pass
            )
        })
        .collect();
    format!(
        "{}; tolerance {}; {}",
        r.verdict_label(),
        pct(r.threshold),
        if tests.is_empty() {
            r.why.clone().unwrap_or_else(|| "no test".into())
        } else {
            tests.join("; ")
        }
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
        // An undecided row and a capacity that could not be tested compared nothing.
        let skipped = rows
            .iter()
            .filter(|r| r.verdict == Verdict::Undecided)
            .count()
            + c.capacity.iter().filter(|x| x.untested()).count();
        let outcome_error = match &c.outcome {
            Outcome::Undecided { reasons } => Some(reasons.join("; ")),
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
        let tests = rows.len() + c.shares.len() + c.capacity.len() + errors;
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
            } else if r.verdict == Verdict::Undecided {
                let _ = writeln!(
                    s,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                    xml(r.why.as_deref().unwrap_or("undecided"))
                );
            } else {
                let _ = writeln!(
                    s,
                    ">\n      <system-out>{}</system-out>\n    </testcase>",
                    xml(&detail(r))
                );
            }
        }
        for sh in &c.shares {
            let text = format!(
                "{}: {}/{} tonight ({:.1}%) against {}/{} ({:.1}%), limit {:.0}%, Fisher one-sided p {:.3}",
                sh.kind.label(),
                sh.current.0,
                sh.current.1,
                sh.share() * 100.0,
                sh.reference.0,
                sh.reference.1,
                sh.reference_share() * 100.0,
                sh.limit * 100.0,
                sh.p
            );
            let _ = write!(
                s,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"0\"",
                xml(&sh.cell),
                xml(sh.kind.label())
            );
            if sh.fails {
                let _ = writeln!(
                    s,
                    ">\n      <failure message=\"{}\" type=\"regression\">{}</failure>\n    </testcase>",
                    xml(&format!("{} above the limit", sh.kind.label())),
                    xml(&text)
                );
            } else {
                let _ = writeln!(
                    s,
                    ">\n      <system-out>{}</system-out>\n    </testcase>",
                    xml(&text)
                );
            }
        }
        for cap in &c.capacity {
            let _ = write!(
                s,
                "    <testcase classname=\"{}\" name=\"capacity\" time=\"0\"",
                xml(&cap.configuration)
            );
            let text = xml(&cap.to_string());
            if cap.fails {
                let _ = writeln!(
                    s,
                    ">\n      <failure message=\"capacity under the SLO fell\" type=\"regression\">{text}</failure>\n    </testcase>"
                );
            } else if let Some(why) = &cap.why {
                let _ = writeln!(
                    s,
                    ">\n      <skipped message=\"{}\"/>\n      <system-out>{text}</system-out>\n    </testcase>",
                    xml(why)
                );
            } else {
                let _ = writeln!(
                    s,
                    ">\n      <system-out>{text}</system-out>\n    </testcase>"
                );
            }
        }
        s.push_str("  </testsuite>\n</testsuites>\n");
        Some(s)
    }
}
