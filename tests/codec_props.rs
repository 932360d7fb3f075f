//! Property tests of the length-prefix codec: any messages, cut anywhere,
//! decode to exactly what was encoded.

use bytes::BytesMut;
use converse::codec::{FrameError, LengthDelimited};
use proptest::prelude::*;

const MAX: usize = 4096;

fn messages() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let one = prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => Just(Vec::new()),
        1 => Just(vec![0xab; MAX]),
        1 => proptest::collection::vec(any::<u8>(), 0..=MAX),
    ];
    proptest::collection::vec(one, 0..24)
}

/// Cut points: chunk sizes, with 1-byte chunks common.
fn chunks() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(
        prop_oneof![3 => Just(1usize), 2 => 1usize..16, 1 => 1usize..10_000],
        1..64,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_messages_cut_anywhere_decode_to_the_same_sequence(msgs in messages(), sizes in chunks()) {
        let codec = LengthDelimited::new().with_max_message_len(MAX);
        let mut wire = BytesMut::new();
        for m in &msgs {
            codec.encode(m, &mut wire).unwrap();
        }
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut pos = 0;
        let mut i = 0;
        while pos < wire.len() {
            let n = sizes[i % sizes.len()].min(wire.len() - pos);
            i += 1;
            buf.extend_from_slice(&wire[pos..pos + n]);
            pos += n;
            while let Some(m) = codec.decode(&mut buf).unwrap() {
                out.push(m.to_vec());
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(out, msgs);
    }

    #[test]
    fn any_bytes_either_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..512), max in 0usize..300) {
        let codec = LengthDelimited::new().with_max_message_len(max);
        let mut buf = BytesMut::from(&bytes[..]);
        let cap = buf.capacity();
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(m)) => prop_assert!(m.len() <= max),
                Ok(None) => break,
                Err(FrameError::TooLarge { len, max: m }) => {
                    prop_assert!(len > m);
                    break;
                }
                Err(e) => prop_assert!(false, "unexpected {e:?}"),
            }
        }
        prop_assert!(buf.capacity() <= cap, "the decoder allocated");
    }

    #[test]
    fn headers_over_the_limit_fail_before_any_payload(len in (MAX as u32 + 1)..=u32::MAX) {
        let codec = LengthDelimited::new().with_max_message_len(MAX);
        let mut buf = BytesMut::from(&len.to_be_bytes()[..]);
        prop_assert_eq!(codec.decode(&mut buf), Err(FrameError::TooLarge { len: len.into(), max: MAX as u64 }));
        prop_assert_eq!(buf.capacity(), 4);
    }
}

/// Feeds `wire` to `codec` in chunks of the given sizes; returns what it
/// decoded.
fn decode_in_chunks(
    codec: &mut converse::codec::Codec,
    wire: &[u8],
    sizes: &[usize],
) -> Vec<Vec<u8>> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let (mut pos, mut i) = (0, 0);
    while pos < wire.len() {
        let n = sizes[i % sizes.len()].min(wire.len() - pos);
        i += 1;
        buf.extend_from_slice(&wire[pos..pos + n]);
        pos += n;
        while let Some(m) = codec.decode(&mut buf).unwrap() {
            out.push(m.to_vec());
        }
    }
    assert!(buf.is_empty(), "bytes left over");
    out
}

fn framed_kinds() -> impl Strategy<Value = Framing> {
    prop_oneof![
        Just(Framing::default()),
        Just(Framing::Length {
            width: Width::U8,
            big_endian: true
        }),
        Just(Framing::Length {
            width: Width::U16,
            big_endian: false
        }),
        Just(Framing::Length {
            width: Width::U32,
            big_endian: false
        }),
        Just(Framing::Length {
            width: Width::U64,
            big_endian: true
        }),
        Just(Framing::Varint),
    ]
}

use converse::codec::{Framing, Width};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_length_framing_survives_any_split(framing in framed_kinds(), msgs in messages(), sizes in chunks()) {
        let mut codec = framing.codec(MAX);
        let max = codec.max_message_len();
        let msgs: Vec<Vec<u8>> = msgs.into_iter().map(|mut m| { m.truncate(max); m }).collect();
        let mut wire = BytesMut::new();
        for m in &msgs {
            codec.encode(m, &mut wire).unwrap();
        }
        prop_assert_eq!(decode_in_chunks(&mut codec, &wire, &sizes), msgs);
    }

    #[test]
    fn lines_survive_any_split(
        msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..100), 0..24),
        sizes in chunks(),
    ) {
        // A trailing \r would be read as part of a \r\n ending.
        let msgs: Vec<Vec<u8>> = msgs.into_iter().filter(|m| m.last() != Some(&b'\r')).collect();
        let mut codec = Framing::Lines.codec(MAX);
        let mut wire = BytesMut::new();
        for m in &msgs {
            codec.encode(m, &mut wire).unwrap();
        }
        prop_assert_eq!(decode_in_chunks(&mut codec, &wire, &sizes), msgs);
    }

    #[test]
    fn raw_keeps_the_bytes_not_the_boundaries(msgs in messages(), sizes in chunks()) {
        let mut codec = Framing::Raw.codec(MAX);
        let mut wire = BytesMut::new();
        for m in &msgs {
            // An empty message would put nothing on the wire: refused.
            match codec.encode(m, &mut wire) {
                Ok(()) => prop_assert!(!m.is_empty()),
                Err(e) => prop_assert!(m.is_empty() && matches!(e, FrameError::Invalid(_)), "{e:?}"),
            }
        }
        let got = decode_in_chunks(&mut codec, &wire, &sizes);
        prop_assert!(got.iter().all(|m| !m.is_empty() && m.len() <= MAX));
        prop_assert_eq!(got.concat(), msgs.concat());
    }

    #[test]
    fn any_bytes_in_any_framing_decode_or_fail_cleanly(
        framing in prop_oneof![framed_kinds(), Just(Framing::Lines), Just(Framing::Raw)],
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        max in 0usize..300,
    ) {
        let mut codec = framing.codec(max);
        // Never more than asked for; a raw receive takes at least a byte.
        let limit = codec.max_message_len();
        prop_assert!(limit <= max || (framing == Framing::Raw && limit == 1));
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(m)) = codec.decode(&mut buf) {
            prop_assert!(m.len() <= limit);
        }
    }
}
