//! TLS's C API: configurations (evl_tls_config_*), TLS streams (a TLS
//! connect, TLS started on a stream, a listener whose streams are TLS) and
//! what may be asked of one (ALPN, version, cipher suite, the peer's
//! certificate, the server name, why it failed).

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;
use std::sync::Mutex;

use super::boundary::{bytes, guard, store, with_loop, with_loop_into, Callback};
use super::stream_api::socket_addr;
use super::types::*;
use crate::sys::Errno;
use crate::tls::{self, TlsConfig, Verify};

/// A stream's TLS handshake failed: a protocol error, no version, cipher
/// suite or ALPN protocol in common, a peer that sent something other than
/// TLS or closed during the handshake, or a fatal alert from the peer (also
/// one saying it refused our certificate). evl_tls_error_reason says more.
pub const EVL_ETLS_HANDSHAKE: c_int = -1001;

/// The peer's certificate failed verification here: expired or not yet
/// valid, signed by no trusted root, self-signed, issued for another name.
/// evl_tls_error_reason says which.
pub const EVL_ETLS_CERT: c_int = -1002;

/// After the handshake: a record that failed to decrypt, a message out of
/// place, a fatal alert from the peer.
pub const EVL_ETLS_PROTOCOL: c_int = -1003;

/// A TLS configuration refused what it was given, or cannot be built with
/// it (no certificate, a key that does not match, no trust anchors):
/// evl_tls_config_last_error says why.
pub const EVL_ETLS_CONFIG: c_int = -1004;

/// evl_tls_config_set_verify: check the peer's certificate chain up to a
/// trusted root and, on a client, that it names the server (the default).
pub const EVL_TLS_VERIFY_PEER: u32 = 0;

/// evl_tls_config_set_verify: check the chain but not the name (Python's
/// `check_hostname = False`).
pub const EVL_TLS_VERIFY_CHAIN_ONLY: u32 = 1;

/// evl_tls_config_set_verify: DANGEROUS: accept any certificate, so that
/// anyone on the path can pose as the server. For tests only.
pub const EVL_TLS_VERIFY_NONE_DANGEROUS: u32 = 2;

/// TLS 1.2, as on the wire (evl_tls_config_set_versions, evl_tls_version).
pub const EVL_TLS_1_2: u32 = 0x0303;

/// TLS 1.3, as on the wire.
pub const EVL_TLS_1_3: u32 = 0x0304;

const _: () = {
    assert!(EVL_ETLS_HANDSHAKE == -tls::ETLS_HANDSHAKE && EVL_ETLS_CERT == -tls::ETLS_CERT);
    assert!(EVL_ETLS_PROTOCOL == -tls::ETLS_PROTOCOL && EVL_ETLS_CONFIG == -tls::ETLS_CONFIG);
};

/// A TLS configuration: a server's (its certificate) or a client's (what
/// it trusts). Opaque: made by evl_tls_config_new_server or
/// evl_tls_config_new_client, freed by evl_tls_config_free.
pub struct evl_tls_config {
    config: TlsConfig,
    /// What evl_tls_config_last_error hands out.
    last_error: Mutex<CString>,
}

/// The configuration behind `cfg`.
///
/// # Safety
/// `cfg` is NULL or a live pointer from evl_tls_config_new_*.
unsafe fn config<'a>(cfg: *const evl_tls_config) -> Result<&'a TlsConfig, Errno> {
    if cfg.is_null() {
        return Err(libc::EINVAL);
    }
    // SAFETY: non-null, so live, as the caller promised; only shared
    // references are made (the configuration locks itself).
    Ok(unsafe { &(*cfg).config })
}

/// A NUL-terminated string argument; NULL is refused (EINVAL).
///
/// # Safety
/// `s` is NULL or NUL-terminated.
unsafe fn text<'a>(s: *const c_char) -> Result<&'a str, Errno> {
    if s.is_null() {
        return Err(libc::EINVAL);
    }
    // SAFETY: non-null and NUL-terminated, as the caller promised.
    unsafe { CStr::from_ptr(s) }
        .to_str()
        .map_err(|_| libc::EINVAL)
}

