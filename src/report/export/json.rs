//! JSON: the data itself (tables with their footers; the whole gate comparison).

use super::Exporter;
use crate::gate::Comparison;
use crate::report::table::Table;

/// The JSON exporter: tables and gate comparisons, pretty-printed.
pub struct Json;

impl Exporter for Json {
    fn ext(&self) -> &'static str {
        "json"
    }

    fn tables(&self, tables: &[Table]) -> Option<String> {
        serde_json::to_string_pretty(tables).ok().map(|s| s + "\n")
    }

    fn gate(&self, c: &Comparison) -> Option<String> {
        serde_json::to_string_pretty(c).ok()
    }
}
