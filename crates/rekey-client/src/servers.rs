//! Several `rekey serve` of one vault behind one [`crate::HttpClient`]: the
//! client-side round-robin. Which server a request goes to next, and which
//! to leave out for a while after it did not answer.
//!
//! - Requests take the servers in turn (one counter shared by every clone
//!   of the client, so concurrent logins spread too). Nothing ties a
//!   session to the server that opened it: every server of a vault checks
//!   session tokens with the vault's own key (a row of the vault).
//! - A server whose connection failed (refused, reset, closed before the
//!   answer) is left out for [`DOWN_FOR`]; the request goes on to the next
//!   one at once. Only when every server failed in a row does the client
//!   pause before the next round (see
//!   [`crate::HttpClient::with_transport_attempts`]).
//! - A server that answers 502, 503 or 504 (busy, its database does not
//!   answer, a proxy in front of it has no upstream) is not left out, but
//!   the request, if it is safe to send again, goes to the next server;
//!   when every server answered so, the answer is the client's.
//!
//! With one server this is the single-server behaviour: every attempt goes
//! to it, and the client pauses between attempts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long a server whose connection failed is left out of the turn
/// (unless no other server is left): long enough that a dead server does
/// not cost every request an attempt, short enough that a restarted one
/// soon takes requests again.
pub const DOWN_FOR: Duration = Duration::from_secs(2);

/// The servers of one client and their turn.
#[derive(Debug)]
pub(crate) struct Servers {
    bases: Vec<String>,
    next: AtomicUsize,
    /// Per server: left out until then.
    down_until: Mutex<Vec<Option<Instant>>>,
}

impl Servers {
    /// `bases` must not be empty (the caller checks).
    pub(crate) fn new(bases: Vec<String>) -> Self {
        let n = bases.len();
        Self {
            bases,
            next: AtomicUsize::new(0),
            down_until: Mutex::new(vec![None; n]),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.bases.len()
    }

    /// The base URL of server `i` (`""` for an index out of range).
    pub(crate) fn base(&self, i: usize) -> &str {
        self.bases.get(i).map_or("", String::as_str)
    }

    pub(crate) fn bases(&self) -> &[String] {
        &self.bases
    }

    /// Every update is one assignment: a lock poisoned by a panic elsewhere
    /// still holds consistent marks.
    fn lock(&self) -> MutexGuard<'_, Vec<Option<Instant>>> {
        self.down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The server for the next attempt: the next in turn that is not left
    /// out and is not `avoid` (the one that just failed); if every other
    /// server is left out, the next in turn but `avoid`; with one server,
    /// that one.
    pub(crate) fn pick(&self, avoid: Option<usize>, now: Instant) -> usize {
        let n = self.bases.len().max(1);
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let down = self.lock();
        let in_turn = (0..n).map(|k| (start + k) % n);
        let usable = |i: &usize| down.get(*i).copied().flatten().is_none_or(|t| t <= now);
        in_turn
            .clone()
            .find(|i| Some(*i) != avoid && usable(i))
            .or_else(|| in_turn.clone().find(|i| Some(*i) != avoid))
            .unwrap_or(start)
    }

    /// Server `i` did not answer at `now`: leave it out for [`DOWN_FOR`].
    pub(crate) fn failed(&self, i: usize, now: Instant) {
        if let Some(slot) = self.lock().get_mut(i) {
            *slot = Some(now + DOWN_FOR);
        }
    }

    /// Server `i` answered: it takes its turn again.
    pub(crate) fn answered(&self, i: usize) {
        if let Some(slot) = self.lock().get_mut(i) {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Servers {
        Servers::new(vec![
            "http://a".into(),
            "http://b".into(),
            "http://c".into(),
        ])
    }

    #[test]
    fn requests_take_the_servers_in_turn() {
        let s = three();
        let now = Instant::now();
        let picked: Vec<usize> = (0..7).map(|_| s.pick(None, now)).collect();
        assert_eq!(picked, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(s.base(2), "http://c");
        assert_eq!(s.base(3), "");
    }

    #[test]
    fn a_server_that_failed_is_left_out_until_its_time_is_up() {
        let s = three();
        let now = Instant::now();
        s.failed(1, now);
        // The turns that would have gone to b go to the next server.
        let picked: Vec<usize> = (0..6).map(|_| s.pick(None, now)).collect();
        assert_eq!(picked, [0, 2, 2, 0, 2, 2]);
        // After DOWN_FOR it takes its turn again.
        let later = now + DOWN_FOR;
        let picked: Vec<usize> = (0..3).map(|_| s.pick(None, later)).collect();
        assert_eq!(picked, [0, 1, 2]);
        // An answer puts it back at once.
        s.failed(1, now);
        s.answered(1);
        let picked: Vec<usize> = (0..3).map(|_| s.pick(None, now)).collect();
        assert_eq!(picked, [0, 1, 2]);
    }

    #[test]
    fn the_next_attempt_avoids_the_server_that_just_failed() {
        let s = three();
        let now = Instant::now();
        // a failed: b or c, never a.
        s.failed(0, now);
        for _ in 0..6 {
            assert_ne!(s.pick(Some(0), now), 0);
        }
        // Every server left out: still the next in turn but the one that
        // just failed (someone must be tried).
        s.failed(1, now);
        s.failed(2, now);
        for _ in 0..6 {
            let i = s.pick(Some(2), now);
            assert!(i == 0 || i == 1, "{i}");
        }
        // A 503 marks nothing: the next attempt only avoids that server.
        let s = three();
        for _ in 0..6 {
            assert_ne!(s.pick(Some(1), now), 1);
        }
    }

    #[test]
    fn one_server_is_always_the_one() {
        let s = Servers::new(vec!["http://a".into()]);
        let now = Instant::now();
        s.failed(0, now);
        assert_eq!(s.pick(Some(0), now), 0);
        assert_eq!(s.pick(None, now), 0);
    }
}
