//! The sending side of a stream connection: a message checked against the
//! limits before anything is queued, encoded as the protocol says (a
//! framed message, a WebSocket frame, a NATS `PUB`), and **taken**.
//!
//! What "taken" means, once for every driver: a message is taken once it
//! is in the link's queue for the wire (or fed into the batching buffer,
//! which a flush moves there whole). A taken message reaches the peer
//! unless the connection fails. A send that wrote nothing of its message
//! takes it back ([`Outbound::untake`]), so that a timeout took nothing; a
//! send that wrote any byte of it leaves the rest queued, first in line,
//! and whoever writes next — either half of a blocking conversation, or
//! the switchboard — writes it.

#[cfg(feature = "nats")]
use std::sync::Arc;

#[cfg(feature = "ws")]
use bytes::BytesMut;

use super::link::Link;
#[cfg(feature = "nats")]
use super::link::Proto as LinkProto;
use super::outbound::{Mark, Outbound};
use crate::codec::Codec;
use crate::error::Error;

/// How messages are encoded.
#[derive(Debug)]
enum Proto {
    Framed,
    #[cfg(feature = "ws")]
    Ws {
        client: bool,
    },
    #[cfg(feature = "nats")]
    Nats {
        subject: Arc<str>,
        publishable: bool,
    },
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Tx {
    /// Messages fed and not yet moved to the link: whole units.
    staged: Outbound,
    proto: Proto,
    /// The largest message (for NATS, the server's `max_payload` as last
    /// known).
    max: usize,
}

impl Tx {
    /// Framed messages (`codec`), fed up to `batch` bytes before a flush.
    pub(crate) fn framed(codec: Codec, batch: usize) -> Tx {
        let max = codec.max_message_len();
        Tx {
            staged: Outbound::new(codec, batch),
            proto: Proto::Framed,
            max,
        }
    }

    /// WebSocket messages of at most `max` bytes, a frame each (masked by
    /// a `client`).
    #[cfg(feature = "ws")]
    pub(crate) fn ws(client: bool, max: usize, batch: usize) -> Tx {
        Tx {
            staged: Outbound::new(crate::codec::Framing::Raw.codec(1), batch),
            proto: Proto::Ws { client },
            max,
        }
    }

    /// NATS messages, each a `PUB` to `subject`.
    #[cfg(feature = "nats")]
    pub(crate) fn nats(sub: &crate::nats::session::Subscription, max: usize, batch: usize) -> Tx {
        Tx {
            staged: Outbound::new(crate::codec::Framing::Raw.codec(1), batch),
            proto: Proto::Nats {
                subject: Arc::clone(&sub.subject),
                publishable: sub.publishable(),
            },
            max,
        }
    }

    /// The largest message this side sends.
    pub(crate) fn max_message_len(&self) -> usize {
        self.max
    }

    /// Bytes fed and not yet moved to the link.
    pub(crate) fn staged(&self) -> usize {
        self.staged.len()
    }

    /// Refuses a message before anything is queued: over the limit, or
    /// one that cannot be encoded.
    #[inline]
    pub(crate) fn check(&self, msg: &[u8], peer: &crate::addr::Addr) -> Result<(), Error> {
        if msg.len() > self.max {
            return Err(Error::MessageTooLarge {
                len: msg.len() as u64,
                max: self.max as u64,
            });
        }
        match &self.proto {
            Proto::Framed if self.staged.surely_takes(msg.len()) => {}
            Proto::Framed => {
                self.staged
                    .frame(msg)
                    .map_err(|e| Error::from_frame(e, peer))?;
            }
            #[cfg(feature = "nats")]
            Proto::Nats {
                publishable: false, ..
            } => return Err(Error::Unsupported("publishing to a subject with wildcards")),
            #[allow(unreachable_patterns)]
            _ => {}
        }
        Ok(())
    }

    /// The bytes a message of `len` bytes takes on the wire, before TLS (at
    /// most: a framing's prefix is at most 10 bytes).
    #[inline]
    pub(crate) fn wire_len(&self, len: usize) -> usize {
        match &self.proto {
            Proto::Framed => len + 11,
            #[cfg(feature = "ws")]
            Proto::Ws { client } => crate::ws::frames::frame_len(len, *client),
            #[cfg(feature = "nats")]
            Proto::Nats { subject, .. } => crate::nats::ops::pub_len(subject, len),
        }
    }

    /// `true` when a message of `len` bytes fits the batching buffer.
    #[inline]
    pub(crate) fn has_room_staged(&self, len: usize) -> bool {
        self.staged.has_room_for(self.wire_len(len))
    }

    /// Feeds a message of the default framing into the batching buffer
    /// when it surely fits there (`true`: taken); anything else is left
    /// to [`check`](Self::check) and [`stage`](Self::stage).
    #[inline(always)]
    pub(crate) fn stage_plain(&mut self, msg: &[u8]) -> bool {
        matches!(self.proto, Proto::Framed) && self.staged.push_u32(msg)
    }

