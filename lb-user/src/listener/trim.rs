//! Gives the memory a burst of connections used back to the system once the burst is over.
//!
//! Each connection's setup (rules, balancing, connect) runs in a future of several KiB, freed
//! once its flow is on the data plane. glibc keeps freed memory for the next allocations: its
//! heap only shrinks from the top, and the entries of the flows that stay sit among the freed
//! futures. A thousand connections opened at once and then held idle would keep their
//! setups' peak for as long as they stay. So each thread counts the connections it accepted,
//! and once many were accepted and then none for a whole tick, it calls `malloc_trim(0)`,
//! which hands every free page inside the heap back (`MADV_DONTNEED`). HAProxy keeps its
//! pools for reuse and releases them on memory pressure (`pool_gc`); this is the same trade:
//! a burst's memory is kept while connections keep coming, returned when they stop. Only
//! whole free pages go back: a freed setup future between two idle flows' allocations (a
//! burst leaves thousands) stays, so this returns what starting freed and what flows that
//! ended freed, not the holes of a burst whose flows stay.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How often a thread looks whether it went quiet after a burst.
const TICK: Duration = Duration::from_secs(1);
/// Connections accepted since the last trim that make one worth its cost (it walks the heap:
/// about a millisecond for tens of MiB).
const TRIM_AFTER: u32 = 256;

thread_local! {
    /// Connections accepted on this thread since its last trim.
    static ACCEPTED: Cell<u32> = const { Cell::new(0) };
}

/// Counts one connection accepted on this thread.
pub(super) fn accepted() {
    ACCEPTED.with(|n| n.set(n.get().saturating_add(1)));
}

/// Whether a thread that accepted `total` connections since its last trim, `total - before`
/// of them in the last tick, trims now: a burst happened and is over.
fn due(total: u32, before: u32) -> bool {
    total >= TRIM_AFTER && total == before
}

/// The thread's trimming loop, for its whole life. Its first tick trims whatever: what
/// starting freed (loading the BPF programs, building the first generation) goes back too.
pub(super) async fn run() {
    let (mut before, mut started) = (0, false);
    loop {
        tokio::time::sleep(TICK).await;
        let total = ACCEPTED.with(Cell::get);
        if due(total, before) || !std::mem::replace(&mut started, true) {
            let start = Instant::now();
            release_free_memory();
            log::debug!(
                "malloc_trim after {total} connections: {:?}",
                start.elapsed()
            );
            ACCEPTED.with(|n| n.set(0));
            before = 0;
        } else {
            before = total;
        }
    }
}

/// Gives glibc's free memory back to the system.
fn release_free_memory() {
    // SAFETY: malloc_trim only releases free memory and takes the allocator's locks itself.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_a_burst_is_over() {
        assert!(
            !due(TRIM_AFTER - 1, TRIM_AFTER - 1),
            "too few to be worth it"
        );
        assert!(!due(TRIM_AFTER + 5, TRIM_AFTER), "connections still coming");
        assert!(due(TRIM_AFTER + 5, TRIM_AFTER + 5), "a tick with none");
    }
}
