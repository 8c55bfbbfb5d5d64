//! The termination state codes of a session's line (`%ts`; the line itself is a
//! [`crate::log_format::LogFormat`]: `option tcplog`'s or the frontend's `log-format`), the
//! line for a connection that never became a session, and the default `Connect from` line.

use std::net::SocketAddr;
use std::sync::OnceLock;

use super::time::LocalTime;
use crate::dataplane::FlowEnd;

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
    /// The client closed while its connection waited in the queue, with `option
    /// abortonclose`: `CQ`.
    ClientQueueAbort,
    /// The client closed while lb connected to its server, with `option abortonclose`: `CC`.
    ClientConnectAbort,
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
                // A handed-off flow is logged by the process that took it.
                FlowEnd::Closed | FlowEnd::HandedOff => "--",
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
            Ending::ClientQueueAbort => "CQ",
            Ending::ClientConnectAbort => "CC",
        }
    }
}

/// `%ci:%cp`: IPv6 without brackets, as HAProxy prints it.
pub fn client_addr(a: &SocketAddr) -> String {
    format!("{}:{}", a.ip(), a.port())
}

/// The host's name (`%H`), read once.
pub fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(crate::outside::hostname)
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
    use crate::log_format::{tcplog, Data};

    /// HAProxy's documented example line's session (`doc/configuration.txt`, 8.2.2).
    fn session() -> Data<'static> {
        let at = LocalTime {
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
        };
        Data {
            client: "10.0.1.8:37336".parse().unwrap(),
            frontend_addr: None,
            backend_src: None,
            server_addr: None,
            accepted: at.stamp(),
            frontend: "master-tcp-node",
            backend: "master-tcp-node",
            server: Some("master"),
            th: 0,
            tw: Some(1),
            tc: Some(0),
            tt: 5,
            bytes_in: 0,
            bytes_out: 3200,
            term: Ending::Flow(FlowEnd::Closed, Killer::Admin).code(),
            actconn: 1,
            feconn: 1,
            beconn: 0,
            srvconn: 0,
            retries: 0,
            redispatched: false,
            srv_queue: 0,
            backend_queue: 0,
            counter: 0,
            log_count: 0,
            pid: 1,
            hostname: "",
            captures: &[],
            samples: &[],
            asap: false,
            ssl: None,
        }
    }

    #[test]
    fn haproxys_documented_example() {
        assert_eq!(
            tcplog().render(&session()),
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
        s.term = Ending::NoServer.code();
        s.client = "[::1]:4000".parse().unwrap();
        s.retries = 3;
        s.redispatched = true;
        assert_eq!(
            tcplog().render(&s),
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
