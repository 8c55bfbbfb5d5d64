//! The writer's rules, through [`apply`] on a generation with no threads behind it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;

use super::*;
use crate::flows::{FlowCommand, KillReason};
use crate::table::{AddrOrigin, Origin};

fn gen_with(
    servers: &str,
    backend_lines: &str,
) -> (Arc<Generation>, UnboundedReceiver<FlowCommand>) {
    let text = format!(
        "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\n\
         frontend fe\n  bind 127.0.0.1:1\n  default_backend be\n\
         backend be\n{backend_lines}{servers}"
    );
    let cfg = crate::config::load_str("t.cfg", &text).expect("config");
    Generation::standalone_with_flows(Arc::new(cfg))
}

fn checked() -> (Arc<Generation>, UnboundedReceiver<FlowCommand>) {
    gen_with(
        "  server s1 127.0.0.1:2 check rise 2 fall 3 on-marked-down shutdown-sessions\n  server s2 127.0.0.1:3 check\n",
        "",
    )
}

/// A check result: L4OK, or L4CON "Connection refused".
pub(super) fn report(passed: bool) -> CheckReport {
    CheckReport {
        passed,
        result: if passed {
            CheckResult::L4Ok
        } else {
            CheckResult::L4Con
        },
        code: None,
        info: if passed { "" } else { "Connection refused" }.into(),
        duration: Duration::from_millis(2),
    }
}

fn st(gen: &Generation, s: usize) -> ServerState {
    gen.backends[0].snapshot().servers[s].state
}

fn kills(rx: &mut UnboundedReceiver<FlowCommand>) -> Vec<KillReason> {
    let mut out = Vec::new();
    while let Ok(c) = rx.try_recv() {
        if let FlowCommand::Kill { reason, .. } = c {
            out.push(reason);
        }
    }
    out
}

#[test]
fn checks_move_the_counter_and_the_state() {
    let (g, _rx) = checked();
    let a = |passed| apply(&g, 0, 0, Change::Check(report(passed)), &By::Check).unwrap();
    assert!(
        st(&g, 0).up && st(&g, 0).check_h == 2,
        "starts UP one failure from DOWN"
    );
    let r = a(false);
    assert!(r.before.up && !r.after.up);
    assert_eq!(r.after.check_h, 0);
    a(true);
    assert!(!st(&g, 0).up, "one success of rise 2 is not enough");
    a(true);
    assert!(st(&g, 0).up);
    assert_eq!(st(&g, 0).check_h, 4, "rise + fall - 1");
    let info = g.backends[0].snapshot().servers[0]
        .counters
        .check
        .load_full();
    assert_eq!(info.result, CheckResult::L4Ok);
    assert_eq!((info.failed, info.down_transitions), (1, 1));
}

#[test]
fn every_source_of_down_ends_the_flows_once() {
    let downs: Vec<(Change, By)> = vec![
        (Change::Check(report(false)), By::Check),
        (Change::ForceHealth(ForcedHealth::Down), By::Cli),
        (Change::ForceHealth(ForcedHealth::Down), By::StatsPage),
        (Change::AgentHealth(false), By::Cli),
        (Change::Resolution(Some("DNS NX status")), By::DnsCache),
        (Change::Admin(AdminState::Maint), By::Cli),
    ];
    for (change, by) in downs {
        let (g, mut rx) = gen_with(
            "  server s1 127.0.0.1:2 check agent-check agent-port 9 on-marked-down shutdown-sessions\n",
            "",
        );
        apply(&g, 0, 0, change.clone(), &by).unwrap();
        assert!(!st(&g, 0).up, "{change:?}");
        assert_eq!(kills(&mut rx), [KillReason::ServerDown], "{change:?}");
        // Once: the same change again finds it DOWN already.
        let _ = apply(&g, 0, 0, change.clone(), &by);
        assert!(kills(&mut rx).is_empty(), "{change:?} twice");
    }
}

