//! `bind ADDR [options]` lines, with their options as a table: what each option takes and how it
//! is handled.

use super::super::lex::Line;
use super::super::scalar::{parse_bind_addrs, parse_time, parse_u32, TimeUnit};
use super::super::{Bind, BindOptions, Loc};
use super::proxy::ProxyDraft;
use super::Parser;

/// Checks an option's value.
type ValueCheck = fn(&str) -> Result<(), String>;

/// How a `bind` option is handled.
#[derive(Clone, Copy)]
enum Handling {
    /// `name X`: kept on the [`Bind`].
    Name,
    /// `accept-proxy`: kept on the [`Bind`].
    AcceptProxy,
    /// `maxconn N`: the listener's own limit, kept on the [`Bind`].
    Maxconn,
    /// A socket option: sets its field of [`BindOptions`] from the value (`""` for a flag).
    Opt(usize, fn(&mut BindOptions, &str)),
    /// A socket option with one value that may be refused (the error says why).
    Checked(fn(&mut BindOptions, &str) -> Result<(), String>),
    /// Accepted but not acted on yet (listener options): the number of value words it takes,
    /// and the check of its value.
    NotYet(usize, Option<ValueCheck>),
    /// Needs TLS, which lb does not do: an error.
    NeedsTls,
}

/// One `bind` option.
struct BindOption {
    name: &'static str,
    handling: Handling,
}

const fn valued(name: &'static str) -> BindOption {
    BindOption {
        name,
        handling: Handling::NotYet(1, None),
    }
}

const fn opt(name: &'static str, nargs: usize, set: fn(&mut BindOptions, &str)) -> BindOption {
    BindOption {
        name,
        handling: Handling::Opt(nargs, set),
    }
}

const fn tls(name: &'static str) -> BindOption {
    BindOption {
        name,
        handling: Handling::NeedsTls,
    }
}

/// `maxconn N` on a `bind` line: HAProxy takes any count, 0 meaning no limit of the
/// listener's own (`None`).
fn parse_bind_maxconn(v: &str) -> Result<Option<u32>, String> {
    Ok(Some(parse_u32(v, 0, u32::MAX)?).filter(|&n| n > 0))
}

/// `mss`: a non-zero MSS of at most 65535 either way, as `HAProxy` takes it (negative: how
/// much to lower each accepted connection's, see [`BindOptions::mss`]).
fn parse_mss(v: &str) -> Result<i32, String> {
    match v.parse::<i32>() {
        Ok(n) if n != 0 && n.unsigned_abs() <= 65_535 => Ok(n),
        _ => Err(format!(
            "expects an MSS with an absolute value between 1 and 65535, not '{v}'"
        )),
    }
}

/// Every `bind` option lb knows.
const BIND_OPTIONS: &[BindOption] = &[
    BindOption {
        name: "name",
        handling: Handling::Name,
    },
    opt("v4v6", 0, |o, _| o.v6only = Some(false)),
    opt("v6only", 0, |o, _| o.v6only = Some(true)),
    opt("no-v6only", 0, |o, _| o.v6only = None),
    opt("transparent", 0, |o, _| o.transparent = true),
    opt("defer-accept", 0, |o, _| o.defer_accept = true),
    opt("tfo", 0, |o, _| o.tfo = true),
    opt("no-tfo", 0, |o, _| o.tfo = false),
    opt("interface", 1, |o, v| o.interface = Some(v.to_owned())),
    BindOption {
        name: "accept-proxy",
        handling: Handling::AcceptProxy,
    },
    valued("accept-netscaler-cip"),
    valued("process"),
    valued("thread"),
    valued("namespace"),
    valued("id"),
    valued("nice"),
    BindOption {
        name: "mss",
        handling: Handling::Checked(|o, v| {
            o.mss = Some(parse_mss(v)?);
            Ok(())
        }),
    },
    valued("level"),
    valued("severity-output"),
    valued("user"),
    valued("group"),
    valued("uid"),
    valued("gid"),
    valued("mode"),
    BindOption {
        name: "tcp-ut",
        handling: Handling::Checked(|o, v| {
            let t = parse_time(v, TimeUnit::Ms)?;
            o.user_timeout = (!t.is_zero()).then_some(t);
            Ok(())
        }),
    },
    valued("label"),
    valued("proto"),
    BindOption {
        name: "maxconn",
        handling: Handling::Maxconn,
    },
    BindOption {
        name: "backlog",
        handling: Handling::Checked(|o, v| {
            o.backlog = Some(parse_u32(v, 1, u32::MAX)?);
            Ok(())
        }),
    },
    tls("ssl"),
    tls("crt"),
    tls("crt-list"),
    tls("ca-file"),
    tls("alpn"),
    tls("npn"),
    tls("ciphers"),
    tls("ciphersuites"),
    tls("curves"),
    tls("ecdhe"),
    tls("ssl-min-ver"),
    tls("ssl-max-ver"),
    tls("verify"),
    tls("strict-sni"),
    tls("crl-file"),
    tls("no-sslv3"),
    tls("no-tlsv10"),
    tls("no-tlsv11"),
    tls("no-tlsv12"),
    tls("no-tlsv13"),
    tls("force-tlsv12"),
    tls("force-tlsv13"),
    tls("allow-0rtt"),
    tls("quic-force-retry"),
    tls("generate-certificates"),
    tls("ca-sign-file"),
];

