//! The accept path: one thread per core, each with its own `SO_REUSEPORT` listener per `bind`,
//! an accept loop on the thread's reactor and the thread's `io_uring` ([`crate::ring`]); per
//! connection: pick a server from the lock-free table, connect (through the ring) with
//! `timeout connect`/`retries`/`redispatch`, then hand the pair to the data plane. What a thread serves comes from [`ThreadPlan`]s (start and reload); what other
//! threads ask of its flows comes on its [`crate::flows::FlowCommand`] channel.
//!
//! Modules, in the order a connection meets them: [`bind`] (listening sockets and plans),
//! [`thread`] (a thread's runtime), [`accept`] (the accept loop), [`serve`] (one connection),
//! [`inspect`] (rules on the first bytes), [`connect`] (to a server, with [`tls_connect`] for
//! `ssl`), [`served`] (its log line);
//! [`ctx`] is what a thread's tasks share, [`frontends`] pauses and resumes a frontend's
//! listening (`disable|enable|shutdown frontend`), [`permit`] a connection's place under `maxconn`,
//! [`spread`] which thread a new connection goes to, [`trim`] gives a burst's memory back once
//! it is over.

mod accept;
mod adopt;
mod bind;
mod connect;
mod ctx;
mod flowing;
pub mod frontends;
mod inspect;
mod permit;
mod serve;
mod served;
pub mod spread;
mod thread;
mod tls_connect;
mod tls_shim;
mod trim;

pub use bind::{bind_listener, BindPlan, Listeners, ThreadInbox, ThreadPlan};
pub use thread::{run_thread, PlaneSetup};
