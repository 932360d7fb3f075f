//! The fuzz harnesses, shared by the fuzz targets (`fuzz_targets/`) and by
//! the crate's own test suite, which replays the corpus (`corpus/`) as
//! regression tests on the stable toolchain.
//!
//! Each harness panics if the crate misbehaves on its input.

// Each fuzz target uses one of the harnesses.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::time::Duration;

use bytes::BytesMut;
use converse::codec::{FrameError, Framing, Width};
use converse::{Config, Conversation, Error, Memory};

/// The framing an input byte selects: every width and byte order of the
/// length prefix, varint, lines and raw.
fn framing(byte: u8) -> Framing {
    match byte % 11 {
        n @ 0..=7 => Framing::Length {
            width: [Width::U8, Width::U16, Width::U32, Width::U64][usize::from(n / 2)],
            big_endian: n % 2 == 0,
        },
        8 => Framing::Varint,
        9 => Framing::Lines,
        _ => Framing::Raw,
    }
}

/// Decodes a whole stream at once: what came out, and the error it ended
/// with (none if it ended waiting for more bytes). The reference the
/// chunked decoding is checked against.
fn decode_whole<T, E>(
    stream: &[u8],
    mut decode: impl FnMut(&mut BytesMut) -> Result<Option<T>, E>,
) -> (Vec<T>, Option<E>) {
    let mut buf = BytesMut::from(stream);
    let mut items = Vec::new();
    loop {
        match decode(&mut buf) {
            Ok(Some(item)) => items.push(item),
            Ok(None) => return (items, None),
            Err(e) => return (items, Some(e)),
        }
    }
}

/// The pieces `stream` is fed in: their sizes taken from `sizes` in turn
/// (0 counts as 1), the whole stream at once if there are none.
fn pieces<'a>(stream: &'a [u8], sizes: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let (mut at, mut i) = (0, 0);
    std::iter::from_fn(move || {
        if at >= stream.len() {
            return None;
        }
        let size = sizes
            .get(i % sizes.len().max(1))
            .map_or(stream.len(), |&s| usize::from(s).max(1));
        i += 1;
        let piece = &stream[at..at + size.min(stream.len() - at)];
        at += piece.len();
        Some(piece)
    })
}

/// A decoder fed arbitrary bytes in arbitrary chunks.
///
/// Input: `[framing: u8][max: u16][n: u8][n chunk sizes: u8 each][stream...]`.
/// The messages decoded chunk by chunk must be exactly those decoded from
/// the whole stream at once (for `Raw`, which keeps no boundaries: the same
/// bytes), each within the limit; an error must be the same kind at the same
/// message, `TooLarge` only over the limit; the decoder never allocates;
/// every decoded message encodes again and decodes to itself.
pub fn decode_chunks(data: &[u8]) {
    let [f, m0, m1, n, ..] = *data else {
        return;
    };
    let rest = &data[4..];
    let framing = framing(f);
    let max = usize::from(u16::from_le_bytes([m0, m1]));
    let n = usize::from(n).min(rest.len());
    let (sizes, stream) = rest.split_at(n);
    let mut codec = framing.codec(max);
    let max = codec.max_message_len();

    // The reference: the whole stream at once.
    let (expected, expected_end) = decode_whole(stream, |buf| codec.decode(buf));

    // Chunk by chunk, with a fresh codec.
    let mut codec = framing.codec(max);
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    let mut end = None;
    'feed: for piece in pieces(stream, sizes) {
        buf.extend_from_slice(piece);
        let cap = buf.capacity();
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(m)) => {
                    assert!(m.len() <= max, "a message over the limit");
                    got.push(m);
                }
                Ok(None) => break,
                Err(e) => {
                    end = Some(e);
                    break 'feed;
                }
            }
        }
        assert!(buf.capacity() <= cap, "the decoder allocated");
    }
    if framing == Framing::Raw {
        assert_eq!(got.concat(), stream, "raw bytes altered");
        assert_eq!(expected.concat(), stream, "raw bytes altered");
        assert!(end.is_none() && expected_end.is_none());
        return;
    }
    assert_eq!(
        got, expected,
        "chunked decoding differs from decoding at once"
    );
    match (&end, &expected_end) {
        (Some(FrameError::TooLarge { len, max: m }), Some(FrameError::TooLarge { .. })) => {
            assert!(*len > *m && *m == max as u64);
        }
        (Some(FrameError::Invalid(_)), Some(FrameError::Invalid(_))) | (None, None) => {}
        (a, b) => panic!("chunked decoding ended with {a:?}, at once with {b:?}"),
    }
    if let Framing::Length { .. } = framing {
        assert_eq!(
            end, expected_end,
            "the same error, the same declared length"
        );
    }

    // What was decoded encodes again to something that decodes to itself.
    let mut wire = BytesMut::new();
    if framing == Framing::Lines {
        // A line that arrived as `...\r\r\n` cannot be sent back as it is.
        got.retain(|m| m.last() != Some(&b'\r'));
    }
    for m in &got {
        codec
            .encode(m, &mut wire)
            .unwrap_or_else(|e| panic!("a decoded message does not encode: {e:?}"));
    }
    let mut again = Vec::new();
    let mut codec = framing.codec(max);
    while let Some(m) = codec.decode(&mut wire).expect("re-encoded messages decode") {
        again.push(m);
    }
    assert!(wire.is_empty(), "bytes left after re-encoded messages");
    assert_eq!(again, got, "encode then decode is not the identity");
}

