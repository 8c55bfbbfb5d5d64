//! One health check against one server: the `tcp-check` rule engine (which also runs
//! `redis-check`, `ssl-hello-chk` and the plain connect check), `mysql-check`, `pgsql-check`
//! and `httpchk` (in [`super::http`]). Every read goes into one buffer capped at [`BUF_CAP`]
//! bytes, and every step is bounded by the check's deadlines. A connection is plain TCP or
//! TLS ([`super::conn`]) as the server's `check-ssl` and the rule's `ssl` say.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::conn::{Conn, TlsClient};
use super::http::HttpProbe;
use crate::config::{CheckKind, ConnectRule, ExpectPattern, MysqlVersion, TcpCheckRule};

/// HAProxy's check buffer size (`tune.bufsize`, 16 KiB): a server sending more costs no more.
pub const BUF_CAP: usize = 16384;

/// What one check found, in HAProxy's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the check passed.
    pub passed: bool,
    /// `L4OK`, `L4CON`, `L4TOUT`, `L7OK`, `L7RSP`, `L7STS`, `L7TOUT`, `PROCOK`, ...
    pub result: &'static str,
    /// Protocol code (MySQL error, HTTP status, exit status).
    pub code: Option<u32>,
    /// Free text (error message, server version).
    pub info: String,
    /// Time the check took.
    pub duration: Duration,
}

impl Outcome {
    pub(crate) fn new(passed: bool, result: &'static str, info: impl Into<String>) -> Self {
        Self {
            passed,
            result,
            code: None,
            info: info.into(),
            duration: Duration::ZERO,
        }
    }

    pub(crate) fn code(mut self, code: u32) -> Self {
        self.code = Some(code);
        self
    }
}

/// Where and how long to check.
#[derive(Clone, Debug)]
pub struct Target {
    /// Check address: the server's (or `addr`) with the server's port (or `port`).
    pub addr: SocketAddr,
    /// Bound on each connect: min(`timeout connect`, `inter`) with `timeout check`, else the
    /// whole-check deadline.
    pub connect_timeout: Duration,
    /// `timeout check`: bound on the rest of the check once connected. `None` = `inter` bounds
    /// the whole check.
    pub read_timeout: Option<Duration>,
    /// `inter`: the whole check's bound without `timeout check`.
    pub inter: Duration,
    /// The server's check TLS: `Some` when `check-ssl` is set or a rule connects with `ssl`
    /// (an `Err` when it could not be built: such a connect fails with the reason).
    pub tls: Option<Result<Arc<TlsClient>, Arc<str>>>,
    /// `check-ssl`: the default connect speaks TLS.
    pub check_ssl: bool,
    /// The names `uri-lf` may use.
    pub who: Arc<Who>,
    /// The server is UP (or NOLB): `disable-on-404` applies.
    pub server_up: bool,
}

/// The server and backend a check is for (`%[srv_name]`...).
#[derive(Clone, Debug, Default)]
pub struct Who {
    pub server: String,
    pub server_id: u32,
    pub backend: String,
    pub backend_id: u32,
}

impl Target {
    /// A plain-TCP target with no names (agent checks, tests).
    pub fn plain(
        addr: SocketAddr,
        connect_timeout: Duration,
        read_timeout: Option<Duration>,
        inter: Duration,
    ) -> Self {
        Self {
            addr,
            connect_timeout,
            read_timeout,
            inter,
            tls: None,
            check_ssl: false,
            who: Arc::new(Who::default()),
            server_up: true,
        }
    }
}

/// A compiled `tcp-check` step (regexes built).
#[derive(Debug)]
pub enum Step {
    Connect(ConnectRule),
    Send(Vec<u8>),
    /// `ssl-hello-chk`'s client hello (it holds the current time).
    SendSslHello,
    Expect {
        min_recv: Option<u32>,
        negate: bool,
        matcher: Matcher,
        /// The rule as written, for messages.
        text: String,
        /// Results on success, mismatch and timeout (`ok-status`, `error-status`,
        /// `tout-status`): L7OK/L7RSP/L7TOUT unless a check kind says otherwise.
        statuses: Statuses,
    },
}

