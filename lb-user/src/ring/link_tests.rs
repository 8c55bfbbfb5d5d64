//! A flow's receive linked behind its send: re-armed when the link breaks (a short or failed
//! send), cancelled with the flow when the send completes after the flow stopped, and every
//! byte delivered both ways through real exchanges and a half-close.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use io_uring::cqueue;
use sha2::{Digest, Sha256};

use super::super::{install, with, Tag};
use super::{Copied, Done};
use crate::dataplane::plane_tests::pair;
use crate::dataplane::{FlowEnd, FlowTimeouts, KillSwitch};

/// A receive's completion flags for buffer `id` (`IORING_CQE_F_BUFFER`, the id above it).
fn picked(id: u16) -> u32 {
    let flags = 1 | (u32::from(id) << 16);
    assert_eq!(cqueue::buffer_select(flags), Some(id));
    flags
}

/// Runs `body` with a ring on a thread of its own whose entries are never submitted: the test
/// plays the kernel's part, completing them by hand. `body` gets the key of a flow started on
/// a real socket pair.
fn on_idle_ring(body: impl FnOnce(usize) + Send + 'static) {
    std::thread::spawn(move || {
        let rt = crate::test_runtime();
        rt.block_on(async move {
            // Not spawned, and no park hook: what the flow queues stays queued.
            let _reaper = install().unwrap();
            let p = pair();
            let done: Done = Box::new(|_| {});
            let key = with(|r| {
                r.start(
                    p.client_fd,
                    p.server_fd,
                    crate::interned::timeouts(FlowTimeouts::default()),
                    done,
                )
                .key as usize
            });
            body(key);
            drop((p.client, p.backend));
        });
    })
    .join()
    .unwrap();
}

#[test]
fn a_short_send_sends_the_rest_and_its_cancelled_linked_receive_is_re_armed() {
    on_idle_ring(|key| {
        with(|r| {
            let msg = b"0123456789";
            r.bufs.fill(7, msg);
            // Ten bytes from the client: their send, the next receive linked behind it.
            r.complete(key, Tag::Recv(0), 10, picked(7));
            let d = &r.flows[key].dirs[0];
            assert_eq!(d.held, Some((7, 0, 10)));
            assert!(d.send_in_flight && d.recv_in_flight);
            // The send falls short: the rest goes, the linked receive is cancelled.
            r.complete(key, Tag::Send(0), 4, 0);
            let d = &r.flows[key].dirs[0];
            assert_eq!(d.held, Some((7, 4, 6)), "the rest is sent");
            assert!(d.send_in_flight);
            r.complete(key, Tag::Recv(0), -libc::ECANCELED, 0);
            let d = &r.flows[key].dirs[0];
            assert!(!d.recv_in_flight, "no receive before the rest is sent");
            assert!(
                r.flows[key].stop.is_none(),
                "a cancelled receive ends nothing"
            );
            // The rest sent: the receive is armed again, every byte counted.
            r.complete(key, Tag::Send(0), 6, 0);
            let d = &r.flows[key].dirs[0];
            assert!(d.held.is_none() && !d.send_in_flight);
            assert!(d.recv_in_flight, "the cancelled receive was not re-armed");
            assert_eq!(d.bytes, 10);
        });
    });
}

#[test]
fn a_failed_send_ends_the_flow_and_its_linked_receive_goes_with_it() {
    on_idle_ring(|key| {
        with(|r| {
            r.bufs.fill(3, b"abc");
            r.complete(key, Tag::Recv(1), 3, picked(3));
            r.complete(key, Tag::Send(1), -libc::ECONNRESET, 0);
            assert!(
                matches!(
                    r.flows[key].stop,
                    Some(super::Stop::End(FlowEnd::ClientReset))
                ),
                "the client's socket failed"
            );
            // Its linked receive's cancellation, then the other direction's cancelled receive.
            r.complete(key, Tag::Recv(1), -libc::ECANCELED, 0);
            assert!(r.flows.contains(key), "receive 0 is still in flight");
            r.complete(key, Tag::Recv(0), -libc::ECANCELED, 0);
            assert!(
                !r.flows.contains(key),
                "the flow left once nothing was in flight"
            );
        });
    });
}

