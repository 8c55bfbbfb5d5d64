//! One flow on the in-kernel plane, from userspace: when it enters the maps (after a splice
//! phase, or at once), then watching its FIN/RST, idle time and the program's wakes until it
//! ends or a binary upgrade takes it. The kernel behaviour each step relies on is in the
//! module header of [`super`].

use std::cell::Cell;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

use super::super::splice::{pump, Spliced};
use super::super::{
    drive_or_hand_over, sockopt, DirEnd, Driven, Ends, Flow, FlowEnd, FlowReport, FlowTimeouts,
    HandOverAt, KillSwitch, Stop,
};
use super::drain::{drain_passed, pass_fin_when_drained, KernelDir};
use super::policy::{kernel_way, Verdict};
use super::watch::{Registration, WOKEN};
use super::{InsertStep, Inserted, ThreadMaps, REPEATED_TOTAL};

/// `CLOCK_MONOTONIC` in ns, the clock of `bpf_ktime_get_ns()`.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Converts a `bpf_ktime_get_ns()` stamp into an `Instant` (both are `CLOCK_MONOTONIC`).
fn instant_of(ns: u64) -> Instant {
    let now = Instant::now();
    let age = monotonic_ns().saturating_sub(ns);
    now.checked_sub(Duration::from_nanos(age)).unwrap_or(now)
}

/// One direction carried by the kernel (`from_client`: client -> server): wait for the
/// source's FIN or RST, move on what the program passes whenever it wakes us, and finish with
/// the FIN (passed on as [`Ends::fin`] says); server -> client also finishes when the client's
/// FIN stopped the server side ([`Ends::server_stopped`], which wakes it: see
/// [`Ends::stop_server`]).
///
/// While it waits for an event it holds none of the flow's bytes: it counts itself parked on
/// `stop` there, so that a binary upgrade can hand the flow over in place ([`adopt`]).
async fn kernel_dir(
    d: &KernelDir<'_>,
    reg: &Registration,
    (ends, from_client): (&Ends, bool),
    stop: &Stop,
) -> DirEnd {
    let ev = loop {
        stop.park();
        stop.held().await;
        let ev = reg.event().await;
        stop.leave();
        if ev & !WOKEN != 0 {
            break ev;
        }
        // Boxed: its state (a timer, a buffer) is needed only while paused; unboxed it would
        // sit in every idle flow's future.
        if let Err(end) = Box::pin(drain_passed(d, Some(stop))).await {
            return end;
        }
    };
    let err = sockopt::take_error(d.src);
    if ev & libc::EPOLLERR as u32 != 0 || err.is_some() {
        log::debug!(
            "sockmap: source socket of cookie {} failed (epoll events {ev:#x}, SO_ERROR {err:?})",
            d.src_cookie
        );
        return DirEnd::SrcReset;
    }
    // Boxed, as above.
    Box::pin(pass_fin_when_drained(d, ends, from_client)).await
}

/// Forwards a pair: one direction in the kernel where it can ([`kernel_way`] chooses which), the
/// other on splice, and the whole flow on splice where the kernel can't take it (see the module
/// docs).
///
/// A flow starts on splice and moves into the maps once it has lived the thread's
/// `hand_over_after` (at the first moment after that when no byte is in a pipe): short
/// request/answer connections end before and never pay the kernel's psock setup and teardown,
/// which costs more than splicing a few bytes. A flow that half-closed first stays on splice.
/// With `--dataplane auto`, [`policy::enter_maps`] decides at that point whether it moves at
/// all; one it leaves out stays on splice to its end.
pub async fn forward(
    maps: &Rc<ThreadMaps>,
    client: OwnedFd,
    server: OwnedFd,
    t: FlowTimeouts,
    kill: &KillSwitch,
) -> FlowReport {
    forward_after(maps, client, server, t, kill, ((0, 0), Instant::now())).await
}