#[test]
fn without_on_marked_down_flows_stay() {
    let (g, mut rx) = gen_with("  server s1 127.0.0.1:2 check\n", "");
    apply(&g, 0, 0, Change::ForceHealth(ForcedHealth::Down), &By::Cli).unwrap();
    assert!(kills(&mut rx).is_empty());
}

#[test]
fn maintenance_means_down_and_leaving_it_checks_at_once() {
    let (g, _rx) = checked();
    let kick = g.backends[0].snapshot().servers[0]
        .counters
        .check_now
        .subscribe();
    apply(&g, 0, 0, Change::Admin(AdminState::Maint), &By::Cli).unwrap();
    let s = st(&g, 0);
    assert!(!s.up && s.check_h == 0 && s.admin_origin == Origin::Runtime);
    assert!(!kick.has_changed().unwrap());
    apply(&g, 0, 0, Change::Admin(AdminState::Ready), &By::Cli).unwrap();
    let s = st(&g, 0);
    assert!(s.up, "UP at rise: HAProxy starts OK and checks at once");
    assert_eq!(s.check_h, 2);
    assert!(kick.has_changed().unwrap(), "the checker is woken");
    // The first failed check takes it DOWN at once.
    apply(&g, 0, 0, Change::Check(report(false)), &By::Check).unwrap();
    assert!(!st(&g, 0).up);
}

#[test]
fn the_two_maintenances_are_separate() {
    let (g, _rx) = checked();
    apply(&g, 0, 0, Change::Admin(AdminState::Maint), &By::Cli).unwrap();
    apply(
        &g,
        0,
        0,
        Change::Resolution(Some("DNS NX status")),
        &By::DnsCache,
    )
    .unwrap();
    apply(&g, 0, 0, Change::Resolution(None), &By::DnsCache).unwrap();
    assert!(!st(&g, 0).up, "still in the operator's maintenance");
    apply(
        &g,
        0,
        0,
        Change::Resolution(Some("DNS NX status")),
        &By::DnsCache,
    )
    .unwrap();
    apply(&g, 0, 0, Change::Admin(AdminState::Ready), &By::Cli).unwrap();
    assert!(!st(&g, 0).up, "still in MAINT (resolution)");
    apply(
        &g,
        0,
        0,
        Change::Resolved("127.0.0.9".parse().unwrap(), None, None),
        &By::DnsCache,
    )
    .unwrap();
    let s = st(&g, 0);
    assert!(s.up && !s.resolution_maint);
    assert_eq!(s.addr, "127.0.0.9:2".parse().unwrap());
    assert_eq!(s.addr_origin, AddrOrigin::Dns);
}

#[test]
fn checks_and_the_agent_both_decide() {
    let (g, _rx) = gen_with(
        "  server s1 127.0.0.1:2 check agent-check agent-port 9\n",
        "",
    );
    let agent = |up| {
        Change::Agent(AgentVerdict {
            admin: None,
            weight: None,
            maxconn: None,
            up: Some(up),
            report: report(up),
        })
    };
    apply(&g, 0, 0, agent(false), &By::Agent).unwrap();
    assert!(!st(&g, 0).up);
    apply(&g, 0, 0, Change::Check(report(true)), &By::Check).unwrap();
    assert!(!st(&g, 0).up, "the agent still holds it DOWN");
    apply(&g, 0, 0, agent(true), &By::Agent).unwrap();
    assert!(st(&g, 0).up);
    // `disable agent` lifts a DOWN the agent held.
    apply(&g, 0, 0, agent(false), &By::Agent).unwrap();
    apply(&g, 0, 0, Change::AgentEnabled(false), &By::Cli).unwrap();
    assert!(st(&g, 0).up);
    assert_eq!(
        apply(&g, 0, 0, Change::AgentHealth(false), &By::Cli),
        Err(StateError::AgentNotEnabled)
    );
}

