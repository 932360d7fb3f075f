//! Settings shared by every transport, with their defaults.

use std::time::Duration;

use crate::codec::{Framing, DEFAULT_MAX_MESSAGE_LEN};

/// The default per-message deadline: 30 s.
pub const DEFAULT_MESSAGE_DEADLINE: Duration = Duration::from_secs(30);
/// The default time a graceful close waits for the peer's end: 5 s.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(5);
/// The default listen backlog: 5, as in the tutorial's `listen(5)`.
pub const DEFAULT_BACKLOG: i32 = 5;
/// The default size of the user-space send buffer used by batching: 64 KiB.
pub const DEFAULT_SEND_BUFFER: usize = 64 * 1024;
/// The default idle timeout of a UDP conversation: 120 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// The default cap on concurrent peers of a UDP listener: 1024.
pub const DEFAULT_MAX_PEERS: usize = 1024;
/// The default depth of a UDP conversation's receive queue: 256 datagrams.
pub const DEFAULT_QUEUE_DEPTH: usize = 256;
/// The default cap on bytes queued in a UDP listener, all peers together: 32 MiB.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 32 * 1024 * 1024;

/// Settings for connecting, listening and conversing.
///
/// Every setting has a default chosen to be safe against hostile peers; the
/// builder methods change one each.
///
/// ```
/// use std::time::Duration;
/// use converse::Config;
///
/// let config = Config::new()
///     .max_message_len(1 << 20)
///     .read_timeout(Some(Duration::from_secs(10)))
///     .backlog(128);
/// assert_eq!(config.get_max_message_len(), 1 << 20);
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) max_message_len: usize,
    pub(crate) message_deadline: Duration,
    pub(crate) linger: Duration,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) nodelay: bool,
    pub(crate) backlog: i32,
    pub(crate) only_v6: Option<bool>,
    pub(crate) send_buffer: usize,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_peers: usize,
    pub(crate) queue_depth: usize,
    pub(crate) max_queued_bytes: usize,
    pub(crate) spin: Option<Duration>,
    pub(crate) framing: Framing,
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl Config {
    /// The defaults: messages up to 8 MiB, a 30 s per-message deadline, a
    /// 5 s linger on close, no read or write timeout, no connect timeout
    /// beyond the system's, `TCP_NODELAY` on, backlog 5, a 64 KiB batching
    /// buffer; for UDP, a 120 s idle timeout, at most 1024 peers per
    /// listener, 256 datagrams queued per peer and 32 MiB queued in all.
    pub const fn new() -> Self {
        Config {
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
            message_deadline: DEFAULT_MESSAGE_DEADLINE,
            linger: DEFAULT_LINGER,
            read_timeout: None,
            write_timeout: None,
            connect_timeout: None,
            nodelay: true,
            backlog: DEFAULT_BACKLOG,
            only_v6: None,
            send_buffer: DEFAULT_SEND_BUFFER,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            max_peers: DEFAULT_MAX_PEERS,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            spin: None,
            framing: Framing::Length {
                width: 4,
                big_endian: true,
            },
        }
    }

    /// The largest message sent or accepted (default 8 MiB). A transport may
    /// lower it to what it can carry (UDP: 65,507 bytes over IPv4).
    pub fn max_message_len(mut self, len: usize) -> Self {
        self.max_message_len = len;
        self
    }

    /// Once the first byte of a message has arrived, the whole message must
    /// arrive within this time (default 30 s), or the receive fails with
    /// [`Error::DeadlineExceeded`](crate::Error::DeadlineExceeded). This stops
    /// a peer that trickles one byte just inside every read timeout.
    pub fn message_deadline(mut self, deadline: Duration) -> Self {
        self.message_deadline = deadline;
        self
    }

    /// How long a graceful close waits for the peer's end after shutting down
    /// the write side (default 5 s).
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// The initial read timeout (default none: receives block).
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// The initial write timeout (default none: sends block).
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// How long a TCP connect may take (default: the system's own limit).
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// `TCP_NODELAY` (default on: a message is sent at once, not held back by
    /// Nagle's algorithm).
    pub fn nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }

    /// The listen backlog: how many connections wait for `accept` (default 5).
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.backlog = backlog;
        self
    }

    /// `IPV6_V6ONLY` for listeners bound to an IPv6 address (default: the
    /// system's own default).
    pub fn only_v6(mut self, only_v6: bool) -> Self {
        self.only_v6 = Some(only_v6);
        self
    }

    /// The size of the user-space buffer that batches small messages before a
    /// flush (default 64 KiB). Feeding more than this flushes first: memory
    /// stays bounded.
    pub fn send_buffer(mut self, bytes: usize) -> Self {
        self.send_buffer = bytes.max(64);
        self
    }

    /// UDP: a conversation that receives nothing for this long ends (its
    /// receive reports the end, and a listener forgets the peer). Default
    /// 120 s; `None` never ends a conversation for silence.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// UDP listener: the most peers with a conversation at once (default
    /// 1024). Datagrams from new sources beyond it are dropped and counted,
    /// so a flood of spoofed sources cannot exhaust memory.
    pub fn max_peers(mut self, peers: usize) -> Self {
        self.max_peers = peers.max(1);
        self
    }

    /// UDP listener: how many datagrams wait for one conversation's receive
    /// (default 256). Beyond it datagrams are dropped, as UDP would, and
    /// counted.
    pub fn queue_depth(mut self, depth: usize) -> Self {
        self.queue_depth = depth.max(1);
        self
    }

    /// UDP listener: the most bytes waiting in all conversations' queues
    /// together (default 32 MiB). Beyond it datagrams are dropped and counted.
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.max_queued_bytes = bytes;
        self
    }

    /// TCP latency mode: poll for up to `spin` before blocking in a receive
    /// (default off). Trades CPU for latency; see
    /// [`Tcp::set_spin`](crate::Tcp::set_spin).
    pub fn spin(mut self, spin: Option<Duration>) -> Self {
        self.spin = spin.filter(|s| !s.is_zero());
        self
    }

    /// How messages are delimited on a stream transport (default: a 4-byte
    /// big-endian length). UDP ignores it: a datagram is a message.
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// The framing.
    pub fn get_framing(&self) -> Framing {
        self.framing
    }

    /// The largest message.
    pub fn get_max_message_len(&self) -> usize {
        self.max_message_len
    }

    /// The per-message deadline.
    pub fn get_message_deadline(&self) -> Duration {
        self.message_deadline
    }

    /// The linger time of a graceful close.
    pub fn get_linger(&self) -> Duration {
        self.linger
    }

    /// The listen backlog.
    pub fn get_backlog(&self) -> i32 {
        self.backlog
    }
}
