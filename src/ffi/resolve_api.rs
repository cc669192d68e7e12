//! Name resolution: evl_getaddrinfo on the pool, its result as a
//! callback; evl_connect_host, a stream that resolves and connects with
//! Happy Eyeballs.

use std::ffi::{c_char, c_int, c_void, CStr};

use super::boundary::{core, with_loop, with_loop_into, Callback};
use super::errors::evl_strerror;
use super::types::*;
use crate::stream::{resolve_message, HostResolver, ResolveRequest};
use crate::sys::{AddrInfo, Errno, Hints, AI_FLAGS, EAI_CANCELED};

/// The status of a resolution that was cancelled: glibc's EAI_CANCELED.
pub const EVL_EAI_CANCELED: c_int = -101;

const _: () = assert!(EVL_EAI_CANCELED == EAI_CANCELED);

/// Room for any address getaddrinfo gives: a struct sockaddr_in6.
pub const EVL_SOCKADDR_SIZE: u32 = 28;

/// The longest name or service evl_getaddrinfo takes, in bytes.
pub const EVL_NAME_MAX: u32 = 1024;

/// What evl_getaddrinfo asks besides the names: the fields of
/// getaddrinfo's `struct addrinfo` hints. All zero: any family, any socket
/// type, no flags.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct evl_addrinfo_hints {
    /// AI_* flags of <netdb.h> (AI_PASSIVE, AI_CANONNAME, AI_NUMERICHOST,
    /// AI_NUMERICSERV, AI_V4MAPPED, AI_ALL, AI_ADDRCONFIG, AI_IDN...).
    pub flags: c_int,
    /// AF_UNSPEC (0), AF_INET or AF_INET6.
    pub family: c_int,
    /// 0 (any), SOCK_STREAM, SOCK_DGRAM or SOCK_RAW.
    pub socktype: c_int,
    /// 0 (any) or an IPPROTO_*.
    pub protocol: c_int,
}

/// One address of a resolution.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct evl_addrinfo {
    /// AF_INET or AF_INET6.
    pub family: c_int,
    /// SOCK_STREAM, SOCK_DGRAM...
    pub socktype: c_int,
    pub protocol: c_int,
    /// How many bytes of `addr` hold the address.
    pub addrlen: u32,
    /// The address as the kernel takes it: a struct sockaddr_in or
    /// sockaddr_in6 (cast `addr` to `const struct sockaddr *`; aligned for
    /// either).
    pub addr: [u8; EVL_SOCKADDR_SIZE as usize],
}

/// The outcome of evl_getaddrinfo, as handed to its callback. It and all
/// it points to are valid during the callback only: copy what you keep.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct evl_resolve_result {
    /// The id evl_getaddrinfo gave.
    pub request: u64,
    /// 0, or what getaddrinfo returned: an EAI_* code of <netdb.h>
    /// (EAI_NONAME, EAI_AGAIN, EAI_SERVICE, EAI_SYSTEM...), or
    /// EVL_EAI_CANCELED when the request was cancelled.
    pub status: c_int,
    /// With EAI_SYSTEM: the errno, negative (-ENOMEM...); 0 otherwise.
    pub error: c_int,
    /// A static description of `status` (gai_strerror's; evl_strerror's of
    /// `error` for EAI_SYSTEM; "Success" for 0). Never NULL.
    pub message: *const c_char,
    /// `count` addresses in getaddrinfo's order (NULL when 0).
    pub addrs: *const evl_addrinfo,
    pub count: usize,
    /// The canonical name when AI_CANONNAME asked for it and one came, or NULL.
    pub canonname: *const c_char,
    /// The userdata given to evl_getaddrinfo.
    pub userdata: *mut c_void,
}

