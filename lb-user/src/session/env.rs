//! What the ACL fetches ask of the running process ([`crate::acl::Env`]), answered from a
//! configuration generation: proxy names, usable servers, session counts.

use std::sync::atomic::Ordering;

use crate::acl::{Env, Load, StickRef, Value};
use crate::generation::Generation;

/// One connection's view of its generation: its frontend and the backend chosen so far.
pub(super) struct GenEnv<'a> {
    pub(super) gen: &'a Generation,
    pub(super) frontend: usize,
    /// The current backend (`None` until `use_backend`/`default_backend` chose one; HAProxy's
    /// `s->be` is then the frontend itself, which has no servers).
    pub(super) backend: Option<usize>,
    /// The `tcp-request content capture` slots, where a fetch may read them (at log time;
    /// empty while the rules that fill them run).
    pub(super) captures: &'a [Option<Vec<u8>>],
    /// The connection's stick-table state.
    pub(super) sticky: &'a super::Sticky,
    /// The client's TLS handshake, on a TLS bind.
    pub(super) tls: Option<&'a crate::tls::Facts>,
}

impl GenEnv<'_> {
    /// The backend a fetch names, or the current one; `Err(())` for a name that is not a
    /// backend, `Ok(None)` for "the current one, which is the frontend".
    fn resolve(&self, name: Option<&str>) -> Result<Option<usize>, ()> {
        match name {
            Some(n) => self
                .gen
                .config
                .backends
                .iter()
                .position(|b| b.name == n)
                .map(Some)
                .ok_or(()),
            None => Ok(self.backend),
        }
    }
}

impl Env for GenEnv<'_> {
    fn stick(&self, which: StickRef, table: Option<&str>, what: &str, idx: usize) -> Option<Value> {
        let current = super::current_proxy(self.gen, self.frontend, self.backend);
        self.sticky
            .answer(self.gen, current, which, table, what, idx)
    }

    fn frontend_name(&self) -> &str {
        &self.gen.config.frontends[self.frontend].name
    }

    fn backend_name(&self) -> &str {
        match self.backend {
            Some(b) => &self.gen.config.backends[b].name,
            None => self.frontend_name(),
        }
    }

    fn nbsrv(&self, backend: Option<&str>) -> Option<i64> {
        match self.resolve(backend).ok()? {
            Some(b) => Some(self.gen.backends[b].snapshot().serving().len() as i64),
            None => Some(0),
        }
    }

    fn srv_is_up(&self, backend: Option<&str>, server: &str) -> Option<bool> {
        let b = self.resolve(backend).ok()??;
        let snap = self.gen.backends[b].snapshot();
        let e = snap.servers.iter().find(|e| e.conf.name == server)?;
        Some(e.state.up && !e.state.in_maint())
    }

    fn be_conn(&self, backend: Option<&str>) -> Option<i64> {
        match self.resolve(backend).ok()? {
            Some(b) => Some(i64::from(self.gen.be_stats[b].cur.load(Ordering::Relaxed))),
            None => Some(0),
        }
    }

    fn connslots(&self, backend: Option<&str>) -> Option<i64> {
        let Some(b) = self.resolve(backend).ok()? else {
            return Some(0);
        };
        let snap = self.gen.backends[b].snapshot();
        let mut slots = 0i64;
        for e in snap.servers.iter().filter(|e| e.usable()) {
            // HAProxy: a server without maxconn or maxqueue makes the count meaningless.
            if e.maxconn() == 0 || e.conf.maxqueue == 0 {
                return Some(-1);
            }
            let cur = i64::from(e.counters.cur.load(Ordering::Relaxed));
            // lb queues per backend, so a server's own queue is always empty.
            slots += i64::from(e.maxconn()) - cur + i64::from(e.conf.maxqueue);
        }
        Some(slots)
    }

    fn load(&self, what: Load<'_>) -> Option<i64> {
        let g = self.gen;
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        // The current backend is the frontend itself until one is chosen: no servers, no
        // queue (HAProxy's `s->be`).
        let backend = |name: Option<&str>| self.resolve(name).ok();
        let frontend = |name: Option<&str>| match name {
            None => Some(self.frontend),
            Some(n) => g.config.frontends.iter().position(|f| f.name == n),
        };
        let server = |b: Option<&str>, s: &str| {
            let b = match b {
                Some(_) => backend(b)??,
                None => self.backend?,
            };
            let snap = g.backends[b].snapshot();
            snap.servers.iter().find(|e| e.conf.name == s).cloned()
        };
        Some(match what {
            Load::Queue(b) => backend(b)?.map_or(0, |b| g.backends[b].queue_len() as i64),
            Load::AvgQueue(b) => backend(b)?.map_or(0, |b| {
                let queued = g.backends[b].queue_len() as i64;
                match g.backends[b].snapshot().serving().len() as i64 {
                    0 => queued * 2,
                    n => (queued + n - 1) / n,
                }
            }),
            Load::BeSessRate(b) => backend(b)?.map_or(0, |b| int(g.be_stats[b].sess_rate.read())),
            Load::SrvConn(b, s) => i64::from(server(b, s)?.counters.cur.load(Ordering::Relaxed)),
            Load::SrvSessRate(b, s) => int(server(b, s)?.counters.sess_rate.read()),
            Load::FeConn(f) => i64::from(g.fe_stats[frontend(f)?].cur.load(Ordering::Relaxed)),
            Load::FeSessRate(f) => int(g.fe_stats[frontend(f)?].sess_rate.read()),
        })
    }

    fn capture(&self, slot: usize) -> Option<&[u8]> {
        self.captures.get(slot)?.as_deref()
    }

    fn tls(&self) -> Option<&crate::tls::Facts> {
        self.tls
    }
}
