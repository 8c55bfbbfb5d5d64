//! TLS hello inspection over the first bytes of a connection, without terminating TLS: what
//! `req.ssl_hello_type`, `req.ssl_sni`, `req.ssl_alpn` and `req.ssl_ver` read. Pure functions
//! over bytes (no I/O, no allocation beyond the ALPN list), safe on any input.
//!
//! Acceptance follows HAProxy's `src/payload.c`: a record of type 22 (handshake) with a major
//! version of 3, a handshake length that can hold a ClientHello with extensions, a client
//! version of TLS 1.0 or later, and sizes that stay inside their enclosing lengths. Two things
//! are stricter, because HAProxy's shortcuts can read the wrong bytes: the whole handshake
//! message must be there (HAProxy accepts it four bytes short), and a ClientHello split over
//! several records is put back together (HAProxy would read the next record's header as hello
//! bytes). The reassembly follows records of the first record's version; the message is at
//! most what the inspection buffer holds, so a hello larger than `tune.bufsize` never
//! completes (as in HAProxy).

/// What a probe of the bytes received so far found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe<T> {
    /// The bytes are (the start of) the message, and this is what it says.
    Found(T),
    /// The bytes so far are a valid beginning; more are needed to decide.
    NeedMore,
    /// The bytes are not such a message (or hold no such field): more bytes won't change it.
    Not,
}

impl<T> Probe<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Probe<U> {
        match self {
            Probe::Found(t) => Probe::Found(f(t)),
            Probe::NeedMore => Probe::NeedMore,
            Probe::Not => Probe::Not,
        }
    }
}

/// Record type of handshake messages.
const HANDSHAKE: u8 = 0x16;
/// Handshake type of a ClientHello.
const CLIENT_HELLO: u8 = 0x01;
/// Extension types.
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_SESSION_TICKET: u16 = 35;
/// The smallest ClientHello body that can carry extensions (version, random, empty session
/// id, one cipher, one compression method, an extension list header): HAProxy's
/// `2 + 32 + 1 + 2 + 2 + 1 + 1 + 2 + 2`.
const MIN_HELLO_BODY: usize = 45;

/// `req.ssl_hello_type`: the handshake type of the first message (1 = ClientHello, 2 =
/// ServerHello), once the whole message is there. As HAProxy, any record type from 20 to 23 or
/// 255 is read with the `SSLv3` layout, and the record must say SSL 3.0 or later.
pub fn hello_type(buf: &[u8]) -> Probe<u8> {
    let Some(&first) = buf.first() else {
        return Probe::NeedMore;
    };
    if !((0x14..=0x17).contains(&first) || first == 0xFF) {
        return Probe::Not;
    }
    if buf.len() < 9 {
        return Probe::NeedMore;
    }
    if (u32::from(buf[1]) << 16) + u32::from(buf[2]) < 0x0003_0000 {
        return Probe::Not;
    }
    if u16::from_be_bytes([buf[3], buf[4]]) < 4 {
        return Probe::Not;
    }
    let hs_len = u24(&buf[6..9]);
    if buf.len() < 9 + hs_len {
        return Probe::NeedMore;
    }
    Probe::Found(buf[5])
}

