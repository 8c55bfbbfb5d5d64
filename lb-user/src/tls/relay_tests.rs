use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{crypto, ServerConfig};
use tokio_rustls::{client, TlsAcceptor, TlsConnector};

use super::{pair, relay, Relayed};
use crate::tls::testutil;

const MIB: usize = 1 << 20;
const T: Duration = Duration::from_secs(20);

fn server_config() -> Arc<ServerConfig> {
    let dir = testutil::temp_dir("relay");
    let pem = testutil::self_signed(&dir, "s.pem", "relay.test", &["relay.test"]);
    let certs = CertificateDer::pem_file_iter(&pem)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&pem).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let provider = Arc::new(crypto::aws_lc_rs::default_provider());
    let c = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Arc::new(c)
}

/// A TLS client over loopback TCP, the relay on the server's side, and the inner end the
/// test plays the pipeline with. The relay's outcome comes back on the join handle.
async fn setup(
    idle: Option<Duration>,
) -> (
    client::TlsStream<TcpStream>,
    UnixStream,
    tokio::task::JoinHandle<std::io::Result<Relayed>>,
) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(server_config());
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        acceptor.accept(tcp).await.unwrap()
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("relay.test").unwrap();
    let cli = TlsConnector::from(testutil::client(&[]))
        .connect(name, tcp)
        .await
        .unwrap();
    let tls = server.await.unwrap();
    let (raw, ours) = pair().unwrap();
    let theirs = UnixStream::from_std(std::os::unix::net::UnixStream::from(raw)).unwrap();
    let h = tokio::spawn(relay(tls, ours, idle));
    (cli, theirs, h)
}

fn data(seed: u8) -> Vec<u8> {
    (0..MIB)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn send_then_shut<W: AsyncWriteExt + Unpin>(mut w: W, d: Vec<u8>) -> W {
    w.write_all(&d).await.unwrap();
    w.shutdown().await.unwrap();
    w
}

async fn read_all<R: AsyncReadExt + Unpin>(r: &mut R) -> Vec<u8> {
    let mut v = Vec::new();
    r.read_to_end(&mut v).await.unwrap();
    v
}

#[test]
fn a_mebibyte_each_way_intact() {
    crate::test_runtime().block_on(async {
        let (cli, inner, h) = setup(None).await;
        let (up, down) = (data(1), data(7));
        let (mut cr, cw) = tokio::io::split(cli);
        let (mut ir, iw) = inner.into_split();
        let w1 = tokio::spawn(send_then_shut(cw, up.clone()));
        let w2 = tokio::spawn(send_then_shut(iw, down.clone()));
        let got_down = tokio::time::timeout(T, read_all(&mut cr)).await.unwrap();
        let got_up = tokio::time::timeout(T, read_all(&mut ir)).await.unwrap();
        w1.await.unwrap();
        w2.await.unwrap();
        assert_eq!(Sha256::digest(&got_up), Sha256::digest(&up));
        assert_eq!(Sha256::digest(&got_down), Sha256::digest(&down));
        let r = tokio::time::timeout(T, h).await.unwrap().unwrap().unwrap();
        assert_eq!(
            r,
            Relayed {
                up: MIB as u64,
                down: MIB as u64
            }
        );
    });
}

#[test]
fn the_client_half_closes_and_still_receives() {
    crate::test_runtime().block_on(async {
        let (mut cli, mut inner, h) = setup(None).await;
        cli.write_all(b"question").await.unwrap();
        cli.shutdown().await.unwrap();
        let q = tokio::time::timeout(T, read_all(&mut inner)).await.unwrap();
        assert_eq!(q, b"question");
        let answer = data(3);
        inner.write_all(&answer).await.unwrap();
        inner.shutdown().await.unwrap();
        let a = tokio::time::timeout(T, read_all(&mut cli)).await.unwrap();
        assert_eq!(Sha256::digest(&a), Sha256::digest(&answer));
        let r = tokio::time::timeout(T, h).await.unwrap().unwrap().unwrap();
        assert_eq!(r.up, 8);
    });
}

#[test]
fn the_pipeline_half_closes_and_still_receives() {
    crate::test_runtime().block_on(async {
        let (mut cli, mut inner, h) = setup(None).await;
        inner.write_all(b"banner").await.unwrap();
        inner.shutdown().await.unwrap();
        let b = tokio::time::timeout(T, read_all(&mut cli)).await.unwrap();
        assert_eq!(b, b"banner");
        cli.write_all(b"late words").await.unwrap();
        cli.shutdown().await.unwrap();
        let w = tokio::time::timeout(T, read_all(&mut inner)).await.unwrap();
        assert_eq!(w, b"late words");
        let r = tokio::time::timeout(T, h).await.unwrap().unwrap().unwrap();
        assert_eq!(r, Relayed { up: 10, down: 6 });
    });
}

#[test]
fn a_client_reset_ends_the_relay_and_the_pipeline_sees_the_end() {
    crate::test_runtime().block_on(async {
        let (cli, mut inner, h) = setup(None).await;
        let (tcp, _) = cli.into_inner();
        socket2::SockRef::from(&tcp)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(tcp);
        let r = tokio::time::timeout(T, h).await.unwrap().unwrap();
        assert!(r.is_err(), "{r:?}");
        let mut b = [0u8; 16];
        let n = tokio::time::timeout(T, inner.read(&mut b)).await.unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    });
}

#[test]
fn a_closed_pipeline_ends_the_relay_on_the_next_bytes() {
    crate::test_runtime().block_on(async {
        let (mut cli, inner, h) = setup(None).await;
        drop(inner);
        // The relay sees the inner EOF, tells the client, and fails its next write.
        let b = tokio::time::timeout(T, read_all(&mut cli)).await.unwrap();
        assert!(b.is_empty());
        cli.write_all(b"anyone?").await.unwrap();
        cli.flush().await.unwrap();
        let r = tokio::time::timeout(T, h).await.unwrap().unwrap();
        assert!(r.is_err(), "{r:?}");
    });
}

#[test]
fn an_idle_relay_ends() {
    crate::test_runtime().block_on(async {
        let (mut cli, _inner, h) = setup(Some(Duration::from_millis(200))).await;
        cli.write_all(b"x").await.unwrap();
        let r = tokio::time::timeout(T, h).await.unwrap().unwrap();
        assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    });
}
