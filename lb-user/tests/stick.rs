//! Stick tables through the real lb, on every data plane: rate limiting as HAProxy's docs
//! write it (`track-sc0 src` + `reject if { src_conn_rate gt 10 }`), a `conn_cur` limit whose
//! held connections are released when they end, `stick on src` persistence with its fallback
//! when the server goes down, `show table`/`clear table` through the runtime API (HAProxy 2.6's
//! format), and configuration errors.

#[macro_use]
mod common;

use std::io::Write;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use common::data::{read_all, DataStream};

use common::scenarios::{self, send_and_close, send_and_close_from, Held};
use common::servers::{wait_until, Backend};
use common::stats::{self, Setup, SockDir};
use common::{free_port, lb_check, local, Lb};

on_both_planes!(
    rate_limit_rejects_past_ten_per_period_and_recovers,
    conn_cur_limit_follows_held_connections,
    stick_on_src_keeps_the_server_and_falls_back,
    store_response_keys_on_the_servers_first_bytes,
    gpc_arrays_count_reject_and_show_as_haproxy,
);

/// `frontend fe` with `fe_lines` → `backend be` with `be_lines` and `servers`, and runtime API
/// sockets at every level.
fn start(dataplane: &str, fe_lines: &[&str], be_lines: &[&str], servers: &[String]) -> Setup {
    let fe = free_port();
    let dir = SockDir::new("stick");
    let mut cfg = stats::config(fe, &dir, be_lines, servers, "");
    let fe_text: String = fe_lines.iter().flat_map(|l| ["    ", l, "\n"]).collect();
    cfg = cfg.replacen(
        "    default_backend be\n",
        &format!("{fe_text}    default_backend be\n"),
        1,
    );
    Setup {
        lb: Lb::start(&cfg, dataplane),
        fe: local(fe),
        dir,
    }
}

/// The value of `name` in the entry line of `key` in `show table T` (`None`: no such entry).
fn entry_value(s: &Setup, table: &str, key: &str, name: &str) -> Option<String> {
    let out = s.admin(&format!("show table {table}"));
    let line = out
        .lines()
        .find(|l| l.contains(&format!(" key={key} ")))?
        .to_owned();
    line.split(' ')
        .find_map(|w| w.split_once('=').filter(|(n, _)| *n == name))
        .map(|(_, v)| v.to_owned())
}

fn rate_limit_rejects_past_ten_per_period_and_recovers(dataplane: &str) {
    let sink = Backend::sink("sink", 1024);
    let s = start(
        dataplane,
        &[
            "stick-table type ip size 100 expire 30s store conn_cnt,conn_rate(3s)",
            "tcp-request connection track-sc0 src",
            "tcp-request connection reject if { src_conn_rate gt 10 }",
        ],
        &[],
        &[format!("sink {}", sink.addr)],
    );
    for i in 0..10 {
        send_and_close(s.fe, 100 + i, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("connection {} refused: {e}", i + 1));
    }
    for i in 10..12 {
        assert!(
            send_and_close(s.fe, 100 + i, Duration::from_secs(10)).is_err(),
            "connection {} passed the rate limit",
            i + 1
        );
    }
    assert_eq!(
        sink.accepted(),
        10,
        "rejected connections reached the server"
    );
    // Another source has its own entry: untouched by the first one's rate.
    send_and_close_from(
        "127.0.0.2".parse().unwrap(),
        s.fe,
        150,
        Duration::from_secs(10),
    )
    .expect("another source is not limited");
    assert_eq!(
        entry_value(&s, "fe", "127.0.0.2", "conn_cnt").as_deref(),
        Some("1")
    );
    assert_eq!(
        entry_value(&s, "fe", "127.0.0.1", "conn_cnt").as_deref(),
        Some("12")
    );
    // The period slides: once the rate reads 10 or less, connections pass again.
    assert!(
        wait_until(Duration::from_secs(10), || {
            entry_value(&s, "fe", "127.0.0.1", "conn_rate(3000)")
                .and_then(|v| v.parse::<u32>().ok())
                .is_some_and(|v| v < 10)
        }),
        "the rate never went down: {}",
        s.admin("show table fe")
    );
    send_and_close(s.fe, 200, Duration::from_secs(10)).expect("accepted again after the period");
    assert_eq!(sink.accepted(), 12);
}

