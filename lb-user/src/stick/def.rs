//! What a `stick-table` line defines: key type, size, expiry and the data types it stores,
//! with HAProxy's names and order (`stktable_data_types` in `src/stick_table.c`: `show table`
//! prints them in this order).

use std::fmt;

/// Number of [`DataType`]s.
pub const DATA_TYPES: usize = 25;

/// Most elements of an array data type (`gpc(N)`...: HAProxy's `STKTABLE_MAX_DT_ARRAY_SIZE`).
pub const MAX_ARRAY: usize = 100;

/// A data type a table can store, in HAProxy's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataType {
    ServerId,
    Gpt0,
    Gpc0,
    Gpc0Rate,
    ConnCnt,
    ConnRate,
    ConnCur,
    SessCnt,
    SessRate,
    HttpReqCnt,
    HttpReqRate,
    HttpErrCnt,
    HttpErrRate,
    BytesInCnt,
    BytesInRate,
    BytesOutCnt,
    BytesOutRate,
    Gpc1,
    Gpc1Rate,
    ServerKey,
    HttpFailCnt,
    HttpFailRate,
    /// `gpt(N)`: an array of N tags (HAProxy 2.5+).
    Gpt,
    /// `gpc(N)`: an array of N counters.
    Gpc,
    /// `gpc_rate(N,period)`: the rates of the `gpc` array's counters.
    GpcRate,
}

use DataType as D;

/// Every data type, index order.
pub const ALL: [DataType; DATA_TYPES] = [
    D::ServerId,
    D::Gpt0,
    D::Gpc0,
    D::Gpc0Rate,
    D::ConnCnt,
    D::ConnRate,
    D::ConnCur,
    D::SessCnt,
    D::SessRate,
    D::HttpReqCnt,
    D::HttpReqRate,
    D::HttpErrCnt,
    D::HttpErrRate,
    D::BytesInCnt,
    D::BytesInRate,
    D::BytesOutCnt,
    D::BytesOutRate,
    D::Gpc1,
    D::Gpc1Rate,
    D::ServerKey,
    D::HttpFailCnt,
    D::HttpFailRate,
    D::Gpt,
    D::Gpc,
    D::GpcRate,
];

impl DataType {
    pub fn name(self) -> &'static str {
        match self {
            D::ServerId => "server_id",
            D::Gpt0 => "gpt0",
            D::Gpc0 => "gpc0",
            D::Gpc0Rate => "gpc0_rate",
            D::ConnCnt => "conn_cnt",
            D::ConnRate => "conn_rate",
            D::ConnCur => "conn_cur",
            D::SessCnt => "sess_cnt",
            D::SessRate => "sess_rate",
            D::HttpReqCnt => "http_req_cnt",
            D::HttpReqRate => "http_req_rate",
            D::HttpErrCnt => "http_err_cnt",
            D::HttpErrRate => "http_err_rate",
            D::BytesInCnt => "bytes_in_cnt",
            D::BytesInRate => "bytes_in_rate",
            D::BytesOutCnt => "bytes_out_cnt",
            D::BytesOutRate => "bytes_out_rate",
            D::Gpc1 => "gpc1",
            D::Gpc1Rate => "gpc1_rate",
            D::ServerKey => "server_key",
            D::HttpFailCnt => "http_fail_cnt",
            D::HttpFailRate => "http_fail_rate",
            D::Gpt => "gpt",
            D::Gpc => "gpc",
            D::GpcRate => "gpc_rate",
        }
    }

    pub fn by_name(s: &str) -> Option<DataType> {
        ALL.into_iter().find(|d| d.name() == s)
    }

    /// A rate over a period (written `name(period)`).
    pub fn is_rate(self) -> bool {
        matches!(
            self,
            D::Gpc0Rate
                | D::ConnRate
                | D::SessRate
                | D::HttpReqRate
                | D::HttpErrRate
                | D::BytesInRate
                | D::BytesOutRate
                | D::Gpc1Rate
                | D::HttpFailRate
                | D::GpcRate
        )
    }

    /// An array (`store gpc(N)`): its first argument is the element count.
    pub fn is_array(self) -> bool {
        matches!(self, D::Gpt | D::Gpc | D::GpcRate)
    }

    /// 64-bit counters (printed unsigned 64).
    pub fn is_ull(self) -> bool {
        matches!(self, D::BytesInCnt | D::BytesOutCnt)
    }

    /// The rate that moves with this counter.
    pub fn rate(self) -> Option<DataType> {
        Some(match self {
            D::Gpc0 => D::Gpc0Rate,
            D::ConnCnt => D::ConnRate,
            D::SessCnt => D::SessRate,
            D::HttpReqCnt => D::HttpReqRate,
            D::HttpErrCnt => D::HttpErrRate,
            D::BytesInCnt => D::BytesInRate,
            D::BytesOutCnt => D::BytesOutRate,
            D::Gpc1 => D::Gpc1Rate,
            D::HttpFailCnt => D::HttpFailRate,
            D::Gpc => D::GpcRate,
            _ => return None,
        })
    }
}