/// The results an expect step reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Statuses {
    pub ok: &'static str,
    pub err: &'static str,
    pub tout: &'static str,
}

/// `tcp-check expect`'s defaults.
const L7: Statuses = Statuses {
    ok: "L7OK",
    err: "L7RSP",
    tout: "L7TOUT",
};

/// `ssl-hello-chk`'s (HAProxy's `ok-status L6OK error-status L6RSP tout-status L6TOUT`).
const L6: Statuses = Statuses {
    ok: "L6OK",
    err: "L6RSP",
    tout: "L6TOUT",
};

/// HAProxy's `ssl-hello-chk` client hello (`tcpcheck.c`, RFC 2246 A.3/A.4): an `SSLv3` hello
/// offering its 39 most common ciphers, the 4-byte Unix time at offset 11 and
/// `HAPROXYSSLCHK\nHAPROXYSSLCHK\n` as the 28-byte random.
pub fn ssl_hello(unix_time: u32) -> Vec<u8> {
    let mut p = vec![
        0x16, 0x03, 0x00, 0x00, 0x79, 0x01, 0x00, 0x00, 0x75, 0x03, 0x00,
    ];
    p.extend_from_slice(&unix_time.to_be_bytes());
    p.extend_from_slice(b"HAPROXYSSLCHK\nHAPROXYSSLCHK\n");
    p.extend_from_slice(&[0x00, 0x00, 0x4E]);
    for c in (0x01..=0x1Bu16).chain(0x2F..=0x3A) {
        p.extend_from_slice(&c.to_be_bytes());
    }
    p.extend_from_slice(&[0x01, 0x00]);
    p
}

/// How an expect step matches the received data.
#[derive(Debug)]
pub enum Matcher {
    Bytes(Vec<u8>),
    Regex(regex::bytes::Regex),
    /// Regex over the data as uppercase hex (`rbinary`).
    HexRegex(regex::bytes::Regex),
}

impl Matcher {
    fn matches(&self, data: &[u8]) -> bool {
        match self {
            Matcher::Bytes(p) => p.is_empty() || data.windows(p.len()).any(|w| w == &p[..]),
            Matcher::Regex(r) => r.is_match(data),
            Matcher::HexRegex(r) => {
                let mut hex = String::with_capacity(data.len() * 2);
                for b in data {
                    let _ = write!(hex, "{b:02X}");
                }
                r.is_match(hex.as_bytes())
            }
        }
    }
}

/// A check method compiled once per backend (regexes built, packets laid out).
#[derive(Debug)]
pub enum Probe {
    /// `tcp-check` rules (plain connect and `redis-check` are rule lists too). `l7` says
    /// whether success is reported as L7OK (there were expect rules) or L4OK.
    Script {
        steps: Vec<Step>,
        l7: bool,
    },
    Mysql {
        packet: Vec<u8>,
        has_user: bool,
    },
    Pgsql {
        packet: Vec<u8>,
    },
    Http(Box<HttpProbe>),
}

/// A regex that the config loader already validated; an invalid one (impossible after
/// loading) matches nothing rather than panicking.
pub(crate) fn regex(pat: &str) -> regex::bytes::Regex {
    regex::bytes::Regex::new(pat)
        .unwrap_or_else(|_| regex::bytes::Regex::new(r"[^\s\S]").expect("constant regex"))
}

