//! The in-kernel data plane: load the `lb-ebpf` stream-verdict program, insert one direction of
//! each established flow into the sockmaps (its source into `SOCKS`, its destination into
//! `DEST`; the other direction is spliced: [`policy::Way`] says why never both), and from
//! userspace only watch for FIN/RST, idle time and the program's wakes. A flow whose source
//! can't enter the map (no longer ESTABLISHED, map full) is carried by splice(2) instead, so
//! every flow is served.
//!
//! The traps of shared/notes/sockmap.md and where each is handled:
//! 1. FIN as a zero-length skb: dropped by the program (`lb-ebpf`).
//! 2. RDHUP before the last data was redirected: [`drain::pass_fin_when_drained`].
//! 3. Data queued before the insert: `SO_RCVLOWAT` after the insert, in [`ThreadMaps::insert`].
//! 4. Empty redirect slot: `DEST` is filled before `SOCKS`, in [`ThreadMaps::insert`].
//! 5. Not ESTABLISHED any more: that direction falls back to splice, in [`forward`].
//! 7. Close detection: an epoll set with `EPOLLRDHUP` only ([`HupWatcher`]), so the data that
//!    the kernel forwards never wakes this process.
//! 8. Idle time: the program stamps `last_ns`; [`forward`] reads it.
//! 9. A retransmission that overlaps bytes already received (`seq < rcv_nxt < end_seq`: the
//!    sender lost ACKs, e.g. dropped at its own busy backlog) is queued whole by TCP, which
//!    leaves skipping the overlap to the reader; `tcp_read_skb` hands it whole to the program,
//!    which would forward the overlap twice. The program reads each skb's `seq`/`end_seq` from
//!    TCP's control block (`bpf_probe_read_kernel` at `sk_buff.cb`, trusted only if `end_seq`
//!    matches the length), keeps where the socket's data ends (`PeerInfo::next_seq`) and cuts
//!    a repeated head with `bpf_skb_adjust_room` (`lb-ebpf`). The first skb after a hand-over
//!    is compared with the socket's read point (`tcp_sock.copied_seq`, at offsets read from the
//!    kernel's BTF: [`layout`]), so a repeat of what splice read is cut too.
//!
//! # Backpressure: at most `backlog` bytes in flight per direction
//!
//! Each step relies on this kernel behaviour (Linux 6.x `net/core/skmsg.c`, `sock_map.c`,
//! `net/ipv4/tcp_bpf.c`, `tcp.c`):
//! - *Why redirecting alone is unbounded.* `sk_psock_verdict_data_ready` runs the program from
//!   `tcp_read_skb`, which unlinks each skb from the receive queue and orphans it
//!   (`skb_set_owner_sk_safe`) first: a redirected skb is charged to no receive buffer, so the
//!   source's window stays open. `sk_psock_skb_redirect` appends it to the peer's psock queue
//!   (`ingress_skb`) without a limit, and `sk_psock_backlog` sends from it only while
//!   `sock_writeable(peer)`. So userspace bounds it: the program redirects an skb only while
//!   `PEER.bytes + len <= CREDIT.limit`, and userspace sets `limit` to what was redirected plus
//!   `backlog` at a moment when the peer had taken every byte (`tcpi_bytes_acked + SIOCOUTQ`
//!   of the peer, less its value at the insert, `>= bytes + drained`). The peer's `bytes_acked +
//!   SIOCOUTQ` only grows, so from then on the psock queue holds at most `backlog`.
//! - *Pausing.* Past the limit the program returns `SK_PASS`: `sk_psock_verdict_apply` queues
//!   the skb on the source's own `ingress_msg` with `skb_set_owner_r`, charging it to the
//!   source's receive memory, so TCP's window closes (`tcp_space`) as it does for a proxy that
//!   doesn't read. But only if the source's psock queues no skb redirected *to* it: otherwise
//!   `sk_psock_verdict_apply` puts the passed skb behind them in `ingress_skb`, charged to
//!   nothing until they are sent, and the window stays open. So no socket is both a source and
//!   a target: the kernel carries one direction of a flow, the other is spliced
//!   ([`policy::Way`]). (With both in the maps, a client that pushed and read nothing, at a
//!   backend that echoed, got its whole 256 MiB push into the kernel's queues whenever the
//!   psock worker ran late: 2 MB waited unmoved in the client socket's `ingress_skb` for
//!   231 ms while 265 MB were passed behind them; every run with the client's `SO_SNDBUF`
//!   squeezed, `echo_to_a_squeezed_client_that_reads_late_sockmap`.) A direction's credit is
//!   also capped by what its destination's send queue takes at once (half of `SO_SNDBUF` less
//!   `SIOCOUTQ`, [`ThreadMaps::credit_room`]): what waits in a psock queue is charged to no
//!   socket buffer, so it is kept to what the destination's own buffer would hold.
//! - *Order.* Once one skb of a direction was passed, the program passes every later one too
//!   until userspace has sent every passed byte on (`CREDIT.drained == PEER.passed`), so a
//!   redirected skb never overtakes a passed one. Userspace writes passed bytes to the peer only
//!   when the peer has taken every redirected byte (above), so they never overtake those either.
//! - *Reading passed bytes.* A socket in a map with a verdict program reads with
//!   `tcp_bpf_recvmsg_parser`, which serves `ingress_msg`; splice(2) (`tcp_splice_read`) reads
//!   the receive queue itself and would not see them, so [`drain`] copies through a 256 KiB
//!   buffer (only while paused). It returns 0 once the FIN is in (`SOCK_DONE`) even while passed
//!   skbs still wait in `ingress_skb`: 0 is not an end here, the byte counts are.
//! - *The resume handshake.* The program runs under the source's socket lock (softirq holds its
//!   spinlock, backlog processing owns it), and `tcp_bpf_recvmsg_parser` takes `lock_sock`. So
//!   userspace writes `CREDIT`, then calls `recv`: every program run that read the old credit
//!   has finished and counted its bytes in `passed` by then, and every later run reads the new
//!   one. If `passed == drained` after that, the next skb is redirected; one the new credit
//!   can't take is passed and wakes userspace again (the program wakes on a pass whenever
//!   userspace had caught up). Userspace copies passed bytes with `MSG_PEEK` and consumes them
//!   only after that check: a read frees receive memory and reopens the sender's window, so a
//!   sender that keeps the queue full would put a new skb in before every publish and the
//!   direction would never resume ([`drain::drain_passed`]).
//! - *Wakes.* `sk_psock_verdict_data_ready` signals the socket's waiters after every batch,
//!   redirected or not, so `EPOLLIN` would wake lb for every skb; the program writes a record
//!   to the `WAKES` ring instead, only on those passes, and one thread routes it by map slot to
//!   the thread owning the flow ([`watch`]).
//! - *Two maps.* A userspace update of a `BPF_MAP_TYPE_HASH` value links a new element and frees
//!   the old (`htab_map_update_elem`), so counts the program adds to the old one meanwhile would
//!   be lost: `PEER` is written by the program only, `CREDIT` by userspace only.
//!
//! - *What a pause still costs.* The credit is raised only in a pause (the program asks for
//!   nothing before it runs out), and by the time userspace answers a pause's wake the sender
//!   has filled the source's window (4–8 MB on loopback), all of which is copied before the
//!   direction resumes: with both ends pushing 64 MiB at once, 6–25 % of each direction was
//!   redirected in the plane test. That is why `--dataplane auto` lets flows in only on
//!   evidence ([`policy`]).
//!
//! The bound: a direction whose receiver stops reading holds at most `backlog` (and at most
//! what the peer's send queue takes) in the peer's psock queue, 256 KiB in lb's drain buffer,
//! what the source's receive buffer admits (`SO_RCVBUF`) and what the peer's send buffer
//! admits (`SO_SNDBUF`), as splice holds its 1 MiB pipe and the same two buffers. It holds
//! however late the psock worker runs: what waits for it is the credit, and what the program
//! passes meanwhile is charged to the source.

