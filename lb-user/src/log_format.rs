//! HAProxy's `log-format` strings (`src/log.c`, 2.6): parsed once at load time into text,
//! separators, `%alias` variables with their `%{+Q,+X,...}` flags and `%[sample]` expressions;
//! rendered per session from a [`Data`]. `option tcplog` is [`TCPLOG`], the same machinery.
//!
//! As in HAProxy: spaces merge into one (a leading space is dropped), an absent value prints `-`
//! (`"" ` with `+Q`), unknown variables and HTTP-only ones are errors at load time, unknown
//! flags are ignored, and a `%` before a character that can't start a variable is dropped.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use crate::acl::{Loader, Places, SampleExpr, Warnings};

/// HAProxy's `option tcplog` format (`default_tcp_log_format`).
pub const TCPLOG: &str = "%ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq";

/// `option tcplog`'s format, parsed once.
pub fn tcplog() -> Arc<LogFormat> {
    static TCPLOG_FORMAT: OnceLock<Arc<LogFormat>> = OnceLock::new();
    Arc::clone(TCPLOG_FORMAT.get_or_init(|| Arc::new(LogFormat::tcplog())))
}

/// A variable of a log-format string (HAProxy's `logformat_keywords`, those of TCP mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alias {
    /// `%o`: sets the default flags of the variables after it; prints nothing.
    Options,
    ClientIp,
    ClientPort,
    FrontendIp,
    FrontendPort,
    BackendIp,
    BackendPort,
    ServerIp,
    ServerPort,
    /// `%t`: accept date, local, with milliseconds.
    Date,
    /// `%T`: accept date, GMT.
    DateGmt,
    /// `%Tl`: accept date, local, with its offset.
    DateLocal,
    /// `%Ts`: accept date, seconds since the epoch.
    Timestamp,
    /// `%ms`: accept date's milliseconds.
    Millis,
    Frontend,
    /// `%ft`: the frontend's name (with `~` after it for a TLS bind; lb terminates none).
    FrontendXprt,
    Backend,
    Server,
    Handshake,
    Queue,
    Connect,
    /// `%Td`: data transfer time (`Tt - Tw - Tc`).
    Data,
    Total,
    /// `%Tu`: total time as the user sees it (`Tt - Ti`; `Ti` is 0 in TCP).
    User,
    BytesOut,
    BytesIn,
    TermState,
    /// `%tsc`: `%ts` and the two cookie characters (`--` in TCP).
    TermStateCookie,
    ActConn,
    FeConn,
    BeConn,
    SrvConn,
    Retries,
    SrvQueue,
    BackendQueue,
    /// `%rt`: the session's unique counter.
    Counter,
    /// `%lc`: the frontend's log counter.
    LogCount,
    Pid,
    Hostname,
    /// `%ID`: the unique id (`unique-id-format`, which lb does not set: `-`).
    UniqueId,
    /// `%ST`: the HTTP status (0 in TCP).
    Status,
    /// `%hr`: the captures as `{a|b}`.
    Captures,
    /// `%hrl`: the captures, space separated.
    CaptureList,
    /// `%hs`, `%hsl`: response captures (none in TCP: nothing).
    ResCaptures,
    ResCaptureList,
    /// `%sslc`, `%sslv`: the client side's TLS cipher and version (`-` on a plain bind).
    SslCipher,
    SslVersion,
}