impl Probe {
    /// Compiles a backend's check method. `External` is not a probe (see `external`).
    pub fn compile(kind: &CheckKind) -> Probe {
        match kind {
            CheckKind::Connect | CheckKind::External => Probe::script(&[]),
            CheckKind::TcpCheck(rules) => Probe::script(rules),
            CheckKind::Redis => Probe::script(&[
                TcpCheckRule::Send(b"*1\r\n$4\r\nPING\r\n".to_vec()),
                TcpCheckRule::Expect {
                    min_recv: None,
                    negate: false,
                    pattern: ExpectPattern::String(b"+PONG\r\n".to_vec()),
                },
            ]),
            CheckKind::Mysql { user, version } => Probe::Mysql {
                packet: user
                    .as_deref()
                    .map(|u| mysql_packet(u, *version))
                    .unwrap_or_default(),
                has_user: user.is_some(),
            },
            CheckKind::Pgsql { user } => Probe::Pgsql {
                packet: pgsql_packet(user),
            },
            CheckKind::Http(h) => Probe::Http(Box::new(HttpProbe::compile(h))),
            CheckKind::SslHello => {
                let mut p = Probe::script(&[]);
                if let Probe::Script { steps, .. } = &mut p {
                    steps.push(Step::SendSslHello);
                    steps.push(Step::Expect {
                        min_recv: Some(5),
                        negate: false,
                        matcher: Matcher::Regex(regex("^(?-u:[\\x15\\x16])")),
                        text: "rbinary '^1[56]'".to_owned(),
                        statuses: L6,
                    });
                }
                p
            }
        }
    }

    /// Whether a connect of this probe speaks TLS without `check-ssl` (`connect ... ssl`).
    pub fn wants_tls(&self) -> bool {
        match self {
            Probe::Script { steps, .. } => {
                steps.iter().any(|s| matches!(s, Step::Connect(c) if c.ssl))
            }
            Probe::Http(h) => h.connect.as_ref().is_some_and(|c| c.ssl),
            _ => false,
        }
    }

    fn script(rules: &[TcpCheckRule]) -> Probe {
        let mut steps = Vec::new();
        if !matches!(rules.first(), Some(TcpCheckRule::Connect(_))) {
            steps.push(Step::Connect(ConnectRule {
                default: true,
                ..ConnectRule::default()
            }));
        }
        let mut l7 = false;
        for r in rules {
            steps.push(match r {
                TcpCheckRule::Connect(c) => Step::Connect(c.clone()),
                TcpCheckRule::Send(b) => Step::Send(b.clone()),
                TcpCheckRule::Expect {
                    min_recv,
                    negate,
                    pattern,
                } => {
                    l7 = true;
                    let (matcher, text) = match pattern {
                        ExpectPattern::String(s) => (
                            Matcher::Bytes(s.clone()),
                            format!("string '{}'", s.escape_ascii()),
                        ),
                        ExpectPattern::Binary(b) => (
                            Matcher::Bytes(b.clone()),
                            format!("binary '{}'", hex_upper(b)),
                        ),
                        ExpectPattern::Rstring(r) => {
                            (Matcher::Regex(regex(r)), format!("rstring '{r}'"))
                        }
                        ExpectPattern::Rbinary(r) => {
                            (Matcher::HexRegex(regex(r)), format!("rbinary '{r}'"))
                        }
                    };
                    Step::Expect {
                        min_recv: *min_recv,
                        negate: *negate,
                        matcher,
                        text,
                        statuses: L7,
                    }
                }
            });
        }
        Probe::Script { steps, l7 }
    }

    /// Runs one check. Never takes longer than the target's bounds (plus scheduling).
    pub async fn run(&self, t: &Target) -> Outcome {
        let started = Instant::now();
        let mut out = match self {
            Probe::Script { steps, l7 } => run_script(steps, *l7, t, started).await,
            Probe::Mysql { packet, has_user } => run_mysql(packet, *has_user, t, started).await,
            Probe::Pgsql { packet } => run_pgsql(packet, t, started).await,
            Probe::Http(h) => h.run(t, started).await,
        };
        out.duration = started.elapsed();
        out
    }
}

fn hex_upper(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02X}");
    }
    s
}

