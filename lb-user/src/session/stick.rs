//! What one connection does with stick tables: the entries its `track-sc0..2` rules track
//! (dropped with the session, which ends `conn_cur`), the `sc*_`/`src_*` fetches, the
//! `sc-inc-gpc*`/`sc-set-gpt*` actions, and server persistence (`stick match` picks the stored
//! server, `stick store-*` record the one the connection went to).

use std::cell::RefCell;
use std::sync::Arc;

use crate::acl::{AclTable, Ctx, StickRef, Value};
use crate::generation::Generation;
use crate::rules::{StickKind, StickRule, TrackSc};
use crate::stick::{self, clock, DataType, Key, Table, Tracked};

/// A connection's stick-table state.
#[derive(Debug, Default)]
pub(super) struct Sticky {
    /// The entries tracked by `track-sc0`, `track-sc1`, `track-sc2`.
    slots: RefCell<[Option<Tracked>; 3]>,
    /// Entries `stick on|store-request` will record the server in once it is known.
    stores: RefCell<Vec<(Arc<Table>, Key)>>,
    /// The server the connection went to: its id and name.
    server: Option<(u32, Arc<str>)>,
}

impl Sticky {
    /// `track-scN` matched: tracks `key` in the rule's table (the proxy's own, `current`, for
    /// a named defaults' rule without `table`), unless the slot already tracks something.
    pub(super) fn track(
        &self,
        gen: &Generation,
        current: &str,
        t: &TrackSc,
        key: Option<Value>,
        stream: bool,
    ) {
        let mut slots = self.slots.borrow_mut();
        let Some(slot @ None) = slots.get_mut(usize::from(t.slot)) else {
            return;
        };
        let Some(table) = gen.tables.get(t.table.as_deref().unwrap_or(current)) else {
            return;
        };
        let Some(key) = key.and_then(|k| table.key(k)) else {
            return;
        };
        let now = clock();
        *slot = Tracked::start(table, &key, now);
        if stream {
            // Tracked after the session started: it counts as one now.
            if let Some(tr) = slot.as_ref() {
                tr.session(now);
            }
        }
    }

    /// The session started (after `tcp-request session` rules): `sess_cnt`/`sess_rate` of the
    /// entries tracked so far.
    pub(super) fn session_started(&self) {
        // The clock is read only for a tracked entry (most sessions track none).
        let mut now = None;
        for tr in self.slots.borrow().iter().flatten() {
            tr.session(*now.get_or_insert_with(clock));
        }
    }

    /// `sc-inc-gpc0|1(slot)`, `sc-inc-gpc(idx,slot)`: the counter and its rate, each when
    /// the table stores it (HAProxy's `action_inc_gpc*`).
    pub(super) fn inc_gpc(&self, slot: u8, dt: DataType, idx: usize) {
        if let Some(Some(tr)) = self.slots.borrow().get(usize::from(slot)) {
            tr.table.add_at(&tr.entry, dt, idx, 1, clock());
        }
    }

    /// `sc-set-gpt0(slot) VALUE`, `sc-set-gpt(idx,slot) VALUE`.
    pub(super) fn set_gpt(&self, slot: u8, dt: DataType, idx: usize, value: i64) {
        if let Some(Some(tr)) = self.slots.borrow().get(usize::from(slot)) {
            stick::set_gpt(&tr.table, &tr.entry, dt, idx, value);
        }
    }

    /// Whether it tracks any entry.
    pub(super) fn tracks(&self) -> bool {
        self.slots.borrow().iter().any(Option::is_some)
    }

    /// The flow's bytes, counted when it ends (the rates see them all at that moment).
    pub(super) fn flow_bytes(&self, bytes_in: u64, bytes_out: u64) {
        let now = clock();
        for tr in self.slots.borrow().iter().flatten() {
            tr.bytes(bytes_in, bytes_out, now);
        }
    }