/// Called once on the loop's thread with the outcome of evl_getaddrinfo.
pub type evl_resolve_cb =
    Option<unsafe extern "C" fn(r#loop: *mut evl_loop, result: *const evl_resolve_result)>;

/// `name` as an owned string: NULL is None; longer than EVL_NAME_MAX is
/// ENAMETOOLONG.
///
/// # Safety
/// `name` is NULL or NUL-terminated.
unsafe fn owned_name(name: *const c_char) -> Result<Option<std::ffi::CString>, Errno> {
    if name.is_null() {
        return Ok(None);
    }
    // SAFETY: non-null and NUL-terminated, as the caller promised.
    let name = unsafe { CStr::from_ptr(name) };
    if name.to_bytes().len() > EVL_NAME_MAX as usize {
        return Err(libc::ENAMETOOLONG);
    }
    Ok(Some(name.to_owned()))
}

/// Resolves `node` and/or `service` (either may be NULL, not both) with
/// getaddrinfo on the loop's thread pool (see evl_pool_set_size) and calls
/// `cb` on the loop's thread in a later iteration with the outcome: the
/// addresses, or getaddrinfo's EAI_* error with its text. `hints` may be
/// NULL (any family and socket type). The request's id is written to
/// `*request` unless it is NULL.
///
/// `cb` is called exactly once per request: with the outcome, or with
/// EVL_EAI_CANCELED after evl_getaddrinfo_cancel. A pending request keeps
/// evl_run running. evl_loop_free drops pending requests without calling
/// `cb` (and does not wait for a getaddrinfo under way: its result is
/// dropped when it comes). In a child after fork, evl_loop_fork asks
/// again every request not answered in the parent.
///
/// Returns 0; -EINVAL for a NULL loop or `cb`, both names NULL, or hints
/// with unknown flags, a family other than AF_UNSPEC, AF_INET and
/// AF_INET6, an unknown socket type or a negative protocol;
/// -ENAMETOOLONG for a name longer than EVL_NAME_MAX bytes; -EAGAIN if no
/// pool thread could be started.
/// Ownership: the names and hints are copied; `userdata` stays the
/// caller's. The result passed to `cb` is the library's, valid during the
/// call only.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_getaddrinfo(
    r#loop: *mut evl_loop,
    node: *const c_char,
    service: *const c_char,
    hints: *const evl_addrinfo_hints,
    cb: evl_resolve_cb,
    userdata: *mut c_void,
    request: *mut u64,
) -> c_int {
    with_loop!(r#loop, |core| {
        if cb.is_none() || (node.is_null() && service.is_null()) {
            return Err(libc::EINVAL);
        }
        let hints = if hints.is_null() {
            Hints::default()
        } else {
            // SAFETY: non-null, the caller's struct (the header's contract).
            let h = unsafe { hints.read() };
            Hints {
                flags: h.flags,
                family: h.family,
                socktype: h.socktype,
                protocol: h.protocol,
            }
        };
        let family_ok = [libc::AF_UNSPEC, libc::AF_INET, libc::AF_INET6].contains(&hints.family);
        let types = [0, libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_RAW];
        if hints.flags & !AI_FLAGS != 0
            || !family_ok
            || !types.contains(&hints.socktype)
            || hints.protocol < 0
        {
            return Err(libc::EINVAL);
        }
        let query = ResolveRequest {
            // SAFETY: NULL or NUL-terminated (the header's contract).
            node: unsafe { owned_name(node) }?,
            // SAFETY: as above.
            service: unsafe { owned_name(service) }?,
            hints,
        };
        let id = core.getaddrinfo(query, Callback::resolve(cb, userdata))?;
        if !request.is_null() {
            // SAFETY: non-null, and the caller gives a writable u64 (header).
            unsafe { request.write(id) };
        }
        Ok(0)
    })
}

/// Cancels a resolution: its callback gets EVL_EAI_CANCELED in a later
/// iteration, never the addresses, whether or not its getaddrinfo had
/// started (one under way finishes on its thread, unseen).
///
/// Returns 0 (also for a request cancelled already); -EINVAL for a NULL
/// loop; -ENOENT for an unknown id or one whose callback has been called.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_getaddrinfo_cancel(r#loop: *mut evl_loop, request: u64) -> c_int {
    with_loop!(r#loop, |core| core.cancel_getaddrinfo(request).map(|()| 0))
}

