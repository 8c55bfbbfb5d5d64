//! What wakes a thread's in-kernel flows: FIN/RST of their sockets (a per-thread epoll set that
//! asks for `EPOLLRDHUP` only, so the data the kernel forwards never wakes this process), and
//! the verdict program's wakes (the `WAKES` ring, read by one dispatcher thread per process and
//! routed to the thread that owns the flow by its map slot).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap as StdHashMap};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Mutex;

use aya::maps::{Array, MapData, RingBuf};
use lb_common::Wake;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::Notify;

/// What the dispatcher tells a thread.
#[derive(Clone, Copy, Debug)]
pub(super) enum Routed {
    /// The direction whose source has this cookie needs userspace.
    Wake(u64),
    /// Some wakes were lost (the ring was full): every direction looks for itself.
    All,
}

/// Slot range start -> (range end, the owning thread's channel). Written when a thread opens
/// its maps, read by the dispatcher; never touched on the forwarding path.
static ROUTES: Mutex<BTreeMap<u32, (u32, UnboundedSender<Routed>)>> = Mutex::new(BTreeMap::new());

/// Registers a thread's slot range `start..end` for wakes; returns what it receives them on.
/// A later range with the same start replaces the earlier one.
fn route(start: u32, end: u32) -> UnboundedReceiver<Routed> {
    let (tx, rx) = unbounded_channel();
    ROUTES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(start, (end, tx));
    rx
}

fn send_to_owner(slot: u32, msg: Routed) {
    let routes = ROUTES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, (end, tx))) = routes.range(..=slot).next_back() {
        if slot < *end {
            let _ = tx.send(msg);
        }
    }
}

pub(super) fn send_to_all(msg: Routed) {
    let routes = ROUTES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (_, tx) in routes.values() {
        let _ = tx.send(msg);
    }
}

/// Reads the program's wakes for the whole process and hands each to the thread that owns its
/// flow. Runs on a thread of its own, for the life of the process: the ring has one consumer.
pub(super) fn spawn_dispatcher(
    mut ring: RingBuf<MapData>,
    lost: Array<MapData, u64>,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("lb-wakes".into())
        .spawn(move || {
            // Spawned before lb blocks its signals (main's `block_signals`): with them open
            // here, a SIGHUP or SIGTERM could land on this thread and kill the process.
            let _ = nix::sys::signal::SigSet::all().thread_block();
            let mut lost_seen = 0u64;
            loop {
                let mut pfd = libc::pollfd {
                    fd: ring.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd; -1 = wait without a timeout.
                let rc = unsafe { libc::poll(&raw mut pfd, 1, -1) };
                if rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                    log::error!(
                        "sockmap wake ring: poll failed, in-kernel flows that pause will stall: {}",
                        io::Error::last_os_error()
                    );
                    return;
                }
                while let Some(item) = ring.next() {
                    if item.len() >= std::mem::size_of::<Wake>() {
                        // SAFETY: the record holds at least one Wake, written by the program;
                        // read unaligned, as the ring gives no alignment promise to us.
                        let wake: Wake = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
                        send_to_owner(wake.slot, Routed::Wake(wake.cookie));
                    }
                }
                let now = lost.get(&0, 0).unwrap_or(lost_seen);
                if now != lost_seen {
                    lost_seen = now;
                    log::debug!("sockmap wake ring was full: every paused flow looks again");
                    send_to_all(Routed::All);
                }
            }
        })
        .map(drop)
}

/// A per-thread epoll set that reports FIN (`EPOLLRDHUP`), RST and errors of the sockets in the
/// maps, and the program's wakes routed to this thread.
pub struct HupWatcher {
    epoll: AsyncFd<OwnedFd>,
    waiters: RefCell<StdHashMap<u64, Rc<Waiter>>>,
    next_token: Cell<u64>,
    /// Source socket cookie -> the waiter of its registration, for the program's wakes.
    wakes: RefCell<StdHashMap<u64, Rc<Waiter>>>,
    routed: RefCell<Option<UnboundedReceiver<Routed>>>,
}

#[derive(Default)]
pub(super) struct Waiter {
    notify: Notify,
    events: Cell<u32>,
}

/// The event bit of a program's wake. `EPOLLEXCLUSIVE` is an input flag that epoll never
/// reports, so it can't be mistaken for a socket event.
pub(super) const WOKEN: u32 = libc::EPOLLEXCLUSIVE as u32;