/// Arbitrary operations on a conversation over the in-memory transport,
/// checked against a model: two bounded FIFO queues.
pub fn conversation_ops(data: &[u8]) {
    const DEPTH: usize = 4;
    const MAX: usize = 64;
    let tiny = Some(Duration::from_nanos(1));
    let config = Config::new()
        .with_queue_depth(DEPTH)
        .with_max_message_len(MAX)
        .with_read_timeout(tiny)
        .with_write_timeout(tiny)
        // A close does not wait for the other side's end.
        .with_linger(Duration::ZERO);
    let (a, b) = Memory::pair_with(&config).expect("a valid config");
    let (a, b) = (Conversation::new(a), Conversation::new(b));
    let mut ends: [Option<Conversation<Memory>>; 2] = [Some(a), Some(b)];
    // What each side has sent and the other has not received yet.
    let mut queues: [VecDeque<Vec<u8>>; 2] = [VecDeque::new(), VecDeque::new()];
    let mut closed = [false; 2];

    let mut ops = data.iter().copied();
    while let Some(op) = ops.next() {
        let side = usize::from(op & 1);
        let other = 1 - side;
        let Some(me) = ends[side].as_mut() else {
            continue;
        };
        let kind = (op >> 1) % 5;
        match kind {
            // send a message of `len` bytes of `fill`
            0 | 1 => {
                let len = usize::from(ops.next().unwrap_or(0));
                let fill = ops.next().unwrap_or(b'x');
                let msg = vec![fill; len];
                let result = if kind == 1 {
                    me.feed(&msg)
                } else {
                    me.send(&msg)
                };
                match result {
                    Ok(()) => {
                        assert!(!closed[side] && !closed[other] && len <= MAX);
                        assert!(queues[side].len() < DEPTH);
                        queues[side].push_back(msg);
                    }
                    Err(Error::Closed) => assert!(closed[side]),
                    Err(Error::MessageTooLarge { len: l, max }) => {
                        assert!(!closed[side] && l == len as u64 && max == MAX as u64 && len > MAX)
                    }
                    Err(Error::BrokenPipe { .. }) => assert!(closed[other]),
                    Err(Error::Timeout) => assert_eq!(queues[side].len(), DEPTH),
                    Err(e) => panic!("send: unexpected {e:?}"),
                }
            }
            // receive bytes
            2 => match me.recv() {
                Ok(Some(m)) => assert_eq!(Some(m.to_vec()), queues[other].pop_front()),
                Ok(None) => assert!(closed[other] && queues[other].is_empty()),
                Err(Error::Timeout) => assert!(queues[other].is_empty() && !closed[other]),
                Err(Error::Closed) => assert!(closed[side]),
                Err(e) => panic!("recv: unexpected {e:?}"),
            },
            // receive text
            3 => match me.recv_text() {
                Ok(Some(t)) => assert_eq!(Some(t.into_bytes()), queues[other].pop_front()),
                Ok(None) => assert!(closed[other] && queues[other].is_empty()),
                Err(Error::InvalidText { message, .. }) => {
                    let m = queues[other].pop_front().expect("a message");
                    assert_eq!(message.to_vec(), m);
                    assert!(std::str::from_utf8(&m).is_err());
                }
                Err(Error::Timeout) => assert!(queues[other].is_empty() && !closed[other]),
                Err(Error::Closed) => assert!(closed[side]),
                Err(e) => panic!("recv_text: unexpected {e:?}"),
            },
            // close, or drop
            _ => {
                let conversation = ends[side].take().expect("open");
                if op & 0x80 == 0 {
                    conversation.close().expect("closing a memory conversation");
                    // Closed locally: no use of it afterwards (it is gone).
                } else {
                    drop(conversation);
                }
                closed[side] = true;
                // What the other side sent us is discarded with our end.
                queues[other].clear();
            }
        }
    }
}

