//! A TCP retransmission that overlaps bytes lb's socket already received: TCP queues such an
//! skb whole (`seq < rcv_nxt < end_seq`) and readers skip the overlap by sequence number. The
//! sockmap verdict gets whole skbs (`tcp_read_skb`), so the program has to cut the overlap
//! itself, or the receiver gets those bytes twice. Under load this happens when ACKs are lost
//! at a busy sender; here the sender is rebuilt with `TCP_REPAIR` so that its next segment
//! starts before what lb received, every run. The same cut covers an skb lb read part of
//! before the socket entered the maps: the program compares the first skb it gets with the
//! socket's read point.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::{pair, pair_from, pattern, run_flow_full, FlowEnd, FlowTimeouts, Plane, Way};

/// Bytes the rebuilt sender sends again (lb's socket has them already).
const REPEAT: usize = 200;
/// Bytes sent before the rebuild, and new bytes after it. The rebuilt socket queues what it
/// is given in skbs of its initial MSS (536 bytes): `REPEAT + NEW` fits one, so that the
/// segment that goes out first (a tail loss probe) starts with the repeat.
const FIRST: usize = 1000;
const NEW: usize = 300;

const TCPOPT_MSS: u32 = 2;
const TCPOPT_WINDOW: u32 = 3;
const TCPOPT_SACK_PERM: u32 = 4;
const TCPOPT_TIMESTAMP: u32 = 8;
const TCPI_OPT_TIMESTAMPS: u8 = 1;
const TCPI_OPT_SACK: u8 = 2;
const TCPI_OPT_WSCALE: u8 = 4;
const TCP_REPAIR_ON: i32 = 1;
/// Leaves repair mode without sending a window probe (whose ACK would trim the repeat off
/// the sender's queue before it is retransmitted).
const TCP_REPAIR_OFF_NO_WP: i32 = -1;
const TCP_RECV_QUEUE: i32 = 1;
const TCP_SEND_QUEUE: i32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct RepairOpt {
    code: u32,
    val: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct RepairWindow {
    snd_wl1: u32,
    snd_wnd: u32,
    max_window: u32,
    rcv_wnd: u32,
    rcv_wup: u32,
}

fn set<T>(fd: &impl AsRawFd, opt: libc::c_int, v: &T) {
    // SAFETY: `v` is valid for size_of::<T>() bytes.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            opt,
            std::ptr::from_ref(v).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt {opt}: {}",
        std::io::Error::last_os_error()
    );
}

fn set_slice<T>(fd: &impl AsRawFd, opt: libc::c_int, v: &[T]) {
    // SAFETY: `v` is valid for size_of_val(v) bytes.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            opt,
            v.as_ptr().cast(),
            std::mem::size_of_val(v) as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt {opt}: {}",
        std::io::Error::last_os_error()
    );
}

fn get<T: Default>(fd: &impl AsRawFd, opt: libc::c_int) -> T {
    let mut v = T::default();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `v` has room for `len` bytes; the kernel writes at most that many.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            opt,
            std::ptr::from_mut(&mut v).cast(),
            &raw mut len,
        )
    };
    assert_eq!(
        rc,
        0,
        "getsockopt {opt}: {}",
        std::io::Error::last_os_error()
    );
    v
}

/// What a rebuilt socket needs of the one it replaces.
struct Saved {
    local: SocketAddr,
    peer: SocketAddr,
    snd_seq: u32,
    rcv_seq: u32,
    mss: u32,
    /// `tcpi_options` and the packed window scales of `tcp_info`.
    options: u8,
    wscale: u8,
    window: RepairWindow,
    tsval: u32,
}

/// Puts `s` in repair mode, reads its state, and closes it without a FIN or RST.
fn take_apart(s: TcpStream) -> Saved {
    let info: [u8; 8] = get(&s, libc::TCP_INFO);
    let mss: u32 = get(&s, libc::TCP_MAXSEG);
    set(&s, libc::TCP_REPAIR, &TCP_REPAIR_ON);
    set(&s, libc::TCP_REPAIR_QUEUE, &TCP_SEND_QUEUE);
    let snd_seq = get(&s, libc::TCP_QUEUE_SEQ);
    set(&s, libc::TCP_REPAIR_QUEUE, &TCP_RECV_QUEUE);
    let rcv_seq = get(&s, libc::TCP_QUEUE_SEQ);
    let saved = Saved {
        local: s.local_addr().unwrap(),
        peer: s.peer_addr().unwrap(),
        snd_seq,
        rcv_seq,
        mss,
        options: info[5],
        wscale: info[6],
        window: get(&s, libc::TCP_REPAIR_WINDOW),
        tsval: get(&s, libc::TCP_TIMESTAMP),
    };
    // Closed in repair mode: no FIN, no RST, and its address is free again.
    drop(s);
    saved
}