/// A socket's registration in the [`HupWatcher`], for its FIN/RST and for the program's wakes
/// of the direction it is the source of; deregisters on drop.
pub(super) struct Registration {
    watcher: Rc<HupWatcher>,
    token: u64,
    fd: RawFd,
    cookie: u64,
    waiter: Rc<Waiter>,
}

impl HupWatcher {
    /// A watcher for the thread that owns slots `start..end`.
    pub(super) fn new(start: u32, end: u32) -> io::Result<Rc<Self>> {
        // SAFETY: plain syscall; the returned fd is owned by us.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just created.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Rc::new(Self {
            epoll: super::super::async_fd(fd)?,
            waiters: RefCell::new(StdHashMap::new()),
            next_token: Cell::new(1),
            wakes: RefCell::new(StdHashMap::new()),
            routed: RefCell::new(Some(route(start, end))),
        }))
    }

    /// Registers a socket, whose `SO_COOKIE` is `cookie`.
    pub(super) fn register(
        self: &Rc<Self>,
        fd: BorrowedFd<'_>,
        cookie: u64,
    ) -> io::Result<Registration> {
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token,
        };
        // SAFETY: epoll_ctl reads `ev`; both fds are open.
        let rc = unsafe {
            libc::epoll_ctl(
                self.epoll.get_ref().as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &raw mut ev,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let waiter = Rc::new(Waiter::default());
        self.waiters.borrow_mut().insert(token, waiter.clone());
        self.wakes.borrow_mut().insert(cookie, waiter.clone());
        Ok(Registration {
            watcher: self.clone(),
            token,
            fd: fd.as_raw_fd(),
            cookie,
            waiter,
        })
    }

    fn wake(&self, msg: Routed) {
        let wakes = self.wakes.borrow();
        let one = |w: &Waiter| {
            w.events.set(w.events.get() | WOKEN);
            w.notify.notify_one();
        };
        match msg {
            Routed::Wake(cookie) => {
                if let Some(w) = wakes.get(&cookie) {
                    one(w);
                }
            }
            Routed::All => wakes.values().for_each(|w| one(w)),
        }
    }

    /// Dispatches epoll events and routed wakes to the waiting flows. Spawn once per thread;
    /// runs forever.
    pub async fn run(self: Rc<Self>) {
        // None once the dispatcher dropped this thread's route (its range was given to
        // another thread).
        let mut routed = self.routed.borrow_mut().take();
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        loop {
            let mut guard = tokio::select! {
                ready = self.epoll.readable() => match ready {
                    Ok(guard) => guard,
                    Err(_) => return,
                },
                msg = async { routed.as_mut()?.recv().await }, if routed.is_some() => {
                    match msg {
                        Some(msg) => self.wake(msg),
                        None => routed = None,
                    }
                    continue;
                }
            };
            loop {
                // SAFETY: `events` has room for `len` entries; timeout 0 never blocks.
                let n = unsafe {
                    libc::epoll_wait(
                        self.epoll.get_ref().as_raw_fd(),
                        events.as_mut_ptr(),
                        events.len() as i32,
                        0,
                    )
                };
                if n <= 0 {
                    break;
                }
                let waiters = self.waiters.borrow();
                for ev in &events[..n as usize] {
                    let (token, bits) = (ev.u64, ev.events);
                    if let Some(w) = waiters.get(&token) {
                        w.events.set(w.events.get() | bits);
                        w.notify.notify_one();
                    }
                }
            }
            guard.clear_ready();
        }
    }
}

impl Registration {
    /// Waits for the socket's FIN, RST or error (sticky: reported again at every call), or the
    /// program's wake of the direction this socket is the source of ([`WOKEN`], reported once).
    pub(super) async fn event(&self) -> u32 {
        loop {
            let ev = self.waiter.events.get();
            if ev != 0 {
                self.waiter.events.set(ev & !WOKEN);
                return ev;
            }
            self.waiter.notify.notified().await;
        }
    }

    /// The socket is about to be closed, which takes it out of the epoll set: drop only the
    /// waiter (saves an `epoll_ctl` per socket).
    pub(super) fn closing(mut self) {
        self.fd = -1;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.fd >= 0 {
            // SAFETY: removing our own registration of an fd that is still open.
            unsafe {
                libc::epoll_ctl(
                    self.watcher.epoll.get_ref().as_raw_fd(),
                    libc::EPOLL_CTL_DEL,
                    self.fd,
                    std::ptr::null_mut(),
                );
            }
        }
        self.watcher.waiters.borrow_mut().remove(&self.token);
        self.watcher.wakes.borrow_mut().remove(&self.cookie);
    }
}
