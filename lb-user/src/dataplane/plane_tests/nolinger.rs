//! `option nolinger` on every plane. The backend's: the client's FIN is not passed on to a
//! server that has not sent its own; the server is reset, the client gets what lb held and a
//! normal end. The frontend's (`SO_LINGER` 0 on the client socket, as a listener with the
//! option passes it on): the server's FIN after the client's is passed on by the close, so
//! the client gets a reset, as from HAProxy.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::time::Duration;

use super::{pair, pattern, read_all, run_flow, Plane, Way};
use crate::dataplane::{sockopt, FlowEnd, FlowTimeouts};

/// The flow parameters of a backend with `option nolinger`.
fn nolinger() -> FlowTimeouts {
    FlowTimeouts {
        nolinger: true,
        ..FlowTimeouts::default()
    }
}

/// How reading `s` to its end ended: its bytes, or the error kind.
fn read_to_end(s: &mut std::net::TcpStream) -> (Vec<u8>, Option<ErrorKind>) {
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => (got, None),
        Err(e) => (got, Some(e.kind())),
    }
}

/// The client sends a request and half-closes: the server, which read the request, sees a
/// reset instead of the FIN, and can't answer any more; what it had answered before reaches
/// the client (a part of it at least, intact), then a normal end. The flow ends normally.
fn client_fin_resets_the_server(plane: Plane) {
    let mut p = pair();
    let flow = run_flow(plane, p.client_fd, p.server_fd, nolinger(), None);
    // One exchange first: the flow is set up (in the maps, where it goes there at once).
    p.client.write_all(b"?").unwrap();
    let mut one = [0u8; 1];
    p.backend.read_exact(&mut one).unwrap();
    let request = pattern(100_000, 5);
    p.client.write_all(&request).unwrap();
    let mut got = vec![0u8; request.len()];
    p.backend.read_exact(&mut got).unwrap();
    assert_eq!(got, request, "the server got the request");
    let answer = pattern(50_000, 6);
    p.backend.write_all(&answer).unwrap();
    p.client.shutdown(Shutdown::Write).unwrap();
    let (rest, err) = read_to_end(&mut p.backend);
    assert_eq!(
        (rest.len(), err),
        (0, Some(ErrorKind::ConnectionReset)),
        "the server sees a reset, not the client's FIN"
    );
    let (down, err) = read_to_end(&mut p.client);
    assert_eq!(err, None, "the client's end is a normal one");
    assert!(
        down.len() <= answer.len() && down == answer[..down.len()],
        "the client got a part of the answer, intact ({} bytes)",
        down.len()
    );
    let report = flow.join().unwrap();
    assert_eq!(report.end, FlowEnd::Closed);
    assert_eq!(report.bytes_in, 1 + request.len() as u64);
}

/// The same with the answer read before the client's FIN: the client gets all of it and the
/// end, nothing is held back.
fn answer_read_then_client_fin_resets_the_server(plane: Plane) {
    let mut p = pair();
    let flow = run_flow(plane, p.client_fd, p.server_fd, nolinger(), None);
    p.client.write_all(b"request").unwrap();
    let mut got = [0u8; 7];
    p.backend.read_exact(&mut got).unwrap();
    let answer = pattern(300_000, 7);
    p.backend.write_all(&answer).unwrap();
    let mut down = vec![0u8; answer.len()];
    p.client.read_exact(&mut down).unwrap();
    assert!(down == answer, "the answer, intact");
    p.client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        read_to_end(&mut p.backend).1,
        Some(ErrorKind::ConnectionReset)
    );
    assert_eq!(read_to_end(&mut p.client), (Vec::new(), None));
    let report = flow.join().unwrap();
    assert_eq!(report.end, FlowEnd::Closed);
    assert_eq!(
        (report.bytes_in, report.bytes_out),
        (7, answer.len() as u64)
    );
}

/// The server closes first: its FIN reaches the client, and the client's close then reaches
/// the server as a normal close (its FIN was seen: no reset).
fn server_fin_first_then_a_normal_close(plane: Plane) {
    let mut p = pair();
    let flow = run_flow(plane, p.client_fd, p.server_fd, nolinger(), None);
    p.client.write_all(b"request").unwrap();
    let mut got = [0u8; 7];
    p.backend.read_exact(&mut got).unwrap();
    p.backend.write_all(b"answer").unwrap();
    p.backend.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut p.client), b"answer");
    p.client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        read_to_end(&mut p.backend),
        (Vec::new(), None),
        "the server sees the client's FIN"
    );
    assert_eq!(flow.join().unwrap().end, FlowEnd::Closed);
}

/// A client socket with `SO_LINGER` 0 (what a listener with the frontend's `option nolinger`
/// gives the sockets it accepts): the client half-closes, reads the whole answer, then the
/// server closes. The server's FIN, the flow's last, is passed on by the close, which resets
/// the client: no shutdown first, as HAProxy calls none on a socket whose FIN it read.
fn last_fin_to_a_lingerless_client_is_a_reset(plane: Plane) {
    let mut p = pair();
    sockopt::set_linger_zero(p.client_fd.as_fd()).unwrap();
    let flow = run_flow(
        plane,
        p.client_fd,
        p.server_fd,
        FlowTimeouts::default(),
        None,
    );
    p.client.write_all(b"?").unwrap();
    let mut one = [0u8; 1];
    p.backend.read_exact(&mut one).unwrap();
    p.client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut p.backend), b"", "the client's FIN passes on");
    let answer = pattern(200_000, 8);
    p.backend.write_all(&answer).unwrap();
    let mut down = vec![0u8; answer.len()];
    p.client.read_exact(&mut down).unwrap();
    assert!(down == answer, "the answer, intact");
    drop(p.backend);
    p.client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        read_to_end(&mut p.client),
        (Vec::new(), Some(ErrorKind::ConnectionReset)),
        "the close of a socket with SO_LINGER 0 is a reset"
    );
    assert_eq!(flow.join().unwrap().end, FlowEnd::Closed);
}

on_both_planes!(
    client_fin_resets_the_server,
    answer_read_then_client_fin_resets_the_server,
    server_fin_first_then_a_normal_close,
    last_fin_to_a_lingerless_client_is_a_reset,
);