/// HAProxy's names, and whether a variable is reserved for HTTP mode.
const ALIASES: &[(&str, Option<Alias>)] = &[
    ("o", Some(Alias::Options)),
    ("B", Some(Alias::BytesOut)),
    ("CC", None),
    ("CS", None),
    ("H", Some(Alias::Hostname)),
    ("ID", Some(Alias::UniqueId)),
    ("ST", Some(Alias::Status)),
    ("T", Some(Alias::DateGmt)),
    ("Ta", None),
    ("Tc", Some(Alias::Connect)),
    ("Td", Some(Alias::Data)),
    ("Th", Some(Alias::Handshake)),
    ("Ti", None),
    ("Tl", Some(Alias::DateLocal)),
    ("Tq", None),
    ("TR", None),
    ("Tr", None),
    ("Ts", Some(Alias::Timestamp)),
    ("Tt", Some(Alias::Total)),
    ("Tu", Some(Alias::User)),
    ("Tw", Some(Alias::Queue)),
    ("U", Some(Alias::BytesIn)),
    ("ac", Some(Alias::ActConn)),
    ("b", Some(Alias::Backend)),
    ("bc", Some(Alias::BeConn)),
    ("bi", Some(Alias::BackendIp)),
    ("bp", Some(Alias::BackendPort)),
    ("bq", Some(Alias::BackendQueue)),
    ("ci", Some(Alias::ClientIp)),
    ("cp", Some(Alias::ClientPort)),
    ("f", Some(Alias::Frontend)),
    ("fc", Some(Alias::FeConn)),
    ("fi", Some(Alias::FrontendIp)),
    ("fp", Some(Alias::FrontendPort)),
    ("ft", Some(Alias::FrontendXprt)),
    ("hr", Some(Alias::Captures)),
    ("hrl", Some(Alias::CaptureList)),
    ("hs", Some(Alias::ResCaptures)),
    ("hsl", Some(Alias::ResCaptureList)),
    ("HM", None),
    ("HP", None),
    ("HQ", None),
    ("HU", None),
    ("HV", None),
    ("lc", Some(Alias::LogCount)),
    ("ms", Some(Alias::Millis)),
    ("pid", Some(Alias::Pid)),
    ("r", None),
    ("rc", Some(Alias::Retries)),
    ("rt", Some(Alias::Counter)),
    ("s", Some(Alias::Server)),
    ("sc", Some(Alias::SrvConn)),
    ("si", Some(Alias::ServerIp)),
    ("sp", Some(Alias::ServerPort)),
    ("sq", Some(Alias::SrvQueue)),
    ("sslc", Some(Alias::SslCipher)),
    ("sslv", Some(Alias::SslVersion)),
    ("t", Some(Alias::Date)),
    ("tr", None),
    ("trg", None),
    ("trl", None),
    ("ts", Some(Alias::TermState)),
    ("tsc", Some(Alias::TermStateCookie)),
];

/// `%{...}` flags (HAProxy's `LOG_OPT_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// `M`: an absent value prints `-` (on by default).
    mandatory: bool,
    /// `Q`: text values between double quotes.
    quote: bool,
    /// `X`: addresses, ports and counters in hexadecimal.
    hex: bool,
    /// `E`: `"`, `\` and `]` escaped with a backslash (RFC 5424).
    escape: bool,
}

impl Flags {
    const DEFAULT: Flags = Flags {
        mandatory: true,
        quote: false,
        hex: false,
        escape: false,
    };

    /// Applies `+Q,-M,...`; unknown names are ignored, as HAProxy does.
    fn apply(mut self, spec: &str) -> Flags {
        for item in spec.split(',') {
            let (on, name) = match item.as_bytes().first() {
                Some(b'+') => (true, &item[1..]),
                Some(b'-') => (false, &item[1..]),
                _ => continue,
            };
            match name {
                "M" => self.mandatory = on,
                "Q" => self.quote = on,
                "X" => self.hex = on,
                "E" => self.escape = on,
                _ => {}
            }
        }
        self
    }
}

#[derive(Clone, Debug)]
enum Node {
    Text(String),
    Separator,
    Var(Alias, Flags),
    Sample(Box<SampleExpr>, Flags),
}

/// A parsed log-format string.
#[derive(Clone, Debug)]
pub struct LogFormat {
    /// The string as written (two formats are the same when their strings are).
    text: String,
    nodes: Vec<Node>,
    /// Whether it holds `%[...]` (so that the caller prepares what samples read).
    has_samples: bool,
}

