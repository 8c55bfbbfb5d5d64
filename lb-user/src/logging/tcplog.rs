//! What a session's log line says (`option tcplog`, or a `log-format` of the frontend: both
//! render through [`crate::log_format`]), its termination state codes, and the default
//! `Connect from` line.

use std::net::SocketAddr;
use std::sync::OnceLock;

use super::time::LocalTime;
use crate::dataplane::FlowEnd;
use crate::log_format::{Data, LogFormat};

/// How a session ended, for the two-character termination state `%ts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The data phase ended this way.
    Flow(FlowEnd, Killer),
    /// No usable server (`<NOSRV>`): `SC`, as HAProxy with every server down.
    NoServer,
    /// `timeout queue` struck: `sQ`.
    QueueTimeout,
    /// The queue was at its `maxqueue` limit: `PQ` (aborted by the proxy by a limit).
    QueueFull,
    /// Every connect attempt failed, the last one refused or reset: `SC`.
    ConnectFailed,
    /// Every connect attempt failed, the last one by `timeout connect`: `sC`.
    ConnectTimeout,
    /// Closed by a `tcp-request content` rule (`reject`, `silent-drop`): `PR`.
    Denied,
    /// Closed by a `tcp-response content` rule (`reject`, `silent-drop`): `PD`.
    DeniedResponse,
    /// The client was silent longer than `timeout client` while rules waited for its bytes:
    /// `cR`.
    ClientRequestTimeout,
    /// The client reset while rules waited for its bytes: `CR`.
    ClientRequestAbort,
}

/// Who ended a killed flow ([`FlowEnd::Killed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Killer {
    /// An operator (`shutdown sessions server`): `K`.
    Admin,
    /// The server was marked DOWN with `on-marked-down shutdown-sessions`: `D`.
    ServerDown,
    /// A backup's flow closed by `on-marked-up shutdown-backup-sessions`: `U`.
    BackupOff,
}

impl Ending {
    /// HAProxy's `%ts` for this ending (tcp mode: cause, then phase).
    pub fn code(self) -> &'static str {
        match self {
            Ending::Flow(end, killer) => match end {
                FlowEnd::Closed => "--",
                FlowEnd::ClientReset => "CD",
                FlowEnd::ServerReset => "SD",
                FlowEnd::ClientTimeout => "cD",
                FlowEnd::ServerTimeout => "sD",
                // A failed syscall on our side: an internal error during the data phase.
                FlowEnd::LocalError => "ID",
                FlowEnd::Killed => match killer {
                    Killer::Admin => "KD",
                    Killer::ServerDown => "DD",
                    Killer::BackupOff => "UD",
                },
            },
            Ending::NoServer | Ending::ConnectFailed => "SC",
            Ending::QueueTimeout => "sQ",
            Ending::QueueFull => "PQ",
            Ending::ConnectTimeout => "sC",
            Ending::Denied => "PR",
            Ending::DeniedResponse => "PD",
            Ending::ClientRequestTimeout => "cR",
            Ending::ClientRequestAbort => "CR",
        }
    }
}

/// Everything one session's line can say.
#[derive(Clone, Debug)]
pub struct Session<'a> {
    pub client: SocketAddr,
    /// `%fi:%fp`: the address the client reached (a PROXY header's destination when one came).
    pub local: Option<SocketAddr>,
    /// `%bi:%bp`: lb's end of the server connection.
    pub backend_src: Option<SocketAddr>,
    /// `%si:%sp`: the server's address.
    pub server_addr: Option<SocketAddr>,
    /// Accept date, local time.
    pub accepted: LocalTime,
    pub frontend: &'a str,
    pub backend: &'a str,
    /// `None` = `<NOSRV>`.
    pub server: Option<&'a str>,
    /// `%Tw`: ms waiting in the queue; `None` = -1 (never left it).
    pub tw: Option<u64>,
    /// `%Tc`: ms to connect, retries included; `None` = -1 (never connected).
    pub tc: Option<u64>,
    /// `%Tt`: ms from accept to the end.
    pub tt: u64,
    /// `%B`: bytes server -> client.
    pub bytes_out: u64,
    /// `%U`: bytes client -> server.
    pub bytes_in: u64,
    pub ending: Ending,
    /// `%ac`: process connections.
    pub actconn: u32,
    /// `%fc`: frontend connections.
    pub feconn: u32,
    /// `%bc`: backend connections.
    pub beconn: u64,
    /// `%sc`: server connections.
    pub srvconn: u32,
    /// `%rc`: connect retries.
    pub retries: u32,
    /// Whether the last retry went to another server (`%rc` gets a `+`).
    pub redispatched: bool,
    /// `%sq`: position in the server queue.
    pub srv_queue: u64,
    /// `%bq`: position in the backend queue.
    pub backend_queue: u64,
    /// `%rt`: the session's number in the process.
    pub counter: u64,
    /// `tcp-request content capture` slots (`%hr`, `%hrl`).
    pub captures: &'a [Option<Vec<u8>>],
    /// The values of the format's `%[...]` expressions, evaluated at the session's end.
    pub samples: &'a [Option<Vec<u8>>],
}

/// `%ci:%cp`: IPv6 without brackets, as HAProxy prints it.
pub fn client_addr(a: &SocketAddr) -> String {
    format!("{}:{}", a.ip(), a.port())
}

/// The host's name (`%H`), read once.
fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(crate::outside::hostname)
}

