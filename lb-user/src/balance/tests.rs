//! Tests of the balancer through the server table: every algorithm's choices, and hashing's
//! promises (same keys on independent builds, whatever the file or UP order; few keys move).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::config::{Balance, HashMethod, HashType};
use crate::state::StateError as TableError;
use crate::table::testing::{backend, client, server};
use crate::table::{AdminState, BackendTable, ServerEntry, ServerSlot, TryAcquireError};

/// Snapshot entries of servers with these (id, weight), all usable, in this order.
pub(crate) fn entries(ids_weights: &[(u32, u32)]) -> Vec<ServerEntry> {
    let servers = ids_weights
        .iter()
        .enumerate()
        .map(|(k, &(id, w))| server(&format!("s{k}"), id, w))
        .collect();
    BackendTable::new(&backend(Balance::Source, servers))
        .snapshot()
        .servers
        .clone()
}

/// `n` distinct client addresses.
pub(crate) fn keys(n: u32) -> Vec<SocketAddr> {
    (0..n).map(client).collect()
}

/// Index of the server picked for `c`, slot released at once.
fn pick(t: &Arc<BackendTable>, c: SocketAddr) -> usize {
    t.try_acquire(c, None).expect("a free server").index()
}

fn picks(t: &Arc<BackendTable>, n: u32) -> Vec<usize> {
    (0..n).map(|k| pick(t, client(k))).collect()
}

fn counts(t: &Arc<BackendTable>, n: u32) -> Vec<usize> {
    let mut c = vec![0; t.conf.servers.len()];
    for i in picks(t, n) {
        c[i] += 1;
    }
    c
}

fn totals(t: &BackendTable) -> Vec<u64> {
    t.snapshot()
        .servers
        .iter()
        .map(|s| s.counters.total.load(Ordering::Relaxed))
        .collect()
}

fn rr_123(balance: Balance) -> Arc<BackendTable> {
    BackendTable::new(&backend(
        balance,
        vec![server("a", 1, 1), server("b", 2, 2), server("c", 3, 3)],
    ))
}

#[test]
fn roundrobin_is_smooth_and_exact() {
    let t = rr_123(Balance::RoundRobin);
    let seq = picks(&t, 600);
    // Every aligned window of one cycle holds each server exactly weight times...
    for window in seq.chunks(6) {
        let mut c = [0; 3];
        for &i in window {
            c[i] += 1;
        }
        assert_eq!(c, [1, 2, 3], "window {window:?}");
    }
    // ... interleaved: never the same server three times in a row, across cycles too.
    for w in seq.windows(3) {
        assert!(!(w[0] == w[1] && w[1] == w[2]), "three in a row: {w:?}");
    }
    // nginx's smooth WRR sequence for weights 1/2/3.
    assert_eq!(seq[..6], [2, 1, 0, 2, 1, 2]);
    assert_eq!(totals(&t), [100, 200, 300]);
}

#[test]
fn roundrobin_is_exact_across_threads() {
    let t = rr_123(Balance::RoundRobin);
    std::thread::scope(|s| {
        for th in 0..2 {
            let t = &t;
            s.spawn(move || {
                for k in 0..300 {
                    drop(t.try_acquire(client(th * 1000 + k), None).unwrap());
                }
            });
        }
    });
    assert_eq!(totals(&t), [100, 200, 300]);
    assert_eq!(
        t.snapshot().servers[2].counters.cur.load(Ordering::Relaxed),
        0
    );
}

#[test]
fn roundrobin_skips_full_servers_and_follows_runtime_weights() {
    let mut a = server("a", 1, 1);
    a.maxconn = 1;
    let mut b = server("b", 2, 1);
    b.maxconn = 2;
    let t = BackendTable::new(&backend(Balance::RoundRobin, vec![a, b]));
    let held: Vec<ServerSlot> = (0..3)
        .map(|k| t.try_acquire(client(k), None).unwrap())
        .collect();
    let mut got: Vec<usize> = held.iter().map(ServerSlot::index).collect();
    got.sort_unstable();
    assert_eq!(got, [0, 1, 1]);
    assert_eq!(
        t.try_acquire(client(9), None).unwrap_err(),
        TryAcquireError::Full
    );
    drop(held);

    // Weights 1/2/3 -> 1/0/3 at runtime.
    let t = rr_123(Balance::RoundRobin);
    t.set_weight(1, 0).unwrap();
    assert_eq!(counts(&t, 400), [100, 0, 300]);
}

