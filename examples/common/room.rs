//! The chat room on a switchboard: every member, over every transport, on
//! one thread. Shared by the `chat_room` example and the scale benchmark.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// The link to rooms on other servers: a NATS subject they all publish
/// to. What goes over it, one message each (fields separated by tabs):
///
/// * `J ORIGIN LABEL NAME`: a member joined the room at ORIGIN;
/// * `L ORIGIN LABEL NAME`: it left;
/// * `M ORIGIN LABEL NAME TEXT`: it said TEXT;
/// * `S ORIGIN LABEL`: ORIGIN (re)joined the relay: say who is here;
/// * `W ORIGIN LABEL NAME…`: everyone in the room at ORIGIN now (the
///   answer to `S`, said on every (re)connection and every heartbeat), so
///   that rooms that missed joins or leaves while the relay was down catch
///   up. A room not heard for three heartbeats is gone (its server
///   stopped): its members leave.
///
/// ORIGIN is a random id per room process (labels may repeat), LABEL the
/// name other rooms show after a member's: `alice@LABEL`, so that names
/// stay unambiguous across servers.
pub struct Relay {
    url: String,
    label: String,
    origin: String,
    id: Option<Id>,
    retry_at: Option<Instant>,
    backoff: Duration,
    heartbeat: Duration,
    next_beat: Instant,
    /// The rooms of other servers, by origin.
    remote: HashMap<String, Remote>,
}

/// A room on another server, as heard through the relay.
struct Remote {
    label: String,
    /// Its members: name → how many have it.
    members: HashMap<String, usize>,
    heard: Instant,
}

const FIRST_RETRY: Duration = Duration::from_millis(250);
const LAST_RETRY: Duration = Duration::from_secs(5);

impl Relay {
    /// A relay to `url` (`nats://HOST:PORT/SUBJECT`), this room shown to
    /// others as `label`. It connects when the room runs.
    pub fn new(url: &str, label: &str) -> Relay {
        let origin = format!("{:016x}", random_u64());
        Relay {
            url: url.to_owned(),
            label: field(label),
            origin,
            id: None,
            retry_at: Some(Instant::now()),
            backoff: FIRST_RETRY,
            heartbeat: Duration::from_secs(30),
            next_beat: Instant::now(),
            remote: HashMap::new(),
        }
    }

    /// How often this room says who is in it (default 30 s); a room not
    /// heard for three of these is taken for gone.
    pub fn heartbeat(mut self, every: Duration) -> Relay {
        self.heartbeat = every;
        self
    }

    /// When the room loop must wake for the relay.
    fn due(&self) -> Option<Instant> {
        match self.id {
            Some(_) => Some(self.next_beat),
            None => self.retry_at,
        }
    }
}

/// `text` as one field of a relay message: tabs and line ends (which
/// separate fields) become spaces.
fn field(text: &str) -> String {
    text.replace(['\t', '\n', '\r'], " ")
}

/// Enough randomness to tell room processes apart.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// The room.
pub struct Room {
    board: Switchboard,
    members: HashMap<Id, Member>,
    printer: Printer,
    relay: Option<Relay>,
}

impl Room {
    pub fn new(board: Switchboard, printer: Printer) -> Room {
        Room {
            board,
            members: HashMap::new(),
            printer,
            relay: None,
        }
    }

    /// Joins this room to the rooms of other servers relaying to the same
    /// subject.
    pub fn relay(mut self, relay: Relay) -> Room {
        self.relay = Some(relay);
        self
    }

    pub fn board(&mut self) -> &mut Switchboard {
        &mut self.board
    }

    /// Serves the room until the switchboard fails.
    pub fn run(&mut self) -> converse::Result<()> {
        let mut events = Events::new();
        loop {
            self.connect_relay();
            self.beat();
            let timeout = self
                .relay
                .as_ref()
                .and_then(Relay::due)
                .map(|at| at.saturating_duration_since(Instant::now()));
            self.board.wait(&mut events, timeout)?;
            for event in events.drain() {
                self.handle(event);
            }
        }
    }

