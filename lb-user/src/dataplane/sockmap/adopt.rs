//! Binary upgrade of flows that live in the kernel maps, handed over in place: taking a socket
//! out of a sockmap drops its psock, and with it the bytes its queues hold (`sk_psock_drop`
//! purges `ingress_skb`, redirected and not yet sent, and `ingress_msg`, passed and not yet
//! read: `net/core/skmsg.c`), so the flows never leave the maps. The old process passes the
//! maps themselves (their fds, over the same unix socket as the flows' sockets: `SOCKS` keeps
//! the verdict program attached for as long as anyone holds it) and, per flow, its two sockets
//! and what userspace keeps of it ([`KernelFlow`]). The new process serves the adopted flows
//! from those maps ([`OldMaps`]) exactly as the old one did, on its own threads' FIN/RST
//! watchers, with the wakes of the old `WAKES` ring, until each ends; the old maps go with the
//! last of them.
//!
//! A flow is handed over only while both its directions wait for an event, where userspace holds
//! none of its bytes (no drain in progress, nothing in the spliced direction's pipe or buffer: the
//! kernel carries one direction of a flow, [`super::policy::Way`]): what the program passed
//! meanwhile waits in the kernel, and the new process sends it on ([`ThreadMaps`]'s drain, woken by
//! the old ring or by the periodic look [`OldMaps`] asks for while the old process may still have
//! eaten a wake). The old process keeps its loaded program alive ([`maps_handed_over`]): unloading
//! it would detach it from `SOCKS`.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use aya::maps::{HashMap, Map, MapData, MapType, RingBuf, SockMap};
use lb_common::{Credit, PeerInfo, Wake};

use super::super::{handoff, sockopt, FlowReport, FlowTimeouts, HandOffAsk, KillSwitch};
use super::watch::{send_to_all, Routed};
use super::{serve_inserted, Inserted, MapIds, Resume, Slots, ThreadMaps};

/// The maps a process hands over, in this order on the wire: `SOCKS`, `DEST`, `PEER`,
/// `CREDIT`, `WAKES`, and the count of wakes the ring lost.
pub const MAP_FDS: usize = 6;
const MAP_TYPES: [MapType; MAP_FDS] = [
    MapType::SockMap,
    MapType::SockMap,
    MapType::Hash,
    MapType::Hash,
    MapType::RingBuf,
    MapType::Array,
];
const MAP_NAMES: [&str; MAP_FDS] = ["SOCKS", "DEST", "PEER", "CREDIT", "WAKES", "WAKE_LOST"];

/// This process's maps, by kernel id (set when they are loaded: once, but tests load more).
static LOADED: Mutex<Option<[u32; MAP_FDS]>> = Mutex::new(None);

fn loaded_ids() -> Option<[u32; MAP_FDS]> {
    *LOADED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Set once a flow of this process's maps was committed to another process.
static HANDED_OVER: AtomicBool = AtomicBool::new(false);

/// Records this process's map ids (called by [`super::load`]).
pub(super) fn loaded(ids: MapIds, ring: [u32; 2]) {
    let [a, b, c, d] = ids.ids;
    *LOADED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some([a, b, c, d, ring[0], ring[1]]);
}

/// Whether this process runs the in-kernel plane, and so can serve flows in another's maps.
pub fn available() -> bool {
    loaded_ids().is_some()
}

/// Whether another process serves flows in this process's maps: the program must then stay
/// attached when this process ends (the kernel frees it with the maps).
pub fn maps_handed_over() -> bool {
    HANDED_OVER.load(Ordering::Acquire)
}

/// A kernel flow was committed to another process (the giving side of `_getflows`).
pub fn mark_handed_over() {
    HANDED_OVER.store(true, Ordering::Release);
}

/// Fresh fds of this process's maps, in [`MAP_FDS`] order, to pass to another process.
pub fn map_fds() -> io::Result<Vec<OwnedFd>> {
    let ids = loaded_ids().ok_or_else(|| io::Error::other("no kernel maps in this process"))?;
    ids.iter()
        .map(|&id| {
            let m = MapData::from_id(id).map_err(io::Error::other)?;
            m.fd().as_fd().try_clone_to_owned()
        })
        .collect()
}

/// What userspace keeps of a flow in the kernel maps, as one process hands it to another.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelFlow {
    /// `SO_COOKIE` of the client and server sockets: their keys in `PEER` and `CREDIT`.
    pub cookies: (u64, u64),
    /// Their slots in `SOCKS` and `DEST`.
    pub slots: (u32, u32),
    /// `bytes_acked + SIOCOUTQ` of each socket when the kernel took over.
    pub bases: (u64, u64),
    /// Bytes read from each socket before the kernel took over.
    pub read: (u64, u64),
    /// Passed bytes userspace has sent on, client -> server and server -> client.
    pub drained: (u64, u64),
    /// Bytes carried in the kernel phase so far each way (redirected + drained in the kernel
    /// direction, spliced in the other).
    pub carried: (u64, u64),
    /// Time since the flow's last activity.
    pub idle: Duration,
    /// Which directions the kernel carries, client -> server and server -> client: one (the
    /// other is spliced, [`super::policy::Way`]), or both for a flow an older lb put in.
    pub kernel: (bool, bool),
}

