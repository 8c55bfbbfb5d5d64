//! The DNS answer parser (`dns::wire::parse`) on any datagram: checked against the question
//! the datagram itself carries (so the fuzzer gets past the ID and question checks to the
//! records), and against a fixed one. Never a panic.
#![no_main]

use lb_user::dns::wire;
use libfuzzer_sys::fuzz_target;

/// The question name at offset 12 when it is written without compression (as every
/// resolver writes its questions), dotted; `None` otherwise.
fn question_name(b: &[u8]) -> Option<String> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*b.get(at)?);
        if len == 0 {
            return Some(labels.join("."));
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(b.get(at + 1..at + 1 + len)?).into_owned());
        at += 1 + len;
    }
}

fuzz_target!(|data: &[u8]| {
    let id = data
        .get(..2)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    for qtype in [wire::A, wire::AAAA] {
        if let Some(name) = question_name(data) {
            if let Ok(a) = wire::parse(data, id, &name, qtype) {
                for addr in &a.addrs {
                    assert_eq!(addr.is_ipv4(), qtype == wire::A, "{addr} for type {qtype}");
                }
            }
        }
        let _ = wire::parse(data, id, "db.test", qtype);
    }
});
