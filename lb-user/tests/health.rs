//! Health checks end to end, against real servers: Redis failover with tcp-check scripts,
//! MariaDB with `option mysql-check`, `OpenLDAP` with `option ldap-check`, `option
//! external-check` (argv, env, no zombies, no fd leaks), `on-marked-down shutdown-sessions` on
//! both data planes, and checks bounded by their timeout.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::thread;
use std::time::{Duration, Instant};

use common::data::closed_by_peer;
use common::health::{count_log, poll, redis_via, MariaDb, Redis, Slapd, TempDir};
use common::servers::Backend;
use common::{free_port, local, Lb, LbOpts, DEFAULTS};

on_both_planes!(
    redis_failover_follows_roles,
    shutdown_sessions_closes_live_flow
);

const PASSWORD: &str = "s3cret";
const INTER_MS: u64 = 200;
const RISE: u64 = 2;
const FALL: u64 = 2;
/// The tcp-check script of a Redis backend that wants `role`.
fn redis_backend(name: &str, role: &str, servers: &[&Redis]) -> String {
    let mut s = format!(
        "backend {name}\n    balance roundrobin\n    option tcp-check\n    tcp-check connect\n    \
         tcp-check send AUTH\\ {PASSWORD}\\r\\n\n    tcp-check expect string +OK\n    tcp-check \
         send PING\\r\\n\n    tcp-check expect string +PONG\n    tcp-check send \
         info\\ replication\\r\\n\n    tcp-check expect string role:{role}\n    tcp-check send \
         QUIT\\r\\n\n    tcp-check expect string +OK\n"
    );
    for (i, r) in servers.iter().enumerate() {
        let _ = writeln!(
            s,
            "    server r{i} 127.0.0.1:{} check inter {INTER_MS}ms rise {RISE} fall {FALL}",
            r.port
        );
    }
    s
}

/// Ports of the redis servers `n` consecutive connections through `addr` reached, or `None`
/// if one of them did not have `role`.
fn sample(addr: SocketAddr, role: &str, n: usize) -> Option<BTreeSet<u16>> {
    let mut ports = BTreeSet::new();
    for _ in 0..n {
        match redis_via(addr, PASSWORD) {
            Ok((port, r)) if r == role => {
                ports.insert(port);
            }
            _ => return None,
        }
    }
    Some(ports)
}

fn redis_failover_follows_roles(dataplane: &str) {
    let m = Redis::start(PASSWORD, None);
    let r1 = Redis::start(PASSWORD, Some(m.port));
    let r2 = Redis::start(PASSWORD, Some(m.port));
    let all = [&m, &r1, &r2];
    let (wport, rport) = (free_port(), free_port());
    let cfg = format!(
        "global\n    maxconn 1000\n{DEFAULTS}    timeout check 1s\n\nfrontend write\n    bind \
         127.0.0.1:{wport}\n    default_backend master\n\nfrontend read\n    bind \
         127.0.0.1:{rport}\n    default_backend replicas\n\n{}\n{}",
        redis_backend("master", "master", &all),
        redis_backend("replicas", "slave", &all),
    );
    let lb = Lb::start(&cfg, dataplane);
    let (w, r) = (local(wport), local(rport));
    let want = |master: u16, replicas: &[u16]| {
        let wset = sample(w, "master", 6);
        let rset = sample(r, "slave", 8);
        wset == Some(BTreeSet::from([master]))
            && rset == Some(replicas.iter().copied().collect::<BTreeSet<_>>())
    };
    assert!(
        poll(Duration::from_secs(10), || want(
            m.port,
            &[r1.port, r2.port]
        )),
        "before failover: writes must reach only {} and reads {} and {}; log:\n{}",
        m.port,
        r1.port,
        r2.port,
        lb.logs().join("\n")
    );
    lb.expect_log("Server master/r1 is DOWN");
    lb.expect_log("Server replicas/r0 is DOWN");

    // Promote r1: r0 and r2 follow it.
    let promoted = Instant::now();
    r1.cmd(&["REPLICAOF", "NO", "ONE"])
        .expect("REPLICAOF NO ONE");
    m.cmd(&["REPLICAOF", "127.0.0.1", &r1.port.to_string()])
        .expect("REPLICAOF on old master");
    r2.cmd(&["REPLICAOF", "127.0.0.1", &r1.port.to_string()])
        .expect("REPLICAOF on r2");
    let bound = Duration::from_millis((FALL + RISE) * INTER_MS + 1000);
    // Generous for a shared machine: the bound, plus the checks' own duration and noise.
    let ok = poll(bound * 3, || want(r1.port, &[m.port, r2.port]));
    let took = promoted.elapsed();
    assert!(
        ok,
        "after failover: writes must reach only {} and reads {} and {}; log:\n{}",
        r1.port,
        m.port,
        r2.port,
        lb.logs().join("\n")
    );
    eprintln!(
        "failover followed in {took:?} (HAProxy's bound fall*inter + rise*inter + 1s = {bound:?})"
    );
    lb.expect_log("Server master/r1 is UP");
    lb.expect_log("Server master/r0 is DOWN");
}

