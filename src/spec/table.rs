//! `[[table]]`: the paper tables an experiment declares. Declarative on purpose: a table
//! names what to show (metrics, statistic, rows, columns, arms, interval style, digits,
//! caption, label, bold rule) and `report` decides how each format draws it. Validated here
//! with located errors like every other section.

use super::raw::RawTable;
use super::validate::{span_of, Validator};
use super::{AgentKind, Arm, OPTION_NAMES};
use crate::metrics::Metric;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Range;
use toml::Spanned;

/// The statistic of the per-rep values a table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Statistic {
    /// The metric's estimate (median of the rep values, or a pooled quantile) with its
    /// interval (order statistic, or cluster bootstrap).
    Median,
    /// Mean of the rep values with a t interval.
    Mean,
    /// 5th percentile of the rep values (type-7), without an interval.
    P5,
    /// 25th percentile (first quartile) of the rep values, without an interval.
    P25,
    /// 75th percentile (third quartile) of the rep values, without an interval.
    P75,
    /// 95th percentile of the rep values, without an interval.
    P95,
    /// 99th percentile of the rep values, without an interval.
    P99,
    /// Smallest rep value.
    Min,
    /// Largest rep value.
    Max,
}

/// The words `statistic` takes, in [`Statistic`] order.
pub const STATISTIC_WORDS: &[&str] = &[
    "median", "mean", "p5", "p25", "p75", "p95", "p99", "min", "max",
];

impl Statistic {
    const ALL: [Statistic; 9] = [
        Statistic::Median,
        Statistic::Mean,
        Statistic::P5,
        Statistic::P25,
        Statistic::P75,
        Statistic::P95,
        Statistic::P99,
        Statistic::Min,
        Statistic::Max,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        STATISTIC_WORDS[Self::ALL.iter().position(|s| *s == self).unwrap_or(0)]
    }

    fn parse(s: &str) -> Option<Statistic> {
        STATISTIC_WORDS
            .iter()
            .position(|w| *w == s)
            .map(|i| Self::ALL[i])
    }

    /// Whether the statistic comes with an interval (the median's order-statistic interval,
    /// the mean's t interval); quantiles of a handful of reps do not.
    pub fn has_ci(self) -> bool {
        matches!(self, Statistic::Median | Statistic::Mean)
    }
}

/// How an interval is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CiStyle {
    /// `value [lo, hi]`.
    Brackets,
    /// `value ± h`, h = half the interval's width (the ends are in the CSV and JSON).
    Pm,
    /// The value alone.
    None,
}

pub const CI_WORDS: &[&str] = &["brackets", "pm", "none"];
/// Default `[[table]] digits`: significant digits of the largest value of a column.
pub const DEFAULT_DIGITS: u32 = 3;

/// Which entries are set in bold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoldRule {
    /// Significantly different from the reference cell (Holm-adjusted, the analysis'
    /// verdict better/worse).
    Significant,
    /// The best value of each column (by the metric's direction).
    Best,
    /// Nothing in bold.
    None,
}

pub const BOLD_WORDS: &[&str] = &["significant", "best", "none"];

/// What spreads across the columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Columns {
    /// One column (group) per metric.
    Metrics,
    /// The values of an axis (`arm` or an option such as `num_ctx`).
    Axis(String),
}

/// One validated `[[table]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSpec {
    pub(crate) name: String,
    pub(crate) metrics: Vec<Metric>,
    pub(crate) statistic: Statistic,
    /// Axes down the rows; empty = every axis that varies over the table's cells.
    pub rows: Vec<String>,
    pub(crate) columns: Columns,
    /// Arms in the table; empty = the default set (see [`TableSpec::arms_for`]).
    pub arms: Vec<String>,
    pub(crate) ci: CiStyle,
    pub(crate) digits: u32,
    pub(crate) caption: Option<String>,
    pub(crate) label: String,
    pub(crate) bold: BoldRule,
    /// A Δ% vs reference column per metric.
    pub delta: bool,
}

/// An axis name a table may use: `arm`, an option, or a pair member's option (`A.num_ctx`).
pub fn is_axis(name: &str) -> bool {
    let opt = name
        .strip_prefix("A.")
        .or_else(|| name.strip_prefix("B."))
        .unwrap_or(name);
    name == "arm" || OPTION_NAMES.contains(&opt) || opt == "max_tokens"
}

/// The regex the schema uses for an axis name (the same set as [`is_axis`]).
pub fn axis_pattern() -> String {
    let mut opts: Vec<&str> = OPTION_NAMES.to_vec();
    opts.push("max_tokens");
    format!("^(arm|((A|B)\\.)?({}))$", opts.join("|"))
}

