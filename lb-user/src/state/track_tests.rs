//! `track`: a tracking server's state follows its tracked server's, through [`apply`] on a
//! generation with no threads behind it.

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedReceiver;

use super::tests::report;
use super::*;
use crate::flows::{FlowCommand, KillReason};

/// Backend `w` (0): `db1` checked (rise 1, fall 1), `db2` not; backend `r` (1): `db1`
/// tracks `w/db1` (`on-marked-down shutdown-sessions`), `db2` tracks `r/db1` in turn, `own`
/// tracks `w/db1` with a check of its own. `extra`: more of `r`'s lines.
fn tracking(extra: &str) -> (Arc<Generation>, UnboundedReceiver<FlowCommand>) {
    let text = format!(
        "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\n\
         frontend fe\n  bind 127.0.0.1:1\n  default_backend w\n\
         backend w\n  server db1 127.0.0.1:2 check rise 1 fall 1\n  server db2 127.0.0.1:3\n\
         backend r\n  server db1 127.0.0.1:2 track w/db1 on-marked-down shutdown-sessions\n\
         \x20 server db2 127.0.0.1:2 track db1\n  server own 127.0.0.1:2 check rise 1 fall 1 track w/db1\n{extra}"
    );
    let cfg = crate::config::load_str("t.cfg", &text).expect("config");
    Generation::standalone_with_flows(Arc::new(cfg))
}

fn st(g: &Generation, b: usize, s: usize) -> ServerState {
    g.backends[b].snapshot().servers[s].state
}

fn usable(g: &Generation, b: usize, s: usize) -> bool {
    g.backends[b].snapshot().servers[s].usable()
}

/// (up, stopping) of the three trackers in `r`.
fn trackers(g: &Generation) -> Vec<(bool, bool)> {
    (0..3)
        .map(|s| (st(g, 1, s).up, st(g, 1, s).stopping))
        .collect()
}

fn check(g: &Arc<Generation>, b: usize, s: usize, passed: bool) {
    apply(g, b, s, Change::Check(report(passed)), &By::Check).unwrap();
}

#[test]
fn down_up_and_nolb_pass_down_the_chain() {
    let (g, _rx) = tracking("");
    assert_eq!(trackers(&g), [(true, false); 3]);
    check(&g, 0, 0, false);
    assert_eq!(
        trackers(&g),
        [(false, false); 3],
        "DOWN reaches the tracker's tracker"
    );
    assert!(!usable(&g, 1, 0) && !usable(&g, 1, 1));
    check(&g, 0, 0, true);
    assert_eq!(trackers(&g), [(true, false); 3]);
    let force = |h| apply(&g, 0, 0, Change::ForceHealth(h), &By::Cli).unwrap();
    force(ForcedHealth::Stopping);
    assert_eq!(trackers(&g), [(true, true); 3], "NOLB too");
    assert!(!usable(&g, 1, 0));
    force(ForcedHealth::Up);
    assert_eq!(trackers(&g), [(true, false); 3]);
    assert!(usable(&g, 1, 0) && usable(&g, 1, 1) && usable(&g, 1, 2));
}

#[test]
fn a_tracker_with_a_check_of_its_own_needs_both() {
    let (g, _rx) = tracking("");
    check(&g, 1, 2, false);
    assert!(!st(&g, 1, 2).up, "its own check takes it DOWN");
    check(&g, 0, 0, false);
    check(&g, 0, 0, true);
    assert!(
        !st(&g, 1, 2).up,
        "the tracked server's UP does not lift its own DOWN"
    );
    check(&g, 1, 2, true);
    assert!(st(&g, 1, 2).up);
    check(&g, 0, 0, false);
    check(&g, 1, 2, true);
    assert!(
        !st(&g, 1, 2).up,
        "its own check cannot lift the tracked server's DOWN"
    );
    check(&g, 0, 0, true);
    assert!(st(&g, 1, 2).up);
}

#[test]
fn maintenance_and_drain_are_inherited_and_given_back() {
    let (g, _rx) = tracking("");
    let admin = |b, s, a| apply(&g, b, s, Change::Admin(a), &By::Cli).unwrap();
    admin(0, 0, AdminState::Maint);
    for s in 0..3 {
        let t = st(&g, 1, s);
        assert!(t.via_maint && t.in_maint() && !t.up, "r/{s} inherits MAINT");
        assert_eq!(t.admin, AdminState::Ready, "not a forced maintenance");
    }
    // Its own maintenance stays when the inherited one goes.
    admin(1, 0, AdminState::Maint);
    admin(0, 0, AdminState::Ready);
    assert!(st(&g, 1, 0).in_maint() && !st(&g, 1, 0).via_maint);
    assert!(
        st(&g, 1, 1).via_maint,
        "r/db2 follows r/db1, still in maintenance"
    );
    assert!(!st(&g, 1, 2).in_maint() && st(&g, 1, 2).up);
    admin(1, 0, AdminState::Ready);
    assert!(st(&g, 1, 0).up && st(&g, 1, 1).up && !st(&g, 1, 1).in_maint());
    admin(0, 0, AdminState::Drain);
    for s in 0..3 {
        assert!(st(&g, 1, s).via_drain && st(&g, 1, s).up && !usable(&g, 1, s));
    }
    admin(0, 0, AdminState::Ready);
    assert!((0..3).all(|s| usable(&g, 1, s)));
    // DNS's maintenance passes too.
    apply(
        &g,
        0,
        0,
        Change::Resolution(Some("DNS NX status")),
        &By::Config,
    )
    .unwrap();
    assert!(st(&g, 1, 0).via_maint && st(&g, 1, 1).via_maint);
    apply(&g, 0, 0, Change::Resolution(None), &By::Config).unwrap();
    assert!(st(&g, 1, 0).up && !st(&g, 1, 0).in_maint());
}

#[test]
fn health_cannot_be_forced_on_a_tracking_server() {
    let (g, _rx) = tracking("");
    let forced = apply(&g, 1, 0, Change::ForceHealth(ForcedHealth::Down), &By::Cli);
    assert_eq!(forced, Err(StateError::Tracking));
    assert!(st(&g, 1, 0).up);
}

#[test]
fn a_tracker_marked_down_ends_its_flows() {
    let (g, mut rx) = tracking("");
    check(&g, 0, 0, false);
    let uid = g.backends[1].snapshot().servers[0].counters.uid;
    let mut killed = Vec::new();
    while let Ok(c) = rx.try_recv() {
        if let FlowCommand::Kill { reason, servers } = c {
            killed.push((reason, servers));
        }
    }
    assert_eq!(killed, [(KillReason::ServerDown, vec![uid])]);
}

#[test]
fn a_disabled_tracked_server_holds_its_trackers_from_the_start() {
    let text =
        "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\n\
                backend w\n  server db1 127.0.0.1:2 check disabled\n\
                backend r\n  server db1 127.0.0.1:2 track w/db1\n";
    let cfg = crate::config::load_str("t.cfg", text).expect("config");
    let g = Generation::standalone(Arc::new(cfg));
    assert!(
        st(&g, 1, 0).up,
        "the configuration alone: nothing inherited yet"
    );
    follow_tracked(&g);
    assert!(st(&g, 1, 0).via_maint && !st(&g, 1, 0).up);
    apply(&g, 0, 0, Change::Admin(AdminState::Ready), &By::Cli).unwrap();
    assert!(st(&g, 1, 0).up && !st(&g, 1, 0).in_maint());
}
