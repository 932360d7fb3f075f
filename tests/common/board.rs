//! The switchboard as a scenario driver: a switchboard served by a thread
//! of its own (a [`Host`]), and each of its conversations seen through the
//! blocking API, as a transport of the tests' own ([`BoardTransport`]), so
//! that one scenario runs on both drivers.
//!
//! The mapping says what each blocking promise is on a switchboard:
//! a message taken is one [`Switchboard::try_send`] queued; a `send` that
//! finds the outbox full waits for it to drain, up to the write timeout,
//! and then takes nothing ([`Error::Timeout`]); `close` is
//! [`Switchboard::close`] and says what its [`Event::Ended`] says; a
//! receive is the next [`Event::Message`], and the end is the
//! conversation's [`Event::Ended`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use converse::switchboard::{End, Event, Events, Handle, Id, ListenerId, Switchboard};
use converse::transport::{Receiver, Sender, Stopper, Transport};
use converse::{Addr, Config, Delivery, Error, Result};

use crate::common::T;

/// What a conversation hears from its switchboard.
enum Heard {
    Message(Bytes),
    End(End),
    /// Its stopper ran.
    Stopped,
}

type Job = Box<dyn FnOnce(&mut Switchboard, &mut Routes) + Send>;

/// Where each conversation's events go, and who waits for a listener's
/// conversations.
#[derive(Default)]
struct Routes {
    convs: HashMap<Id, Route>,
    listeners: HashMap<ListenerId, mpsc::Sender<Opened>>,
}

struct Route {
    heard: mpsc::Sender<Heard>,
    drained: mpsc::Sender<()>,
}

/// A conversation's end of its route: what it hears, when its outbox
/// drained, and a way into its own events (for its stopper).
struct Opened {
    id: Id,
    heard: mpsc::Receiver<Heard>,
    drained: mpsc::Receiver<()>,
    wake: mpsc::Sender<Heard>,
}

impl Routes {
    /// A route for `id`, and the conversation's end of it.
    fn open(&mut self, id: Id) -> Opened {
        let (heard, heard_rx) = mpsc::channel();
        let (drained, drained_rx) = mpsc::channel();
        let wake = heard.clone();
        self.convs.insert(id, Route { heard, drained });
        Opened {
            id,
            heard: heard_rx,
            drained: drained_rx,
            wake,
        }
    }

    fn deliver(&mut self, event: Event) {
        match event {
            Event::Accepted { listener, id } => {
                let opened = self.open(id);
                if let Some(waiting) = self.listeners.get(&listener) {
                    let _ = waiting.send(opened);
                }
            }
            Event::Message { id, message } => {
                if let Some(route) = self.convs.get(&id) {
                    let _ = route.heard.send(Heard::Message(message));
                }
            }
            Event::Drained { id } => {
                if let Some(route) = self.convs.get(&id) {
                    let _ = route.drained.send(());
                }
            }
            Event::Ended { id, end } => {
                if let Some(route) = self.convs.remove(&id) {
                    let _ = route.heard.send(Heard::End(end));
                }
            }
            // Connected, Lost (a datagram that did not arrive: the
            // scenarios count what did), and the rest: nothing to route.
            _ => {}
        }
    }
}

