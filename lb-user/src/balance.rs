//! Balancing algorithms (`balance roundrobin|static-rr|leastconn|first|source|random`): every
//! backend snapshot precomputes what its algorithm needs, and picking a server is lock-free.
//!
//! Which servers take part (haproxy semantics): the usable non-backup servers; when there is
//! none, the first usable backup (lowest `id`), or every usable backup with `option allbackups`.
//! That set is fixed per snapshot ([`Balancer::build`]); a new snapshot is built whenever a
//! server's state or weight changes.
//!
//! `roundrobin` vs `static-rr`: both walk a precomputed, smoothly interleaved weighted sequence
//! (nginx's smooth weighted round robin), so their pick order is the same here. The difference is
//! the one haproxy has: `roundrobin` accepts any runtime weight (the sequence is rebuilt), while
//! `static-rr` only accepts 0 or the configured weight (0 or 100 %); the table enforces that in
//! `set_weight`. haproxy's roundrobin is also limited to 4095 active servers, static-rr is not;
//! neither limit exists here.
//!
//! Other differences from haproxy, all due to lb having one queue per backend rather than one
//! per server: `leastconn` ranks by (cur + 1) / weight (haproxy adds the server's queue length);
//! `source` with a full server returns Full and the client waits in the backend queue, served
//! only by that server (see the table's dispatcher), as it would in haproxy's server queue.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::config::{Backend, Balance, HashType};
use crate::table::ServerEntry;

/// Virtual nodes per unit of weight on the `hash-type consistent` ring. haproxy uses the same
/// factor (`BE_WEIGHT_SCALE`), so clients land on the same share of servers as there. The price
/// is coarseness at low weights: with weight 1 (16 points) a server's share of the ring can be
/// off its fair share by tens of percent; higher weights even it out. More points would cost
/// memory and rebuild time on every state change (a 256-weight server already has 4096).
pub const RING_POINTS_PER_WEIGHT: u32 = 16;

/// Outcome of one pick. `Got` means a connection slot has already been reserved on that server
/// (its `cur` incremented); the caller owns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pick {
    /// Index into the snapshot's servers; a slot is reserved there.
    Got(usize),
    /// Candidates exist but every one is at its `maxconn` (the caller queues).
    Full,
    /// No usable server other than the excluded one.
    NoServer,
}

/// The precomputed balancing data of one snapshot.
#[derive(Debug)]
pub(crate) struct Balancer {
    /// The servers that take part (normal servers, or backups when no normal one is usable).
    primary: Group,
    /// When `primary` has exactly one member: the group that serves if that member is excluded
    /// (redispatch away from the only server), i.e. the set chosen as if it were not usable.
    fallback: Option<Group>,
}

impl Balancer {
    /// Precomputes the balancing data for `servers` (with their current state). `prev` is the
    /// previous snapshot's balancer: its round-robin cursor and leastconn rotor carry over, so a
    /// state change does not restart every backend at its first server.
    pub(crate) fn build(conf: &Backend, servers: &[ServerEntry], prev: Option<&Balancer>) -> Self {
        let members = active_members(conf, servers, None);
        let fallback = match members.as_slice() {
            [only] => {
                let others = active_members(conf, servers, Some(*only));
                (!others.is_empty()).then(|| Group::build(conf, servers, others, None))
            }
            _ => None,
        };
        let primary = Group::build(conf, servers, members, prev.map(|p| &p.primary));
        Self { primary, fallback }
    }

    /// Picks a server for `client`, never `exclude`, and reserves a slot on it.
    pub(crate) fn pick(
        &self,
        servers: &[ServerEntry],
        client: SocketAddr,
        exclude: Option<usize>,
    ) -> Pick {
        match self.group_for(exclude) {
            Some(group) => group.pick(servers, client, exclude),
            None => Pick::NoServer,
        }
    }

    /// Whether any server other than `exclude` could ever be picked in this snapshot.
    pub(crate) fn has_candidate(&self, exclude: Option<usize>) -> bool {
        self.group_for(exclude).is_some()
    }

