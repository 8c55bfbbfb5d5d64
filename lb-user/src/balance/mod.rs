//! Balancing algorithms (`balance roundrobin|static-rr|leastconn|first|source|random|hash src`,
//! `hash-type map-based|consistent|maglev`): every backend snapshot precomputes what its
//! algorithm needs, and picking a server is lock-free. One file per algorithm behind the
//! [`Algorithm`] trait; the key hashing algorithms look up is in `hash`.
//!
//! Which servers take part (haproxy semantics): the usable non-backup servers; when there is
//! none, the first usable backup (lowest `id`), or every usable backup with `option allbackups`.
//! That set is fixed per snapshot ([`Balancer::build`]); a new snapshot is built whenever a
//! server's state or weight changes, so the hashing tables (`map`, `chash`, `maglev`) are
//! rebuilt there, off the accept path.
//!
//! Hashing follows HAProxy 2.6–2.8 exactly (`source`, `hash src`, `map-based`, `consistent`):
//! for the same client and the same servers (ids, weights, file order for `map-based`), lb and
//! HAProxy pick the same server, and so do independent lb nodes.
//!
//! Differences from haproxy, all due to lb having one queue per backend rather than one per
//! server: `leastconn` ranks by (cur + 1) / weight (haproxy adds the server's queue length);
//! hashing with a full server returns Full and the client waits in the backend queue, served
//! only by that server (see the table's dispatcher), as it would in haproxy's server queue.

mod chash;
mod first;
mod hash;
mod leastconn;
mod maglev;
mod map;
mod random;
mod roundrobin;
#[cfg(test)]
pub(crate) mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use crate::config::{Backend, Balance, HashMethod};
use crate::server::ServerEntry;

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

/// One algorithm's precomputed data over one group of servers (pingora's `BackendSelection`):
/// built with the snapshot, then only read.
pub(crate) trait Algorithm: fmt::Debug {
    /// Picks a server among `members` (ascending indices, at least one besides `exclude`) for
    /// `client`, never `exclude`, and reserves a slot on it.
    fn pick(
        &self,
        members: &[usize],
        servers: &[ServerEntry],
        client: SocketAddr,
        exclude: Option<usize>,
    ) -> Pick;

    /// Hashing algorithms: the member `client` maps to (never `exclude`), without reserving.
    fn hash_target(&self, _client: SocketAddr, _exclude: Option<usize>) -> Option<usize> {
        None
    }
}

/// A hashing algorithm's table (consistent ring, map, Maglev): the client's key and the
/// member it maps to. Every such table picks the same way, so it is one [`Algorithm`].
pub(crate) trait HashTable: fmt::Debug {
    /// What is hashed of a client.
    fn key_spec(&self) -> &hash::KeySpec;

    /// The member `hash` maps to, never `exclude`; `None` when no member is left.
    fn lookup(&self, hash: u32, exclude: Option<usize>) -> Option<usize>;
}

impl<T: HashTable> Algorithm for T {
    fn pick(
        &self,
        _members: &[usize],
        servers: &[ServerEntry],
        client: SocketAddr,
        exclude: Option<usize>,
    ) -> Pick {
        reserve_or_full(servers, self.hash_target(client, exclude))
    }

    fn hash_target(&self, client: SocketAddr, exclude: Option<usize>) -> Option<usize> {
        self.lookup(self.key_spec().key(client), exclude)
    }
}

