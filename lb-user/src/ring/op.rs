//! One-shot operations awaited by a task: a connect on the ring, bounded by a linked timeout
//! (`timeout connect`) instead of a timer on the reactor, with the server's first bytes sent
//! by a send linked behind it; an accept with the client's address, which its loop can cancel
//! and reap before it stops accepting.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::task::{Poll, Waker};
use std::time::Duration;

use io_uring::{opcode, squeue, types};

use super::{with, Ring, Tag};

#[cfg(test)]
#[path = "op_tests.rs"]
mod op_tests;

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
    /// The server's address, the connect's timeout and the first bytes, in one allocation,
    /// and the socket: a connect nobody waits for any more is cancelled, and its socket closed
    /// at completion (of its linked send too), never before (its number must not name another
    /// socket while an entry may still be submitted).
    Connect(Box<ConnectArgs>, OwnedFd),
    /// Where the kernel writes the accepted client's address. A completion's result is a new
    /// socket: one nobody waits for any more is closed.
    Accept(Box<Peer>),
}

/// What a connect's entries point at: the server's address, the timeout of its linked
/// `IORING_OP_LINK_TIMEOUT`, and the bytes of the send linked behind them.
struct ConnectArgs {
    addr: socket2::SockAddr,
    timeout: types::Timespec,
    first: Vec<u8>,
    /// The linked send's result, once it completed (it completes after the connect).
    sent: Option<i32>,
}

impl Held {
    /// Whether an entry of the operation has yet to complete after the one that gave its
    /// result: a connect's linked send.
    fn awaits_more(&self) -> bool {
        matches!(self, Held::Connect(args, _) if !args.first.is_empty() && args.sent.is_none())
    }
}

/// A connection made by [`connect`], and what its linked send did with the first bytes.
pub struct Connected {
    pub fd: OwnedFd,
    pub first: FirstBytes,
}

/// A server's first bytes, and how many of them went with its connect.
#[derive(Debug)]
pub struct FirstBytes {
    pub bytes: Vec<u8>,
    /// How many a send linked behind the connect sent (0 where none was), or the `errno` it
    /// failed with.
    pub sent: Result<usize, i32>,
}

impl FirstBytes {
    /// Bytes nothing sent yet.
    pub fn unsent(bytes: Vec<u8>) -> Self {
        FirstBytes { bytes, sent: Ok(0) }
    }

