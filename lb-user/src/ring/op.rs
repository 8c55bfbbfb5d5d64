//! One-shot operations awaited by a task: a connect on the ring, bounded by a linked timeout
//! (`timeout connect`) instead of a timer on the reactor; an accept with the client's address,
//! which its loop can cancel and reap before it stops accepting.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::task::{Poll, Waker};
use std::time::Duration;

use io_uring::{opcode, squeue, types};

use super::{with, Ring, Tag};

/// An operation in the ring's slab, with what the kernel may read or write until it completes.
pub(super) struct Op {
    result: Option<i32>,
    waker: Option<Waker>,
    /// The task stopped waiting: the entry is freed at completion.
    abandoned: bool,
    held: Held,
}

/// The memory an operation's entry points at, kept until its completion.
enum Held {
    /// The server's address and the connect's timeout, in one allocation, and the socket: a
    /// connect nobody waits for any more is cancelled, and its socket closed at completion,
    /// never before (its number must not name another socket while the entry may still be
    /// submitted).
    Connect(
        #[expect(dead_code, reason = "only the kernel reads it")] Box<ConnectArgs>,
        OwnedFd,
    ),
    /// Where the kernel writes the accepted client's address. A completion's result is a new
    /// socket: one nobody waits for any more is closed.
    Accept(Box<Peer>),
}

/// What a connect's entries point at: the server's address, and the timeout of its linked
/// `IORING_OP_LINK_TIMEOUT`.
struct ConnectArgs {
    addr: socket2::SockAddr,
    timeout: types::Timespec,
}