/// A socket that continues `old`'s connection, whose send queue starts `REPEAT` bytes before
/// what the peer received, holding `bytes` as sent and not yet acknowledged: once out of repair
/// mode, its retransmission timer sends them as one segment that overlaps the peer's data.
fn rebuild(old: &Saved, bytes: &[u8]) -> TcpStream {
    // SAFETY: a plain socket(2) call; the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh fd owned by nothing else.
    let s = TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    set(&s, libc::TCP_REPAIR, &TCP_REPAIR_ON);
    let sock = socket2::SockRef::from(&s);
    sock.set_reuse_address(true).unwrap();
    sock.bind(&old.local.into()).unwrap();
    set(&s, libc::TCP_REPAIR_QUEUE, &TCP_SEND_QUEUE);
    set(
        &s,
        libc::TCP_QUEUE_SEQ,
        &old.snd_seq.wrapping_sub(REPEAT as u32),
    );
    set(&s, libc::TCP_REPAIR_QUEUE, &TCP_RECV_QUEUE);
    set(&s, libc::TCP_QUEUE_SEQ, &old.rcv_seq);
    // In repair mode connect() sends nothing and leaves the socket ESTABLISHED.
    sock.connect(&old.peer.into()).unwrap();
    let mut opts = vec![RepairOpt {
        code: TCPOPT_MSS,
        val: old.mss,
    }];
    if old.options & TCPI_OPT_WSCALE != 0 {
        opts.push(RepairOpt {
            code: TCPOPT_WINDOW,
            val: u32::from(old.wscale & 0xf) | (u32::from(old.wscale >> 4) << 16),
        });
    }
    if old.options & TCPI_OPT_SACK != 0 {
        opts.push(RepairOpt {
            code: TCPOPT_SACK_PERM,
            val: 0,
        });
    }
    if old.options & TCPI_OPT_TIMESTAMPS != 0 {
        opts.push(RepairOpt {
            code: TCPOPT_TIMESTAMP,
            val: 0,
        });
        set(&s, libc::TCP_TIMESTAMP, &old.tsval);
    }
    set_slice(&s, libc::TCP_REPAIR_OPTIONS, &opts);
    set(&s, libc::TCP_REPAIR_WINDOW, &old.window);
    // Written in repair mode to the send queue: counted as sent, not transmitted.
    set(&s, libc::TCP_REPAIR_QUEUE, &TCP_SEND_QUEUE);
    (&s).write_all(bytes).unwrap();
    set(&s, libc::TCP_REPAIR, &TCP_REPAIR_OFF_NO_WP);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// The backend answers and half-closes: the answer and the FIN reach the client.
fn answer_back(backend: &mut TcpStream, client: &mut TcpStream) {
    backend.write_all(b"done").unwrap();
    backend.shutdown(Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"done");
}

/// The client sends 1000 bytes, then its connection continues on a rebuilt socket whose next
/// segment repeats the last 200 of them before 300 new ones: the backend gets each byte once,
/// then the FIN, and the answer goes back.
fn overlapping_retransmission_is_forwarded_once(plane: Plane) {
    // The client's port must still be free when the rebuilt socket binds it: on an address of
    // its own per plane, no other test's connect can take that port meanwhile (on 127.0.0.1,
    // one did, in a parallel run).
    let p = pair_from(std::net::Ipv4Addr::new(
        127,
        61,
        0,
        1 + u8::from(plane == Plane::Splice),
    ));
    let flow = run_flow_full(
        plane,
        (p.client_fd, p.server_fd),
        FlowTimeouts::default(),
        None,
        None,
        None,
    );
    let (client, mut backend) = (p.client, p.backend);
    let data = pattern(FIRST + NEW, 61);
    (&client).write_all(&data[..FIRST]).unwrap();
    let mut first = vec![0u8; FIRST];
    backend.read_exact(&mut first).unwrap();
    assert_eq!(first, data[..FIRST]);
    // Let lb's ACK of those bytes reach the client, so that its queue is empty.
    std::thread::sleep(Duration::from_millis(100));

    let saved = take_apart(client);
    let mut client = rebuild(&saved, &data[FIRST - REPEAT..]);
    // The FIN only once the segment went out (a loss probe, then the retransmission timer): sent before,
    // it would arrive out of order, and the ACK that answers it would take the repeat off the
    // sender's queue.
    let mut rest = Vec::new();
    let mut buf = [0u8; 4096];
    while rest.len() < NEW {
        let n = backend.read(&mut buf).unwrap();
        assert_ne!(n, 0, "{plane:?}: EOF after {} of the new bytes", rest.len());
        rest.extend_from_slice(&buf[..n]);
    }
    client.shutdown(Shutdown::Write).unwrap();
    backend.read_to_end(&mut rest).unwrap();
    assert_eq!(
        rest.len(),
        NEW,
        "{plane:?}: bytes after the first {FIRST} (the {REPEAT} resent ones must not repeat)"
    );
    assert!(rest == data[FIRST..], "{plane:?}: the new bytes differ");
    answer_back(&mut backend, &mut client);
    let report = flow.join().unwrap();
    assert_eq!(report.end, FlowEnd::Closed);
    assert_eq!(
        (report.bytes_in, report.bytes_out),
        ((FIRST + NEW) as u64, 4)
    );
}

#[test]
fn overlapping_retransmission_is_forwarded_once_sockmap() {
    overlapping_retransmission_is_forwarded_once(Plane::Sockmap(Way::Up));
}

#[test]
fn overlapping_retransmission_is_forwarded_once_sockmap_hand_over() {
    overlapping_retransmission_is_forwarded_once(Plane::SockmapHandOver);
}

#[test]
fn overlapping_retransmission_is_forwarded_once_splice() {
    overlapping_retransmission_is_forwarded_once(Plane::Splice);
}

/// A socket handed to the maps with its first queued skb partly read (lb read `READ` of the
/// `QUEUED` bytes the client sent in one write, which loopback queues as one skb): the verdict
/// gets that skb whole, and the program cuts what lb had read by the socket's read point, so
/// the backend gets each byte once. (The splice phase hands over only with the source's queue
/// read to the end, `partly_read_skb_is_not_handed_over`; this is the program's own guard.)
#[test]
fn partly_read_skb_handed_over_is_forwarded_once() {
    use std::os::fd::AsFd;

    const QUEUED: usize = 60_000;
    const READ: usize = 1_000;
    const MORE: usize = 5_000;
    let p = pair();
    let (mut client, mut backend) = (p.client, p.backend);
    let data = pattern(QUEUED + MORE, 47);
    client.write_all(&data[..QUEUED]).unwrap();
    let queued_by = std::time::Instant::now() + Duration::from_secs(5);
    while super::backpressure::inq(p.client_fd.as_fd()) < QUEUED as u64 {
        assert!(
            std::time::Instant::now() < queued_by,
            "the write never arrived"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // lb reads the first bytes of the skb and passes them on, as a splice phase would.
    let mut head = vec![0u8; READ];
    (&TcpStream::from(p.client_fd.try_clone().unwrap()))
        .read_exact(&mut head)
        .unwrap();
    (&TcpStream::from(p.server_fd.try_clone().unwrap()))
        .write_all(&head)
        .unwrap();
    let ids = super::maps_ids().with_way(Way::Up);
    let (lb_client, lb_server) = (p.client_fd, p.server_fd);
    let flow = std::thread::spawn(move || {
        super::block_on_local(async move {
            let maps = super::thread_maps(ids, Duration::ZERO);
            tokio::task::spawn_local(maps.watcher().clone().run());
            let kill = super::KillSwitch::default();
            super::sockmap::in_kernel(
                &maps,
                lb_client,
                lb_server,
                FlowTimeouts::default(),
                &kill,
                (std::time::Instant::now(), (READ as u64, 0)),
                &mut |_| {},
            )
            .await
        })
    });
    let mut got = vec![0u8; QUEUED];
    backend.read_exact(&mut got).unwrap();
    client.write_all(&data[QUEUED..]).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    backend.read_to_end(&mut got).unwrap();
    assert_eq!(
        got.len(),
        QUEUED + MORE,
        "bytes at the backend (the {READ} read before the hand-over must not repeat)"
    );
    assert!(got == data, "the bytes differ");
    answer_back(&mut backend, &mut client);
    let report = flow.join().unwrap();
    assert_eq!(report.end, FlowEnd::Closed);
    assert!(report.spliced_in_kernel, "the flow was in the maps");
}
