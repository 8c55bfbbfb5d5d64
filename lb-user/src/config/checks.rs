//! How a backend's servers are health-checked: the check method (`option *-check`,
//! `tcp-check`, `http-check`, external checks) and a server's check and agent parameters.
//! Part of the validated configuration ([`super::model`]).

use std::time::Duration;

/// The health-check method of a backend.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CheckKind {
    /// Plain TCP connect (`check` alone, or `option tcp-check` without rules).
    #[default]
    Connect,
    /// `option tcp-check` with `tcp-check` rules, in order. A list that does not start with
    /// `connect` gets an implicit one.
    TcpCheck(Vec<TcpCheckRule>),
    /// `option mysql-check [user U [post-41|pre-41|post-80]]`.
    Mysql {
        user: Option<String>,
        version: MysqlVersion,
    },
    /// `option redis-check`: `PING`, expect `+PONG`.
    Redis,
    /// `option pgsql-check user U`.
    Pgsql { user: String },
    /// `option ldap-check`: an anonymous LDAP v3 bind must succeed.
    Ldap,
    /// `option httpchk [METH] [URI] [VER]` with `http-check connect|send|expect` and
    /// `http-check disable-on-404`.
    Http(Box<HttpCheck>),
    /// `option ssl-hello-chk`: an `SSLv3` client hello; any TLS record back (handshake or
    /// alert) passes.
    SslHello,
    /// `option external-check`: run `external-check command`.
    External,
}

/// MySQL client protocol of `option mysql-check user U VERSION`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MysqlVersion {
    /// `post-41` (the default): 4.1+ handshake response.
    #[default]
    Post41,
    /// `pre-41`: the old 3.x handshake response.
    Pre41,
    /// `post-80`: 4.1 handshake naming `mysql_native_password` (MySQL 8 servers).
    Post80,
}

/// `option httpchk` and the `http-check` lines that shape it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpCheck {
    /// `http-check connect ...`: where and how to connect; `None` = the default connect (the
    /// server's check address, TLS with `check-ssl`).
    pub connect: Option<ConnectRule>,
    /// Method (`option httpchk` or `http-check send meth`). Default `OPTIONS`.
    pub method: String,
    /// URI. Default `/`.
    pub uri: LogFormat,
    /// HTTP version. Default `HTTP/1.0`.
    pub version: String,
    /// `http-check send hdr NAME VALUE`, in order.
    pub headers: Vec<(String, String)>,
    /// `http-check send body STR`.
    pub body: String,
    /// `http-check expect`; `None` = any 2xx or 3xx status.
    pub expect: Option<HttpExpect>,
    /// `http-check disable-on-404`: a 404 from a server that is UP sets it NOLB.
    pub disable_on_404: bool,
}

/// A log-format string of a health check (`uri-lf`): text and the sample fetches a check
/// has (`%[srv_name]`, `%[srv_id]`, `%[be_name]`, `%[be_id]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogFormat(pub Vec<LfPart>);

/// One piece of a check's log-format string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LfPart {
    Text(String),
    SrvName,
    SrvId,
    BeName,
    BeId,
}

impl LogFormat {
    /// Plain text.
    #[must_use]
    pub fn text(s: &str) -> Self {
        Self(vec![LfPart::Text(s.to_owned())])
    }
}

/// `tcp-check connect` / `http-check connect` options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectRule {
    /// `port N`: else the server's check port.
    pub port: Option<u16>,
    /// `addr A`: else the server's check address.
    pub addr: Option<std::net::IpAddr>,
    /// `linger`: close gracefully (FIN) instead of with a reset.
    pub linger: bool,
    /// `send-proxy`: start with a PROXY header (the server's version, v1 by default), before
    /// the TLS handshake when there is one.
    pub send_proxy: bool,
    /// `ssl`: TLS, with the server's check TLS settings.
    pub ssl: bool,
    /// `sni NAME`: over the server's `check-sni`.
    pub sni: Option<String>,
    /// `alpn LIST`: over the server's `check-alpn`.
    pub alpn: Option<Vec<String>>,
    /// `default`: the server's check settings apply (`check-ssl`, `check-sni`, a PROXY header
    /// when the server's checks send one, ...).
    pub default: bool,
}

/// One `tcp-check` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpCheckRule {
    /// `tcp-check connect [port N] [addr A] [send-proxy] [linger] [ssl] [sni S] [alpn A]
    /// [default]`.
    Connect(ConnectRule),
    /// `tcp-check send STR` / `send-binary HEX`: the bytes to send.
    Send(Vec<u8>),
    /// `tcp-check expect [min-recv N] [!] TYPE PATTERN`.
    Expect {
        /// Wait for at least this many bytes before matching.
        min_recv: Option<u32>,
        /// `!`: the rule passes when the pattern does not match.
        negate: bool,
        pattern: ExpectPattern,
    },
}