fn count(n: usize) -> Result<c_int, Errno> {
    c_int::try_from(n).map_err(|_| libc::EOVERFLOW)
}

/// Copies `value` into `buf` (room for `cap` bytes): as much as fits, and a
/// NUL after it when there is room; returns its whole length.
///
/// # Safety
/// Unless NULL, `buf` is writable for `cap` bytes.
unsafe fn copy_out(value: &[u8], buf: *mut c_void, cap: usize) -> Result<c_int, Errno> {
    let len = count(value.len())?;
    if cap > 0 {
        if buf.is_null() {
            return Err(libc::EINVAL);
        }
        let n = value.len().min(cap);
        // SAFETY: `buf` has room for `cap` >= n bytes (and n + 1 when
        // n < cap), as the caller promised; `value` is ours.
        unsafe {
            std::ptr::copy_nonoverlapping(value.as_ptr(), buf as *mut u8, n);
            if n < cap {
                (buf as *mut u8).add(n).write(0);
            }
        }
    }
    Ok(len)
}

/// Runs a configuration setter; its error's reason becomes the last error.
///
/// # Safety
/// As [`config`].
unsafe fn with_config(
    cfg: *mut evl_tls_config,
    body: impl FnOnce(&TlsConfig) -> Result<c_int, Errno>,
) -> c_int {
    guard(|| {
        // SAFETY: as the caller promised.
        let config = unsafe { config(cfg) }?;
        let result = body(config);
        if result.is_err() {
            // SAFETY: non-null (config() checked it) and live.
            unsafe { keep_last_error(cfg) };
        }
        result
    })
}

/// Keeps the configuration's last error where evl_tls_config_last_error
/// hands it out.
///
/// # Safety
/// `cfg` is a live configuration.
unsafe fn keep_last_error(cfg: *const evl_tls_config) {
    // SAFETY: as the caller promised.
    let cfg = unsafe { &*cfg };
    let reason = CString::new(cfg.config.last_error().replace('\0', " ")).unwrap_or_default();
    *cfg.last_error.lock().unwrap_or_else(|e| e.into_inner()) = reason;
}

fn new_config(out: *mut *mut evl_tls_config, server: bool) -> c_int {
    guard(|| {
        let cfg = Box::into_raw(Box::new(evl_tls_config {
            config: TlsConfig::new(server),
            last_error: Mutex::new(CString::default()),
        }));
        // SAFETY: `out` is NULL (refused by store) or writable (the header's contract).
        if let Err(e) = unsafe { store(out, cfg) } {
            // SAFETY: just made by Box::into_raw, and given to no one.
            drop(unsafe { Box::from_raw(cfg) });
            return Err(e);
        }
        Ok(0)
    })
}

/// Makes a server's TLS configuration and stores it in `*out`. Give it its
/// certificate (evl_tls_config_set_certificate_pem or _files); CA
/// certificates added to a server's configuration make it ask clients for
/// theirs and verify them. ALPN: the server's order of preference decides.
///
/// Returns 0; -EINVAL for a NULL `out`.
/// Ownership: the caller owns the configuration and frees it with
/// evl_tls_config_free, which it may do at any time: streams and listeners
/// keep what they need of it. It is built on first use (by a listener or a
/// stream); from then on it is frozen and its setters answer -EBUSY.
/// Thread-safety: any function may be called on one configuration from any
/// thread (it locks itself), except evl_tls_config_free, which must be the
/// last call; loops on several threads may use one configuration.
#[no_mangle]
pub unsafe extern "C" fn evl_tls_config_new_server(out: *mut *mut evl_tls_config) -> c_int {
    new_config(out, true)
}