    /// What is left for the caller to write (empty: all went), or the send's failure.
    pub fn rest(&self) -> io::Result<&[u8]> {
        match self.sent {
            Ok(n) => Ok(self.bytes.get(n..).unwrap_or_default()),
            Err(errno) => Err(io::Error::from_raw_os_error(errno)),
        }
    }
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

/// Connects the non-blocking socket `fd` to `addr` through the ring, within `timeout`, and
/// sends `first` (when not empty) by a send linked behind the connect: the kernel sends them
/// as the connect completes, in the same submission, with no turn of this thread between
/// (the server, woken by the handshake, finds them with it, as after HAProxy's `connect()`
/// and its first `send()` in one loop pass). Gives the socket back once connected. Dropped
/// before, the connect is cancelled and the socket closed when the kernel is done with it.
pub async fn connect(
    fd: OwnedFd,
    addr: SocketAddr,
    timeout: Option<Duration>,
    first: Vec<u8>,
) -> Result<Connected, ConnectFailed> {
    let key = with(|r| r.start_connect(fd, addr, timeout, first));
    let mut waiting = Waiting(Some(key));
    let (res, held) = waiting.done().await;
    let Held::Connect(args, fd) = held else {
        unreachable!("a connect's entry holds a connect");
    };
    let sent = match args.sent {
        None => Ok(0),
        Some(n @ 0..) => Ok(n as usize),
        Some(e) => Err(-e),
    };
    match res {
        0.. => Ok(Connected {
            fd,
            first: FirstBytes {
                bytes: args.first,
                sent,
            },
        }),
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
                if let Some(res) = op.result.filter(|_| !op.held.awaits_more()) {
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
                    if op.result.is_some() && !op.held.awaits_more() {
                        let (res, op) = (op.result, ring.ops.remove(key));
                        if let (Held::Accept(_), Some(fd @ 0..)) = (op.held, res) {
                            // SAFETY: a successful accept's result is a new fd nobody owns.
                            drop(unsafe { OwnedFd::from_raw_fd(fd) });
                        }
                    } else {
                        op.abandoned = true;
                        op.waker = None;
                        // Whatever it would still take is closed at its completion; it should
                        // take nothing more. A connect stops (its socket closes at completion),
                        // and its linked send with it (or alone, once connected).
                        let (connecting, sending) = (op.result.is_none(), op.held.awaits_more());
                        if connecting {
                            ring.cancel_op(key);
                        }
                        if sending {
                            ring.cancel_entry(Tag::OpSend.user_data(key));
                        }
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
    fn start_connect(
        &mut self,
        fd: OwnedFd,
        addr: SocketAddr,
        timeout: Option<Duration>,
        first: Vec<u8>,
    ) -> usize {
        let args = Box::new(ConnectArgs {
            addr: socket2::SockAddr::from(addr),
            timeout: types::Timespec::new()
                .sec(timeout.map_or(0, |t| t.as_secs()))
                .nsec(timeout.map_or(0, |t| t.subsec_nanos())),
            first,
            sent: None,
        });
        let (sa_ptr, sa_len, ts_ptr) =
            (args.addr.as_ptr(), args.addr.len(), &raw const args.timeout);
        // The bytes stay where they are: the box moves into the slab, not its heap buffer.
        let (first_ptr, first_len) = (args.first.as_ptr(), args.first.len());
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
        // The chain (connect, its timeout, the send) goes in one submission: a queue submitted
        // in its middle would cut the links.
        self.room_for(3);
        let send = (first_len > 0).then(|| {
            #[expect(clippy::cast_possible_truncation, reason = "first bytes are a few KiB")]
            opcode::Send::new(types::Fd(raw), first_ptr, first_len as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(Tag::OpSend.user_data(key))
        });
        let link = |e: squeue::Entry, more: bool| {
            if more {
                e.flags(squeue::Flags::IO_LINK)
            } else {
                e
            }
        };
        self.push(&link(connect, timeout.is_some() || send.is_some()));
        if timeout.is_some() {
            // A connect that completes in time removes its timeout, and the chain goes on to
            // the send; one that does not is cancelled, and the send with it.
            let t = opcode::LinkTimeout::new(ts_ptr)
                .build()
                .user_data(Tag::Ignored.user_data(0));
            self.push(&link(t, send.is_some()));
        }
        if let Some(send) = send {
            self.push(&send);
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
        self.cancel_entry(Tag::Op.user_data(key));
    }

    /// Queues the cancellation of the entry submitted with `user_data`.
    fn cancel_entry(&mut self, user_data: u64) {
        let cancel = opcode::AsyncCancel::new(user_data)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(Tag::Ignored.user_data(0));
        self.push(&cancel);
    }

    /// The completion of operation `key`'s linked send (see [`connect`]).
    pub(super) fn op_sent(&mut self, key: usize, res: i32) {
        let Some(op) = self.ops.get_mut(key) else {
            return;
        };
        if let Held::Connect(args, _) = &mut op.held {
            args.sent = Some(res);
        }
        if let Some(res) = op.result {
            self.op_complete(key, res);
        }
    }

    /// The completion of operation `key`.
    pub(super) fn op_done(&mut self, key: usize, res: i32) {
        let Some(op) = self.ops.get_mut(key) else {
            return;
        };
        op.result = Some(res);
        if !op.held.awaits_more() {
            self.op_complete(key, res);
        }
    }

    /// Every entry of operation `key` completed, the first with `res`: its task is woken,
    /// or, when nobody waits for it any more, it is freed.
    fn op_complete(&mut self, key: usize, res: i32) {
        let op = &mut self.ops[key];
        if op.abandoned {
            let op = self.ops.remove(key);
            if matches!(op.held, Held::Accept(_)) && res >= 0 {
                // SAFETY: a successful accept's result is a new fd that nobody else owns.
                drop(unsafe { OwnedFd::from_raw_fd(res) });
            }
            return;
        }
        if let Some(w) = op.waker.take() {
            self.woke = true;
            w.wake();
        }
    }
}