/// `option mysql-check user U` packets (HAProxy's bytes): a handshake response, then
/// `COM_QUIT`.
pub fn mysql_packet(user: &str, version: MysqlVersion) -> Vec<u8> {
    let u = user.as_bytes();
    let mut body = Vec::new();
    match version {
        MysqlVersion::Pre41 => {
            body.extend_from_slice(&[0x00, 0x80]);
            body.extend_from_slice(&[0x00, 0x00, 0x01]);
            body.extend_from_slice(u);
            body.extend_from_slice(&[0x00, 0x00]);
        }
        MysqlVersion::Post41 | MysqlVersion::Post80 => {
            if version == MysqlVersion::Post41 {
                body.extend_from_slice(&[0x00, 0x82, 0x00, 0x00]);
            } else {
                body.extend_from_slice(&[0x00, 0x82, 0x08, 0x00]);
            }
            body.extend_from_slice(&[0x00, 0x80, 0x00, 0x01]);
            body.push(0x21);
            body.extend_from_slice(&[0; 23]);
            body.extend_from_slice(u);
            body.push(0x00);
            body.push(0x00);
            if version == MysqlVersion::Post80 {
                body.extend_from_slice(b"mysql_native_password\0");
            }
        }
    }
    let len = body.len() as u32;
    let mut p = vec![len as u8, (len >> 8) as u8, (len >> 16) as u8, 0x01];
    p.extend_from_slice(&body);
    p.extend_from_slice(&[0x01, 0x00, 0x00, 0x00, 0x01]);
    p
}

/// `option pgsql-check user U`: a protocol 3.0 `StartupMessage`.
pub fn pgsql_packet(user: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608u32.to_be_bytes());
    body.extend_from_slice(b"user\0");
    body.extend_from_slice(user.as_bytes());
    body.extend_from_slice(&[0, 0]);
    let mut p = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    p.extend_from_slice(&body);
    p
}

/// Connects, bounded by `connect_timeout` and the whole-check deadline.
pub(crate) async fn connect(
    addr: SocketAddr,
    t: &Target,
    deadline: Instant,
) -> Result<TcpStream, Outcome> {
    let bound = (Instant::now() + t.connect_timeout).min(deadline);
    match timeout_at(bound, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(Outcome::new(false, "L4CON", io_text(&e))),
        Err(_) => Err(Outcome::new(false, "L4TOUT", "")),
    }
}

/// An I/O error as HAProxy prints it ("Connection refused"), without Rust's "(os error N)".
pub(crate) fn io_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// Opens a check connection as `rule` says: TCP to its `addr`/`port` over the target's, then
/// TLS when the rule asks (`ssl`) or when it is the default connect of a `check-ssl` server.
/// A failed handshake is L6RSP (L6TOUT when it timed out), as HAProxy reports it.
pub(crate) async fn open(rule: &ConnectRule, t: &Target, whole: Instant) -> Result<Conn, Outcome> {
    let addr = SocketAddr::new(
        rule.addr.unwrap_or(t.addr.ip()),
        rule.port.unwrap_or(t.addr.port()),
    );
    let tcp = connect(addr, t, whole).await?;
    if !(rule.ssl || (rule.default && t.check_ssl)) {
        return Ok(Conn::Plain(tcp));
    }
    let tls = match &t.tls {
        Some(Ok(tls)) => tls.clone(),
        Some(Err(e)) => return Err(Outcome::new(false, "L6RSP", e.to_string())),
        None => {
            return Err(Outcome::new(
                false,
                "L6RSP",
                "no TLS settings for this check",
            ))
        }
    };
    let sni = rule.sni.as_deref();
    let alpn = rule.alpn.as_deref();
    let deadline = read_deadline(t, whole);
    match timeout_at(deadline, tls.handshake(tcp, addr.ip(), sni, alpn)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(Outcome::new(
            false,
            "L6RSP",
            format!("SSL handshake failure ({})", io_text(&e)),
        )),
        Err(_) => Err(Outcome::new(false, "L6TOUT", "SSL handshake timeout")),
    }
}

/// The connect of a check kind without rules (mysql, pgsql, httpchk): the server's check
/// address, TLS with `check-ssl`.
pub(crate) fn default_connect() -> ConnectRule {
    ConnectRule {
        default: true,
        ..ConnectRule::default()
    }
}

/// The read deadline once connected.
pub(crate) fn read_deadline(t: &Target, whole: Instant) -> Instant {
    match t.read_timeout {
        Some(d) => Instant::now() + d,
        None => whole,
    }
}

