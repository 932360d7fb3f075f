//! The NATS client protocol's operations, pure: where a server operation
//! ends in a byte stream (limits checked before anything is buffered),
//! what it says, and the bytes of the client's operations.
//!
//! The server's operations are `INFO {json}`, `MSG <subject> <sid>
//! [reply-to] <#bytes>` followed by the payload and `\r\n`, `PING`, `PONG`,
//! `+OK` and `-ERR '<message>'`; names are case-insensitive and arguments
//! are separated by spaces or tabs. A control line is at most
//! [`MAX_CONTROL_LINE`] bytes (the server's own default), and a payload at
//! most the limit given: a `MSG` declaring more is refused from its
//! control line, before a byte of the payload is kept.

use bytes::{BufMut, Bytes, BytesMut};

/// The longest control line accepted, `\r\n` excluded (the NATS server's
/// default `max_control_line`).
pub const MAX_CONTROL_LINE: usize = 4096;

/// What is wrong with the bytes a server sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NatsFault {
    /// Not the NATS protocol.
    Malformed(&'static str),
    /// A control line longer than [`MAX_CONTROL_LINE`].
    LineTooLong,
    /// A `MSG` declaring a payload over the limit.
    TooLarge {
        /// The declared length.
        len: u64,
        /// The limit.
        max: u64,
    },
}

impl NatsFault {
    /// A one-line description.
    pub fn describe(&self) -> String {
        match self {
            NatsFault::Malformed(why) => format!("malformed NATS protocol: {why}"),
            NatsFault::LineTooLong => {
                format!("a NATS control line longer than {MAX_CONTROL_LINE} bytes")
            }
            NatsFault::TooLarge { len, max } => {
                format!("a NATS message of {len} bytes, over the limit of {max}")
            }
        }
    }
}

/// The control line at the front of `buf` (without its line end), and
/// where what follows it starts; `Ok(None)` while it is incomplete.
fn control_line(buf: &[u8]) -> Result<Option<(&[u8], usize)>, NatsFault> {
    // Only the first MAX_CONTROL_LINE + 2 bytes can hold its end.
    let window = &buf[..buf.len().min(MAX_CONTROL_LINE + 2)];
    match window.iter().position(|&b| b == b'\n') {
        Some(nl) => {
            let end = if nl > 0 && buf[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            if end > MAX_CONTROL_LINE {
                return Err(NatsFault::LineTooLong);
            }
            Ok(Some((&buf[..end], nl + 1)))
        }
        None if buf.len() > MAX_CONTROL_LINE + 1 => Err(NatsFault::LineTooLong),
        None => Ok(None),
    }
}

/// The operation's name, upper-cased, and its arguments.
fn split_op(line: &[u8]) -> (Vec<u8>, impl Iterator<Item = &[u8]>) {
    let mut words = line
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty());
    let name = words
        .next()
        .map(|w| w.to_ascii_uppercase())
        .unwrap_or_default();
    (name, words)
}

/// A decimal number of at most 19 digits (fits a `u64`).
fn number(word: &[u8]) -> Result<u64, NatsFault> {
    if word.is_empty() || word.len() > 19 || !word.iter().all(u8::is_ascii_digit) {
        return Err(NatsFault::Malformed("a size or sid that is not a number"));
    }
    Ok(word.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// The arguments of a `MSG`.
struct MsgArgs<'a> {
    subject: &'a [u8],
    sid: u64,
    reply: Option<&'a [u8]>,
    size: u64,
}

/// The arguments of a `MSG`: subject, sid, reply-to, payload length.
fn msg_args<'a>(mut args: impl Iterator<Item = &'a [u8]>) -> Result<MsgArgs<'a>, NatsFault> {
    let bad = NatsFault::Malformed("MSG needs a subject, a sid, an optional reply-to and a size");
    let subject = args.next().ok_or(bad.clone())?;
    let sid = number(args.next().ok_or(bad.clone())?)?;
    let third = args.next().ok_or(bad.clone())?;
    let (reply, size) = match args.next() {
        Some(fourth) => (Some(third), number(fourth)?),
        None => (None, number(third)?),
    };
    if args.next().is_some() {
        return Err(bad);
    }
    Ok(MsgArgs {
        subject,
        sid,
        reply,
        size,
    })
}