/// Element counts of the array data types a table stores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Arrays {
    pub gpt: usize,
    pub gpc: usize,
    pub gpc_rate: usize,
}

/// `type ip|ipv6|integer|string|binary`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    Ip,
    Ipv6,
    Integer,
    String,
    Binary,
}

impl KeyType {
    pub fn parse(s: &str) -> Option<KeyType> {
        Some(match s {
            "ip" => KeyType::Ip,
            "ipv6" => KeyType::Ipv6,
            "integer" => KeyType::Integer,
            "string" => KeyType::String,
            "binary" => KeyType::Binary,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyType::Ip => "ip",
            KeyType::Ipv6 => "ipv6",
            KeyType::Integer => "integer",
            KeyType::String => "string",
            KeyType::Binary => "binary",
        }
    }
}

/// One `stick-table` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDef {
    /// The proxy's name, or `stick-table ... table NAME`... (HAProxy: the section's name).
    pub name: String,
    pub key: KeyType,
    /// `len`: key bytes of `string`/`binary` tables (default 32).
    pub key_len: usize,
    /// `size`: most entries.
    pub size: u64,
    /// `expire`, in ms (`None`: entries never expire, only get evicted).
    pub expire: Option<u64>,
    /// Stored data types, each with its period in ms for rates (0 otherwise), index order.
    pub store: Vec<(DataType, u64)>,
    /// Element counts of the stored arrays (`gpt`, `gpc`, `gpc_rate`; 0: not stored).
    pub arrays: Arrays,
    /// `peers NAME` (parsed; lb does not sync).
    pub peers: Option<String>,
    /// `nopurge`: a full table refuses new entries instead of evicting.
    pub nopurge: bool,
}

impl TableDef {
    /// Whether `dt` is stored.
    pub fn stores(&self, dt: DataType) -> bool {
        self.store.iter().any(|(d, _)| *d == dt)
    }

    /// `Some(period)` when `dt` is stored (0 for non-rates).
    pub fn period(&self, dt: DataType) -> Option<u64> {
        self.store.iter().find(|(d, _)| *d == dt).map(|(_, p)| *p)
    }

    /// How many elements of `dt` an entry holds: the array's size, 1 for a stored scalar, 0
    /// when not stored.
    pub fn len(&self, dt: DataType) -> usize {
        match dt {
            D::Gpt => self.arrays.gpt,
            D::Gpc => self.arrays.gpc,
            D::GpcRate => self.arrays.gpc_rate,
            _ => usize::from(self.stores(dt)),
        }
    }

    /// Where the counter a fetch or action names lives (HAProxy 2.6's `stktable_data_ptr`
    /// then `stktable_data_ptr_idx` fallback): `gpc0`, `gpc1`, `gpt0` and their rates are
    /// the array's elements 0 and 1 when the table stores the array instead; `(dt, idx)` of
    /// an array when `idx` is in range. `None`: not stored.
    pub fn cell(&self, dt: DataType, idx: usize) -> Option<(DataType, usize)> {
        let fallback = match dt {
            D::Gpt0 => Some((D::Gpt, 0)),
            D::Gpc0 => Some((D::Gpc, 0)),
            D::Gpc1 => Some((D::Gpc, 1)),
            D::Gpc0Rate => Some((D::GpcRate, 0)),
            D::Gpc1Rate => Some((D::GpcRate, 1)),
            _ => None,
        };
        if dt.is_array() {
            return (idx < self.len(dt)).then_some((dt, idx));
        }
        if self.stores(dt) {
            return Some((dt, 0));
        }
        fallback.filter(|(a, i)| *i < self.len(*a))
    }

    pub fn stored(&self) -> impl Iterator<Item = (DataType, u64)> + '_ {
        self.store.iter().copied()
    }

    /// Adds `dt` (kept in index order) if missing: stick rules need `server_id`/`server_key`.
    pub fn ensure(&mut self, dt: DataType) {
        if !self.stores(dt) {
            self.store.push((dt, 0));
            self.store.sort_by_key(|(d, _)| *d as usize);
        }
    }
}

impl fmt::Display for TableDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, size {})", self.name, self.key.name(), self.size)
    }
}