pub mod adopt;
mod drain;
mod flow;
mod layout;
pub mod policy;
mod watch;

use std::cell::RefCell;
use std::io;
use std::os::fd::BorrowedFd;
use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use aya::maps::{Array, HashMap, Map, MapData, RingBuf, SockMap};
use aya::programs::SkSkb;
use aya::{Ebpf, EbpfLoader};
use lb_common::{
    Credit, PeerInfo, CREDIT_MAP, DEFAULT_BACKLOG, DEST_MAP, KERNEL_LAYOUT, MAX_SOCKETS, PEER_MAP,
    SOCKS_MAP, WAKE_LOST_MAP, WAKE_MAP,
};

use super::sockopt;
pub(crate) use drain::release_idle_spare;
#[cfg(test)]
pub(crate) use drain::{drained_total, DRAIN_CHUNK};
#[cfg(test)]
pub(super) use flow::in_kernel;
pub use flow::{forward, forward_after, forward_with_hook};
use flow::{serve_inserted, Resume};
use policy::{Choosing, Evidence, Rule, Way};
pub use watch::HupWatcher;

/// Bytes the program cut off retransmitted skbs as repeats, all flows of the process (tests
/// check that a scenario met any).
static REPEATED_TOTAL: AtomicU64 = AtomicU64::new(0);

