//! Heuristic reading of the analysis text: its summary, key findings and recommendations.
//!
//! Models format freely (`## Key Findings`, `**3. Key Findings**`, `Recommendations:`), so
//! a heading is any `#` line, any line that is bold as a whole, or a short line ending in
//! `:`. Bullets (`-`, `*`, `•`, `1.`) under a heading that mentions "finding" or
//! "recommend" are the items. When the text has no such sections, the seed system's rule
//! applies: lines mentioning the section's keywords.

/// Items kept per list.
const MAX_ITEMS: usize = 10;

/// What the report needs from the analysis call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Analysis {
    /// The summary section's lines (the first lines of the text when it has none).
    pub summary: String,
    /// Key findings, bullet marks cut; at most 10.
    pub key_findings: Vec<String>,
    /// Recommendations, bullet marks cut; at most 10.
    pub recommendations: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Section {
    Other,
    Summary,
    Findings,
    Recommendations,
}

/// Reads the analysis text the way the prompt version's report prompt expects.
pub fn parse_analysis_for(version: crate::spec::PromptVersion, text: &str) -> Analysis {
    match version {
        crate::spec::PromptVersion::Chimera2025 => parse_analysis_chimera(text),
        _ => parse_analysis(text),
    }
}

/// The seed system's reading (`parse_analysis_response` in Chimeraforge
/// src/rust/demo_multiagent/src/main.rs), reproduced so that `chimera-2025` report prompts
/// carry what the seeds' did: the summary is everything after an "executive summary" line
/// up to the next `#` heading; findings and recommendations are the first ten lines that
/// mention a keyword anywhere in the text, with leading bullet marks and numbers cut (hence
/// the seeds' `Key Performance Findings**`).
pub fn parse_analysis_chimera(text: &str) -> Analysis {
    Analysis {
        summary: chimera_summary(text),
        key_findings: chimera_keyword_lines(text, &["finding", "insight", "discovery", "key"]),
        recommendations: chimera_keyword_lines(
            text,
            &["recommend", "suggest", "should", "consider"],
        ),
    }
}

fn chimera_summary(text: &str) -> String {
    let mut lines: Vec<&str> = Vec::new();
    let mut in_summary = false;
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() && in_summary {
            lines.push("");
            continue;
        }
        let lower = t.to_lowercase();
        if lower.contains("executive summary") || lower == "summary" {
            in_summary = true;
            continue;
        }
        if in_summary && t.starts_with('#') {
            break;
        }
        if in_summary {
            lines.push(t);
        }
    }
    if lines.is_empty() {
        text.lines()
            .take(5)
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        lines
            .into_iter()
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn chimera_clean_bullet(line: &str) -> String {
    line.trim_start_matches(['-', '*', '•'])
        .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ')')
        .trim()
        .to_string()
}

fn chimera_keyword_lines(text: &str, words: &[&str]) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.starts_with('#'))
        .filter(|t| {
            let l = t.to_lowercase();
            words.iter().any(|w| l.contains(w))
        })
        .map(chimera_clean_bullet)
        .take(MAX_ITEMS)
        .collect()
}

/// Reads the analysis text.
pub fn parse_analysis(text: &str) -> Analysis {
    let mut summary = Vec::new();
    let mut findings = Vec::new();
    let mut recs = Vec::new();
    let mut section = Section::Other;
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if let Some(h) = heading_text(t) {
            let h = h.to_lowercase();
            section = if h.contains("recommend") {
                Section::Recommendations
            } else if h.contains("finding") {
                Section::Findings
            } else if h.contains("summary") {
                Section::Summary
            } else {
                Section::Other
            };
            continue;
        }
        match section {
            Section::Summary => summary.push(t.to_string()),
            Section::Findings if is_bullet(t) && findings.len() < MAX_ITEMS => {
                findings.push(clean_bullet(t))
            }
            Section::Recommendations if is_bullet(t) && recs.len() < MAX_ITEMS => {
                recs.push(clean_bullet(t))
            }
            _ => {}
        }
    }
    if findings.is_empty() {
        findings = keyword_lines(text, &["finding", "insight", "key"]);
    }
    if recs.is_empty() {
        recs = keyword_lines(text, &["recommend", "suggest", "should", "consider"]);
    }
    let summary = if summary.is_empty() {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        summary.join("\n")
    };
    Analysis {
        summary,
        key_findings: findings,
        recommendations: recs,
    }
}

