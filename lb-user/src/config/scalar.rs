//! Scalar parsers for haproxy.cfg values: times, sizes, integers, weights, ports and addresses.
//! Each returns a message without location or keyword; the caller adds both.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::IpNet;

/// `HAProxy`'s largest timer: 2^31-1 ms (~24.8 days). Larger timeouts overflow its tick clock, and
/// `HAProxy` rejects them; so does lb, so that a config means the same in both.
pub(crate) const MAX_TIME_MS: u64 = 2_147_483_647;

/// Unit of a bare number in a time value: milliseconds for `timeout`, seconds for `*tcpka-*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimeUnit {
    Ms,
    S,
}

/// Parses a time such as `5s`, `500ms`, `100` (bare = `default_unit`), `1m`, `2h`, `1d`, `250us`.
pub(crate) fn parse_time(s: &str, default_unit: TimeUnit) -> Result<Duration, String> {
    let bad = || format!("invalid time '{s}' (expected a number with optional unit us|ms|s|m|h|d)");
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits_end == 0 {
        return Err(bad());
    }
    let value: u64 = s[..digits_end].parse().map_err(|_| overflow(s))?;
    let micros_per: u64 = match &s[digits_end..] {
        "" => match default_unit {
            TimeUnit::Ms => 1_000,
            TimeUnit::S => 1_000_000,
        },
        "us" => 1,
        "ms" => 1_000,
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return Err(bad()),
    };
    let micros = value.checked_mul(micros_per).ok_or_else(|| overflow(s))?;
    if micros > MAX_TIME_MS * 1_000 {
        return Err(overflow(s));
    }
    Ok(Duration::from_micros(micros))
}

fn overflow(s: &str) -> String {
    format!("time '{s}' is too large (maximum is 2147483647ms, about 24.8 days)")
}

/// Parses a size in bytes: `16384`, `16k`, `1m`, `1g` (powers of 1024, as `HAProxy`'s
/// `parse_size_err`).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid size '{s}' (expected a number with optional unit k|m|g)");
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits_end == 0 {
        return Err(bad());
    }
    let value: u64 = s[..digits_end]
        .parse()
        .map_err(|_| format!("size '{s}' is too large"))?;
    let mult: u64 = match s[digits_end..].to_ascii_lowercase().as_str() {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return Err(bad()),
    };
    let bytes = value
        .checked_mul(mult)
        .filter(|b| u32::try_from(*b).is_ok())
        .ok_or_else(|| format!("size '{s}' is too large (maximum is 4294967295 bytes)"))?;
    Ok(bytes)
}

/// Parses a decimal integer (digits only; no sign, no spaces) within `min..=max`.
pub(crate) fn parse_uint(s: &str, min: u64, max: u64) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid number '{s}' (expected an integer)"));
    }
    match s.parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(format!("{s} out of range {min}..={max}")),
    }
}

/// Parses a `u32` within `min..=max`.
pub(crate) fn parse_u32(s: &str, min: u32, max: u32) -> Result<u32, String> {
    parse_uint(s, u64::from(min), u64::from(max)).map(|v| v as u32)
}

/// Largest server weight `HAProxy` accepts.
pub(crate) const MAX_WEIGHT: u32 = 256;

/// Parses a server `weight` (0..=256).
pub(crate) fn parse_weight(s: &str) -> Result<u32, String> {
    parse_u32(s, 0, MAX_WEIGHT).map_err(|e| format!("weight {e}"))
}

/// Parses a TCP port 1..=65535.
pub(crate) fn parse_port(s: &str) -> Result<u16, String> {
    parse_uint(s, 1, 65535)
        .map(|v| v as u16)
        .map_err(|_| format!("invalid port '{s}' (expected 1..=65535)"))
}

/// Address family forced by an `ipv4@`/`ipv6@` (or `tcp4@`/`tcp6@`) prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
}

/// The host part of an address: an IP literal or a name to resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Host {
    Ip(IpAddr),
    Name(String),
}

/// An address as written on a `server` or `bind` line, before resolution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HostPort {
    pub(crate) family: Option<Family>,
    /// Empty or `*` host (bind only) is `None`.
    pub(crate) host: Option<Host>,
    /// The text after the last `:` (or after `]`), `None` when there is none.
    pub(crate) port: Option<String>,
}

/// Expands environment variables in an address as `HAProxy`'s `env_expand` does before it parses
/// any address (`str2sa_range`): `$NAME` and `${NAME}` (letters, digits and `_`), anywhere in
/// the text and whatever quoting the word had, an unset variable giving the empty string. This
/// is on top of the lexer's expansion inside double quotes, so `[$PG_ADDR]:5432` and
/// `*:${PORT}` work unquoted, as in `HAProxy`.
pub(crate) fn env_expand(s: &str) -> String {
    env_expand_with(s, super::env::var)
}

