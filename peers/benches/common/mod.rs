//! What the benches share: criterion settings that keep `cargo bench` under
//! ten minutes, the throughput of a group, and a tokio runtime.
#![allow(dead_code)]

use std::time::Duration;

use criterion::{Criterion, Throughput};

/// Criterion, with short warm-up and measurement (override on the command
/// line as usual; `-- --quick` is quicker still).
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .configure_from_args()
}

/// Messages per second and bytes per second, for `n` messages of `size` bytes.
pub fn throughput(n: u64, size: usize) -> Throughput {
    Throughput::ElementsAndBytes {
        elements: n,
        bytes: n * size as u64,
    }
}

/// A single-threaded tokio runtime, as a blocking program would use.
pub fn tokio_runtime() -> tokio::runtime::Runtime {
    // I/O and timers, as `#[tokio::main]` gives (converse::tokio needs
    // both; the peers run on the same runtime).
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A multi-thread tokio runtime (two workers, as many as the cores here):
/// the bench's thread polls its future, the workers drive the I/O.
pub fn tokio_runtime_mt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Makes a runtime.
pub type MakeRuntime = fn() -> tokio::runtime::Runtime;

/// The runtimes the async benches run on, and the suffix of their IDs.
pub const TOKIO_RUNTIMES: [(MakeRuntime, &str); 2] =
    [(tokio_runtime, ""), (tokio_runtime_mt, "-mt")];

/// The frame of one message in the default wire format: 4-byte big-endian
/// length, then the payload.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

/// The largest message every implementation is configured for.
pub const MAX: usize = 8 * 1024 * 1024;

pub fn tokio_codec() -> tokio_util::codec::LengthDelimitedCodec {
    tokio_util::codec::LengthDelimitedCodec::builder()
        .max_frame_length(MAX)
        .new_codec()
}
