//! The thread balancer: an `SO_REUSEPORT` program (`sk_reuseport`) run by the kernel for each
//! new connection to an address lb listens on with one socket per thread. Without it the
//! kernel picks the socket by a hash of the connection's addresses, so held connections split
//! between threads at random (27/23 of 50 was common); with it, the connection goes to the
//! thread with the fewest connections, counting those it was sent and has not accepted yet, or
//! stays on the last connection's thread while that keeps the threads close (see [`choose`]),
//! as HAProxy hands each accepted connection to its least loaded thread, preferring its own.
//!
//! The listener the kernel looks up tells which address (`GROUPS`); each thread's socket of
//! that address is in `LISTENERS`. An address or thread the maps do not know, or a failed
//! selection, leaves the choice to the kernel's hash (the program changes nothing then).
// Built for the BPF target by lb-user's build.rs; a host build gets an empty `main`.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// The BPF target has no atomic types with read-modify-write methods; the intrinsic compiles to
// the instruction (`BPF_ATOMIC` add, its result unused).
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

use aya_ebpf::{
    bindings::sk_action::SK_PASS,
    macros::{map, sk_reuseport},
    maps::{Array, HashMap, ReusePortSockArray},
    programs::SkReuseportContext,
};
use lb_common::{balance_slot, ListenKey, ThreadLoad, MAX_BALANCED_ADDRS, MAX_BALANCED_THREADS};

/// `BPF_F_MMAPABLE` (include/uapi/linux/bpf.h): userspace maps `LOAD` into its memory.
const BPF_F_MMAPABLE: u32 = 1 << 10;

#[map(name = "LISTENERS")]
static LISTENERS: ReusePortSockArray =
    ReusePortSockArray::with_max_entries(MAX_BALANCED_ADDRS * MAX_BALANCED_THREADS, 0);

#[map(name = "GROUPS")]
static GROUPS: HashMap<ListenKey, u32> = HashMap::with_max_entries(MAX_BALANCED_ADDRS, 0);

#[map(name = "LOAD")]
static LOAD: Array<ThreadLoad> = Array::with_max_entries(MAX_BALANCED_THREADS, BPF_F_MMAPABLE);

/// The thread the last connection went to: the next one goes there too while that keeps the
/// threads within [`SLACK`] connections of each other (see [`choose`]).
#[map(name = "LAST")]
static LAST: Array<u32> = Array::with_max_entries(1, 0);

/// How far apart (in connections) the threads may be after a choice that keeps a connection on
/// the last connection's thread.
const SLACK: u64 = 2;

/// lb's thread count, set by userspace before loading.
#[unsafe(no_mangle)]
static THREADS: u32 = 1;

#[sk_reuseport]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the sk_reuseport macro fixes the signature"
)]
pub fn lb_balance(ctx: SkReuseportContext) -> u32 {
    if let Some(group) = group_of(&ctx) {
        choose(&ctx, group);
    }
    SK_PASS
}

/// The group of the listener the kernel looked up: its address, as userspace registered it.
fn group_of(ctx: &SkReuseportContext) -> Option<u32> {
    let sk = ctx.sk().sock;
    // SAFETY: `sk` is the kernel's `bpf_sock` of a listener of the group (never null in a
    // sk_reuseport program since 5.14); the verifier checks each field read.
    let key = unsafe {
        ListenKey {
            family: core::ptr::read_volatile(&raw const (*sk).family),
            port: core::ptr::read_volatile(&raw const (*sk).src_port),
            addr: [
                core::ptr::read_volatile(&raw const (*sk).src_ip6[0]),
                core::ptr::read_volatile(&raw const (*sk).src_ip6[1]),
                core::ptr::read_volatile(&raw const (*sk).src_ip6[2]),
                core::ptr::read_volatile(&raw const (*sk).src_ip6[3]),
            ],
        }
    };
    let key = if key.family == AF_INET {
        // SAFETY: as above.
        let ip4 = unsafe { core::ptr::read_volatile(&raw const (*sk).src_ip4) };
        ListenKey {
            addr: [ip4, 0, 0, 0],
            ..key
        }
    } else {
        key
    };
    // SAFETY: a plain lookup; the value is copied out.
    unsafe { GROUPS.get(key) }.copied()
}

const AF_INET: u32 = 2;

/// Sends the connection to a thread's socket of `group`, and counts it there: the last
/// connection's thread while that leaves no thread more than [`SLACK`] connections ahead of the
/// least loaded, else the least loaded. Strictly the least loaded would alternate threads for a
/// client that connects in series (its last connection is still open on one when the next
/// arrives), waking an idle thread for each connection, where staying lets one wake serve the
/// last connection's end and the next one's start; held connections still split within
/// `SLACK`.
fn choose(ctx: &SkReuseportContext, group: u32) {
    // SAFETY: a global userspace sets before loading and never after.
    let threads = unsafe { core::ptr::read_volatile(&raw const THREADS) };
    let threads = if threads > MAX_BALANCED_THREADS {
        MAX_BALANCED_THREADS
    } else {
        threads
    };
    let last = LAST.get(0).copied().unwrap_or(0);
    let mut best = 0u32;
    let mut least = u64::MAX;
    let mut on_last = u64::MAX;
    let mut t = 0u32;
    while t < MAX_BALANCED_THREADS && t < threads {
        if let Some(load) = LOAD.get_ptr(t) {
            let n = load_of(load);
            if n < least {
                least = n;
                best = t;
            }
            if t == last {
                on_last = n;
            }
        }
        t += 1;
    }
    if on_last <= least.saturating_add(SLACK - 1) {
        best = last;
    }
    if let Some(l) = LAST.get_ptr_mut(0) {
        // SAFETY: a one-entry array; a race between CPUs only loses a preference.
        unsafe { core::ptr::write_volatile(l, best) };
    }
    if LISTENERS
        .select_reuseport(ctx, balance_slot(group, best))
        .is_ok()
    {
        if let Some(load) = LOAD.get_ptr_mut(best) {
            add_pending(load);
        }
    }
}

/// A thread's connections: live, and sent to it and not accepted yet.
fn load_of(load: *const ThreadLoad) -> u64 {
    // SAFETY: an element of an array map; userspace writes it with atomics too.
    let (live, pending) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*load).live),
            core::ptr::read_volatile(&raw const (*load).pending),
        )
    };
    live.saturating_add(pending)
}

/// One more connection sent to the thread of `load`: an atomic add, as userspace's updates.
#[cfg(target_arch = "bpf")]
fn add_pending(load: *mut ThreadLoad) {
    use core::intrinsics::{atomic_xadd, AtomicOrdering};
    // SAFETY: an element of an array map, shared with userspace through atomics only.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*load).pending, 1) };
}

#[cfg(not(target_arch = "bpf"))]
fn add_pending(load: *mut ThreadLoad) {
    // SAFETY: as above (host builds only type-check this program).
    unsafe { core::sync::atomic::AtomicU64::from_ptr(&raw mut (*load).pending) }
        .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
}

lb_ebpf::program_boilerplate!();