impl KernelFlow {
    /// The record of a flow in `maps`, as `ins` says, at a quiet point; `spliced`: the bytes
    /// its spliced direction moved so far (client -> server, server -> client).
    pub(super) fn of(
        maps: &ThreadMaps,
        ins: &Inserted,
        drained: (u64, u64),
        spliced: (u64, u64),
        last: Instant,
    ) -> Self {
        let bytes = |cookie| maps.peer_info(cookie).map_or(0, |p| p.bytes);
        Self {
            cookies: (ins.client_cookie, ins.server_cookie),
            slots: (ins.client_slot, ins.server_slot),
            bases: (ins.client_base, ins.server_base),
            read: (ins.client_read, ins.server_read),
            drained,
            carried: (
                bytes(ins.client_cookie) + drained.0 + spliced.0,
                bytes(ins.server_cookie) + drained.1 + spliced.1,
            ),
            idle: last.elapsed(),
            kernel: (ins.up_kernel, ins.down_kernel),
        }
    }

    /// Cookies of the sockets whose data the program sees (their `PEER` and `CREDIT` entries
    /// must exist).
    fn kernel_sources(&self) -> impl Iterator<Item = u64> {
        super::kernel_sources(self.kernel, self.cookies)
    }

    /// Bytes read from the client and from the server since accept.
    pub fn total_read(&self) -> (u64, u64) {
        (self.read.0 + self.carried.0, self.read.1 + self.carried.1)
    }
}

/// Offers a flow in the kernel maps through `ask` (duplicates of its sockets and `k`);
/// `true` once the other process has taken it.
pub(super) async fn offer(
    ask: HandOffAsk,
    (client, server): (BorrowedFd<'_>, BorrowedFd<'_>),
    k: KernelFlow,
) -> bool {
    let (Ok(client), Ok(server)) = (client.try_clone_to_owned(), server.try_clone_to_owned())
    else {
        return false;
    };
    handoff::offer_fds(ask, (client, server), k.total_read(), Some(k)).await
}

// ----- the taking side -----

/// `PEER` and `CREDIT`.
type Hashes = (
    HashMap<MapData, u64, PeerInfo>,
    HashMap<MapData, u64, Credit>,
);

/// Another process's maps, whose flows this one serves until they end.
#[derive(Debug)]
pub struct OldMaps {
    fds: Vec<OwnedFd>,
    socks_id: u32,
}

/// The old maps this process holds, by `SOCKS` id: one set per old process, whatever the
/// number of batches its flows came in.
static HELD: Mutex<Vec<Weak<OldMaps>>> = Mutex::new(Vec::new());

/// How often adopted flows look for passed bytes themselves while the old process lives: it
/// reads the same ring until it exits, and a wake it reads is lost to them.
const LOOK_EVERY: Duration = Duration::from_millis(200);

