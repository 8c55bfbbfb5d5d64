//! `hash-type map-based` (HAProxy's default): HAProxy's static server map (`src/lb_map.c`),
//! indexed by `key % total weight` (`map_get_server_hash`), built the way HAProxy builds it so
//! that users moving from HAProxy keep their clients on the same servers.
//!
//! The map has one slot per unit of effective weight. Effective weights are the configured
//! weights divided by their greatest common divisor over every server of the backend (usable
//! or not, backups included: `init_server_map`), so the map of a given set of usable servers
//! is always the same. It is filled by `recalc_server_map`: each round every usable server adds
//! its weight to its score, the server with the highest `(score + total) / total` takes the slot
//! (the first in file order on a tie) and pays the total. Runtime weights other than 0 do not
//! apply (HAProxy rejects them for this static algorithm; so does the table).

use super::hash::KeySpec;
use super::{gcd, HashTable};
use crate::server::ServerEntry;

/// The map of one group: server indices, one slot per unit of effective weight.
#[derive(Debug)]
pub(crate) struct MapHash {
    map: Vec<u32>,
    key: KeySpec,
}

impl MapHash {
    pub(crate) fn build(servers: &[ServerEntry], members: &[usize], key: KeySpec) -> Self {
        let g = servers.iter().map(|s| s.conf.weight).fold(0, gcd).max(1);
        let weighted: Vec<(usize, i64)> = members
            .iter()
            .map(|&i| (i, i64::from(servers[i].conf.weight / g)))
            .filter(|&(_, w)| w > 0)
            .collect();
        let tot: i64 = weighted.iter().map(|&(_, w)| w).sum();
        let mut score = vec![0i64; weighted.len()];
        let mut map = Vec::with_capacity(tot as usize);
        for _ in 0..tot {
            let mut best: Option<(usize, i64)> = None;
            for (k, &(_, w)) in weighted.iter().enumerate() {
                if tot == 1 {
                    best = Some((k, 0));
                    break;
                }
                score[k] += w;
                // C's integer division truncates toward zero, as Rust's does.
                let v = (score[k] + tot) / tot;
                if best.is_none_or(|(_, max)| v > max) {
                    best = Some((k, v));
                }
            }
            if let Some((k, _)) = best {
                score[k] -= tot;
                map.push(weighted[k].0 as u32);
            }
        }
        Self { map, key }
    }
}

impl HashTable for MapHash {
    fn key_spec(&self) -> &KeySpec {
        &self.key
    }

    /// `map[key % total]`; when that server is excluded, the next slot that is not.
    fn lookup(&self, hash: u32, exclude: Option<usize>) -> Option<usize> {
        let len = self.map.len() as u64;
        let h = u64::from(hash);
        (0..len)
            .map(|k| self.map[((h + k) % len) as usize] as usize)
            .find(|&i| Some(i) != exclude)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::entries;

    fn map_of(ids_weights: &[(u32, u32)], members: &[usize]) -> Vec<u32> {
        let servers = entries(ids_weights);
        let key = KeySpec::new(
            crate::config::Balance::Source,
            crate::config::HashType::default(),
        );
        MapHash::build(&servers, members, key).map
    }

    #[test]
    fn map_is_haproxys() {
        // Worked by hand through recalc_server_map: weights 1/2/3, total 6. Round 1: scores
        // 1,2,3 give (score + 6) / 6 = 1,1,1: the first server wins the tie and pays 6. nginx's
        // smooth round robin (lb's earlier map) would have started with the third.
        assert_eq!(
            map_of(&[(1, 1), (2, 2), (3, 3)], &[0, 1, 2]),
            [0, 2, 1, 2, 1, 2]
        );
        // Equal weights: file order, whatever the ids.
        assert_eq!(map_of(&[(9, 1), (2, 1), (5, 1)], &[0, 1, 2]), [0, 1, 2]);
        // Weights divided by the gcd of every configured weight (20/40/60 -> 1/2/3), even when
        // a server is out: 2 and 3 remain (the members' own gcd would have made them 2 and 3
        // too; 20/40 without the third would be 1/2 either way).
        assert_eq!(
            map_of(&[(1, 20), (2, 40), (3, 60)], &[1, 2]),
            [1, 2, 1, 2, 2]
        );
        // The configured gcd, not the members': 2/4/3 with the last one out stays 2 and 4.
        assert_eq!(map_of(&[(1, 2), (2, 4), (3, 3)], &[0, 1]).len(), 6);
        // A single slot.
        assert_eq!(map_of(&[(1, 3), (2, 1)], &[1]), [1]);
    }
}