/// Where the operation at the front of a buffer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// It is all there, this long.
    Whole(usize),
    /// At least this many more bytes are needed (exactly, once a `MSG`'s
    /// control line is in).
    Need(usize),
}

/// How long the server operation at the front of `buf` is, if it is all
/// there, or how much is missing. A payload over `max` is refused from the
/// control line, before it arrives.
pub fn cut_op(buf: &[u8], max: usize) -> Result<Cut, NatsFault> {
    let Some((line, after)) = control_line(buf)? else {
        return Ok(Cut::Need(1));
    };
    let (name, args) = split_op(line);
    match name.as_slice() {
        b"MSG" => {
            let size = msg_args(args)?.size;
            if size > max as u64 {
                return Err(NatsFault::TooLarge {
                    len: size,
                    max: max as u64,
                });
            }
            // Within the limit, so it fits a usize.
            let total = after + size as usize + 2;
            if buf.len() < total {
                return Ok(Cut::Need(total - buf.len()));
            }
            if &buf[total - 2..total] != b"\r\n" {
                return Err(NatsFault::Malformed("a payload not followed by \\r\\n"));
            }
            Ok(Cut::Whole(total))
        }
        b"INFO" | b"PING" | b"PONG" | b"+OK" | b"-ERR" => Ok(Cut::Whole(after)),
        b"HMSG" => Err(NatsFault::Malformed(
            "HMSG, though headers were not asked for",
        )),
        b"" => Err(NatsFault::Malformed("an empty line")),
        _ => Err(NatsFault::Malformed("an unknown operation")),
    }
}

/// What the server said in its `INFO`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerInfo {
    /// The largest payload the server takes (0 if it did not say).
    pub max_payload: u64,
    /// The server requires TLS.
    pub tls_required: bool,
    /// The server requires credentials.
    pub auth_required: bool,
    /// The server's name or id, for messages.
    pub server_id: String,
    /// The server supports headers (`HPUB`/`HMSG`).
    pub headers: bool,
}

impl ServerInfo {
    /// The largest payload to send and to accept: the server's
    /// `max_payload`, at most `own` (converse's own limit), which is also
    /// the limit where the server says none.
    pub fn payload_limit(&self, own: usize) -> usize {
        match usize::try_from(self.max_payload) {
            Ok(0) | Err(_) => own,
            Ok(m) => m.min(own),
        }
    }
}

/// One operation from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerOp {
    /// `INFO`.
    Info(ServerInfo),
    /// A message on a subscription.
    Msg {
        /// The subscription it came on.
        sid: u64,
        /// Its subject.
        subject: Bytes,
        /// Where replies go, if anywhere.
        reply: Option<Bytes>,
        /// The message.
        payload: Bytes,
    },
    /// `PING`: answer with `PONG`.
    Ping,
    /// `PONG`: the answer to our `PING`.
    Pong,
    /// `+OK` (verbose mode only).
    Ok,
    /// `-ERR`, with the server's reason (quotes removed).
    Err(String),
}

