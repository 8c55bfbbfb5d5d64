//! `hash-type maglev` (an lb extension; HAProxy has no such method): Google's Maglev lookup
//! table (Eisenbud et al., NSDI 2016, section 3.4), weighted.
//!
//! The table has [`TABLE_SIZE`] slots (a prime). Each usable server has a preference list, a
//! permutation of the slots given by an offset and a skip derived from its `id` alone; servers
//! take turns claiming their next preferred free slot until the table is full. In each round a
//! server earns its weight in credit and claims one slot per `max weight` of credit, so slots
//! follow weights (a server of the highest weight claims once per round). Turns go by ascending
//! id, so the table depends only on the (id, weight) set: every lb node with the same servers
//! builds the same table, whatever the file order or the order servers came UP in.
//!
//! Compared with `consistent`: each server's share of the table is within one slot of its
//! weighted share (no coarseness at low weights), at the cost of a little more movement when
//! the server set changes (a few keys of other servers move too, typically well under 1/N).
//!
//! The table is built with the backend's snapshot (off the accept path) and shared between
//! snapshots while the (id, weight) set stays the same.

use std::sync::Arc;

use super::hash::KeySpec;
use super::HashTable;
use crate::server::ServerEntry;

/// Slots in the table: a prime (so every skip generates a full permutation), 65537 as in the
/// Maglev paper's smaller size; with at most a few hundred servers per backend each server has
/// hundreds of slots, which keeps shares within a fraction of a percent.
pub const TABLE_SIZE: u32 = 65_537;

/// One group's table: server index per slot, and what it was built from.
#[derive(Debug)]
pub(crate) struct Maglev {
    /// (id, weight, server index) of each member, sorted by id: the table's only inputs.
    inputs: Vec<(u32, u32, u32)>,
    table: Arc<[u32]>,
    key: KeySpec,
}

impl Maglev {
    /// Builds the table for `members`, reusing `prev`'s when built from the same inputs.
    pub(crate) fn build(
        servers: &[ServerEntry],
        members: &[usize],
        key: KeySpec,
        prev: Option<&Maglev>,
    ) -> Self {
        let mut inputs: Vec<(u32, u32, u32)> = members
            .iter()
            .map(|&i| (servers[i].conf.id, servers[i].state.weight, i as u32))
            .filter(|&(_, w, _)| w > 0)
            .collect();
        inputs.sort_unstable();
        let table = match prev {
            Some(p) if p.inputs == inputs => Arc::clone(&p.table),
            _ => fill(&inputs).into(),
        };
        Self { inputs, table, key }
    }
}

/// The permutation of server `id`: (offset, skip), skip in 1..size so that successive slots
/// `offset + j * skip (mod size)` visit every slot once. Two independent 64-bit mixes of the id
/// (splitmix64's finaliser with two seeds), so neighbouring ids get unrelated lists.
fn permutation(id: u32) -> (u64, u64) {
    let m = u64::from(TABLE_SIZE);
    let offset = mix64(u64::from(id) ^ 0x6d61_676c_6576_0001) % m;
    let skip = mix64(u64::from(id) ^ 0x6d61_676c_6576_0002) % (m - 1) + 1;
    (offset, skip)
}

fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Maglev's population loop, weighted. Cost: `TABLE_SIZE` claims, each walking its server's
/// list past taken slots (O(size log size) in all, a few milliseconds).
fn fill(inputs: &[(u32, u32, u32)]) -> Vec<u32> {
    const FREE: u32 = u32::MAX;
    let size = TABLE_SIZE as usize;
    let Some(max_weight) = inputs.iter().map(|&(_, w, _)| w).max() else {
        return Vec::new();
    };
    let perms: Vec<(u64, u64)> = inputs.iter().map(|&(id, _, _)| permutation(id)).collect();
    // Next position in each server's list, and its credit toward the next claim.
    let mut next = vec![0u64; inputs.len()];
    let mut credit = vec![0u32; inputs.len()];
    let mut table = vec![FREE; size];
    let mut filled = 0;
    loop {
        for (k, &(_, weight, server)) in inputs.iter().enumerate() {
            credit[k] += weight;
            if credit[k] < max_weight {
                continue;
            }
            credit[k] -= max_weight;
            let (offset, skip) = perms[k];
            let mut slot = ((offset + next[k] * skip) % u64::from(TABLE_SIZE)) as usize;
            while table[slot] != FREE {
                next[k] += 1;
                slot = ((offset + next[k] * skip) % u64::from(TABLE_SIZE)) as usize;
            }
            table[slot] = server;
            next[k] += 1;
            filled += 1;
            if filled == size {
                return table;
            }
        }
    }
}

