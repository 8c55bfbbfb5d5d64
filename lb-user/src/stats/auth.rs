//! HTTP Basic authentication of the stats page: `stats auth U:P` users and `userlist` users
//! (`insecure-password` in clear, `password` as a crypt(3) hash checked with libcrypt's
//! `crypt_rn`, which knows SHA-512 `$6$`, SHA-256 `$5$`, MD5 `$1$`, bcrypt and yescrypt).
//! Every comparison takes the same time whatever the bytes (no early exit).

use std::ffi::{CStr, CString};

use crate::config::{Password, UserEntry};

#[link(name = "crypt")]
extern "C" {
    /// libxcrypt: thread-safe crypt with a caller-provided work area of `size` bytes. Returns
    /// NULL (or a string starting with `*`) on failure.
    fn crypt_rn(
        phrase: *const libc::c_char,
        setting: *const libc::c_char,
        data: *mut libc::c_void,
        size: libc::c_int,
    ) -> *mut libc::c_char;
}

/// Size of libxcrypt's `struct crypt_data` (its `CRYPT_DATA_INTERNAL_SIZE` + output buffers),
/// rounded up: `crypt_rn` rejects a smaller area, and a larger one is fine.
const CRYPT_DATA_SIZE: usize = 32_768;

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    let mut diff = u8::from(left.len() != right.len());
    // Compare over the longer length so the work doesn't reveal where they differ.
    for i in 0..left.len().max(right.len()) {
        let x = left.get(i).copied().unwrap_or(0);
        let y = right.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    diff == 0
}

/// crypt(3) of `password` with the salt and method of `hash`; `None` on an unknown method.
pub fn crypt(password: &str, hash: &str) -> Option<String> {
    let phrase = CString::new(password).ok()?;
    let setting = CString::new(hash).ok()?;
    let mut data = vec![0u8; CRYPT_DATA_SIZE];
    // SAFETY: both strings are NUL-terminated and live across the call; `data` is a zeroed
    // writable area of the size we pass; the result points into `data` (or is NULL) and is
    // copied out before `data` is dropped.
    unsafe {
        let out = crypt_rn(
            phrase.as_ptr(),
            setting.as_ptr(),
            data.as_mut_ptr().cast(),
            CRYPT_DATA_SIZE as libc::c_int,
        );
        if out.is_null() {
            return None;
        }
        let s = CStr::from_ptr(out).to_string_lossy().into_owned();
        (!s.starts_with('*')).then_some(s)
    }
}

/// Whether `password` is right for `entry`.
pub fn check_password(entry: &Password, password: &str) -> bool {
    match entry {
        Password::Clear(p) => constant_time_eq(p.as_bytes(), password.as_bytes()),
        Password::Crypt(h) => {
            crypt(password, h).is_some_and(|out| constant_time_eq(out.as_bytes(), h.as_bytes()))
        }
    }
}

/// Whether `user`/`password` match one of `users`. Every user is looked at, so the time does
/// not tell which names exist (crypt hashes still cost more than clear passwords).
pub fn check<'a>(
    users: impl IntoIterator<Item = &'a UserEntry>,
    user: &str,
    password: &str,
) -> bool {
    let mut ok = false;
    for u in users {
        let name_ok = constant_time_eq(u.name.as_bytes(), user.as_bytes());
        if name_ok && check_password(&u.password, password) {
            ok = true;
        }
    }
    ok
}

/// Decodes standard base64 (with or without padding); `None` on any invalid character.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The user and password of an `Authorization: Basic ...` header value.
pub fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = String::from_utf8(base64_decode(rest.trim())?).ok()?;
    let (u, p) = raw.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_basic() {
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert!(base64_decode("a*b").is_none());
        assert_eq!(
            parse_basic("Basic dXNlcjpwYXNz"),
            Some(("user".into(), "pass".into()))
        );
        assert_eq!(parse_basic("Bearer x"), None);
        assert_eq!(parse_basic("Basic !!"), None);
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn crypt_hashes_verify() {
        // Made with `openssl passwd -6 -salt saltsalt secret` / `-5` / `-1`.
        for h in [
            "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1",
            "$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA",
            "$1$saltsalt$9xy1btjgzLYfb7hivXtC//",
        ] {
            let p = Password::Crypt(h.to_owned());
            assert!(check_password(&p, "secret"), "{h}");
            assert!(!check_password(&p, "Secret"), "{h}");
        }
        assert!(!check_password(&Password::Crypt("nothash".into()), "x"));
    }
}
