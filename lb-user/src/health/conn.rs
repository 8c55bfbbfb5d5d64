//! A health check's connection: plain TCP, or TLS over it (`check-ssl`, `tcp-check connect
//! ssl`, `http-check connect ssl`) with rustls, as HAProxy's check connection does it:
//! `verify required` checks the chain against `ca-file` and the name against the SNI (or
//! `verifyhost`), and only the chain when there is no name to check; `verify none` checks
//! nothing but the handshake itself. No SNI is sent unless `check-sni` (or the rule's `sni`)
//! gives one.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error as TlsError, RootCertStore,
    SignatureScheme,
};
use tokio_rustls::TlsConnector;

use crate::config::CheckTls;

/// A check connection.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    /// The TCP socket under it.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref().0,
        }
    }

    /// Sends a TLS `close_notify` without waiting, as much of it as the socket takes now: the
    /// clean end of a check that closes with `linger` (nothing for plain TCP). The TCP close
    /// itself is [`super::probe::CheckConn`]'s.
    pub fn send_close_notify(&mut self) {
        let Conn::Tls(s) = self else { return };
        let (tcp, tls) = s.get_mut();
        tls.send_close_notify();
        // Bounded: a full socket buffer ends it (the close then loses the alert, no more).
        for _ in 0..4 {
            if !tls.wants_write() {
                break;
            }
            match tls.write_tls(&mut TryWriter(tcp)) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

/// A non-blocking writer on a tokio socket (for writes outside a task, at close).
struct TryWriter<'a>(&'a TcpStream);

impl io::Write for TryWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The TLS side of one server's checks: its trust (built once) and its default SNI and ALPN.
#[derive(Debug)]
pub struct TlsClient {
    verifier: Arc<dyn ServerCertVerifier>,
    provider: Arc<CryptoProvider>,
    /// `check-sni`.
    sni: Option<String>,
    /// The config with `check-alpn` (rules with their own `alpn` build another).
    default: Arc<ClientConfig>,
}

impl TlsClient {
    /// Builds it from a server's settings (`verify` already resolved at load; the CA file is
    /// read again here, from outside any chroot).
    pub fn new(tls: &CheckTls) -> Result<Self, String> {
        let provider = Arc::new(crypto::aws_lc_rs::default_provider());
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
            let name = tls
                .sni
                .clone()
                .or_else(|| tls.verifyhost.clone())
                .and_then(|n| ServerName::try_from(n).ok());
            Arc::new(Verify { inner, name })
        } else {
            Arc::new(NoVerify(provider.clone()))
        };
        let default = client_config(&provider, &verifier, &tls.alpn)?;
        Ok(Self {
            verifier,
            provider,
            sni: tls.sni.clone(),
            default,
        })
    }

    /// The TLS handshake over `tcp` to `ip`, with the rule's `sni`/`alpn` over the server's.
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        ip: IpAddr,
        sni: Option<&str>,
        alpn: Option<&[String]>,
    ) -> io::Result<Conn> {
        let config = match alpn {
            Some(a) => {
                client_config(&self.provider, &self.verifier, a).map_err(io::Error::other)?
            }
            None => self.default.clone(),
        };
        // An IP address as the server name sends no SNI (rustls, as OpenSSL without one).
        let name = match sni.or(self.sni.as_deref()) {
            Some(n) => ServerName::try_from(n.to_owned())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
            None => ServerName::IpAddress(ip.into()),
        };
        let s = TlsConnector::from(config).connect(name, tcp).await?;
        Ok(Conn::Tls(Box::new(s)))
    }
}

/// A rustls client config offering `alpn`, TLS 1.2 and 1.3.
fn client_config(
    provider: &Arc<CryptoProvider>,
    verifier: &Arc<dyn ServerCertVerifier>,
    alpn: &[String],
) -> Result<Arc<ClientConfig>, String> {
    let mut c = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok(Arc::new(c))
}

/// `verify required`: the chain to `ca-file`, and the name when there is one to check (the
/// SNI, else `verifyhost`); without a name, HAProxy checks the chain only.
#[derive(Debug)]
struct Verify {
    inner: Arc<WebPkiServerVerifier>,
    name: Option<ServerName<'static>>,
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
        let name = self.name.as_ref().unwrap_or(server_name);
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, name, ocsp, now)
        {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.name.is_none() => Ok(ServerCertVerified::assertion()),
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

/// `verify none`: any certificate; the handshake's signatures are still checked.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

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
