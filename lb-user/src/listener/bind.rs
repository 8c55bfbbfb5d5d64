//! Listening sockets: one `SO_REUSEPORT` socket per thread and bound address, kept by the main
//! thread across reloads, and the plans that tell each thread what to serve.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;

use crate::config::{BindOptions, Config};
use crate::dataplane::sockopt;
use crate::flows::FlowCommand;
use crate::generation::Generation;

/// What one thread serves: for each bound address, its frontend in `gen`'s config, and a
/// listening socket when the address is new to this thread.
pub struct ThreadPlan {
    pub gen: Arc<Generation>,
    pub binds: Vec<BindPlan>,
    /// Addresses no longer in the configuration: their accept loops stop.
    pub removed: Vec<SocketAddr>,
}

impl std::fmt::Debug for ThreadPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPlan")
            .field("generation", &self.gen.number)
            .field("binds", &self.binds)
            .field("removed", &self.removed)
            .finish()
    }
}

/// One address of a [`ThreadPlan`].
#[derive(Debug)]
pub struct BindPlan {
    pub addr: SocketAddr,
    /// Index into `gen.config.frontends`.
    pub frontend: usize,
    /// This thread's socket for a newly bound address; `None` = keep the running loop.
    pub listener: Option<TcpListener>,
}

/// A plan for a thread, and the acknowledgement it sends once applied.
pub(super) type PlanMsg = (Box<ThreadPlan>, oneshot::Sender<()>);

/// Creates a bound, listening socket with `SO_REUSEPORT` (one per thread and bind: the kernel
/// spreads connections across them).
pub fn bind_listener(addr: SocketAddr, opts: &BindOptions) -> io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    let backlog = opts.listen_backlog();
    sockopt::apply_bind_options(&sock, addr, opts, backlog)?;
    sock.bind(&addr.into())?;
    sock.listen(backlog)?;
    sockopt::apply_listen_options(sock.as_fd(), addr, opts);
    Ok(sock.into())
}

/// The listening sockets of every bound address, one per thread (an `SO_REUSEPORT` group),
/// and the channels that hand plans to the threads. The main thread keeps these; threads get
/// duplicates, so an address that survives a reload keeps its socket and its backlog, and
/// shutting one down here stops every thread's loop.
#[derive(Debug)]
pub struct Listeners {
    by_addr: HashMap<SocketAddr, Vec<TcpListener>>,
    threads: Vec<UnboundedSender<PlanMsg>>,
}

/// What a thread receives: plans from the main thread, commands about its flows from anyone.
pub struct ThreadInbox {
    pub(super) plans: UnboundedReceiver<PlanMsg>,
    pub(super) flows: UnboundedReceiver<FlowCommand>,
}

impl Listeners {
    /// No address bound yet, and one inbox per thread (give inbox `i` to thread `i`), made of
    /// the plan channel and the thread's flow channel (`flows[i]`).
    pub fn new(flows: Vec<UnboundedReceiver<FlowCommand>>) -> (Self, Vec<ThreadInbox>) {
        let mut threads = Vec::new();
        let mut inboxes = Vec::new();
        for flows in flows {
            let (tx, plans) = unbounded_channel();
            threads.push(tx);
            inboxes.push(ThreadInbox { plans, flows });
        }
        (
            Self {
                by_addr: HashMap::new(),
                threads,
            },
            inboxes,
        )
    }

    /// Binds, once per thread each, every address of `config` not bound yet, and returns
    /// them. On error nothing new stays bound, and the message names the frontend, the
    /// address and the line.
    pub fn bind_new(&mut self, config: &Config) -> Result<Vec<SocketAddr>, String> {
        let threads = self.threads.len();
        let mut added: Vec<SocketAddr> = Vec::new();
        for fe in &config.frontends {
            for bind in &fe.binds {
                if self.by_addr.contains_key(&bind.addr) {
                    continue;
                }
                let bound: io::Result<Vec<TcpListener>> =
                    match crate::upgrade::take(bind.addr, &bind.opts, threads) {
                        Some(inherited) => Ok(inherited),
                        None => (0..threads)
                            .map(|_| bind_listener(bind.addr, &bind.opts))
                            .collect(),
                    };
                match bound {
                    Ok(socks) => {
                        crate::upgrade::expose(bind.addr, &bind.opts, &socks);
                        super::spread::register(bind.addr, &socks);
                        super::frontends::record(bind.addr, &socks, bind.opts.listen_backlog());
                        self.by_addr.insert(bind.addr, socks);
                        added.push(bind.addr);
                    }
                    Err(e) => {
                        self.unbind(&added);
                        return Err(format!(
                            "{}: frontend '{}': cannot bind {}: {e}",
                            bind.loc, fe.name, bind.addr
                        ));
                    }
                }
            }
        }
        Ok(added)
    }

    /// Closes addresses [`Self::bind_new`] bound, before any thread serves them (a reload that
    /// fails after binding undoes its binds this way).
    pub fn unbind(&mut self, addrs: &[SocketAddr]) {
        for a in addrs {
            self.by_addr.remove(a);
            crate::upgrade::withdraw(a);
            super::spread::unregister(a);
            super::frontends::forget(a);
        }
    }