/// What the program counted for each source socket of the flows that ended in this process, by
/// `SO_COOKIE` (tests check where a direction's bytes went: redirected or passed).
#[cfg(test)]
static ENDED: std::sync::Mutex<std::collections::BTreeMap<u64, PeerInfo>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Records what the program counted for a source socket whose flow ends.
#[cfg(test)]
fn record_ended(cookie: u64, info: PeerInfo) {
    ENDED.lock().unwrap().insert(cookie, info);
}

/// What the program counted for the source socket `cookie` of a flow that ended.
#[cfg(test)]
pub(crate) fn ended_counts(cookie: u64) -> Option<PeerInfo> {
    ENDED.lock().unwrap().get(&cookie).copied()
}

/// What the program counts for the source socket `cookie` right now (tests show where a
/// direction's bytes are while its flow runs).
#[cfg(test)]
pub(crate) fn peer_counts_now(ids: MapIds, cookie: u64) -> Option<PeerInfo> {
    let map = MapData::from_id(ids.ids[2]).ok()?;
    let peer: HashMap<MapData, u64, PeerInfo> = HashMap::try_from(Map::HashMap(map)).ok()?;
    peer.get(&cookie, 0).ok()
}

/// The process's count of repeated bytes the program cut (see [`REPEATED_TOTAL`]).
#[cfg(test)]
pub(crate) fn repeated_total() -> u64 {
    REPEATED_TOTAL.load(std::sync::atomic::Ordering::Relaxed)
}

/// Environment switch for tests: `LB_TEST_FORCE_BPF_FAIL=1` makes [`load`] fail as it would on
/// a kernel or account without BPF, so the `auto` fallback can be tested on a machine with BPF.
pub const FORCE_FAIL_ENV: &str = "LB_TEST_FORCE_BPF_FAIL";

