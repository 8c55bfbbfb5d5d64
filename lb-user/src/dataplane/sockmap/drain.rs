//! Userspace's part of an in-kernel direction: moving on the bytes the verdict program passed
//! to the source's own queue instead of redirecting them (a paused direction), in order, and
//! passing the source's FIN on once every byte before it was delivered. See the module header
//! of `sockmap` for the kernel behaviour each step relies on.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lb_common::Credit;

use super::super::{sockopt, DirEnd, Stop};
use super::ThreadMaps;

/// Most bytes read from a paused source at once: userspace holds at most this much of a flow.
pub(crate) const DRAIN_CHUNK: usize = 256 << 10;

/// Passed bytes userspace has sent on, all flows of the process (tests check that a scenario
/// paused at all).
static DRAINED_TOTAL: AtomicU64 = AtomicU64::new(0);

/// The process's count of passed bytes sent on by userspace.
#[cfg(test)]
pub(crate) fn drained_total() -> &'static AtomicU64 {
    &DRAINED_TOTAL
}

/// Polling while a paused direction waits for its peer or its source: starts short (a fast
/// peer takes the backlog within microseconds), doubles to the second value, and to the third
/// once nothing has moved for [`SLOW_AFTER`] (a peer that stopped reading costs ~20 wake-ups
/// a second, and notices within 50 ms that it reads again).
const POLL: (Duration, Duration, Duration) = (
    Duration::from_micros(20),
    Duration::from_millis(5),
    Duration::from_millis(50),
);
const SLOW_AFTER: Duration = Duration::from_secs(1);

/// One direction carried by the kernel, as userspace sees it.
pub(super) struct KernelDir<'a> {
    pub maps: &'a ThreadMaps,
    pub src: BorrowedFd<'a>,
    pub dst: BorrowedFd<'a>,
    /// `SO_COOKIE` of `src`: its keys in `PEER` and `CREDIT`.
    pub src_cookie: u64,
    /// Bytes read from `src` before the kernel took over (by the splice phase).
    pub src_read: u64,
    /// `bytes_acked + SIOCOUTQ` of `dst` when the kernel took over.
    pub dst_base: u64,
    /// Passed bytes userspace has written to `dst` (`Credit::drained`).
    pub drained: &'a Cell<u64>,
}

impl KernelDir<'_> {
    /// Bytes `dst` has taken into its send queue since the kernel took over, never more than
    /// the truth: `bytes_acked` is read before `SIOCOUTQ`, so an ACK in between lowers the sum.
    fn taken(&self) -> io::Result<u64> {
        let acked = sockopt::tcp_counters(self.dst)?.bytes_acked;
        let queued = sockopt::outq(self.dst)?;
        Ok((acked + queued).saturating_sub(self.dst_base))
    }

    fn errors(&self) -> Result<(), DirEnd> {
        if sockopt::take_error(self.src).is_some() {
            return Err(DirEnd::SrcReset);
        }
        if sockopt::take_error(self.dst).is_some() {
            return Err(DirEnd::DstReset);
        }
        Ok(())
    }
}

/// A buffer of bytes read from the source and not yet all written to the peer.
#[derive(Default)]
struct Held {
    buf: Vec<u8>,
    at: usize,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.at == self.buf.len()
    }
}