/// `req.ssl_ver`: the protocol version a client offers, `major << 16 | minor` (TLS 1.2 =
/// `0x3_0003`, SSL 3.0 = `0x3_0000`: what the dotted patterns `3.3`, `3.0` mean), read from the
/// ClientHello's `client_version`, or from an `SSLv2` `CLIENT-HELLO`, once the whole first
/// message is there (at most `limit` bytes are waited for: the inspection buffer's size).
pub fn ssl_version(buf: &[u8], limit: usize) -> Probe<u32> {
    let Some(&first) = buf.first() else {
        return Probe::NeedMore;
    };
    let (version, msg_len, header) = if (0x14..=0x17).contains(&first) || first == 0xFF {
        if buf.len() < 11 {
            return Probe::NeedMore;
        }
        let record_version = (u32::from(buf[1]) << 16) + u32::from(buf[2]);
        let msg_len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
        if record_version < 0x0003_0000 || !(6..=(1 << 14) + 2048).contains(&msg_len) {
            return Probe::Not;
        }
        // The client's version, not the record layer's.
        ((u32::from(buf[9]) << 16) + u32::from(buf[10]), msg_len, 5)
    } else {
        // SSLv2 layout, hello only: a 2- or 3-byte header, then message type 1.
        let (rlen, plen, hdr) = if first & 0x80 != 0 {
            if buf.len() < 3 {
                return Probe::NeedMore;
            }
            ((usize::from(first & 0x7F) << 8) | usize::from(buf[1]), 0, 2)
        } else {
            if buf.len() < 4 {
                return Probe::NeedMore;
            }
            (
                (usize::from(first & 0x3F) << 8) | usize::from(buf[1]),
                usize::from(buf[2]),
                3,
            )
        };
        if buf[hdr] != 0x01 {
            return Probe::Not;
        }
        let body = &buf[hdr + 1..];
        if body.len() < 8 {
            return Probe::NeedMore;
        }
        let version = (u32::from(body[0]) << 16) + u32::from(body[1]);
        let cilen = usize::from(u16::from_be_bytes([body[2], body[3]]));
        let silen = usize::from(u16::from_be_bytes([body[4], body[5]]));
        let chlen = usize::from(u16::from_be_bytes([body[6], body[7]]));
        if cilen % 3 != 0
            || (silen != 0 && silen != 16)
            || !(16..=32).contains(&chlen)
            || rlen != 9 + cilen + silen + chlen
        {
            return Probe::Not;
        }
        (version, cilen + silen + chlen + plen, hdr + 1 + 8)
    };
    // Whatever of the message fits in the buffer must be there.
    let need = (header + msg_len).min(limit.max(header));
    if buf.len() < need {
        return Probe::NeedMore;
    }
    Probe::Found(version)
}

/// What a ClientHello says that lb can route on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHello {
    /// `client_version`, `major << 8 | minor` (0x0303 for TLS 1.2 and 1.3 hellos).
    pub version: u16,
    /// The first `host_name` of the `server_name` extension.
    pub sni: Option<Vec<u8>>,
    /// The ALPN protocol names, in the client's order of preference.
    pub alpn: Vec<Vec<u8>>,
    /// Every extension type, in order (`req.ssl_ec_ext` looks for 10, supported groups).
    pub ext_types: Vec<u16>,
    /// The `SessionTicket` extension's data length, when the extension is there
    /// (`req.ssl_st_ext`).
    pub session_ticket: Option<usize>,
}

/// Reads the ClientHello at the start of `buf` (the first bytes a client sent).
pub fn client_hello(buf: &[u8]) -> Probe<ClientHello> {
    let mut body = Vec::new();
    match handshake_message(buf, &mut body) {
        Probe::Found(()) => parse_hello(&body).map_or(Probe::Not, Probe::Found),
        Probe::NeedMore => Probe::NeedMore,
        Probe::Not => Probe::Not,
    }
}