/// Reads what fits into `buf` (capped at [`BUF_CAP`]). `Ok(true)` = no more data will come
/// (peer closed or buffer full: HAProxy's "last read").
pub(crate) async fn fill<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<bool, ()> {
    let room = BUF_CAP.saturating_sub(buf.len());
    if room == 0 {
        return Ok(true);
    }
    let mut tmp = vec![0u8; room.min(4096)];
    match timeout_at(deadline, s.read(&mut tmp)).await {
        Ok(Ok(0) | Err(_)) => Ok(true),
        Ok(Ok(n)) => {
            buf.extend_from_slice(&tmp[..n]);
            Ok(buf.len() >= BUF_CAP)
        }
        Err(_) => Err(()),
    }
}

/// Closes the script's connection, if any.
async fn close_conn(conn: &mut Option<(Conn, bool)>) {
    if let Some((c, linger)) = conn.take() {
        c.close(linger).await;
    }
}

async fn run_script(steps: &[Step], l7: bool, t: &Target, started: Instant) -> Outcome {
    let whole = started + t.inter;
    let mut deadline = whole;
    let mut conn: Option<(Conn, bool)> = None;
    let mut buf: Vec<u8> = Vec::new();
    let mut last = false;
    let mut ok = if l7 { L7.ok } else { "L4OK" };
    for (i, step) in steps.iter().enumerate() {
        let n = i + 1;
        match step {
            Step::Connect(rule) => {
                close_conn(&mut conn).await;
                match open(rule, t, whole).await {
                    Ok(c) => conn = Some((c, rule.linger)),
                    Err(mut o) => {
                        if steps.len() > 1 {
                            let what = if o.info.is_empty() {
                                "timeout".to_owned()
                            } else {
                                o.info.clone()
                            };
                            o.info = format!("{what} at step {n} of tcp-check (connect)");
                        }
                        return o;
                    }
                }
                deadline = read_deadline(t, whole);
                buf.clear();
                last = false;
            }
            Step::Send(_) | Step::SendSslHello => {
                let Some((s, _)) = conn.as_mut() else {
                    return Outcome::new(false, "L7RSP", format!("no connection at step {n}"));
                };
                let hello;
                let data = if let Step::Send(d) = step {
                    d.as_slice()
                } else {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default();
                    hello = ssl_hello(now.as_secs() as u32);
                    hello.as_slice()
                };
                // HAProxy resets the input buffer before each send.
                buf.clear();
                last = false;
                let sent = timeout_at(deadline, async {
                    s.write_all(data).await?;
                    s.flush().await
                })
                .await;
                match sent {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        close_conn(&mut conn).await;
                        return Outcome::new(
                            false,
                            "L7RSP",
                            format!(
                                "TCPCHK got an error while sending data at step {n}: {}",
                                io_text(&e)
                            ),
                        );
                    }
                    Err(_) => {
                        close_conn(&mut conn).await;
                        return Outcome::new(
                            false,
                            "L7TOUT",
                            format!("TCPCHK timeout while sending data at step {n}"),
                        );
                    }
                }
            }
            Step::Expect {
                min_recv,
                negate,
                matcher,
                text,
                statuses,
            } => {
                let Some((s, _)) = conn.as_mut() else {
                    return Outcome::new(false, statuses.err, format!("no connection at step {n}"));
                };
                ok = statuses.ok;
                let failed = loop {
                    let enough = min_recv.is_none_or(|m| buf.len() >= m as usize);
                    if enough || last {
                        let found = enough && matcher.matches(&buf);
                        if found != *negate {
                            break None;
                        }
                        // No match yet: wait for more unless the data is complete or a minimum
                        // made the mismatch conclusive.
                        if last || min_recv.is_some() {
                            let info = if buf.is_empty() && last {
                                format!("TCPCHK got an empty response at step {n}")
                            } else if *negate {
                                format!("TCPCHK matched unwanted content {text} at step {n}")
                            } else {
                                format!("TCPCHK did not match content {text} at step {n}")
                            };
                            break Some(Outcome::new(false, statuses.err, info));
                        }
                    }
                    let Ok(l) = fill(s, &mut buf, deadline).await else {
                        break Some(Outcome::new(
                            false,
                            statuses.tout,
                            format!("at step {n} of tcp-check (expect {text})"),
                        ));
                    };
                    last = l;
                };
                if let Some(o) = failed {
                    close_conn(&mut conn).await;
                    return o;
                }
            }
        }
    }
    close_conn(&mut conn).await;
    let info = if ok == "L4OK" { "" } else { "(tcp-check)" };
    Outcome::new(true, ok, info)
}