/// Moves the bytes the program passed on `d.src` to `d.dst`, after every byte the program
/// redirected before them, and returns once none is left (or the flow failed). On return the
/// program may redirect again: `CREDIT` then says every passed byte was sent on, and allows
/// `backlog` more bytes beyond what it redirected.
///
/// With `stop`, it counts itself parked there while it holds no byte (its buffer empty: at the
/// top of each turn and while it sleeps), so that a flow that stays paused can still be handed
/// to another process (binary upgrade), which drains on from the same counts.
pub(super) async fn drain_passed(d: &KernelDir<'_>, stop: Option<&Stop>) -> Result<(), DirEnd> {
    let mut held = Held::default();
    let mut pause = POLL.0;
    let mut moved_at = Instant::now();
    let mut first = true;
    loop {
        if let Some(stop) = stop.filter(|_| held.is_empty()) {
            stop.park();
            stop.held().await;
            stop.leave();
        }
        let info = d.maps.peer_info(d.src_cookie).ok_or(DirEnd::Local)?;
        if info.paused == 0 && info.passed == d.drained.get() && held.is_empty() {
            // Not paused (any more): the program redirects, nothing waits in userspace.
            return Ok(());
        }
        if first {
            // The direction paused: evidence against the kernel path on this thread.
            d.maps.evidence.paused(moved_at);
            first = false;
        }
        d.errors()?;
        let taken = d.taken().map_err(|_| DirEnd::Local)?;
        let mut moved = false;
        // Only once `dst` has taken every redirected byte and every byte we wrote may more of
        // ours follow: a byte written now lands behind them.
        if taken >= info.bytes + d.drained.get() {
            if !held.is_empty() {
                match send(d.dst, &held.buf[held.at..]) {
                    Ok(n) => {
                        held.at += n;
                        d.drained.set(d.drained.get() + n as u64);
                        DRAINED_TOTAL.fetch_add(n as u64, Ordering::Relaxed);
                        moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => moved = true,
                    Err(_) => return Err(DirEnd::DstReset),
                }
            }
            if held.is_empty() {
                held.at = 0;
                // Tell the program what was sent on and how far it may redirect once it
                // resumes (`dst` holds nothing of ours in flight now).
                d.maps.set_credit(
                    d.src_cookie,
                    Credit {
                        limit: d.maps.credit_limit(info.bytes, d.dst),
                        drained: d.drained.get(),
                    },
                );
                // recvmsg takes the socket lock, which a verdict run holds for its whole run:
                // once it returns, every run that read the credit before the update above has
                // counted its bytes in `passed`, and every later run reads the new credit.
                match recv(d.src, &mut held.buf) {
                    Ok(0) => {}
                    Ok(_) => moved = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => moved = true,
                    Err(_) => return Err(DirEnd::SrcReset),
                }
                if !moved {
                    let now = d.maps.peer_info(d.src_cookie).ok_or(DirEnd::Local)?;
                    if now.passed == d.drained.get() {
                        // Everything passed was sent on. If a later skb finds the credit too
                        // small, the program passes it and wakes us again (we caught up).
                        return Ok(());
                    }
                    // Passed but not readable yet: still on its way into the source's queue.
                }
            }
        }
        if moved {
            pause = POLL.0;
            moved_at = Instant::now();
            continue;
        }
        let park = stop.filter(|_| held.is_empty());
        if let Some(stop) = park {
            stop.park();
        }
        tokio::time::sleep(pause).await;
        if let Some(stop) = park {
            stop.leave();
        }
        let max = if moved_at.elapsed() > SLOW_AFTER {
            POLL.2
        } else {
            POLL.1
        };
        pause = (pause * 2).min(max);
    }
}

/// Trap 2: after `src`'s FIN, wait until the program has seen every byte that arrived before
/// it, the passed ones were sent on and `dst` has taken them all, then pass the FIN on with
/// `shutdown(dst, SHUT_WR)`.
pub(super) async fn pass_fin_when_drained(d: &KernelDir<'_>) -> DirEnd {
    let mut pause = POLL.0;
    let mut first = true;
    loop {
        // The caller checked `src` just before; a failed shutdown reports `dst`. Errors matter
        // only while we wait.
        if !first {
            if let Err(end) = d.errors() {
                return end;
            }
        }
        first = false;
        if let Err(end) = drain_passed(d, None).await {
            return end;
        }
        let Some(info) = d.maps.peer_info(d.src_cookie) else {
            return DirEnd::Local;
        };
        if info.lost != 0 {
            // The program dropped bytes it could not clean of a repeat: no clean end.
            return DirEnd::SrcReset;
        }
        let (Ok(s), Ok(taken)) = (sockopt::tcp_counters(d.src), d.taken()) else {
            return DirEnd::Local;
        };
        let drained = d.drained.get();
        // bytes_received counts the FIN as one byte, and the bytes the splice phase read.
        let seen = d.src_read + info.bytes + info.passed + 1 >= s.bytes_received;
        if seen && info.passed == drained && taken >= info.bytes + drained {
            return match sockopt::shutdown_write(d.dst) {
                Ok(()) => DirEnd::Fin,
                Err(_) => DirEnd::DstReset,
            };
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(POLL.1);
    }
}

/// `send(MSG_DONTWAIT | MSG_NOSIGNAL)`: a peer that closed gives an error, not SIGPIPE.
fn send(fd: BorrowedFd<'_>, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: `bytes` is valid for `len` bytes for the duration of the call.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Reads up to [`DRAIN_CHUNK`] bytes into `buf` (replacing its contents). `Ok(0)` is *not* an
/// end of stream here: a socket whose FIN arrived reports 0 while passed bytes may still be on
/// their way into its queue; the byte counts decide when the direction is done.
fn recv(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.clear();
    buf.reserve(DRAIN_CHUNK);
    // SAFETY: `buf` has room for DRAIN_CHUNK bytes; the kernel writes at most that many.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            DRAIN_CHUNK,
            libc::MSG_DONTWAIT,
        )
    };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    // SAFETY: the kernel initialised the first `n` bytes.
    unsafe { buf.set_len(n) };
    Ok(n)
}