/// Checks the record and handshake headers of a ClientHello (HAProxy's rules) and collects its
/// body into `out` across as many handshake records as it spans.
fn handshake_message(buf: &[u8], out: &mut Vec<u8>) -> Probe<()> {
    let Some(&first) = buf.first() else {
        return Probe::NeedMore;
    };
    if first != HANDSHAKE {
        return Probe::Not;
    }
    if buf.len() < 3 {
        return Probe::NeedMore;
    }
    if buf[1] < 0x03 {
        return Probe::Not;
    }
    if buf.len() < 5 {
        return Probe::NeedMore;
    }
    let rec_len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if rec_len < 1 + 3 + MIN_HELLO_BODY {
        return Probe::Not;
    }
    if buf.len() < 6 {
        return Probe::NeedMore;
    }
    if buf[5] != CLIENT_HELLO {
        return Probe::Not;
    }
    if buf.len() < 9 {
        return Probe::NeedMore;
    }
    let hs_len = u24(&buf[6..9]);
    if hs_len < MIN_HELLO_BODY {
        return Probe::Not;
    }
    // Gather the handshake bytes: 4 header bytes + hs_len, record after record.
    let want = 4 + hs_len;
    let mut msg = Vec::with_capacity(want.min(1 << 16));
    let mut pos = 0;
    while msg.len() < want {
        let Some(hdr) = buf.get(pos..pos + 5) else {
            return Probe::NeedMore;
        };
        if hdr[0] != HANDSHAKE || hdr[1] != buf[1] {
            return Probe::Not;
        }
        let len = usize::from(u16::from_be_bytes([hdr[3], hdr[4]]));
        if len == 0 {
            return Probe::Not;
        }
        let take = len.min(want - msg.len());
        let Some(chunk) = buf.get(pos + 5..pos + 5 + take) else {
            // Partial record: what is there counts, the rest is still to come.
            return Probe::NeedMore;
        };
        msg.extend_from_slice(chunk);
        pos += 5 + len;
    }
    out.clear();
    out.extend_from_slice(&msg[4..]);
    Probe::Found(())
}

/// A ClientHello body (after the 4-byte handshake header), parsed as HAProxy walks it.
fn parse_hello(b: &[u8]) -> Option<ClientHello> {
    if b.len() < MIN_HELLO_BODY || b[0] < 0x03 || b[1] < 0x01 {
        return None;
    }
    let version = u16::from_be_bytes([b[0], b[1]]);
    let sid_len = usize::from(b[34]);
    if sid_len > 32 || sid_len > b.len() - 35 {
        return None;
    }
    let mut rest = &b[35 + sid_len..];
    // Cipher suites: at least one, two bytes each.
    if rest.len() < 4 {
        return None;
    }
    let ciphers = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
    if ciphers < 2 || ciphers > rest.len() {
        return None;
    }
    rest = rest.get(2 + ciphers..)?;
    // Compression methods: at least one.
    if rest.len() < 2 || rest[0] < 1 || usize::from(rest[0]) > rest.len() {
        return None;
    }
    rest = rest.get(1 + usize::from(rest[0])..)?;
    if rest.len() < 2 {
        return None;
    }
    let ext_total = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
    if ext_total > rest.len() - 2 {
        return None;
    }
    let mut exts = &rest[2..2 + ext_total];
    let mut hello = ClientHello {
        version,
        sni: None,
        alpn: Vec::new(),
        ext_types: Vec::new(),
        session_ticket: None,
    };
    while exts.len() >= 4 {
        let ty = u16::from_be_bytes([exts[0], exts[1]]);
        let len = usize::from(u16::from_be_bytes([exts[2], exts[3]]));
        let data = exts.get(4..4 + len)?;
        hello.ext_types.push(ty);
        match ty {
            EXT_SESSION_TICKET if hello.session_ticket.is_none() => {
                hello.session_ticket = Some(len);
            }
            EXT_SERVER_NAME if hello.sni.is_none() => {
                hello.sni = Some(server_name(data)?.to_vec());
            }
            EXT_ALPN if hello.alpn.is_empty() => {
                hello.alpn = alpn(data)?.into_iter().map(<[u8]>::to_vec).collect();
            }
            _ => {}
        }
        exts = &exts[4 + len..];
    }
    Some(hello)
}

/// The `server_name` extension: a list whose first entry must be a `host_name` (type 0).
fn server_name(data: &[u8]) -> Option<&[u8]> {
    if data.len() < 2 {
        return None;
    }
    let list = usize::from(u16::from_be_bytes([data[0], data[1]]));
    if list < 4 || list > data.len() - 2 {
        return None;
    }
    let entry = &data[2..2 + list];
    if entry[0] != 0 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([entry[1], entry[2]]));
    entry.get(3..3 + len)
}

