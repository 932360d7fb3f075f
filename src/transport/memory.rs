//! An in-memory transport: two ends joined by bounded queues, for testing
//! protocol logic without sockets.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::bounded_queue::{PopError, PushError, Queue};
use super::{Delivery, Receiver, Sender, Stopper, Transport};
use crate::addr::Addr;
use crate::config::{check_timeout, Config};
use crate::error::{Error, Result};

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// One end of an in-memory pair (see [`Memory::pair`]).
///
/// It behaves like a stream transport without the network: messages arrive
/// whole and in order, nothing is lost, the queue in each direction is
/// bounded ([`Config::queue_depth`], default 256 messages) so a sender
/// blocks (or times out, taking nothing) when its peer does not keep up, and
/// closing or dropping one end is the clean end for the other once it has
/// received everything sent before. Aborting one end is a reset for the
/// other.
///
/// ```
/// use converse::{Conversation, Memory};
///
/// let (a, b) = Memory::pair();
/// let (mut a, mut b) = (Conversation::new(a), Conversation::new(b));
/// a.send("ping")?;
/// assert_eq!(b.recv_text()?.as_deref(), Some("ping"));
/// b.send("pong")?;
/// b.close()?;
/// assert_eq!(a.recv_text()?.as_deref(), Some("pong"));
/// assert_eq!(a.recv()?, None); // b's clean end
/// # Ok::<(), converse::Error>(())
/// ```
#[derive(Debug)]
pub struct Memory {
    tx: MemorySender,
    rx: MemoryReceiver,
}

impl Transport for Memory {
    type Sender = MemorySender;
    type Receiver = MemoryReceiver;

    fn into_halves(self) -> (MemorySender, MemoryReceiver) {
        (self.tx, self.rx)
    }
}

impl Memory {
    /// Two connected ends, with the default [`Config`].
    pub fn pair() -> (Memory, Memory) {
        Memory::pair_with(&Config::default()).expect("the default configuration is valid")
    }

    /// Two connected ends with `config` (its largest message, queue depth,
    /// timeouts and linger apply to both).
    pub fn pair_with(config: &Config) -> Result<(Memory, Memory)> {
        config.validate()?;
        let a_to_b = Arc::new(Queue::new(config.queue_depth));
        let b_to_a = Arc::new(Queue::new(config.queue_depth));
        let id = NEXT_ID.fetch_add(2, Ordering::Relaxed);
        let end = |tx: &Arc<Queue<Bytes>>, rx: &Arc<Queue<Bytes>>, local: u64, peer: u64| {
            let stopped = Arc::new(AtomicBool::new(false));
            Memory {
                tx: MemorySender {
                    queue: Arc::clone(tx),
                    back: Arc::clone(rx),
                    stopped: Arc::clone(&stopped),
                    local,
                    peer,
                    max: config.max_message_len,
                    timeout: config.write_timeout,
                    linger: config.linger,
                    closed: false,
                },
                rx: MemoryReceiver {
                    queue: Arc::clone(rx),
                    back: Arc::clone(tx),
                    stopped,
                    local,
                    peer,
                    max: config.max_message_len,
                    timeout: config.read_timeout,
                    ended: false,
                },
            }
        };
        Ok((
            end(&a_to_b, &b_to_a, id, id + 1),
            end(&b_to_a, &a_to_b, id + 1, id),
        ))
    }
}

fn stopper(flag: &Arc<AtomicBool>, out: &Arc<Queue<Bytes>>, into: &Arc<Queue<Bytes>>) -> Stopper {
    let (flag, out, into) = (Arc::clone(flag), Arc::clone(out), Arc::clone(into));
    Stopper::from_fn(move || {
        flag.store(true, Ordering::Relaxed);
        out.close_tx();
        drop(into.close_rx());
    })
}

