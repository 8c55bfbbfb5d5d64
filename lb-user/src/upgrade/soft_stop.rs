//! Soft stop (`SIGUSR1`, or a new process taking over): accept loops end, the process waits
//! for its flows and exits.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::task::{Context, Poll};

use tokio::sync::watch;

/// A stop that is asked once and never taken back: a flag read with one atomic load (every
/// accept reads it), and a channel for those who wait for it.
pub(crate) struct Stop {
    asked: AtomicBool,
    tx: watch::Sender<bool>,
}

impl Stop {
    fn new() -> Self {
        Self {
            asked: AtomicBool::new(false),
            tx: watch::channel(false).0,
        }
    }

    /// Asks for the stop: every [`StopWait`] resolves.
    fn ask(&self) {
        // The flag first: a waiter woken by the channel reads it set.
        self.asked.store(true, Ordering::SeqCst);
        self.tx.send_replace(true);
    }

    fn is_asked(&self) -> bool {
        self.asked.load(Ordering::SeqCst)
    }

    /// Resolves once the stop is asked (at once if it was already).
    fn wait(&self) -> StopWait<'_> {
        let mut rx = self.tx.subscribe();
        StopWait {
            stop: self,
            wait: Box::pin(async move {
                let _ = rx.wait_for(|s| *s).await;
            }),
            registered: false,
        }
    }
}

/// The wait for a [`Stop`] of a loop that polls it at every turn (an accept loop, once per
/// connection). Its first poll registers the task with the channel; after that it is polled
/// again only once the flag says the stop came, since polling the channel's wait takes its
/// lock. So it must stay in the task that first polled it (as a pinned local of a loop does).
pub struct StopWait<'a> {
    stop: &'a Stop,
    wait: Pin<Box<dyn Future<Output = ()> + 'a>>,
    registered: bool,
}

impl Future for StopWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.registered && !self.stop.is_asked() {
            return Poll::Pending;
        }
        self.registered = true;
        self.wait.as_mut().poll(cx)
    }
}

/// The process's soft stop.
fn stopping() -> &'static Stop {
    static STOP: OnceLock<Stop> = OnceLock::new();
    STOP.get_or_init(Stop::new)
}

/// Soft stop (`SIGUSR1`): every accept loop stops taking connections. Clients queued on a
/// socket shared with a new process stay queued for it.
pub fn soft_stop() {
    stopping().ask();
}

/// Resolves once [`soft_stop`] was called (at once if it was already); see [`StopWait`].
pub fn soft_stopped() -> StopWait<'static> {
    stopping().wait()
}

/// Whether [`soft_stop`] was called.
pub fn is_soft_stopped() -> bool {
    stopping().is_asked()
}

/// Work a soft-stopped process finishes before it exits: every thread's accept loops (a
/// connection accepted just before the stop is counted, and served, first) and a `_getsocks`
/// hand-over under way (the new process signals the old one as soon as it has the sockets,
/// before the old one has logged that it sent them).
static UNFINISHED: AtomicUsize = AtomicUsize::new(0);

/// Counts one piece of [`UNFINISHED`] work while it lives.
pub struct Unfinished(());

impl Unfinished {
    pub fn enter() -> Self {
        UNFINISHED.fetch_add(1, Ordering::AcqRel);
        Self(())
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        // Release: a connection an accept loop counted is visible to whoever sees it gone.
        UNFINISHED.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How many accept loops and hand-overs run now.
pub fn unfinished() -> usize {
    UNFINISHED.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::time::Duration;

    use tokio::sync::Notify;

    use super::*;

    /// A loop that polls the wait at every turn, woken 100 times by something else first,
    /// ends when the stop is asked from another thread, and not before.
    #[test]
    fn a_wait_polled_at_every_turn_ends_when_the_stop_is_asked() {
        let stop: &'static Stop = Box::leak(Box::new(Stop::new()));
        let turns: &'static Notify = Box::leak(Box::new(Notify::new()));
        let asker = std::thread::spawn(move || {
            for _ in 0..100 {
                turns.notify_one();
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(!stop.is_asked());
            stop.ask();
        });
        let turned = crate::test_runtime().block_on(async {
            let mut wait = pin!(stop.wait());
            let mut turned = 0;
            let ended = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    tokio::select! {
                        biased;
                        () = wait.as_mut() => break,
                        () = turns.notified() => turned += 1,
                    }
                }
            })
            .await;
            assert!(ended.is_ok(), "the stop was asked, the wait never ended");
            turned
        });
        asker.join().unwrap();
        assert!(turned > 0, "the loop never turned before the stop");
    }

    #[test]
    fn a_wait_made_after_the_stop_ends_at_once() {
        let stop = Stop::new();
        stop.ask();
        assert!(stop.is_asked());
        crate::test_runtime().block_on(async {
            tokio::time::timeout(Duration::from_secs(1), stop.wait())
                .await
                .expect("the stop was asked before the wait");
        });
    }
}
