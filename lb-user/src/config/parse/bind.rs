//! `bind ADDR [options]` lines, with their options as a table: what each option takes and how it
//! is handled.

use super::super::lex::Line;
use super::super::scalar::{parse_bind_addrs, parse_time, parse_u32, TimeUnit};
use std::path::PathBuf;
use std::sync::Arc;

use super::super::{Bind, BindOptions, BindTls, Loc};
use super::proxy::ProxyDraft;
use super::Parser;
use crate::tls::ciphers::{self, Settings, Version};
use crate::tls::server::{server_config, ServerOpts};

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
    /// A TLS option lb does not do yet: an error.
    NeedsTls,
    /// A TLS option lb does: the number of value words it takes, and how it is kept.
    Tls(usize, fn(&mut TlsDraft, &str) -> Result<(), String>),
}

/// What a `bind` line's TLS options say, as they are read.
#[derive(Default)]
struct TlsDraft {
    /// `ssl`.
    ssl: bool,
    /// `crt` values, as written.
    crts: Vec<String>,
    settings: Settings,
    opts: ServerOpts,
    /// Any TLS option but `ssl` (they do nothing without it).
    any: bool,
}

const fn tls_opt(
    name: &'static str,
    nargs: usize,
    take: fn(&mut TlsDraft, &str) -> Result<(), String>,
) -> BindOption {
    BindOption {
        name,
        handling: Handling::Tls(nargs, take),
    }
}

/// `no-X`/`force-X`: a version word.
#[expect(
    clippy::unnecessary_wraps,
    reason = "the signature of every TLS option's handler"
)]
fn version_word(d: &mut TlsDraft, w: &str) -> Result<(), String> {
    d.settings.apply_word(w);
    Ok(())
}

/// `ssl-min-ver`/`ssl-max-ver V`.
fn version(v: &str) -> Result<Version, String> {
    Version::parse(v).ok_or_else(|| {
        format!("unknown version '{v}' (expected SSLv3, TLSv1.0, TLSv1.1, TLSv1.2 or TLSv1.3)")
    })
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
    tls_opt("ssl", 0, |d, _| {
        d.ssl = true;
        Ok(())
    }),
    tls_opt("crt", 1, |d, v| {
        d.crts.push(v.to_owned());
        Ok(())
    }),
    tls_opt("alpn", 1, |d, v| {
        d.opts.alpn = v
            .split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(())
    }),
    tls_opt("ciphers", 1, |d, v| {
        ciphers::tls12_suites(v)?;
        d.settings.ciphers = Some(v.to_owned());
        Ok(())
    }),
    tls_opt("ciphersuites", 1, |d, v| {
        ciphers::tls13_suites(v)?;
        d.settings.ciphersuites = Some(v.to_owned());
        Ok(())
    }),
    tls_opt("curves", 1, |d, v| {
        ciphers::kx_groups(v)?;
        d.settings.curves = Some(v.to_owned());
        Ok(())
    }),
    // `ecdhe CURVE`: the one curve of ECDHE when `curves` sets none.
    tls_opt("ecdhe", 1, |d, v| {
        ciphers::kx_groups(v)?;
        d.settings.curves.get_or_insert_with(|| v.to_owned());
        Ok(())
    }),
    tls_opt("ssl-min-ver", 1, |d, v| {
        d.settings.min = Some(version(v)?);
        Ok(())
    }),
    tls_opt("ssl-max-ver", 1, |d, v| {
        d.settings.max = Some(version(v)?);
        Ok(())
    }),
    tls_opt("strict-sni", 0, |d, _| {
        d.opts.strict_sni = true;
        Ok(())
    }),
    tls_opt("no-tls-tickets", 0, |d, _| {
        d.opts.no_tls_tickets = true;
        Ok(())
    }),
    tls_opt("prefer-client-ciphers", 0, |d, _| {
        d.opts.prefer_client_ciphers = true;
        Ok(())
    }),
    tls_opt("no-sslv3", 0, version_word),
    tls_opt("no-tlsv10", 0, version_word),
    tls_opt("no-tlsv11", 0, version_word),
    tls_opt("no-tlsv12", 0, version_word),
    tls_opt("no-tlsv13", 0, version_word),
    tls_opt("force-sslv3", 0, version_word),
    tls_opt("force-tlsv10", 0, version_word),
    tls_opt("force-tlsv11", 0, version_word),
    tls_opt("force-tlsv12", 0, version_word),
    tls_opt("force-tlsv13", 0, version_word),
    tls("crt-list"),
    tls("ca-file"),
    tls("npn"),
    tls("verify"),
    tls("crl-file"),
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
            Handling::Opt(n, _) | Handling::NotYet(n, _) | Handling::Tls(n, _) => n,
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
    tls: TlsDraft,
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
            Handling::Tls(_, take) => {
                self.tls.any |= opt != "ssl";
                take(&mut self.tls, value)?;
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
                        "'bind' option '{opt}' is not supported yet (lb's TLS termination does \
                         'ssl', 'crt', 'alpn', 'ciphers', 'ciphersuites', 'curves', \
                         'ssl-min-ver', 'ssl-max-ver', 'no-*', 'force-*', 'strict-sni', \
                         'no-tls-tickets')"
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
        if !ok {
            return;
        }
        let tls = self.bind_tls(line, &draft.tls);
        if let Ok(tls) = tls {
            self.bind_draft(px, line, &draft, tls.as_ref());
        }
    }

    /// The TLS termination of a `bind` line: the global defaults filled in, its certificates
    /// loaded. `Err`: refused (the error is reported).
    fn bind_tls(&mut self, line: &Line, d: &TlsDraft) -> Result<Option<Arc<BindTls>>, ()> {
        if !d.ssl {
            if d.any {
                self.diag.warn(
                    &line.loc,
                    "'bind': TLS options without 'ssl' do nothing (the bind is plain TCP)",
                );
            }
            return Ok(None);
        }
        let g = &self.global;
        let mut settings = d.settings.clone();
        settings.inherit(&g.ssl_default_bind.settings);
        let mut opts = d.opts.clone();
        opts.no_tls_tickets |= g.ssl_default_bind.no_tls_tickets;
        opts.prefer_client_ciphers |= g.ssl_default_bind.prefer_client_ciphers;
        let crts: Vec<PathBuf> = d
            .crts
            .iter()
            .map(|c| match &g.crt_base {
                Some(base) if !c.starts_with('/') => base.join(c),
                _ => PathBuf::from(c),
            })
            .collect();
        match server_config(&crts, &settings, &opts) {
            Ok(server) => Ok(Some(Arc::new(BindTls {
                crts,
                settings,
                opts,
                server,
            }))),
            Err(e) => {
                self.diag
                    .err(&line.loc, format!("'bind {}' ssl: {e}", line.words[1]));
                Err(())
            }
        }
    }

    /// The binds of a `bind` line whose options were all accepted, and its warnings.
    fn bind_draft(
        &mut self,
        px: &mut ProxyDraft,
        line: &Line,
        draft: &BindDraft,
        tls: Option<&Arc<BindTls>>,
    ) {
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
            b.tls = tls.cloned();
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
                tls: None,
            })),
            Err(e) => self.diag.err(loc, format!("'bind': {e}")),
        }
    }
}
