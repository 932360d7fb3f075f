//! Settings shared by every transport and driver, with their defaults.

use std::time::Duration;

use crate::codec::{Framing, LengthDelimited, Width};

/// A setting that cannot work, refused when it is given (to a
/// constructor, or to a setter such as `set_read_timeout`), never a panic
/// or a surprise later.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {setting}: {reason}")]
pub struct ConfigError {
    /// The setting, as its `Config` method is named.
    pub setting: &'static str,
    /// Why it cannot work.
    pub reason: &'static str,
}

/// Refuses a zero timeout. Everywhere in this crate a timeout is `None`
/// (wait as long as it takes) or a positive duration: a zero duration
/// would mean "never" to the system's socket options and "at once" to a
/// queue, so it means nothing and is refused alike by every setter.
pub(crate) fn check_timeout(
    setting: &'static str,
    timeout: Option<Duration>,
) -> Result<Option<Duration>, ConfigError> {
    match timeout {
        Some(t) if t.is_zero() => Err(ConfigError {
            setting,
            reason: "a zero timeout is not allowed (use None to wait without limit)",
        }),
        t => Ok(t),
    }
}

/// Refuses a zero per-message deadline (by `Config` and by every
/// `set_message_deadline`).
pub(crate) fn check_deadline(deadline: Duration) -> Result<Duration, ConfigError> {
    if deadline.is_zero() {
        return Err(ConfigError {
            setting: "message_deadline",
            reason: "a zero deadline would fail every message that arrives in two pieces",
        });
    }
    Ok(deadline)
}

