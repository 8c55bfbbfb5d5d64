//! Run-time DNS for servers with `resolvers NAME`: a small client ([`wire`]: A/AAAA over UDP
//! to the section's nameservers) and one task per (resolvers, hostname) that re-resolves it
//! every `hold valid` (the hostname a server follows is the configured one or the one `set
//! server B/S fqdn` gave it; [`names`] starts and stops the tasks as that changes), and hands
//! what it learns to the state writer: a new address (new flows
//! only; checks follow it), `MAINT (resolution)` when the name stays unresolvable past its
//! `hold` time, and back out when it resolves again. As HAProxy, the preferred family is asked
//! first and the other one whenever the first gives no usable answer (any error, no record,
//! no answer at all): a name is never held in maintenance because one family failed.
//!
//! `server-template` servers share one resolution and one answer is spread over them: each
//! keeps its address while the answer still has it, the others take the addresses nobody
//! has, and those left without one wait in `MAINT (resolution)` ("No IP for server"). A name
//! starting with `_` is an SRV name: its records give each server a target and a port, the
//! target's address coming from the answer's additional section, else from an A/AAAA query,
//! and its weight the server's weight ([`srv`]: HAProxy's mapping, and `hold obsolete` for a
//! record that left the answers; after it, its server goes to `MAINT (resolution)`, "entry
//! removed from SRV record").
//!
//! Each nameserver's queries and answers are counted where HAProxy 2.6 counts them
//! ([`NameserverCounters`], printed by `show resolvers`; an answer's kind is [`verdict`]'s).
//!
//! Why our own client rather than a crate: what is needed is one question per packet, the ID,
//! source and question checks, RCODE and the TC bit, which is about 200 lines with tests; a
//! full DNS library (e.g. `hickory-proto`) would bring its own runtime assumptions and many
//! dependencies for no behaviour lb uses. The resolvers run on their own thread (a tokio
//! current-thread runtime) so that DNS never shares a thread with forwarding.

mod names;
pub mod srv;
pub mod wire;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::config::Resolvers;
use crate::counters::NameserverCounters;
use crate::generation::Generation;
use crate::state::{self, By, Change};

/// Errors of starting the resolvers.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot start the DNS thread: {0}")]
    Thread(#[source] io::Error),
}

/// Why a resolution failed, with the `hold` that applies and HAProxy's cause text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// NXDOMAIN: `hold nx`.
    Nx,
    /// REFUSED: `hold refused`.
    Refused,
    /// No answer after `resolve_retries` queries: `hold timeout`.
    Timeout,
    /// Any other error (SERVFAIL, truncated, invalid): `hold other`.
    Other,
    /// A valid answer without any address: `hold other`.
    NoIp,
}

impl Failure {
    /// The cause in HAProxy's state change messages.
    pub fn cause(self) -> &'static str {
        match self {
            Failure::Nx => "DNS NX status",
            Failure::Refused => "DNS refused status",
            Failure::Timeout => "DNS timeout status",
            Failure::Other => "unspecified DNS error",
            Failure::NoIp => "No IP for server ",
        }
    }

    fn hold(self, r: &Resolvers) -> Duration {
        match self {
            Failure::Nx => r.hold_nx,
            Failure::Refused => r.hold_refused,
            Failure::Timeout => r.hold_timeout,
            Failure::Other | Failure::NoIp => r.hold_other,
        }
    }
}

/// One hostname of one resolvers section; its servers are read at each answer
/// ([`names::members`]).
struct Resolution {
    gen: Option<Arc<Generation>>,
    resolvers: Resolvers,
    nameservers: Vec<(String, SocketAddr)>,
    /// Each nameserver's counters (same order), shared with `show resolvers`.
    counters: Vec<Arc<NameserverCounters>>,
    /// The name as its first server writes it (what is asked).
    name: String,
    prefer_v4: bool,
    key: names::Key,
}

impl Resolution {
    /// The resolution of `key` in `gen` (`None` for a section `gen` does not have).
    fn new(gen: &Arc<Generation>, key: names::Key, start: names::Start) -> Option<Self> {
        let section = gen.config.global.resolvers.get(key.section)?;
        // The generation built them from the same configuration: same order.
        let counters = gen
            .resolvers
            .get(key.section)?
            .nameservers
            .iter()
            .map(|(_, c)| c.clone())
            .collect();
        Some(Self {
            gen: Some(gen.clone()),
            resolvers: section.clone(),
            nameservers: section.nameservers.clone(),
            counters,
            name: start.name,
            prefer_v4: start.prefer_v4,
            key,
        })
    }