#[test]
fn one_snapshot_per_change() {
    let (g, _rx) = gen_with(
        "  server s1 127.0.0.1:2 check agent-check agent-port 9 weight 10\n",
        "",
    );
    let before = g.backends[0].snapshot();
    let verdict = AgentVerdict {
        admin: Some(AdminState::Drain),
        weight: Some(5),
        maxconn: Some(7),
        up: Some(false),
        report: report(false),
    };
    apply(&g, 0, 0, Change::Agent(verdict), &By::Agent).unwrap();
    let after = g.backends[0].snapshot();
    assert_eq!(after.version, before.version + 1);
    let s = after.servers[0].state;
    assert_eq!(
        (s.admin, s.user_weight, s.maxconn, s.up),
        (AdminState::Drain, 5, 7, false)
    );
    let before = g.backends[0].snapshot();
    apply(&g, 0, 0, Change::Admin(AdminState::Ready), &By::Cli).unwrap();
    apply(
        &g,
        0,
        0,
        Change::ForceHealth(ForcedHealth::Stopping),
        &By::Cli,
    )
    .unwrap();
    let after = g.backends[0].snapshot();
    assert_eq!(after.version, before.version + 2);
    assert!(after.servers[0].state.up && after.servers[0].state.stopping);
    // No change, no snapshot.
    apply(
        &g,
        0,
        0,
        Change::ForceHealth(ForcedHealth::Stopping),
        &By::Cli,
    )
    .unwrap();
    assert_eq!(g.backends[0].snapshot().version, after.version);
}

#[test]
fn forced_health_is_ignored_in_maintenance() {
    let (g, _rx) = checked();
    apply(&g, 0, 0, Change::Admin(AdminState::Maint), &By::Cli).unwrap();
    apply(&g, 0, 0, Change::ForceHealth(ForcedHealth::Up), &By::Cli).unwrap();
    assert!(!st(&g, 0).up);
}

#[test]
fn weights_set_at_run_time_and_static_rr() {
    let (g, _rx) = gen_with(
        "  server s1 127.0.0.1:2 weight 3\n",
        "  balance static-rr\n",
    );
    assert!(matches!(
        apply(&g, 0, 0, Change::Weight(2), &By::Cli),
        Err(StateError::StaticWeight { .. })
    ));
    apply(&g, 0, 0, Change::Weight(0), &By::Cli).unwrap();
    let s = st(&g, 0);
    assert_eq!((s.weight, s.weight_origin), (0, Origin::Runtime));
    assert!(matches!(
        apply(&g, 0, 0, Change::Weight(300), &By::Cli),
        Err(StateError::WeightOutOfRange { weight: 300, .. })
    ));
}

/// An SRV record's weight applies with its address; a backend whose algorithm cannot take
/// it keeps its weight but still takes the address (HAProxy ignores the weight's error).
#[test]
fn srv_weights_come_with_the_address_unless_static() {
    let (g, _rx) = gen_with("  server s1 127.0.0.1:2 weight 3\n", "");
    let ip = "127.0.0.9".parse().unwrap();
    apply(
        &g,
        0,
        0,
        Change::Resolved(ip, Some(5), Some(30)),
        &By::DnsCache,
    )
    .unwrap();
    let s = st(&g, 0);
    assert_eq!(
        (s.addr.to_string().as_str(), s.user_weight),
        ("127.0.0.9:5", 30)
    );
    let (g, _rx) = gen_with(
        "  server s1 127.0.0.1:2 weight 3\n",
        "  balance static-rr\n",
    );
    apply(
        &g,
        0,
        0,
        Change::Resolved(ip, Some(5), Some(30)),
        &By::DnsCache,
    )
    .unwrap();
    let s = st(&g, 0);
    assert_eq!(
        (s.addr.to_string().as_str(), s.user_weight),
        ("127.0.0.9:5", 3)
    );
}

#[test]
fn slow_start_ramps_after_coming_up() {
    let (g, _rx) = gen_with(
        "  server s1 127.0.0.1:2 check weight 100 slowstart 10s\n",
        "",
    );
    apply(&g, 0, 0, Change::ForceHealth(ForcedHealth::Down), &By::Cli).unwrap();
    apply(&g, 0, 0, Change::ForceHealth(ForcedHealth::Up), &By::Cli).unwrap();
    let s = st(&g, 0);
    assert!(s.ramp_start.is_some());
    assert_eq!(s.weight, 1, "1 % of 100 at first");
    // A weight set meanwhile is where the ramp goes.
    apply(&g, 0, 0, Change::Weight(50), &By::Cli).unwrap();
    assert_eq!(st(&g, 0).user_weight, 50);
    assert!(st(&g, 0).weight <= 1);
}

