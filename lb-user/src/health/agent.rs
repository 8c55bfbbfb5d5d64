//! HAProxy's agent check (`agent-check`): every `agent-inter`, connect to the server's agent,
//! send `agent-send`, read one line of words (`75%`, `maxconn:30`, `drain`, `down#why`...) and
//! apply them to the server's weight, maxconn, admin state and health. Runs beside the regular
//! check, on the same checker thread; an agent that cannot be reached changes nothing.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

use super::probe::{self, AfterConnect, Outcome, SendError, Target, BUF_CAP};
use super::{spread, Srv};
use crate::config::{Backend, ConnectRule, Server};
use crate::state::{self, printable, AgentVerdict, By, Change};
use crate::table::{AdminState, CheckResult, ServerCounters, ServerState};

/// HAProxy keeps a check's description in 128 bytes (`HCHK_DESC_LEN`); an agent's text is cut
/// there too, so a chatty agent costs no more in logs and stats.
const DESC_CAP: usize = 127;

/// One server's agent check.
pub(super) struct AgentJob {
    /// `agent-send` from the configuration.
    pub(super) send: Option<Vec<u8>>,
    /// Delay of the first check (staggered across servers).
    pub(super) first: Duration,
    pub(super) spread: u32,
}

/// `up` or `down`/`fail`/`stopped` in an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `up` (true) or one of the DOWN words.
    pub up: bool,
    /// The word as the agent wrote it (shown in `via agent : <word>`).
    pub word: String,
}

/// What one agent answer asks for. Words absent from the answer change nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// `ready`, `drain` or `maint`: the last one given.
    pub admin: Option<AdminState>,
    /// `N%`: the new weight (configured weight × N / 100), or why the word was refused.
    pub weight: Option<Result<u32, String>>,
    /// `maxconn:N`, or why it was refused.
    pub maxconn: Option<Result<u32, String>>,
    /// `up`, `down`, `fail`, `stopped`: the last one given.
    pub health: Option<Verdict>,
    /// The description after `#`.
    pub desc: String,
    /// The first word not understood (ignored, but reported).
    pub unknown: Option<String>,
}

/// Parses an agent's answer: its first line (up to CR or LF), words separated by spaces, tabs
/// or commas, in any order, case-insensitive; the last word of each kind wins; `#` starts the
/// description (HAProxy needs a separator before it; lb also takes `down#why`). Percentages
/// are taken against `initial_weight`, the server's configured weight.
pub fn parse(answer: &str, initial_weight: u32) -> Answer {
    let line = answer.split(['\r', '\n']).next().unwrap_or_default();
    let mut a = Answer::default();
    let mut rest = line;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        if let Some(desc) = rest.strip_prefix('#') {
            desc.trim().clone_into(&mut a.desc);
            break;
        }
        let end = rest.find([' ', '\t', ',', '#']).unwrap_or(rest.len());
        let word = &rest[..end];
        rest = &rest[end..];
        let is = |w: &str| word.eq_ignore_ascii_case(w);
        if is("up") || is("down") || is("fail") || is("stopped") {
            a.health = Some(Verdict {
                up: is("up"),
                word: word.to_owned(),
            });
        } else if is("ready") {
            a.admin = Some(AdminState::Ready);
        } else if is("drain") {
            a.admin = Some(AdminState::Drain);
        } else if is("maint") {
            a.admin = Some(AdminState::Maint);
        } else if word.starts_with(|c: char| c.is_ascii_digit()) && word.contains('%') {
            a.weight = Some(state::parse_weight(word, initial_weight).map_err(str::to_owned));
        } else if word
            .get(..8)
            .is_some_and(|p| p.eq_ignore_ascii_case("maxconn:"))
        {
            a.maxconn = Some(crate::server::parse_maxconn(&word[8..]));
        } else if a.unknown.is_none() {
            a.unknown = Some(word.to_owned());
        }
    }
    a
}

/// `text` cut to [`DESC_CAP`] bytes at a character boundary, control characters escaped.
fn cap(text: &str) -> String {
    let mut end = text.len().min(DESC_CAP);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    printable(&text[..end])
}