/// [`forward`] for a pair lb already read `pre` bytes from (client, server) before handing it
/// over (the rules' inspection of the first bytes, a PROXY header): the FIN accounting of
/// trap 2 compares what the kernel redirected with everything each socket received, so it
/// must know them. Such a pair always starts on splice, even with a zero `hand_over_after`:
/// that read may have stopped inside an skb, and a socket entering the map with a partly read
/// skb has the whole skb redirected, the part already read a second time; the splice phase
/// hands over only with each source's queue read to the end. `started`: when the flow began
/// (before a copy phase on the ring); it enters the maps `hand_over_after` from then.
pub async fn forward_after(
    maps: &Rc<ThreadMaps>,
    client: OwnedFd,
    server: OwnedFd,
    t: FlowTimeouts,
    kill: &KillSwitch,
    (pre, started): ((u64, u64), Instant),
) -> FlowReport {
    // A TLS side (a bind's client, a server with `ssl`) is a relay's unix socket: the maps are
    // TCP's, the flow stays on splice.
    if !sockopt::is_inet(client.as_fd()) || !sockopt::is_inet(server.as_fd()) {
        return super::super::splice::forward(client, server, t, kill, pre).await;
    }
    if maps.at_once() && pre == (0, 0) {
        if maps.evidence.decide(maps.rule, None) == Verdict::Enter {
            return forward_with_hook(maps, client, server, t, kill, &mut |_| {}).await;
        }
        return super::super::splice::forward(client, server, t, kill, pre).await;
    }
    let at = started + maps.hand_over_after;
    // Not boxed: the two phases share the flow's future (the larger one sets its size), where
    // a boxed splice phase would leave its freed block behind in every long-lived flow's RSS.
    let spliced = super::super::splice::forward_until(client, server, t, kill, Some(at), pre).await;
    let h = match spliced {
        Spliced::Done(report) => return report,
        Spliced::HandOver(h) => h,
    };
    let read = (h.bytes_in + pre.0, h.bytes_out + pre.1);
    // What the flow carried before the insert, the ring's and the rules' bytes included (a
    // pair that is here only because lb read from it first had no window to judge by).
    let moved = (!maps.hand_over_after.is_zero()).then_some(read.0 + read.1);
    let mut report = if maps.evidence.decide(maps.rule, moved) == Verdict::Enter {
        in_kernel(
            maps,
            h.client,
            h.server,
            t,
            kill,
            (h.last, read),
            &mut |_| {},
        )
        .await
    } else {
        super::super::splice::forward(h.client, h.server, t, kill, read).await
    };
    report.bytes_in += h.bytes_in;
    report.bytes_out += h.bytes_out;
    report
}

/// Forwards a pair in the kernel from the start, with a hook called between the insert steps
/// (tests use it to send data at the worst moment).
pub async fn forward_with_hook(
    maps: &Rc<ThreadMaps>,
    client: OwnedFd,
    server: OwnedFd,
    t: FlowTimeouts,
    kill: &KillSwitch,
    hook: &mut dyn FnMut(InsertStep),
) -> FlowReport {
    in_kernel(
        maps,
        client,
        server,
        t,
        kill,
        (Instant::now(), (0, 0)),
        hook,
    )
    .await
}

/// The kernel phase of a flow. `(since, read)`: its last activity so far, and the bytes read
/// from the client and from the server before (by a splice phase).
pub(in crate::dataplane) fn in_kernel<'a>(
    maps: &'a Rc<ThreadMaps>,
    client: OwnedFd,
    server: OwnedFd,
    t: FlowTimeouts,
    kill: &'a KillSwitch,
    (since, read): (Instant, (u64, u64)),
    hook: &mut dyn FnMut(InsertStep),
) -> impl std::future::Future<Output = FlowReport> + 'a {
    // Not an `async fn`: its arguments would stay in every kernel flow's future beside
    // `serve_inserted`'s (248 bytes); the insert is synchronous, so only the serving awaits.
    let way = maps.forced_way.unwrap_or_else(|| kernel_way(read));
    let ins = maps.insert(client.as_fd(), server.as_fd(), read, way, hook);
    let resume = Resume {
        since,
        drained: (0, 0),
        offerable: true,
    };
    serve_inserted(maps, ins.ok_or(read), (client, server), t, kill, resume)
}

