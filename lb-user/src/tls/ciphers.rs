//! One home for HAProxy's OpenSSL-shaped TLS settings mapped to rustls: `ciphers` (TLS ≤ 1.2
//! cipher lists in OpenSSL syntax), `ciphersuites` (TLS 1.3), `ssl-min-ver`/`ssl-max-ver`,
//! `no-*`/`force-*` and `curves`, for a bind (rustls server) or a server line (rustls client).
//!
//! What rustls cannot offer (CBC, DHE, RSA key exchange, 3DES, TLS < 1.2) is dropped as
//! OpenSSL drops what it lacks; a setting that leaves nothing usable is an error naming it.

use tokio_rustls::rustls::crypto::aws_lc_rs::{self, cipher_suite as cs, kx_group};
use tokio_rustls::rustls::crypto::{CryptoProvider, SupportedKxGroup};
use tokio_rustls::rustls::{CipherSuite, SupportedCipherSuite, SupportedProtocolVersion};

/// A protocol version as HAProxy names it (`ssl-min-ver`, `no-tlsv11`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    Ssl3,
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl Version {
    const ALL: [Version; 5] = [
        Version::Ssl3,
        Version::Tls10,
        Version::Tls11,
        Version::Tls12,
        Version::Tls13,
    ];

    /// `SSLv3`, `TLSv1.0` ... `TLSv1.3` (`ssl-min-ver`/`ssl-max-ver` values).
    pub fn parse(s: &str) -> Option<Version> {
        Version::ALL.into_iter().find(|v| v.name() == s)
    }

    /// The suffix of `no-X`/`force-X`: `sslv3`, `tlsv10` ... `tlsv13`.
    pub fn parse_suffix(s: &str) -> Option<Version> {
        let i = ["sslv3", "tlsv10", "tlsv11", "tlsv12", "tlsv13"]
            .iter()
            .position(|x| *x == s)?;
        Some(Version::ALL[i])
    }

    /// HAProxy's name (also what `ssl_fc_protocol` returns).
    pub fn name(self) -> &'static str {
        match self {
            Version::Ssl3 => "SSLv3",
            Version::Tls10 => "TLSv1.0",
            Version::Tls11 => "TLSv1.1",
            Version::Tls12 => "TLSv1.2",
            Version::Tls13 => "TLSv1.3",
        }
    }
}

/// One side's TLS settings, as the keywords gave them (unset: rustls's defaults, which are
/// OpenSSL's in effect for what both offer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `ciphers`: an OpenSSL cipher list for TLS ≤ 1.2.
    pub ciphers: Option<String>,
    /// `ciphersuites`: TLS 1.3 suites, `:`-separated.
    pub ciphersuites: Option<String>,
    /// `ssl-min-ver` (or `force-*`).
    pub min: Option<Version>,
    /// `ssl-max-ver` (or `force-*`).
    pub max: Option<Version>,
    /// `no-sslv3` ... `no-tlsv13`, by [`Version`] order; ignored when `min` or `max` is set,
    /// as HAProxy does (it warns).
    pub no: [bool; 5],
    /// `curves` (or `ecdhe`): key exchange groups, `:`-separated.
    pub curves: Option<String>,
}

impl Settings {
    /// Applies one `no-X`/`force-X` word; false when it is not one.
    pub fn apply_word(&mut self, word: &str) -> bool {
        if let Some(v) = word.strip_prefix("no-").and_then(Version::parse_suffix) {
            self.no[v as usize] = true;
        } else if let Some(v) = word.strip_prefix("force-").and_then(Version::parse_suffix) {
            self.min = Some(v);
            self.max = Some(v);
        } else {
            return false;
        }
        true
    }

    /// Fills what this side left unset from the global defaults (`ssl-default-bind-*`), as
    /// HAProxy's `ssl` keyword does: lists when unset, `no-*` added, bounds when unset.
    pub fn inherit(&mut self, d: &Settings) {
        if self.ciphers.is_none() {
            self.ciphers.clone_from(&d.ciphers);
        }
        if self.ciphersuites.is_none() {
            self.ciphersuites.clone_from(&d.ciphersuites);
        }
        if self.curves.is_none() {
            self.curves.clone_from(&d.curves);
        }
        for (n, dn) in self.no.iter_mut().zip(d.no) {
            *n |= dn;
        }
        self.min = self.min.or(d.min);
        self.max = self.max.or(d.max);
    }