    /// Connects the relay if it is down and its time has come; a failure
    /// is said on stderr and tried again later (doubling the wait, up to
    /// 5 s).
    fn connect_relay(&mut self) {
        let Some(relay) = &mut self.relay else {
            return;
        };
        match relay.retry_at {
            Some(at) if at <= Instant::now() => {}
            _ => return,
        }
        let config = converse::Config::new()
            .with_connect_timeout(Some(Duration::from_secs(2)))
            .with_handshake_timeout(Duration::from_secs(2))
            .with_read_timeout(Some(Duration::from_secs(2)))
            .with_write_timeout(Some(Duration::from_secs(2)));
        let connected =
            converse::Nats::connect(&relay.url, &config).and_then(|nats| self.board.adopt(nats));
        match connected {
            Ok(id) => {
                eprintln!("relay: connected to {}", relay.url);
                relay.id = Some(id);
                relay.retry_at = None;
                relay.backoff = FIRST_RETRY;
                // Rooms could not be heard while the relay was down: count
                // their silence from now.
                let now = Instant::now();
                for room in relay.remote.values_mut() {
                    room.heard = now;
                }
                relay.next_beat = now + relay.heartbeat;
                // Ask the others who is there, and say who is here.
                self.send_relay('S', &[]);
                self.publish_who();
            }
            Err(e) => {
                if relay.backoff == FIRST_RETRY {
                    eprintln!("relay: {e}; the room goes on here alone, and tries again");
                }
                relay.retry_at = Some(Instant::now() + relay.backoff);
                relay.backoff = (relay.backoff * 2).min(LAST_RETRY);
            }
        }
    }

    /// The relay's heartbeat: say who is here, and let the rooms not heard
    /// for three heartbeats go (their members leave).
    fn beat(&mut self) {
        let now = Instant::now();
        let Some(relay) = &mut self.relay else {
            return;
        };
        if relay.id.is_none() || now < relay.next_beat {
            return;
        }
        relay.next_beat = now + relay.heartbeat;
        let silent = relay.heartbeat * 3;
        let mut gone: Vec<String> = relay
            .remote
            .iter()
            .filter(|(_, r)| now.duration_since(r.heard) > silent)
            .map(|(origin, _)| origin.clone())
            .collect();
        gone.sort();
        let mut lines = Vec::new();
        for origin in gone {
            if let Some(room) = relay.remote.remove(&origin) {
                eprintln!(
                    "relay: the room at {} has not been heard for {silent:?}: its members leave",
                    room.label
                );
                let mut names: Vec<_> = room.members.into_keys().collect();
                names.sort();
                lines.extend(
                    names
                        .into_iter()
                        .map(|n| format!("* {n}@{} left", room.label)),
                );
            }
        }
        for line in lines {
            self.announce(None, line);
        }
        self.publish_who();
    }

    /// Publishes who is in this room.
    fn publish_who(&mut self) {
        let names: Vec<String> = self
            .members
            .values()
            .filter_map(|m| m.name.as_deref().map(field))
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.send_relay('W', &names);
    }

    /// Publishes one event of a member of this room to the others.
    fn publish(&mut self, kind: char, name: &str, text: Option<&str>) {
        let name = field(name);
        match text {
            Some(text) => self.send_relay(kind, &[&name, text]),
            None => self.send_relay(kind, &[&name]),
        }
    }

    /// Sends `KIND ORIGIN LABEL FIELDS…` through the relay; nothing while it
    /// is down (the other rooms miss it).
    fn send_relay(&mut self, kind: char, fields: &[&str]) {
        let Some(Relay {
            id: Some(id),
            origin,
            label,
            ..
        }) = &self.relay
        else {
            return;
        };
        let mut msg = format!("{kind}\t{origin}\t{label}");
        for f in fields {
            msg.push('\t');
            msg.push_str(f);
        }
        if let Err(e) = self.board.send(*id, msg) {
            eprintln!("relay: {e}");
        }
    }