/// Makes a client's TLS configuration and stores it in `*out`. It trusts
/// what evl_tls_config_add_ca_pem, _add_ca_file and _add_system_roots
/// give it; if given none, the system's roots (/etc/ssl/certs, or the
/// files SSL_CERT_FILE and SSL_CERT_DIR name) when it is built. It checks
/// the server's certificate and name (see evl_tls_config_set_verify). A
/// certificate set on it is sent to servers that ask for one.
///
/// Returns 0; -EINVAL for a NULL `out`.
/// Ownership and thread-safety: as evl_tls_config_new_server.
#[no_mangle]
pub unsafe extern "C" fn evl_tls_config_new_client(out: *mut *mut evl_tls_config) -> c_int {
    new_config(out, false)
}

/// Frees a configuration. Listeners and streams that use it keep working
/// (they hold their own reference to what was built).
///
/// Returns 0; -EINVAL for NULL.
/// Thread-safety: any thread, once no other call on `cfg` is under way or
/// will come.
#[no_mangle]
pub unsafe extern "C" fn evl_tls_config_free(cfg: *mut evl_tls_config) -> c_int {
    guard(|| {
        if cfg.is_null() {
            return Err(libc::EINVAL);
        }
        // SAFETY: made by Box::into_raw in new_config; the caller makes no
        // other call on it from now on (the header's contract).
        drop(unsafe { Box::from_raw(cfg) });
        Ok(0)
    })
}

/// Why the last call on `cfg` that failed did (a static "" if none did,
/// never NULL): "certificate PEM: ...", "a key that does not match"...
///
/// Ownership: the string is the configuration's; it stays valid until the
/// next call on `cfg` that fails, or evl_tls_config_free.
/// Thread-safety: any thread (read it on the thread whose call failed).
#[no_mangle]
pub unsafe extern "C" fn evl_tls_config_last_error(cfg: *const evl_tls_config) -> *const c_char {
    let result = std::panic::catch_unwind(|| {
        if cfg.is_null() {
            return c"".as_ptr();
        }
        // SAFETY: non-null, so live (the header's contract).
        let slot = unsafe { &(*cfg).last_error };
        // The CString's buffer stays where it is until it is replaced.
        slot.lock().unwrap_or_else(|e| e.into_inner()).as_ptr()
    });
    result.unwrap_or(c"".as_ptr())
}

/// Sets the certificate chain (PEM, the certificate first, then the
/// intermediates) and its private key (PEM: PKCS#8, PKCS#1 or SEC1), as
/// `chain_len` and `key_len` bytes. A server presents them; a client sends
/// them to a server that asks.
///
/// Returns 0; -EINVAL for a NULL `cfg` or NULL data with a non-zero
/// length; EVL_ETLS_CONFIG when the PEM holds no certificate or no key;
/// -EBUSY once the configuration is in use. A key that does not match the
/// certificate is found when the configuration is built (EVL_ETLS_CONFIG
/// then, from the call that uses it).
/// Ownership: the bytes stay the caller's; they are copied.
/// Thread-safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn evl_tls_config_set_certificate_pem(
    cfg: *mut evl_tls_config,
    chain: *const c_char,
    chain_len: usize,
    key: *const c_char,
    key_len: usize,
) -> c_int {
    // SAFETY: the header's contract: `cfg` is NULL or live; the data are
    // readable for their lengths.
    unsafe {
        with_config(cfg, |c| {
            let chain = bytes(chain.cast(), chain_len)?;
            let key = bytes(key.cast(), key_len)?;
            c.set_certificate_pem(chain, key).map(|()| 0)
        })
    }
}

/// As evl_tls_config_set_certificate_pem, from the PEM files `chain_path`
/// and `key_path`.
///
/// Returns 0; -EINVAL for a NULL argument; -ENOENT, -EACCES... when a file
/// cannot be read; EVL_ETLS_CONFIG; -EBUSY once in use.
/// Thread-safety: any thread (it reads the files, which may block).
#[no_mangle]
pub unsafe extern "C" fn evl_tls_config_set_certificate_files(
    cfg: *mut evl_tls_config,
    chain_path: *const c_char,
    key_path: *const c_char,
) -> c_int {
    // SAFETY: the header's contract: `cfg` is NULL or live, the paths NULL
    // or NUL-terminated.
    unsafe {
        with_config(cfg, |c| {
            let (chain, key) = (text(chain_path)?, text(key_path)?);
            c.set_certificate_files(Path::new(chain), Path::new(key))
                .map(|()| 0)
        })
    }
}

