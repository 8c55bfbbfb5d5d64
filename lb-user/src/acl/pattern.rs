//! Matching methods and patterns (HAProxy's `src/pattern.c`): `-m found|bool|int|ip|bin|len|
//! str|sub|reg|beg|end|dir|dom`, patterns written on the line or read from `-f` files (one per
//! line, `#` comment lines), and map files (`KEY VALUE` lines) for the `map_*` converters.

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};

use regex::bytes::{Regex, RegexBuilder};

use super::{Type, Value};

/// A matching method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// The sample exists.
    Found,
    /// The sample, as a boolean, is true.
    Bool,
    /// An integer in one of the ranges.
    Int,
    /// An address in one of the networks.
    Ip,
    /// Equal to one of the byte strings (written in hex).
    Bin,
    /// A length in one of the ranges.
    Len,
    Str,
    Sub,
    Reg,
    Beg,
    End,
    /// A `/`-delimited part equal to a pattern.
    Dir,
    /// A `/?.:`-delimited run of parts equal to a pattern (domain names).
    Dom,
}

impl Method {
    /// Its name in `-m NAME` and HAProxy's `get acl|map` answers.
    pub fn name(self) -> &'static str {
        match self {
            Method::Found => "found",
            Method::Bool => "bool",
            Method::Int => "int",
            Method::Ip => "ip",
            Method::Bin => "bin",
            Method::Len => "len",
            Method::Str => "str",
            Method::Sub => "sub",
            Method::Reg => "reg",
            Method::Beg => "beg",
            Method::End => "end",
            Method::Dir => "dir",
            Method::Dom => "dom",
        }
    }

    pub fn from_name(s: &str) -> Option<Method> {
        Some(match s {
            "found" => Method::Found,
            "bool" => Method::Bool,
            "int" => Method::Int,
            "ip" => Method::Ip,
            "bin" => Method::Bin,
            "len" => Method::Len,
            "str" => Method::Str,
            "sub" => Method::Sub,
            "reg" => Method::Reg,
            "beg" => Method::Beg,
            "end" => Method::End,
            "dir" => Method::Dir,
            "dom" => Method::Dom,
            _ => return None,
        })
    }

    /// The type a sample is cast to before matching.
    pub fn input(self) -> Type {
        match self {
            Method::Found => Type::Any,
            Method::Bool => Type::Bool,
            Method::Int => Type::Int,
            Method::Ip => Type::Addr,
            Method::Bin => Type::Bin,
            Method::Len
            | Method::Str
            | Method::Sub
            | Method::Reg
            | Method::Beg
            | Method::End
            | Method::Dir
            | Method::Dom => Type::Str,
        }
    }

    /// The method an expression of type `t` gets without `-m` (`None`: `-m` is required).
    pub fn for_type(t: Type) -> Option<Method> {
        match t {
            Type::Bool => Some(Method::Bool),
            Type::Int => Some(Method::Int),
            Type::Addr => Some(Method::Ip),
            Type::Str => Some(Method::Str),
            Type::Bin | Type::Any => None,
        }
    }

    /// Whether patterns are integers (and the `eq|ge|gt|le|lt` operators apply).
    pub fn numeric(self) -> bool {
        matches!(self, Method::Int | Method::Len)
    }
}

/// One pattern.
#[derive(Clone, Debug)]
enum Pat {
    /// Inclusive bounds; `None` = open.
    Range(Option<i64>, Option<i64>),
    Net(IpAddr, u8),
    Bytes(Vec<u8>),
    Re(Regex),
}

/// The patterns of one ACL expression or map, with their method and flags.
#[derive(Clone, Debug)]
pub struct Patterns {
    pub method: Method,
    /// `-i`.
    pub icase: bool,
    /// `-n`: host names are not resolved in `ip` patterns.
    pub no_dns: bool,
    /// Integers written as dotted versions (`3.1` = `3 << 16 | 1`), as `req.ssl_ver`'s ACL.
    pub dotted: bool,
    list: Vec<Pat>,
    /// `str` patterns by value (lower-cased with `-i`): index of the first one.
    exact: HashMap<Vec<u8>, usize>,
    /// `ip` networks by prefix length: a lookup costs one probe per length in use, however
    /// long the list (a blocklist grown by `add acl`), as HAProxy's trees.
    nets: NetIndex,
}

