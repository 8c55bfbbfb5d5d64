//! The ring's turn under pressure, where a flow's wake-up or bytes could be lost: receives
//! starved of buffers, completions past a full completion queue, and a slot closed with a
//! reset as the next flow takes it. Each test forces its condition and checks that every
//! byte arrives (SHA-256) and every flow ends.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use io_uring::opcode;
use sha2::{Digest, Sha256};

use super::flow_tests::{closed, on_ring_thread_sized, recorder, Ends};
use super::{start, Copied, Done, Sizes, Tag, SIZES};
use crate::dataplane::plane_tests::{pair, Pair};
use crate::dataplane::{FlowEnd, FlowTimeouts, KillSwitch};

/// How long a side of the test waits for bytes that should come at once.
const WAIT: Duration = Duration::from_secs(5);

/// Flow `i`'s request and answer: sizes and bytes of their own, below a buffer (a full one
/// would make the flow graduate).
fn request(i: usize) -> Vec<u8> {
    (0..1000 + 37 * i).map(|k| (i * 7 + k) as u8).collect()
}

fn answer(i: usize) -> Vec<u8> {
    (0..3000 + 53 * i).map(|k| (i * 13 + k * 3) as u8).collect()
}

fn sha(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// The test's ends of flow `i`: its client has already sent its request (no FIN yet), so it
/// waits in lb's socket when the flow starts.
struct Sides {
    i: usize,
    client: TcpStream,
    backend: TcpStream,
}

/// Makes pairs `range` whose clients sent their request; the test's ends and lb's.
fn pairs(range: std::ops::Range<usize>) -> (Vec<Sides>, Vec<Pair>) {
    let mut test = Vec::new();
    let mut lb = Vec::new();
    for i in range {
        let mut p = pair();
        p.client.write_all(&request(i)).unwrap();
        let (client, backend) = (
            p.client.try_clone().unwrap(),
            p.backend.try_clone().unwrap(),
        );
        test.push(Sides { i, client, backend });
        lb.push(p);
    }
    (test, lb)
}

/// On another thread, each flow in turn: the backend reads the request, the client's FIN
/// follows it, the backend answers with a FIN of its own, and the client reads the answer to
/// its end. Err says what did not arrive.
fn talk(ends: Vec<Sides>) -> JoinHandle<Result<(), String>> {
    std::thread::spawn(move || {
        for Sides { i, client, backend } in ends {
            let (mut c, mut b) = (client, backend);
            c.set_read_timeout(Some(WAIT)).unwrap();
            b.set_read_timeout(Some(WAIT)).unwrap();
            let want = request(i);
            let mut got = vec![0u8; want.len()];
            b.read_exact(&mut got)
                .map_err(|e| format!("flow {i}: the backend's request: {e}"))?;
            c.shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            b.read_to_end(&mut rest)
                .map_err(|e| format!("flow {i}: the client's FIN: {e}"))?;
            got.extend(rest);
            if sha(&got) != sha(&want) {
                return Err(format!(
                    "flow {i}: request not intact ({} bytes)",
                    got.len()
                ));
            }
            b.write_all(&answer(i)).unwrap();
            b.shutdown(Shutdown::Write).unwrap();
            let mut got = Vec::new();
            c.read_to_end(&mut got)
                .map_err(|e| format!("flow {i}: the client's answer: {e}"))?;
            if sha(&got) != sha(&answer(i)) {
                return Err(format!("flow {i}: answer not intact ({} bytes)", got.len()));
            }
        }
        Ok(())
    })
}

/// Every flow talked and ended, closed by both sides.
fn check(talker: JoinHandle<Result<(), String>>, ends: &Ends, first: usize) {
    talker.join().unwrap().unwrap();
    for (i, end) in ends.borrow().iter().enumerate().skip(first) {
        let (end, _) = end.unwrap_or_else(|| panic!("flow {i} did not end"));
        assert_eq!(end, FlowEnd::Closed, "flow {i}");
    }
}

/// Starts every flow of `lb` on this thread's ring, flow `i` recorded as `i`.
fn start_all(lb: Vec<Pair>, ends: &Ends) {
    for (i, p) in lb.into_iter().enumerate() {
        let t = FlowTimeouts::default();
        start(
            p.client_fd,
            p.server_fd,
            t.into(),
            &KillSwitch::default(),
            recorder(ends, i),
        );
    }
}

/// A pool of one buffer. The kernel picks a receive's buffer before it reads, so receives
/// starve with no byte waiting (a flow's server side, here) as well as with bytes: flow 0's
/// client side takes the buffer, every other receive starves; the buffer given back must
/// reach, in turn, every receive that has bytes, even when the first re-armed has none
/// (re-armed as a plain receive it waits in poll and the buffer is back in the pool, with no
/// completion to say so).
#[test]
fn starved_receives_are_rearmed_while_buffers_are_free() {
    starved_receives_rearmed(true);
}

/// The same where buffers go back as `IORING_OP_PROVIDE_BUFFERS` entries (kernels before
/// 5.19, without provided-buffer rings).
#[test]
fn starved_receives_are_rearmed_with_buffers_given_back_as_entries() {
    starved_receives_rearmed(false);
}

fn starved_receives_rearmed(buf_ring: bool) {
    const N: usize = 8;
    let (test, lb) = pairs(0..N);
    let talker = talk(test);
    let sizes = Sizes {
        bufs: 1,
        buf_ring,
        ..SIZES
    };
    let ends = on_ring_thread_sized(sizes, N, Duration::from_secs(20), move |ends| {
        start_all(lb, ends);
    });
    check(talker, &ends, 0);
}

/// A completion queue of 8 entries, filled by completions nobody waits for (as cancels,
/// closes and buffers given back can fill it) before the flows' receives complete: theirs
/// wait in the kernel's overflow list, which only an `io_uring_enter` with GETEVENTS
/// empties; the loop reads the queue empty and must fetch them.
#[test]
fn completions_past_a_full_queue_are_fetched() {
    const N: usize = 4;
    let (test, lb) = pairs(0..N);
    let talker = talk(test);
    let sizes = Sizes {
        sq: 8,
        cq: 8,
        ..SIZES
    };
    let ends = on_ring_thread_sized(sizes, N, Duration::from_secs(20), move |ends| {
        super::with(|r| {
            for _ in 0..16 {
                r.push(
                    &opcode::Nop::new()
                        .build()
                        .user_data(Tag::Ignored.user_data(0)),
                );
            }
            // Those already submitted filled the queue.
            assert!(r.uring.completion().is_full() || r.uring.submission().cq_overflow());
        });
        start_all(lb, ends);
    });
    check(talker, &ends, 0);
}

/// Flow 0 is killed (lb closes first: its server gets `SO_LINGER` 0, then its slots are
/// closed); flow 1 starts when flow 0 leaves the ring, in the same turn, so it takes flow 0's
/// slab key and so its slots, its entries queued right behind flow 0's last ones. Flow 1 must
/// keep its sockets: flow 0's close must have run before flow 1's sockets enter the slots.
#[test]
fn a_slot_closed_with_a_reset_is_not_the_next_flows() {
    // Direct descriptors (the slots) are on unless `LB_DIRECT_DESCRIPTORS=0`.
    std::env::set_var(super::direct::SWITCH, "1");
    let first = pair();
    let (mut c0, mut b0) = (first.client, first.backend);
    let (test, mut lb) = pairs(1..2);
    let next = lb.pop().unwrap();
    let talker = talk(test);
    let ends = on_ring_thread_sized(SIZES, 2, Duration::from_secs(20), move |ends| {
        let kill = Rc::new(KillSwitch::default());
        let next = RefCell::new(Some(next));
        let e = ends.clone();
        let first_done: Done = Box::new(move |out| {
            let Copied::Done(r) = out else {
                panic!("flow 0 graduated")
            };
            e.borrow_mut()[0] = Some((r.end, Instant::now()));
            let p = next.borrow_mut().take().unwrap();
            // Started by the loop, between flow 0's leaving and the turn's submission.
            start(
                p.client_fd,
                p.server_fd,
                FlowTimeouts::default().into(),
                &KillSwitch::default(),
                recorder(&e, 1),
            );
        });
        start(
            first.client_fd,
            first.server_fd,
            FlowTimeouts::default().into(),
            &kill,
            first_done,
        );
        kill.kill();
    });
    let (end0, _) = ends.borrow()[0].expect("flow 0 ended");
    assert_eq!(end0, FlowEnd::Killed);
    check(talker, &ends, 1);
    // Flow 0's close was lb's, first: a reset to its server, a FIN to its client.
    let mut buf = [0u8; 8];
    b0.set_read_timeout(Some(WAIT)).unwrap();
    let server_saw = b0.read(&mut buf);
    assert!(
        server_saw
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "flow 0's server got {server_saw:?}, not a reset"
    );
    assert!(closed(&mut c0), "flow 0's client not closed");
}
