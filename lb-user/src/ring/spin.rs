//! A short, adaptive wait before a ring's thread sleeps.
//!
//! A thread woken on an idle CPU starts late: the CPU has to leave its idle state first, and in
//! a virtual machine the wake is an inter-processor interrupt through the hypervisor (22 µs
//! median measured here, against 4 µs for a wake on the waker's own CPU). HAProxy's threads
//! sleep in `epoll_wait`, which the kernel wakes with `WF_SYNC` from the socket that got bytes,
//! so the scheduler often moves the woken thread next to the waker; an `io_uring` completion
//! wakes its thread without that hint, and every hop of a request/answer exchange (client, lb,
//! server, lb, client) then waits for an idle CPU to wake. A thread that keeps its CPU for a
//! few tens of microseconds after its work, watching its ring, takes the next completion at
//! once; one that yields the CPU meanwhile (`sched_yield`) delays no other thread of that CPU.
//!
//! How long to keep the CPU is learned much as the kernel's `haltpoll` idle governor learns
//! it for a guest's vCPU: a wait (spin and sleep) that ended within the limit but after the
//! window grows the window (doubling, from a quarter of the limit), a wait longer than the
//! limit halves it, since no spin within the limit would have caught it. A thread whose next
//! work seldom comes that soon stops spinning; one in a stream of short exchanges spins for
//! each. `--spin-us 0` turns it off.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The default limit (`--spin-us`): about a round trip through lb to a nearby server and
/// back (40–120 µs here), so that the wait for its answer, or for a client's next connection,
/// is spun through. Measured with `redis-benchmark -k 0 -c 4` (a connection per request), 5
/// alternating rounds: 50 µs made 0.92–0.99 × HAProxy's rate, 100 µs 0.98–1.05 ×, 200 µs no
/// better; with one client in series both made 1.2–1.3 ×.
pub const DEFAULT_LIMIT_US: u32 = 100;

/// The limit for rings set up from now on, in µs (0: no spinning).
static LIMIT_US: AtomicU32 = AtomicU32::new(DEFAULT_LIMIT_US);

/// Sets the spin limit of rings set up after this call (lb sets it once, before its threads
/// start).
pub fn set_limit(limit: Duration) {
    let us = u32::try_from(limit.as_micros()).unwrap_or(u32::MAX);
    LIMIT_US.store(us, Ordering::Relaxed);
}

thread_local! {
    /// Connections of this thread waiting on its reactor (see [`OnReactor`]).
    static ON_REACTOR: Cell<u32> = const { Cell::new(0) };
}

/// Held while a connection of this thread waits on the thread's reactor (`epoll`): rules
/// reading the first bytes, a PROXY header or response rules, the splice data plane. A spin
/// watches only the ring, so while any is held the thread sleeps at once, as without spinning:
/// its reactor wakes it for such a connection's bytes without delay.
pub struct OnReactor(PhantomData<*const ()>);

impl OnReactor {
    pub fn enter() -> Self {
        ON_REACTOR.with(|n| n.set(n.get() + 1));
        OnReactor(PhantomData)
    }
}

impl Drop for OnReactor {
    fn drop(&mut self) {
        ON_REACTOR.with(|n| n.set(n.get() - 1));
    }
}

/// One thread's window and the wait it measures.
#[derive(Debug)]
pub(super) struct Spin {
    /// The longest spin: also the longest wait counted as short.
    limit: Duration,
    /// How long the next spin may last (0: none).
    window: Duration,
    /// When the thread went to sleep after a spin that found nothing (or without one).
    slept_at: Option<Instant>,
}

impl Spin {
    pub(super) fn new() -> Self {
        Self::with_limit(Duration::from_micros(u64::from(
            LIMIT_US.load(Ordering::Relaxed),
        )))
    }

    pub(super) fn with_limit(limit: Duration) -> Self {
        Spin {
            limit,
            window: Duration::ZERO,
            slept_at: None,
        }
    }

    /// Keeps the CPU while `ready` says nothing came, up to the window, yielding it to any
    /// other runnable thread in between. Returns whether something came (else the thread is
    /// about to sleep, and the wake measures the wait, see [`Spin::woke`]).
    pub(super) fn wait(&mut self, mut ready: impl FnMut() -> bool) -> bool {
        if self.limit.is_zero() || ON_REACTOR.with(Cell::get) > 0 {
            return false;
        }
        let start = Instant::now();
        if !self.window.is_zero() {
            loop {
                if ready() {
                    return true;
                }
                let now = Instant::now();
                if now.duration_since(start) >= self.window {
                    self.slept_at = Some(now);
                    return false;
                }
                // SAFETY: no arguments, no memory; it cannot fail on Linux.
                unsafe { libc::sched_yield() };
            }
        }
        self.slept_at = Some(start);
        false
    }

    /// The thread woke: a sleep that [`Spin::wait`] started adjusts the window.
    pub(super) fn woke(&mut self) {
        if let Some(at) = self.slept_at.take() {
            self.learn(at.elapsed());
        }
    }

