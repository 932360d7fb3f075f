//! NATS (`nats://`): the connection's NATS client protocol above a TCP
//! stream (and TLS, where the server requires it), driven by the blocking
//! halves like every stream.

use super::recipe::Recipe;
use super::stream::{self, StreamReceiver, StreamSender};
use super::Transport;
use crate::config::Config;
use crate::error::Result;
use crate::url::{Scheme, Url};

/// A NATS conversation's transport (`nats://HOST[:PORT]/SUBJECT`): `send`
/// publishes to the subject, `recv` returns what others publish to it,
/// one message each (our own publications are not echoed back). See
/// [`crate::nats`] for the protocol.
///
/// * **At most once.** Core NATS keeps nothing: a message published while
///   this conversation is not subscribed (before it connects, or while it
///   is disconnected) is not delivered to it. When the connection to the
///   server ends or breaks, both halves report
///   [`Error::Nats`](crate::Error::Nats) with
///   [`NatsError::Disconnected`](crate::nats::NatsError::Disconnected);
///   [`Conversation::reconnect`](crate::Conversation::reconnect) connects
///   again and subscribes anew. What was published meanwhile is lost.
/// * **Limits.** The conversation's `max_message_len` is the server's
///   `max_payload` (at most [`Config::max_message_len`]): a larger `send`
///   is [`Error::MessageTooLarge`](crate::Error::MessageTooLarge) before
///   anything is written, and a `MSG` declaring more is refused from its
///   control line, before a byte of it is buffered. Control lines are at
///   most 4096 bytes.
/// * **Keepalive.** The server's `PING`s are answered; when the server is
///   quiet for [`Config::ping_interval`] the receiving half pings it, and
///   two unanswered pings are [`NatsError::Stale`](crate::nats::NatsError::Stale).
/// * **Credentials** come from the URL, `%`-escaped where needed
///   (`nats://USER:PASS@HOST:PORT/S` or `nats://TOKEN@HOST:PORT/S`); a
///   server that requires TLS gets it (converse's TLS, verified with
///   [`Config::with_tls_client`]).
/// * `?queue=NAME` joins a queue group: each message goes to one member
///   of the group.
#[derive(Debug)]
pub struct Nats {
    tx: StreamSender,
    rx: StreamReceiver,
    subject: std::sync::Arc<str>,
}

impl Transport for Nats {
    type Sender = StreamSender;
    type Receiver = StreamReceiver;

    fn into_halves(self) -> (StreamSender, StreamReceiver) {
        (self.tx, self.rx)
    }
}

impl Nats {
    /// Connects to `nats://[USER:PASS@|TOKEN@]HOST[:PORT]/SUBJECT[?queue=NAME]`
    /// and subscribes to the subject; returns once the server has
    /// answered (within [`Config::handshake_timeout`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidAddress`](crate::Error::InvalidAddress) for a URL
    /// that is not one; [`Error::ConnectionRefused`](crate::Error::ConnectionRefused)
    /// and other I/O errors; [`Error::Nats`](crate::Error::Nats) when the
    /// server refuses (`-ERR`, for example `Authorization Violation`), is
    /// not a NATS server, or is too slow.
    pub fn connect(url: &str, config: &Config) -> Result<Nats> {
        config.validate()?;
        let url = Url::parse(url)?;
        if url.scheme != Scheme::Nats {
            return Err(crate::url::unknown_scheme(&url.input).into());
        }
        let recipe = Recipe::client(&url, config)?;
        let subject = std::sync::Arc::from(&*url.subscription()?.subject);
        let (tx, mut rx) = stream::connect(&url.resolve()?, &recipe, config)?;
        let (config, again) = (config.clone(), url.clone());
        rx.set_remake(Box::new(move || {
            let recipe = Recipe::client(&again, &config)?;
            stream::connect(&again.resolve()?, &recipe, &config)
        }));
        Ok(Nats { tx, rx, subject })
    }

    /// The subject this conversation publishes to and receives from.
    pub fn subject(&self) -> &str {
        &self.subject
    }
}
