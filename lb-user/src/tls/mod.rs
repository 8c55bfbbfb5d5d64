//! TLS on lb's connections: the settings HAProxy takes from OpenSSL mapped to rustls
//! (`ciphers`), a TLS bind's server and certificates (`server`), its handshake (`accept`), and
//! the relay that lets the plain pipeline run over a TLS stream (`relay`). Below `config`,
//! which holds these settings; a server's TLS client, built from its configuration, is above
//! it (`crate::tls_client`).

pub mod accept;
pub mod ciphers;
pub mod relay;
pub mod server;

#[cfg(test)]
pub(crate) mod testutil;

/// What a client's TLS handshake settled, for the `ssl_fc*` fetches and `%sslv`/`%sslc`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The SNI the client sent (`ssl_fc_sni`).
    pub sni: Option<String>,
    /// The protocol ALPN chose (`ssl_fc_alpn`).
    pub alpn: Option<String>,
    /// `TLSv1.2`/`TLSv1.3` (`ssl_fc_protocol`, `%sslv`).
    pub version: &'static str,
    /// OpenSSL's name of the cipher (`ssl_fc_cipher`, `%sslc`).
    pub cipher: &'static str,
}

impl Facts {
    /// The facts of a finished server-side handshake.
    pub fn of(c: &tokio_rustls::rustls::ServerConnection) -> Self {
        use tokio_rustls::rustls::ProtocolVersion;
        Facts {
            sni: c.server_name().map(str::to_owned),
            alpn: c
                .alpn_protocol()
                .map(|a| String::from_utf8_lossy(a).into_owned()),
            version: match c.protocol_version() {
                Some(ProtocolVersion::TLSv1_3) => ciphers::Version::Tls13.name(),
                Some(ProtocolVersion::TLSv1_2) => ciphers::Version::Tls12.name(),
                _ => "-",
            },
            cipher: c
                .negotiated_cipher_suite()
                .map_or("-", |s| ciphers::openssl_name(s.suite())),
        }
    }
}
