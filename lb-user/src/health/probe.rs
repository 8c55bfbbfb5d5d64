//! One health check against one server: the `tcp-check` rule engine (which also runs
//! `redis-check`, `ssl-hello-chk` and the plain connect check), `mysql-check`, `pgsql-check`,
//! `ldap-check` (in [`super::ldap`]) and `httpchk` (in [`super::http`]). Every read goes into one buffer capped at [`BUF_CAP`]
//! bytes, and every step is bounded by the check's deadlines. A connection is plain TCP or
//! TLS ([`super::conn`]) as the server's `check-ssl` and the rule's `ssl` say, starts with a
//! PROXY header when asked (before any TLS, as HAProxy's) and ends as HAProxy's
//! ([`CheckConn`]).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout_at, Instant};

use super::conn::Conn;
use super::http::HttpProbe;
use crate::config::{
    CheckKind, ConnectRule, ExpectPattern, MysqlVersion, ProxyVersion, Source, TcpCheckRule,
};
use crate::dataplane::sockopt;
use crate::server::{PortLease, PortPool};
use crate::tls_client::TlsClient;

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
    /// The PROXY header a default connect sends (`check-send-proxy`, or the server's
    /// `send-proxy*` when neither `port` nor `addr` moves the check elsewhere, as HAProxy).
    pub send_proxy: Option<ProxyVersion>,
    /// The version a `tcp-check connect send-proxy` sends: the server's, else v1.
    pub proxy_version: ProxyVersion,
    /// The server's `source` (or its backend's): checks come from it, as its traffic does.
    pub source: Option<Source>,
    /// The pool of the server's source port range, when it has one: a check holds one of its
    /// ports while it runs.
    pub source_ports: Option<Arc<PortPool>>,
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
            send_proxy: None,
            proxy_version: ProxyVersion::V1,
            source: None,
            source_ports: None,
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
    Ldap,
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
            CheckKind::Ldap => Probe::Ldap,
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
            Probe::Ldap => super::ldap::run(t, started).await,
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

/// An I/O error as HAProxy prints it ("Connection refused"), without Rust's "(os error N)".
pub(crate) fn io_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// What a check does right after a connect: all HAProxy looks at to decide whether the
/// handshake's last ACK may wait (`tcpcheck_eval_connect`, `CONNECT_DELACK_ALWAYS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AfterConnect {
    /// The check ends there (a plain connect check).
    Nothing,
    /// The check speaks first (`pgsql-check`, `httpchk`, `redis-check`, `ssl-hello-chk`,
    /// `mysql-check user`, an agent with `agent-send`, a `tcp-check send*`).
    Send,
    /// The server speaks first (an expect), or another connect follows.
    Other,
}

impl AfterConnect {
    /// What follows a `tcp-check` connect: the next step.
    fn of(next: Option<&Step>) -> Self {
        match next {
            None => AfterConnect::Nothing,
            Some(Step::Send(_) | Step::SendSslHello) => AfterConnect::Send,
            Some(Step::Connect(_) | Step::Expect { .. }) => AfterConnect::Other,
        }
    }

    /// HAProxy's rule: the last ACK of the handshake waits (`TCP_QUICKACK` off before
    /// `connect()`) when nothing follows the connect or the check sends first. The ACK then
    /// leaves with the check's first bytes; and a plain connect check, which resets its
    /// connection at once, never completes the handshake on the server's side: the server's
    /// application never accepts it (PostgreSQL logs no "incomplete startup packet"). When
    /// the server speaks first it needs the ACK to accept, so it goes out at once.
    pub(crate) fn delays_ack(self) -> bool {
        matches!(self, AfterConnect::Nothing | AfterConnect::Send)
    }
}

/// A TCP connect to `addr` from `source` when given, with the handshake's last ACK held back
/// as `after` says ([`AfterConnect::delays_ack`]).
async fn connect(
    addr: SocketAddr,
    (source, ports): (Option<&Source>, Option<&Arc<PortPool>>),
    after: AfterConnect,
) -> std::io::Result<(TcpStream, Option<PortLease>)> {
    use std::os::fd::AsFd as _;
    let s = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if after.delays_ack() {
        // As HAProxy, a refusal is ignored: the check works, the server just sees it.
        let _ = sockopt::set_quickack(s.as_fd(), false);
    }
    let lease = match source {
        // No client: a check binds the plain source, never a `usesrc` address.
        Some(src) => sockopt::bind_source(s.as_fd(), src, addr, ports, None)?,
        None => None,
    };
    Ok((s.connect(addr).await?, lease))
}

