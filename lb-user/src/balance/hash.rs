//! The 32-bit key a hashing algorithm looks up for a client, computed exactly as HAProxy 2.6
//! computes it (`src/backend.c`: `get_server_sh`, `get_server_expr`, `gen_hash`), with HAProxy's
//! hash functions (`src/hash.c`) and its avalanche step (`full_hash`, `include/haproxy/intops.h`).
//! Same key, same server list: same server as HAProxy (see `chash` and `map`).

use std::net::{IpAddr, SocketAddr};

use crate::config::{Balance, HashFunction, HashType};

/// What a backend hashes, fixed per backend at build time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeySpec {
    /// `balance source` (fold the address) or `balance hash src` (hash its bytes).
    fold_address: bool,
    function: HashFunction,
    avalanche: bool,
}

impl KeySpec {
    pub(crate) fn new(balance: Balance, hash_type: HashType) -> Self {
        Self {
            fold_address: balance == Balance::Source,
            function: hash_type.function,
            avalanche: hash_type.avalanche,
        }
    }

    /// The key of `client`. Only the address counts, never the port.
    ///
    /// `balance source` (`get_server_sh`): the address's 32-bit big-endian words `XOR`ed together
    /// (an IPv4 address is its own key); the hash function plays no part. `balance hash src`
    /// (`get_server_expr`): the hash function over the address bytes, 4 or 16 in network order.
    /// An IPv4-mapped IPv6 client (a dual-stack listener) is hashed as the 16-byte address the
    /// socket reports, as HAProxy does. Then `avalanche` mixes the result with `full_hash`.
    pub(crate) fn key(self, client: SocketAddr) -> u32 {
        let ip = client.ip();
        let octets: &[u8] = match &ip {
            IpAddr::V4(v4) => &v4.octets(),
            IpAddr::V6(v6) => &v6.octets(),
        };
        if self.fold_address {
            let h = octets
                .chunks_exact(4)
                .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
                .fold(0, |h, w| h ^ w);
            return self.mix(h);
        }
        if self.function == HashFunction::None {
            // HAProxy 2.8+ `none`: the sample as text, read as an integer (`read_int64`): an
            // address gives its leading digits ("127.0.0.1" -> 127), as HAProxy's docs warn.
            self.key_of_bytes(ip.to_string().as_bytes())
        } else {
            self.key_of_bytes(octets)
        }
    }

    /// The key of a sample's bytes (`balance hash src`: the address's; `balance rdp-cookie`:
    /// the cookie's value), as HAProxy's `get_server_expr` and `get_server_rch`: the hash
    /// function over them (`none`: their leading integer), then `avalanche`.
    pub(crate) fn key_of_bytes(self, bytes: &[u8]) -> u32 {
        self.mix(if self.function == HashFunction::None {
            leading_int(bytes)
        } else {
            hash_bytes(self.function, bytes)
        })
    }

    /// `avalanche`: `h` mixed with `full_hash`, else as it is.
    fn mix(self, h: u32) -> u32 {
        if self.avalanche {
            full_hash(h)
        } else {
            h
        }
    }
}

/// HAProxy's `gen_hash`: the configured function over `bytes`.
pub(crate) fn hash_bytes(f: HashFunction, bytes: &[u8]) -> u32 {
    match f {
        HashFunction::Sdbm | HashFunction::None => sdbm(bytes),
        HashFunction::Djb2 => djb2(bytes),
        HashFunction::Wt6 => wt6(bytes),
        HashFunction::Crc32 => crc32(bytes),
    }
}

/// The leading decimal integer of `text`, wrapped to 32 bits as HAProxy's unsigned key.
fn leading_int(text: &[u8]) -> u32 {
    text.iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .fold(0u64, |n, d| {
            n.wrapping_mul(10).wrapping_add(u64::from(d - b'0'))
        }) as u32
}

/// Bob Jenkins' 32-bit full-avalanche integer hash, with HAProxy's final multiplication
/// (`__full_hash`). A bijection on u32: HAProxy's `avalanche`, and the hash of every
/// consistent-hashing node key.
pub(crate) fn full_hash(a: u32) -> u32 {
    let mut a = a;
    a = a.wrapping_add(0x7ed5_5d16).wrapping_add(a << 12);
    a = (a ^ 0xc761_c23c) ^ (a >> 19);
    a = a.wrapping_add(0x1656_67b1).wrapping_add(a << 5);
    a = a.wrapping_add(0xd3a2_646c) ^ (a << 9);
    a = a.wrapping_add(0xfd70_46c5).wrapping_add(a << 3);
    a = (a ^ 0xb55a_4f09) ^ (a >> 16);
    // "multiplying by a large prime close to 3/4 of the tree" (HAProxy).
    a.wrapping_mul(3_221_225_473)
}