#[test]
fn static_rr_ratio_and_weight_rule() {
    let t = rr_123(Balance::StaticRr);
    assert_eq!(counts(&t, 60), [10, 20, 30]);
    assert!(matches!(
        t.set_weight(2, 2),
        Err(TableError::StaticWeight {
            weight: 2,
            configured: 3,
            ..
        })
    ));
    t.set_weight(2, 0).unwrap();
    assert_eq!(counts(&t, 30), [10, 20, 0]);
    t.set_weight(2, 3).unwrap();
    assert_eq!(counts(&t, 60), [10, 20, 30]);
    // roundrobin takes any weight, within range.
    let rr = rr_123(Balance::RoundRobin);
    rr.set_weight(2, 7).unwrap();
    assert!(matches!(
        rr.set_weight(2, 257),
        Err(TableError::WeightOutOfRange { weight: 257, .. })
    ));
}

#[test]
fn leastconn_picks_least_loaded_and_rotates_ties() {
    let t = BackendTable::new(&backend(
        Balance::LeastConn,
        vec![server("a", 1, 1), server("b", 2, 1), server("c", 3, 2)],
    ));
    // Idle: c (weight 2) has the lowest (0 + 1) / 2.
    let c1 = t.try_acquire(client(0), None).unwrap();
    assert_eq!(c1.index(), 2);
    // Now a, b, c all at (cur + 1) / w = 1: a tie. Hold the picks: loads stay tied.
    let held: Vec<ServerSlot> = (0..3)
        .map(|k| t.try_acquire(client(k), None).unwrap())
        .collect();
    let mut got: Vec<usize> = held.iter().map(ServerSlot::index).collect();
    got.sort_unstable();
    assert_eq!(got, [0, 1, 2], "ties go round");
    // a: 1 conn (2/1), b: 1 (2/1), c: 2 (3/2) -> c.
    assert_eq!(pick(&t, client(9)), 2);
    drop(held);
    // a 0 conns, b 0, c 1 (2/2): all tied at 1 -> rotation spreads idle picks evenly.
    let mut c = [0; 3];
    for k in 0..300 {
        c[pick(&t, client(k))] += 1;
    }
    assert_eq!(c, [100, 100, 100]);
    drop(c1);
}

#[test]
fn first_fills_lowest_id_up_to_maxconn() {
    // Config order a, b, c; ids 3, 1, 2: b first, then c, then a.
    let servers = [("a", 3), ("b", 1), ("c", 2)]
        .into_iter()
        .map(|(n, id)| {
            let mut s = server(n, id, 1);
            s.maxconn = 2;
            s
        })
        .collect();
    let t = BackendTable::new(&backend(Balance::First, servers));
    let held: Vec<ServerSlot> = (0..6)
        .map(|k| t.try_acquire(client(k), None).unwrap())
        .collect();
    let got: Vec<usize> = held.iter().map(ServerSlot::index).collect();
    assert_eq!(got, [1, 1, 2, 2, 0, 0]);
    assert_eq!(
        t.try_acquire(client(7), None).unwrap_err(),
        TryAcquireError::Full
    );
    let mut held = held;
    held.remove(2); // one of c's
    assert_eq!(t.try_acquire(client(8), None).unwrap().index(), 2);
    // Without maxconn: always the lowest id.
    let t = BackendTable::new(&backend(
        Balance::First,
        vec![server("a", 3, 1), server("b", 1, 1)],
    ));
    let held: Vec<ServerSlot> = (0..5)
        .map(|k| t.try_acquire(client(k), None).unwrap())
        .collect();
    assert!(held.iter().all(|s| s.index() == 1));
}

/// What `hash-type <method>` alone configures (HAProxy: sdbm, plus avalanche unless map-based).
fn hash_type(method: HashMethod) -> HashType {
    HashType {
        method,
        avalanche: method != HashMethod::MapBased,
        ..HashType::default()
    }
}

const METHODS: [HashMethod; 3] = [
    HashMethod::MapBased,
    HashMethod::Consistent,
    HashMethod::Maglev,
];

