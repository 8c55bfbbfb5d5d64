//! One stick table: typed keys, entries bounded by `size` (the least recently used entry that
//! no connection tracks is evicted when full, as HAProxy's `stktable_trash_oldest`), expiring
//! `expire` after their last touch, each holding the counters the table `store`s. Sharded by
//! key hash behind `parking_lot` mutexes; an entry is an `Arc` its trackers hold, so counters
//! are updated without the shard lock.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{DataType, KeyType, TableDef, DATA_TYPES};
use crate::acl::{Type, Value};
use crate::rate::FreqCtr;

/// A key, normalised to the table's type: 4 bytes (`ip`, `integer`, big endian), 16 (`ipv6`),
/// at most `len` (`string`), exactly `len`, zero padded (`binary`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub Box<[u8]>);

impl Key {
    /// The key a sample gives for a table of type `ty` (HAProxy's `smp_to_stkey`), or `None`
    /// when the sample does not convert (an IPv6 address for an `ip` table...).
    pub fn from_value(v: Value, ty: KeyType, len: usize) -> Option<Key> {
        let bytes: Vec<u8> = match ty {
            KeyType::Ip => match v.cast(Type::Addr)? {
                Value::Addr(IpAddr::V4(a)) => a.octets().to_vec(),
                Value::Addr(IpAddr::V6(a)) => a.to_ipv4_mapped()?.octets().to_vec(),
                _ => return None,
            },
            KeyType::Ipv6 => match v.cast(Type::Addr)? {
                Value::Addr(IpAddr::V4(a)) => a.to_ipv6_mapped().octets().to_vec(),
                Value::Addr(IpAddr::V6(a)) => a.octets().to_vec(),
                _ => return None,
            },
            KeyType::Integer => match v.cast(Type::Int)? {
                // HAProxy keeps the low 32 bits.
                Value::Int(i) => (i as u32).to_be_bytes().to_vec(),
                _ => return None,
            },
            KeyType::String => {
                let mut t = v.to_text();
                t.truncate(len);
                // A string key ends at its first NUL, as HAProxy's.
                if let Some(z) = t.iter().position(|&b| b == 0) {
                    t.truncate(z);
                }
                t
            }
            KeyType::Binary => {
                let mut t = match v {
                    Value::Bin(b) | Value::Str(b) => b,
                    other => other.to_text(),
                };
                t.resize(len, 0);
                t
            }
        };
        Some(Key(bytes.into_boxed_slice()))
    }

    /// Parses a key typed on the runtime API (`show table T key K`).
    pub fn parse(s: &str, ty: KeyType, len: usize) -> Option<Key> {
        let v = match ty {
            KeyType::Ip | KeyType::Ipv6 => Value::Addr(s.parse().ok()?),
            KeyType::Integer => Value::Int(s.parse::<u32>().ok()?.into()),
            KeyType::String => Value::str(s),
            KeyType::Binary => Value::Bin(hex(s)?),
        };
        Key::from_value(v, ty, len)
    }

    /// The key as HAProxy's `show table` prints it.
    pub fn display(&self, ty: KeyType) -> String {
        let b = &self.0;
        match ty {
            KeyType::Ip if b.len() == 4 => Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
            KeyType::Ipv6 if b.len() == 16 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                Ipv6Addr::from(a).to_string()
            }
            KeyType::Integer if b.len() == 4 => {
                u32::from_be_bytes([b[0], b[1], b[2], b[3]]).to_string()
            }
            KeyType::String => dump_text(b),
            _ => b.iter().fold(String::new(), |mut s, c| {
                let _ = write!(s, "{c:02X}");
                s
            }),
        }
    }
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// HAProxy's `dump_text`: printable ASCII as is, `\t \n \r \e \\ \  \=` escaped, others `\xHH`.
fn dump_text(b: &[u8]) -> String {
    let mut out = String::new();
    for &c in b.iter().take_while(|&&c| c != 0) {
        match c {
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            0x1b => out.push_str("\\e"),
            b'\\' | b' ' | b'=' => {
                out.push('\\');
                out.push(char::from(c));
            }
            0x21..=0x7e => out.push(char::from(c)),
            _ => {
                let _ = write!(out, "\\x{c:02X}");
            }
        }
    }
    out
}

