//! The in-kernel data plane: a stream-verdict program on the `SOCKS` sockmap that forwards every
//! skb arriving on one socket of a flow to the send queue of its peer, so that no byte of an
//! established flow is copied through userspace.
// Built for the BPF target by lb-user's build.rs. A host build (`cargo clippy --workspace`)
// gets an empty `main` instead, as aya's own integration-ebpf crate does.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

use aya_ebpf::{
    bindings::sk_action::{SK_DROP, SK_PASS},
    helpers::{bpf_get_socket_cookie, bpf_ktime_get_ns},
    macros::{map, stream_verdict},
    maps::{HashMap, SockMap},
    programs::SkBuffContext,
    EbpfContext as _,
};
use lb_common::{PeerInfo, MAX_SOCKETS};

/// Source sockets: the verdict program is attached here, so each socket of a flow, once in this
/// map, has its incoming data handed to `lb_verdict` instead of its receive queue.
#[map(name = "SOCKS")]
static SOCKS: SockMap = SockMap::with_max_entries(MAX_SOCKETS, 0);

/// Redirect targets, same slot numbers as `SOCKS`. Filled first, so a redirect never hits an
/// empty slot (which would drop data silently).
#[map(name = "DEST")]
static DEST: SockMap = SockMap::with_max_entries(MAX_SOCKETS, 0);

/// Socket cookie -> where to send its data, and what was sent (bytes, last activity).
#[map(name = "PEER")]
static PEER: HashMap<u64, PeerInfo> = HashMap::with_max_entries(MAX_SOCKETS, 0);

#[stream_verdict]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the stream_verdict macro fixes the signature"
)]
pub fn lb_verdict(ctx: SkBuffContext) -> u32 {
    let len = ctx.len();
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
    // SAFETY: `peer` points into the PEER map value, valid for this program run. Only the
    // program of this socket writes these two fields, and one socket's skbs are processed one
    // at a time, so plain read-modify-write is enough; userspace only reads them.
    let slot = unsafe {
        (*peer).bytes += u64::from(len);
        (*peer).last_ns = bpf_ktime_get_ns();
        (*peer).peer_slot
    };
    // flags 0: queue on the peer's *egress* (send it out), not BPF_F_INGRESS.
    // SAFETY: DEST is a sockmap and ctx is the program's skb.
    let ret = unsafe { DEST.redirect_skb(&ctx, slot, 0) };
    ret as u32
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {}