impl Validator<'_> {
    /// Validates every `[[table]]` against the arms already validated.
    pub(super) fn tables(
        &mut self,
        raw: Option<Spanned<Vec<Spanned<RawTable>>>>,
        arms: &[Arm],
    ) -> Vec<TableSpec> {
        let mut out = Vec::new();
        let mut seen: BTreeMap<String, Range<usize>> = BTreeMap::new();
        for t in raw.map(|r| r.into_inner()).unwrap_or_default() {
            let span = t.span();
            let t = t.into_inner();
            let name = t.name.get_ref().clone();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                self.err(
                    span_of(&t.name),
                    format!("table name must be a non-empty word of letters, digits, '_' or '-' (it names the files tables/<name>.*), found {name:?}"),
                );
            }
            if let Some(first) = seen.get(&name) {
                let line = self.map.at(Some(first.clone()), "").line;
                self.err(
                    span_of(&t.name),
                    format!("duplicate table name {name:?} (first on line {line}); table names must be unique"),
                );
            } else {
                seen.insert(name.clone(), t.name.span());
            }
            if let Some(t) = self.table(t, span, arms) {
                out.push(t);
            }
        }
        out
    }

    // Long (one `[[table]]`, ≈200 lines) on purpose: each key is checked in the
    // order the section documents them and every problem is collected with its location;
    // the blocks are independent and short, and split by key they would only scatter one
    // section's rules over several functions.
    fn table(&mut self, t: RawTable, span: Range<usize>, arms: &[Arm]) -> Option<TableSpec> {
        let before = self.diags.len();
        let name = t.name.get_ref().clone();
        let mut metric_names: Vec<Spanned<String>> = Vec::new();
        match (&t.metric, &t.metrics) {
            (Some(m), None) => metric_names.push(m.clone()),
            (None, Some(ms)) if !ms.get_ref().is_empty() => {
                metric_names.extend(ms.get_ref().iter().cloned())
            }
            (None, Some(ms)) => self.err(span_of(ms), "metrics must list at least one metric"),
            (Some(m), Some(_)) => {
                self.err(span_of(m), "give either `metric` or `metrics`, not both")
            }
            (None, None) => self.err(
                Some(span.clone()),
                format!("table {name:?} needs `metric = \"ttft_ms\"` or `metrics = [...]`"),
            ),
        }
        let mut metrics = Vec::new();
        for m in &metric_names {
            match Metric::parse(m.get_ref()) {
                Some(x) if metrics.contains(&x) => self.err(
                    span_of(m),
                    format!("metric `{}` is listed twice", m.get_ref()),
                ),
                Some(x) => metrics.push(x),
                None => self.err(
                    span_of(m),
                    format!(
                        "unknown metric `{}`; expected one of: {}",
                        m.get_ref(),
                        Metric::all_names().join(", ")
                    ),
                ),
            }
        }
        let statistic = match &t.statistic {
            None => Statistic::Median,
            Some(s) => match Statistic::parse(s.get_ref()) {
                Some(x) => {
                    if x != Statistic::Median {
                        if let Some(p) = metrics.iter().find(|m| m.is_pooled()) {
                            self.err(
                                span_of(s),
                                format!(
                                    "`{}` is a pooled quantile of the calls (its value and cluster-bootstrap interval are fixed): leave `statistic` out for it",
                                    p.name()
                                ),
                            );
                        }
                    }
                    x
                }
                None => {
                    self.err(
                        span_of(s),
                        format!(
                            "statistic must be one of {}, found {:?}",
                            STATISTIC_WORDS.join(", "),
                            s.get_ref()
                        ),
                    );
                    Statistic::Median
                }
            },
        };
        let mut rows = Vec::new();
        for r in t
            .rows
            .as_ref()
            .map(|r| r.get_ref().as_slice())
            .unwrap_or(&[])
        {
            if !is_axis(r.get_ref()) {
                self.err(
                    span_of(r),
                    format!(
                        "unknown axis `{}`; expected `arm` or an option ({}), `A.`/`B.` + option for pair members",
                        r.get_ref(),
                        OPTION_NAMES.join(", ")
                    ),
                );
            } else if rows.contains(r.get_ref()) {
                self.err(
                    span_of(r),
                    format!("axis `{}` is listed twice", r.get_ref()),
                );
            } else {
                rows.push(r.get_ref().clone());
            }
        }
        let columns = match &t.columns {
            None => Columns::Metrics,
            Some(c) if c.get_ref() == "metrics" => Columns::Metrics,
            Some(c) if is_axis(c.get_ref()) => {
                if rows.contains(c.get_ref()) {
                    self.err(
                        span_of(c),
                        format!("axis `{}` cannot be both rows and columns", c.get_ref()),
                    );
                }
                if metrics.len() > 1 {
                    self.err(
                        span_of(c),
                        "an axis across the columns takes one metric (declare one table per metric)",
                    );
                }
                Columns::Axis(c.get_ref().clone())
            }
            Some(c) => {
                self.err(
                    span_of(c),
                    format!(
                        "columns must be \"metrics\" or an axis (`arm`, an option name), found {:?}",
                        c.get_ref()
                    ),
                );
                Columns::Metrics
            }
        };
        let mut arm_names = Vec::new();
        if let Some(list) = &t.arms {
            if list.get_ref().is_empty() {
                self.err(
                    span_of(list),
                    "arms must list at least one arm (or leave it out)",
                );
            }
            let mut kinds = Vec::new();
            for a in list.get_ref() {
                match arms.iter().find(|x| &x.name == a.get_ref()) {
                    Some(arm) => {
                        kinds.push((arm.agent, a.get_ref().clone()));
                        arm_names.push(a.get_ref().clone());
                    }
                    None if arms.is_empty() => {}
                    None => self.err(
                        span_of(a),
                        format!(
                            "arm {:?} is not defined; expected one of: {}",
                            a.get_ref(),
                            arms.iter()
                                .map(|x| x.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ),
                }
            }
            let single: Vec<&str> = kinds
                .iter()
                .filter(|(k, _)| *k == AgentKind::Single)
                .map(|(_, n)| n.as_str())
                .collect();
            let pair: Vec<&str> = kinds
                .iter()
                .filter(|(k, _)| *k == AgentKind::Pair)
                .map(|(_, n)| n.as_str())
                .collect();
            if !single.is_empty() && !pair.is_empty() {
                self.err(
                    span_of(list),
                    format!(
                        "single-agent and pair cells never share a table (single: {}; pair: {}): declare one table for each",
                        single.join(", "),
                        pair.join(", ")
                    ),
                );
            }
        }
        let ci = match t.ci.as_ref().map(|c| c.get_ref().as_str()) {
            None | Some("brackets") => CiStyle::Brackets,
            Some("pm") => CiStyle::Pm,
            Some("none") => CiStyle::None,
            Some(other) => {
                self.err(
                    t.ci.as_ref().and_then(span_of),
                    format!("ci must be \"brackets\" (value [lo, hi]), \"pm\" (value ± half-width) or \"none\", found {other:?}"),
                );
                CiStyle::Brackets
            }
        };
        let digits = t
            .digits
            .as_ref()
            .map(|d| self.int_in(d, "digits", 1, 8) as u32)
            .unwrap_or(DEFAULT_DIGITS);
        let bold = match t.bold.as_ref().map(|c| c.get_ref().as_str()) {
            None | Some("significant") => BoldRule::Significant,
            Some("best") => BoldRule::Best,
            Some("none") => BoldRule::None,
            Some(other) => {
                self.err(
                    t.bold.as_ref().and_then(span_of),
                    format!("bold must be \"significant\", \"best\" or \"none\", found {other:?}"),
                );
                BoldRule::Significant
            }
        };
        let delta = t.delta.as_ref().is_some_and(|d| *d.get_ref());
        if delta && columns != Columns::Metrics {
            self.err(
                t.delta.as_ref().and_then(span_of),
                "delta = true needs columns = \"metrics\" (a Δ% column beside each metric)",
            );
        }
        let label = match &t.label {
            Some(l)
                if l.get_ref().trim().is_empty()
                    || l.get_ref().contains(['{', '}', '\\', '%', '#']) =>
            {
                self.err(
                    span_of(l),
                    format!("label must be a LaTeX label without braces, backslashes, % or # (e.g. \"tab:ttft\"), found {:?}", l.get_ref()),
                );
                String::new()
            }
            Some(l) => l.get_ref().clone(),
            None => format!("tab:{name}"),
        };
        if self.diags.len() > before {
            return None;
        }
        Some(TableSpec {
            name,
            metrics,
            statistic,
            rows,
            columns,
            arms: arm_names,
            ci,
            digits,
            caption: t.caption.map(|c| c.into_inner()),
            label,
            bold,
            delta,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Spec;
    use std::path::Path;

    const HEAD: &str = "[experiment]\nname = \"t\"\n[backend]\nkind = \"embedded\"\n[corpus]\npath = \"c\"\n\
                        [[arm]]\nname = \"base\"\n[[arm]]\nname = \"ch\"\n[arm.grid]\nnum_ctx = [512, 1024]\n\
                        [[arm]]\nname = \"duo\"\nagent = \"pair\"\na = {}\nb = {}\n";

    fn parse(tables: &str) -> Result<Spec, String> {
        Spec::parse(Path::new("t.toml"), &format!("{HEAD}{tables}")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_table_parses_and_defaults_fill_in() {
        let s = parse(
            "[[table]]\nname = \"ttft\"\nmetrics = [\"ttft_p50\", \"decode_tps\"]\nstatistic = \"mean\"\n\
             rows = [\"arm\"]\narms = [\"base\", \"ch\"]\nci = \"pm\"\ndigits = 4\ncaption = \"TTFT\"\nbold = \"best\"\ndelta = true\n\
             [[table]]\nname = \"by_ctx\"\nmetric = \"ttft_ms\"\ncolumns = \"num_ctx\"\n",
        )
        .unwrap();
        let t = &s.tables[0];
        assert_eq!(t.metrics, vec![Metric::TtftMs, Metric::DecodeTps]);
        assert_eq!(
            (t.statistic, t.ci, t.digits, t.bold),
            (Statistic::Mean, CiStyle::Pm, 4, BoldRule::Best)
        );
        assert_eq!(t.label, "tab:ttft");
        assert!(t.delta);
        assert_eq!(s.tables[1].columns, Columns::Axis("num_ctx".into()));
        assert_eq!(s.tables[1].ci, CiStyle::Brackets);
    }

    #[test]
    fn every_mistake_is_located() {
        for (text, line, words) in [
            ("[[table]]\nname = \"x\"\n", 1, "needs `metric"),
            ("[[table]]\nname = \"x\"\nmetric = \"nope\"\n", 3, "unknown metric `nope`"),
            ("[[table]]\nname = \"x\"\nmetric = \"ttft_ms\"\narms = [\"base\", \"duo\"]\n", 4, "never share a table"),
            ("[[table]]\nname = \"x\"\nmetric = \"ttft_ms\"\narms = [\"ghost\"]\n", 4, "not defined"),
            ("[[table]]\nname = \"x\"\nmetric = \"ttft_ms\"\nrows = [\"colour\"]\n", 4, "unknown axis"),
            ("[[table]]\nname = \"x\"\nmetric = \"ttft_ms\"\nci = \"stars\"\n", 4, "ci must be"),
            ("[[table]]\nname = \"x\"\nmetric = \"ttft_ms\"\ndigits = 0\n", 4, "digits must be"),
            ("[[table]]\nname = \"x\"\nmetric = \"ttft_p95_ms\"\nstatistic = \"mean\"\n", 4, "pooled quantile"),
            ("[[table]]\nname = \"x\"\nmetric = \"ttft_ms\"\ncolumns = \"num_ctx\"\ndelta = true\n", 5, "delta = true needs"),
            ("[[table]]\nname = \"x\"\nmetric = \"ttft_ms\"\n[[table]]\nname = \"x\"\nmetric = \"e2e_ms\"\n", 5, "duplicate table name"),
            ("[[table]]\nname = \"x\"\nmetric = \"ttft_ms\"\nrows = [\"num_ctx\"]\ncolumns = \"num_ctx\"\n", 5, "both rows and columns"),
            ("[[table]]\nname = \"x\"\nmetric = \"ttft_ms\"\nlabel = \"a{b}\"\n", 4, "label must be"),
        ] {
            let e = parse(text).unwrap_err();
            let head_lines = HEAD.lines().count();
            let want = format!("t.toml:{}:", head_lines + line);
            assert!(e.contains(&want) && e.contains(words), "{text}: wanted {want} {words:?} in {e}");
        }
    }

    #[test]
    fn validator_words_are_the_schema_words() {
        for w in super::super::ORDER_WORDS {
            let text = HEAD.replace(
                "name = \"t\"\n",
                &format!("name = \"t\"\norder = \"{w}\"\n"),
            );
            assert!(Spec::parse(Path::new("t.toml"), &text).is_ok(), "order {w}");
        }
        for w in STATISTIC_WORDS {
            assert!(
                parse(&format!(
                    "[[table]]\nname = \"x\"\nmetric = \"ttft_ms\"\nstatistic = \"{w}\"\n"
                ))
                .is_ok(),
                "{w}"
            );
        }
        for w in CI_WORDS.iter().chain(BOLD_WORDS) {
            let key = if CI_WORDS.contains(w) { "ci" } else { "bold" };
            assert!(
                parse(&format!(
                    "[[table]]\nname = \"x\"\nmetric = \"ttft_ms\"\n{key} = \"{w}\"\n"
                ))
                .is_ok(),
                "{w}"
            );
        }
        for w in super::super::PERSONA_WORDS {
            let text = HEAD.replace(
                "name = \"base\"\n",
                &format!("name = \"base\"\npersona = \"{w}\"\n"),
            );
            assert!(
                Spec::parse(Path::new("t.toml"), &text).is_ok(),
                "persona {w}"
            );
        }
    }
}
