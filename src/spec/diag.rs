//! Diagnostics that point at a place in the experiment file: file, line, column, what was expected.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in an experiment file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// The experiment file (as given, or as stored in a manifest).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// What is wrong and what was expected, e.g. `top_p must be a number in (0, 1], found …`.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// Maps byte offsets of one source text to line/column diagnostics.
pub struct SourceMap<'a> {
    file: &'a Path,
    text: &'a str,
}

impl<'a> SourceMap<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Self {
        Self { file, text }
    }

    /// A diagnostic at the start of `span` (or at 1:1 when there is none).
    pub fn at(&self, span: Option<Range<usize>>, message: impl Into<String>) -> Diagnostic {
        let (line, col) = match span {
            Some(s) => self.line_col(s.start),
            None => (1, 1),
        };
        Diagnostic {
            file: self.file.to_path_buf(),
            line,
            col,
            message: message.into(),
        }
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let text = "a = 1\nbb = 2\n";
        let m = SourceMap::new(Path::new("x.toml"), text);
        let d = m.at(Some(6..7), "boom");
        assert_eq!((d.line, d.col), (2, 1));
        let d = m.at(Some(11..12), "boom");
        assert_eq!((d.line, d.col), (2, 6));
        assert_eq!(d.to_string(), "x.toml:2:6: error: boom");
    }
}
