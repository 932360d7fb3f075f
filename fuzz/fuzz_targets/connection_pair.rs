#![no_main]

// A pair of connections fed random peer bytes, user calls and clock steps
// (the harness is the crate's own: `src/connection/fuzz.rs`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| converse::fuzz::connection_pair(data));
