//! One-shot operations awaited by a task: a connect on the ring, bounded by a linked timeout
//! (`timeout connect`) instead of a timer on the reactor.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::task::{Poll, Waker};
use std::time::Duration;

use io_uring::{opcode, squeue, types};

use super::{with, Ring, Tag};

/// An operation in the ring's slab, with what the kernel may read until it completes.
pub(super) struct Op {
    result: Option<i32>,
    waker: Option<Waker>,
    /// The task stopped waiting: the entry is freed at completion.
    abandoned: bool,
    _addr: Box<socket2::SockAddr>,
    _timeout: Box<types::Timespec>,
}

/// How a ring connect failed.
#[derive(Debug)]
pub enum ConnectFailed {
    /// `timeout` passed first.
    Timeout,
    Io(io::Error),
}

/// Connects the non-blocking socket `fd` to `addr` through the ring, within `timeout`.
pub async fn connect(
    fd: &OwnedFd,
    addr: SocketAddr,
    timeout: Option<Duration>,
) -> Result<(), ConnectFailed> {
    let key = with(|r| r.start_connect(fd, addr, timeout));
    let mut waiting = Waiting(Some(key));
    let res = poll_fn(|cx| {
        with(|r| {
            let op = &mut r.ops[key];
            if let Some(res) = op.result {
                r.ops.remove(key);
                Poll::Ready(res)
            } else {
                op.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    })
    .await;
    waiting.0 = None;
    match res {
        0.. => Ok(()),
        // The linked timeout cancelled the connect.
        _ if -res == libc::ECANCELED && timeout.is_some() => Err(ConnectFailed::Timeout),
        _ => Err(ConnectFailed::Io(io::Error::from_raw_os_error(-res))),
    }
}

/// A task's wait on an operation; dropped early, it leaves the operation to finish alone.
struct Waiting(Option<usize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(key) = self.0 {
            let _ = super::RING.try_with(|r| {
                if let Some(ring) = r.borrow_mut().as_mut() {
                    let op = &mut ring.ops[key];
                    if op.result.is_some() {
                        ring.ops.remove(key);
                    } else {
                        op.abandoned = true;
                        op.waker = None;
                    }
                }
            });
        }
    }
}

impl Ring {
    fn start_connect(
        &mut self,
        fd: &OwnedFd,
        addr: SocketAddr,
        timeout: Option<Duration>,
    ) -> usize {
        let sa = Box::new(socket2::SockAddr::from(addr));
        let ts = Box::new(
            types::Timespec::new()
                .sec(timeout.map_or(0, |t| t.as_secs()))
                .nsec(timeout.map_or(0, |t| t.subsec_nanos())),
        );
        let (sa_ptr, sa_len, ts_ptr) = (sa.as_ptr(), sa.len(), &raw const *ts);
        let key = self.ops.insert(Op {
            result: None,
            waker: None,
            abandoned: false,
            _addr: sa,
            _timeout: ts,
        });
        let connect = opcode::Connect::new(types::Fd(fd.as_raw_fd()), sa_ptr.cast(), sa_len)
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

    /// The completion of operation `key`.
    pub(super) fn op_done(&mut self, key: usize, res: i32) {
        let Some(op) = self.ops.get_mut(key) else {
            return;
        };
        if op.abandoned {
            self.ops.remove(key);
            return;
        }
        op.result = Some(res);
        if let Some(w) = op.waker.take() {
            w.wake();
        }
    }
}