    /// The versions rustls may speak, as HAProxy computes the range (default minimum
    /// TLSv1.2; `no-*` only without bounds) cut to what rustls has (1.2 and 1.3).
    ///
    /// # Errors
    /// Every version disabled, or none of TLSv1.2/1.3 left.
    pub fn versions(&self) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
        let bounded = self.min.is_some() || self.max.is_some();
        let min = match (self.min, self.max) {
            (Some(m), _) => m,
            (None, Some(x)) if x < Version::Tls12 => x,
            _ => Version::Tls12,
        };
        let max = self.max.unwrap_or(Version::Tls13);
        let on = |v: Version| v >= min && v <= max && (bounded || !self.no[v as usize]);
        if !Version::ALL.into_iter().any(on) {
            return Err("all SSL/TLS versions are disabled".into());
        }
        let mut out = Vec::new();
        if on(Version::Tls13) {
            out.push(&tokio_rustls::rustls::version::TLS13);
        }
        if on(Version::Tls12) {
            out.push(&tokio_rustls::rustls::version::TLS12);
        }
        if out.is_empty() {
            return Err(format!(
                "the SSL/TLS versions allowed ({}..{}) leave neither TLSv1.2 nor TLSv1.3, \
                 the only ones lb speaks",
                min.name(),
                max.name()
            ));
        }
        Ok(out)
    }

    /// A crypto provider (aws-lc-rs) with these suites and groups.
    ///
    /// # Errors
    /// A list that leaves nothing usable, named with its value.
    pub fn provider(&self) -> Result<CryptoProvider, String> {
        let mut p = aws_lc_rs::default_provider();
        let tls13 = match &self.ciphersuites {
            Some(l) => tls13_suites(l)?,
            None => TLS13.iter().map(|(_, s)| *s).collect(),
        };
        let tls12 = match &self.ciphers {
            Some(l) => tls12_suites(l)?,
            None => TLS12.iter().map(|s| s.suite).collect(),
        };
        p.cipher_suites = tls13.into_iter().chain(tls12).collect();
        if let Some(c) = &self.curves {
            p.kx_groups = kx_groups(c)?;
        }
        Ok(p)
    }
}

/// TLS 1.2 suites rustls has, in its preference order, with the words of OpenSSL's cipher
/// list syntax that select each.
struct Suite12 {
    name: &'static str,
    suite: SupportedCipherSuite,
    words: &'static [&'static str],
    bits: u16,
}

/// The words every suite answers to (OpenSSL's aliases; `SHA256`/`SHA384` name a MAC, which
/// AEAD suites do not have, so they select none of these).
const ECDHE: &[&str] = &[
    "kEECDH", "kECDHE", "ECDHE", "EECDH", "ECDH", "HIGH", "ALL", "DEFAULT", "AEAD", "TLSv1.2",
];

static TLS12: [Suite12; 6] = [
    Suite12 {
        name: "ECDHE-ECDSA-AES256-GCM-SHA384",
        suite: cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        words: &["aECDSA", "ECDSA", "AESGCM", "AES", "AES256"],
        bits: 256,
    },
    Suite12 {
        name: "ECDHE-ECDSA-AES128-GCM-SHA256",
        suite: cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        words: &["aECDSA", "ECDSA", "AESGCM", "AES", "AES128"],
        bits: 128,
    },
    Suite12 {
        name: "ECDHE-ECDSA-CHACHA20-POLY1305",
        suite: cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        words: &["aECDSA", "ECDSA", "CHACHA20"],
        bits: 256,
    },
    Suite12 {
        name: "ECDHE-RSA-AES256-GCM-SHA384",
        suite: cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        words: &["aRSA", "AESGCM", "AES", "AES256"],
        bits: 256,
    },
    Suite12 {
        name: "ECDHE-RSA-AES128-GCM-SHA256",
        suite: cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        words: &["aRSA", "AESGCM", "AES", "AES128"],
        bits: 128,
    },
    Suite12 {
        name: "ECDHE-RSA-CHACHA20-POLY1305",
        suite: cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        words: &["aRSA", "CHACHA20"],
        bits: 256,
    },
];

static TLS13: [(&str, SupportedCipherSuite); 3] = [
    ("TLS_AES_256_GCM_SHA384", cs::TLS13_AES_256_GCM_SHA384),
    ("TLS_AES_128_GCM_SHA256", cs::TLS13_AES_128_GCM_SHA256),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        cs::TLS13_CHACHA20_POLY1305_SHA256,
    ),
];

impl Suite12 {
    /// Whether one `A+B+C` term selects it (every part must).
    fn selected_by(&self, term: &str) -> bool {
        term.split('+')
            .all(|w| w == self.name || self.words.contains(&w) || ECDHE.contains(&w))
    }
}