    /// A stick-table fetch (see [`crate::acl::Env::stick`]); `current` names the proxy whose
    /// table is the default.
    pub(super) fn answer(
        &self,
        gen: &Generation,
        current: &str,
        which: StickRef,
        table: Option<&str>,
        what: &str,
        idx: usize,
    ) -> Option<Value> {
        let now = clock();
        match which {
            StickRef::Slot(n) => {
                let slots = self.slots.borrow();
                let tr = slots.get(usize::from(n))?.as_ref();
                if what == "tracked" {
                    return Some(Value::Bool(tr.is_some()));
                }
                let tr = tr?;
                // `sc0_x(other)`: the tracked key, looked up in another table.
                let other = table
                    .filter(|t| *t != tr.table.def.name)
                    .map(|t| gen.tables.get(t));
                let (tb, entry) = match other {
                    None => (&tr.table, Some(tr.entry.clone())),
                    Some(None) => return None,
                    Some(Some(tb)) => (tb, tb.lookup(&tr.entry.key, now)),
                };
                if what == "trackers" {
                    // The table holds one reference, this lookup may hold another.
                    let held = entry.map_or(0, |e| Arc::strong_count(&e).saturating_sub(2));
                    return Some(Value::Int(held as i64 + 1));
                }
                stick::counter(tb, entry.as_deref(), what, idx, now)
            }
            StickRef::Src(ip) => {
                let tb = gen.tables.get(table.unwrap_or(current))?;
                let key = tb.key(Value::Addr(ip))?;
                if what == "updt_conn_cnt" {
                    let e = tb.get(&key, now)?;
                    return stick::updt_conn_cnt(tb, &e, now);
                }
                let e = if stick::creates(what) {
                    tb.get(&key, now)
                } else {
                    tb.lookup(&key, now)
                };
                stick::counter(tb, e.as_deref(), what, idx, now)
            }
            StickRef::Table => {
                let tb = gen.tables.get(table.unwrap_or(current))?;
                let used = tb.used() as i64;
                Some(Value::Int(match what {
                    "cnt" => used,
                    _ => i64::try_from(tb.def.size).unwrap_or(i64::MAX) - used,
                }))
            }
        }
    }

    /// `stick match|on` rules (in order, conditions evaluated in `ctx`): the first stored
    /// server that is usable, or that exists at all when `persist` (`option persist`,
    /// `force-persist`). `stick on|store-request` keys are kept for [`Self::server_chosen`].
    pub(super) fn match_server(
        &self,
        gen: &Generation,
        backend: usize,
        (rules, acls): (&[StickRule], &AclTable),
        ctx: &Ctx<'_>,
        persist: bool,
    ) -> Option<usize> {
        let now = clock();
        let snap = gen.backends[backend].snapshot();
        let mut chosen = None;
        for r in rules {
            if r.kind == StickKind::StoreResponse
                || r.cond
                    .as_ref()
                    .is_some_and(|c| c.applies(acls, ctx) != Some(true))
            {
                continue;
            }
            let Some(tb) = gen.tables.get(&r.table) else {
                continue;
            };
            let Some(key) = r.key.first(ctx).and_then(|v| tb.key(v)) else {
                continue;
            };
            if r.kind.matches() && chosen.is_none() {
                let id = tb
                    .lookup(&key, now)
                    .and_then(|e| tb.read(&e, DataType::ServerId, now));
                chosen = id.and_then(|id| {
                    snap.servers.iter().position(|e| {
                        u64::from(e.conf.id) == id && e.state.takes_assignment(persist)
                    })
                });
            }
            // One store per table, as HAProxy.
            let mut stores = self.stores.borrow_mut();
            if r.kind.stores_request() && !stores.iter().any(|(t, _)| Arc::ptr_eq(t, tb)) {
                stores.push((tb.clone(), key));
            }
        }
        chosen
    }

    /// The connection reached server `id` (`name`): `stick on|store-request` record it.
    pub(super) fn server_chosen(&mut self, id: u32, name: &Arc<str>) {
        let stores = self.stores.take();
        if !stores.is_empty() {
            let now = clock();
            for (tb, key) in stores {
                store(&tb, &key, id, name, now);
            }
        }
        self.server = Some((id, name.clone()));
    }

    /// `stick store-response` rules, with the response's first bytes in `ctx`.
    pub(super) fn store_response(
        &self,
        gen: &Generation,
        rules: &[StickRule],
        acls: &AclTable,
        ctx: &Ctx<'_>,
    ) {
        let Some((id, name)) = &self.server else {
            return;
        };
        let now = clock();
        let mut done: Vec<&Arc<Table>> = Vec::new();
        for r in rules.iter().filter(|r| r.kind == StickKind::StoreResponse) {
            if r.cond
                .as_ref()
                .is_some_and(|c| c.applies(acls, ctx) != Some(true))
            {
                continue;
            }
            let Some(tb) = gen.tables.get(&r.table) else {
                continue;
            };
            if done.iter().any(|t| Arc::ptr_eq(t, tb)) {
                continue;
            }
            if let Some(key) = r.key.first(ctx).and_then(|v| tb.key(v)) {
                store(tb, &key, *id, name, now);
                done.push(tb);
            }
        }
    }
}

fn store(tb: &Table, key: &Key, id: u32, name: &Arc<str>, now: u64) {
    if let Some(e) = tb.get(key, now) {
        tb.set(&e, DataType::ServerId, u64::from(id));
        if tb.def.stores(DataType::ServerKey) {
            e.data.lock().server_key = Some(name.clone());
        }
    }
}
