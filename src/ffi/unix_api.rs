//! Unix-domain sockets' C API: listeners and connects on a path or an
//! abstract name (they make ordinary streams), the peer's credentials, and
//! passing fds over a stream.

use std::ffi::{c_char, c_int, c_void, CStr};

use super::boundary::{bytes, with_loop, with_loop_into, Callback};
use super::stream_api::listen_backlog;
use super::types::*;
use crate::stream::StreamEventKind;
use crate::sys::{Errno, UnixAddr, MAX_FDS_PER_MESSAGE};

/// evl_listen_unix and evl_connect_unix flag: `path` is a name in Linux's
/// abstract namespace (no file; the name is gone with the last socket
/// bound to it), not a filesystem path.
pub const EVL_UNIX_ABSTRACT: u32 = 1;

/// evl_listen_unix flag: if a socket file is at `path` and nobody listens
/// on it any more (a connect to it is refused: a server that crashed left
/// it), remove it first. Nothing else is ever removed: a socket someone
/// listens on, or a file that is no socket, gives -EADDRINUSE.
pub const EVL_UNIX_REMOVE_STALE: u32 = 2;

/// A Unix-domain stream received fds (evl_stream_accept_fds), sent with
/// the bytes of the EVL_STREAM_DATA event that follows (a sender's
/// evl_stream_write_fds attaches them to its first byte). `len` is how
/// many; `data` is NULL. They are the library's until evl_stream_take_fds
/// moves them to the application; those not taken when the callback
/// returns (with evl_stream_poll: by the next evl_stream_poll) are closed.
pub const EVL_STREAM_FDS: u32 = 10;

/// The most fds one evl_stream_write_fds passes, and one message brings.
pub const EVL_MAX_FDS: u32 = 253;

const _: () = {
    assert!(StreamEventKind::Fds as u32 == EVL_STREAM_FDS);
    assert!(MAX_FDS_PER_MESSAGE == EVL_MAX_FDS as usize);
};

/// `path` (NUL-terminated) as a Unix-domain address, by `flags`.
///
/// # Safety
/// `path` is NULL or NUL-terminated.
unsafe fn unix_addr(path: *const c_char, flags: u32) -> Result<UnixAddr, Errno> {
    if path.is_null() {
        return Err(libc::EINVAL);
    }
    // SAFETY: non-null and NUL-terminated (the header's contract).
    let name = unsafe { CStr::from_ptr(path) };
    UnixAddr::new(name.to_bytes(), flags & EVL_UNIX_ABSTRACT != 0)
}

/// Listens for Unix-domain stream connections on `path`: a filesystem path,
/// or with EVL_UNIX_ABSTRACT a Linux abstract name (without the leading
/// NUL byte the kernel uses; `path` is then the name's bytes up to its
/// NUL). `backlog` <= 0: SOMAXCONN. `flags`: EVL_UNIX_ABSTRACT,
/// EVL_UNIX_REMOVE_STALE. The listener's id is written to `*out`; it takes
/// every listener call (evl_listener_close, evl_listener_set_max_conns,
/// evl_stream_set_callback, _set_watermarks, _set_idle_timeout).
///
/// Each connection accepted becomes an ordinary stream (every stream call
/// works on it), announced by EVL_STREAM_ACCEPTED to `cb` with `userdata`,
/// as for evl_listen.
///
/// Returns 0; -EINVAL for a NULL loop, `path` or `out`, an empty path or
/// unknown flags; -ENAMETOOLONG for a path or name over 107 bytes;
/// -EADDRINUSE when something is at the path already (without
/// EVL_UNIX_REMOVE_STALE, or when it is not a stale socket) or the
/// abstract name is taken; -EACCES, -ENOENT (no such directory), -EMFILE...
/// Ownership: the listener owns its socket, and its socket file: when the
/// listener closes (evl_listener_close, evl_loop_free) the file is removed,
/// if it is still the one it bound and this is the process that bound it
/// (a child after fork() never removes its parent's). Thread-safety: the
/// loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_listen_unix(
    r#loop: *mut evl_loop,
    path: *const c_char,
    backlog: c_int,
    flags: u32,
    cb: evl_stream_cb,
    userdata: *mut c_void,
    out: *mut u64,
) -> c_int {
    with_loop_into!(r#loop, out, |core| {
        if flags & !(EVL_UNIX_ABSTRACT | EVL_UNIX_REMOVE_STALE) != 0 {
            return Err(libc::EINVAL);
        }
        // SAFETY: `path` is NULL or NUL-terminated (the header's contract).
        let addr = unsafe { unix_addr(path, flags) }?;
        let remove_stale = flags & EVL_UNIX_REMOVE_STALE != 0;
        core.listen_unix(
            &addr,
            listen_backlog(backlog),
            remove_stale,
            Callback::stream(cb, userdata),
        )
    })
}

/// Connects to the Unix-domain stream socket at `path` (with
/// EVL_UNIX_ABSTRACT in `flags`, an abstract name, as for evl_listen_unix)
/// and writes the stream's id to `*out`. A Unix-domain connect never waits:
/// `cb` gets EVL_STREAM_CONNECTED in the next iteration, with status 0 (the
/// stream is open, and writes made before then went out at once), or with
/// why it failed, then EVL_STREAM_CLOSED: -ECONNREFUSED (nobody listens),
/// -ENOENT (no such socket), -EAGAIN (the listener's backlog is full),
/// -EACCES, -EPROTOTYPE (not a stream socket)...
///
/// Returns 0; -EINVAL for a NULL loop, `path` or `out`, an empty path or
/// unknown flags; -ENAMETOOLONG for a path or name over 107 bytes; -EMFILE...
/// Ownership: the stream owns its socket. Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_connect_unix(
    r#loop: *mut evl_loop,
    path: *const c_char,
    flags: u32,
    cb: evl_stream_cb,
    userdata: *mut c_void,
    out: *mut u64,
) -> c_int {
    with_loop_into!(r#loop, out, |core| {
        if flags & !EVL_UNIX_ABSTRACT != 0 {
            return Err(libc::EINVAL);
        }
        // SAFETY: `path` is NULL or NUL-terminated (the header's contract).
        let addr = unsafe { unix_addr(path, flags) }?;
        core.connect_unix(&addr, Callback::stream(cb, userdata))
    })
}

