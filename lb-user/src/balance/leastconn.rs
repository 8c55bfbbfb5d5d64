//! `balance leastconn`: the member with the lowest (cur + 1) / weight below its maxconn; the scan
//! starts at a rotating offset so that equally loaded servers take turns. HAProxy adds the
//! server's queue length to `cur`; lb has one queue per backend, so it ranks by (cur + 1) / weight.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{load_cmp, Algorithm, Pick, Tried};
use crate::server::ServerEntry;

#[derive(Debug)]
pub(crate) struct LeastConn {
    rotor: AtomicUsize,
}

impl LeastConn {
    /// `prev`: the previous snapshot's, whose rotor carries over.
    pub(crate) fn build(prev: Option<&Self>) -> Self {
        // Relaxed: only a starting position.
        let start = prev.map_or(0, |p| p.rotor.load(Ordering::Relaxed));
        Self {
            rotor: AtomicUsize::new(start),
        }
    }
}

impl Algorithm for LeastConn {
    fn pick(
        &self,
        members: &[usize],
        servers: &[ServerEntry],
        _client: SocketAddr,
        exclude: Option<usize>,
    ) -> Pick {
        // Relaxed: the rotor only spreads ties; no ordering with other memory needed.
        let start = self.rotor.fetch_add(1, Ordering::Relaxed);
        least_loaded(members, servers, start, exclude)
    }
}

/// The member with the lowest (cur + 1) / weight that is below its maxconn, scanning from
/// `start`; the first of equals in scan order wins.
pub(super) fn least_loaded(
    members: &[usize],
    servers: &[ServerEntry],
    start: usize,
    exclude: Option<usize>,
) -> Pick {
    let n = members.len();
    let mut tried = Tried::new(servers.len());
    loop {
        let mut best: Option<usize> = None;
        for k in 0..n {
            let i = members[(start + k) % n];
            if Some(i) == exclude || tried.contains(i) || servers[i].is_full() {
                continue;
            }
            // Strictly lower only: the first of equals in scan order wins (rotation).
            if best.is_none_or(|b| load_cmp(&servers[i], &servers[b], 1).is_lt()) {
                best = Some(i);
            }
        }
        let Some(i) = best else {
            return Pick::Full;
        };
        if servers[i].try_reserve() {
            return Pick::Got(i);
        }
        // Another thread took its last slot in the meantime: look again without it.
        tried.insert(i);
    }
}
