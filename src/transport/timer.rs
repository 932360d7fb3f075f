//! `SO_RCVTIMEO` and `SO_SNDTIMEO`, set lazily: a socket's timeout is a
//! per-call limit, while converse's timeouts bound whole operations, so the
//! blocking drivers set the socket's value to what is left before each
//! call, skipping the system call while the value in force is close enough.

use std::io;
use std::time::Duration;

/// One socket timeout (receive or send) and what it is set to.
#[derive(Debug)]
pub(crate) struct SockTimer {
    /// What the socket holds now; `Some(ZERO)` means unknown.
    current: Option<Duration>,
}

/// The shortest timeout a socket is given: 1 ms (a zero `SO_RCVTIMEO` means
/// "never" to the system).
pub(crate) const MIN_WAIT: Duration = Duration::from_millis(1);

impl SockTimer {
    /// A timer for a socket whose timeout is `current`.
    pub(crate) fn new(current: Option<Duration>) -> Self {
        SockTimer { current }
    }

    /// Forget what the socket holds (something else set it).
    pub(crate) fn invalidate(&mut self) {
        self.current = Some(Duration::ZERO);
    }

    /// Makes the socket's timeout fit a wait of `want` (`None`: block). With
    /// `exact`, the socket never waits longer than `want` (a user's timeout
    /// must not be overrun); otherwise up to an eighth longer is good enough
    /// (a looser limit, such as a deadline, checked again after the wait).
    /// A shorter value in force is good enough if it is at least seven
    /// eighths of `want`: the wait may end early, and the caller loops.
    pub(crate) fn fit(
        &mut self,
        want: Option<Duration>,
        exact: bool,
        set: impl FnOnce(Option<Duration>) -> io::Result<()>,
    ) -> io::Result<()> {
        let want = want.map(|w| w.max(MIN_WAIT));
        let good_enough = match (self.current, want) {
            (cur, None) => cur.is_none(),
            (None, Some(_)) => false,
            (Some(cur), Some(w)) => {
                !cur.is_zero() && cur >= w - w / 8 && cur <= if exact { w } else { w + w / 8 }
            }
        };
        if !good_enough {
            set(want)?;
            self.current = want;
        }
        Ok(())
    }
}

/// The smaller of two optional waits (`None` is "forever"), and whether the
/// first one (the exact bound) is the one that counts.
pub(crate) fn earliest(
    exact: Option<Duration>,
    loose: Option<Duration>,
) -> (Option<Duration>, bool) {
    match (exact, loose) {
        (Some(e), Some(l)) if e <= l => (Some(e), true),
        (Some(e), None) => (Some(e), true),
        (_, Some(l)) => (Some(l), false),
        (None, None) => (None, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_only_when_needed_and_never_overruns_an_exact_wait() {
        let mut t = SockTimer::new(None);
        let calls = std::cell::RefCell::new(Vec::new());
        let set = |w: Option<Duration>| {
            calls.borrow_mut().push(w);
            Ok(())
        };
        t.fit(None, false, set).unwrap();
        assert!(calls.borrow().is_empty(), "already blocking");
        t.fit(Some(Duration::from_secs(8)), true, set).unwrap();
        // 9 s wanted: the 8 s in force is close enough (the wait may end
        // early and be made again), no system call.
        t.fit(Some(Duration::from_secs(9)), true, set).unwrap();
        // 7.5 s left: 8 s would overrun it.
        t.fit(Some(Duration::from_millis(7500)), true, set).unwrap();
        // Less than 7 s left: 8 s would overrun it.
        t.fit(Some(Duration::from_secs(6)), true, set).unwrap();
        // A loose limit of 5.5 s takes the 6 s in force.
        t.fit(Some(Duration::from_millis(5500)), false, set)
            .unwrap();
        t.fit(Some(Duration::ZERO), true, set).unwrap();
        assert_eq!(
            calls.into_inner(),
            vec![
                Some(Duration::from_secs(8)),
                Some(Duration::from_millis(7500)),
                Some(Duration::from_secs(6)),
                Some(MIN_WAIT)
            ]
        );
    }

    #[test]
    fn an_unknown_value_is_always_set() {
        let mut t = SockTimer::new(Some(Duration::from_secs(1)));
        t.invalidate();
        let mut n = 0;
        t.fit(Some(Duration::from_secs(1)), true, |_| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn the_earliest_wait_says_which_bound_counts() {
        let s = Duration::from_secs;
        assert_eq!(earliest(Some(s(1)), Some(s(2))), (Some(s(1)), true));
        assert_eq!(earliest(Some(s(3)), Some(s(2))), (Some(s(2)), false));
        assert_eq!(earliest(None, Some(s(2))), (Some(s(2)), false));
        assert_eq!(earliest(None, None), (None, false));
    }
}
