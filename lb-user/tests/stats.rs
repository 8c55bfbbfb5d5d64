//! The stats page through the real lb: HTML rendered by headless Chromium (screenshot kept in
//! `target/test-artifacts/`), Basic authentication, `;csv` in HAProxy's column order, `/metrics`
//! checked by `promtool`, the admin form, and bad requests.

#[macro_use]
mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::scenarios;
use common::servers::Backend;
use common::stats::{
    artifacts_dir, col, config, get, http_raw, parse_csv, request, stats_section, SockDir,
};
use common::{free_port, local, Lb};

/// HAProxy 2.6's first 40 CSV columns, in order.
const FIRST_40: [&str; 40] = [
    "pxname",
    "svname",
    "qcur",
    "qmax",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "qlimit",
    "pid",
    "iid",
    "sid",
    "throttle",
    "lbtot",
    "tracked",
    "type",
    "rate",
    "rate_lim",
    "rate_max",
    "check_status",
    "check_code",
    "check_duration",
    "hrsp_1xx",
];

struct Setup {
    _lb: Lb,
    fe: SocketAddr,
    stats: SocketAddr,
    dir: SockDir,
    _servers: Vec<Backend>,
}

fn start(extra: &str) -> Setup {
    let s1 = Backend::ident("s1");
    let s2 = Backend::ident("s2");
    let (fe, st) = (free_port(), free_port());
    let dir = SockDir::new("stats");
    let cfg = config(
        fe,
        &dir,
        &[],
        &[
            format!("s1 {}", s1.addr),
            format!("s2 {} weight 2", s2.addr),
        ],
        &format!("{}{extra}", stats_section(st)),
    );
    Setup {
        _lb: Lb::start(&cfg, "splice"),
        fe: local(fe),
        stats: local(st),
        dir,
        _servers: vec![s1, s2],
    }
}

const AUTH: Option<(&str, &str)> = Some(("admin", "pass"));

/// Runs chromium headless with a bound on its run time; returns whether it exited successfully.
fn chromium(args: &[String], limit: Duration) -> std::process::Output {
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium (installed by cargo xtask setup)");
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn page_renders_in_chromium() {
    let s = start("");
    // Some traffic so the counters are not all zero.
    for _ in 0..3 {
        scenarios::who(s.fe).unwrap();
    }
    let profile = SockDir::new("chromium");
    let shot = artifacts_dir().join("stats-page.png");
    let _ = std::fs::remove_file(&shot);
    let url = format!("http://admin:pass@{}/stats", s.stats);
    let common = [
        format!("--user-data-dir={}", profile.path.display()),
        "--window-size=1280,900".to_owned(),
    ];
    let out = chromium(
        &[common[0].clone(), "--dump-dom".to_owned(), url.clone()],
        Duration::from_mins(1),
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Statistics Report",
        "General process information",
        ">s1<",
        ">s2<",
        "Backend",
        "Frontend",
        "no check",
        "OPEN",
    ] {
        assert!(
            dom.contains(needle),
            "rendered DOM lacks {needle:?}:\n{dom}"
        );
    }
    let out = chromium(
        &[
            common[0].clone(),
            common[1].clone(),
            format!("--screenshot={}", shot.display()),
            url,
        ],
        Duration::from_mins(1),
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}); chromium said: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}