/// The counters of one entry; only those the table stores are updated and shown.
#[derive(Debug, Default)]
pub struct Data {
    /// When the entry expires, in ms of [`super::clock`] (0: never).
    pub exp: u64,
    /// Scalar values by [`DataType`] index (`server_id`, `gpc0`, `conn_cnt`, ...).
    pub vals: [u64; DATA_TYPES],
    /// Rates by [`DataType`] index.
    pub rates: [FreqCtr; DATA_TYPES],
    /// `server_key`: the name of the server `stick store-*` recorded.
    pub server_key: Option<Arc<str>>,
    /// The `gpt(N)` array.
    pub gpt: Box<[u64]>,
    /// The `gpc(N)` array.
    pub gpc: Box<[u64]>,
    /// The `gpc_rate(N,P)` array.
    pub gpc_rate: Box<[FreqCtr]>,
}

impl Data {
    /// An entry's counters, with the arrays `def` stores.
    fn new(def: &TableDef) -> Data {
        Data {
            gpt: vec![0; def.arrays.gpt].into(),
            gpc: vec![0; def.arrays.gpc].into(),
            gpc_rate: vec![FreqCtr::default(); def.arrays.gpc_rate].into(),
            ..Data::default()
        }
    }

    /// The scalar at `(dt, idx)` (`idx` in range: see [`TableDef::cell`]).
    fn val(&mut self, dt: DataType, idx: usize) -> Option<&mut u64> {
        match dt {
            DataType::Gpt => self.gpt.get_mut(idx),
            DataType::Gpc => self.gpc.get_mut(idx),
            _ => Some(&mut self.vals[dt as usize]),
        }
    }

    /// The rate at `(dt, idx)`.
    fn rate(&mut self, dt: DataType, idx: usize) -> Option<&mut FreqCtr> {
        match dt {
            DataType::GpcRate => self.gpc_rate.get_mut(idx),
            _ => Some(&mut self.rates[dt as usize]),
        }
    }
}

/// One entry. Its trackers hold the `Arc`; `use=` is how many do.
#[derive(Debug)]
pub struct Entry {
    /// Shown as the entry's address (`0x...:`); unique for the process's life.
    pub id: u64,
    pub key: Key,
    pub data: Mutex<Data>,
}

struct Slot {
    entry: Arc<Entry>,
    /// Position in the shard's recency order.
    seq: u64,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Key, Slot>,
    /// Least recently touched first.
    order: BTreeMap<u64, Key>,
    seq: u64,
}

/// Entry ids start high so they read like the addresses HAProxy prints.
static NEXT_ID: AtomicU64 = AtomicU64::new(0x5600_0000_0000);

impl Shard {
    fn touch(&mut self, key: &Key) {
        self.seq += 1;
        let seq = self.seq;
        if let Some(slot) = self.map.get_mut(key) {
            self.order.remove(&slot.seq);
            slot.seq = seq;
            self.order.insert(seq, key.clone());
        }
    }

    fn remove(&mut self, key: &Key) -> bool {
        match self.map.remove(key) {
            Some(slot) => {
                self.order.remove(&slot.seq);
                true
            }
            None => false,
        }
    }

    /// Drops expired entries no connection tracks, oldest first; stops at the first live one
    /// (touch order is expiry order: every touch sets `now + expire`). Returns how many went.
    fn purge(&mut self, now: u64) -> usize {
        let mut gone = Vec::new();
        for key in self.order.values() {
            let Some(slot) = self.map.get(key) else {
                continue;
            };
            let exp = slot.entry.data.lock().exp;
            if exp == 0 || exp > now {
                break;
            }
            if Arc::strong_count(&slot.entry) == 1 {
                gone.push(key.clone());
            }
        }
        gone.iter().filter(|k| self.remove(k)).count()
    }

