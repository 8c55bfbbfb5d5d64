//! One thread's life: its runtime, its data plane, and the accept loops its plans ask for.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use super::accept::{accept_loop, Listener};
use super::bind::ThreadInbox;
use super::ctx::ThreadCtx;

use crate::dataplane::sockmap::{MapIds, ThreadMaps};
use crate::dataplane::{sockopt, Dataplane};

/// Which data plane the threads run.
#[derive(Clone, Copy, Debug)]
pub enum PlaneSetup {
    Splice,
    /// The maps, and how long a flow runs on splice before it enters them.
    Sockmap(MapIds, Duration),
}

/// Runs one thread forever: its data plane, its flows, and the accept loops that the plans it
/// receives ask for (returns only if the runtime cannot start).
pub fn run_thread(
    inbox: ThreadInbox,
    plane: PlaneSetup,
    thread: usize,
    threads: usize,
) -> io::Result<()> {
    let ThreadInbox {
        mut plans,
        mut flows,
    } = inbox;
    // One loop per thread, the thread's ring on its reactor.
    let rt = crate::ring::thread_runtime()?;
    rt.block_on(async move {
        match crate::ring::install() {
            Ok(reap) => {
                tokio::task::spawn_local(reap);
            }
            // The flows of this thread take the async copy path (epoll) instead.
            Err(e) => log::warn!("thread {thread}: no io_uring ({e}): flows copy through epoll"),
        }
        let dataplane = match plane {
            PlaneSetup::Splice => Dataplane::Splice,
            PlaneSetup::Sockmap(ids, hand_over_after) => {
                let maps = ThreadMaps::open(ids, thread, threads, hand_over_after)?;
                tokio::task::spawn_local(maps.watcher().clone().run());
                Dataplane::Sockmap(maps)
            }
        };
        tokio::task::spawn_local(super::trim::run());
        // Map handles are open: privileges may be dropped now (waits for that when planned).
        crate::privileges::thread_started();
        let ctx = Rc::new(ThreadCtx {
            thread,
            dataplane,
            binds: RefCell::new(foldhash::HashMap::default()),
            flows: RefCell::new(slab::Slab::new()),
            next_id: Cell::new(1),
        });
        // The inbox is a task of its own: the future `block_on` drives is polled at every wake
        // of the thread, whatever woke it; a join handle costs less to poll than two channels.
        let inbox = tokio::task::spawn_local(async move {
            loop {
                tokio::select! {
                    plan = plans.recv() => {
                        let Some((plan, ack)) = plan else { break };
                        pin(thread, &plan.gen.config.global.cpu_map);
                        for (addr, listener) in ctx.apply(*plan) {
                            serve_listener(addr, listener, &ctx);
                        }
                        let _ = ack.send(());
                    }
                    cmd = flows.recv() => {
                        let Some(cmd) = cmd else { break };
                        ctx.command(cmd);
                    }
                }
            }
        });
        if let Err(e) = inbox.await {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        Ok(())
    })
}

thread_local! {
    /// The CPUs this thread started with (what it gets back when a reload removes its
    /// `cpu-map`), and the ones it is pinned to now.
    static CPUS: RefCell<Option<(Vec<usize>, Vec<usize>)>> = const { RefCell::new(None) };
}

/// `cpu-map`: pins this thread (`thread`, 0-based: HAProxy's thread `thread + 1`) to the CPUs
/// `maps` give it, at start and at each reload; a thread no line names runs on the CPUs it
/// started with. Logged when it changes; a refusal (a CPU the machine does not have) is
/// logged and the thread keeps its CPUs.
fn pin(thread: usize, maps: &[crate::config::cpu_map::CpuMap]) {
    use crate::config::cpu_map::{cpus_of, current_cpus, pin_current_thread};
    CPUS.with_borrow_mut(|state| {
        if state.is_none() {
            match current_cpus() {
                Ok(c) => *state = Some((c.clone(), c)),
                Err(e) => {
                    log::warn!("thread {}: cpu-map: cannot read its CPUs: {e}", thread + 1);
                    return;
                }
            }
        }
        let Some((start, now)) = state.as_mut() else {
            return;
        };
        let want = cpus_of(maps, thread + 1).map_or_else(|| start.clone(), <[usize]>::to_vec);
        if want == *now {
            return;
        }
        match pin_current_thread(&want) {
            Ok(()) => {
                log::info!(
                    "thread {}: cpu-map: runs on CPUs {}",
                    thread + 1,
                    cpu_list(&want)
                );
                *now = want;
            }
            Err(e) => log::warn!(
                "thread {}: cpu-map: cannot pin it to CPUs {}: {e}; it keeps CPUs {}",
                thread + 1,
                cpu_list(&want),
                cpu_list(now)
            ),
        }
    });
}

/// `0-3,8`: a CPU list as Linux writes one.
fn cpu_list(cpus: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    out.join(",")
}

/// Starts the accept loop of a newly bound address on this thread. The socket is set
/// non-blocking (for `accept4` on the reactor, or the ring's accept) and `TCP_NODELAY`, which
/// every socket accepted from it inherits: one `setsockopt` per listener instead of one per
/// connection. Set here, not at bind time, so that a socket handed over by another process
/// gets it too.
fn serve_listener(addr: SocketAddr, listener: TcpListener, ctx: &Rc<ThreadCtx>) {
    let ready = listener
        .set_nonblocking(true)
        .and_then(|()| sockopt::set_nodelay(listener.as_fd()))
        .and_then(|()| Listener::new(OwnedFd::from(listener)));
    match ready {
        Ok(listener) => {
            tokio::task::spawn_local(accept_loop(addr, listener, ctx.clone()));
        }
        Err(e) => log::error!("cannot accept on {addr}: {e}"),
    }
}
