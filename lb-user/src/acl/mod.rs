//! HAProxy's ACLs and sample expressions for `mode tcp`: parse `acl` lines, conditions (`if` /
//! `unless`), sample expressions (`req.ssl_sni,lower,map_str(FILE)`), and evaluate them against
//! one connection's [`Ctx`]. Pure: no I/O at evaluation (parsing reads `-f` and map files
//! through a [`Loader`]); what only the running process knows (server states, connection
//! counts) comes through the [`Env`] trait.
//!
//! - [`value`]: sample values, types and HAProxy's casts.
//! - [`args`]: `keyword(arg,...)` argument lists.
//! - [`fetch`]: the sample fetches, one table entry each ([`fetch::FETCHES`]).
//! - [`conv`]: the converters, one table entry each ([`conv::CONVERTERS`]), maps included.
//! - [`expr`]: a fetch followed by converters, and `%[expr]` in names.
//! - [`pattern`]: matching methods (`-m str|beg|...|ip|int`), patterns and pattern files.
//! - [`cond`]: named and anonymous ACLs, predefined ACLs, conditions and their three-valued
//!   evaluation (pass, fail, "miss": not decidable yet on the bytes received so far).
//! - [`vars`]: variables and their scopes.
//! - `fetch_stick`: the stick-table fetches (`sc0_conn_rate`, `src_get_gpc0`, `sc_tracked(N)`,
//!   `table_cnt`...), answered through [`Env::stick`] by the session's tracked entries
//!   (`crate::session`, `crate::stick`).

pub mod args;
pub mod cond;
pub mod conv;
pub mod expr;
pub mod fetch;
pub mod fetch_stick;
pub mod patref;
pub mod pattern;
pub mod value;
pub mod vars;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;

pub use args::Arg;

