//! OpenAI chat-completions SSE parser on arbitrary bytes, fed in arbitrary pieces: typed
//! error or result, no panic (the driver is `sweep::fuzz_line_stream`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sweep::fuzz_line_stream::<sweep::backend::SseLines>(data));