#[test]
fn authentication_is_required() {
    let s = start("");
    for auth in [
        None,
        Some(("admin", "wrong")),
        Some(("nobody", "pass")),
        Some(("admin", "")),
    ] {
        let r = get(s.stats, "/stats", auth);
        assert_eq!(r.status, 401, "{auth:?}");
        assert_eq!(
            r.header("www-authenticate").as_deref(),
            Some("Basic realm=\"HAProxy Statistics\"")
        );
    }
    assert_eq!(get(s.stats, "/stats", AUTH).status, 200);
    // A malformed Authorization header is a 401 too, not a 400 or a crash.
    let r = http_raw(
        s.stats,
        b"GET /stats HTTP/1.1\r\nAuthorization: Basic !!!\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 401);
}

#[test]
fn userlist_crypt_and_clear_passwords() {
    let st = free_port();
    let dir = SockDir::new("userlist");
    let srv = Backend::ident("s1");
    let cfg = config(
        free_port(),
        &dir,
        &[],
        &[format!("s1 {}", srv.addr)],
        &format!("\nuserlist ops\n    user alice password $6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1\n    user bob insecure-password hunter2\n\nlisten ops\n    mode http\n    bind 127.0.0.1:{st}\n    stats uri /\n    http-request auth realm Ops unless {{ http_auth(ops) }}\n"),
    );
    let _lb = Lb::start(&cfg, "splice");
    let addr = local(st);
    assert_eq!(get(addr, "/", Some(("alice", "secret"))).status, 200);
    assert_eq!(get(addr, "/", Some(("bob", "hunter2"))).status, 200);
    let r = get(addr, "/", Some(("alice", "Secret")));
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some("Basic realm=\"Ops\"")
    );
    assert_eq!(get(addr, "/", Some(("bob", "secret"))).status, 401);
}

