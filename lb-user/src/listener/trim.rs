//! Gives the memory a burst of connections used back to the system once the burst is over.
//!
//! Each connection's setup (rules, balancing, connect) runs in a future of several KiB, freed
//! once its flow is on the data plane. The allocator (jemalloc, see `main.rs`) returns free
//! pages at once, but each thread keeps a cache of the objects it freed last, for its next
//! allocations, and a thread that goes quiet after a burst keeps them. So each thread counts
//! the connections it accepted, and once many were accepted and then none for a whole tick,
//! it flushes its cache and purges every arena's free pages (`MADV_DONTNEED`; what the decay
//! setting did not release, e.g. when `_RJEM_MALLOC_CONF` changes it). HAProxy keeps its pools
//! for reuse and releases them on memory pressure (`pool_gc`); this is the same trade: a
//! burst's memory is kept while connections keep coming, returned when they stop.

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
        crate::dataplane::sockmap::release_idle_spare();
        let total = ACCEPTED.with(Cell::get);
        if due(total, before) || !std::mem::replace(&mut started, true) {
            let start = Instant::now();
            release_free_memory();
            log::debug!(
                "memory released after {total} connections: {:?}",
                start.elapsed()
            );
            ACCEPTED.with(|n| n.set(0));
            before = 0;
        } else {
            before = total;
        }
    }
}

/// Gives the allocator's free memory back to the system: this thread's cached objects to
/// their arenas, then every arena's free pages.
fn release_free_memory() {
    for name in [&b"thread.tcache.flush\0"[..], b"arena.4096.purge\0"] {
        // SAFETY: both names are NUL-terminated controls that take and return nothing (null
        // pointers, zero lengths); 4096 is `MALLCTL_ARENAS_ALL`.
        let err = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr().cast(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            )
        };
        if err != 0 {
            log::debug!(
                "jemalloc {}: error {err}",
                String::from_utf8_lossy(&name[..name.len() - 1])
            );
        }
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
