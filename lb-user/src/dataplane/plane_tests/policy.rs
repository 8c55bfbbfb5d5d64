//! `--dataplane auto`'s choice of the flows that enter the maps ([`policy::enter_maps`]), on
//! real flows: several flows in turn on one thread's maps (the evidence is per thread), each
//! checked end to end (SHA-256 both ways, FINs) and for the plane it ended on.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::os::fd::OwnedFd;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::super::sockmap::policy::{self, Verdict, Way};
use super::super::sockmap::{self, drained_total, ended_counts};
use super::backpressure::inq;
use super::{maps_ids, pair, pattern, read_all, thread_maps, FlowEnd, FlowReport};
use crate::dataplane::{sockopt, FlowTimeouts, KillSwitch};

/// The policy threads' hand-over time: long enough that a flow's thread has read the bytes
/// queued before it started by then, on a busy machine too.
const WINDOW: Duration = Duration::from_millis(50);

/// What counts as bulk in these tests: less than what loopback queues at a socket nobody
/// reads (~110 KiB), so that a flow's first bytes are all there before it starts.
const BULK: u64 = 64 << 10;

/// One thread with its own maps (`auto`'s way of choosing), running the flows it is sent one
/// after the other; joined, it gives back how many flows got each verdict.
struct Thread {
    flows:
        tokio::sync::mpsc::UnboundedSender<(OwnedFd, OwnedFd, std::sync::mpsc::Sender<FlowReport>)>,
    handle: std::thread::JoinHandle<[u64; 5]>,
}

const VERDICTS: [Verdict; 5] = [
    Verdict::Enter,
    Verdict::Interactive,
    Verdict::KernelPaused,
    Verdict::CpuBusy,
    Verdict::FewCpus,
];

impl Thread {
    /// A thread that sees `cpu_pressure` (%) as the machine's CPU pressure, on a machine
    /// with enough CPUs for the kernel path.
    fn start(cpu_pressure: f32) -> Self {
        Self::start_on(cpu_pressure, policy::MIN_CPUS)
    }

    /// A thread that sees `cpu_pressure` (%) and `cpus` CPUs.
    fn start_on(cpu_pressure: f32, cpus: usize) -> Self {
        let ids = maps_ids()
            .by_evidence()
            .with_bulk_bytes(BULK)
            .with_machine(cpu_pressure, cpus);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(
            OwnedFd,
            OwnedFd,
            std::sync::mpsc::Sender<FlowReport>,
        )>();
        let handle = std::thread::spawn(move || {
            super::block_on_local(async move {
                let maps = thread_maps(ids, WINDOW);
                tokio::task::spawn_local(maps.watcher().clone().run());
                while let Some((c, s, done)) = rx.recv().await {
                    let kill = KillSwitch::default();
                    let report =
                        sockmap::forward(&maps, c, s, FlowTimeouts::default(), &kill).await;
                    let _ = done.send(report);
                }
                VERDICTS.map(|v| maps.evidence().count(v))
            })
        });
        Self { flows: tx, handle }
    }

    /// Starts a flow on the thread; its report comes on the returned channel.
    fn flow(&self, c: OwnedFd, s: OwnedFd) -> std::sync::mpsc::Receiver<FlowReport> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.flows.send((c, s, tx)).unwrap();
        rx
    }

    /// Flows that got each verdict: entered, interactive, kernel paused, CPU busy, few CPUs.
    fn counts(self) -> [u64; 5] {
        drop(self.flows);
        self.handle.join().unwrap()
    }
}

fn sha(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Writes `data` on `w` from a thread of its own, then half-closes.
fn send_all(mut w: TcpStream, data: Vec<u8>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        w.write_all(&data).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    })
}

/// Queues as many bytes at each of lb's two sockets before the flow starts, together just
/// over [`BULK`]: returns what was queued each way.
fn prefill(p: &mut super::Pair, seed: u8) -> (Vec<u8>, Vec<u8>) {
    let n = BULK as usize / 2 + 1;
    prefill_sized(p, seed, (n, n))
}

