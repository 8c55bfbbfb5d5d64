//! The background load variant: one core kept busy by a thread of the bench that spins until it
//! is dropped, or at the latest when its time limit passes (a bench that dies cannot leave it
//! running: it is a thread of this process).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A spinning thread; stops on drop.
pub struct BusyCore {
    stop: Arc<AtomicBool>,
    spins: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl BusyCore {
    /// Starts spinning for at most `limit`.
    pub fn start(limit: Duration) -> BusyCore {
        let stop = Arc::new(AtomicBool::new(false));
        let spins = Arc::new(AtomicU64::new(0));
        let (s, n) = (Arc::clone(&stop), Arc::clone(&spins));
        let thread = std::thread::Builder::new()
            .name("busy-core".into())
            .spawn(move || {
                let end = Instant::now() + limit;
                let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
                while !s.load(Ordering::Relaxed) && Instant::now() < end {
                    for _ in 0..10_000 {
                        // xorshift: work the optimiser cannot remove.
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                    }
                    n.fetch_add(1, Ordering::Relaxed);
                }
                std::hint::black_box(x);
            })
            .ok();
        BusyCore {
            stop,
            spins,
            thread,
        }
    }

    /// Rounds of work done so far (to check that it runs).
    pub fn spins(&self) -> u64 {
        self.spins.load(Ordering::Relaxed)
    }
}

impl Drop for BusyCore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spins_and_stops_on_drop_or_at_its_limit() {
        let b = BusyCore::start(Duration::from_mins(1));
        std::thread::sleep(Duration::from_millis(100));
        assert!(b.spins() > 0);
        let t0 = Instant::now();
        drop(b);
        assert!(t0.elapsed() < Duration::from_secs(2));
        let b = BusyCore::start(Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(300));
        let n = b.spins();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(b.spins(), n, "still spinning after its limit");
    }
}
