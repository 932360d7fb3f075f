//! The chat room on a switchboard: every member, over every transport, on
//! one thread. Shared by the `chat_room` example and the scale benchmark.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use converse::switchboard::{End, Event, Events, Id, Switchboard};
use converse::Error;

/// Lines for stdout (or stderr), written by a thread of their own: an
/// output that does not keep up costs lines (counted, and said), never the
/// room's time. What waits is bounded in bytes, not only in lines.
pub struct Printer {
    tx: Option<SyncSender<String>>,
    /// Bytes waiting to be written.
    queued: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
}

/// The most bytes a printer holds for an output that does not keep up.
pub const PRINTER_BYTES: usize = 4 << 20;

impl Printer {
    /// A printer to stdout, flushing each line.
    pub fn stdout() -> Printer {
        Printer::to(std::io::stdout(), "stdout")
    }

    /// A printer to stderr: the room's diagnostics.
    pub fn stderr() -> Printer {
        Printer::to(std::io::stderr(), "stderr")
    }

    /// A printer that writes nowhere (for benchmarks).
    pub fn none() -> Printer {
        Printer::to(std::io::sink(), "nowhere")
    }

    fn to(mut out: impl Write + Send + 'static, name: &'static str) -> Printer {
        let (tx, rx) = sync_channel::<String>(64 * 1024);
        let queued = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let (written, lost) = (Arc::clone(&queued), Arc::clone(&dropped));
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                for line in rx {
                    // A closed output is not a reason to stop the room.
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                    written.fetch_sub(line.len() + 1, Ordering::Relaxed);
                    let n = lost.swap(0, Ordering::Relaxed);
                    if n > 0 {
                        let _ = writeln!(out, "({n} lines not written: {name} was not keeping up)");
                    }
                }
            })
            .expect("a thread for the output");
        Printer {
            tx: Some(tx),
            queued,
            dropped,
        }
    }

    /// Queues `line`, or counts it as dropped if the output is that far
    /// behind (never waits).
    pub fn say(&self, line: String) {
        let Some(tx) = &self.tx else {
            return;
        };
        let size = line.len() + 1;
        if self.queued.fetch_add(size, Ordering::Relaxed) + size > PRINTER_BYTES {
            self.queued.fetch_sub(size, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(line) {
            self.queued.fetch_sub(size, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A member: named once its first message (its name) has arrived.
struct Member {
    name: Option<String>,
    /// What it may still send at once (flood control).
    bucket: flood::Bucket,
    /// It came over UDP: its joins and leaves are batched, and capped.
    udp: bool,
    /// Its messages dropped by flood control, not yet told.
    dropped: u64,
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
    /// Diagnostics: stderr, through a queue of their own (a stderr nobody
    /// reads never stops the room).
    log: Printer,
    relay: Option<Relay>,
    /// How long a connection may stay without saying its name.
    name_timeout: Duration,
    /// Connections that had not named themselves, with their deadlines,
    /// in the order they came (so the deadlines are in order too).
    unnamed: VecDeque<(Instant, Id)>,
    /// The most connections without a name at once: past it, the oldest
    /// go.
    max_unnamed: usize,
    /// The names taken, as compared (see [`names::key`]).
    taken: HashSet<String>,
    /// What a member may send (`None`: no limit).
    flood: Option<flood::Limit>,
    /// Members paused for flooding, and when they may go on.
    paused: Vec<(Instant, Id)>,
    /// Over this backlog, a member that makes no progress for `stall` is
    /// disconnected (the switchboard's own limit is the hard one).
    soft_backlog: usize,
    stall: Duration,
    /// Members over the soft backlog: since when they have made no
    /// progress.
    behind: HashMap<Id, flood::Behind>,
    next_check: Instant,
    /// Joins over UDP (cheap to forge from many source addresses): capped
    /// per second, and announced in batches.
    udp_joins: Option<(flood::Limit, flood::Bucket)>,
    udp_batch: Batch,
    /// Cookies for UDP sources turned away by the cap: a source that can
    /// receive gets one, and joins at once with it.
    cookies: cookie::Jar,
}

/// The refusal was the UDP cap's alone: the name itself would do.
fn taken_only_by_cap(name: &str, taken: bool) -> bool {
    names::refusal(name).is_none() && !taken
}

/// Joins and leaves of UDP members waiting to be announced together.
#[derive(Default)]
struct Batch {
    joined: Vec<(Id, String)>,
    left: Vec<(Id, String)>,
}

/// The most joins (or leaves) of one batch announced one by one; more are
/// summed up in one line.
const BATCH_LINES: usize = 8;

/// The default time a connection has to say its name.
pub const NAME_TIMEOUT: Duration = Duration::from_secs(30);

/// The default cap on connections that have not named themselves.
pub const MAX_UNNAMED: usize = 10_000;
/// The default time a member over its soft backlog may make no progress.
pub const STALL: Duration = Duration::from_secs(5);
/// The default cap on joins over UDP: per second, and at once.
pub const UDP_JOINS: flood::Limit = flood::Limit {
    rate: 100.0,
    burst: 200.0,
};

impl Room {
    pub fn new(board: Switchboard, printer: Printer) -> Room {
        let now = Instant::now();
        Room {
            board,
            members: HashMap::new(),
            printer,
            log: Printer::stderr(),
            relay: None,
            name_timeout: NAME_TIMEOUT,
            unnamed: VecDeque::new(),
            max_unnamed: MAX_UNNAMED,
            taken: HashSet::new(),
            flood: Some(flood::Limit::DEFAULT),
            paused: Vec::new(),
            soft_backlog: converse::Config::DEFAULT_MAX_BACKLOG,
            stall: STALL,
            behind: HashMap::new(),
            next_check: now,
            udp_joins: Some((UDP_JOINS, flood::Bucket::full(&UDP_JOINS, now))),
            udp_batch: Batch::default(),
            cookies: cookie::Jar::new(now),
        }
    }

    /// What one member may send: `None` for no limit (default
    /// [`flood::Limit::DEFAULT`]). A member over it is paused (not read)
    /// until it is within it again: TCP slows it down, nothing it sent is
    /// lost; over UDP, what it sends meanwhile is dropped.
    pub fn flood_limit(mut self, limit: Option<flood::Limit>) -> Room {
        self.flood = limit;
        self
    }

    /// A member whose backlog passes `soft` and that makes no progress for
    /// `stall` is disconnected as a slow consumer (default 1 MiB and 5 s);
    /// the switchboard's `max_backlog` is the hard limit, past which it is
    /// at once.
    pub fn slow_consumers(mut self, soft: usize, stall: Duration) -> Room {
        self.soft_backlog = soft;
        self.stall = stall;
        self
    }

    /// The most connections without a name at once (default 10,000): past
    /// it, the oldest are closed.
    pub fn max_unnamed(mut self, max: usize) -> Room {
        self.max_unnamed = max.max(1);
        self
    }

    /// The cap on joins over UDP (default [`UDP_JOINS`]); `None` for none.
    pub fn udp_joins(mut self, limit: Option<flood::Limit>) -> Room {
        self.udp_joins = limit.map(|l| (l, flood::Bucket::full(&l, Instant::now())));
        self
    }

    /// How long a connection may stay in the room without saying its name
    /// before it is closed (default 30 s).
    pub fn name_timeout(mut self, timeout: Duration) -> Room {
        self.name_timeout = timeout;
        self
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
            let due = [
                self.relay.as_ref().and_then(Relay::due),
                self.unnamed.front().map(|&(at, _)| at),
                self.paused.iter().map(|&(at, _)| at).min(),
                (!self.behind.is_empty()).then_some(self.next_check),
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = due.map(|at| at.saturating_duration_since(Instant::now()));
            self.board.wait(&mut events, timeout)?;
            for event in events.drain() {
                self.handle(event);
            }
            self.announce_batch();
            let now = Instant::now();
            self.close_the_nameless(now);
            self.resume_due(now);
            self.check_behind(now);
        }
    }

    /// Members paused for flooding whose time has come are read again,
    /// and told how many of their lines were dropped, if any.
    fn resume_due(&mut self, now: Instant) {
        let mut due = Vec::new();
        self.paused.retain(|&(at, id)| {
            if at <= now {
                due.push(id);
                false
            } else {
                true
            }
        });
        for id in due {
            self.board.resume(id);
            let dropped = self
                .members
                .get_mut(&id)
                .map_or(0, |m| std::mem::take(&mut m.dropped));
            if dropped > 0 {
                let rate = self.flood.map_or(0.0, |l| l.rate);
                self.log.say(format!(
                    "{}: {dropped} lines dropped: over the flood limit",
                    self.name_of(id)
                ));
                let _ = self.board.send_text(
                    id,
                    &format!("* {dropped} of your lines were dropped: more than {rate} a second"),
                );
            }
        }
    }

    /// Disconnects the members over the soft backlog that have made no
    /// progress for the stall time; forgets the ones back under it.
    fn check_behind(&mut self, now: Instant) {
        if self.behind.is_empty() || now < self.next_check {
            return;
        }
        self.next_check = now + (self.stall / 5).max(Duration::from_millis(10));
        let mut stuck = Vec::new();
        let (board, soft, stall) = (&self.board, self.soft_backlog, self.stall);
        self.behind
            .retain(|&id, behind| match (board.queued(id), board.written(id)) {
                (Some(queued), Some(written)) if queued > soft => {
                    if behind.stuck(written, now, stall) {
                        stuck.push((id, queued));
                        false
                    } else {
                        true
                    }
                }
                _ => false,
            });
        for (id, queued) in stuck {
            self.log.say(format!(
                "{}: disconnected: slow consumer: {queued} bytes waiting and none read for {:?}",
                self.name_of(id),
                self.stall
            ));
            // Its end comes as an event: it leaves then.
            self.board.abort(id);
        }
    }

    /// Connections without a name now.
    fn unnamed_now(&self) -> usize {
        // Every named member has its name in `taken`, once.
        self.members.len().saturating_sub(self.taken.len())
    }

    /// Ends the oldest connections that have not named themselves, `count`
    /// of them at most, at once (a reset: their descriptors are free now,
    /// not after a lingering close): `why` is said for each.
    fn close_oldest_unnamed(&mut self, count: usize, why: &str) {
        let mut closed = 0;
        while closed < count {
            let Some((_, id)) = self.unnamed.pop_front() else {
                break;
            };
            if self.members.get(&id).is_some_and(|m| m.name.is_none()) {
                self.log.say(format!("{}: closed: {why}", self.name_of(id)));
                self.members.remove(&id);
                self.board.abort(id);
                closed += 1;
            }
        }
    }

    /// Closes the connections whose time to say their name has passed
    /// without it.
    fn close_the_nameless(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.unnamed.front() {
            if at > now {
                break;
            }
            self.unnamed.pop_front();
            if self.members.get(&id).is_some_and(|m| m.name.is_none()) {
                self.log.say(format!(
                    "{}: closed: no name within {:?}",
                    self.name_of(id),
                    self.name_timeout
                ));
                self.members.remove(&id);
                self.board.close(id);
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
                self.log.say(format!("relay: connected to {}", relay.url));
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
                    self.log.say(format!(
                        "relay: {e}; the room goes on here alone, and tries again"
                    ));
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
                self.log.say(format!(
                    "relay: the room at {} has not been heard for {silent:?}: its members leave",
                    room.label
                ));
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
            self.log.say(format!("relay: {e}"));
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
        // Another room's words are shown, never obeyed: its names and lines
        // with hidden characters made visible, as this room's own.
        let (origin, label) = (origin.to_owned(), names::visible(label).into_owned());
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
                let name = names::visible(fields.next().unwrap_or("")).into_owned();
                let count = room.members.entry(name.clone()).or_insert(0);
                *count += 1;
                if *count == 1 {
                    lines.push(format!("* {name}@{label} joined"));
                }
            }
            "L" => {
                let name = names::visible(fields.next().unwrap_or("")).into_owned();
                if let Some(count) = room.members.get_mut(&name) {
                    *count -= 1;
                    if *count == 0 {
                        room.members.remove(&name);
                        lines.push(format!("* {name}@{label} left"));
                    }
                }
            }
            "M" => {
                let name = names::visible(fields.next().unwrap_or(""));
                let said = names::visible(fields.next().unwrap_or(""));
                lines.push(format!("{name}@{label}: {said}"));
            }
            "W" => {
                // Everyone there now: catch up with what was missed.
                let mut now: HashMap<String, usize> = HashMap::new();
                for rest in fields {
                    for name in rest.split('\t') {
                        *now.entry(names::visible(name).into_owned()).or_insert(0) += 1;
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
            Event::Adopted { id } if Some(id) == relay_id => {}
            Event::Ended { id, end } if Some(id) == relay_id => {
                if let Some(relay) = &mut self.relay {
                    relay.id = None;
                    relay.retry_at = Some(Instant::now() + FIRST_RETRY);
                    relay.backoff = FIRST_RETRY * 2;
                    let why = match end {
                        End::Failed(e) => e.to_string(),
                        other => format!("{other:?}"),
                    };
                    self.log.say(format!(
                        "relay down: {why}; the room goes on here alone, and reconnects"
                    ));
                }
            }
            Event::Accepted { id, .. } | Event::Adopted { id } => {
                let now = Instant::now();
                let udp = matches!(self.board.peer_addr(id), Some(converse::Addr::Udp(_)));
                let bucket = flood::Bucket::full(&self.flood.unwrap_or(flood::Limit::DEFAULT), now);
                self.members.insert(
                    id,
                    Member {
                        name: None,
                        bucket,
                        udp,
                        dropped: 0,
                    },
                );
                self.unnamed.push_back((now + self.name_timeout, id));
                if self.unnamed_now() > self.max_unnamed {
                    self.close_oldest_unnamed(1, "too many connections without a name");
                }
            }
            // Flood control first: a message past it is dropped.
            Event::Message { id, message } if !self.charge(id, message.len()) => {}
            Event::Message { id, message } => self.said(id, &message),
            Event::Lost { id, error } => {
                let who = self.name_of(id);
                self.log.say(format!("{who}: {error}"));
            }
            Event::AcceptPaused {
                error, retry_in, ..
            } => {
                self.log
                    .say(format!("accept: {error} (retrying in {retry_in:?})"));
                // Out of descriptors: the connections that have not named
                // themselves make room for newcomers, the oldest first.
                self.close_oldest_unnamed(64, "room for newcomers (out of file descriptors)");
            }
            // Not TLS, a refused certificate, too slow: never a member.
            Event::HandshakeFailed { error, .. } => self.log.say(format!("{error}")),
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

    /// Flood control: the message's cost is taken from the member's
    /// bucket; past it, the member is paused (not read) until it is within
    /// its limit again. `false`: the message is dropped (it came past a
    /// burst's worth of debt, read before the pause took hold).
    fn charge(&mut self, id: Id, len: usize) -> bool {
        let Some(limit) = self.flood else {
            return true;
        };
        let Some(member) = self.members.get_mut(&id) else {
            return true;
        };
        let now = Instant::now();
        match member.bucket.take(flood::cost(len), &limit, now) {
            flood::Take::Within => true,
            flood::Take::Over(wait) => {
                if !self.board.is_paused(id) {
                    self.board.pause(id);
                    self.paused.push((now + wait, id));
                }
                true
            }
            flood::Take::Refused => {
                member.dropped += 1;
                false
            }
        }
    }

    fn said(&mut self, id: Id, message: &[u8]) {
        if message.is_empty() {
            return; // a keepalive: it kept the member's place
        }
        let text = String::from_utf8_lossy(message).into_owned();
        let Some(member) = self.members.get(&id) else {
            return;
        };
        match member.name.clone() {
            None if text == "bye" => self.board.close(id),
            None => self.named(id, text),
            Some(_) if text == "bye" => {
                self.leave(id);
                self.board.close(id);
            }
            Some(name) => {
                // One message is one line, as it was sent: no line end,
                // escape or invisible character reaches anyone as itself.
                let text = names::visible(&text);
                self.announce(Some(id), format!("{name}: {text}"));
                self.publish('M', &name, Some(&text));
            }
        }
    }

    /// The member's first message, its name: taken if it is a name and
    /// nobody here has it; refused with the reason otherwise (the member
    /// is told, then closed).
    fn named(&mut self, id: Id, name: String) {
        let now = Instant::now();
        let source = match self.board.peer_addr(id) {
            Some(converse::Addr::Udp(source)) => Some(source),
            _ => None,
        };
        // Over UDP, `NAME<TAB>COOKIE`: a cookie the room gave this source
        // when the cap turned it away proves that it receives what is sent
        // to its address; it joins past the cap.
        let (name, proven) = match (source, name.split_once('\t')) {
            (Some(source), Some((name, cookie))) => {
                let proven = self.cookies.check(cookie, source, now);
                (name.to_owned(), proven)
            }
            _ => (name, false),
        };
        let key = names::key(&name);
        // Unique across the relay too: a member of another room shows as
        // NAME@LABEL, but a reader should not have to tell two alices by
        // their servers. (Two rooms that take one name at the same moment,
        // before hearing each other, both keep it.)
        let taken = self.taken.contains(&key)
            || self.relay.as_ref().is_some_and(|r| {
                r.remote
                    .values()
                    .any(|room| room.members.keys().any(|n| names::key(n) == key))
            });
        let udp = self.members.get(&id).is_some_and(|m| m.udp);
        let crowded = udp
            && !proven
            && self.udp_joins.as_mut().is_some_and(|(limit, bucket)| {
                match bucket.take(1.0, limit, Instant::now()) {
                    flood::Take::Within => false,
                    flood::Take::Over(_) => {
                        // A refusal costs nothing of the next second's.
                        bucket.give_back(1.0);
                        true
                    }
                    flood::Take::Refused => true,
                }
            });
        let cookie;
        let refusal = match (names::refusal(&name), taken, crowded, source) {
            (Some(why), ..) => Some(why),
            (None, true, ..) => Some("the name is taken"),
            (None, false, true, Some(source)) => {
                cookie = format!(
                    "too many joining over UDP; try again in a moment, or now with the cookie {}",
                    self.cookies.make(source, now)
                );
                Some(cookie.as_str())
            }
            _ => None,
        };
        if let Some(why) = refusal {
            let shown = names::shown(&name);
            self.log
                .say(format!("{}: name {shown} refused: {why}", self.name_of(id)));
            let _ = self
                .board
                .send_text(id, &format!("* {shown} refused: {why}"));
            // Turned away by the cap, a UDP source stays (without a name,
            // within the name deadline) to come back with its cookie.
            if !(crowded && taken_only_by_cap(&name, taken)) {
                self.board.close(id);
            }
            return;
        }
        if let Some(member) = self.members.get_mut(&id) {
            member.name = Some(name.clone());
        }
        self.taken.insert(names::key(&name));
        self.publish('J', &name, None);
        if udp {
            self.udp_batch.joined.push((id, name));
        } else {
            self.announce(Some(id), format!("* {name} joined"));
        }
    }

    fn ended(&mut self, id: Id, end: End) {
        if let End::Failed(e @ Error::SlowConsumer { .. }) = &end {
            self.log
                .say(format!("{}: disconnected: {e}", self.name_of(id)));
        } else if let End::Failed(e) = &end {
            self.log.say(format!("{}: {e}", self.name_of(id)));
        }
        self.leave(id);
    }

    /// The member goes (once): announced if it had said its name.
    fn leave(&mut self, id: Id) {
        self.behind.remove(&id);
        if let Some(Member {
            name: Some(name),
            udp,
            ..
        }) = self.members.remove(&id)
        {
            self.taken.remove(&names::key(&name));
            self.publish('L', &name, None);
            if udp {
                self.udp_batch.left.push((id, name));
            } else {
                self.announce(Some(id), format!("* {name} left"));
            }
        }
    }

    /// Announces the joins and leaves of UDP members gathered in the last
    /// turn: one by one if they are few, else in one line each way, so
    /// that a thousand joins cost one line per member, not a thousand.
    fn announce_batch(&mut self) {
        let batch = std::mem::take(&mut self.udp_batch);
        for (list, verb) in [(batch.joined, "joined"), (batch.left, "left")] {
            if list.len() <= BATCH_LINES {
                for (id, name) in list {
                    self.announce(Some(id), format!("* {name} {verb}"));
                }
            } else {
                let shown: Vec<&str> = list
                    .iter()
                    .take(BATCH_LINES)
                    .map(|(_, n)| n.as_str())
                    .collect();
                let line = format!(
                    "* {} and {} more {verb}",
                    shown.join(", "),
                    list.len() - shown.len()
                );
                self.announce(None, line);
            }
        }
    }

    /// Prints `line` and sends it to every named member but `from`. A member
    /// whose backlog overflows is ended as a slow consumer (its end comes as
    /// an event, and it leaves then).
    fn announce(&mut self, from: Option<Id>, line: String) {
        let now = Instant::now();
        for (&id, member) in &self.members {
            if Some(id) != from && member.name.is_some() {
                let _ = self.board.send_text(id, &line);
                // Past the soft limit, its progress is watched.
                if self.board.queued(id).unwrap_or(0) > self.soft_backlog
                    && !self.behind.contains_key(&id)
                {
                    let written = self.board.written(id).unwrap_or(0);
                    self.behind.insert(id, flood::Behind::new(written, now));
                    self.next_check = self.next_check.min(now + self.stall / 5);
                }
            }
        }
        self.printer.say(line);
    }
}

/// What a name may be, and text made safe to show: a member cannot pass
/// for another, nor forge the room's lines (`* alice left`) with line
/// ends, terminal escapes or invisible characters.
pub mod names {
    use std::borrow::Cow;

    /// The longest name, in characters.
    pub const MAX_NAME: usize = 32;

    /// Why `name` cannot be a member's name, if it cannot: empty, too
    /// long, spaces around it, a control, invisible or direction-changing
    /// character, or a character the room's own lines use (`@` names a
    /// member of another server, `:` ends a name in `NAME: TEXT`, a
    /// leading `*` starts the room's announcements).
    pub fn refusal(name: &str) -> Option<&'static str> {
        if name.is_empty() {
            return Some("a name cannot be empty");
        }
        if name.chars().count() > MAX_NAME {
            return Some("a name has at most 32 characters");
        }
        if name.trim() != name {
            return Some("a name cannot start or end with a space");
        }
        if name.chars().any(hidden) {
            return Some("a name cannot hold control or invisible characters");
        }
        if name.contains(['@', ':']) || name.starts_with('*') {
            return Some("a name cannot hold '@' or ':' or start with '*'");
        }
        None
    }

    /// `true` for what a terminal would not show as itself: controls (line
    /// ends, escapes, DEL, C1), zero-width and direction-changing
    /// characters, and the byte-order mark.
    pub fn hidden(c: char) -> bool {
        c.is_control()
            || matches!(c,
                '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}')
    }

    /// `text` with every hidden character shown as its escape (`\u{1b}`),
    /// so that one message is one line, as it was sent.
    pub fn visible(text: &str) -> Cow<'_, str> {
        if !text.chars().any(hidden) {
            return Cow::Borrowed(text);
        }
        let mut shown = String::with_capacity(text.len() + 8);
        for c in text.chars() {
            if hidden(c) {
                shown.extend(c.escape_unicode());
            } else {
                shown.push(c);
            }
        }
        Cow::Owned(shown)
    }

    /// A name as the room quotes it back: hidden characters visible, and
    /// cut after 40 characters (a refusal never echoes megabytes).
    pub fn shown(name: &str) -> String {
        let visible = visible(name);
        let mut chars = visible.chars();
        let mut shown: String = chars.by_ref().take(40).collect();
        if chars.next().is_some() {
            shown.push('…');
        }
        shown
    }

    /// Two names that a reader could take for one another: the same but
    /// for case.
    pub fn same(a: &str, b: &str) -> bool {
        key(a) == key(b)
    }

    /// A name as the room compares it (see [`same`]).
    pub fn key(name: &str) -> String {
        name.to_lowercase()
    }
}

/// Flood control and slow consumers, with time as an argument: a member's
/// messages draw from a bucket that refills at a steady rate, and a member
/// behind on its reading is watched for progress.
pub mod flood {
    use std::time::{Duration, Instant};

    /// What a member may send: `rate` units per second, up to `burst` at
    /// once. A message costs one unit, and one more per whole KiB (see
    /// [`cost`]).
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub struct Limit {
        pub rate: f64,
        pub burst: f64,
    }

    impl Limit {
        /// Generous for people, tight for scripts: 100 lines a second,
        /// 1,000 at once (a pasted file); about 100 KiB a second. Readers
        /// keep up with far more (50,000 lines a second on loopback), so
        /// many members at this rate still cost nobody their place.
        pub const DEFAULT: Limit = Limit {
            rate: 100.0,
            burst: 1000.0,
        };

        /// `rate` per second, `burst` at once; `None` unless both are
        /// positive and finite.
        pub fn new(rate: f64, burst: f64) -> Option<Limit> {
            (rate > 0.0 && burst > 0.0 && rate.is_finite() && burst.is_finite())
                .then_some(Limit { rate, burst })
        }
    }

    /// What a message of `len` bytes costs: one unit, and one per KiB.
    pub fn cost(len: usize) -> f64 {
        1.0 + (len / 1024) as f64
    }

    /// A token bucket.
    #[derive(Clone, Copy, Debug)]
    pub struct Bucket {
        level: f64,
        at: Instant,
    }

    impl Bucket {
        /// A bucket with its whole burst available at `now`.
        pub fn full(limit: &Limit, now: Instant) -> Bucket {
            Bucket {
                level: limit.burst,
                at: now,
            }
        }

        /// Takes `cost` at `now` (the bucket refilled since its last use,
        /// up to the burst); see [`Take`]. The debt goes no deeper than
        /// one burst: past that, nothing is taken.
        pub fn take(&mut self, cost: f64, limit: &Limit, now: Instant) -> Take {
            let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
            self.level = (self.level + elapsed * limit.rate).min(limit.burst);
            self.at = self.at.max(now);
            if self.level - cost < -limit.burst {
                return Take::Refused;
            }
            self.level -= cost;
            if self.level < 0.0 {
                Take::Over(Duration::from_secs_f64(-self.level / limit.rate))
            } else {
                Take::Within
            }
        }

        /// Gives back what a use took (it was refused after all).
        pub fn give_back(&mut self, cost: f64) {
            self.level += cost;
        }
    }

    /// What [`Bucket::take`] decided.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub enum Take {
        /// Within the limit.
        Within,
        /// Taken, into debt: within the limit again after this long (the
        /// member is paused meanwhile).
        Over(Duration),
        /// Not taken: a burst's worth of debt already (what came before
        /// the pause took hold); the message is dropped.
        Refused,
    }

    /// A member over its soft backlog: when it last made progress.
    #[derive(Clone, Copy, Debug)]
    pub struct Behind {
        written: u64,
        since: Instant,
    }

    impl Behind {
        /// Behind from `now`, with `written` bytes written to it so far.
        pub fn new(written: u64, now: Instant) -> Behind {
            Behind {
                written,
                since: now,
            }
        }

        /// `true` once nothing more was written to it for `stall`; more
        /// written is progress, and the wait starts again.
        pub fn stuck(&mut self, written: u64, now: Instant, stall: Duration) -> bool {
            if written > self.written {
                self.written = written;
                self.since = now;
                return false;
            }
            now.saturating_duration_since(self.since) >= stall
        }
    }
}

/// Cookies for UDP joins, as DTLS and QUIC make them: a keyed hash of the
/// source address and the time, kept nowhere. A source that can receive
/// what is sent to its address can send its cookie back; one that forges
/// its address cannot.
pub mod cookie {
    use std::hash::{BuildHasher, Hash, Hasher};
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    /// How long a cookie is good for: this period and the next.
    pub const PERIOD: Duration = Duration::from_secs(30);

    /// Makes and checks cookies; its key is random, per room.
    pub struct Jar {
        key: std::collections::hash_map::RandomState,
        since: Instant,
    }

    impl Jar {
        /// A jar with a fresh random key, its periods counted from `now`.
        pub fn new(now: Instant) -> Jar {
            Jar {
                key: std::collections::hash_map::RandomState::new(),
                since: now,
            }
        }

        fn period(&self, now: Instant) -> u64 {
            now.saturating_duration_since(self.since).as_secs() / PERIOD.as_secs()
        }

        fn tag(&self, source: SocketAddr, period: u64) -> String {
            let mut h = self.key.build_hasher();
            source.hash(&mut h);
            period.hash(&mut h);
            format!("{:016x}", h.finish())
        }

        /// The cookie for `source` at `now`.
        pub fn make(&self, source: SocketAddr, now: Instant) -> String {
            self.tag(source, self.period(now))
        }

        /// `true` if `cookie` was made for `source` in this period or the
        /// last.
        pub fn check(&self, cookie: &str, source: SocketAddr, now: Instant) -> bool {
            let period = self.period(now);
            cookie == self.tag(source, period)
                || (period > 0 && cookie == self.tag(source, period - 1))
        }
    }
}
