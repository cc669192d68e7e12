//! TLS configurations: what a server presents (a certificate chain and its
//! key) and what a client trusts (the system's roots or CA bundles), ALPN,
//! verification and versions. A [`TlsConfig`] is filled in by its setters,
//! then built once, on first use, into rustls's own configuration, which
//! every stream using it shares (an `Arc`); from then on it is frozen.
//! Every method takes the configuration's lock, so any thread may call any
//! of them.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};

use super::ETLS_CONFIG;
use crate::sys::Errno;

/// How a peer's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// The chain up to a trusted root, and (clients) the server's name: the
    /// default.
    Peer,
    /// The chain only, not the name (Python's `check_hostname = False`).
    ChainOnly,
    /// Nothing at all: anyone can impersonate the peer. For tests only.
    NoneInsecure,
}

/// An error with its reason, for `evl_tls_config_last_error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsError {
    /// A positive errno (ENOENT for a missing file...) or ETLS_CONFIG.
    pub code: Errno,
    pub reason: String,
}

impl TlsError {
    fn config(reason: impl Into<String>) -> TlsError {
        TlsError {
            code: ETLS_CONFIG,
            reason: reason.into(),
        }
    }
}

/// What a stream's TLS session starts from.
#[derive(Clone)]
pub enum TlsRole {
    Server(Arc<ServerConfig>),
    /// The name sent as SNI and checked against the server's certificate.
    Client(Arc<ClientConfig>, ServerName<'static>),
}

/// A TLS configuration, filled in and then built once (see the module).
pub struct TlsConfig {
    inner: Mutex<Builder>,
}

struct Builder {
    server: bool,
    chain: Vec<CertificateDer<'static>>,
    key: Option<PrivateKeyDer<'static>>,
    roots: RootCertStore,
    alpn: Vec<Vec<u8>>,
    verify: Verify,
    /// Lowest and highest version, as on the wire (0x0303: TLS 1.2).
    versions: (u16, u16),
    built: Option<Built>,
    last_error: String,
}

#[derive(Clone)]
enum Built {
    Server(Arc<ServerConfig>),
    Client(Arc<ClientConfig>),
}

pub const TLS12: u16 = 0x0303;
pub const TLS13: u16 = 0x0304;

/// ring: it builds with cargo and a C compiler alone. (rustls now marks it
/// deprecated because it lacks the post-quantum key exchange that aws-lc-rs
/// has, which would want more to build.)
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

impl TlsConfig {
    /// A server's configuration (a certificate must be set) or a client's.
    pub fn new(server: bool) -> TlsConfig {
        TlsConfig {
            inner: Mutex::new(Builder {
                server,
                chain: Vec::new(),
                key: None,
                roots: RootCertStore::empty(),
                alpn: Vec::new(),
                verify: Verify::Peer,
                versions: (TLS12, TLS13),
                built: None,
                last_error: String::new(),
            }),
        }
    }