/// Opens a check connection as `rule` says: TCP to its `addr`/`port` over the target's
/// (bounded by `connect_timeout` and the whole-check deadline; the last ACK of the handshake
/// held back as `after` says, see [`AfterConnect::delays_ack`]), a PROXY header when the rule
/// or the server's checks ask for one, then TLS when the rule asks (`ssl`) or when it is the
/// default connect of a `check-ssl` server: HAProxy sends the PROXY header first, in clear,
/// then starts the handshake. A failed handshake is L6RSP (L6TOUT when it timed out), as
/// HAProxy reports it. The connection ends with a FIN when the rule has `linger`, else with
/// a reset (see [`CheckConn`]).
pub(crate) async fn open(
    rule: &ConnectRule,
    after: AfterConnect,
    t: &Target,
    whole: Instant,
) -> Result<CheckConn, Outcome> {
    let addr = SocketAddr::new(
        rule.addr.unwrap_or(t.addr.ip()),
        rule.port.unwrap_or(t.addr.port()),
    );
    let bound = (Instant::now() + t.connect_timeout).min(whole);
    let source = (t.source.as_ref(), t.source_ports.as_ref());
    let (mut tcp, port) = match timeout_at(bound, connect(addr, source, after)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(Outcome::new(false, "L4CON", io_text(&e))),
        Err(_) => return Err(Outcome::new(false, "L4TOUT", "")),
    };
    let wrap = |conn| CheckConn {
        conn,
        linger: rule.linger,
        peer_closed: false,
        _port: port,
    };
    if let Some(v) = connect_proxy(rule, t) {
        let header = check_proxy_header(&tcp, v);
        let failed = match timeout_at(whole, tcp.write_all(&header)).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(Outcome::new(false, "L4CON", io_text(&e))),
            Err(_) => Some(Outcome::new(false, "L4TOUT", "")),
        };
        if let Some(o) = failed {
            drop(wrap(Conn::Plain(tcp)));
            return Err(o);
        }
    }
    if !(rule.ssl || (rule.default && t.check_ssl)) {
        return Ok(wrap(Conn::Plain(tcp)));
    }
    let tls = match &t.tls {
        Some(Ok(tls)) => tls.clone(),
        Some(Err(e)) => {
            drop(wrap(Conn::Plain(tcp)));
            return Err(Outcome::new(false, "L6RSP", e.to_string()));
        }
        None => {
            drop(wrap(Conn::Plain(tcp)));
            return Err(Outcome::new(
                false,
                "L6RSP",
                "no TLS settings for this check",
            ));
        }
    };
    let sni = rule.sni.as_deref();
    let alpn = rule.alpn.as_deref();
    let deadline = read_deadline(t, whole);
    match timeout_at(deadline, tls.connect(tcp, addr.ip(), sni, alpn)).await {
        Ok(Ok(c)) => Ok(wrap(Conn::Tls(Box::new(c)))),
        Ok(Err(e)) => Err(Outcome::new(
            false,
            "L6RSP",
            format!("SSL handshake failure ({})", io_text(&e)),
        )),
        Err(_) => Err(Outcome::new(false, "L6TOUT", "SSL handshake timeout")),
    }
}

/// The PROXY header a connect sends, if any: the rule's `send-proxy` (the server's version,
/// else v1), or for the default connect (implicit or `default`) the server's check setting.
fn connect_proxy(rule: &ConnectRule, t: &Target) -> Option<ProxyVersion> {
    if rule.send_proxy {
        Some(t.proxy_version)
    } else if rule.default {
        t.send_proxy
    } else {
        None
    }
}

/// The PROXY header of a check, as HAProxy sends it for a connection it starts: v1 with the
/// check connection's own addresses, v2 `LOCAL`.
fn check_proxy_header(s: &TcpStream, v: ProxyVersion) -> Vec<u8> {
    match v {
        ProxyVersion::V1 => {
            let addrs = s.local_addr().ok().zip(s.peer_addr().ok());
            crate::proxy_proto::v1(addrs)
        }
        ProxyVersion::V2 => crate::proxy_proto::v2(None, &crate::proxy_proto::V2Extras::default()),
    }
}