    /// The servers that follow this name now.
    fn members(&self) -> Vec<names::Member> {
        self.gen
            .as_ref()
            .map(|g| names::members(g, &self.key))
            .unwrap_or_default()
    }

    /// Applies `change` to `m` unless it follows another name by now.
    fn apply(&self, m: &names::Member, change: Change, by: &By) {
        let Some(gen) = &self.gen else {
            return;
        };
        match state::apply_for_name(gen, (m.backend, m.server), &self.key.name, change, by) {
            Ok(_) | Err(state::StateError::NameChanged) => {}
            Err(e) => log::warn!("resolvers '{}': '{}': {e}", self.resolvers.name, self.name),
        }
    }
}

/// Starts re-resolution for every server of `gen` with `resolvers` and a hostname, and for
/// those that get one at run time (`set server B/S fqdn`). Returns at once; the work runs on
/// a thread named `lb-dns`.
pub fn start(gen: &Arc<Generation>) -> Result<Resolving, DnsError> {
    let (stop, stopped) = tokio::sync::watch::channel(());
    // Only a server with `resolvers` can ever follow a name.
    let any = gen
        .config
        .backends
        .iter()
        .any(|b| b.servers.iter().any(|s| s.resolvers.is_some()));
    if !any {
        return Ok(Resolving { _stop: stop });
    }
    let gen = gen.clone();
    crate::control::spawn_local_thread("lb-dns", "DNS resolvers", move || {
        // Until the `Resolving` is dropped (stop, or a reload replacing this generation).
        names::supervise(gen, stopped)
    })
    .map_err(DnsError::Thread)?;
    Ok(Resolving { _stop: stop })
}

/// The resolvers of one configuration generation; dropping it stops their thread.
pub struct Resolving {
    _stop: tokio::sync::watch::Sender<()>,
}

