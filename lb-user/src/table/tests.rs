use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::yield_now;

use super::testing::{backend, client, server};
use super::*;
use crate::config::Balance;

fn limited(maxconn: u32, maxqueue: u32, n: u32) -> Arc<BackendTable> {
    let servers = (1..=n)
        .map(|id| {
            let mut s = server(&format!("s{id}"), id, 1);
            s.maxconn = maxconn;
            s.maxqueue = maxqueue;
            s
        })
        .collect();
    BackendTable::new(&backend(Balance::RoundRobin, servers))
}

fn cur(t: &BackendTable, i: usize) -> u32 {
    t.snapshot().servers[i].counters.cur.load(Ordering::SeqCst)
}

async fn until(mut cond: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        yield_now().await;
    }
    panic!("condition never became true");
}

#[test]
fn set_addr_keeps_counters_and_redirects_new_slots() {
    let t = limited(0, 0, 2);
    let slot = t.try_acquire(client(1), None).expect("a slot");
    let i = slot.index();
    let before = Arc::clone(&t.snapshot().servers[i].counters);
    let new: SocketAddr = "127.0.0.9:4242".parse().unwrap();
    let old = t.set_addr(i, new).expect("set_addr");
    assert_ne!(old, new);
    // The slot taken before keeps its address; the counters are the same object.
    assert_eq!(slot.addr(), old);
    assert!(Arc::ptr_eq(&before, &t.snapshot().servers[i].counters));
    assert_eq!(cur(&t, i), 1);
    drop(slot);
    assert_eq!(t.snapshot().servers[i].addr(), new);
    assert!(t.set_addr(9, new).is_err());
}

#[tokio::test]
async fn queue_serves_waiters_in_arrival_order() {
    let t = limited(2, 0, 1);
    let (tx, mut rx) = mpsc::unbounded_channel();
    for k in 0..10u32 {
        let (t2, tx) = (Arc::clone(&t), tx.clone());
        tokio::spawn(async move {
            let slot = t2.acquire(client(k), None, None).await.unwrap();
            tx.send((k, slot)).unwrap();
        });
        // Let it arrive (take a slot or queue) before the next one: arrival order = k.
        let queued = (k + 1).saturating_sub(2) as usize;
        until(|| t.queue_len() == queued && cur(&t, 0) == (k + 1).min(2)).await;
    }
    let mut held = vec![rx.recv().await.unwrap(), rx.recv().await.unwrap()];
    assert_eq!([held[0].0, held[1].0], [0, 1]);
    assert_eq!(t.queue_len(), 8);
    assert_eq!(t.queue_max(), 8);
    for expect in 2..10 {
        // Free the oldest slot: the head of the queue gets it, nobody else.
        held.remove(0);
        let (k, slot) = rx.recv().await.unwrap();
        assert_eq!(k, expect);
        held.push((k, slot));
        assert_eq!(cur(&t, 0), 2);
        assert_eq!(t.queue_len(), 9 - expect as usize);
    }
    drop(held);
    let snap = t.snapshot();
    let counters = &snap.servers[0].counters;
    assert_eq!(counters.cur.load(Ordering::SeqCst), 0);
    assert_eq!(
        counters.max.load(Ordering::SeqCst),
        2,
        "never more than maxconn"
    );
    assert_eq!(counters.total.load(Ordering::SeqCst), 10);
}

#[tokio::test(start_paused = true)]
async fn queue_timeout_leaks_nothing() {
    let t = limited(1, 0, 1);
    let held = t.try_acquire(client(0), None).unwrap();
    let start = tokio::time::Instant::now();
    let err = t
        .acquire(client(1), None, Some(Duration::from_millis(100)))
        .await
        .unwrap_err();
    assert_eq!(err, AcquireError::QueueTimeout);
    assert_eq!(
        err.to_string(),
        "timed out waiting in the backend queue for a free server"
    );
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert_eq!(t.queue_len(), 0);
    drop(held);
    assert_eq!(cur(&t, 0), 0);
    // The queue is empty again: the fast path works.
    assert_eq!(t.try_acquire(client(2), None).unwrap().index(), 0);
}

