//! TLS, with rustls and its `ring` provider: configurations ([`TlsConfig`],
//! built once and shared by every stream that uses them), what a stream's
//! session starts from ([`TlsRole`]), and the error codes a TLS stream ends
//! with. The session itself, on the stream machinery, is
//! `stream/tls.rs`; the C boundary is `ffi/tls_api.rs`.

mod config;

pub use config::{TlsConfig, TlsError, TlsRole, Verify};

use crate::sys::Errno;

/// A stream's TLS handshake failed (a protocol error, no version, cipher or
/// ALPN protocol in common, the peer closed or sent garbage, or a fatal
/// alert from the peer, also one saying it refused our certificate).
/// Positive, as the stream layer's errors are; C sees it negated.
pub const ETLS_HANDSHAKE: Errno = 1001;

/// The peer's certificate failed verification here: expired, not yet
/// valid, signed by no trusted root, issued for another name, revoked...
pub const ETLS_CERT: Errno = 1002;

/// After the handshake: a record that fails to decrypt, a message out of
/// place, a fatal alert from the peer.
pub const ETLS_PROTOCOL: Errno = 1003;

/// A configuration refused what it was given (a PEM file that holds no
/// certificate, a key that does not match, no trust anchors...).
pub const ETLS_CONFIG: Errno = 1004;

/// What an error code of this module says, for evl_strerror.
pub fn describe(code: Errno) -> Option<&'static std::ffi::CStr> {
    Some(match code {
        ETLS_HANDSHAKE => c"TLS handshake failed",
        ETLS_CERT => c"TLS certificate verification failed",
        ETLS_PROTOCOL => c"TLS protocol error",
        ETLS_CONFIG => c"TLS configuration refused",
        _ => return None,
    })
}

/// The code a rustls error ends a stream with: certificate errors apart,
/// then whether the handshake was still under way.
pub fn classify(error: &rustls::Error, handshaking: bool) -> Errno {
    use rustls::Error;
    match error {
        Error::InvalidCertificate(_)
        | Error::NoCertificatesPresented
        | Error::UnsupportedNameType
        | Error::InvalidCertRevocationList(_) => ETLS_CERT,
        _ if handshaking => ETLS_HANDSHAKE,
        _ => ETLS_PROTOCOL,
    }
}
