//! converse's benches (`benches/`) and its tests against peer crates
//! (`tests/`): a package of its own so that the crate's examples build
//! without tokio, criterion and the other peers. Nothing here is published.