/// Networks by (prefix length, masked address): index of the first one; each family's
/// lengths, longest first.
#[derive(Clone, Debug, Default)]
struct NetIndex {
    v4: HashMap<(u8, u32), usize>,
    v4_lens: Vec<u8>,
    v6: HashMap<(u8, u128), usize>,
    v6_lens: Vec<u8>,
}

impl NetIndex {
    fn add(&mut self, net: IpAddr, len: u8, index: usize) {
        fn note(lens: &mut Vec<u8>, len: u8) {
            if let Err(at) = lens.binary_search_by(|l| len.cmp(l)) {
                lens.insert(at, len);
            }
        }
        match net {
            IpAddr::V4(n) => {
                self.v4
                    .entry((len, mask4(u32::from(n), len)))
                    .or_insert(index);
                note(&mut self.v4_lens, len);
            }
            IpAddr::V6(n) => {
                self.v6
                    .entry((len, mask6(u128::from(n), len)))
                    .or_insert(index);
                note(&mut self.v6_lens, len);
            }
        }
    }

    /// The most specific network holding `ip` (the first of them when several are as
    /// specific); an IPv4 address also matches IPv6 networks as its mapped form, an IPv6
    /// address holding an IPv4 one (mapped, compatible, 6to4) IPv4 networks.
    fn find(&self, ip: IpAddr) -> Option<usize> {
        let (v4, v6) = match ip {
            IpAddr::V4(a) => (Some(u32::from(a)), u128::from(a.to_ipv6_mapped())),
            IpAddr::V6(a) => (embedded_v4(a), u128::from(a)),
        };
        let in4 = v4.and_then(|a| {
            self.v4_lens
                .iter()
                .find_map(|&l| self.v4.get(&(l, mask4(a, l))).map(|i| (l, *i)))
        });
        let in6 = self
            .v6_lens
            .iter()
            .find_map(|&l| self.v6.get(&(l, mask6(v6, l))).map(|i| (l, *i)));
        match (in4, in6) {
            (Some(a), Some(b)) => Some(if a.0 > b.0 || (a.0 == b.0 && a.1 < b.1) {
                a.1
            } else {
                b.1
            }),
            (a, b) => a.or(b).map(|(_, i)| i),
        }
    }
}

fn mask4(a: u32, len: u8) -> u32 {
    a.checked_shr(32 - u32::from(len)).unwrap_or(0)
}

fn mask6(a: u128, len: u8) -> u128 {
    a.checked_shr(128 - u32::from(len)).unwrap_or(0)
}

/// The IPv4 address an IPv6 one carries: mapped (`::ffff:a.b.c.d`), compatible (`::a.b.c.d`)
/// or 6to4 (`2002:AABB:CCDD::/48`).
fn embedded_v4(a: std::net::Ipv6Addr) -> Option<u32> {
    let o = a.octets();
    if o[..8] == [0; 8] && (o[8..12] == [0; 4] || o[8..12] == [0, 0, 0xff, 0xff]) {
        Some(u32::from_be_bytes([o[12], o[13], o[14], o[15]]))
    } else if o[..2] == [0x20, 0x02] {
        Some(u32::from_be_bytes([o[2], o[3], o[4], o[5]]))
    } else {
        None
    }
}

