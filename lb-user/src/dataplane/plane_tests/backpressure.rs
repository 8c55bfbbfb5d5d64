//! Backpressure: a direction whose receiver stops reading holds a bounded amount in lb and the
//! kernel (the sockmap plane's `backlog` plus the sockets' own buffers, as splice holds its pipe
//! plus the same buffers), and when the receiver reads again every byte arrives, in order, with
//! FIN and half-close passed on.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::super::sockmap::drained_total;
use super::super::sockopt;
use super::{pair, pattern, run_flow_full, FlowEnd, FlowTimeouts, Plane, Way};

/// What a client pushes at a receiver that doesn't read.
const PUSH: usize = 256 << 20;

/// `SIOCINQ`: bytes in a socket's receive queue not read yet.
pub(super) fn inq(fd: BorrowedFd<'_>) -> u64 {
    sockopt::inq(fd).unwrap_or_else(|e| panic!("SIOCINQ: {e}"))
}

/// `SO_RCVBUF` or `SO_SNDBUF`: the kernel's limit on that socket buffer (bytes of memory,
/// which is more than the payload it holds).
fn sockbuf(fd: BorrowedFd<'_>, opt: libc::c_int) -> u64 {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes one c_int and its length.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&raw mut v).cast(),
            &raw mut len,
        )
    };
    assert_eq!(rc, 0);
    u64::try_from(v).unwrap_or(0)
}

/// A duplicate of one of lb's sockets, to measure it. Dropped once measured: the flow's last
/// FIN is passed on by lb's close of its socket (`PassFin::ByClose`), which a duplicate left
/// open would hold back.
fn dup(fd: &OwnedFd) -> OwnedFd {
    fd.try_clone().unwrap()
}

