//! The PROXY protocol (HAProxy's `doc/proxy-protocol.txt`), both versions: [`parse`] reads the
//! header a client (a load balancer in front of lb) sends first, [`v1`] and [`v2`] build the
//! one lb sends to servers with `send-proxy`/`send-proxy-v2`. Pure functions over bytes (the
//! parser is fuzzed): no I/O, no panic on any input.
//!
//! Acceptance follows HAProxy's `conn_recv_proxy` (`src/connection.c`): v1 `TCP4`/`TCP6` with
//! strict addresses and `UNKNOWN` (addresses kept), at most 107 bytes; v2 with the 12-byte
//! signature, version 2, `LOCAL` (addresses kept) or `PROXY`; `PROXY` over TCP/IPv4 or
//! TCP/IPv6 gives the addresses, other families (UNIX, UDP, unspecified) keep the real ones;
//! TLVs are skipped but each must fit, and a CRC32C TLV must match. One difference: a header
//! that has arrived only in part is [`Parsed::Incomplete`] (the caller reads on, bounded by its
//! timeout); HAProxy rejects it when its one read came short.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature.
pub const V2_SIG: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included (the specification's limit).
pub const V1_MAX: usize = 107;
/// v2 header before the addresses.
pub const V2_HEADER: usize = 16;
/// v2 address block sizes.
const V2_ADDR_INET: usize = 12;
const V2_ADDR_INET6: usize = 36;
const V2_ADDR_UNIX: usize = 216;

/// TLV types lb reads or writes.
pub const TLV_ALPN: u8 = 0x01;
pub const TLV_AUTHORITY: u8 = 0x02;
pub const TLV_CRC32C: u8 = 0x03;
pub const TLV_UNIQUE_ID: u8 = 0x05;
pub const TLV_SSL: u8 = 0x20;
/// The SSL TLV's version sub-TLV (`PP2_SUBTYPE_SSL_VERSION`).
pub const TLV_SSL_VERSION: u8 = 0x21;
/// HAProxy's limits on the authority and unique-id TLVs.
const AUTHORITY_MAX: usize = 255;
const UNIQUE_ID_MAX: usize = 128;

/// A complete, valid header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Its length: the bytes to consume before the client's own data.
    pub len: usize,
    /// 1 or 2.
    pub version: u8,
    /// The client and destination addresses it carries; `None` for v1 `UNKNOWN`, v2 `LOCAL` and
    /// families other than TCP over IPv4/IPv6 (the connection's own addresses stay).
    pub addrs: Option<(SocketAddr, SocketAddr)>,
    /// The v2 authority TLV (the host name the client asked for), when present.
    pub authority: Option<Vec<u8>>,
}

/// Why a header was refused: HAProxy's wording (`conn_err_code_str`), which is what its log
/// line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Neither `PROXY ` nor the v2 signature.
    NotHeader,
    /// A v1/v2 header with a bad field, length or checksum.
    Bad,
    /// v1 with a protocol other than TCP4, TCP6 or UNKNOWN.
    BadProto,
}

impl Refused {
    /// HAProxy's message for it (its log line for the connection).
    pub fn message(&self) -> &'static str {
        match self {
            Refused::NotHeader => {
                "Received something which does not look like a PROXY protocol header"
            }
            Refused::Bad => "Received an invalid PROXY protocol header",
            Refused::BadProto => "Received an unhandled protocol in the PROXY protocol header",
        }
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// What the bytes received so far hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A valid beginning: more bytes are needed.
    Incomplete,
    Header(Header),
    Refused(Refused),
}

/// Reads the header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let v1_prefix = b"PROXY ";
    let n = buf.len().min(v1_prefix.len());
    if buf[..n] == v1_prefix[..n] {
        if buf.len() < v1_prefix.len() {
            return Parsed::Incomplete;
        }
        return parse_v1(buf);
    }
    let n = buf.len().min(V2_SIG.len());
    if buf[..n] == V2_SIG[..n] {
        if buf.len() < V2_SIG.len() {
            return Parsed::Incomplete;
        }
        return parse_v2(buf);
    }
    Parsed::Refused(Refused::NotHeader)
}