/// Starts a TCP connection to `host`, a name or a numeric IPv4 or IPv6
/// address, and `port`, without blocking: a name is resolved on the pool
/// (as evl_getaddrinfo, SOCK_STREAM), then its addresses are tried with
/// Happy Eyeballs (RFC 8305): the two families alternate, starting with
/// getaddrinfo's first; an attempt starts every 250 ms, or at once when one
/// fails; the first to connect wins and the others are closed. The stream's
/// id is written to `*out` and is valid at once (an ordinary stream, as
/// from evl_connect): `cb` gets one EVL_STREAM_CONNECTED, with status 0,
/// or, when every address failed, with the last attempt's error
/// (-ECONNREFUSED, -ETIMEDOUT...) followed by EVL_STREAM_CLOSED. A name
/// that does not resolve fails that way with -EADDRNOTAVAIL (-EAGAIN for a
/// temporary failure of the resolver). Writes made before the connection
/// are queued; evl_stream_fd answers -ENOTCONN until an attempt has won;
/// closing the stream ends every attempt and the lookup.
///
/// Returns 0; -EINVAL for a NULL loop, host or `out`, an empty host or a
/// port outside 0..65535; -ENAMETOOLONG for a host longer than
/// EVL_NAME_MAX bytes; -EAGAIN if no pool thread could be started.
/// Ownership: the stream owns its socket; `host` is copied.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_connect_host(
    r#loop: *mut evl_loop,
    host: *const c_char,
    port: c_int,
    cb: evl_stream_cb,
    userdata: *mut c_void,
    out: *mut u64,
) -> c_int {
    with_loop_into!(r#loop, out, |core| {
        if host.is_null() {
            return Err(libc::EINVAL);
        }
        let port = u16::try_from(port).map_err(|_| libc::EINVAL)?;
        // SAFETY: non-null and NUL-terminated (the header's contract).
        let host = unsafe { owned_name(host) }?.unwrap_or_default();
        core.connect_host(&host, port, Callback::stream(cb, userdata))
    })
}

/// Test-only: evl_connect_host resolves names with `resolver` instead of
/// getaddrinfo (None: getaddrinfo again). Not part of the C header.
///
/// # Safety
/// `lp` is NULL or a live loop, used on its thread, not borrowed.
#[doc(hidden)]
pub unsafe fn test_set_host_resolver(lp: *mut evl_loop, resolver: Option<HostResolver>) {
    // SAFETY: as the caller promised.
    if let Ok(core) = unsafe { core(lp) } {
        core.set_host_resolver(resolver);
    }
}

/// An address as C sees it.
fn c_addrinfo(entry: &AddrInfo) -> evl_addrinfo {
    let bytes = entry.addr.as_bytes();
    let mut addr = [0u8; EVL_SOCKADDR_SIZE as usize];
    let len = bytes.len().min(addr.len());
    addr[..len].copy_from_slice(&bytes[..len]);
    evl_addrinfo {
        family: entry.family,
        socktype: entry.socktype,
        protocol: entry.protocol,
        addrlen: len as u32,
        addr,
    }
}

/// Calls the callback of resolution `id` with its outcome; returns whether
/// one ran.
///
/// # Safety
/// `lp` is live and not borrowed.
pub(super) unsafe fn deliver(lp: *mut evl_loop, id: u64, data: Callback) -> bool {
    // SAFETY: resolution records hold resolve callbacks.
    let Some(cb) = (unsafe { data.as_resolve() }) else {
        return false;
    };
    // SAFETY: live and not borrowed, as the caller promised; the borrow ends here.
    let Some(resolution) = (unsafe { core(lp) }).ok().and_then(|c| c.take_resolution()) else {
        return false;
    };
    let addrs: Vec<evl_addrinfo> = resolution.list.entries.iter().map(c_addrinfo).collect();
    let message = if resolution.status == libc::EAI_SYSTEM {
        evl_strerror(-resolution.errno)
    } else {
        resolve_message(resolution.status).as_ptr()
    };
    let result = evl_resolve_result {
        request: id,
        status: resolution.status,
        error: -resolution.errno,
        message,
        addrs: if addrs.is_empty() {
            std::ptr::null()
        } else {
            addrs.as_ptr()
        },
        count: addrs.len(),
        canonname: resolution
            .list
            .canonname
            .as_ref()
            .map_or(std::ptr::null(), |name| name.as_ptr()),
        userdata: data.userdata,
    };
    // SAFETY: the caller's callback, as given, with a result that (and
    // whose arrays) outlives the call; `lp` is live and not borrowed.
    unsafe { cb(lp, &result) };
    true
}
