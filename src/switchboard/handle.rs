//! Other threads and a switchboard: a [`Handle`] that sends, closes, hands
//! conversations over and shuts down, each command applied by the
//! switchboard's own thread at its next `wait`; and [`serve`], which hands
//! events to worker threads.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use mio::Waker;

use super::arena::Key;
use super::events::{Event, Events, Id};
use super::registry::Entry;
use super::{Adopt, Switchboard};
use crate::error::Result;

/// A conversation handed over from another thread, added on the
/// switchboard's own.
type Adoption = Box<dyn FnOnce(&mut Switchboard) -> Result<Id> + Send>;

/// Commands from other threads.
pub(super) enum Command {
    Send(Id, Bytes),
    Close(Id),
    Abort(Id),
    Adopt(Adoption),
    Shutdown,
    /// An entry without a socket of its own (a QUIC stream, a QUIC
    /// listener) may be ready.
    Ready(Key),
}

/// What a switchboard shares with its handles.
pub(super) struct Shared {
    pub(super) commands: Mutex<VecDeque<Command>>,
    pub(super) waker: Waker,
}

/// Sends into a [`Switchboard`] from other threads, and wakes it.
/// Cloneable; cheap.
///
/// What a handle asks is done by the switchboard's own thread at its next
/// `wait` (the handle wakes it). Errors are the switchboard's events: a
/// send that ends a slow consumer shows as that conversation's
/// [`Event::Ended`].
#[derive(Clone)]
pub struct Handle {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handle")
    }
}

impl Handle {
    fn command(&self, command: Command) {
        self.shared
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(command);
        let _ = self.shared.waker.wake();
    }

    /// Sends `msg` to conversation `id` (see [`Switchboard::send`]).
    pub fn send(&self, id: Id, msg: impl Into<Bytes>) {
        self.command(Command::Send(id, msg.into()));
    }

    /// Closes conversation `id` gracefully (see [`Switchboard::close`]).
    pub fn close(&self, id: Id) {
        self.command(Command::Close(id));
    }

    /// Aborts conversation `id` (see [`Switchboard::abort`]).
    pub fn abort(&self, id: Id) {
        self.command(Command::Abort(id));
    }

    /// Hands a blocking conversation's transport over to the switchboard's
    /// thread (see [`Switchboard::adopt`]); an [`Event::Adopted`] names it
    /// there. One that cannot be taken over is dropped (closed).
    pub fn adopt(&self, transport: impl Adopt + Send + 'static) {
        self.command(Command::Adopt(Box::new(move |board| {
            board.adopt(transport)
        })));
    }

    /// Shuts the switchboard down (see [`Switchboard::shutdown`]).
    pub fn shutdown(&self) {
        self.command(Command::Shutdown);
    }

    /// Wakes the switchboard: its `wait` returns (perhaps with no events).
    pub fn wake(&self) {
        let _ = self.shared.waker.wake();
    }
}

impl Switchboard {
    /// What an entry without a socket calls when it may be ready: it wakes
    /// the switchboard, which then reads and writes it.
    pub(super) fn ready_notifier(&self, key: Key) -> Arc<dyn Fn() + Send + Sync> {
        let shared = Arc::clone(&self.shared);
        Arc::new(move || {
            shared
                .commands
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_back(Command::Ready(key));
            let _ = shared.waker.wake();
        })
    }

    /// Applies what the handles asked, in order.
    pub(super) fn apply_commands(&mut self, events: &mut Events) {
        let commands: Vec<Command> = {
            let mut queue = self
                .shared
                .commands
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            queue.drain(..).collect()
        };
        for command in commands {
            match command {
                // Errors are events already (a slow consumer's end), or
                // mean the conversation is gone.
                Command::Send(id, msg) => drop(self.send(id, &msg)),
                Command::Close(id) => self.close(id),
                Command::Abort(id) => self.abort(id),
                Command::Adopt(adopt) => {
                    if let Ok(id) = adopt(self) {
                        events.push(Event::Adopted { id });
                    }
                }
                Command::Shutdown => self.shutdown(),
                Command::Ready(key) => {
                    if matches!(self.entries.get(key), Some(Entry::Conv(_))) {
                        self.on_writable(key, events);
                    }
                    self.push_backlog(key);
                }
            }
        }
    }
}

/// Serves `board` on this thread and hands its events to `workers` threads,
/// which answer through the [`Handle`] they are given: the
/// `socketserver`-style shape, for work too slow for the serving thread.
///
/// The events of one conversation always go to the same worker, in order.
/// Returns once the switchboard is shut down (by a handle's
/// [`shutdown`](Handle::shutdown)) and empty; conversations handed over
/// after the shutdown began are closed like the others.
pub fn serve<F>(mut board: Switchboard, workers: usize, handler: F) -> Result<()>
where
    F: Fn(&Handle, Event) + Send + Sync + 'static,
{
    let workers = workers.max(1);
    let handler = Arc::new(handler);
    let handle = board.handle();
    let mut lanes = Vec::with_capacity(workers);
    let mut threads = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (tx, rx) = std::sync::mpsc::channel::<Event>();
        let (handler, handle) = (Arc::clone(&handler), handle.clone());
        threads.push(std::thread::spawn(move || {
            for event in rx {
                handler(&handle, event);
            }
        }));
        lanes.push(tx);
    }
    let lane_of = |event: &Event| -> usize {
        let n = match (event.id(), event) {
            (Some(id), _) => id.as_u64(),
            (None, Event::AcceptPaused { listener, .. })
            | (None, Event::HandshakeFailed { listener, .. }) => listener.as_u64(),
            (None, _) => 0,
        };
        (n % workers as u64) as usize
    };
    let mut events = Events::new();
    loop {
        board.wait(&mut events, None)?;
        for event in events.drain() {
            let lane = lane_of(&event);
            let _ = lanes[lane].send(event);
        }
        if board.shutting_down && board.is_empty() {
            break;
        }
    }
    drop(lanes);
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}
