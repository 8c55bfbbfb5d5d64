//! A TLS bind's rustls server: its certificates (`crt FILE|DIR`, loaded when the configuration
//! is), the choice among them by SNI as HAProxy makes it, and its settings.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::ServerConfig;

use super::ciphers::Settings;

/// A bind's TLS options besides the version and cipher settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerOpts {
    /// `alpn`: the protocols offered, in the server's preference order.
    pub alpn: Vec<String>,
    /// `strict-sni`: a client whose SNI matches no certificate is refused.
    pub strict_sni: bool,
    /// `no-tls-tickets`: no stateless session tickets.
    pub no_tls_tickets: bool,
    /// `prefer-client-ciphers`: the client's cipher order wins.
    pub prefer_client_ciphers: bool,
}

/// Files a `crt DIR` skips: the extra files HAProxy loads beside a certificate.
const EXTRA: [&str; 5] = ["key", "ocsp", "issuer", "sctl", "dh"];

/// One certificate with its key and the names it serves.
#[derive(Debug)]
struct Loaded {
    names: Vec<String>,
    key: Arc<CertifiedKey>,
}

/// The certificate files a `crt` names: the file, or a directory's files in name order.
fn crt_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let rd = std::fs::read_dir(path)
        .map_err(|e| format!("unable to scan directory '{}': {e}", path.display()))?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_none_or(|e| !EXTRA.contains(&e))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!(
            "directory '{}' holds no certificate file",
            path.display()
        ));
    }
    Ok(files)
}

/// Loads one PEM certificate file: the chain and the key, or the key from `FILE.key`.
fn load_file(path: &Path) -> Result<Loaded, String> {
    let shown = path.display();
    let pem = crate::outside::read(path)
        .map_err(|e| format!("unable to load SSL certificate file '{shown}': {e}"))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate file '{shown}': invalid PEM: {e}"))?;
    if chain.is_empty() {
        return Err(format!(
            "unable to load SSL certificate from file '{shown}': no certificate in it"
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&pem).or_else(|_| key_beside(path))?;
    let provider = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider();
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("certificate file '{shown}': unusable private key: {e}"))?;
    let ck = CertifiedKey::new(chain, signer);
    ck.keys_match().map_err(|e| {
        format!("certificate file '{shown}': the private key does not match the certificate ({e})")
    })?;
    let names = names_of(&ck.cert[0])
        .map_err(|e| format!("certificate file '{shown}': unreadable certificate: {e}"))?;
    Ok(Loaded {
        names,
        key: Arc::new(ck),
    })
}

/// The key of a certificate file that holds none: `FILE.key` (HAProxy's
/// `ssl-load-extra-files` default).
fn key_beside(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let mut kp = path.as_os_str().to_owned();
    kp.push(".key");
    let kp = PathBuf::from(kp);
    let kb = crate::outside::read(&kp).map_err(|_| {
        format!(
            "unable to load SSL private key for certificate '{}': none in it and no readable \
             '{}'",
            path.display(),
            kp.display()
        )
    })?;
    PrivateKeyDer::from_pem_slice(&kb).map_err(|e| {
        format!(
            "unable to load SSL private key from '{}': {e}",
            kp.display()
        )
    })
}

/// The DNS names a certificate serves: its SAN DNS names, else its CN (lower case).
fn names_of(cert: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let ee = webpki::EndEntityCert::try_from(cert).map_err(|e| format!("{e:?}"))?;
    let mut names: Vec<String> = ee.valid_dns_names().map(str::to_ascii_lowercase).collect();
    if names.is_empty() {
        names.extend(common_name(ee.subject()).map(|n| n.to_ascii_lowercase()));
    }
    Ok(names)
}

/// The CN of a DER subject: the value after the `id-at-commonName` OID, when it is a short
/// string.
fn common_name(subject: &[u8]) -> Option<String> {
    const CN: [u8; 5] = [0x06, 0x03, 0x55, 0x04, 0x03];
    let at = subject.windows(CN.len()).position(|w| w == CN)? + CN.len();
    let (tag, len) = (*subject.get(at)?, usize::from(*subject.get(at + 1)?));
    if !matches!(tag, 0x0c | 0x13 | 0x16) || len >= 0x80 {
        return None;
    }
    let v = subject.get(at + 2..at + 2 + len)?;
    String::from_utf8(v.to_vec()).ok()
}

/// HAProxy's certificate choice: an exact SNI match, else a wildcard one (`*.example.com`
/// for one more label), else the bind's first certificate, unless `strict-sni`.
#[derive(Debug)]
struct BySni {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the part after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// None: no `crt` at all (with `strict-sni` only; every handshake fails, as HAProxy's).
    default: Option<Arc<CertifiedKey>>,
    strict: bool,
}

impl BySni {
    fn new(loaded: Vec<Loaded>, strict: bool) -> Option<Self> {
        let default = loaded.first().map(|l| l.key.clone());
        if default.is_none() && !strict {
            return None;
        }
        let (mut exact, mut wildcard) = (HashMap::new(), HashMap::new());
        for l in loaded {
            for n in l.names {
                // The first certificate naming a name keeps it.
                match n.strip_prefix("*.") {
                    Some(rest) => wildcard.entry(rest.to_owned()),
                    None => exact.entry(n),
                }
                .or_insert_with(|| l.key.clone());
            }
        }
        Some(BySni {
            exact,
            wildcard,
            default,
            strict,
        })
    }

    fn choose(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let found = sni.and_then(|s| {
            let s = s.to_ascii_lowercase();
            self.exact.get(&s).cloned().or_else(|| {
                let (_, rest) = s.split_once('.')?;
                self.wildcard.get(rest).cloned()
            })
        });
        match found {
            Some(k) => Some(k),
            None if self.strict => None,
            None => self.default.clone(),
        }
    }
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.choose(hello.server_name())
    }
}

