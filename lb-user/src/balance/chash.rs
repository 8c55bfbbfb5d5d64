//! `hash-type consistent`: HAProxy's consistent-hashing tree (`src/lb_chash.c`), rebuilt per
//! snapshot as a sorted array with the same nodes and the same lookup, so that lb and HAProxy
//! 2.6–2.8 send a key to the same server, and independent lb nodes agree with each other.
//!
//! Each usable server has `weight * BE_WEIGHT_SCALE` (16) nodes; node `j` of the server with id
//! `puid` sits at `full_hash(puid * SRV_EWGHT_RANGE + j)`. Positions depend only on the id and
//! the weight, never on the file order or on the order servers came UP. A key goes to the node
//! *closest* to it (the one before on a tie), not to the next one; when that server is excluded,
//! the walk goes on forward from there (`chash_get_server_hash`). Removing a server therefore
//! moves exactly the keys it had.

use super::hash::{full_hash, KeySpec};
use super::HashTable;
use crate::server::ServerEntry;

/// Nodes per unit of weight: HAProxy's `BE_WEIGHT_SCALE` (an effective weight is the user
/// weight times 16). The price is coarseness at low weights: with weight 1 (16 nodes) a
/// server's share can be off its fair share by tens of percent; higher weights even it out.
pub const NODES_PER_WEIGHT: u32 = 16;

/// HAProxy's `SRV_EWGHT_RANGE` (256 user weights * 16): the stride between two servers' node
/// key ranges, so two servers' nodes never share a key.
const EWGHT_RANGE: u32 = 256 * NODES_PER_WEIGHT;

/// The tree of one group: (node key, server index), sorted by key.
#[derive(Debug)]
pub(crate) struct Chash {
    nodes: Vec<(u32, u32)>,
    key: KeySpec,
}

impl Chash {
    pub(crate) fn build(servers: &[ServerEntry], members: &[usize], key: KeySpec) -> Self {
        let mut nodes = Vec::new();
        for &i in members {
            let puid = servers[i].conf.id;
            for j in 0..servers[i].state.weight * NODES_PER_WEIGHT {
                // HAProxy computes this in C int arithmetic: wrapping.
                let seed = puid.wrapping_mul(EWGHT_RANGE).wrapping_add(j);
                nodes.push((full_hash(seed), i as u32));
            }
        }
        // Keys are distinct (full_hash is a bijection and the seeds differ, for ids below 2^20);
        // the server index only orders impossible ties the same way every time.
        nodes.sort_unstable();
        Self { nodes, key }
    }
}

impl HashTable for Chash {
    fn key_spec(&self) -> &KeySpec {
        &self.key
    }

    /// The member closest to `hash` on the ring, then forward past `exclude`.
    fn lookup(&self, hash: u32, exclude: Option<usize>) -> Option<usize> {
        let n = self.nodes.len();
        if n == 0 {
            return None;
        }
        // eb32_lookup_ge, wrapping to the first node; and the node before it, wrapping to the last.
        let next = match self.nodes.partition_point(|p| p.0 < hash) {
            i if i == n => 0,
            i => i,
        };
        let prev = if next == 0 { n - 1 } else { next - 1 };
        let dp = hash.wrapping_sub(self.nodes[prev].0);
        let dn = self.nodes[next].0.wrapping_sub(hash);
        let start = if dp <= dn { prev } else { next };
        (0..n)
            .map(|k| self.nodes[(start + k) % n].1 as usize)
            .find(|&i| Some(i) != exclude)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::{entries, keys};

    fn ring(ids_weights: &[(u32, u32)]) -> (Vec<ServerEntry>, Chash) {
        let servers = entries(ids_weights);
        let members: Vec<usize> = (0..servers.len()).collect();
        let key = KeySpec::new(
            crate::config::Balance::Source,
            crate::config::HashType::default(),
        );
        let c = Chash::build(&servers, &members, key);
        (servers, c)
    }

    #[test]
    fn nodes_are_haproxys() {
        let (_, c) = ring(&[(1, 1), (2, 2)]);
        assert_eq!(c.nodes.len(), 48);
        let mut want: Vec<(u32, u32)> = (0..16)
            .map(|j| (full_hash(4096 + j), 0))
            .chain((0..32).map(|j| (full_hash(2 * 4096 + j), 1)))
            .collect();
        want.sort_unstable();
        assert_eq!(c.nodes, want);
    }

    #[test]
    fn closest_node_wins_and_ties_go_back() {
        let (_, c) = ring(&[(1, 1), (2, 1)]);
        for w in c.nodes.windows(2) {
            let (a, b) = (w[0], w[1]);
            if a.1 == b.1 || b.0 - a.0 < 4 {
                continue;
            }
            let mid = a.0 + (b.0 - a.0) / 2;
            // At the middle (exactly between on an even gap): the previous node; past it, the next.
            assert_eq!(c.lookup(mid, None), Some(a.1 as usize));
            assert_eq!(c.lookup(mid + 1, None), Some(b.1 as usize));
            assert_eq!(c.lookup(a.0 + 1, None), Some(a.1 as usize));
            assert_eq!(c.lookup(b.0 - 1, None), Some(b.1 as usize));
            // Excluded: forward from the chosen node.
            assert_eq!(c.lookup(a.0, Some(a.1 as usize)), Some(b.1 as usize));
        }
        // Around the wrap: below the first node and above the last, distances wrap too.
        let (first, last) = (c.nodes[0], c.nodes[c.nodes.len() - 1]);
        let gap = first.0.wrapping_sub(last.0);
        assert_eq!(
            c.lookup(last.0.wrapping_add(1), None),
            Some(last.1 as usize)
        );
        assert_eq!(
            c.lookup(first.0.wrapping_sub(1), None),
            Some(first.1 as usize)
        );
        assert!(gap > 2);
    }

    #[test]
    fn removing_a_server_moves_only_its_keys() {
        let all = [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)];
        let (_, before) = ring(&all);
        let servers = entries(&all);
        let key = before.key;
        let after = Chash::build(&servers, &[0, 1, 3, 4], key);
        for k in keys(10_000) {
            let b = before.lookup(key.key(k), None).unwrap();
            let a = after.lookup(key.key(k), None).unwrap();
            assert!(b == 2 || a == b, "{k}: {b} -> {a}");
        }
    }
}
