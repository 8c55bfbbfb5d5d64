//! A TLS bind's handshake with a client, bounded in time, over a TCP stream whose first bytes
//! may have been read already (after a PROXY header), with HAProxy's names for its failures.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::Facts;

/// HAProxy's messages for a failed handshake (`conn_err_code_str`).
pub const SSL_EMPTY: &str = "Connection closed during SSL handshake";
pub const SSL_ABORT: &str = "Connection error during SSL handshake";
pub const SSL_TIMEOUT: &str = "Timeout during SSL handshake";
pub const SSL_HANDSHAKE: &str = "SSL handshake failure";

/// A client's TCP stream, with bytes already read from it served first.
#[derive(Debug)]
pub struct Prefixed {
    head: Vec<u8>,
    at: usize,
    tcp: TcpStream,
    /// Whether the client sent anything (an empty close is not a handshake failure).
    got_any: bool,
}

impl Prefixed {
    pub fn new(tcp: TcpStream, head: Vec<u8>) -> Self {
        let got_any = !head.is_empty();
        Prefixed {
            head,
            at: 0,
            tcp,
            got_any,
        }
    }

    /// The TCP socket (for a reset).
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.at < me.head.len() {
            let n = (me.head.len() - me.at).min(buf.remaining());
            buf.put_slice(&me.head[me.at..me.at + n]);
            me.at += n;
            if me.at == me.head.len() {
                me.head = Vec::new();
                me.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut me.tcp).poll_read(cx, buf);
        if buf.filled().len() > before {
            me.got_any = true;
        }
        r
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, b)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// A handshake that did not finish: HAProxy's message for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed(pub &'static str);

/// Runs the server side of the handshake until `deadline` (`timeout client` from accept).
/// On failure the client's socket is closed (with whatever alert rustls had to send).
///
/// # Errors
/// The handshake failed, timed out, or the client closed: HAProxy's message.
pub async fn handshake(
    stream: Prefixed,
    config: Arc<ServerConfig>,
    deadline: Option<Instant>,
) -> Result<(TlsStream<Prefixed>, Facts), Failed> {
    let accepting = TlsAcceptor::from(config).accept(stream).into_fallible();
    let accepted = match deadline {
        Some(d) => match tokio::time::timeout_at(d, accepting).await {
            Ok(r) => r,
            Err(_) => return Err(Failed(SSL_TIMEOUT)),
        },
        None => accepting.await,
    };
    match accepted {
        Ok(tls) => {
            let facts = Facts::of(tls.get_ref().1);
            Ok((tls, facts))
        }
        Err((e, stream)) => Err(Failed(match e.kind() {
            io::ErrorKind::UnexpectedEof if !stream.got_any => SSL_EMPTY,
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                if !stream.got_any =>
            {
                SSL_ABORT
            }
            _ => SSL_HANDSHAKE,
        })),
    }
}
