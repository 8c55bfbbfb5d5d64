//! `maxconn`: a connection counted against the process and its frontend, and the wait for room.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::generation::Generation;

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
    let fe_max = gen.config.frontends[frontend]
        .maxconn
        .unwrap_or(gen.maxconn);
    let below = || {
        (gen.process.conns.load(Ordering::Acquire) < gen.maxconn
            && gen.fe_stats[frontend].cur.load(Ordering::Acquire) < fe_max)
            .then_some(())
    };
    gen.process.conn_released.wait_for(below, || {}).await;
}

/// Waits until the process is below `maxsessrate` and `maxconnrate` and the frontend below
/// its `rate-limit sessions`, as HAProxy's listeners wait (`listener_accept`): for as long as
/// one of these rates leaves no room for one more, clients stay in the kernel's backlog.
pub(super) async fn below_rate(gen: &Generation, frontend: usize) {
    let (g, p) = (&gen.config.global, &gen.process);
    let limits = [
        (g.maxsessrate, &p.sess_rate),
        (g.maxconnrate, &p.conn_rate),
        (
            gen.config.frontends[frontend].rate_limit_sessions,
            &gen.fe_stats[frontend].sess_rate,
        ),
    ];
    for (limit, rate) in limits {
        let Some(limit) = limit else { continue };
        while let Some(wait) = rate.wait_for_room(u64::from(limit)) {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Whether a rate limit applies to the frontend's accepts (see [`below_rate`]).
pub(super) fn rate_limited(gen: &Generation, frontend: usize) -> bool {
    let g = &gen.config.global;
    g.maxsessrate.is_some()
        || g.maxconnrate.is_some()
        || gen.config.frontends[frontend].rate_limit_sessions.is_some()
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
