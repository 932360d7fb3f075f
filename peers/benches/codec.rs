//! How fast is the codec? Decoding a buffer that holds many frames, in
//! memory: converse's `LengthDelimited`, tokio-util's `LengthDelimitedCodec`
//! on the same bytes, and a bare loop over a byte slice (`raw`, the floor).

mod common;

use bytes::BytesMut;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use tokio_util::codec::Decoder;

/// About 4 MiB of frames of `size` bytes each.
fn wire(size: usize) -> (Vec<u8>, u64) {
    let n = (4 * 1024 * 1024 / (size + 4)).max(4);
    let payload = vec![0xa5u8; size];
    let mut wire = Vec::with_capacity(n * (size + 4));
    for _ in 0..n {
        wire.extend(common::frame(&payload));
    }
    (wire, n as u64)
}

fn codec_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec_decode");
    for size in [64usize, 1024, 65536, 1048576] {
        let (wire, n) = wire(size);
        group.throughput(common::throughput(n, size));

        let codec = converse::codec::LengthDelimited::new();
        group.bench_with_input(BenchmarkId::new("converse", size), &wire, |b, wire| {
            b.iter_batched_ref(
                || BytesMut::from(&wire[..]),
                |buf| {
                    let mut count = 0;
                    while let Some(msg) = codec.decode(buf).unwrap() {
                        black_box(&msg);
                        count += 1;
                    }
                    assert_eq!(count, n);
                },
                BatchSize::LargeInput,
            )
        });

        // Each frame lent in place (what `recv_ref` does): no `Bytes`.
        group.bench_with_input(BenchmarkId::new("converse-lent", size), &wire, |b, wire| {
            let mut codec = converse::codec::Framing::default().codec(usize::MAX);
            b.iter_batched_ref(
                || BytesMut::from(&wire[..]),
                |buf| {
                    let bytes: &[u8] = buf;
                    let (mut at, mut count) = (0, 0);
                    while let Ok(converse::codec::Parse::Frame {
                        start,
                        end,
                        consumed,
                    }) = codec.parse(&bytes[at..])
                    {
                        black_box(&bytes[at + start..at + end]);
                        at += consumed;
                        count += 1;
                    }
                    assert_eq!(count, n);
                },
                BatchSize::LargeInput,
            )
        });

        group.bench_with_input(BenchmarkId::new("tokio-util", size), &wire, |b, wire| {
            let mut codec = common::tokio_codec();
            b.iter_batched_ref(
                || BytesMut::from(&wire[..]),
                |buf| {
                    let mut count = 0;
                    while let Some(msg) = codec.decode(buf).unwrap() {
                        black_box(&msg);
                        count += 1;
                    }
                    assert_eq!(count, n);
                },
                BatchSize::LargeInput,
            )
        });

        group.bench_with_input(BenchmarkId::new("raw", size), &wire, |b, wire| {
            b.iter_batched_ref(
                || BytesMut::from(&wire[..]),
                |buf| {
                    let bytes: &[u8] = buf;
                    let (mut at, mut count) = (0, 0);
                    while at + 4 <= bytes.len() {
                        let len =
                            u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
                        black_box(&bytes[at + 4..at + 4 + len]);
                        at += 4 + len;
                        count += 1;
                    }
                    assert_eq!(count, n);
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = codec_decode
}
criterion_main!(benches);