#[tokio::test]
async fn queue_full_at_sum_of_maxqueue() {
    let t = limited(1, 1, 2);
    let held: Vec<ServerSlot> = (0..2)
        .map(|k| t.try_acquire(client(k), None).unwrap())
        .collect();
    assert_eq!(t.snapshot().queue_limit(), Some(2));
    let waiters: Vec<_> = (0..2)
        .map(|k| {
            let t = Arc::clone(&t);
            tokio::spawn(async move { t.acquire(client(10 + k), None, None).await })
        })
        .collect();
    until(|| t.queue_len() == 2).await;
    assert_eq!(
        t.acquire(client(20), None, None).await.unwrap_err(),
        AcquireError::QueueFull
    );
    drop(held);
    for w in waiters {
        assert!(w.await.unwrap().is_ok());
    }
    // One server without maxqueue: unlimited.
    let mut conf = backend(
        Balance::RoundRobin,
        vec![server("a", 1, 1), server("b", 2, 1)],
    );
    conf.servers[0].maxqueue = 5;
    assert_eq!(BackendTable::new(&conf).snapshot().queue_limit(), None);
}

#[tokio::test]
async fn dropped_waiters_leak_nothing() {
    let t = limited(1, 0, 1);
    let held = t.try_acquire(client(0), None).unwrap();

    // Dropped while waiting.
    let t2 = Arc::clone(&t);
    let h = tokio::spawn(async move { t2.acquire(client(1), None, None).await });
    until(|| t.queue_len() == 1).await;
    h.abort();
    assert!(h.await.unwrap_err().is_cancelled());
    assert_eq!(t.queue_len(), 0);

    // Dropped after being handed the slot but before running again.
    let t2 = Arc::clone(&t);
    let h = tokio::spawn(async move { t2.acquire(client(2), None, None).await });
    until(|| t.queue_len() == 1).await;
    drop(held);
    assert_eq!(t.queue_len(), 0);
    assert_eq!(cur(&t, 0), 1, "handed over, not released");
    h.abort();
    assert!(h.await.unwrap_err().is_cancelled());
    assert_eq!(cur(&t, 0), 0);
    // Only the first connection was delivered.
    assert_eq!(
        t.snapshot().servers[0]
            .counters
            .total
            .load(Ordering::SeqCst),
        1
    );
}

#[tokio::test]
async fn new_arrivals_do_not_overtake_and_picky_waiters_do_not_block() {
    let t = limited(1, 0, 2);
    let ha = t.try_acquire(client(0), None).unwrap();
    let hb = t.try_acquire(client(1), None).unwrap();
    assert_eq!([ha.index(), hb.index()], [0, 1]);
    // A redispatched connection that must avoid server 1.
    let t2 = Arc::clone(&t);
    let picky = tokio::spawn(async move { t2.acquire(client(2), Some(1), None).await });
    until(|| t.queue_len() == 1).await;
    drop(hb);
    // Server 1 is free but the waiter can't use it; it stays queued...
    assert_eq!(t.queue_len(), 1);
    assert_eq!(cur(&t, 1), 0);
    // ...and a new arrival on the fast path must not jump the queue...
    assert_eq!(
        t.try_acquire(client(3), None).unwrap_err(),
        TryAcquireError::Full
    );
    // ...but one that queues behind it is served at once by the free server.
    let other = t.acquire(client(4), None, None).await.unwrap();
    assert_eq!(other.index(), 1);
    drop(ha);
    assert_eq!(picky.await.unwrap().unwrap().index(), 0);
    drop(other);
    assert_eq!((cur(&t, 0), cur(&t, 1), t.queue_len()), (0, 0, 0));
}

#[tokio::test]
async fn source_waiters_wait_for_their_server_without_blocking_others() {
    let servers = (1..=2)
        .map(|id| {
            let mut s = server(&format!("s{id}"), id, 1);
            s.maxconn = 1;
            s
        })
        .collect();
    let t = BackendTable::new(&backend(Balance::Source, servers));
    // Clients hashing to server 0 and to server 1.
    let on = |i: usize| {
        (0..10_000)
            .map(client)
            .find(|&c| t.snapshot().balancer.hash_target(c, None) == Some(i))
            .unwrap()
    };
    let (c0, c1) = (on(0), on(1));
    let h0 = t.try_acquire(c0, None).unwrap();
    assert_eq!(h0.index(), 0);
    // Many clients of server 0 queue for it...
    let waiters: Vec<_> = (0..100)
        .map(|_| {
            let t = Arc::clone(&t);
            tokio::spawn(async move { t.acquire(c0, None, None).await.map(|s| s.index()) })
        })
        .collect();
    until(|| t.queue_len() == 100).await;
    // ...a client of the idle server 1 is not stuck behind them...
    let s1 = t.acquire(c1, None, None).await.unwrap();
    assert_eq!(s1.index(), 1);
    assert_eq!(t.queue_len(), 100);
    // ...and server 1 freeing up doesn't serve server 0's clients elsewhere.
    drop(s1);
    assert_eq!((t.queue_len(), cur(&t, 1)), (100, 0));
    drop(h0);
    for w in waiters {
        assert_eq!(w.await.unwrap().unwrap(), 0);
    }
    assert_eq!((t.queue_len(), cur(&t, 0)), (0, 0));
}