impl OldMaps {
    /// The maps of a batch's fds ([`MAP_FDS`] of them, checked by type), shared with the
    /// flows of earlier batches from the same process. `old_pid`: the old process, whose life
    /// bounds the periodic looks.
    pub fn from_fds(fds: Vec<OwnedFd>, old_pid: Option<i32>) -> Result<Arc<Self>, String> {
        if fds.len() != MAP_FDS {
            return Err(format!("{} map fd(s) ({MAP_FDS} due)", fds.len()));
        }
        let mut socks_id = 0;
        for (i, fd) in fds.iter().enumerate() {
            let dup = fd.try_clone().map_err(|e| e.to_string())?;
            let info = MapData::from_fd(dup)
                .and_then(|m| m.info())
                .map_err(|e| format!("map fd {i} ({}): not a BPF map ({e})", MAP_NAMES[i]))?;
            let ty = info.map_type().map_err(|e| e.to_string())?;
            if ty as u32 != MAP_TYPES[i] as u32 {
                return Err(format!(
                    "map fd {i} ({}) is a {ty:?} map, not {:?}",
                    MAP_NAMES[i], MAP_TYPES[i]
                ));
            }
            if i == 0 {
                socks_id = info.id();
            }
        }
        let mut held = HELD
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        held.retain(|w| w.strong_count() > 0);
        if let Some(m) = held
            .iter()
            .filter_map(Weak::upgrade)
            .find(|m| m.socks_id == socks_id)
        {
            return Ok(m);
        }
        let ring = fds[4].try_clone().map_err(|e| e.to_string())?;
        let maps = Arc::new(Self { fds, socks_id });
        held.push(Arc::downgrade(&maps));
        spawn_waker(ring, Arc::downgrade(&maps), old_pid).map_err(|e| e.to_string())?;
        log::info!(
            "serving flows in the old process's kernel maps (SOCKS id {socks_id}) until they end"
        );
        Ok(maps)
    }

    /// Why this process would not serve flow `k` with sockets `client`, `server`: a cookie
    /// that is not theirs, or no entry of theirs in `PEER` and `CREDIT` (a lying record).
    pub fn refusal(
        &self,
        k: &KernelFlow,
        client: BorrowedFd<'_>,
        server: BorrowedFd<'_>,
    ) -> Option<String> {
        for (fd, cookie, side) in [
            (client, k.cookies.0, "client"),
            (server, k.cookies.1, "server"),
        ] {
            match sockopt::socket_cookie(fd) {
                Ok(c) if c == cookie => {}
                Ok(c) => {
                    return Some(format!(
                        "its {side} socket's cookie is {c}, the record says {cookie}"
                    ))
                }
                Err(e) => return Some(format!("its {side} socket has no cookie ({e})")),
            }
        }
        let (peer, credit) = match self.hashes() {
            Ok(h) => h,
            Err(e) => return Some(e.to_string()),
        };
        for cookie in k.kernel_sources() {
            if peer.get(&cookie, 0).is_err() || credit.get(&cookie, 0).is_err() {
                return Some(format!("no map entry for socket cookie {cookie}"));
            }
        }
        None
    }

    fn map(&self, i: usize) -> io::Result<MapData> {
        MapData::from_fd(self.fds[i].try_clone()?).map_err(io::Error::other)
    }

    fn hashes(&self) -> io::Result<Hashes> {
        let peer = HashMap::try_from(Map::HashMap(self.map(2)?)).map_err(io::Error::other)?;
        let credit = HashMap::try_from(Map::HashMap(self.map(3)?)).map_err(io::Error::other)?;
        Ok((peer, credit))
    }

    /// Handles on these maps for one flow on a thread whose own maps are `mine` (its FIN/RST
    /// watcher and its backlog bound).
    fn thread_maps(&self, mine: &ThreadMaps) -> io::Result<Rc<ThreadMaps>> {
        let socks = SockMap::try_from(Map::SockMap(self.map(0)?)).map_err(io::Error::other)?;
        let dest = SockMap::try_from(Map::SockMap(self.map(1)?)).map_err(io::Error::other)?;
        let (peer, credit) = self.hashes()?;
        Ok(Rc::new(ThreadMaps {
            socks: RefCell::new(socks),
            dest: RefCell::new(dest),
            peer: RefCell::new(peer),
            credit: RefCell::new(credit),
            slots: RefCell::new(Slots {
                next: 0,
                end: 0,
                free: Vec::new(),
            }),
            watcher: mine.watcher.clone(),
            hand_over_after: mine.hand_over_after,
            backlog: mine.backlog,
            // Adopted flows are in the maps already: the policy has nothing left to decide.
            rule: mine.rule,
            evidence: super::policy::Evidence::default(),
            first_credit: None,
            forced_way: None,
        }))
    }
}