/// A switchboard served by a thread of its own. Dropping it stops the
/// thread.
pub struct Host {
    jobs: mpsc::Sender<Job>,
    handle: Handle,
    /// While set, the thread does not wait on the switchboard: it neither
    /// reads nor writes (a peer that stops reading).
    paused: Arc<AtomicBool>,
    quit: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Host {
    pub fn new(config: &Config) -> Host {
        let board = Switchboard::with_config(config).expect("a switchboard");
        let handle = board.handle();
        let (jobs, inbox) = mpsc::channel::<Job>();
        let paused = Arc::new(AtomicBool::new(false));
        let quit = Arc::new(AtomicBool::new(false));
        let thread = {
            let (paused, quit) = (Arc::clone(&paused), Arc::clone(&quit));
            std::thread::spawn(move || {
                let mut board = board;
                let mut routes = Routes::default();
                let mut events = Events::new();
                while !quit.load(Ordering::Relaxed) {
                    while let Ok(job) = inbox.try_recv() {
                        job(&mut board, &mut routes);
                    }
                    if paused.load(Ordering::Relaxed) {
                        if let Ok(job) = inbox.recv_timeout(Duration::from_millis(5)) {
                            job(&mut board, &mut routes);
                        }
                        continue;
                    }
                    board
                        .wait(&mut events, Some(Duration::from_millis(20)))
                        .expect("the switchboard waits");
                    for event in events.drain() {
                        routes.deliver(event);
                    }
                }
            })
        };
        Host {
            jobs,
            handle,
            paused,
            quit,
            thread: Some(thread),
        }
    }

    /// Runs `job` on the switchboard's thread and returns what it returns
    /// (bounded by the test timeout).
    fn call<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Switchboard, &mut Routes) -> R + Send + 'static,
    ) -> R {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .send(Box::new(move |board, routes| {
                let _ = tx.send(job(board, routes));
            }))
            .expect("the host runs");
        self.handle.wake();
        rx.recv_timeout(T)
            .expect("the switchboard's thread answers")
    }

    /// Stops reading and writing (a peer that does not read), or goes on.
    pub fn pause(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
        self.handle.wake();
    }

    /// Listens on `url` with `config`: the listener's address, and where
    /// its conversations come.
    pub fn listen(&self, url: &str, config: &Config) -> (Addr, Accepted) {
        let (url, config) = (url.to_owned(), config.clone());
        let (tx, rx) = mpsc::channel();
        let addr = self.call(move |board, routes| {
            let l = board.listen_with(&url, &config).expect("listen");
            routes.listeners.insert(l, tx);
            board.listener_addr(l).expect("a listener's address")
        });
        (addr, Accepted(rx))
    }

    /// Connects to `url` with `config`, without waiting (the scenarios'
    /// first sends wait in the switchboard's queue for the handshakes).
    pub fn connect(self: &Arc<Self>, url: &str, config: &Config) -> BoardTransport {
        let (url, config) = (url.to_owned(), config.clone());
        let opened = self.call(move |board, routes| {
            let id = board.connect_with(&url, &config).expect("connect");
            routes.open(id)
        });
        BoardTransport::new(self, opened)
    }

    /// Hands a blocking transport over to the switchboard.
    pub fn adopt<X>(self: &Arc<Self>, transport: X) -> BoardTransport
    where
        X: converse::switchboard::Adopt + Send + 'static,
    {
        let opened = self.call(move |board, routes| {
            let id = board.adopt(transport).expect("adopt");
            routes.open(id)
        });
        BoardTransport::new(self, opened)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.quit.store(true, Ordering::Relaxed);
        self.handle.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where a listener's conversations come.
pub struct Accepted(mpsc::Receiver<Opened>);

impl Accepted {
    /// The next conversation (within the test timeout).
    pub fn next(&self, host: &Arc<Host>) -> BoardTransport {
        let opened = self.0.recv_timeout(T).expect("a conversation accepted");
        BoardTransport::new(host, opened)
    }
}

/// What both halves of one conversation share.
struct Shared {
    host: Arc<Host>,
    id: Id,
    stopped: AtomicBool,
    /// Wakes a receive blocked on the conversation's events.
    wake: mpsc::Sender<Heard>,
}

impl Shared {
    /// Runs `job` on the conversation, on its switchboard's thread.
    fn ask<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Switchboard, Id) -> R + Send + 'static,
    ) -> R {
        let id = self.id;
        self.host.call(move |board, _| job(board, id))
    }

    fn check(&self) -> Result<()> {
        if self.stopped.load(Ordering::Relaxed) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }
}

/// One conversation of a switchboard, seen through the blocking API.
pub struct BoardTransport {
    tx: BoardSender,
    rx: BoardReceiver,
}

