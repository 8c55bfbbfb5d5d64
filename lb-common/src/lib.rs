//! One definition of every type and constant shared between the kernel program (`lb-ebpf`)
//! and the daemon (`lb-user`): map names, sizes and value layouts.
#![no_std]

/// Name of the sockmap that holds the *source* sockets; the stream-verdict program is attached
/// to it, so every byte that arrives on a socket in this map goes through the program.
pub const SOCKS_MAP: &str = "SOCKS";
/// Name of the sockmap that holds the *redirect targets*. It carries no program. The target of a
/// flow's kernel direction is inserted here before its source enters `SOCKS`, so the program
/// never redirects to an empty slot (an empty slot silently drops the data). A socket is in one
/// of the two maps, never both: the kernel carries one direction of a flow.
pub const DEST_MAP: &str = "DEST";
/// Name of the hash map from socket cookie to [`PeerInfo`] (written by the program).
pub const PEER_MAP: &str = "PEER";
/// Name of the hash map from socket cookie to [`Credit`] (written by userspace).
pub const CREDIT_MAP: &str = "CREDIT";
/// Name of the ring buffer of [`Wake`] records: the program asks userspace to move bytes it
/// passed instead of redirecting.
pub const WAKE_MAP: &str = "WAKES";
/// Name of the one-entry array counting [`Wake`] records the ring had no room for.
pub const WAKE_LOST_MAP: &str = "WAKE_LOST";

/// Slots in `SOCKS` and `DEST`: two per in-kernel flow (its source's and its target's).
/// 262 144 slots = 131 072 concurrent in-kernel flows; flows beyond that fall back to splice(2).
pub const MAX_SOCKETS: u32 = 1 << 18;

/// Size of the `WAKES` ring in bytes (a power of two, a multiple of the page size). A record
/// takes 24 bytes (8 of header), so 256 KiB holds ~10 900 wakes not yet read. The program asks
/// for at most one wake per direction while userspace is not working on it, so the ring fills
/// only if that many directions pause between two reads of its consumer; a wake that finds it
/// full is counted in `WAKE_LOST`, and userspace then looks at every paused direction.
pub const WAKE_RING_BYTES: u32 = 1 << 18;

/// Default bound on the bytes one direction of an in-kernel flow may have redirected and not
/// yet seen the peer socket take (`tune.lb.sockmap-backlog`): 4 MiB, Linux's default
/// `tcp_wmem` maximum, in the order of one socket buffer pair.
pub const DEFAULT_BACKLOG: u64 = 4 << 20;

/// Value of the `PEER` map, keyed by the socket cookie (`SO_COOKIE`) of the receiving socket.
///
/// Written by userspace at insert time, then only by the verdict program, one skb of this
/// socket at a time; userspace only reads it afterwards. (A userspace update of a hash-map
/// value replaces the element, so counts the program added to the old one meanwhile would be
/// lost: what userspace tells the program goes in [`Credit`], a map of its own.)
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// Slot in `DEST` of the socket that receives what arrives on this one.
    pub peer_slot: u32,
    /// 1 while the program passes this socket's data to its own receive queue (`SK_PASS`)
    /// instead of redirecting it; 0 while it redirects.
    pub paused: u32,
    /// Payload bytes the program redirected from this socket to its peer (host byte order).
    pub bytes: u64,
    /// `bpf_ktime_get_ns()` (`CLOCK_MONOTONIC`, ns) of the last skb; 0 = none yet.
    pub last_ns: u64,
    /// Payload bytes the program passed to this socket's own queue (`SK_PASS`), for userspace
    /// to read and send on in order.
    pub passed: u64,
    /// The program's copy of [`Credit::limit`], so that it looks `CREDIT` up only when an skb
    /// would go past it.
    pub limit: u64,
    /// TCP sequence number just past the last payload byte the program saw from this socket
    /// (valid once `seq_known` is 1).
    pub next_seq: u32,
    /// 1 once the program has read a TCP sequence number of this socket's data.
    pub seq_known: u32,
    /// Payload bytes the program cut off the head of skbs because it had seen them already: a
    /// retransmission that overlaps what arrived before is queued whole by TCP, and the verdict
    /// gets it whole (`tcp_read_skb` ignores the overlap that `tcp_recvmsg` skips).
    pub repeated: u64,
    /// Payload bytes the program dropped because it could not cut a repeat off their skb (the
    /// kernel had no memory): the direction can't end cleanly any more, userspace resets it.
    pub lost: u64,
}

/// Offset of `cb` in the kernel's `struct sk_buff` on 64-bit kernels (after `next`, `prev`,
/// `dev`/`rbnode`, `sk` and `tstamp`; 40 since Linux 4.x), for a kernel without BTF
/// ([`KernelLayout::UNKNOWN`]). TCP keeps an skb's `seq` and `end_seq` at the start of `cb`.
/// The program checks what it reads there against the skb's length before trusting it (see
/// `lb-ebpf`).
pub const SKB_CB_OFFSET: usize = 40;

