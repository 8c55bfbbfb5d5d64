//! Which thread takes a new connection. Each thread has its own `SO_REUSEPORT` socket per
//! address, and by itself the kernel picks one by a hash of the connection's addresses: held
//! connections then split between threads at random (27/23 of 50 was common, see #10). HAProxy
//! hands each accepted connection to its least loaded thread, preferring its own; lb has the
//! kernel do it, at the SYN, with a small program (`lb-ebpf/src/balance.rs`) that sends the
//! connection to the thread with the fewest live connections plus connections sent and not
//! accepted yet, or keeps it on the last connection's thread while the threads stay close.
//!
//! This module loads that program once, registers every bound address's sockets with it
//! ([`register`], [`unregister`]), keeps each thread's counts in memory it shares with the
//! program (an `mmap` of the `LOAD` map: no syscall per connection, [`accepted`]), and gives
//! the sockets up when a new process takes them over ([`hand_over`]): the kernel lets a socket
//! be in one such map at a time, and the new process registers them in its own.
//!
//! Where the program cannot be loaded (no BPF, a kernel before 5.14, more threads than
//! [`MAX_BALANCED_THREADS`], `AYA_BUILD_SKIP`) or an address cannot be registered, the kernel's
//! hash spreads the connections as before, and the log says why once.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use aya::maps::{HashMap as BpfHashMap, Map, MapData, ReusePortSockArray};
use aya::programs::SkReuseport;
use aya::{Ebpf, EbpfLoader};
use lb_common::{
    balance_slot, ListenKey, BALANCE_GROUPS_MAP, BALANCE_LISTENERS_MAP, BALANCE_LOAD_MAP,
    BALANCE_THREADS, MAX_BALANCED_ADDRS, MAX_BALANCED_THREADS,
};

/// The loaded program, its maps, and which group each address has.
struct Spread {
    /// Kept for the program's fd; its maps were taken out.
    ebpf: Ebpf,
    maps: Mutex<Maps>,
    load: &'static [Load],
}

struct Maps {
    listeners: ReusePortSockArray<MapData>,
    groups: BpfHashMap<MapData, ListenKey, u32>,
    /// Each address's group, and one of its sockets (to detach the program at a hand-over).
    by_addr: HashMap<SocketAddr, (u32, OwnedFd)>,
    free: Vec<u32>,
}

/// Userspace's view of `lb_common::ThreadLoad` (same layout), read and written atomically.
#[repr(C, align(64))]
struct Load {
    live: AtomicU64,
    pending: AtomicU64,
    _pad: [u64; 6],
}

const _: () = assert!(std::mem::size_of::<Load>() == std::mem::size_of::<lb_common::ThreadLoad>());

static SPREAD: OnceLock<Option<Spread>> = OnceLock::new();

/// Loads the program for `threads` threads. Called once, before anything is bound; without
/// it (or when it fails) every address is spread by the kernel's hash.
pub fn init(threads: usize) {
    SPREAD.get_or_init(|| {
        if threads < 2 {
            // One thread: nothing to choose.
            return None;
        }
        match load(threads) {
            Ok(s) => {
                log::info!("threads: new connections go to the least loaded of {threads} threads");
                Some(s)
            }
            Err(e) => {
                log::info!("threads: new connections spread by the kernel's hash ({e})");
                None
            }
        }
    });
}

fn load(threads: usize) -> Result<Spread, String> {
    let n = u32::try_from(threads)
        .ok()
        .filter(|n| *n <= MAX_BALANCED_THREADS)
        .ok_or_else(|| format!("{threads} threads: it balances at most {MAX_BALANCED_THREADS}"))?;
    let object = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-balance"));
    let mut ebpf = EbpfLoader::new()
        .override_global(BALANCE_THREADS, &n, true)
        .load(object)
        .map_err(|e| format!("loading the balancer: {e}"))?;
    let prog: &mut SkReuseport = ebpf
        .program_mut("lb_balance")
        .ok_or("no program 'lb_balance'")?
        .try_into()
        .map_err(|e| format!("{e}"))?;
    prog.load()
        .map_err(|e| format!("loading the balancer: {e}"))?;
    let mut take = |name: &str| ebpf.take_map(name).ok_or(format!("no map '{name}'"));
    let listeners =
        ReusePortSockArray::try_from(take(BALANCE_LISTENERS_MAP)?).map_err(|e| format!("{e}"))?;
    let groups = BpfHashMap::try_from(take(BALANCE_GROUPS_MAP)?).map_err(|e| format!("{e}"))?;
    let Map::Array(load_map) = take(BALANCE_LOAD_MAP)? else {
        return Err("map 'LOAD' is not an array".into());
    };
    let load = map_load(&load_map)?;
    // The mapping holds the map: its fd may close.
    drop(load_map);
    Ok(Spread {
        ebpf,
        maps: Mutex::new(Maps {
            listeners,
            groups,
            by_addr: HashMap::new(),
            free: (0..MAX_BALANCED_ADDRS).rev().collect(),
        }),
        load,
    })
}