impl Session<'_> {
    /// The line in `format`, without syslog header; `log_count` is the frontend's `%lc`.
    pub fn render(&self, format: &LogFormat, log_count: u64) -> String {
        let u = u64::from;
        format.render(&Data {
            client: self.client,
            frontend_addr: self.local,
            backend_src: self.backend_src,
            server_addr: self.server_addr,
            accepted: self.accepted.stamp(),
            frontend: self.frontend,
            backend: self.backend,
            server: self.server,
            th: 0,
            tw: self.tw,
            tc: self.tc,
            tt: self.tt,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            term: self.ending.code(),
            actconn: u(self.actconn),
            feconn: u(self.feconn),
            beconn: self.beconn,
            srvconn: u(self.srvconn),
            retries: self.retries,
            redispatched: self.redispatched,
            srv_queue: self.srv_queue,
            backend_queue: self.backend_queue,
            counter: self.counter,
            log_count,
            pid: std::process::id(),
            hostname: hostname(),
            captures: self.captures,
            samples: self.samples,
        })
    }

    /// The `option tcplog` line, without syslog header.
    pub fn line(&self) -> String {
        self.render(&crate::log_format::tcplog(), 0)
    }
}

/// HAProxy's line for a connection closed before its session started (a missing or bad PROXY
/// header): `IP:PORT [DATE] FRONTEND/BIND: message`, `BIND` being the bind's `name` or its
/// number in the frontend (from 1).
pub fn embryonic_line(
    client: &SocketAddr,
    accepted: &LocalTime,
    frontend: &str,
    bind: &str,
    msg: &str,
) -> String {
    format!(
        "{} [{}] {frontend}/{bind}: {msg}",
        client_addr(client),
        accepted.accept_date()
    )
}

/// HAProxy's default log line for a proxy with log targets and no `option tcplog`, emitted
/// at accept: `Connect from IP:PORT to IP:PORT (frontend/TCP)`.
pub fn connect_line(client: &SocketAddr, local: &SocketAddr, frontend: &str) -> String {
    format!(
        "Connect from {} to {} ({frontend}/TCP)",
        client_addr(client),
        client_addr(local)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session<'static> {
        Session {
            client: "10.0.1.8:37336".parse().unwrap(),
            local: None,
            backend_src: None,
            server_addr: None,
            accepted: LocalTime {
                year: 2020,
                month: 8,
                day: 25,
                hour: 18,
                min: 24,
                sec: 2,
                millis: 387,
                micros: 387_000,
                gmtoff: 0,
                epoch: 1_598_379_842,
            },
            frontend: "master-tcp-node",
            backend: "master-tcp-node",
            server: Some("master"),
            tw: Some(1),
            tc: Some(0),
            tt: 5,
            bytes_out: 3200,
            bytes_in: 0,
            ending: Ending::Flow(FlowEnd::Closed, Killer::Admin),
            actconn: 1,
            feconn: 1,
            beconn: 0,
            srvconn: 0,
            retries: 0,
            redispatched: false,
            srv_queue: 0,
            backend_queue: 0,
            counter: 0,
            captures: &[],
            samples: &[],
        }
    }

    #[test]
    fn haproxys_documented_example() {
        assert_eq!(
            session().line(),
            "10.0.1.8:37336 [25/Aug/2020:18:24:02.387] master-tcp-node master-tcp-node/master \
             1/0/5 3200 -- 1/1/0/0/0 0/0"
        );
    }

    #[test]
    fn nosrv_unreached_phases_and_redispatch() {
        let mut s = session();
        s.server = None;
        s.tw = None;
        s.tc = None;
        s.ending = Ending::NoServer;
        s.client = "[::1]:4000".parse().unwrap();
        s.retries = 3;
        s.redispatched = true;
        assert_eq!(
            s.line(),
            "::1:4000 [25/Aug/2020:18:24:02.387] master-tcp-node master-tcp-node/<NOSRV> \
             -1/-1/5 3200 SC 1/1/0/0/+3 0/0"
        );
    }

    #[test]
    fn termination_codes() {
        let f = |e| Ending::Flow(e, Killer::Admin).code();
        assert_eq!(f(FlowEnd::ClientTimeout), "cD");
        assert_eq!(f(FlowEnd::ServerTimeout), "sD");
        assert_eq!(f(FlowEnd::ClientReset), "CD");
        assert_eq!(f(FlowEnd::ServerReset), "SD");
        assert_eq!(f(FlowEnd::Killed), "KD");
        assert_eq!(
            Ending::Flow(FlowEnd::Killed, Killer::ServerDown).code(),
            "DD"
        );
        assert_eq!(Ending::QueueTimeout.code(), "sQ");
        assert_eq!(Ending::ConnectTimeout.code(), "sC");
        assert_eq!(Ending::ConnectFailed.code(), "SC");
        assert_eq!(Ending::Denied.code(), "PR");
        assert_eq!(Ending::DeniedResponse.code(), "PD");
        assert_eq!(Ending::ClientRequestTimeout.code(), "cR");
    }

    #[test]
    fn connect_line_is_haproxys_default_format() {
        assert_eq!(
            connect_line(
                &"10.0.1.2:33312".parse().unwrap(),
                &"10.0.3.31:8012".parse().unwrap(),
                "www"
            ),
            "Connect from 10.0.1.2:33312 to 10.0.3.31:8012 (www/TCP)"
        );
    }
}
