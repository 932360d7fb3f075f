//! A small bounded queue with timeouts on both ends, for the transports
//! that hand messages between threads (in-memory pairs).
//! std's `SyncSender` has no `send_timeout` on stable, hence this.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Why a push did not happen; the item is handed back.
#[derive(Debug)]
pub(crate) enum PushError<T> {
    /// Still full when the timeout expired (or at once, for `try_push`).
    Full(T),
    /// The receiving end is gone.
    Closed(T),
}

/// Why a pop returned nothing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PopError {
    /// Nothing arrived before the timeout.
    Timeout,
    /// The sending end is closed and everything was taken: the end.
    Ended,
    /// The sending end was reset: what was queued is gone.
    Reset,
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    /// No more pushes will come: pops drain, then report the end.
    tx_closed: bool,
    /// The sender reset: pops report it (after nothing; the items are gone).
    reset: bool,
    /// Nobody pops any more: pushes fail.
    rx_closed: bool,
    /// Threads asleep in `pop` / `push`: a wake-up is a system call, made
    /// only when someone is waiting.
    sleeping_pop: usize,
    sleeping_push: usize,
}

#[derive(Debug)]
pub(crate) struct Queue<T> {
    state: Mutex<State<T>>,
    not_empty: Condvar,
    not_full: Condvar,
    capacity: usize,
}

impl<T> Queue<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                tx_closed: false,
                reset: false,
                rx_closed: false,
                sleeping_pop: 0,
                sleeping_push: 0,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock cannot leave the state half-changed.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pushes, waiting up to `timeout` for room (`None`: wait as long as it takes).
    pub(crate) fn push(&self, item: T, timeout: Option<Duration>) -> Result<(), PushError<T>> {
        let until = timeout.map(|t| Instant::now() + t);
        let mut state = self.lock();
        loop {
            if state.rx_closed || state.tx_closed {
                return Err(PushError::Closed(item));
            }
            if state.items.len() < self.capacity {
                state.items.push_back(item);
                let wake = state.sleeping_pop > 0;
                drop(state);
                if wake {
                    self.not_empty.notify_one();
                }
                return Ok(());
            }
            let left = match until {
                None => None,
                Some(until) => match until.saturating_duration_since(Instant::now()) {
                    left if left.is_zero() => return Err(PushError::Full(item)),
                    left => Some(left),
                },
            };
            state.sleeping_push += 1;
            state = wait(&self.not_full, state, left);
            state.sleeping_push -= 1;
        }
    }

    /// Pushes if there is room now.
    #[cfg(test)]
    pub(crate) fn try_push(&self, item: T) -> Result<(), PushError<T>> {
        self.push(item, Some(Duration::ZERO))
    }

    /// Pops, waiting up to `timeout` (`None`: as long as it takes).
    pub(crate) fn pop(&self, timeout: Option<Duration>) -> Result<T, PopError> {
        let until = timeout.map(|t| Instant::now() + t);
        let mut state = self.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                let wake = state.sleeping_push > 0;
                drop(state);
                if wake {
                    self.not_full.notify_one();
                }
                return Ok(item);
            }
            if state.reset {
                return Err(PopError::Reset);
            }
            if state.tx_closed || state.rx_closed {
                return Err(PopError::Ended);
            }
            let left = match until {
                None => None,
                Some(until) => match until.saturating_duration_since(Instant::now()) {
                    left if left.is_zero() => return Err(PopError::Timeout),
                    left => Some(left),
                },
            };
            state.sleeping_pop += 1;
            state = wait(&self.not_empty, state, left);
            state.sleeping_pop -= 1;
        }
    }

    /// The sending end is done: pops drain what is queued, then see the end.
    pub(crate) fn close_tx(&self) {
        self.lock().tx_closed = true;
        self.not_empty.notify_all();
        self.not_full.notify_all();
    }

    /// The sending end resets: what is queued is dropped and pops report
    /// the reset.
    pub(crate) fn reset_tx(&self) {
        {
            let mut state = self.lock();
            state.tx_closed = true;
            state.reset = true;
            state.items.clear();
        }
        self.not_empty.notify_all();
        self.not_full.notify_all();
    }

    /// The receiving end is gone: pushes fail. The items still queued are
    /// returned, for the caller to account for.
    pub(crate) fn close_rx(&self) -> VecDeque<T> {
        let dropped = {
            let mut state = self.lock();
            state.rx_closed = true;
            std::mem::take(&mut state.items)
        };
        self.not_full.notify_all();
        self.not_empty.notify_all();
        dropped
    }

    /// `true` once the receiving end is gone.
    #[cfg(test)]
    pub(crate) fn is_rx_closed(&self) -> bool {
        self.lock().rx_closed
    }
}