/// Where the verdict program finds an skb's TCP sequence numbers and the read point of the
/// socket it arrived on: byte offsets of `cb` and `sk` in the kernel's `struct sk_buff` and of
/// `copied_seq` in its `struct tcp_sock`, read from the running kernel's BTF by userspace and
/// set as the program's global [`KERNEL_LAYOUT`] before it is loaded.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelLayout {
    pub skb_cb: u32,
    /// 0 = unknown (with `tcp_copied_seq`): the program then does not check the first skb it
    /// sees of a socket against what was read before (see `lb-ebpf`).
    pub skb_sk: u32,
    pub tcp_copied_seq: u32,
}

impl KernelLayout {
    /// The layout of a kernel without BTF: `cb` where 64-bit kernels have it, the read point
    /// unknown.
    pub const UNKNOWN: KernelLayout = KernelLayout {
        skb_cb: SKB_CB_OFFSET as u32,
        skb_sk: 0,
        tcp_copied_seq: 0,
    };
}

/// The name of the program's [`KernelLayout`] global.
pub const KERNEL_LAYOUT: &str = "KERNEL_LAYOUT";

/// Value of the `CREDIT` map, keyed like `PEER`. Written only by userspace (each update
/// replaces the whole value, so the program sees the old or the new one, never a mix); read
/// by the program.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Credit {
    /// The program redirects an skb only while `PeerInfo::bytes + len <= limit`; past it, it
    /// passes the skb (and every later one) and asks for a wake.
    pub limit: u64,
    /// Of `PeerInfo::passed`, the bytes userspace has written to the peer. The program goes
    /// back to redirecting only when `drained == passed`: no passed byte is then waiting, so
    /// the next redirected one lands behind all of them.
    pub drained: u64,
}

/// A record of the `WAKES` ring: the direction whose source has this cookie needs userspace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wake {
    /// `SO_COOKIE` of the source socket.
    pub cookie: u64,
    /// `PeerInfo::peer_slot` of the source: tells which thread owns the flow (slots are
    /// partitioned per thread).
    pub slot: u32,
    /// Explicit padding; always 0.
    pub pad: u32,
}

/// The thread balancer (`lb-balance`, a `SO_REUSEPORT` program): name of the map of every
/// thread's listening socket for each balanced address, at [`balance_slot`].
pub const BALANCE_LISTENERS_MAP: &str = "LISTENERS";
/// Name of the hash map from a listening address ([`ListenKey`]) to its group number.
pub const BALANCE_GROUPS_MAP: &str = "GROUPS";
/// Name of the array of [`ThreadLoad`], one per thread, shared with userspace by `mmap`.
pub const BALANCE_LOAD_MAP: &str = "LOAD";
/// Name of the program's global holding the number of threads (set before loading).
pub const BALANCE_THREADS: &str = "THREADS";
/// Threads the balancer chooses among (`nbthread` above it: the rest by the kernel's hash).
pub const MAX_BALANCED_THREADS: u32 = 64;
/// Addresses the balancer serves; more are spread by the kernel's hash.
pub const MAX_BALANCED_ADDRS: u32 = 256;

/// The key of thread `thread`'s socket of group `group` in `LISTENERS`.
#[must_use]
pub const fn balance_slot(group: u32, thread: u32) -> u32 {
    group * MAX_BALANCED_THREADS + thread
}

/// A listening address as the kernel's `bpf_sock` shows it: `family` (`AF_INET`/`AF_INET6`),
/// `port` in host order, `addr` the address's bytes (an IPv4 address in the first word).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ListenKey {
    pub family: u32,
    pub port: u32,
    pub addr: [u32; 4],
}

/// One thread's load, alone on its cache line: `live`, the connections it serves (userspace
/// counts them at accept and end), and `pending`, those the program sent to its socket and it
/// has not accepted yet (the program adds one per choice; userspace takes one away per accept,
/// never below zero), so that a burst of arrivals spreads before any is accepted.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadLoad {
    pub live: u64,
    pub pending: u64,
    pub pad: [u64; 6],
}

#[cfg(feature = "user")]
// SAFETY: PeerInfo is repr(C), Copy, has no padding (every field is 4 or 8 bytes, the u32s in
// pairs before 8-byte fields) and every bit pattern is a valid value.
unsafe impl aya::Pod for PeerInfo {}

#[cfg(feature = "user")]
// SAFETY: Credit is repr(C), Copy, two u64s, no padding; every bit pattern is valid.
unsafe impl aya::Pod for Credit {}

#[cfg(feature = "user")]
// SAFETY: KernelLayout is repr(C), Copy, three u32s, no padding; every bit pattern is valid.
unsafe impl aya::Pod for KernelLayout {}

#[cfg(feature = "user")]
// SAFETY: Wake is repr(C), Copy, has no padding (`pad` is explicit); every bit pattern is valid.
unsafe impl aya::Pod for Wake {}

#[cfg(feature = "user")]
// SAFETY: ListenKey is repr(C), Copy, six u32s, no padding; every bit pattern is valid.
unsafe impl aya::Pod for ListenKey {}
