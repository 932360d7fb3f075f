//! WebSocket frames (RFC 6455 section 5), pure: headers read and checked
//! before anything is allocated, whole frames cut out of a byte stream,
//! frames encoded, payloads masked, and the masking keys of a client.
//!
//! ```text
//!  0                   1                   2                   3
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| payload len |    extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |            (16/64)            |
//! |N|V|V|V|       |S|             |  (if payload len == 126/127)  |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |  masking key (0 or 4 bytes)   |          payload ...          |
//! +-------------------------------+-------------------------------+
//! ```
//!
//! Every rule a header alone can break is checked from the header:
//! reserved bits (no extension is ever agreed), known opcodes, control
//! frames short and unfragmented, the masking rule of each direction, and
//! the declared length against the limit.

use bytes::{BufMut, BytesMut};

use crate::codec::Parse;

/// The longest frame header: 2 bytes, 8 of length, 4 of mask.
pub(crate) const MAX_HEADER: usize = 14;

/// The most a control frame may carry.
pub(crate) const MAX_CONTROL: usize = 125;

/// A frame's opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0 => OpCode::Continuation,
            1 => OpCode::Text,
            2 => OpCode::Binary,
            8 => OpCode::Close,
            9 => OpCode::Ping,
            10 => OpCode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0,
            OpCode::Text => 1,
            OpCode::Binary => 2,
            OpCode::Close => 8,
            OpCode::Ping => 9,
            OpCode::Pong => 10,
        }
    }

    fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) fin: bool,
    pub(crate) opcode: OpCode,
    pub(crate) mask: Option<[u8; 4]>,
    /// The header's own length.
    pub(crate) len: usize,
    /// The payload's length, as declared.
    pub(crate) payload: u64,
}

/// A frame that breaks the protocol: the connection cannot go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameFault {
    /// What rule it broke.
    Invalid(&'static str),
    /// A payload (or a message of fragments) over the limit.
    TooLarge { len: u64, max: u64 },
}

/// Reads the header at the front of `buf`: `Ok(None)` if more bytes are
/// needed (at most [`MAX_HEADER`] in all). Checks every rule that a header
/// alone can break; `masked` is what this direction requires.
pub(crate) fn parse_header(buf: &[u8], masked: bool) -> Result<Option<Header>, FrameFault> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(FrameFault::Invalid(
            "reserved bits set in a WebSocket frame (no extension was agreed)",
        ));
    }
    let fin = b0 & 0x80 != 0;
    let opcode =
        OpCode::from_bits(b0 & 0x0f).ok_or(FrameFault::Invalid("unknown WebSocket opcode"))?;
    let is_masked = b1 & 0x80 != 0;
    if is_masked != masked {
        return Err(FrameFault::Invalid(if masked {
            "an unmasked frame from a WebSocket client (clients must mask)"
        } else {
            "a masked frame from a WebSocket server (servers must not mask)"
        }));
    }
    let (payload, mut at) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut be = [0u8; 8];
            be.copy_from_slice(&buf[2..10]);
            let n = u64::from_be_bytes(be);
            if n >> 63 != 0 {
                return Err(FrameFault::Invalid(
                    "a WebSocket frame length with its top bit set",
                ));
            }
            (n, 10)
        }
        n => (u64::from(n), 2),
    };
    if opcode.is_control() {
        if !fin {
            return Err(FrameFault::Invalid("a fragmented WebSocket control frame"));
        }
        if payload > MAX_CONTROL as u64 {
            return Err(FrameFault::Invalid(
                "a WebSocket control frame longer than 125 bytes",
            ));
        }
    }
    let mask = if is_masked {
        if buf.len() < at + 4 {
            return Ok(None);
        }
        let key = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        at += 4;
        Some(key)
    } else {
        None
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask,
        len: at,
        payload,
    }))
}

/// XORs `data` with the mask `key`, starting `offset` bytes into the
/// masked stream.
pub(crate) fn apply_mask(data: &mut [u8], key: [u8; 4], offset: usize) {
    let mut k = [0u8; 4];
    for (i, b) in k.iter_mut().enumerate() {
        *b = key[(offset + i) % 4];
    }
    let word = u32::from_ne_bytes(k);
    let wide = u64::from(word) | (u64::from(word) << 32);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut v = [0u8; 8];
        v.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(v) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i % 4];
    }
}

