//! One definition of every type and constant shared between the kernel program (`lb-ebpf`)
//! and the daemon (`lb-user`): map names, sizes and value layouts.
#![no_std]

/// Name of the sockmap that holds the *source* sockets; the stream-verdict program is attached
/// to it, so every byte that arrives on a socket in this map goes through the program.
pub const SOCKS_MAP: &str = "SOCKS";
/// Name of the sockmap that holds the *redirect targets*. It carries no program. Both sockets of
/// a flow are inserted here before either enters `SOCKS`, so the program never redirects to an
/// empty slot (an empty slot silently drops the data).
pub const DEST_MAP: &str = "DEST";
/// Name of the hash map from socket cookie to [`PeerInfo`].
pub const PEER_MAP: &str = "PEER";

/// Slots in `SOCKS` and `DEST`: two per spliced flow. 262 144 slots = 131 072 concurrent
/// in-kernel flows; flows beyond that fall back to splice(2).
pub const MAX_SOCKETS: u32 = 1 << 18;

/// Value of the `PEER` map, keyed by the socket cookie (`SO_COOKIE`) of the receiving socket.
///
/// Written by userspace at insert time (`peer_slot`), then updated by the verdict program on
/// every redirected skb (`bytes`, `last_ns`). Userspace only reads those two.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// Slot in `DEST` of the socket that receives what arrives on this one.
    pub peer_slot: u32,
    /// Explicit padding so the layout has no hidden bytes; always 0.
    pub pad: u32,
    /// Payload bytes the program redirected from this socket to its peer (host byte order).
    pub bytes: u64,
    /// `bpf_ktime_get_ns()` (`CLOCK_MONOTONIC`, ns) of the last redirect; 0 = none yet.
    pub last_ns: u64,
}

#[cfg(feature = "user")]
// SAFETY: PeerInfo is repr(C), Copy, has no padding (the `pad` field is explicit) and every bit
// pattern is a valid value.
unsafe impl aya::Pod for PeerInfo {}
