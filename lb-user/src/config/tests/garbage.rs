//! Garbage in, errors out: never a panic.

use super::*;

/// The vocabulary of the garbage lines: keywords, values and broken values.
const WORDS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "resolvers",
    "userlist",
    "peers",
    "fe",
    "be",
    "bind",
    "server",
    "default-server",
    "balance",
    "random(",
    "random(9999)",
    "option",
    "no",
    "tcp-check",
    "expect",
    "string",
    "!",
    "min-recv",
    "send-binary",
    "timeout",
    "connect",
    "client",
    "5s",
    "99999999999999d",
    "mode",
    "http",
    "tcp",
    "stats",
    "enable",
    "uri",
    "weight",
    "300",
    "0",
    "-1",
    "id",
    "init-addr",
    "none",
    "127.0.0.1:80",
    "[::1]:80",
    "::1:",
    "[",
    "]",
    ":",
    "::",
    "@",
    "ipv6@",
    ":80-1",
    ":1-65535",
    "log",
    "global",
    "local0",
    "default_backend",
    "use_backend",
    "hash-type",
    "consistent",
    "mysql-check",
    "user",
    "from",
    "\"",
    "'",
    "\\",
    "\\x",
    "#",
    "$",
    "\"${",
    "maxconn",
    "retries",
    "clitcpka-idle",
    "nameserver",
    "hold",
    "valid",
    "tune.bufsize",
    "nbthread",
    "nbproc",
    "é",
    "\u{0}",
    "\t",
    "inter",
    "rise",
    "fall",
    "ssl",
    "name",
];

/// Garbage in, errors out: never a panic. Lines are built from keywords, values and random
/// characters (fixed seed, so a failure reproduces).
#[test]
fn garbage_never_panics() {
    let mut rng = fastrand::Rng::with_seed(0x01bc_0f16);
    for _ in 0..3000 {
        let mut text = String::new();
        for _ in 0..rng.usize(1..12) {
            for _ in 0..rng.usize(0..8) {
                if rng.u8(..) < 40 {
                    let n = rng.usize(1..6);
                    text.extend((0..n).map(|_| char::from(rng.u8(32..127))));
                } else {
                    text.push_str(WORDS[rng.usize(..WORDS.len())]);
                }
                text.push(if rng.bool() { ' ' } else { '\t' });
            }
            text.push(if rng.u8(..) < 10 { '\r' } else { '\n' });
        }
        // Must return (Ok or Err) without panicking; Ok configs must be self-consistent.
        if let Ok(c) = load_str("fuzz.cfg", &text) {
            for fe in &c.frontends {
                assert!(fe.backend.is_none_or(|b| b < c.backends.len()), "{text}");
            }
        }
    }
}
