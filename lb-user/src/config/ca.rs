//! CA files of TLS health checks (`ca-file`): read once at load to refuse a bad one with the
//! line that names it, and again when the checkers start (from outside any `chroot`).

use std::path::Path;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;

/// `ca-file @system-ca`: the system's bundle (Debian's `ca-certificates`), as HAProxy takes
/// OpenSSL's default paths.
pub const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The certificates of a PEM file (at least one), or why not.
pub fn load(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let real = if path == Path::new("@system-ca") {
        Path::new(SYSTEM_CA)
    } else {
        path
    };
    let bytes = crate::outside::read(real)
        .map_err(|e| format!("unable to load CA file '{}': {e}", real.display()))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("CA file '{}': invalid PEM: {e}", real.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "CA file '{}' holds no certificate (expected PEM 'BEGIN CERTIFICATE' blocks)",
            real.display()
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_empty_and_garbage_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("lb-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = load(&dir.join("nope.pem")).unwrap_err();
        assert!(e.contains("unable to load CA file"), "{e}");
        std::fs::write(dir.join("empty.pem"), "hello\n").unwrap();
        let e = load(&dir.join("empty.pem")).unwrap_err();
        assert!(e.contains("holds no certificate"), "{e}");
        std::fs::write(
            dir.join("bad.pem"),
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(load(&dir.join("bad.pem")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