/// Trusts the CA certificates of a PEM bundle of `len` bytes.
///
/// Returns how many were added; -EINVAL for a NULL `cfg` or NULL data with
/// a non-zero length; EVL_ETLS_CONFIG when it holds no certificate or one
/// that cannot be a trust anchor; -EBUSY once in use.
/// Ownership: the bytes stay the caller's. Thread-safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn evl_tls_config_add_ca_pem(
    cfg: *mut evl_tls_config,
    pem: *const c_char,
    len: usize,
) -> c_int {
    // SAFETY: the header's contract: `cfg` is NULL or live; `pem` is
    // readable for `len` bytes.
    unsafe {
        with_config(cfg, |c| {
            c.add_ca_pem(bytes(pem.cast(), len)?).and_then(count)
        })
    }
}

/// As evl_tls_config_add_ca_pem, from the PEM file `path`.
///
/// Returns how many were added; -EINVAL for a NULL argument; -ENOENT,
/// -EACCES... when the file cannot be read; EVL_ETLS_CONFIG; -EBUSY.
/// Thread-safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn evl_tls_config_add_ca_file(
    cfg: *mut evl_tls_config,
    path: *const c_char,
) -> c_int {
    // SAFETY: the header's contract: `cfg` is NULL or live, `path` NULL or
    // NUL-terminated.
    unsafe {
        with_config(cfg, |c| {
            c.add_ca_file(Path::new(text(path)?)).and_then(count)
        })
    }
}

/// Trusts the system's roots: /etc/ssl/certs (the files SSL_CERT_FILE and
/// SSL_CERT_DIR name, if set).
///
/// Returns how many were added; -EINVAL for a NULL `cfg`; EVL_ETLS_CONFIG
/// when none was found; -EBUSY once in use.
/// Thread-safety: any thread (it reads files).
#[no_mangle]
pub unsafe extern "C" fn evl_tls_config_add_system_roots(cfg: *mut evl_tls_config) -> c_int {
    // SAFETY: the header's contract: `cfg` is NULL or live.
    unsafe { with_config(cfg, |c| c.add_system_roots().and_then(count)) }
}

/// The ALPN protocols, `count` NUL-terminated names ("h2", "http/1.1"), in
/// order of preference; a server picks the first of its own that the
/// client offers and refuses a client that offers none of them
/// (EVL_ETLS_HANDSHAKE). `count` 0: no ALPN.
///
/// Returns 0; -EINVAL for a NULL `cfg`, NULL `protocols` with a non-zero
/// `count`, a negative `count`, or a name empty or over 255 bytes; -EBUSY
/// once in use.
/// Ownership: the strings stay the caller's. Thread-safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn evl_tls_config_set_alpn(
    cfg: *mut evl_tls_config,
    protocols: *const *const c_char,
    count: c_int,
) -> c_int {
    // SAFETY: the header's contract: `cfg` is NULL or live; `protocols`
    // holds `count` NUL-terminated strings.
    unsafe {
        with_config(cfg, |c| {
            let n = usize::try_from(count).map_err(|_| libc::EINVAL)?;
            if n > 0 && protocols.is_null() {
                return Err(libc::EINVAL);
            }
            let mut names = Vec::with_capacity(n);
            for i in 0..n {
                let name = protocols.add(i).read();
                if name.is_null() {
                    return Err(libc::EINVAL);
                }
                names.push(CStr::from_ptr(name).to_bytes().to_vec());
            }
            c.set_alpn(names).map(|()| 0)
        })
    }
}