fn conn_cur_limit_follows_held_connections(dataplane: &str) {
    let hold = Backend::ident_hold("hold");
    let s = start(
        dataplane,
        &[
            "stick-table type ip size 100 expire 30s store conn_cur",
            "tcp-request connection track-sc0 src",
            "tcp-request connection reject if { sc0_conn_cur gt 2 }",
        ],
        &[],
        &[format!("hold {}", hold.addr)],
    );
    let a = Held::open(s.fe).expect("first connection");
    let b = Held::open(s.fe).expect("second connection");
    assert_eq!(a.server, "hold");
    assert!(
        Held::open(s.fe).is_err(),
        "a third concurrent connection passed"
    );
    assert_eq!(
        entry_value(&s, "fe", "127.0.0.1", "conn_cur").as_deref(),
        Some("2"),
        "the rejected connection's tracking ended with it"
    );
    a.close().expect("close the first");
    assert!(
        wait_until(Duration::from_secs(5), || entry_value(
            &s,
            "fe",
            "127.0.0.1",
            "conn_cur"
        )
        .as_deref()
            == Some("1")),
        "conn_cur not released: {}",
        s.admin("show table fe")
    );
    let c = Held::open(s.fe).expect("a slot was released");
    b.close().expect("close the second");
    c.close().expect("close the third");
    assert!(
        wait_until(Duration::from_secs(5), || entry_value(
            &s,
            "fe",
            "127.0.0.1",
            "conn_cur"
        )
        .as_deref()
            == Some("0")),
        "conn_cur leaked: {}",
        s.admin("show table fe")
    );
    // And the entry is no longer in use.
    assert_eq!(
        entry_value(&s, "fe", "127.0.0.1", "use").as_deref(),
        Some("0")
    );
}

fn stick_on_src_keeps_the_server_and_falls_back(dataplane: &str) {
    let s1 = Backend::ident("s1");
    let s2 = Backend::ident("s2");
    let s = start(
        dataplane,
        &[],
        &[
            "balance roundrobin",
            "stick-table type ip size 100 expire 30m",
            "stick on src",
        ],
        &[
            format!("s1 {} id 11", s1.addr),
            format!("s2 {} id 12", s2.addr),
        ],
    );
    let first = scenarios::who(s.fe).unwrap();
    for _ in 0..6 {
        assert_eq!(scenarios::who(s.fe).unwrap(), first, "stickiness lost");
    }
    let (id, other) = if first == "s1" {
        ("11", "s2")
    } else {
        ("12", "s1")
    };
    assert_eq!(
        entry_value(&s, "be", "127.0.0.1", "server_id").as_deref(),
        Some(id)
    );
    assert_eq!(
        entry_value(&s, "be", "127.0.0.1", "server_key").as_deref(),
        Some(first.as_str())
    );
    // The stored server goes down: balance as usual, and stick to the new one.
    assert_eq!(s.admin(&format!("set server be/{first} state maint")), "\n");
    for _ in 0..4 {
        assert_eq!(scenarios::who(s.fe).unwrap(), other);
    }
    assert_eq!(s.admin(&format!("set server be/{first} state ready")), "\n");
    for _ in 0..4 {
        assert_eq!(
            scenarios::who(s.fe).unwrap(),
            other,
            "the client went back to the first server"
        );
    }
}