impl Handling {
    /// How many value words the option takes.
    fn nargs(self) -> usize {
        match self {
            Handling::AcceptProxy | Handling::NeedsTls => 0,
            Handling::Name | Handling::Maxconn | Handling::Checked(_) => 1,
            Handling::Opt(n, _) | Handling::NotYet(n, _) => n,
        }
    }
}

/// What a `bind` line's options say, as they are read.
#[derive(Default)]
struct BindDraft<'a> {
    name: Option<String>,
    accept_proxy: bool,
    maxconn: Option<u32>,
    opts: BindOptions,
    /// Options accepted but not acted on yet.
    not_yet: Vec<&'a str>,
}

impl<'a> BindDraft<'a> {
    /// Takes option `opt` with its `value` (`""` for a flag); `Err`: why the value is refused.
    /// `NeedsTls` is refused before (the caller's error).
    fn take(&mut self, opt: &'a str, handling: Handling, value: &str) -> Result<(), String> {
        match handling {
            Handling::Name => self.name = Some(value.to_owned()),
            Handling::AcceptProxy => self.accept_proxy = true,
            Handling::Maxconn => self.maxconn = parse_bind_maxconn(value)?,
            Handling::Opt(_, set) => set(&mut self.opts, value),
            Handling::Checked(set) => set(&mut self.opts, value)?,
            Handling::NotYet(nargs, check) => {
                if let Some(check) = check.filter(|_| nargs > 0) {
                    check(value)?;
                }
                self.not_yet.push(opt);
            }
            Handling::NeedsTls => {}
        }
        Ok(())
    }
}

impl Parser {
    /// A `bind` line with at least an address (checked by the caller).
    pub(super) fn bind_line(&mut self, px: &mut ProxyDraft, line: &Line) {
        let words = &line.words;
        let mut draft = BindDraft::default();
        let mut at = 2;
        let mut ok = true;
        while at < words.len() {
            let opt = words[at].as_str();
            let Some(option) = BIND_OPTIONS.iter().find(|o| o.name == opt) else {
                self.diag
                    .err(&line.loc, format!("'bind': unknown option '{opt}'"));
                return;
            };
            if let Handling::NeedsTls = option.handling {
                self.diag.err(
                    &line.loc,
                    format!(
                        "'bind' option '{opt}' needs TLS, which lb does not do (terminate TLS \
                         on the servers, or in front of lb)"
                    ),
                );
                return;
            }
            let nargs = option.handling.nargs();
            let value = if nargs == 0 {
                ""
            } else if let Some(v) = words.get(at + nargs) {
                v.as_str()
            } else {
                self.diag
                    .err(&line.loc, format!("'bind' option '{opt}' needs a value"));
                return;
            };
            if let Err(e) = draft.take(opt, option.handling, value) {
                self.diag
                    .err(&line.loc, format!("'bind' option '{opt}': {e}"));
                ok = false;
            }
            at += 1 + nargs;
        }
        if ok {
            self.bind_draft(px, line, &draft);
        }
    }

    /// The binds of a `bind` line whose options were all accepted, and its warnings.
    fn bind_draft(&mut self, px: &mut ProxyDraft, line: &Line, draft: &BindDraft) {
        if let Some(m) = draft.opts.mss.filter(|m| *m < 0) {
            self.diag.warn(
                &line.loc,
                format!(
                    "'bind' option 'mss {m}' does nothing on Linux: a connection's MSS is \
                     settled by its handshake, and lowering it after the accept (as HAProxy \
                     does) changes nothing; ignored"
                ),
            );
        }
        if !draft.not_yet.is_empty() {
            let list = draft
                .not_yet
                .iter()
                .map(|o| format!("'{o}'"))
                .collect::<Vec<_>>()
                .join(", ");
            self.diag.warn(
                &line.loc,
                format!("'bind' options {list} are not supported yet (listener options); ignored"),
            );
        }
        let addr = &line.words[1];
        let first = px.binds.len();
        let name = draft.name.as_ref();
        self.bind_addrs(px, &line.loc, addr, name, &draft.opts, draft.accept_proxy);
        // The same limit for each address of the line, as HAProxy gives each socket.
        for b in &mut px.binds[first..] {
            b.maxconn = draft.maxconn;
        }
    }

    /// Adds the binds of one address text (`ADDR:PORT`, `ADDR:P1-P2`, `ADDR:P1,P2`, ...).
    pub(super) fn bind_addrs(
        &mut self,
        px: &mut ProxyDraft,
        loc: &Loc,
        addr: &str,
        name: Option<&String>,
        opts: &BindOptions,
        accept_proxy: bool,
    ) {
        match parse_bind_addrs(addr) {
            Ok(addrs) => px.binds.extend(addrs.into_iter().map(|addr| Bind {
                loc: loc.clone(),
                addr,
                name: name.cloned(),
                accept_proxy,
                maxconn: None,
                opts: opts.clone(),
            })),
            Err(e) => self.diag.err(loc, format!("'bind': {e}")),
        }
    }
}