/// The ALPN extension: a list of length-prefixed names.
fn alpn(data: &[u8]) -> Option<Vec<&[u8]>> {
    if data.len() < 3 {
        return None;
    }
    let list = usize::from(u16::from_be_bytes([data[0], data[1]]));
    let mut names = data.get(2..2 + list)?;
    let mut out = Vec::new();
    while let Some((&len, rest)) = names.split_first() {
        let len = usize::from(len);
        if len == 0 {
            return None;
        }
        out.push(rest.get(..len)?);
        names = &rest[len..];
    }
    (!out.is_empty()).then_some(out)
}

fn u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

/// Builders of hello messages, for tests here and elsewhere.
#[cfg(test)]
pub(crate) mod build {
    /// A TLS 1.2-style ClientHello record with the given SNI and ALPN names.
    pub(crate) fn hello_record(sni: Option<&str>, alpn: &[&str]) -> Vec<u8> {
        let mut exts = Vec::new();
        if let Some(name) = sni {
            let n = name.as_bytes();
            let mut e = Vec::new();
            e.extend_from_slice(&((n.len() + 3) as u16).to_be_bytes());
            e.push(0);
            e.extend_from_slice(&(n.len() as u16).to_be_bytes());
            e.extend_from_slice(n);
            ext(&mut exts, 0, &e);
        }
        if !alpn.is_empty() {
            let mut list = Vec::new();
            for a in alpn {
                list.push(a.len() as u8);
                list.extend_from_slice(a.as_bytes());
            }
            let mut e = (list.len() as u16).to_be_bytes().to_vec();
            e.extend_from_slice(&list);
            ext(&mut exts, 16, &e);
        }
        // supported_groups, so there is always one extension.
        ext(&mut exts, 10, &[0, 2, 0, 0x1d]);
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7u8; 32]);
        body.push(32);
        body.extend_from_slice(&[9u8; 32]);
        body.extend_from_slice(&[0, 4, 0x13, 0x01, 0xc0, 0x2f]);
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        record(0x16, 0x0301, &handshake(1, &body))
    }

    fn ext(out: &mut Vec<u8>, ty: u16, data: &[u8]) {
        out.extend_from_slice(&ty.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
    }

    pub(crate) fn handshake(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut h = vec![ty];
        h.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        h.extend_from_slice(body);
        h
    }

    pub(crate) fn record(ty: u8, version: u16, payload: &[u8]) -> Vec<u8> {
        let mut r = vec![ty];
        r.extend_from_slice(&version.to_be_bytes());
        r.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        r.extend_from_slice(payload);
        r
    }

    /// The same ClientHello cut into handshake records of at most `size` payload bytes.
    pub(crate) fn fragmented(hello: &[u8], size: usize) -> Vec<u8> {
        let payload = &hello[5..];
        let mut out = Vec::new();
        for chunk in payload.chunks(size) {
            out.extend_from_slice(&record(0x16, 0x0301, chunk));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::build::{fragmented, handshake, hello_record, record};
    use super::*;

    #[test]
    fn sni_alpn_and_version_of_a_client_hello() {
        let h = hello_record(Some("redis-1.acme.com"), &["h2", "http/1.1"]);
        let Probe::Found(p) = super::client_hello(&h) else {
            panic!("not found")
        };
        assert_eq!(p.sni.as_deref(), Some(&b"redis-1.acme.com"[..]));
        assert_eq!(p.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert_eq!(p.version, 0x0303);
        assert_eq!(hello_type(&h), Probe::Found(1));
        assert_eq!(ssl_version(&h, 16384), Probe::Found(0x3_0003));
    }

    #[test]
    fn every_truncation_needs_more_and_never_panics() {
        let h = hello_record(Some("a.example"), &["h2"]);
        for n in 0..h.len() {
            assert_eq!(super::client_hello(&h[..n]), Probe::NeedMore, "cut at {n}");
            assert_eq!(hello_type(&h[..n]), Probe::NeedMore, "cut at {n}");
        }
    }

    #[test]
    fn without_sni_or_alpn_the_fields_are_absent() {
        let h = hello_record(None, &[]);
        let Probe::Found(p) = super::client_hello(&h) else {
            panic!()
        };
        assert_eq!(p.sni, None);
        assert!(p.alpn.is_empty());
    }

    #[test]
    fn non_tls_bytes_are_not_a_hello_from_the_first_byte() {
        for junk in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"*1\r\n$4\r\nPING\r\n",
            b"\x00",
            b"PROXY ",
        ] {
            assert_eq!(super::client_hello(junk), Probe::Not);
            assert_eq!(hello_type(junk), Probe::Not);
        }
        // SSL 2 record version.
        assert_eq!(
            hello_type(b"\x16\x02\x00\x00\x05\x01\x00\x00\x01"),
            Probe::Not
        );
    }

    #[test]
    fn a_server_hello_has_type_2() {
        let sh = record(0x16, 0x0303, &handshake(2, &[0u8; 70]));
        assert_eq!(hello_type(&sh), Probe::Found(2));
        assert_eq!(super::client_hello(&sh), Probe::Not);
    }

    #[test]
    fn a_hello_spread_over_records_is_reassembled() {
        let h = hello_record(Some("frag.example"), &["h2"]);
        let f = fragmented(&h, 60);
        let Probe::Found(p) = super::client_hello(&f) else {
            panic!()
        };
        assert_eq!(p.sni.as_deref(), Some(&b"frag.example"[..]));
        for n in 0..f.len() {
            assert_eq!(super::client_hello(&f[..n]), Probe::NeedMore, "cut at {n}");
        }
    }

    #[test]
    fn lengths_that_overrun_are_rejected() {
        let good = hello_record(Some("x.example"), &["h2"]);
        // Session id length 33.
        let mut bad = good.clone();
        bad[5 + 4 + 34] = 33;
        assert_eq!(super::client_hello(&bad), Probe::Not);
        // Extension list longer than the message.
        let mut bad = good.clone();
        let ext_at = 5 + 4 + 35 + 32 + 2 + 4 + 2;
        bad[ext_at] = 0xFF;
        assert_eq!(super::client_hello(&bad), Probe::Not);
        // Client version SSL 3.0 (HAProxy wants TLS 1.0 or later).
        let mut bad = good.clone();
        bad[10] = 0x00;
        assert_eq!(super::client_hello(&bad), Probe::Not);
        // A record too short for any hello.
        assert_eq!(super::client_hello(b"\x16\x03\x01\x00\x10\x01"), Probe::Not);
    }

    #[test]
    fn every_single_byte_change_is_handled() {
        let good = hello_record(Some("fuzz.example"), &["h2", "http/1.1"]);
        for i in 0..good.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut b = good.clone();
                b[i] = v;
                let _ = super::client_hello(&b);
                let _ = hello_type(&b);
                let _ = ssl_version(&b, 16384);
            }
        }
    }

    #[test]
    fn sslv2_client_hello_version() {
        // Short header, CLIENT-HELLO, version 3.1, 3 bytes of ciphers, no session id, 16-byte
        // challenge.
        let mut m = vec![0x80, 9 + 3 + 16, 0x01, 0x03, 0x01, 0, 3, 0, 0, 0, 16];
        m.extend_from_slice(&[0, 0, 0x04]);
        m.extend_from_slice(&[0xAA; 16]);
        assert_eq!(ssl_version(&m, 16384), Probe::Found(0x3_0001));
        assert_eq!(ssl_version(&m[..m.len() - 1], 16384), Probe::NeedMore);
    }
}