#[tokio::test]
async fn acquire_without_servers_fails_at_once() {
    let t = limited(1, 0, 1);
    t.set_healthy(0, false).unwrap();
    assert_eq!(
        t.acquire(client(0), None, None).await.unwrap_err(),
        AcquireError::NoServer
    );
    assert_eq!(AcquireError::NoServer.to_string(), "no server is available");
}

#[tokio::test]
async fn a_server_coming_back_serves_the_queue() {
    let t = limited(1, 0, 2);
    t.set_admin(1, AdminState::Maint).unwrap();
    let held = t.try_acquire(client(0), None).unwrap();
    let t2 = Arc::clone(&t);
    let w = tokio::spawn(async move { t2.acquire(client(1), None, None).await });
    until(|| t.queue_len() == 1).await;
    t.set_admin(1, AdminState::Ready).unwrap();
    assert_eq!(w.await.unwrap().unwrap().name(), "s2");
    drop(held);
}

/// Each thread runs its own current-thread runtime, as the accept threads do.
#[test]
fn queue_hands_slots_across_threads() {
    let t = limited(2, 0, 1);
    std::thread::scope(|s| {
        for th in 0..4u32 {
            let t = &t;
            s.spawn(move || {
                let rt = crate::test_runtime();
                rt.block_on(async {
                    for k in 0..50 {
                        let slot = t
                            .acquire(client(th * 100 + k), None, Some(Duration::from_secs(30)))
                            .await
                            .unwrap();
                        assert!(slot.counters().cur.load(Ordering::SeqCst) <= 2);
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    }
                });
            });
        }
    });
    let snap = t.snapshot();
    let c = &snap.servers[0].counters;
    assert_eq!(c.total.load(Ordering::SeqCst), 200);
    assert_eq!(c.max.load(Ordering::SeqCst), 2);
    assert_eq!(c.cur.load(Ordering::SeqCst), 0);
    assert_eq!(t.queue_len(), 0);
}

/// Accept threads share tables and may move slots and queued futures between tasks.
#[test]
fn shareable_across_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let t = limited(1, 0, 1);
    send_sync(&t);
    let slot = t.try_acquire(client(0), None).unwrap();
    send_sync(&slot);
    let fut = t.acquire(client(1), None, None);
    send(&fut);
}

#[test]
fn writers_publish_snapshots_and_keep_counters() {
    let t = BackendTable::new(&backend(
        Balance::RoundRobin,
        vec![server("a", 1, 1), server("b", 2, 1)],
    ));
    assert_eq!(t.server_index("b"), Some(1));
    assert_eq!(t.server_index("zz"), None);
    let old = t.snapshot();
    let slot = t.try_acquire(client(0), None).unwrap();
    assert_eq!((slot.name(), slot.addr().port()), ("a", 80));

    t.set_admin(0, AdminState::Drain).unwrap();
    t.set_healthy(1, false).unwrap();
    t.set_weight(1, 7).unwrap();
    let new = t.snapshot();
    // The old view is untouched and still self-consistent.
    assert_eq!(old.servers[0].state.admin, AdminState::Ready);
    assert!(old.servers[1].state.up);
    assert_eq!(old.serving(), [0, 1]);
    assert_eq!(
        new.servers[0].state,
        ServerState {
            admin: AdminState::Drain,
            ..ServerState::initial(&new.servers[0].conf)
        }
    );
    assert_eq!(new.servers[1].state.weight, 7);
    assert!(new.serving().is_empty());
    // Counters are shared: the slot taken before the change shows in the new snapshot.
    assert!(Arc::ptr_eq(
        &old.servers[0].counters,
        &new.servers[0].counters
    ));
    assert_eq!(new.servers[0].counters.cur.load(Ordering::SeqCst), 1);
    drop(slot);
    assert_eq!(old.servers[0].counters.cur.load(Ordering::SeqCst), 0);
    assert_eq!(new.servers[0].counters.total.load(Ordering::SeqCst), 1);

    let err = t.set_admin(2, AdminState::Ready).unwrap_err();
    assert_eq!(err.to_string(), "backend bk has no server number 2");
    assert!(t.set_healthy(9, true).is_err());
    assert!(t.set_weight(9, 1).is_err());
}

