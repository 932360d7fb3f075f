//! Replays the fuzzers' corpus (`fuzz/corpus/`) through the same harnesses
//! the fuzzers run (`fuzz/harness.rs`), on the stable toolchain: every
//! input the fuzzers found interesting stays a regression test.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

fn replay(target: &str, harness: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if let Err(panic) = std::panic::catch_unwind(|| harness(&data)) {
            eprintln!("failing input: {}", path.display());
            std::panic::resume_unwind(panic);
        }
        count += 1;
    }
    assert!(count > 0, "no corpus in {}", dir.display());
    println!("{target}: {count} inputs replayed");
}

#[test]
fn decode_chunks_corpus() {
    replay("decode_chunks", harness::decode_chunks);
}

#[test]
fn conversation_ops_corpus() {
    replay("conversation_ops", harness::conversation_ops);
}

#[cfg(feature = "ws")]
#[test]
fn ws_frames_corpus() {
    replay("ws_frames", harness::ws_frames);
}

#[cfg(feature = "nats")]
#[test]
fn nats_ops_corpus() {
    replay("nats_ops", harness::nats_ops);
}
