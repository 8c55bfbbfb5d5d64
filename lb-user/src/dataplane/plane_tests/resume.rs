//! A paused in-kernel direction goes back to redirecting under a sender that never stops
//! (issue #10, point 0). The flow's kernel direction (each in turn; the other is spliced) gets
//! no credit at its insert (a test switch), so the program passes its first skb and pauses it;
//! both ends then push 64 MiB at once as fast as loopback takes them. Before the resume handshake of `drain_passed`, such a
//! direction stayed in userspace's copy loop to its end.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::super::sockmap::policy::Way;
use super::super::sockmap::{self, ended_counts};
use super::super::sockopt;
use super::backpressure::read_hashed;
use super::{maps_ids, pair, pattern, thread_maps, FlowEnd, FlowTimeouts, KillSwitch};

/// Bytes each way: far more than a socket's buffers, so the sender keeps the source's queue
/// full for the whole flow.
const PUSH: usize = 64 << 20;

/// Bytes each direction must have redirected after its pause: more than one credit (the
/// send room of a loopback socket, at most 2 MiB here), so the direction resumed more than
/// once.
const MIN_REDIRECTED: u64 = 1 << 20;

/// Writes `data` on `w` from a thread of its own, then half-closes.
fn push(mut w: TcpStream, data: Vec<u8>) -> std::thread::JoinHandle<[u8; 32]> {
    std::thread::spawn(move || {
        w.write_all(&data).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
        Sha256::digest(&data).into()
    })
}

fn paused_direction_resumes_under_continuous_senders(way: Way) {
    let p = pair();
    let cookies = (
        sockopt::socket_cookie(p.client_fd.as_fd()).unwrap(),
        sockopt::socket_cookie(p.server_fd.as_fd()).unwrap(),
    );
    let ids = maps_ids().with_first_credit(0).with_way(way);
    let (c, s) = (p.client_fd, p.server_fd);
    let flow = std::thread::spawn(move || {
        super::block_on_local(async move {
            let maps = thread_maps(ids, Duration::ZERO);
            tokio::task::spawn_local(maps.watcher().clone().run());
            let kill = KillSwitch::default();
            sockmap::forward(&maps, c, s, FlowTimeouts::default(), &kill).await
        })
    });
    let up = push(p.client.try_clone().unwrap(), pattern(PUSH, 41));
    let down = push(p.backend.try_clone().unwrap(), pattern(PUSH, 42));
    let mut backend = p.backend;
    let at_backend = std::thread::spawn(move || read_hashed(&mut backend));
    let mut client = p.client;
    let at_client = read_hashed(&mut client);
    let at_backend = at_backend.join().unwrap();
    assert_eq!(at_backend, (PUSH, up.join().unwrap()), "upload intact");
    assert_eq!(at_client, (PUSH, down.join().unwrap()), "download intact");
    let report = flow.join().unwrap();
    assert_eq!(report.end, FlowEnd::Closed);
    assert!(report.spliced_in_kernel);
    assert_eq!(
        (report.bytes_in, report.bytes_out),
        (PUSH as u64, PUSH as u64)
    );
    let (cookie, spliced) = match way {
        Way::Up => (cookies.0, cookies.1),
        Way::Down => (cookies.1, cookies.0),
    };
    assert_eq!(
        ended_counts(spliced),
        None,
        "{way:?}: the other direction stayed on splice"
    );
    let counts = ended_counts(cookie).expect("the flow's counts were recorded");
    eprintln!(
        "{way:?}: {} bytes redirected, {} passed",
        counts.bytes, counts.passed
    );
    assert!(counts.passed > 0, "{way:?}: the direction paused");
    // With no credit at the insert, every redirected byte came after the pause. (Each
    // credit's end pauses the direction again, and a pause copies what the sender queued
    // by then, so most of the stream is still copied here: see the module header of
    // `sockmap`.)
    assert!(
        counts.bytes >= MIN_REDIRECTED,
        "{way:?}: the direction resumed redirecting: {} bytes redirected, {} passed",
        counts.bytes,
        counts.passed
    );
}

#[test]
fn a_paused_upload_resumes_under_continuous_senders() {
    paused_direction_resumes_under_continuous_senders(Way::Up);
}

#[test]
fn a_paused_download_resumes_under_continuous_senders() {
    paused_direction_resumes_under_continuous_senders(Way::Down);
}