/// How the peer's certificate is checked: EVL_TLS_VERIFY_PEER (the
/// default), EVL_TLS_VERIFY_CHAIN_ONLY or EVL_TLS_VERIFY_NONE_DANGEROUS. On
/// a server it matters only with CA certificates added (client
/// certificates); EVL_TLS_VERIFY_NONE_DANGEROUS then asks for none.
///
/// Returns 0; -EINVAL for a NULL `cfg` or an unknown mode; -EBUSY once in use.
/// Thread-safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn evl_tls_config_set_verify(cfg: *mut evl_tls_config, mode: u32) -> c_int {
    // SAFETY: the header's contract: `cfg` is NULL or live.
    unsafe {
        with_config(cfg, |c| {
            let verify = match mode {
                EVL_TLS_VERIFY_PEER => Verify::Peer,
                EVL_TLS_VERIFY_CHAIN_ONLY => Verify::ChainOnly,
                EVL_TLS_VERIFY_NONE_DANGEROUS => Verify::NoneInsecure,
                _ => return Err(libc::EINVAL),
            };
            c.set_verify(verify).map(|()| 0)
        })
    }
}

/// The lowest and highest TLS version allowed: EVL_TLS_1_2 or EVL_TLS_1_3
/// (0: the default, 1.2 and 1.3 respectively).
///
/// Returns 0; -EINVAL for a NULL `cfg`, another version or `min` > `max`;
/// -EBUSY once in use. Thread-safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn evl_tls_config_set_versions(
    cfg: *mut evl_tls_config,
    min: u32,
    max: u32,
) -> c_int {
    // SAFETY: the header's contract: `cfg` is NULL or live.
    unsafe {
        with_config(cfg, |c| {
            let or = |v: u32, default: u32| u16::try_from(if v == 0 { default } else { v });
            let min = or(min, EVL_TLS_1_2).map_err(|_| libc::EINVAL)?;
            let max = or(max, EVL_TLS_1_3).map_err(|_| libc::EINVAL)?;
            c.set_versions(min, max).map(|()| 0)
        })
    }
}

/// The session a stream starts from; a client's needs `server_name`.
///
/// # Safety
/// `cfg` NULL or live; `server_name` NULL or NUL-terminated.
pub(crate) unsafe fn role(
    cfg: *mut evl_tls_config,
    server_name: *const c_char,
) -> Result<tls::TlsRole, Errno> {
    // SAFETY: as the caller promised.
    let config = unsafe { config(cfg) }?;
    let name = if server_name.is_null() {
        None
    } else {
        // SAFETY: as the caller promised.
        Some(unsafe { text(server_name) }?)
    };
    config.role(name).inspect_err(|_| {
        // SAFETY: live, checked by config().
        unsafe { keep_last_error(cfg) }
    })
}

/// Makes the streams a listener accepts from now on TLS streams of `cfg`, a
/// server's configuration (NULL: plain streams again). Such a stream is
/// announced by EVL_STREAM_ACCEPTED once its handshake is done (so ALPN,
/// the server name and the version can be asked at once); one whose
/// handshake fails (a client that sends garbage, stalls past the
/// listener's idle timeout, refuses the certificate) is closed without an
/// event, its fd and memory freed. The listener's idle timeout, watermarks
/// and connection limit count the handshake too.
///
/// Returns 0; -EINVAL for a NULL loop or a client's configuration;
/// -ENOENT for an unknown listener; EVL_ETLS_CONFIG when the configuration
/// cannot be built (evl_tls_config_last_error says why).
/// Ownership: the listener keeps what it needs of `cfg`, which may be freed.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_listener_set_tls(
    r#loop: *mut evl_loop,
    listener: u64,
    cfg: *mut evl_tls_config,
) -> c_int {
    with_loop!(r#loop, |core| {
        let server = if cfg.is_null() {
            None
        } else {
            // SAFETY: `cfg` is live (the header's contract).
            match unsafe { role(cfg, std::ptr::null()) }? {
                tls::TlsRole::Server(config) => Some(config),
                tls::TlsRole::Client(..) => return Err(libc::EINVAL),
            }
        };
        core.set_listener_tls(listener, server).map(|()| 0)
    })
}