impl Answer {
    /// HAProxy's check result and description of this answer: `L7OK`/`L7STS` with
    /// `via agent : down (why)` when it gives a health word, else `CHECKED` (no status change)
    /// with the first unknown word or `warning` (a value that could not be applied).
    pub fn report(&self, warning: Option<&str>) -> (&'static str, String) {
        if let Some(h) = &self.health {
            // A DOWN keeps its own description; otherwise problems come first.
            let msg = if self.desc.is_empty() || h.up {
                self.unknown.as_deref().or(warning).unwrap_or(&self.desc)
            } else {
                &self.desc
            };
            let text = if msg.is_empty() {
                format!("via agent : {}", h.word)
            } else {
                format!("via agent : {} ({msg})", h.word)
            };
            (if h.up { "L7OK" } else { "L7STS" }, cap(&text))
        } else if let Some(u) = &self.unknown {
            ("CHECKED", cap(&format!("agent reports an error : {u}")))
        } else if let Some(w) = warning {
            ("CHECKED", cap(&format!("agent warns : {w}")))
        } else {
            ("CHECKED", String::new())
        }
    }
}

/// One agent check's network part: connect, send, read the answer's first line (up to CR/LF,
/// or what came before the agent closed). The read is capped at [`BUF_CAP`] bytes.
async fn fetch(t: &Target, send: Option<&[u8]>) -> Result<String, Outcome> {
    let whole = Instant::now() + t.inter;
    // HAProxy's agent check connects without `linger`: a reset unless the agent closed first.
    // With `agent-send` the check speaks first, else the agent does.
    let send = send.filter(|d| !d.is_empty());
    let after = if send.is_some() {
        AfterConnect::Send
    } else {
        AfterConnect::Other
    };
    let mut s = probe::open(&ConnectRule::default(), after, t, whole).await?;
    let deadline = probe::read_deadline(t, whole);
    if let Some(data) = send {
        match s.send(data, deadline).await {
            Ok(()) => {}
            Err(SendError::Io(e)) => return Err(Outcome::new(false, "L4CON", probe::io_text(&e))),
            Err(SendError::Timeout) => return Err(Outcome::new(false, "L7TOUT", "")),
        }
    }
    let mut buf = Vec::new();
    loop {
        let Ok(last) = s.fill(&mut buf, deadline).await else {
            return Err(Outcome::new(false, "L7TOUT", ""));
        };
        if let Some(end) = buf.iter().position(|&b| b == b'\n' || b == b'\r') {
            buf.truncate(end);
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
        if !last {
            continue;
        }
        return if buf.len() >= BUF_CAP {
            Err(Outcome::new(
                false,
                "L7RSP",
                format!("Ignoring incomplete line from agent (no end of line in {BUF_CAP} bytes)"),
            ))
        } else if buf.is_empty() {
            Err(Outcome::new(
                false,
                "L7RSP",
                "agent closed the connection without an answer",
            ))
        } else {
            // A last line without its newline still counts.
            Ok(String::from_utf8_lossy(&buf).into_owned())
        };
    }
}

/// `agent-inter`, else the server's `inter`.
pub(super) fn interval(conf: &Server) -> Duration {
    conf.health.agent.inter.unwrap_or(conf.health.inter)
}

/// The agent's target: `agent-addr` (else the server's current address), `agent-port` (as
/// configured, or as `set server` left them), `agent-inter` and the backend's timeouts.
/// `None` when there is nothing to connect to (no port, or a server whose name does not
/// resolve and no `agent-addr`).
fn target(
    be: &Backend,
    (conf, counters): (&Server, &ServerCounters),
    st: &ServerState,
) -> Option<Target> {
    let a = counters.agent_place(conf);
    let port = a.port?;
    if a.addr.is_none() && st.resolution_maint {
        return None;
    }
    let addr = SocketAddr::new(a.addr.unwrap_or(st.addr.ip()), port);
    Some(super::target(
        be,
        (conf, addr, counters),
        interval(conf),
        None,
        None,
    ))
}

/// The agent check loop of one server, until its checker thread stops. Unlike the regular
/// check it runs in maintenance too: the agent may bring the server back (`ready`).
pub(super) async fn run(srv: Rc<Srv>, job: AgentJob) {
    let mut kick = srv.counters.check_now.subscribe();
    let mut next = Instant::now() + job.first;
    loop {
        super::wait(next, &mut kick).await;
        let Some(st) = srv.state() else {
            return;
        };
        if st.agent_enabled {
            if let Some(t) = target(&srv.be, (&srv.conf, &srv.counters), &st) {
                check(&srv, &job, &t).await;
            }
        }
        next = Instant::now() + spread(interval(&srv.conf), job.spread);
    }
}

/// The verdict of one agent answer: what to apply (values that can't be applied left out, and
/// said in the report) and the agent's own result.
fn verdict(srv: &Srv, a: &Answer, duration: Duration) -> AgentVerdict {
    let mut warning = None;
    let weight = match &a.weight {
        Some(Ok(w)) => match state::check_weight(&srv.conf, &srv.be, *w) {
            Ok(()) => Some(*w),
            Err(e) => {
                warning = Some(e.to_string());
                None
            }
        },
        Some(Err(e)) => {
            warning = Some(e.clone());
            None
        }
        None => None,
    };
    let maxconn = match &a.maxconn {
        Some(Ok(m)) => Some(*m),
        Some(Err(e)) => {
            warning.get_or_insert(e.clone());
            None
        }
        None => None,
    };
    let (result, info) = a.report(warning.as_deref());
    let result = CheckResult::from_name(result).unwrap_or(CheckResult::Checked);
    AgentVerdict {
        admin: a.admin,
        weight,
        maxconn,
        up: a.health.as_ref().map(|h| h.up),
        report: state::CheckReport {
            passed: result != CheckResult::L7Sts,
            result,
            code: None,
            info,
            duration,
        },
    }
}

/// Runs one agent check and hands its answer (or its failure, which judges nothing) to the
/// state writer as one change.
async fn check(srv: &Rc<Srv>, job: &AgentJob, t: &Target) {
    let started = Instant::now();
    let runtime_send = srv.counters.agent_send.load_full();
    let send = runtime_send
        .as_deref()
        .map(Vec::as_slice)
        .or(job.send.as_deref());
    let reply = fetch(t, send).await;
    let duration = started.elapsed();
    // `disable agent` came while it ran: HAProxy ignores such an answer.
    if !srv.state().is_some_and(|s| s.agent_enabled) {
        return;
    }
    let v = match reply {
        Ok(line) => verdict(srv, &parse(&line, srv.conf.weight), duration),
        // Not reaching the agent is no verdict on the server: only the agent's status shows it.
        Err(o) => AgentVerdict {
            admin: None,
            weight: None,
            maxconn: None,
            up: None,
            report: state::CheckReport {
                passed: false,
                result: CheckResult::from_name(o.result).unwrap_or(CheckResult::SockErr),
                code: o.code,
                info: o.info,
                duration,
            },
        },
    };
    srv.report(Change::Agent(v), &By::Agent);
}

#[cfg(test)]
mod tests {
    use super::super::probe::tests::block_on;
    use super::*;

    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener};

    fn verdict(up: bool, word: &str) -> Verdict {
        Verdict {
            up,
            word: word.to_owned(),
        }
    }

    #[test]
    fn answers_to_actions() {
        // (answer, configured weight, expected actions)
        let table: Vec<(&str, u32, Answer)> = vec![
            ("", 10, Answer::default()),
            ("\n", 10, Answer::default()),
            (" \t,, \r\n", 10, Answer::default()),
            (
                "75%\n",
                100,
                Answer {
                    weight: Some(Ok(75)),
                    ..Answer::default()
                },
            ),
            (
                "50%",
                3,
                Answer {
                    weight: Some(Ok(1)),
                    ..Answer::default()
                },
            ),
            (
                "0%",
                3,
                Answer {
                    weight: Some(Ok(0)),
                    ..Answer::default()
                },
            ),
            (
                "200%",
                100,
                Answer {
                    weight: Some(Ok(200)),
                    ..Answer::default()
                },
            ),
            (
                "300%",
                100,
                Answer {
                    weight: Some(Err("Relative weight too large.".to_owned())),
                    ..Answer::default()
                },
            ),
            (
                "75%x",
                100,
                Answer {
                    weight: Some(Err(
                        "Empty weight string empty or preceded by garbage".to_owned()
                    )),
                    ..Answer::default()
                },
            ),
            (
                "maxconn:30",
                1,
                Answer {
                    maxconn: Some(Ok(30)),
                    ..Answer::default()
                },
            ),
            (
                "MAXCONN:0",
                1,
                Answer {
                    maxconn: Some(Ok(0)),
                    ..Answer::default()
                },
            ),
            (
                "maxconn:",
                1,
                Answer {
                    maxconn: Some(Err("Require <maxconn>.".to_owned())),
                    ..Answer::default()
                },
            ),
            (
                "maxconn:-3",
                1,
                Answer {
                    maxconn: Some(Err("maxconn string empty or preceded by garbage".to_owned())),
                    ..Answer::default()
                },
            ),
            (
                "ready",
                1,
                Answer {
                    admin: Some(AdminState::Ready),
                    ..Answer::default()
                },
            ),
            (
                "DRAIN",
                1,
                Answer {
                    admin: Some(AdminState::Drain),
                    ..Answer::default()
                },
            ),
            (
                "maint",
                1,
                Answer {
                    admin: Some(AdminState::Maint),
                    ..Answer::default()
                },
            ),
            (
                "up",
                1,
                Answer {
                    health: Some(verdict(true, "up")),
                    ..Answer::default()
                },
            ),
            (
                "Down",
                1,
                Answer {
                    health: Some(verdict(false, "Down")),
                    ..Answer::default()
                },
            ),
            (
                "fail",
                1,
                Answer {
                    health: Some(verdict(false, "fail")),
                    ..Answer::default()
                },
            ),
            (
                "stopped # going away \n",
                1,
                Answer {
                    health: Some(verdict(false, "stopped")),
                    desc: "going away".to_owned(),
                    ..Answer::default()
                },
            ),
            (
                "down#disk full",
                1,
                Answer {
                    health: Some(verdict(false, "down")),
                    desc: "disk full".to_owned(),
                    ..Answer::default()
                },
            ),
            (
                // HAProxy's own regression test answer: every kind of word, commas between.
                "75%,maxconn:30,maint,down\n",
                100,
                Answer {
                    admin: Some(AdminState::Maint),
                    weight: Some(Ok(75)),
                    maxconn: Some(Ok(30)),
                    health: Some(verdict(false, "down")),
                    ..Answer::default()
                },
            ),
            (
                // Spaces and tabs too; the last word of a kind wins.
                "up\t50% drain ready 10% down up",
                4,
                Answer {
                    admin: Some(AdminState::Ready),
                    weight: Some(Ok(0)),
                    health: Some(verdict(true, "up")),
                    ..Answer::default()
                },
            ),
            (
                // Only the first line counts.
                "up\r\ndown\n",
                1,
                Answer {
                    health: Some(verdict(true, "up")),
                    ..Answer::default()
                },
            ),
            (
                "hello world 50%",
                2,
                Answer {
                    weight: Some(Ok(1)),
                    unknown: Some("hello".to_owned()),
                    ..Answer::default()
                },
            ),
            (
                "%50 weight:3 upp",
                2,
                Answer {
                    unknown: Some("%50".to_owned()),
                    ..Answer::default()
                },
            ),
            (
                "#only a description",
                1,
                Answer {
                    desc: "only a description".to_owned(),
                    ..Answer::default()
                },
            ),
        ];
        for (input, w, want) in table {
            assert_eq!(parse(input, w), want, "answer {input:?}, weight {w}");
        }
    }

    #[test]
    fn garbage_and_huge_answers_are_bounded() {
        let garbage = String::from_utf8_lossy(&[0xff, 0xfe, b' ', 0, 7, b'u', b'p']).into_owned();
        let a = parse(&garbage, 1);
        assert_eq!(a.health, None, "`\\0\\x07up` is not `up`");
        assert!(a.unknown.is_some());
        let (result, info) = a.report(None);
        assert_eq!(result, "CHECKED");
        assert!(info.starts_with("agent reports an error : "), "{info}");
        assert!(
            !info.contains('\0'),
            "control characters are escaped: {info:?}"
        );

        let huge = format!("{} up", "x".repeat(100_000));
        let a = parse(&huge, 1);
        assert_eq!(a.health, Some(verdict(true, "up")));
        let (result, info) = a.report(None);
        assert_eq!(result, "L7OK");
        assert!(info.len() <= DESC_CAP + 20, "{} bytes", info.len());
        assert!(info.starts_with("via agent : up (xxx"), "{info}");
        // Cutting never splits a character.
        let wide = format!("down#{}", "é".repeat(200));
        let (_, info) = parse(&wide, 1).report(None);
        assert!(info.len() <= DESC_CAP);
    }

    #[test]
    fn reports_follow_haproxy() {
        let r = |s: &str, w: Option<&str>| parse(s, 100).report(w);
        assert_eq!(r("up", None), ("L7OK", "via agent : up".to_owned()));
        assert_eq!(r("down", None), ("L7STS", "via agent : down".to_owned()));
        assert_eq!(
            r("fail #disk full", None),
            ("L7STS", "via agent : fail (disk full)".to_owned())
        );
        // A DOWN keeps its description; an UP reports problems before it.
        assert_eq!(
            r("down junk #why", Some("w")),
            ("L7STS", "via agent : down (why)".to_owned())
        );
        assert_eq!(
            r("up junk #why", None),
            ("L7OK", "via agent : up (junk)".to_owned())
        );
        assert_eq!(
            r("up #why", Some("w")),
            ("L7OK", "via agent : up (w)".to_owned())
        );
        assert_eq!(
            r("up #why", None),
            ("L7OK", "via agent : up (why)".to_owned())
        );
        assert_eq!(r("75%", None), ("CHECKED", String::new()));
        assert_eq!(
            r("75% junk", None),
            ("CHECKED", "agent reports an error : junk".to_owned())
        );
        assert_eq!(
            r("maxconn:x", Some("Trailing garbage in maxconn string")),
            (
                "CHECKED",
                "agent warns : Trailing garbage in maxconn string".to_owned()
            )
        );
        assert_eq!(
            CheckResult::from_name("CHECKED").map(CheckResult::desc),
            Some("No status change")
        );
    }

    fn target(addr: SocketAddr, inter_ms: u64) -> Target {
        let t = Duration::from_millis(inter_ms);
        Target::plain(addr, t, None, t)
    }

    /// An agent on 127.0.0.1 that reads what the check sends (until `expect` bytes), answers
    /// `answer` and closes.
    fn agent(expect: usize, answer: Vec<u8>) -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = vec![0u8; expect];
            s.read_exact(&mut got).unwrap();
            let _ = s.write_all(&answer);
            got
        });
        (addr, h)
    }

    #[test]
    fn fetch_sends_and_reads_one_line() {
        let (addr, h) = agent(5, b"75% drain\nignored\n".to_vec());
        let line = block_on(fetch(&target(addr, 2000), Some(b"ping\n")));
        assert_eq!(line, Ok("75% drain".to_owned()));
        assert_eq!(h.join().unwrap(), b"ping\n");
        // Without a newline, what came before the close.
        let (addr, h) = agent(0, b"up".to_vec());
        assert_eq!(block_on(fetch(&target(addr, 2000), None)), Ok("up".into()));
        h.join().unwrap();
    }

    #[test]
    fn agent_connections_close_as_haproxys_do() {
        use super::super::probe::tests::{closing_server, Close};
        // No `linger` in HAProxy's agent check: a reset, unless the agent closed first.
        let (addr, h) = closing_server(|c| c.write_all(b"up\n").unwrap());
        assert_eq!(block_on(fetch(&target(addr, 2000), None)), Ok("up".into()));
        assert_eq!(h.join().unwrap(), Close::Reset);
        let (addr, h) = closing_server(|c| {
            c.write_all(b"up").unwrap();
            c.shutdown(std::net::Shutdown::Write).unwrap();
        });
        assert_eq!(block_on(fetch(&target(addr, 2000), None)), Ok("up".into()));
        assert_eq!(h.join().unwrap(), Close::Fin);
    }

    #[test]
    fn fetch_failures_are_reported() {
        let (addr, h) = agent(0, Vec::new());
        let e = block_on(fetch(&target(addr, 2000), None)).unwrap_err();
        assert_eq!(
            (e.result, e.info.as_str()),
            ("L7RSP", "agent closed the connection without an answer")
        );
        h.join().unwrap();
        // An endless line: capped, reported, never more than the buffer.
        let (addr, h) = agent(0, vec![b'x'; 3 * BUF_CAP]);
        let e = block_on(fetch(&target(addr, 2000), None)).unwrap_err();
        assert_eq!(e.result, "L7RSP");
        assert!(e.info.starts_with("Ignoring incomplete line from agent"));
        h.join().unwrap();
        // Nobody listening: L4CON, no panic.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = l.local_addr().unwrap();
        drop(l);
        let e = block_on(fetch(&target(closed, 2000), None)).unwrap_err();
        assert_eq!((e.result, e.info.as_str()), ("L4CON", "Connection refused"));
        // A silent agent: bounded by agent-inter.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let started = std::time::Instant::now();
        let e = block_on(fetch(&target(l.local_addr().unwrap(), 300), None)).unwrap_err();
        assert_eq!(e.result, "L7TOUT");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
