//! Certificates for the TLS tests, made by Debian's `openssl` in a test's directory: a CA
//! and a server certificate it signs for `db.test`.

use std::path::Path;
use std::process::Command;

/// `openssl ARGS` in `dir`; panics with its error output when it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (installed by cargo xtask setup)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new EC P-256 key, unencrypted (`openssl req` arguments).
pub const EC: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

/// A CA `NAME-ca.pem` and a server certificate `NAME.pem`/`NAME.key` for `db.test` it signs.
pub fn make_certs(dir: &Path, name: &str) {
    let (ca, ca_key) = (format!("{name}-ca.pem"), format!("{name}-ca.key"));
    let subj = format!("/CN={name} CA");
    let mut a = vec!["req", "-x509"];
    a.extend(EC);
    a.extend([
        "-keyout", &ca_key, "-out", &ca, "-days", "2", "-subj", &subj,
    ]);
    openssl(dir, &a);
    let (key, csr, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    let mut a = vec!["req"];
    a.extend(EC);
    a.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=db.test"]);
    openssl(dir, &a);
    let ext = "subjectAltName=DNS:db.test\nbasicConstraints=CA:FALSE\n";
    std::fs::write(dir.join("ext"), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    );
}