/// Writes `data` into `w` without blocking until it is all written or no write succeeded for
/// `stall`; returns the bytes written.
fn push_until_stalled(w: &mut TcpStream, data: &[u8], stall: Duration) -> usize {
    w.set_nonblocking(true).unwrap();
    let mut sent = 0;
    let mut moved = Instant::now();
    let deadline = Instant::now() + Duration::from_mins(1);
    while sent < data.len() && moved.elapsed() < stall && Instant::now() < deadline {
        match w.write(&data[sent..(sent + (1 << 20)).min(data.len())]) {
            Ok(n) => {
                sent += n;
                moved = Instant::now();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("push: {e}"),
        }
    }
    w.set_nonblocking(false).unwrap();
    sent
}

/// Reads `r` to EOF; returns the byte count and SHA-256.
pub(super) fn read_hashed(r: &mut TcpStream) -> (usize, [u8; 32]) {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0;
    loop {
        let got = r.read(&mut buf).unwrap();
        if got == 0 {
            return (n, h.finalize().into());
        }
        h.update(&buf[..got]);
        n += got;
    }
}

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// `len` pseudo-random bytes (xorshift64*): unlike [`pattern`], no 32-byte run repeats within a
/// test's stream, so a difference can be located (see [`stream_difference`]).
fn unique_pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// How `got` departs from `want` (`None`: equal): for each of the first few departures, the
/// offset in both streams and whether bytes are missing (a gap), repeated, or foreign. Both
/// streams must come from [`unique_pattern`].
fn stream_difference(got: &[u8], want: &[u8]) -> Option<String> {
    const PROBE: usize = 32;
    const WINDOW: usize = 16 << 20;
    if got == want {
        return None;
    }
    let mut out = format!("got {} bytes, want {}:", got.len(), want.len());
    let (mut g, mut w) = (0, 0);
    for _ in 0..4 {
        let same = got[g..]
            .iter()
            .zip(&want[w..])
            .take_while(|(a, b)| a == b)
            .count();
        let (at_g, at_w) = (g + same, w + same);
        if at_g == got.len() {
            let _ = write!(
                out,
                " stream ends at {at_g} ({} of want missing);",
                want.len() - at_w
            );
            return Some(out);
        }
        if at_w == want.len() {
            let _ = write!(
                out,
                " {} extra bytes after want's end at {at_g};",
                got.len() - at_g
            );
            return Some(out);
        }
        let probe = &got[at_g..(at_g + PROBE).min(got.len())];
        let from = at_w.saturating_sub(WINDOW);
        let to = (at_w + WINDOW).min(want.len());
        let Some(p) = want[from..to]
            .windows(probe.len())
            .position(|win| win == probe)
            .map(|p| p + from)
        else {
            let _ = write!(
                out,
                " at {at_g} (want {at_w}) bytes found nowhere near in want;"
            );
            return Some(out);
        };
        if p > at_w {
            let _ = write!(
                out,
                " at {at_g} a gap: want {at_w}..{p} ({} bytes) missing;",
                p - at_w
            );
        } else {
            let _ = write!(
                out,
                " at {at_g} a repeat: want {p}..{at_w} ({} bytes) again;",
                at_w - p
            );
        }
        (g, w) = (at_g, p);
    }
    out.push_str(" (more not shown)");
    Some(out)
}

/// What lb may hold of one direction whose receiver stopped reading, besides the sockets'
/// own buffers: the sockmap plane's backlog bound and its drain buffer, or splice's pipe. The
/// hand-over plane spliced first, but hands over only with an empty pipe.
fn own_bound(plane: Plane) -> u64 {
    match plane {
        Plane::Splice => 1 << 20,
        // One ring buffer, then splice's pipe once the flow graduated.
        Plane::Ring => (1 << 20) + 16 * 1024,
        Plane::Sockmap(_) | Plane::SockmapHandOver => {
            lb_common::DEFAULT_BACKLOG + super::super::sockmap::DRAIN_CHUNK as u64
        }
        // Wherever the stall finds it: on the ring, on splice, or in the maps.
        Plane::RingSockmap => own_bound(Plane::Ring).max(own_bound(Plane::SockmapHandOver)),
    }
}

/// 1 KiB, an idle moment (a hand-over plane moves into the maps then), then a push of 256 MiB
/// at a receiver that reads nothing: the push must stall, with what lb took (what the writer
/// wrote, less its own unsent queue and the receiver's unread queue) within lb's bound plus
/// its two sockets' buffer limits. Then the receiver reads everything: every byte arrives,
/// SHA-256 equal, FIN passed on; then the other way round closes.
fn push_at_a_stalled_reader(plane: Plane, upstream: bool) {
    let p = pair();
    let (lb_src, lb_dst) = if upstream {
        (dup(&p.client_fd), dup(&p.server_fd))
    } else {
        (dup(&p.server_fd), dup(&p.client_fd))
    };
    let flow = run_flow_full(
        plane,
        (p.client_fd, p.server_fd),
        FlowTimeouts::default(),
        None,
        None,
        None,
    );
    let (mut writer, mut reader) = if upstream {
        (p.client, p.backend)
    } else {
        (p.backend, p.client)
    };
    let data = pattern(PUSH, 7);
    writer.write_all(&data[..1024]).unwrap();
    let mut first = vec![0u8; 1024];
    reader.read_exact(&mut first).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let written = 1024 + push_until_stalled(&mut writer, &data[1024..], Duration::from_secs(1));
    let unsent = sockopt::outq(writer.as_fd()).unwrap();
    let unread = inq(reader.as_fd());
    let held = written as u64 - unsent - unread - 1024;
    let buffers =
        sockbuf(lb_src.as_fd(), libc::SO_RCVBUF) + sockbuf(lb_dst.as_fd(), libc::SO_SNDBUF);
    // One skb of slack: TCP admits the segment that crosses the receive buffer's limit.
    let bound = own_bound(plane) + buffers + (64 << 10);
    eprintln!(
        "{plane:?} {}: writer wrote {} KiB (receiver holds {} KiB, writer's queue {} KiB); \
         lb held {} KiB; bound {} KiB (own {} KiB + socket buffers {} KiB + 64 KiB)",
        if upstream { "up" } else { "down" },
        written >> 10,
        unread >> 10,
        unsent >> 10,
        held >> 10,
        bound >> 10,
        own_bound(plane) >> 10,
        buffers >> 10,
    );
    assert!(
        written < PUSH,
        "the whole push went through a receiver that reads nothing"
    );
    assert!(
        held <= bound,
        "lb held {held} bytes, more than its bound {bound}"
    );
    drop((lb_src, lb_dst));

    let rest = std::thread::spawn(move || {
        writer.write_all(&data[written..]).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
        (writer, sha(&data[1024..]))
    });
    let (n, got) = read_hashed(&mut reader);
    let (mut writer, want) = rest.join().unwrap();
    assert_eq!(n, PUSH - 1024, "bytes after the first KiB");
    assert!(got == want, "SHA-256 of what arrived differs");
    reader.write_all(b"bye").unwrap();
    reader.shutdown(Shutdown::Write).unwrap();
    let mut bye = Vec::new();
    writer.read_to_end(&mut bye).unwrap();
    assert_eq!(bye, b"bye");
    let report = flow.join().unwrap();
    assert_eq!(report.end, FlowEnd::Closed);
    let (fwd, back) = if upstream {
        (report.bytes_in, report.bytes_out)
    } else {
        (report.bytes_out, report.bytes_in)
    };
    assert_eq!((fwd, back), (PUSH as u64, 3));
}

#[test]
fn push_at_a_stalled_backend_is_bounded_sockmap() {
    push_at_a_stalled_reader(Plane::Sockmap(Way::Up), true);
}

#[test]
fn push_at_a_stalled_backend_is_bounded_sockmap_hand_over() {
    push_at_a_stalled_reader(Plane::SockmapHandOver, true);
}

#[test]
fn push_at_a_stalled_backend_is_bounded_splice() {
    push_at_a_stalled_reader(Plane::Splice, true);
}

#[test]
fn push_at_a_stalled_client_is_bounded_sockmap() {
    push_at_a_stalled_reader(Plane::Sockmap(Way::Down), false);
}

#[test]
fn push_at_a_stalled_client_is_bounded_sockmap_hand_over() {
    push_at_a_stalled_reader(Plane::SockmapHandOver, false);
}

/// Reads `r` to EOF in bursts (up to `burst` bytes, then a pause), hashing what it gets.
fn read_in_bursts(r: &mut TcpStream, burst: usize, pause: Duration) -> (usize, [u8; 32]) {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let (mut n, mut since_pause) = (0, 0);
    loop {
        let got = r.read(&mut buf).unwrap();
        if got == 0 {
            return (n, h.finalize().into());
        }
        h.update(&buf[..got]);
        n += got;
        since_pause += got;
        if since_pause >= burst {
            std::thread::sleep(pause);
            since_pause = 0;
        }
    }
}

/// Both ends stream at once into readers that read in bursts, through a small backlog bound
/// (256 KiB): each direction pauses and resumes many times, and every byte arrives in order
/// both ways; each writer's FIN (sent while its reader is pausing) arrives after its last byte.
fn bursty_readers_both_ways(plane: Plane) {
    const TOTAL: usize = 48 << 20;
    let before = drained_total().load(Ordering::Relaxed);
    let p = pair();
    let flow = run_flow_full(
        plane,
        (p.client_fd, p.server_fd),
        FlowTimeouts::default(),
        None,
        None,
        Some(256 << 10),
    );
    let writer = |mut w: TcpStream, seed: u8| {
        std::thread::spawn(move || {
            let data = pattern(TOTAL, seed);
            for chunk in data.chunks(64 << 10) {
                w.write_all(chunk).unwrap();
            }
            w.shutdown(Shutdown::Write).unwrap();
            sha(&data)
        })
    };
    let up = writer(p.client.try_clone().unwrap(), 11);
    let down = writer(p.backend.try_clone().unwrap(), 12);
    let (mut client, mut backend) = (p.client, p.backend);
    let at_backend = std::thread::spawn(move || {
        read_in_bursts(&mut backend, 2 << 20, Duration::from_millis(30))
    });
    let at_client = read_in_bursts(&mut client, 3 << 20, Duration::from_millis(20));
    let at_backend = at_backend.join().unwrap();
    let (up, down) = (up.join().unwrap(), down.join().unwrap());
    assert_eq!(at_backend.0, TOTAL, "upload length");
    assert!(at_backend.1 == up, "upload SHA-256 differs");
    assert_eq!(at_client.0, TOTAL, "download length");
    assert!(at_client.1 == down, "download SHA-256 differs");
    let report = flow.join().unwrap();
    assert_eq!(report.end, FlowEnd::Closed);
    assert_eq!(
        (report.bytes_in, report.bytes_out),
        (TOTAL as u64, TOTAL as u64)
    );
    let drained = drained_total().load(Ordering::Relaxed) - before;
    eprintln!(
        "{plane:?}: userspace moved {} KiB of paused bytes",
        drained >> 10
    );
    if matches!(plane, Plane::Sockmap(_)) {
        assert!(
            drained > 0,
            "no direction ever paused: the test tests nothing"
        );
    }
}

#[test]
fn bursty_readers_both_ways_sockmap() {
    bursty_readers_both_ways(Plane::Sockmap(Way::Down));
}

#[test]
fn bursty_readers_both_ways_sockmap_upload() {
    bursty_readers_both_ways(Plane::Sockmap(Way::Up));
}

#[test]
fn bursty_readers_both_ways_sockmap_hand_over() {
    bursty_readers_both_ways(Plane::SockmapHandOver);
}

#[test]
fn bursty_readers_both_ways_splice() {
    bursty_readers_both_ways(Plane::Splice);
}

/// A client sends, its backend doesn't read (the direction pauses, bytes wait in lb), then the
/// client half-closes: the backend gets every byte and then the EOF, and can still answer.
fn half_close_after_a_pause(plane: Plane) {
    let p = pair();
    let flow = run_flow_full(
        plane,
        (p.client_fd, p.server_fd),
        FlowTimeouts::default(),
        None,
        None,
        Some(256 << 10),
    );
    let (mut client, mut backend) = (p.client, p.backend);
    let request = pattern(8 << 20, 21);
    let sent = {
        let mut c = client.try_clone().unwrap();
        let r = request.clone();
        std::thread::spawn(move || {
            c.write_all(&r).unwrap();
            c.shutdown(Shutdown::Write).unwrap();
        })
    };
    // Let it pile up against the backend, which reads nothing yet.
    std::thread::sleep(Duration::from_millis(300));
    let (n, got) = read_hashed(&mut backend);
    sent.join().unwrap();
    assert_eq!(n, request.len());
    assert!(got == sha(&request), "request SHA-256 differs");
    let answer = pattern(3 << 20, 22);
    backend.write_all(&answer).unwrap();
    backend.shutdown(Shutdown::Write).unwrap();
    let (n, got) = read_hashed(&mut client);
    assert_eq!(n, answer.len());
    assert!(got == sha(&answer), "answer SHA-256 differs");
    let report = flow.join().unwrap();
    assert_eq!(report.end, FlowEnd::Closed);
    assert_eq!(
        (report.bytes_in, report.bytes_out),
        (request.len() as u64, answer.len() as u64)
    );
}

#[test]
fn half_close_after_a_pause_sockmap() {
    half_close_after_a_pause(Plane::Sockmap(Way::Up));
}

#[test]
fn half_close_after_a_pause_sockmap_hand_over() {
    half_close_after_a_pause(Plane::SockmapHandOver);
}

#[test]
fn half_close_after_a_pause_splice() {
    half_close_after_a_pause(Plane::Splice);
}

/// A client pushes at an echo backend and reads nothing back for a while: the echo stalls on
/// its writes and stops reading, so both directions pause at once. The push must stall, with
/// what lb took (what the client wrote, less what waits in the client's and the echo's own
/// queues and the echo's buffer) within both directions' bounds plus lb's four socket buffers.
/// Then the client reads, and the echoed stream equals what it sent. Before the sockmap
/// plane's credit was capped by the destination's send room, the kernel queued what the
/// program passed on the client socket behind echoed bytes the client's full send queue could
/// not take, charged to nothing: the whole 256 MiB push went through in about half the runs.
///
/// With `squeeze`, lb's client socket takes (almost) nothing more into its send queue from
/// the moment the flow went idle (`SO_SNDBUF` at its least, after the credits were given): as
/// when the kernel shrinks a send buffer under memory pressure (`sk_stream_moderate_sndbuf`),
/// or when the psock worker that moves redirected bytes into it runs late.
fn echo_to_a_client_that_reads_late(plane: Plane, squeeze: bool) {
    let p = pair();
    let lb = [dup(&p.client_fd), dup(&p.server_fd)];
    let flow = run_flow_full(
        plane,
        (p.client_fd, p.server_fd),
        FlowTimeouts::default(),
        None,
        None,
        None,
    );
    let (mut client, backend) = (p.client, p.backend);
    let backend_view = backend.try_clone().unwrap();
    let echo = std::thread::spawn(move || {
        let mut b = backend;
        let mut buf = vec![0u8; 64 << 10];
        let mut upload = Vec::with_capacity(PUSH);
        loop {
            let n = b.read(&mut buf).unwrap();
            if n == 0 {
                b.shutdown(Shutdown::Write).unwrap();
                return upload;
            }
            upload.extend_from_slice(&buf[..n]);
            b.write_all(&buf[..n]).unwrap();
        }
    });
    let data = unique_pattern(PUSH, 41);
    client.write_all(&data[..1024]).unwrap();
    let mut first = vec![0u8; 1024];
    client.read_exact(&mut first).unwrap();
    assert_eq!(first, data[..1024]);
    std::thread::sleep(Duration::from_millis(300));
    if squeeze {
        set_sndbuf(lb[0].as_fd(), 0);
    }

    let written = 1024 + push_until_stalled(&mut client, &data[1024..], Duration::from_secs(1));
    let state = where_bytes_are(plane, &lb);
    if squeeze {
        set_sndbuf(lb[0].as_fd(), 4 << 20);
    }
    let outside = sockopt::outq(client.as_fd()).unwrap()
        + inq(client.as_fd())
        + inq(backend_view.as_fd())
        + sockopt::outq(backend_view.as_fd()).unwrap()
        + (64 << 10);
    let held = (written as u64 - 1024).saturating_sub(outside);
    let buffers: u64 = lb
        .iter()
        .map(|fd| sockbuf(fd.as_fd(), libc::SO_RCVBUF) + sockbuf(fd.as_fd(), libc::SO_SNDBUF))
        .sum();
    let bound = 2 * own_bound(plane) + buffers + (128 << 10);
    eprintln!(
        "{plane:?} echo: client wrote {} KiB; lb held {} KiB; bound {} KiB (own 2 x {} KiB + \
         socket buffers {} KiB + 128 KiB)",
        written >> 10,
        held >> 10,
        bound >> 10,
        own_bound(plane) >> 10,
        buffers >> 10
    );
    assert!(
        written < PUSH,
        "{plane:?} echo: the whole push went through a client that reads nothing ({state})"
    );
    assert!(
        held <= bound,
        "{plane:?} echo: lb held {held} bytes, more than its bound {bound} ({state})"
    );
    drop(lb);

    let rest = {
        let mut client = client.try_clone().unwrap();
        std::thread::spawn(move || {
            client.write_all(&data[written..]).unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            data
        })
    };
    let mut echoed = Vec::with_capacity(PUSH);
    client.read_to_end(&mut echoed).unwrap();
    let data = rest.join().unwrap();
    let upload = echo.join().unwrap();
    let report = flow.join().unwrap();
    eprintln!(
        "{plane:?} echo: repeats cut by the program so far in this process: {} bytes",
        super::super::sockmap::repeated_total()
    );
    if let Some(diff) = stream_difference(&upload, &data) {
        panic!("{plane:?} echo: what the backend got: {diff} ({report:?})");
    }
    drop(upload);
    if let Some(diff) = stream_difference(&echoed, &data[1024..]) {
        panic!("{plane:?} echo after the first KiB: {diff} ({report:?})");
    }
    assert!(
        sha(&echoed) == sha(&data[1024..]),
        "SHA-256 of the echo differs"
    );
    assert_eq!(report.end, FlowEnd::Closed);
    assert_eq!(
        (report.bytes_in, report.bytes_out),
        (PUSH as u64, PUSH as u64)
    );
}

#[test]
fn echo_to_a_client_that_reads_late_sockmap() {
    echo_to_a_client_that_reads_late(Plane::Sockmap(Way::Down), false);
}

#[test]
fn echo_to_a_client_that_reads_late_sockmap_upload() {
    echo_to_a_client_that_reads_late(Plane::Sockmap(Way::Up), false);
}

#[test]
fn echo_to_a_client_that_reads_late_sockmap_hand_over() {
    echo_to_a_client_that_reads_late(Plane::SockmapHandOver, false);
}

#[test]
fn echo_to_a_client_that_reads_late_splice() {
    echo_to_a_client_that_reads_late(Plane::Splice, false);
}

/// The echo, with lb's client socket squeezed (see [`echo_to_a_client_that_reads_late`]), with
/// the kernel carrying either direction. When it carried both, what the program redirected to
/// the client waited in the client socket's psock queue, and what it passed on that socket (the
/// paused push) queued behind it, charged to nothing: the client's window stayed open and the
/// whole push went through, in every run (lb held 261 MB; unsqueezed, the same on a loaded
/// machine where the psock worker ran late: 1 run in 12 pinned to one CPU beside the plane
/// tests, 1 in ~30 CI runs of the whole suite). No socket is both a source and a target now.
#[test]
fn echo_to_a_squeezed_client_that_reads_late_sockmap() {
    echo_to_a_client_that_reads_late(Plane::Sockmap(Way::Down), true);
}

#[test]
fn echo_to_a_squeezed_client_that_reads_late_sockmap_upload() {
    echo_to_a_client_that_reads_late(Plane::Sockmap(Way::Up), true);
}

#[test]
fn echo_to_a_squeezed_client_that_reads_late_splice() {
    echo_to_a_client_that_reads_late(Plane::Splice, true);
}

/// `SO_SNDBUF` (the kernel doubles `bytes` and raises it to its least, ~4.5 KiB); fixes the
/// buffer: no more autotuning.
fn set_sndbuf(fd: BorrowedFd<'_>, bytes: libc::c_int) {
    // SAFETY: setsockopt reads one c_int.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&raw const bytes).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_SNDBUF: {}", std::io::Error::last_os_error());
}

/// Where the bytes of lb's two sockets (client, server) are: for each, what the program counted
/// for it as a source (sockmap planes), what its peer acknowledged, its send and receive
/// queues and buffer limits.
fn where_bytes_are(plane: Plane, lb: &[OwnedFd; 2]) -> String {
    let mut out = String::new();
    for (name, fd) in ["client socket", "server socket"].into_iter().zip(lb) {
        let fd = fd.as_fd();
        let counts = matches!(plane, Plane::Sockmap(_) | Plane::SockmapHandOver)
            .then(|| {
                let cookie = sockopt::socket_cookie(fd).ok()?;
                super::super::sockmap::peer_counts_now(super::maps_ids(), cookie)
            })
            .flatten()
            .map(|p| {
                format!(
                    "redirected {}, passed {}, paused {}, limit {}; ",
                    p.bytes, p.passed, p.paused, p.limit
                )
            })
            .unwrap_or_default();
        let _ = write!(
            out,
            "{name}: {counts}acked {}, send queue {}, receive queue {}, SO_SNDBUF {}, \
             SO_RCVBUF {}; ",
            sockopt::tcp_counters(fd).map_or(0, |c| c.bytes_acked),
            sockopt::outq(fd).unwrap_or(0),
            sockopt::inq(fd).unwrap_or(0),
            sockbuf(fd, libc::SO_SNDBUF),
            sockbuf(fd, libc::SO_RCVBUF),
        );
    }
    out
}

/// A reset while a direction is paused (bytes waiting in lb for a receiver that doesn't read)
/// is passed on as a reset, whichever side resets.
fn reset_while_paused(plane: Plane, client_resets: bool) {
    let p = pair();
    let flow = run_flow_full(
        plane,
        (p.client_fd, p.server_fd),
        FlowTimeouts::default(),
        None,
        None,
        Some(256 << 10),
    );
    let (mut client, backend) = (p.client, p.backend);
    client.write_all(b"x").unwrap();
    let mut one = [0u8; 1];
    (&backend).read_exact(&mut one).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let data = pattern(64 << 20, 51);
    let written = push_until_stalled(&mut client, &data, Duration::from_millis(500));
    assert!(written < data.len(), "the push never stalled");
    let (resetter, mut victim) = if client_resets {
        (client, backend)
    } else {
        (backend, client)
    };
    socket2::SockRef::from(&resetter)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(resetter);
    // The victim may first read what lb had passed on, then must see the reset.
    let mut buf = vec![0u8; 1 << 20];
    let deadline = Instant::now() + Duration::from_secs(10);
    let err = loop {
        assert!(Instant::now() < deadline, "no reset within 10 s");
        match victim.read(&mut buf) {
            Ok(0) => break None,
            Ok(_) => {}
            Err(e) => break Some(e.kind()),
        }
    };
    assert_eq!(
        err,
        Some(std::io::ErrorKind::ConnectionReset),
        "expected a reset"
    );
    let expected = if client_resets {
        FlowEnd::ClientReset
    } else {
        FlowEnd::ServerReset
    };
    assert_eq!(flow.join().unwrap().end, expected);
}

#[test]
fn reset_while_paused_sockmap() {
    reset_while_paused(Plane::Sockmap(Way::Up), true);
    reset_while_paused(Plane::Sockmap(Way::Up), false);
}

#[test]
fn reset_while_paused_splice() {
    reset_while_paused(Plane::Splice, true);
    reset_while_paused(Plane::Splice, false);
}

// The same scenarios with the thread's ring copying first (graduating to splice).

#[test]
fn push_at_a_stalled_backend_is_bounded_ring() {
    push_at_a_stalled_reader(Plane::Ring, true);
}

#[test]
fn push_at_a_stalled_client_is_bounded_ring() {
    push_at_a_stalled_reader(Plane::Ring, false);
}

#[test]
fn bursty_readers_both_ways_ring() {
    bursty_readers_both_ways(Plane::Ring);
}

#[test]
fn half_close_after_a_pause_ring() {
    half_close_after_a_pause(Plane::Ring);
}

#[test]
fn echo_to_a_client_that_reads_late_ring() {
    echo_to_a_client_that_reads_late(Plane::Ring, false);
}

#[test]
fn reset_while_paused_ring() {
    reset_while_paused(Plane::Ring, true);
    reset_while_paused(Plane::Ring, false);
}

// The same scenarios on the sockmap plane's way with a ring: copy on the ring, graduate to
// splice, move into the maps.

#[test]
fn push_at_a_stalled_backend_is_bounded_ring_sockmap() {
    push_at_a_stalled_reader(Plane::RingSockmap, true);
}

#[test]
fn push_at_a_stalled_client_is_bounded_ring_sockmap() {
    push_at_a_stalled_reader(Plane::RingSockmap, false);
}

#[test]
fn bursty_readers_both_ways_ring_sockmap() {
    bursty_readers_both_ways(Plane::RingSockmap);
}

#[test]
fn half_close_after_a_pause_ring_sockmap() {
    half_close_after_a_pause(Plane::RingSockmap);
}

#[test]
fn echo_to_a_client_that_reads_late_ring_sockmap() {
    echo_to_a_client_that_reads_late(Plane::RingSockmap, false);
}

#[test]
fn reset_while_paused_ring_sockmap() {
    reset_while_paused(Plane::RingSockmap, true);
    reset_while_paused(Plane::RingSockmap, false);
}
