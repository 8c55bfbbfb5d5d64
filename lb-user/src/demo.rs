//! `lb demo`: two tiny demo backends on loopback and a haproxy.cfg in front of them, so that a
//! newcomer sees lb balance real connections at once.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use crate::config::{self, Config};

/// Most bytes a demo backend reads of a request before answering.
const MAX_REQUEST: usize = 8192;

/// Answers one connection: reads the request (up to the end of the HTTP head, a first line, or
/// 1 s of silence), then replies with a small HTTP response naming this backend.
fn answer(mut conn: TcpStream, name: &str) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    let peer = conn
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while buf.len() < MAX_REQUEST {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                let is_http = buf.starts_with(b"GET ") || buf.starts_with(b"HEAD ");
                if (is_http && buf.windows(4).any(|w| w == b"\r\n\r\n"))
                    || (!is_http && buf.contains(&b'\n'))
                {
                    break;
                }
            }
        }
    }
    let body = format!("hello from {name} (lb connected from {peer})\n");
    let reply = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(reply.as_bytes());
}

fn spawn_backend(name: &'static str) -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                std::thread::spawn(move || answer(conn, name));
            }
        })?;
    Ok(port)
}

/// Starts the demo backends and returns the demo configuration and the text to print.
pub fn start(port: u16) -> anyhow::Result<(Config, String)> {
    // The stats page sits next to the listener: 8404 (HAProxy's customary stats port) by
    // default, or the listener's port + 1 when the listener was moved.
    let stats_port = if port == 8080 {
        8404
    } else {
        port.wrapping_add(1)
    };
    let p1 = spawn_backend("demo backend 1")?;
    let p2 = spawn_backend("demo backend 2")?;
    let cfg = format!(
        "\
global
    maxconn 1000

defaults
    mode tcp
    timeout connect 5s
    timeout client  30s
    timeout server  30s

frontend demo
    bind 127.0.0.1:{port}
    default_backend demo_servers

backend demo_servers
    balance roundrobin
    server web1 127.0.0.1:{p1} check inter 2s
    server web2 127.0.0.1:{p2} check inter 2s

listen stats
    bind 127.0.0.1:{stats_port}
    mode http
    stats enable
    stats uri /stats
    stats refresh 5s
    http-request use-service prometheus-exporter if {{ path /metrics }}
"
    );
    let config = config::load_str("<demo>", &cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    let text = format!(
        "lb demo: two demo backends on 127.0.0.1:{p1} and 127.0.0.1:{p2}, balanced by lb on \
         127.0.0.1:{port}.\n\
         The configuration in use (haproxy.cfg syntax):\n\n{cfg}\n\
         Try it (each request alternates between the two backends):\n\
         \x20   curl -s http://127.0.0.1:{port}/\n\
         \x20   curl -s http://127.0.0.1:{port}/\n\
         \x20   echo hi | socat - TCP:127.0.0.1:{port}\n\
         The stats page (servers, sessions, bytes, health checks): http://127.0.0.1:{stats_port}/stats\n\
         \x20   its CSV: curl -s 'http://127.0.0.1:{stats_port}/stats;csv'\n\
         \x20   Prometheus: curl -s http://127.0.0.1:{stats_port}/metrics\n\
         Stop with Ctrl-C.\n"
    );
    Ok((config, text))
}