/// Starts a TLS connection to `host` and `port` (as evl_connect), checking
/// the server's certificate against `server_name`, which is also sent as
/// SNI (NULL: `host`; an IP address is checked against the certificate's
/// addresses and sends no SNI). `cb` gets EVL_STREAM_CONNECTED once the
/// TLS handshake is done (status 0) or the connect or handshake failed
/// (-ECONNREFUSED, EVL_ETLS_CERT, EVL_ETLS_HANDSHAKE...; EVL_STREAM_CLOSED
/// follows). Writes made before then are sent once it is done.
///
/// Returns 0; -EINVAL for a NULL loop, host, configuration or `out`, a
/// server's configuration, or a `server_name` that is neither a DNS name
/// nor an IP address; as evl_connect otherwise; EVL_ETLS_CONFIG when the
/// configuration cannot be built.
/// Ownership: the stream keeps what it needs of `cfg`, which may be freed.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_tls_connect(
    r#loop: *mut evl_loop,
    host: *const c_char,
    port: c_int,
    cfg: *mut evl_tls_config,
    server_name: *const c_char,
    cb: evl_stream_cb,
    userdata: *mut c_void,
    out: *mut u64,
) -> c_int {
    with_loop_into!(r#loop, out, |core| {
        if host.is_null() {
            return Err(libc::EINVAL);
        }
        let name = if server_name.is_null() {
            host
        } else {
            server_name
        };
        // SAFETY: the header's contract: `cfg` is NULL or live; the strings
        // are NUL-terminated.
        let role = unsafe { role(cfg, name) }?;
        if matches!(role, tls::TlsRole::Server(_)) {
            return Err(libc::EINVAL);
        }
        // SAFETY: `host` is NUL-terminated (the header's contract).
        let addr = unsafe { socket_addr(host, port) }?;
        core.tls_connect(&addr, role, Callback::stream(cb, userdata))
    })
}

/// Starts TLS on a stream (STARTTLS, or a stream of evl_stream_open): a
/// server's session with a server's configuration, a client's with a
/// client's, checking and sending `server_name` (required then). What was
/// written before is sent first, in the clear; from now on what the stream
/// reads and writes goes through TLS. EVL_STREAM_CONNECTED comes when the
/// handshake ends, with its status (EVL_STREAM_CLOSED follows a failure).
///
/// Returns 0; -EINVAL for a NULL loop or configuration, a client's without
/// `server_name`, or a write-only stream; -ENOENT for an unknown stream;
/// -EALREADY if it is a TLS stream already; -EPIPE for one that is
/// ending (shut down, closing, closed, or its peer's end came);
/// EVL_ETLS_CONFIG when the configuration cannot be built.
/// Ownership: the stream keeps what it needs of `cfg`, which may be freed.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_tls_start(
    r#loop: *mut evl_loop,
    stream: u64,
    cfg: *mut evl_tls_config,
    server_name: *const c_char,
) -> c_int {
    with_loop!(r#loop, |core| {
        // SAFETY: the header's contract: `cfg` is NULL or live, the name
        // NULL or NUL-terminated.
        let role = unsafe { role(cfg, server_name) }?;
        core.tls_start(stream, role).map(|()| 0)
    })
}

/// Whether a TLS stream's handshake is still under way: 1 or 0.
///
/// Returns 1 or 0; -EINVAL for a NULL loop or a stream that is not a TLS
/// stream; -ENOENT for an unknown stream; -EBADF for a closed one.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_tls_handshaking(r#loop: *mut evl_loop, stream: u64) -> c_int {
    with_loop!(r#loop, |core| core.tls_handshaking(stream).map(c_int::from))
}

