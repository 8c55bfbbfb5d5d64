//! A connect on the ring with a send of its first bytes linked behind it (and its timeout
//! linked between): the bytes arrive with the connection, a failed or timed-out connect reports
//! its own error (not the cancelled send's), and an operation nobody waits for any more is
//! freed once both of its entries completed.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use super::{connect, ConnectFailed, Connected};

/// Runs `body` on a thread with a ring, as lb's threads run.
fn on_ring(body: impl std::future::Future<Output = ()> + 'static) {
    let rt = super::super::thread_runtime().unwrap();
    rt.block_on(async move {
        tokio::task::spawn_local(super::super::install().unwrap());
        body.await;
    });
}

fn socket() -> OwnedFd {
    Socket::new(Domain::IPV4, Type::STREAM.nonblocking().cloexec(), None)
        .unwrap()
        .into()
}

/// Operations in the thread's ring.
fn ops() -> usize {
    super::with(|r| r.ops.len())
}

/// Waits (turning the loop) until the ring holds no operation, at most 5 s.
async fn until_no_ops() -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while ops() > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ops() == 0
}

/// A listener whose accept queue is full: a further connect's SYN is dropped, and the
/// connect waits. The connection filling it is returned to be kept.
fn full_listener() -> (TcpListener, TcpStream, SocketAddr) {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    // A backlog of 0 holds one connection.
    s.listen(0).unwrap();
    let l: TcpListener = s.into();
    let addr = l.local_addr().unwrap();
    let filler = TcpStream::connect(addr).unwrap();
    (l, filler, addr)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn the_first_bytes_arrive_with_the_connection_with_or_without_a_timeout() {
    for timeout in [Some(Duration::from_secs(5)), None] {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let first = pattern(3000);
        let sent = first.clone();
        on_ring(async move {
            let Connected { first, .. } = connect(socket(), addr, timeout, sent)
                .await
                .expect("connected");
            assert_eq!(
                first.sent.unwrap(),
                first.bytes.len(),
                "timeout {timeout:?}"
            );
            assert!(first.rest().unwrap().is_empty());
            assert_eq!(ops(), 0);
        });
        let (mut c, _) = l.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = vec![0u8; first.len()];
        c.read_exact(&mut got).unwrap();
        assert_eq!(got, first, "timeout {timeout:?}");
    }
}

#[test]
fn a_connect_without_first_bytes_sends_nothing() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    on_ring(async move {
        let c = connect(socket(), addr, Some(Duration::from_secs(5)), Vec::new())
            .await
            .expect("connected");
        assert_eq!(c.first.sent.unwrap(), 0);
        assert!(c.first.bytes.is_empty());
    });
    // The ring's side is closed by now: all the server gets is the end.
    let (mut c, _) = l.accept().unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert!(got.is_empty(), "no byte was sent");
}

#[test]
fn a_refused_connect_reports_its_own_error_and_frees_its_send() {
    // Bound, not listening: the connect is refused.
    let held = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    held.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let addr = held.local_addr().unwrap().as_socket().unwrap();
    on_ring(async move {
        for timeout in [Some(Duration::from_secs(5)), None] {
            match connect(socket(), addr, timeout, pattern(100)).await {
                Err(ConnectFailed::Io(e)) => {
                    assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED), "{e}");
                }
                Err(ConnectFailed::Timeout) => panic!("refused, not timed out"),
                Ok(_) => panic!("connected to a socket that does not listen"),
            }
            assert!(until_no_ops().await);
        }
    });
    drop(held);
}

#[test]
fn a_connect_that_times_out_takes_its_send_with_it() {
    let (_l, _filler, addr) = full_listener();
    on_ring(async move {
        let started = Instant::now();
        let r = connect(
            socket(),
            addr,
            Some(Duration::from_millis(200)),
            pattern(100),
        )
        .await;
        assert!(matches!(r, Err(ConnectFailed::Timeout)), "{:?}", r.err());
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(until_no_ops().await);
    });
}

#[test]
fn a_connect_given_up_is_freed_once_its_send_completed_too() {
    let (_l, _filler, addr) = full_listener();
    on_ring(async move {
        let attempt = connect(socket(), addr, None, pattern(100));
        // Given up while the SYN waits: the connect is cancelled, and its send with it.
        let r = tokio::time::timeout(Duration::from_millis(50), attempt).await;
        assert!(r.is_err(), "the connect cannot complete");
        assert_eq!(ops(), 1, "kept until the kernel is done with it");
        assert!(until_no_ops().await);
    });
}
