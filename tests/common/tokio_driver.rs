//! The tokio driver as a scenario driver: each async conversation is split
//! into its halves, and each half is seen through the blocking API, as a
//! transport of the tests' own ([`TokioTransport`]), whose calls run the
//! async ones on a runtime shared by the pair, so that one scenario runs
//! on the three drivers.
//!
//! The mapping says what each blocking promise is on tokio: a blocking
//! timeout is `tokio::time::timeout` around the async call, i.e. a future
//! dropped at its deadline, so every scenario about timeouts is one about
//! cancellation. A `send` is the async `send`: it takes its message at its
//! first poll and waits for the writing up to the write timeout (past it,
//! the rest goes with the next call); a `send` that finds the last message
//! still being written waits for it, up to the write timeout, and then
//! takes nothing ([`Error::Timeout`]). `close` is the sending half's close, then
//! the receiving half's; a stopper wakes whichever call waits, and the
//! conversation is aborted by its next use or its drop.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use converse::tokio::{Conversation, RecvHalf, SendHalf};
use converse::transport::{Receiver, Sender, Stopper, Transport};
use converse::{Addr, Config, Delivery, Error, Result};

use crate::common::T;

/// A runtime for the conversations of a pair: each of the tests' threads
/// polls its own calls, and whichever holds the runtime's core drives the
/// I/O and the timers for all.
pub fn runtime() -> Arc<tokio::runtime::Runtime> {
    Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    )
}