/// Why the in-kernel data plane could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("BPF load failed: forced by {FORCE_FAIL_ENV}=1 (test switch)")]
    Forced,
    #[error("BPF load failed: {0}")]
    Ebpf(#[from] aya::EbpfError),
    #[error("BPF program 'lb_verdict': {0}")]
    Program(#[from] aya::programs::ProgramError),
    #[error("BPF map: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("BPF object has no map or program named '{0}'")]
    Missing(&'static str),
    #[error("sockmap wake thread: {0}")]
    Dispatcher(io::Error),
}

/// Kernel ids of `SOCKS`, `DEST`, `PEER`, `CREDIT`, and the backlog bound: what a thread needs
/// to open its own handles.
#[derive(Clone, Copy, Debug)]
pub struct MapIds {
    ids: [u32; 4],
    backlog: u64,
    rule: Rule,
    /// The credit a flow gets at its insert, instead of [`ThreadMaps::credit_limit`]'s (tests:
    /// 0 pauses each direction at its first skb).
    first_credit: Option<u64>,
    /// The direction every flow puts into the maps, instead of [`policy::kernel_way`]'s
    /// (tests: a flow entering at once has no bytes to choose by).
    way: Option<Way>,
}

impl MapIds {
    /// The same maps with another bound on what one direction may have in flight in the kernel
    /// (`tune.lb.sockmap-backlog`, bytes; at least 64 KiB, the largest skb the program sees).
    #[must_use]
    pub fn with_backlog(self, bytes: u64) -> Self {
        Self {
            backlog: bytes.max(MIN_BACKLOG),
            ..self
        }
    }

    /// The backlog bound the threads will use, in bytes.
    pub fn backlog(&self) -> u64 {
        self.backlog
    }

    /// The same maps, with the threads choosing which flows enter them (`--dataplane auto`,
    /// [`policy::enter_maps`]) instead of taking every flow.
    #[must_use]
    pub fn by_evidence(self) -> Self {
        Self {
            rule: Rule {
                choosing: Choosing::ByEvidence,
                ..self.rule
            },
            ..self
        }
    }

    /// How the threads choose the flows that enter the maps.
    pub fn choosing(&self) -> Choosing {
        self.rule.choosing
    }

    /// The same maps, with another size from which a flow counts as bulk (tests: a size
    /// that fits into the sockets' queues before the flow starts).
    #[cfg(test)]
    #[must_use]
    pub(crate) fn with_bulk_bytes(self, bytes: u64) -> Self {
        Self {
            rule: Rule {
                bulk_bytes: bytes,
                ..self.rule
            },
            ..self
        }
    }

    /// The same maps, with `bytes` of credit for each direction at its insert (tests: 0 makes
    /// every direction pause at its first skb, so that a test can watch it resume).
    #[cfg(test)]
    #[must_use]
    pub(crate) fn with_first_credit(self, bytes: u64) -> Self {
        Self {
            first_credit: Some(bytes),
            ..self
        }
    }

    /// The same maps, with every flow putting `way` into them.
    #[cfg(test)]
    #[must_use]
    pub(crate) fn with_way(self, way: Way) -> Self {
        Self {
            way: Some(way),
            ..self
        }
    }

    /// The same maps, with a fixed CPU pressure (%) and CPU count instead of the machine's
    /// (tests: the suite runs on a busy machine with two CPUs).
    #[cfg(test)]
    #[must_use]
    pub(crate) fn with_machine(self, pressure: f32, cpus: usize) -> Self {
        Self {
            rule: Rule {
                machine: policy::Machine::Fixed { pressure, cpus },
                ..self.rule
            },
            ..self
        }
    }
}

/// The least backlog bound: one skb (at most 64 KiB on a device without BIG TCP) must fit,
/// or a direction would pass every skb and run through userspace.
pub const MIN_BACKLOG: u64 = 64 << 10;

/// The loaded program and maps. Keep it alive for the life of the process: dropping it detaches
/// the program, and the kernel then stops forwarding.
pub struct Loaded {
    ebpf: std::mem::ManuallyDrop<Ebpf>,
    _socks: SockMap<MapData>,
    ids: MapIds,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        // Dropping the program detaches it from `SOCKS`: not while another process serves
        // flows in these maps (binary upgrade, [`adopt`]); the kernel frees it with them.
        if !adopt::maps_handed_over() {
            // SAFETY: dropped once, here, and never used after.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.ebpf) };
        }
    }
}

impl Loaded {
    /// The map ids, to pass to each thread's [`ThreadMaps::open`].
    pub fn map_ids(&self) -> MapIds {
        self.ids
    }
}

fn map_id(map: &Map) -> Result<u32, LoadError> {
    let (Map::SockMap(data) | Map::HashMap(data) | Map::RingBuf(data) | Map::Array(data)) = map
    else {
        return Err(LoadError::Missing("map of the expected type"));
    };
    Ok(data.info()?.id())
}

/// Loads the verdict program and attaches it to `SOCKS`.
pub fn load() -> Result<Loaded, LoadError> {
    if std::env::var_os(FORCE_FAIL_ENV).is_some_and(|v| v == "1") {
        return Err(LoadError::Forced);
    }
    // Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; raise it where we may. Newer
    // kernels (memcg accounting) ignore it, so a failure here is not an error.
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const unlimited) };

    let layout = layout::kernel_layout();
    let mut ebpf = EbpfLoader::new()
        .override_global(KERNEL_LAYOUT, &layout, true)
        .load(aya::include_bytes_aligned!(concat!(
            env!("OUT_DIR"),
            "/lb-ebpf"
        )))?;
    let id = |name: &'static str, ebpf: &Ebpf| -> Result<u32, LoadError> {
        map_id(ebpf.map(name).ok_or(LoadError::Missing(name))?)
    };
    let ids = MapIds {
        ids: [
            id(SOCKS_MAP, &ebpf)?,
            id(DEST_MAP, &ebpf)?,
            id(PEER_MAP, &ebpf)?,
            id(CREDIT_MAP, &ebpf)?,
        ],
        backlog: DEFAULT_BACKLOG,
        rule: Rule::default(),
        first_credit: None,
        way: None,
    };
    adopt::loaded(ids, [id(WAKE_MAP, &ebpf)?, id(WAKE_LOST_MAP, &ebpf)?]);
    let wakes = RingBuf::try_from(
        ebpf.take_map(WAKE_MAP)
            .ok_or(LoadError::Missing(WAKE_MAP))?,
    )?;
    let lost = Array::try_from(
        ebpf.take_map(WAKE_LOST_MAP)
            .ok_or(LoadError::Missing(WAKE_LOST_MAP))?,
    )?;
    let socks = SockMap::try_from(
        ebpf.take_map(SOCKS_MAP)
            .ok_or(LoadError::Missing(SOCKS_MAP))?,
    )?;
    let prog: &mut SkSkb = ebpf
        .program_mut("lb_verdict")
        .ok_or(LoadError::Missing("lb_verdict"))?
        .try_into()?;
    prog.load()?;
    prog.attach(socks.fd())?;
    watch::spawn_dispatcher(wakes, lost).map_err(LoadError::Dispatcher)?;
    Ok(Loaded {
        ebpf: std::mem::ManuallyDrop::new(ebpf),
        _socks: socks,
        ids,
    })
}

