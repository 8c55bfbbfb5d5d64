//! `maxconn`: a connection counted against the process and its frontend, and the wait for room.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::ctx::ThreadCtx;
use crate::generation::Generation;
use crate::rate::SharedRate;

/// A client connection counted against `global maxconn`, the frontend's `maxconn` and its
/// address's (`bind ... maxconn`), and in its thread's load (see [`super::spread`]);
/// uncounted on drop.
pub(super) struct ConnPermit {
    gen: Arc<Generation>,
    frontend: usize,
    /// Its address's count, when the address has a limit.
    listener: Option<Arc<AtomicU32>>,
    _load: super::spread::Live,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let p = &self.gen.process;
        p.conns.fetch_sub(1, Ordering::AcqRel);
        self.gen.fe_stats[self.frontend]
            .cur
            .fetch_sub(1, Ordering::AcqRel);
        if let Some(l) = &self.listener {
            l.fetch_sub(1, Ordering::AcqRel);
        }
        p.conn_released.release();
    }
}

/// Waits until the process, the frontend and the address `addr` are below their `maxconn`,
/// in the generation that serves `addr` at each look (a reload wakes the wait: its limits
/// apply at once; a removed address ends it, and its loop then stops). Like HAProxy, a
/// listener at its limit stops accepting (clients wait in the kernel's backlog) instead of
/// accepting and closing. The connection is counted only once accepted ([`ConnPermit::count`]),
/// so the counts never include accept loops that are merely waiting; at the limit, the loops
/// already waiting in `accept` may each take one more (at most one per thread and address).
pub(super) async fn below_maxconn(ctx: &ThreadCtx, addr: SocketAddr) {
    // Read at each look: the runtime API may change them (`set maxconn`), and wakes us.
    let below = || {
        ctx.with_serving(addr, |gen, frontend| {
            gen.process.conns.load(Ordering::Acquire) < gen.limits.global()
                && gen.fe_stats[frontend].cur.load(Ordering::Acquire)
                    < gen.limits.frontend(frontend)
                && gen
                    .listener_limits
                    .get(&addr)
                    .is_none_or(crate::generation::ListenerLimit::has_room)
        })
        // A removed address: nothing to wait for.
        .unwrap_or(true)
        .then_some(())
    };
    if below().is_some() {
        return;
    }
    // The process's counts and wake-up are every generation's.
    let Some(process) = ctx.with_serving(addr, |gen, _| gen.process.clone()) else {
        return;
    };
    process.conn_released.wait_for(below, || {}).await;
}

/// The rate limits on a frontend's accepts, with the counter each reads: the process's
/// `maxsessrate` and `maxconnrate` (as `set rate-limit` left them), the frontend's
/// `rate-limit sessions`.
fn rate_limits(gen: &Generation, frontend: usize) -> [(Option<u32>, &SharedRate); 3] {
    let (l, p) = (&gen.limits, &gen.process);
    // Read at each look: `set rate-limit` may change them.
    let now = |limit: &AtomicU32| Some(limit.load(Ordering::Relaxed)).filter(|&n| n > 0);
    [
        (now(&l.sess_rate), &p.sess_rate),
        (now(&l.conn_rate), &p.conn_rate),
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
    /// Counts a connection against `global maxconn`, the frontend's, and the limit of the
    /// address that accepted it (`None`: a connection handed over by an upgrade, which the
    /// old process accepted), and in the frontend's session statistics; `load` counts it in
    /// its thread's.
    pub(super) fn count(
        gen: &Arc<Generation>,
        frontend: usize,
        addr: Option<SocketAddr>,
        load: super::spread::Live,
    ) -> Self {
        gen.process.conns.fetch_add(1, Ordering::AcqRel);
        let listener = addr.and_then(|a| gen.listener_limits.get(&a)).map(|l| {
            l.conns.fetch_add(1, Ordering::AcqRel);
            l.conns.clone()
        });
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
            listener,
            _load: load,
        }
    }
}