/// Resolves one name forever: every `hold valid` after a valid answer, every
/// `timeout resolve` after a failed one (never faster: a failing name is not hammered).
async fn follow(r: Resolution) {
    // The address in use at start came from the system resolver at load time: valid now.
    let mut last_valid = Instant::now();
    let srv = r.key.srv;
    let mut records = srv::SrvCache::default();
    loop {
        let answer = if srv {
            resolve_srv(&r).await.map(|(recs, ns)| {
                let offers = records.update(recs, Instant::now(), r.resolvers.hold_obsolete);
                (offers, ns)
            })
        } else {
            resolve(&r, &r.name).await.map(|(ips, ns)| {
                let offers = ips
                    .into_iter()
                    .map(|ip| Offer {
                        ip,
                        port: None,
                        weight: None,
                    })
                    .collect();
                (offers, ns)
            })
        };
        let wait = match answer {
            Ok((addrs, ns)) => {
                last_valid = Instant::now();
                apply(&r, &addrs, ns);
                r.resolvers.hold_valid.max(Duration::from_millis(100))
            }
            Err(f) => {
                log::debug!(
                    "resolvers '{}': '{}': {}",
                    r.resolvers.name,
                    r.name,
                    f.cause()
                );
                if last_valid.elapsed() >= f.hold(&r.resolvers) {
                    enter_maint(&r, f);
                }
                r.resolvers.timeout_resolve
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// What a DNS answer offers a server: an IP, with a port and a weight when an SRV record
/// gave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offer {
    pub ip: IpAddr,
    pub port: Option<u16>,
    /// Already mapped onto 0..=256 ([`srv::weight`]).
    pub weight: Option<u32>,
}

impl Offer {
    /// The same address as `c`, a server's current one (its port counts when given).
    fn is(&self, c: &Offer) -> bool {
        self.ip == c.ip && self.port.is_none_or(|p| Some(p) == c.port)
    }
}

/// A valid answer: servers whose address is not in it move to another one (HAProxy's
/// choice: the address in use if the answer still has it), servers in `MAINT (resolution)`
/// come back; servers of a template each get an address of their own or, when the answer
/// has too few, `MAINT (resolution)`. One change per server, through the state writer.
fn apply(r: &Resolution, offers: &[Offer], ns: usize) {
    let Some(gen) = &r.gen else {
        return;
    };
    let members = r.members();
    // What each member has now: its address, port and weight, `None` in MAINT (resolution).
    let current: Vec<Option<Offer>> = members
        .iter()
        .map(|m| {
            let snap = gen.backends[m.backend].snapshot();
            let e = snap.servers.get(m.server)?;
            let a = e.state.addr;
            (!e.state.resolution_maint).then_some(Offer {
                ip: a.ip(),
                port: Some(a.port()),
                weight: Some(e.state.user_weight),
            })
        })
        .collect();
    let templated: Vec<usize> = (0..members.len())
        .filter(|i| members[*i].template)
        .collect();
    let cur: Vec<Option<Offer>> = templated
        .iter()
        .map(|i| current[*i].filter(|c| offers.iter().any(|o| o.is(c))))
        .collect();
    let spread = spread(&cur, offers, Offer::is);
    for (i, m) in members.iter().enumerate() {
        let got = if m.template {
            let k = templated.iter().position(|t| *t == i).unwrap_or(0);
            spread.get(k).copied().flatten()
        } else {
            let cur_ip = current[i].map(|c| c.ip);
            let nets = &gen.config.backends[m.backend].servers[m.server].resolve_net;
            let ips: Vec<IpAddr> = offers.iter().map(|o| o.ip).collect();
            let ip = pick(&ips, cur_ip, nets);
            offers.iter().find(|o| o.ip == ip).copied()
        };
        // HAProxy's `resolv_srvrq_cb`: with `ignore-weight` the record's weight is not
        // applied, and the server keeps the weight it has (configured or set at run time).
        let got = got.map(|o| Offer {
            weight: o.weight.filter(|_| !m.ignore_weight),
            ..o
        });
        let change = match (got, current[i]) {
            (Some(o), Some(c)) if o.is(&c) && o.weight.is_none_or(|w| Some(w) == c.weight) => {
                continue
            }
            // HAProxy counts `update` on the nameserver when the answer moves the first server
            // of the resolution (the others take it "from the DNS cache").
            (Some(o), c) if i == 0 && c.is_none_or(|c| !o.is(&c)) => {
                NameserverCounters::inc(&r.counters[ns].update);
                Change::Resolved(o.ip, o.port, o.weight)
            }
            (Some(o), _) => Change::Resolved(o.ip, o.port, o.weight),
            (None, None) => continue,
            // HAProxy's `srvrq_update_srv_status` for a record gone (past `hold obsolete`).
            (None, Some(_)) if r.key.srv => {
                Change::Resolution(Some("entry removed from SRV record"))
            }
            (None, Some(_)) => Change::Resolution(Some(Failure::NoIp.cause())),
        };
        // HAProxy names the nameserver for the resolution's first server and "DNS cache" for
        // the others that share the answer.
        let by = if i == 0 {
            By::Dns {
                resolvers: r.resolvers.name.clone(),
                nameserver: r.nameservers[ns].0.clone(),
            }
        } else {
            By::DnsCache
        };
        r.apply(m, change, &by);
    }
}

/// Spreads `offers` over servers that have `current` (each `Some` already in `offers`): a
/// server keeps what it has unless a server before it took it, the others take, in order,
/// the offers nobody has; servers left over get `None` (HAProxy's template servers without
/// an IP).
fn spread<T: Copy>(
    current: &[Option<T>],
    offers: &[T],
    same: impl Fn(&T, &T) -> bool,
) -> Vec<Option<T>> {
    let mut taken = vec![false; offers.len()];
    let mut out: Vec<Option<T>> = current
        .iter()
        .map(|c| {
            let c = (*c)?;
            let k = (0..offers.len()).find(|k| !taken[*k] && same(&offers[*k], &c))?;
            taken[k] = true;
            Some(offers[k])
        })
        .collect();
    for slot in &mut out {
        if slot.is_none() {
            if let Some(k) = (0..offers.len()).find(|k| !taken[*k]) {
                taken[k] = true;
                *slot = Some(offers[k]);
            }
        }
    }
    out
}

/// The address a server takes from an answer, as HAProxy scores them: the one in use if the
/// answer still has it, else the first in a `resolve-net` network, else the first.
fn pick(addrs: &[IpAddr], current: Option<IpAddr>, nets: &[crate::config::IpNet]) -> IpAddr {
    if let Some(current) = current.filter(|c| addrs.contains(c)) {
        return current;
    }
    addrs
        .iter()
        .copied()
        .find(|a| nets.iter().any(|n| n.contains(*a)))
        .unwrap_or(addrs[0])
}

/// The name stayed unresolvable past its `hold`: `MAINT (resolution)`.
fn enter_maint(r: &Resolution, f: Failure) {
    for m in &r.members() {
        r.apply(m, Change::Resolution(Some(f.cause())), &By::DnsCache);
    }
}

/// One resolution: the preferred family first, then the other one when the first gives no
/// usable answer — an error (NXDOMAIN, REFUSED, SERVFAIL...), no record of that type, or no
/// answer at all. When both fail, the other family's failure is the one reported (HAProxy
/// reports the last response).
async fn resolve(r: &Resolution, name: &str) -> Result<(Vec<IpAddr>, usize), Failure> {
    let order = if r.prefer_v4 {
        [wire::A, wire::AAAA]
    } else {
        [wire::AAAA, wire::A]
    };
    let mut last = Failure::NoIp;
    for qtype in order {
        match query(r, name, qtype).await {
            Ok((ans, ns)) if !ans.addrs.is_empty() => return Ok((ans.addrs, ns)),
            Ok(_) => last = Failure::NoIp,
            Err(f) => last = f,
        }
    }
    Err(last)
}

/// An SRV name: its records, each with its target's address from the additional section
/// (the preferred family first), else asked for. A target that does not resolve is left out
/// (its record is not refreshed); no usable record at all is a failure.
async fn resolve_srv(r: &Resolution) -> Result<(Vec<(wire::SrvRecord, IpAddr)>, usize), Failure> {
    let (ans, ns) = query(r, &r.name, wire::SRV).await?;
    let mut out = Vec::new();
    for rec in ans.srv {
        let of = |v4: bool| {
            ans.extra
                .iter()
                .find(|(n, ip)| *n == rec.target && ip.is_ipv4() == v4)
                .map(|(_, ip)| *ip)
        };
        let ip = match of(r.prefer_v4).or_else(|| of(!r.prefer_v4)) {
            Some(ip) => Some(ip),
            None => resolve(r, &rec.target).await.ok().map(|(ips, _)| ips[0]),
        };
        if let Some(ip) = ip {
            out.push((rec, ip));
        }
    }
    if out.is_empty() {
        return Err(Failure::NoIp);
    }
    Ok((out, ns))
}

/// Sends the question to every nameserver, up to `resolve_retries` times, waiting
/// `timeout retry` each time for a valid answer. Answers from elsewhere, with another ID or
/// for another question are ignored.
async fn query(r: &Resolution, name: &str, qtype: u16) -> Result<(wire::Answer, usize), Failure> {
    let bind = |v6: bool| {
        let a: SocketAddr = if v6 {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        UdpSocket::bind(a)
    };
    let v4 = if r.nameservers.iter().any(|(_, a)| a.is_ipv4()) {
        Some(bind(false).await.map_err(|_| Failure::Other)?)
    } else {
        None
    };
    let v6 = if r.nameservers.iter().any(|(_, a)| a.is_ipv6()) {
        Some(bind(true).await.map_err(|_| Failure::Other)?)
    } else {
        None
    };
    if r.nameservers.is_empty() {
        return Err(Failure::Timeout);
    }
    let mut last = Failure::Timeout;
    for _ in 0..r.resolvers.resolve_retries.max(1) {
        let id = fastrand::u16(..);
        let Ok(packet) = wire::query(id, name, qtype, r.resolvers.accepted_payload_size) else {
            return Err(Failure::Other);
        };
        for ((_, ns), c) in r.nameservers.iter().zip(&r.counters) {
            let sock = if ns.is_ipv4() { &v4 } else { &v6 };
            if let Some(s) = sock {
                match s.send_to(&packet, ns).await {
                    Ok(_) => NameserverCounters::inc(&c.sent),
                    Err(_) => NameserverCounters::inc(&c.snd_error),
                }
            }
        }
        let deadline = Instant::now() + r.resolvers.timeout_retry;
        let size = usize::from(r.resolvers.accepted_payload_size).max(512);
        // One byte more than accepted: a longer answer is seen (and counted `too_big`), not
        // cut to fit.
        let (mut buf4, mut buf6) = (vec![0u8; size + 1], vec![0u8; size + 1]);
        loop {
            let got = tokio::time::timeout_at(deadline, async {
                match (&v4, &v6) {
                    (Some(a), Some(b)) => tokio::select! {
                        x = a.recv_from(&mut buf4) => x.map(|(n, f)| (n, f, false)),
                        x = b.recv_from(&mut buf6) => x.map(|(n, f)| (n, f, true)),
                    },
                    (Some(a), None) => a.recv_from(&mut buf4).await.map(|(n, f)| (n, f, false)),
                    (None, Some(b)) => b.recv_from(&mut buf6).await.map(|(n, f)| (n, f, true)),
                    (None, None) => std::future::pending().await,
                }
            })
            .await;
            let Ok(Ok((n, from, on_v6))) = got else { break };
            let buf = if on_v6 { &buf6 } else { &buf4 };
            let Some(k) = r.nameservers.iter().position(|(_, a)| *a == from) else {
                continue;
            };
            let count = |f: fn(&NameserverCounters) -> &std::sync::atomic::AtomicU64| {
                NameserverCounters::inc(f(&r.counters[k]));
            };
            // HAProxy's order (`resolv_process_responses`): size, ID, then the answer itself.
            if n > size {
                count(|c| &c.too_big);
                continue;
            }
            if n < 2 {
                count(|c| &c.invalid);
                continue;
            }
            if buf[..2] != id.to_be_bytes() {
                // An answer to an earlier try of this resolution.
                count(|c| &c.outdated);
                continue;
            }
            let Ok(ans) = wire::parse(&buf[..n], id, name, qtype) else {
                count(|c| &c.invalid);
                continue;
            };
            match verdict(&ans, qtype) {
                Verdict::Valid => {
                    count(|c| &c.valid);
                    return Ok((ans, k));
                }
                // No record, or none of the type asked: the caller asks the other family.
                Verdict::NoRecord => {
                    count(|c| &c.any_err);
                    return Ok((ans, k));
                }
                Verdict::CnameError => {
                    count(|c| &c.cname_error);
                    return Ok((ans, k));
                }
                Verdict::Nx => {
                    count(|c| &c.nx);
                    return Err(Failure::Nx);
                }
                Verdict::Refused => {
                    count(|c| &c.refused);
                    last = Failure::Refused;
                }
                Verdict::Truncated => {
                    count(|c| &c.truncated);
                    last = Failure::Other;
                }
                Verdict::Other => {
                    count(|c| &c.other);
                    last = Failure::Other;
                }
            }
            // An error from one nameserver: another may still answer before the deadline.
        }
    }
    Err(last)
}

/// What HAProxy 2.6's `resolv_validate_dns_response` makes of an answer that parsed, in its
/// order: the RCODE first, then no record at all, then the TC bit (except for SRV, whose
/// records HAProxy uses from a truncated answer too), then a chain ending in a CNAME. Each
/// has its own counter. (HAProxy also calls a record whose owner breaks the CNAME chain a
/// CNAME error; lb takes the records of the type asked whatever their owner, so it has no such
/// case.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Valid,
    Nx,
    Refused,
    Other,
    /// NOERROR without any record (`any_err`).
    NoRecord,
    Truncated,
    CnameError,
}

fn verdict(ans: &wire::Answer, qtype: u16) -> Verdict {
    match ans.rcode {
        wire::NOERROR => {}
        wire::NXDOMAIN => return Verdict::Nx,
        wire::REFUSED => return Verdict::Refused,
        _ => return Verdict::Other,
    }
    if ans.ancount == 0 {
        Verdict::NoRecord
    } else if ans.truncated && qtype != wire::SRV {
        Verdict::Truncated
    } else if ans.ends_in_cname {
        Verdict::CnameError
    } else {
        Verdict::Valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(ns: SocketAddr) -> Resolvers {
        let ms = Duration::from_millis;
        Resolvers {
            name: "t".into(),
            loc: crate::config::Loc {
                file: Arc::new("t.cfg".into()),
                line: 1,
            },
            nameservers: vec![("ns1".into(), ns)],
            parse_resolv_conf: false,
            resolve_retries: 2,
            timeout_resolve: ms(250),
            timeout_retry: ms(100),
            hold_valid: ms(100),
            hold_nx: ms(100),
            hold_other: ms(100),
            hold_refused: ms(100),
            hold_timeout: ms(100),
            hold_obsolete: ms(0),
            accepted_payload_size: 512,
        }
    }

    /// An answer to query `q` with RCODE `rc` and no record (the question echoed).
    fn reply(q: &[u8], rc: u8) -> Vec<u8> {
        let mut r = q.to_vec();
        r[2] = 0x81;
        r[3] = 0x80 | rc;
        r
    }

    /// Runs `follow` for `run` against a nameserver that sends `answers(query)` to each
    /// query, and returns how many queries it got and the nameserver's counters.
    fn run_against(
        run: Duration,
        answers: fn(&[u8]) -> Vec<Vec<u8>>,
    ) -> (usize, Arc<NameserverCounters>) {
        let ns = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        ns.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = ns.local_addr().unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let st = stop.clone();
        let server = std::thread::spawn(move || {
            let mut n = 0;
            let mut buf = [0u8; 512];
            while !st.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok((len, from)) = ns.recv_from(&mut buf) {
                    n += 1;
                    for a in answers(&buf[..len]) {
                        let _ = ns.send_to(&a, from);
                    }
                }
            }
            n
        });
        let counters = Arc::new(NameserverCounters::default());
        let r = Resolution {
            gen: None,
            resolvers: section(addr),
            nameservers: vec![("ns1".into(), addr)],
            counters: vec![counters.clone()],
            name: "gone.test".into(),
            prefer_v4: true,
            key: names::Key {
                section: 0,
                name: "gone.test".into(),
                template: None,
                srv: false,
            },
        };
        let rt = crate::test_runtime();
        rt.block_on(async {
            let _ = tokio::time::timeout(run, follow(r)).await;
        });
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        (server.join().unwrap(), counters)
    }

    /// How many queries `follow` sends in `run` to a nameserver answering with `rcode` (or
    /// never, for `None`).
    fn queries_in(run: Duration, rcode: Option<u8>) -> usize {
        match rcode {
            Some(wire::NXDOMAIN) => run_against(run, |q| vec![reply(q, wire::NXDOMAIN)]).0,
            None => run_against(run, |_| Vec::new()).0,
            Some(rc) => panic!("no test answers with {rc}"),
        }
    }

    #[test]
    fn counters_count_as_haproxy() {
        let get = |c: &NameserverCounters| -> std::collections::HashMap<&str, u64> {
            c.lines().into_iter().collect()
        };
        // Before each NXDOMAIN: one byte, an answer to another ID, one over
        // `accepted_payload_size` (512).
        let (n, c) = run_against(Duration::from_millis(600), |q| {
            let mut other = reply(q, wire::NOERROR);
            other[1] ^= 1;
            let mut big = reply(q, wire::NOERROR);
            big.resize(600, 0);
            vec![vec![0], other, big, reply(q, wire::NXDOMAIN)]
        });
        let c = get(&c);
        assert!(n >= 2, "{n} queries");
        for k in ["sent", "invalid", "outdated", "too_big", "nx"] {
            assert_eq!(c[k], n as u64, "{k} for {n} queries: {c:?}");
        }
        for k in [
            "valid",
            "update",
            "refused",
            "other",
            "truncated",
            "any_err",
        ] {
            assert_eq!(c[k], 0, "{k}: {c:?}");
        }
        // No answer at all: sent, and nothing else (HAProxy 2.6 never counts `timeout`).
        let (n, c) = run_against(Duration::from_millis(600), |_| Vec::new());
        let c = get(&c);
        assert_eq!(c["sent"], n as u64);
        assert_eq!(c.values().sum::<u64>(), n as u64, "{c:?}");
        // REFUSED, then SERVFAIL, then a truncated NOERROR with a record: one of each per
        // query (a truncated A answer is an error, the others too).
        let (n, c) = run_against(Duration::from_millis(600), |q| {
            let mut tc = reply(q, wire::NOERROR);
            tc[2] |= 0x02;
            tc[7] = 1; // ANCOUNT 1 (the record itself is not needed to see the TC bit)
            vec![reply(q, wire::REFUSED), reply(q, 2), tc]
        });
        let c = get(&c);
        for k in ["refused", "other", "truncated"] {
            assert_eq!(c[k], n as u64, "{k} for {n} queries: {c:?}");
        }
    }

    #[test]
    fn verdicts_follow_haproxys_order() {
        let ans = |rcode, truncated, ancount, ends_in_cname| wire::Answer {
            rcode,
            truncated,
            ancount,
            ends_in_cname,
            addrs: Vec::new(),
            srv: Vec::new(),
            extra: Vec::new(),
        };
        let v = |a: &wire::Answer| verdict(a, wire::A);
        assert_eq!(v(&ans(wire::NXDOMAIN, true, 0, false)), Verdict::Nx);
        assert_eq!(v(&ans(wire::REFUSED, false, 0, false)), Verdict::Refused);
        assert_eq!(v(&ans(2, false, 1, false)), Verdict::Other);
        assert_eq!(v(&ans(wire::NOERROR, true, 0, false)), Verdict::NoRecord);
        assert_eq!(v(&ans(wire::NOERROR, true, 2, false)), Verdict::Truncated);
        assert_eq!(v(&ans(wire::NOERROR, false, 1, true)), Verdict::CnameError);
        assert_eq!(v(&ans(wire::NOERROR, false, 2, false)), Verdict::Valid);
        // A truncated SRV answer is used (HAProxy: its records can still be exploited).
        let tc_srv = ans(wire::NOERROR, true, 2, false);
        assert_eq!(verdict(&tc_srv, wire::SRV), Verdict::Valid);
    }

    #[test]
    fn failing_names_are_not_hammered() {
        // NXDOMAIN: one query per family per resolution (A, then AAAA), one resolution per
        // `timeout resolve` (250 ms): about 10 in 1.1 s. A client that retried at once would
        // send hundreds.
        let nx = queries_in(Duration::from_millis(1100), Some(wire::NXDOMAIN));
        assert!((4..=16).contains(&nx), "{nx} queries");
        // No answer: `resolve_retries` (2) queries 100 ms apart per family, then `timeout
        // resolve`.
        let silent = queries_in(Duration::from_millis(1100), None);
        assert!((2..=12).contains(&silent), "{silent} queries");
    }

    #[test]
    fn answers_pick_the_current_address_then_resolve_net() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let answer = [ip("10.0.0.1"), ip("192.168.1.5"), ip("10.0.0.2")];
        let nets = [crate::config::IpNet {
            addr: ip("192.168.0.0"),
            prefix_len: 16,
        }];
        assert_eq!(pick(&answer, Some(ip("10.0.0.2")), &nets), ip("10.0.0.2"));
        assert_eq!(
            pick(&answer, Some(ip("10.9.9.9")), &nets),
            ip("192.168.1.5")
        );
        assert_eq!(pick(&answer, None, &[]), ip("10.0.0.1"));
    }

    #[test]
    fn template_servers_each_get_their_own_address() {
        let eq = |a: &u8, b: &u8| a == b;
        // Three servers, two addresses: the third waits.
        assert_eq!(
            spread(&[None, None, None], &[1, 2], eq),
            vec![Some(1), Some(2), None]
        );
        // A server keeps its address; the others fill in around it.
        assert_eq!(
            spread(&[None, Some(3), None], &[1, 2, 3], eq),
            vec![Some(1), Some(3), Some(2)]
        );
        // Two servers on the same address (it was the only one): the first keeps it.
        assert_eq!(
            spread(&[Some(1), Some(1)], &[1, 2], eq),
            vec![Some(1), Some(2)]
        );
        // The answer shrank: the one that lost its address waits.
        assert_eq!(spread(&[Some(1), None], &[1], eq), vec![Some(1), None]);
    }

    #[test]
    fn causes_are_haproxys() {
        assert_eq!(Failure::Nx.cause(), "DNS NX status");
        assert_eq!(Failure::Timeout.cause(), "DNS timeout status");
    }
}