/// Reads a whole operation as cut by [`cut_op`] (so it is complete and
/// within limits). Slices of `op` are returned without copying.
pub fn parse_op(op: Bytes) -> Result<ServerOp, NatsFault> {
    let Some((line, after)) = control_line(&op)? else {
        return Err(NatsFault::Malformed("an operation without its line end"));
    };
    let (name, mut args) = split_op(line);
    match name.as_slice() {
        b"MSG" => {
            let MsgArgs {
                subject,
                sid,
                reply,
                size,
            } = msg_args(args)?;
            let slice = |part: &[u8]| op.slice_ref(part);
            let (subject, reply) = (slice(subject), reply.map(slice));
            let end = after + size as usize;
            if op.len() < end + 2 {
                return Err(NatsFault::Malformed("a MSG shorter than its size"));
            }
            Ok(ServerOp::Msg {
                sid,
                subject,
                reply,
                payload: op.slice(after..end),
            })
        }
        b"PING" => Ok(ServerOp::Ping),
        b"PONG" => Ok(ServerOp::Pong),
        b"+OK" => Ok(ServerOp::Ok),
        b"-ERR" => {
            let start = line
                .iter()
                .position(|&b| b == b'-')
                .map_or(line.len(), |i| i + 4);
            let text = String::from_utf8_lossy(&line[start.min(line.len())..]);
            let text = text.trim().trim_matches('\'').trim();
            Ok(ServerOp::Err(text.to_string()))
        }
        b"INFO" => {
            let start = line
                .windows(4)
                .position(|w| w.eq_ignore_ascii_case(b"INFO"))
                .map_or(line.len(), |i| i + 4);
            let _ = args.next();
            parse_info(&line[start..]).map(ServerOp::Info)
        }
        _ => Err(NatsFault::Malformed("an unknown operation")),
    }
}

/// The fields of an `INFO` that matter here; unknown ones are ignored.
fn parse_info(json: &[u8]) -> Result<ServerInfo, NatsFault> {
    let value: serde_json::Value = serde_json::from_slice(json)
        .map_err(|_| NatsFault::Malformed("INFO that is not a JSON object"))?;
    let obj = value
        .as_object()
        .ok_or(NatsFault::Malformed("INFO that is not a JSON object"))?;
    let flag = |key: &str| obj.get(key).and_then(|v| v.as_bool()).unwrap_or(false);
    let max_payload = match obj.get("max_payload") {
        None => 0,
        Some(v) => v.as_u64().ok_or(NatsFault::Malformed(
            "INFO with a max_payload that is not a size",
        ))?,
    };
    let name = obj
        .get("server_name")
        .or_else(|| obj.get("server_id"))
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .chars()
        .take(64)
        .collect();
    Ok(ServerInfo {
        max_payload,
        tls_required: flag("tls_required"),
        auth_required: flag("auth_required"),
        server_id: name,
        headers: flag("headers"),
    })
}

/// Credentials for `CONNECT`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// A user name and password.
    pub user: Option<(String, String)>,
    /// A token.
    pub token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

/// The `CONNECT` line: no verbose `+OK`s, not pedantic, protocol 1 (so the
/// server may send `INFO` updates), and no echo of our own publications.
pub fn encode_connect(creds: &Credentials, tls: bool, name: &str) -> Vec<u8> {
    let mut obj = serde_json::Map::new();
    obj.insert("verbose".into(), false.into());
    obj.insert("pedantic".into(), false.into());
    obj.insert("tls_required".into(), tls.into());
    obj.insert("name".into(), name.into());
    obj.insert("lang".into(), "rust".into());
    obj.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    obj.insert("protocol".into(), 1.into());
    obj.insert("echo".into(), false.into());
    obj.insert("headers".into(), false.into());
    if let Some((user, pass)) = &creds.user {
        obj.insert("user".into(), user.as_str().into());
        obj.insert("pass".into(), pass.as_str().into());
    }
    if let Some(token) = &creds.token {
        obj.insert("auth_token".into(), token.as_str().into());
    }
    let mut line = b"CONNECT ".to_vec();
    line.extend_from_slice(serde_json::Value::Object(obj).to_string().as_bytes());
    line.extend_from_slice(b"\r\n");
    line
}