fn parse_v1(buf: &[u8]) -> Parsed {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(cr) = window.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX {
            return Parsed::Refused(Refused::Bad);
        }
        // A lone CR followed by something else can never become a line end.
        if window.iter().enumerate().any(|(i, &b)| {
            (b == b'\r' && window.get(i + 1).is_some_and(|&n| n != b'\n')) || b == b'\n'
        }) {
            return Parsed::Refused(Refused::Bad);
        }
        return Parsed::Incomplete;
    };
    let line = &window[6..cr];
    let len = cr + 2;
    // A CR or LF before the CRLF: the same refusal as before the CRLF arrived (above), however
    // the line is cut into reads.
    if line.iter().any(|&b| b == b'\r' || b == b'\n') {
        return Parsed::Refused(Refused::Bad);
    }
    let Ok(line) = std::str::from_utf8(line) else {
        return Parsed::Refused(Refused::Bad);
    };
    if line == "UNKNOWN" || line.starts_with("UNKNOWN ") {
        return Parsed::Header(Header {
            len,
            version: 1,
            addrs: None,
            authority: None,
        });
    }
    let mut words = line.split(' ');
    let proto = words.next().unwrap_or("");
    let v6 = match proto {
        "TCP4" => false,
        "TCP6" => true,
        _ => return Parsed::Refused(Refused::BadProto),
    };
    let fields: Vec<&str> = words.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Parsed::Refused(Refused::Bad);
    };
    let ip = |s: &str| -> Option<IpAddr> {
        if v6 {
            s.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        } else {
            strict_v4(s).map(IpAddr::V4)
        }
    };
    let (Some(src), Some(dst), Some(sport), Some(dport)) =
        (ip(src), ip(dst), port(sport), port(dport))
    else {
        return Parsed::Refused(Refused::Bad);
    };
    Parsed::Header(Header {
        len,
        version: 1,
        addrs: Some((SocketAddr::new(src, sport), SocketAddr::new(dst, dport))),
        authority: None,
    })
}

/// A dotted quad with nothing else (no leading `+`, no octal, no missing parts).
fn strict_v4(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut o = [0u8; 4];
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        o[i] = p.parse().ok()?;
    }
    Some(Ipv4Addr::from(o))
}