fn shutdown_sessions_closes_live_flow(dataplane: &str) {
    let echo = Backend::echo("echo");
    let check = TcpListener::bind("127.0.0.1:0").unwrap();
    let check_port = check.local_addr().unwrap().port();
    // Accept (and drop) check connections so the check passes while the listener lives.
    let check_thread = {
        let l = check.try_clone().unwrap();
        thread::spawn(move || {
            for c in l.incoming() {
                if c.is_err() {
                    break;
                }
            }
        })
    };
    let port = free_port();
    let cfg = format!(
        "{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n\nbackend \
         be\n    server s1 {} check port {check_port} inter {INTER_MS}ms rise 1 fall 1 \
         on-marked-down shutdown-sessions\n",
        echo.addr
    );
    let lb = Lb::start(&cfg, dataplane);
    let mut c = TcpStream::connect(local(port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    // Long enough for the flow to be in the kernel (sockmap) or splicing.
    thread::sleep(Duration::from_millis(3 * INTER_MS));
    c.write_all(b"again").unwrap();
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"again");

    // Make the check fail: nothing listens on the check port any more.
    // SAFETY: shutdown(2) on a listening socket we own wakes the accept loop with an error.
    unsafe { libc::shutdown(std::os::fd::AsRawFd::as_raw_fd(&check), libc::SHUT_RDWR) };
    drop(check);
    let _ = check_thread.join();
    assert!(
        lb.wait_for_log("Server be/s1 is DOWN", Duration::from_secs(5)),
        "s1 never went DOWN; log:\n{}",
        lb.logs().join("\n")
    );
    let down = Instant::now();
    c.set_read_timeout(Some(
        Duration::from_millis(INTER_MS) + Duration::from_secs(2),
    ))
    .unwrap();
    let mut rest = [0u8; 16];
    let end = c.read(&mut rest);
    assert!(
        closed_by_peer(&end),
        "the live flow must be closed after the DOWN, got {end:?} after {:?}",
        down.elapsed()
    );
    lb.expect_log("backend be has no server available!");
}

#[test]
fn mariadb_mysql_check_follows_the_server() {
    let mut db = MariaDb::start();
    db.sql("CREATE USER 'haproxy_user'@'%'; FLUSH PRIVILEGES;")
        .expect("create check user");
    let port = free_port();
    let cfg = format!(
        "{DEFAULTS}    timeout check 2s\n\nfrontend fe\n    bind 127.0.0.1:{port}\n    \
         default_backend db\n\nbackend db\n    option mysql-check user haproxy_user\n    option \
         log-health-checks\n    server \
         m1 127.0.0.1:{} check inter {INTER_MS}ms rise {RISE} fall {FALL}\n\nbackend \
         nouser\n    option mysql-check user nosuchuser\n    server m1 127.0.0.1:{} check inter \
         {INTER_MS}ms rise {RISE} fall {FALL}\n",
        db.port, db.port
    );
    let lb = Lb::start(&cfg, "splice");
    // UP: the first check passing leaves it fully UP without a transition; the unknown user
    // goes DOWN with MariaDB's error code.
    assert!(
        lb.wait_for_log("Server nouser/m1 is DOWN", Duration::from_secs(10)),
        "log:\n{}",
        lb.logs().join("\n")
    );
    let line = lb.expect_log("Server nouser/m1 is DOWN");
    assert!(
        line.contains("reason: Layer7 wrong status, code: 1045"),
        "{line}"
    );
    assert!(
        line.contains("Access denied for user 'nosuchuser'"),
        "{line}"
    );
    assert!(
        lb.wait_for_log(
            "Health check for server db/m1 succeeded",
            Duration::from_secs(5)
        ),
        "log:\n{}",
        lb.logs().join("\n")
    );
    assert!(
        lb.find_log("Server db/m1 is DOWN").is_none(),
        "{:?}",
        lb.logs()
    );

    db.stop();
    let stopped = Instant::now();
    assert!(
        lb.wait_for_log("Server db/m1 is DOWN", Duration::from_secs(10)),
        "log:\n{}",
        lb.logs().join("\n")
    );
    eprintln!(
        "DOWN {:?} after the stop (fall x inter = {}ms)",
        stopped.elapsed(),
        FALL * INTER_MS
    );
    assert!(lb
        .find_log("Server db/m1 is DOWN")
        .unwrap()
        .contains("Layer4 connection problem"));

    db.restart();
    assert!(
        lb.wait_for_log("Server db/m1 is UP", Duration::from_secs(10)),
        "log:\n{}",
        lb.logs().join("\n")
    );
    let up = lb.expect_log("Server db/m1 is UP");
    assert!(up.contains("reason: Layer7 check passed"), "{up}");
    assert!(up.contains("MariaDB") || up.contains("info: \""), "{up}");
}

/// `option ldap-check` against real `slapd`s: one that takes the anonymous bind is UP; one
/// with `disallow bind_anon` is DOWN with LDAP's resultCode (48) as the check's code; a
/// server that does not speak LDAP (an echo server: its answer is the request, not a bind
/// response) is DOWN as `Not LDAPv3 protocol`; a stopped slapd
/// goes DOWN at layer 4. HAProxy's texts, in the log and in `show stat`.
#[test]
fn slapd_ldap_check_follows_the_server() {
    let mut open = Some(Slapd::start(true));
    let closed = Slapd::start(false);
    let echo = Backend::echo("echo");
    let port = free_port();
    let check = format!("check inter {INTER_MS}ms rise {RISE} fall {FALL}");
    let sock = std::env::temp_dir().join(format!("lb-ldap-{}.sock", std::process::id()));
    let cfg = format!(
        "global\n    stats socket {} level admin\n{DEFAULTS}    timeout check 2s\n\nfrontend fe\n    \
         bind 127.0.0.1:{port}\n    default_backend ldap\n\nbackend ldap\n    option ldap-check\n    \
         option log-health-checks\n    server open {} {check}\n    server closed {} {check}\n    \
         server echo {} {check}\n",
        sock.display(),
        open.as_ref().unwrap().addr(),
        closed.addr(),
        echo.addr
    );
    let lb = Lb::start(&cfg, "splice");
    let t = Duration::from_secs(10);
    let logs = || lb.logs().join("\n");
    assert!(
        lb.wait_for_log("Server ldap/closed is DOWN", t),
        "{}",
        logs()
    );
    let line = lb.expect_log("Server ldap/closed is DOWN");
    assert!(
        line.contains(
            "reason: Layer7 wrong status, code: 48, info: \"See RFC: \
             http://tools.ietf.org/html/rfc4511#section-4.1.9\""
        ),
        "{line}"
    );
    assert!(lb.wait_for_log("Server ldap/echo is DOWN", t), "{}", logs());
    let line = lb.expect_log("Server ldap/echo is DOWN");
    assert!(
        line.contains("reason: Layer7 invalid response, info: \"Not LDAPv3 protocol\""),
        "{line}"
    );
    assert!(
        lb.wait_for_log("Health check for server ldap/open succeeded", t),
        "{}",
        logs()
    );
    assert!(
        lb.find_log("Server ldap/open is DOWN").is_none(),
        "{}",
        logs()
    );
    // `show stat`: status, check_status, check_code of each.
    let stat = common::stats::cli(&sock, "show stat");
    let row = |srv: &str| -> Vec<String> {
        let line = stat
            .lines()
            .find(|l| l.starts_with(&format!("ldap,{srv},")))
            .unwrap_or_else(|| panic!("no row for {srv}:\n{stat}"));
        let f: Vec<&str> = line.split(',').collect();
        [17, 36, 37].iter().map(|&i| f[i].to_owned()).collect()
    };
    assert_eq!(row("open"), ["UP", "L7OK", "0"], "{stat}");
    assert_eq!(row("closed"), ["DOWN", "L7STS", "48"], "{stat}");
    assert_eq!(row("echo"), ["DOWN", "L7RSP", ""], "{stat}");
    drop(open.take());
    assert!(lb.wait_for_log("Server ldap/open is DOWN", t), "{}", logs());
    assert!(
        lb.expect_log("Server ldap/open is DOWN")
            .contains("Layer4 connection problem"),
        "{}",
        logs()
    );
}

/// fd -> link target of a process's open fds.
fn fd_targets(pid: u32) -> std::collections::BTreeMap<u32, String> {
    let mut m = std::collections::BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in dir.flatten() {
            if let (Some(fd), Ok(t)) = (
                e.file_name().to_str().and_then(|n| n.parse().ok()),
                std::fs::read_link(e.path()),
            ) {
                m.insert(fd, t.display().to_string());
            }
        }
    }
    m
}

