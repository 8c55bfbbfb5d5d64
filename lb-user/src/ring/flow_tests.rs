//! Flows on the ring with no task waiting for them: their idle timeouts come from the thread's
//! timer queue, a kill reaches them through their [`KillSwitch`], and their end reaches their
//! [`Done`].

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{start, Copied, Done};
use crate::dataplane::plane_tests::{pair, Pair};
use crate::dataplane::{FlowEnd, FlowTimeouts, KillSwitch};

#[expect(clippy::unnecessary_wraps, reason = "timeouts are Option<Duration>")]
fn ms(v: u64) -> Option<Duration> {
    Some(Duration::from_millis(v))
}

/// How each flow ended (its report's end) and when, by flow number.
pub(super) type Ends = Rc<RefCell<Vec<Option<(FlowEnd, Instant)>>>>;

pub(super) fn recorder(ends: &Ends, i: usize) -> Done {
    let ends = ends.clone();
    Box::new(move |out| {
        let end = match out {
            Copied::Done(r) => r.end,
            Copied::Graduated(_) => panic!("flow {i} graduated"),
        };
        ends.borrow_mut()[i] = Some((end, Instant::now()));
    })
}

/// Runs `body` on a thread set up as lb's (a ring, entries submitted when the loop parks),
/// then waits for every flow `body` started to end, at most `within`.
fn on_ring_thread(n: usize, within: Duration, body: impl FnOnce(&Ends) + 'static) -> Ends {
    on_ring_thread_sized(super::SIZES, n, within, body)
}

