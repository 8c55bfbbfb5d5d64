//! The DNS wire format lb needs: an A, AAAA or SRV query with an EDNS0 OPT record, and the
//! checks and parsing of its answer (ID, question, truncation, RCODE, A/AAAA and SRV records,
//! the A/AAAA records of the additional section, name compression). Nothing from the network can make it panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Record type A.
pub const A: u16 = 1;
/// Record type AAAA.
pub const AAAA: u16 = 28;
/// Record type SRV (RFC 2782), asked for `server-template` names starting with `_`.
pub const SRV: u16 = 33;
const CNAME: u16 = 5;
const OPT: u16 = 41;
const CLASS_IN: u16 = 1;

/// RCODE values lb tells apart.
pub const NOERROR: u8 = 0;
pub const NXDOMAIN: u8 = 3;
pub const REFUSED: u8 = 5;

/// Why a name or a packet was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("invalid hostname '{0}' (labels of 1 to 63 bytes, 255 bytes in all)")]
    BadName(String),
    #[error("packet too short")]
    Short,
    #[error("answer ID {got} does not match query ID {want}")]
    WrongId { got: u16, want: u16 },
    #[error("not a response")]
    NotResponse,
    #[error("answer is for another question")]
    WrongQuestion,
    #[error("compression loop or pointer out of the packet")]
    BadPointer,
}

/// A parsed answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub rcode: u8,
    /// TC bit: the answer did not fit.
    pub truncated: bool,
    /// ANCOUNT: records in the answer section, of any type.
    pub ancount: u16,
    /// The answer section's last record is a CNAME (HAProxy's `RSLV_RESP_CNAME_ERROR`: the
    /// chain ends without the record asked for).
    pub ends_in_cname: bool,
    /// A or AAAA records of the asked type, in order.
    pub addrs: Vec<IpAddr>,
    /// SRV records (for an SRV question), in order.
    pub srv: Vec<SrvRecord>,
    /// A and AAAA records of the additional section (lowercased owner name, address): what
    /// a server sends along with SRV records for their targets.
    pub extra: Vec<(String, IpAddr)>,
}

/// One SRV record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Lowercased, without the final dot.
    pub target: String,
}

/// An A or AAAA record's address.
fn rr_addr(rtype: u16, data: &[u8]) -> Option<IpAddr> {
    match (rtype, data.len()) {
        (A, 4) => Some(IpAddr::V4(Ipv4Addr::new(
            data[0], data[1], data[2], data[3],
        ))),
        (AAAA, 16) => {
            let mut o = [0u8; 16];
            o.copy_from_slice(data);
            Some(IpAddr::V6(Ipv6Addr::from(o)))
        }
        _ => None,
    }
}

/// One resource record's header.
struct Rr {
    owner: String,
    rtype: u16,
    class: u16,
    /// Offset and length of its data in the packet (checked to fit).
    start: usize,
    len: usize,
}

/// The resource record at `at`, and the offset after it.
fn read_rr(b: &[u8], at: usize) -> Result<(Rr, usize), WireError> {
    let (owner, next) = read_name(b, at)?;
    let rtype = u16_at(b, next)?;
    let class = u16_at(b, next + 2)?;
    let len = usize::from(u16_at(b, next + 8)?);
    let start = next + 10;
    if b.len() < start + len {
        return Err(WireError::Short);
    }
    let rr = Rr {
        owner,
        rtype,
        class,
        start,
        len,
    };
    Ok((rr, start + len))
}

fn encode_name(name: &str, out: &mut Vec<u8>) -> Result<(), WireError> {
    let bad = || WireError::BadName(name.to_owned());
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() || trimmed.len() > 253 {
        return Err(bad());
    }
    for label in trimmed.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad());
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Ok(())
}