#[test]
fn csv_has_haproxy_columns_and_rows() {
    let s = start("");
    for _ in 0..6 {
        scenarios::who(s.fe).unwrap();
    }
    // A flow's bytes are counted when lb ends it, which may come a moment after the client
    // saw the answer and its end (once, on a loaded machine, `bout` was read before that).
    let backend_bout = |text: &str| {
        let (_, rows) = parse_csv(text);
        rows.iter()
            .find(|r| col(r, "svname") == "BACKEND")
            .and_then(|r| col(r, "bout").parse::<u64>().ok())
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let r = loop {
        let r = get(s.stats, "/stats;csv", AUTH);
        if r.status != 200
            || backend_bout(&r.text()).is_some_and(|b| b >= 12)
            || Instant::now() >= deadline
        {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(r.status, 200);
    let (cols, rows) = parse_csv(&r.text());
    assert_eq!(&cols[..40], &FIRST_40[..]);
    let names: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (col(r, "pxname"), col(r, "svname")))
        .collect();
    assert_eq!(
        names,
        [
            ("fe", "FRONTEND"),
            ("be", "s1"),
            ("be", "s2"),
            ("be", "BACKEND")
        ]
    );
    let fe = &rows[0];
    assert_eq!(col(fe, "status"), "OPEN");
    assert_eq!(col(fe, "stot"), "6");
    assert_eq!(col(fe, "type"), "0");
    assert_eq!(col(&rows[1], "status"), "no check");
    assert_eq!(col(&rows[1], "type"), "2");
    assert_eq!(col(&rows[1], "weight"), "1");
    assert_eq!(col(&rows[2], "weight"), "2");
    // Weighted round robin: 2 and 4 of the 6 connections.
    assert_eq!(col(&rows[1], "stot"), "2");
    assert_eq!(col(&rows[2], "stot"), "4");
    let be = &rows[3];
    assert_eq!(col(be, "status"), "UP");
    assert_eq!(col(be, "stot"), "6");
    assert_eq!(col(be, "act"), "2");
    assert_eq!(col(be, "weight"), "3");
    assert!(
        col(be, "bout").parse::<u64>().unwrap() >= 12,
        "s1\\n/s2\\n went out"
    );
}

/// The cells of the page's row for `server` (`be/NAME`), tags stripped.
fn page_cells(page: &str, server: &str) -> Vec<String> {
    let anchor = format!("name=\"be/{server}\"");
    let row = page
        .lines()
        .find(|l| l.contains(&anchor))
        .unwrap_or_else(|| panic!("no row for {server}"));
    row.split("<td")
        .skip(1)
        .map(|cell| {
            let inner = &cell[cell.find('>').map_or(0, |i| i + 1)..];
            let inner = inner.split("</td>").next().unwrap_or("");
            // Drop the nested tags (the server's link) and keep the text.
            let mut text = String::new();
            let mut in_tag = false;
            for ch in inner.chars() {
                match ch {
                    '<' => in_tag = true,
                    '>' => in_tag = false,
                    c if !in_tag => text.push(c),
                    _ => {}
                }
            }
            text
        })
        .collect()
}

/// The page's "Last" cell: after the checkbox and name cells, Queue (3), Session rate (3),
/// Sessions Cur/Max/Limit/Total/LbTot (5).
const LAST_CELL: usize = 13;

#[test]
fn last_session_age_in_csv_and_page() {
    let s = start("");
    let csv = |name: &str| {
        let (_, rows) = parse_csv(&get(s.stats, "/stats;csv", AUTH).text());
        let row = rows
            .iter()
            .find(|r| col(r, "svname") == name)
            .unwrap_or_else(|| panic!("no row {name}"));
        col(row, "lastsess").to_owned()
    };
    // No session yet: -1, and HAProxy's "?" on the page; the frontend has no such field.
    for name in ["s1", "s2", "BACKEND"] {
        assert_eq!(csv(name), "-1", "{name}");
    }
    assert_eq!(csv("FRONTEND"), "");
    let page = get(s.stats, "/stats", AUTH).text();
    assert_eq!(page_cells(&page, "s1")[LAST_CELL], "?");
    // One connection: round robin over weights 1/2 starts with s2.
    assert_eq!(scenarios::who(s.fe).unwrap(), "s2");
    let deadline = Instant::now() + Duration::from_secs(10);
    while csv("s2") != "2" {
        assert!(Instant::now() < deadline, "s2 lastsess {}", csv("s2"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let page = get(s.stats, "/stats", AUTH).text();
    let last = &page_cells(&page, "s2")[LAST_CELL];
    assert!(last == "2s" || last == "3s", "s2's Last cell: {last:?}");
    assert_eq!(page_cells(&page, "s1")[LAST_CELL], "?");
    assert_eq!(csv("s1"), "-1");
    // The backend's last session is its servers' latest.
    let be: i64 = csv("BACKEND").parse().unwrap();
    assert!((2..=3).contains(&be), "BACKEND lastsess {be}");
}

/// `description` on a proxy shows beside its name on the page, escaped, as HAProxy shows it; a
/// proxy without one keeps the empty cell.
#[test]
fn proxy_description_beside_its_name() {
    let s1 = Backend::ident("s1");
    let (fe, st) = (free_port(), free_port());
    let dir = SockDir::new("stats-desc");
    let cfg = config(
        fe,
        &dir,
        &["description MySQL   replicas <eu-west>"],
        &[format!("s1 {}", s1.addr)],
        &stats_section(st),
    );
    let _lb = Lb::start(&cfg, "splice");
    let page = get(local(st), "/stats", AUTH).text();
    assert!(
        page.contains(
            "<a class=px href=\"#be\">be</a></th><th class=\"desc\" width=\"90%\">MySQL replicas &lt;eu-west&gt;</th>"
        ),
        "{page}"
    );
    assert!(
        page.contains(
            "<a class=px href=\"#fe\">fe</a></th><th class=\"empty\" width=\"90%\"></th>"
        ),
        "{page}"
    );
    assert_eq!(scenarios::who(local(fe)).unwrap(), "s1");
}

#[test]
fn metrics_pass_promtool() {
    let s = start("");
    scenarios::who(s.fe).unwrap();
    let r = get(s.stats, "/metrics", None);
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = r.text();
    for needle in [
        "haproxy_process_start_time_seconds ",
        "haproxy_frontend_current_sessions{proxy=\"fe\"} ",
        "haproxy_frontend_sessions_total{proxy=\"fe\"} 1",
        "haproxy_backend_bytes_in_total{proxy=\"be\"} ",
        "haproxy_backend_status{proxy=\"be\",state=\"UP\"} 1",
        "haproxy_server_status{proxy=\"be\",server=\"s1\",state=\"UP\"} 1",
        "haproxy_server_status{proxy=\"be\",server=\"s1\",state=\"MAINT\"} 0",
        "haproxy_server_weight{proxy=\"be\",server=\"s2\"} 2",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    let file = artifacts_dir().join("metrics.txt");
    std::fs::write(&file, &text).unwrap();
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .expect("promtool (package prometheus, installed by cargo xtask setup)");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn admin_form_changes_server_state() {
    let s = start("");
    let r = request(s.stats, "POST", "/stats", AUTH, "s=s1&action=maint&b=be");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location").as_deref(), Some("/stats;st=DONE"));
    let (_, rows) = parse_csv(&get(s.stats, "/stats;csv", AUTH).text());
    assert_eq!(col(&rows[1], "status"), "MAINT");
    for _ in 0..4 {
        assert_eq!(scenarios::who(s.fe).unwrap(), "s2");
    }
    let page = get(s.stats, "/stats;st=DONE", AUTH).text();
    assert!(page.contains("Action processed successfully."));
    assert!(page.contains("class=\"maintain\""));
    // The HAProxy form names the backend by id: "#2" is `be` (fe is proxy 1).
    let r = request(s.stats, "POST", "/stats", AUTH, "s=s1&action=ready&b=%232");
    assert_eq!(r.header("location").as_deref(), Some("/stats;st=DONE"));
    let (_, rows) = parse_csv(&get(s.stats, "/stats;csv", AUTH).text());
    assert_eq!(col(&rows[1], "status"), "no check");
    // Without credentials nothing changes.
    assert_eq!(
        request(s.stats, "POST", "/stats", None, "s=s1&action=maint&b=be").status,
        401
    );
    let r = request(s.stats, "POST", "/stats", AUTH, "s=zz&action=maint&b=be");
    assert_eq!(r.header("location").as_deref(), Some("/stats;st=ERRP"));
}

#[test]
fn bad_requests_get_400_and_do_no_harm() {
    let s = start("");
    for raw in [
        &b"\x00\x01\x02garbage\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET /stats HTTP/9.9\r\n\r\n",
        b"GET /stats HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        b"GET /stats HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        let r = http_raw(s.stats, raw).unwrap();
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(raw));
    }
    let mut huge = b"GET /stats HTTP/1.1\r\nX: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 100_000));
    assert_eq!(http_raw(s.stats, &huge).unwrap().status, 400);
    assert_eq!(
        http_raw(s.stats, b"DELETE /stats HTTP/1.1\r\n\r\n")
            .unwrap()
            .status,
        405
    );
    assert_eq!(get(s.stats, "/elsewhere", AUTH).status, 503);
    let r = request(s.stats, "HEAD", "/stats", AUTH, "");
    assert_eq!((r.status, r.body.len()), (200, 0));
    // Still serving, pages and traffic.
    assert_eq!(get(s.stats, "/stats", AUTH).status, 200);
    scenarios::who(s.fe).unwrap();
}

#[test]
fn incomplete_request_times_out_with_408() {
    let st = free_port();
    let dir = SockDir::new("slow");
    let srv = Backend::ident("s1");
    let cfg = config(
        free_port(),
        &dir,
        &[],
        &[format!("s1 {}", srv.addr)],
        &format!("\nlisten slow\n    mode http\n    bind 127.0.0.1:{st}\n    timeout client 1s\n    stats uri /\n"),
    );
    let _lb = Lb::start(&cfg, "splice");
    let started = Instant::now();
    // Half a request head, then silence: answered 408 and closed within the timeout (+ slack).
    let r = http_raw(local(st), b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    assert_eq!(r.status, 408);
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(get(local(st), "/", None).status, 200);
}

/// The page's "Session rate" Max cell (after the checkbox, the name and Queue's three).
const RATE_MAX_CELL: usize = 6;

/// Connections of the burst in [`session_rates_count_a_burst_and_fall_back_to_zero`].
const BURST: u64 = 30;

/// Session rates (`rate`, `rate_max`, a frontend's `conn_rate` and `conn_rate_max`, `show
/// info`'s `ConnRate`/`SessRate` and their highest, the exporter's `max_session_rate`) count a
/// burst of connections as HAProxy's per-second counters do, and the current rate falls back
/// to 0 once a second passes without any.
#[test]
fn session_rates_count_a_burst_and_fall_back_to_zero() {
    let s = start("");
    let csv =
        || -> Vec<Vec<(String, String)>> { parse_csv(&get(s.stats, "/stats;csv", AUTH).text()).1 };
    let field = |rows: &[Vec<(String, String)>], name: &str, column: &str| -> u64 {
        let row = rows
            .iter()
            .find(|r| col(r, "svname") == name)
            .unwrap_or_else(|| panic!("no row {name}"));
        col(row, column)
            .parse()
            .unwrap_or_else(|_| panic!("{name} {column}: {:?}", col(row, column)))
    };
    let before = csv();
    for (name, column) in [
        ("FRONTEND", "rate_max"),
        ("FRONTEND", "conn_rate_max"),
        ("BACKEND", "rate_max"),
        ("s1", "rate_max"),
    ] {
        assert_eq!(
            field(&before, name, column),
            0,
            "{name} {column} before any connection"
        );
    }
    // BURST connections, weights 1 and 2: 10 to s1, 20 to s2.
    let started = Instant::now();
    for _ in 0..BURST {
        scenarios::who(s.fe).unwrap();
    }
    let took = started.elapsed();
    let rows = csv();
    // A burst within a second counts whole, but may straddle the counter's second: its rate
    // then reads the previous second in proportion, at least half of each part.
    let within = |v: u64, total: u64, what: &str| {
        assert!(
            (total / 2..=total).contains(&v),
            "{what}: {v} for {total} connections in {took:?}"
        );
    };
    assert!(took < Duration::from_millis(900), "the burst took {took:?}");
    within(
        field(&rows, "FRONTEND", "rate_max"),
        BURST,
        "frontend rate_max",
    );
    within(
        field(&rows, "FRONTEND", "conn_rate_max"),
        BURST,
        "frontend conn_rate_max",
    );
    within(
        field(&rows, "BACKEND", "rate_max"),
        BURST,
        "backend rate_max",
    );
    within(field(&rows, "s2", "rate_max"), 20, "s2 rate_max");
    within(field(&rows, "s1", "rate_max"), 10, "s1 rate_max");
    assert!(
        field(&rows, "FRONTEND", "rate") >= 1,
        "the frontend's rate right after"
    );
    assert_eq!(
        field(&rows, "FRONTEND", "rate_lim"),
        0,
        "no rate-limit sessions"
    );
    let page = get(s.stats, "/stats", AUTH).text();
    let cell: u64 = page_cells(&page, "s2")[RATE_MAX_CELL].parse().unwrap();
    within(cell, 20, "s2's Session rate Max on the page");
    let info = common::stats::cli(&s.dir.sock("admin.sock"), "show info\n");
    let info_of = |k: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}: ")))
            .unwrap_or_else(|| panic!("no {k} in show info:\n{info}"))
            .parse()
            .unwrap()
    };
    within(info_of("MaxConnRate"), BURST, "MaxConnRate");
    within(info_of("MaxSessRate"), BURST, "MaxSessRate");
    let metrics = get(s.stats, "/metrics", None).text();
    let metric = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
            .parse()
            .unwrap()
    };
    within(
        metric("haproxy_frontend_max_session_rate{proxy=\"fe\"}"),
        BURST,
        "exporter",
    );
    within(
        metric("haproxy_process_max_connection_rate"),
        BURST,
        "exporter, process",
    );
    // Two seconds without a connection: nothing now, the highest kept.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rows = csv();
        if field(&rows, "FRONTEND", "rate") == 0 && field(&rows, "s2", "rate") == 0 {
            assert_eq!(
                field(&rows, "FRONTEND", "rate_max"),
                field(&csv(), "FRONTEND", "rate_max")
            );
            assert!(field(&rows, "FRONTEND", "rate_max") >= BURST / 2);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rate stays above 0 with no connection"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