/// The load figures fetches read (see [`Env::load`]); `None` names the current proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load<'a> {
    /// `queue([backend])`: connections waiting in the backend's queue.
    Queue(Option<&'a str>),
    /// `avg_queue([backend])`: the queue per usable server (rounded up), twice the queue
    /// without one (HAProxy's rule).
    AvgQueue(Option<&'a str>),
    /// `be_sess_rate([backend])`: sessions per second.
    BeSessRate(Option<&'a str>),
    /// `srv_conn([backend/]server)`: the server's current connections.
    SrvConn(Option<&'a str>, &'a str),
    /// `srv_sess_rate([backend/]server)`: the server's sessions per second.
    SrvSessRate(Option<&'a str>, &'a str),
    /// `fe_conn([frontend])`: the frontend's current connections.
    FeConn(Option<&'a str>),
    /// `fe_sess_rate([frontend])`: the frontend's sessions per second.
    FeSessRate(Option<&'a str>),
}
pub use cond::{AclTable, Cond, Polarity, Test};
pub use expr::{NameFormat, SampleExpr};
pub use value::{Type, Value};
pub use vars::{ProcVars, VarName, Vars};

/// Where in a connection's life an expression is evaluated; each fetch says where it can
/// answer (HAProxy's `SMP_VAL_*` check points, reduced to `mode tcp`'s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Places(u8);

impl Places {
    /// `tcp-request connection`: at accept, addresses only.
    pub const CONNECTION: Places = Places(1);
    /// `tcp-request session`: after the PROXY header.
    pub const SESSION: Places = Places(2);
    /// `tcp-request content`, `use_backend`, `use-server`: with the request's first bytes.
    pub const REQUEST: Places = Places(4);
    /// `tcp-response content`: with the response's first bytes.
    pub const RESPONSE: Places = Places(8);
    pub const ALL: Places = Places(15);
    /// Request-side content only.
    pub const REQ_ONLY: Places = Places(4);
    pub const RES_ONLY: Places = Places(8);
    /// Request or response content.
    pub const CONTENT: Places = Places(12);

    pub fn contains(self, p: Places) -> bool {
        self.0 & p.0 == p.0
    }

    pub fn intersects(self, p: Places) -> bool {
        self.0 & p.0 != 0
    }

    /// How HAProxy names the place in its warnings.
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "tcp-request connection rule",
            2 => "tcp-request session rule",
            4 => "request content",
            8 => "response content",
            _ => "any place",
        }
    }
}

/// The direction whose bytes payload fetches read (`req.*` fetches always read the request;
/// `payload`, `payload_lv` and `req_ssl_hello_type` follow the rule's direction, as in HAProxy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Request,
    Response,
}

/// What the running process knows that a fetch may ask: implemented by the session over its
/// configuration generation, and by tests with fixed answers. A `None` backend means "the
/// current backend" (the frontend before `use_backend` chose one, as HAProxy's `s->be`).
pub trait Env {
    fn frontend_name(&self) -> &str;
    /// The current backend's name (`be_name`).
    fn backend_name(&self) -> &str;
    /// `nbsrv`: usable servers of the backend (`None` when there is no such backend).
    fn nbsrv(&self, backend: Option<&str>) -> Option<i64>;
    /// `srv_is_up`: the server is UP and not in maintenance.
    fn srv_is_up(&self, backend: Option<&str>, server: &str) -> Option<bool>;
    /// `be_conn`: the backend's current sessions.
    fn be_conn(&self, backend: Option<&str>) -> Option<i64>;
    /// `connslots`: free connection and queue slots of the backend's usable servers, or -1
    /// when one of them has no `maxconn` or `maxqueue`.
    fn connslots(&self, backend: Option<&str>) -> Option<i64>;
    /// A load figure of the running process (`queue`, `avg_queue`, `srv_conn`, the session
    /// rates, `fe_conn`); `None` when it names a proxy or server that does not exist.
    fn load(&self, _what: Load<'_>) -> Option<i64> {
        None
    }
    /// `capture.req.hdr(N)`: what `tcp-request content capture` kept in slot N.
    fn capture(&self, _slot: usize) -> Option<&[u8]> {
        None
    }
    /// The client's TLS handshake (`ssl_fc*`), on a TLS bind once it is done.
    fn tls(&self) -> Option<&crate::tls::Facts> {
        None
    }
    /// A stick-table fetch: `what` is its name after the `sc0_`/`sc_`/`src_`/`table_` prefix
    /// (`conn_rate`, `inc_gpc0`, `tracked`...), `table` its optional table argument, `idx`
    /// the array element of `get_gpc`, `inc_gpc`... (0 otherwise). `None`: no sample
    /// (nothing tracked, no such table, data type not stored).
    fn stick(
        &self,
        _which: StickRef,
        _table: Option<&str>,
        _what: &str,
        _idx: usize,
    ) -> Option<Value> {
        None
    }
}

/// Whose stick counters a fetch reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StickRef {
    /// The entry a `track-scN` rule tracks (`sc0_*`, `sc_*(N)`).
    Slot(u8),
    /// The client address's entry (`src_*`).
    Src(std::net::IpAddr),
    /// The table itself (`table_cnt`, `table_avl`).
    Table,
}

/// One connection, as an expression sees it.
pub struct Ctx<'a> {
    /// Where the expression is evaluated.
    pub place: Places,
    /// Which buffer the direction-following payload fetches read.
    pub dir: Dir,
    /// No more bytes will come for the current decision (`inspect-delay` over, buffer full, the
    /// peer closed, or a place that never waits): fetches answer with what is there.
    pub final_: bool,
    /// The request bytes received so far (after any PROXY header).
    pub req: &'a [u8],
    /// The response bytes received so far.
    pub res: &'a [u8],
    /// Whether the stream exists yet (content places): payload fetches answer only then.
    pub stream: bool,
    /// The client and destination addresses (after a PROXY header: the ones it carried).
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub vars: &'a Vars,
    pub env: &'a dyn Env,
    /// `tune.bufsize`: the most bytes a buffer can hold.
    pub bufsize: usize,
}

impl Ctx<'_> {
    /// The bytes of the direction `dir` (for the direction-following fetches).
    pub fn payload(&self, dir: Dir) -> &[u8] {
        match dir {
            Dir::Request => self.req,
            Dir::Response => self.res,
        }
    }
}