/// Settings for connecting, listening and conversing.
///
/// Every setting has a default chosen to be safe against hostile peers
/// (the `DEFAULT_*` constants); `with_*` changes one, and the method named
/// after the setting reads it. Every setting acts the same way on every
/// transport and driver that has it. A setting that cannot work (a zero
/// timeout or deadline) is refused with
/// [`Error::InvalidConfig`](crate::Error::InvalidConfig) by the
/// constructor it is given to ([`validate`](Config::validate) says the
/// same in advance).
///
/// ```
/// use std::time::Duration;
/// use converse::Config;
///
/// let config = Config::new()
///     .with_max_message_len(1 << 20)
///     .with_read_timeout(Some(Duration::from_secs(10)))
///     .with_backlog(128);
/// assert_eq!(config.max_message_len(), 1 << 20);
/// assert_eq!(config.linger(), Config::DEFAULT_LINGER);
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) max_message_len: usize,
    pub(crate) message_deadline: Duration,
    pub(crate) linger: Duration,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) accept_timeout: Option<Duration>,
    pub(crate) nodelay: bool,
    pub(crate) backlog: i32,
    pub(crate) only_v6: Option<bool>,
    pub(crate) send_buffer: usize,
    pub(crate) socket_send_buffer: Option<usize>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_peers: usize,
    pub(crate) queue_depth: usize,
    pub(crate) max_queued_bytes: usize,
    pub(crate) spin: Option<Duration>,
    pub(crate) framing: Framing,
    pub(crate) max_backlog: usize,
    pub(crate) memory_budget: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) ping_interval: Duration,
    #[cfg(feature = "tls")]
    pub(crate) tls_client: Option<crate::tls::TlsClient>,
    #[cfg(feature = "tls")]
    pub(crate) tls_server: Option<crate::tls::TlsServer>,
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl Config {
    /// The default largest message: 8 MiB.
    pub const DEFAULT_MAX_MESSAGE_LEN: usize = LengthDelimited::DEFAULT_MAX_MESSAGE_LEN;
    /// The default per-message deadline: 30 s.
    pub const DEFAULT_MESSAGE_DEADLINE: Duration = Duration::from_secs(30);
    /// The default time a graceful close waits for the peer's end: 5 s.
    pub const DEFAULT_LINGER: Duration = Duration::from_secs(5);
    /// The default listen backlog: 5, as in the tutorial's `listen(5)`.
    pub const DEFAULT_BACKLOG: i32 = 5;
    /// The default size of the user-space send buffer used by batching:
    /// 64 KiB.
    pub const DEFAULT_SEND_BUFFER: usize = 64 * 1024;
    /// The default idle timeout of a UDP conversation: 120 s.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
    /// The default cap on concurrent peers of a UDP listener: 1024.
    pub const DEFAULT_MAX_PEERS: usize = 1024;
    /// The default depth of a UDP conversation's receive queue: 256
    /// datagrams.
    pub const DEFAULT_QUEUE_DEPTH: usize = 256;
    /// The default cap on bytes queued in a UDP listener, all peers
    /// together: 32 MiB.
    pub const DEFAULT_MAX_QUEUED_BYTES: usize = 32 * 1024 * 1024;
    /// The default time a handshake (TLS, the WebSocket upgrade, NATS's
    /// `CONNECT`) may take: 10 s.
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default interval between pings to a quiet NATS server: 2 min.
    pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(120);
    /// The default backlog of a conversation on a switchboard: 1 MiB.
    pub const DEFAULT_MAX_BACKLOG: usize = 1024 * 1024;
    /// The default memory budget of a switchboard, all its conversations
    /// together: 256 MiB.
    pub const DEFAULT_MEMORY_BUDGET: usize = 256 * 1024 * 1024;

    /// The defaults: messages up to 8 MiB, a 30 s per-message deadline, a
    /// 5 s linger on close, no read or write timeout, no connect timeout
    /// beyond the system's, `TCP_NODELAY` on, backlog 5, a 64 KiB batching
    /// buffer; for UDP, a 120 s idle timeout, at most 1024 peers per
    /// listener, 256 datagrams queued per peer and 32 MiB queued in all.
    pub const fn new() -> Self {
        Config {
            max_message_len: Self::DEFAULT_MAX_MESSAGE_LEN,
            message_deadline: Self::DEFAULT_MESSAGE_DEADLINE,
            linger: Self::DEFAULT_LINGER,
            read_timeout: None,
            write_timeout: None,
            connect_timeout: None,
            accept_timeout: None,
            nodelay: true,
            backlog: Self::DEFAULT_BACKLOG,
            only_v6: None,
            send_buffer: Self::DEFAULT_SEND_BUFFER,
            socket_send_buffer: None,
            idle_timeout: Some(Self::DEFAULT_IDLE_TIMEOUT),
            max_peers: Self::DEFAULT_MAX_PEERS,
            queue_depth: Self::DEFAULT_QUEUE_DEPTH,
            max_queued_bytes: Self::DEFAULT_MAX_QUEUED_BYTES,
            spin: None,
            max_backlog: Self::DEFAULT_MAX_BACKLOG,
            memory_budget: Self::DEFAULT_MEMORY_BUDGET,
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
            ping_interval: Self::DEFAULT_PING_INTERVAL,
            #[cfg(feature = "tls")]
            tls_client: None,
            #[cfg(feature = "tls")]
            tls_server: None,
            framing: Framing::Length {
                width: Width::U32,
                big_endian: true,
            },
        }
    }

    /// The largest message sent or accepted (default 8 MiB). A transport may
    /// lower it to what it can carry (UDP: 65,507 bytes over IPv4; NATS:
    /// the server's `max_payload`).
    #[must_use]
    pub fn with_max_message_len(mut self, len: usize) -> Self {
        self.max_message_len = len;
        self
    }

    /// The largest message.
    pub fn max_message_len(&self) -> usize {
        self.max_message_len
    }

    /// Once the first byte of a message has arrived, the whole message must
    /// arrive within this time (default 30 s), or the receive fails with
    /// [`Error::DeadlineExceeded`](crate::Error::DeadlineExceeded). This stops
    /// a peer that trickles one byte just inside every read timeout.
    #[must_use]
    pub fn with_message_deadline(mut self, deadline: Duration) -> Self {
        self.message_deadline = deadline;
        self
    }

    /// The per-message deadline.
    pub fn message_deadline(&self) -> Duration {
        self.message_deadline
    }

    /// How long a graceful close waits for the peer's end after ending our
    /// side (default 5 s).
    #[must_use]
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// The linger time of a graceful close.
    pub fn linger(&self) -> Duration {
        self.linger
    }

    /// The initial read timeout (default none: receives block).
    #[must_use]
    pub fn with_read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    /// The initial write timeout (default none: sends block).
    #[must_use]
    pub fn with_write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }

    /// How long a connect may take (default: the system's own limit).
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }

    /// How long a listener's `accept` waits for a peer before it returns
    /// [`Error::Timeout`](crate::Error::Timeout) (default none: it waits as
    /// long as it takes). Listeners also have `set_accept_timeout`.
    #[must_use]
    pub fn with_accept_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.accept_timeout = timeout;
        self
    }

    /// The accept timeout.
    pub fn accept_timeout(&self) -> Option<Duration> {
        self.accept_timeout
    }

    /// `TCP_NODELAY` (default on: a message is sent at once, not held back by
    /// Nagle's algorithm).
    #[must_use]
    pub fn with_nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> bool {
        self.nodelay
    }

    /// The listen backlog: how many connections wait for `accept` (default 5).
    #[must_use]
    pub fn with_backlog(mut self, backlog: i32) -> Self {
        self.backlog = backlog;
        self
    }

    /// The listen backlog.
    pub fn backlog(&self) -> i32 {
        self.backlog
    }

    /// `IPV6_V6ONLY` for listeners bound to an IPv6 address (default: the
    /// system's own default).
    #[must_use]
    pub fn with_only_v6(mut self, only_v6: bool) -> Self {
        self.only_v6 = Some(only_v6);
        self
    }

    /// `IPV6_V6ONLY`, if it was set.
    pub fn only_v6(&self) -> Option<bool> {
        self.only_v6
    }

    /// The kernel's send buffer of each TCP connection (`SO_SNDBUF`), or
    /// `None` for the system's (default; Linux grows it as needed, up to
    /// 4 MiB). What the kernel holds for a peer that does not read is
    /// memory too, the machine's, and a switchboard sees a slow peer's
    /// outbox grow only once that buffer is full: a server that bounds
    /// what it holds per peer may bound this as well (the kernel doubles
    /// the figure for its bookkeeping).
    #[must_use]
    pub fn with_socket_send_buffer(mut self, bytes: Option<usize>) -> Self {
        self.socket_send_buffer = bytes;
        self
    }

    /// The kernel's send buffer of each TCP connection, if set.
    pub fn socket_send_buffer(&self) -> Option<usize> {
        self.socket_send_buffer
    }

    /// The size of the user-space buffer that batches small messages before a
    /// flush (default 64 KiB, at least 64 bytes). Feeding more than this
    /// flushes first: memory stays bounded.
    #[must_use]
    pub fn with_send_buffer(mut self, bytes: usize) -> Self {
        self.send_buffer = bytes.max(64);
        self
    }

    /// The batching buffer's size.
    pub fn send_buffer(&self) -> usize {
        self.send_buffer
    }

    /// UDP: a conversation that receives nothing for this long ends (its
    /// receive reports the end, and a listener forgets the peer). Default
    /// 120 s; `None` never ends a conversation for silence.
    #[must_use]
    pub fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The idle timeout of datagram conversations.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// UDP listener: the most peers with a conversation at once (default
    /// 1024, at least 1). Datagrams from new sources beyond it are dropped
    /// and counted, so a flood of spoofed sources cannot exhaust memory.
    #[must_use]
    pub fn with_max_peers(mut self, peers: usize) -> Self {
        self.max_peers = peers.max(1);
        self
    }

    /// The cap on a UDP listener's peers.
    pub fn max_peers(&self) -> usize {
        self.max_peers
    }

    /// UDP listener: how many datagrams wait for one conversation's receive
    /// (default 256, at least 1). Beyond it datagrams are dropped, as UDP
    /// would, and counted.
    #[must_use]
    pub fn with_queue_depth(mut self, depth: usize) -> Self {
        self.queue_depth = depth.max(1);
        self
    }

    /// The depth of a UDP listener conversation's queue.
    pub fn queue_depth(&self) -> usize {
        self.queue_depth
    }

    /// UDP listener: the most bytes waiting in all conversations' queues
    /// together (default 32 MiB). Beyond it datagrams are dropped and counted.
    #[must_use]
    pub fn with_max_queued_bytes(mut self, bytes: usize) -> Self {
        self.max_queued_bytes = bytes;
        self
    }

    /// The cap on bytes queued in a UDP listener.
    pub fn max_queued_bytes(&self) -> usize {
        self.max_queued_bytes
    }

    /// Latency mode for blocking stream receives: poll for up to `spin`
    /// before blocking (default off). Trades CPU for latency; see
    /// [`StreamReceiver::set_spin`](crate::transport::StreamReceiver::set_spin).
    #[must_use]
    pub fn with_spin(mut self, spin: Option<Duration>) -> Self {
        self.spin = spin.filter(|s| !s.is_zero());
        self
    }

    /// The latency mode's spin, if on.
    pub fn spin(&self) -> Option<Duration> {
        self.spin
    }

    /// A switchboard's bound on what waits to be sent to one conversation,
    /// in bytes (default 1 MiB), pongs and close frames included. A send
    /// past it ends that conversation as a slow consumer
    /// ([`Error::SlowConsumer`](crate::Error::SlowConsumer)), so a peer
    /// that does not read costs its own outbox and nothing else;
    /// `Switchboard::try_send` lets the caller decide instead.
    #[must_use]
    pub fn with_max_backlog(mut self, bytes: usize) -> Self {
        self.max_backlog = bytes;
        self
    }

    /// A switchboard conversation's backlog limit.
    pub fn max_backlog(&self) -> usize {
        self.max_backlog
    }

    /// The most bytes a switchboard holds for all its conversations
    /// together (default 256 MiB): what they have received of messages not
    /// yet whole, and their outboxes. Each conversation's own bounds (the
    /// largest message, the backlog) hold each one; this one holds their
    /// sum, so that many peers each within their bounds (a thousand
    /// unfinished 8 MiB messages, one large message relayed to every
    /// member) cannot take the server's memory. When a read or a send
    /// would pass it, the conversations holding the most are ended
    /// ([`Error::OverBudget`](crate::Error::OverBudget), reset) until it
    /// fits; the others go on. A switchboard refuses a budget smaller than
    /// its largest message.
    #[must_use]
    pub fn with_memory_budget(mut self, bytes: usize) -> Self {
        self.memory_budget = bytes;
        self
    }

    /// A switchboard's memory budget.
    pub fn memory_budget(&self) -> usize {
        self.memory_budget
    }

    /// How long a handshake may take, from the connection on (default
    /// 10 s): TLS, the WebSocket upgrade, NATS's `CONNECT`. A peer that
    /// says nothing, or trickles its hello, costs one connection for this
    /// long at most.
    #[must_use]
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The handshake timeout.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// How long a NATS server may stay quiet before it is pinged (default
    /// 2 min, as the NATS clients do); two pings unanswered end the
    /// conversation. A zero interval is refused.
    #[must_use]
    pub fn with_ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// The NATS ping interval.
    pub fn ping_interval(&self) -> Duration {
        self.ping_interval
    }

    /// Whom a TLS client trusts and what it presents (default: Mozilla's
    /// roots, no client certificate). Feature `tls`.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    #[must_use]
    pub fn with_tls_client(mut self, client: crate::tls::TlsClient) -> Self {
        self.tls_client = Some(client);
        self
    }

    /// The TLS client settings, if given. Feature `tls`.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_client(&self) -> Option<&crate::tls::TlsClient> {
        self.tls_client.as_ref()
    }

    /// What a TLS listener presents (required to listen on `tls://` and
    /// `wss://`). Feature `tls`.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    #[must_use]
    pub fn with_tls_server(mut self, server: crate::tls::TlsServer) -> Self {
        self.tls_server = Some(server);
        self
    }

    /// The TLS server settings, if given. Feature `tls`.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_server(&self) -> Option<&crate::tls::TlsServer> {
        self.tls_server.as_ref()
    }

    /// How messages are delimited on a stream transport (default: a 4-byte
    /// big-endian length). UDP ignores it: a datagram is a message.
    #[must_use]
    pub fn with_framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// The framing.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Refuses a configuration that cannot work: a zero read, write,
    /// connect or accept timeout, a zero per-message deadline, handshake
    /// timeout, ping interval or idle timeout. Every constructor that takes
    /// a `Config` calls it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use converse::Config;
    ///
    /// assert!(Config::new().validate().is_ok());
    /// let zero = Config::new().with_read_timeout(Some(Duration::ZERO));
    /// assert_eq!(zero.validate().unwrap_err().setting, "read_timeout");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_timeout("read_timeout", self.read_timeout)?;
        check_timeout("write_timeout", self.write_timeout)?;
        check_timeout("connect_timeout", self.connect_timeout)?;
        check_timeout("accept_timeout", self.accept_timeout)?;
        check_deadline(self.message_deadline)?;
        if self.handshake_timeout.is_zero() {
            return Err(ConfigError {
                setting: "handshake_timeout",
                reason: "a zero handshake timeout would refuse every peer that needs one",
            });
        }
        if self.ping_interval.is_zero() {
            return Err(ConfigError {
                setting: "ping_interval",
                reason: "a zero ping interval would ping without pause",
            });
        }
        if self.idle_timeout == Some(Duration::ZERO) {
            return Err(ConfigError {
                setting: "idle_timeout",
                reason: "a zero idle timeout would end every conversation at once \
                         (use None to never end one for silence)",
            });
        }
        Ok(())
    }
}
