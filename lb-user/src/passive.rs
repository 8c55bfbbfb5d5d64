//! Passive health checks (`observe layer4`, `error-limit`, `on-error`): the accept path
//! counts failed connects per server and, after `error-limit` in a row, tells the server's
//! checker, which applies `on-error` through the state writer. One load on the accept path
//! for servers that are not observed.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::config::{Config, OnError};

/// What the accept path tells a server's checker (passive checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `error-limit` consecutive failed connects were observed: apply `on-error`.
    ErrorLimit(OnError),
}

/// Per-server passive-check state, written by the accept path.
#[derive(Debug)]
struct Observed {
    /// `observe layer4` with `check`.
    enabled: bool,
    limit: u32,
    on_error: OnError,
    /// Consecutive failed connects.
    errors: AtomicU32,
    /// The server's checker, once started.
    tx: OnceLock<UnboundedSender<Event>>,
}

/// Passive health checks (`observe layer4`, `error-limit`, `on-error`): the accept path reports
/// each connect result here; after `error-limit` consecutive failures the server's checker
/// applies `on-error`. Costs one load on the accept path for servers that are not observed.
#[derive(Debug)]
pub struct Passive {
    /// `[backend][server]`.
    servers: Vec<Vec<Observed>>,
}

impl Passive {
    /// Passive state for every server of `config`.
    pub fn new(config: &Config) -> Self {
        let servers = config
            .backends
            .iter()
            .map(|b| {
                b.servers
                    .iter()
                    .map(|s| Observed {
                        enabled: s.health.check && s.health.observe_layer4,
                        limit: s.health.error_limit.max(1),
                        on_error: s.health.on_error,
                        errors: AtomicU32::new(0),
                        tx: OnceLock::new(),
                    })
                    .collect()
            })
            .collect();
        Self { servers }
    }

    /// The accept path's report of one connect attempt to `backend`'s `server`.
    pub fn connect_result(&self, backend: usize, server: usize, ok: bool) {
        let Some(o) = self.servers.get(backend).and_then(|b| b.get(server)) else {
            return;
        };
        if !o.enabled {
            return;
        }
        if ok {
            // Relaxed: a counter of consecutive events, no other data depends on it.
            if o.errors.load(Ordering::Relaxed) != 0 {
                o.errors.store(0, Ordering::Relaxed);
            }
            return;
        }
        let n = o.errors.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= o.limit {
            o.errors.store(0, Ordering::Relaxed);
            if let Some(tx) = o.tx.get() {
                let _ = tx.send(Event::ErrorLimit(o.on_error));
            }
        }
    }
}

impl Passive {
    /// The channel on which `backend`'s `server`'s checker hears about observed errors, for
    /// servers with `observe layer4` (`None` otherwise, or when taken already).
    pub fn subscribe(&self, backend: usize, server: usize) -> Option<UnboundedReceiver<Event>> {
        let o = self.servers.get(backend)?.get(server)?;
        if !o.enabled {
            return None;
        }
        let (tx, rx) = unbounded_channel();
        o.tx.set(tx).ok()?;
        Some(rx)
    }
}
