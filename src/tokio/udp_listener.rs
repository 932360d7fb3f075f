//! The UDP listener on tokio: one bound socket and one task that receives
//! every datagram and hands it to the conversation of its source, as the
//! blocking listener's thread does. The decisions (which conversation, kept
//! or dropped, when a silent peer is forgotten) are the [`Demux`]'s; the
//! replies go out from the listener's socket.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Wake, Waker};
use std::time::Instant;

use bytes::Bytes;
use tokio::net::UdpSocket;

use crate::addr::Addr;
use crate::config::Config;
use crate::connection::datagram::Datagrams;
use crate::connection::demux::{Admit, Demux, Limits, Taken, UdpStats};
use crate::connection::Delivery;
use crate::error::{Error, Result};
use crate::transport::udp::payload_limit;
use crate::transport::udp_listener::{Item, Received};

#[derive(Debug, Default)]
struct Slot {
    items: VecDeque<Item>,
    /// The task waiting for this conversation's next datagram.
    waker: Option<Waker>,
    /// Idle (or the listener is gone): after `items`, the end.
    ended: bool,
}

impl Slot {
    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

#[derive(Debug)]
struct State {
    demux: Demux,
    slots: HashMap<u64, Slot>,
    /// New sources, waiting for `accept`.
    accepts: VecDeque<(SocketAddr, u64)>,
    accept_waker: Option<Waker>,
    /// The listener is gone: no more accepts, every receive ends.
    gone: bool,
}

/// The socket and the conversations' queues, shared by the listener, its
/// task and its conversations.
#[derive(Debug)]
pub(super) struct Shared {
    socket: UdpSocket,
    local: SocketAddr,
    /// The receive limit of the socket's family.
    max: usize,
    config: Config,
    state: Mutex<State>,
    /// The conversations waiting for room in the socket's send buffer,
    /// woken together (the socket keeps one waker).
    senders: Arc<SendWaiters>,
}

#[derive(Debug, Default)]
struct SendWaiters {
    wakers: Mutex<Vec<Waker>>,
}

impl Wake for SendWaiters {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let wakers = std::mem::take(&mut *lock(&self.wakers));
        for waker in wakers {
            waker.wake();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Datagrams handed to the conversations under one lock, at most.
const BATCH: usize = 64;

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn peer_max(&self, peer: &SocketAddr) -> usize {
        payload_limit(peer, self.config.max_message_len)
    }

    /// Takes a bound socket and starts the dispatching task.
    pub(super) fn bind(
        (socket, addr): (std::net::UdpSocket, SocketAddr),
        config: &Config,
    ) -> Result<(Arc<Shared>, tokio::task::JoinHandle<()>)> {
        let local = socket.local_addr().unwrap_or(addr);
        let io = |e| Error::from_io(e, &Addr::Udp(local));
        socket.set_nonblocking(true).map_err(io)?;
        let socket = UdpSocket::from_std(socket).map_err(io)?;
        let shared = Arc::new(Shared {
            max: config
                .max_message_len
                .min(payload_limit(&local, usize::MAX)),
            socket,
            local,
            state: Mutex::new(State {
                demux: Demux::new(Limits::of(config)),
                slots: HashMap::new(),
                accepts: VecDeque::new(),
                accept_waker: None,
                gone: false,
            }),
            senders: Arc::new(SendWaiters::default()),
            config: config.clone(),
        });
        let task = tokio::spawn(Arc::clone(&shared).dispatch());
        Ok((shared, task))
    }

    /// The task: drains the socket into the conversations' queues, and
    /// ends the conversations of peers silent for the idle timeout.
    async fn dispatch(self: Arc<Self>) {
        let mut buf = vec![0u8; self.max + 1];
        let mut batch: Vec<(SocketAddr, Item)> = Vec::with_capacity(BATCH);
        let mut next: Option<Instant> = None;
        let mut sleep = Box::pin(tokio::time::sleep(std::time::Duration::ZERO));
        loop {
            loop {
                let got = self.socket.try_recv_from(&mut buf);
                let drained = match Received::of(got, &buf, |from| self.peer_max(from)) {
                    Received::Datagram(from, item) => {
                        batch.push((from, item));
                        false
                    }
                    Received::Drained => true,
                    Received::Again => false,
                    Received::Failed => {
                        self.lock().demux.error();
                        // A socket error that will not go away: do not
                        // spin on it.
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        true
                    }
                };
                if drained || batch.len() == BATCH {
                    next = self.dispatch_all(&mut batch);
                }
                if drained {
                    break;
                }
            }
            if let Some(at) = next {
                sleep.as_mut().reset(at.into());
            }
            poll_fn(|cx| {
                if self.socket.poll_recv_ready(cx).is_ready() {
                    return Poll::Ready(());
                }
                match next {
                    Some(_) => sleep.as_mut().poll(cx),
                    None => Poll::Pending,
                }
            })
            .await;
        }
    }

    /// Hands `batch` to the conversations, ends those idle by now, and says
    /// when the next one may go idle: all under one lock.
    fn dispatch_all(&self, batch: &mut Vec<(SocketAddr, Item)>) -> Option<Instant> {
        let now = Instant::now();
        let mut state = self.lock();
        while let Some(id) = state.demux.expire(now) {
            if let Some(slot) = state.slots.get_mut(&id) {
                slot.ended = true;
                slot.wake();
            }
        }
        for (from, item) in batch.drain(..) {
            let truncated = matches!(item, Item::Truncated);
            match state.demux.datagram(now, from, item.size(), truncated) {
                Admit::Deliver(id) => {
                    if let Some(slot) = state.slots.get_mut(&id) {
                        slot.items.push_back(item);
                        slot.wake();
                    }
                }
                Admit::New(id) => {
                    let slot = Slot {
                        items: VecDeque::from([item]),
                        ..Slot::default()
                    };
                    state.slots.insert(id, slot);
                    state.accepts.push_back((from, id));
                    if let Some(waker) = state.accept_waker.take() {
                        waker.wake();
                    }
                }
                Admit::Dropped => {}
            }
        }
        state.demux.next_expiry()
    }

    /// The next new source's conversation.
    pub(super) fn poll_accept(self: &Arc<Self>, cx: &mut Context<'_>) -> Poll<Result<Peer>> {
        let mut state = self.lock();
        if let Some((from, id)) = state.accepts.pop_front() {
            return Poll::Ready(Ok(Peer::new(self, from, id)));
        }
        if state.gone {
            return Poll::Ready(Err(Error::Closed));
        }
        match &mut state.accept_waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    pub(super) fn local(&self) -> SocketAddr {
        self.local
    }

    pub(super) fn stats(&self) -> UdpStats {
        self.lock().demux.stats()
    }

    /// The listener is gone (its task stopped): every receive ends after
    /// what is queued; conversations never accepted are forgotten.
    pub(super) fn stop(&self) {
        let mut state = self.lock();
        state.gone = true;
        state.demux.set_accepting(false);
        for slot in state.slots.values_mut() {
            slot.ended = true;
            slot.wake();
        }
        let unaccepted: Vec<u64> = state.accepts.drain(..).map(|(_, id)| id).collect();
        for id in unaccepted {
            if let Some(slot) = state.slots.remove(&id) {
                state.demux.unread(slot.items.len());
            }
            state.demux.closed(id);
        }
    }
}

/// A conversation of a UDP listener on tokio: the datagrams of one source,
/// in arrival order; replies from the listener's socket.
#[derive(Debug)]
pub(super) struct Peer {
    shared: Arc<Shared>,
    peer: SocketAddr,
    peer_addr: Addr,
    local: Addr,
    id: u64,
    max: usize,
    /// What goes out: the message limit and the queue.
    out: Datagrams,
    /// Datagrams taken from the listener's queue in one go.
    taken: VecDeque<Item>,
    /// The peer went idle: after `taken`, the end.
    end_after: bool,
    /// The receiving end was said, or the conversation closed here.
    ended: bool,
    forgotten: bool,
    /// Our side is done sending.
    finished: bool,
}

impl Peer {
    fn new(shared: &Arc<Shared>, peer: SocketAddr, id: u64) -> Peer {
        let max = shared.peer_max(&peer);
        Peer {
            shared: Arc::clone(shared),
            peer,
            peer_addr: Addr::Udp(peer),
            local: Addr::Udp(shared.local),
            id,
            max,
            out: Datagrams::new(Addr::Udp(peer), max, None, None, Instant::now()),
            taken: VecDeque::new(),
            end_after: false,
            ended: false,
            forgotten: false,
            finished: false,
        }
    }

    pub(super) fn peer_addr(&self) -> &Addr {
        &self.peer_addr
    }

    pub(super) fn local_addr(&self) -> &Addr {
        &self.local
    }

    fn hand_out(&self, item: Item) -> Result<Option<Bytes>> {
        match item {
            Item::Datagram(message) => Ok(Some(message)),
            Item::Truncated => Err(Error::Truncated {
                addr: self.peer_addr.clone(),
                max: self.max,
            }),
        }
    }

    /// Closed or aborted here: receives say [`Error::Closed`].
    fn closed_here(&self) -> bool {
        self.forgotten
    }

    pub(super) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>>> {
        if self.closed_here() {
            return Poll::Ready(Err(Error::Closed));
        }
        if self.ended {
            return Poll::Ready(Ok(None));
        }
        if let Some(item) = self.taken.pop_front() {
            return Poll::Ready(self.hand_out(item));
        }
        if self.end_after {
            self.ended = true;
            return Poll::Ready(Ok(None));
        }
        let shared = Arc::clone(&self.shared);
        let mut state = shared.lock();
        let state = &mut *state;
        let Some(slot) = state.slots.get_mut(&self.id) else {
            self.ended = true;
            return Poll::Ready(Ok(None));
        };
        if !slot.items.is_empty() {
            // Everything queued, in one go.
            self.taken.extend(slot.items.drain(..));
            for item in &self.taken {
                if state.demux.taken(self.id, item.size()) == Taken::End {
                    self.end_after = true;
                }
            }
            if self.end_after {
                slot.ended = true;
            }
            let item = self.taken.pop_front().expect("taken above");
            return Poll::Ready(self.hand_out(item));
        }
        if slot.ended {
            self.ended = true;
            return Poll::Ready(Ok(None));
        }
        match &mut slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    pub(super) fn take(&mut self, msg: &[u8]) -> Result<()> {
        if self.finished || self.closed_here() {
            return Err(Error::Closed);
        }
        self.out.send(msg).map(drop)
    }

    pub(super) fn queued(&self) -> usize {
        self.out.queued()
    }

    pub(super) fn max_message_len(&self) -> usize {
        self.max
    }

    pub(super) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        while let Some(datagram) = self.out.front() {
            match self.shared.socket.try_send_to(datagram, self.peer) {
                Ok(_) => self.out.sent(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    lock(&self.shared.senders.wakers).push(cx.waker().clone());
                    let both = Waker::from(Arc::clone(&self.shared.senders));
                    // An error of the socket is met by the next send.
                    let _ = ready!(self
                        .shared
                        .socket
                        .poll_send_ready(&mut Context::from_waker(&both)));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    self.out.sent();
                    return Poll::Ready(Err(Error::PeerUnreachable {
                        addr: self.peer_addr.clone(),
                    }));
                }
                #[cfg(unix)]
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    let len = datagram.len() as u64;
                    self.out.sent();
                    return Poll::Ready(Err(Error::MessageTooLarge {
                        len,
                        max: self.max as u64,
                    }));
                }
                Err(e) => {
                    self.out.sent();
                    return Poll::Ready(Err(Error::from_io(e, &self.peer_addr)));
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Sends what is queued; then the listener forgets the peer (UDP has
    /// no close: the peer is not told). [`Delivery::Unknown`].
    pub(super) fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<Delivery>> {
        if self.closed_here() {
            return Poll::Ready(Err(Error::Closed));
        }
        let flushed = ready!(self.poll_flush(cx));
        self.finished = true;
        self.forget();
        Poll::Ready(flushed.map(|()| Delivery::Unknown))
    }

    /// What is queued is sent; nothing more may be (receiving goes on).
    pub(super) fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let flushed = ready!(self.poll_flush(cx));
        self.finished = true;
        Poll::Ready(flushed)
    }

    pub(super) fn abort(&mut self) {
        self.out.abort();
        self.finished = true;
        self.forget();
    }

    /// The listener forgets the peer (counting what it left unread).
    fn forget(&mut self) {
        if std::mem::replace(&mut self.forgotten, true) {
            return;
        }
        let mut state = self.shared.lock();
        state.slots.remove(&self.id);
        state.demux.closed(self.id);
        state.demux.unread(self.taken.len());
        self.taken.clear();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.forget();
    }
}
