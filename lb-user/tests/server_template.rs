//! `server-template` through the real lb against a real DNS server (dnsmasq on a loopback
//! port): an SRV name fills the template's servers with targets and ports (one server per
//! record, the rest in MAINT (resolution)), flows reach every filled server intact, and a
//! target's new address is followed; an A name spreads its addresses one per server. SRV
//! weights become the servers' weights (HAProxy's `(w + 255) / 256`) and a removed record's
//! server is kept for `hold obsolete`, then goes to MAINT (resolution). With `resolve-opts
//! ignore-weight` a server keeps its configured (or run-time) weight whatever the records say.

#[macro_use]
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::ops::Dnsmasq;
use common::scenarios::flow;
use common::servers::{listener_at, Backend, FlowHeader, HalfClose};
use common::stats::{col, config, parse_csv, SockDir};
use common::{free_port, local, Lb};

on_both_planes!(
    srv_records_fill_a_template,
    a_records_spread_over_a_template,
    srv_weights_and_hold_obsolete
);

const T: Duration = Duration::from_secs(15);

const RESOLVERS: &str = "    resolve_retries 2\n    timeout resolve 200ms\n    timeout retry 300ms\n    hold valid 200ms\n    hold other 600ms\n";

/// The `valid` answers `show resolvers local` counts for `ns1`: each one a resolution done.
fn valid_answers(lb: &Setup) -> u64 {
    common::stats::cli(&lb.dir.sock("admin.sock"), "show resolvers local")
        .lines()
        .find_map(|l| l.trim().strip_prefix("valid:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// `show stat` weight of server `name` of backend `be`.
fn weight(lb: &Setup, name: &str) -> String {
    let (_, rows) = parse_csv(&common::stats::cli(&lb.dir.sock("admin.sock"), "show stat"));
    rows.iter()
        .find(|r| col(r, "pxname") == "be" && col(r, "svname") == name)
        .map(|r| col(r, "weight").to_owned())
        .unwrap_or_default()
}

/// `show servers state be` field `field` of server `name`.
fn state_field(lb: &Setup, name: &str, field: &str) -> String {
    let out = common::stats::cli(&lb.dir.sock("admin.sock"), "show servers state be");
    let mut lines = out.lines().skip(1);
    let header: Vec<&str> = lines
        .next()
        .and_then(|h| h.strip_prefix("# "))
        .unwrap_or_default()
        .split(' ')
        .collect();
    let at = header.iter().position(|h| *h == field);
    lines
        .find(|l| l.split(' ').nth(3) == Some(name))
        .and_then(|l| l.split(' ').nth(at?))
        .unwrap_or_default()
        .to_owned()
}

/// `show stat` rows of backend `be`: (name, status, address).
fn servers(lb: &Setup) -> Vec<(String, String, String)> {
    let (_, rows) = parse_csv(&common::stats::cli(&lb.dir.sock("admin.sock"), "show stat"));
    rows.iter()
        .filter(|r| {
            col(r, "pxname") == "be" && !["FRONTEND", "BACKEND"].contains(&col(r, "svname"))
        })
        .map(|r| {
            (
                col(r, "svname").to_owned(),
                col(r, "status").to_owned(),
                col(r, "addr").to_owned(),
            )
        })
        .collect()
}

struct Setup {
    lb: Lb,
    fe: SocketAddr,
    dir: SockDir,
}

fn start(name: &str, dataplane: &str, template: &str, dns: &Dnsmasq) -> Setup {
    start_with(name, dataplane, template, dns, "")
}

fn start_with(name: &str, dataplane: &str, template: &str, dns: &Dnsmasq, more: &str) -> Setup {
    let fe = free_port();
    let dir = SockDir::new(name);
    let extra = format!(
        "\nresolvers local\n    nameserver ns1 {}\n{RESOLVERS}{more}",
        dns.addr
    );
    let cfg = config(fe, &dir, &[template], &[], &extra);
    Setup {
        lb: Lb::start(&cfg, dataplane),
        fe: local(fe),
        dir,
    }
}

/// Waits until the servers show exactly `want` (name, status, address), or panics with them.
fn wait_servers(s: &Setup, want: &[(&str, &str, String)]) {
    let deadline = Instant::now() + T;
    loop {
        let have = servers(s);
        let ok = want.iter().all(|(n, st, a)| {
            have.iter()
                .any(|(hn, hs, ha)| hn == n && hs == st && (a.is_empty() || ha == a))
        });
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "want {want:?}, have {have:?}\n{:#?}",
            s.lb.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `n` flows through lb (both directions, every half-close order) and checks each
/// byte-exact at both ends; returns how many each backend got.
fn flows_reach(s: &Setup, backends: &[&Backend], n: u64, first_id: u64) -> Vec<usize> {
    let mut per = vec![0; backends.len()];
    for id in first_id..first_id + n {
        let order = [
            HalfClose::ClientFirst,
            HalfClose::ServerFirst,
            HalfClose::Both,
        ][(id % 3) as usize];
        let h = FlowHeader {
            id,
            order,
            up: 70_000 + id * 13,
            down: 90_000 + id * 7,
        };
        let deadline = Instant::now() + T;
        let (sent, got) = flow(s.fe, h, deadline).unwrap_or_else(|e| panic!("flow {id}: {e}"));
        let at = backends
            .iter()
            .position(|b| b.wait_flow(id, Duration::from_millis(10)))
            .or_else(|| backends.iter().position(|b| b.wait_flow(id, T)))
            .unwrap_or_else(|| panic!("flow {id} reached no backend"));
        let b = backends[at];
        assert_eq!(b.wait_received(id, T), Some(sent), "flow {id}: bytes up");
        assert_eq!(b.wait_sent(id, T), Some(got), "flow {id}: bytes down");
        per[at] += 1;
    }
    per
}

fn srv_records_fill_a_template(dataplane: &str) {
    let (pa, pb) = (free_port(), free_port());
    let a = Backend::flow_on(listener_at(SocketAddr::from(([127, 0, 0, 1], pa))), "a");
    let b = Backend::flow_on(listener_at(SocketAddr::from(([127, 0, 0, 1], pb))), "b");
    let b2 = Backend::flow_on(listener_at(SocketAddr::from(([127, 0, 0, 7], pb))), "b2");
    let dns = Dnsmasq::start_srv(
        "127.0.0.1 a.tpl.test\n127.0.0.1 b.tpl.test\n",
        &[
            format!("_pg._tcp.tpl.test,a.tpl.test,{pa},0,10"),
            format!("_pg._tcp.tpl.test,b.tpl.test,{pb},0,10"),
        ],
    );
    let s = start(
        "tpl-srv",
        dataplane,
        "server-template pg 3 _pg._tcp.tpl.test resolvers local check inter 200ms rise 1",
        &dns,
    );
    // Two records for three servers: each record fills one, the third waits.
    wait_servers(
        &s,
        &[
            ("pg1", "UP", String::new()),
            ("pg2", "UP", String::new()),
            ("pg3", "MAINT (resolution)", String::new()),
        ],
    );
    let mut addrs: Vec<String> = servers(&s).into_iter().take(2).map(|r| r.2).collect();
    addrs.sort();
    let mut want = vec![format!("127.0.0.1:{pa}"), format!("127.0.0.1:{pb}")];
    want.sort();
    assert_eq!(addrs, want);
    let per = flows_reach(&s, &[&a, &b], 6, 1);
    assert_eq!(per, vec![3, 3], "round robin over both SRV targets");

    // b.tpl.test moves to 127.0.0.7: its server follows, keeping its port.
    let name = servers(&s)
        .into_iter()
        .find(|r| r.2 == format!("127.0.0.1:{pb}"))
        .map(|r| r.0)
        .unwrap();
    dns.set_hosts("127.0.0.1 a.tpl.test\n127.0.0.7 b.tpl.test\n");
    wait_servers(&s, &[(&name, "UP", format!("127.0.0.7:{pb}"))]);
    let per = flows_reach(&s, &[&a, &b, &b2], 6, 100);
    assert_eq!(
        per,
        vec![3, 0, 3],
        "new flows go to the target's new address"
    );
}

fn a_records_spread_over_a_template(dataplane: &str) {
    let port = free_port();
    let ips = [[127, 0, 0, 11], [127, 0, 0, 12]];
    let backends: Vec<Backend> = ips
        .iter()
        .map(|ip| Backend::flow_on(listener_at(SocketAddr::from((*ip, port))), "x"))
        .collect();
    let dns = Dnsmasq::start("127.0.0.11 app.test\n127.0.0.12 app.test\n");
    let s = start(
        "tpl-a",
        dataplane,
        &format!(
            "server-template app 1-3 app.test:{port} resolvers local resolve-prefer ipv4 init-addr none check inter 200ms rise 1"
        ),
        &dns,
    );
    wait_servers(
        &s,
        &[
            ("app1", "UP", String::new()),
            ("app2", "UP", String::new()),
            ("app3", "MAINT (resolution)", String::new()),
        ],
    );
    let mut addrs: Vec<String> = servers(&s).into_iter().take(2).map(|r| r.2).collect();
    addrs.sort();
    assert_eq!(
        addrs,
        vec![format!("127.0.0.11:{port}"), format!("127.0.0.12:{port}")],
        "one address per server"
    );
    let refs: Vec<&Backend> = backends.iter().collect();
    assert_eq!(flows_reach(&s, &refs, 4, 1), vec![2, 2]);
    // One address goes: the server that had it waits, the other keeps its own.
    let keeper = servers(&s)
        .into_iter()
        .find(|r| r.2 == format!("127.0.0.11:{port}"))
        .map(|r| r.0)
        .unwrap();
    dns.set_hosts("127.0.0.11 app.test\n");
    let loser = if keeper == "app1" { "app2" } else { "app1" };
    wait_servers(
        &s,
        &[
            (&keeper, "UP", format!("127.0.0.11:{port}")),
            (loser, "MAINT (resolution)", String::new()),
            ("app3", "MAINT (resolution)", String::new()),
        ],
    );
    assert!(
        s.lb.wait_for_log(
            &format!("Server be/{loser} is going DOWN for maintenance (No IP for server )"),
            T
        ),
        "{:#?}",
        s.lb.logs()
    );
    assert_eq!(flows_reach(&s, &refs, 2, 100), vec![2, 0]);
}

/// SRV weights 2560 and 7680 give the servers weights 10 and 30 (`show stat`, `show servers
/// state`), and round robin splits flows 1:3. Record b is removed: its server keeps serving
/// for `hold obsolete` (3 s) while a's new weight shows the answers no longer have b, then
/// goes to MAINT (resolution), "entry removed from SRV record", as HAProxy's.
fn srv_weights_and_hold_obsolete(dataplane: &str) {
    let (pa, pb) = (free_port(), free_port());
    let a = Backend::flow_on(listener_at(SocketAddr::from(([127, 0, 0, 1], pa))), "a");
    let b = Backend::flow_on(listener_at(SocketAddr::from(([127, 0, 0, 1], pb))), "b");
    let hosts = "127.0.0.1 a.w.test\n127.0.0.1 b.w.test\n";
    let rec_a = |w: u16| format!("_w._tcp.w.test,a.w.test,{pa},0,{w}");
    let rec_b = format!("_w._tcp.w.test,b.w.test,{pb},0,7680");
    let mut dns = Dnsmasq::start_srv(hosts, &[rec_a(2560), rec_b]);
    let s = start_with(
        "tpl-w",
        dataplane,
        "server-template w 2 _w._tcp.w.test resolvers local check inter 200ms rise 1",
        &dns,
        "    hold obsolete 3s\n",
    );
    wait_servers(
        &s,
        &[("w1", "UP", String::new()), ("w2", "UP", String::new())],
    );
    let name_of = |port: u16| {
        servers(&s)
            .into_iter()
            .find(|r| r.2 == format!("127.0.0.1:{port}"))
            .map_or_else(
                || panic!("no server on port {port}: {:?}", servers(&s)),
                |r| r.0,
            )
    };
    let (na, nb) = (name_of(pa), name_of(pb));
    let deadline = Instant::now() + T;
    while weight(&s, &na) != "10" || weight(&s, &nb) != "30" {
        assert!(
            Instant::now() < deadline,
            "weights {} and {}, want 10 and 30",
            weight(&s, &na),
            weight(&s, &nb)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(state_field(&s, &na, "srv_uweight"), "10");
    assert_eq!(state_field(&s, &nb, "srv_uweight"), "30");
    let per = flows_reach(&s, &[&a, &b], 20, 1);
    assert!(
        (3..=7).contains(&per[0]) && per[0] + per[1] == 20,
        "weights 10:30 split 20 flows {per:?}"
    );

    // b leaves the SRV answers; a's weight changes with the same answers.
    let removed = Instant::now();
    dns.restart_srv(&[rec_a(5120)]);
    let deadline = Instant::now() + T;
    while weight(&s, &na) != "20" {
        assert!(Instant::now() < deadline, "a's new weight never showed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Held: still UP with its weight, and still serving.
    if removed.elapsed() < Duration::from_secs(2) {
        assert_eq!(
            servers(&s).into_iter().find(|r| r.0 == nb).map(|r| r.1),
            Some("UP".to_owned()),
            "b's server left before hold obsolete"
        );
        assert_eq!(weight(&s, &nb), "30");
    }
    wait_servers(&s, &[(&nb, "MAINT (resolution)", String::new())]);
    assert!(
        removed.elapsed() >= Duration::from_secs(2),
        "MAINT after {:?}, before hold obsolete (3 s)",
        removed.elapsed()
    );
    assert!(
        s.lb.wait_for_log(
            &format!(
                "Server be/{nb} is going DOWN for maintenance (entry removed from SRV record)"
            ),
            T
        ),
        "{:#?}",
        s.lb.logs()
    );
    let per = flows_reach(&s, &[&a, &b], 3, 100);
    assert_eq!(per, vec![3, 0], "flows after the removal go to a only");
}

/// `resolve-opts ignore-weight` (HAProxy's `resolv_opts.ignore_weight`): servers of a template
/// with it keep `weight 5` while another template on the same kind of records takes their
/// weight (7680 gives 30); a weight set at run time stays too, resolution after resolution.
/// One data plane: weights are the server table's, the same on both.
#[test]
fn srv_ignore_weight_keeps_the_servers_weight() {
    let (pa, pb) = (free_port(), free_port());
    let _a = Backend::flow_on(listener_at(SocketAddr::from(([127, 0, 0, 1], pa))), "a");
    let _b = Backend::flow_on(listener_at(SocketAddr::from(([127, 0, 0, 1], pb))), "b");
    let dns = Dnsmasq::start_srv(
        "127.0.0.1 a.iw.test\n127.0.0.1 b.iw.test\n",
        &[
            format!("_w._tcp.iw.test,a.iw.test,{pa},0,2560"),
            format!("_w._tcp.iw.test,b.iw.test,{pb},0,7680"),
            format!("_v._tcp.iw.test,b.iw.test,{pb},0,7680"),
        ],
    );
    let s = start(
        "tpl-iw",
        "sockmap",
        "server-template w 2 _w._tcp.iw.test resolvers local weight 5 resolve-opts ignore-weight\n    \
         server-template v 1 _v._tcp.iw.test resolvers local weight 5",
        &dns,
    );
    wait_servers(
        &s,
        &[
            ("w1", "no check", String::new()),
            ("w2", "no check", String::new()),
            ("v1", "no check", String::new()),
        ],
    );
    // Without the option the record's weight applies...
    let deadline = Instant::now() + T;
    while weight(&s, "v1") != "30" {
        assert!(Instant::now() < deadline, "v1 weight {}", weight(&s, "v1"));
        std::thread::sleep(Duration::from_millis(50));
    }
    // ...with it, the configured one stays, resolution after resolution.
    let seen = valid_answers(&s);
    let deadline = Instant::now() + T;
    while valid_answers(&s) < seen + 3 {
        assert!(Instant::now() < deadline, "no more resolutions");
        std::thread::sleep(Duration::from_millis(50));
    }
    for w in ["w1", "w2"] {
        assert_eq!(weight(&s, w), "5", "{w}");
        assert_eq!(state_field(&s, w, "srv_uweight"), "5", "{w}");
    }
    // A weight set at run time stays too.
    let out = common::stats::cli(&s.dir.sock("admin.sock"), "set server be/w1 weight 7");
    assert_eq!(out.trim(), "", "{out}");
    let seen = valid_answers(&s);
    let deadline = Instant::now() + T;
    while valid_answers(&s) < seen + 3 {
        assert!(Instant::now() < deadline, "no more resolutions");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(weight(&s, "w1"), "7");
    assert_eq!(weight(&s, "w2"), "5");
    assert_eq!(weight(&s, "v1"), "30");
}