/// The credentials of the process at the other end of a Unix-domain stream
/// (SO_PEERCRED: as they were when it connected, or made the socket pair),
/// written to `*pid`, `*uid` and `*gid` (each may be NULL).
///
/// Returns 0; -EINVAL for a NULL loop; -ENOENT for an unknown stream;
/// -EBADF for a stream closed already; -EOPNOTSUPP for a socket of another
/// family (TCP), -ENOTSOCK for a pipe.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_peer_cred(
    r#loop: *mut evl_loop,
    stream: u64,
    pid: *mut c_int,
    uid: *mut u32,
    gid: *mut u32,
) -> c_int {
    with_loop!(r#loop, |core| {
        let cred = core.peer_credentials(stream)?;
        // SAFETY: each is NULL (skipped) or writable (the header's contract).
        unsafe {
            if !pid.is_null() {
                pid.write(cred.pid);
            }
            if !uid.is_null() {
                uid.write(cred.uid);
            }
            if !gid.is_null() {
                gid.write(cred.gid);
            }
        }
        Ok(0)
    })
}

/// Writes `len` bytes (at least 1) as evl_stream_write does, with the
/// `count` fds of `fds` (1 to EVL_MAX_FDS) attached to the first of them
/// (SCM_RIGHTS), on a Unix-domain stream. The peer receives them with that
/// byte (if it accepts fds: see evl_stream_accept_fds; otherwise its kernel
/// closes them).
///
/// Returns 0 (sent, or queued with the bytes); -EINVAL for a NULL loop,
/// `data` or `fds`, `len` 0, or `count` out of range; -EBADF for an fd in
/// `fds` that is not open, -EMFILE when the duplicates below cannot be
/// made (nothing is written then); -EOPNOTSUPP for a stream that is not a
/// Unix-domain socket (-ENOTSOCK for a pipe); otherwise as evl_stream_write.
/// Ownership: `data` and `fds` stay the caller's, and so do the fds: the
/// kernel passes its own references to the files, and when the bytes must
/// wait in the stream's queue, the stream holds duplicates of the fds
/// until they leave (or the stream ends), then closes them. The caller may
/// close its fds as soon as this returns.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_write_fds(
    r#loop: *mut evl_loop,
    stream: u64,
    data: *const c_void,
    len: usize,
    fds: *const c_int,
    count: c_int,
) -> c_int {
    with_loop!(r#loop, |core| {
        if fds.is_null() || count <= 0 || count as u32 > EVL_MAX_FDS || len == 0 {
            return Err(libc::EINVAL);
        }
        // SAFETY: `data` is readable for `len` bytes (the header's contract).
        let bytes = unsafe { bytes(data, len) }?;
        // SAFETY: non-null, holding `count` ints (the header's contract).
        let fds = unsafe { std::slice::from_raw_parts(fds, count as usize) };
        core.write_fds(stream, bytes, fds).map(|()| 0)
    })
}

/// Lets a Unix-domain stream receive fds: up to `max` (0 to EVL_MAX_FDS)
/// from one message, delivered as EVL_STREAM_FDS events; those past `max`
/// are closed at once. 0 (the default) stops receiving them: the stream
/// then reads with read(2), and the kernel closes any fd that comes. Call
/// it before the fds can arrive: on EVL_STREAM_ACCEPTED or
/// EVL_STREAM_CONNECTED, or right after evl_stream_open.
///
/// Returns 0; -EINVAL for a NULL loop or `max` out of range; -ENOENT for
/// an unknown stream; -EOPNOTSUPP for a stream that is not a Unix-domain
/// socket (-ENOTSOCK for a pipe).
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_accept_fds(
    r#loop: *mut evl_loop,
    stream: u64,
    max: c_int,
) -> c_int {
    with_loop!(r#loop, |core| {
        let max = usize::try_from(max).map_err(|_| libc::EINVAL)?;
        core.accept_fds(stream, max).map(|()| 0)
    })
}

/// Takes the fds of the EVL_STREAM_FDS events of `stream` delivered so far
/// and not yet taken: up to `max` of them, in the order they came, into
/// `fds`. Call it in the EVL_STREAM_FDS callback (with evl_stream_poll:
/// before the next evl_stream_poll); what is left then is closed.
///
/// Returns how many fds were written (0: none waits); -EINVAL for a NULL
/// loop, or NULL `fds` with `max` > 0, or a negative `max`.
/// Ownership: each fd written is the caller's from then on, to close
/// (close-on-exec is set). An fd is never given twice.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_take_fds(
    r#loop: *mut evl_loop,
    stream: u64,
    fds: *mut c_int,
    max: c_int,
) -> c_int {
    with_loop!(r#loop, |core| {
        let max = usize::try_from(max).map_err(|_| libc::EINVAL)?;
        if max == 0 {
            return Ok(0);
        }
        if fds.is_null() {
            return Err(libc::EINVAL);
        }
        // SAFETY: non-null with room for `max` ints (the header's contract).
        let out = unsafe { std::slice::from_raw_parts_mut(fds, max) };
        Ok(core.take_fds(stream, out) as c_int)
    })
}