/// What a fetch (or a fetch followed by converters) gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fetched {
    /// The values, in order (several for a fetch that iterates, such as `req.ssl_alpn`);
    /// empty when there is no sample.
    pub values: Vec<Value>,
    /// More bytes could change the answer (HAProxy's `SMP_F_MAY_CHANGE`): a rule that can't
    /// decide waits, unless the evaluation is final.
    pub may_change: bool,
}

impl Fetched {
    pub fn one(v: Value) -> Self {
        Self {
            values: vec![v],
            may_change: false,
        }
    }

    /// No sample, and more bytes won't change that.
    pub fn none() -> Self {
        Self::default()
    }

    /// No sample yet: more bytes may give one.
    pub fn wait() -> Self {
        Self {
            values: Vec::new(),
            may_change: true,
        }
    }

    /// A value that more bytes could still change (`req.len`).
    pub fn changing(v: Value) -> Self {
        Self {
            values: vec![v],
            may_change: true,
        }
    }
}

/// Reads the files an ACL (`-f FILE`) or a map converter names, at configuration load.
pub trait Loader {
    fn read(&self, path: &str) -> Result<Vec<u8>, String>;

    /// The reference of pattern file `path` for a user of kind `by` (`two_columns`: a map
    /// file). A configuration's loader shares one per file ([`ConfigLoader`]); this default
    /// reads a fresh one.
    fn file_ref(
        &self,
        path: &str,
        two_columns: bool,
        by: patref::Use,
    ) -> Result<Arc<patref::PatRef>, String> {
        let _ = by;
        Ok(patref::PatRef::from_file(
            path,
            &self.read(path)?,
            two_columns,
        ))
    }

    /// A new reference for an ACL line's own patterns (`kw`: its criterion; `id`: `-u ID`).
    fn inline_ref(&self, kw: &str, id: Option<u32>) -> Result<Arc<patref::PatRef>, String> {
        let _ = (kw, id);
        Ok(patref::PatRef::inline())
    }
}

/// Reads from the file system (relative paths from the working directory, as HAProxy).
pub struct FsLoader;

impl Loader for FsLoader {
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        std::fs::read(path).map_err(|e| {
            let e = e.to_string();
            let e = e.split(" (os error").next().unwrap_or(&e);
            format!("cannot read '{path}': {e}")
        })
    }
}

/// The loader of one configuration: files from the file system, and one pattern reference per
/// file shared by every ACL and map naming it, described by where they are used (the line
/// being parsed, [`ConfigLoader::at`]) for the runtime API.
#[derive(Debug, Default)]
pub struct ConfigLoader {
    refs: RefCell<patref::RefBuilder>,
    place: RefCell<(String, u32)>,
}

impl ConfigLoader {
    /// The configuration line being parsed (`FILE`, `LINE`).
    pub fn at(&self, file: &str, line: u32) {
        let mut p = self.place.borrow_mut();
        p.0.clear();
        p.0.push_str(file);
        p.1 = line;
    }

    /// Every reference made, with its id.
    pub fn finish(self) -> patref::PatRefs {
        self.refs.into_inner().finish()
    }
}

impl Loader for ConfigLoader {
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        FsLoader.read(path)
    }

    fn file_ref(
        &self,
        path: &str,
        two_columns: bool,
        by: patref::Use,
    ) -> Result<Arc<patref::PatRef>, String> {
        let place = self.place.borrow();
        self.refs
            .borrow_mut()
            .file(path, two_columns, by, (&place.0, place.1), || {
                self.read(path)
            })
    }

    fn inline_ref(&self, kw: &str, id: Option<u32>) -> Result<Arc<patref::PatRef>, String> {
        let place = self.place.borrow();
        self.refs.borrow_mut().inline(kw, id, (&place.0, place.1))
    }
}

/// A problem found while parsing that does not stop the configuration from loading.
pub type Warnings = Vec<String>;
