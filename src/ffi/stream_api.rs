//! Streams' C API: listeners, connections, streams over any fd, and what
//! may be asked of one (writes, shutdown, close, backpressure, timeouts).

use std::ffi::{c_char, c_int, c_void, CStr};

use super::boundary::{bytes, with_loop, with_loop_into, Callback};
use super::types::*;
use crate::sys::{Errno, SockAddr};

/// A listen call's backlog: zero or negative means the system's SOMAXCONN.
pub(super) fn listen_backlog(backlog: c_int) -> c_int {
    if backlog <= 0 {
        libc::SOMAXCONN
    } else {
        backlog
    }
}

/// `host` (NULL or "": every IPv4 address) and `port` as a socket address.
///
/// # Safety
/// `host` is NULL or a NUL-terminated string.
pub(super) unsafe fn socket_addr(host: *const c_char, port: c_int) -> Result<SockAddr, Errno> {
    let port = u16::try_from(port).map_err(|_| libc::EINVAL)?;
    let host = if host.is_null() {
        c""
    } else {
        // SAFETY: non-null, and the caller gives a NUL-terminated string (header).
        unsafe { CStr::from_ptr(host) }
    };
    SockAddr::resolve(host, port)
}

/// Listens for TCP connections on `host` (a numeric IPv4 or IPv6 address;
/// a name is resolved with getaddrinfo, which may block; NULL or "": every
/// IPv4 address) and `port` (0: any free port, see evl_listener_port), with
/// a backlog of `backlog` (<= 0: SOMAXCONN; the kernel caps a larger one
/// at net.core.somaxconn). `flags`: 0 or EVL_LISTEN_REUSEPORT. The listener's id is written to `*out`.
///
/// Each connection accepted becomes a stream (TCP_NODELAY set), announced
/// by EVL_STREAM_ACCEPTED to `cb` with `userdata`; the stream starts with
/// that callback and userdata. Every readiness drains the backlog. When the
/// process runs out of fds (EMFILE, ENFILE), accepting pauses for 100 ms
/// instead of spinning, and connections wait in the backlog.
///
/// Returns 0; -EINVAL for a NULL loop or `out`, a port outside 0..65535 or
/// unknown flags; -EADDRINUSE, -EADDRNOTAVAIL (also for a host that does
/// not resolve), -EACCES, -EMFILE...
/// Ownership: the listener owns its socket until evl_listener_close or
/// evl_loop_free. Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_listen(
    r#loop: *mut evl_loop,
    host: *const c_char,
    port: c_int,
    backlog: c_int,
    flags: u32,
    cb: evl_stream_cb,
    userdata: *mut c_void,
    out: *mut u64,
) -> c_int {
    with_loop_into!(r#loop, out, |core| {
        if flags & !EVL_LISTEN_REUSEPORT != 0 {
            return Err(libc::EINVAL);
        }
        // SAFETY: `host` is NULL or NUL-terminated (the header's contract).
        let addr = unsafe { socket_addr(host, port) }?;
        let reuse_port = flags & EVL_LISTEN_REUSEPORT != 0;
        core.listen(
            &addr,
            listen_backlog(backlog),
            reuse_port,
            Callback::stream(cb, userdata),
        )
    })
}

/// The port a listener is bound to (the one chosen for port 0).
///
/// Returns the port; -EINVAL for a NULL loop; -ENOENT for an unknown listener.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_listener_port(r#loop: *mut evl_loop, listener: u64) -> c_int {
    with_loop!(r#loop, |core| core.listener_port(listener).map(c_int::from))
}

/// Lets a listener hold at most `max` accepted streams open at once (0: no
/// limit). At the limit, accepting pauses and connections wait in the
/// backlog; it resumes as streams close.
///
/// Returns 0; -EINVAL for a NULL loop or a negative `max`; -ENOENT for an
/// unknown listener. A `max` beyond what the process can open (INT_MAX) is
/// no limit. Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_listener_set_max_conns(
    r#loop: *mut evl_loop,
    listener: u64,
    max: c_int,
) -> c_int {
    with_loop!(r#loop, |core| {
        let max = usize::try_from(max).map_err(|_| libc::EINVAL)?;
        core.set_max_conns(listener, max).map(|()| 0)
    })
}