/// A recursive query for `name`/`qtype` with an EDNS0 OPT record announcing `payload_size`.
pub fn query(id: u16, name: &str, qtype: u16, payload_size: u16) -> Result<Vec<u8>, WireError> {
    let mut p = Vec::with_capacity(64);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    p.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    p.extend_from_slice(&0u16.to_be_bytes()); // ANCOUNT
    p.extend_from_slice(&0u16.to_be_bytes()); // NSCOUNT
    p.extend_from_slice(&1u16.to_be_bytes()); // ARCOUNT (OPT)
    encode_name(name, &mut p)?;
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&CLASS_IN.to_be_bytes());
    // OPT pseudo-record: root name, type 41, class = UDP payload size, TTL 0, no data.
    p.push(0);
    p.extend_from_slice(&OPT.to_be_bytes());
    p.extend_from_slice(&payload_size.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(&0u16.to_be_bytes());
    Ok(p)
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, WireError> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or(WireError::Short)
}

/// Reads a (possibly compressed) name at `at`; returns it lowercased and the offset after it.
fn read_name(b: &[u8], mut at: usize) -> Result<(String, usize), WireError> {
    let mut name = String::new();
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *b.get(at).ok_or(WireError::Short)?;
        match len {
            0 => {
                return Ok((name, end.unwrap_or(at + 1)));
            }
            l if l & 0xC0 == 0xC0 => {
                let ptr = usize::from(u16_at(b, at)? & 0x3FFF);
                end.get_or_insert(at + 2);
                jumps += 1;
                if jumps > 64 || ptr >= b.len() {
                    return Err(WireError::BadPointer);
                }
                at = ptr;
            }
            l if l & 0xC0 != 0 => return Err(WireError::BadPointer),
            l => {
                let l = usize::from(l);
                let label = b.get(at + 1..at + 1 + l).ok_or(WireError::Short)?;
                if !name.is_empty() {
                    name.push('.');
                }
                name.extend(label.iter().map(|c| char::from(c.to_ascii_lowercase())));
                if name.len() > 255 {
                    return Err(WireError::BadPointer);
                }
                at += 1 + l;
            }
        }
    }
}

