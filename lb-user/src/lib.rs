//! lb: an L4 (TCP) load balancer that reads haproxy.cfg, balances like HAProxy in `mode tcp`,
//! and forwards established flows inside the kernel (sockmap) or with splice(2).

pub mod acl;
pub mod admin;
pub mod admission;
pub mod balance;
pub mod config;
pub mod conn_io;
pub mod control;
pub mod counters;
pub mod ctl;
pub mod daemon;
pub mod dataplane;
pub mod demo;
pub mod dns;
pub mod fd_budget;
pub mod fd_table;
pub mod fe_state;
pub mod flows;
pub mod generation;
pub mod health;
pub mod interned;
pub mod listener;
pub mod log_format;
pub mod logging;
pub mod notify;
pub mod outside;
pub mod passive;
pub mod privileges;
pub mod proxy_proto;
pub mod rate;
pub mod released;
pub mod ring;
pub mod rules;
pub mod server;
pub mod session;
pub mod state;
pub mod stats;
pub mod stick;
pub mod table;
pub mod tls;
pub mod tls_client;
pub mod tls_hello;
pub mod upgrade;

/// The runtime of a unit test: one thread, every driver.
#[cfg(test)]
pub(crate) fn test_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a test runtime")
}