    /// Evicts the least recently touched entry no connection tracks.
    fn evict_one(&mut self) -> bool {
        let victim = self
            .order
            .values()
            .find(|k| {
                self.map
                    .get(*k)
                    .is_some_and(|s| Arc::strong_count(&s.entry) == 1)
            })
            .cloned();
        victim.is_some_and(|k| self.remove(&k))
    }
}

/// A filter of `show table` / `clear table`: `data.<type> <op> <value>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filter {
    pub dt: DataType,
    pub op: Op,
    pub value: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "lt" => Op::Lt,
            "le" => Op::Le,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            _ => return None,
        })
    }

    fn holds(self, a: i64, b: i64) -> bool {
        match self {
            Op::Eq => a == b,
            Op::Ne => a != b,
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
        }
    }
}

/// One stick table of a configuration generation (carried over by reloads that keep its
/// definition).
pub struct Table {
    pub def: TableDef,
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    used: AtomicUsize,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("def", &self.def)
            .field("used", &self.used())
            .finish_non_exhaustive()
    }
}

impl Table {
    pub fn new(def: TableDef) -> Table {
        // Small tables keep one exact LRU; big ones split it to keep the lock short.
        let n = if def.size >= 65_536 { 16 } else { 1 };
        let per_shard = usize::try_from(def.size.div_ceil(n as u64)).unwrap_or(usize::MAX);
        Table {
            shards: (0..n).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: per_shard.max(1),
            used: AtomicUsize::new(0),
            hasher: std::collections::hash_map::RandomState::new(),
            def,
        }
    }

    fn shard(&self, key: &Key) -> &Mutex<Shard> {
        let h = self.hasher.hash_one(key);
        &self.shards[usize::try_from(h % self.shards.len() as u64).unwrap_or(0)]
    }

    /// The key a sample gives for this table.
    pub fn key(&self, v: Value) -> Option<Key> {
        Key::from_value(v, self.def.key, self.def.key_len)
    }

    /// Entries now (`used:`).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The entry of `key` without creating it or refreshing its expiry (`src_*` fetches).
    pub fn lookup(&self, key: &Key, now: u64) -> Option<Arc<Entry>> {
        let shard = self.shard(key).lock();
        let e = shard.map.get(key)?.entry.clone();
        let exp = e.data.lock().exp;
        (exp == 0 || exp > now || Arc::strong_count(&e) > 2).then_some(e)
    }

    /// The entry of `key`, created when missing (evicting the oldest unused entry when the
    /// table is full), its expiry refreshed. `None`: full of tracked entries.
    pub fn get(&self, key: &Key, now: u64) -> Option<Arc<Entry>> {
        let mut shard = self.shard(key).lock();
        let purged = shard.purge(now);
        self.used.fetch_sub(purged, Ordering::Relaxed);
        if !shard.map.contains_key(key) {
            if shard.map.len() >= self.per_shard {
                if self.def.nopurge || !shard.evict_one() {
                    return None;
                }
                self.used.fetch_sub(1, Ordering::Relaxed);
            }
            let entry = Arc::new(Entry {
                id: NEXT_ID.fetch_add(0x40, Ordering::Relaxed),
                key: key.clone(),
                data: Mutex::new(Data::new(&self.def)),
            });
            shard.seq += 1;
            let seq = shard.seq;
            shard.order.insert(seq, key.clone());
            shard.map.insert(key.clone(), Slot { entry, seq });
            self.used.fetch_add(1, Ordering::Relaxed);
        }
        shard.touch(key);
        let e = shard.map.get(key)?.entry.clone();
        drop(shard);
        self.refresh(&e, now);
        Some(e)
    }

    /// Sets the entry's expiry to `now + expire` and its place as most recent (HAProxy's
    /// `stktable_touch`).
    pub fn touch(&self, e: &Arc<Entry>, now: u64) {
        self.shard(&e.key).lock().touch(&e.key);
        self.refresh(e, now);
    }