/// A WebSocket decoder fed arbitrary bytes in arbitrary chunks.
///
/// Input: `[role: u8][max: u16][n: u8][n chunk sizes: u8 each][stream...]`
/// (role: even a server, which requires masked frames; odd a client). The
/// items decoded chunk by chunk must be those decoded from the whole
/// stream at once, every message within the limit, an error the same at
/// the same place; every message encodes again (as the peer would send it)
/// and decodes to itself.
pub fn ws_frames(data: &[u8]) {
    use converse::ws::{WsDecoder, WsEncoder, WsItem};
    let [role, m0, m1, n, ..] = *data else {
        return;
    };
    let rest = &data[4..];
    let server = role % 2 == 0;
    let max = usize::from(u16::from_le_bytes([m0, m1]));
    let n = usize::from(n).min(rest.len());
    let (sizes, stream) = rest.split_at(n);
    let decoder = || {
        if server {
            WsDecoder::server(max)
        } else {
            WsDecoder::client(max)
        }
    };

    let mut d = decoder();
    let (expected, expected_end) = decode_whole(stream, |buf| d.decode(buf));

    let mut d = decoder();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    let mut end = None;
    'feed: for piece in pieces(stream, sizes) {
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(item)) => {
                    if let WsItem::Message { data, .. } = &item {
                        assert!(data.len() <= max, "a message over the limit");
                    }
                    got.push(item);
                }
                Ok(None) => break,
                Err(e) => {
                    end = Some(e);
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(
        got, expected,
        "chunked decoding differs from decoding at once"
    );
    assert_eq!(end, expected_end, "a different end");
    if let Some(FrameError::TooLarge { len, max: m }) = end {
        assert!(len > m && m == max as u64);
    }

    // Encoded again as the peer would send it, decoded to itself.
    let mut encoder = if server {
        WsEncoder::client()
    } else {
        WsEncoder::server()
    };
    let mut wire = BytesMut::new();
    for item in &got {
        match item {
            WsItem::Message { data, text: false } => encoder.binary(data, &mut wire),
            WsItem::Message { data, text: true } => match std::str::from_utf8(data) {
                Ok(t) => encoder.text(t, &mut wire),
                Err(_) => encoder.binary(data, &mut wire),
            },
            WsItem::Ping(p) => encoder.pong(p, &mut wire),
            _ => {}
        }
    }
    let mut d = decoder();
    while let Some(item) = d.decode(&mut wire).expect("re-encoded frames decode") {
        match item {
            WsItem::Message { data, .. } => assert!(data.len() <= max),
            WsItem::Pong => {}
            other => panic!("re-encoded into {other:?}"),
        }
    }
    assert!(wire.is_empty(), "bytes left after re-encoded frames");
}

/// The NATS protocol from the server's side: `[m0, m1, n, sizes[n],
/// stream…]`, a payload limit of `m0 | m1 << 8` bytes. The operations
/// decoded chunk by chunk must be those decoded from the whole stream at
/// once, with the same error at the end; every payload within the limit;
/// what waits for the rest of an operation never more than a control line
/// and a payload at the limit; every `MSG` written again as a server would
/// decodes to itself.
pub fn nats_ops(data: &[u8]) {
    use converse::nats::{NatsDecoder, ServerOp, MAX_CONTROL_LINE};
    let [m0, m1, n, ..] = *data else {
        return;
    };
    let rest = &data[3..];
    let max = usize::from(u16::from_le_bytes([m0, m1]));
    let n = usize::from(n).min(rest.len());
    let (sizes, stream) = rest.split_at(n);

    let mut d = NatsDecoder::new(max);
    let (expected, expected_end) = decode_whole(stream, |buf| d.decode(buf));

    let mut d = NatsDecoder::new(max);
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    let mut end = None;
    'feed: for piece in pieces(stream, sizes) {
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(op)) => {
                    if let ServerOp::Msg { payload, .. } = &op {
                        assert!(payload.len() <= max, "a payload over the limit");
                    }
                    got.push(op);
                }
                Ok(None) => {
                    // Limits before allocation: waiting, never more than one
                    // whole operation's worth (plus the piece just fed).
                    assert!(
                        buf.len() <= MAX_CONTROL_LINE + 2 + max + 2 + piece.len(),
                        "{} bytes held for one operation",
                        buf.len()
                    );
                    break;
                }
                Err(e) => {
                    end = Some(e);
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(
        got, expected,
        "chunked decoding differs from decoding at once"
    );
    assert_eq!(end, expected_end, "a different end");
    if let Some(FrameError::TooLarge { len, max: m }) = end {
        assert!(len > m && m == max as u64);
    }

    // Each message written again as a server would, decoded to itself.
    let mut wire = BytesMut::new();
    let mut msgs = Vec::new();
    for op in &got {
        if let ServerOp::Msg {
            sid,
            subject,
            reply,
            payload,
        } = op
        {
            wire.extend_from_slice(b"MSG ");
            wire.extend_from_slice(subject);
            wire.extend_from_slice(format!(" {sid} ").as_bytes());
            if let Some(r) = reply {
                wire.extend_from_slice(r);
                wire.extend_from_slice(b" ");
            }
            wire.extend_from_slice(format!("{}\r\n", payload.len()).as_bytes());
            wire.extend_from_slice(payload);
            wire.extend_from_slice(b"\r\n");
            msgs.push(op.clone());
        }
    }
    let mut d = NatsDecoder::new(max);
    let mut again = Vec::new();
    while let Some(op) = d.decode(&mut wire).expect("re-encoded MSGs decode") {
        again.push(op);
    }
    assert!(wire.is_empty(), "bytes left after re-encoded MSGs");
    assert_eq!(again, msgs);
}
