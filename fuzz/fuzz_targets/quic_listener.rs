#![no_main]

// A QUIC listener fed real clients' datagrams, corrupted, dropped,
// duplicated and reordered, and datagrams made up, with a jumping clock
// (the harness is the crate's own: `src/connection/quic_fuzz.rs`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| converse::fuzz::quic_listener(data));