    pub fn is_server(&self) -> bool {
        self.lock().server
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Builder> {
        // A panic while the lock was held left nothing half-done that matters.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a setter: refused once the configuration is built (in use);
    /// its error, if any, is kept as the last error.
    fn set(&self, change: impl FnOnce(&mut Builder) -> Result<(), TlsError>) -> Result<(), Errno> {
        let mut b = self.lock();
        let result = if b.built.is_some() {
            Err(TlsError {
                code: libc::EBUSY,
                reason: "the configuration is in use already: make a new one to change it".into(),
            })
        } else {
            change(&mut b)
        };
        result.map_err(|e| {
            b.last_error = e.reason;
            e.code
        })
    }

    /// The reason of the last error a setter or [`role`](Self::role) returned.
    pub fn last_error(&self) -> String {
        self.lock().last_error.clone()
    }

    /// The certificate chain (leaf first) and its private key, from PEM.
    pub fn set_certificate_pem(&self, chain: &[u8], key: &[u8]) -> Result<(), Errno> {
        self.set(|b| {
            let chain = certs_from_pem(chain)?;
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| TlsError::config(format!("private key: {e}")))?;
            b.chain = chain;
            b.key = Some(key);
            Ok(())
        })
    }

    /// As [`set_certificate_pem`](Self::set_certificate_pem), from files.
    pub fn set_certificate_files(&self, chain: &Path, key: &Path) -> Result<(), Errno> {
        let (chain, key) = match (read_file(chain), read_file(key)) {
            (Ok(chain), Ok(key)) => (chain, key),
            (Err(e), _) | (_, Err(e)) => return self.set(|_| Err(e)),
        };
        self.set_certificate_pem(&chain, &key)
    }

    /// Trusts the certificates of a PEM bundle; returns how many.
    pub fn add_ca_pem(&self, pem: &[u8]) -> Result<usize, Errno> {
        let mut added = 0;
        self.set(|b| {
            for cert in certs_from_pem(pem)? {
                b.roots
                    .add(cert)
                    .map_err(|e| TlsError::config(format!("CA certificate: {e}")))?;
                added += 1;
            }
            Ok(())
        })?;
        Ok(added)
    }

    pub fn add_ca_file(&self, path: &Path) -> Result<usize, Errno> {
        match read_file(path) {
            Ok(pem) => self.add_ca_pem(&pem),
            Err(e) => self.set(|_| Err(e)).map(|()| 0),
        }
    }

    /// Trusts the system's roots (/etc/ssl/certs, or SSL_CERT_FILE and
    /// SSL_CERT_DIR); returns how many.
    pub fn add_system_roots(&self) -> Result<usize, Errno> {
        let mut added = 0;
        self.set(|b| {
            added = load_system_roots(&mut b.roots)?;
            Ok(())
        })?;
        Ok(added)
    }

    /// The ALPN protocols, in order of preference; empty: no ALPN.
    pub fn set_alpn(&self, protocols: Vec<Vec<u8>>) -> Result<(), Errno> {
        self.set(|b| {
            if protocols.iter().any(|p| p.is_empty() || p.len() > 255) {
                return Err(TlsError {
                    code: libc::EINVAL,
                    reason: "an ALPN protocol name has 1 to 255 bytes".into(),
                });
            }
            b.alpn = protocols;
            Ok(())
        })
    }

    pub fn set_verify(&self, verify: Verify) -> Result<(), Errno> {
        self.set(|b| {
            b.verify = verify;
            Ok(())
        })
    }

    /// The versions allowed, as on the wire: 0x0303 (TLS 1.2), 0x0304 (1.3).
    pub fn set_versions(&self, min: u16, max: u16) -> Result<(), Errno> {
        self.set(|b| {
            let known = |v| v == TLS12 || v == TLS13;
            if !known(min) || !known(max) || min > max {
                return Err(TlsError {
                    code: libc::EINVAL,
                    reason: "versions are 0x0303 (TLS 1.2) or 0x0304 (TLS 1.3), min <= max".into(),
                });
            }
            b.versions = (min, max);
            Ok(())
        })
    }

    /// What a stream's session starts from: the configuration built (once;
    /// from then on it is frozen) and, for a client, the server's name.
    pub fn role(&self, server_name: Option<&str>) -> Result<TlsRole, Errno> {
        let mut b = self.lock();
        let result = b.build().and_then(|built| match built {
            Built::Server(config) => Ok(TlsRole::Server(config)),
            Built::Client(config) => {
                let name = server_name.ok_or_else(|| TlsError {
                    code: libc::EINVAL,
                    reason: "a client needs the server's name (or IP address)".into(),
                })?;
                let name = ServerName::try_from(name.to_owned()).map_err(|_| TlsError {
                    code: libc::EINVAL,
                    reason: format!("not a DNS name or IP address: {name:?}"),
                })?;
                Ok(TlsRole::Client(config, name))
            }
        });
        result.map_err(|e| {
            b.last_error = e.reason;
            e.code
        })
    }

    /// The server configuration, built (a listener's).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, Errno> {
        match self.role(None)? {
            TlsRole::Server(config) => Ok(config),
            TlsRole::Client(..) => unreachable!("role(None) of a client fails"),
        }
    }
}

impl Builder {
    fn build(&mut self) -> Result<Built, TlsError> {
        if let Some(built) = &self.built {
            return Ok(built.clone());
        }
        let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
            (TLS12, &rustls::version::TLS12),
            (TLS13, &rustls::version::TLS13),
        ]
        .into_iter()
        .filter(|(v, _)| (self.versions.0..=self.versions.1).contains(v))
        .map(|(_, version)| version)
        .collect();
        let built = if self.server {
            Built::Server(Arc::new(self.server_config(&versions)?))
        } else {
            Built::Client(Arc::new(self.client_config(&versions)?))
        };
        self.built = Some(built.clone());
        Ok(built)
    }

    fn certificate(&self) -> Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
        Some((self.chain.clone(), self.key.as_ref()?.clone_key()))
    }

    fn server_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Result<ServerConfig, TlsError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|e| TlsError::config(e.to_string()))?;
        // CA certificates on a server: it asks clients for theirs.
        let builder = if self.roots.is_empty() || self.verify == Verify::NoneInsecure {
            builder.with_no_client_auth()
        } else {
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(self.roots.clone()),
                provider(),
            )
            .build()
            .map_err(|e| TlsError::config(format!("client verification: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        };
        let (chain, key) = self
            .certificate()
            .ok_or_else(|| TlsError::config("a server needs a certificate and its key"))?;
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::config(format!("certificate: {e}")))?;
        config.alpn_protocols = self.alpn.clone();
        Ok(config)
    }

    fn client_config(
        &mut self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Result<ClientConfig, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|e| TlsError::config(e.to_string()))?;
        if self.roots.is_empty() && self.verify != Verify::NoneInsecure {
            // Nothing trusted explicitly: the system's roots, as browsers,
            // curl and Python's create_default_context do.
            load_system_roots(&mut self.roots)?;
        }
        let verifier: Arc<dyn ServerCertVerifier> = match self.verify {
            Verify::NoneInsecure => Arc::new(NoVerification(provider())),
            verify => {
                let webpki = WebPkiServerVerifier::builder_with_provider(
                    Arc::new(self.roots.clone()),
                    provider(),
                )
                .build()
                .map_err(|e| TlsError::config(format!("server verification: {e}")))?;
                if verify == Verify::ChainOnly {
                    Arc::new(ChainOnly(webpki))
                } else {
                    webpki
                }
            }
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match self.certificate() {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::config(format!("client certificate: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        Ok(config)
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError {
        code: e.raw_os_error().unwrap_or(libc::EIO),
        reason: format!("{}: {e}", path.display()),
    })
}

fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::config(format!("certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::config("no CERTIFICATE in the PEM data"));
    }
    Ok(certs)
}

fn load_system_roots(roots: &mut RootCertStore) -> Result<usize, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let (added, _unparsable) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        return Err(TlsError::config(format!(
            "no system trust anchors found{why}"
        )));
    }
    Ok(added)
}

/// Chain verification without the name check.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        match result {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// No verification of the certificate at all (the handshake's signatures
/// are still checked, so the peer holds the key of what it presented).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