/// Reads until `buf` holds a whole MySQL packet at `at`; returns its payload range.
async fn mysql_read_packet(
    s: &mut Conn,
    buf: &mut Vec<u8>,
    at: usize,
    deadline: Instant,
) -> Result<(usize, usize), Outcome> {
    loop {
        if buf.len() >= at + 4 {
            let len = buf[at] as usize | (buf[at + 1] as usize) << 8 | (buf[at + 2] as usize) << 16;
            if buf.len() >= at + 4 + len {
                return Ok((at + 4, at + 4 + len));
            }
            if at + 4 + len > BUF_CAP {
                return Err(Outcome::new(
                    false,
                    "L7RSP",
                    "Received packet larger than the check buffer",
                ));
            }
        }
        match fill(s, buf, deadline).await {
            Ok(true) if buf.len() < BUF_CAP => {
                // Re-check once: the last read may have completed the packet.
                if buf.len() >= at + 4 {
                    let len = buf[at] as usize
                        | (buf[at + 1] as usize) << 8
                        | (buf[at + 2] as usize) << 16;
                    if buf.len() >= at + 4 + len {
                        return Ok((at + 4, at + 4 + len));
                    }
                }
                return Err(Outcome::new(false, "L7RSP", "Received incomplete packet"));
            }
            Ok(_) => {}
            Err(()) => return Err(Outcome::new(false, "L7TOUT", "")),
        }
    }
}

/// A MySQL error packet's code and message (`FF code [# sqlstate] message`).
fn mysql_error(p: &[u8]) -> Outcome {
    let code = p
        .get(1..3)
        .map_or(0, |c| u32::from(c[0]) | u32::from(c[1]) << 8);
    let mut msg = p.get(3..).unwrap_or_default();
    if msg.first() == Some(&b'#') && msg.len() >= 6 {
        msg = &msg[6..];
    }
    Outcome::new(false, "L7STS", String::from_utf8_lossy(msg).into_owned()).code(code)
}

#[expect(
    clippy::many_single_char_names,
    reason = "s/t/a/b/c/d: socket, target, packet bounds"
)]
async fn run_mysql(packet: &[u8], has_user: bool, t: &Target, started: Instant) -> Outcome {
    let whole = started + t.inter;
    let mut s = match open(&default_connect(), t, whole).await {
        Ok(s) => s,
        Err(o) => return o,
    };
    let deadline = read_deadline(t, whole);
    if has_user {
        // Sent at once, without waiting for the greeting, as HAProxy does.
        match timeout_at(deadline, s.write_all(packet)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                s.close(false).await;
                return Outcome::new(false, "L7RSP", io_text(&e));
            }
            Err(_) => {
                s.close(false).await;
                return Outcome::new(false, "L7TOUT", "");
            }
        }
    }
    let mut buf = Vec::new();
    let out = async {
        let (a, b) = mysql_read_packet(&mut s, &mut buf, 0, deadline).await?;
        let greet = &buf[a..b];
        if greet.first() == Some(&0xff) {
            return Err(mysql_error(greet));
        }
        // Protocol version byte, then the NUL-terminated server version.
        let version = greet
            .get(1..)
            .map(|v| v.split(|&c| c == 0).next().unwrap_or_default())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        if has_user {
            let (c, d) = mysql_read_packet(&mut s, &mut buf, b, deadline).await?;
            if buf[c..d].first() == Some(&0xff) {
                return Err(mysql_error(&buf[c..d]));
            }
        }
        Ok(Outcome::new(true, "L7OK", version))
    }
    .await;
    s.close(false).await;
    out.unwrap_or_else(|e| e)
}