/// [`on_ring_thread`] on a ring of `sizes`.
pub(super) fn on_ring_thread_sized(
    sizes: super::Sizes,
    n: usize,
    within: Duration,
    body: impl FnOnce(&Ends) + 'static,
) -> Ends {
    let rt = super::thread_runtime().unwrap();
    let ends: Ends = Rc::new(RefCell::new(vec![None; n]));
    let e = ends.clone();
    rt.block_on(async move {
        tokio::task::spawn_local(super::install_sized(sizes).unwrap());
        body(&e);
        let until = Instant::now() + within;
        while e.borrow().iter().any(Option::is_none) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    ends
}

/// The peer sees the connection closed (EOF or reset) within a few seconds.
pub(super) fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

#[test]
fn idle_timeouts_end_flows_that_have_no_task() {
    let started = Instant::now();
    // 0: `timeout client` 150 ms; 1: `timeout server` 100 ms, the shorter side; 2: the client
    // sent its FIN, then `timeout client-fin` 100 ms, `timeout client` 10 s.
    let t = [
        FlowTimeouts {
            client: ms(150),
            server: ms(5000),
            ..Default::default()
        },
        FlowTimeouts {
            client: ms(5000),
            server: ms(100),
            ..Default::default()
        },
        FlowTimeouts {
            client: ms(10_000),
            server: ms(10_000),
            client_fin: ms(100),
            ..Default::default()
        },
    ];
    let pairs: Vec<Pair> = (0..3).map(|_| pair()).collect();
    let mut ends_of_test: Vec<(TcpStream, TcpStream)> = Vec::new();
    let mut lb_ends = Vec::new();
    for p in pairs {
        ends_of_test.push((p.client, p.backend));
        lb_ends.push((p.client_fd, p.server_fd));
    }
    // Flow 2's client half-closes at once: its FIN is passed on.
    ends_of_test[2].0.shutdown(Shutdown::Write).unwrap();
    let kills: Vec<Rc<KillSwitch>> = (0..3).map(|_| Rc::default()).collect();
    let k = kills.clone();
    let ends = on_ring_thread(3, Duration::from_secs(10), move |ends| {
        for (i, (c, s)) in lb_ends.into_iter().enumerate() {
            start(c, s, t[i].into(), &k[i], recorder(ends, i));
        }
    });
    let ends = ends.borrow();
    let want = [
        (FlowEnd::ClientTimeout, 150),
        (FlowEnd::ServerTimeout, 100),
        (FlowEnd::ClientTimeout, 100),
    ];
    for (i, (end, at_least)) in want.into_iter().enumerate() {
        let (got, at) = ends[i].unwrap_or_else(|| panic!("flow {i} did not end"));
        assert_eq!(got, end, "flow {i}");
        let after = at - started;
        assert!(
            after >= Duration::from_millis(at_least),
            "flow {i} ended after {after:?}, before its timeout"
        );
        assert!(
            after < Duration::from_secs(5),
            "flow {i} ended after {after:?}"
        );
    }
    for (i, (mut c, mut b)) in ends_of_test.into_iter().enumerate() {
        assert!(closed(&mut c), "flow {i}: client not closed");
        assert!(closed(&mut b), "flow {i}: backend not closed");
    }
}

#[test]
fn a_kill_ends_a_flow_on_the_ring_and_activity_defers_its_timeout() {
    let (p0, p1) = (pair(), pair());
    let (mut c0, mut b0) = (p0.client, p0.backend);
    let (mut c1, mut b1) = (p1.client, p1.backend);
    let kill = Rc::new(KillSwitch::default());
    let t = FlowTimeouts {
        client: ms(400),
        server: ms(400),
        ..Default::default()
    };
    let k = kill.clone();
    // The test's side talks through flow 1 from another thread while the ring runs: each
    // exchange defers its timeout.
    let talker = std::thread::spawn(move || {
        for i in 0..6u8 {
            std::thread::sleep(Duration::from_millis(150));
            c1.write_all(&[i; 100]).unwrap();
            let mut got = [0u8; 100];
            b1.read_exact(&mut got).unwrap();
            assert_eq!(got, [i; 100]);
        }
        (c1, b1)
    });
    let started = Instant::now();
    let ends = on_ring_thread(2, Duration::from_secs(10), move |ends| {
        start(
            p0.client_fd,
            p0.server_fd,
            FlowTimeouts::default().into(),
            &k,
            recorder(ends, 0),
        );
        start(
            p1.client_fd,
            p1.server_fd,
            t.into(),
            &KillSwitch::default(),
            recorder(ends, 1),
        );
        let k = k.clone();
        tokio::task::spawn_local(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            k.kill();
        });
    });
    let (mut c1, mut b1) = talker.join().unwrap();
    let ends = ends.borrow();
    let (end0, at0) = ends[0].expect("the killed flow ended");
    assert_eq!(end0, FlowEnd::Killed);
    assert!(at0 - started < Duration::from_secs(2));
    let (end1, at1) = ends[1].expect("the idle flow ended");
    assert_eq!(end1, FlowEnd::ClientTimeout);
    // 6 exchanges 150 ms apart, then 400 ms of silence.
    assert!(
        at1 - started >= Duration::from_millis(900 + 400),
        "ended after {:?} despite its activity",
        at1 - started
    );
    assert!(closed(&mut c0) && closed(&mut b0));
    assert!(closed(&mut c1) && closed(&mut b1));
}

#[test]
fn many_flows_timers_come_due_in_their_order() {
    const N: usize = 60;
    let pairs: Vec<Pair> = (0..N).map(|_| pair()).collect();
    let mut keep = Vec::new();
    let mut lb_ends = Vec::new();
    for p in pairs {
        keep.push((p.client, p.backend));
        lb_ends.push((p.client_fd, p.server_fd));
    }
    // Deadlines spread over 1.2 s, started in a shuffled order.
    let limit = |i: usize| Duration::from_millis(200 + 17 * ((i * 37) % N) as u64);
    let started = Instant::now();
    let ends = on_ring_thread(N, Duration::from_secs(20), move |ends| {
        for (i, (c, s)) in lb_ends.into_iter().enumerate() {
            let t = FlowTimeouts {
                client: Some(limit(i)),
                ..Default::default()
            };
            start(c, s, t.into(), &KillSwitch::default(), recorder(ends, i));
        }
    });
    let ends = ends.borrow();
    let mut by_deadline: Vec<usize> = (0..N).collect();
    by_deadline.sort_by_key(|&i| limit(i));
    let mut last = started;
    for i in by_deadline {
        let (end, at) = ends[i].unwrap_or_else(|| panic!("flow {i} did not end"));
        assert_eq!(end, FlowEnd::ClientTimeout);
        assert!(at - started >= limit(i), "flow {i} ended early");
        assert!(at - started < limit(i) + Duration::from_secs(3));
        assert!(at >= last, "flow {i} ended before a flow due earlier");
        last = at;
    }
    for (mut c, _) in keep {
        assert!(closed(&mut c));
    }
}

/// fds of this process that are the socket with inode `ino`.
fn fds_of(ino: u64) -> usize {
    let name = format!("socket:[{ino}]");
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_str() == Some(&name)))
        .count()
}