/// Queues `(up, down)` bytes at lb's client and server sockets before the flow starts (so its
/// splice phase reads them whatever the timing): returns what was queued each way.
fn prefill_sized(p: &mut super::Pair, seed: u8, (up, down): (usize, usize)) -> (Vec<u8>, Vec<u8>) {
    let want = (up + down) as u64;
    let (up, down) = (pattern(up, seed), pattern(down, seed.wrapping_add(1)));
    p.client.write_all(&up).unwrap();
    p.backend.write_all(&down).unwrap();
    let queued = std::time::Instant::now() + Duration::from_secs(10);
    while inq(std::os::fd::AsFd::as_fd(&p.client_fd)) + inq(std::os::fd::AsFd::as_fd(&p.server_fd))
        < want
    {
        assert!(
            std::time::Instant::now() < queued,
            "loopback queued the bytes"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    (up, down)
}

/// Reads `want` from `r` and checks it.
fn expect(r: &mut TcpStream, want: &[u8], what: &str) {
    let mut got = vec![0u8; want.len()];
    std::io::Read::read_exact(r, &mut got).unwrap();
    assert!(sha(&got) == sha(want), "{what} intact");
}

/// Sends `(up, down)` bytes each way at once, then both FINs, and checks that each arrives
/// whole.
fn both_ways_to_the_end(
    (client, backend): (&mut TcpStream, &mut TcpStream),
    (up, down): (usize, usize),
    seed: u8,
) {
    let up = pattern(up, seed);
    let down = pattern(down, seed.wrapping_add(1));
    let w_up = send_all(client.try_clone().unwrap(), up.clone());
    let w_down = send_all(backend.try_clone().unwrap(), down.clone());
    let at_backend = {
        let mut b = backend.try_clone().unwrap();
        std::thread::spawn(move || read_all(&mut b))
    };
    let at_client = read_all(client);
    let at_backend = at_backend.join().unwrap();
    w_up.join().unwrap();
    w_down.join().unwrap();
    assert!(sha(&at_backend) == sha(&up), "upload intact");
    assert!(sha(&at_client) == sha(&down), "download intact");
}

/// A bulk flow: [`BULK`] bytes queued both ways before it starts, a pause long enough for the
/// hand-over point, then `rest` bytes each way and both FINs; everything arrives whole.
fn bulk_flow(t: &Thread, rest: usize, seed: u8) -> FlowReport {
    let n = BULK as usize / 2 + 1;
    across_the_hand_over(t, seed, (n, n), (rest, rest)).0
}

/// A flow across the hand-over point: `first` bytes (up, down) queued before it starts, both
/// ends quiet past the hand-over time, then `rest` bytes each way and both FINs; everything
/// arrives whole and is counted. Returns its report and the cookies of lb's client and server
/// sockets.
fn across_the_hand_over(
    t: &Thread,
    seed: u8,
    first: (usize, usize),
    rest: (usize, usize),
) -> (FlowReport, (u64, u64)) {
    use std::os::fd::AsFd;
    let mut p = pair();
    let cookie = |fd: &OwnedFd| sockopt::socket_cookie(fd.as_fd()).unwrap();
    let cookies = (cookie(&p.client_fd), cookie(&p.server_fd));
    let (first_up, first_down) = prefill_sized(&mut p, seed, first);
    let done = t.flow(p.client_fd, p.server_fd);
    expect(&mut p.backend, &first_up, "first upload");
    expect(&mut p.client, &first_down, "first download");
    std::thread::sleep(WINDOW * 10);
    both_ways_to_the_end((&mut p.client, &mut p.backend), rest, seed.wrapping_add(2));
    let report = done.recv().unwrap();
    assert_eq!(report.end, FlowEnd::Closed);
    assert_eq!(
        (report.bytes_in, report.bytes_out),
        ((first.0 + rest.0) as u64, (first.1 + rest.1) as u64)
    );
    (report, cookies)
}

/// A request/answer flow: small messages both ways for longer than the hand-over time.
fn interactive_flow(t: &Thread) -> FlowReport {
    let mut p = pair();
    let done = t.flow(p.client_fd, p.server_fd);
    let mut sent = 0u64;
    for i in 0..20u8 {
        let q = pattern(100, i);
        p.client.write_all(&q).unwrap();
        let mut got = vec![0u8; q.len()];
        std::io::Read::read_exact(&mut p.backend, &mut got).unwrap();
        assert_eq!(got, q);
        let a = pattern(300, i.wrapping_add(7));
        p.backend.write_all(&a).unwrap();
        let mut got = vec![0u8; a.len()];
        std::io::Read::read_exact(&mut p.client, &mut got).unwrap();
        assert_eq!(got, a);
        sent += 400;
        std::thread::sleep(WINDOW / 5);
    }
    p.client.shutdown(Shutdown::Write).unwrap();
    assert!(read_all(&mut p.backend).is_empty());
    p.backend.shutdown(Shutdown::Write).unwrap();
    assert!(read_all(&mut p.client).is_empty());
    let report = done.recv().unwrap();
    assert_eq!(report.end, FlowEnd::Closed);
    assert_eq!(report.bytes_in + report.bytes_out, sent);
    report
}

/// `auto`: a request/answer flow that outlives the hand-over time stays on splice; a bulk one
/// moves into the maps. Both arrive whole.
#[test]
fn auto_keeps_small_flows_on_splice_and_moves_bulk_ones() {
    let t = Thread::start(0.0);
    let small = interactive_flow(&t);
    assert!(
        !small.spliced_in_kernel,
        "a request/answer flow stays on splice"
    );
    let bulk = bulk_flow(&t, 4 << 20, 11);
    assert!(bulk.spliced_in_kernel, "a bulk flow moves into the maps");
    assert_eq!(
        t.counts(),
        [1, 1, 0, 0, 0],
        "verdicts: entered, interactive, paused, busy, few CPUs"
    );
}

/// `auto` hands the maps the direction that carried more before the hand-over point
/// ([`policy::kernel_way`]), on a real hand-over: a flow whose client sent the bulk has its
/// upload in the kernel (the client socket is the program's source, the download stays on
/// splice), and the mirror flow its download. Every byte of both arrives.
#[test]
fn auto_hands_the_busier_direction_to_the_kernel() {
    for (way, seed) in [(Way::Up, 41u8), (Way::Down, 45)] {
        let t = Thread::start(0.0);
        let (big, small) = (BULK as usize + 1, 1024);
        let first = match way {
            Way::Up => (big, small),
            Way::Down => (small, big),
        };
        let rest = (first.0 * 16, first.1 * 16);
        let (report, (client_cookie, server_cookie)) = across_the_hand_over(&t, seed, first, rest);
        assert!(
            report.spliced_in_kernel,
            "{way:?}: the flow moved into the maps"
        );
        // The program counted for a kernel source only ([`sockmap::ended_counts`]).
        let (from_client, from_server) = (ended_counts(client_cookie), ended_counts(server_cookie));
        let (kernel, spliced) = match way {
            Way::Up => (from_client, from_server),
            Way::Down => (from_server, from_client),
        };
        assert!(
            kernel.is_some_and(|c| c.bytes > 0),
            "{way:?}: the busier direction went through the program: {kernel:?}"
        );
        assert!(
            spliced.is_none(),
            "{way:?}: the other direction stayed on splice: {spliced:?}"
        );
        assert_eq!(
            t.counts(),
            [1, 0, 0, 0, 0],
            "verdicts: entered, interactive, paused, busy, few CPUs"
        );
    }
}

/// `auto`: once an in-kernel direction of the thread paused (a receiver that stopped reading
/// ran its credit out), the next bulk flow stays on splice; every byte of both arrives.
#[test]
fn auto_keeps_new_flows_off_the_maps_after_a_pause() {
    let t = Thread::start(0.0);
    let drained_before = drained_total().load(std::sync::atomic::Ordering::Relaxed);
    // A bulk flow into the maps (its download: the two ways carried as much, `kernel_way`),
    // then a push of 32 MiB at a client that reads nothing for a while: far more than the
    // credit, so the direction pauses.
    let mut p = pair();
    let (first_up, first_down) = prefill(&mut p, 21);
    let done = t.flow(p.client_fd, p.server_fd);
    expect(&mut p.backend, &first_up, "first upload");
    expect(&mut p.client, &first_down, "first download");
    std::thread::sleep(WINDOW * 10);
    let push = pattern(32 << 20, 22);
    let w = send_all(p.backend.try_clone().unwrap(), push.clone());
    std::thread::sleep(Duration::from_millis(500));
    assert!(sha(&read_all(&mut p.client)) == sha(&push), "push intact");
    w.join().unwrap();
    p.client.shutdown(Shutdown::Write).unwrap();
    assert!(read_all(&mut p.backend).is_empty());
    let report = done.recv().unwrap();
    assert_eq!(report.end, FlowEnd::Closed);
    assert!(
        report.spliced_in_kernel,
        "the first flow moved into the maps"
    );
    assert!(
        drained_total().load(std::sync::atomic::Ordering::Relaxed) > drained_before,
        "the push paused the direction"
    );
    // Within HOLD_OFF of that pause: the next bulk flow stays on splice.
    let next = bulk_flow(&t, 4 << 20, 23);
    assert!(!next.spliced_in_kernel, "no flow enters after a pause");
    assert_eq!(
        t.counts(),
        [1, 0, 1, 0, 0],
        "verdicts: entered, interactive, paused, busy, few CPUs"
    );
}

/// `auto`: while the CPUs are contended, a bulk flow stays on splice, whole.
#[test]
fn auto_keeps_bulk_flows_on_splice_while_the_cpus_are_contended() {
    let t = Thread::start(95.0);
    let bulk = bulk_flow(&t, 4 << 20, 31);
    assert!(!bulk.spliced_in_kernel, "no flow enters on busy CPUs");
    assert_eq!(
        t.counts(),
        [0, 0, 0, 1, 0],
        "verdicts: entered, interactive, paused, busy, few CPUs"
    );
}

/// `auto` on a machine with fewer CPUs than the kernel path needs (this one has two): a bulk
/// flow stays on splice, whole.
#[test]
fn auto_keeps_bulk_flows_on_splice_with_two_cpus() {
    let t = Thread::start_on(0.0, 2);
    let bulk = bulk_flow(&t, 4 << 20, 41);
    assert!(!bulk.spliced_in_kernel, "no flow enters with two CPUs");
    assert_eq!(
        t.counts(),
        [0, 0, 0, 0, 1],
        "verdicts: entered, interactive, paused, busy, few CPUs"
    );
}
