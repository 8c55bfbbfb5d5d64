//! TLS settings: a bind's termination (`ssl crt ...`, with the global `ssl-default-bind-*`),
//! and a server's (`ssl`, `verify`, `ca-file`, `verifyhost`, `sni`, `alpn`), what its traffic
//! and its TLS health checks share, as in HAProxy, where both use the server's one `ssl_ctx`.

use std::path::PathBuf;
use std::sync::Arc;

use crate::acl::SampleExpr;

/// TLS to one server: for its traffic with `ssl`, and the trust its TLS checks use too.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerTls {
    /// `ssl`: the traffic to the server is TLS (`no-ssl` undoes it). A TLS check is
    /// [`crate::config::CheckTls::enabled`].
    pub ssl: bool,
    /// `verify required` (the default, from `ssl-server-verify`), or `verify none`. `None`
    /// until the server line is complete: then the global default is applied.
    pub verify: Option<bool>,
    /// `ca-file` (relative paths joined to `ca-base`), or `@system-ca` as the system bundle.
    pub ca_file: Option<PathBuf>,
    /// `verifyhost NAME`: the name the certificate must hold when no SNI is sent.
    pub verifyhost: Option<String>,
    /// `sni EXPR`: the SNI of the traffic, evaluated on the session at each connect (an
    /// empty or absent value sends none). Checks use `check-sni` instead, as HAProxy.
    pub sni: Option<SniExpr>,
    /// `alpn LIST`: the protocols the traffic offers, in order (checks: `check-alpn`).
    pub alpn: Vec<String>,
    /// `ciphers`, `ciphersuites`, `ssl-min-ver`, `ssl-max-ver`, `no-tlsv1x`, `force-tlsv1x`,
    /// with the global `ssl-default-server-*` filled in once the line is complete.
    pub settings: crate::tls::ciphers::Settings,
}

/// `sni EXPR`: a sample expression, compared by its text (the same text parses the same).
#[derive(Clone, Debug)]
pub struct SniExpr {
    pub text: String,
    pub expr: SampleExpr,
}

impl PartialEq for SniExpr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for SniExpr {}

/// A bind's TLS termination (`ssl`, `crt`, `alpn`, `ciphers`...), its certificates loaded.
#[derive(Clone, Debug)]
pub struct BindTls {
    /// `crt FILE|DIR`, joined to `crt-base`: the first one's first certificate is the default.
    pub crts: Vec<PathBuf>,
    /// Versions, ciphers, curves (the global `ssl-default-bind-*` filled in).
    pub settings: crate::tls::ciphers::Settings,
    pub opts: crate::tls::server::ServerOpts,
    /// The rustls server built from the above at load.
    pub server: Arc<tokio_rustls::rustls::ServerConfig>,
}

/// Equal settings are equal binds (the loaded certificates are not compared).
impl PartialEq for BindTls {
    fn eq(&self, o: &Self) -> bool {
        self.crts == o.crts && self.settings == o.settings && self.opts == o.opts
    }
}

impl Eq for BindTls {}

/// The global `ssl-default-bind-*` settings: the defaults of every `ssl` bind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BindTlsDefaults {
    /// `ssl-default-bind-ciphers`, `-ciphersuites`, `-curves`, and the version words of
    /// `ssl-default-bind-options`.
    pub settings: crate::tls::ciphers::Settings,
    /// `ssl-default-bind-options no-tls-tickets`.
    pub no_tls_tickets: bool,
    /// `ssl-default-bind-options prefer-client-ciphers`.
    pub prefer_client_ciphers: bool,
}