/// The client's address an accept writes, and its length.
struct Peer {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

/// How a ring connect failed.
#[derive(Debug)]
pub enum ConnectFailed {
    /// `timeout` passed first.
    Timeout,
    Io(io::Error),
}

/// Connects the non-blocking socket `fd` to `addr` through the ring, within `timeout`; gives
/// the socket back once connected. Dropped before, the connect is cancelled and the socket
/// closed when the kernel is done with it.
pub async fn connect(
    fd: OwnedFd,
    addr: SocketAddr,
    timeout: Option<Duration>,
) -> Result<OwnedFd, ConnectFailed> {
    let key = with(|r| r.start_connect(fd, addr, timeout));
    let mut waiting = Waiting(Some(key));
    let (res, held) = waiting.done().await;
    let Held::Connect(_, fd) = held else {
        unreachable!("a connect's entry holds a connect");
    };
    match res {
        0.. => Ok(fd),
        // The linked timeout cancelled the connect.
        _ if -res == libc::ECANCELED && timeout.is_some() => Err(ConnectFailed::Timeout),
        _ => Err(ConnectFailed::Io(io::Error::from_raw_os_error(-res))),
    }
}

/// A task's wait on an operation; dropped early, it leaves the operation to finish alone.
struct Waiting(Option<usize>);

impl Waiting {
    /// The operation's result and what it held; the operation is gone from the ring then.
    /// Cancel-safe: dropped before it is ready, the operation stays waited for.
    async fn done(&mut self) -> (i32, Held) {
        let key = self.0.expect("an operation waited for once");
        let out = poll_fn(|cx| {
            with(|r| {
                let op = &mut r.ops[key];
                if let Some(res) = op.result {
                    Poll::Ready((res, r.ops.remove(key).held))
                } else {
                    op.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
        })
        .await;
        self.0 = None;
        out
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(key) = self.0 {
            let _ = super::RING.try_with(|r| {
                if let Some(ring) = r.borrow_mut().as_mut() {
                    let op = &mut ring.ops[key];
                    if op.result.is_some() {
                        let (res, op) = (op.result, ring.ops.remove(key));
                        if let (Held::Accept(_), Some(fd @ 0..)) = (op.held, res) {
                            // SAFETY: a successful accept's result is a new fd nobody owns.
                            drop(unsafe { OwnedFd::from_raw_fd(fd) });
                        }
                    } else {
                        op.abandoned = true;
                        op.waker = None;
                        // Whatever it would still take is closed at its completion; it should
                        // take nothing more. A connect stops (its socket closes at completion).
                        ring.cancel_op(key);
                    }
                }
            });
        }
    }
}

/// An accept in flight on the thread's ring ([`Accept::start`]); [`Accept::done`] gives its
/// connection. A loop that stops accepting calls [`Accept::cancel`] and then awaits
/// [`Accept::done`]: the accept either took a connection first (served, never dropped) or
/// was cancelled, and either way the listening socket's queue is no longer touched once it
/// returns. Dropped while in flight, it is cancelled and whatever it still takes is closed.
pub struct Accept(Waiting);

impl Accept {
    /// Queues one accept on `listener` (submitted with the turn's other entries): the
    /// connection comes non-blocking and close-on-exec, with the client's address (no
    /// `fcntl`, no `getpeername`). A single-shot accept, not a multishot one: a multishot
    /// accept gives no address (every completion would share one buffer), and one re-armed
    /// per connection is submitted in the `io_uring_enter` the turn makes anyway, where a
    /// `getpeername` would be a syscall of its own; it also takes nothing while the loop
    /// waits for room under `maxconn`.
    pub fn start(listener: BorrowedFd<'_>) -> Self {
        Self(Waiting(Some(with(|r| r.start_accept(listener)))))
    }

    /// Asks the kernel to cancel the accept (a no-op once it completed); [`Accept::done`]
    /// still gives its outcome.
    pub fn cancel(&self) {
        if let Some(key) = self.0 .0 {
            with(|r| r.cancel_op(key));
        }
    }

    /// The accepted connection and its client's address. `ECANCELED` after
    /// [`Accept::cancel`] won the race. Cancel-safe.
    pub async fn done(&mut self) -> io::Result<(OwnedFd, SocketAddr)> {
        let (res, held) = self.0.done().await;
        if res < 0 {
            return Err(io::Error::from_raw_os_error(-res));
        }
        // SAFETY: a successful accept's result is a new fd that nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(res) };
        let Held::Accept(peer) = held else {
            unreachable!("an accept's operation holds a peer address")
        };
        // SAFETY: the kernel wrote an address of `len` bytes into `storage`.
        let addr = unsafe { socket2::SockAddr::new(peer.storage, peer.len) };
        let addr = addr
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket"))?;
        Ok((fd, addr))
    }
}

impl Ring {
    fn start_connect(&mut self, fd: OwnedFd, addr: SocketAddr, timeout: Option<Duration>) -> usize {
        let args = Box::new(ConnectArgs {
            addr: socket2::SockAddr::from(addr),
            timeout: types::Timespec::new()
                .sec(timeout.map_or(0, |t| t.as_secs()))
                .nsec(timeout.map_or(0, |t| t.subsec_nanos())),
        });
        let (sa_ptr, sa_len, ts_ptr) =
            (args.addr.as_ptr(), args.addr.len(), &raw const args.timeout);
        let raw = fd.as_raw_fd();
        let key = self.ops.insert(Op {
            result: None,
            waker: None,
            abandoned: false,
            held: Held::Connect(args, fd),
        });
        let connect = opcode::Connect::new(types::Fd(raw), sa_ptr.cast(), sa_len)
            .build()
            .user_data(Tag::Op.user_data(key));
        match timeout {
            Some(_) => {
                self.push(&connect.flags(squeue::Flags::IO_LINK));
                let t = opcode::LinkTimeout::new(ts_ptr)
                    .build()
                    .user_data(Tag::Ignored.user_data(0));
                self.push(&t);
            }
            None => self.push(&connect),
        }
        key
    }

    fn start_accept(&mut self, listener: BorrowedFd<'_>) -> usize {
        // SAFETY: all-zero bytes are a valid sockaddr_storage.
        let storage = unsafe { std::mem::zeroed::<libc::sockaddr_storage>() };
        let mut peer = Box::new(Peer {
            storage,
            len: std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        });
        let (addr, len) = (
            (&raw mut peer.storage).cast::<libc::sockaddr>(),
            &raw mut peer.len,
        );
        let key = self.ops.insert(Op {
            result: None,
            waker: None,
            abandoned: false,
            held: Held::Accept(peer),
        });
        let accept = opcode::Accept::new(types::Fd(listener.as_raw_fd()), addr, len)
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(Tag::Op.user_data(key));
        self.push(&accept);
        key
    }

    /// Queues the cancellation of operation `key` (its completion comes with `ECANCELED`, or
    /// with its result if it finished first).
    fn cancel_op(&mut self, key: usize) {
        let cancel = opcode::AsyncCancel::new(Tag::Op.user_data(key))
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(Tag::Ignored.user_data(0));
        self.push(&cancel);
    }

    /// The completion of operation `key`.
    pub(super) fn op_done(&mut self, key: usize, res: i32) {
        let Some(op) = self.ops.get_mut(key) else {
            return;
        };
        if op.abandoned {
            let op = self.ops.remove(key);
            if matches!(op.held, Held::Accept(_)) && res >= 0 {
                // SAFETY: a successful accept's result is a new fd that nobody else owns.
                drop(unsafe { OwnedFd::from_raw_fd(res) });
            }
            return;
        }
        op.result = Some(res);
        if let Some(w) = op.waker.take() {
            self.woke = true;
            w.wake();
        }
    }
}