    /// The plans that make every thread serve `gen`'s configuration: running loops switch
    /// to it, `new` addresses get a socket, addresses not in the configuration are removed.
    pub fn plans(&self, gen: &Arc<Generation>, new: &[SocketAddr]) -> io::Result<Vec<ThreadPlan>> {
        let wanted: HashMap<SocketAddr, usize> = gen
            .config
            .frontends
            .iter()
            .enumerate()
            .flat_map(|(fi, fe)| fe.binds.iter().map(move |b| (b.addr, fi)))
            .collect();
        let removed: Vec<SocketAddr> = self
            .by_addr
            .keys()
            .filter(|a| !wanted.contains_key(a))
            .copied()
            .collect();
        (0..self.threads.len())
            .map(|t| {
                let binds = wanted
                    .iter()
                    .map(|(addr, fi)| {
                        let listener = if new.contains(addr) {
                            Some(self.by_addr[addr][t].try_clone()?)
                        } else {
                            None
                        };
                        Ok(BindPlan {
                            addr: *addr,
                            frontend: *fi,
                            listener,
                        })
                    })
                    .collect::<io::Result<Vec<_>>>()?;
                Ok(ThreadPlan {
                    gen: gen.clone(),
                    binds,
                    removed: removed.clone(),
                })
            })
            .collect()
    }

    /// Sends each thread its plan and waits until all have applied it: from then on every
    /// new connection is served by the plans' generation. First the listening sockets take
    /// the generation's `option nolinger` ([`Listeners::set_lingering`]) and the addresses of
    /// its frontends listen, those `disable|shutdown frontend` had stopped too
    /// ([`super::frontends::listen_ready`]); last, accept loops waiting at a `maxconn` or for
    /// their frontend are woken to look at the new generation.
    pub async fn switch(&self, plans: Vec<ThreadPlan>) {
        let Some(gen) = plans.first().map(|p| p.gen.clone()) else {
            return;
        };
        self.set_lingering(&gen.config);
        super::frontends::listen_ready(&gen);
        let mut acks = Vec::new();
        for (t, plan) in self.threads.iter().zip(plans) {
            let (tx, rx) = oneshot::channel();
            if t.send((Box::new(plan), tx)).is_ok() {
                acks.push(rx);
            }
        }
        for rx in acks {
            let _ = rx.await;
        }
        // Accept loops waiting at a `maxconn` look again, at the new generation's limits, and
        // those waiting for their frontend at its state there.
        gen.process.conn_released.release();
        gen.process.fe_state_changed.release();
    }

    /// Sets, or clears, `SO_LINGER` 0 on every listening socket of `config`'s frontends as
    /// their `option nolinger` says (HAProxy does it at each bind, an inherited socket's too):
    /// at start, and at each reload for the sockets it keeps (threads hold duplicates of these,
    /// the same sockets). Connections accepted from then on inherit it; accepted ones keep
    /// theirs. A socket that refuses gets a warning, and keeps what it had.
    fn set_lingering(&self, config: &Config) {
        for fe in &config.frontends {
            for bind in &fe.binds {
                for sock in self.by_addr.get(&bind.addr).into_iter().flatten() {
                    if let Err(e) = sockopt::set_listener_linger(sock.as_fd(), fe.nolinger) {
                        log::warn!(
                            "{}: frontend '{}': cannot {} SO_LINGER on the listener: {e}",
                            bind.addr,
                            fe.name,
                            if fe.nolinger { "set" } else { "clear" }
                        );
                    }
                }
            }
        }
    }

    /// Closes the sockets of addresses not in `config` (after the threads were told): pending
    /// accepts fail, the loops see their address removed and stop; queued clients get a reset.
    pub fn close_removed(&mut self, config: &Config) {
        let wanted: Vec<SocketAddr> = config
            .frontends
            .iter()
            .flat_map(|fe| fe.binds.iter().map(|b| b.addr))
            .collect();
        self.by_addr.retain(|addr, socks| {
            let keep = wanted.contains(addr);
            if !keep {
                shutdown_listeners(socks);
                crate::upgrade::withdraw(addr);
                super::spread::unregister(addr);
                super::frontends::forget(addr);
            }
            keep
        });
    }

    /// Stops listening on every address at once (process stop). Needed because an `io_uring`
    /// accept in flight holds its socket open until the ring is torn down, which the kernel
    /// finishes after the process has exited: without this the port accepts for a moment more.
    pub fn close_all(&mut self) {
        for socks in self.by_addr.values() {
            shutdown_listeners(socks);
        }
        self.by_addr.clear();
        super::frontends::forget_all();
    }
}

pub(super) fn shutdown_listeners(socks: &[TcpListener]) {
    // Handed to a new process: the sockets are its too; closing ours is all this one may do.
    if crate::upgrade::handed_over() {
        return;
    }
    for s in socks {
        // SAFETY: shutdown on a listening socket we own; it wakes pending accepts.
        unsafe { libc::shutdown(s.as_raw_fd(), libc::SHUT_RDWR) };
    }
}
