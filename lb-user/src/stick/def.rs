//! What a `stick-table` line defines: key type, size, expiry and the data types it stores,
//! with HAProxy's names and order (`stktable_data_types` in `src/stick_table.c`: `show table`
//! prints them in this order).

use std::fmt;

/// Number of [`DataType`]s.
pub const DATA_TYPES: usize = 22;

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
        )
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
            _ => return None,
        })
    }
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
