//! converse's benches (`benches/`) and its tests against peer crates
//! (`tests/`): a package of its own so that the crate's examples build
//! without tokio, criterion and the other peers. Nothing here is published.

/// The scale bench's SVG plots, here so that `cargo test` runs their unit
/// tests (a bench without libtest's harness runs none).
#[cfg(test)]
#[allow(dead_code)]
#[path = "benches/plot/mod.rs"]
mod plot;