/// Whether a backend's runtime weights can only be 0 or the configured weight (HAProxy's static
/// algorithms: `static-rr` and map-based hashing; `set weight` refuses other values and
/// `slowstart` does not ramp).
pub(crate) fn static_weights(conf: &Backend) -> bool {
    match conf.balance {
        Balance::StaticRr => true,
        Balance::Source | Balance::Hash(_) | Balance::RdpCookie => {
            conf.hash_type.method == HashMethod::MapBased
        }
        _ => false,
    }
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
    /// state change does not restart every backend at its first server, and a Maglev table
    /// built from the same servers is reused.
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
        self.group_for(exclude)?
            .algo
            .get()
            .hash_target(client, exclude)
    }

    /// `balance rdp-cookie`: the server the cookie's value hashes to (none: another algorithm,
    /// or no server); the caller takes it directly, as a `use-server` target.
    pub(crate) fn rdp_cookie_target(&self, cookie: &[u8]) -> Option<usize> {
        match &self.group_for(None)?.algo {
            Algo::RdpCookie(r) => {
                let table = r.table.as_table()?;
                table.lookup(table.key_spec().key_of_bytes(cookie), None)
            }
            _ => None,
        }
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

/// Each algorithm's data, one variant per file.
#[derive(Debug)]
enum Algo {
    Sequence(roundrobin::Sequence),
    LeastConn(leastconn::LeastConn),
    First(first::First),
    Map(map::MapHash),
    Chash(chash::Chash),
    Maglev(maglev::Maglev),
    Random(random::Random),
    RdpCookie(Box<RdpCookie>),
}

/// `balance rdp-cookie`: the cookie's hash looks up `table` (the session does, from the
/// request's first bytes: [`Balancer::rdp_cookie_target`]); a connection without the cookie
/// takes a round-robin turn, as HAProxy falls back to round robin.
#[derive(Debug)]
struct RdpCookie {
    rr: roundrobin::Sequence,
    table: Algo,
}

impl Algo {
    fn get(&self) -> &dyn Algorithm {
        match self {
            Self::Sequence(a) => a,
            Self::LeastConn(a) => a,
            Self::First(a) => a,
            Self::Map(a) => a,
            Self::Chash(a) => a,
            Self::Maglev(a) => a,
            Self::Random(a) => a,
            Self::RdpCookie(r) => &r.rr,
        }
    }

    /// A hashing algorithm's table.
    fn as_table(&self) -> Option<&dyn HashTable> {
        match self {
            Self::Map(a) => Some(a),
            Self::Chash(a) => Some(a),
            Self::Maglev(a) => Some(a),
            _ => None,
        }
    }
}

impl Group {
    fn build(
        conf: &Backend,
        servers: &[ServerEntry],
        members: Vec<usize>,
        prev: Option<&Group>,
    ) -> Self {
        let prev = prev.map(|p| &p.algo);
        let algo = match conf.balance {
            Balance::RoundRobin | Balance::StaticRr => {
                let prev = match prev {
                    Some(Algo::Sequence(p)) => Some(p),
                    _ => None,
                };
                Algo::Sequence(roundrobin::Sequence::build(servers, &members, prev))
            }
            Balance::LeastConn => {
                let prev = match prev {
                    Some(Algo::LeastConn(p)) => Some(p),
                    _ => None,
                };
                Algo::LeastConn(leastconn::LeastConn::build(prev))
            }
            Balance::First => Algo::First(first::First::build(servers, &members)),
            Balance::Source | Balance::Hash(_) => hash_table(conf, servers, &members, prev),
            Balance::RdpCookie => {
                let (rr, table) = match prev {
                    Some(Algo::RdpCookie(p)) => (Some(&p.rr), Some(&p.table)),
                    _ => (None, None),
                };
                Algo::RdpCookie(Box::new(RdpCookie {
                    rr: roundrobin::Sequence::build(servers, &members, rr),
                    table: hash_table(conf, servers, &members, table),
                }))
            }
            Balance::Random { draws } => {
                Algo::Random(random::Random::build(servers, &members, draws))
            }
        };
        Self { members, algo }
    }

    fn pick(&self, servers: &[ServerEntry], client: SocketAddr, exclude: Option<usize>) -> Pick {
        if candidates(&self.members, exclude) == 0 {
            return Pick::NoServer;
        }
        self.algo
            .get()
            .pick(&self.members, servers, client, exclude)
    }
}

/// The `hash-type` table of a hashing algorithm over `members` (`prev`: the previous
/// snapshot's, whose Maglev table is reused when built from the same servers).
fn hash_table(
    conf: &Backend,
    servers: &[ServerEntry],
    members: &[usize],
    prev: Option<&Algo>,
) -> Algo {
    let key = hash::KeySpec::new(conf.balance, conf.hash_type);
    match conf.hash_type.method {
        HashMethod::MapBased => Algo::Map(map::MapHash::build(servers, members, key)),
        HashMethod::Consistent => Algo::Chash(chash::Chash::build(servers, members, key)),
        HashMethod::Maglev => {
            let prev = match prev {
                Some(Algo::Maglev(p)) => Some(p),
                _ => None,
            };
            Algo::Maglev(maglev::Maglev::build(servers, members, key, prev))
        }
    }
}

/// Number of `members` that may be picked given `exclude`.
fn candidates(members: &[usize], exclude: Option<usize>) -> usize {
    let excluded = exclude.is_some_and(|x| members.binary_search(&x).is_ok());
    members.len() - usize::from(excluded)
}

/// A hashing algorithm's pick: reserve a slot on its target, or report it full.
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

fn gcd<T: Copy + PartialEq + Default + std::ops::Rem<Output = T>>(a: T, b: T) -> T {
    if b == T::default() {
        a
    } else {
        gcd(b, a % b)
    }
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
