//! The runtime API's `disable frontend`, `enable frontend` and `shutdown frontend` through
//! `socat`, as HAProxy 2.6's: new clients are refused while the frontend is paused or shut down
//! (its sockets stop listening), a connection established before goes on with every byte both
//! ways, `enable` serves new clients again on every thread; HAProxy's messages for repeated
//! commands, levels and unknown names, and the frontend's `status` in `show stat` (`OPEN`
//! while paused, `STOP` once shut down, as 2.6 writes them). A reload listens again.

#[macro_use]
mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::data::DataStream;
use common::servers::Backend;
use common::stats::{self, cli, col, parse_csv, Setup};

on_both_planes!(pause_resume_and_shutdown_keep_the_established_connection);

fn start(dataplane: &str, s1: &Backend) -> Setup {
    stats::start("fe-admin", dataplane, &[], &[format!("s1 {}", s1.addr)])
}

/// The frontend row's `status` in `show stat`.
fn fe_status(s: &Setup) -> String {
    let (_, rows) = parse_csv(&s.admin("show stat"));
    let row = rows
        .iter()
        .find(|r| col(r, "pxname") == "fe" && col(r, "svname") == "FRONTEND")
        .expect("a FRONTEND row for fe");
    col(row, "status").to_owned()
}

/// Whether a new client is refused (a reset to its SYN), within 5 s.
fn refused(fe: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&fe, Duration::from_secs(5)) {
        Err(e) => e.kind() == io::ErrorKind::ConnectionRefused,
        Ok(_) => false,
    }
}

/// Sends `len` bytes of a pattern (`seed`) on `c` from another thread and reads them back: the
/// echo through lb must be the very bytes sent, within 20 s.
fn echoes(c: &TcpStream, len: usize, seed: u64) -> Result<(), String> {
    let sent = DataStream::new(seed).take_vec(len);
    let mut writer = c.try_clone().map_err(|e| e.to_string())?;
    writer
        .set_write_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    let data = sent.clone();
    let w = std::thread::spawn(move || writer.write_all(&data));
    let got = read_exactly(c, len, Instant::now() + Duration::from_secs(20));
    let wrote = w.join().map_err(|_| "the writer panicked".to_owned())?;
    wrote.map_err(|e| format!("write: {e}"))?;
    let got = got.map_err(|e| format!("read: {e}"))?;
    if got.len() != len {
        return Err(format!("{} of {len} bytes came back", got.len()));
    }
    if got != sent {
        let at = got.iter().zip(&sent).position(|(a, b)| a != b);
        return Err(format!("the bytes differ from byte {at:?}"));
    }
    Ok(())
}

/// `len` bytes from `c`, or why not by `deadline`.
fn read_exactly(c: &TcpStream, len: usize, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut r = c.try_clone()?;
    r.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut got = vec![0u8; len];
    let mut at = 0;
    while at < len {
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{at} of {len} bytes by the deadline"),
            ));
        }
        match r.read(&mut got[at..]) {
            Ok(0) => break,
            Ok(n) => at += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    got.truncate(at);
    Ok(got)
}