/// Set by a stopper; wakes whoever waits on it.
#[derive(Default)]
struct Stop {
    stopped: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl Stop {
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        for waker in std::mem::take(&mut *self.wakers.lock().unwrap()) {
            waker.wake();
        }
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Ready once stopped.
    async fn wait(&self) {
        poll_fn(|cx| {
            if self.is_stopped() {
                return Poll::Ready(());
            }
            self.wakers.lock().unwrap().push(cx.waker().clone());
            if self.is_stopped() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// How a call made within a time limit went.
enum Waited<T> {
    Done(T),
    TimedOut,
    Stopped,
}

/// Runs `call` on `rt` until it is done, `until` has passed (`None`: the
/// tests' bound `T`), or the conversation is stopped; the call's future is
/// dropped then, wherever it was.
fn within<F: Future>(
    rt: &tokio::runtime::Runtime,
    until: Option<Instant>,
    stop: &Stop,
    call: F,
) -> Waited<F::Output> {
    let until = until.unwrap_or_else(|| Instant::now() + T);
    rt.block_on(async {
        let mut call = pin!(tokio::time::timeout_at(until.into(), call));
        let mut stopped = pin!(stop.wait());
        poll_fn(|cx| {
            if let Poll::Ready(done) = call.as_mut().poll(cx) {
                return Poll::Ready(match done {
                    Ok(output) => Waited::Done(output),
                    Err(_) => Waited::TimedOut,
                });
            }
            if stopped.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Waited::Stopped);
            }
            Poll::Pending
        })
        .await
    })
}

/// One async conversation, seen through the blocking API.
pub struct TokioTransport {
    tx: TokioSender,
    rx: TokioReceiver,
}

impl TokioTransport {
    /// `conversation`, on `rt`, with the timeouts and linger of
    /// `config`, as a blocking conversation made with it would have.
    pub fn new(
        rt: &Arc<tokio::runtime::Runtime>,
        conversation: Conversation,
        config: &Config,
    ) -> TokioTransport {
        let max = conversation.max_message_len();
        let peer = conversation.peer_addr().clone();
        let local = conversation.local_addr().clone();
        let (rx, tx) = conversation.split();
        let stop = Arc::new(Stop::default());
        TokioTransport {
            tx: TokioSender {
                rt: Arc::clone(rt),
                half: Some(tx),
                stop: Arc::clone(&stop),
                write_timeout: config.write_timeout(),
                linger: config.linger(),
                max,
                peer: peer.clone(),
                local,
            },
            rx: TokioReceiver {
                rt: Arc::clone(rt),
                half: Some(rx),
                stop,
                read_timeout: config.read_timeout(),
                max,
                peer,
            },
        }
    }
}

impl Transport for TokioTransport {
    type Sender = TokioSender;
    type Receiver = TokioReceiver;

    fn into_halves(self) -> (TokioSender, TokioReceiver) {
        (self.tx, self.rx)
    }
}

fn stopper(stop: &Arc<Stop>) -> Stopper {
    let stop = Arc::clone(stop);
    Stopper::from_fn(move || stop.stop())
}

/// The sending half.
pub struct TokioSender {
    rt: Arc<tokio::runtime::Runtime>,
    /// `None` once closed or aborted.
    half: Option<SendHalf>,
    stop: Arc<Stop>,
    write_timeout: Option<Duration>,
    linger: Duration,
    max: usize,
    peer: Addr,
    local: Addr,
}

impl TokioSender {
    /// The half, if it may still be used; a stopped one is aborted.
    fn half(&mut self) -> Result<&mut SendHalf> {
        if self.stop.is_stopped() {
            if let Some(half) = self.half.take() {
                half.abort();
            }
        }
        self.half.as_mut().ok_or(Error::Closed)
    }

    fn offer(&mut self, msg: &[u8], text: bool) -> Result<()> {
        let until = self.write_timeout.map(|t| Instant::now() + t);
        let (rt, stop) = (Arc::clone(&self.rt), Arc::clone(&self.stop));
        let half = self.half()?;
        if half.queued() > 0 {
            // The last message is still being written: wait for it,
            // within the write timeout; past it, nothing was taken.
            match within(&rt, until, &stop, half.flush()) {
                Waited::Done(flushed) => flushed?,
                Waited::TimedOut => return Err(Error::Timeout),
                Waited::Stopped => return Err(Error::Closed),
            }
        }
        // Taken at the first poll; then written within the write timeout,
        // or by the next call past it.
        let now = Some(Instant::now());
        let sent = if text {
            let text = std::str::from_utf8(msg).expect("text");
            within(&rt, now, &stop, half.send_text(text))
        } else {
            within(&rt, now, &stop, half.send(msg))
        };
        match sent {
            Waited::Done(sent) => return sent,
            Waited::TimedOut => {}
            Waited::Stopped => return Err(Error::Closed),
        }
        match within(&rt, until, &stop, half.flush()) {
            Waited::Done(flushed) => flushed,
            Waited::TimedOut => Ok(()),
            Waited::Stopped => Err(Error::Closed),
        }
    }
}

impl Sender for TokioSender {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.offer(msg, false)
    }

    fn send_text(&mut self, text: &str) -> Result<()> {
        self.offer(text.as_bytes(), true)
    }

    fn flush(&mut self) -> Result<()> {
        let until = Instant::now() + self.write_timeout.unwrap_or(T);
        let (rt, stop) = (Arc::clone(&self.rt), Arc::clone(&self.stop));
        match within(&rt, Some(until), &stop, self.half()?.flush()) {
            Waited::Done(flushed) => flushed,
            Waited::TimedOut => Err(Error::Timeout),
            Waited::Stopped => Err(Error::Closed),
        }
    }

    fn queued(&self) -> usize {
        self.half.as_ref().map_or(0, SendHalf::queued)
    }

    fn finish(&mut self, until: Instant) -> Result<()> {
        if self.half().is_err() {
            return Ok(());
        }
        let half = self.half.take().expect("checked above");
        match within(&self.rt, Some(until), &self.stop, half.close()) {
            Waited::Done(closed) => closed,
            // The receiving half's close waits for the rest (the linger is
            // the connection's own deadline).
            Waited::TimedOut | Waited::Stopped => Ok(()),
        }
    }

    fn abort(&mut self) {
        if let Some(half) = self.half.take() {
            half.abort();
        }
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(self.peer.clone())
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(self.local.clone())
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        Config::new().with_write_timeout(timeout).validate()?;
        self.write_timeout = timeout;
        Ok(())
    }

    fn write_timeout(&self) -> Option<Duration> {
        self.write_timeout
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
        Some(stopper(&self.stop))
    }
}

impl Drop for TokioSender {
    fn drop(&mut self) {
        // As a blocking conversation's drop: what was taken goes out, then
        // the end (an async program closes its sending half).
        if self.half().is_ok() {
            let half = self.half.take().expect("checked above");
            let until = Instant::now() + self.linger + self.write_timeout.unwrap_or(T);
            let _ = within(&self.rt, Some(until), &self.stop, half.close());
        }
    }
}

/// The receiving half.
pub struct TokioReceiver {
    rt: Arc<tokio::runtime::Runtime>,
    /// `None` once closed.
    half: Option<RecvHalf>,
    stop: Arc<Stop>,
    read_timeout: Option<Duration>,
    max: usize,
    peer: Addr,
}

impl Receiver for TokioReceiver {
    fn recv(&mut self) -> Result<Option<Bytes>> {
        if self.stop.is_stopped() {
            return Err(Error::Closed);
        }
        let until = self.read_timeout.map(|t| Instant::now() + t);
        let half = self.half.as_mut().ok_or(Error::Closed)?;
        match within(&self.rt, until, &self.stop, half.recv()) {
            Waited::Done(received) => received,
            Waited::TimedOut => Err(Error::Timeout),
            Waited::Stopped => Err(Error::Closed),
        }
    }

    fn drain(&mut self, until: Instant) -> Result<Delivery> {
        let Some(half) = self.half.take() else {
            return Ok(Delivery::Unknown);
        };
        if self.stop.is_stopped() {
            return Ok(Delivery::Unknown);
        }
        // Bounded by a little more than the linger (the connection keeps
        // the time).
        let until = until + Duration::from_secs(1);
        match within(&self.rt, Some(until), &self.stop, half.close()) {
            Waited::Done(closed) => closed,
            Waited::TimedOut | Waited::Stopped => Ok(Delivery::Unknown),
        }
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(self.peer.clone())
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        Config::new().with_read_timeout(timeout).validate()?;
        self.read_timeout = timeout;
        Ok(())
    }

    fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    fn max_message_len(&self) -> usize {
        self.max
    }

    fn stopper(&self) -> Option<Stopper> {
        Some(stopper(&self.stop))
    }
}
