//! A flow whose first bytes lb read before the data plane (the rules' inspection, a PROXY
//! header): that read may have stopped inside an skb. The pump of that source must read its
//! queue to the end before it lets the flow into the maps, else the verdict program gets the
//! whole skb and forwards its already-read head a second time.
//!
//! The failure this guards against (seen in `rules::sockmap_at_once`, +15,360 bytes at the
//! server: the inspection's whole read): the sockets are registered with the reactor afresh
//! when the data plane starts, so tokio does not yet know the client's queue is readable, and a
//! pump that counted itself parked while waiting for readiness let the hand-over happen before
//! it had read anything.

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd};
use std::pin::pin;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::backpressure::inq;
use super::{hand_to_maps, maps_ids, pair, pattern, read_all, thread_maps};
use crate::dataplane::splice::{self, pump};
use crate::dataplane::{async_fd, Ends, FlowEnd, Stop};

/// What lb's inspection reads: `tune.bufsize` less `tune.maxrewrite`.
const INSPECTED: usize = 15 << 10;
/// Then this much more, after the hand-over.
const REST: usize = 4 << 20;

/// The client's first write is one skb on loopback, which the inspection reads partly.
#[test]
fn inspected_head_is_not_forwarded_twice() {
    hand_over_after_inspection(60 << 10);
}

/// The inspection read every byte there was: nothing is partly read, and the flow enters the
/// maps at once, without waiting for the client to send more (here it sends more only once the
/// flow is in the maps).
#[test]
fn wholly_read_source_is_handed_over_at_once() {
    hand_over_after_inspection(INSPECTED);
}

/// The client writes `first` bytes, lb reads [`INSPECTED`] of them and sends them on, then the
/// flow goes to the data plane with a hand-over due at once; the client sends [`REST`] more
/// once the flow is in the maps. Every byte must reach the backend once.
fn hand_over_after_inspection(first: usize) {
    let p = pair();
    let (mut client, mut backend) = (p.client, p.backend);
    let data = pattern(first + REST, 77);
    client.write_all(&data[..first]).unwrap();
    // The inspection: wait for the whole first write, read its head, send it on.
    let deadline = Instant::now() + Duration::from_secs(10);
    while inq(p.client_fd.as_fd()) < first as u64 {
        assert!(Instant::now() < deadline, "the first write never arrived");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut head = vec![0u8; INSPECTED];
    // SAFETY: recv writes at most `head.len()` bytes into `head`.
    let read = unsafe {
        libc::recv(
            p.client_fd.as_raw_fd(),
            head.as_mut_ptr().cast(),
            head.len(),
            0,
        )
    };
    assert_eq!(read, INSPECTED as isize, "the inspection's read");
    let mut lb_server = std::net::TcpStream::from(p.server_fd.try_clone().unwrap());
    lb_server.set_nonblocking(false).unwrap();
    lb_server.write_all(&head).unwrap();
    drop(lb_server);

    let reader = std::thread::spawn(move || {
        let got = read_all(&mut backend);
        drop(backend);
        got
    });
    let (handed_tx, handed_rx) = mpsc::channel::<()>();
    let writer = {
        let mut client = client.try_clone().unwrap();
        let rest = data[first..].to_vec();
        std::thread::spawn(move || {
            // Half-closing before the hand-over would keep the flow on splice.
            if handed_rx.recv_timeout(Duration::from_secs(20)).is_err() {
                return;
            }
            client.write_all(&rest).unwrap();
            client.shutdown(Shutdown::Write).unwrap();
        })
    };
    let report = super::block_on_local(async move {
        let maps = thread_maps(maps_ids(), Duration::ZERO);
        tokio::task::spawn_local(maps.watcher().clone().run());
        // Registered afresh, as `sockmap::forward_after` does: readiness not known yet.
        let c = async_fd(p.client_fd).unwrap();
        let s = async_fd(p.server_fd).unwrap();
        let stop = Stop::default();
        let (bytes_in, bytes_out) = (Cell::new(0u64), Cell::new(0u64));
        let last = Cell::new(Instant::now());
        let ends = Ends::default();
        {
            // lb read from the client before: drained only if nothing is left in its queue.
            let drained = splice::drained_at_start(true, &c);
            assert_eq!(drained, first == INSPECTED);
            let mut up = pin!(pump(&c, &s, &bytes_in, &last, &ends, true, &stop, drained));
            let mut down = pin!(pump(&s, &c, &bytes_out, &last, &ends, false, &stop, true));
            // A hand-over is due at once (`--sockmap-after 0`).
            stop.request();
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut first = true;
            while first || !stop.quiet() {
                assert!(Instant::now() < deadline, "the pumps never stopped");
                if first {
                    // Each pump polled once, before any turn of the reactor.
                    tokio::select! {
                        biased;
                        e = &mut up => panic!("client->server pump ended: {e:?}"),
                        e = &mut down => panic!("server->client pump ended: {e:?}"),
                        () = std::future::ready(()) => {}
                    }
                    first = false;
                    continue;
                }
                tokio::select! {
                    e = &mut up => panic!("client->server pump ended: {e:?}"),
                    e = &mut down => panic!("server->client pump ended: {e:?}"),
                    () = tokio::time::sleep(Duration::from_millis(1)) => {}
                }
            }
        }
        let read = (INSPECTED as u64 + bytes_in.get(), bytes_out.get());
        hand_to_maps(&maps, (c, s), (last.get(), read), handed_tx).await
    });
    writer.join().unwrap();
    let got = reader.join().unwrap();
    let first_diff = got.iter().zip(&data).position(|(a, b)| a != b);
    assert!(
        got.len() == data.len() && first_diff.is_none(),
        "the backend got {} bytes of {} (first difference at {first_diff:?}): the inspected \
         head forwarded twice?",
        got.len(),
        data.len()
    );
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    assert_eq!(report.end, FlowEnd::Closed);
    assert!(
        report.spliced_in_kernel,
        "the flow was handed over to the maps"
    );
}