/// The sending half of a [`Memory`] end.
#[derive(Debug)]
pub struct MemorySender {
    queue: Arc<Queue<Bytes>>,
    /// The queue the other half receives from (for the stopper).
    back: Arc<Queue<Bytes>>,
    stopped: Arc<AtomicBool>,
    local: u64,
    peer: u64,
    max: usize,
    timeout: Option<Duration>,
    linger: Duration,
    closed: bool,
}

impl Sender for MemorySender {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        if self.closed || self.stopped.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        if msg.len() > self.max {
            return Err(Error::MessageTooLarge {
                len: msg.len() as u64,
                max: self.max as u64,
            });
        }
        match self.queue.push(Bytes::copy_from_slice(msg), self.timeout) {
            Ok(()) => Ok(()),
            Err(PushError::Full(_)) => Err(Error::Timeout),
            Err(PushError::Closed(_)) if self.stopped.load(Ordering::Relaxed) => Err(Error::Closed),
            Err(PushError::Closed(_)) => Err(Error::BrokenPipe {
                addr: Addr::Memory(self.peer),
            }),
        }
    }

    fn finish(&mut self, _until: Instant) -> Result<()> {
        self.closed = true;
        self.queue.close_tx();
        Ok(())
    }

    fn abort(&mut self) {
        self.closed = true;
        self.queue.reset_tx();
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(Addr::Memory(self.peer))
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(Addr::Memory(self.local))
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.timeout = check_timeout("write_timeout", timeout)?;
        Ok(())
    }

    fn write_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn linger(&self) -> Duration {
        self.linger
    }

    fn set_linger(&mut self, linger: Duration) {
        self.linger = linger;
    }

    fn max_message_len(&self) -> usize {
        self.max
    }

    fn stopper(&self) -> Option<Stopper> {
        Some(stopper(&self.stopped, &self.queue, &self.back))
    }
}

impl Drop for MemorySender {
    fn drop(&mut self) {
        self.queue.close_tx();
    }
}

/// The receiving half of a [`Memory`] end.
#[derive(Debug)]
pub struct MemoryReceiver {
    queue: Arc<Queue<Bytes>>,
    /// The queue the other half sends into (for the stopper).
    back: Arc<Queue<Bytes>>,
    stopped: Arc<AtomicBool>,
    local: u64,
    peer: u64,
    max: usize,
    timeout: Option<Duration>,
    ended: bool,
}

impl MemoryReceiver {
    fn pop(&mut self, timeout: Option<Duration>) -> Result<Option<Bytes>> {
        if self.ended {
            return Ok(None);
        }
        if self.stopped.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        match self.queue.pop(timeout) {
            Ok(msg) => Ok(Some(msg)),
            Err(PopError::Timeout) => Err(Error::Timeout),
            Err(_) if self.stopped.load(Ordering::Relaxed) => Err(Error::Closed),
            Err(PopError::Ended) => {
                self.ended = true;
                Ok(None)
            }
            Err(PopError::Reset) => Err(Error::ConnectionReset {
                addr: Addr::Memory(self.peer),
            }),
        }
    }
}

impl Receiver for MemoryReceiver {
    fn recv(&mut self) -> Result<Option<Bytes>> {
        self.pop(self.timeout)
    }

    fn drain(&mut self, until: Instant) -> Result<Delivery> {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Delivery::Unknown);
            }
            match self.pop(Some(left)) {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(Delivery::Confirmed),
                Err(Error::Timeout | Error::Closed) => return Ok(Delivery::Unknown),
                Err(e) => return Err(e),
            }
        }
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(Addr::Memory(self.peer))
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(Addr::Memory(self.local))
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.timeout = check_timeout("read_timeout", timeout)?;
        Ok(())
    }

    fn read_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn max_message_len(&self) -> usize {
        self.max
    }

    fn stopper(&self) -> Option<Stopper> {
        Some(stopper(&self.stopped, &self.back, &self.queue))
    }
}

impl Drop for MemoryReceiver {
    fn drop(&mut self) {
        drop(self.queue.close_rx());
    }
}