/// One thread's handles on the maps, its share of the slots, and its FIN/RST watcher.
///
/// Each thread opens its own map fds (`MapData::from_id`), so no lock is shared between
/// threads; slots are partitioned per thread for the same reason.
pub struct ThreadMaps {
    socks: RefCell<SockMap<MapData>>,
    dest: RefCell<SockMap<MapData>>,
    peer: RefCell<HashMap<MapData, u64, PeerInfo>>,
    credit: RefCell<HashMap<MapData, u64, Credit>>,
    slots: RefCell<Slots>,
    watcher: Rc<HupWatcher>,
    /// How long a flow runs on splice before it is moved into the maps (see [`forward`]).
    hand_over_after: Duration,
    /// Bytes one direction may have redirected and not yet seen its peer take.
    backlog: u64,
    /// Which flows enter the maps, and what this thread saw to decide it ([`policy`]).
    rule: Rule,
    evidence: Evidence,
    /// [`MapIds::first_credit`].
    first_credit: Option<u64>,
    /// [`MapIds::way`].
    forced_way: Option<Way>,
}

/// A thread's range of map slots: never-used ones from `next`, returned ones on `free`.
struct Slots {
    next: u32,
    end: u32,
    free: Vec<u32>,
}

impl Slots {
    fn take(&mut self) -> Option<u32> {
        if let Some(s) = self.free.pop() {
            return Some(s);
        }
        (self.next < self.end).then(|| {
            self.next += 1;
            self.next - 1
        })
    }
}

