//! The crate's top-level modules form floors, not a circle (src/lib.rs's crate doc lists
//! them): this test reads src/ and fails on any cycle between top-level modules, naming the
//! files that make each edge of it. A module's dependencies are the `crate::<module>` paths
//! in its code (doc comments and its `#[cfg(test)] mod tests` excluded).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(p: &Path) -> Vec<PathBuf> {
    if p.is_file() {
        return vec![p.to_path_buf()];
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap().flatten() {
        out.extend(
            rust_files(&e.path())
                .into_iter()
                .filter(|f| f.extension().is_some_and(|x| x == "rs")),
        );
    }
    out
}

/// The code of a file: comment lines dropped, the unit-test module cut off.
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(l) = lines.next() {
        let t = l.trim_start();
        if t.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|n| n.trim_start().starts_with("mod tests"))
        {
            break;
        }
        if !t.starts_with("//") {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// The top-level modules a piece of code names: `crate::x…` and `use crate::{x, y::z}`.
fn named_modules(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let body = &group[..group.find('}').unwrap_or(group.len())];
            for part in body.split(',') {
                out.insert(ident(part.trim()));
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|m| modules.contains(m));
    out
}

#[test]
fn top_level_modules_have_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths: BTreeMap<String, PathBuf> = BTreeMap::new();
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "lib.rs" || name == "main.rs" {
            continue;
        }
        let module = name.strip_suffix(".rs").unwrap_or(&name).to_string();
        paths.insert(module, e.path());
    }
    let modules: BTreeSet<String> = paths.keys().cloned().collect();
    assert!(modules.len() > 10, "{modules:?}");
    // module → (module it uses → files that use it)
    let mut edges: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (m, p) in &paths {
        let e = edges.entry(m.clone()).or_default();
        for f in rust_files(p) {
            let text = std::fs::read_to_string(&f).unwrap();
            for used in named_modules(&code(&text), &modules) {
                if &used != m {
                    let rel = f.strip_prefix(&src).unwrap().display().to_string();
                    e.entry(used).or_default().insert(rel);
                }
            }
        }
    }
    // The test sees real edges: the runner uses the store, the CLI the runner.
    assert!(edges["runner"].contains_key("store"), "{edges:?}");
    assert!(edges["cli"].contains_key("runner"), "{edges:?}");

    // Depth-first search for a back edge; report the first cycle found with its files.
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == m) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        stack.push(m.to_string());
        for next in edges[m].keys() {
            if let Some(c) = visit(next, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        if let Some(cycle) = visit(m, &edges, &mut Vec::new(), &mut done) {
            let detail: Vec<String> = cycle
                .windows(2)
                .map(|w| format!("  {} → {}: {:?}", w[0], w[1], edges[&w[0]][&w[1]]))
                .collect();
            panic!(
                "top-level modules form a cycle {}:\n{}\n(see the floors in src/lib.rs's crate doc)",
                cycle.join(" → "),
                detail.join("\n")
            );
        }
    }
}

/// The check itself finds a cycle when there is one, and ignores doc comments and unit tests.
#[test]
fn the_cycle_reader_sees_code_not_comments() {
    let modules: BTreeSet<String> = ["store", "plan", "record"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let text = "/// see [`crate::plan::Plan`]\nuse crate::{record::Record, store};\nfn f() { crate::plan::x(); }\n#[cfg(test)]\nmod tests {\n use crate::store;\n}\n";
    let c = code(text);
    assert!(!c.contains("mod tests"), "{c}");
    let named = named_modules(&c, &modules);
    assert_eq!(
        named.into_iter().collect::<Vec<_>>(),
        ["plan", "record", "store"]
    );
    let only_doc = code("//! crate::store\n/// crate::plan\n");
    assert!(named_modules(&only_doc, &modules).is_empty());
}

/// A function's length in lines, for every function in a file: from its `fn` line to the
/// closing brace at the same indentation (rustfmt's layout), with the comment lines just
/// above it (its doc and attributes' neighbours) so the caller can look for a reason.
fn function_lengths(text: &str) -> Vec<(String, usize, usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        let indent = l.len() - t.len();
        let head = [
            "pub(crate) ",
            "pub(super) ",
            "pub ",
            "async ",
            "const ",
            "unsafe ",
        ]
        .iter()
        .fold(t, |s, p| s.strip_prefix(p).unwrap_or(s));
        let Some(rest) = head.strip_prefix("fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // A declaration without a body (a trait method) ends its signature with `;`.
        let signature_end = lines[i..]
            .iter()
            .map(|x| x.trim_end())
            .find(|x| x.ends_with('{') || x.ends_with(';') || x.ends_with('}'));
        if signature_end.is_none_or(|x| x.ends_with(';')) {
            continue;
        }
        let close = format!("{}}}", " ".repeat(indent));
        let end = if signature_end.is_some_and(|x| x.ends_with('}')) {
            lines[i..].iter().position(|x| x.trim_end().ends_with('}'))
        } else {
            lines[i..].iter().position(|x| *x == close)
        };
        let Some(end) = end else {
            continue;
        };
        let mut above = String::new();
        for x in lines[..i].iter().rev() {
            let x = x.trim_start();
            if x.starts_with("//") || x.starts_with("#[") {
                above.push_str(x);
                above.push('\n');
            } else {
                break;
            }
        }
        out.push((name, i + 1, end + 1, above));
    }
    out
}

/// Issue 25: no function in src/ over 150 lines unless the comment above it says why, in a
/// comment that starts "Long" and says why ("Long (≈200 lines) on purpose: …", "Long
/// because …"): the reason a reader needs before scrolling.
#[test]
fn no_function_over_150_lines_without_a_reason() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut long = Vec::new();
    let mut files = rust_files(&src);
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (name, line, len, above) in function_lengths(&text) {
            if len > 150 && !above.contains("// Long") {
                long.push(format!("{}:{line} fn {name}: {len} lines", f.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over 150 lines without a \"// Long … why\" comment:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_length_reader_measures_a_function_to_its_closing_brace() {
    let text = "// Long because it is.\npub fn a() {\n    let x = 1;\n}\n\nfn b(\n    y: u8,\n) -> u8 {\n    y\n}\ntrait T {\n    fn c(&self);\n}\n";
    let got = function_lengths(text);
    let short: Vec<(&str, usize, usize)> = got
        .iter()
        .map(|(n, l, len, _)| (n.as_str(), *l, *len))
        .collect();
    assert_eq!(short, vec![("a", 2, 3), ("b", 6, 5)]);
    assert!(got[0].3.contains("// Long"));
}