    /// Feeds a checked message into the batching buffer: taken (the next
    /// flush moves it to the link).
    #[inline]
    pub(crate) fn stage(&mut self, msg: &[u8], text: bool) {
        encode(&self.proto, &mut self.staged, msg, text);
    }

    /// Moves what was fed to the end of the link's queue (whole units, in
    /// order), and learns the limit the link knows now.
    pub(crate) fn commit(&mut self, link: &mut Link) {
        if link.holds_messages() {
            self.staged.move_into(link.held());
        } else {
            link.out.append(&mut self.staged);
        }
        self.learn(link);
    }

    /// Learns the limit the link knows now (a NATS server's `max_payload`
    /// may change).
    #[inline]
    pub(crate) fn learn(&mut self, link: &Link) {
        #[cfg(feature = "nats")]
        if let LinkProto::Nats(n) = &link.proto {
            self.max = n.session.max();
        }
        let _ = link;
    }

    /// Encodes a checked message straight into the link's queue, after
    /// what was fed: taken; the mark takes it back if none of it is
    /// written.
    #[inline]
    pub(crate) fn push(&mut self, link: &mut Link, msg: &[u8], text: bool) -> Mark {
        debug_assert!(!link.holds_messages(), "sent before the handshakes");
        self.commit(link);
        encode(&self.proto, &mut link.out, msg, text)
    }

    /// A message over TLS encrypted straight from `msg` (no copy into the
    /// queue), when nothing is queued before it: `true` if it was taken so
    /// (what TLS did not take yet is queued, first in line). Checked
    /// messages of a framing only.
    #[cfg(feature = "tls")]
    pub(crate) fn push_through_tls(&mut self, link: &mut Link, msg: &[u8]) -> bool {
        if !matches!(self.proto, Proto::Framed) || self.staged() > 0 {
            return false;
        }
        let Ok(frame) = link.out.frame(msg) else {
            return false;
        };
        let took = link.encrypt_direct(&[&frame.prefix, msg, frame.suffix], frame.len);
        if took == 0 {
            return false;
        }
        if took < frame.len {
            link.out.push_rest(&frame, msg, took);
        }
        true
    }

    /// The rest of a frame that a direct write (from the caller's slice,
    /// for a large message of a plain framing) did not take: queued first.
    pub(crate) fn push_rest(&self, link: &mut Link, msg: &[u8], written: usize) {
        let frame = link.out.frame(msg).expect("a checked message");
        link.out.push_rest(&frame, msg, written);
    }

    /// Forgets what was fed (the connection cannot send it).
    pub(crate) fn discard(&mut self) -> usize {
        self.staged.discard()
    }

    /// A switchboard's send: the message checked, then queued if it fits
    /// the outbox (`Ok(false)`: it does not, nothing queued).
    pub(crate) fn offer(&mut self, link: &mut Link, msg: &[u8], text: bool) -> Result<bool, Error> {
        if !link.can_send() {
            return Err(Error::Closed);
        }
        self.learn(link);
        self.check(msg, &link.peer)?;
        let wire = self.wire_len(msg.len());
        if !link.has_room(wire) {
            // Near the bound only: the exact frame of a plain framing.
            let exact = match &self.proto {
                Proto::Framed => link.out.frame(msg).map(|f| f.len).unwrap_or(wire),
                #[allow(unreachable_patterns)]
                _ => wire,
            };
            if !link.has_room(exact) {
                return Ok(false);
            }
        }
        if link.holds_messages() {
            // Until the handshakes are done, through the batching buffer.
            encode(&self.proto, &mut self.staged, msg, text);
            self.staged.move_into(link.held());
        } else {
            encode(&self.proto, &mut link.out, msg, text);
        }
        Ok(true)
    }
}

/// Encodes `msg` (checked) at the end of `out`: taken.
#[inline]
fn encode(proto: &Proto, out: &mut Outbound, msg: &[u8], text: bool) -> Mark {
    let _ = text;
    match proto {
        // Checked: the framing takes it.
        Proto::Framed => out.push(msg).expect("a checked message"),
        #[cfg(feature = "ws")]
        Proto::Ws { client } => {
            use crate::ws::frames::{encode, mask_key, OpCode};
            let opcode = if text { OpCode::Text } else { OpCode::Binary };
            let mask = client.then(mask_key);
            out.push_encoded(|dst: &mut BytesMut| encode(opcode, msg, mask, dst))
        }
        #[cfg(feature = "nats")]
        Proto::Nats { subject, .. } => {
            out.push_encoded(|dst| crate::nats::ops::encode_pub(subject, msg, dst))
        }
    }
}