/// Whether `subject` can be published to: tokens of printable characters
/// separated by dots, no wildcards, no spaces.
pub fn valid_subject(subject: &str, wildcards: bool) -> bool {
    !subject.is_empty()
        && subject.len() <= 1024
        && subject.split('.').all(|token| {
            !token.is_empty()
                && token.bytes().all(|b| b > b' ' && b < 0x7f)
                && (!token.contains(['*', '>']) || (wildcards && (token == "*" || token == ">")))
        })
}

/// The `SUB` line: `SUB <subject> [queue] <sid>`.
pub fn encode_sub(subject: &str, queue: Option<&str>, sid: u64) -> Vec<u8> {
    match queue {
        Some(q) => format!("SUB {subject} {q} {sid}\r\n").into_bytes(),
        None => format!("SUB {subject} {sid}\r\n").into_bytes(),
    }
}

/// The length of a `PUB` of `len` bytes to `subject`.
pub fn pub_len(subject: &str, len: usize) -> usize {
    // "PUB " + subject + " " + digits + "\r\n" + payload + "\r\n"
    4 + subject.len() + 1 + 20 + 2 + len + 2
}

/// Appends `PUB <subject> <#bytes>\r\n<payload>\r\n` to `dst`.
pub fn encode_pub(subject: &str, payload: &[u8], dst: &mut BytesMut) {
    use std::fmt::Write;
    dst.reserve(pub_len(subject, payload.len()));
    dst.put_slice(b"PUB ");
    dst.put_slice(subject.as_bytes());
    // Writing a number into a BytesMut cannot fail.
    let _ = write!(dst, " {}\r\n", payload.len());
    dst.put_slice(payload);
    dst.put_slice(b"\r\n");
}