#[test]
fn slowstart_ramps_linearly_from_one_percent() {
    let total = Duration::from_secs(10);
    assert_eq!(ramp_weight(100, Duration::ZERO, total), 1);
    assert_eq!(ramp_weight(100, Duration::from_secs(5), total), 50);
    assert_eq!(ramp_weight(100, total, total), 100);
    assert_eq!(ramp_weight(1, Duration::from_secs(1), total), 1);
    assert_eq!(ramp_weight(256, Duration::from_secs(20), total), 256);
}

#[test]
fn log_details_follow_haproxy() {
    let mut r = report(false);
    assert_eq!(
        check_details(&r),
        ", reason: Layer4 connection problem, info: \"Connection refused\", check duration: 2ms"
    );
    r.code = Some(1045);
    r.info = "expect string '+PONG\r\n'".to_owned();
    assert_eq!(
        check_details(&r),
        ", reason: Layer4 connection problem, code: 1045, info: \"expect string '+PONG\\r\\n'\", \
         check duration: 2ms"
    );
}

#[test]
fn addresses_from_dns_and_the_cli() {
    let (g, _rx) = checked();
    let r = apply(
        &g,
        0,
        0,
        Change::Addr {
            ip: Some("127.0.0.5".parse().unwrap()),
            port: Some(3307),
        },
        &By::Cli,
    )
    .unwrap();
    assert_eq!(r.addrs().1, "127.0.0.5:3307".parse().unwrap());
    assert_eq!(r.after.addr_origin, AddrOrigin::Cli);
}

#[test]
fn state_file_round_trip() {
    let (g, _rx) = checked();
    apply(&g, 0, 0, Change::Admin(AdminState::Maint), &By::Cli).unwrap();
    apply(&g, 0, 1, Change::Weight(7), &By::Cli).unwrap();
    apply(&g, 0, 1, Change::Check(report(false)), &By::Check).unwrap();
    let text = file::render(&g, None, 1000, 900);
    let (lines, problems) = file::parse(&text);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(lines.len(), 2);
    assert_eq!((lines[0].admin, lines[0].op_state), (0x01, 0));
    assert_eq!((lines[1].uweight, lines[1].op_state), (7, 0));
    // A fresh generation takes the state back.
    let (fresh, _rx2) = checked();
    for (s, l) in lines.iter().enumerate() {
        file::apply_line(&fresh, 0, s, l);
    }
    assert_eq!(st(&fresh, 0).admin, AdminState::Maint);
    assert!(!st(&fresh, 1).up);
    assert_eq!(st(&fresh, 1).user_weight, 7);
}

#[test]
fn bad_state_files_name_the_line() {
    let (lines, problems) =
        file::parse("1\n# header\n1 be 1 s1 127.0.0.1 2 0 1 1 0\nbogus\n1 be 1 s1 x 2 0 1 1 5 6 3 4 6 0 0 0 - 80 - 0 0 - - 0\n");
    assert!(lines.is_empty());
    assert_eq!(problems.len(), 3);
    assert!(problems[0].starts_with("3: 10 fields"), "{problems:?}");
    assert!(
        problems[2].contains("invalid srv_addr value 'x'"),
        "{problems:?}"
    );
    assert_eq!(
        file::parse("2\n").1,
        ["1: unsupported version '2' (lb reads version 1)"]
    );
}

/// One write path: outside the writer (and the table's own tests), nothing calls the table's
/// write primitive.
#[test]
fn only_the_writer_writes() {
    fn visit(dir: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                visit(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                let compact: String = text.split_whitespace().collect();
                if compact.contains(".write(|") {
                    out.push(p.display().to_string());
                }
            }
        }
    }
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    visit(&src, &mut found);
    found.retain(|p| !p.contains("/src/state/") && !p.contains("/src/table/"));
    assert!(
        found.is_empty(),
        "server state written outside the writer: {found:?}"
    );
}

