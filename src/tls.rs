//! TLS: the certificate and key of `--tls-cert` and `--tls-key`, loaded at start-up and
//! again on `SIGHUP`.
//!
//! The rustls configuration is built once; its certificate resolver hands out whichever
//! certificate is current, so a reload affects only handshakes that begin after it, and open
//! connections keep the keys they negotiated. A pair that fails to load (unreadable, not PEM,
//! or a key that does not match the certificate) is refused and the current one kept.
//! rustls runs on the `ring` provider, which builds without cmake or a C toolchain beyond cc.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;

/// The server's TLS state: where its certificate and key come from, and the acceptor that
/// serves the current pair.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Arc<Current>,
    acceptor: TlsAcceptor,
}

/// The certificate new handshakes get.
struct Current(RwLock<Arc<CertifiedKey>>);

impl fmt::Debug for Current {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Current")
    }
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

impl Tls {
    /// TLS for `cfg`, if it asks for it. The error is a one-line reason naming the file.
    pub fn from_config(cfg: &Config) -> Result<Option<Arc<Tls>>, String> {
        match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(cert), Some(key)) => Tls::load(cert, key).map(Some),
            _ => Ok(None),
        }
    }

    /// Loads the PEM certificate chain at `cert` and the private key at `key`.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Tls>, String> {
        let provider = Arc::new(ring::default_provider());
        let first = certified_key(&provider, cert, key)?;
        let current = Arc::new(Current(RwLock::new(Arc::new(first))));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(Tls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            provider,
            current,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        }))
    }

    /// Reads the certificate and key files again; on success new handshakes get them. On
    /// failure nothing changes, and the error says why.
    pub fn reload(&self) -> Result<(), String> {
        let next = certified_key(&self.provider, &self.cert, &self.key)?;
        *self.current.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        Ok(())
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Reloads on every `SIGHUP` from now on, logging the outcome. Call it inside the runtime,
    /// before the server announces itself, so that an early `SIGHUP` cannot kill the process.
    pub fn reload_on_sighup(self: &Arc<Tls>) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup())?;
        let tls = self.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match tls.reload() {
                    Ok(()) => tracing::info!(
                        cert = %tls.cert.display(),
                        key = %tls.key.display(),
                        "SIGHUP: reloaded the TLS certificate and key"
                    ),
                    Err(e) => tracing::error!(
                        cert = %tls.cert.display(),
                        key = %tls.key.display(),
                        "SIGHUP: {e}; keeping the current certificate"
                    ),
                }
            }
        });
        Ok(())
    }
}

/// The pair at `cert` and `key`, checked to belong together.
fn certified_key(
    provider: &CryptoProvider,
    cert: &Path,
    key: &Path,
) -> Result<CertifiedKey, String> {
    let bad_cert = |why: &dyn fmt::Display| format!("--tls-cert {}: {why}", cert.display());
    let bad_key = |why: &dyn fmt::Display| format!("--tls-key {}: {why}", key.display());
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad_cert(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_cert(&e))?;
    if chain.is_empty() {
        return Err(bad_cert(&"no PEM certificate in the file"));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad_key(&e))?;
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| bad_key(&e))?;
    let pair = CertifiedKey::new(chain, signing);
    match pair.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(pair)
        }
        Err(e) => Err(format!(
            "--tls-key {} does not belong to --tls-cert {}: {e}",
            key.display(),
            cert.display()
        )),
    }
}