/// Closes a listener's socket. The streams it accepted go on.
///
/// Returns 0; -EINVAL for a NULL loop; -ENOENT for an unknown listener.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_listener_close(r#loop: *mut evl_loop, listener: u64) -> c_int {
    with_loop!(r#loop, |core| core.close_listener(listener).map(|()| 0))
}

/// Starts a TCP connection to `host` (as for evl_listen; NULL is refused)
/// and `port`, without blocking (except to resolve a name). The stream's id
/// is written to `*out`; `cb` gets EVL_STREAM_CONNECTED once the connection
/// is made or has failed. Writes made before then are queued.
///
/// Returns 0; -EINVAL for a NULL loop, host or `out`, or a port outside
/// 0..65535; -EADDRNOTAVAIL for a host that does not resolve; -EMFILE...
/// A refused connection is reported through the callback, not here.
/// Ownership: the stream owns its socket. Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_connect(
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
        // SAFETY: `host` is NULL or NUL-terminated (the header's contract).
        let addr = unsafe { socket_addr(host, port) }?;
        core.connect(&addr, Callback::stream(cb, userdata))
    })
}

/// Makes a stream of `fd`, a connected socket (TCP, Unix) or a pipe, tty...
/// and writes its id to `*out`. The fd is made non-blocking. An fd opened
/// for writing only (a pipe's write end) is never read: the stream only
/// writes, evl_stream_shutdown closes it once the queue is sent (the reader
/// then reads end-of-file), and a reader that has gone gives -EPIPE.
///
/// Returns 0; -EINVAL for a NULL loop or `out`, or a negative fd; -EBADF
/// for an fd that is not open, whatever its number (nothing is allocated
/// for it); -EEXIST if the fd is registered already; -EPERM for a regular
/// file; -ENOMEM (see evl_register for what a stream's fd costs).
/// Ownership: on success the stream owns `fd` and closes it when it ends
/// (do not close it yourself); on error it stays yours. Over anything but a
/// socket, the process ignores SIGPIPE from then on unless it had set its
/// own SIGPIPE disposition, so that writing to a pipe without reader fails
/// with -EPIPE (sockets use MSG_NOSIGNAL and touch nothing).
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_open(
    r#loop: *mut evl_loop,
    fd: c_int,
    cb: evl_stream_cb,
    userdata: *mut c_void,
    out: *mut u64,
) -> c_int {
    with_loop_into!(r#loop, out, |core| {
        core.open(fd, Callback::stream(cb, userdata))
    })
}

/// Writes `len` bytes: at once as far as the kernel takes them; the rest is
/// copied into the stream's queue and sent as the peer reads. Over the
/// high watermark, reading from the stream pauses (evl_stream_set_watermarks).
///
/// Returns 0 (the bytes are sent or queued); -EINVAL for a NULL loop,
/// NULL `data` with a non-zero `len`, or a `len` over PTRDIFF_MAX; -ENOENT for an unknown stream (or
/// one whose EVL_STREAM_CLOSED was delivered); -EPIPE after
/// evl_stream_shutdown or evl_stream_close, or once the stream is closed; -EPIPE,
/// -ECONNRESET... when the peer has gone, in which case the stream is
/// closed (EVL_STREAM_CLOSED follows with the same status). Never SIGPIPE.
/// Ownership: `data` stays the caller's; it is not used after the call.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_write(
    r#loop: *mut evl_loop,
    stream: u64,
    data: *const c_void,
    len: usize,
) -> c_int {
    with_loop!(r#loop, |core| {
        // SAFETY: `data` is readable for `len` bytes (the header's contract).
        let bytes = unsafe { bytes(data, len) }?;
        core.write(stream, bytes).map(|()| 0)
    })
}

/// Shuts down the writing side once the queue has been sent: the peer
/// reads end-of-file. Reading goes on; when the peer's end-of-file has come
/// too, the stream closes (EVL_STREAM_CLOSED, status 0).
///
/// Returns 0; -EINVAL for a NULL loop; -ENOENT for an unknown stream.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_shutdown(r#loop: *mut evl_loop, stream: u64) -> c_int {
    with_loop!(r#loop, |core| core.shutdown(stream).map(|()| 0))
}

