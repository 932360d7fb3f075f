//! The chat room on a switchboard: every member, over every transport, on
//! one thread. Shared by the `chat_room` example and the scale benchmark.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use converse::switchboard::{End, Event, Events, Id, Switchboard};
use converse::Error;

/// Lines for stdout, written by a thread of their own: a stdout that does
/// not keep up costs lines (counted, and said on stderr), never the room's
/// time.
pub struct Printer {
    tx: Option<SyncSender<String>>,
    dropped: Arc<AtomicU64>,
}

impl Printer {
    /// A printer to stdout, flushing each line.
    pub fn stdout() -> Printer {
        Printer::to(std::io::stdout())
    }

    /// A printer that writes nowhere (for benchmarks).
    pub fn none() -> Printer {
        Printer::to(std::io::sink())
    }

    fn to(mut out: impl Write + Send + 'static) -> Printer {
        let (tx, rx) = sync_channel::<String>(64 * 1024);
        let dropped = Arc::new(AtomicU64::new(0));
        let lost = Arc::clone(&dropped);
        std::thread::Builder::new()
            .name("stdout".into())
            .spawn(move || {
                for line in rx {
                    // A closed stdout is not a reason to stop the room.
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                    let n = lost.swap(0, Ordering::Relaxed);
                    if n > 0 {
                        eprintln!("({n} lines not printed: stdout was not keeping up)");
                    }
                }
            })
            .expect("a thread for stdout");
        Printer {
            tx: Some(tx),
            dropped,
        }
    }

    pub fn say(&self, line: String) {
        if let Some(tx) = &self.tx {
            if let Err(TrySendError::Full(_)) = tx.try_send(line) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A member: named once its first message (its name) has arrived.
struct Member {
    name: Option<String>,
}

/// The room.
pub struct Room {
    board: Switchboard,
    members: HashMap<Id, Member>,
    printer: Printer,
}

impl Room {
    pub fn new(board: Switchboard, printer: Printer) -> Room {
        Room {
            board,
            members: HashMap::new(),
            printer,
        }
    }

    pub fn board(&mut self) -> &mut Switchboard {
        &mut self.board
    }

    /// Serves the room until the switchboard fails.
    pub fn run(&mut self) -> converse::Result<()> {
        let mut events = Events::new();
        loop {
            self.board.wait(&mut events, None)?;
            for event in events.drain() {
                self.handle(event);
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Accepted { id, .. } | Event::Adopted { id } => {
                self.members.insert(id, Member { name: None });
            }
            Event::Message { id, message } => self.said(id, &message),
            Event::Lost { id, error } => {
                let who = self.name_of(id);
                eprintln!("{who}: {error}");
            }
            Event::AcceptPaused {
                error, retry_in, ..
            } => eprintln!("accept: {error} (retrying in {retry_in:?})"),
            // Not TLS, a refused certificate, too slow: never a member.
            Event::HandshakeFailed { error, .. } => eprintln!("{error}"),
            Event::Ended { id, end } => self.ended(id, end),
            _ => {}
        }
    }

    fn name_of(&self, id: Id) -> String {
        match self.members.get(&id).and_then(|m| m.name.as_deref()) {
            Some(name) => name.to_owned(),
            None => self
                .board
                .peer_addr(id)
                .map(|a| a.to_string())
                .unwrap_or_else(|| format!("{id:?}")),
        }
    }

    fn said(&mut self, id: Id, message: &[u8]) {
        if message.is_empty() {
            return; // a keepalive: it kept the member's place
        }
        let text = String::from_utf8_lossy(message).into_owned();
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        match &member.name {
            None if text == "bye" => self.board.close(id),
            None => {
                member.name = Some(text.clone());
                self.announce(id, format!("* {text} joined"));
            }
            Some(_) if text == "bye" => {
                self.leave(id);
                self.board.close(id);
            }
            Some(name) => {
                let line = format!("{name}: {text}");
                self.announce(id, line);
            }
        }
    }

    fn ended(&mut self, id: Id, end: End) {
        if let End::Failed(e @ Error::SlowConsumer { .. }) = &end {
            eprintln!("{}: disconnected: {e}", self.name_of(id));
        } else if let End::Failed(e) = &end {
            eprintln!("{}: {e}", self.name_of(id));
        }
        self.leave(id);
    }

    /// The member goes (once): announced if it had said its name.
    fn leave(&mut self, id: Id) {
        if let Some(Member { name: Some(name) }) = self.members.remove(&id) {
            self.announce(id, format!("* {name} left"));
        }
    }

    /// Prints `line` and sends it to every named member but `from`. A member
    /// whose backlog overflows is ended as a slow consumer (its end comes as
    /// an event, and it leaves then).
    fn announce(&mut self, from: Id, line: String) {
        for (&id, member) in &self.members {
            if id != from && member.name.is_some() {
                let _ = self.board.send_text(id, &line);
            }
        }
        self.printer.say(line);
    }
}