/// The heading's words if `t` is a heading line.
fn heading_text(t: &str) -> Option<&str> {
    if let Some(rest) = t.strip_prefix('#') {
        return Some(rest.trim_start_matches('#').trim());
    }
    if is_bullet(t) {
        return None;
    }
    if t.len() > 4
        && t.starts_with("**")
        && t.ends_with("**")
        && t[2..t.len() - 2].find("**").is_none()
    {
        return Some(t.trim_matches('*').trim());
    }
    if t.ends_with(':') && t.chars().count() <= 60 {
        return Some(t.trim_end_matches(':').trim_matches('*').trim());
    }
    None
}

fn is_bullet(t: &str) -> bool {
    if t.starts_with("- ") || t.starts_with("* ") || t.starts_with("• ") {
        return true;
    }
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    digits > 0
        && matches!(t[digits..].chars().next(), Some('.') | Some(')'))
        && t[digits + 1..].starts_with(' ')
}

fn clean_bullet(t: &str) -> String {
    let t = t.trim_start_matches(['-', '*', '•']);
    let digits = t
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .count();
    let t = t.trim_start();
    let t = if digits > 0 {
        t[digits..].trim_start_matches(['.', ')'])
    } else {
        t
    };
    t.trim().to_string()
}

fn keyword_lines(text: &str, words: &[&str]) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.starts_with('#'))
        .filter(|t| {
            let l = t.to_lowercase();
            words.iter().any(|w| l.contains(w))
        })
        .map(clean_bullet)
        .take(MAX_ITEMS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_in_three_heading_styles() {
        let text = "**1. Executive Summary**\nThe data shows 101 files.\n\n\
## 2. Key Findings\n* **Latency:** p95 is 15.6 s.\n- Throughput is 42 tok/s.\nprose here\n\n\
Recommendations for Optimization:\n1. **Tune num_ctx.** Smaller is faster.\n2) Pin the model.\n\n\
### Appendix\n- not an item\n";
        let a = parse_analysis(text);
        assert_eq!(a.summary, "The data shows 101 files.");
        assert_eq!(
            a.key_findings,
            vec!["**Latency:** p95 is 15.6 s.", "Throughput is 42 tok/s."]
        );
        assert_eq!(
            a.recommendations,
            vec!["**Tune num_ctx.** Smaller is faster.", "Pin the model."]
        );
    }

    /// Seed 000's lists came out of this reading: a bold numbered heading keeps its closing
    /// asterisks, a summary paragraph that says "recommend" is a recommendation, a number
    /// after a bullet mark and a space stays.
    #[test]
    fn chimera_reading_reproduces_the_seed_quirks() {
        let text = "**1. Executive Summary**\n\nThe data shows 101 files. We recommend pinning.\n\n\
**2. Key Performance Findings**\n\n* **Time Sensitivity:** recent.\n\n## 3. Metrics\n- 1) You should cache.\n";
        let a = parse_analysis_chimera(text);
        assert_eq!(
            a.summary,
            "The data shows 101 files. We recommend pinning.\n**2. Key Performance Findings**\n* **Time Sensitivity:** recent."
        );
        assert_eq!(a.key_findings, vec!["Key Performance Findings**"]);
        assert_eq!(
            a.recommendations,
            vec![
                "The data shows 101 files. We recommend pinning.",
                "1) You should cache."
            ]
        );
        let none = parse_analysis_chimera("line one\nline two");
        assert_eq!(none.summary, "line one\nline two");
        assert!(none.key_findings.is_empty() && none.recommendations.is_empty());
    }

    #[test]
    fn falls_back_to_keywords_without_sections() {
        let a = parse_analysis("A key insight: caches lie.\nYou should pin the model.\nNothing.");
        assert_eq!(a.key_findings, vec!["A key insight: caches lie."]);
        assert_eq!(a.recommendations, vec!["You should pin the model."]);
    }
}
