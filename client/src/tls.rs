//! TLS for `https://` and `wss://` servers: rustls over the same blocking std
//! `TcpStream` the plain client uses, so the REST calls and the WebSocket thread work
//! unchanged on top of a [`Stream`].
//!
//! Certificates are checked against the Mozilla root store compiled in (`webpki-roots`:
//! nothing is read from the system or downloaded at run time) plus, with
//! `--ca-file FILE`, every certificate in that PEM file: the way to trust a server with a
//! self-signed certificate or a private CA.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore,
    SignatureScheme, StreamOwned,
};

/// The TLS settings of an `https://` endpoint: shared by every connection it makes.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
    /// The `--ca-file` given, for messages.
    ca_file: Option<String>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl PartialEq for Tls {
    fn eq(&self, other: &Tls) -> bool {
        Arc::ptr_eq(&self.config, &other.config) || self.ca_file == other.ca_file
    }
}

impl Eq for Tls {}

impl Tls {
    /// The public roots, plus the certificates of `ca_file` (PEM) if given.
    pub fn new(ca_file: Option<&Path>) -> Result<Tls, String> {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let mut pinned = Vec::new();
        if let Some(path) = ca_file {
            let shown = path.display();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read {shown}: {}", pem_error(&e)))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("cannot read {shown}: {}", pem_error(&e)))?;
            if certs.is_empty() {
                return Err(format!("no PEM certificate in {shown}"));
            }
            for cert in certs {
                roots
                    .add(cert.clone())
                    .map_err(|e| format!("a certificate in {shown} is not usable: {e}"))?;
                pinned.push(cert);
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up failed: {e}"))?;
        let config = if pinned.is_empty() {
            builder.with_root_certificates(roots).with_no_client_auth()
        } else {
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("TLS set-up failed: {e}"))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Pinned { inner, pinned }))
                .with_no_client_auth()
        };
        Ok(Tls {
            config: Arc::new(config),
            ca_file: ca_file.map(|p| p.display().to_string()),
        })
    }

    /// Wrap a connected socket and complete the handshake (within the socket's
    /// timeouts), so that a bad certificate shows up here and not on the first read.
    pub fn connect(&self, host: &str, tcp: TcpStream) -> io::Result<Stream> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad TLS server name"))?;
        let conn = ClientConnection::new(self.config.clone(), name)
            .map_err(|e| io::Error::other(format!("TLS: {e}")))?;
        let mut s = StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn
                .complete_io(&mut s.sock)
                .map_err(|e| self.handshake_error(e))?;
        }
        Ok(Stream::Tls(Box::new(s)))
    }

    fn handshake_error(&self, e: io::Error) -> io::Error {
        let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
            return e;
        };
        let what = match tls {
            rustls::Error::InvalidCertificate(c) => describe_certificate_error(c),
            other => other.to_string(),
        };
        let untrusted = matches!(
            tls,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        ) || what.contains("a CA certificate");
        let hint = match (&self.ca_file, untrusted) {
            (None, true) => {
                "; for a self-signed certificate, pass it with --ca-file FILE".to_owned()
            }
            (Some(f), true) => format!(" (and it is not one of {f})"),
            _ => String::new(),
        };
        io::Error::new(e.kind(), format!("TLS handshake failed: {what}{hint}"))
    }
}

/// What is wrong with the server's certificate, in words.
fn describe_certificate_error(e: &CertificateError) -> String {
    match e {
        CertificateError::UnknownIssuer => {
            "the server's certificate is not signed by an authority this client trusts".into()
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "the server's certificate is not for this host name".into()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the server's certificate has expired".into()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "the server's certificate is not valid yet (check the clock)".into()
        }
        CertificateError::Other(o) if o.to_string().contains("CaUsedAsEndEntity") => {
            "the server's certificate is a CA certificate, not a server's (a self-signed one made with openssl req -x509?)".into()
        }
        other => format!("the server's certificate is refused ({other:?})"),
    }
}

/// The usual checks (chain to a root or to a `--ca-file` certificate, names, validity),
/// plus: a server certificate that is exactly one of the `--ca-file` certificates is
/// trusted for its names even where the chain check refuses it. That is the common
/// self-signed certificate of `openssl req -x509`, which is marked as a CA and which
/// webpki therefore will not take as a server's own ("CaUsedAsEndEntity"). Expired and
/// not-yet-valid certificates, and bad signatures, stay refused.
#[derive(Debug)]
struct Pinned {
    inner: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let refusal = match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(ok) => return Ok(ok),
            Err(e) => e,
        };
        let hard = matches!(
            &refusal,
            rustls::Error::InvalidCertificate(
                CertificateError::Expired
                    | CertificateError::ExpiredContext { .. }
                    | CertificateError::NotValidYet
                    | CertificateError::NotValidYetContext { .. }
                    | CertificateError::BadSignature
                    | CertificateError::Revoked
                    | CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. }
            )
        );
        let is_pinned = self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref());
        if hard || !is_pinned {
            return Err(refusal);
        }
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        other => format!("{other:?}"),
    }
}

/// A connection to the server: plain TCP, or TLS over TCP.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// The socket underneath, for timeouts.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }

    /// Over TLS, say goodbye (`close_notify`) so the server sees a clean end, not a
    /// truncation. Best effort; the socket closes when the stream is dropped.
    pub fn close(&mut self) {
        if let Stream::Tls(s) = self {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
    }
}

// A read that times out on the socket leaves rustls with whatever partial record it had
// buffered, intact; the next read goes on from there. That is what lets the WebSocket
// thread poll with a short read timeout over TLS as it does over TCP.
impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_roots_load_and_a_missing_ca_file_is_an_error() {
        assert!(Tls::new(None).is_ok());
        let e = Tls::new(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn a_file_without_certificates_is_an_error() {
        let path =
            std::env::temp_dir().join(format!("parley-cli-empty-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").expect("write temp file");
        let e = Tls::new(Some(&path)).unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert!(e.contains("no PEM certificate"), "{e}");
    }
}