/// Appends one frame to `dst`: `payload` under `opcode`, final, masked with
/// `mask` (clients) or not (servers).
pub(crate) fn encode(opcode: OpCode, payload: &[u8], mask: Option<[u8; 4]>, dst: &mut BytesMut) {
    let len = payload.len();
    dst.reserve(MAX_HEADER + len);
    dst.put_u8(0x80 | opcode.bits());
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        dst.put_u8(mask_bit | len as u8);
    } else if len <= u16::MAX as usize {
        dst.put_u8(mask_bit | 126);
        dst.put_u16(len as u16);
    } else {
        dst.put_u8(mask_bit | 127);
        dst.put_u64(len as u64);
    }
    match mask {
        None => dst.put_slice(payload),
        Some(key) => {
            dst.put_slice(&key);
            let start = dst.len();
            dst.put_slice(payload);
            apply_mask(&mut dst[start..], key, 0);
        }
    }
}

/// The length of the frame that carries `len` bytes.
pub(crate) fn frame_len(len: usize, masked: bool) -> usize {
    let header = if len < 126 {
        2
    } else if len <= u16::MAX as usize {
        4
    } else {
        10
    };
    header + if masked { 4 } else { 0 } + len
}

/// The status code of a normal close.
pub(crate) const CLOSE_NORMAL: u16 = 1000;
/// The status code for a protocol error.
pub(crate) const CLOSE_PROTOCOL: u16 = 1002;
/// The status code for a message too big to process.
pub(crate) const CLOSE_TOO_BIG: u16 = 1009;

/// The status code for a text message that is not UTF-8.
pub(crate) const CLOSE_NOT_UTF8: u16 = 1007;

/// Where the whole frame at the front of `buf` ends, its header checked
/// (`masked`: what this direction requires) and a data frame's declared
/// length against `max`, before anything is kept of its payload.
pub(crate) fn cut_frame(buf: &[u8], masked: bool, max: usize) -> Result<Parse, FrameFault> {
    let Some(header) = parse_header(buf, masked)? else {
        return Ok(Parse::Incomplete { needed: 1 });
    };
    if !header.opcode.is_control() && header.payload > max as u64 {
        return Err(FrameFault::TooLarge {
            len: header.payload,
            max: max as u64,
        });
    }
    // Within the limit (or a control frame of at most 125 bytes): fits a usize.
    let total = header.len + header.payload as usize;
    if buf.len() < total {
        return Ok(Parse::Incomplete {
            needed: total - buf.len(),
        });
    }
    Ok(Parse::Frame {
        start: 0,
        end: total,
        consumed: total,
    })
}

/// A masking key for a client's next frame, from the operating system's
/// random source (RFC 6455 section 5.3: keys an observer cannot predict).
/// Drawn in batches, from a pool of each thread's own.
pub(crate) fn mask_key() -> [u8; 4] {
    use std::cell::RefCell;
    const POOL: usize = 1024;
    thread_local! {
        static KEYS: RefCell<([u8; POOL], usize)> = const { RefCell::new(([0; POOL], POOL)) };
    }
    KEYS.with(|keys| {
        let (pool, at) = &mut *keys.borrow_mut();
        if *at + 4 > POOL {
            fill_random(pool);
            *at = 0;
        }
        let key = [pool[*at], pool[*at + 1], pool[*at + 2], pool[*at + 3]];
        *at += 4;
        key
    })
}

