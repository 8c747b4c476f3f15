//! The JSONL records reader that resume relies on, on a real file of arbitrary bytes:
//! it must return records, a torn tail or a typed error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    let path =
        std::env::temp_dir().join(format!("sweep-fuzz-records-{}.jsonl", std::process::id()));
    {
        let mut f = std::fs::File::create(&path).expect("temp file");
        f.write_all(data).expect("write temp file");
    }
    if let Ok(out) = sweep::store::read_records(&path) {
        if let Some((line, offset)) = out.torn_tail {
            assert!(line >= 1);
            assert!(offset <= data.len() as u64);
        }
    }
});
