//! `option tcpka|clitcpka|srvtcpka` reach the sockets lb opens and accepts: `ss` (iproute2)
//! shows the keepalive timer the kernel armed on each side, with HAProxy's defaults
//! (`TCP_KEEPIDLE` 110 s) or the `clitcpka-idle`/`srvtcpka-idle` values.

#[macro_use]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::scenarios::Held;
use common::servers::Backend;
use common::{free_port, local, Lb};

on_both_planes!(tcpka_arms_keepalive_on_both_sides, no_tcpka_no_keepalive);

/// The `timer:(...)` field `ss` prints for the established socket matching `filter`
/// (e.g. `sport = :8080`), waiting until that socket exists.
fn ss_timer(filter: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut args = vec!["-tnoH", "state", "established"];
        args.extend(filter.split(' '));
        let out = Command::new("ss")
            .args(&args)
            .output()
            .expect("run ss (iproute2)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some(line) = text.lines().next() {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no socket matches `ss ... {filter}`"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn config(port: u16, backend: &Backend, options: &str) -> String {
    format!(
        "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 1m\n    timeout server 1m\n{options}\
         frontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n\
         backend be\n    server s1 {}\n",
        backend.addr
    )
}

fn tcpka_arms_keepalive_on_both_sides(dataplane: &str) {
    let backend = Backend::ident_hold("s1");
    let port = free_port();
    let _lb = Lb::start(
        &config(
            port,
            &backend,
            "    option clitcpka\n    option srvtcpka\n    srvtcpka-idle 300\n",
        ),
        dataplane,
    );
    let held = Held::open(local(port)).unwrap();
    // lb's accepted socket: local port = the frontend's. HAProxy's default idle is 110 s.
    let client_side = ss_timer(&format!("sport = :{port}"));
    assert!(
        client_side.contains("timer:(keepalive,1min5")
            || client_side.contains("timer:(keepalive,1min4"),
        "client side: {client_side}"
    );
    // lb's connected socket: remote port = the server's; srvtcpka-idle 300 s.
    let server_side = ss_timer(&format!("dport = :{}", backend.addr.port()));
    assert!(
        server_side.contains("timer:(keepalive,5min")
            || server_side.contains("timer:(keepalive,4min5"),
        "server side: {server_side}"
    );
    held.close().unwrap();
}

fn no_tcpka_no_keepalive(dataplane: &str) {
    let backend = Backend::ident_hold("s1");
    let port = free_port();
    let _lb = Lb::start(&config(port, &backend, ""), dataplane);
    let held = Held::open(local(port)).unwrap();
    let client_side = ss_timer(&format!("sport = :{port}"));
    assert!(
        !client_side.contains("keepalive"),
        "client side: {client_side}"
    );
    let server_side = ss_timer(&format!("dport = :{}", backend.addr.port()));
    assert!(
        !server_side.contains("keepalive"),
        "server side: {server_side}"
    );
    held.close().unwrap();
}