/// Sleeps on `condvar` for at most `left` (`None`: until woken).
fn wait<'a, T>(
    condvar: &Condvar,
    state: MutexGuard<'a, State<T>>,
    left: Option<Duration>,
) -> MutexGuard<'a, State<T>> {
    match left {
        None => condvar.wait(state).unwrap_or_else(|e| e.into_inner()),
        Some(left) => {
            condvar
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn bounded_fifo_with_timeouts() {
        let q = Queue::new(2);
        q.try_push(1).unwrap();
        q.try_push(2).unwrap();
        assert!(matches!(q.try_push(3), Err(PushError::Full(3))));
        assert!(matches!(
            q.push(3, Some(Duration::from_millis(10))),
            Err(PushError::Full(3))
        ));
        assert_eq!(q.pop(None), Ok(1));
        assert_eq!(q.pop(None), Ok(2));
        assert_eq!(
            q.pop(Some(Duration::from_millis(10))),
            Err(PopError::Timeout)
        );
    }

    #[test]
    fn closing_the_sender_drains_then_ends() {
        let q = Queue::new(4);
        q.try_push("a").unwrap();
        q.close_tx();
        assert!(matches!(q.try_push("b"), Err(PushError::Closed("b"))));
        assert_eq!(q.pop(None), Ok("a"));
        assert_eq!(q.pop(None), Err(PopError::Ended));
    }

    #[test]
    fn a_reset_drops_what_is_queued_and_is_reported() {
        let q = Queue::new(4);
        q.try_push(1).unwrap();
        q.reset_tx();
        assert_eq!(q.pop(None), Err(PopError::Reset));
        assert!(matches!(q.try_push(2), Err(PushError::Closed(2))));
    }

    /// Waits (bounded) until `asleep` says a thread sleeps in the queue.
    fn until_asleep<T>(q: &Queue<T>, asleep: impl Fn(&State<T>) -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !asleep(&q.lock()) {
            assert!(Instant::now() < until, "the thread never went to sleep");
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_sleeping_popper_is_woken_by_a_push() {
        let q = Arc::new(Queue::new(4));
        let q2 = Arc::clone(&q);
        let t = std::thread::spawn(move || q2.pop(Some(Duration::from_secs(10))));
        until_asleep(&q, |s| s.sleeping_pop == 1);
        let pushed = Instant::now();
        q.try_push(7).unwrap();
        assert_eq!(t.join().unwrap(), Ok(7));
        assert!(
            pushed.elapsed() < Duration::from_secs(5),
            "woken by the timeout, not the push"
        );
    }

    #[test]
    fn a_sleeping_pusher_is_woken_by_a_pop() {
        let q = Arc::new(Queue::new(1));
        q.try_push(1).unwrap();
        let q2 = Arc::clone(&q);
        let t = std::thread::spawn(move || q2.push(2, Some(Duration::from_secs(10))));
        until_asleep(&q, |s| s.sleeping_push == 1);
        let popped = Instant::now();
        assert_eq!(q.pop(None), Ok(1));
        assert!(t.join().unwrap().is_ok());
        assert!(
            popped.elapsed() < Duration::from_secs(5),
            "woken by the timeout, not the pop"
        );
        assert_eq!(q.pop(None), Ok(2));
    }

    #[test]
    fn a_blocked_pusher_wakes_when_the_receiver_goes() {
        let q = Arc::new(Queue::new(1));
        q.try_push(0).unwrap();
        let q2 = Arc::clone(&q);
        let t = std::thread::spawn(move || q2.push(1, Some(Duration::from_secs(10))));
        until_asleep(&q, |s| s.sleeping_push == 1);
        q.close_rx();
        assert!(matches!(t.join().unwrap(), Err(PushError::Closed(1))));
        assert!(q.is_rx_closed());
    }
}
