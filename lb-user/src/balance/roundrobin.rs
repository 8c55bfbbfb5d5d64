//! `balance roundrobin` and `static-rr`: a precomputed, smoothly interleaved weighted sequence
//! (nginx's smooth weighted round robin) walked by a shared cursor, so their pick order is the
//! same here. The difference is the one HAProxy has: `roundrobin` accepts any runtime weight
//! (the sequence is rebuilt), while `static-rr` only accepts 0 or the configured weight (0 or
//! 100 %); the table enforces that in `set_weight`. HAProxy's roundrobin is also limited to 4095
//! active servers, static-rr is not; neither limit exists here.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{candidates, gcd, Algorithm, Pick, Tried};
use crate::server::ServerEntry;

#[derive(Debug)]
pub(crate) struct Sequence {
    seq: Vec<u32>,
    cursor: AtomicU64,
}

impl Sequence {
    /// `prev`: the previous snapshot's sequence, whose cursor carries over so that a state
    /// change does not restart the backend at its first server.
    pub(crate) fn build(servers: &[ServerEntry], members: &[usize], prev: Option<&Self>) -> Self {
        // Relaxed: the value is only a starting position; any recent value will do.
        let start = prev.map_or(0, |p| p.cursor.load(Ordering::Relaxed));
        Self {
            seq: smooth_sequence(servers, members),
            cursor: AtomicU64::new(start),
        }
    }
}

impl Algorithm for Sequence {
    fn pick(
        &self,
        members: &[usize],
        servers: &[ServerEntry],
        _client: SocketAddr,
        exclude: Option<usize>,
    ) -> Pick {
        // Relaxed: the cursor only hands out positions and publishes no other data; fetch_add's
        // atomicity alone gives concurrent pickers distinct positions, which is what makes the
        // ratio exact across threads.
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        // Walk from `start`, taking the first entry that is not excluded and not full; stop as
        // soon as every candidate has been found full.
        let len = self.seq.len() as u64;
        let mut tried = Tried::new(servers.len());
        for k in 0..len {
            let i = self.seq[((start + k) % len) as usize] as usize;
            if Some(i) == exclude || tried.contains(i) {
                continue;
            }
            if servers[i].try_reserve() {
                return Pick::Got(i);
            }
            if tried.insert(i) == candidates(members, exclude) {
                break;
            }
        }
        Pick::Full
    }
}

/// nginx's smooth weighted round robin, unrolled over one cycle: each step adds every weight to
/// its server's running score, picks the highest score (first on ties) and subtracts the total
/// from it. A weight-w server appears exactly w times per cycle, spread out (weights 1/2/3 give
/// `c b a c b c`... never the same server three times in a row). Weights are divided by their
/// gcd first so the cycle is as short as possible. Cost: O(servers * cycle) at build time.
fn smooth_sequence(servers: &[ServerEntry], members: &[usize]) -> Vec<u32> {
    let weights: Vec<u64> = members
        .iter()
        .map(|&i| u64::from(servers[i].state.weight))
        .collect();
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let weights: Vec<i64> = weights.iter().map(|&w| (w / g) as i64).collect();
    let total: i64 = weights.iter().sum();
    let mut score = vec![0i64; weights.len()];
    let mut seq = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (k, w) in weights.iter().enumerate() {
            score[k] += w;
            if score[k] > score[best] {
                best = k;
            }
        }
        score[best] -= total;
        seq.push(members[best] as u32);
    }
    seq
}