/// `balance source` over servers s1..sN (ids 1..N, weight `w`).
fn source(method: HashMethod, n: u32, w: u32) -> Arc<BackendTable> {
    let mut conf = backend(
        Balance::Source,
        (1..=n).map(|id| server(&format!("s{id}"), id, w)).collect(),
    );
    conf.hash_type = hash_type(method);
    BackendTable::new(&conf)
}

#[test]
fn source_is_sticky_per_ip_not_port() {
    for m in METHODS {
        let t = source(m, 4, 1);
        let ip = client(42).ip();
        let first = pick(&t, SocketAddr::new(ip, 1000));
        for port in 1001..2000 {
            assert_eq!(pick(&t, SocketAddr::new(ip, port)), first, "{m:?}");
        }
        // And clients spread over every server. The ring is coarser (16 nodes for weight 1, as
        // in HAProxy: shares vary by tens of percent); the map and Maglev are even.
        let c = counts(&t, 4000);
        let floor = if m == HashMethod::Consistent {
            500
        } else {
            900
        };
        assert!(c.iter().all(|&n| n > floor), "{m:?} {c:?}");
    }
}

/// Of 10000 clients, the fraction that change server when server `gone` (of 5) goes DOWN, and
/// how many of the clients that were *not* on it moved.
fn moved_on_down(m: HashMethod, w: u32, gone: usize) -> (f64, usize) {
    let t = source(m, 5, w);
    let before: Vec<usize> = picks(&t, 10_000);
    t.set_healthy(gone, false).unwrap();
    let after: Vec<usize> = picks(&t, 10_000);
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    let bystanders = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| **b != gone && b != a)
        .count();
    (moved as f64 / 10_000.0, bystanders)
}

#[test]
fn one_server_down_moves_about_one_nth() {
    for gone in 0..5 {
        // HAProxy's ring moves exactly the DOWN server's clients. At weight 10 (160 nodes per
        // server) shares are even enough for the 1.2 / N bound.
        let (consistent, bystanders) = moved_on_down(HashMethod::Consistent, 10, gone);
        assert_eq!(bystanders, 0, "only the DOWN server's clients move");
        assert!(
            consistent <= 1.2 / 5.0,
            "consistent, {gone} down: {consistent}"
        );
        let (maglev, _) = moved_on_down(HashMethod::Maglev, 1, gone);
        assert!(maglev <= 1.2 / 5.0, "maglev, {gone} down: {maglev}");
        // map-based remaps most clients: the reason to choose another method.
        let (map_based, _) = moved_on_down(HashMethod::MapBased, 1, gone);
        assert!(map_based > 0.5, "map-based moved only {map_based}");
    }
}

#[test]
fn map_based_weights_are_static() {
    // As HAProxy: map-based hashing takes 0 or the configured weight only; consistent any.
    let t = source(HashMethod::MapBased, 3, 2);
    assert!(matches!(
        t.set_weight(1, 3),
        Err(TableError::StaticWeight { weight: 3, .. })
    ));
    t.set_weight(1, 0).unwrap();
    t.set_weight(1, 2).unwrap();
    source(HashMethod::Consistent, 3, 2)
        .set_weight(1, 3)
        .unwrap();
}

#[test]
fn hashing_follows_weight() {
    for m in METHODS {
        let mut conf = backend(Balance::Source, vec![server("a", 1, 1), server("b", 2, 3)]);
        conf.hash_type = hash_type(m);
        let t = BackendTable::new(&conf);
        let c = counts(&t, 20_000);
        let share = c[1] as f64 / 20_000.0;
        assert!((0.65..0.85).contains(&share), "{m:?} {c:?}");
    }
}

/// The table of `backend be` in a config with these `server` lines and `hash-type` line.
fn table_of(hash_type: &str, servers: &[&str]) -> Arc<BackendTable> {
    let mut text = format!("backend be\n  balance source\n  {hash_type}\n");
    for s in servers {
        text += "  server ";
        text += s;
        text += "\n";
    }
    let c = crate::config::load_str("t.cfg", &text).expect("valid config");
    BackendTable::new(&c.backends[0])
}