impl Patterns {
    pub fn new(method: Method) -> Self {
        Self {
            method,
            icase: false,
            no_dns: false,
            dotted: false,
            list: Vec::new(),
            exact: HashMap::new(),
            nets: NetIndex::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Sets `-i` (string patterns already added are matched case-insensitively too).
    pub fn set_icase(&mut self, icase: bool) {
        if self.icase == icase {
            return;
        }
        self.icase = icase;
        let exact = std::mem::take(&mut self.exact);
        let mut by_index: Vec<(usize, Vec<u8>)> = exact.into_iter().map(|(k, i)| (i, k)).collect();
        by_index.sort();
        for (i, k) in by_index {
            let key = self.fold(&k);
            self.exact.entry(key).or_insert(i);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Adds one pattern written as `text`; its index is the previous [`Self::len`].
    pub fn add(&mut self, text: &str) -> Result<(), String> {
        let pat = match self.method {
            Method::Found | Method::Bool => {
                return Err(format!(
                    "'{text}': the '{}' matching method takes no pattern",
                    if self.method == Method::Found {
                        "found"
                    } else {
                        "bool"
                    }
                ))
            }
            Method::Int | Method::Len => {
                let (lo, hi) = if self.dotted {
                    parse_range(text, parse_dotted)?
                } else {
                    parse_range(text, |s| s.parse::<i64>().ok())?
                };
                Pat::Range(lo, hi)
            }
            Method::Ip => {
                let (ip, len) = parse_net(text, self.no_dns)?;
                self.nets.add(ip, len, self.list.len());
                Pat::Net(ip, len)
            }
            Method::Bin => Pat::Bytes(parse_hex(text)?),
            Method::Reg => Pat::Re(
                RegexBuilder::new(text)
                    .case_insensitive(self.icase)
                    .build()
                    .map_err(|e| format!("invalid regex '{text}': {e}"))?,
            ),
            Method::Str => {
                let key = self.fold(text.as_bytes());
                self.exact.entry(key).or_insert(self.list.len());
                Pat::Bytes(text.as_bytes().to_vec())
            }
            Method::Sub | Method::Beg | Method::End | Method::Dir | Method::Dom => {
                Pat::Bytes(text.as_bytes().to_vec())
            }
        };
        self.list.push(pat);
        Ok(())
    }

    /// Keeps the patterns whose index `keep` marks, in order (a pattern past its end is kept).
    pub fn retain_indices(&mut self, keep: &[bool]) {
        let list = std::mem::take(&mut self.list);
        self.exact.clear();
        self.nets = NetIndex::default();
        for (i, p) in list.into_iter().enumerate() {
            if !keep.get(i).copied().unwrap_or(true) {
                continue;
            }
            match (self.method, &p) {
                (Method::Str, Pat::Bytes(b)) => {
                    let key = self.fold(b);
                    self.exact.entry(key).or_insert(self.list.len());
                }
                (Method::Ip, Pat::Net(net, len)) => self.nets.add(*net, *len, self.list.len()),
                _ => {}
            }
            self.list.push(p);
        }
    }

    fn fold(&self, b: &[u8]) -> Vec<u8> {
        if self.icase {
            b.to_ascii_lowercase()
        } else {
            b.to_vec()
        }
    }

    /// Whether `v` matches (`found` and `bool` need no pattern).
    pub fn matches(&self, v: &Value) -> bool {
        match self.method {
            Method::Found => true,
            Method::Bool => matches!(v.clone().cast(Type::Bool), Some(Value::Bool(true))),
            _ => self.find(v).is_some(),
        }
    }

    /// The index of the pattern `v` matches: the first one, or for `ip` the most specific
    /// network (as HAProxy's trees answer for maps).
    pub fn find(&self, v: &Value) -> Option<usize> {
        let v = v.clone().cast(self.method.input())?;
        match (self.method, &v) {
            (Method::Int, Value::Int(i)) => self.first(|p| in_range(p, *i)),
            (Method::Len, Value::Str(s)) => self.first(|p| in_range(p, s.len() as i64)),
            (Method::Ip, Value::Addr(a)) => self.nets.find(*a),
            (Method::Bin, Value::Bin(b)) => self.first(|p| matches!(p, Pat::Bytes(x) if x == b)),
            (Method::Str, Value::Str(s)) => self.exact.get(&self.fold(s)).copied(),
            (Method::Reg, Value::Str(s)) => self.first(|p| matches!(p, Pat::Re(r) if r.is_match(s))),
            (Method::Sub, Value::Str(s)) => self.first(|p| {
                matches!(p, Pat::Bytes(x) if contains(s, x, self.icase))
            }),
            (Method::Beg, Value::Str(s)) => self.first(|p| {
                matches!(p, Pat::Bytes(x) if s.len() >= x.len() && eq(&s[..x.len()], x, self.icase))
            }),
            (Method::End, Value::Str(s)) => self.first(|p| {
                matches!(p, Pat::Bytes(x) if s.len() >= x.len() && eq(&s[s.len() - x.len()..], x, self.icase))
            }),
            (Method::Dir, Value::Str(s)) => self.first(|p| {
                matches!(p, Pat::Bytes(x) if match_word(s, x, self.icase, b"/"))
            }),
            (Method::Dom, Value::Str(s)) => self.first(|p| {
                matches!(p, Pat::Bytes(x) if match_word(s, x, self.icase, b"/?.:"))
            }),
            _ => None,
        }
    }

    fn first(&self, f: impl Fn(&Pat) -> bool) -> Option<usize> {
        self.list.iter().position(f)
    }
}

/// A file's lines (LF or CRLF, a lone CR ends the line too) with 1-based numbers.
pub fn file_lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    bytes.split(|b| *b == b'\n').enumerate().map(|(i, l)| {
        let l = l.split(|b| *b == b'\r').next().unwrap_or(&[]);
        (i + 1, l)
    })
}

pub fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| **c == b' ' || **c == b'\t').count();
    &b[n..]
}

fn in_range(p: &Pat, i: i64) -> bool {
    matches!(p, Pat::Range(lo, hi) if lo.is_none_or(|l| i >= l) && hi.is_none_or(|h| i <= h))
}

fn eq(a: &[u8], b: &[u8], icase: bool) -> bool {
    if icase {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

fn contains(hay: &[u8], needle: &[u8], icase: bool) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| eq(w, needle, icase))
}

/// HAProxy's `match_word`: `pat` (delimiters around it removed) appears in `s` between
/// delimiters or the ends.
fn match_word(s: &[u8], pat: &[u8], icase: bool, delims: &[u8]) -> bool {
    let mut p = pat;
    while let Some((f, rest)) = p.split_first() {
        if !delims.contains(f) {
            break;
        }
        p = rest;
    }
    while let Some((l, rest)) = p.split_last() {
        if !delims.contains(l) {
            break;
        }
        p = rest;
    }
    if p.len() > s.len() {
        return false;
    }
    let mut may_match = true;
    for i in 0..=s.len() - p.len() {
        if delims.contains(&s[i]) {
            may_match = true;
            continue;
        }
        if may_match
            && eq(&s[i..i + p.len()], p, icase)
            && (i + p.len() == s.len() || delims.contains(&s[i + p.len()]))
        {
            return true;
        }
        may_match = false;
    }
    false
}

/// `N`, `N:M`, `:M`, `N:` (`-` works as `:`), exactly as HAProxy's `pat_parse_int`: the first
/// `:` or `-` separates, so a negative bound can only follow a `:` (`:-1`).
fn parse_range(
    text: &str,
    num: impl Fn(&str) -> Option<i64>,
) -> Result<(Option<i64>, Option<i64>), String> {
    let bad = || format!("'{text}' is not a valid number range");
    if text.is_empty() {
        return Err(bad());
    }
    let Some(at) = text.find([':', '-']) else {
        let v = num(text).ok_or_else(|| format!("'{text}' is not a number"))?;
        return Ok((Some(v), Some(v)));
    };
    let (a, b) = (&text[..at], &text[at + 1..]);
    let lo = if a.is_empty() {
        None
    } else {
        Some(num(a).ok_or_else(bad)?)
    };
    let hi = if b.is_empty() {
        None
    } else {
        Some(num(b).ok_or_else(bad)?)
    };
    if lo.is_none() && hi.is_none() {
        return Err(bad());
    }
    if let (Some(l), Some(h)) = (lo, hi) {
        if l > h {
            return Err(bad());
        }
    }
    Ok((lo, hi))
}

/// `MAJOR[.MINOR]` as `MAJOR << 16 | MINOR`.
pub fn parse_dotted(s: &str) -> Option<i64> {
    let (maj, min) = s.split_once('.').unwrap_or((s, "0"));
    let maj: i64 = maj.parse().ok()?;
    let min: i64 = min.parse().ok()?;
    if !(0..65536).contains(&maj) || !(0..65536).contains(&min) {
        return None;
    }
    Some(maj << 16 | min)
}

/// `ADDR`, `ADDR/LEN`, `IPV4/NETMASK`, or a host name (resolved at load unless `no_dns`).
fn parse_net(text: &str, no_dns: bool) -> Result<(IpAddr, u8), String> {
    let (addr, mask) = match text.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (text, None),
    };
    let ip = match addr.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) if no_dns => {
            return Err(format!(
                "'{text}' is not an IP address (and -n forbids resolving names)"
            ))
        }
        Err(_) => (addr, 0)
            .to_socket_addrs()
            .ok()
            .and_then(|mut it| it.next())
            .map(|sa| sa.ip())
            .ok_or_else(|| format!("'{text}' is not an IP address nor a name that resolves"))?,
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match mask {
        None => max,
        Some(m) => match (m.parse::<u8>(), m.parse::<std::net::Ipv4Addr>()) {
            (Ok(l), _) if l <= max => l,
            (_, Ok(nm)) if ip.is_ipv4() => {
                let bits = u32::from(nm);
                if bits.leading_ones() + bits.trailing_zeros() != 32 {
                    return Err(format!("'{text}': netmask '{m}' is not contiguous"));
                }
                bits.leading_ones() as u8
            }
            _ => return Err(format!("'{text}': invalid mask '{m}'")),
        },
    };
    Ok((ip, len))
}

