//! `balance random[(N)]`: N weighted random draws, the least loaded (cur / weight) wins (the
//! power of N choices).

use std::net::SocketAddr;

use super::leastconn::least_loaded;
use super::{load_cmp, Algorithm, Pick};
use crate::server::ServerEntry;

#[derive(Debug)]
pub(crate) struct Random {
    draws: u32,
    /// Cumulative weights parallel to the group's members, for weighted draws.
    cumulative: Vec<u64>,
}

impl Random {
    pub(crate) fn build(servers: &[ServerEntry], members: &[usize], draws: u32) -> Self {
        let cumulative = members
            .iter()
            .scan(0u64, |sum, &i| {
                *sum += u64::from(servers[i].state.weight);
                Some(*sum)
            })
            .collect();
        Self {
            draws: draws.max(1),
            cumulative,
        }
    }
}

impl Algorithm for Random {
    fn pick(
        &self,
        members: &[usize],
        servers: &[ServerEntry],
        _client: SocketAddr,
        exclude: Option<usize>,
    ) -> Pick {
        let total = self.cumulative.last().copied().unwrap_or(0);
        // Keep the least loaded of the draws (cur / weight); on equal load the earlier draw
        // stays, so idle servers are chosen in proportion to their weight.
        let mut best: Option<usize> = None;
        for _ in 0..self.draws {
            let r = fastrand::u64(0..total);
            let i = members[self.cumulative.partition_point(|&c| c <= r)];
            if Some(i) == exclude || servers[i].is_full() {
                continue;
            }
            if best.is_none_or(|b| load_cmp(&servers[i], &servers[b], 0).is_lt()) {
                best = Some(i);
            }
        }
        if let Some(i) = best {
            if servers[i].try_reserve() {
                return Pick::Got(i);
            }
        }
        // Every draw was full or excluded (or lost a race for the last slot): don't report Full
        // while a member is free.
        least_loaded(members, servers, 0, exclude)
    }
}
