//! Typed messages (feature `serde`): one value per message, encoded with
//! [postcard](https://docs.rs/postcard).
//!
//! # Why postcard
//!
//! * **Compact**: integers are varints, structs are their fields in order
//!   with no names or tags, enums a varint discriminant. A small struct is a
//!   few bytes, which matters when the message is the unit of work.
//! * **A stable, documented wire format**: postcard 1.x froze its format in
//!   a written specification, so peers built at different times agree.
//! * **Small and `no_std`**: besides `serde` it adds one little crate
//!   (`cobs`) to the tree, nothing that does I/O.
//!
//! Not self-describing: both ends must agree on the type, as with bincode.
//! A peer in another language is better served by a self-describing format
//! (MessagePack, CBOR, JSON) sent as bytes with [`Conversation::send`].
//!
//! # Hostile input
//!
//! Decoding never panics and never reserves what a length field declares
//! beyond what the message holds (serde caps pre-allocation; a message is at
//! most [`Config::max_message_len`](crate::Config::max_message_len) bytes).
//! A value with bytes left over after it is refused. One caution: a
//! *recursive* type (a tree of boxes) can be nested as deeply as a message is
//! long, and decoding recurses; decode such types only from trusted peers or
//! with a small maximum message length.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::conversation::{Conversation, RecvHalf, SendHalf};
use crate::error::{Error, Result};
use crate::transport::Transport;

fn encode<V: Serialize + ?Sized>(value: &V) -> Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|e| Error::Encode {
        reason: e.to_string(),
    })
}

fn decode<V: DeserializeOwned>(message: Bytes) -> Result<V> {
    let reason = match postcard::take_from_bytes::<V>(&message) {
        Ok((value, [])) => return Ok(value),
        Ok((_, rest)) => format!("{} bytes left over after the value", rest.len()),
        Err(e) => e.to_string(),
    };
    Err(Error::InvalidValue { message, reason })
}

impl<T: Transport> Conversation<T> {
    /// Sends `value` as one message, encoded with postcard (see the
    /// [`value` module](crate::value) for the format). Feature `serde`.
    ///
    /// ```
    /// use converse::{Conversation, Memory};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize, Debug, PartialEq)]
    /// enum Command {
    ///     Move { x: i32, y: i32 },
    ///     Say(String),
    /// }
    ///
    /// let (a, b) = Memory::pair();
    /// let (mut a, mut b) = (Conversation::new(a), Conversation::new(b));
    /// a.send_value(&Command::Move { x: 3, y: -1 })?;
    /// a.send_value(&Command::Say("hi".into()))?;
    /// assert_eq!(b.recv_value::<Command>()?, Some(Command::Move { x: 3, y: -1 }));
    /// assert_eq!(b.recv_value::<Command>()?, Some(Command::Say("hi".into())));
    /// # Ok::<(), converse::Error>(())
    /// ```
    pub fn send_value<V: Serialize + ?Sized>(&mut self, value: &V) -> Result<()> {
        let bytes = encode(value)?;
        self.send(bytes)
    }

    /// Receives one message and decodes it as a `V`. `Ok(None)` is the
    /// peer's clean end. A message that is not a valid `V` is
    /// [`Error::InvalidValue`], which carries the message; the conversation
    /// stays usable. Feature `serde`.
    pub fn recv_value<V: DeserializeOwned>(&mut self) -> Result<Option<V>> {
        self.recv()?.map(decode).transpose()
    }
}

impl<T: Transport> SendHalf<T> {
    /// See [`Conversation::send_value`].
    pub fn send_value<V: Serialize + ?Sized>(&mut self, value: &V) -> Result<()> {
        let bytes = encode(value)?;
        self.send(bytes)
    }
}

impl<T: Transport> RecvHalf<T> {
    /// See [`Conversation::recv_value`].
    pub fn recv_value<V: DeserializeOwned>(&mut self) -> Result<Option<V>> {
        self.recv()?.map(decode).transpose()
    }
}