/// Found by the `agent_answer` fuzz target (an agent answering `... 7000000000000000050% ...`):
/// the configured weight times the percentage overflowed, a panic with overflow checks and,
/// without them, a wrapped product: 256 × 2^56 % gave weight 0, as if the agent had asked for
/// `0%`.
#[test]
fn a_huge_percentage_is_too_large_not_wrapped() {
    let too_large = Err("Relative weight too large.");
    assert_eq!(parse_weight("72057594037927936%", 256), too_large);
    assert_eq!(parse_weight("18446744073709551615%", 256), too_large);
    assert_eq!(parse_weight("7205759403792793600%", 1), too_large);
    let fuzzed = format!(
        "s\t50%\t5{}50% n 7\t\0 Ln 7000000000000000050% n 7\t\0 Ln 74",
        "0".repeat(82)
    );
    let answer = crate::health::agent::parse(&fuzzed, 39);
    assert_eq!(answer.weight, Some(too_large.map_err(str::to_owned)));
}

/// The agent's (or an operator's) `maxconn` keeps a static limit static and a dynamic one's
/// `minconn`, as HAProxy's `server_parse_maxconn_change_request`; a reload keeps it while the
/// configured limits stay as they were.
#[test]
fn a_run_time_maxconn_keeps_a_limit_static_or_dynamic() {
    let (g, _rx) = gen_with(
        "  server fixed 127.0.0.1:2 maxconn 10\n  server grows 127.0.0.1:3 minconn 5 maxconn 50\n",
        "",
    );
    let limits = |g: &Generation, s| (st(g, s).maxconn, st(g, s).minconn);
    assert_eq!((limits(&g, 0), limits(&g, 1)), ((10, 10), (50, 5)));
    for s in 0..2 {
        apply(&g, 0, s, Change::Maxconn(20), &By::Agent).unwrap();
    }
    assert_eq!((limits(&g, 0), limits(&g, 1)), ((20, 20), (20, 5)));
    let logs = crate::logging::open(&g.config).expect("log targets");
    let next = g.next(g.config.clone(), g.maxconn, logs);
    assert_eq!((limits(&next, 0), limits(&next, 1)), ((20, 20), (20, 5)));
}

/// Slow start is HAProxy's STARTING in every algorithm: the limit ramps from 1 % (at least
/// one connection) whether the weight does (round robin) or not (`static-rr`).
#[test]
fn slow_start_ramps_the_limit_in_every_algorithm() {
    for (balance, ramped_weight) in [("roundrobin", 1), ("static-rr", 100)] {
        let (g, _rx) = gen_with(
            "  server s1 127.0.0.1:2 check weight 100 maxconn 50 slowstart 10s\n",
            &format!("  balance {balance}\n"),
        );
        apply(&g, 0, 0, Change::ForceHealth(ForcedHealth::Down), &By::Cli).unwrap();
        apply(&g, 0, 0, Change::ForceHealth(ForcedHealth::Up), &By::Cli).unwrap();
        let snap = g.backends[0].snapshot();
        let e = &snap.servers[0];
        assert!(e.state.ramp_start.is_some(), "{balance}");
        assert_eq!(e.state.ramp_pct, 1, "{balance}");
        assert_eq!(e.state.weight, ramped_weight, "{balance}");
        assert_eq!(e.limit(), 1, "{balance}: 1 % of 50, at least 1");
        let mut later = e.clone();
        later.state.ramp_pct = 40;
        assert_eq!(later.limit(), 20, "{balance}");
        drop(snap);
        // Down again: the ramp is over, the whole limit back for the next time.
        apply(&g, 0, 0, Change::ForceHealth(ForcedHealth::Down), &By::Cli).unwrap();
        let s = st(&g, 0);
        assert_eq!((s.ramp_start, s.ramp_pct, s.weight), (None, 100, 100));
    }
}