/// The name of the server each of `n` clients maps to.
fn mapping(t: &Arc<BackendTable>, n: u32) -> Vec<String> {
    let snap = t.snapshot();
    keys(n)
        .into_iter()
        .map(|k| snap.servers[pick(t, k)].conf.name.clone())
        .collect()
}

/// Takes every server DOWN, then brings them back UP in `order`.
fn come_up_in(t: &BackendTable, order: &[usize]) {
    for &i in order {
        t.set_healthy(i, false).unwrap();
    }
    for &i in order {
        t.set_healthy(i, true).unwrap();
    }
}

#[test]
fn independent_builds_agree_whatever_the_file_and_up_order() {
    let lines = [
        "a 192.0.2.1:80 id 11 weight 2",
        "b 192.0.2.2:80 id 12",
        "c 192.0.2.3:80 id 13 weight 3",
        "d 192.0.2.4:80 id 14",
        "e 192.0.2.5:80 id 15",
    ];
    let mut reversed = lines;
    reversed.reverse();
    for ht in ["hash-type consistent", "hash-type maglev"] {
        // Two "nodes": the same servers listed in opposite orders, UP in opposite orders.
        let one = table_of(ht, &lines);
        come_up_in(&one, &[0, 1, 2, 3, 4]);
        let two = table_of(ht, &reversed);
        come_up_in(&two, &[0, 1, 2, 3, 4]);
        assert_eq!(mapping(&one, 10_000), mapping(&two, 10_000), "{ht}");
    }
    // map-based is positional (HAProxy's map follows the file order): the same file agrees
    // whatever the UP order.
    let one = table_of("hash-type map-based", &lines);
    come_up_in(&one, &[4, 2, 0, 1, 3]);
    let two = table_of("hash-type map-based", &lines);
    come_up_in(&two, &[1, 3, 0, 4, 2]);
    assert_eq!(mapping(&one, 10_000), mapping(&two, 10_000));
}

#[test]
fn random_follows_weight_and_prefers_less_loaded() {
    let t = BackendTable::new(&backend(
        Balance::Random { draws: 2 },
        vec![server("a", 1, 1), server("b", 2, 3)],
    ));
    let c = counts(&t, 8000);
    assert!((1600..2400).contains(&c[0]), "{c:?}");

    let t = BackendTable::new(&backend(
        Balance::Random { draws: 10 },
        vec![server("a", 1, 1), server("b", 2, 1)],
    ));
    let held: Vec<ServerSlot> = (0..5)
        .map(|k| loop {
            let s = t.try_acquire(client(k), None).unwrap();
            if s.index() == 0 {
                break s;
            }
        })
        .collect();
    let c = counts(&t, 200);
    assert!(c[1] >= 195, "{c:?}");
    drop(held);
}

#[test]
fn random_finds_the_free_server_when_draws_are_full() {
    let mut a = server("a", 1, 100);
    a.maxconn = 1;
    let t = BackendTable::new(&backend(
        Balance::Random { draws: 1 },
        vec![a, server("b", 2, 1)],
    ));
    let _a = loop {
        let s = t.try_acquire(client(0), None).unwrap();
        if s.index() == 0 {
            break s;
        }
    };
    assert!(picks(&t, 50).iter().all(|&i| i == 1));
}

fn with_backups(allbackups: bool) -> Arc<BackendTable> {
    let mut b1 = server("b1", 3, 1);
    b1.backup = true;
    let mut b2 = server("b2", 2, 1);
    b2.backup = true;
    let mut conf = backend(
        Balance::RoundRobin,
        vec![server("n1", 1, 1), server("n2", 4, 1), b1, b2],
    );
    conf.allbackups = allbackups;
    BackendTable::new(&conf)
}

#[test]
fn backups_only_when_no_normal_server() {
    let t = with_backups(false);
    assert_eq!(counts(&t, 10), [5, 5, 0, 0]);
    t.set_healthy(0, false).unwrap();
    assert_eq!(counts(&t, 10), [0, 10, 0, 0]);
    t.set_admin(1, AdminState::Maint).unwrap();
    // Only the first backup by id: b2 (id 2), although b1 comes first in the file.
    let c = counts(&t, 10);
    assert_eq!(c, [0, 0, 0, 10]);
    let slot = t.try_acquire(client(0), None).unwrap();
    assert!(slot.is_backup());
    assert_eq!(slot.name(), "b2");
    assert_eq!(t.snapshot().usable_counts(), (0, 2));
    // A normal server coming back takes over again.
    t.set_healthy(0, true).unwrap();
    assert_eq!(counts(&t, 10), [10, 0, 0, 0]);
}

