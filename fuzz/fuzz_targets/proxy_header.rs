//! The PROXY protocol (`proxy_proto`) on any bytes, as lb meets them: the header arrives in
//! pieces, and the first decision (a header, or a refusal) is the one the whole stream gives.
//! And the builders: the v1 line and the v2 header lb writes for addresses and extras taken
//! from the input are read back whole, with the same addresses (IPv4 mapped into IPv6 when the
//! families differ), length and authority, whatever the client sends after them; a header lb
//! reads and writes again reads back the same. Never a panic.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use lb_user::proxy_proto::{self, Header, Parsed, V2Extras};
use libfuzzer_sys::fuzz_target;

/// The bytes the builders take: a flag byte, two 16-byte addresses, two ports.
const ADDR_BYTES: usize = 1 + 16 + 16 + 2 + 2;

/// Addresses and v2 extras from the input's first bytes; `None` addresses when flag bit 2 is
/// set (a header without addresses: v1 `UNKNOWN`, v2 `LOCAL`).
fn built_from(b: &[u8]) -> Option<(Option<(SocketAddr, SocketAddr)>, V2Extras)> {
    let b = b.get(..ADDR_BYTES)?;
    let flags = b[0];
    let ip = |v6: bool, o: &[u8]| -> IpAddr {
        if v6 {
            let mut a = [0u8; 16];
            a.copy_from_slice(&o[..16]);
            IpAddr::V6(Ipv6Addr::from(a))
        } else {
            IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3]))
        }
    };
    let port = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
    let addrs = (flags & 4 == 0).then(|| {
        (
            SocketAddr::new(ip(flags & 1 != 0, &b[1..17]), port(33)),
            SocketAddr::new(ip(flags & 2 != 0, &b[17..33]), port(35)),
        )
    });
    let extras = V2Extras {
        crc32c: flags & 8 != 0,
        ssl: flags & 16 != 0,
        // The authority is the flag byte's top bits' worth of the address bytes, up to 300
        // (past the TLV's limit of 255, which lb cuts at).
        authority: (flags & 32 != 0)
            .then(|| b[1..].repeat(10)[..usize::from(flags >> 6) * 100].to_vec()),
        ..V2Extras::default()
    };
    Some((addrs, extras))
}

/// The addresses a header written for `addrs` carries: the same when both are IPv4, else both
/// as IPv6 (IPv4 mapped).
fn as_written(addrs: Option<(SocketAddr, SocketAddr)>) -> Option<(SocketAddr, SocketAddr)> {
    let (s, d) = addrs?;
    if s.is_ipv4() && d.is_ipv4() {
        return Some((s, d));
    }
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    Some((v6(s), v6(d)))
}

/// Parses `written` followed by `tail` (the client's own bytes) and checks it is `want`, and
/// that it is decided the same in pieces.
fn reads_back(what: &str, written: &[u8], tail: &[u8], want: &Header) {
    let mut stream = written.to_vec();
    stream.extend_from_slice(tail);
    assert_eq!(
        proxy_proto::parse(&stream),
        Parsed::Header(want.clone()),
        "{what}: {:?} did not read back",
        String::from_utf8_lossy(written)
    );
    lb_fuzz::same_answer_in_pieces(what, &stream, proxy_proto::parse, |p| {
        *p == Parsed::Incomplete
    });
}

fuzz_target!(|data: &[u8]| {
    // Any bytes, as they arrive.
    lb_fuzz::same_answer_in_pieces("parse", data, proxy_proto::parse, |p| {
        *p == Parsed::Incomplete
    });

    // What lb writes, lb reads back.
    if let Some((addrs, extras)) = built_from(data) {
        let tail = &data[ADDR_BYTES..];
        let line = proxy_proto::v1(addrs);
        let want = Header {
            len: line.len(),
            version: 1,
            addrs: as_written(addrs),
            authority: None,
        };
        reads_back("v1", &line, tail, &want);
        let head = proxy_proto::v2(addrs, &extras);
        let authority = match (addrs, &extras.authority) {
            // LOCAL carries nothing lb reads.
            (None, _) | (_, None) => None,
            (Some(_), Some(a)) => Some(a[..a.len().min(255)].to_vec()),
        };
        let want = Header {
            len: head.len(),
            version: 2,
            addrs: as_written(addrs),
            authority,
        };
        reads_back("v2", &head, tail, &want);
    }

    // What lb reads, written again, reads back the same.
    if let Parsed::Header(h) = proxy_proto::parse(data) {
        if let Some(addrs) = h.addrs {
            let line = proxy_proto::v1(Some(addrs));
            let want = Header {
                len: line.len(),
                version: 1,
                addrs: Some(addrs),
                authority: None,
            };
            reads_back("v1 again", &line, &[], &want);
            let extras = V2Extras {
                authority: h.authority.clone(),
                ..V2Extras::default()
            };
            let head = proxy_proto::v2(Some(addrs), &extras);
            let want = Header {
                len: head.len(),
                version: 2,
                addrs: Some(addrs),
                authority: h.authority,
            };
            reads_back("v2 again", &head, &[], &want);
        }
    }
});