#[test]
fn a_flow_on_the_ring_holds_no_fd_and_closes_as_haproxy() {
    use std::os::unix::fs::MetadataExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    // Direct descriptors are on unless `LB_DIRECT_DESCRIPTORS=0` (see `direct::SWITCH`); the
    // ring reads the switch when this test's thread installs it.
    std::env::set_var(super::direct::SWITCH, "1");
    let lb = pair();
    let ino = |fd: &std::os::fd::OwnedFd| {
        use std::os::fd::AsRawFd;
        std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap()
            .ino()
    };
    let inodes = [ino(&lb.client_fd), ino(&lb.server_fd)];
    let (mut c, mut b) = (lb.client, lb.backend);
    // The test's side talks through the flow from another thread while the ring runs.
    let talked = Arc::new(AtomicBool::new(false));
    let flag = talked.clone();
    let talker = std::thread::spawn(move || {
        let mut got = [0u8; 4];
        c.write_all(b"ping").unwrap();
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        b.write_all(b"pong").unwrap();
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pong");
        flag.store(true, Ordering::Release);
        (c, b)
    });
    let held = Rc::new(RefCell::new(None));
    let h = held.clone();
    let ends = on_ring_thread(1, Duration::from_secs(20), move |ends| {
        let kill = Rc::new(KillSwitch::default());
        start(
            lb.client_fd,
            lb.server_fd,
            FlowTimeouts::default().into(),
            &kill,
            recorder(ends, 0),
        );
        tokio::task::spawn_local(async move {
            let until = Instant::now() + Duration::from_secs(10);
            while !talked.load(Ordering::Acquire) && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Bytes went both ways: the flow is on the ring, its sockets in its fixed table.
            *h.borrow_mut() = Some(inodes.map(fds_of));
            kill.kill();
        });
    });
    let (mut c, mut b) = talker.join().unwrap();
    assert_eq!(
        *held.borrow(),
        Some([0, 0]),
        "fds of lb's client and server sockets while the flow was on the ring"
    );
    let (end, _) = ends.borrow()[0].expect("the killed flow ended");
    assert_eq!(end, FlowEnd::Killed);
    // lb closed first: the server gets a reset (`SO_LINGER` 0, set through the ring), so that
    // lb's port keeps no `TIME_WAIT`; the client a FIN.
    let mut buf = [0u8; 8];
    let server_saw = b.read(&mut buf);
    assert!(
        server_saw
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the server got {server_saw:?}, not a reset"
    );
    assert_eq!(c.read(&mut buf).unwrap(), 0, "the client got its FIN");
}

#[test]
fn a_short_exchange_passes_its_last_fin_with_the_close() {
    // HAProxy passes the first FIN with a `shutdown(2)` and the last with its close. On the
    // ring, `IORING_OP_SHUTDOWN` is a wake-up of an io-wq worker: the first FIN goes by
    // `shutdown(2)` on a lent fd, and the last by the close. Either side may close first;
    // bytes sent after the first FIN still arrive, and both peers see a FIN, not a reset.
    for server_first in [false, true] {
        let lb = pair();
        let (mut c, mut b) = (lb.client, lb.backend);
        let request: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
        let answer: Vec<u8> = (0..5000u32).map(|i| (i * 13) as u8).collect();
        let (req, ans) = (request.clone(), answer.clone());
        let talker = std::thread::spawn(move || {
            let read_all = |s: &mut TcpStream| {
                let mut got = Vec::new();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                s.read_to_end(&mut got).map(|_| got)
            };
            if server_first {
                b.write_all(&ans).unwrap();
                b.shutdown(Shutdown::Write).unwrap();
                let got_ans = read_all(&mut c).unwrap();
                c.write_all(&req).unwrap();
                c.shutdown(Shutdown::Write).unwrap();
                (read_all(&mut b).unwrap(), got_ans, c, b)
            } else {
                c.write_all(&req).unwrap();
                c.shutdown(Shutdown::Write).unwrap();
                let got_req = read_all(&mut b).unwrap();
                b.write_all(&ans).unwrap();
                b.shutdown(Shutdown::Write).unwrap();
                (got_req, read_all(&mut c).unwrap(), c, b)
            }
        });
        let ends = on_ring_thread(1, Duration::from_secs(10), move |ends| {
            super::copy::SHUTDOWNS.with(|s| s.set((0, 0)));
            start(
                lb.client_fd,
                lb.server_fd,
                FlowTimeouts::default().into(),
                &KillSwitch::default(),
                recorder(ends, 0),
            );
        });
        // The flow ended (`on_ring_thread` waited for it), on this thread's ring.
        let shutdowns = super::copy::SHUTDOWNS.with(std::cell::Cell::get);
        let (got_req, got_ans, mut c, mut b) = talker.join().unwrap();
        let which = if server_first { "server" } else { "client" };
        assert!(
            got_req == request,
            "{which} first: the request changed on the way"
        );
        assert!(
            got_ans == answer,
            "{which} first: the answer changed on the way"
        );
        let (end, _) = ends.borrow()[0].expect("the flow ended");
        assert_eq!(end, FlowEnd::Closed, "{which} first");
        assert_eq!(
            shutdowns,
            (1, 0),
            "{which} first: FINs passed by a shutdown, and of those by the ring's"
        );
        let mut buf = [0u8; 8];
        for (name, s) in [("client", &mut c), ("server", &mut b)] {
            let saw = s.read(&mut buf);
            assert!(
                matches!(saw, Ok(0)),
                "{which} first: the {name} got {saw:?} after its FIN, not a clean end"
            );
        }
    }
}