/// The rustls server of a bind: its certificates loaded (`crts`, already joined to
/// `crt-base`), its versions, ciphers and options.
///
/// # Errors
/// A certificate that can't be loaded, or settings that leave nothing usable: why, with the
/// path or value.
pub fn server_config(
    crts: &[PathBuf],
    settings: &Settings,
    opts: &ServerOpts,
) -> Result<Arc<ServerConfig>, String> {
    let mut loaded = Vec::new();
    for c in crts {
        for f in crt_files(c)? {
            loaded.push(load_file(&f)?);
        }
    }
    let resolver =
        BySni::new(loaded, opts.strict_sni).ok_or("no SSL certificate specified (use 'crt')")?;
    let provider = Arc::new(settings.provider()?);
    let versions = settings.versions()?;
    let mut c = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| format!("{e} (check 'ciphers', 'ciphersuites' and the TLS versions)"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    c.alpn_protocols = opts.alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    c.ignore_client_order = !opts.prefer_client_ciphers;
    if opts.no_tls_tickets {
        c.send_tls13_tickets = 0;
    } else if let Ok(t) = tokio_rustls::rustls::crypto::aws_lc_rs::Ticketer::new() {
        c.ticketer = t;
    }
    Ok(Arc::new(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testutil;

    #[test]
    fn sni_chooses_exact_then_wildcard_then_the_first() {
        let dir = testutil::temp_dir("sni");
        let a = testutil::self_signed(&dir, "a.pem", "a.example", &["a.example"]);
        let w = testutil::self_signed(&dir, "w.pem", "w", &["*.w.example"]);
        let cn = testutil::self_signed(&dir, "cn.pem", "CN.Example", &[]);
        let loaded: Vec<Loaded> = [&a, &w, &cn]
            .iter()
            .map(|p| load_file(p).unwrap())
            .collect();
        assert_eq!(loaded[2].names, ["cn.example"]);
        let keys: Vec<_> = loaded.iter().map(|l| l.key.clone()).collect();
        let by = BySni::new(loaded, false).unwrap();
        let is = |got: Option<Arc<CertifiedKey>>, i: usize| Arc::ptr_eq(&got.unwrap(), &keys[i]);
        assert!(is(by.choose(Some("A.example")), 0));
        assert!(is(by.choose(Some("x.w.example")), 1));
        assert!(is(by.choose(Some("cn.example")), 2));
        assert!(is(by.choose(Some("y.x.w.example")), 0));
        assert!(is(by.choose(None), 0));
        let strict = BySni::new(vec![load_file(&a).unwrap()], true).unwrap();
        assert!(strict.choose(Some("b.example")).is_none());
        assert!(strict.choose(None).is_none());
        assert!(strict.choose(Some("a.example")).is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_key_beside_and_a_directory_load_and_bad_files_say_why() {
        let dir = testutil::temp_dir("crt");
        let pem = testutil::self_signed(&dir, "s.pem", "s.example", &["s.example"]);
        // The certificate alone, its key in `s.pem.key`.
        let (cert, key) = (dir.join("s.pem.c"), dir.join("s.pem.k"));
        let sub = dir.join("d");
        std::fs::create_dir(&sub).unwrap();
        std::fs::copy(&cert, sub.join("only.pem")).unwrap();
        std::fs::copy(&key, sub.join("only.pem.key")).unwrap();
        std::fs::write(sub.join("x.ocsp"), "junk").unwrap();
        assert_eq!(crt_files(&sub).unwrap(), [sub.join("only.pem")]);
        assert!(load_file(&sub.join("only.pem")).is_ok());
        let settings = Settings::default();
        let both = [pem, sub.clone()];
        assert!(server_config(&both, &settings, &ServerOpts::default()).is_ok());
        let err = load_file(&dir.join("nope.pem")).unwrap_err();
        assert!(err.contains("unable to load SSL certificate file"), "{err}");
        let err = load_file(&cert).unwrap_err();
        assert!(err.contains("private key"), "{err}");
        std::fs::write(sub.join("bad.pem"), "hello").unwrap();
        let err = server_config(&[sub], &settings, &ServerOpts::default()).unwrap_err();
        assert!(err.contains("bad.pem"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