/// Fills `buf` from the operating system's random source.
pub(crate) fn fill_random(buf: &mut [u8]) {
    if getrandom::fill(buf).is_err() {
        // No random source at all (it does not happen on the systems the
        // crate runs on): the clock's noise, rather than a panic.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (t >> ((i % 16) * 8)) as u8 ^ i as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(opcode: OpCode, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> BytesMut {
        let mut b = BytesMut::new();
        encode(opcode, payload, mask, &mut b);
        if !fin {
            b[0] &= 0x7f;
        }
        b
    }

    #[test]
    fn headers_of_every_length_form_round_trip_masked_or_not() {
        for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 100_000] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let f = frame(OpCode::Binary, true, &payload, mask);
                assert_eq!(f.len(), frame_len(len, mask.is_some()));
                let h = parse_header(&f, mask.is_some()).unwrap().unwrap();
                assert_eq!(
                    (h.fin, h.opcode, h.mask, h.payload),
                    (true, OpCode::Binary, mask, len as u64)
                );
                // Every cut of the header asks for more.
                for cut in 0..h.len {
                    assert_eq!(
                        parse_header(&f[..cut], mask.is_some()),
                        Ok(None),
                        "{len} {cut}"
                    );
                }
                assert_eq!(
                    cut_frame(&f, mask.is_some(), 200_000),
                    Ok(Parse::Frame {
                        start: 0,
                        end: f.len(),
                        consumed: f.len()
                    })
                );
                let mut body = f[h.len..].to_vec();
                if let Some(key) = mask {
                    apply_mask(&mut body, key, 0);
                }
                assert_eq!(body, payload);
            }
        }
    }

    #[test]
    fn a_data_frame_over_the_limit_is_refused_from_its_header() {
        let f = frame(OpCode::Binary, true, &[0; 11], None);
        assert_eq!(
            cut_frame(&f[..2], false, 10),
            Err(FrameFault::TooLarge { len: 11, max: 10 })
        );
        // A header declaring 2^62 bytes, before any payload.
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&(1u64 << 62).to_be_bytes());
        assert_eq!(
            cut_frame(&huge, false, 1 << 20),
            Err(FrameFault::TooLarge {
                len: 1 << 62,
                max: 1 << 20
            })
        );
        assert_eq!(
            cut_frame(&f[..5], false, 100),
            Ok(Parse::Incomplete { needed: 8 })
        );
    }

    #[test]
    fn masking_is_its_own_inverse_at_any_offset() {
        let data: Vec<u8> = (0..37u8).collect();
        for offset in 0..4 {
            let mut d = data.clone();
            apply_mask(&mut d, [9, 8, 7, 6], offset);
            assert_ne!(d, data);
            apply_mask(&mut d, [9, 8, 7, 6], offset);
            assert_eq!(d, data);
        }
        // Byte by byte, as the RFC defines it.
        let mut d = data.clone();
        apply_mask(&mut d, [9, 8, 7, 6], 1);
        for (i, b) in d.iter().enumerate() {
            assert_eq!(*b, data[i] ^ [9, 8, 7, 6][(i + 1) % 4]);
        }
    }

    #[test]
    fn every_header_rule_is_checked() {
        let bad: &[(&[u8], bool, &str)] = &[
            (&[0xc2, 0x80, 0, 0, 0, 0], true, "reserved"),
            (&[0x83, 0x80, 0, 0, 0, 0], true, "opcode"),
            (&[0x82, 0x00], true, "unmasked"),
            (&[0x82, 0x80, 0, 0, 0, 0], false, "masked"),
            (&[0x09, 0x80, 0, 0, 0, 0], true, "fragmented"),
            (&[0x89, 0xfe, 0, 126, 0, 0, 0, 0], true, "longer than 125"),
            (&[0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0], false, "top bit"),
        ];
        for (bytes, masked, why) in bad {
            match parse_header(bytes, *masked) {
                Err(FrameFault::Invalid(text)) => assert!(text.contains(why), "{text} / {why}"),
                other => panic!("{why}: {other:?}"),
            }
        }
    }

    #[test]
    fn mask_keys_come_from_the_system_and_do_not_repeat() {
        let keys: std::collections::HashSet<[u8; 4]> = (0..10_000).map(|_| mask_key()).collect();
        assert!(keys.len() > 9_980, "{} distinct of 10,000", keys.len());
        // Another thread draws from a pool of its own: not the same keys.
        let here: Vec<[u8; 4]> = (0..64).map(|_| mask_key()).collect();
        let there = std::thread::spawn(|| (0..64).map(|_| mask_key()).collect::<Vec<_>>())
            .join()
            .unwrap();
        assert_ne!(here, there);
    }
}
