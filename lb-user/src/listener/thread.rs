//! One thread's life: its runtime, its data plane, and the accept loops its plans ask for.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use super::accept::accept_loop;
use super::bind::ThreadInbox;
use super::ctx::ThreadCtx;

use crate::dataplane::sockmap::{MapIds, ThreadMaps};
use crate::dataplane::Dataplane;

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
    tokio_uring::start(async move {
        let dataplane = match plane {
            PlaneSetup::Splice => Dataplane::Splice,
            PlaneSetup::Sockmap(ids, hand_over_after) => {
                let maps = ThreadMaps::open(ids, thread, threads, hand_over_after)?;
                tokio_uring::spawn(maps.watcher().clone().run());
                Dataplane::Sockmap(maps)
            }
        };
        // Map handles are open: privileges may be dropped now (waits for that when planned).
        crate::privileges::thread_started();
        let ctx = Rc::new(ThreadCtx {
            thread,
            dataplane,
            binds: RefCell::new(HashMap::new()),
            flows: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
        });
        loop {
            tokio::select! {
                plan = plans.recv() => {
                    let Some((plan, ack)) = plan else { break };
                    for (addr, listener) in ctx.apply(*plan) {
                        let listener = listener.set_nonblocking(true).and_then(|()| {
                            // SAFETY: the AsyncFd owns the listener: the fd stays open and
                            // refers to the same socket until the AsyncFd is dropped.
                            unsafe { AsyncFd::register(listener) }.map_err(io::Error::from)
                        });
                        match listener {
                            Ok(l) => drop(tokio_uring::spawn(accept_loop(addr, l, ctx.clone()))),
                            Err(e) => log::error!("thread {thread}: cannot accept on {addr}: {e}"),
                        }
                    }
                    let _ = ack.send(());
                }
                cmd = flows.recv() => {
                    let Some(cmd) = cmd else { break };
                    ctx.command(cmd);
                }
            }
        }
        Ok(())
    })
}