#[tokio::test]
async fn set_maxconn_limits_and_frees_queued_slots() {
    let t = limited(1, 0, 1);
    let held = t.try_acquire(client(0), None).unwrap();
    let t2 = Arc::clone(&t);
    let w = tokio::spawn(async move { t2.acquire(client(1), None, None).await });
    until(|| t.queue_len() == 1).await;
    // Raising maxconn lets the waiter in at once, keeping the counters.
    t.set_maxconn(0, 2).unwrap();
    let second = w.await.unwrap().unwrap();
    assert_eq!(cur(&t, 0), 2);
    assert_eq!(t.snapshot().servers[0].maxconn(), 2);
    assert!(t.snapshot().servers[0].is_full());
    drop((held, second));
    t.set_maxconn(0, 0).unwrap();
    assert!(!t.snapshot().servers[0].is_full());
    assert!(t.set_maxconn(3, 1).is_err());
}

#[test]
fn set_addr_applies_to_new_slots_and_keeps_counters() {
    let t = BackendTable::new(&backend(Balance::RoundRobin, vec![server("a", 1, 1)]));
    let before = t.try_acquire(client(0), None).unwrap();
    let new_addr: SocketAddr = "127.0.0.3:8080".parse().unwrap();
    t.set_addr(0, new_addr).unwrap();
    let after = t.try_acquire(client(1), None).unwrap();
    assert_eq!(
        before.addr().port(),
        80,
        "a slot taken before keeps its address"
    );
    assert_eq!(after.addr(), new_addr);
    assert!(Arc::ptr_eq(before.counters(), after.counters()));
    assert_eq!(after.counters().cur.load(Ordering::SeqCst), 2);
    assert!(t.set_addr(5, new_addr).is_err());
}

#[test]
fn concurrent_writers_do_not_lose_updates() {
    let servers = (1..=8).map(|id| server(&format!("s{id}"), id, 1)).collect();
    let t = BackendTable::new(&backend(Balance::LeastConn, servers));
    std::thread::scope(|s| {
        for i in 0..8 {
            let t = &t;
            s.spawn(move || {
                for w in 0..=50 {
                    t.set_weight(i, w).unwrap();
                }
            });
        }
    });
    assert!(t.snapshot().servers.iter().all(|s| s.state.weight == 50));
}

/// `minconn 1 maxconn 4`, `fullconn 8`: the server's limit is `beconn * 4 / 8`, at least 1
/// and at most 4, `beconn` being every session counted on the backend (waiting ones too);
/// a queued connection gets its slot once the load lets the limit grow past the server's
/// connections, and a session's count ends with its slot.
#[tokio::test]
async fn a_dynamic_limit_grows_with_the_backend_sessions() {
    let mut srv = server("s1", 1, 1);
    (srv.minconn, srv.maxconn) = (1, 4);
    let mut be = backend(Balance::RoundRobin, vec![srv]);
    be.fullconn = Some(8);
    let t = BackendTable::new(&be);
    let limit = || t.snapshot().servers[0].limit();
    assert_eq!(limit(), 1);
    let mut sessions: Vec<BackendSession> = (0..4).map(|_| t.enter()).collect();
    assert_eq!(limit(), 2);
    let mut a = t.try_acquire(client(1), None).expect("first slot");
    let b = t.try_acquire(client(2), None).expect("second slot");
    assert_eq!(
        t.try_acquire(client(3), None).unwrap_err(),
        TryAcquireError::Full
    );
    sessions.remove(0).hold_in(&mut a);
    // A waiter, then more sessions: the limit grows and the waiter gets its slot.
    let waiting = {
        let t = Arc::clone(&t);
        tokio::spawn(async move { t.acquire(client(3), None, None).await })
    };
    until(|| t.queue_len() == 1).await;
    sessions.extend((0..2).map(|_| t.enter()));
    assert_eq!(t.load.sessions.cur.load(Ordering::Relaxed), 6);
    assert_eq!(limit(), 3);
    // Nothing was released: the limit's growth alone is not a wake-up; the next release is.
    drop(b);
    let c = waiting.await.unwrap().expect("the waiter's slot");
    assert_eq!(cur(&t, 0), 2);
    // At `fullconn` and beyond, `maxconn`.
    sessions.extend((0..3).map(|_| t.enter()));
    assert_eq!(limit(), 4);
    drop((a, c));
    assert_eq!(t.load.sessions.cur.load(Ordering::Relaxed), 8);
    drop(sessions);
    assert_eq!(t.load.sessions.cur.load(Ordering::Relaxed), 0);
    assert_eq!(limit(), 1);
}

#[test]
fn a_static_limit_ignores_the_load() {
    let t = limited(2, 0, 1);
    let _sessions: Vec<BackendSession> = (0..100).map(|_| t.enter()).collect();
    assert_eq!(t.snapshot().servers[0].limit(), 2);
}
