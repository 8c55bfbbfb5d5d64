//! `_getflows` between two ends of a socket pair: who owns a flow after each way the exchange
//! can go, and the new side's errors for bad batches.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::give::give_round;
use super::take::{answer_batch, recv_batch, Received};
use super::wire;
use crate::dataplane::{FlowTimeouts, Parked};
use crate::flows::{HandedFlow, Offer};
use crate::generation::Generation;

fn gen() -> Arc<Generation> {
    let cfg = crate::config::load_str(
        "t.cfg",
        "defaults\n    mode tcp\nfrontend fe\n    bind 127.0.0.1:0\n    default_backend be\n\
         backend be\n    server s1 127.0.0.1:1\n",
    )
    .unwrap();
    Generation::standalone(Arc::new(cfg))
}

/// A connected TCP pair on loopback.
fn tcp_pair() -> (OwnedFd, OwnedFd) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (OwnedFd::from(c), OwnedFd::from(s))
}

fn flow(frontend: &str) -> HandedFlow {
    HandedFlow {
        frontend: frontend.into(),
        backend: "be".into(),
        server: "s1".into(),
        client: "127.0.0.1:5000".parse().unwrap(),
        age: Duration::from_millis(10),
        bytes: (3, 4),
        timeouts: FlowTimeouts::default(),
        unsent: (Vec::new(), Vec::new()),
    }
}

/// An offer of a real connected pair, and where its verdict arrives.
fn offer(frontend: &str) -> (Offer, oneshot::Receiver<bool>, (OwnedFd, OwnedFd)) {
    let (client, client_peer) = tcp_pair();
    let (server, server_peer) = tcp_pair();
    let (verdict, rx) = oneshot::channel();
    let parked = Parked {
        client,
        server,
        read: (3, 4),
        kernel: None,
        verdict,
    };
    let o = Offer {
        flow: flow(frontend),
        parked,
    };
    (o, rx, (client_peer, server_peer))
}

/// The new side of one round: the greeting, one batch, the answer and the commit; returns the
/// flows it adopted.
fn take_one(stream: &mut UnixStream) -> Result<Vec<HandedFlow>, String> {
    let mut magic = [0u8; 8];
    stream.read_exact(&mut magic).map_err(|e| e.to_string())?;
    assert_eq!(&magic, wire::MAGIC);
    let err = |e: Received| match e {
        Received::Io(e) => e.to_string(),
        Received::Bad(why) => why,
    };
    let (flows, fds) = recv_batch(stream, false).map_err(err)?.expect("a batch");
    let mut adopted = Vec::new();
    let g = gen();
    answer_batch(stream, &g, ((flows, fds), None), &mut |f, _, _, _| {
        adopted.push(f);
    })
    .map_err(err)?;
    Ok(adopted)
}

#[test]
fn only_flows_the_new_side_took_change_hands() {
    let (mut old, mut new) = UnixStream::pair().unwrap();
    let (a, _a_rx, _a_peers) = offer("fe");
    let (b, _b_rx, _b_peers) = offer("gone");
    let taker = std::thread::spawn(move || take_one(&mut new));
    let (committed, failed) = give_round(&mut old, &[a, b], true);
    assert!(failed.is_none(), "{failed:?}");
    assert_eq!(committed, [true, false], "frontend 'gone' is refused");
    let adopted = taker.join().unwrap().unwrap();
    assert_eq!(adopted.len(), 1);
    assert_eq!(adopted[0].frontend, "fe");
    assert_eq!(adopted[0].bytes, (3, 4));
}

#[test]
fn a_new_side_that_goes_away_leaves_every_flow_with_the_old() {
    let (mut old, new) = UnixStream::pair().unwrap();
    let (a, _rx, _peers) = offer("fe");
    // Reads the batch (fds and all), then closes without an answer.
    let taker = std::thread::spawn(move || {
        let mut new = new;
        let mut magic = [0u8; 8];
        new.read_exact(&mut magic).unwrap();
        let _ = recv_batch(&mut new, false);
    });
    let (committed, failed) = give_round(&mut old, &[a], true);
    taker.join().unwrap();
    assert_eq!(committed, [false]);
    assert!(failed.is_some());
}

#[test]
fn an_answer_that_does_not_fit_commits_nothing() {
    let (mut old, mut new) = UnixStream::pair().unwrap();
    let (a, _rx, _peers) = offer("fe");
    let taker = std::thread::spawn(move || {
        let mut magic = [0u8; 8];
        new.read_exact(&mut magic).unwrap();
        let _ = recv_batch(&mut new, false);
        // An answer for 2 flows where 1 was sent.
        new.write_all(&wire::answer(&[true, true])).unwrap();
        let mut rest = Vec::new();
        let _ = new.read_to_end(&mut rest);
        rest
    });
    let (committed, failed) = give_round(&mut old, &[a], true);
    drop(old);
    assert_eq!(committed, [false]);
    assert!(failed.unwrap().to_string().contains("1 were sent"));
    let rest = taker.join().unwrap();
    assert!(rest.is_empty(), "no commit was written: {rest:?}");
}

