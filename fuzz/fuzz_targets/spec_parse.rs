//! Experiment-file parser and validator on arbitrary UTF-8: it must answer with a spec or
//! diagnostics, never panic (spans, line/column maths and char boundaries are the risk).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|text: &str| {
    if let Err(e) = sweep::spec::Spec::parse(Path::new("fuzz.toml"), text) {
        // Rendering the diagnostics walks the source map too.
        let _ = e.to_string();
    }
});
