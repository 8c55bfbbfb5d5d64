//! Unit-test helpers of the TLS shim: self-signed certificates made with `openssl`, and a
//! client that trusts anything (the tests check the bytes, not the trust).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::crypto;
use tokio_rustls::rustls::ClientConfig;

/// A fresh temporary directory (removed by the caller, or left in /tmp).
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("lb-tls-{tag}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a self-signed P-256 certificate for `names` (the first is the CN, all are SAN DNS
/// names; none: CN only) to `DIR/FILE` (chain then key, one PEM) and returns its path.
pub fn self_signed(dir: &Path, file: &str, cn: &str, names: &[&str]) -> PathBuf {
    let (key, cert) = (dir.join(format!("{file}.k")), dir.join(format!("{file}.c")));
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .arg("-subj")
        .arg(format!("/CN={cn}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null());
    if !names.is_empty() {
        let san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
        cmd.arg("-addext")
            .arg(format!("subjectAltName={}", san.join(",")));
    }
    assert!(cmd.status().unwrap().success(), "openssl req");
    let pem = dir.join(file);
    let mut all = std::fs::read(&cert).unwrap();
    all.extend(std::fs::read(&key).unwrap());
    std::fs::write(&pem, all).unwrap();
    pem
}

/// A client config that accepts any certificate, offering `alpn`.
pub fn client(alpn: &[&str]) -> Arc<ClientConfig> {
    let provider = Arc::new(crypto::aws_lc_rs::default_provider());
    let mut c = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(crate::tls_client::NoVerify(provider)))
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Arc::new(c)
}