async fn run_pgsql(packet: &[u8], t: &Target, started: Instant) -> Outcome {
    let whole = started + t.inter;
    let mut s = match open(&default_connect(), t, whole).await {
        Ok(s) => s,
        Err(o) => return o,
    };
    let deadline = read_deadline(t, whole);
    let out = async {
        match timeout_at(deadline, s.write_all(packet)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Outcome::new(false, "L7RSP", io_text(&e)),
            Err(_) => return Outcome::new(false, "L7TOUT", ""),
        }
        let mut buf = Vec::new();
        loop {
            if buf.first() == Some(&b'E') {
                // ErrorResponse: fields `Xtext\0`; 'M' is the message.
                let msg = buf[5.min(buf.len())..]
                    .split(|&c| c == 0)
                    .find(|f| f.first() == Some(&b'M'))
                    .map(|f| String::from_utf8_lossy(&f[1..]).into_owned());
                if msg.is_some() || buf.len() >= BUF_CAP {
                    return Outcome::new(false, "L7RSP", msg.unwrap_or_default());
                }
            } else if buf.len() >= 9 {
                let code = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]);
                if buf[0] == b'R' && matches!(code, 0 | 2..=7 | 9 | 10) {
                    return Outcome::new(true, "L7OK", "PostgreSQL server is ok");
                }
                return Outcome::new(false, "L7RSP", "PostgreSQL unknown error");
            } else if !buf.is_empty() && buf[0] != b'R' {
                return Outcome::new(false, "L7RSP", "PostgreSQL unknown error");
            }
            match fill(&mut s, &mut buf, deadline).await {
                Ok(true) if buf.first() != Some(&b'E') => {
                    return Outcome::new(false, "L7RSP", "PostgreSQL unknown error")
                }
                Ok(true) => {
                    return Outcome::new(false, "L7RSP", String::from_utf8_lossy(&buf).into_owned())
                }
                Ok(false) => {}
                Err(()) => return Outcome::new(false, "L7TOUT", ""),
            }
        }
    }
    .await;
    s.close(false).await;
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};
    use std::net::TcpListener;

    /// Runs a check future on a current-thread runtime, as the checker threads do.
    pub(in crate::health) fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn target(addr: SocketAddr, read: Option<Duration>) -> Target {
        Target::plain(addr, Duration::from_secs(1), read, Duration::from_secs(2))
    }

    /// A server that runs `f` on each of its first `n` connections.
    fn server(n: usize, f: impl Fn(std::net::TcpStream) + Send + 'static) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming().take(n).flatten() {
                f(c);
            }
        });
        a
    }

    fn expect(pattern: ExpectPattern) -> TcpCheckRule {
        TcpCheckRule::Expect {
            min_recv: None,
            negate: false,
            pattern,
        }
    }

    #[test]
    fn mysql_packets_are_haproxys_bytes() {
        let p = mysql_packet("haproxy", MysqlVersion::Post41);
        let mut want = vec![
            34 + 7,
            0,
            0,
            1,
            0x00,
            0x82,
            0x00,
            0x00,
            0x00,
            0x80,
            0x00,
            0x01,
            0x21,
        ];
        want.extend_from_slice(&[0; 23]);
        want.extend_from_slice(b"haproxy\0\0");
        want.extend_from_slice(&[1, 0, 0, 0, 1]);
        assert_eq!(p, want);
        let p = mysql_packet("u", MysqlVersion::Pre41);
        assert_eq!(
            p,
            [8, 0, 0, 1, 0x00, 0x80, 0, 0, 1, b'u', 0, 0, 1, 0, 0, 0, 1]
        );
        let p = mysql_packet("u", MysqlVersion::Post80);
        assert_eq!(p[0] as usize, 34 + 1 + 22);
        assert_eq!(&p[4..8], &[0x00, 0x82, 0x08, 0x00]);
        assert!(p.ends_with(b"mysql_native_password\0\x01\x00\x00\x00\x01"));
        let p = pgsql_packet("pg");
        assert_eq!(&p[..8], &[0, 0, 0, 17, 0, 3, 0, 0]);
        assert_eq!(&p[8..], b"user\0pg\0\0");
    }

    #[test]
    fn fill_never_holds_more_than_the_buffer_cap() {
        // 1 MB of garbage: the check reads 16 KiB and stops.
        let addr = server(2, |mut c| {
            let junk = vec![b'x'; 1 << 20];
            let _ = c.write_all(&junk);
        });
        block_on(async {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut buf = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut reads = 0;
            while !fill(&mut s, &mut buf, deadline).await.unwrap() {
                reads += 1;
                assert!(buf.len() <= BUF_CAP);
                assert!(reads < 10_000);
            }
            assert_eq!(buf.len(), BUF_CAP);
            assert!(buf.capacity() <= 2 * BUF_CAP, "{}", buf.capacity());
            let probe = Probe::compile(&CheckKind::TcpCheck(vec![expect(ExpectPattern::String(
                b"never".to_vec(),
            ))]));
            let o = probe.run(&target(addr, Some(Duration::from_secs(3)))).await;
            assert_eq!(o.result, "L7RSP", "{o:?}");
            assert!(!o.passed);
            assert!(
                o.info.contains("did not match content string 'never'"),
                "{o:?}"
            );
        });
    }

    #[test]
    fn silent_server_is_bounded_by_the_read_timeout() {
        let addr = server(1, |c| {
            std::thread::sleep(Duration::from_secs(3));
            drop(c);
        });
        block_on(async {
            let probe = Probe::compile(&CheckKind::Redis);
            let o = probe
                .run(&target(addr, Some(Duration::from_millis(200))))
                .await;
            assert_eq!(o.result, "L7TOUT", "{o:?}");
            assert!(
                o.duration >= Duration::from_millis(190) && o.duration < Duration::from_secs(2)
            );
        });
    }

    #[test]
    fn scripts_with_several_steps_and_kinds_of_expect() {
        let addr = server(1, |mut c| {
            let mut b = [0u8; 64];
            let n = c.read(&mut b).unwrap();
            assert_eq!(&b[..n], b"HELLO\r\n");
            c.write_all(b"+OK\r\n").unwrap();
            let n = c.read(&mut b).unwrap();
            assert_eq!(&b[..n], &[0xde, 0xad]);
            c.write_all(&[0x2b, 0x00, 0x7f]).unwrap();
            let _ = c.read(&mut b);
        });
        block_on(async {
            let probe = Probe::compile(&CheckKind::TcpCheck(vec![
                TcpCheckRule::Send(b"HELLO\r\n".to_vec()),
                expect(ExpectPattern::Rstring(r"^\+OK".into())),
                TcpCheckRule::Expect {
                    min_recv: None,
                    negate: true,
                    pattern: ExpectPattern::String(b"-ERR".to_vec()),
                },
                TcpCheckRule::Send(vec![0xde, 0xad]),
                expect(ExpectPattern::Binary(vec![0x00, 0x7f])),
                expect(ExpectPattern::Rbinary("^2B007F$".into())),
            ]));
            let o = probe.run(&target(addr, Some(Duration::from_secs(2)))).await;
            assert_eq!(o.result, "L7OK", "{o:?}");
        });
    }

    #[test]
    fn refused_connect_is_l4con() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        block_on(async {
            let o = Probe::compile(&CheckKind::Connect)
                .run(&target(addr, None))
                .await;
            assert_eq!((o.result, o.passed), ("L4CON", false));
            assert_eq!(o.info, "Connection refused");
            assert_eq!(o.result, "L4CON");
        });
    }

    #[test]
    fn mysql_error_greeting_gives_the_code() {
        let addr = server(1, |mut c| {
            let msg = b"\xff\x15\x04#28000Access denied";
            let mut p = vec![msg.len() as u8, 0, 0, 0];
            p.extend_from_slice(msg);
            let _ = c.write_all(&p);
        });
        block_on(async {
            let probe = Probe::compile(&CheckKind::Mysql {
                user: Some("u".into()),
                version: MysqlVersion::Post41,
            });
            let o = probe.run(&target(addr, Some(Duration::from_secs(2)))).await;
            assert_eq!((o.result, o.code), ("L7STS", Some(1045)), "{o:?}");
            assert_eq!(o.info, "Access denied");
        });
    }
}