/// Maps `LOAD` (created `BPF_F_MMAPABLE`) into memory for the life of the process.
fn map_load(map: &MapData) -> Result<&'static [Load], String> {
    let len = MAX_BALANCED_THREADS as usize * std::mem::size_of::<Load>();
    // SAFETY: a shared mapping of the map's values; its length is the map's size (a whole
    // number of pages, 64 B per entry), and it is never unmapped.
    let at = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            map.fd().as_fd().as_raw_fd(),
            0,
        )
    };
    if at == libc::MAP_FAILED {
        return Err(format!(
            "mapping the threads' loads: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `at` is page aligned, `len` bytes long and zeroed by the kernel; `Load` is
    // atomics and padding, valid for any bits.
    Ok(unsafe { std::slice::from_raw_parts(at.cast::<Load>(), MAX_BALANCED_THREADS as usize) })
}

fn spread() -> Option<&'static Spread> {
    SPREAD.get().and_then(Option::as_ref)
}

fn lock(s: &Spread) -> std::sync::MutexGuard<'_, Maps> {
    s.maps
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The key the program builds from a listener of `addr`'s group.
fn key(addr: SocketAddr) -> ListenKey {
    let (family, words) = match addr {
        SocketAddr::V4(a) => (
            libc::AF_INET as u32,
            [u32::from_ne_bytes(a.ip().octets()), 0, 0, 0],
        ),
        SocketAddr::V6(a) => {
            let o = a.ip().octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            (libc::AF_INET6 as u32, [w(0), w(4), w(8), w(12)])
        }
    };
    ListenKey {
        family,
        port: u32::from(addr.port()),
        addr: words,
    }
}

/// Registers `addr`'s sockets, `socks[t]` being thread `t`'s, and attaches the program to
/// their group. Sockets shared between threads (a new process given fewer than it has
/// threads) are not balanced: the kernel's hash spreads them.
pub fn register(addr: SocketAddr, socks: &[TcpListener]) {
    let Some(s) = spread() else { return };
    if let Err(e) = try_register(s, addr, socks) {
        log::info!("{addr}: new connections spread by the kernel's hash ({e})");
    }
}

fn try_register(s: &Spread, addr: SocketAddr, socks: &[TcpListener]) -> Result<(), String> {
    let distinct: std::collections::HashSet<u64> = socks
        .iter()
        .filter_map(|l| crate::dataplane::sockopt::socket_cookie(l.as_fd()).ok())
        .collect();
    if distinct.len() != socks.len() {
        return Err(format!(
            "its {} threads share {} socket(s): fewer were handed over than there are threads",
            socks.len(),
            distinct.len()
        ));
    }
    let member = socks[0]
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("{e}"))?;
    let mut m = lock(s);
    let group = match m.by_addr.get(&addr) {
        Some((g, _)) => *g,
        None => m.free.pop().ok_or("too many addresses to balance")?,
    };
    m.by_addr.insert(addr, (group, member));
    let set = (0..socks.len()).try_for_each(|t| {
        m.listeners
            .set(balance_slot(group, t as u32), &socks[t], 0)
            .map_err(|e| match e {
                aya::maps::MapError::SyscallError(e)
                    if e.io_error.raw_os_error() == Some(libc::EBUSY) =>
                {
                    "another process's balancer still holds the sockets".to_owned()
                }
                e => format!("{e}"),
            })
    });
    let done = set.and_then(|()| {
        m.groups
            .insert(key(addr), group, 0)
            .map_err(|e| format!("{e}"))
    });
    if let Err(e) = done {
        forget(&mut m, addr);
        return Err(e);
    }
    let attached = s
        .ebpf
        .program("lb_balance")
        .and_then(|p| <&SkReuseport>::try_from(p).ok())
        .ok_or_else(|| "no program 'lb_balance'".to_owned())
        .and_then(|prog| {
            prog.attach(socks[0].as_fd())
                .map_err(|e| format!("attaching the balancer: {e}"))
        });
    if attached.is_err() {
        forget(&mut m, addr);
    }
    attached
}

/// Stops balancing `addr` (removed by a reload, or unbound).
pub fn unregister(addr: &SocketAddr) {
    if let Some(s) = spread() {
        forget(&mut lock(s), *addr);
    }
}

/// Removes `addr` from the maps; returns one of its sockets.
fn forget(m: &mut Maps, addr: SocketAddr) -> Option<OwnedFd> {
    let (group, member) = m.by_addr.remove(&addr)?;
    let _ = m.groups.remove(&key(addr));
    for t in 0..MAX_BALANCED_THREADS {
        // Slots never set answer ENOENT; a socket that closed left its slot by itself.
        let _ = m.listeners.clear_index(&balance_slot(group, t));
    }
    m.free.push(group);
    Some(member)
}

/// Gives every registered socket up, and detaches the program from their groups: a new
/// process takes the listening sockets over (`_getsocks`, called before they are sent) and
/// registers them with its own balancer (a process that has none, HAProxy, finds the groups as
/// the kernel made them). Until it attaches its own, the kernel's hash spreads connections.
pub fn hand_over() {
    if let Some(s) = spread() {
        let mut m = lock(s);
        let addrs: Vec<SocketAddr> = m.by_addr.keys().copied().collect();
        for a in addrs {
            if let Some(member) = forget(&mut m, a) {
                if let Err(e) = SkReuseport::detach(member.as_fd()) {
                    log::warn!("{a}: detaching the thread balancer: {e}");
                }
            }
        }
    }
}

/// A connection accepted on thread `thread`, counted in its load until dropped.
pub struct Live {
    load: Option<&'static Load>,
}

/// Counts a connection thread `thread` accepted: one more live, one fewer sent to it and not
/// yet accepted (never below zero: a connection the kernel's hash sent was not counted).
pub fn accepted(thread: usize) -> Live {
    let live = adopted(thread);
    if let Some(l) = live.load {
        let _ = l
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| p.checked_sub(1));
    }
    live
}

/// Counts a flow handed over by the old process at an upgrade on thread `thread`: live, and
/// never sent by the program.
pub fn adopted(thread: usize) -> Live {
    let load = spread().and_then(|s| s.load.get(thread));
    if let Some(l) = load {
        l.live.fetch_add(1, Ordering::Relaxed);
    }
    Live { load }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(l) = self.load {
            l.live.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
