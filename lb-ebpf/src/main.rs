//! The in-kernel data plane: a stream-verdict program on the `SOCKS` sockmap that forwards every
//! skb arriving on the source socket of a flow's kernel direction to the send queue of its peer
//! (the other direction is spliced), so that no byte of that direction is copied through
//! userspace, and that stops forwarding (passes the skbs to
//! the socket's own receive queue, which closes its TCP window) once a direction has more in
//! flight than userspace allows (see `Credit` in lb-common and the module header of
//! `lb-user/src/dataplane/sockmap.rs`).
// Built for the BPF target by lb-user's build.rs. A host build (`cargo clippy --workspace`)
// gets an empty `main` instead, as aya's own integration-ebpf crate does.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

use aya_ebpf::{
    bindings::sk_action::{SK_DROP, SK_PASS},
    helpers::{bpf_get_socket_cookie, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::{map, stream_verdict},
    maps::{Array, HashMap, RingBuf, SockMap},
    programs::SkBuffContext,
    EbpfContext as _,
};
use lb_common::{Credit, KernelLayout, PeerInfo, Wake, MAX_SOCKETS, WAKE_RING_BYTES};

/// `BPF_F_NO_PREALLOC` (include/uapi/linux/bpf.h).
const BPF_F_NO_PREALLOC: u32 = 1;

/// Source sockets: the verdict program is attached here, so the source of a flow's kernel
/// direction, once in this map, has its incoming data handed to `lb_verdict` instead of its
/// receive queue. Never a socket that is also in `DEST` (see `Way` in lb-user's `policy`).
#[map(name = "SOCKS")]
static SOCKS: SockMap = SockMap::with_max_entries(MAX_SOCKETS, 0);

/// Redirect targets, same slot numbers as `SOCKS`. Filled first, so a redirect never hits an
/// empty slot (which would drop data silently).
#[map(name = "DEST")]
static DEST: SockMap = SockMap::with_max_entries(MAX_SOCKETS, 0);

/// Socket cookie -> where to send its data, and what was done with it (redirected and passed
/// bytes, last activity). Written by this program only, once the socket is in `SOCKS`.
#[map(name = "PEER")]
static PEER: HashMap<u64, PeerInfo> = HashMap::with_max_entries(MAX_SOCKETS, 0);

/// Socket cookie -> how far the program may redirect, and how much of what it passed userspace
/// has sent on. Written by userspace only. Not preallocated (`BPF_F_NO_PREALLOC`): a full
/// preallocation would cost ~19 MiB of kernel memory per process for `MAX_SOCKETS` entries, and
/// entries come and go at the flow rate, not the packet rate.
#[map(name = "CREDIT")]
static CREDIT: HashMap<u64, Credit> = HashMap::with_max_entries(MAX_SOCKETS, BPF_F_NO_PREALLOC);

/// Wakes for userspace: a direction started passing, or passed while userspace had caught up.
#[map(name = "WAKES")]
static WAKES: RingBuf = RingBuf::with_byte_size(WAKE_RING_BYTES, 0);

/// Wakes that found `WAKES` full (one counter; userspace then checks every paused direction).
#[map(name = "WAKE_LOST")]
static WAKE_LOST: Array<u64> = Array::with_max_entries(1, 0);

/// Offsets of `sk_buff.cb`, `sk_buff.sk` and `tcp_sock.copied_seq` in the running kernel, set
/// by userspace from its BTF before loading (`lb_common::KERNEL_LAYOUT`);
/// `KernelLayout::UNKNOWN` when it has none.
#[unsafe(no_mangle)]
static KERNEL_LAYOUT: KernelLayout = KernelLayout::UNKNOWN;

/// `TCPHDR_FIN` in `tcp_skb_cb.tcp_flags`.
const TCPHDR_FIN: u32 = 0x01;

/// Most bytes `bpf_skb_adjust_room` removes in one call (the kernel refuses more than 0xfff).
const TRIM_STEP: u32 = 0xfff;

/// Calls of `bpf_skb_adjust_room` one skb may take: 160 x 4095 B = 640 KiB, more than the
/// largest skb TCP queues (64 KiB, 512 KiB with BIG TCP).
const TRIM_STEPS: u32 = 160;

/// Bytes at the head of this skb that an earlier skb of the socket already carried, and
/// records where the socket's data now ends. TCP queues a retransmission that overlaps what it
/// received before (`seq < rcv_nxt < end_seq`) whole, for readers to skip the overlap by
/// sequence number; the verdict gets whole skbs and would forward the overlap a second time.
/// 0 when the skb's TCP control block doesn't read as one (`end_seq != seq + len [+ FIN]`):
/// then nothing is trusted or recorded.
fn repeated_head(ctx: &SkBuffContext, p: &mut PeerInfo, len: u32) -> u32 {
    // `cb` starts with `seq`, `end_seq`, the GSO fields, then `tcp_flags` (byte 12).
    // SAFETY: a plain read of this program's read-only global, set before the load.
    let cb_at = unsafe { core::ptr::read_volatile(&raw const KERNEL_LAYOUT) }.skb_cb as usize;
    // SAFETY: reads 16 bytes of the kernel's sk_buff this program was called with; a fault
    // returns an error instead of reading.
    let Ok(cb) = (unsafe {
        bpf_probe_read_kernel(ctx.as_ptr().wrapping_byte_add(cb_at).cast::<[u32; 4]>())
    }) else {
        return 0;
    };
    let (seq, end_seq, fin) = (cb[0], cb[1], u32::from(cb[3] & TCPHDR_FIN != 0));
    if end_seq != seq.wrapping_add(len).wrapping_add(fin) {
        return 0;
    }
    // Wrapping distance from this skb's start to the end of what was seen: > 0 = overlap.
    // The first skb the program sees of a socket is compared with the socket's read point:
    // after a hand-over from splice, what userspace read may overlap it.
    // Where it is unknown, nothing is taken as seen.
    if p.seq_known == 0 {
        p.next_seq = read_point(ctx).unwrap_or(seq);
        p.seq_known = 1;
    }
    let seen = p.next_seq.wrapping_sub(seq).cast_signed();
    if seen <= 0 {
        p.next_seq = seq.wrapping_add(len);
        return 0;
    }
    let seen = seen.cast_unsigned();
    if seen < len {
        p.next_seq = seq.wrapping_add(len);
        seen
    } else {
        len
    }
}

/// The TCP sequence number up to which the skb's socket delivered its data before this skb
/// (`tcp_sock.copied_seq`: the kernel advances it for an skb of the verdict only after the
/// verdict, in `tcp_eat_skb`). `None` when the kernel's layout is unknown or a read fails.
fn read_point(ctx: &SkBuffContext) -> Option<u32> {
    // SAFETY: a plain read of this program's read-only global, set before the load.
    let layout = unsafe { core::ptr::read_volatile(&raw const KERNEL_LAYOUT) };
    if layout.skb_sk == 0 || layout.tcp_copied_seq == 0 {
        return None;
    }
    // SAFETY: reads the `sk` pointer of the kernel's sk_buff this program was called with,
    // then a u32 of the tcp_sock it points to (`tcp_read_skb` set it to the socket that
    // received the skb); a fault returns an error instead of reading.
    unsafe {
        let sk = bpf_probe_read_kernel(
            ctx.as_ptr()
                .wrapping_byte_add(layout.skb_sk as usize)
                .cast::<u64>(),
        )
        .ok()?;
        if sk == 0 {
            return None;
        }
        bpf_probe_read_kernel((sk as usize + layout.tcp_copied_seq as usize) as *const u32).ok()
    }
}

/// Removes the first `n` bytes of the skb; false if the kernel refused (no memory).
fn trim_head(ctx: &SkBuffContext, n: u32) -> bool {
    let mut left = n;
    for _ in 0..TRIM_STEPS {
        if left == 0 {
            return true;
        }
        let step = left.min(TRIM_STEP);
        // mode 0, flags 0: the only form sk_skb programs may use; a negative length shrinks
        // from the head (`__skb_pull`).
        if ctx.adjust_room(-step.cast_signed(), 0, 0).is_err() {
            return false;
        }
        left -= step;
    }
    left == 0
}

#[stream_verdict]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the stream_verdict macro fixes the signature"
)]
pub fn lb_verdict(ctx: SkBuffContext) -> u32 {
    let len = u64::from(ctx.len());
    // A FIN arrives as a zero-length skb. Redirecting it makes the peer's send path fail with
    // EPIPE; userspace passes the FIN on itself (after the last byte), so drop it here.
    if len == 0 {
        return SK_DROP;
    }
    // SAFETY: ctx.as_ptr() is the __sk_buff this program was called with.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let Some(peer) = PEER.get_ptr_mut(cookie) else {
        // Not (or no longer) a spliced flow: leave the data in the socket's own receive queue
        // where userspace can still read it, rather than lose it.
        return SK_PASS;
    };
    // SAFETY: `peer` points into the PEER map value, valid for this program run. Only this
    // program writes it once the socket is in SOCKS, and one socket's skbs are processed one at
    // a time (under the socket's lock), so plain read-modify-write is enough.
    let p = unsafe { &mut *peer };
    // SAFETY: plain helper call.
    p.last_ns = unsafe { bpf_ktime_get_ns() };
    let repeated = repeated_head(&ctx, p, ctx.len());
    if repeated > 0 {
        p.repeated += u64::from(repeated);
        if !trim_head(&ctx, repeated) {
            // No memory to cut the repeat: forwarding the skb would repeat bytes, dropping it
            // loses its new ones. Drop, and let userspace reset the direction (`lost`).
            p.lost += u64::from(ctx.len());
            return SK_DROP;
        }
        if ctx.len() == 0 {
            return SK_DROP;
        }
    }
    let len = u64::from(ctx.len());
    let mut redirect = p.paused == 0 && p.bytes + len <= p.limit;
    let mut caught_up = p.paused == 0;
    if !redirect {
        // Past the cached limit, or paused: userspace's latest word decides.
        // SAFETY: the value is only read, within this program run.
        if let Some(c) = unsafe { CREDIT.get(cookie) } {
            p.limit = c.limit;
            caught_up = caught_up || c.drained == p.passed;
            // Back to redirecting only once every passed byte was sent on (`drained ==
            // passed`): this skb then lands behind all of them, in order.
            redirect = caught_up && p.bytes + len <= c.limit;
        }
    }
    if redirect {
        p.paused = 0;
        p.bytes += len;
        // flags 0: queue on the peer's *egress* (send it out), not BPF_F_INGRESS.
        // SAFETY: DEST is a sockmap and ctx is the program's skb.
        return unsafe { DEST.redirect_skb(&ctx, p.peer_slot, 0) } as u32;
    }
    // Pass: the kernel charges the skb to this socket's receive memory, so its window closes
    // as a reader's would; userspace moves it on. Every later skb of this direction is passed
    // too until userspace has sent all of them (the `drained == passed` rule above).
    p.paused = 1;
    p.passed += len;
    if caught_up {
        // Userspace is not working on this direction: wake it.
        let wake = Wake {
            cookie,
            slot: p.peer_slot,
            pad: 0,
        };
        if WAKES.output::<Wake>(&wake, 0).is_err() {
            if let Some(lost) = WAKE_LOST.get_ptr_mut(0) {
                // SAFETY: a valid pointer into the one-entry array. Concurrent increments may
                // collapse into one; userspace only looks for a change.
                unsafe { *lost += 1 };
            }
        }
    }
    SK_PASS
}

lb_ebpf::program_boilerplate!();
