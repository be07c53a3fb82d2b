//! TLS for the webhook server: rustls (TLS 1.2 and 1.3 only), a certificate resolver that can be
//! swapped at run time, certificates from files (reloaded when they change), and generated
//! certificates for local mode.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error("the private key is not usable: {0}")]
    BadKey(rustls::Error),
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Serves whatever certificate was stored last; new connections see a swap at once, open ones
/// keep theirs, so rotation drops no request.
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CertResolver")
    }
}

impl CertResolver {
    pub fn new(key: CertifiedKey) -> Arc<Self> {
        Arc::new(CertResolver {
            current: ArcSwap::from_pointee(key),
        })
    }

    pub fn swap(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// A rustls server config over the resolver: TLS 1.2 and 1.3, h2 and http/1.1.
pub fn server_config(resolver: Arc<CertResolver>) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Builds a certified key from PEM text.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    origin: &Path,
) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &cert_pem[..])
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: origin.to_owned(),
        });
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::NoKey {
            path: origin.to_owned(),
        })?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(certs, key, &provider).map_err(TlsError::BadKey)
}

/// Certificate and key files, e.g. from cert-manager or `certs/make-certs`.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    pub fn load(&self) -> Result<CertifiedKey, TlsError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| TlsError::Read {
                path: p.to_owned(),
                source,
            })
        };
        let cert = read(&self.cert)?;
        let key = read(&self.key)?;
        certified_key(&cert, &key, &self.cert)
    }

    fn modified(&self) -> Option<(SystemTime, SystemTime)> {
        let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        Some((m(&self.cert)?, m(&self.key)?))
    }

    /// Polls the files and swaps the resolver's certificate when they change. A half-written or
    /// broken pair is logged and skipped; the previous certificate keeps serving.
    pub async fn watch(self, resolver: Arc<CertResolver>, every: Duration) {
        let mut last = self.modified();
        loop {
            tokio::time::sleep(every).await;
            let now = self.modified();
            if now == last {
                continue;
            }
            match self.load() {
                Ok(key) => {
                    resolver.swap(key);
                    last = now;
                    tracing::info!(cert = %self.cert.display(), "serving certificate reloaded");
                }
                Err(error) => {
                    tracing::warn!(%error, "certificate files changed but cannot be loaded yet; keeping the current one")
                }
            }
        }
    }
}

/// A CA and a serving certificate signed by it, as PEM.
pub struct GeneratedCerts {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl GeneratedCerts {
    /// A fresh CA and a serving certificate for the given DNS names and IP addresses.
    pub fn generate(names: &[String], valid_for: Duration) -> Result<Self, TlsError> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };
        let now = time_now();
        let until = time::OffsetDateTime::now_utc() + valid_for;

        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name
            .push(DnType::CommonName, "kreload webhook CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca.not_before = now;
        ca.not_after = until;
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate()?;
        let mut leaf = CertificateParams::new(names.to_vec())?;
        leaf.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        leaf.not_before = now;
        leaf.not_after = until;
        let cert = leaf.signed_by(&key, &issuer)?;
        Ok(GeneratedCerts {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    pub fn certified_key(&self) -> Result<CertifiedKey, TlsError> {
        certified_key(
            self.cert_pem.as_bytes(),
            self.key_pem.as_bytes(),
            Path::new("<generated>"),
        )
    }
}

fn time_now() -> time::OffsetDateTime {
    // A minute in the past absorbs clock skew between kreload and the API server.
    time::OffsetDateTime::now_utc() - Duration::from_secs(60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificates_load() {
        let certs = GeneratedCerts::generate(
            &["127.0.0.1".into(), "kreload.kreload.svc".into()],
            Duration::from_secs(3600),
        )
        .unwrap();
        assert!(certs.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        certs.certified_key().unwrap();
    }

    #[test]
    fn broken_files_are_explained() {
        let dir = std::env::temp_dir().join(format!("kreload-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = CertFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        };
        assert!(matches!(files.load(), Err(TlsError::Read { .. })));
        std::fs::write(&files.cert, "garbage").unwrap();
        std::fs::write(&files.key, "garbage").unwrap();
        assert!(matches!(files.load(), Err(TlsError::NoCertificate { .. })));
        let certs =
            GeneratedCerts::generate(&["localhost".into()], Duration::from_secs(60)).unwrap();
        std::fs::write(&files.cert, &certs.cert_pem).unwrap();
        assert!(matches!(files.load(), Err(TlsError::NoKey { .. })));
        std::fs::write(&files.key, &certs.key_pem).unwrap();
        files.load().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
