//! `maxconn`: a connection counted against the process and its frontend, and the wait for room.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::generation::Generation;
use crate::rate::SharedRate;

/// A client connection counted against `global maxconn` and the frontend's `maxconn`, and in
/// its thread's load (see [`super::spread`]); uncounted on drop.
pub(super) struct ConnPermit {
    gen: Arc<Generation>,
    frontend: usize,
    _load: super::spread::Live,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let p = &self.gen.process;
        p.conns.fetch_sub(1, Ordering::AcqRel);
        self.gen.fe_stats[self.frontend]
            .cur
            .fetch_sub(1, Ordering::AcqRel);
        p.conn_released.release();
    }
}

/// Waits until both the process and the frontend are below their `maxconn`. Like HAProxy, a
/// listener at its limit stops accepting (clients wait in the kernel's backlog) instead of
/// accepting and closing. The connection is counted only once accepted ([`ConnPermit::count`]),
/// so the counts never include accept loops that are merely waiting; at the limit, the loops
/// already waiting in `accept` may each take one more (at most one per thread and address).
pub(super) async fn below_maxconn(gen: &Generation, frontend: usize) {
    // Read at each look: the runtime API may change them (`set maxconn`), and wakes us.
    let below = || {
        (gen.process.conns.load(Ordering::Acquire) < gen.limits.global()
            && gen.fe_stats[frontend].cur.load(Ordering::Acquire) < gen.limits.frontend(frontend))
        .then_some(())
    };
    gen.process.conn_released.wait_for(below, || {}).await;
}

/// The rate limits on a frontend's accepts, with the counter each reads: the process's
/// `maxsessrate` and `maxconnrate`, the frontend's `rate-limit sessions`.
fn rate_limits(gen: &Generation, frontend: usize) -> [(Option<u32>, &SharedRate); 3] {
    let (g, p) = (&gen.config.global, &gen.process);
    [
        (g.maxsessrate, &p.sess_rate),
        (g.maxconnrate, &p.conn_rate),
        (
            gen.config.frontends[frontend].rate_limit_sessions,
            &gen.fe_stats[frontend].sess_rate,
        ),
    ]
}

/// Waits until every rate limit on the frontend's accepts leaves room for one more, as
/// HAProxy's listeners wait (`listener_accept`): meanwhile clients stay in the kernel's
/// backlog. All are looked at again after each wait.
pub(super) async fn below_rate(gen: &Generation, frontend: usize) {
    loop {
        let wait = rate_limits(gen, frontend)
            .into_iter()
            .filter_map(|(limit, rate)| rate.wait_for_room(u64::from(limit?)))
            .max();
        match wait {
            Some(wait) => tokio::time::sleep(wait).await,
            None => return,
        }
    }
}

/// Whether a rate limit applies to the frontend's accepts (see [`below_rate`]).
pub(super) fn rate_limited(gen: &Generation, frontend: usize) -> bool {
    rate_limits(gen, frontend)
        .iter()
        .any(|(limit, _)| limit.is_some())
}

impl ConnPermit {
    /// Counts a connection against `global maxconn` and the frontend's and in the frontend's
    /// session statistics; `load` counts it in its thread's.
    pub(super) fn count(gen: &Arc<Generation>, frontend: usize, load: super::spread::Live) -> Self {
        gen.process.conns.fetch_add(1, Ordering::AcqRel);
        let fe = &gen.fe_stats[frontend];
        let cur = fe.cur.fetch_add(1, Ordering::AcqRel) + 1;
        fe.max.fetch_max(cur, Ordering::Relaxed);
        fe.total.fetch_add(1, Ordering::Relaxed);
        let now = crate::rate::clock();
        fe.conn_rate.add_at(now);
        gen.process.conn_rate.add_at(now);
        Self {
            gen: gen.clone(),
            frontend,
            _load: load,
        }
    }
}
