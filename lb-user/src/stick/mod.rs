//! Stick tables (HAProxy's `src/stick_table.c`, `mode tcp` subset): the tables of a
//! configuration generation ([`Tables`]), what one connection tracks ([`Tracked`], a guard
//! whose drop ends the tracking: `conn_cur` goes down on every exit path), and what the
//! `sc*_`/`src_*` fetches and `sc-inc-gpc*` actions read and change ([`counter`]).
//!
//! - [`def`]: data types, key types, the `stick-table` definition.
//! - [`rate`]: HAProxy's `freq_ctr` (the `*_rate(P)` counters).
//! - [`table`]: one table: keys, entries, LRU and expiry, `show table` lines.

pub mod def;
pub mod table;

use std::sync::Arc;

pub use def::{DataType, KeyType, TableDef, DATA_TYPES};
pub use table::{Entry, Filter, Key, Op, Table};

use crate::acl::Value;

pub use crate::rate::clock;

/// The stick tables of one generation, by name.
#[derive(Debug, Default)]
pub struct Tables {
    tables: Vec<Arc<Table>>,
}

impl Tables {
    /// Builds the tables of `defs`, keeping (with their entries) those of `prev` whose
    /// definition did not change: a reload does not forget who was tracked.
    pub fn build(defs: &[TableDef], prev: Option<&Tables>) -> Tables {
        let tables = defs
            .iter()
            .map(|d| {
                prev.and_then(|p| p.get(&d.name))
                    .filter(|t| t.def == *d)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Table::new(d.clone())))
            })
            .collect();
        Tables { tables }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Table>> {
        self.tables.iter().find(|t| t.def.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Table>> {
        self.tables.iter()
    }
}

/// One entry a connection tracks (`track-scN`): counted in `conn_cur` until dropped.
#[derive(Debug)]
pub struct Tracked {
    pub table: Arc<Table>,
    pub entry: Arc<Entry>,
}

impl Tracked {
    /// Starts tracking `key` in `table` (HAProxy's `stream_track_stkctr`): `conn_cur`,
    /// `conn_cnt` and `conn_rate` count this connection. `None` when the table is full of
    /// tracked entries.
    pub fn start(table: &Arc<Table>, key: &Key, now: u64) -> Option<Tracked> {
        let entry = table.get(key, now)?;
        table.add(&entry, DataType::ConnCur, 1, now);
        table.add(&entry, DataType::ConnCnt, 1, now);
        Some(Tracked {
            table: table.clone(),
            entry,
        })
    }

    /// The session started (after the `tcp-request session` rules): `sess_cnt`, `sess_rate`.
    pub fn session(&self, now: u64) {
        self.table.add(&self.entry, DataType::SessCnt, 1, now);
    }

    /// Bytes of the flow (`bytes_in_*`: client to server, `bytes_out_*`: server to client).
    pub fn bytes(&self, bytes_in: u64, bytes_out: u64, now: u64) {
        self.table
            .add(&self.entry, DataType::BytesInCnt, bytes_in, now);
        self.table
            .add(&self.entry, DataType::BytesOutCnt, bytes_out, now);
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let now = clock();
        {
            let mut d = self.entry.data.lock();
            let cur = &mut d.vals[DataType::ConnCur as usize];
            *cur = cur.saturating_sub(1);
        }
        // HAProxy touches the entry when the stream releases it: expiry counts from the end.
        self.table.touch(&self.entry, now);
    }
}

/// Reads or changes one counter of `e` as the fetch `sc*_WHAT` / `src_WHAT` does (HAProxy's
/// `smp_fetch_sc_*`); `idx` is the element of the array fetches (`get_gpc`, `gpc_rate`,
/// `inc_gpc`, `clr_gpc`, `get_gpt`: `sc_get_gpc(IDX,SC)`), 0 for the others. `e` is `None`
/// for a `src_*` fetch whose key has no entry: reads give 0, as HAProxy's. `None` out: no
/// sample (the table does not store the data type, or not that element).
pub fn counter(
    table: &Table,
    e: Option<&Entry>,
    what: &str,
    idx: usize,
    now: u64,
) -> Option<Value> {
    use DataType as D;
    let int = |v: u64| Value::Int(i64::try_from(v).unwrap_or(i64::MAX));
    let read = |dt: DataType| -> Option<Value> {
        table.def.cell(dt, idx)?;
        Some(int(e
            .and_then(|e| table.read_at(e, dt, idx, now))
            .unwrap_or(0)))
    };
    let inc = |dt: DataType| -> Option<Value> {
        // HAProxy: the rate moves even when only it is stored (then its count is returned).
        let stored = table.def.cell(dt, idx).is_some()
            || dt.rate().is_some_and(|r| table.def.cell(r, idx).is_some());
        if !stored {
            return None;
        }
        table.add_at(e?, dt, idx, 1, now).map(int)
    };
    let clr = |dt: DataType| -> Option<Value> {
        table.def.cell(dt, idx)?;
        table.set_at(e?, dt, idx, 0).map(int)
    };
    let kbytes = |dt: DataType| {
        read(dt).map(|v| match v {
            Value::Int(i) => Value::Int(i >> 10),
            other => other,
        })
    };
    match what {
        "conn_cnt" => read(D::ConnCnt),
        "conn_cur" => read(D::ConnCur),
        "conn_rate" => read(D::ConnRate),
        "sess_cnt" => read(D::SessCnt),
        "sess_rate" => read(D::SessRate),
        "bytes_in_rate" => read(D::BytesInRate),
        "bytes_out_rate" => read(D::BytesOutRate),
        "kbytes_in" => kbytes(D::BytesInCnt),
        "kbytes_out" => kbytes(D::BytesOutCnt),
        "get_gpc0" => read(D::Gpc0),
        "get_gpc1" => read(D::Gpc1),
        "get_gpt0" => read(D::Gpt0),
        "gpc0_rate" => read(D::Gpc0Rate),
        "gpc1_rate" => read(D::Gpc1Rate),
        "inc_gpc0" => inc(D::Gpc0),
        "inc_gpc1" => inc(D::Gpc1),
        "clr_gpc0" => clr(D::Gpc0),
        "clr_gpc1" => clr(D::Gpc1),
        "get_gpc" => read(D::Gpc),
        "get_gpt" => read(D::Gpt),
        "gpc_rate" => read(D::GpcRate),
        "inc_gpc" => inc(D::Gpc),
        "clr_gpc" => clr(D::Gpc),
        "http_req_cnt" => read(D::HttpReqCnt),
        "http_req_rate" => read(D::HttpReqRate),
        "http_err_cnt" => read(D::HttpErrCnt),
        "http_err_rate" => read(D::HttpErrRate),
        "http_fail_cnt" => read(D::HttpFailCnt),
        "http_fail_rate" => read(D::HttpFailRate),
        "server_id" => read(D::ServerId),
        _ => None,
    }
}

/// `sc-set-gpt(IDX,SC) VALUE` / `sc-set-gpt0(SC) VALUE` (`idx` 0): HAProxy keeps the low
/// 32 bits. Nothing when the table does not store the tag.
pub fn set_gpt(table: &Table, e: &Entry, dt: DataType, idx: usize, value: i64) {
    table.set_at(e, dt, idx, u64::from(value as u32));
}

/// The fetch suffixes [`counter`] answers: one list, with the fetches.
pub use crate::acl::fetch_stick::COUNTERS;

/// Whether `what` changes the entry (a `src_*` fetch then creates it, as HAProxy's
/// `stktable_get_entry`).
pub fn creates(what: &str) -> bool {
    what.starts_with("inc_") || what.starts_with("clr_") || what == "updt_conn_cnt"
}

/// `src_updt_conn_cnt`: counts a connection for the entry and returns `conn_cnt`.
pub fn updt_conn_cnt(table: &Table, e: &Entry, now: u64) -> Option<Value> {
    if !table.def.stores(DataType::ConnCnt) {
        return None;
    }
    table.add(e, DataType::ConnCnt, 1, now);
    table
        .read(e, DataType::ConnCnt, now)
        .map(|v| Value::Int(i64::try_from(v).unwrap_or(i64::MAX)))
}

#[cfg(test)]
mod tests;