/// The TLS version agreed on: EVL_TLS_1_2 or EVL_TLS_1_3; 0 during the
/// handshake.
///
/// Returns it; errors as evl_tls_handshaking.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_tls_version(r#loop: *mut evl_loop, stream: u64) -> c_int {
    with_loop!(r#loop, |core| core.tls_version(stream).map(c_int::from))
}

/// The cipher suite agreed on, as its IANA number (0x1302:
/// TLS_AES_256_GCM_SHA384); 0 during the handshake.
///
/// Returns it; errors as evl_tls_handshaking.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_tls_cipher_suite(r#loop: *mut evl_loop, stream: u64) -> c_int {
    with_loop!(r#loop, |core| core
        .tls_cipher_suite(stream)
        .map(c_int::from))
}

/// The ALPN protocol agreed on, copied into `buf` (room for `cap` bytes:
/// as much as fits, NUL-terminated when there is room; `cap` 0 copies
/// nothing).
///
/// Returns its length, 0 if none was agreed on (or during the handshake);
/// -EINVAL for NULL `buf` with a non-zero `cap`; otherwise as
/// evl_tls_handshaking. Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_tls_alpn(
    r#loop: *mut evl_loop,
    stream: u64,
    buf: *mut c_char,
    cap: usize,
) -> c_int {
    with_loop!(r#loop, |core| {
        let value = core.tls_alpn(stream)?.unwrap_or_default();
        // SAFETY: `buf` has room for `cap` bytes (the header's contract).
        unsafe { copy_out(value, buf.cast(), cap) }
    })
}

/// The server name: on a client, the one it asked for; on a server, the
/// one the client sent (SNI). Copied as by evl_tls_alpn.
///
/// Returns its length, 0 if there is none (a client that connected to an
/// IP address sends none); errors as evl_tls_alpn.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_tls_server_name(
    r#loop: *mut evl_loop,
    stream: u64,
    buf: *mut c_char,
    cap: usize,
) -> c_int {
    with_loop!(r#loop, |core| {
        let value = core.tls_server_name(stream)?.unwrap_or_default();
        // SAFETY: `buf` has room for `cap` bytes (the header's contract).
        unsafe { copy_out(value.as_bytes(), buf.cast(), cap) }
    })
}

/// The peer's certificate `index` (0: its own; then the rest of the chain
/// it sent), DER, copied into `buf` as far as `cap` bytes go (no NUL is
/// meaningful in DER: compare the length returned with `cap`). Call with
/// `cap` 0 to learn the length.
///
/// Returns its length, 0 if the peer sent no certificate at `index` (a
/// client without one; the handshake under way); errors as evl_tls_alpn.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_tls_peer_certificate(
    r#loop: *mut evl_loop,
    stream: u64,
    index: usize,
    buf: *mut u8,
    cap: usize,
) -> c_int {
    with_loop!(r#loop, |core| {
        let value = core
            .tls_peer_certificate(stream, index)?
            .unwrap_or_default();
        // SAFETY: `buf` has room for `cap` bytes (the header's contract).
        unsafe { copy_out(value, buf.cast(), cap) }
    })
}

/// Why a TLS stream failed, in words ("invalid peer certificate: Expired",
/// "received fatal alert: BadCertificate"...), copied as by evl_tls_alpn:
/// for the status EVL_ETLS_* of its EVL_STREAM_CONNECTED or
/// EVL_STREAM_CLOSED. It can be asked during those events and after them
/// (also once the id is dead): the loop remembers the last 64 failures.
///
/// Returns its length, 0 if none is known for `stream`; -EINVAL for a
/// NULL loop, or NULL `buf` with a non-zero `cap`.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_tls_error_reason(
    r#loop: *mut evl_loop,
    stream: u64,
    buf: *mut c_char,
    cap: usize,
) -> c_int {
    with_loop!(r#loop, |core| {
        let value = core.tls_error_reason(stream).unwrap_or_default();
        // SAFETY: `buf` has room for `cap` bytes (the header's contract).
        unsafe { copy_out(value.as_bytes(), buf.cast(), cap) }
    })
}
