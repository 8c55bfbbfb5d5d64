//! Userspace's part of an in-kernel direction: moving on the bytes the verdict program passed
//! to the source's own queue instead of redirecting them (a paused direction), in order, and
//! passing the source's FIN on once every byte before it was delivered. See the module header
//! of `sockmap` for the kernel behaviour each step relies on.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::super::{sockopt, DirEnd, Ends, Stop};
use super::{ThreadMaps, MIN_BACKLOG};

/// Most bytes taken out of a paused source's queue by one `recv`.
pub(crate) const DRAIN_CHUNK: usize = 256 << 10;

/// Most bytes of a paused source's queue userspace copies at once (`MSG_PEEK`): the handshake
/// resumes only once one copy holds every passed byte not yet consumed, so this must cover
/// the queue a sender fills before its window closes (what the source's receive buffer
/// admits); a larger queue is consumed in copies this large, which reopens the window.
const PEEK_MAX: u64 = 8 << 20;

thread_local! {
    /// The buffer of this thread's last finished drain, for its next one (see [`Copy::new`]).
    static SPARE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Whether a drain took [`SPARE`] since [`release_idle_spare`] last looked.
    static SPARE_USED: Cell<bool> = const { Cell::new(false) };
}

/// Drops this thread's spare drain buffer if no drain took it since the last call (the
/// thread's memory tick calls it once a second): a thread whose flows keep pausing keeps up to
/// [`PEEK_MAX`] bytes for them, a thread whose flows stopped pausing keeps nothing.
pub(crate) fn release_idle_spare() {
    if !SPARE_USED.with(|u| u.replace(false)) {
        SPARE.with(|s| drop(std::mem::take(&mut *s.borrow_mut())));
    }
}

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
        if let Some(e) = sockopt::take_error(self.src) {
            log::debug!(
                "sockmap: source of cookie {}: SO_ERROR {e}",
                self.src_cookie
            );
            return Err(DirEnd::SrcReset);
        }
        if let Some(e) = sockopt::take_error(self.dst) {
            log::debug!("sockmap: peer of cookie {}: SO_ERROR {e}", self.src_cookie);
            return Err(DirEnd::DstReset);
        }
        Ok(())
    }
}

/// Where a paused direction's userspace copy stands. The passed bytes wait in `src`'s queue;
/// userspace *peeks* them (a copy, the bytes stay queued and charged to `src`'s receive
/// memory, so its TCP window doesn't reopen), sends the copy on, and *consumes* what it sent
/// only once the program redirects again, or to make room when the queue is larger than one
/// peek. `consumed <= drained` always; equal, userspace owes nothing to anyone.
struct Copy {
    /// Bytes `[consumed, consumed + buf.len())` of the passed stream, as last peeked.
    buf: Vec<u8>,
    /// Passed bytes taken out of `src`'s queue.
    consumed: u64,
}

impl Drop for Copy {
    /// The buffer becomes the thread's spare, unless another drain's already is.
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        // `try_with`: a flow dropped while its thread ends finds no spare to keep it in.
        let _ = SPARE.try_with(|s| {
            let mut spare = s.borrow_mut();
            if buf.capacity() > spare.capacity() {
                *spare = buf;
            }
        });
    }
}

impl Copy {
    /// A copy with nothing in it, from `drained` on. Its buffer is the thread's spare: a
    /// paused direction peeks up to [`PEEK_MAX`] bytes per turn, and a buffer allocated per
    /// drain cost its pages again each time (the allocator returns freed pages at once, and a
    /// paused bulk stream drains tens of times a second: 276 `madvise` of 5–10 MiB in 5 s of
    /// one stream, each followed by as many page faults; 7 with the spare).
    fn new(drained: u64) -> Self {
        SPARE_USED.with(|u| u.set(true));
        Self {
            buf: SPARE.with(|s| std::mem::take(&mut *s.borrow_mut())),
            consumed: drained,
        }
    }