/// The connect of a check kind without rules (mysql, pgsql, httpchk): the server's check
/// address, TLS with `check-ssl`, the server's PROXY header for checks. `linger`: HAProxy builds
/// `mysql-check` and `pgsql-check` as `tcp-check connect default linger`.
pub(crate) fn default_connect(linger: bool) -> ConnectRule {
    ConnectRule {
        default: true,
        linger,
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

/// A check's connection, closed the way HAProxy closes one when the check ends
/// (`sc_conn_drain_and_shut`, then close): what the server sent and nobody read is drained
/// first (unread bytes would turn any close into a reset), then the close is a FIN when the
/// connect rule asked for `linger` or the server has closed its side already, and a reset
/// otherwise (HAProxy's `FD_LINGER_RISK`, cleared only by `linger` or by reading the server's
/// FIN). `mysql-check` and `pgsql-check` connect with `linger`, as HAProxy builds them.
///
/// Over TLS, the drain reads the raw socket (the records are not decrypted: they are thrown
/// away all the same), and a close with `linger` sends a `close_notify` first.
pub(crate) struct CheckConn {
    conn: Conn,
    linger: bool,
    peer_closed: bool,
    /// The port of the server's source range the check is bound to, given back after the
    /// connection closes (the field drops after `Drop::drop` closed it).
    _port: Option<PortLease>,
}

impl CheckConn {
    /// Writes all of `data`, bounded by `deadline`.
    pub(crate) async fn send(&mut self, data: &[u8], deadline: Instant) -> Result<(), SendError> {
        let sent = timeout_at(deadline, async {
            self.conn.write_all(data).await?;
            // TLS holds what it encrypted until flushed.
            self.conn.flush().await
        });
        match sent.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SendError::Io(e)),
            Err(_) => Err(SendError::Timeout),
        }
    }

    /// Reads what fits into `buf` (capped at [`BUF_CAP`]). `Ok(true)` = no more data will come
    /// (peer closed or buffer full: HAProxy's "last read"); `Err(())` = `deadline` passed.
    pub(crate) async fn fill(&mut self, buf: &mut Vec<u8>, deadline: Instant) -> Result<bool, ()> {
        let room = BUF_CAP.saturating_sub(buf.len());
        if room == 0 {
            return Ok(true);
        }
        let mut tmp = vec![0u8; room.min(4096)];
        match timeout_at(deadline, self.conn.read(&mut tmp)).await {
            Ok(Ok(0) | Err(_)) => {
                self.peer_closed = true;
                Ok(true)
            }
            Ok(Ok(n)) => {
                buf.extend_from_slice(&tmp[..n]);
                Ok(buf.len() >= BUF_CAP)
            }
            Err(_) => Err(()),
        }
    }
}

impl Drop for CheckConn {
    /// Ends the check's connection as HAProxy does (see [`CheckConn`]), however the check ended.
    fn drop(&mut self) {
        let mut tmp = [0u8; 4096];
        // Bounded: a server streaming without end is reset rather than read forever.
        for _ in 0..16 {
            match self.conn.tcp().try_read(&mut tmp) {
                Ok(0) => {
                    self.peer_closed = true;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // Reset by the server: nothing left to close gently.
                    self.peer_closed = true;
                    break;
                }
            }
        }
        if self.linger {
            self.conn.send_close_notify();
        } else if !self.peer_closed {
            let _ = socket2::SockRef::from(self.conn.tcp()).set_linger(Some(Duration::ZERO));
        }
    }
}

/// Why a check could not send.
#[derive(Debug)]
pub(crate) enum SendError {
    Io(std::io::Error),
    Timeout,
}