/// A session id the server hands out in its first bytes (as a TLS ServerHello does), learnt by
/// `stick store-response`, and matched in the client's first bytes of later connections
/// (`stick match`): the recipe of corpus config 34 with plain bytes. Echo servers, so the
/// server's first bytes are the client's; all bytes are checked both ways.
fn store_response_keys_on_the_servers_first_bytes(dataplane: &str) {
    let e1 = Backend::echo("e1");
    let e2 = Backend::echo("e2");
    let s = start(
        dataplane,
        &[],
        &[
            "balance roundrobin",
            "stick-table type binary len 4 size 10 expire 1m",
            "tcp-request inspect-delay 5s",
            "tcp-request content accept if { req.len ge 4 }",
            "tcp-response inspect-delay 5s",
            "tcp-response content accept if { res.len ge 4 }",
            "stick match req.payload(0,4)",
            "stick store-response res.payload(0,4) if { res.len ge 4 }",
        ],
        &[format!("e1 {}", e1.addr), format!("e2 {}", e2.addr)],
    );
    let exchange = |sid: &[u8; 4], seed: u64| {
        let mut req = sid.to_vec();
        req.extend(DataStream::new(seed).take_vec(64 * 1024));
        let mut c = scenarios::connect(s.fe).expect("connect");
        c.write_all(&req).expect("send");
        c.shutdown(Shutdown::Write).expect("shutdown");
        let got = read_all(
            &mut c,
            req.len() + 1,
            Instant::now() + Duration::from_secs(10),
        )
        .expect("read the echo");
        assert!(
            got == req,
            "echo differs ({} of {} bytes)",
            got.len(),
            req.len()
        );
    };
    // The first connection of a session id is balanced; the others follow it.
    exchange(b"SID1", 1);
    let (first, other) = if e1.accepted() == 1 {
        (&e1, &e2)
    } else {
        (&e2, &e1)
    };
    for i in 0..4 {
        exchange(b"SID1", 10 + i);
    }
    assert_eq!((first.accepted(), other.accepted()), (5, 0), "SID1 moved");
    assert!(
        s.admin("show table be").contains("key=53494431 use=0"),
        "{}",
        s.admin("show table be")
    );
    // Another session id is balanced (round robin: the other server) and sticks there.
    exchange(b"SID2", 20);
    exchange(b"SID2", 21);
    assert_eq!(other.accepted(), 2, "{}", s.admin("show table be"));
}

#[test]
fn show_and_clear_table_as_haproxy() {
    let sink = Backend::sink("sink", 1024);
    let s = start(
        "splice",
        &[
            "stick-table type ip size 200 expire 60s store conn_cnt,conn_rate(10s),gpc0",
            "tcp-request connection track-sc0 src",
            "tcp-request connection sc-inc-gpc0(0) if { src_conn_cnt ge 2 }",
        ],
        &[],
        &[format!("sink {}", sink.addr)],
    );
    for i in 0..3 {
        send_and_close(s.fe, i, Duration::from_secs(10)).unwrap();
    }
    assert_eq!(
        s.admin("show table"),
        "# table: fe, type: ip, size:200, used:1\n\n"
    );
    let out = s.admin("show table fe");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "# table: fe, type: ip, size:200, used:1");
    let (ptr, rest) = lines[1].split_once(": ").unwrap();
    assert!(
        ptr.starts_with("0x") && u64::from_str_radix(&ptr[2..], 16).is_ok(),
        "{out}"
    );
    let rest = rest.split(' ').collect::<Vec<_>>();
    assert_eq!(rest[..2], ["key=127.0.0.1", "use=0"], "{out}");
    let exp: u64 = rest[2].strip_prefix("exp=").unwrap().parse().unwrap();
    assert!((50_000..=60_000).contains(&exp), "{out}");
    assert_eq!(
        rest[3..],
        ["gpc0=2", "conn_cnt=3", "conn_rate(10000)=3"],
        "{out}"
    );
    assert_eq!(lines[2], "", "{out}");
    // Filters and keys.
    assert_eq!(
        s.admin("show table fe data.conn_cnt gt 3"),
        "# table: fe, type: ip, size:200, used:1\n\n"
    );
    assert_eq!(s.admin("show table fe data.gpc0 eq 2").lines().count(), 3);
    assert_eq!(s.admin("show table fe key 127.0.0.2").lines().count(), 2);
    assert_eq!(
        s.admin("show table fe data.conn_cur gt 1"),
        "Filter entry #1: Data type not stored in this table\n\n"
    );
    assert_eq!(s.admin("show table nope"), "No such table\n\n");
    assert_eq!(s.admin("show table fe key not-an-ip"), "Invalid key\n\n");
    // Levels: a user sees the header only and may not clear. As HAProxy 2.6: the table and
    // the key are read first; with a key, "Permission denied"; without, nothing happens.
    let user = stats::cli(&s.dir.sock("user.sock"), "show table fe");
    assert_eq!(
        user,
        "# table: fe, type: ip, size:200, used:1\n# contents not dumped due to insufficient \
         privileges\n\n"
    );
    for (cmd, answer) in [
        ("clear table fe", "\n"),
        ("clear table fe key 127.0.0.1", "Permission denied\n\n"),
        ("clear table nope key 127.0.0.1", "No such table\n\n"),
        ("clear table fe key not-an-ip", "Invalid key\n\n"),
    ] {
        assert_eq!(stats::cli(&s.dir.sock("user.sock"), cmd), answer, "{cmd}");
    }
    assert!(s.admin("show table").contains("used:1"), "nothing cleared");
    // Clear by filter that matches nothing, then by key.
    assert_eq!(s.admin("clear table fe data.conn_cnt lt 1"), "\n");
    assert!(s.admin("show table").contains("used:1"));
    assert_eq!(
        stats::cli(&s.dir.sock("oper.sock"), "clear table fe key 127.0.0.1"),
        "\n"
    );
    assert_eq!(
        s.admin("show table fe"),
        "# table: fe, type: ip, size:200, used:0\n\n"
    );
    // Counting starts again from a fresh entry.
    send_and_close(s.fe, 9, Duration::from_secs(10)).unwrap();
    assert_eq!(
        entry_value(&s, "fe", "127.0.0.1", "conn_cnt").as_deref(),
        Some("1")
    );
}

