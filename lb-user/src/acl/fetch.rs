//! The sample fetches lb answers in `mode tcp`, one [`FetchDef`] each in [`FETCHES`], with
//! HAProxy's names (old underscore spellings included), argument lists, output types and the
//! places they answer in (`src/tcp_sample.c`, `src/payload.c`, `src/backend.c`,
//! `src/sample.c`). Names lb knows but does not serve (stick tables, client certificates, HTTP) are
//! recognised by [`lookup`], so a configuration using them loads with a warning.

use std::net::IpAddr;

use super::args::{Arg, ArgSpec, ArgType};
use super::{Ctx, Fetched, Load, Places, Type, Value};
use crate::tls_hello::{self, Probe};

/// One sample fetch.
pub struct FetchDef {
    pub name: &'static str,
    pub args: ArgSpec,
    pub out: Type,
    /// Where it can answer; elsewhere it gives no sample (and a rule using it is warned about).
    pub places: Places,
    pub eval: fn(&Ctx<'_>, &[Arg]) -> Fetched,
}

pub(super) const fn def(
    name: &'static str,
    args: ArgSpec,
    out: Type,
    places: Places,
    eval: fn(&Ctx<'_>, &[Arg]) -> Fetched,
) -> FetchDef {
    FetchDef {
        name,
        args,
        out,
        places,
        eval,
    }
}

const NONE: ArgSpec = ArgSpec::NONE;
const INT: ArgSpec = ArgSpec {
    types: &[ArgType::Int],
    min: 1,
};
const STR: ArgSpec = ArgSpec {
    types: &[ArgType::Str],
    min: 1,
};
const OPT_STR: ArgSpec = ArgSpec {
    types: &[ArgType::Str],
    min: 0,
};
const OPT_BACKEND: ArgSpec = ArgSpec {
    types: &[ArgType::Backend],
    min: 0,
};
const SERVER: ArgSpec = ArgSpec {
    types: &[ArgType::Server],
    min: 1,
};
const OPT_FRONTEND: ArgSpec = ArgSpec {
    types: &[ArgType::Frontend],
    min: 0,
};
const OFFSET_LEN: ArgSpec = ArgSpec {
    types: &[ArgType::Int, ArgType::Int],
    min: 2,
};
const PAYLOAD_LV: ArgSpec = ArgSpec {
    types: &[ArgType::Int, ArgType::Int, ArgType::Str],
    min: 2,
};
const VAR: ArgSpec = ArgSpec {
    types: &[ArgType::Var, ArgType::Str],
    min: 1,
};

use Places as P;
use Type as T;

/// Every fetch lb answers. The order is the order of "did you mean" candidates.
pub static FETCHES: &[FetchDef] = &[
    // Connection.
    def("src", NONE, T::Addr, P::ALL, |c, _| {
        Fetched::one(Value::Addr(c.src.ip()))
    }),
    def("src_port", NONE, T::Int, P::ALL, |c, _| {
        Fetched::one(Value::Int(i64::from(c.src.port())))
    }),
    def("dst", NONE, T::Addr, P::ALL, |c, _| {
        Fetched::one(Value::Addr(c.dst.ip()))
    }),
    def("dst_port", NONE, T::Int, P::ALL, |c, _| {
        Fetched::one(Value::Int(i64::from(c.dst.port())))
    }),
    def("src_is_local", NONE, T::Bool, P::ALL, |c, _| {
        Fetched::one(Value::Bool(is_local(c.src.ip())))
    }),
    def("dst_is_local", NONE, T::Bool, P::ALL, |c, _| {
        Fetched::one(Value::Bool(is_local(c.dst.ip())))
    }),
    // Proxies and servers.
    def("fe_name", NONE, T::Str, P::ALL, |c, _| {
        Fetched::one(Value::str(c.env.frontend_name()))
    }),
    def("be_name", NONE, T::Str, P::CONTENT, |c, _| {
        Fetched::one(Value::str(c.env.backend_name()))
    }),
    // What `tcp-request content capture` kept in slot N (HAProxy reads `req_cap[N]` in any
    // mode; in TCP mode a log-format is where it is shown).
    def("capture.req.hdr", INT, T::Str, P::CONTENT, |c, a| {
        let slot = usize::try_from(a.first().map_or(-1, Arg::int)).ok();
        opt(slot
            .and_then(|i| c.env.capture(i))
            .map(|v| Value::str(v.to_vec())))
    }),
    def("nbsrv", OPT_BACKEND, T::Int, P::ALL, |c, a| {
        opt(c.env.nbsrv(backend_arg(a)).map(Value::Int))
    }),
    def("srv_is_up", SERVER, T::Bool, P::ALL, |c, a| {
        match a.first() {
            Some(Arg::Server { backend, server }) => {
                opt(c.env.srv_is_up(backend.as_deref(), server).map(Value::Bool))
            }
            _ => Fetched::none(),
        }
    }),
    def("be_conn", OPT_BACKEND, T::Int, P::ALL, |c, a| {
        opt(c.env.be_conn(backend_arg(a)).map(Value::Int))
    }),
    def("connslots", OPT_BACKEND, T::Int, P::ALL, |c, a| {
        opt(c.env.connslots(backend_arg(a)).map(Value::Int))
    }),
    def("queue", OPT_BACKEND, T::Int, P::ALL, |c, a| {
        load(c, Load::Queue(backend_arg(a)))
    }),
    def("avg_queue", OPT_BACKEND, T::Int, P::ALL, |c, a| {
        load(c, Load::AvgQueue(backend_arg(a)))
    }),
    def("be_sess_rate", OPT_BACKEND, T::Int, P::ALL, |c, a| {
        load(c, Load::BeSessRate(backend_arg(a)))
    }),
    def("srv_conn", SERVER, T::Int, P::ALL, |c, a| match a.first() {
        Some(Arg::Server { backend, server }) => load(c, Load::SrvConn(backend.as_deref(), server)),
        _ => Fetched::none(),
    }),
    def("srv_sess_rate", SERVER, T::Int, P::ALL, |c, a| {
        match a.first() {
            Some(Arg::Server { backend, server }) => {
                load(c, Load::SrvSessRate(backend.as_deref(), server))
            }
            _ => Fetched::none(),
        }
    }),
    def("fe_conn", OPT_FRONTEND, T::Int, P::ALL, |c, a| {
        load(c, Load::FeConn(frontend_arg(a)))
    }),
    def("fe_sess_rate", OPT_FRONTEND, T::Int, P::ALL, |c, a| {
        load(c, Load::FeSessRate(frontend_arg(a)))
    }),
    // Constants, variables, environment.
    def("always_true", NONE, T::Bool, P::ALL, |_, _| {
        Fetched::one(Value::Bool(true))
    }),
    def("always_false", NONE, T::Bool, P::ALL, |_, _| {
        Fetched::one(Value::Bool(false))
    }),
    def("int", INT, T::Int, P::ALL, |_, a| {
        Fetched::one(Value::Int(a[0].int()))
    }),
    def("str", STR, T::Str, P::ALL, |_, a| {
        Fetched::one(Value::str(a[0].str()))
    }),
    def("bool", INT, T::Bool, P::ALL, |_, a| {
        Fetched::one(Value::Bool(a[0].int() != 0))
    }),
    def("env", STR, T::Str, P::ALL, |_, a| {
        opt(std::env::var(a[0].str()).ok().map(Value::str))
    }),
    def("var", VAR, T::Any, P::ALL, |c, a| {
        let got = match a.first() {
            Some(Arg::Var(Some(v))) => c.vars.get(v),
            _ => None,
        };
        opt(got.or_else(|| a.get(1).map(|d| Value::str(d.str()))))
    }),
    def("wait_end", NONE, T::Bool, P::ALL, |c, _| {
        if c.final_ {
            Fetched::one(Value::Bool(true))
        } else {
            Fetched::wait()
        }
    }),
    // The client's TLS handshake, on a TLS bind (`ssl_fc` is false elsewhere; the others
    // give no sample).
    def("ssl_fc", NONE, T::Bool, P::ALL, |c, _| {
        Fetched::one(Value::Bool(c.env.tls().is_some()))
    }),
    def("ssl_fc_has_sni", NONE, T::Bool, P::ALL, |c, _| {
        opt(c.env.tls().map(|t| Value::Bool(t.sni.is_some())))
    }),
    def("ssl_fc_sni", NONE, T::Str, P::ALL, |c, _| {
        opt(c.env.tls().and_then(|t| t.sni.as_deref()).map(Value::str))
    }),
    def("ssl_fc_alpn", NONE, T::Str, P::ALL, |c, _| {
        opt(c.env.tls().and_then(|t| t.alpn.as_deref()).map(Value::str))
    }),
    def("ssl_fc_protocol", NONE, T::Str, P::ALL, |c, _| {
        opt(c.env.tls().map(|t| Value::str(t.version)))
    }),
    def("ssl_fc_cipher", NONE, T::Str, P::ALL, |c, _| {
        opt(c.env.tls().map(|t| Value::str(t.cipher)))
    }),
    // Request and response contents.
    def("req.len", NONE, T::Int, P::REQ_ONLY, len),
    def("req_len", NONE, T::Int, P::REQ_ONLY, len),
    def("res.len", NONE, T::Int, P::RES_ONLY, len),
    def("req.payload", OFFSET_LEN, T::Bin, P::REQ_ONLY, payload),
    def("res.payload", OFFSET_LEN, T::Bin, P::RES_ONLY, payload),
    def("payload", OFFSET_LEN, T::Bin, P::CONTENT, payload),
    def(
        "req.payload_lv",
        PAYLOAD_LV,
        T::Bin,
        P::REQ_ONLY,
        payload_lv,
    ),
    def(
        "res.payload_lv",
        PAYLOAD_LV,
        T::Bin,
        P::RES_ONLY,
        payload_lv,
    ),
    def("payload_lv", PAYLOAD_LV, T::Bin, P::CONTENT, payload_lv),
    def("req.ssl_hello_type", NONE, T::Int, P::REQ_ONLY, hello_type),
    def("req_ssl_hello_type", NONE, T::Int, P::REQ_ONLY, hello_type),
    def("res.ssl_hello_type", NONE, T::Int, P::RES_ONLY, hello_type),
    def("rep_ssl_hello_type", NONE, T::Int, P::RES_ONLY, hello_type),
    def("req.ssl_sni", NONE, T::Str, P::REQ_ONLY, sni),
    def("req_ssl_sni", NONE, T::Str, P::REQ_ONLY, sni),
    def("req.ssl_alpn", NONE, T::Str, P::REQ_ONLY, alpn),
    def("req.ssl_ver", NONE, T::Int, P::REQ_ONLY, ssl_ver),
    def("req_ssl_ver", NONE, T::Int, P::REQ_ONLY, ssl_ver),
    def("req.ssl_ec_ext", NONE, T::Bool, P::REQ_ONLY, |c, _| {
        hello_field(c, |h| Some(Value::Bool(h.ext_types.contains(&10))))
    }),
    def("req.ssl_st_ext", NONE, T::Int, P::REQ_ONLY, |c, _| {
        hello_field(c, |h| {
            Some(Value::Int(
                h.session_ticket.map_or(0, |n| 1 + i64::from(n > 0)),
            ))
        })
    }),
    def("req.proto_http", NONE, T::Bool, P::REQ_ONLY, proto_http),
    def("req_proto_http", NONE, T::Bool, P::REQ_ONLY, proto_http),
    def("req.rdp_cookie", OPT_STR, T::Str, P::REQ_ONLY, rdp_cookie),
    def("rdp_cookie", OPT_STR, T::Str, P::REQ_ONLY, rdp_cookie),
    def("req_rdp_cookie", OPT_STR, T::Str, P::REQ_ONLY, rdp_cookie),
    def(
        "req.rdp_cookie_cnt",
        OPT_STR,
        T::Int,
        P::REQ_ONLY,
        rdp_cookie_cnt,
    ),
    def(
        "rdp_cookie_cnt",
        OPT_STR,
        T::Int,
        P::REQ_ONLY,
        rdp_cookie_cnt,
    ),
    def(
        "req_rdp_cookie_cnt",
        OPT_STR,
        T::Int,
        P::REQ_ONLY,
        rdp_cookie_cnt,
    ),
];

/// What a fetch name is.
pub enum Lookup {
    Found(&'static FetchDef),
    /// A HAProxy fetch lb does not serve: why (the warning), and it never answers.
    Never(&'static str),
    Unknown,
}

/// Finds the fetch called `name`.
pub fn lookup(name: &str) -> Lookup {
    if let Some(f) = FETCHES
        .iter()
        .chain(super::fetch_stick::STICK_FETCHES)
        .find(|f| f.name == name)
    {
        return Lookup::Found(f);
    }
    if stick_table_name(name) {
        return Lookup::Never(
            "is a stick-table fetch lb does not serve (e.g. one added after HAProxy 2.6); it \
             never matches",
        );
    }
    if name.starts_with("ssl_") {
        return Lookup::Never(
            "is a TLS fetch lb does not serve (it serves ssl_fc, ssl_fc_sni, ssl_fc_has_sni, \
             ssl_fc_alpn, ssl_fc_protocol and ssl_fc_cipher); it never matches",
        );
    }
    if http_name(name) {
        return Lookup::Never("is HTTP-only; it never matches in mode tcp");
    }
    Lookup::Unknown
}

/// Stick-table fetches: `sc_*`, `sc0_*`..`sc2_*`, `src_*` counters, `table_*`.
pub fn stick_table_name(name: &str) -> bool {
    name.starts_with("sc_")
        || name.starts_with("sc0_")
        || name.starts_with("sc1_")
        || name.starts_with("sc2_")
        || name.starts_with("table_")
        || (name.starts_with("src_") && !matches!(name, "src_port" | "src_is_local"))
}

/// HTTP fetches (the families HAProxy's `http_fetch.c` defines).
fn http_name(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "req.hdr",
        "req.fhdr",
        "req.cook",
        "req.body",
        "req.ver",
        "req.uri",
        "req.timer",
        "res.hdr",
        "res.fhdr",
        "res.cook",
        "res.ver",
        "res.body",
        "hdr",
        "shdr",
        "fhdr",
        "cook",
        "scook",
        "path",
        "url",
        "base",
        "query",
        "method",
        "status",
        "http_",
        "capture.",
        "urlp",
        "req.body",
        "unique-id",
        "set-cookie",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
}

fn opt(v: Option<Value>) -> Fetched {
    v.map_or_else(Fetched::none, Fetched::one)
}

fn backend_arg(a: &[Arg]) -> Option<&str> {
    match a.first() {
        Some(Arg::Backend(b)) => Some(b),
        _ => None,
    }
}

fn frontend_arg(a: &[Arg]) -> Option<&str> {
    match a.first() {
        Some(Arg::Frontend(f)) => Some(f),
        _ => None,
    }
}

fn load(c: &Ctx<'_>, what: Load<'_>) -> Fetched {
    opt(c.env.load(what).map(Value::Int))
}

/// `127.0.0.0/8`, `::1`: HAProxy's `src_is_local` asks the kernel whether the address is one of
/// the host's; loopback is what that means on a single-address test host.
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.to_canonical().is_loopback()
}

/// The bytes a content fetch reads, or `None` before the stream exists.
fn bytes<'a>(c: &'a Ctx<'_>) -> Option<&'a [u8]> {
    c.stream.then(|| c.payload(c.dir))
}

fn len(c: &Ctx<'_>, _: &[Arg]) -> Fetched {
    match bytes(c) {
        Some(b) => Fetched::changing(Value::Int(b.len() as i64)),
        None => Fetched::none(),
    }
}

/// `payload(offset,length)`: `length` 0 means "whatever is there from `offset`".
fn payload(c: &Ctx<'_>, a: &[Arg]) -> Fetched {
    let Some(b) = bytes(c) else {
        return Fetched::none();
    };
    let (Ok(off), Ok(len)) = (usize::try_from(a[0].int()), usize::try_from(a[1].int())) else {
        return Fetched::none();
    };
    if len > c.bufsize || off.saturating_add(len) > c.bufsize {
        // Can never be in the buffer.
        return Fetched::none();
    }
    if len == 0 {
        // HAProxy: the rest of the buffer, which may still grow.
        return match b.get(off..) {
            Some(rest) => Fetched::changing(Value::Bin(rest.to_vec())),
            None => Fetched::wait(),
        };
    }
    match b.get(off..off + len) {
        Some(s) => Fetched::one(Value::Bin(s.to_vec())),
        None => Fetched::wait(),
    }
}

/// `payload_lv(len_offset,len_size[,buf_offset])`: a length field, then that many bytes at
/// `buf_offset` (absolute, or relative to the end of the length field when written `+N`/`-N`).
fn payload_lv(c: &Ctx<'_>, a: &[Arg]) -> Fetched {
    let Some(b) = bytes(c) else {
        return Fetched::none();
    };
    let (Ok(len_off), Ok(len_size)) = (usize::try_from(a[0].int()), usize::try_from(a[1].int()))
    else {
        return Fetched::none();
    };
    if len_size > 8 {
        return Fetched::none();
    }
    let Some(field) = b.get(len_off..len_off + len_size) else {
        return Fetched::wait();
    };
    let size = field.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
    let Some(offset) = a
        .get(2)
        .map_or(Some(len_off as i64 + len_size as i64), |o| {
            buf_offset(o.str(), (len_off + len_size) as i64)
        })
    else {
        return Fetched::none();
    };
    let (Ok(off), Ok(size)) = (usize::try_from(offset), usize::try_from(size)) else {
        return Fetched::none();
    };
    if size == 0 || size > c.bufsize || off.saturating_add(size) > c.bufsize {
        return Fetched::none();
    }
    match b.get(off..off + size) {
        Some(s) => Fetched::one(Value::Bin(s.to_vec())),
        None => Fetched::wait(),
    }
}

/// `payload_lv`'s third argument: `N` absolute, `+N`/`-N` relative to `base`.
fn buf_offset(s: &str, base: i64) -> Option<i64> {
    let s = s.trim();
    if let Some(r) = s.strip_prefix('+') {
        return Some(base + r.parse::<i64>().ok()?);
    }
    if let Some(r) = s.strip_prefix('-') {
        return Some(base - r.parse::<i64>().ok()?);
    }
    s.parse().ok()
}

/// Checks `payload_lv`'s third argument at load.
pub fn check_buf_offset(s: &str) -> Result<(), String> {
    buf_offset(s, 0)
        .map(|_| ())
        .ok_or_else(|| format!("'{s}' is not an offset (N, +N or -N)"))
}

fn probe<T>(p: Probe<T>, f: impl FnOnce(T) -> Option<Value>) -> Fetched {
    match p {
        Probe::Found(t) => f(t).map_or_else(Fetched::none, Fetched::one),
        Probe::NeedMore => Fetched::wait(),
        Probe::Not => Fetched::none(),
    }
}

fn hello_type(c: &Ctx<'_>, _: &[Arg]) -> Fetched {
    match bytes(c) {
        Some(b) => probe(tls_hello::hello_type(b), |t| Some(Value::Int(i64::from(t)))),
        None => Fetched::none(),
    }
}

fn hello_field(c: &Ctx<'_>, f: impl FnOnce(tls_hello::ClientHello) -> Option<Value>) -> Fetched {
    match bytes(c) {
        Some(b) => probe(tls_hello::client_hello(b), f),
        None => Fetched::none(),
    }
}

fn sni(c: &Ctx<'_>, _: &[Arg]) -> Fetched {
    hello_field(c, |h| h.sni.map(Value::Str))
}

/// Every ALPN name, in the client's order (HAProxy iterates over them).
fn alpn(c: &Ctx<'_>, _: &[Arg]) -> Fetched {
    let Some(b) = bytes(c) else {
        return Fetched::none();
    };
    match tls_hello::client_hello(b) {
        Probe::Found(h) => Fetched {
            values: h.alpn.into_iter().map(Value::Str).collect(),
            may_change: false,
        },
        Probe::NeedMore => Fetched::wait(),
        Probe::Not => Fetched::none(),
    }
}

fn ssl_ver(c: &Ctx<'_>, _: &[Arg]) -> Fetched {
    match bytes(c) {
        Some(b) => probe(tls_hello::ssl_version(b, c.bufsize), |v| {
            Some(Value::Int(i64::from(v)))
        }),
        None => Fetched::none(),
    }
}

/// `req.proto_http`: the bytes start with a complete, valid HTTP/1 request head.
fn proto_http(c: &Ctx<'_>, _: &[Arg]) -> Fetched {
    let Some(b) = bytes(c) else {
        return Fetched::none();
    };
    match http_request_head(b) {
        Probe::Found(()) => Fetched::one(Value::Bool(true)),
        Probe::NeedMore => Fetched::wait(),
        Probe::Not => Fetched::one(Value::Bool(false)),
    }
}

/// Checks an HTTP/1 request head: `METHOD SP TARGET SP HTTP/x.y CRLF`, header lines `name:
/// value`, an empty line.
pub fn http_request_head(b: &[u8]) -> Probe<()> {
    let is_tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    // Request line.
    let method_end = b.iter().position(|&c| !is_tchar(c));
    let Some(m) = method_end else {
        return Probe::NeedMore;
    };
    if m == 0 || b[m] != b' ' {
        return Probe::Not;
    }
    let rest = &b[m + 1..];
    let Some(sp) = rest
        .iter()
        .position(|&c| c == b' ' || c < 0x21 || c == 0x7f)
    else {
        return Probe::NeedMore;
    };
    if sp == 0 || rest[sp] != b' ' {
        return Probe::Not;
    }
    let rest = &rest[sp + 1..];
    let want = b"HTTP/";
    let n = rest.len().min(8);
    if rest[..n.min(5)] != want[..n.min(5)] {
        return Probe::Not;
    }
    if rest.len() < 10 {
        return Probe::NeedMore;
    }
    if !(rest[5].is_ascii_digit() && rest[6] == b'.' && rest[7].is_ascii_digit())
        || &rest[8..10] != b"\r\n"
    {
        return Probe::Not;
    }
    // Header lines.
    let mut rest = &rest[10..];
    loop {
        if rest.len() < 2 {
            return if rest.is_empty() || rest == b"\r" {
                Probe::NeedMore
            } else {
                header_start(rest)
            };
        }
        if &rest[..2] == b"\r\n" {
            return Probe::Found(());
        }
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return header_start(rest);
        };
        let line = &rest[..eol];
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            return Probe::Not;
        };
        if colon == 0 || !line[..colon].iter().all(|&c| is_tchar(c)) {
            return Probe::Not;
        }
        rest = &rest[eol + 2..];
    }
}

/// An incomplete header line: more may make it valid unless its name is already bad.
fn header_start(rest: &[u8]) -> Probe<()> {
    let is_tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    let name_end = rest.iter().position(|&c| c == b':').unwrap_or(rest.len());
    if rest[..name_end].iter().all(|&c| is_tchar(c)) && !rest.contains(&b'\n') {
        Probe::NeedMore
    } else {
        Probe::Not
    }
}

/// `rdp_cookie([name])`: the value of `Cookie: name=value` in an RDP connection request (which
/// starts 11 bytes in), or of any cookie without a name.
fn rdp_cookie_value<'a>(b: &'a [u8], name: &str) -> Probe<&'a [u8]> {
    if b.len() <= 11 {
        return Probe::NeedMore;
    }
    let d = &b[11..];
    if d.len() <= 7 {
        return Probe::NeedMore;
    }
    if !d[..7].eq_ignore_ascii_case(b"Cookie:") {
        return Probe::Not;
    }
    let mut d = &d[7..];
    while d.first() == Some(&b' ') {
        d = &d[1..];
    }
    if name.is_empty() {
        let Some(eq) = d
            .iter()
            .position(|&c| c == b'=' || c == b'\r' || c == b'\n')
        else {
            return Probe::NeedMore;
        };
        if d[eq] != b'=' {
            return Probe::Not;
        }
        d = &d[eq + 1..];
    } else {
        let n = name.len();
        if d.len() <= n {
            return Probe::NeedMore;
        }
        if d[n] != b'=' || !d[..n].eq_ignore_ascii_case(name.as_bytes()) {
            return Probe::Not;
        }
        d = &d[n + 1..];
    }
    let Some(end) = d.iter().position(|&c| c == b'\r') else {
        return Probe::NeedMore;
    };
    if d.len() < end + 2 {
        return Probe::NeedMore;
    }
    if d[end + 1] != b'\n' {
        return Probe::Not;
    }
    Probe::Found(&d[..end])
}

