//! Receive timeouts built from a user's timeout and a looser limit (a
//! per-message deadline, an idle timeout), applied to `SO_RCVTIMEO` lazily.

use std::io;
use std::time::{Duration, Instant};

/// What one wait in a receive loop should do.
pub(crate) enum Wait {
    /// Go on and read: the socket's timeout is set.
    Go,
    /// The user's timeout has expired.
    UserTimeout,
    /// The looser limit has expired.
    LimitReached,
}

/// Tracks `SO_RCVTIMEO` so that the system call is skipped while the value
/// in force is close enough: a read may wake early (the loop then waits
/// again) but never late for the user's timeout, and at most an eighth late
/// for the looser limit.
#[derive(Debug)]
pub(crate) struct RecvTimer {
    /// What the socket holds now; `Some(ZERO)` means unknown.
    current: Option<Duration>,
}

impl RecvTimer {
    pub(crate) fn new(current: Option<Duration>) -> Self {
        RecvTimer { current }
    }

    /// Forget what the socket holds (someone else set it).
    pub(crate) fn invalidate(&mut self) {
        self.current = Some(Duration::ZERO);
    }

    /// Decides the next wait of a receive that started at `wait_start`
    /// (taken only when `user` is set), where `woke` says a previous wait of
    /// this receive timed out, and `limit_left` is what remains of the looser
    /// limit. Sets the socket's timeout through `set` when needed.
    pub(crate) fn next_wait(
        &mut self,
        user: Option<Duration>,
        wait_start: Option<Instant>,
        woke: bool,
        limit_left: Option<Duration>,
        set: impl FnOnce(Option<Duration>) -> io::Result<()>,
    ) -> io::Result<Wait> {
        if limit_left == Some(Duration::ZERO) {
            return Ok(Wait::LimitReached);
        }
        let user_left = match (user, wait_start) {
            (Some(t), Some(start)) if woke => match t.checked_sub(start.elapsed()) {
                Some(left) if left >= Duration::from_millis(1) => Some(left),
                _ => return Ok(Wait::UserTimeout),
            },
            (t, _) => t,
        };
        let (want, exact) = match (user_left, limit_left) {
            (Some(u), Some(l)) if u <= l => (Some(u), true),
            (Some(u), None) => (Some(u), true),
            (_, Some(l)) => (Some(l), false),
            (None, None) => (None, false),
        };
        let good_enough = match (self.current, want) {
            (cur, None) => cur.is_none() || !woke,
            (None, Some(_)) => false,
            (Some(cur), Some(w)) => cur >= w - w / 8 && cur <= if exact { w } else { w + w / 8 },
        };
        if !good_enough {
            set(want.map(|t| t.max(Duration::from_millis(1))))?;
            self.current = want;
        }
        Ok(Wait::Go)
    }
}

/// What is left of `limit` since `since`, saturating at zero.
pub(crate) fn left(limit: Duration, since: Instant) -> Duration {
    limit.saturating_sub(since.elapsed())
}