/// An OpenSSL cipher list (`ciphers`) → the TLS 1.2 suites rustls has, in the list's order.
/// `X` adds, `-X` removes, `!X` removes for good, `+X` moves to the end, `@STRENGTH` sorts by
/// key length, `@SECLEVEL=n` is ignored; names and aliases lb has no suite for match nothing.
///
/// # Errors
/// Nothing usable left.
pub fn tls12_suites(list: &str) -> Result<Vec<SupportedCipherSuite>, String> {
    let mut order: Vec<usize> = Vec::new();
    let mut banned = [false; TLS12.len()];
    for item in list.split([':', ',', ' ']).filter(|s| !s.is_empty()) {
        if item == "@STRENGTH" {
            order.sort_by_key(|&i| std::cmp::Reverse(TLS12[i].bits));
            continue;
        }
        if item.starts_with('@') {
            continue;
        }
        let (op, term) = match item.as_bytes()[0] {
            b'!' | b'-' | b'+' => (item.as_bytes()[0], &item[1..]),
            _ => (b' ', item),
        };
        let hits = (0..TLS12.len()).filter(|&i| TLS12[i].selected_by(term));
        match op {
            b'!' => {
                for i in hits {
                    banned[i] = true;
                    order.retain(|&j| j != i);
                }
            }
            b'-' => {
                let hits: Vec<usize> = hits.collect();
                order.retain(|j| !hits.contains(j));
            }
            b'+' => {
                let hits: Vec<usize> = hits.filter(|i| order.contains(i)).collect();
                order.retain(|j| !hits.contains(j));
                order.extend(hits);
            }
            _ => {
                for i in hits {
                    if !banned[i] && !order.contains(&i) {
                        order.push(i);
                    }
                }
            }
        }
    }
    if order.is_empty() {
        return Err(format!(
            "no cipher lb can offer in '{list}' (lb has only ECDHE with AES-GCM or \
             CHACHA20-POLY1305 for TLSv1.2)"
        ));
    }
    Ok(order.into_iter().map(|i| TLS12[i].suite).collect())
}

/// A TLS 1.3 `ciphersuites` list → rustls suites; names lb lacks (the CCM ones) are dropped.
///
/// # Errors
/// Nothing usable left.
pub fn tls13_suites(list: &str) -> Result<Vec<SupportedCipherSuite>, String> {
    let mut out: Vec<SupportedCipherSuite> = Vec::new();
    for name in list.split(':').filter(|s| !s.is_empty()) {
        if let Some((_, s)) = TLS13.iter().find(|(n, _)| *n == name) {
            if !out.iter().any(|o| o.suite() == s.suite()) {
                out.push(*s);
            }
        }
    }
    if out.is_empty() {
        return Err(format!(
            "no TLSv1.3 cipher suite lb can offer in '{list}' (lb has TLS_AES_256_GCM_SHA384, \
             TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256)"
        ));
    }
    Ok(out)
}

/// `curves` (`X25519:P-256:P-384`, OpenSSL's other names too) → key exchange groups; names
/// lb lacks (P-521, X448, brainpool) are dropped.
///
/// # Errors
/// Nothing usable left.
pub fn kx_groups(list: &str) -> Result<Vec<&'static dyn SupportedKxGroup>, String> {
    let mut out: Vec<&'static dyn SupportedKxGroup> = Vec::new();
    for name in list.split(':').filter(|s| !s.is_empty()) {
        let g = match name {
            "X25519" | "x25519" => kx_group::X25519,
            "P-256" | "prime256v1" | "secp256r1" => kx_group::SECP256R1,
            "P-384" | "secp384r1" => kx_group::SECP384R1,
            "X25519MLKEM768" => kx_group::X25519MLKEM768,
            _ => continue,
        };
        if !out.iter().any(|o| o.name() == g.name()) {
            out.push(g);
        }
    }
    if out.is_empty() {
        return Err(format!(
            "no curve lb can offer in '{list}' (lb has X25519, P-256, P-384, X25519MLKEM768)"
        ));
    }
    Ok(out)
}