/// Serves a flow adopted in `old`'s maps on a thread whose own maps are `mine`, to its end.
/// Its report counts this process's part only.
pub async fn serve(
    mine: &ThreadMaps,
    old: &OldMaps,
    k: KernelFlow,
    (client, server): (OwnedFd, OwnedFd),
    t: FlowTimeouts,
    kill: &KillSwitch,
) -> FlowReport {
    let maps = match old.thread_maps(mine) {
        Ok(m) => m,
        Err(e) => {
            log::warn!("adopted kernel flow: cannot open the old maps: {e}");
            return FlowReport::local_error();
        }
    };
    let ins = Inserted {
        client_slot: k.slots.0,
        server_slot: k.slots.1,
        client_cookie: k.cookies.0,
        server_cookie: k.cookies.1,
        client_base: k.bases.0,
        server_base: k.bases.1,
        client_read: k.read.0,
        server_read: k.read.1,
        up_kernel: k.kernel.0,
        down_kernel: k.kernel.1,
    };
    let resume = Resume {
        since: Instant::now()
            .checked_sub(k.idle)
            .unwrap_or_else(Instant::now),
        drained: k.drained,
        // Its maps are not this process's own: a later upgrade leaves it here.
        offerable: false,
    };
    let mut r = serve_inserted(&maps, Ok(ins), (client, server), t, kill, resume).await;
    // A kernel direction's counts go on from the old process's (the program's `bytes`, the
    // drained count it resumed from); a spliced direction counts from 0 here.
    if k.kernel.0 {
        r.bytes_in = r.bytes_in.saturating_sub(k.carried.0);
    }
    if k.kernel.1 {
        r.bytes_out = r.bytes_out.saturating_sub(k.carried.1);
    }
    r
}

/// Reads the old process's `WAKES` ring for the adopted flows (each wake goes to every thread,
/// where the flow with that cookie takes it), and while the old process lives (it reads the
/// ring too) tells every in-kernel direction to look for passed bytes every [`LOOK_EVERY`],
/// once more after it is gone. Ends when the last adopted flow of these maps has ended.
fn spawn_waker(ring: OwnedFd, maps: Weak<OldMaps>, old_pid: Option<i32>) -> io::Result<()> {
    let ring = MapData::from_fd(ring).map_err(io::Error::other)?;
    let mut ring = RingBuf::try_from(Map::RingBuf(ring)).map_err(io::Error::other)?;
    std::thread::Builder::new()
        .name("lb-old-wakes".into())
        .spawn(move || {
            let _ = nix::sys::signal::SigSet::all().thread_block();
            let mut old_alive = old_pid.is_some();
            // The first look: wakes the old process read before the flows came here.
            send_to_all(Routed::All);
            while maps.strong_count() > 0 {
                let mut pfd = libc::pollfd {
                    fd: ring.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                let rc = unsafe { libc::poll(&raw mut pfd, 1, LOOK_EVERY.as_millis() as i32) };
                if rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                    log::error!(
                        "old kernel maps' wake ring: poll failed: {}",
                        io::Error::last_os_error()
                    );
                    return;
                }
                while let Some(item) = ring.next() {
                    if item.len() >= std::mem::size_of::<Wake>() {
                        // SAFETY: as in the process's own dispatcher (`watch`).
                        let wake: Wake = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
                        send_to_all(Routed::Wake(wake.cookie));
                    }
                }
                if old_alive {
                    old_alive = old_pid.is_some_and(|p| {
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok()
                    });
                    send_to_all(Routed::All);
                }
            }
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fds_that_are_not_the_maps_are_refused() {
        let sock = || OwnedFd::from(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
        let five: Vec<OwnedFd> = (0..5).map(|_| sock()).collect();
        assert_eq!(
            OldMaps::from_fds(five, None).unwrap_err(),
            "5 map fd(s) (6 due)"
        );
        let six: Vec<OwnedFd> = (0..MAP_FDS).map(|_| sock()).collect();
        let e = OldMaps::from_fds(six, None).unwrap_err();
        assert!(e.starts_with("map fd 0 (SOCKS): not a BPF map"), "{e}");
    }
}
