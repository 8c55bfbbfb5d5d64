//! A wake-up for waiters on a shared count (connections under `maxconn`, fds under the
//! budget) that costs the releasing side one fence and one load while nobody waits.
//!
//! `tokio::sync::Notify::notify_waiters` takes Notify's mutex on every call; a connection
//! that ends would pay it even though accept loops almost never wait. [`Released`] counts its
//! waiters and calls `notify_waiters` only when there are some.
//!
//! Why no wake-up is lost: a waiter counts itself, registers its `Notified`, then (after a
//! `SeqCst` fence) checks its condition again; the releaser changes the shared state, then
//! (after a `SeqCst` fence) reads the count. The two fences are ordered one way or the other:
//! if the waiter's comes first, the releaser sees the count and the registered `Notified`
//! and wakes it; if the releaser's comes first, the waiter's check sees the new state.

use std::pin::pin;
use std::sync::atomic::{fence, AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Wakes tasks waiting for a shared state to change (see the module doc).
#[derive(Debug, Default)]
pub struct Released {
    /// Tasks in [`Released::wait_for`] whose first attempt failed.
    waiters: AtomicUsize,
    notify: Notify,
}

/// Counts a waiter until dropped (also when its future is dropped mid-wait).
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(waiters: &'a AtomicUsize) -> Self {
        waiters.fetch_add(1, Ordering::SeqCst);
        Self(waiters)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Released {
    pub fn new() -> Self {
        Self::default()
    }

    /// Call after changing the shared state: wakes every task waiting now.
    pub fn release(&self) {
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }

    /// Whether a task waits now (its first attempt failed and it has not given up).
    pub fn has_waiters(&self) -> bool {
        self.waiters.load(Ordering::Relaxed) > 0
    }

    /// Tries `attempt` until it gives a value, waiting for a [`Released::release`] between
    /// tries; `waiting` is called each time a wait starts. The first try costs nothing more
    /// than `attempt` itself.
    pub async fn wait_for<T>(
        &self,
        mut attempt: impl FnMut() -> Option<T>,
        mut waiting: impl FnMut(),
    ) -> T {
        if let Some(value) = attempt() {
            return value;
        }
        let _counted = Counted::new(&self.waiters);
        loop {
            let mut released = pin!(self.notify.notified());
            released.as_mut().enable();
            fence(Ordering::SeqCst);
            if let Some(value) = attempt() {
                return value;
            }
            waiting();
            released.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_release_right_after_a_failed_check_wakes_the_waiter() {
        // The state changes and is released between the waiter's failed check and its wait:
        // the waiter must wake (one counted only after `waiting` ran would miss it).
        crate::test_runtime().block_on(async {
            let released = Released::new();
            let ready = AtomicBool::new(false);
            let mut first = true;
            let waited = tokio::time::timeout(
                Duration::from_secs(2),
                released.wait_for(
                    || ready.load(Ordering::SeqCst).then_some(()),
                    || {
                        if first {
                            first = false;
                            ready.store(true, Ordering::SeqCst);
                            released.release();
                        }
                    },
                ),
            )
            .await;
            assert!(waited.is_ok(), "the waiter missed the release");
        });
    }

    #[test]
    fn a_release_from_another_thread_always_wakes_the_waiter() {
        // Many rounds of: a waiter on this thread, the state changed and released on another
        // at a varying moment. Each wait must end.
        let rt = crate::test_runtime();
        for round in 0..2_000u32 {
            let released = Arc::new(Released::new());
            let ready = Arc::new(AtomicBool::new(false));
            let releaser = std::thread::spawn({
                let (released, ready) = (released.clone(), ready.clone());
                move || {
                    for _ in 0..round % 64 {
                        std::hint::spin_loop();
                    }
                    ready.store(true, Ordering::Relaxed);
                    released.release();
                }
            });
            let wait = released.wait_for(|| ready.load(Ordering::Relaxed).then_some(()), || {});
            let done =
                rt.block_on(async { tokio::time::timeout(Duration::from_secs(2), wait).await });
            assert!(done.is_ok(), "round {round}: the waiter missed the release");
            releaser.join().unwrap();
            assert!(!released.has_waiters());
        }
    }

    #[test]
    fn a_wait_given_up_is_uncounted() {
        crate::test_runtime().block_on(async {
            let released = Released::new();
            let wait = released.wait_for(|| None::<()>, || {});
            let gave_up = tokio::time::timeout(Duration::from_millis(20), wait).await;
            assert!(gave_up.is_err());
            assert!(!released.has_waiters());
        });
    }

    #[test]
    fn a_first_attempt_that_succeeds_is_never_counted() {
        crate::test_runtime().block_on(async {
            let released = Released::new();
            let mut seen = false;
            released.wait_for(|| Some(()), || seen = true).await;
            assert!(!seen && !released.has_waiters());
        });
    }
}
