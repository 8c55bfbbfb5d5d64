//! `option ldap-check`, as HAProxy 2.6 builds it (`proxy_parse_ldap_check_opt`): an LDAP v3
//! anonymous simple bind, then the server's answer must start like an LDAP message (`expect
//! rbinary "^30" min-recv 14`, else "Not LDAP v3 protocol") and be a `BindResponse` to message
//! 1 whose `resultCode` is 0 (`tcpcheck_ldap_expect_bindrsp`). A non-zero code is `L7STS`
//! with the code as the check's code (`check_code` in the stats), as HAProxy reports it.

use tokio::time::Instant;

use super::probe::{default_connect, open, read_deadline, AfterConnect, Outcome, SendError};
use super::probe::{Target, BUF_CAP};

/// HAProxy's request: `LDAPMessage { messageID 1, bindRequest { version 3, name "",
/// authentication simple "" } }`.
pub const BIND_REQUEST: [u8; 14] = [
    0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00,
];

/// The `min-recv` of HAProxy's first expect rule.
const MIN_RECV: usize = 14;

const NOT_LDAP: &str = "Not LDAPv3 protocol";
const SEE_RFC: &str = "See RFC: http://tools.ietf.org/html/rfc4511#section-4.1.9";

/// What the bytes read so far say.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Not enough yet.
    More,
    Done(Outcome),
}

/// Judges the server's answer in `b`; `last`: no more bytes will come. HAProxy's two expect
/// rules in one: the first byte (after `MIN_RECV` bytes, or at the end), then the message.
fn judge(b: &[u8], last: bool) -> Verdict {
    let not_ldap = || Verdict::Done(Outcome::new(false, "L7RSP", NOT_LDAP));
    if b.len() < MIN_RECV && !last {
        return Verdict::More;
    }
    if b.len() < MIN_RECV || b[0] != 0x30 {
        return not_ldap();
    }
    // The LDAPMessage's length: short form, or long form on 2 or 4 bytes (only these,
    // as HAProxy: Active Directory uses 4).
    let (nbytes, msglen) = if b[1] & 0x80 == 0 {
        (0, usize::from(b[1]))
    } else {
        let nbytes = usize::from(b[1] & 0x7f);
        let Some(len) = b.get(2..2 + nbytes) else {
            return if last { not_ldap() } else { Verdict::More };
        };
        match nbytes {
            2 => (2, usize::from(u16::from_be_bytes([len[0], len[1]]))),
            4 => (
                4,
                u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize,
            ),
            _ => return not_ldap(),
        }
    };
    let whole = 2 + nbytes + msglen;
    if b.len() < whole {
        // A message that cannot fit the check's buffer never completes.
        return if last || whole > BUF_CAP {
            Verdict::Done(Outcome::new(false, "L7RSP", ""))
        } else {
            Verdict::More
        };
    }
    let msg = &b[2 + nbytes..whole];
    // messageID INTEGER 1, protocolOp [APPLICATION 1] BindResponse.
    if !msg.starts_with(&[0x02, 0x01, 0x01, 0x61]) {
        return not_ldap();
    }
    let at = match msg.get(4) {
        Some(len) if len & 0x80 != 0 => 5 + usize::from(len & 0x7f),
        Some(_) => 5,
        None => return not_ldap(),
    };
    // resultCode ENUMERATED, one byte.
    match msg.get(at..at + 3) {
        Some([0x0a, 0x01, 0]) => Verdict::Done(Outcome::new(true, "L7OK", "Success")),
        Some([0x0a, 0x01, code]) => {
            Verdict::Done(Outcome::new(false, "L7STS", SEE_RFC).code(u32::from(*code)))
        }
        _ => not_ldap(),
    }
}