/// [`env_expand`] with the variables looked up by `var`.
pub(crate) fn env_expand_with(s: &str, var: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let braced = after.starts_with('{');
        let name_start = usize::from(braced);
        let name_len = after[name_start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len() - name_start);
        let name = &after[name_start..name_start + name_len];
        let mut next = name_start + name_len;
        // As HAProxy: the closing brace is skipped only when there was an opening one.
        if braced && after[next..].starts_with('}') {
            next += 1;
        }
        if !name.is_empty() {
            out.push_str(&var(name).unwrap_or_default());
        }
        rest = &after[next..];
    }
    out.push_str(rest);
    out
}

/// Splits `[prefix@]host[:port]` following `HAProxy`'s `str2sa_range`: environment variables are
/// expanded first ([`env_expand`]), then an IPv6 literal is either in brackets or bare with the
/// port after its last colon.
pub(crate) fn split_host_port(written: &str) -> Result<HostPort, String> {
    let expanded = env_expand(written);
    if expanded.is_empty() {
        return Err(format!(
            "'{written}' resolves to an empty address (environment variable missing?)"
        ));
    }
    let s = expanded.as_str();
    let (family, rest) = match s.split_once('@') {
        Some((prefix, rest)) => {
            let fam = match prefix {
                "ipv4" | "tcp4" => Some(Family::V4),
                "ipv6" | "tcp6" => Some(Family::V6),
                "tcp" => None,
                "unix" | "abns" | "abnsz" | "fd" | "sockpair" | "udp" | "udp4" | "udp6"
                | "quic4" | "quic6" | "uxst" | "uxdg" => {
                    return Err(format!(
                    "address family '{prefix}@' is not supported (lb only does TCP over IPv4/IPv6)"
                ))
                }
                _ => return Err(format!("unknown address prefix '{prefix}@' in '{s}'")),
            };
            (fam, rest)
        }
        None => (None, s),
    };
    if rest.starts_with('/') {
        return Err(format!(
            "'{s}': UNIX sockets are not supported (lb only does TCP over IPv4/IPv6)"
        ));
    }
    let (host_str, port) = if let Some(after_bracket) = rest.strip_prefix('[') {
        let Some((inside, tail)) = after_bracket.split_once(']') else {
            return Err(format!("invalid address '{s}': missing ']'"));
        };
        let ip: Ipv6Addr = inside
            .parse()
            .map_err(|_| format!("invalid IPv6 address '[{inside}]'"))?;
        let port = match tail {
            "" => None,
            t => match t.strip_prefix(':') {
                Some(p) => Some(p.to_owned()),
                None => return Err(format!("invalid address '{s}': expected ':port' after ']'")),
            },
        };
        if family == Some(Family::V4) {
            return Err(format!("address '{s}' does not match its family prefix"));
        }
        return Ok(HostPort {
            family: Some(Family::V6),
            host: Some(Host::Ip(IpAddr::V6(ip))),
            port,
        });
    } else {
        match rest.rfind(':') {
            Some(i) => (&rest[..i], Some(rest[i + 1..].to_owned())),
            None => (rest, None),
        }
    };
    let host = if host_str.is_empty() || host_str == "*" {
        None
    } else if let Ok(ip) = host_str.parse::<IpAddr>() {
        Some(Host::Ip(ip))
    } else if host_str.contains(':') || rest.parse::<Ipv6Addr>().is_ok() {
        return Err(format!(
            "invalid address '{s}': an IPv6 address needs a port after its last colon, or \
             brackets: '[{rest}]:port'"
        ));
    } else if is_hostname(host_str) {
        Some(Host::Name(host_str.to_owned()))
    } else {
        return Err(format!("invalid address '{host_str}'"));
    };
    if let (Some(Family::V4), Some(Host::Ip(IpAddr::V6(_))))
    | (Some(Family::V6), Some(Host::Ip(IpAddr::V4(_)))) = (family, &host)
    {
        return Err(format!("address '{s}' does not match its family prefix"));
    }
    Ok(HostPort { family, host, port })
}

/// A DNS name as `HAProxy` accepts it: letters, digits, `-`, `_` and `.`, not starting with `.`/`-`.
pub(crate) fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !s.starts_with(['.', '-'])
}

/// Parses an IP network as `HAProxy`'s `str2net`/`str62net` do: `A.B.C.D[/BITS|/A.B.C.D]` (no
/// mask: /32) or `IPV6[/BITS]` (no prefix: /128). A dotted IPv4 mask must be contiguous.
pub(crate) fn parse_net(s: &str) -> Result<IpNet, String> {
    let (addr, mask) = match s.rsplit_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    let bad =
        || format!("invalid network '{s}' (expected ADDR/PREFIX, e.g. 10.0.0.0/8 or fd00::/8)");
    let ip: IpAddr = addr.parse().map_err(|_| bad())?;
    let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
    let prefix_len = match mask {
        None => max,
        Some(m) if ip.is_ipv4() && m.contains('.') => {
            let m: Ipv4Addr = m.parse().map_err(|_| bad())?;
            let bits = u32::from(m);
            if bits.leading_ones() + bits.trailing_zeros() != 32 {
                return Err(format!("network '{s}': mask '{m}' is not contiguous"));
            }
            u8::try_from(bits.leading_ones()).map_err(|_| bad())?
        }
        Some(m) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()) => {
            match m.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("network '{s}': prefix length must be 0..={max}")),
            }
        }
        Some(_) => return Err(bad()),
    };
    Ok(IpNet {
        addr: ip,
        prefix_len,
    })
}