/// HAProxy's `pat_match_ip`: an IPv4 sample matches IPv6 networks as `::ffff:a.b.c.d`; an
/// IPv6 sample that is IPv4-mapped, IPv4-compatible or 6to4 matches IPv4 networks.
/// Whether `ip` is in `net/len`, one network at a time: the index's oracle.
#[cfg(test)]
fn net_contains(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            prefix_eq(u32::from(n).into(), u32::from(a).into(), len, 32)
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(u128::from(n), u128::from(a), len, 128),
        (IpAddr::V6(n), IpAddr::V4(a)) => {
            prefix_eq(u128::from(n), u128::from(a.to_ipv6_mapped()), len, 128)
        }
        (IpAddr::V4(n), IpAddr::V6(a)) => {
            let o = a.octets();
            let v4 = if o[..8] == [0; 8] && (o[8..12] == [0; 4] || o[8..12] == [0, 0, 0xff, 0xff]) {
                u32::from_be_bytes([o[12], o[13], o[14], o[15]])
            } else if o[..2] == [0x20, 0x02] {
                u32::from_be_bytes([o[2], o[3], o[4], o[5]])
            } else {
                return false;
            };
            prefix_eq(u32::from(n).into(), v4.into(), len, 32)
        }
    }
}

#[cfg(test)]
fn prefix_eq(a: u128, b: u128, len: u8, bits: u32) -> bool {
    if len == 0 {
        return true;
    }
    let shift = bits - u32::from(len);
    (a >> shift) == (b >> shift)
}

