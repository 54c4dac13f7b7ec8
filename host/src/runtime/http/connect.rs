//! Resolving a request's host once and connecting to a vetted address,
//! with TLS for `https`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use wasmtime_wasi_http::Error;

use super::Target;

/// A connection, plain or TLS.
pub(super) trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

pub(super) type Io = wasmtime_wasi_http::io::TokioIo<Box<dyn Stream>>;

/// The addresses of `host` (itself when it is an IP address).
pub(super) async fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, Error> {
    if let Ok(ip) = host.parse() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let dns_error = |why: String| Error::DnsError { rcode: Some(why), info_code: None };
    match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
        Err(_) => Err(Error::DnsTimeout),
        Ok(Err(e)) => Err(dns_error(format!("cannot resolve `{host}`: {e}"))),
        Ok(Ok(addresses)) => {
            let addresses: Vec<SocketAddr> = addresses.collect();
            if addresses.is_empty() {
                return Err(dns_error(format!("`{host}` has no address")));
            }
            Ok(addresses)
        }
    }
}

/// Connect to the first of `addresses` that answers (they were vetted:
/// no name is resolved again here), then TLS for `https`.
pub(super) async fn connect(
    addresses: &[SocketAddr],
    target: &Target,
    timeout: Duration,
) -> Result<Box<dyn Stream>, Error> {
    let mut last = None;
    let mut tcp = None;
    for address in addresses {
        match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                tcp = Some(stream);
                break;
            }
            Ok(Err(e)) => last = Some(Error::Connect(e)),
            Err(_) => last = Some(Error::ConnectionTimeout),
        }
    }
    let Some(tcp) = tcp else { return Err(last.unwrap_or(Error::ConnectionRefused)) };
    let _ = tcp.set_nodelay(true);
    if !target.https {
        return Ok(Box::new(tcp));
    }
    let name = match target.host.parse::<std::net::IpAddr>() {
        Ok(ip) => rustls::pki_types::ServerName::from(ip),
        Err(_) => rustls::pki_types::ServerName::try_from(target.host.clone())
            .map_err(|_| Error::DnsError { rcode: Some("not a DNS name".into()), info_code: None })?,
    };
    let connector = tokio_rustls::TlsConnector::from(tls_config()?);
    match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
        Ok(Ok(stream)) => Ok(Box::new(stream)),
        Ok(Err(e)) => Err(Error::Tls(e)),
        Err(_) => Err(Error::ConnectionTimeout),
    }
}

/// The TLS client configuration (shared with the model providers).
fn tls_config() -> Result<Arc<rustls::ClientConfig>, Error> {
    crate::tls::client_config().map_err(|e| Error::InternalError(Some(e)))
}