#[test]
fn a_receive_linked_behind_a_send_is_cancelled_once_the_send_completes_on_a_stop() {
    on_idle_ring(|key| {
        with(|r| {
            // Direction 1 sends 100 bytes, its next receive linked behind.
            r.bufs.fill(2, &[1; 100]);
            r.complete(key, Tag::Recv(1), 100, picked(2));
            // Direction 0 fills a buffer: the flow graduates. Receive 0 completed; receive 1
            // waits in its link, where a cancel finds nothing: none is asked for it now.
            r.bufs.fill(5, &[0; super::bufs::SIZE]);
            let queued = r.uring.submission().len();
            r.complete(key, Tag::Recv(0), super::bufs::SIZE as i32, picked(5));
            assert!(matches!(r.flows[key].stop, Some(super::Stop::Graduate)));
            // Only send 0.
            assert_eq!(r.uring.submission().len(), queued + 1);
            // Send 1 completes: its receive has started, and is cancelled now (after the
            // buffer's return).
            let queued = r.uring.submission().len();
            r.complete(key, Tag::Send(1), 100, 0);
            // The buffer's return is an entry only without a buffer ring.
            let returned = usize::from(r.bufs.returns_are_entries());
            assert_eq!(
                r.uring.submission().len(),
                queued + 1 + returned,
                "the buffer's return and the receive's cancel"
            );
            assert!(r.flows[key].dirs[1].recv_in_flight, "until its completion");
        });
    });
}

/// What one side wrote and read, hashed.
struct Side {
    wrote: Sha256,
    read: Sha256,
}

/// Writes chunks of 1..6000 bytes (never a whole receive buffer, so the flow stays on the
/// ring) to `to`, each read whole from `from` before the next: `rounds` of them, then a FIN.
fn one_way(mut to: TcpStream, mut from: TcpStream, rounds: usize, seed: u64) -> (Side, Side) {
    let (mut w, mut r) = (Side::new(), Side::new());
    let mut x = seed;
    for i in 0..rounds {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let len = 1 + (x >> 33) as usize % 6000;
        let chunk: Vec<u8> = (0..len).map(|j| (x >> (j % 56)) as u8 ^ i as u8).collect();
        to.write_all(&chunk).unwrap();
        w.wrote.update(&chunk);
        let mut got = vec![0; len];
        from.read_exact(&mut got).unwrap();
        r.read.update(&got);
    }
    to.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    from.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "bytes after the FIN");
    (w, r)
}

impl Side {
    fn new() -> Self {
        Self {
            wrote: Sha256::new(),
            read: Sha256::new(),
        }
    }
}

#[test]
fn every_byte_arrives_both_ways_with_linked_receives_and_half_close() {
    let p = pair();
    for s in [&p.client, &p.backend] {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    }
    let (c2, b2) = (
        p.client.try_clone().unwrap(),
        p.backend.try_clone().unwrap(),
    );
    // Client -> server 400 chunks then its FIN; server -> client 600 chunks, going on after
    // the client's FIN, then its own.
    let up = std::thread::spawn(move || one_way(p.client, p.backend, 400, 1));
    let down = std::thread::spawn(move || one_way(b2, c2, 600, 2));
    let end = Rc::new(std::cell::RefCell::new(None));
    let e = end.clone();
    let rt = super::super::thread_runtime().unwrap();
    rt.block_on(async move {
        tokio::task::spawn_local(install().unwrap());
        let done: Done = Box::new(move |out| {
            *e.borrow_mut() = Some(match out {
                Copied::Done(r) => (r.end, r.bytes_in, r.bytes_out),
                Copied::Graduated(_) => panic!("an exchange graduated"),
            });
        });
        let kill = KillSwitch::default();
        super::start(
            p.client_fd,
            p.server_fd,
            FlowTimeouts::default().into(),
            &kill,
            done,
        );
        let until = Instant::now() + Duration::from_secs(30);
        while end.borrow().is_none() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (up_w, up_r) = up.join().unwrap();
        let (down_w, down_r) = down.join().unwrap();
        assert_eq!(
            up_w.wrote.finalize(),
            up_r.read.finalize(),
            "client -> server bytes differ"
        );
        assert_eq!(
            down_w.wrote.finalize(),
            down_r.read.finalize(),
            "server -> client bytes differ"
        );
        let (why, bytes_in, bytes_out) = end.borrow().expect("the flow ended");
        assert_eq!(why, FlowEnd::Closed);
        assert!(bytes_in > 0 && bytes_out > 0);
    });
}