impl PartialEq for LogFormat {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for LogFormat {}

/// What a session's line is made of.
pub struct Data<'a> {
    pub client: SocketAddr,
    /// The address the client connected to (`%fi:%fp`).
    pub frontend_addr: Option<SocketAddr>,
    /// lb's address on the server connection (`%bi:%bp`).
    pub backend_src: Option<SocketAddr>,
    /// The server's address (`%si:%sp`).
    pub server_addr: Option<SocketAddr>,
    pub accepted: Stamp,
    pub frontend: &'a str,
    pub backend: &'a str,
    /// `None` = `<NOSRV>`.
    pub server: Option<&'a str>,
    /// `%Th`: ms before the session started (a PROXY header's wait).
    pub th: u64,
    /// `%Tw`, `%Tc`: `None` = -1.
    pub tw: Option<u64>,
    pub tc: Option<u64>,
    pub tt: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// `%ts`, two characters.
    pub term: &'a str,
    pub actconn: u64,
    pub feconn: u64,
    pub beconn: u64,
    pub srvconn: u64,
    pub retries: u32,
    pub redispatched: bool,
    pub srv_queue: u64,
    pub backend_queue: u64,
    pub counter: u64,
    pub log_count: u64,
    pub pid: u32,
    pub hostname: &'a str,
    /// `tcp-request content capture` slots, by rule.
    pub captures: &'a [Option<Vec<u8>>],
    /// The values of the format's `%[...]` expressions, in the order of
    /// [`LogFormat::samples`] (`None`, or missing: absent).
    pub samples: &'a [Option<Vec<u8>>],
    /// `option logasap`: the line may leave before the session ends, so `%Tt`, `%Tu` and `%B`
    /// carry a `+` (HAProxy's, whenever the option is on).
    pub asap: bool,
    /// The client's TLS version and cipher (`%sslv`, `%sslc`; `%ft`'s `~`), on a TLS bind.
    pub ssl: Option<(&'a str, &'a str)>,
}

/// A wall-clock instant: seconds since the epoch, microseconds, and the local offset then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub epoch: i64,
    pub micros: u32,
    pub gmtoff: i64,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Broken-down UTC time of `secs` (`gmtime_r`).
fn broken_down(secs: i64) -> libc::tm {
    let t = secs as libc::time_t;
    // SAFETY: an all-zero `tm` is valid; gmtime_r only writes it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals.
    unsafe { libc::gmtime_r(&raw const t, &raw mut tm) };
    tm
}

impl Stamp {
    /// `dd/Mon/yyyy:HH:MM:SS` of the instant shifted by `offset` seconds.
    fn day_time(&self, out: &mut String, offset: i64) {
        let tm = broken_down(self.epoch + offset);
        let _ = write!(
            out,
            "{:02}/{}/{:04}:{:02}:{:02}:{:02}",
            tm.tm_mday,
            MONTHS[tm.tm_mon.clamp(0, 11) as usize],
            tm.tm_year + 1900,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        );
    }
}

/// The characters `+E` escapes (HAProxy's `rfc5424_escape_map`).
fn escaped(c: char) -> bool {
    matches!(c, '"' | '\\' | ']')
}

/// The bytes HAProxy encodes as `#XX` in captured headers (`hdr_encode_map`): controls, DEL
/// and above, `"`, `#`, `{`, `|`, `}`.
fn push_header(out: &mut String, v: &[u8]) {
    for &b in v {
        if !(0x20..0x7f).contains(&b) || matches!(b, b'"' | b'#' | b'{' | b'|' | b'}') {
            let _ = write!(out, "#{b:02X}");
        } else {
            out.push(char::from(b));
        }
    }
}

/// HAProxy's `lf_text_len`: quoted with `+Q`, escaped with `+E`, `-` when absent.
fn push_text(out: &mut String, v: Option<&str>, f: Flags) {
    if f.quote {
        out.push('"');
    }
    match v.filter(|v| !v.is_empty()) {
        Some(v) if f.escape => {
            for c in v.chars() {
                if escaped(c) {
                    out.push('\\');
                }
                out.push(c);
            }
        }
        Some(v) => out.push_str(v),
        None if f.mandatory && !f.quote => out.push('-'),
        None => {}
    }
    if f.quote {
        out.push('"');
    }
}

/// HAProxy's `lf_ip`: the address (IPv6 without brackets), or its bytes in hex with `+X`.
fn push_ip(out: &mut String, a: Option<SocketAddr>, f: Flags) {
    match a {
        Some(a) if f.hex => match a.ip() {
            std::net::IpAddr::V4(v) => v.octets().iter().for_each(|b| {
                let _ = write!(out, "{b:02X}");
            }),
            std::net::IpAddr::V6(v) => v.octets().iter().for_each(|b| {
                let _ = write!(out, "{b:02X}");
            }),
        },
        Some(a) => push_text(out, Some(&a.ip().to_string()), f),
        None => push_text(out, None, f),
    }
}

/// HAProxy's `lf_port`: never quoted; `%04X` with `+X`.
fn push_port(out: &mut String, a: Option<SocketAddr>, f: Flags) {
    match a {
        Some(a) if f.hex => {
            let _ = write!(out, "{:04X}", a.port());
        }
        Some(a) => {
            let _ = write!(out, "{}", a.port());
        }
        None => push_text(out, None, f),
    }
}