    fn refresh(&self, e: &Entry, now: u64) {
        e.data.lock().exp = self.def.expire.map_or(0, |x| now + x.max(1));
    }

    /// A data type's value in `e` (rates read at `now`), or `None` when the table does not
    /// store it.
    pub fn read(&self, e: &Entry, dt: DataType, now: u64) -> Option<u64> {
        self.read_at(e, dt, 0, now)
    }

    /// Element `idx` of `dt` (0 for scalars; `gpc0` reads `gpc[0]` in a table that stores
    /// the array, see [`TableDef::cell`]), or `None` when not stored.
    pub fn read_at(&self, e: &Entry, dt: DataType, idx: usize, now: u64) -> Option<u64> {
        let (dt, idx) = self.def.cell(dt, idx)?;
        let period = self.def.period(dt)?;
        let mut d = e.data.lock();
        if dt.is_rate() {
            d.rate(dt, idx).map(|r| r.read(period, now))
        } else {
            d.val(dt, idx).copied()
        }
    }

    /// Adds `n` to a counter and its rate, when stored.
    pub fn add(&self, e: &Entry, dt: DataType, n: u64, now: u64) {
        self.add_at(e, dt, 0, n, now);
    }

    /// Adds `n` to element `idx` of a counter and of its rate, each when stored (HAProxy's
    /// `sc-inc-gpc`: the rate first, then the counter). Returns the counter's new value, or
    /// without it the rate's current-period count; `None` when neither is stored.
    pub fn add_at(&self, e: &Entry, dt: DataType, idx: usize, n: u64, now: u64) -> Option<u64> {
        let val = self.def.cell(dt, idx);
        let rate = dt.rate().and_then(|r| self.def.cell(r, idx));
        let mut d = e.data.lock();
        let mut out = None;
        if let Some((r, ri)) = rate {
            let p = self.def.period(r).unwrap_or(1);
            if let Some(f) = d.rate(r, ri) {
                f.add(p, now, n);
                out = Some(f.current());
            }
        }
        if let Some((v, vi)) = val {
            if let Some(x) = d.val(v, vi) {
                *x = x.wrapping_add(n);
                out = Some(*x);
            }
        }
        out
    }

    /// Sets a scalar (`server_id`, `conn_cur` release...) when stored.
    pub fn set(&self, e: &Entry, dt: DataType, v: u64) {
        self.set_at(e, dt, 0, v);
    }

    /// Sets element `idx` of a scalar; returns the value it replaced, `None` when not stored.
    pub fn set_at(&self, e: &Entry, dt: DataType, idx: usize, v: u64) -> Option<u64> {
        let (dt, idx) = self.def.cell(dt, idx)?;
        let mut d = e.data.lock();
        d.val(dt, idx).map(|x| std::mem::replace(x, v))
    }

    /// Writes `value` into `dt` as `set table ... data.<type> V` does (HAProxy's
    /// `table_process_entry_per_key`): a counter or tag takes it (element 0 of an array,
    /// wrapped into the type's width as HAProxy's cast does when shown), a rate takes it as
    /// the count of a period starting now, `server_key` is left as it is. Nothing when the
    /// table stores no cell of `dt` (the caller checks `stores` first, as HAProxy's).
    pub fn set_data(&self, e: &Entry, dt: DataType, value: i64, now: u64) {
        if dt.is_rate() {
            let Some((dt, idx)) = self.def.cell(dt, 0) else {
                return;
            };
            if let Some(r) = e.data.lock().rate(dt, idx) {
                r.set(now, value as u64);
            }
        } else if dt != DataType::ServerKey {
            self.set_at(e, dt, 0, value as u64);
        }
    }

    /// Every live entry matching `filters` (and `key`), oldest first, in HAProxy's dump
    /// format (`0x...: key=K use=N exp=MS type=value...`).
    pub fn dump(&self, key: Option<&Key>, filters: &[Filter], now: u64) -> String {
        let mut out = String::new();
        for e in self.select(key, filters, now) {
            out.push_str(&self.line(&e, now));
        }
        out
    }