/// Where [`serve_inserted`] takes a flow up: its last activity so far, the passed bytes
/// userspace already sent on in each direction, and whether it may be handed to another
/// process (only a flow in this process's own maps: [`adopt`]).
pub(super) struct Resume {
    pub since: Instant,
    pub drained: (u64, u64),
    pub offerable: bool,
}

/// Serves a flow that `maps` holds as `ins` says, to its end or until a binary upgrade takes
/// it ([`FlowEnd::HandedOff`]: the sockets and map entries are then the other process's).
/// `Err(read)`: nothing could enter the maps; the whole flow goes to splice, `read` bytes read
/// from each socket before.
pub(super) async fn serve_inserted(
    maps: &Rc<ThreadMaps>,
    ins: Result<Inserted, (u64, u64)>,
    (client, server): (OwnedFd, OwnedFd),
    t: FlowTimeouts,
    kill: &KillSwitch,
    resume: Resume,
) -> FlowReport {
    let ins = match ins {
        Ok(ins) => ins,
        // Boxed: the whole-flow fallback; unboxed, its state would widen every flow's future.
        Err(read) => {
            return Box::pin(super::super::splice::forward(client, server, t, kill, read)).await;
        }
    };
    let since = resume.since;
    let cfd = client.as_raw_fd();
    let sfd = server.as_raw_fd();
    // A flow with a splice direction registers its sockets with tokio's reactor, the spliced
    // direction's source for reading and its destination for writing only: that destination
    // is the kernel direction's source, and `sk_psock_verdict_data_ready` signals EPOLLIN
    // after every skb the program handles, which a read interest would wake this thread for.
    // (Both directions in the kernel: only a flow adopted from an older lb.)
    let fds = if ins.up_kernel && ins.down_kernel {
        Fds::Plain(client, server)
    } else {
        use tokio::io::Interest;
        let (client_for, server_for) = if ins.down_kernel {
            (Interest::READABLE, Interest::WRITABLE)
        } else {
            (Interest::WRITABLE, Interest::READABLE)
        };
        let (Ok(c), Ok(s)) = (
            super::super::async_fd_for(client, client_for),
            super::super::async_fd_for(server, server_for),
        ) else {
            maps.remove(&ins);
            return FlowReport::local_error();
        };
        Fds::Async(c, s)
    };
    // SAFETY: `fds` owns both sockets and outlives every use of these borrowed fds below.
    let (cfd, sfd) = unsafe { (BorrowedFd::borrow_raw(cfd), BorrowedFd::borrow_raw(sfd)) };
    let (Ok(creg), Ok(sreg)) = (
        maps.watcher.register(cfd, ins.client_cookie),
        maps.watcher.register(sfd, ins.server_cookie),
    ) else {
        maps.remove(&ins);
        return FlowReport::local_error();
    };
    // Passed bytes userspace sent on, client -> server and server -> client.
    let drained_in = Cell::new(resume.drained.0);
    let drained_out = Cell::new(resume.drained.1);
    let up_dir = KernelDir {
        maps,
        src: cfd,
        dst: sfd,
        src_cookie: ins.client_cookie,
        src_read: ins.client_read,
        dst_base: ins.server_base,
        drained: &drained_in,
    };
    let down_dir = KernelDir {
        maps,
        src: sfd,
        dst: cfd,
        src_cookie: ins.server_cookie,
        src_read: ins.server_read,
        dst_base: ins.client_base,
        drained: &drained_out,
    };

    let started = since;
    let splice_last = Cell::new(started);
    let splice_in = Cell::new(0u64);
    let splice_out = Cell::new(0u64);
    let ends = Ends::new(&t);
    // Both directions (the kernel's and the spliced one) park here for a binary upgrade.
    let stop = Stop::default();
    // The spliced direction parks on `stop` too, whenever its pump holds no byte.
    let offerable = resume.offerable;
    let mut handed = false;
    let end = {
        // Pinned where they are built: moved into `drive_or_hand_over`, each would take room in
        // the flow's future twice.
        let mut up = pin!(async {
            if ins.up_kernel {
                kernel_dir(&up_dir, &creg, (&ends, true), &stop).await
            } else {
                match &fds {
                    // Boxed: a spliced direction is the rare fallback; its state would otherwise
                    // widen every in-kernel flow's future.
                    Fds::Async(c, s) => {
                        Box::pin(pump(
                            c,
                            s,
                            &splice_in,
                            &splice_last,
                            &ends,
                            true,
                            &stop,
                            true,
                        ))
                        .await
                    }
                    Fds::Plain(..) => DirEnd::Local,
                }
            }
        });
        let mut down = pin!(async {
            if ins.down_kernel {
                kernel_dir(&down_dir, &sreg, (&ends, false), &stop).await
            } else {
                match &fds {
                    Fds::Async(c, s) => {
                        Box::pin(pump(
                            s,
                            c,
                            &splice_out,
                            &splice_last,
                            &ends,
                            false,
                            &stop,
                            true,
                        ))
                        .await
                    }
                    Fds::Plain(..) => DirEnd::Local,
                }
            }
        });
        let last_activity = || {
            let stamp = |on: bool, cookie| {
                if on {
                    maps.peer_info(cookie)
                        .filter(|p| p.last_ns != 0)
                        .map(|p| instant_of(p.last_ns))
                } else {
                    None
                }
            };
            [
                Some(splice_last.get()),
                stamp(ins.up_kernel, ins.client_cookie),
                stamp(ins.down_kernel, ins.server_cookie),
            ]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(started)
        };
        let flow = Flow {
            t: &t,
            since: started,
            last_activity: &last_activity,
            ends: &ends,
            kill,
        };
        loop {
            let hand_over = offerable.then_some(HandOverAt {
                at: None,
                stop: &stop,
            });
            match drive_or_hand_over(up.as_mut(), down.as_mut(), &flow, hand_over).await {
                Driven::Ended(end) => break end,
                Driven::HandOver => {}
            }
            // Both directions wait for an event: userspace holds none of the flow's bytes.
            if let Some(ask) = kill.take_hand_off() {
                let k = super::adopt::KernelFlow::of(
                    maps,
                    &ins,
                    (drained_in.get(), drained_out.get()),
                    (splice_in.get(), splice_out.get()),
                    last_activity(),
                );
                // Boxed: only a flow being handed off needs its state.
                if Box::pin(super::adopt::offer(ask, (cfd, sfd), k)).await {
                    handed = true;
                    break FlowEnd::HandedOff;
                }
            }
            stop.release();
        }
    };

    // Redirected by the program, plus passed and sent on by userspace.
    let kernel_bytes = |on: bool, cookie, drained: &Cell<u64>| {
        if !on {
            return 0;
        }
        let info = maps.peer_info(cookie).unwrap_or_default();
        #[cfg(test)]
        super::record_ended(cookie, info);
        if info.repeated != 0 {
            log::debug!(
                "sockmap: {} bytes of TCP retransmissions cut as repeats",
                info.repeated
            );
            REPEATED_TOTAL.fetch_add(info.repeated, Ordering::Relaxed);
        }
        info.bytes + drained.get()
    };
    let report = FlowReport {
        bytes_in: splice_in.get() + kernel_bytes(ins.up_kernel, ins.client_cookie, &drained_in),
        bytes_out: splice_out.get()
            + kernel_bytes(ins.down_kernel, ins.server_cookie, &drained_out),
        end,
        spliced_in_kernel: ins.up_kernel || ins.down_kernel,
    };
    if handed {
        // The sockets and their map entries live on in the other process: only these
        // descriptors close (after leaving the epoll set).
        drop((creg, sreg));
        drop(fds);
        return report;
    }
    super::super::close_flow(end, ends.server_done(), cfd, sfd);
    // Closing the sockets removes them from the epoll set and from both sockmaps.
    creg.closing();
    sreg.closing();
    drop(fds);
    maps.remove_closed(&ins);
    report
}

/// The two sockets of a flow: plain when the kernel carries both directions, registered with
/// the reactor when a direction is spliced.
enum Fds {
    #[expect(
        dead_code,
        reason = "held only so that the sockets close when the flow ends"
    )]
    Plain(OwnedFd, OwnedFd),
    Async(AsyncFd<OwnedFd>, AsyncFd<OwnedFd>),
}