    /// A sleep of `slept` after a spin of the window: a wait (spin and sleep) within the limit
    /// grows the window, since a longer spin would have caught it; a longer one shrinks it,
    /// since no spin within the limit would have, and the spin was CPU spent for nothing.
    fn learn(&mut self, slept: Duration) {
        if slept + self.window <= self.limit {
            let grown = if self.window.is_zero() {
                self.limit / 4
            } else {
                self.window * 2
            };
            self.window = grown.min(self.limit);
        } else {
            self.window /= 2;
            if self.window < Duration::from_micros(1) {
                self.window = Duration::ZERO;
            }
        }
    }

    #[cfg(test)]
    pub(super) fn window(&self) -> Duration {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_micros(50);

    /// The thread's next work comes `w` after the thread ran out of it: the spin catches it
    /// when its window is as long, else the thread spins the window and sleeps the rest.
    /// Whether the spin caught it.
    fn waited(spin: &mut Spin, w: Duration) -> bool {
        let window = spin.window();
        if w <= window {
            return true;
        }
        assert!(!spin.wait(|| false));
        assert!(spin.slept_at.take().is_some());
        // The sleep lasted the rest of the wait: learnt from the model, not the clock, which a
        // preemption of a loaded test machine would lengthen.
        spin.learn(w.saturating_sub(window));
        false
    }

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn waits_within_the_limit_grow_the_window_and_longer_ones_shrink_it_to_nothing() {
        let mut spin = Spin::with_limit(LIMIT);
        assert_eq!(spin.window(), Duration::ZERO);
        // Work 30 us apart: missed while the window is shorter, each miss doubling it.
        assert!(!waited(&mut spin, 30 * US));
        assert_eq!(spin.window(), LIMIT / 4);
        assert!(!waited(&mut spin, 30 * US));
        assert_eq!(spin.window(), LIMIT / 2);
        assert!(!waited(&mut spin, 30 * US));
        assert_eq!(spin.window(), LIMIT);
        assert!(waited(&mut spin, 30 * US));
        // Work a little further apart than the limit (a peer that thinks 60 us between
        // requests): no spin within the limit catches it, so the spins stop.
        for _ in 0..7 {
            assert!(!waited(&mut spin, 60 * US));
        }
        assert_eq!(spin.window(), Duration::ZERO);
        assert!(!waited(&mut spin, 60 * US));
        assert_eq!(spin.window(), Duration::ZERO);
        // Short waits again: it grows again; idle, it goes back to nothing.
        assert!(!waited(&mut spin, 5 * US));
        assert_eq!(spin.window(), LIMIT / 4);
        for _ in 0..6 {
            assert!(!waited(&mut spin, 2000 * US));
        }
        assert_eq!(spin.window(), Duration::ZERO);
    }

    #[test]
    fn a_spin_ends_as_soon_as_something_is_ready_and_never_without_a_limit() {
        // A window far longer than any preemption of a loaded test machine (each poll yields
        // the CPU): the spin must end at the third poll, not at the window's end.
        let long = Duration::from_secs(30);
        let mut spin = Spin::with_limit(long);
        spin.window = long;
        let start = Instant::now();
        let mut polls = 0;
        assert!(spin.wait(|| {
            polls += 1;
            polls == 3
        }));
        assert_eq!(polls, 3);
        assert!(start.elapsed() < long);
        // Something came: no sleep to measure.
        spin.woke();
        assert_eq!(spin.window(), long);

        let mut off = Spin::with_limit(Duration::ZERO);
        assert!(!off.wait(|| panic!("no spin without a limit")));
        off.woke();
        assert_eq!(off.window(), Duration::ZERO);
    }

    #[test]
    fn no_spin_while_a_connection_waits_on_the_reactor() {
        let mut spin = Spin::with_limit(LIMIT);
        spin.window = LIMIT;
        {
            let _waits = OnReactor::enter();
            let _another = OnReactor::enter();
            assert!(!spin.wait(|| panic!("no spin while the reactor has work")));
        }
        let mut polls = 0;
        assert!(spin.wait(|| {
            polls += 1;
            true
        }));
        assert_eq!(polls, 1);
    }

    #[test]
    fn a_wake_learns_from_the_time_slept() {
        // Only the direction a late test thread cannot flip: a long sleep shrinks the window.
        let mut spin = Spin::with_limit(LIMIT);
        spin.window = LIMIT;
        assert!(!spin.wait(|| false));
        spin.slept_at = Instant::now().checked_sub(2000 * US);
        spin.woke();
        assert_eq!(spin.window(), LIMIT / 2);
        // Once: a second wake without a sleep changes nothing.
        spin.woke();
        assert_eq!(spin.window(), LIMIT / 2);
    }

    #[test]
    fn a_spin_that_finds_nothing_lasts_its_window() {
        let mut spin = Spin::with_limit(LIMIT);
        spin.window = Duration::from_micros(200);
        let start = Instant::now();
        assert!(!spin.wait(|| false));
        assert!(start.elapsed() >= Duration::from_micros(200));
    }
}
