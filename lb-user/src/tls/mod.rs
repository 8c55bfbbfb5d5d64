//! TLS on lb's connections: the settings HAProxy takes from OpenSSL mapped to rustls
//! (`ciphers`), and the relay that lets the plain pipeline run over a TLS stream (`relay`).

pub mod ciphers;
pub mod relay;

#[cfg(test)]
pub(crate) mod testutil;