/// Runs one `ldap-check` against `t`.
pub async fn run(t: &Target, started: Instant) -> Outcome {
    let whole = started + t.inter;
    let mut s = match open(&default_connect(false), AfterConnect::Send, t, whole).await {
        Ok(s) => s,
        Err(o) => return o,
    };
    let deadline = read_deadline(t, whole);
    match s.send(&BIND_REQUEST, deadline).await {
        Ok(()) => {}
        Err(SendError::Io(e)) => {
            return Outcome::new(false, "L7RSP", super::probe::io_text(&e));
        }
        Err(SendError::Timeout) => return Outcome::new(false, "L7TOUT", ""),
    }
    let mut buf = Vec::new();
    let mut last = false;
    loop {
        if let Verdict::Done(o) = judge(&buf, last) {
            return o;
        }
        match s.fill(&mut buf, deadline).await {
            Ok(l) => last = l,
            Err(()) => return Outcome::new(false, "L7TOUT", ""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(v: Verdict) -> (bool, &'static str, String, Option<u32>) {
        match v {
            Verdict::Done(o) => (o.passed, o.result, o.info, o.code),
            Verdict::More => panic!("wants more"),
        }
    }

    #[test]
    fn slapds_answers() {
        // OpenLDAP 2.5 to the anonymous bind: success, and `disallow bind_anon`.
        let ok = [
            0x30, 0x0c, 0x02, 0x01, 0x01, 0x61, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
        ];
        assert_eq!(
            outcome(judge(&ok, false)),
            (true, "L7OK", "Success".into(), None)
        );
        let mut refused = vec![
            0x30, 0x25, 0x02, 0x01, 0x01, 0x61, 0x20, 0x0a, 0x01, 0x30, 0x04, 0x00, 0x04, 0x19,
        ];
        refused.extend_from_slice(b"anonymous bind disallowed");
        assert_eq!(
            outcome(judge(&refused, false)),
            (false, "L7STS", SEE_RFC.into(), Some(48))
        );
        // Byte by byte: never a verdict before the message is whole.
        for n in 0..refused.len() {
            assert_eq!(judge(&refused[..n], false), Verdict::More, "{n} bytes");
        }
    }

    #[test]
    fn long_form_lengths() {
        // Active Directory: lengths on 4 bytes, the BindResponse's on 1 more.
        let ad = [
            0x30, 0x84, 0, 0, 0, 0x10, 0x02, 0x01, 0x01, 0x61, 0x84, 0, 0, 0, 0x07, 0x0a, 0x01,
            0x31, 0x04, 0x00, 0x04, 0x00,
        ];
        assert_eq!(outcome(judge(&ad, false)).3, Some(0x31));
        // On 3 bytes: not handled, as HAProxy.
        let odd = [0x30, 0x83, 0, 0, 9, 2, 1, 1, 0x61, 7, 0x0a, 1, 0, 4];
        assert_eq!(outcome(judge(&odd, false)).2, NOT_LDAP);
    }

    #[test]
    fn what_is_not_ldap() {
        assert_eq!(outcome(judge(b"+PONG\r\n-ERR x\r\n", false)).2, NOT_LDAP);
        // Fewer than 14 bytes and the end: HAProxy's min-recv rule fails.
        assert_eq!(
            outcome(judge(&[0x30, 0x0c, 2, 1, 1], true)),
            (false, "L7RSP", NOT_LDAP.into(), None)
        );
        assert_eq!(outcome(judge(&[], true)).2, NOT_LDAP);
        // Another message id, or another operation.
        let other_id = [0x30, 0x0c, 2, 1, 2, 0x61, 7, 0x0a, 1, 0, 4, 0, 4, 0];
        assert_eq!(outcome(judge(&other_id, false)).2, NOT_LDAP);
        // Cut short by the server's close: HAProxy's truncated response, no text.
        let cut = [0x30, 0x20, 2, 1, 1, 0x61, 7, 0x0a, 1, 0, 4, 0, 4, 0];
        assert_eq!(judge(&cut, false), Verdict::More);
        assert_eq!(
            outcome(judge(&cut, true)),
            (false, "L7RSP", String::new(), None)
        );
        // A length past the check buffer never completes: no waiting for it.
        let huge = [0x30, 0x84, 0x7f, 0, 0, 0, 2, 1, 1, 0x61, 7, 0x0a, 1, 0];
        assert_eq!(outcome(judge(&huge, false)).1, "L7RSP");
    }
}