/// The value of RDP cookie `name` in a connection request's first bytes, once they hold it
/// whole (`persist rdp-cookie`, which decides on the bytes there: HAProxy's
/// `tcp_persist_rdp_cookie` takes a value that may still change as none).
pub fn rdp_cookie_in<'a>(head: &'a [u8], name: &str) -> Option<&'a [u8]> {
    match rdp_cookie_value(head, name) {
        Probe::Found(v) => Some(v),
        _ => None,
    }
}

fn rdp_cookie(c: &Ctx<'_>, a: &[Arg]) -> Fetched {
    let Some(b) = bytes(c) else {
        return Fetched::none();
    };
    let name = a.first().map_or("", Arg::str);
    probe(rdp_cookie_value(b, name), |v| Some(Value::str(v)))
}

fn rdp_cookie_cnt(c: &Ctx<'_>, a: &[Arg]) -> Fetched {
    let Some(b) = bytes(c) else {
        return Fetched::none();
    };
    let name = a.first().map_or("", Arg::str);
    match rdp_cookie_value(b, name) {
        Probe::NeedMore => Fetched::wait(),
        p => Fetched::one(Value::Int(i64::from(matches!(p, Probe::Found(_))))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_request_heads() {
        assert_eq!(
            http_request_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Probe::Found(())
        );
        assert_eq!(
            http_request_head(b"GET / HTTP/1.1\r\nHost: a\r\n"),
            Probe::NeedMore
        );
        assert_eq!(http_request_head(b"GET / HTTP/1.1\r\nHo"), Probe::NeedMore);
        assert_eq!(http_request_head(b"GET / HTT"), Probe::NeedMore);
        assert_eq!(http_request_head(b"GET"), Probe::NeedMore);
        assert_eq!(http_request_head(b"\x16\x03\x01"), Probe::Not);
        assert_eq!(http_request_head(b"GET / FTP/1.0\r\n\r\n"), Probe::Not);
        assert_eq!(
            http_request_head(b"GET / HTTP/1.1\r\nbad line\r\n\r\n"),
            Probe::Not
        );
        assert_eq!(http_request_head(b"SSH-2.0-OpenSSH\r\n"), Probe::Not);
    }

    #[test]
    fn rdp_cookies() {
        let req = b"\x03\x00\x00\x2a\x25\xe0\x00\x00\x00\x00\x00Cookie: mstshash=alice\r\n";
        assert_eq!(
            rdp_cookie_value(req, "mstshash"),
            Probe::Found(&b"alice"[..])
        );
        assert_eq!(rdp_cookie_value(req, ""), Probe::Found(&b"alice"[..]));
        assert_eq!(rdp_cookie_value(req, "other"), Probe::Not);
        assert_eq!(rdp_cookie_value(&req[..30], "mstshash"), Probe::NeedMore);
    }

    #[test]
    fn every_fetch_name_is_unique_and_unknown_ones_are_classified() {
        let all: Vec<&FetchDef> = FETCHES
            .iter()
            .chain(super::super::fetch_stick::STICK_FETCHES)
            .collect();
        for (i, f) in all.iter().enumerate() {
            assert!(
                all[..i].iter().all(|g| g.name != f.name),
                "{} twice",
                f.name
            );
        }
        assert!(matches!(lookup("sc0_conn_rate"), Lookup::Found(_)));
        assert!(matches!(lookup("src_conn_rate"), Lookup::Found(_)));
        assert!(matches!(lookup("sc_get_gpc"), Lookup::Found(_)));
        assert!(matches!(lookup("src_inc_gpc"), Lookup::Found(_)));
        assert!(matches!(lookup("sc_glitch_cnt"), Lookup::Never(_)));
        assert!(matches!(lookup("src_port"), Lookup::Found(_)));
        assert!(matches!(lookup("hdr"), Lookup::Never(_)));
        assert!(matches!(lookup("ssl_fc_sni"), Lookup::Found(_)));
        assert!(matches!(lookup("ssl_c_s_dn"), Lookup::Never(_)));
        assert!(matches!(lookup("req.ssl_snii"), Lookup::Unknown));
    }
}