/// `set table` as HAProxy 2.6: an operator tags a client from the CLI (`data.gpt0 1`) and
/// `reject if { sc0_get_gpt0 gt 0 }` turns it away at once; untagged, it is served again. A
/// rate set from the CLI reads as set; an entry is created when missing; errors as HAProxy's,
/// the pairs before a bad one written.
#[test]
fn set_table_tags_a_client_from_the_cli() {
    let sink = Backend::sink("sink", 1024);
    let s = start(
        "splice",
        &[
            "stick-table type ip size 100 expire 60s store gpt0,gpc0,conn_rate(10s),server_id",
            "tcp-request connection track-sc0 src",
            "tcp-request connection reject if { sc0_get_gpt0 gt 0 }",
        ],
        &[],
        &[format!("sink {}", sink.addr)],
    );
    send_and_close(s.fe, 1, Duration::from_secs(10)).unwrap();
    assert_eq!(sink.accepted(), 1);
    assert_eq!(s.admin("set table fe key 127.0.0.1 data.gpt0 1"), "\n");
    assert!(
        send_and_close(s.fe, 2, Duration::from_secs(10)).is_err(),
        "a client tagged by `set table` was served: {}",
        s.admin("show table fe")
    );
    assert_eq!(sink.accepted(), 1);
    assert_eq!(
        stats::cli(
            &s.dir.sock("oper.sock"),
            "set table fe key 127.0.0.1 data.gpt0 0 data.conn_rate 42 data.server_id -1"
        ),
        "\n"
    );
    send_and_close(s.fe, 3, Duration::from_secs(10)).unwrap();
    assert_eq!(sink.accepted(), 2);
    // The rate as set (and this connection's), the signed id as HAProxy prints it.
    assert_eq!(
        entry_value(&s, "fe", "127.0.0.1", "conn_rate(10000)").as_deref(),
        Some("43")
    );
    assert_eq!(
        entry_value(&s, "fe", "127.0.0.1", "server_id").as_deref(),
        Some("-1")
    );
    // A missing entry is created, with the values given, and expires as any other.
    assert_eq!(s.admin("set table fe key 10.1.2.3 data.gpc0 5"), "\n");
    assert_eq!(
        entry_value(&s, "fe", "10.1.2.3", "gpc0").as_deref(),
        Some("5")
    );
    let exp: u64 = entry_value(&s, "fe", "10.1.2.3", "exp")
        .unwrap()
        .parse()
        .unwrap();
    assert!((50_000..=60_000).contains(&exp), "exp={exp}");
    assert_eq!(s.admin("set table fe key 10.9.9.9"), "\n");
    assert!(s
        .admin("show table fe key 10.9.9.9")
        .contains("key=10.9.9.9 "));
    // Errors, in HAProxy's words; a bad pair stops there, the ones before it written.
    for (cmd, err) in [
        (
            "set table",
            "Required arguments: <table> key <key> [data.<store_data_type> <value>]*",
        ),
        ("set table nope key 1.2.3.4", "No such table"),
        ("set table fe key", "Key value expected"),
        ("set table fe key not-an-ip", "Invalid key"),
        (
            "set table fe 1.2.3.4",
            "Required arguments: <table> key <key> [data.<store_data_type> <value>]*",
        ),
        (
            "set table fe data.gpc0 eq 1",
            "content-based lookup is only supported with the \"show\" and \"clear\" actions",
        ),
        ("set table fe key 10.1.2.3 data.nope 1", "Unknown data type"),
        (
            "set table fe key 10.1.2.3 data.conn_cur 1",
            "Data type not stored in this table",
        ),
        (
            "set table fe key 10.1.2.3 gpc0 1",
            "\"data.<type>\" followed by a value expected",
        ),
        (
            "set table fe key 10.1.2.3 data.gpc0 6 data.gpt0 x",
            "Require a valid integer value to store",
        ),
        (
            "set table fe key 10.1.2.3 data.gpt0",
            "Require a valid integer value to store",
        ),
    ] {
        assert_eq!(s.admin(cmd), format!("{err}\n\n"), "{cmd}");
    }
    assert_eq!(
        entry_value(&s, "fe", "10.1.2.3", "gpc0").as_deref(),
        Some("6")
    );
    for (cmd, answer) in [
        (
            "set table fe key 10.1.2.3 data.gpc0 1",
            "Permission denied\n\n",
        ),
        (
            "set table nope key 10.1.2.3 data.gpc0 1",
            "No such table\n\n",
        ),
        ("set table fe key", "Key value expected\n\n"),
    ] {
        assert_eq!(stats::cli(&s.dir.sock("user.sock"), cmd), answer, "{cmd}");
    }
    assert_eq!(
        entry_value(&s, "fe", "10.1.2.3", "gpc0").as_deref(),
        Some("6")
    );
}