/// Sends `data` with `fds` as one message.
fn send(stream: &UnixStream, data: &[u8], fds: &[&OwnedFd]) {
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    wire::send_with_fds(&mut stream.try_clone().unwrap(), data, &raw).unwrap();
}

fn bad(r: Result<Option<super::take::Batch>, Received>) -> String {
    match r {
        Err(Received::Bad(why)) => why,
        Err(Received::Io(e)) => panic!("an io error, not a bad batch: {e}"),
        Ok(_) => panic!("a bad batch was accepted"),
    }
}

#[test]
fn bad_batches_are_clear_errors() {
    let f = flow("fe");
    let msg = wire::batch(&[(&f, None)]);
    let (c, s) = tcp_pair();
    let deadline = Instant::now() + Duration::from_secs(5);

    // Fds missing.
    let (old, mut new) = UnixStream::pair().unwrap();
    send(&old, &msg, &[]);
    assert_eq!(
        bad(recv_batch(&mut new, false)),
        "0 fd(s) for 1 flow(s) (2 due)"
    );

    // One fd where two are due.
    let (old, mut new) = UnixStream::pair().unwrap();
    send(&old, &msg, &[&c]);
    assert_eq!(
        bad(recv_batch(&mut new, false)),
        "1 fd(s) for 1 flow(s) (2 due)"
    );

    // Truncated records: the sender stops inside the record.
    let (old, mut new) = UnixStream::pair().unwrap();
    send(&old, &msg[..msg.len() - 5], &[&c, &s]);
    drop(old);
    assert!(bad(recv_batch(&mut new, false)).contains("ends inside its records"));

    // The right length, with a count that does not match the records.
    let (old, mut new) = UnixStream::pair().unwrap();
    let mut two = msg.clone();
    two[..4].copy_from_slice(&2u32.to_le_bytes());
    send(&old, &two, &[&c, &s, &c, &s]);
    assert!(bad(recv_batch(&mut new, false)).starts_with("flow 1: the record ends"));

    // An end marker, and the old process gone between batches: the end.
    let (old, mut new) = UnixStream::pair().unwrap();
    send(&old, &wire::batch(&[]), &[]);
    assert!(matches!(recv_batch(&mut new, false), Ok(None)));
    drop(old);
    assert!(matches!(recv_batch(&mut new, false), Ok(None)));
    assert!(Instant::now() < deadline);
}

/// A record that says its flow is in the kernel maps where it is not (its sockets' cookies
/// have no entry there, or the cookies are another flow's) is refused with a clear reason: the
/// flow stays with the old process, which forwards on.
#[test]
fn a_lying_kernel_record_leaves_the_flow_with_the_old_process() {
    use std::os::fd::AsFd as _;

    use crate::dataplane::sockmap::{self, adopt::KernelFlow};
    use crate::dataplane::sockopt::socket_cookie;
    let _loaded = sockmap::load().expect("BPF maps (the tests run as root)");
    let (mut old, mut new) = UnixStream::pair().unwrap();
    let (mut a, _a_rx, _a_peers) = offer("fe");
    let (mut b, _b_rx, _b_peers) = offer("fe");
    let cookies = (
        socket_cookie(a.parked.client.as_fd()).unwrap(),
        socket_cookie(a.parked.server.as_fd()).unwrap(),
    );
    let k = KernelFlow {
        cookies,
        read: (3, 4),
        kernel: (false, true),
        ..KernelFlow::default()
    };
    // Its own cookies, in no map; and `a`'s cookies on `b`'s sockets: the reasons.
    let maps = sockmap::adopt::OldMaps::from_fds(sockmap::adopt::map_fds().unwrap(), None).unwrap();
    let why = |o: &Offer| {
        maps.refusal(&k, o.parked.client.as_fd(), o.parked.server.as_fd())
            .unwrap_or_default()
    };
    assert!(
        why(&a).starts_with("no map entry for socket cookie"),
        "{}",
        why(&a)
    );
    assert!(
        why(&b).starts_with("its client socket's cookie is"),
        "{}",
        why(&b)
    );
    drop(maps);
    a.parked.kernel = Some(k);
    b.parked.kernel = Some(k);
    let taker = std::thread::spawn(move || take_one(&mut new));
    let (committed, failed) = give_round(&mut old, &[a, b], true);
    assert!(failed.is_none(), "{failed:?}");
    assert_eq!(committed, [false, false]);
    assert!(taker.join().unwrap().unwrap().is_empty());
    assert!(!sockmap::adopt::maps_handed_over());
}