#[test]
fn allbackups_spreads_over_backups() {
    let t = with_backups(true);
    t.set_healthy(0, false).unwrap();
    t.set_healthy(1, false).unwrap();
    assert_eq!(counts(&t, 10), [0, 0, 5, 5]);
}

#[test]
fn unusable_servers_get_nothing() {
    for balance in [
        Balance::RoundRobin,
        Balance::StaticRr,
        Balance::LeastConn,
        Balance::First,
        Balance::Source,
        Balance::Random { draws: 2 },
    ] {
        let mut disabled = server("disabled", 1, 1);
        disabled.disabled = true;
        let t = BackendTable::new(&backend(
            balance,
            vec![
                disabled,
                server("maint", 2, 1),
                server("drain", 3, 1),
                server("down", 4, 1),
                server("zero", 5, 0),
                server("ok", 6, 1),
            ],
        ));
        assert_eq!(t.snapshot().servers[0].state.admin, AdminState::Maint);
        t.set_admin(1, AdminState::Maint).unwrap();
        t.set_admin(2, AdminState::Drain).unwrap();
        t.set_healthy(3, false).unwrap();
        assert_eq!(counts(&t, 50), [0, 0, 0, 0, 0, 50], "{balance:?}");
        t.set_admin(5, AdminState::Maint).unwrap();
        assert_eq!(
            t.try_acquire(client(0), None).unwrap_err(),
            TryAcquireError::NoServer,
            "{balance:?}"
        );
    }
}

#[test]
fn exclude_is_honoured() {
    for balance in [
        Balance::RoundRobin,
        Balance::LeastConn,
        Balance::First,
        Balance::Source,
        Balance::Random { draws: 2 },
    ] {
        let t = BackendTable::new(&backend(
            balance,
            vec![server("a", 1, 1), server("b", 2, 1), server("c", 3, 1)],
        ));
        for k in 0..100 {
            let s = t.try_acquire(client(k), Some(1)).unwrap();
            assert_ne!(s.index(), 1, "{balance:?}");
        }
        // The only normal server excluded: a backup takes it, else nobody.
        let mut bk = server("bk", 2, 1);
        bk.backup = true;
        let t = BackendTable::new(&backend(balance, vec![server("a", 1, 1), bk]));
        assert_eq!(t.try_acquire(client(0), Some(0)).unwrap().index(), 1);
        t.set_healthy(1, false).unwrap();
        assert_eq!(
            t.try_acquire(client(0), Some(0)).unwrap_err(),
            TryAcquireError::NoServer
        );
        assert_eq!(t.try_acquire(client(0), None).unwrap().index(), 0);
    }
}

/// `balance rdp-cookie`: a cookie's value always maps to one server, the map's slot at
/// `sdbm(value) % total weight` (HAProxy's `get_server_rch` with `hash-type map-based`);
/// picks without a cookie take round-robin turns.
#[test]
fn rdp_cookie_hashes_the_value_and_picks_round_robin_without_it() {
    for m in METHODS {
        let mut conf = backend(
            Balance::RdpCookie,
            (1..=3).map(|id| server(&format!("s{id}"), id, 1)).collect(),
        );
        conf.hash_type = hash_type(m);
        let t = BackendTable::new(&conf);
        let snap = t.snapshot();
        let mut seen = Vec::new();
        for k in 0..60 {
            let user = format!("user{k}");
            let s = snap.rdp_cookie_target(user.as_bytes()).expect("a server");
            assert_eq!(snap.rdp_cookie_target(user.as_bytes()), Some(s));
            if m == HashMethod::MapBased {
                let key = super::hash::sdbm(user.as_bytes());
                assert_eq!(s, (key % 3) as usize, "{user}");
            }
            seen.push(s);
        }
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, [0, 1, 2], "{m:?}");
        // No cookie: round robin, whatever the client.
        let mut turns = picks(&t, 6);
        turns.sort_unstable();
        assert_eq!(turns, [0, 0, 1, 1, 2, 2], "{m:?}");
    }
}