/// HAProxy 2.5+'s counter arrays: `sc-inc-gpc(0,0)` counts each connection, a fifth one is
/// rejected by `sc_get_gpc(0,0) gt 3`, `src_get_gpc(0,fe)` reads the same element, `gpc(1)`
/// counts only from the second connection on, `sc-set-gpt(0,0)` sets the tag; `show table`
/// prints the elements as HAProxy does (`gpc0=`, `gpc1=`, `gpc0_rate(10000)=`).
fn gpc_arrays_count_reject_and_show_as_haproxy(dataplane: &str) {
    let sink = Backend::sink("sink", 1024);
    let s = start(
        dataplane,
        &[
            "stick-table type ip size 100 expire 30s store gpt(1),gpc(2),gpc_rate(2,10s)",
            "tcp-request connection track-sc0 src",
            "tcp-request connection reject if { sc_get_gpc(0,0) gt 3 }",
            "tcp-request connection sc-inc-gpc(0,0)",
            "tcp-request connection sc-inc-gpc(1,0) if { src_get_gpc(0,fe) ge 2 }",
            "tcp-request connection sc-set-gpt(0,0) 7",
        ],
        &[],
        &[format!("sink {}", sink.addr)],
    );
    for i in 0..4 {
        send_and_close(s.fe, 300 + i, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("connection {} refused: {e}", i + 1));
    }
    assert!(
        send_and_close(s.fe, 310, Duration::from_secs(10)).is_err(),
        "the fifth connection passed sc_get_gpc(0,0) gt 3"
    );
    assert_eq!(
        sink.accepted(),
        4,
        "a rejected connection reached the server"
    );
    let out = s.admin("show table fe");
    let line = out
        .lines()
        .find(|l| l.contains(" key=127.0.0.1 "))
        .unwrap_or_else(|| {
            panic!(
                "no entry for 127.0.0.1:
{out}"
            )
        });
    let fields: Vec<&str> = line.split(' ').skip(4).collect();
    assert_eq!(
        fields,
        [
            "gpt0=7",
            "gpc0=4",
            "gpc1=3",
            "gpc0_rate(10000)=4",
            "gpc1_rate(10000)=3"
        ],
        "{out}"
    );
    // `data.gpc` filters on element 0, as HAProxy's.
    assert_eq!(s.admin("show table fe data.gpc eq 4").lines().count(), 3);
    assert_eq!(s.admin("show table fe data.gpc gt 4").lines().count(), 2);
}