/// Steps of [`ThreadMaps::insert`], reported to a test hook between syscalls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertStep {
    Dest,
    Peer,
    Socks,
}

/// What [`ThreadMaps::insert`] managed to set up for one flow.
struct Inserted {
    client_slot: u32,
    server_slot: u32,
    client_cookie: u64,
    server_cookie: u64,
    /// `bytes_acked + SIOCOUTQ` of each socket when the kernel took over: the connecting
    /// side's SYN counts in `bytes_acked`, the accepting side's doesn't; what a splice phase
    /// wrote counts in one or the other.
    client_base: u64,
    server_base: u64,
    /// Bytes read from each socket before the kernel took over (by the splice phase).
    client_read: u64,
    server_read: u64,
    /// client -> server runs in the kernel.
    up_kernel: bool,
    /// server -> client runs in the kernel.
    down_kernel: bool,
}

impl Inserted {
    /// Cookies of the sockets whose data the program sees: `PEER` and `CREDIT` are theirs.
    fn kernel_sources(&self) -> impl Iterator<Item = u64> {
        kernel_sources(
            (self.up_kernel, self.down_kernel),
            (self.client_cookie, self.server_cookie),
        )
    }
}

/// Of a flow's client and server `cookies`, those of the sources of the directions the kernel
/// carries (`kernel`: client -> server, server -> client).
fn kernel_sources(kernel: (bool, bool), cookies: (u64, u64)) -> impl Iterator<Item = u64> {
    [(kernel.0, cookies.0), (kernel.1, cookies.1)]
        .into_iter()
        .filter_map(|(on, cookie)| on.then_some(cookie))
}

fn is_not_established(e: &aya::maps::MapError) -> bool {
    matches!(e, aya::maps::MapError::SyscallError(s)
        if s.io_error.raw_os_error() == Some(libc::EOPNOTSUPP))
}

impl ThreadMaps {
    /// Opens this thread's map handles; `thread`/`threads` choose its slot range. Flows run on
    /// splice for `hand_over_after` before they enter the maps (zero: at once).
    pub fn open(
        ids: MapIds,
        thread: usize,
        threads: usize,
        hand_over_after: Duration,
    ) -> io::Result<Rc<Self>> {
        let open = |id: u32| MapData::from_id(id).map_err(io::Error::other);
        let [socks, dest, peer, credit] = ids.ids;
        let socks = SockMap::try_from(Map::SockMap(open(socks)?)).map_err(io::Error::other)?;
        let dest = SockMap::try_from(Map::SockMap(open(dest)?)).map_err(io::Error::other)?;
        let peer = HashMap::try_from(Map::HashMap(open(peer)?)).map_err(io::Error::other)?;
        let credit = HashMap::try_from(Map::HashMap(open(credit)?)).map_err(io::Error::other)?;
        let per = MAX_SOCKETS / threads.max(1) as u32;
        let start = per * thread as u32;
        Ok(Rc::new(Self {
            socks: RefCell::new(socks),
            dest: RefCell::new(dest),
            peer: RefCell::new(peer),
            credit: RefCell::new(credit),
            slots: RefCell::new(Slots {
                next: start,
                end: start + per,
                free: Vec::new(),
            }),
            watcher: HupWatcher::new(start, start + per)?,
            hand_over_after,
            backlog: ids.backlog,
            rule: ids.rule,
            evidence: Evidence::default(),
            first_credit: ids.first_credit,
            forced_way: ids.way,
        }))
    }