/// Zombie children of `pid` right now.
fn zombies_of(pid: u32) -> Vec<String> {
    let mut z = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return z;
    };
    for e in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let mut f = after.split(' ');
        let (state, ppid) = (f.next(), f.next().and_then(|p| p.parse::<u32>().ok()));
        if state == Some("Z") && ppid == Some(pid) {
            z.push(stat);
        }
    }
    z
}

#[test]
fn external_check_contract() {
    let dir = TempDir::new("extcheck");
    let d = dir.path.display().to_string();
    let script = dir.path.join("check.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" > {d}/argv\nenv > {d}/env\nls -l /proc/self/fd > {d}/fds\n\
             echo x >> {d}/runs\ntest -e {d}/pass\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.path.join("pass"), "").unwrap();
    let echo = Backend::echo("echo");
    let port = free_port();
    let cfg = format!(
        "global\n    external-check\n{DEFAULTS}    timeout check 3s\n\nfrontend fe\n    bind 127.0.0.1:{port}\n    \
         default_backend be\n\nbackend be\n    option external-check\n    external-check \
         command {}\n    external-check path /usr/bin:/bin\n    server s1 {} check inter 100ms \
         rise 1 fall 1 maxconn 7\n",
        script.display(),
        echo.addr
    );
    let lb = Lb::start_with(&LbOpts::new(&cfg, "splice").env("LB_SECRET_TEST_VAR", "leak"));
    let runs = || std::fs::read_to_string(dir.path.join("runs")).map_or(0, |s| s.lines().count());
    assert!(
        poll(Duration::from_secs(10), || runs() >= 2),
        "script never ran"
    );

    let argv = std::fs::read_to_string(dir.path.join("argv")).unwrap();
    assert_eq!(
        argv.trim(),
        format!("NOT_USED NOT_USED 127.0.0.1 {}", echo.addr.port())
    );
    let env = std::fs::read_to_string(dir.path.join("env")).unwrap();
    for want in [
        "HAPROXY_PROXY_NAME=be".to_owned(),
        "HAPROXY_PROXY_ID=1".to_owned(),
        "HAPROXY_PROXY_ADDR=NOT_USED".to_owned(),
        "HAPROXY_PROXY_PORT=NOT_USED".to_owned(),
        "HAPROXY_SERVER_NAME=s1".to_owned(),
        "HAPROXY_SERVER_ID=1".to_owned(),
        "HAPROXY_SERVER_ADDR=127.0.0.1".to_owned(),
        format!("HAPROXY_SERVER_PORT={}", echo.addr.port()),
        "HAPROXY_SERVER_MAXCONN=7".to_owned(),
        "HAPROXY_SERVER_CURCONN=0".to_owned(),
        "PATH=/usr/bin:/bin".to_owned(),
    ] {
        assert!(env.lines().any(|l| l == want), "env lacks {want}:\n{env}");
    }
    assert!(
        !env.contains("LB_SECRET_TEST_VAR"),
        "lb's environment leaked:\n{env}"
    );

    // No fd of lb's (sockets, pipes, io_uring/epoll/eventfd/BPF anon inodes): past stdio only
    // the shell's own (dash keeps a copy of stdout while redirecting) and `ls`'s directory.
    let fds = std::fs::read_to_string(dir.path.join("fds")).unwrap();
    let mut seen = 0;
    for l in fds.lines().filter(|l| l.contains(" -> ")) {
        let (left, target) = l.split_once(" -> ").unwrap();
        let fd: u32 = left.rsplit(' ').next().unwrap().parse().unwrap();
        seen += 1;
        assert!(
            fd <= 2
                || !(target.starts_with("socket:")
                    || target.starts_with("pipe:")
                    || target.starts_with("anon_inode:")),
            "fd {fd} ({target}) leaked into the external check:\n{fds}"
        );
    }
    assert!(seen >= 3, "no fd listing:\n{fds}");
    // And lb opens every fd close-on-exec (the child side above also marks them, so check the
    // parent side directly): fds the test process itself passed on to lb don't count.
    let ours: BTreeSet<String> = fd_targets(std::process::id()).into_values().collect();
    for (fd, target) in fd_targets(lb.pid()) {
        if fd <= 2 || ours.contains(&target) {
            continue;
        }
        let info =
            std::fs::read_to_string(format!("/proc/{}/fdinfo/{fd}", lb.pid())).unwrap_or_default();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok());
        if let Some(flags) = flags {
            assert!(
                flags & libc::O_CLOEXEC as u32 != 0,
                "lb's fd {fd} ({target}) is not close-on-exec (flags {flags:o})"
            );
        }
    }

    // Fails by the flag file: DOWN with the exit status; passes again: UP.
    std::fs::remove_file(dir.path.join("pass")).unwrap();
    assert!(
        lb.wait_for_log("Server be/s1 is DOWN", Duration::from_secs(5)),
        "log:\n{}",
        lb.logs().join("\n")
    );
    let down = lb.expect_log("Server be/s1 is DOWN");
    assert!(
        down.contains("reason: External check error, code: 1"),
        "{down}"
    );
    std::fs::write(dir.path.join("pass"), "").unwrap();
    assert!(lb.wait_for_log("Server be/s1 is UP", Duration::from_secs(5)));
    assert!(lb
        .find_log("Server be/s1 is UP")
        .unwrap()
        .contains("External check passed"));

    // 100 checks, no zombie at any point we look.
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut seen = Vec::new();
    while runs() < 100 && Instant::now() < deadline {
        seen.extend(zombies_of(lb.pid()));
        thread::sleep(Duration::from_millis(37));
    }
    assert!(runs() >= 100, "only {} checks ran", runs());
    // A child between its exit and its reaping is a zombie for an instant; one that stays is a
    // leak. Look again after the checks, a few times.
    let lingering = (0..5).all(|_| {
        thread::sleep(Duration::from_millis(30));
        !zombies_of(lb.pid()).is_empty()
    });
    assert!(!lingering, "zombie children of lb stay: {seen:?}");
}

