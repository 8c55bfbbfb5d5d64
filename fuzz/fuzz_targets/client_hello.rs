//! The TLS hello inspection (`tls_hello`: what `req.ssl_sni`, `req.ssl_alpn`, `req.ssl_ver` and
//! `req.ssl_hello_type` read) on any bytes, as lb meets them: the bytes arrive in pieces, and
//! the first decision is the one the whole stream gives; a ClientHello that is found is found
//! the same when its handshake message is cut into other records. And a ClientHello written
//! here, independently of lb, with an SNI and ALPN names taken from the input, reads back with
//! exactly those. Never a panic.
#![no_main]

use lb_user::tls_hello::{self, ClientHello, Probe};
use libfuzzer_sys::fuzz_target;

/// `tune.bufsize`'s default, and a small one (the version is decided when the buffer is full).
const LIMITS: [usize; 2] = [16384, 64];
/// The first record must hold a whole minimal ClientHello header (HAProxy's rule): a record
/// header's worth more than the handshake header and 45 body bytes.
const MIN_FIRST_RECORD: usize = 4 + 45;

fn record(ty: u8, version: [u8; 2], payload: &[u8]) -> Vec<u8> {
    let mut r = vec![ty, version[0], version[1]];
    r.extend_from_slice(
        &u16::try_from(payload.len())
            .expect("a record payload")
            .to_be_bytes(),
    );
    r.extend_from_slice(payload);
    r
}

/// The handshake message of the handshake records at the start of `b` (header included),
/// as a TLS reader joins them; `None` when the records end first.
fn handshake_message(b: &[u8]) -> Option<Vec<u8>> {
    let hs_len = b
        .get(6..9)
        .map(|l| (usize::from(l[0]) << 16) | (usize::from(l[1]) << 8) | usize::from(l[2]))?;
    let want = 4 + hs_len;
    let mut msg = Vec::new();
    let mut pos = 0;
    while msg.len() < want {
        let hdr = b.get(pos..pos + 5)?;
        let len = usize::from(u16::from_be_bytes([hdr[3], hdr[4]]));
        let take = len.min(want - msg.len());
        msg.extend_from_slice(b.get(pos + 5..pos + 5 + take)?);
        pos += 5 + len;
    }
    Some(msg)
}

/// A TLS 1.2-style ClientHello with `sni` (when given) and `alpn`, then a supported_groups
/// extension, in one record.
fn write_hello(sni: Option<&[u8]>, alpn: &[&[u8]]) -> Vec<u8> {
    let u16be = |n: usize| u16::try_from(n).expect("fits").to_be_bytes();
    let mut exts = Vec::new();
    let mut ext = |ty: u16, data: &[u8]| {
        exts.extend_from_slice(&ty.to_be_bytes());
        exts.extend_from_slice(&u16be(data.len()));
        exts.extend_from_slice(data);
    };
    if let Some(name) = sni {
        let mut e = u16be(name.len() + 3).to_vec();
        e.push(0);
        e.extend_from_slice(&u16be(name.len()));
        e.extend_from_slice(name);
        ext(0, &e);
    }
    if !alpn.is_empty() {
        let mut list = Vec::new();
        for a in alpn {
            list.push(u8::try_from(a.len()).expect("an ALPN name"));
            list.extend_from_slice(a);
        }
        let mut e = u16be(list.len()).to_vec();
        e.extend_from_slice(&list);
        ext(16, &e);
    }
    ext(10, &[0, 2, 0, 0x1d]);
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[7u8; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&u16be(exts.len()));
    body.extend_from_slice(&exts);
    let mut hs = vec![1];
    hs.extend_from_slice(&u32::try_from(body.len()).expect("fits").to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    record(0x16, [3, 1], &hs)
}

fuzz_target!(|data: &[u8]| {
    // Any bytes, as they arrive.
    let pending = |p: &Probe<_>| *p == Probe::NeedMore;
    lb_fuzz::same_answer_in_pieces("client_hello", data, tls_hello::client_hello, pending);
    lb_fuzz::same_answer_in_pieces("hello_type", data, tls_hello::hello_type, |p| {
        *p == Probe::NeedMore
    });
    for limit in LIMITS {
        lb_fuzz::same_answer_in_pieces(
            "ssl_version",
            data,
            |b| tls_hello::ssl_version(b, limit),
            |p| *p == Probe::NeedMore,
        );
    }

    // A hello that is found is found the same in other records.
    if let Probe::Found(hello) = tls_hello::client_hello(data) {
        let msg = handshake_message(data).expect("a found hello has its whole message");
        let size = MIN_FIRST_RECORD + usize::from(data[data.len() - 1]) * 4;
        let mut again = Vec::new();
        for chunk in msg.chunks(size) {
            again.extend_from_slice(&record(0x16, [data[1], data[2]], chunk));
        }
        assert_eq!(
            tls_hello::client_hello(&again),
            Probe::Found(hello),
            "the same hello in records of {size} bytes"
        );
    }

    // A hello written here reads back: the input is `sni_len`, the name, then ALPN names
    // (each a length byte and the name, empty names skipped).
    if let Some((&sni_len, rest)) = data.split_first() {
        let (sni, mut rest) = rest.split_at(usize::from(sni_len).min(rest.len()));
        let sni = (!sni.is_empty()).then_some(sni);
        let mut alpn: Vec<&[u8]> = Vec::new();
        while let Some((&len, r)) = rest.split_first() {
            let (name, r) = r.split_at(usize::from(len).min(r.len()));
            if !name.is_empty() {
                alpn.push(name);
            }
            rest = r;
        }
        let mut ext_types = Vec::new();
        if sni.is_some() {
            ext_types.push(0);
        }
        if !alpn.is_empty() {
            ext_types.push(16);
        }
        ext_types.push(10);
        let written = write_hello(sni, &alpn);
        let want = ClientHello {
            version: 0x0303,
            sni: sni.map(<[u8]>::to_vec),
            alpn: alpn.iter().map(|a| a.to_vec()).collect(),
            ext_types,
            session_ticket: None,
        };
        assert_eq!(tls_hello::client_hello(&written), Probe::Found(want));
        lb_fuzz::same_answer_in_pieces("written hello", &written, tls_hello::client_hello, pending);
    }
});