    /// Flows enter the maps at once (`--sockmap-after 0`), without a splice or copy phase.
    pub fn at_once(&self) -> bool {
        self.hand_over_after.is_zero()
    }

    /// The FIN/RST watcher of this thread; its [`HupWatcher::run`] must be spawned once.
    pub fn watcher(&self) -> &Rc<HupWatcher> {
        &self.watcher
    }

    /// What this thread saw of its flows, and how it chose for them.
    pub fn evidence(&self) -> &Evidence {
        &self.evidence
    }

    /// Inserts one direction of a pair (`way`, [`policy::kernel_way`]), in the order that
    /// loses nothing: its destination into `DEST`, its source's `PEER` and `CREDIT` entries,
    /// the source into `SOCKS`, then `SO_RCVLOWAT`. The other direction stays on splice: no
    /// socket is ever both a source and a target ([`Way`]). `None` = nothing in the kernel
    /// (no slots, or the source is no longer ESTABLISHED: a sockmap refuses it).
    fn insert(
        &self,
        client: BorrowedFd<'_>,
        server: BorrowedFd<'_>,
        (client_read, server_read): (u64, u64),
        way: Way,
        hook: &mut dyn FnMut(InsertStep),
    ) -> Option<Inserted> {
        let (client_slot, server_slot) = {
            let mut slots = self.slots.borrow_mut();
            let a = slots.take()?;
            let Some(b) = slots.take() else {
                slots.free.push(a);
                return None;
            };
            (a, b)
        };
        let (Ok(client_cookie), Ok(server_cookie)) = (
            sockopt::socket_cookie(client),
            sockopt::socket_cookie(server),
        ) else {
            self.release_slots(client_slot, server_slot);
            return None;
        };
        // Nothing writes to either socket now. What lb wrote to a socket is what it read from
        // the other one: a socket written nothing has an empty send queue, so `bytes_acked`
        // alone is the baseline of `bytes_acked + SIOCOUTQ`; otherwise both are read, so that
        // an ACK in between is not counted twice.
        let base = |fd, written_to: u64| {
            if written_to == 0 {
                sockopt::tcp_counters(fd).map_or(0, |c| c.bytes_acked)
            } else {
                sockopt::written(fd).unwrap_or(0)
            }
        };
        let (src, src_slot, src_cookie, dst, dst_slot) = match way {
            Way::Up => (client, client_slot, client_cookie, server, server_slot),
            Way::Down => (server, server_slot, server_cookie, client, client_slot),
        };
        let mut ins = Inserted {
            client_slot,
            server_slot,
            client_cookie,
            server_cookie,
            // Only the destination's baseline is ever read (`KernelDir::dst_base`).
            client_base: if way == Way::Down {
                base(client, server_read)
            } else {
                0
            },
            server_base: if way == Way::Up {
                base(server, client_read)
            } else {
                0
            },
            client_read,
            server_read,
            up_kernel: false,
            down_kernel: false,
        };
        // 1. The redirect target first (trap 4).
        let in_dest = self.dest.borrow_mut().set(dst_slot, &dst, 0).is_ok();
        hook(InsertStep::Dest);
        // 2. Where the source's data goes, and how much of it may be in flight.
        let entries = in_dest && {
            let mut first = self.credit(0, 0, dst);
            if let Some(bytes) = self.first_credit {
                first.limit = bytes;
            }
            let entry = PeerInfo {
                peer_slot: dst_slot,
                limit: first.limit,
                ..PeerInfo::default()
            };
            self.credit
                .borrow_mut()
                .insert(src_cookie, first, 0)
                .is_ok()
                && self.peer.borrow_mut().insert(src_cookie, entry, 0).is_ok()
        };
        hook(InsertStep::Peer);
        // 3. The source last: from here on the program sees its data.
        let in_socks = entries
            && match self.socks.borrow_mut().set(src_slot, &src, 0) {
                Ok(()) => true,
                Err(e) => {
                    if !is_not_established(&e) {
                        log::debug!("sockmap insert of the source ({way:?}) failed: {e}");
                    }
                    false
                }
            };
        hook(InsertStep::Socks);
        // Until `in_socks`, this says which source's entries step 2 may have made, for
        // `remove` to take them out again.
        match way {
            Way::Up => ins.up_kernel = in_dest,
            Way::Down => ins.down_kernel = in_dest,
        }
        if !in_socks {
            self.remove(&ins);
            return None;
        }
        // 4. Make the kernel run the program on data queued before the insert (trap 3).
        let _ = sockopt::set_rcvlowat(src, 1);
        Some(ins)
    }

