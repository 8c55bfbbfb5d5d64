//! The thread's flow timers: one sorted queue of (deadline, flow) for every flow on the ring,
//! driven by the ring's loop with one tokio timer for the thread (the earliest deadline), not a
//! timer per flow.
//!
//! Deadlines are kept lazily: activity only moves a flow's idle deadline later, so it is not
//! touched on every byte. When an entry comes due, the flow's real deadline is computed from
//! its state; a flow that was active meanwhile is armed again at its new deadline. A flow has
//! at most one entry that counts (its `armed` tick); an entry that is not its flow's `armed`
//! one any more (the flow ended, or was armed earlier since) is dropped when it comes due.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Deadlines are kept in whole milliseconds from the queue's origin, rounded up: an entry
/// never comes due before its deadline.
pub(super) struct Timers {
    origin: Instant,
    /// (tick, flow key): 16 bytes an entry.
    queue: BinaryHeap<Reverse<(u64, usize)>>,
}

impl Timers {
    pub(super) fn new() -> Self {
        Self {
            origin: Instant::now(),
            queue: BinaryHeap::new(),
        }
    }

    /// The tick of `at`: the first whole millisecond at or after it.
    pub(super) fn tick(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.origin);
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if d > Duration::from_millis(ms) {
            ms + 1
        } else {
            ms
        }
    }

    pub(super) fn instant(&self, tick: u64) -> Instant {
        self.origin + Duration::from_millis(tick)
    }

    /// Queues `key` at `tick`; `true` when it is now the earliest entry (the loop's timer must
    /// be moved).
    pub(super) fn push(&mut self, tick: u64, key: usize) -> bool {
        let earliest = self.queue.peek().is_none_or(|Reverse((t, _))| tick < *t);
        self.queue.push(Reverse((tick, key)));
        earliest
    }

    /// When the earliest entry comes due.
    pub(super) fn next(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((t, _))| self.instant(*t))
    }

    /// The next entry due at `now`, taken off the queue.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(u64, usize)> {
        let Reverse((t, _)) = self.queue.peek()?;
        if self.instant(*t) > now {
            return None;
        }
        self.queue.pop().map(|Reverse(e)| e)
    }

    /// Entries queued (stale ones included).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_due_in_order_and_never_early() {
        let mut t = Timers::new();
        let now = t.origin;
        let at = |ms: u64| now + Duration::from_micros(ms * 1000 + 300);
        assert!(t.push(t.tick(at(50)), 1));
        assert!(!t.push(t.tick(at(80)), 2));
        assert!(t.push(t.tick(at(10)), 3));
        // Rounded up: due only once the whole deadline passed.
        assert_eq!(t.next(), Some(now + Duration::from_millis(11)));
        assert_eq!(t.pop_due(now + Duration::from_micros(10_299)), None);
        assert_eq!(t.pop_due(now + Duration::from_millis(11)), Some((11, 3)));
        assert_eq!(t.pop_due(now + Duration::from_millis(60)), Some((51, 1)));
        assert_eq!(t.pop_due(now + Duration::from_millis(60)), None);
        assert_eq!(t.len(), 1);
        assert_eq!(t.pop_due(now + Duration::from_secs(1)), Some((81, 2)));
        assert_eq!(t.next(), None);
    }
}