impl BoardTransport {
    fn new(host: &Arc<Host>, opened: Opened) -> BoardTransport {
        let Opened {
            id,
            heard,
            drained,
            wake,
        } = opened;
        let shared = Arc::new(Shared {
            host: Arc::clone(host),
            id,
            stopped: AtomicBool::new(false),
            wake,
        });
        BoardTransport {
            tx: BoardSender {
                shared: Arc::clone(&shared),
                drained,
                write_timeout: Some(T),
                linger: Config::DEFAULT_LINGER,
                done: false,
            },
            rx: BoardReceiver {
                shared,
                heard,
                read_timeout: Some(T),
                ended: None,
            },
        }
    }

    /// Applies the timeouts and the linger of `config`, as a blocking
    /// conversation made with it would.
    pub fn with_config(mut self, config: &Config) -> BoardTransport {
        self.tx.write_timeout = config.write_timeout();
        self.tx.linger = config.linger();
        self.rx.read_timeout = config.read_timeout();
        self
    }
}

impl Transport for BoardTransport {
    type Sender = BoardSender;
    type Receiver = BoardReceiver;

    fn into_halves(self) -> (BoardSender, BoardReceiver) {
        (self.tx, self.rx)
    }
}

/// The sending half.
pub struct BoardSender {
    shared: Arc<Shared>,
    drained: mpsc::Receiver<()>,
    write_timeout: Option<Duration>,
    linger: Duration,
    /// Closed (or stopped): dropping it does nothing more.
    done: bool,
}

impl BoardSender {
    fn offer(&mut self, msg: &[u8], text: bool) -> Result<()> {
        self.shared.check()?;
        let until = self.write_timeout.map(|t| Instant::now() + t);
        loop {
            let (id, owned) = (self.shared.id, msg.to_vec());
            let queued = self.shared.host.call(move |board, _| {
                if text {
                    let text = String::from_utf8(owned).expect("text");
                    board.send_text(id, &text).map(|()| true)
                } else {
                    board.try_send(id, owned)
                }
            })?;
            if queued {
                return Ok(());
            }
            // The outbox is full: wait for it to drain, within the write
            // timeout; then nothing was taken.
            let left = match until {
                Some(until) => until.saturating_duration_since(Instant::now()),
                None => T,
            };
            if left.is_zero() || self.drained.recv_timeout(left).is_err() {
                return Err(Error::Timeout);
            }
            self.shared.check()?;
        }
    }
}