/// Checks that `b` answers query `id` for `name`/`qtype`, and extracts its addresses.
pub fn parse(b: &[u8], id: u16, name: &str, qtype: u16) -> Result<Answer, WireError> {
    if b.len() < 12 {
        return Err(WireError::Short);
    }
    let got = u16_at(b, 0)?;
    if got != id {
        return Err(WireError::WrongId { got, want: id });
    }
    let flags = u16_at(b, 2)?;
    if flags & 0x8000 == 0 {
        return Err(WireError::NotResponse);
    }
    let truncated = flags & 0x0200 != 0;
    let rcode = (flags & 0x000F) as u8;
    let qd = u16_at(b, 4)?;
    let an = u16_at(b, 6)?;
    if qd != 1 {
        return Err(WireError::WrongQuestion);
    }
    let (qname, mut at) = read_name(b, 12)?;
    let want = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if qname != want || u16_at(b, at)? != qtype || u16_at(b, at + 2)? != CLASS_IN {
        return Err(WireError::WrongQuestion);
    }
    at += 4;
    let mut addrs = Vec::new();
    let mut srv = Vec::new();
    let mut ends_in_cname = false;
    for _ in 0..an {
        let (
            Rr {
                rtype,
                class,
                start,
                len,
                ..
            },
            next,
        ) = read_rr(b, at)?;
        at = next;
        ends_in_cname = class == CLASS_IN && rtype == CNAME;
        if class != CLASS_IN || rtype != qtype {
            continue; // CNAMEs and others: the addresses follow as their own records.
        }
        let data = &b[start..start + len];
        if rtype == SRV {
            if len < 7 {
                return Err(WireError::Short);
            }
            let (target, _) = read_name(b, start + 6)?;
            srv.push(SrvRecord {
                priority: u16_at(b, start)?,
                weight: u16_at(b, start + 2)?,
                port: u16_at(b, start + 4)?,
                target,
            });
        } else if let Some(ip) = rr_addr(rtype, data) {
            addrs.push(ip);
        }
    }
    // The authority section is skipped; the additional one may hold the SRV targets'
    // addresses. A malformed tail only loses those extras.
    let (ns, ar) = (u16_at(b, 8)?, u16_at(b, 10)?);
    let mut extra = Vec::new();
    for k in 0..usize::from(ns) + usize::from(ar) {
        let Ok((rr, next)) = read_rr(b, at) else {
            break;
        };
        at = next;
        if k < usize::from(ns) || rr.class != CLASS_IN {
            continue;
        }
        if let Some(ip) = rr_addr(rr.rtype, &b[rr.start..rr.start + rr.len]) {
            extra.push((rr.owner, ip));
        }
    }
    Ok(Answer {
        rcode,
        truncated,
        ancount: an,
        ends_in_cname,
        addrs,
        srv,
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer to `q` with a CNAME then A records (compressed names), as resolvers send.
    fn answer(q: &[u8], flags: u16, ips: &[[u8; 4]]) -> Vec<u8> {
        let qend = q.len() - 11; // strip the OPT record
        let mut r = q[..qend].to_vec();
        r[2..4].copy_from_slice(&flags.to_be_bytes());
        r[6..8].copy_from_slice(&(ips.len() as u16 + 1).to_be_bytes());
        r[10..12].copy_from_slice(&0u16.to_be_bytes());
        // CNAME: name = pointer to the question (offset 12), rdata "x" + pointer.
        r.extend_from_slice(&[0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 4, 1, b'x', 0xC0, 12]);
        for ip in ips {
            r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            r.extend_from_slice(ip);
        }
        r
    }

    #[test]
    fn query_layout() {
        let q = query(0xBEEF, "db.example.", A, 1232).unwrap();
        assert_eq!(&q[..4], &[0xBE, 0xEF, 0x01, 0x00]);
        assert_eq!(&q[12..24], b"\x02db\x07example\x00");
        assert_eq!(&q[24..28], &[0, 1, 0, 1]);
        assert_eq!(&q[28..], &[0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]);
        assert!(query(1, "a..b", A, 512).is_err());
        assert!(query(1, &"x".repeat(64), A, 512).is_err());
    }

    #[test]
    fn parses_addresses_and_checks_the_question() {
        let q = query(7, "db.Example", A, 512).unwrap();
        let r = answer(&q, 0x8180, &[[127, 0, 0, 2], [127, 0, 0, 3]]);
        let a = parse(&r, 7, "db.example", A).unwrap();
        assert_eq!(a.rcode, NOERROR);
        assert!(!a.truncated);
        assert_eq!(a.ancount, 3);
        assert!(!a.ends_in_cname);
        // Only the CNAME: the chain ends without an A record.
        let cname_only = parse(&answer(&q, 0x8180, &[]), 7, "db.example", A).unwrap();
        assert!(cname_only.ends_in_cname && cname_only.addrs.is_empty());
        assert_eq!(
            a.addrs,
            vec![IpAddr::from([127, 0, 0, 2]), IpAddr::from([127, 0, 0, 3])]
        );
        assert_eq!(
            parse(&r, 8, "db.example", A),
            Err(WireError::WrongId { got: 7, want: 8 })
        );
        assert_eq!(parse(&r, 7, "other", A), Err(WireError::WrongQuestion));
        assert_eq!(
            parse(&r, 7, "db.example", AAAA),
            Err(WireError::WrongQuestion)
        );
        assert_eq!(parse(&q, 7, "db.example", A), Err(WireError::NotResponse));
    }

    #[test]
    fn aaaa_records() {
        let q = query(3, "v6.test", AAAA, 512).unwrap();
        let mut r = q[..q.len() - 11].to_vec();
        r[2..4].copy_from_slice(&0x8180u16.to_be_bytes());
        r[6..8].copy_from_slice(&1u16.to_be_bytes());
        r[10..12].copy_from_slice(&0u16.to_be_bytes());
        r.extend_from_slice(&[0xC0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16]);
        r.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        let a = parse(&r, 3, "v6.test", AAAA).unwrap();
        assert_eq!(a.addrs, vec!["fd00::1".parse::<IpAddr>().unwrap()]);
        // An A record in an AAAA answer is not taken.
        let mixed = parse(&answer(&q, 0x8180, &[[1, 2, 3, 4]]), 3, "v6.test", AAAA).unwrap();
        assert!(mixed.addrs.is_empty());
    }

    #[test]
    fn srv_records_and_their_additional_addresses() {
        // dnsmasq 2.90's answer to `_pg._tcp.tpl.test SRV` (ID 0x1234, no EDNS) with two
        // records whose targets come back in the additional section.
        let r = b"\x124\x85\x80\x00\x01\x00\x02\x00\x00\x00\x02\x03_pg\x04_tcp\x03tpl\x04test\x00\x00!\x00\x01\xc0\x0c\x00!\x00\x01\x00\x00\x00\x00\x00\x12\x00\x00\x00\n\x13\x8a\x01b\x03tpl\x04test\x00\xc0\x0c\x00!\x00\x01\x00\x00\x00\x00\x00\x12\x00\x00\x00\n\x13\x89\x01a\x03tpl\x04test\x00\xc0S\x00\x01\x00\x01\x00\x00\x00\x00\x00\x04\x7f\x00\x00\x05\xc05\x00\x01\x00\x01\x00\x00\x00\x00\x00\x04\x7f\x00\x00\x06";
        let a = parse(r, 0x1234, "_pg._tcp.tpl.test", SRV).unwrap();
        let rec = |target: &str, port| SrvRecord {
            priority: 0,
            weight: 10,
            port,
            target: target.into(),
        };
        assert_eq!(
            a.srv,
            vec![rec("b.tpl.test", 5002), rec("a.tpl.test", 5001)]
        );
        assert_eq!(
            a.extra,
            vec![
                ("a.tpl.test".into(), IpAddr::from([127, 0, 0, 5])),
                ("b.tpl.test".into(), IpAddr::from([127, 0, 0, 6])),
            ]
        );
        assert!(a.addrs.is_empty());
        // Cut anywhere: an error or fewer records, never a panic.
        for n in 0..r.len() {
            let _ = parse(&r[..n], 0x1234, "_pg._tcp.tpl.test", SRV);
        }
    }

    #[test]
    fn nxdomain_and_truncation() {
        let q = query(9, "gone", AAAA, 512).unwrap();
        let a = parse(&answer(&q, 0x8183, &[]), 9, "gone", AAAA).unwrap();
        assert_eq!(a.rcode, NXDOMAIN);
        let a = parse(&answer(&q, 0x8380, &[]), 9, "gone", AAAA).unwrap();
        assert!(a.truncated);
    }

    #[test]
    fn hostile_packets_never_panic() {
        let q = query(1, "a.b", A, 512).unwrap();
        let good = answer(&q, 0x8180, &[[1, 2, 3, 4]]);
        for len in 0..good.len() {
            let _ = parse(&good[..len], 1, "a.b", A);
        }
        let mut looped = good.clone();
        looped[12] = 0xC0;
        looped[13] = 12; // the question name points at itself
        assert_eq!(parse(&looped, 1, "a.b", A), Err(WireError::BadPointer));
        let mut rng = 0x1234_5678_u64;
        for _ in 0..2000 {
            let mut p = good.clone();
            for _ in 0..4 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let i = (rng as usize) % p.len();
                p[i] = (rng >> 32) as u8;
            }
            let _ = parse(&p, 1, "a.b", A);
        }
    }
}