/// A counter: decimal, or `%04X` with `+X` (`%rt`, `%lc`, `%Ts`).
fn push_counter(out: &mut String, v: u64, f: Flags) {
    let _ = if f.hex {
        write!(out, "{v:04X}")
    } else {
        write!(out, "{v}")
    };
}

fn ms(v: Option<u64>) -> i64 {
    v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX))
}

impl LogFormat {
    /// Parses `fmt`. `loader` reads the files `%[...]` expressions may name.
    pub fn parse(fmt: &str, loader: &dyn Loader) -> Result<(LogFormat, Warnings), String> {
        let mut p = FormatParser {
            fmt,
            nodes: Vec::new(),
            text: String::new(),
            defaults: Flags::DEFAULT,
            warnings: Vec::new(),
        };
        p.run(loader)?;
        let has_samples = p.nodes.iter().any(|n| matches!(n, Node::Sample(..)));
        Ok((
            LogFormat {
                text: fmt.to_owned(),
                nodes: p.nodes,
                has_samples,
            },
            p.warnings,
        ))
    }

    /// `option tcplog`'s format (see [`tcplog`] for the shared one).
    fn tcplog() -> LogFormat {
        struct NoFiles;
        impl Loader for NoFiles {
            fn read(&self, path: &str) -> Result<Vec<u8>, String> {
                Err(format!("no file {path}"))
            }
        }
        Self::parse(TCPLOG, &NoFiles)
            .expect("the tcplog format parses")
            .0
    }

    /// Whether it evaluates `%[...]` expressions.
    pub fn has_samples(&self) -> bool {
        self.has_samples
    }

    /// Whether it prints lb's address on the server connection (`%bi`, `%bp`), which costs
    /// a `getsockname` per session (HAProxy's `LW_BCKIP`).
    pub fn needs_backend_src(&self) -> bool {
        self.nodes
            .iter()
            .any(|n| matches!(n, Node::Var(Alias::BackendIp | Alias::BackendPort, _)))
    }

    /// The expressions it evaluates.
    pub fn samples(&self) -> impl Iterator<Item = &SampleExpr> {
        self.nodes.iter().filter_map(|n| match n {
            Node::Sample(e, _) => Some(&**e),
            _ => None,
        })
    }

    /// The line for one session.
    pub fn render(&self, d: &Data<'_>) -> String {
        let mut out = String::with_capacity(160);
        let mut last_space = true;
        let mut samples = d.samples.iter();
        for n in &self.nodes {
            match n {
                Node::Separator => {
                    if !last_space {
                        out.push(' ');
                        last_space = true;
                    }
                    continue;
                }
                Node::Text(t) => out.push_str(t),
                Node::Sample(_, f) => {
                    let v = samples.next().and_then(Option::as_ref);
                    let v = v.map(|v| String::from_utf8_lossy(v));
                    push_text(&mut out, v.as_deref(), *f);
                }
                Node::Var(Alias::Options, _) => continue,
                Node::Var(a, f) => render_var(&mut out, *a, *f, d),
            }
            last_space = false;
        }
        out
    }
}