/// A decimal port, 0..=65535, digits only.
fn port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_v2(buf: &[u8]) -> Parsed {
    if buf.len() < V2_HEADER {
        return Parsed::Incomplete;
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Parsed::Refused(Refused::NotHeader);
    }
    let total = V2_HEADER + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if buf.len() < total {
        return Parsed::Incomplete;
    }
    let hdr = &buf[..total];
    let body = &hdr[V2_HEADER..];
    let fam = hdr[13];
    let (addrs, addr_len) = match ver_cmd & 0x0F {
        // LOCAL: the connection's own addresses; whatever follows is ignored, as in HAProxy.
        0x0 => {
            return Parsed::Header(Header {
                len: total,
                version: 2,
                addrs: None,
                authority: None,
            })
        }
        0x1 => match fam {
            0x11 => {
                let Some(a) = body.get(..V2_ADDR_INET) else {
                    return Parsed::Refused(Refused::Bad);
                };
                let ip = |o: usize| IpAddr::V4(Ipv4Addr::new(a[o], a[o + 1], a[o + 2], a[o + 3]));
                let p = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
                (
                    Some((SocketAddr::new(ip(0), p(8)), SocketAddr::new(ip(4), p(10)))),
                    V2_ADDR_INET,
                )
            }
            0x21 => {
                let Some(a) = body.get(..V2_ADDR_INET6) else {
                    return Parsed::Refused(Refused::Bad);
                };
                let ip = |o: usize| {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(&a[o..o + 16]);
                    IpAddr::V6(Ipv6Addr::from(b))
                };
                let p = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
                (
                    Some((
                        SocketAddr::new(ip(0), p(32)),
                        SocketAddr::new(ip(16), p(34)),
                    )),
                    V2_ADDR_INET6,
                )
            }
            // Other transports and families: the addresses are not used, but their block is
            // skipped when it is there, so the TLVs after it are read at the right place.
            _ => {
                let block = match fam >> 4 {
                    1 => V2_ADDR_INET,
                    2 => V2_ADDR_INET6,
                    3 => V2_ADDR_UNIX,
                    _ => 0,
                };
                if body.len() < block {
                    return Parsed::Refused(Refused::Bad);
                }
                (None, block)
            }
        },
        _ => return Parsed::Refused(Refused::Bad),
    };
    let mut authority = None;
    let mut off = V2_HEADER + addr_len;
    while off < total {
        let Some(t) = hdr.get(off..off + 3) else {
            return Parsed::Refused(Refused::Bad);
        };
        let len = usize::from(u16::from_be_bytes([t[1], t[2]]));
        let Some(value) = hdr.get(off + 3..off + 3 + len) else {
            return Parsed::Refused(Refused::Bad);
        };
        match t[0] {
            TLV_CRC32C => {
                if len != 4 {
                    return Parsed::Refused(Refused::Bad);
                }
                let want = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
                let mut copy = hdr.to_vec();
                copy[off + 3..off + 7].fill(0);
                if crc32c(&copy) != want {
                    return Parsed::Refused(Refused::Bad);
                }
            }
            TLV_AUTHORITY => {
                if len > AUTHORITY_MAX {
                    return Parsed::Refused(Refused::Bad);
                }
                authority = Some(value.to_vec());
            }
            TLV_UNIQUE_ID if len > UNIQUE_ID_MAX => return Parsed::Refused(Refused::Bad),
            _ => {}
        }
        off += 3 + len;
    }
    Parsed::Header(Header {
        len: total,
        version: 2,
        addrs,
        authority,
    })
}

/// The v1 line for a connection from `src` to `dst`: `PROXY TCP4 ...` when both are IPv4,
/// `TCP6` (IPv4 written as `::ffff:a.b.c.d`) when either is IPv6, `PROXY UNKNOWN` without
/// addresses.
pub fn v1(addrs: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
    let Some((src, dst)) = addrs else {
        return b"PROXY UNKNOWN\r\n".to_vec();
    };
    let line = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            format!("PROXY TCP4 {s} {d} {} {}\r\n", src.port(), dst.port())
        }
        (s, d) => format!(
            "PROXY TCP6 {} {} {} {}\r\n",
            as_v6(s),
            as_v6(d),
            src.port(),
            dst.port()
        ),
    };
    line.into_bytes()
}

fn as_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// What a v2 header carries besides the addresses (`proxy-v2-options`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct V2Extras {
    /// `crc32c`: a checksum TLV over the whole header.
    pub crc32c: bool,
    /// `ssl` (and `send-proxy-v2-ssl`, `-ssl-cn`, the `cert-*`/`ssl-cipher` options, which only
    /// add sub-TLVs for a TLS client connection): the SSL TLV. Its client flags say "TLS" and
    /// it carries the version when [`V2Extras::tls_version`] is set (a TLS bind's client),
    /// else "not TLS", as HAProxy's do for a clear-text client.
    pub ssl: bool,
    /// `authority`: the authority TLV, with the host name the client connection's own PROXY
    /// header gave, else its TLS SNI (as HAProxy).
    pub authority: Option<Vec<u8>>,
    /// The client's TLS version (`TLSv1.3`), on a TLS bind: the SSL TLV's version sub-TLV.
    pub tls_version: Option<&'static str>,
    /// The protocol the client's TLS handshake chose: the ALPN TLV, which HAProxy sends
    /// whenever there is one.
    pub alpn: Option<Vec<u8>>,
}