/// `PING\r\n`.
pub const PING: &[u8] = b"PING\r\n";
/// `PONG\r\n`.
pub const PONG: &[u8] = b"PONG\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(buf: &[u8], max: usize) -> Result<Option<usize>, NatsFault> {
        Ok(match cut_op(buf, max)? {
            Cut::Whole(n) => Some(n),
            Cut::Need(_) => None,
        })
    }

    #[test]
    fn ops_are_cut_whole_in_any_split() {
        let stream: &[u8] =
            b"INFO {\"max_payload\":1024,\"server_id\":\"x\"}\r\nPING\r\nMSG a.b 1 5\r\nhello\r\nMSG a.b 1 r.x 0\r\n\r\n+OK\r\n-ERR 'Unknown Subject'\r\npong\r\n";
        // Whole: each op in turn.
        let mut rest = stream;
        let mut ops = Vec::new();
        while !rest.is_empty() {
            let n = cut(rest, 1024).unwrap().unwrap();
            ops.push(parse_op(Bytes::copy_from_slice(&rest[..n])).unwrap());
            rest = &rest[n..];
        }
        assert_eq!(ops.len(), 7);
        assert!(
            matches!(&ops[0], ServerOp::Info(i) if i.max_payload == 1024 && i.server_id == "x")
        );
        assert_eq!(ops[1], ServerOp::Ping);
        assert!(
            matches!(&ops[2], ServerOp::Msg { sid: 1, payload, reply: None, subject } if &payload[..] == b"hello" && &subject[..] == b"a.b")
        );
        assert!(
            matches!(&ops[3], ServerOp::Msg { payload, reply: Some(r), .. } if payload.is_empty() && &r[..] == b"r.x")
        );
        assert_eq!(ops[4], ServerOp::Ok);
        assert_eq!(ops[5], ServerOp::Err("Unknown Subject".into()));
        assert_eq!(ops[6], ServerOp::Pong);
        // Every prefix short of an op's end is incomplete, never an error.
        let mut start = 0;
        while start < stream.len() {
            let n = cut(&stream[start..], 1024).unwrap().unwrap();
            for k in 0..n {
                assert_eq!(
                    cut(&stream[start..start + k], 1024),
                    Ok(None),
                    "at {start}+{k}"
                );
            }
            start += n;
        }
    }

    #[test]
    fn a_payload_over_the_limit_is_refused_from_its_line() {
        assert_eq!(
            cut(b"MSG s 1 4294967296\r\n", 1 << 20),
            Err(NatsFault::TooLarge {
                len: 4294967296,
                max: 1 << 20
            })
        );
        assert_eq!(
            cut(b"MSG s 1 99999999999999999999\r\n", 1 << 20),
            Err(NatsFault::Malformed("a size or sid that is not a number"))
        );
        assert_eq!(
            cut(b"MSG s 1 11\r\n", 10),
            Err(NatsFault::TooLarge { len: 11, max: 10 })
        );
        assert_eq!(cut(b"MSG s 1 10\r\n0123456789\r\n", 10), Ok(Some(24)));
    }

    #[test]
    fn lines_are_bounded() {
        let long = vec![b'A'; MAX_CONTROL_LINE + 2];
        assert_eq!(cut(&long, 10), Err(NatsFault::LineTooLong));
        let mut ok = b"-ERR '".to_vec();
        ok.resize(MAX_CONTROL_LINE - 1, b'x');
        ok.extend_from_slice(b"'\r\n");
        assert_eq!(cut(&ok, 10), Ok(Some(MAX_CONTROL_LINE + 2)));
        assert_eq!(cut(&ok[..MAX_CONTROL_LINE + 1], 10), Ok(None));
    }

    #[test]
    fn garbage_is_malformed() {
        for bad in [
            &b"HELLO\r\n"[..],
            b"\r\n",
            b"MSG s\r\n",
            b"MSG s x 3\r\nabc\r\n",
            b"MSG s 1 -3\r\n",
            b"MSG s 1 a b 3\r\n",
            b"MSG s 1 3\r\nabcXY",
            b"HMSG s 1 3 3\r\n",
        ] {
            assert!(
                matches!(cut(bad, 100), Err(NatsFault::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for bad in [
            &b"INFO {\r\n"[..],
            b"INFO []\r\n",
            b"INFO {\"max_payload\":-1}\r\n",
        ] {
            let n = cut(bad, 100).unwrap().unwrap();
            assert!(matches!(
                parse_op(Bytes::copy_from_slice(&bad[..n])),
                Err(NatsFault::Malformed(_))
            ));
        }
    }

    #[test]
    fn the_payload_limit_is_the_servers_at_most_our_own() {
        let info = |max_payload| ServerInfo {
            max_payload,
            ..ServerInfo::default()
        };
        assert_eq!(info(1024).payload_limit(4096), 1024);
        assert_eq!(info(1 << 30).payload_limit(4096), 4096);
        assert_eq!(info(0).payload_limit(4096), 4096);
    }

    #[test]
    fn client_operations() {
        let mut out = BytesMut::new();
        encode_pub("chat.room", b"hi", &mut out);
        assert_eq!(&out[..], b"PUB chat.room 2\r\nhi\r\n");
        assert!(out.len() <= pub_len("chat.room", 2));
        assert_eq!(encode_sub("a", None, 1), b"SUB a 1\r\n");
        assert_eq!(encode_sub("a", Some("q"), 7), b"SUB a q 7\r\n");
        let creds = Credentials {
            user: Some(("me".into(), "p\"w".into())),
            token: None,
        };
        let line = String::from_utf8(encode_connect(&creds, false, "n")).unwrap();
        assert!(line.starts_with("CONNECT {") && line.ends_with("}\r\n"));
        assert!(line.contains("\"echo\":false") && line.contains("\"verbose\":false"));
        assert!(line.contains("\"pass\":\"p\\\"w\""));
        assert!(!format!("{creds:?}").contains("p\\\"w"));
        assert!(valid_subject("chat.room", false));
        for bad in ["", "a b", "a..b", "a.*", ">", "a\r\n"] {
            assert!(!valid_subject(bad, false), "{bad:?}");
        }
        assert!(valid_subject("a.*.>", true));
        assert!(!valid_subject("a.b*", true));
    }
}