    /// Every byte userspace sent on was also taken out of `src`: it holds no half-done move.
    fn clean(&self, drained: u64) -> bool {
        self.consumed == drained
    }
}

/// Moves the bytes the program passed on `d.src` to `d.dst`, after every byte the program
/// redirected before them, and returns once none is left (or the flow failed). On return the
/// program may redirect again: `CREDIT` then says every passed byte was sent on, and allows
/// `backlog` more bytes beyond what it redirected.
///
/// The resume handshake (why the program can go back to redirecting under a sender that never
/// pauses): the program redirects an skb only if `CREDIT.drained == PEER.passed` when it
/// arrives, i.e. no skb was passed between userspace's last look at `src`'s queue and its
/// publishing `drained`. Reading the queue (`recv`) frees receive memory, which reopens the
/// TCP window; the sender's next skb then arrives before the publish, is passed, and the
/// direction never resumes (measured: 7.7 of 7.73 GB passed in one iperf3 stream). So userspace
/// copies with `MSG_PEEK`, which frees nothing: the window stays as it is (closing as passed
/// skbs fill the receive buffer, the sender stops at its right edge), and once every passed
/// byte is sent on, userspace publishes `drained`, takes the socket's lock (a one-byte peek) so
/// that every program run that read the old credit has counted its bytes, and only if none was
/// passed meanwhile consumes the sent bytes: the window reopens, and the sender's next skb is
/// redirected, behind every byte sent before. If some were passed, userspace goes on copying
/// without consuming, so the window keeps closing until the sender stops.
///
/// With `stop`, it counts itself parked there while it owes no byte (everything sent was also
/// consumed: at the top of each turn and while it sleeps), so that a flow that stays paused
/// can still be handed to another process (binary upgrade), which drains on from the same
/// counts.
pub(super) async fn drain_passed(d: &KernelDir<'_>, stop: Option<&Stop>) -> Result<(), DirEnd> {
    let mut copy = Copy::new(d.drained.get());
    let mut pause = POLL.0;
    let mut moved_at = Instant::now();
    let mut first = true;
    loop {
        if let Some(stop) = stop.filter(|_| copy.clean(d.drained.get())) {
            stop.park();
            stop.held().await;
            stop.leave();
        }
        let info = d.maps.peer_info(d.src_cookie).ok_or(DirEnd::Local)?;
        if info.paused == 0 && info.passed == d.drained.get() && copy.clean(d.drained.get()) {
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
        // Only once `dst` has taken every redirected byte and every byte we wrote may more of
        // ours follow: a byte written now lands behind them.
        let moved = if taken >= info.bytes + d.drained.get() {
            match step(d, &mut copy, info.bytes, info.passed)? {
                Step::Resumed => return Ok(()),
                Step::Moved => true,
                Step::Waiting => false,
            }
        } else {
            false
        };
        if moved {
            pause = POLL.0;
            moved_at = Instant::now();
            continue;
        }
        let park = stop.filter(|_| copy.clean(d.drained.get()));
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

/// What one [`step`] of a paused direction did.
enum Step {
    /// The program redirects again (or will, at the next skb): nothing is owed.
    Resumed,
    /// Bytes moved; go on at once.
    Moved,
    /// Nothing to do until `dst` takes more or more passed bytes reach `src`'s queue.
    Waiting,
}

/// One turn of the handshake in [`drain_passed`], at a moment when `dst` has taken every byte
/// redirected (`redirected`) and sent so far; `passed`: the program's count of passed bytes.
fn step(d: &KernelDir<'_>, copy: &mut Copy, redirected: u64, passed: u64) -> Result<Step, DirEnd> {
    let mut moved = false;
    let drained = d.drained.get();
    if drained < passed {
        let mut at = usize::try_from(drained - copy.consumed).unwrap_or(usize::MAX);
        if at >= copy.buf.len() {
            // The copy is all sent: peek again, from the head of the queue.
            let want = (passed - copy.consumed).min(PEEK_MAX);
            match recv(d.src, &mut copy.buf, want as usize, libc::MSG_PEEK) {
                Ok(_) => {}
                Err(e) if retry(&e) => {}
                Err(e) => {
                    log::debug!("sockmap: peek of cookie {}: {e}", d.src_cookie);
                    return Err(DirEnd::SrcReset);
                }
            }
            at = usize::try_from(drained - copy.consumed).unwrap_or(usize::MAX);
        }
        if at < copy.buf.len() {
            match send(d.dst, &copy.buf[at..]) {
                Ok(n) => {
                    d.drained.set(drained + n as u64);
                    DRAINED_TOTAL.fetch_add(n as u64, Ordering::Relaxed);
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => moved = true,
                Err(e) => {
                    log::debug!("sockmap: send of cookie {}'s bytes: {e}", d.src_cookie);
                    return Err(DirEnd::DstReset);
                }
            }
        }
    }
    let drained = d.drained.get();
    if drained == passed {
        // Every passed byte was sent on. Tell the program, and how far it may redirect once
        // it resumes (`dst` holds nothing of ours in flight now). Not before `dst`'s queue has
        // room for a full skb (or is empty): the copy just filled it, and a credit of nothing
        // would pause the direction again at its next skb.
        let credit = d.maps.credit(redirected, drained, d.dst);
        if credit.limit - redirected < MIN_BACKLOG && sockopt::outq(d.dst).unwrap_or(0) > 0 {
            return Ok(if moved { Step::Moved } else { Step::Waiting });
        }
        d.maps.set_credit(d.src_cookie, credit);
        // recvmsg takes the socket lock, which a verdict run holds for its whole run: once it
        // returns, every run that read the credit before the update above has counted its
        // bytes in `passed`, and every later run reads the new credit. A peek frees nothing.
        let mut probe = Vec::new();
        match recv(d.src, &mut probe, 1, libc::MSG_PEEK) {
            Ok(_) => {}
            Err(e) if retry(&e) => {}
            Err(_) => return Err(DirEnd::SrcReset),
        }
        let now = d.maps.peer_info(d.src_cookie).ok_or(DirEnd::Local)?;
        if now.passed == drained {
            // None passed meanwhile: a later skb is redirected (or passed with a wake, if the
            // new credit can't take it). Take the sent bytes out: the window reopens.
            consume(d.src, copy, drained)?;
            return Ok(Step::Resumed);
        }
        // Passed meanwhile: keep copying without consuming, the window keeps closing.
    } else if drained - copy.consumed >= PEEK_MAX {
        // The queue is larger than one peek: make room (the window reopens by as much).
        consume(d.src, copy, drained)?;
        moved = true;
    }
    Ok(if moved { Step::Moved } else { Step::Waiting })
}

/// Takes the bytes sent on (`consumed..drained`) out of `src`'s queue: they are at its head.
fn consume(src: BorrowedFd<'_>, copy: &mut Copy, drained: u64) -> Result<(), DirEnd> {
    copy.buf.clear();
    while copy.consumed < drained {
        let want = (drained - copy.consumed).min(DRAIN_CHUNK as u64) as usize;
        match recv(src, &mut copy.buf, want, 0) {
            Ok(n) if n > 0 => copy.consumed += n as u64,
            // Peeked a moment ago, so they are there: anything else is a broken socket.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            _ => return Err(DirEnd::SrcReset),
        }
    }
    // Empty (the next step peeks again), its room kept for that peek.
    copy.buf.clear();
    Ok(())
}

fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Trap 2: after `src`'s FIN, wait until the program has seen every byte that arrived before
/// it, the passed ones were sent on and `dst` has taken them all, then pass the FIN on as
/// [`Ends::fin`] says (`from_client`: the client's FIN; a `shutdown(dst, SHUT_WR)` unless the
/// other side's came first). Server -> client, after the client's FIN stopped the server side
/// ([`Ends::server_stopped`]), no FIN is awaited: it ends once `dst` has taken what the
/// program had redirected when this first looked (what lb holds for the client) and every
/// passed byte was sent on.
pub(super) async fn pass_fin_when_drained(
    d: &KernelDir<'_>,
    ends: &Ends,
    from_client: bool,
) -> DirEnd {
    let mut pause = POLL.0;
    let mut first = true;
    // Server -> client, stopped: the bytes the program had redirected when this saw the stop.
    let mut held = None;
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
            log::debug!(
                "sockmap: cookie {}: {} byte(s) lost",
                d.src_cookie,
                info.lost
            );
            // The program dropped bytes it could not clean of a repeat: no clean end.
            return DirEnd::SrcReset;
        }
        let (Ok(s), Ok(taken)) = (sockopt::tcp_counters(d.src), d.taken()) else {
            return DirEnd::Local;
        };
        let drained = d.drained.get();
        let stopped = !from_client && ends.server_stopped();
        // Woken by the stop (no FIN, whose +1 the count below takes for granted): whether the
        // server's FIN came all the same, its socket's state says (lb sent none on it).
        let fin = !stopped || s.state == sockopt::TCP_CLOSE_WAIT;
        // bytes_received counts the FIN as one byte, and the bytes the splice phase read.
        let seen = fin && d.src_read + info.bytes + info.passed + 1 >= s.bytes_received;
        if seen && info.passed == drained && taken >= info.bytes + drained {
            return ends.pass_on(from_client, d.dst);
        }
        if stopped {
            let upto = *held.get_or_insert(info.bytes);
            if info.passed == drained && taken >= upto + drained {
                // The flow ends: its close resets the server (see `PassFin::ResetServer`).
                return DirEnd::Fin;
            }
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

/// Reads up to `len` bytes into `buf` (replacing its contents), with `flags` beside
/// `MSG_DONTWAIT` (`MSG_PEEK`: a copy, the bytes stay queued). `Ok(0)` is *not* an end of
/// stream here: a socket whose FIN arrived reports 0 while passed bytes may still be on their
/// way into its queue; the byte counts decide when the direction is done.
fn recv(
    fd: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    len: usize,
    flags: libc::c_int,
) -> io::Result<usize> {
    buf.clear();
    buf.reserve(len);
    // SAFETY: `buf` has room for `len` bytes; the kernel writes at most that many.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            len,
            flags | libc::MSG_DONTWAIT,
        )
    };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    // SAFETY: the kernel initialised the first `n` bytes.
    unsafe { buf.set_len(n) };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spare_capacity() -> usize {
        SPARE.with(|s| s.borrow().capacity())
    }

    /// A drain's buffer goes to the next drain of the thread, not back to the allocator (which
    /// would return its pages and fault them in again), and is dropped once a tick passes
    /// without a drain.
    #[test]
    fn the_next_drain_takes_the_last_ones_buffer_until_a_quiet_tick() {
        let mut first = Copy::new(0);
        first.buf.reserve(1 << 20);
        first.buf.extend_from_slice(b"peeked");
        let at = first.buf.as_ptr();
        drop(first);
        let second = Copy::new(6);
        assert_eq!(second.buf.as_ptr(), at, "the same allocation");
        assert!(second.buf.is_empty() && second.buf.capacity() >= 1 << 20);
        assert_eq!(second.consumed, 6);
        drop(second);
        release_idle_spare();
        assert!(spare_capacity() >= 1 << 20, "a drain used it in this tick");
        release_idle_spare();
        assert_eq!(spare_capacity(), 0, "a tick without a drain frees it");
    }

    /// Two drains at once on a thread: the larger buffer is the one kept.
    #[test]
    fn of_two_drains_the_larger_buffer_stays() {
        let mut a = Copy::new(0);
        let mut b = Copy::new(0);
        a.buf.reserve(64 << 10);
        b.buf.reserve(1 << 20);
        drop(b);
        drop(a);
        assert!(spare_capacity() >= 1 << 20);
    }
}
