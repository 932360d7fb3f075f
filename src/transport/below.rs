//! The byte stream below a message protocol of converse's own (WebSocket,
//! NATS): TCP, or converse's TLS. Its two halves, and a macro for each
//! that reaches the half whatever its kind.

use super::stream::{StreamReceiver, StreamSender};

/// The sending half of the stream below.
#[derive(Debug)]
pub(crate) enum InnerTx {
    Tcp(StreamSender),
    #[cfg(feature = "tls")]
    Tls(super::tls::TlsSender),
}

/// The receiving half of the stream below.
#[derive(Debug)]
pub(crate) enum InnerRx {
    Tcp(StreamReceiver),
    #[cfg(feature = "tls")]
    Tls(super::tls::TlsReceiver),
}

/// `inner!(tx, t => expr)`: `expr` with `t` bound to the sending half.
macro_rules! inner {
    ($e:expr, $x:ident => $body:expr) => {
        match $e {
            $crate::transport::below::InnerTx::Tcp($x) => $body,
            #[cfg(feature = "tls")]
            $crate::transport::below::InnerTx::Tls($x) => $body,
        }
    };
}

/// `inner_rx!(rx, r => expr)`: `expr` with `r` bound to the receiving half.
macro_rules! inner_rx {
    ($e:expr, $x:ident => $body:expr) => {
        match $e {
            $crate::transport::below::InnerRx::Tcp($x) => $body,
            #[cfg(feature = "tls")]
            $crate::transport::below::InnerRx::Tls($x) => $body,
        }
    };
}

pub(crate) use {inner, inner_rx};