/// Each bad stick-table line: the error names the file and line, and says why.
#[test]
fn config_errors_name_the_line() {
    let base = "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 1s\n    \
                timeout server 1s\n\nbackend be\n    server s 127.0.0.1:9\n\nfrontend fe\n    \
                bind 127.0.0.1:0\n    default_backend be\n";
    let cases = [
        (
            "    stick-table type ip size 1k store conn_rat(10s)\n",
            "unknown data type 'conn_rat' (did you mean 'conn_rate'?)",
        ),
        (
            "    stick-table type ip size 1k store conn_rate\n",
            "missing the period",
        ),
        ("    stick-table type ipv5 size 1k\n", "unknown type 'ipv5'"),
        ("    stick-table type ip\n", "missing or zero 'size'"),
        (
            "    tcp-request connection track-sc0 src\n",
            "needs a stick table",
        ),
        (
            "    tcp-request connection track-sc1 src table nowhere\n",
            "no stick table named 'nowhere'",
        ),
        (
            "    stick-table type ip size 1k peers nobody\n",
            "no 'peers' section named 'nobody'",
        ),
        ("    stick on src\n", "'stick' rules need a backend"),
        (
            "    tcp-request connection sc-inc-gpc0(3)\n",
            "The max allowed ID is 2",
        ),
        (
            "    tcp-request connection sc-inc-gpc(0,3)\n",
            "invalid stick table track ID 'sc-inc-gpc(0,3)'. The max allowed ID is 2",
        ),
        (
            "    tcp-request connection sc-set-gpt(1) 5\n",
            "Missing gpt ID 'sc-set-gpt(1)'",
        ),
        (
            "    tcp-request connection reject if { src_get_gpc(0) gt 1 }\n",
            "missing arguments (got 1/2)",
        ),
        (
            "    stick-table type ip size 1k store gpc(101)\n",
            "array size is out of allowed range (1-100) for store option 'gpc'",
        ),
        (
            "    stick-table type ip size 1k store gpc(2),gpc1\n",
            "simultaneous usage of 'gpc' and 'gpc[0/1]'",
        ),
    ];
    for (line, want) in cases {
        let text = format!("{base}{line}");
        let (out, cfgs) = lb_check(&[&text]);
        assert!(!out.status.success(), "{line} loaded:\n{}", out.stderr);
        let at = format!("{}:13", cfgs[0].file_name());
        let hit = out.stderr.lines().find(|l| l.contains(want));
        assert!(
            hit.is_some_and(|l| l.contains(&cfgs[0].file_name())),
            "{line}: want {want:?} naming {at}, got:\n{}",
            out.stderr
        );
    }
}

/// What loads: a table in a backend of its own, named by `track-sc* ... table` and the
/// fetches' table argument; `peers` sections load with a warning that lb does not sync.
#[test]
fn separate_tables_and_peers_load_with_a_warning() {
    let text = "peers mypeers\n    peer lb1 127.0.0.1:10000\n    peer lb2 127.0.0.2:10000\n\n\
                defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 1s\n    \
                timeout server 1s\n\nbackend CONN_RATE\n    stick-table type integer size 1 \
                expire 10s store gpc1,gpc1_rate(1s) peers mypeers\n\nbackend be\n    server s \
                127.0.0.1:9\n\nfrontend fe\n    bind 127.0.0.1:0\n    stick-table type ip size \
                10m expire 30m store gpc0,gpc1,conn_rate(1m),bytes_out_rate(10s),bytes_out_cnt\n    \
                tcp-request connection track-sc0 src\n    tcp-request connection track-sc1 \
                int(1) table CONN_RATE\n    tcp-request connection silent-drop if { \
                sc0_get_gpc0() ge 1 }\n    tcp-request connection reject if { \
                sc1_gpc1_rate(CONN_RATE) gt 256 }\n    tcp-request session reject if { \
                sc0_bytes_out_rate gt 134217728 }\n    tcp-request session sc-inc-gpc1(0) if { \
                sc0_kbytes_out gt 4 }\n    default_backend be\n";
    let (out, _cfgs) = lb_check(&[text]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("'peers' section 'mypeers' is parsed, but lb does not synchronise"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr.lines().filter(|l| l.contains("warning")).count(),
        1,
        "{}",
        out.stderr
    );
}
