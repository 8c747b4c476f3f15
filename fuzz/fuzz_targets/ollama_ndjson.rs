//! Ollama NDJSON stream parser on arbitrary bytes, fed in arbitrary pieces (a network
//! chunk may split a line or a UTF-8 sequence anywhere): typed error or result, no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sweep::backend::{ClientTimer, OllamaStream};

fuzz_target!(|data: &[u8]| {
    // First byte chooses the chunk size, the rest is the body.
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let mut s = OllamaStream::new(ClientTimer::start());
    for piece in body.chunks(step) {
        match s.feed(piece) {
            Ok(true) => {
                let _ = s.finish();
                return;
            }
            Ok(false) => {}
            Err(_) => return,
        }
    }
    if s.end_of_body().is_ok() {
        let g = s
            .finish()
            .expect("end_of_body succeeded, so finish must too");
        assert!(g.timing.e2e_ms >= 0.0);
    }
});