/// The CPU time lb used (user and system), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("lb runs");
    // Fields after the command's closing parenthesis; utime and stime are the 14th and 15th
    // of the line, the 12th and 13th after it.
    let after = &stat[stat.rfind(')').expect("a command in parentheses") + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// A new client, served: a short echo on a fresh connection.
fn served(fe: SocketAddr, seed: u64) -> Result<(), String> {
    let c = TcpStream::connect_timeout(&fe, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    echoes(&c, 1024, seed)
}

fn pause_resume_and_shutdown_keep_the_established_connection(dataplane: &str) {
    // The established connection may wait between two steps longer than the usual idle limit.
    let s1 = Backend::echo_idle("s1", Duration::from_mins(2));
    let s = start(dataplane, &s1);
    let est = TcpStream::connect(s.fe).unwrap();
    echoes(&est, 64 * 1024, 1).expect("the established connection, before");
    assert_eq!(fe_status(&s), "OPEN");

    // Levels: admin only, as HAProxy's.
    for sock in ["user.sock", "oper.sock"] {
        for cmd in [
            "disable frontend fe",
            "enable frontend fe",
            "shutdown frontend fe",
        ] {
            assert_eq!(
                cli(&s.dir.sock(sock), cmd),
                "Permission denied\n\n",
                "{sock}: {cmd}"
            );
        }
    }
    // Names.
    for (cmd, answer) in [
        ("disable frontend", "A frontend name is expected.\n\n"),
        ("enable frontend", "A frontend name is expected.\n\n"),
        ("shutdown frontend", "A frontend name is expected.\n\n"),
        ("disable frontend nope", "No such frontend.\n\n"),
        ("shutdown frontend be", "No such frontend.\n\n"),
        ("enable frontend fe", "All sockets are already enabled.\n\n"),
    ] {
        assert_eq!(s.admin(cmd), answer, "{cmd}");
    }
    served(s.fe, 2).expect("a new client before any change");

    // Paused: new clients refused, the established connection goes on, status as HAProxy 2.6.
    assert_eq!(s.admin("disable frontend fe"), "\n");
    assert!(refused(s.fe), "a new client was not refused while disabled");
    assert_eq!(fe_status(&s), "OPEN");
    // The accept loops wait, they do not spin (one spinning would use a CPU's 100 ticks a
    // second). Refused clients meanwhile wake nothing.
    let before = cpu_ticks(s.lb.pid());
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(1) {
        assert!(refused(s.fe));
        std::thread::sleep(Duration::from_millis(50));
    }
    let used = cpu_ticks(s.lb.pid()) - before;
    assert!(used < 10, "lb used {used} ticks in 1 s while disabled");
    echoes(&est, 1024 * 1024, 3).expect("the established connection, while disabled");
    assert_eq!(
        s.admin("disable frontend fe"),
        "All sockets are already disabled.\n\n"
    );
    assert!(refused(s.fe), "a new client was not refused while disabled");

    // Enabled again: every thread's socket serves (several clients, spread over them).
    assert_eq!(s.admin("enable frontend fe"), "\n");
    for i in 0..8 {
        served(s.fe, 10 + i).unwrap_or_else(|e| panic!("client {i} after enable: {e}"));
    }
    assert_eq!(
        s.admin("enable frontend fe"),
        "All sockets are already enabled.\n\n"
    );
    assert_eq!(fe_status(&s), "OPEN");
    echoes(&est, 256 * 1024, 4).expect("the established connection, after enable");

    // A second pause and resume works the same.
    assert_eq!(s.admin("disable frontend fe"), "\n");
    assert!(refused(s.fe));
    assert_eq!(s.admin("enable frontend fe"), "\n");
    served(s.fe, 20).expect("a new client after the second enable");

    // Shut down: refused for good, status STOP, the established connection goes on.
    assert_eq!(s.admin("shutdown frontend fe"), "\n");
    assert!(refused(s.fe), "a new client was not refused after shutdown");
    assert_eq!(fe_status(&s), "STOP");
    echoes(&est, 1024 * 1024, 5).expect("the established connection, after shutdown");
    for (cmd, answer) in [
        (
            "shutdown frontend fe",
            "Frontend was already shut down.\n\n",
        ),
        (
            "disable frontend fe",
            "Frontend was previously shut down, cannot disable.\n\n",
        ),
        (
            "enable frontend fe",
            "Frontend was previously shut down, cannot enable.\n\n",
        ),
    ] {
        assert_eq!(s.admin(cmd), answer, "{cmd}");
    }
    assert!(refused(s.fe), "a new client was not refused after shutdown");
    assert_eq!(fe_status(&s), "STOP");
    echoes(&est, 64 * 1024, 6).expect("the established connection, at the end");
    // The established connection ends normally: lb closes towards the client once the
    // client closed its side and the server answered with its close.
    est.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let mut r = est.try_clone().unwrap();
    r.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    r.read_to_end(&mut rest).expect("a clean end");
    assert!(rest.is_empty());
}

/// A reload starts every frontend from its configuration, as HAProxy's new process does: a
/// disabled frontend and a shut-down one listen again.
#[test]
fn a_reload_listens_again() {
    let s1 = Backend::echo("s1");
    let s = start("splice", &s1);
    assert_eq!(s.admin("disable frontend fe"), "\n");
    assert!(refused(s.fe));
    s.lb.signal(libc::SIGHUP);
    assert!(s
        .lb
        .wait_for_log("reload done: generation 1", Duration::from_secs(10)));
    for i in 0..4 {
        served(s.fe, 30 + i).unwrap_or_else(|e| panic!("client {i} after the reload: {e}"));
    }
    assert_eq!(
        s.admin("enable frontend fe"),
        "All sockets are already enabled.\n\n"
    );
    assert_eq!(s.admin("shutdown frontend fe"), "\n");
    assert!(refused(s.fe));
    assert_eq!(fe_status(&s), "STOP");
    s.lb.signal(libc::SIGHUP);
    assert!(s
        .lb
        .wait_for_log("reload done: generation 2", Duration::from_secs(10)));
    assert_eq!(fe_status(&s), "OPEN");
    for i in 0..4 {
        served(s.fe, 40 + i).unwrap_or_else(|e| panic!("client {i} after the 2nd reload: {e}"));
    }
}
