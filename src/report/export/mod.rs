//! Every output format behind one trait, one file per format (in the way hyperfine's
//! `export/` does it). The analysis' tables and the gate's comparison are data; an exporter
//! turns them into text. A format that has nothing to say about a kind of data returns
//! `None` for it.

pub mod csv;
pub mod html;
pub mod json;
pub mod junit;
pub mod latex;
pub mod markdown;
pub mod terminal;

use super::table::Table;
use crate::gate::Comparison;
use serde::{Deserialize, Serialize};

/// An output format.
pub trait Exporter {
    /// File extension (without the dot).
    fn ext(&self) -> &'static str;
    /// The analysis' tables, all in one file.
    fn tables(&self, tables: &[Table]) -> Option<String>;
    /// A gate comparison.
    fn gate(&self, _c: &Comparison) -> Option<String> {
        None
    }
}

/// The formats `sweep report` and `sweep compare` write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// GitHub-flavoured Markdown tables and the gate's CI summary (`md`).
    #[value(name = "md")]
    Markdown,
    /// LaTeX `table` floats with booktabs and siunitx (`tex`); no gate output.
    #[value(name = "tex")]
    Latex,
    /// One header row and plain number fields, an interval's ends in columns of their own;
    /// no gate output.
    Csv,
    /// The tables, or the whole gate comparison, as JSON data.
    Json,
    /// One HTML file per table (report.html is written anyway).
    Html,
    /// The gate comparison, one test case per gating row, as JUnit XML (`junit`); no tables.
    #[value(name = "junit")]
    Junit,
}

impl Format {
    /// The table formats (`sweep report` writes these by default).
    pub const TABLES: [Format; 4] = [Format::Markdown, Format::Latex, Format::Csv, Format::Json];

    pub(crate) fn exporter(self) -> &'static dyn Exporter {
        match self {
            Format::Markdown => &markdown::Markdown,
            Format::Latex => &latex::Latex,
            Format::Csv => &csv::Csv,
            Format::Json => &json::Json,
            Format::Html => &html::Html,
            Format::Junit => &junit::Junit,
        }
    }

    pub(crate) fn ext(self) -> &'static str {
        self.exporter().ext()
    }
}
