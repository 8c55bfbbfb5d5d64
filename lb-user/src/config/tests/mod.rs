//! Unit tests for the config pipeline, by topic: scalar parsers, tokenizer, broken configs
//! (exact line and message), proxies, servers, server-state file, stats, logs and DNS, files, and
//! garbage input (no panics).

mod broken;
mod files;
mod garbage;
mod lex;
mod logs_dns;
mod origdst;
mod proxies;
mod scalar;
mod servers;
mod state_file;
mod stats;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::lex::split_words;
use super::scalar::{
    check_hex, check_name, env_expand_with, parse_bind_addrs, parse_port, parse_size, parse_time,
    parse_u32, parse_weight, split_host_port, Family, Host, TimeUnit,
};
use super::{
    load, load_str, Balance, CliLevel, Config, ConfigErrors, HashExpr, HashFunction, HashMethod,
    HashType, Password,
};

/// `Duration::from_mins` needs a newer Rust than the workspace's rust-version.
fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Loads `text`, panicking with every error when it does not load.
fn ok(text: &str) -> Config {
    match load_str("t.cfg", text) {
        Ok(c) => c,
        Err(e) => panic!("config should load, got:\n{e}"),
    }
}

fn errs(text: &str) -> ConfigErrors {
    match load_str("t.cfg", text) {
        Ok(_) => panic!("config should fail:\n{text}"),
        Err(e) => e,
    }
}

fn has_warning(c: &Config, line: u32, needle: &str) -> bool {
    c.warnings
        .iter()
        .any(|w| w.loc.line == line && w.message.contains(needle))
}

const TIMEOUTS: &str =
    "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n";

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lb-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}