/// The unspecified address of a family (bind `*:port`, `:port`).
pub(crate) fn unspecified(family: Option<Family>) -> IpAddr {
    match family {
        Some(Family::V6) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

/// Resolves `name` with the system resolver, keeping only `family` when given; the first address
/// wins (as `getaddrinfo` order, like `HAProxy`'s `init-addr libc`).
pub(crate) fn resolve(name: &str, port: u16, family: Option<Family>) -> Result<SocketAddr, String> {
    #[cfg(not(fuzzing))]
    {
        crate::outside::resolve(name, port, family.map(|f| f == Family::V6))
    }
    #[cfg(fuzzing)]
    {
        let addrs =
            system_resolve(name, port).map_err(|e| format!("cannot resolve '{name}': {e}"))?;
        addrs
            .into_iter()
            .find(|a| match family {
                Some(Family::V4) => a.is_ipv4(),
                Some(Family::V6) => a.is_ipv6(),
                None => true,
            })
            .ok_or_else(|| format!("cannot resolve '{name}': no address of the requested family"))
    }
}

/// The fuzz targets' stand-in for `getaddrinfo` (`cargo fuzz` builds with `cfg(fuzzing)`): no
/// network query per input, the same answer every time. `localhost` is the loopback, a name
/// under `.invalid` does not resolve, any other name has the documentation addresses.
#[cfg(fuzzing)]
fn system_resolve(name: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    if name.is_empty() || name.ends_with(".invalid") {
        return Err(std::io::Error::other("Name or service not known"));
    }
    let ips: [IpAddr; 2] = if name == "localhost" {
        [Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()]
    } else {
        [
            Ipv4Addr::new(192, 0, 2, 1).into(),
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into(),
        ]
    };
    Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
}

/// Parses the port part of a `bind` address: `N` or a range `N-M` (each port gets a listener, as
/// in `HAProxy`). Port 0 is allowed (the OS picks one; handy for tests).
pub(crate) fn parse_bind_ports(s: &str) -> Result<Vec<u16>, String> {
    let one = |p: &str| {
        parse_uint(p, 0, 65535)
            .map(|v| v as u16)
            .map_err(|_| format!("invalid port '{p}' (expected 0..=65535)"))
    };
    match s.split_once('-') {
        None => Ok(vec![one(s)?]),
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if a == 0 || a > b {
                return Err(format!(
                    "invalid port range '{s}' (expected LOW-HIGH with 1 <= LOW <= HIGH)"
                ));
            }
            Ok((a..=b).collect())
        }
    }
}

/// Parses a `bind` address list such as `:80`, `*:80`, `[::]:443`, `ipv6@:::80`, `:80,:81` or
/// `127.0.0.1:8000-8002` into socket addresses. Hostnames are resolved.
pub(crate) fn parse_bind_addrs(s: &str) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        if part.is_empty() {
            return Err(format!("empty address in '{s}'"));
        }
        let hp = split_host_port(part)?;
        let Some(port) = hp.port.as_deref() else {
            return Err(format!(
                "'{part}': port required (e.g. ':{part}' or '*:port')"
            ));
        };
        if port.starts_with(['+', '-']) {
            return Err(format!(
                "'{part}': port offsets are only meaningful on servers"
            ));
        }
        let ports = parse_bind_ports(port).map_err(|e| format!("'{part}': {e}"))?;
        let ip = match hp.host {
            None => unspecified(hp.family),
            Some(Host::Ip(ip)) => ip,
            Some(Host::Name(name)) => resolve(&name, 0, hp.family)?.ip(),
        };
        out.extend(ports.into_iter().map(|p| SocketAddr::new(ip, p)));
    }
    Ok(out)
}

/// Parses a proxy or server name: `HAProxy` allows letters, digits, `-`, `_`, `.` and `:`.
pub(crate) fn check_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty name".to_owned());
    }
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        Some(c) => Err(format!(
            "name '{s}' contains invalid character {c:?} (allowed: letters, digits, '-', '_', '.', ':')"
        )),
        None => Ok(()),
    }
}

/// Parses hex text (`tcp-check send-binary`, `expect binary`): an even number of hex digits.
pub(crate) fn check_hex(s: &str) -> Result<(), String> {
    if s.is_empty() || !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "invalid hex string '{s}' (expected an even number of hex digits)"
        ));
    }
    Ok(())
}