/// Graceful close: stops reading, sends what is queued, then ends the
/// stream: EVL_STREAM_CLOSED (status 0, or an error if the peer went
/// first) comes once the queue is sent. Events of the stream not yet
/// delivered are dropped.
///
/// A socket whose peer has not ended its side then lingers (bounds:
/// evl_stream_set_linger; by default up to 2 s and 1 MiB): its writing side
/// is shut down, so the peer reads the whole reply and then end-of-file,
/// and what the peer still sends is read and dropped until its end-of-file;
/// only then is the socket closed. Closing it with unread input at once
/// would make TCP answer with a reset, which throws away what the kernel
/// has not sent yet: a peer still sending (a pipelined request, an upload
/// refused) would lose the end of the reply. A lingering socket has no id
/// and makes no event; it still counts for its listener's
/// evl_listener_set_max_conns (it holds an fd), but does not keep evl_run
/// running (see there and evl_loop_free).
///
/// Returns 0; -EINVAL for a NULL loop; -ENOENT for an unknown stream.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_close(r#loop: *mut evl_loop, stream: u64) -> c_int {
    with_loop!(r#loop, |core| core.close(stream).map(|()| 0))
}

/// Closes now, dropping what is queued (EVL_STREAM_CLOSED follows with
/// -ECONNABORTED). Events of the stream not yet delivered are dropped.
/// Nothing lingers: the socket is closed as close(2) closes it (with a
/// reset if input is unread) once EVL_STREAM_CLOSED has been delivered.
///
/// Returns 0; -EINVAL for a NULL loop; -ENOENT for an unknown stream.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_abort(r#loop: *mut evl_loop, stream: u64) -> c_int {
    with_loop!(r#loop, |core| core.abort(stream).map(|()| 0))
}

/// Stops reading from the stream until evl_stream_resume. From its return
/// on no EVL_STREAM_DATA (nor EVL_STREAM_FDS) of the stream is delivered
/// until then: what was read already and not delivered yet (an
/// evl_stream_poll whose array was full leaves events for the next one)
/// is held, and comes first after evl_stream_resume, in the order read
/// (dropped, its fds closed, if the stream ends before), with the
/// EVL_STREAM_EOF read with it (a TLS read makes both in one step);
/// a stream whose EOF is held ends no sooner than it is delivered. A
/// stream that has ended already (its EVL_STREAM_CLOSED waits) has
/// nothing to pause: what it read is delivered before that event.
///
/// Returns 0; -EINVAL for a NULL loop; -ENOENT for an unknown stream.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_pause(r#loop: *mut evl_loop, stream: u64) -> c_int {
    with_loop!(r#loop, |core| core.pause(stream).map(|()| 0))
}

/// Reads again after evl_stream_pause (unless the queue is still above
/// its high watermark, or the peer's end-of-file came). What the pause
/// held is delivered first.
///
/// Returns 0; -EINVAL for a NULL loop; -ENOENT for an unknown stream.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_resume(r#loop: *mut evl_loop, stream: u64) -> c_int {
    with_loop!(r#loop, |core| core.resume(stream).map(|()| 0))
}

/// Backpressure: once more than `high` bytes are queued, reading from the
/// stream pauses, and resumes when the queue is down to `low`. So a peer
/// that sends without reading makes the process hold at most about `high`
/// bytes for it. `high` 0: never pause (the queue may then grow without
/// bound). Defaults: 1 MiB and 256 KiB. Given a listener, sets what the
/// streams it accepts from then on start with.
///
/// Returns 0; -EINVAL for a NULL loop or `low` > `high` (with `high` not 0);
/// -ENOENT for an unknown stream or listener. Any sizes are accepted
/// (SIZE_MAX: never pause); they bound what is queued, and allocate nothing.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_set_watermarks(
    r#loop: *mut evl_loop,
    stream: u64,
    high: usize,
    low: usize,
) -> c_int {
    with_loop!(r#loop, |core| core
        .set_watermarks(stream, high, low)
        .map(|()| 0))
}

/// Closes the stream (EVL_STREAM_CLOSED, -ETIMEDOUT) once no byte has moved
/// either way for `timeout_ms` milliseconds (0: never, the default; at most
/// UINT32_MAX, about 49 days): a
/// peer that connects and stays silent is dropped. Given a listener, sets
/// what the streams it accepts from then on start with.
///
/// Returns 0; -EINVAL for a NULL loop; -ENOENT for an unknown stream or listener.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_set_idle_timeout(
    r#loop: *mut evl_loop,
    stream: u64,
    timeout_ms: u32,
) -> c_int {
    with_loop!(r#loop, |core| core
        .set_idle_timeout(stream, timeout_ms)
        .map(|()| 0))
}