    /// With a hashing algorithm, the server `client` would be sent to (never `exclude`), without
    /// reserving a slot; `None` otherwise or when there is no candidate.
    pub(crate) fn hash_target(&self, client: SocketAddr, exclude: Option<usize>) -> Option<usize> {
        self.group_for(exclude)?.hash_target(client, exclude)
    }

    /// The servers connections are balanced over (see the module docs), in config order.
    pub(crate) fn active(&self) -> &[usize] {
        &self.primary.members
    }

    fn group_for(&self, exclude: Option<usize>) -> Option<&Group> {
        match (exclude, self.primary.members.as_slice()) {
            (_, []) => None,
            (Some(x), [only]) if x == *only => self.fallback.as_ref(),
            _ => Some(&self.primary),
        }
    }
}

/// The servers that take part in balancing, ignoring `skip` as if it were unusable.
fn active_members(conf: &Backend, servers: &[ServerEntry], skip: Option<usize>) -> Vec<usize> {
    let usable = |i: usize| Some(i) != skip && servers[i].usable();
    let normal: Vec<usize> = (0..servers.len())
        .filter(|&i| usable(i) && !servers[i].conf.backup)
        .collect();
    if !normal.is_empty() {
        return normal;
    }
    let backups: Vec<usize> = (0..servers.len())
        .filter(|&i| usable(i) && servers[i].conf.backup)
        .collect();
    if conf.allbackups {
        return backups;
    }
    // Without allbackups only the first backup serves; "first" is by id, as in HAProxy.
    backups
        .iter()
        .copied()
        .min_by_key(|&i| (servers[i].conf.id, i))
        .into_iter()
        .collect()
}

/// A set of servers and the algorithm's data over it.
#[derive(Debug)]
struct Group {
    /// Server indices, ascending (config order). Never contains an unusable server.
    members: Vec<usize>,
    algo: Algo,
}

#[derive(Debug)]
enum Algo {
    /// `roundrobin`, `static-rr`: the smooth weighted sequence, walked by a shared cursor.
    Sequence { seq: Vec<u32>, cursor: AtomicU64 },
    /// `leastconn`: scan for the lowest (cur + 1) / weight starting at a rotating offset.
    LeastConn { rotor: AtomicUsize },
    /// `first`: members by ascending config id.
    First { by_id: Vec<usize> },
    /// `source` + `hash-type map-based`: hash modulo the total weight over a weight-expanded table.
    MapHash { table: Vec<u32> },
    /// `source` + `hash-type consistent`: sorted (point, server) ring.
    Ring { points: Vec<(u32, u32)> },
    /// `random(N)`: cumulative weights parallel to `members`, for weighted draws.
    Random { draws: u32, cumulative: Vec<u64> },
}

impl Group {
    fn build(
        conf: &Backend,
        servers: &[ServerEntry],
        members: Vec<usize>,
        prev: Option<&Group>,
    ) -> Self {
        let algo = match conf.balance {
            Balance::RoundRobin | Balance::StaticRr => {
                let start = match prev.map(|p| &p.algo) {
                    // Relaxed: the value is only a starting position; any recent value will do.
                    Some(Algo::Sequence { cursor, .. }) => cursor.load(Ordering::Relaxed),
                    _ => 0,
                };
                Algo::Sequence {
                    seq: smooth_sequence(servers, &members),
                    cursor: AtomicU64::new(start),
                }
            }
            Balance::LeastConn => {
                let start = match prev.map(|p| &p.algo) {
                    Some(Algo::LeastConn { rotor }) => rotor.load(Ordering::Relaxed),
                    _ => 0,
                };
                Algo::LeastConn {
                    rotor: AtomicUsize::new(start),
                }
            }
            Balance::First => {
                let mut by_id = members.clone();
                by_id.sort_by_key(|&i| (servers[i].conf.id, i));
                Algo::First { by_id }
            }
            Balance::Source => match conf.hash_type {
                HashType::MapBased => Algo::MapHash {
                    table: smooth_sequence(servers, &members),
                },
                HashType::Consistent => Algo::Ring {
                    points: ring(servers, &members),
                },
            },
            Balance::Random { draws } => {
                let cumulative = members
                    .iter()
                    .scan(0u64, |sum, &i| {
                        *sum += u64::from(servers[i].state.weight);
                        Some(*sum)
                    })
                    .collect();
                Algo::Random {
                    draws: draws.max(1),
                    cumulative,
                }
            }
        };
        Self { members, algo }
    }