impl Sender for BoardSender {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.offer(msg, false)
    }

    fn send_text(&mut self, text: &str) -> Result<()> {
        self.offer(text.as_bytes(), true)
    }

    fn flush(&mut self) -> Result<()> {
        self.shared.check()?;
        // Everything queued is written when the outbox is empty.
        let until = Instant::now() + self.write_timeout.unwrap_or(T);
        loop {
            match self.shared.ask(|board, id| board.queued(id)) {
                Some(0) | None => return Ok(()),
                Some(_) if Instant::now() >= until => return Err(Error::Timeout),
                Some(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }

    fn queued(&self) -> usize {
        self.shared.ask(|board, id| board.queued(id)).unwrap_or(0)
    }

    fn finish(&mut self, _until: Instant) -> Result<()> {
        self.done = true;
        if self.shared.check().is_err() {
            return Ok(());
        }
        self.shared.ask(|board, id| board.close(id));
        Ok(())
    }

    fn abort(&mut self) {
        self.done = true;
        self.shared.ask(|board, id| board.abort(id));
    }

    fn peer_addr(&self) -> Result<Addr> {
        self.shared
            .ask(|board, id| board.peer_addr(id))
            .ok_or(Error::Closed)
    }

    fn local_addr(&self) -> Result<Addr> {
        self.shared
            .ask(|board, id| board.local_addr(id))
            .ok_or(Error::Closed)
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
        self.shared
            .ask(|board, id| board.max_message_len(id))
            .unwrap_or(0)
    }

    fn stopper(&self) -> Option<Stopper> {
        Some(stopper(&self.shared))
    }
}

impl Drop for BoardSender {
    fn drop(&mut self) {
        // As a blocking conversation's drop: what was taken goes out, then
        // the end.
        if !self.done && self.shared.check().is_ok() {
            let id = self.shared.id;
            let _ = self
                .shared
                .host
                .jobs
                .send(Box::new(move |board, _| board.close(id)));
            self.shared.host.handle.wake();
        }
    }
}

fn stopper(shared: &Arc<Shared>) -> Stopper {
    let shared = Arc::clone(shared);
    Stopper::from_fn(move || {
        if !shared.stopped.swap(true, Ordering::Relaxed) {
            let _ = shared.wake.send(Heard::Stopped);
            let id = shared.id;
            let _ = shared
                .host
                .jobs
                .send(Box::new(move |board, _| board.abort(id)));
            shared.host.handle.wake();
        }
    })
}

/// The receiving half.
pub struct BoardReceiver {
    shared: Arc<Shared>,
    heard: mpsc::Receiver<Heard>,
    read_timeout: Option<Duration>,
    /// The end, once heard: the peer's (`Ok(None)` again and again), or
    /// what a close learns.
    ended: Option<End>,
}

impl BoardReceiver {
    /// The next thing heard by `until` (`None`: time is up).
    fn next(&mut self, until: Option<Instant>) -> Option<Heard> {
        let left = until.map_or(T, |u| u.saturating_duration_since(Instant::now()));
        self.heard.recv_timeout(left).ok()
    }
}

impl Receiver for BoardReceiver {
    fn recv(&mut self) -> Result<Option<Bytes>> {
        self.shared.check()?;
        match &self.ended {
            Some(End::Peer) => return Ok(None),
            Some(_) => return Err(Error::Closed),
            None => {}
        }
        let until = self.read_timeout.map(|t| Instant::now() + t);
        match self.next(until) {
            None => Err(Error::Timeout),
            Some(Heard::Stopped) => Err(Error::Closed),
            Some(Heard::Message(m)) => Ok(Some(m)),
            Some(Heard::End(End::Failed(e))) => {
                self.ended = Some(End::Failed(Error::Closed));
                Err(e)
            }
            Some(Heard::End(end)) => {
                let peer = matches!(end, End::Peer);
                self.ended = Some(end);
                if peer {
                    Ok(None)
                } else {
                    Err(Error::Closed)
                }
            }
        }
    }

    fn drain(&mut self, until: Instant) -> Result<Delivery> {
        if self.shared.check().is_err() {
            return Ok(Delivery::Unknown);
        }
        if let Some(End::Peer) = self.ended {
            // The end was the peer's, told before: the close is done when
            // the conversation is gone (everything written).
            let id = self.shared.id;
            while Instant::now() < until {
                if self
                    .shared
                    .host
                    .call(move |board, _| board.queued(id))
                    .is_none()
                {
                    return Ok(Delivery::Confirmed);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            return Ok(Delivery::Unknown);
        }
        if self.ended.is_some() {
            return Ok(Delivery::Unknown);
        }
        // The close's own end, bounded by a little more than the linger
        // (the switchboard keeps the time).
        let until = until + Duration::from_secs(1);
        loop {
            match self.next(Some(until)) {
                None | Some(Heard::Stopped) => return Ok(Delivery::Unknown),
                Some(Heard::Message(_)) => {}
                Some(Heard::End(End::Closed(delivery))) => return Ok(delivery),
                Some(Heard::End(End::Failed(e))) => return Err(e),
                Some(Heard::End(_)) => return Ok(Delivery::Unknown),
            }
        }
    }

    fn peer_addr(&self) -> Result<Addr> {
        self.shared
            .ask(|board, id| board.peer_addr(id))
            .ok_or(Error::Closed)
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
        self.shared
            .ask(|board, id| board.max_message_len(id))
            .unwrap_or(0)
    }

    fn stopper(&self) -> Option<Stopper> {
        Some(stopper(&self.shared))
    }
}