/// One variable's value (HAProxy's `sess_build_logline`, TCP cases).
fn render_var(out: &mut String, alias: Alias, flags: Flags, d: &Data<'_>) {
    match alias {
        Alias::ClientIp => push_ip(out, Some(d.client), flags),
        Alias::ClientPort => push_port(out, Some(d.client), flags),
        Alias::FrontendIp => push_ip(out, d.frontend_addr, flags),
        Alias::FrontendPort => push_port(out, d.frontend_addr, flags),
        Alias::BackendIp => push_ip(out, d.backend_src, flags),
        Alias::BackendPort => push_port(out, d.backend_src, flags),
        Alias::ServerIp => push_ip(out, d.server_addr, flags),
        Alias::ServerPort => push_port(out, d.server_addr, flags),
        Alias::Date | Alias::DateGmt | Alias::DateLocal | Alias::Timestamp | Alias::Millis => {
            push_date(out, alias, flags, d.accepted);
        }
        Alias::Frontend => push_text(out, Some(d.frontend), flags),
        Alias::FrontendXprt => {
            // HAProxy's `~` after the name of a frontend that took the client over TLS.
            let tilde = if d.ssl.is_some() { "~" } else { "" };
            if flags.quote {
                let _ = write!(out, "\"{}{tilde}\"", d.frontend);
            } else {
                out.push_str(d.frontend);
                out.push_str(tilde);
            }
        }
        Alias::Backend => push_text(out, Some(d.backend), flags),
        Alias::Server => push_text(out, Some(d.server.unwrap_or("<NOSRV>")), flags),
        Alias::Hostname => push_text(out, Some(d.hostname), flags),
        Alias::UniqueId => push_text(out, None, flags),
        Alias::SslCipher => push_text(out, d.ssl.map(|s| s.1), flags),
        Alias::SslVersion => push_text(out, d.ssl.map(|s| s.0), flags),
        Alias::TermState => out.push_str(d.term),
        Alias::TermStateCookie => {
            out.push_str(d.term);
            out.push_str("--");
        }
        Alias::Retries => {
            if d.redispatched {
                out.push('+');
            }
            let _ = write!(out, "{}", d.retries);
        }
        Alias::Counter => push_counter(out, d.counter, flags),
        Alias::LogCount => push_counter(out, d.log_count, flags),
        Alias::Captures => push_captures(out, flags, d.captures),
        Alias::CaptureList => push_capture_list(out, flags, d.captures),
        Alias::Options | Alias::ResCaptures | Alias::ResCaptureList => {}
        _ => {
            if d.asap && matches!(alias, Alias::Total | Alias::User | Alias::BytesOut) {
                out.push('+');
            }
            let _ = write!(out, "{}", number(alias, d));
        }
    }
}

/// The variables that are plain signed numbers.
fn number(alias: Alias, d: &Data<'_>) -> i64 {
    let u = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    match alias {
        Alias::Handshake => u(d.th),
        Alias::Queue => ms(d.tw),
        Alias::Connect => ms(d.tc),
        // HAProxy's `t_close - t_connect` in TCP mode.
        Alias::Data => d.tc.map_or(-1, |tc| {
            u(d.tt)
                .saturating_sub(u(tc))
                .saturating_sub(ms(d.tw).max(0))
        }),
        Alias::Total | Alias::User => u(d.tt),
        Alias::BytesOut => u(d.bytes_out),
        Alias::BytesIn => u(d.bytes_in),
        Alias::ActConn => u(d.actconn),
        Alias::FeConn => u(d.feconn),
        Alias::BeConn => u(d.beconn),
        Alias::SrvConn => u(d.srvconn),
        Alias::SrvQueue => u(d.srv_queue),
        Alias::BackendQueue => u(d.backend_queue),
        Alias::Pid => i64::from(d.pid),
        // `%ST`: no HTTP status in TCP mode.
        _ => 0,
    }
}

/// `%t`, `%T`, `%Tl`, `%Ts`, `%ms`.
fn push_date(out: &mut String, alias: Alias, flags: Flags, at: Stamp) {
    match alias {
        Alias::Date => {
            at.day_time(out, at.gmtoff);
            let _ = write!(out, ".{:03}", at.micros / 1000);
        }
        Alias::DateGmt => {
            at.day_time(out, 0);
            out.push_str(" +0000");
        }
        Alias::DateLocal => {
            at.day_time(out, at.gmtoff);
            let sign = if at.gmtoff < 0 { '-' } else { '+' };
            let off = at.gmtoff.unsigned_abs();
            let _ = write!(out, " {sign}{:02}{:02}", off / 3600, off % 3600 / 60);
        }
        Alias::Timestamp => push_counter(out, u64::try_from(at.epoch).unwrap_or(0), flags),
        _ => {
            let millis = at.micros / 1000;
            let _ = if flags.hex {
                write!(out, "{millis:02X}")
            } else {
                write!(out, "{millis:03}")
            };
        }
    }
}

/// `%hr`: `{a|b}`, nothing at all without captures.
fn push_captures(out: &mut String, flags: Flags, captures: &[Option<Vec<u8>>]) {
    if captures.is_empty() {
        return;
    }
    if flags.quote {
        out.push('"');
    }
    out.push('{');
    for (i, slot) in captures.iter().enumerate() {
        if i > 0 {
            out.push('|');
        }
        if let Some(v) = slot {
            push_header(out, v);
        }
    }
    out.push('}');
    if flags.quote {
        out.push('"');
    }
}