    fn select(&self, key: Option<&Key>, filters: &[Filter], now: u64) -> Vec<Arc<Entry>> {
        let mut all = Vec::new();
        for s in &self.shards {
            let mut shard = s.lock();
            let purged = shard.purge(now);
            self.used.fetch_sub(purged, Ordering::Relaxed);
            for k in shard.order.values() {
                if key.is_some_and(|want| want != k) {
                    continue;
                }
                if let Some(slot) = shard.map.get(k) {
                    all.push(slot.entry.clone());
                }
            }
        }
        all.retain(|e| {
            filters.iter().all(|f| {
                self.read(e, f.dt, now)
                    .is_some_and(|v| f.op.holds(v as i64, f.value))
            })
        });
        all
    }

    fn line(&self, e: &Arc<Entry>, now: u64) -> String {
        // The table and this dump hold one reference each.
        let uses = Arc::strong_count(e).saturating_sub(2);
        let d = e.data.lock();
        let exp = if d.exp == 0 {
            0
        } else {
            d.exp.saturating_sub(now)
        };
        let mut out = format!(
            "0x{:x}: key={} use={uses} exp={exp}",
            e.id,
            e.key.display(self.def.key)
        );
        for (dt, period) in self.def.stored() {
            if dt.is_array() {
                array_fields(&mut out, dt, period, &d, now);
            } else if dt.is_rate() {
                let v = d.rates[dt as usize].read(period, now);
                let _ = write!(out, " {}({period})={}", dt.name(), v as u32);
            } else if dt == DataType::ServerKey {
                let _ = write!(
                    out,
                    " server_key={}",
                    d.server_key.as_deref().unwrap_or("-")
                );
            } else if dt.is_ull() {
                let _ = write!(out, " {}={}", dt.name(), d.vals[dt as usize]);
            } else if dt == DataType::ServerId {
                let _ = write!(out, " server_id={}", d.vals[dt as usize] as i32);
            } else {
                let _ = write!(out, " {}={}", dt.name(), d.vals[dt as usize] as u32);
            }
        }
        out.push('\n');
        out
    }

    /// Removes the entries matching (no connection tracks them): `clear table`.
    pub fn clear(&self, key: Option<&Key>, filters: &[Filter], now: u64) -> usize {
        let chosen = self.select(key, filters, now);
        let mut n = 0;
        for e in chosen {
            // The table, `chosen` and nobody else.
            if Arc::strong_count(&e) > 2 {
                continue;
            }
            if self.shard(&e.key).lock().remove(&e.key) {
                self.used.fetch_sub(1, Ordering::Relaxed);
                n += 1;
            }
        }
        n
    }

    /// The header line of `show table`.
    pub fn head(&self) -> String {
        format!(
            "# table: {}, type: {}, size:{}, used:{}\n",
            self.def.name,
            self.def.key.name(),
            self.def.size,
            self.used()
        )
    }
}

/// An array's elements as HAProxy's `table_dump_entry_to_buffer` prints them: the index after
/// the name's first word (`gpc0=`, `gpt1=`, `gpc0_rate(10000)=`).
fn array_fields(out: &mut String, dt: DataType, period: u64, d: &Data, now: u64) {
    let name = dt.name();
    let (pfx, sfx) = name.find('_').map_or((name, ""), |i| name.split_at(i));
    if dt == DataType::GpcRate {
        for (i, r) in d.gpc_rate.iter().enumerate() {
            let v = r.read(period, now) as u32;
            let _ = write!(out, " {pfx}{i}{sfx}({period})={v}");
        }
        return;
    }
    let vals = if dt == DataType::Gpt { &d.gpt } else { &d.gpc };
    for (i, v) in vals.iter().enumerate() {
        let _ = write!(out, " {pfx}{i}{sfx}={}", *v as u32);
    }
}