/// The v2 header: `PROXY` with TCP over IPv4 (both addresses IPv4) or IPv6 (IPv4 mapped), or
/// `LOCAL` without addresses (health checks, as HAProxy sends for connections it starts).
pub fn v2(addrs: Option<(SocketAddr, SocketAddr)>, extras: &V2Extras) -> Vec<u8> {
    let mut h = V2_SIG.to_vec();
    match addrs {
        None => h.extend_from_slice(&[0x20, 0x00]),
        Some((src, dst)) => match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                h.extend_from_slice(&[0x21, 0x11, 0, 0]);
                h.extend_from_slice(&s.octets());
                h.extend_from_slice(&d.octets());
                h.extend_from_slice(&src.port().to_be_bytes());
                h.extend_from_slice(&dst.port().to_be_bytes());
            }
            (s, d) => {
                h.extend_from_slice(&[0x21, 0x21, 0, 0]);
                h.extend_from_slice(&as_v6(s).octets());
                h.extend_from_slice(&as_v6(d).octets());
                h.extend_from_slice(&src.port().to_be_bytes());
                h.extend_from_slice(&dst.port().to_be_bytes());
            }
        },
    }
    if addrs.is_none() {
        h.extend_from_slice(&[0, 0]);
    }
    let crc_at = extras.crc32c.then(|| {
        tlv(&mut h, TLV_CRC32C, &[0; 4]);
        h.len() - 4
    });
    if let Some(a) = &extras.alpn {
        tlv(&mut h, TLV_ALPN, a);
    }
    if let Some(a) = &extras.authority {
        tlv(&mut h, TLV_AUTHORITY, &a[..a.len().min(AUTHORITY_MAX)]);
    }
    if extras.ssl {
        // client flags (PP2_CLIENT_SSL or none), verify result (0), then the version.
        let mut v = vec![u8::from(extras.tls_version.is_some()), 0, 0, 0, 0];
        if let Some(ver) = extras.tls_version {
            tlv(&mut v, TLV_SSL_VERSION, ver.as_bytes());
        }
        tlv(&mut h, TLV_SSL, &v);
    }
    let len = (h.len() - V2_HEADER) as u16;
    h[14..16].copy_from_slice(&len.to_be_bytes());
    if let Some(at) = crc_at {
        let crc = crc32c(&h);
        h[at..at + 4].copy_from_slice(&crc.to_be_bytes());
    }
    h
}

fn tlv(h: &mut Vec<u8>, ty: u8, value: &[u8]) {
    h.push(ty);
    h.extend_from_slice(&(value.len() as u16).to_be_bytes());
    h.extend_from_slice(value);
}

