//! An in-memory transport: two conversations joined by bounded queues, for
//! testing protocol logic without sockets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{check_timeout, Transport, TransportRecv, TransportSend};
use crate::addr::Addr;
use crate::config::Config;
use crate::conversation::Conversation;
use crate::error::{Error, Result};
use crate::queue::{PopError, PushError, Queue};

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// One end of an in-memory pair (see [`Memory::pair`]).
///
/// It behaves like a stream transport without the network: messages arrive
/// whole and in order, nothing is lost, the queue in each direction is
/// bounded ([`Config::queue_depth`], default 256 messages) so a sender
/// blocks (or times out) when its peer does not keep up, and closing or
/// dropping one end is the clean end for the other once it has received
/// everything sent before.
///
/// ```
/// use converse::Memory;
///
/// let (mut a, mut b) = Memory::pair();
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
    send: MemorySend,
    recv: MemoryRecv,
}

impl Memory {
    /// Two connected conversations, with the default [`Config`].
    pub fn pair() -> (Conversation<Memory>, Conversation<Memory>) {
        Memory::pair_with(&Config::default())
    }

    /// Two connected conversations with `config` (its largest message, queue
    /// depth and timeouts apply to both ends).
    pub fn pair_with(config: &Config) -> (Conversation<Memory>, Conversation<Memory>) {
        let a_to_b = Arc::new(Queue::new(config.queue_depth));
        let b_to_a = Arc::new(Queue::new(config.queue_depth));
        let id = NEXT_ID.fetch_add(2, Ordering::Relaxed);
        let end = |tx: &Arc<Queue<Bytes>>, rx: &Arc<Queue<Bytes>>, local: u64, peer: u64| Memory {
            send: MemorySend {
                queue: Arc::clone(tx),
                local,
                peer,
                max: config.max_message_len,
                timeout: config.write_timeout,
                closed: false,
            },
            recv: MemoryRecv {
                queue: Arc::clone(rx),
                peer,
                timeout: config.read_timeout,
                ended: false,
            },
        };
        (
            Conversation::new(end(&a_to_b, &b_to_a, id, id + 1)),
            Conversation::new(end(&b_to_a, &a_to_b, id + 1, id)),
        )
    }
}

impl Transport for Memory {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.send.send(msg)
    }

    fn recv(&mut self) -> Result<Option<Bytes>> {
        self.recv.recv()
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(Addr::Memory(self.send.local))
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(Addr::Memory(self.send.peer))
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.recv.set_read_timeout(timeout)
    }

    fn read_timeout(&self) -> Option<Duration> {
        self.recv.timeout
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.send.set_write_timeout(timeout)
    }

    fn write_timeout(&self) -> Option<Duration> {
        self.send.timeout
    }

    /// Ends our direction (the peer receives everything sent, then the end)
    /// and stops receiving.
    fn close(&mut self) -> Result<()> {
        self.send.close()?;
        self.recv.stop();
        Ok(())
    }

    /// Like `close`, but what the peer has not received yet is discarded.
    fn abort(&mut self) -> Result<()> {
        drop(self.send.queue.close_rx());
        self.close()
    }

    fn max_message_len(&self) -> usize {
        self.send.max
    }

    fn is_stream(&self) -> bool {
        true
    }

    fn split(self: Box<Self>) -> Result<(Box<dyn TransportSend>, Box<dyn TransportRecv>)> {
        let Memory { send, recv } = *self;
        Ok((Box::new(send), Box::new(recv)))
    }
}

#[derive(Debug)]
struct MemorySend {
    queue: Arc<Queue<Bytes>>,
    local: u64,
    peer: u64,
    max: usize,
    timeout: Option<Duration>,
    closed: bool,
}

impl TransportSend for MemorySend {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        if self.closed {
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
            Err(PushError::Closed(_)) => Err(Error::BrokenPipe {
                addr: Addr::Memory(self.peer),
            }),
        }
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(Addr::Memory(self.peer))
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.timeout = check_timeout(timeout, &Addr::Memory(self.peer))?;
        Ok(())
    }

    fn write_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn close(&mut self) -> Result<()> {
        self.closed = true;
        self.queue.close_tx();
        Ok(())
    }
}

impl Drop for MemorySend {
    fn drop(&mut self) {
        self.queue.close_tx();
    }
}

#[derive(Debug)]
struct MemoryRecv {
    queue: Arc<Queue<Bytes>>,
    peer: u64,
    timeout: Option<Duration>,
    ended: bool,
}

impl MemoryRecv {
    fn stop(&mut self) {
        self.ended = true;
        drop(self.queue.close_rx());
    }
}

impl TransportRecv for MemoryRecv {
    fn recv(&mut self) -> Result<Option<Bytes>> {
        if self.ended {
            return Err(Error::Closed);
        }
        match self.queue.pop(self.timeout) {
            Ok(msg) => Ok(Some(msg)),
            Err(PopError::Timeout) => Err(Error::Timeout),
            Err(PopError::Ended) => Ok(None),
        }
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(Addr::Memory(self.peer))
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.timeout = check_timeout(timeout, &Addr::Memory(self.peer))?;
        Ok(())
    }

    fn read_timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

impl Drop for MemoryRecv {
    fn drop(&mut self) {
        drop(self.queue.close_rx());
    }
}