    /// A message from another room.
    fn relayed(&mut self, message: &[u8]) {
        let text = String::from_utf8_lossy(message);
        let mut fields = text.splitn(5, '\t');
        let (Some(kind), Some(origin), Some(label)) = (fields.next(), fields.next(), fields.next())
        else {
            return;
        };
        let Some(relay) = &mut self.relay else {
            return;
        };
        if origin == relay.origin {
            return;
        }
        let (origin, label) = (origin.to_owned(), label.to_owned());
        let room = relay.remote.entry(origin).or_insert_with(|| Remote {
            label: label.clone(),
            members: HashMap::new(),
            heard: Instant::now(),
        });
        room.label = label.clone();
        room.heard = Instant::now();
        let mut lines = Vec::new();
        match kind {
            "J" => {
                let name = fields.next().unwrap_or("").to_owned();
                let count = room.members.entry(name.clone()).or_insert(0);
                *count += 1;
                if *count == 1 {
                    lines.push(format!("* {name}@{label} joined"));
                }
            }
            "L" => {
                let name = fields.next().unwrap_or("");
                if let Some(count) = room.members.get_mut(name) {
                    *count -= 1;
                    if *count == 0 {
                        room.members.remove(name);
                        lines.push(format!("* {name}@{label} left"));
                    }
                }
            }
            "M" => {
                let name = fields.next().unwrap_or("");
                let said = fields.next().unwrap_or("");
                lines.push(format!("{name}@{label}: {said}"));
            }
            "W" => {
                // Everyone there now: catch up with what was missed.
                let mut now: HashMap<String, usize> = HashMap::new();
                for rest in fields {
                    for name in rest.split('\t') {
                        *now.entry(name.to_owned()).or_insert(0) += 1;
                    }
                }
                let mut gone: Vec<&String> = room
                    .members
                    .keys()
                    .filter(|n| !now.contains_key(*n))
                    .collect();
                gone.sort();
                let mut came: Vec<&String> = now
                    .keys()
                    .filter(|n| !room.members.contains_key(*n))
                    .collect();
                came.sort();
                lines.extend(gone.into_iter().map(|n| format!("* {n}@{label} left")));
                lines.extend(came.into_iter().map(|n| format!("* {n}@{label} joined")));
                room.members = now;
            }
            "S" => {
                // A room (re)joined the relay: say who is here.
                self.publish_who();
            }
            _ => {}
        }
        for line in lines {
            self.announce(None, line);
        }
    }

    fn handle(&mut self, event: Event) {
        let relay_id = self.relay.as_ref().and_then(|r| r.id);
        match event {
            Event::Message { id, message } if Some(id) == relay_id => self.relayed(&message),
            Event::Ended { id, end } if Some(id) == relay_id => {
                if let Some(relay) = &mut self.relay {
                    relay.id = None;
                    relay.retry_at = Some(Instant::now() + FIRST_RETRY);
                    relay.backoff = FIRST_RETRY * 2;
                    let why = match end {
                        End::Failed(e) => e.to_string(),
                        other => format!("{other:?}"),
                    };
                    eprintln!("relay down: {why}; the room goes on here alone, and reconnects");
                }
            }
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
                self.announce(Some(id), format!("* {text} joined"));
                self.publish('J', &text, None);
            }
            Some(_) if text == "bye" => {
                self.leave(id);
                self.board.close(id);
            }
            Some(name) => {
                let line = format!("{name}: {text}");
                let name = name.clone();
                self.announce(Some(id), line);
                self.publish('M', &name, Some(&text));
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
            self.announce(Some(id), format!("* {name} left"));
            self.publish('L', &name, None);
        }
    }

    /// Prints `line` and sends it to every named member but `from`. A member
    /// whose backlog overflows is ended as a slow consumer (its end comes as
    /// an event, and it leaves then).
    fn announce(&mut self, from: Option<Id>, line: String) {
        for (&id, member) in &self.members {
            if Some(id) != from && member.name.is_some() {
                let _ = self.board.send_text(id, &line);
            }
        }
        self.printer.say(line);
    }
}
