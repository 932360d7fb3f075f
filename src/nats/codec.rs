//! The NATS client protocol as a pure codec, for a program that does its
//! own I/O: the same cutting and parsing converse's `nats://`
//! conversations run. Bytes from the server in, operations out; the
//! client's operations encoded. A control line is at most [`MAX_CONTROL_LINE`]
//! bytes and a payload at most the limit given: a `MSG` declaring more is
//! refused from its control line, before a byte of its payload is kept.

use bytes::BytesMut;

use super::ops::{self, cut_op, Credentials, Cut, NatsFault};
use super::ServerOp;
use crate::codec::FrameError;

/// Decodes what a NATS server sends.
///
/// ```
/// use bytes::BytesMut;
/// use converse::nats::{NatsDecoder, ServerOp};
///
/// let mut wire = BytesMut::from(&b"PING\r\nMSG chat 1 5\r\nhello\r\n"[..]);
/// let mut decoder = NatsDecoder::new(1024);
/// assert_eq!(decoder.decode(&mut wire)?, Some(ServerOp::Ping));
/// match decoder.decode(&mut wire)? {
///     Some(ServerOp::Msg { payload, .. }) => assert_eq!(payload, "hello"),
///     other => panic!("{other:?}"),
/// }
/// assert_eq!(decoder.decode(&mut wire)?, None);
/// # Ok::<(), converse::codec::FrameError>(())
/// ```
#[derive(Debug)]
pub struct NatsDecoder {
    max: usize,
}

impl NatsDecoder {
    /// A decoder of payloads of at most `max_payload` bytes (the server's
    /// `max_payload`, or less).
    pub fn new(max_payload: usize) -> NatsDecoder {
        NatsDecoder { max: max_payload }
    }

    /// The next operation at the front of `buf` (what it used is taken
    /// out); `Ok(None)`: more bytes are needed. An error means the
    /// connection must be given up: [`FrameError::TooLarge`] for a payload
    /// over the limit, [`FrameError::Invalid`] for anything that is not
    /// the protocol (a control line over 4096 bytes among them).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<ServerOp>, FrameError> {
        match cut_op(buf, self.max).map_err(fault)? {
            Cut::Need(_) => Ok(None),
            Cut::Whole(n) => {
                let op = buf.split_to(n).freeze();
                ops::parse_op(op).map(Some).map_err(fault)
            }
        }
    }
}

/// The codec's error for what is wrong with the server's bytes.
pub(crate) fn fault(fault: NatsFault) -> FrameError {
    match fault {
        NatsFault::TooLarge { len, max } => FrameError::TooLarge { len, max },
        NatsFault::LineTooLong => FrameError::Invalid("a NATS control line longer than 4096 bytes"),
        NatsFault::Malformed(why) => FrameError::Invalid(why),
    }
}

/// Appends `PUB SUBJECT #BYTES\r\nPAYLOAD\r\n` to `dst`.
///
/// # Errors
///
/// [`FrameError::Invalid`] for a subject that cannot be published to
/// (empty, spaces or control characters, wildcards, empty tokens).
pub fn encode_pub(subject: &str, payload: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
    if !ops::valid_subject(subject, false) {
        return Err(FrameError::Invalid("not a subject to publish to"));
    }
    ops::encode_pub(subject, payload, dst);
    Ok(())
}

/// Appends `SUB SUBJECT [QUEUE] SID\r\n` to `dst`.
///
/// # Errors
///
/// [`FrameError::Invalid`] for a subject or queue group that is not one.
pub fn encode_sub(
    subject: &str,
    queue: Option<&str>,
    sid: u64,
    dst: &mut BytesMut,
) -> Result<(), FrameError> {
    if !ops::valid_subject(subject, true)
        || queue.is_some_and(|q| !ops::valid_subject(q, false) || q.contains('.'))
    {
        return Err(FrameError::Invalid("not a subject to subscribe to"));
    }
    dst.extend_from_slice(&ops::encode_sub(subject, queue, sid));
    Ok(())
}

/// Appends a `CONNECT` line (no verbose `+OK`s, no echo of our own
/// publications, protocol 1), with a user and password or a token if
/// given (escaped as JSON).
pub fn encode_connect(
    user: Option<(&str, &str)>,
    token: Option<&str>,
    tls: bool,
    name: &str,
    dst: &mut BytesMut,
) {
    let creds = Credentials {
        user: user.map(|(u, p)| (u.to_owned(), p.to_owned())),
        token: token.map(str::to_owned),
    };
    dst.extend_from_slice(&ops::encode_connect(&creds, tls, name));
}