/// How evl_stream_close ends the stream's socket once its queue is sent
/// (see there): it lingers, reading and dropping what the peer still sends,
/// until the peer's end-of-file, or until the peer has sent more than
/// `max_bytes` bytes since the close, or for `max_ms` milliseconds at most;
/// then it is closed (input that came and was not read by then makes TCP
/// answer with a reset). Defaults: EVL_LINGER_DEFAULT_BYTES (1 MiB) and
/// EVL_LINGER_DEFAULT_MS (2000). `max_ms` 0: no lingering: input that has
/// arrived is discarded (up to `max_bytes`) and the socket closed at once,
/// as asyncio's transports close. `max_bytes` 0: nothing is discarded: the
/// socket is closed at once as it is (a reset if input is unread, as a bare
/// close(2)). Only sockets linger, and only after a graceful close whose
/// peer has not ended its side; evl_stream_abort and errors close at once.
/// The idle timeout (evl_stream_set_idle_timeout) ends with the stream:
/// `max_ms` bounds the lingering. Takes effect at the close (a stream
/// already closing uses the new bounds). Given a listener, sets what the streams it accepts from then
/// on start with.
///
/// Returns 0; -EINVAL for a NULL loop; -ENOENT for an unknown stream or
/// listener (0 for a stream closed whose EVL_STREAM_CLOSED is not delivered
/// yet: nothing to do).
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_set_linger(
    r#loop: *mut evl_loop,
    stream: u64,
    max_bytes: usize,
    max_ms: u32,
) -> c_int {
    with_loop!(r#loop, |core| core
        .set_linger(stream, max_bytes, max_ms)
        .map(|()| 0))
}

/// Replaces the callback and userdata of a stream, or of a listener (for the
/// streams it accepts from then on). `cb` may be NULL for a loop driven by
/// evl_stream_poll; evl_run and evl_run_once drop the events of a stream
/// without a callback.
///
/// Returns 0; -EINVAL for a NULL loop; -ENOENT for an unknown stream or listener.
/// Ownership: `userdata` is the caller's and is only handed back.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_set_callback(
    r#loop: *mut evl_loop,
    stream: u64,
    cb: evl_stream_cb,
    userdata: *mut c_void,
) -> c_int {
    with_loop!(r#loop, |core| {
        core.set_stream_data(stream, Callback::stream(cb, userdata))
            .map(|()| 0)
    })
}

/// The stream's fd, for getpeername, setsockopt and the like. It stays the
/// stream's: do not close it, read from it or register it.
///
/// Returns the fd; -EINVAL for a NULL loop; -ENOENT for an unknown stream;
/// -EBADF for a stream closed already (its EVL_STREAM_CLOSED not delivered
/// yet: see there).
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_fd(r#loop: *mut evl_loop, stream: u64) -> c_int {
    with_loop!(r#loop, |core| core.stream_fd(stream))
}

/// Writes to `*out` how many bytes are queued, not yet taken by the kernel.
///
/// Returns 0; -EINVAL for a NULL loop or `out`; -ENOENT for an unknown stream.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_queued(
    r#loop: *mut evl_loop,
    stream: u64,
    out: *mut usize,
) -> c_int {
    with_loop_into!(r#loop, out, |core| { core.queued(stream) })
}

/// Where the bytes of every EVL_STREAM_DATA event lie: the loop's read
/// buffer, `*len` bytes from `*start`. It stays at that address until the
/// loop is freed, so a caller that pays for each call into the library
/// (Python through ctypes) can map it once and find each event's bytes at
/// `data - start`, instead of copying them out with one call per event.
///
/// Returns 0; -EINVAL for a NULL pointer.
/// Ownership: the buffer is the loop's; its bytes may be read (never
/// written) as evl_stream_poll's `data` says, until the next evl_stream_poll.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_read_buffer(
    r#loop: *mut evl_loop,
    start: *mut *const u8,
    len: *mut usize,
) -> c_int {
    with_loop!(r#loop, |core| {
        if start.is_null() || len.is_null() {
            return Err(libc::EINVAL);
        }
        let (buffer, size) = core.read_buffer();
        // SAFETY: both non-null; the caller gives writable pointers (header).
        unsafe {
            start.write(buffer);
            len.write(size);
        }
        Ok(0)
    })
}