/// Hex digits as bytes (`bin` patterns).
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err(format!(
            "'{text}': binary patterns need an even number of hex digits"
        ));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&text[i..i + 2], 16)
                .map_err(|_| format!("'{text}' is not a hexadecimal byte string"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(m: Method, icase: bool, list: &[&str]) -> Patterns {
        let mut p = Patterns::new(m);
        p.icase = icase;
        for t in list {
            p.add(t).unwrap();
        }
        p
    }

    fn s(x: &str) -> Value {
        Value::str(x)
    }

    #[test]
    fn string_methods() {
        assert!(pats(Method::Str, true, &["Redis-1.ACME.com"]).matches(&s("redis-1.acme.com")));
        assert!(!pats(Method::Str, false, &["Redis-1.ACME.com"]).matches(&s("redis-1.acme.com")));
        assert!(pats(Method::Beg, false, &["abc"]).matches(&s("abcdef")));
        assert!(pats(Method::End, true, &["DEF"]).matches(&s("abcdef")));
        assert!(pats(Method::Sub, false, &["cd"]).matches(&s("abcdef")));
        assert!(!pats(Method::Sub, false, &["dc"]).matches(&s("abcdef")));
        assert!(pats(Method::Reg, false, &["^a.c"]).matches(&s("abcdef")));
        assert!(pats(Method::Reg, true, &["^A.C"]).matches(&s("abcdef")));
        assert!(pats(Method::Dom, false, &["acme"]).matches(&s("www.acme.com")));
        assert!(!pats(Method::Dom, false, &["acm"]).matches(&s("www.acme.com")));
        assert!(pats(Method::Dom, false, &[".acme.com."]).matches(&s("www.acme.com")));
        assert!(pats(Method::Dir, false, &["img"]).matches(&s("/static/img/x.png")));
        assert!(pats(Method::Len, false, &["3:5"]).matches(&s("abcd")));
        assert!(!pats(Method::Len, false, &["5:"]).matches(&s("abcd")));
    }

    #[test]
    fn integer_ranges_and_dotted_versions() {
        let p = pats(Method::Int, false, &["443", "8000:8080", ":22", "30000-"]);
        for (v, want) in [
            (443, true),
            (8001, true),
            (22, true),
            (-6, true),
            (30001, true),
            (9000, false),
        ] {
            assert_eq!(p.matches(&Value::Int(v)), want, "{v}");
        }
        // HAProxy reads a leading '-' as the separator: "-5" is "up to 5".
        let p = pats(Method::Int, false, &["-5", ":-10"]);
        assert!(p.matches(&Value::Int(3)));
        assert!(p.matches(&Value::Int(-11)));
        assert!(Patterns::new(Method::Int).add("-10:-5").is_err());
        assert!(Patterns::new(Method::Int).add("5:3").is_err());
        assert!(Patterns::new(Method::Int).add("x").is_err());
        let mut d = Patterns::new(Method::Int);
        d.dotted = true;
        d.add("3.1:").unwrap();
        assert!(d.matches(&Value::Int(0x3_0003)));
        assert!(!d.matches(&Value::Int(0x3_0000)));
    }

    #[test]
    fn networks_of_both_families() {
        let p = pats(
            Method::Ip,
            false,
            &["127.0.0.1/8", "::1", "10.0.0.0/255.255.0.0"],
        );
        for (a, want) in [
            ("127.9.9.9", true),
            ("::1", true),
            ("10.0.200.1", true),
            ("10.1.0.1", false),
            ("::ffff:127.0.0.2", true),
            ("2002:7f00:1::", true),
            ("192.168.0.1", false),
        ] {
            assert_eq!(p.matches(&Value::Addr(a.parse().unwrap())), want, "{a}");
        }
        let v6 = pats(Method::Ip, false, &["::ffff:192.168.0.0/120"]);
        assert!(v6.matches(&Value::Addr("192.168.0.7".parse().unwrap())));
        // String samples are cast.
        assert!(p.matches(&s("127.0.0.1")));
        assert!(!p.matches(&s("not an address")));
        let mut n = Patterns::new(Method::Ip);
        n.no_dns = true;
        assert!(n.add("localhost").is_err());
        assert!(n.add("10.0.0.0/255.0.255.0").is_err());
        // The most specific network wins (maps).
        let m = pats(Method::Ip, false, &["10.0.0.0/8", "10.1.0.0/16"]);
        assert_eq!(m.find(&Value::Addr("10.1.2.3".parse().unwrap())), Some(1));
    }

    #[test]
    fn binary_found_and_bool() {
        let p = pats(Method::Bin, false, &["16030100"]);
        assert!(p.matches(&Value::Bin(vec![0x16, 3, 1, 0])));
        assert!(Patterns::new(Method::Bin).add("1").is_err());
        assert!(Patterns::new(Method::Found).matches(&Value::Int(0)));
        assert!(Patterns::new(Method::Bool).matches(&Value::Int(3)));
        assert!(!Patterns::new(Method::Bool).matches(&Value::Bool(false)));
        assert!(Patterns::new(Method::Found).add("x").is_err());
    }

    #[test]
    fn pattern_files_skip_comments_and_name_bad_lines() {
        use super::super::patref::{Form, PatRef};
        let form = Form {
            no_dns: true,
            ..Form::acl(Method::Ip)
        };
        let r = PatRef::from_file("f", b"# blocked\n10.0.0.0/8\r\n\n  192.168.1.1\n", false);
        assert_eq!(r.user(form).unwrap().load().keys.len(), 2);
        let r = PatRef::from_file("blocked.ips", b"1.2.3.4\nnope\n", false);
        let e = r.user(form).unwrap_err();
        assert!(e.contains("file 'blocked.ips' line 2"), "{e}");
    }

    #[test]
    fn removing_patterns_keeps_exact_lookups_right() {
        let mut p = Patterns::new(Method::Str);
        for k in ["a", "b", "a", "c"] {
            p.add(k).unwrap();
        }
        p.retain_indices(&[false, true, true]);
        assert_eq!(p.len(), 3);
        assert_eq!(p.find(&Value::str("a")), Some(1));
        assert_eq!(p.find(&Value::str("b")), Some(0));
        assert_eq!(p.find(&Value::str("c")), Some(2));
    }

    #[test]
    fn the_network_index_answers_as_a_scan_of_every_network() {
        let mut rng = fastrand::Rng::with_seed(7);
        // Few distinct values, so that networks nest and addresses hit them.
        let v4 = |rng: &mut fastrand::Rng| {
            IpAddr::V4(std::net::Ipv4Addr::new(
                10,
                rng.u8(0..3),
                rng.u8(0..3),
                rng.u8(0..4),
            ))
        };
        let v6 = |rng: &mut fastrand::Rng, v4: &dyn Fn(&mut fastrand::Rng) -> IpAddr| {
            let IpAddr::V4(a) = v4(rng) else {
                unreachable!()
            };
            IpAddr::V6(match rng.u8(0..3) {
                0 => a.to_ipv6_mapped(),
                1 => a.to_ipv6_compatible(),
                _ => std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, rng.u16(0..3), 0, 0, 0, 1),
            })
        };
        for round in 0..200 {
            let mut p = Patterns::new(Method::Ip);
            let mut nets = Vec::new();
            for _ in 0..rng.usize(1..12) {
                let (net, len) = if rng.bool() {
                    (v4(&mut rng), rng.u8(0..=32))
                } else {
                    (v6(&mut rng, &v4), rng.u8(0..=128))
                };
                p.add(&format!("{net}/{len}")).unwrap();
                nets.push((net, len));
            }
            if round % 2 == 1 {
                let keep: Vec<bool> = nets.iter().map(|_| rng.bool()).collect();
                p.retain_indices(&keep);
                let mut k = keep.iter();
                nets.retain(|_| *k.next().unwrap());
            }
            for _ in 0..20 {
                let ip = if rng.bool() {
                    v4(&mut rng)
                } else {
                    v6(&mut rng, &v4)
                };
                let mut best: Option<(usize, u8)> = None;
                for (i, (net, len)) in nets.iter().enumerate() {
                    if net_contains(*net, *len, ip) && best.is_none_or(|(_, l)| *len > l) {
                        best = Some((i, *len));
                    }
                }
                assert_eq!(
                    p.find(&Value::Addr(ip)),
                    best.map(|(i, _)| i),
                    "{ip} in {nets:?}"
                );
            }
        }
    }

    #[test]
    fn method_names_round_trip() {
        for m in [
            Method::Found,
            Method::Ip,
            Method::Dom,
            Method::Reg,
            Method::Len,
        ] {
            assert_eq!(Method::from_name(m.name()), Some(m));
        }
    }
}
