//! The TLS shim's relay: moves bytes between a TLS stream (the outer side, toward the peer)
//! and one end of a unix socketpair (the inner side, the plain socket the rest of the pipeline
//! works on), with half-closes passed on both ways and every end bounded.

use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tokio::time::{Instant, Sleep};

/// What one direction holds at most: one TLS record's plaintext.
const BUF: usize = 16 * 1024;

/// Reads and writes one direction does per wake-up before it yields.
const ROUNDS: usize = 32;

/// Bytes moved by a relay that ended cleanly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Relayed {
    /// Outer → inner (the peer's plaintext).
    pub up: u64,
    /// Inner → outer.
    pub down: u64,
}

/// A non-blocking, close-on-exec `AF_UNIX` stream pair: the raw end (for the pipeline, which
/// registers it where it registers a client socket) and the end the relay drives.
pub fn pair() -> io::Result<(OwnedFd, UnixStream)> {
    let (a, b) = std::os::unix::net::UnixStream::pair()?;
    // std creates the pair close-on-exec; both ends non-blocking as every socket of the
    // pipeline.
    a.set_nonblocking(true)?;
    b.set_nonblocking(true)?;
    Ok((OwnedFd::from(a), UnixStream::from_std(b)?))
}

/// Relays until both directions have ended (each with its EOF passed on), an error on either
/// side, or `idle` without progress either way (`None`: unbounded, as configured).
///
/// Outer EOF (a `close_notify`, or a TCP FIN without one, which rustls reports as
/// `UnexpectedEof`) shuts the inner side's write and the other direction goes on; inner EOF
/// sends `close_notify` and a FIN to the outer side and its reading goes on. A failed write
/// to the inner side (the pipeline closed it) ends the relay at once. On an error the caller
/// should reset the outer transport (pass `&mut stream` to keep it).
///
/// # Errors
/// The first I/O error of either side, or `TimedOut` when idle.
pub async fn relay<S: AsyncRead + AsyncWrite + Unpin>(
    mut outer: S,
    mut inner: UnixStream,
    idle: Option<Duration>,
) -> io::Result<Relayed> {
    let mut up = Dir::new();
    let mut down = Dir::new();
    let mut timer: Option<Pin<Box<Sleep>>> = idle.map(|d| Box::pin(tokio::time::sleep(d)));
    let mut last = Instant::now();
    poll_fn(|cx| {
        let moved_up = up.pump(cx, &mut outer, &mut inner)?;
        let moved_down = down.pump(cx, &mut inner, &mut outer)?;
        if up.done() && down.done() {
            return Poll::Ready(Ok(Relayed {
                up: up.total,
                down: down.total,
            }));
        }
        if moved_up || moved_down {
            last = Instant::now();
        }
        if let (Some(t), Some(d)) = (timer.as_mut(), idle) {
            // Re-armed only when it fires early: progress just moves `last`.
            while t.as_mut().poll(cx).is_ready() {
                let due = last + d;
                if Instant::now() >= due {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "TLS relay idle",
                    )));
                }
                t.as_mut().reset(due);
            }
        }
        Poll::Pending
    })
    .await
}

/// One direction: a buffer between a reader and a writer.
struct Dir {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// The reader reached its end.
    eof: bool,
    /// The end was passed on (the writer shut).
    shut: bool,
    total: u64,
}

impl Dir {
    fn new() -> Self {
        Dir {
            buf: vec![0; BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            shut: false,
            total: 0,
        }
    }

    fn done(&self) -> bool {
        self.shut
    }

    /// Moves what it can now; `Ok(true)` when anything moved. Returns when a side is pending
    /// (its waker registered), this direction is done, or after [`ROUNDS`] (woken again).
    fn pump<R, W>(&mut self, cx: &mut Context<'_>, from: &mut R, to: &mut W) -> io::Result<bool>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut moved = false;
        for _ in 0..ROUNDS {
            if self.start < self.end {
                match Pin::new(&mut *to).poll_write(cx, &self.buf[self.start..self.end]) {
                    Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                    Poll::Ready(Ok(n)) => {
                        self.start += n;
                        self.total += n as u64;
                        moved = true;
                        if self.start == self.end {
                            self.start = 0;
                            self.end = 0;
                            // TLS buffers records: push them out before reading more.
                            if let Poll::Ready(Err(e)) = Pin::new(&mut *to).poll_flush(cx) {
                                return Err(e);
                            }
                        }
                    }
                    Poll::Ready(Err(e)) => return Err(e),
                    Poll::Pending => return Ok(moved),
                }
            } else if !self.eof {
                let mut rb = ReadBuf::new(&mut self.buf);
                match Pin::new(&mut *from).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        if n == 0 {
                            self.eof = true;
                        } else {
                            self.end = n;
                        }
                        moved = true;
                    }
                    // A TCP FIN without close_notify: an end like the other.
                    Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        self.eof = true;
                        moved = true;
                    }
                    Poll::Ready(Err(e)) => return Err(e),
                    Poll::Pending => {
                        // Flush what a TLS writer still holds while there is nothing to read.
                        return match Pin::new(&mut *to).poll_flush(cx) {
                            Poll::Ready(Err(e)) => Err(e),
                            _ => Ok(moved),
                        };
                    }
                }
            } else if !self.shut {
                match Pin::new(&mut *to).poll_shutdown(cx) {
                    Poll::Ready(Ok(())) => {
                        self.shut = true;
                        moved = true;
                    }
                    // The peer went away already: nothing left to tell it.
                    Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::NotConnected => {
                        self.shut = true;
                        moved = true;
                    }
                    Poll::Ready(Err(e)) => return Err(e),
                    Poll::Pending => return Ok(moved),
                }
            } else {
                return Ok(moved);
            }
        }
        // A fast side yields to the other direction and to the thread's other tasks.
        cx.waker().wake_by_ref();
        Ok(moved)
    }
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