/// CRC-32C (Castagnoli), as the CRC32C TLV carries it.
pub fn crc32c(data: &[u8]) -> u32 {
    const POLY: u32 = 0x82F6_3B78;
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn header(b: &[u8]) -> Header {
        match parse(b) {
            Parsed::Header(h) => h,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(b)),
        }
    }

    #[test]
    fn v1_tcp4_tcp6_unknown() {
        let h = header(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET /");
        assert_eq!(h.len, 47);
        assert_eq!(
            h.addrs,
            Some((sa("192.168.0.1:56324"), sa("192.168.0.11:443")))
        );
        let h = header(b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n");
        assert_eq!(h.addrs, Some((sa("[2001:db8::1]:1"), sa("[::1]:65535"))));
        let h = header(b"PROXY UNKNOWN\r\n");
        assert_eq!((h.len, h.addrs), (15, None));
        let h = header(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n");
        assert_eq!(h.addrs, None);
    }

    #[test]
    fn v1_bad_shapes_are_refused() {
        let bad: &[&[u8]] = &[
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
            b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
            b"PROXY TCP4 01.2.3.4x 5.6.7.8 1 2\r\n",
        ];
        for b in bad {
            assert_eq!(
                parse(b),
                Parsed::Refused(Refused::Bad),
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
        assert_eq!(
            parse(b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"),
            Parsed::Refused(Refused::BadProto)
        );
        assert_eq!(
            parse(b"GET / HTTP/1.0\r\n"),
            Parsed::Refused(Refused::NotHeader)
        );
        assert_eq!(parse(b"PROXX"), Parsed::Refused(Refused::NotHeader));
        // No CRLF within 107 bytes.
        let mut long = b"PROXY TCP6 ".to_vec();
        long.resize(V1_MAX, b'1');
        assert_eq!(parse(&long), Parsed::Refused(Refused::Bad));
    }

    /// Found by the `proxy_header` fuzz target: the same bytes gave two refusals, depending on
    /// how they arrived. Whole, `UNKNOWN\r1\nPING` (up to the first CRLF) was read as a protocol
    /// name (`BadProto`); cut after `\r1`, the lone CR made it a bad header.
    #[test]
    fn a_bare_cr_or_lf_in_a_v1_line_is_a_bad_header_however_the_bytes_arrive() {
        for whole in [
            &b"PROXY UNKNOWN\r1\nPING\r\n"[..],
            b"PROXY TCP4\n1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r2\r\n",
        ] {
            for n in 1..whole.len() {
                let early = parse(&whole[..n]);
                assert!(
                    matches!(early, Parsed::Incomplete | Parsed::Refused(Refused::Bad)),
                    "{:?} cut at {n}: {early:?}",
                    String::from_utf8_lossy(whole)
                );
            }
            assert_eq!(
                parse(whole),
                Parsed::Refused(Refused::Bad),
                "{:?}",
                String::from_utf8_lossy(whole)
            );
        }
    }

    #[test]
    fn every_prefix_of_a_valid_header_is_incomplete() {
        let v1 = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
        let v2 = super::v2(
            Some((sa("10.0.0.1:1000"), sa("10.0.0.2:2000"))),
            &V2Extras {
                crc32c: true,
                ssl: true,
                authority: Some(b"example.com".to_vec()),
                ..V2Extras::default()
            },
        );
        for full in [&v1[..], &v2[..]] {
            for n in 0..full.len() {
                assert_eq!(parse(&full[..n]), Parsed::Incomplete, "cut at {n}");
            }
            assert_eq!(header(full).len, full.len());
        }
    }

    #[test]
    fn v1_round_trips_and_mixed_families_use_tcp6() {
        for (s, d) in [
            ("1.2.3.4:5", "6.7.8.9:10"),
            ("[2001:db8::5]:65535", "[::1]:1"),
        ] {
            let line = v1(Some((sa(s), sa(d))));
            assert_eq!(header(&line).addrs, Some((sa(s), sa(d))));
        }
        assert_eq!(
            v1(Some((sa("1.2.3.4:5"), sa("[::1]:6")))),
            b"PROXY TCP6 ::ffff:1.2.3.4 ::1 5 6\r\n"
        );
        assert_eq!(v1(None), b"PROXY UNKNOWN\r\n");
    }

    #[test]
    fn v2_round_trips_local_and_tlvs() {
        for (s, d) in [
            ("1.2.3.4:5", "6.7.8.9:10"),
            ("[2001:db8::5]:65535", "[::1]:1"),
        ] {
            let b = v2(Some((sa(s), sa(d))), &V2Extras::default());
            let h = header(&b);
            assert_eq!(
                (h.version, h.addrs, h.len),
                (2, Some((sa(s), sa(d))), b.len())
            );
        }
        let local = v2(None, &V2Extras::default());
        assert_eq!(local.len(), 16);
        assert_eq!(header(&local).addrs, None);
        let with = v2(
            Some((sa("1.2.3.4:5"), sa("6.7.8.9:10"))),
            &V2Extras {
                crc32c: true,
                ssl: true,
                authority: Some(b"host.example".to_vec()),
                tls_version: Some("TLSv1.3"),
                alpn: Some(b"h2".to_vec()),
            },
        );
        assert_eq!(header(&with).authority, Some(b"host.example".to_vec()));
        // ALPN, then the authority, then the SSL TLV: client flag TLS, verify 0, the version.
        let ssl = [
            &[TLV_SSL, 0, 15, 1, 0, 0, 0, 0, TLV_SSL_VERSION, 0, 7][..],
            b"TLSv1.3",
        ]
        .concat();
        assert!(with.windows(ssl.len()).any(|w| w == ssl), "{with:?}");
        assert!(with.windows(5).any(|w| w == [TLV_ALPN, 0, 2, b'h', b'2']));
    }

    #[test]
    fn v2_malformed_shapes_are_refused() {
        let good = v2(
            Some((sa("1.2.3.4:5"), sa("6.7.8.9:10"))),
            &V2Extras {
                crc32c: true,
                ..V2Extras::default()
            },
        );
        // Wrong version nibble.
        let mut b = good.clone();
        b[12] = 0x11;
        assert_eq!(parse(&b), Parsed::Refused(Refused::NotHeader));
        // Unknown command.
        let mut b = good.clone();
        b[12] = 0x2F;
        assert_eq!(parse(&b), Parsed::Refused(Refused::Bad));
        // CRC mismatch.
        let mut b = good.clone();
        b[20] ^= 1;
        assert_eq!(parse(&b), Parsed::Refused(Refused::Bad));
        // Length too short for the IPv4 addresses.
        let mut b = V2_SIG.to_vec();
        b.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert_eq!(parse(&b), Parsed::Refused(Refused::Bad));
        // A TLV running past the header.
        let mut b = V2_SIG.to_vec();
        b.extend_from_slice(&[0x21, 0x11, 0, 15]);
        b.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
        b.extend_from_slice(&[0x04, 0, 9]);
        assert_eq!(parse(&b), Parsed::Refused(Refused::Bad));
        // A truncated TLV header.
        let mut b = V2_SIG.to_vec();
        b.extend_from_slice(&[0x21, 0x11, 0, 14]);
        b.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2, 0x04, 0]);
        assert_eq!(parse(&b), Parsed::Refused(Refused::Bad));
        // A CRC TLV of the wrong size.
        let mut b = V2_SIG.to_vec();
        b.extend_from_slice(&[0x21, 0x11, 0, 17]);
        b.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2, 0x03, 0, 2, 0, 0]);
        assert_eq!(parse(&b), Parsed::Refused(Refused::Bad));
    }

    #[test]
    fn v2_other_families_keep_the_real_addresses() {
        // AF_UNIX stream with its 216-byte block and one TLV after it.
        let mut b = V2_SIG.to_vec();
        let len = V2_ADDR_UNIX + 4;
        b.extend_from_slice(&[0x21, 0x31]);
        b.extend_from_slice(&(len as u16).to_be_bytes());
        b.extend_from_slice(&[0u8; V2_ADDR_UNIX]);
        b.extend_from_slice(&[0xE0, 0, 1, 7]);
        let h = header(&b);
        assert_eq!((h.addrs, h.len), (None, b.len()));
        // UNSPEC with no address block.
        let mut b = V2_SIG.to_vec();
        b.extend_from_slice(&[0x21, 0x00, 0, 0]);
        assert_eq!(header(&b).addrs, None);
        // UDP over IPv4: addresses not used.
        let mut b = V2_SIG.to_vec();
        b.extend_from_slice(&[0x21, 0x12, 0, 12]);
        b.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
        assert_eq!(header(&b).addrs, None);
    }

    #[test]
    fn crc32c_known_value() {
        // RFC 3720's check value.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let seeds = [
            v1(Some((sa("1.2.3.4:5"), sa("6.7.8.9:10")))),
            v2(
                Some((sa("1.2.3.4:5"), sa("6.7.8.9:10"))),
                &V2Extras {
                    crc32c: true,
                    ssl: true,
                    authority: Some(b"a".to_vec()),
                    ..V2Extras::default()
                },
            ),
        ];
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let seed = &seeds[(x % 2) as usize];
            let mut b = seed.clone();
            let i = (x >> 8) as usize % b.len();
            b[i] = (x >> 32) as u8;
            b.truncate((x >> 40) as usize % (b.len() + 1));
            let _ = parse(&b);
        }
    }
}
