//! TLS client configuration of a server, one for its traffic (`ssl`) and one for its checks
//! (`check-ssl`), built from the same settings ([`ServerTls`]) the way HAProxy's server
//! `ssl_ctx` does: `verify required` checks the chain against `ca-file` and the name against
//! the SNI sent (or `verifyhost` when none is), and only the chain when there is no name to
//! check; `verify none` checks nothing but the handshake itself. Above `config` (it reads a
//! server's settings) and `tls` (the cipher settings it applies), below `generation` and
//! `health`, which build and use it.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error as TlsError, RootCertStore,
    SignatureScheme, SupportedProtocolVersion,
};
use tokio_rustls::TlsConnector;

use crate::config::{Server, ServerTls};

/// The TLS side of a server's connections: its trust (built once) and its default SNI and
/// ALPN.
#[derive(Debug)]
pub struct TlsClient {
    verifier: Arc<dyn ServerCertVerifier>,
    provider: Arc<CryptoProvider>,
    /// The protocol versions it may speak (`ssl-min-ver`...).
    versions: Vec<&'static SupportedProtocolVersion>,
    /// The SNI sent when the connection gives none (`check-sni`).
    sni: Option<String>,
    /// The config with the default ALPN (a check rule with its own `alpn` builds another).
    default: Arc<ClientConfig>,
}

impl TlsClient {
    /// The client of a server's traffic (`ssl`, `alpn`; the SNI is the connection's).
    pub fn for_traffic(srv: &Server) -> Result<Self, String> {
        Self::new(&srv.tls, None, &srv.tls.alpn)
    }

    /// The client of a server's TLS checks: `check-sni`, and `check-alpn` or else the
    /// server's `alpn` (HAProxy sets that one on the `SSL_CTX` checks share).
    pub fn for_checks(srv: &Server) -> Result<Self, String> {
        let check = &srv.health.tls;
        let alpn = if check.alpn.is_empty() {
            &srv.tls.alpn
        } else {
            &check.alpn
        };
        Self::new(&srv.tls, check.sni.clone(), alpn)
    }

    /// Builds it from a server's settings (`verify` already resolved at load; the CA file is
    /// read again here, from outside any chroot), the default SNI and ALPN.
    pub fn new(tls: &ServerTls, sni: Option<String>, alpn: &[String]) -> Result<Self, String> {
        let provider = Arc::new(tls.settings.provider()?);
        let versions = tls.settings.versions()?;
        let verifier: Arc<dyn ServerCertVerifier> = if tls.verify.unwrap_or(true) {
            let mut roots = RootCertStore::empty();
            let path = tls
                .ca_file
                .as_deref()
                .ok_or("verify required but no CA file")?;
            for c in crate::config::ca::load(path)? {
                roots
                    .add(c)
                    .map_err(|e| format!("CA file '{}': {e}", path.display()))?;
            }
            let inner =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("CA file '{}': {e}", path.display()))?;
            let verifyhost = tls
                .verifyhost
                .clone()
                .and_then(|n| ServerName::try_from(n).ok());
            Arc::new(Verify { inner, verifyhost })
        } else {
            Arc::new(NoVerify(provider.clone()))
        };
        let default = client_config((&provider, &versions), &verifier, alpn)?;
        Ok(Self {
            verifier,
            provider,
            versions,
            sni,
            default,
        })
    }

    /// The TLS handshake over `io` to `ip`, with `sni`/`alpn` over the defaults. No SNI (an
    /// empty or absent one) checks the name against `verifyhost`, or checks none.
    pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: S,
        ip: IpAddr,
        sni: Option<&str>,
        alpn: Option<&[String]>,
    ) -> io::Result<TlsStream<S>> {
        let config = match alpn {
            Some(a) => client_config((&self.provider, &self.versions), &self.verifier, a)
                .map_err(io::Error::other)?,
            None => self.default.clone(),
        };
        // An IP address as the server name sends no SNI (rustls, as OpenSSL without one).
        let name = match sni.or(self.sni.as_deref()).filter(|n| !n.is_empty()) {
            Some(n) => ServerName::try_from(n.to_owned())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
            None => ServerName::IpAddress(ip.into()),
        };
        TlsConnector::from(config).connect(name, io).await
    }
}

/// A rustls client config offering `alpn` and `versions`.
fn client_config(
    (provider, versions): (&Arc<CryptoProvider>, &[&'static SupportedProtocolVersion]),
    verifier: &Arc<dyn ServerCertVerifier>,
    alpn: &[String],
) -> Result<Arc<ClientConfig>, String> {
    let mut c = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok(Arc::new(c))
}

/// `verify required`: the chain to `ca-file`, and the name when there is one to check (the
/// SNI sent, else `verifyhost`); without a name, HAProxy checks the chain only
/// (`ssl_sock_srv_verifycbk`).
#[derive(Debug)]
struct Verify {
    inner: Arc<WebPkiServerVerifier>,
    verifyhost: Option<ServerName<'static>>,
}

impl ServerCertVerifier for Verify {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        // A DNS name is the SNI sent; an IP address means none was.
        let named = match server_name {
            ServerName::DnsName(_) => Some(server_name),
            _ => self.verifyhost.as_ref(),
        };
        let name = named.unwrap_or(server_name);
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, name, ocsp, now)
        {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if named.is_none() => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `verify none`: any certificate; the handshake's signatures are still checked (with the
/// provider's algorithms). Public for the tests' clients, which look at which certificate came.
#[derive(Debug)]
pub struct NoVerify(pub Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