    fn release_slots(&self, a: u32, b: u32) {
        let mut slots = self.slots.borrow_mut();
        slots.free.push(a);
        slots.free.push(b);
    }

    /// Takes a flow out of every map and frees its slots. Sources go first so that the program
    /// stops seeing their data before the targets disappear.
    fn remove(&self, ins: &Inserted) {
        {
            let mut socks = self.socks.borrow_mut();
            let _ = socks.clear_index(&ins.client_slot);
            let _ = socks.clear_index(&ins.server_slot);
        }
        {
            let mut dest = self.dest.borrow_mut();
            let _ = dest.clear_index(&ins.client_slot);
            let _ = dest.clear_index(&ins.server_slot);
        }
        self.remove_entries(ins);
        self.release_slots(ins.client_slot, ins.server_slot);
    }

    /// Deletes a flow's `PEER` and `CREDIT` entries (its kernel direction's source has them).
    fn remove_entries(&self, ins: &Inserted) {
        let mut peer = self.peer.borrow_mut();
        let mut credit = self.credit.borrow_mut();
        for cookie in ins.kernel_sources() {
            let _ = peer.remove(&cookie);
            let _ = credit.remove(&cookie);
        }
    }

    /// Ends a flow whose sockets were just closed. Closing a socket takes it out of every
    /// sockmap in the kernel (`sock_map_close`), so only the `PEER` and `CREDIT` entries are
    /// deleted here: 4 map syscalls instead of 8 per flow. Slots are free once the sockets are
    /// gone.
    fn remove_closed(&self, ins: &Inserted) {
        self.remove_entries(ins);
        self.release_slots(ins.client_slot, ins.server_slot);
    }

    /// Bytes a direction into `dst` may have in flight: `backlog`, but never more than `dst`'s
    /// send queue takes at once. Redirected bytes that `dst` can't take wait in `dst`'s psock
    /// queue, charged to no socket buffer (see the module header), so a direction may put in
    /// flight only what its destination will take without its reader.
    fn credit_room(&self, dst: BorrowedFd<'_>) -> u64 {
        self.backlog.min(sockopt::send_room(dst).unwrap_or(0))
    }

    /// The credit of a direction whose destination `dst` has taken every one of its
    /// `redirected` bytes, userspace having sent on `drained` passed ones: the limit
    /// [`Self::credit_room`] beyond them (as `dst`'s taken count only grows, at most that much
    /// is ever in `dst`'s psock queue).
    fn credit(&self, redirected: u64, drained: u64, dst: BorrowedFd<'_>) -> Credit {
        Credit {
            limit: redirected + self.credit_room(dst),
            drained,
        }
    }

    /// What the program recorded for a source socket.
    fn peer_info(&self, cookie: u64) -> Option<PeerInfo> {
        self.peer.borrow().get(&cookie, 0).ok()
    }

    /// Tells the program how far a source may be redirected and what of its passed bytes was
    /// sent on. The update replaces the whole value: the program sees the old or the new one.
    fn set_credit(&self, cookie: u64, credit: Credit) {
        if let Err(e) = self.credit.borrow_mut().insert(cookie, credit, 0) {
            log::debug!("sockmap credit update failed: {e}");
        }
    }
}
