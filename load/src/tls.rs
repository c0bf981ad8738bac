//! TLS for the generator: when [`enable`] was called, every connection [`crate::http::connect`]
//! makes is wrapped in a rustls client session before anything is sent, so REST setup and
//! WebSockets go over HTTPS and WSS alike. [`self_signed`] makes the certificate a
//! benchmark's server uses.
//!
//! The setting is process-wide because one generator measures one server; the plain path
//! only gains a branch on an enum per read or write.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::error::{LoadError, Result};

/// The name the benchmark certificate is for, and the one the client asks for.
pub const SERVER_NAME: &str = "localhost";

static CONNECTOR: OnceLock<TlsConnector> = OnceLock::new();
/// `--tls-cert FILE --tls-key FILE` for the server, once [`enable_self_signed`] made them.
static SERVER_FLAGS: OnceLock<Vec<String>> = OnceLock::new();

/// Makes a self-signed certificate in `dir`, trusts it from now on, and remembers the
/// server flags that serve it ([`server_flags`]).
pub fn enable_self_signed(dir: &Path) -> Result<()> {
    let (cert, key, der) = self_signed(dir)?;
    enable(der)?;
    let _ = SERVER_FLAGS.set(vec![
        "--tls-cert".into(),
        cert.display().to_string(),
        "--tls-key".into(),
        key.display().to_string(),
    ]);
    Ok(())
}

/// The flags a server needs to serve the certificate of [`enable_self_signed`]; empty
/// without TLS.
pub fn server_flags() -> Vec<String> {
    SERVER_FLAGS.get().cloned().unwrap_or_default()
}

/// A self-signed certificate for [`SERVER_NAME`], written as PEM to `dir`; returns the
/// certificate and key paths and the certificate to trust.
pub fn self_signed(dir: &Path) -> Result<(PathBuf, PathBuf, CertificateDer<'static>)> {
    let made = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])
        .map_err(|e| LoadError::Config(format!("cannot make a certificate: {e}")))?;
    let (cert, key) = (dir.join("bench.crt"), dir.join("bench.key"));
    std::fs::write(&cert, made.cert.pem())?;
    std::fs::write(&key, made.signing_key.serialize_pem())?;
    Ok((cert, key, made.cert.der().clone()))
}

/// From now on, connections are TLS, trusting only `root`. Session resumption is off: each
/// connection pays for a full handshake, as a fresh client does.
pub fn enable(root: CertificateDer<'static>) -> Result<()> {
    let mut roots = RootCertStore::empty();
    roots
        .add(root)
        .map_err(|e| LoadError::Config(format!("bad root certificate: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LoadError::Config(format!("cannot set up TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::disabled();
    let _ = CONNECTOR.set(TlsConnector::from(Arc::new(cfg)));
    Ok(())
}

/// Whether [`enable`] was called.
pub fn enabled() -> bool {
    CONNECTOR.get().is_some()
}

/// A connection to the server, encrypted when TLS is enabled.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// `tcp`, after a TLS handshake if TLS is enabled.
    pub async fn over(tcp: TcpStream) -> Result<Stream> {
        match CONNECTOR.get() {
            None => Ok(Stream::Plain(tcp)),
            Some(c) => {
                let name = ServerName::try_from(SERVER_NAME)
                    .map_err(|e| LoadError::Config(format!("bad server name: {e}")))?;
                Ok(Stream::Tls(Box::new(c.connect(name, tcp).await?)))
            }
        }
    }

    /// Read and write halves that tasks can own.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Plain(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Plain(r), WriteHalf::Plain(w))
            }
            Stream::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                (ReadHalf::Tls(r), WriteHalf::Tls(w))
            }
        }
    }
}

pub enum ReadHalf {
    Plain(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
}

pub enum WriteHalf {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
}

macro_rules! delegate_read {
    ($t:ty, $($v:ident),+) => {
        impl AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $(Self::$v(s) => Pin::new(s).poll_read(cx, buf),)+
                }
            }
        }
    };
}

macro_rules! delegate_write {
    ($t:ty, $($v:ident),+) => {
        impl AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $(Self::$v(s) => Pin::new(s).poll_write(cx, buf),)+
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $(Self::$v(s) => Pin::new(s).poll_flush(cx),)+
                }
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $(Self::$v(s) => Pin::new(s).poll_shutdown(cx),)+
                }
            }
        }
    };
}

delegate_read!(Stream, Plain, Tls);
delegate_write!(Stream, Plain, Tls);
delegate_read!(ReadHalf, Plain, Tls);
delegate_write!(WriteHalf, Plain, Tls);