impl HashTable for Maglev {
    fn key_spec(&self) -> &KeySpec {
        &self.key
    }

    /// `table[hash % size]`; when that server is excluded, the next slot that is not.
    fn lookup(&self, hash: u32, exclude: Option<usize>) -> Option<usize> {
        let len = self.table.len();
        if len == 0 {
            return None;
        }
        let start = (hash % TABLE_SIZE) as usize;
        (0..len)
            .map(|k| self.table[(start + k) % len] as usize)
            .find(|&i| Some(i) != exclude)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::{entries, keys};
    use crate::config::{Balance, HashMethod, HashType};

    fn key() -> KeySpec {
        KeySpec::new(
            Balance::Source,
            HashType {
                method: HashMethod::Maglev,
                avalanche: true,
                ..HashType::default()
            },
        )
    }

    fn slots(t: &Maglev, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &s in t.table.iter() {
            c[s as usize] += 1;
        }
        c
    }

    fn shares(t: &Maglev, n: usize, clients: u32) -> Vec<usize> {
        let k = key();
        let mut c = vec![0; n];
        for client in keys(clients) {
            c[t.lookup(k.key(client), None).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn equal_weights_share_evenly() {
        let servers = entries(&[(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]);
        let t = Maglev::build(&servers, &[0, 1, 2, 3, 4], key(), None);
        assert_eq!(t.table.len(), TABLE_SIZE as usize);
        // The table itself: within one slot of 65537 / 5.
        for n in slots(&t, 5) {
            assert!((13_107..=13_108).contains(&n), "{n}");
        }
        // Clients: within 2 % of their fair share.
        let c = shares(&t, 5, 200_000);
        for n in &c {
            assert!((39_200..=40_800).contains(n), "{c:?}");
        }
    }

    #[test]
    fn weights_are_proportional() {
        let servers = entries(&[(1, 1), (2, 2), (3, 3), (4, 4)]);
        let t = Maglev::build(&servers, &[0, 1, 2, 3], key(), None);
        let s = slots(&t, 4);
        for (i, n) in s.iter().enumerate() {
            let want = f64::from(TABLE_SIZE) * (i + 1) as f64 / 10.0;
            assert!((*n as f64 - want).abs() / want < 0.01, "{s:?}");
        }
        let c = shares(&t, 4, 200_000);
        for (i, n) in c.iter().enumerate() {
            let want = 200_000.0 * (i + 1) as f64 / 10.0;
            assert!((*n as f64 - want).abs() / want < 0.02, "{c:?}");
        }
    }

    #[test]
    fn file_order_does_not_matter_and_tables_are_shared() {
        let a = entries(&[(1, 1), (2, 3), (3, 1)]);
        let b = entries(&[(3, 1), (1, 1), (2, 3)]);
        let ta = Maglev::build(&a, &[0, 1, 2], key(), None);
        let tb = Maglev::build(&b, &[0, 1, 2], key(), None);
        let id_a: Vec<u32> = ta.table.iter().map(|&i| a[i as usize].conf.id).collect();
        let id_b: Vec<u32> = tb.table.iter().map(|&i| b[i as usize].conf.id).collect();
        assert_eq!(id_a, id_b);
        // Same inputs: the previous snapshot's table is reused, not rebuilt.
        let again = Maglev::build(&a, &[0, 1, 2], key(), Some(&ta));
        assert!(Arc::ptr_eq(&again.table, &ta.table));
        let fewer = Maglev::build(&a, &[0, 1], key(), Some(&ta));
        assert!(!Arc::ptr_eq(&fewer.table, &ta.table));
    }

    #[test]
    fn one_server_down_moves_little() {
        let servers = entries(&[(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]);
        let all = Maglev::build(&servers, &[0, 1, 2, 3, 4], key(), None);
        for gone in 0..5 {
            let rest: Vec<usize> = (0..5).filter(|&i| i != gone).collect();
            let t = Maglev::build(&servers, &rest, key(), None);
            let k = key();
            let clients = keys(10_000);
            let moved = clients
                .iter()
                .filter(|&&c| all.lookup(k.key(c), None) != t.lookup(k.key(c), None))
                .count();
            assert!(moved <= 2_400, "server {gone} down moved {moved} of 10000");
        }
    }
}