/// A negotiated suite's name as HAProxy prints it (`ssl_fc_cipher`, `%sslc`): OpenSSL's.
pub fn openssl_name(suite: CipherSuite) -> &'static str {
    TLS12
        .iter()
        .map(|s| (s.name, s.suite))
        .chain(TLS13.iter().copied())
        .find(|(_, s)| s.suite() == suite)
        .map_or("-", |(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(l: &[SupportedCipherSuite]) -> Vec<&'static str> {
        l.iter().map(|s| openssl_name(s.suite())).collect()
    }

    #[test]
    fn a_typical_mozilla_list_keeps_what_rustls_has_in_order() {
        let l = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
                 ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
                 ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:\
                 DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:AES128-SHA";
        let got = names(&tls12_suites(l).unwrap());
        assert_eq!(
            got,
            [
                "ECDHE-ECDSA-AES128-GCM-SHA256",
                "ECDHE-RSA-AES128-GCM-SHA256",
                "ECDHE-ECDSA-AES256-GCM-SHA384",
                "ECDHE-RSA-AES256-GCM-SHA384",
                "ECDHE-ECDSA-CHACHA20-POLY1305",
                "ECDHE-RSA-CHACHA20-POLY1305",
            ]
        );
    }

    #[test]
    fn aliases_removals_and_moves() {
        let got = names(&tls12_suites("HIGH:!aNULL:!MD5:-aRSA:+CHACHA20").unwrap());
        assert_eq!(
            got,
            [
                "ECDHE-ECDSA-AES256-GCM-SHA384",
                "ECDHE-ECDSA-AES128-GCM-SHA256",
                "ECDHE-ECDSA-CHACHA20-POLY1305",
            ]
        );
        let got = names(&tls12_suites("ECDHE+AESGCM:!AES256").unwrap());
        assert_eq!(
            got,
            [
                "ECDHE-ECDSA-AES128-GCM-SHA256",
                "ECDHE-RSA-AES128-GCM-SHA256"
            ]
        );
        let got = names(&tls12_suites("ECDHE-RSA-AES128-GCM-SHA256:aRSA:@STRENGTH").unwrap());
        assert_eq!(got[2], "ECDHE-RSA-AES128-GCM-SHA256");
        assert_eq!(
            names(&tls12_suites("!aRSA:aRSA:ECDSA+AES128").unwrap()),
            ["ECDHE-ECDSA-AES128-GCM-SHA256"]
        );
    }

    #[test]
    fn the_classic_haproxy_list_and_mac_aliases() {
        let l = "ECDH+AESGCM:DH+AESGCM:ECDH+AES256:DH+AES256:ECDH+AES128:DH+AES:ECDH+3DES:\
                 DH+3DES:RSA+AESGCM:RSA+AES:RSA+3DES:!aNULL:!MD5:!DSS";
        let got = names(&tls12_suites(l).unwrap());
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got.iter().all(|n| n.contains("GCM")), "{got:?}");
        // A MAC alias: AEAD suites have none.
        assert!(tls12_suites("SHA256:SHA384").is_err());
    }

    #[test]
    fn a_list_with_nothing_usable_is_an_error_naming_it() {
        let e = tls12_suites("DHE-RSA-AES128-SHA:3DES:RC4").unwrap_err();
        assert!(e.contains("'DHE-RSA-AES128-SHA:3DES:RC4'"), "{e}");
        assert!(tls13_suites("TLS_AES_128_CCM_SHA256").is_err());
        assert!(kx_groups("P-521:X448").is_err());
    }

    #[test]
    fn tls13_suites_and_curves_map() {
        let s = tls13_suites("TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_CCM_SHA256").unwrap();
        assert_eq!(names(&s), ["TLS_CHACHA20_POLY1305_SHA256"]);
        let g = kx_groups("X25519:P-256:P-521:secp384r1").unwrap();
        assert_eq!(g.len(), 3);
    }

    fn vers(s: &Settings) -> Vec<&'static str> {
        s.versions()
            .unwrap()
            .iter()
            .map(|v| match v.version {
                tokio_rustls::rustls::ProtocolVersion::TLSv1_3 => "1.3",
                _ => "1.2",
            })
            .collect()
    }

    #[test]
    fn versions_follow_haproxy() {
        let mut s = Settings::default();
        assert_eq!(vers(&s), ["1.3", "1.2"]);
        assert!(s.apply_word("no-tlsv13"));
        assert_eq!(vers(&s), ["1.2"]);
        // Bounds win over no-* (HAProxy ignores them, with a warning).
        s.min = Some(Version::Tls10);
        assert_eq!(vers(&s), ["1.3", "1.2"]);
        let mut s = Settings::default();
        assert!(s.apply_word("force-tlsv13"));
        assert_eq!(vers(&s), ["1.3"]);
        let s = Settings {
            max: Some(Version::Tls11),
            ..Settings::default()
        };
        assert!(s.versions().unwrap_err().contains("neither"));
        let s = Settings {
            no: [false, false, false, true, true],
            ..Settings::default()
        };
        assert!(s.versions().unwrap_err().contains("disabled"));
        assert!(!Settings::default().apply_word("no-tlsv14"));
    }

    #[test]
    fn defaults_are_inherited_where_unset() {
        let d = Settings {
            ciphers: Some("ECDHE+AESGCM".into()),
            min: Some(Version::Tls12),
            no: [true, true, true, false, false],
            ..Settings::default()
        };
        let mut s = Settings {
            ciphers: Some("ECDHE-RSA-AES128-GCM-SHA256".into()),
            ..Settings::default()
        };
        s.inherit(&d);
        assert_eq!(s.ciphers.as_deref(), Some("ECDHE-RSA-AES128-GCM-SHA256"));
        assert_eq!(s.min, Some(Version::Tls12));
        assert!(s.no[0]);
        assert!(s.provider().is_ok());
    }
}