async fn run_script(steps: &[Step], l7: bool, t: &Target, started: Instant) -> Outcome {
    let whole = started + t.inter;
    let mut deadline = whole;
    // Dropping a connection closes it as HAProxy does (see `CheckConn`).
    let mut conn: Option<CheckConn> = None;
    let mut buf: Vec<u8> = Vec::new();
    let mut last = false;
    let mut ok = if l7 { L7.ok } else { "L4OK" };
    for (i, step) in steps.iter().enumerate() {
        let n = i + 1;
        match step {
            Step::Connect(rule) => {
                // The previous connection, if any, closes first.
                drop(conn.take());
                match open(rule, AfterConnect::of(steps.get(i + 1)), t, whole).await {
                    Ok(c) => conn = Some(c),
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
                let Some(c) = conn.as_mut() else {
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
                match c.send(data, deadline).await {
                    Ok(()) => {}
                    Err(SendError::Io(e)) => {
                        return Outcome::new(
                            false,
                            "L7RSP",
                            format!(
                                "TCPCHK got an error while sending data at step {n}: {}",
                                io_text(&e)
                            ),
                        )
                    }
                    Err(SendError::Timeout) => {
                        return Outcome::new(
                            false,
                            "L7TOUT",
                            format!("TCPCHK timeout while sending data at step {n}"),
                        )
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
                let Some(c) = conn.as_mut() else {
                    return Outcome::new(false, statuses.err, format!("no connection at step {n}"));
                };
                ok = statuses.ok;
                loop {
                    let enough = min_recv.is_none_or(|m| buf.len() >= m as usize);
                    if enough || last {
                        let found = enough && matcher.matches(&buf);
                        if found != *negate {
                            break;
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
                            return Outcome::new(false, statuses.err, info);
                        }
                    }
                    let Ok(l) = c.fill(&mut buf, deadline).await else {
                        return Outcome::new(
                            false,
                            statuses.tout,
                            format!("at step {n} of tcp-check (expect {text})"),
                        );
                    };
                    last = l;
                }
            }
        }
    }
    drop(conn);
    let info = if ok == "L4OK" { "" } else { "(tcp-check)" };
    Outcome::new(true, ok, info)
}

/// Reads until `buf` holds a whole MySQL packet at `at`; returns its payload range.
async fn mysql_read_packet(
    s: &mut CheckConn,
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
        match s.fill(buf, deadline).await {
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
    // HAProxy builds mysql-check as `tcp-check connect default linger`: a FIN, no reset. With
    // a user the check sends first, else the server's greeting comes first.
    let after = if has_user {
        AfterConnect::Send
    } else {
        AfterConnect::Other
    };
    let mut s = match open(&default_connect(true), after, t, whole).await {
        Ok(s) => s,
        Err(o) => return o,
    };
    let deadline = read_deadline(t, whole);
    if has_user {
        // Sent at once, without waiting for the greeting, as HAProxy does.
        match s.send(packet, deadline).await {
            Ok(()) => {}
            Err(SendError::Io(e)) => return Outcome::new(false, "L7RSP", io_text(&e)),
            Err(SendError::Timeout) => return Outcome::new(false, "L7TOUT", ""),
        }
    }
    let mut buf = Vec::new();
    let (a, b) = match mysql_read_packet(&mut s, &mut buf, 0, deadline).await {
        Ok(r) => r,
        Err(o) => return o,
    };
    let greet = &buf[a..b];
    if greet.first() == Some(&0xff) {
        return mysql_error(greet);
    }
    // Protocol version byte, then the NUL-terminated server version.
    let version = greet
        .get(1..)
        .map(|v| v.split(|&c| c == 0).next().unwrap_or_default())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    if has_user {
        let (c, d) = match mysql_read_packet(&mut s, &mut buf, b, deadline).await {
            Ok(r) => r,
            Err(o) => return o,
        };
        if buf[c..d].first() == Some(&0xff) {
            return mysql_error(&buf[c..d]);
        }
    }
    Outcome::new(true, "L7OK", version)
}

async fn run_pgsql(packet: &[u8], t: &Target, started: Instant) -> Outcome {
    let whole = started + t.inter;
    // HAProxy builds pgsql-check as `tcp-check connect default linger`: PostgreSQL logs each
    // reset ("could not receive data from client: Connection reset by peer"), never a FIN.
    let mut s = match open(&default_connect(true), AfterConnect::Send, t, whole).await {
        Ok(s) => s,
        Err(o) => return o,
    };
    let deadline = read_deadline(t, whole);
    match s.send(packet, deadline).await {
        Ok(()) => {}
        Err(SendError::Io(e)) => return Outcome::new(false, "L7RSP", io_text(&e)),
        Err(SendError::Timeout) => return Outcome::new(false, "L7TOUT", ""),
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
        match s.fill(&mut buf, deadline).await {
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

#[cfg(test)]
#[path = "probe_tests.rs"]
pub(super) mod tests;