/// `hash_sdbm`: h = c + (h << 6) + (h << 16) - h.
pub(crate) fn sdbm(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |h, &c| {
        u32::from(c)
            .wrapping_add(h << 6)
            .wrapping_add(h << 16)
            .wrapping_sub(h)
    })
}

/// `hash_djb2`: h = h * 33 + c, from 5381.
pub(crate) fn djb2(bytes: &[u8]) -> u32 {
    bytes.iter().fold(5381u32, |h, &c| {
        (h << 5).wrapping_add(h).wrapping_add(u32::from(c))
    })
}

/// `hash_wt6`: HAProxy's own two-lane rotating hash.
pub(crate) fn wt6(bytes: &[u8]) -> u32 {
    let mut h0: u32 = 0xa53c_965a;
    let mut h1: u32 = 0x5ca6_953a;
    let mut step0: u32 = 6;
    let mut step1: u32 = 18;
    for &c in bytes {
        let t = u32::from(c);
        h0 = !(h0 ^ t);
        h1 = !(h1.wrapping_add(t));
        // C's `(x << s) | (x >> (32 - s))`; the steps stay in 0..32 (5 bits each), and a step of
        // 0 gives `x | x` in HAProxy's C (x >> 32 on x86 shifts by 0): a rotation by 0 too.
        let t = h1.rotate_left(step0);
        h1 = h0.rotate_left(step1);
        h0 = t;
        let t = ((h0 >> 16) ^ h1) & 0xffff;
        step0 = t & 0x1f;
        step1 = t >> 11;
    }
    h0 ^ h1
}

/// `hash_crc32`: the Ethernet/gzip CRC-32 (reflected polynomial 0xedb88320).
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    let mut h = !0u32;
    for &c in bytes {
        h ^= u32::from(c);
        for _ in 0..8 {
            h = (h >> 1) ^ if h & 1 != 0 { 0xedb8_8320 } else { 0 };
        }
    }
    !h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HashExpr, HashMethod};

    /// HAProxy's reg-test `reg-tests/sample_fetches/hashes.vtc`: each function over the 256
    /// bytes 0x00..=0xff, raw and with avalanche (the converters' `(1)` argument is `full_hash`).
    #[test]
    fn haproxy_vectors() {
        let key: Vec<u8> = (0..=255).collect();
        assert_eq!(crc32(&key), 688_229_491);
        assert_eq!(full_hash(crc32(&key)), 4_230_317_029);
        assert_eq!(djb2(&key), 2_589_693_061);
        assert_eq!(full_hash(djb2(&key)), 600_622_701);
        assert_eq!(sdbm(&key), 905_707_648);
        assert_eq!(full_hash(sdbm(&key)), 3_103_804_144);
        assert_eq!(wt6(&key), 4_090_277_559);
        assert_eq!(full_hash(wt6(&key)), 1_192_658_767);
        // The common CRC-32 check value.
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(djb2(b""), 5381);
        assert_eq!(sdbm(b""), 0);
    }

    fn spec(balance: Balance, function: HashFunction, avalanche: bool) -> KeySpec {
        KeySpec::new(
            balance,
            HashType {
                method: HashMethod::Consistent,
                function,
                avalanche,
            },
        )
    }

    #[test]
    fn source_folds_the_address_and_ignores_the_function() {
        let v4: SocketAddr = "10.1.2.3:4000".parse().unwrap();
        for f in [HashFunction::Sdbm, HashFunction::Crc32] {
            assert_eq!(spec(Balance::Source, f, false).key(v4), 0x0a01_0203);
        }
        assert_eq!(
            spec(Balance::Source, HashFunction::Sdbm, true).key(v4),
            full_hash(0x0a01_0203)
        );
        // The port never counts.
        let other_port: SocketAddr = "10.1.2.3:1".parse().unwrap();
        assert_eq!(
            spec(Balance::Source, HashFunction::Sdbm, true).key(other_port),
            spec(Balance::Source, HashFunction::Sdbm, true).key(v4)
        );
        let v6: SocketAddr = "[2001:db8::1:2]:80".parse().unwrap();
        assert_eq!(
            spec(Balance::Source, HashFunction::Sdbm, false).key(v6),
            0x2001_0db8 ^ 0x0001_0002
        );
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:80".parse().unwrap();
        assert_eq!(
            spec(Balance::Source, HashFunction::Sdbm, false).key(mapped),
            0xffff ^ 0x0a01_0203
        );
    }

    #[test]
    fn hash_src_hashes_the_address_bytes() {
        let c: SocketAddr = "10.1.2.3:4000".parse().unwrap();
        let src = Balance::Hash(HashExpr::Src);
        assert_eq!(
            spec(src, HashFunction::Djb2, false).key(c),
            djb2(&[10, 1, 2, 3])
        );
        assert_eq!(
            spec(src, HashFunction::Wt6, true).key(c),
            full_hash(wt6(&[10, 1, 2, 3]))
        );
        assert_eq!(spec(src, HashFunction::None, false).key(c), 10);
    }
}