/// What `tcp-check expect` matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpectPattern {
    /// `string`: substring anywhere in the data received so far.
    String(Vec<u8>),
    /// `rstring`: regex over the data (validated at load).
    Rstring(String),
    /// `binary`: byte substring (written as hex).
    Binary(Vec<u8>),
    /// `rbinary`: regex over the data as uppercase hex.
    Rbinary(String),
}

/// `http-check expect [!] status|string|rstring PATTERN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpExpect {
    pub negate: bool,
    pub kind: HttpExpectKind,
}

/// Match type of `http-check expect`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpExpectKind {
    /// `status CODE[,CODE|LO-HI...]`: the status code is one of these.
    Status(Vec<(u16, u16)>),
    /// `rstatus REGEX` on the status code text.
    Rstatus(String),
    /// `string S`: substring of the body.
    String(String),
    /// `rstring REGEX` over the body.
    Rstring(String),
}

/// `external-check command|path`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExternalCheck {
    /// `external-check command PATH`: the program to run.
    pub command: Option<String>,
    /// `external-check path PATH`: `PATH` of its environment (default: empty, as HAProxy).
    pub path: Option<String>,
}

/// `on-error` of a server with `observe layer4`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnError {
    /// Switch to `fastinter` for the next checks (HAProxy's default).
    #[default]
    Fastinter,
    /// Count as one failed check.
    FailCheck,
    /// Count as failed checks until one failure remains before DOWN.
    SuddenDeath,
    /// Mark DOWN at once.
    MarkDown,
}

/// Health-check settings of one server (`server`/`default-server` keywords).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthParams {
    /// `check`: the server is health checked.
    pub check: bool,
    /// `inter`: interval between checks while UP. Default 2 s.
    pub inter: Duration,
    /// `fastinter`: interval while changing state. Default `inter`.
    pub fastinter: Option<Duration>,
    /// `downinter`: interval while fully DOWN. Default `inter`.
    pub downinter: Option<Duration>,
    /// `rise`: consecutive successes to become UP. Default 2.
    pub rise: u32,
    /// `fall`: consecutive failures to become DOWN. Default 3.
    pub fall: u32,
    /// `addr`: check this address instead of the server's.
    pub addr: Option<std::net::IpAddr>,
    /// `slowstart`: after DOWN -> UP, the weight ramps up over this time. `None` = no ramp.
    pub slowstart: Option<Duration>,
    /// `on-marked-down shutdown-sessions`.
    pub shutdown_on_down: bool,
    /// `on-marked-up shutdown-backup-sessions`.
    pub shutdown_backup_on_up: bool,
    /// `observe layer4`: count failed connects of real traffic.
    pub observe_layer4: bool,
    /// `error-limit`: consecutive observed errors that trigger `on-error`. Default 10.
    pub error_limit: u32,
    /// `on-error`. Default `fastinter`.
    pub on_error: OnError,
    /// `agent-check` and its `agent-*` settings.
    pub agent: AgentParams,
    /// `check-ssl` and the check's own TLS settings (`check-sni`, `check-alpn`).
    pub tls: CheckTls,
}

/// TLS of a server's health check (`check-ssl`), as HAProxy's check connection uses it; its
/// trust (`verify`, `ca-file`, `verifyhost`) is the server's ([`crate::config::ServerTls`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckTls {
    /// The check runs over TLS: `check-ssl`, or the server's `ssl` when neither `port` nor
    /// `addr` moves the check elsewhere and there is no `no-check-ssl` (HAProxy's rule).
    pub enabled: bool,
    /// `check-sni NAME`: the SNI sent (and, with `verify required`, the name checked).
    pub sni: Option<String>,
    /// `check-alpn LIST`: the protocols offered, in order.
    pub alpn: Vec<String>,
}

/// HAProxy's auxiliary agent check (`agent-check`): a TCP connect to an agent that answers one
/// line of words (`75%`, `drain`, `down#why`, `maxconn:30`...) changing the server's weight,
/// admin state, health and maxconn. Runs independently of the regular check (`check`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentParams {
    /// `agent-check` (`no-agent-check` undoes it). Needs `port`.
    pub enabled: bool,
    /// `agent-port`: where the agent listens. Required with `agent-check`.
    pub port: Option<u16>,
    /// `agent-addr`: the agent's address. Default: the server's address.
    pub addr: Option<std::net::IpAddr>,
    /// `agent-inter`: interval between agent checks. Default: the server's `inter` (2 s).
    pub inter: Option<Duration>,
    /// `agent-send`: bytes sent once connected (config escapes such as `\n` already applied).
    pub send: Option<Vec<u8>>,
}

impl Default for HealthParams {
    fn default() -> Self {
        Self {
            check: false,
            inter: Duration::from_secs(2),
            fastinter: None,
            downinter: None,
            rise: 2,
            fall: 3,
            addr: None,
            slowstart: None,
            shutdown_on_down: false,
            shutdown_backup_on_up: false,
            observe_layer4: false,
            error_limit: 10,
            on_error: OnError::Fastinter,
            agent: AgentParams::default(),
            tls: CheckTls::default(),
        }
    }
}