/// `%hrl`: the captures space separated, `-` for an empty one (`""` with `+Q`).
fn push_capture_list(out: &mut String, flags: Flags, captures: &[Option<Vec<u8>>]) {
    for (i, slot) in captures.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if flags.quote {
            out.push('"');
        }
        match slot {
            Some(v) => push_header(out, v),
            None if !flags.quote => out.push('-'),
            None => {}
        }
        if flags.quote {
            out.push('"');
        }
    }
}

/// The state of one parse.
struct FormatParser<'f> {
    fmt: &'f str,
    nodes: Vec<Node>,
    /// Literal text not yet pushed.
    text: String,
    /// Flags set by `%o`, for the variables after it.
    defaults: Flags,
    warnings: Warnings,
}

impl FormatParser<'_> {
    fn flush(&mut self) {
        if !self.text.is_empty() {
            self.nodes.push(Node::Text(std::mem::take(&mut self.text)));
        }
    }

    fn run(&mut self, loader: &dyn Loader) -> Result<(), String> {
        let fmt = self.fmt;
        let mut rest = fmt;
        while let Some(c) = rest.chars().next() {
            match c {
                ' ' => {
                    self.flush();
                    self.nodes.push(Node::Separator);
                    rest = &rest[1..];
                }
                '%' => rest = self.percent(&rest[1..], loader)?,
                c => {
                    self.text.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        self.flush();
        Ok(())
    }

    /// What follows a `%`; returns the rest after it.
    fn percent<'s>(&mut self, tail: &'s str, loader: &dyn Loader) -> Result<&'s str, String> {
        let pos = self.fmt.len() - tail.len() - 1;
        let mut flags = self.defaults;
        let mut after = tail;
        if let Some(r) = tail.strip_prefix('{') {
            let Some(end) = r.find('}') else {
                return Err(format!("truncated line after '%{{{r}'"));
            };
            flags = flags.apply(&r[..end]);
            after = &r[end + 1..];
            let starts_var = after.starts_with('[')
                || after
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric());
            if !starts_var {
                return Err(format!(
                    "parse argument modifier without variable name near '%{{{}}}'",
                    &r[..end]
                ));
            }
        }
        match after.chars().next() {
            None => Err("truncated line after '%'".to_owned()),
            Some('%') if after.len() == tail.len() => {
                self.text.push('%');
                Ok(&after[1..])
            }
            Some('[') => {
                let body = &after[1..];
                let (expr, r, warnings) = SampleExpr::parse_str(body, loader)?;
                let Some(r) = r.strip_prefix(']') else {
                    let name = &body[..body.len() - r.len()];
                    return Err(match r.chars().next() {
                        Some(c) => format!("expected ']' after '{name}', but found '{c}'"),
                        None => format!("missing ']' after '{name}'"),
                    });
                };
                if !expr.places().intersects(Places::CONTENT) {
                    return Err(format!(
                        "sample fetch '{}' can't be used in a log-format (it is only valid \
                         before the session starts)",
                        expr.keyword()
                    ));
                }
                self.warnings.extend(warnings);
                self.flush();
                self.nodes.push(Node::Sample(Box::new(expr), flags));
                Ok(r)
            }
            Some(c)
                if c.is_ascii_alphabetic() || (c.is_ascii_digit() && after.len() < tail.len()) =>
            {
                let n = after
                    .find(|c: char| !c.is_ascii_alphanumeric())
                    .unwrap_or(after.len());
                let name = &after[..n];
                let alias = match ALIASES.iter().find(|(k, _)| *k == name) {
                    Some((_, Some(a))) => *a,
                    Some((_, None)) => {
                        return Err(format!(
                            "format variable '{name}' is reserved for HTTP mode"
                        ))
                    }
                    None => {
                        return Err(format!(
                            "no such format variable '{name}'. If you wanted to emit the '%' \
                             character verbatim, you need to use '%%'"
                        ))
                    }
                };
                if alias == Alias::Options {
                    self.defaults = flags;
                } else {
                    self.flush();
                    self.nodes.push(Node::Var(alias, flags));
                }
                Ok(&after[n..])
            }
            Some(c) if c.is_ascii_digit() || c == ' ' || c == '\t' => Err(format!(
                "unexpected variable name near '{c}' at position {} line : '{}'. Maybe you want \
                 to write a single '%', use the syntax '%%'",
                pos + 1,
                self.fmt
            )),
            // HAProxy drops a `%` that starts nothing and goes on with the text.
            Some(_) => Ok(after),
        }
    }
}

#[cfg(test)]
mod tests;