#[test]
fn external_check_timeout_sends_sigterm() {
    let dir = TempDir::new("extslow");
    let d = dir.path.display().to_string();
    let script = dir.path.join("slow.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\ntrap 'echo term >> {d}/signals; exit 3' TERM\nwhile :; do sleep 0.05; done\n"),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let echo = Backend::echo("echo");
    let port = free_port();
    let cfg = format!(
        "global\n    external-check\n{DEFAULTS}    timeout check 300ms\n\nfrontend fe\n    bind \
         127.0.0.1:{port}\n    default_backend be\n\nbackend be\n    option external-check\n    \
         external-check command {}\n    server s1 {} check inter 200ms rise 1 fall 1\n",
        script.display(),
        echo.addr
    );
    let lb = Lb::start(&cfg, "splice");
    assert!(
        lb.wait_for_log("Server be/s1 is DOWN", Duration::from_secs(5)),
        "log:\n{}",
        lb.logs().join("\n")
    );
    let line = lb.expect_log("Server be/s1 is DOWN");
    assert!(line.contains("reason: External check timeout"), "{line}");
    assert!(poll(Duration::from_secs(5), || std::fs::read_to_string(
        dir.path.join("signals")
    )
    .is_ok_and(|s| s.contains("term"))));
}

#[test]
fn silent_check_server_is_bounded_by_timeout_check() {
    // Accepts and never answers.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let _t = thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming().take(64) {
            match c {
                Ok(c) => held.push(c),
                Err(_) => break,
            }
        }
    });
    let port = free_port();
    let cfg = format!(
        "{DEFAULTS}    timeout check 300ms\n\nfrontend fe\n    bind 127.0.0.1:{port}\n    \
         default_backend be\n\nbackend be\n    option redis-check\n    server s1 {addr} check \
         inter 200ms rise 1 fall 1\n"
    );
    let lb = Lb::start(&cfg, "splice");
    assert!(
        lb.wait_for_log("Server be/s1 is DOWN", Duration::from_secs(5)),
        "log:\n{}",
        lb.logs().join("\n")
    );
    let line = lb.expect_log("Server be/s1 is DOWN");
    assert!(line.contains("reason: Layer7 timeout"), "{line}");
    let ms: u64 = line
        .split("check duration: ")
        .nth(1)
        .and_then(|s| s.split("ms").next())
        .and_then(|s| s.parse().ok())
        .expect("check duration in the DOWN line");
    assert!(
        (250..5000).contains(&ms),
        "check took {ms}ms for timeout check 300ms"
    );
    assert_eq!(count_log(&lb, "Server be/s1 is UP"), 0);
}
