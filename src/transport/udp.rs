//! UDP clients: one message is one datagram, payload only.
//!
//! UDP has no connection and no close: a conversation over UDP ends when it
//! is closed *locally*, or after an idle timeout ([`Config::idle_timeout`])
//! counted from the peer's last datagram. The peer is not told. Datagrams
//! may be lost, duplicated or reordered by the network (not on loopback at
//! a sane rate); this module never merges, splits or truncates them. The
//! server side is [`UdpListener`](super::UdpListener).

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};

use socket2::Socket;

use super::datagram::{self, DatagramReceiver, DatagramSender};
use super::{sockopt, Transport};
use crate::addr::{self, Addr};
use crate::config::Config;
use crate::error::{Error, Result};

/// The largest payload to or from `peer`, lowered to `configured`. It is the
/// peer's family that counts: an IPv4 peer of a dual-stack socket
/// (`::ffff:a.b.c.d`) gets the IPv4 limit.
pub(crate) fn payload_limit(peer: &SocketAddr, configured: usize) -> usize {
    let family_max = match peer {
        SocketAddr::V4(_) => Udp::MAX_PAYLOAD_V4,
        SocketAddr::V6(a) if a.ip().to_ipv4_mapped().is_some() => Udp::MAX_PAYLOAD_V4,
        SocketAddr::V6(_) => Udp::MAX_PAYLOAD_V6,
    };
    configured.min(family_max)
}

/// A UDP client conversation's transport: a socket connected to one server
/// address.
///
/// * The socket is connected, so the kernel drops datagrams from any other
///   source: strangers cannot inject messages.
/// * One message is one datagram, payload only: any UDP peer (Python's
///   `sendto`, `nc -u`) interoperates. An empty datagram is an empty message.
/// * The largest message is 65,507 bytes over IPv4 and 65,527 over IPv6, or
///   the lower [`Config::max_message_len`]; a larger send fails with
///   [`Error::MessageTooLarge`] before any system call.
/// * A datagram larger than that is never cut short silently: the receive
///   returns [`Error::Truncated`] and the next datagram is received normally.
/// * When the server's port is closed, the ICMP "port unreachable" it sends
///   back becomes [`Error::PeerUnreachable`]; the conversation stays usable.
/// * Nothing received from the server for [`Config::idle_timeout`] (default
///   120 s) is the end; datagrams already waiting are received first. A
///   client that waits for replies however long they take sets it to `None`.
///
/// ```no_run
/// use converse::{Conversation, Udp};
///
/// let mut conversation = Conversation::new(Udp::connect("127.0.0.1:8090")?);
/// conversation.send_text("hello")?;
/// println!("{:?}", conversation.recv_text()?);
/// # Ok::<(), converse::Error>(())
/// ```
#[derive(Debug)]
pub struct Udp {
    tx: DatagramSender,
    rx: DatagramReceiver,
}

impl Transport for Udp {
    type Sender = DatagramSender;
    type Receiver = DatagramReceiver;

    fn into_halves(self) -> (DatagramSender, DatagramReceiver) {
        (self.tx, self.rx)
    }
}

impl Udp {
    /// The largest UDP payload over IPv4: 65,535 − 8 (UDP header) − 20
    /// (IPv4 header).
    pub const MAX_PAYLOAD_V4: usize = 65_507;
    /// The largest UDP payload over IPv6: 65,535 − 8 (UDP header).
    pub const MAX_PAYLOAD_V6: usize = 65_527;

    /// Connects to `addr` with the default [`Config`].
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Udp> {
        Udp::connect_with(addr, &Config::default())
    }

    /// Connects to `addr` with `config`: binds an ephemeral port of the same
    /// family and connects the socket to the first resolved address.
    pub fn connect_with(addr: impl ToSocketAddrs, config: &Config) -> Result<Udp> {
        let addrs = addr::socket_addrs(addr, "UDP address")?;
        connect_any(&addrs, config)
    }

    /// Wraps a UDP socket that is already connected to its peer.
    pub fn from_socket(socket: UdpSocket, config: &Config) -> Result<Udp> {
        let peer = socket
            .peer_addr()
            .map_err(|e| Error::from_io(e, &Addr::Unknown))?;
        Udp::from_connected(Socket::from(socket), peer, config)
    }

    fn from_connected(socket: Socket, peer: SocketAddr, config: &Config) -> Result<Udp> {
        let max = payload_limit(&peer, config.max_message_len);
        let local = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map(Addr::Udp)
            .unwrap_or(Addr::Unknown);
        let (tx, rx) = datagram::halves(socket, local, Addr::Udp(peer), max, config)?;
        Ok(Udp { tx, rx })
    }
}

impl Udp {
    pub(crate) fn into_parts(self) -> Option<datagram::DatagramParts> {
        datagram::into_parts(self.tx, self.rx)
    }
}

pub(crate) fn connect_any(addrs: &[SocketAddr], config: &Config) -> Result<Udp> {
    config.validate()?;
    let mut last = None;
    for &addr in addrs {
        match sockopt::udp_client(addr, config) {
            Ok(socket) => return Udp::from_connected(socket, addr, config),
            Err(e) => last = Some(Error::from_io(e, &Addr::Udp(addr))),
        }
    }
    Err(last.unwrap_or_else(|| addr::no_address("UDP address").into()))
}