    /// Number of members that may be picked given `exclude`.
    fn candidates(&self, exclude: Option<usize>) -> usize {
        let excluded = exclude.is_some_and(|x| self.members.binary_search(&x).is_ok());
        self.members.len() - usize::from(excluded)
    }

    fn pick(&self, servers: &[ServerEntry], client: SocketAddr, exclude: Option<usize>) -> Pick {
        if self.candidates(exclude) == 0 {
            return Pick::NoServer;
        }
        match &self.algo {
            Algo::Sequence { seq, cursor } => {
                // Relaxed: the cursor only hands out positions and publishes no other data;
                // fetch_add's atomicity alone gives concurrent pickers distinct positions, which
                // is what makes the ratio exact across threads.
                let start = cursor.fetch_add(1, Ordering::Relaxed);
                self.walk(servers, seq, start, exclude)
            }
            Algo::LeastConn { rotor } => {
                // Relaxed: the rotor only spreads ties; no ordering with other memory needed.
                let start = rotor.fetch_add(1, Ordering::Relaxed);
                self.least_loaded(servers, start, exclude)
            }
            Algo::First { by_id } => {
                for &i in by_id {
                    if Some(i) != exclude && servers[i].try_reserve() {
                        return Pick::Got(i);
                    }
                }
                Pick::Full
            }
            Algo::MapHash { .. } | Algo::Ring { .. } => {
                reserve_or_full(servers, self.hash_target(client, exclude))
            }
            Algo::Random { draws, cumulative } => {
                let total = cumulative.last().copied().unwrap_or(0);
                // Keep the least loaded of the draws (cur / weight); on equal load the earlier
                // draw stays, so idle servers are chosen in proportion to their weight.
                let mut best: Option<usize> = None;
                for _ in 0..*draws {
                    let r = fastrand::u64(0..total);
                    let i = self.members[cumulative.partition_point(|&c| c <= r)];
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
                // Every draw was full or excluded (or lost a race for the last slot): don't report
                // Full while a member is free.
                self.least_loaded(servers, 0, exclude)
            }
        }
    }

    /// For hashing algorithms: the server `client` maps to (skipping `exclude`), without
    /// reserving anything. `None` for the other algorithms or without candidates.
    fn hash_target(&self, client: SocketAddr, exclude: Option<usize>) -> Option<usize> {
        match &self.algo {
            Algo::MapHash { table } => {
                let h = u64::from(client_hash(client));
                let len = table.len() as u64;
                (0..len)
                    .map(|k| table[((h + k) % len) as usize] as usize)
                    .find(|&i| Some(i) != exclude)
            }
            Algo::Ring { points } => {
                let h = client_hash(client);
                // First point at or after the client's hash, wrapping around the ring.
                let first = points.partition_point(|p| p.0 < h);
                (0..points.len())
                    .map(|k| points[(first + k) % points.len()].1 as usize)
                    .find(|&i| Some(i) != exclude)
            }
            _ => None,
        }
    }

    /// Walks `seq` from `start`, taking the first entry that is not excluded and not full.
    /// Stops as soon as every candidate has been found full.
    fn walk(
        &self,
        servers: &[ServerEntry],
        seq: &[u32],
        start: u64,
        exclude: Option<usize>,
    ) -> Pick {
        let len = seq.len() as u64;
        let mut tried = Tried::new(servers.len());
        for k in 0..len {
            let i = seq[((start + k) % len) as usize] as usize;
            if Some(i) == exclude || tried.contains(i) {
                continue;
            }
            if servers[i].try_reserve() {
                return Pick::Got(i);
            }
            if tried.insert(i) == self.candidates(exclude) {
                break;
            }
        }
        Pick::Full
    }

    /// The member with the lowest (cur + 1) / weight that is below its maxconn; the scan starts
    /// at `start` so that equally loaded servers take turns.
    fn least_loaded(&self, servers: &[ServerEntry], start: usize, exclude: Option<usize>) -> Pick {
        let n = self.members.len();
        let mut tried = Tried::new(servers.len());
        loop {
            let mut best: Option<usize> = None;
            for k in 0..n {
                let i = self.members[(start + k) % n];
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
}

fn reserve_or_full(servers: &[ServerEntry], pos: Option<usize>) -> Pick {
    match pos {
        Some(i) if servers[i].try_reserve() => Pick::Got(i),
        Some(_) => Pick::Full,
        None => Pick::NoServer,
    }
}

/// Compares (cur + extra) / weight of two servers without division: (ca + extra) * wb vs
/// (cb + extra) * wa. leastconn uses extra = 1 (haproxy's key), which makes idle servers compare
/// by weight, the heavier first; random uses extra = 0 (haproxy compares `served` / weight), so
/// idle draws tie and the weighted draw itself decides.
fn load_cmp(a: &ServerEntry, b: &ServerEntry, extra: u64) -> std::cmp::Ordering {
    // Relaxed: a load estimate; the reservation itself is a separate atomic step.
    let ca = u64::from(a.counters.cur.load(Ordering::Relaxed)) + extra;
    let cb = u64::from(b.counters.cur.load(Ordering::Relaxed)) + extra;
    (ca * u64::from(b.state.weight)).cmp(&(cb * u64::from(a.state.weight)))
}

/// A small set of server indices (already found full during one pick or dispatch pass).
pub(crate) struct Tried {
    /// Capacity in indices; the bits are only allocated on the first insert, so a pick that
    /// succeeds at once (the fast path) allocates nothing.
    servers: usize,
    bits: Vec<u64>,
    count: usize,
}

impl Tried {
    pub(crate) fn new(servers: usize) -> Self {
        Self {
            servers,
            bits: Vec::new(),
            count: 0,
        }
    }

    pub(crate) fn contains(&self, i: usize) -> bool {
        self.bits
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Adds `i`; returns how many distinct indices the set holds.
    pub(crate) fn insert(&mut self, i: usize) -> usize {
        if self.bits.is_empty() {
            self.bits = vec![0; self.servers.div_ceil(64)];
        }
        if !self.contains(i) {
            self.bits[i / 64] |= 1 << (i % 64);
            self.count += 1;
        }
        self.count
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

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The consistent-hash ring: `weight * RING_POINTS_PER_WEIGHT` points per server, placed by
/// hashing the server's config `id` with the point number, so a server keeps its points across
/// snapshots (and restarts) and removing it only moves the clients that were on it.
fn ring(servers: &[ServerEntry], members: &[usize]) -> Vec<(u32, u32)> {
    let mut points = Vec::new();
    for &i in members {
        let id = servers[i].conf.id;
        for k in 0..servers[i].state.weight * RING_POINTS_PER_WEIGHT {
            let mut key = [0u8; 8];
            key[..4].copy_from_slice(&id.to_be_bytes());
            key[4..].copy_from_slice(&k.to_be_bytes());
            points.push((hash32(&key), i as u32));
        }
    }
    // Sorting by (point, server) makes collisions resolve the same way every time.
    points.sort_unstable();
    points
}

/// The hash of a client for `balance source`: its IP address only (never the port). An
/// IPv4-mapped IPv6 address hashes like the IPv4 address, so dual-stack listeners agree.
pub fn client_hash(client: SocketAddr) -> u32 {
    match client.ip() {
        IpAddr::V4(v4) => hash32(&v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => hash32(&v4.octets()),
            None => hash32(&v6.octets()),
        },
    }
}

/// 32-bit FNV-1a followed by murmur3's `fmix32` finaliser. FNV-1a alone is fast but its high
/// bits barely change between neighbouring addresses (10.0.0.1, 10.0.0.2, ...); the finaliser
/// avalanches every input bit over the whole word, which both the ring (ordered by full value)
/// and the modulo table need.
pub fn hash32(bytes: &[u8]) -> u32 {
    const FNV_OFFSET: u32 = 0x811c_9dc5;
    const FNV_PRIME: u32 = 0x0100_0193;
    let mut h = FNV_OFFSET;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use super::*;
    use crate::state::StateError as TableError;
    use crate::table::testing::{backend, client, server};
    use crate::table::{AdminState, BackendTable, ServerSlot, TryAcquireError};

    /// Index of the server picked for `c`, slot released at once.
    fn pick(t: &Arc<BackendTable>, c: SocketAddr) -> usize {
        t.try_acquire(c, None).expect("a free server").index()
    }

    fn picks(t: &Arc<BackendTable>, n: u32) -> Vec<usize> {
        (0..n).map(|k| pick(t, client(k))).collect()
    }

    fn counts(t: &Arc<BackendTable>, n: u32) -> Vec<usize> {
        let mut c = vec![0; t.conf.servers.len()];
        for i in picks(t, n) {
            c[i] += 1;
        }
        c
    }

    fn totals(t: &BackendTable) -> Vec<u64> {
        t.snapshot()
            .servers
            .iter()
            .map(|s| s.counters.total.load(Ordering::Relaxed))
            .collect()
    }

    fn rr_123(balance: Balance) -> Arc<BackendTable> {
        BackendTable::new(&backend(
            balance,
            vec![server("a", 1, 1), server("b", 2, 2), server("c", 3, 3)],
        ))
    }

    #[test]
    fn roundrobin_is_smooth_and_exact() {
        let t = rr_123(Balance::RoundRobin);
        let seq = picks(&t, 600);
        // Every aligned window of one cycle holds each server exactly weight times...
        for window in seq.chunks(6) {
            let mut c = [0; 3];
            for &i in window {
                c[i] += 1;
            }
            assert_eq!(c, [1, 2, 3], "window {window:?}");
        }
        // ... interleaved: never the same server three times in a row, across cycles too.
        for w in seq.windows(3) {
            assert!(!(w[0] == w[1] && w[1] == w[2]), "three in a row: {w:?}");
        }
        // nginx's smooth WRR sequence for weights 1/2/3.
        assert_eq!(seq[..6], [2, 1, 0, 2, 1, 2]);
        assert_eq!(totals(&t), [100, 200, 300]);
    }

    #[test]
    fn roundrobin_is_exact_across_threads() {
        let t = rr_123(Balance::RoundRobin);
        std::thread::scope(|s| {
            for th in 0..2 {
                let t = &t;
                s.spawn(move || {
                    for k in 0..300 {
                        drop(t.try_acquire(client(th * 1000 + k), None).unwrap());
                    }
                });
            }
        });
        assert_eq!(totals(&t), [100, 200, 300]);
        assert_eq!(
            t.snapshot().servers[2].counters.cur.load(Ordering::Relaxed),
            0
        );
    }

    #[test]
    fn roundrobin_skips_full_servers_and_follows_runtime_weights() {
        let mut a = server("a", 1, 1);
        a.maxconn = 1;
        let mut b = server("b", 2, 1);
        b.maxconn = 2;
        let t = BackendTable::new(&backend(Balance::RoundRobin, vec![a, b]));
        let held: Vec<ServerSlot> = (0..3)
            .map(|k| t.try_acquire(client(k), None).unwrap())
            .collect();
        let mut got: Vec<usize> = held.iter().map(ServerSlot::index).collect();
        got.sort_unstable();
        assert_eq!(got, [0, 1, 1]);
        assert_eq!(
            t.try_acquire(client(9), None).unwrap_err(),
            TryAcquireError::Full
        );
        drop(held);

        // Weights 1/2/3 -> 1/0/3 at runtime.
        let t = rr_123(Balance::RoundRobin);
        t.set_weight(1, 0).unwrap();
        assert_eq!(counts(&t, 400), [100, 0, 300]);
    }

    #[test]
    fn static_rr_ratio_and_weight_rule() {
        let t = rr_123(Balance::StaticRr);
        assert_eq!(counts(&t, 60), [10, 20, 30]);
        assert!(matches!(
            t.set_weight(2, 2),
            Err(TableError::StaticWeight {
                weight: 2,
                configured: 3,
                ..
            })
        ));
        t.set_weight(2, 0).unwrap();
        assert_eq!(counts(&t, 30), [10, 20, 0]);
        t.set_weight(2, 3).unwrap();
        assert_eq!(counts(&t, 60), [10, 20, 30]);
        // roundrobin takes any weight, within range.
        let rr = rr_123(Balance::RoundRobin);
        rr.set_weight(2, 7).unwrap();
        assert!(matches!(
            rr.set_weight(2, 257),
            Err(TableError::WeightOutOfRange { weight: 257, .. })
        ));
    }

    #[test]
    fn leastconn_picks_least_loaded_and_rotates_ties() {
        let t = BackendTable::new(&backend(
            Balance::LeastConn,
            vec![server("a", 1, 1), server("b", 2, 1), server("c", 3, 2)],
        ));
        // Idle: c (weight 2) has the lowest (0 + 1) / 2.
        let c1 = t.try_acquire(client(0), None).unwrap();
        assert_eq!(c1.index(), 2);
        // Now a, b, c all at (cur + 1) / w = 1: a tie. Hold the picks: loads stay tied.
        let held: Vec<ServerSlot> = (0..3)
            .map(|k| t.try_acquire(client(k), None).unwrap())
            .collect();
        let mut got: Vec<usize> = held.iter().map(ServerSlot::index).collect();
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2], "ties go round");
        // a: 1 conn (2/1), b: 1 (2/1), c: 2 (3/2) -> c.
        assert_eq!(pick(&t, client(9)), 2);
        drop(held);
        // a 0 conns, b 0, c 1 (2/2): all tied at 1 -> rotation spreads idle picks evenly.
        let mut c = [0; 3];
        for k in 0..300 {
            c[pick(&t, client(k))] += 1;
        }
        assert_eq!(c, [100, 100, 100]);
        drop(c1);
    }

    #[test]
    fn first_fills_lowest_id_up_to_maxconn() {
        // Config order a, b, c; ids 3, 1, 2: b first, then c, then a.
        let servers = [("a", 3), ("b", 1), ("c", 2)]
            .into_iter()
            .map(|(n, id)| {
                let mut s = server(n, id, 1);
                s.maxconn = 2;
                s
            })
            .collect();
        let t = BackendTable::new(&backend(Balance::First, servers));
        let held: Vec<ServerSlot> = (0..6)
            .map(|k| t.try_acquire(client(k), None).unwrap())
            .collect();
        let got: Vec<usize> = held.iter().map(ServerSlot::index).collect();
        assert_eq!(got, [1, 1, 2, 2, 0, 0]);
        assert_eq!(
            t.try_acquire(client(7), None).unwrap_err(),
            TryAcquireError::Full
        );
        let mut held = held;
        held.remove(2); // one of c's
        assert_eq!(t.try_acquire(client(8), None).unwrap().index(), 2);
        // Without maxconn: always the lowest id.
        let t = BackendTable::new(&backend(
            Balance::First,
            vec![server("a", 3, 1), server("b", 1, 1)],
        ));
        let held: Vec<ServerSlot> = (0..5)
            .map(|k| t.try_acquire(client(k), None).unwrap())
            .collect();
        assert!(held.iter().all(|s| s.index() == 1));
    }

    fn source(hash_type: HashType, n: u32) -> Arc<BackendTable> {
        let mut conf = backend(
            Balance::Source,
            (1..=n).map(|id| server(&format!("s{id}"), id, 1)).collect(),
        );
        conf.hash_type = hash_type;
        BackendTable::new(&conf)
    }

    #[test]
    fn source_is_sticky_per_ip_not_port() {
        for ht in [HashType::MapBased, HashType::Consistent] {
            let t = source(ht, 4);
            let ip = client(42).ip();
            let first = pick(&t, SocketAddr::new(ip, 1000));
            for port in 1001..2000 {
                assert_eq!(pick(&t, SocketAddr::new(ip, port)), first, "{ht:?}");
            }
            // And clients spread over every server. The ring is coarser (16 points for weight
            // 1, as in HAProxy: shares vary by tens of percent), the map exact up to the hash.
            let c = counts(&t, 4000);
            let floor = if ht == HashType::MapBased { 850 } else { 500 };
            assert!(c.iter().all(|&n| n > floor), "{ht:?} {c:?}");
        }
    }

    /// Fraction of 10000 clients that change server when server 3 of 4 goes to maintenance,
    /// and how many of the clients that were *not* on it moved.
    fn moved_on_removal(ht: HashType) -> (f64, usize) {
        let t = source(ht, 4);
        let before: Vec<usize> = picks(&t, 10_000);
        t.set_admin(3, AdminState::Maint).unwrap();
        let after: Vec<usize> = picks(&t, 10_000);
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        let bystanders = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| **b != 3 && b != a)
            .count();
        (moved as f64 / 10_000.0, bystanders)
    }

    #[test]
    fn consistent_hashing_moves_few_clients() {
        let (consistent, bystanders) = moved_on_removal(HashType::Consistent);
        assert_eq!(bystanders, 0, "only the removed server's clients move");
        assert!((0.15..0.35).contains(&consistent), "moved {consistent}");
        let (map_based, _) = moved_on_removal(HashType::MapBased);
        assert!(map_based > 0.5, "map-based moved only {map_based}");
        assert!(consistent * 2.0 < map_based);
    }

    #[test]
    fn consistent_ring_follows_weight() {
        let mut conf = backend(Balance::Source, vec![server("a", 1, 1), server("b", 2, 3)]);
        conf.hash_type = HashType::Consistent;
        let t = BackendTable::new(&conf);
        let c = counts(&t, 20_000);
        let share = c[1] as f64 / 20_000.0;
        assert!((0.65..0.85).contains(&share), "{c:?}");
    }

    #[test]
    fn random_follows_weight_and_prefers_less_loaded() {
        let t = BackendTable::new(&backend(
            Balance::Random { draws: 2 },
            vec![server("a", 1, 1), server("b", 2, 3)],
        ));
        let c = counts(&t, 8000);
        assert!((1600..2400).contains(&c[0]), "{c:?}");

        let t = BackendTable::new(&backend(
            Balance::Random { draws: 10 },
            vec![server("a", 1, 1), server("b", 2, 1)],
        ));
        let held: Vec<ServerSlot> = (0..5)
            .map(|k| loop {
                let s = t.try_acquire(client(k), None).unwrap();
                if s.index() == 0 {
                    break s;
                }
            })
            .collect();
        let c = counts(&t, 200);
        assert!(c[1] >= 195, "{c:?}");
        drop(held);
    }

    #[test]
    fn random_finds_the_free_server_when_draws_are_full() {
        let mut a = server("a", 1, 100);
        a.maxconn = 1;
        let t = BackendTable::new(&backend(
            Balance::Random { draws: 1 },
            vec![a, server("b", 2, 1)],
        ));
        let _a = loop {
            let s = t.try_acquire(client(0), None).unwrap();
            if s.index() == 0 {
                break s;
            }
        };
        assert!(picks(&t, 50).iter().all(|&i| i == 1));
    }

    fn with_backups(allbackups: bool) -> Arc<BackendTable> {
        let mut b1 = server("b1", 3, 1);
        b1.backup = true;
        let mut b2 = server("b2", 2, 1);
        b2.backup = true;
        let mut conf = backend(
            Balance::RoundRobin,
            vec![server("n1", 1, 1), server("n2", 4, 1), b1, b2],
        );
        conf.allbackups = allbackups;
        BackendTable::new(&conf)
    }

    #[test]
    fn backups_only_when_no_normal_server() {
        let t = with_backups(false);
        assert_eq!(counts(&t, 10), [5, 5, 0, 0]);
        t.set_healthy(0, false).unwrap();
        assert_eq!(counts(&t, 10), [0, 10, 0, 0]);
        t.set_admin(1, AdminState::Maint).unwrap();
        // Only the first backup by id: b2 (id 2), although b1 comes first in the file.
        let c = counts(&t, 10);
        assert_eq!(c, [0, 0, 0, 10]);
        let slot = t.try_acquire(client(0), None).unwrap();
        assert!(slot.is_backup());
        assert_eq!(slot.name(), "b2");
        assert_eq!(t.snapshot().usable_counts(), (0, 2));
        // A normal server coming back takes over again.
        t.set_healthy(0, true).unwrap();
        assert_eq!(counts(&t, 10), [10, 0, 0, 0]);
    }

    #[test]
    fn allbackups_spreads_over_backups() {
        let t = with_backups(true);
        t.set_healthy(0, false).unwrap();
        t.set_healthy(1, false).unwrap();
        assert_eq!(counts(&t, 10), [0, 0, 5, 5]);
    }

    #[test]
    fn unusable_servers_get_nothing() {
        for balance in [
            Balance::RoundRobin,
            Balance::StaticRr,
            Balance::LeastConn,
            Balance::First,
            Balance::Source,
            Balance::Random { draws: 2 },
        ] {
            let mut disabled = server("disabled", 1, 1);
            disabled.disabled = true;
            let t = BackendTable::new(&backend(
                balance,
                vec![
                    disabled,
                    server("maint", 2, 1),
                    server("drain", 3, 1),
                    server("down", 4, 1),
                    server("zero", 5, 0),
                    server("ok", 6, 1),
                ],
            ));
            assert_eq!(t.snapshot().servers[0].state.admin, AdminState::Maint);
            t.set_admin(1, AdminState::Maint).unwrap();
            t.set_admin(2, AdminState::Drain).unwrap();
            t.set_healthy(3, false).unwrap();
            assert_eq!(counts(&t, 50), [0, 0, 0, 0, 0, 50], "{balance:?}");
            t.set_admin(5, AdminState::Maint).unwrap();
            assert_eq!(
                t.try_acquire(client(0), None).unwrap_err(),
                TryAcquireError::NoServer,
                "{balance:?}"
            );
        }
    }

    #[test]
    fn exclude_is_honoured() {
        for balance in [
            Balance::RoundRobin,
            Balance::LeastConn,
            Balance::First,
            Balance::Source,
            Balance::Random { draws: 2 },
        ] {
            let t = BackendTable::new(&backend(
                balance,
                vec![server("a", 1, 1), server("b", 2, 1), server("c", 3, 1)],
            ));
            for k in 0..100 {
                let s = t.try_acquire(client(k), Some(1)).unwrap();
                assert_ne!(s.index(), 1, "{balance:?}");
            }
            // The only normal server excluded: a backup takes it, else nobody.
            let mut bk = server("bk", 2, 1);
            bk.backup = true;
            let t = BackendTable::new(&backend(balance, vec![server("a", 1, 1), bk]));
            assert_eq!(t.try_acquire(client(0), Some(0)).unwrap().index(), 1);
            t.set_healthy(1, false).unwrap();
            assert_eq!(
                t.try_acquire(client(0), Some(0)).unwrap_err(),
                TryAcquireError::NoServer
            );
            assert_eq!(t.try_acquire(client(0), None).unwrap().index(), 0);
        }
    }

    #[test]
    fn hash_spreads_neighbouring_addresses() {
        // Consecutive IPs must land all over the ring, not in one arc of it.
        let mut buckets: HashMap<u32, usize> = HashMap::new();
        for k in 0..1600 {
            *buckets.entry(client_hash(client(k)) >> 28).or_default() += 1;
        }
        assert_eq!(buckets.len(), 16);
        assert!(
            buckets.values().all(|&n| (50..150).contains(&n)),
            "{buckets:?}"
        );
    }
}
