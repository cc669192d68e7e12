//! `ssl=` on the library's TLS streams for the native loop: a transport
//! whose stream is a TLS stream of the stream layer (rustls inside the
//! library), so the protocol sees plaintext and no Python runs per record.
//! It is the native transport of `transport.rs` in every other respect.
//!
//! The package's `_TLSTransport` (a Python subclass) holds what is
//! asyncio's business: the waiter, the timeouts, the exceptions a failure
//! becomes, `get_extra_info()`'s TLS names. This file starts the session
//! and tells that subclass how the handshake ended:
//! - done: `transport._tls_handshake_done(info)` with what the handshake
//!   agreed on, `info = (version, suite, alpn, sni, certificates)` (bytes
//!   or None; the peer's chain as a tuple of DER), and `connection_made()`
//!   queued before it, as asyncio's SSL transport calls it once the
//!   handshake is done;
//! - failed (the stream ended during it: a TLS error, the peer's close, the
//!   handshake's idle timeout): `transport._tls_handshake_failed(status,
//!   reason)` with the library's negative status and its reason (bytes),
//!   and the transport ends without `connection_lost()` (its protocol was
//!   never connected).
//!
//! A TLS error after the handshake ends the transport as a socket error
//! does, with the exception `transport._tls_failure(status, reason)` makes.

use std::ffi::CString;

use super::api::{api, PyObject};
use super::boundary;
use super::buffer::{Bytes, WritableBuffer};
use super::call;
use super::error::{raise, raise_errno, write_unraisable, Exception, PyErr, PyResult};
use super::event_loop::{loop_method, LoopCore, Token};
use super::module::rt;
use super::object::{int, none, Owned};
use super::protocol::protocol_call;
use super::ready::ReadyItem;
use super::transport::{
    fields, new_transport, open_stream, resume_stream, TransportFields, CLOSING, PAUSED, STARTED,
    TLS, TLS_HANDSHAKE,
};
use crate::stream::{StreamEvent, StreamLoop};

loop_method!(
    /// `loop._make_tls_transport(cls, sock, protocol, extra, server, config,
    /// server_name, handshake_ms)`: a transport whose stream is a TLS stream
    /// of `config` (a `TLSConfig`'s handle: its `evl_tls_config` pointer,
    /// kept alive by the caller for the call), a client's asking for
    /// `server_name` (bytes, or None for a server). The handshake starts at
    /// once, bounded by `handshake_ms` without a byte moving (0: none).
    /// Returns `(transport, status)`: status 0, or the library's negative
    /// error, with the transport aborted (nothing will call its protocol).
    pub(super) make_tls_transport, |object, core, args| {
        let api = api();
        let &[cls, sock, protocol, extra, server, config, name, handshake_ms] = args.positional
        else {
            return Err(raise(
                api.PyExc_TypeError,
                c"_make_tls_transport(cls, sock, protocol, extra, server, config, server_name, handshake_ms)",
            ));
        };
        let (config, name, handshake_ms) = tls_arguments(config, name, handshake_ms)?;
        let transport = new_transport(object, core, [cls, sock, protocol, extra, server])?;
        // SAFETY: a fresh transport, held by `transport`.
        let fields = unsafe { fields(transport.as_ptr()) };
        fields.set(TLS | TLS_HANDSHAKE, true);
        let status = match start(core, transport.as_ptr(), config, name, handshake_ms) {
            Ok(()) => 0,
            Err(errno) => {
                super::protocol::force_close(transport.as_ptr(), None, None)?;
                -errno
            }
        };
        let status = int(status.into())?;
        pair(transport, status)
});

/// `transport._tls_upgrade(config, server_name, handshake_ms)`: start_tls()
/// on a connected transport: from now on its stream is a TLS stream of
/// `config` (as for `_make_tls_transport`). Returns 0, or the library's
/// negative error (then the transport is as it was).
pub(super) unsafe extern "C" fn upgrade(
    transport: *mut PyObject,
    args: *const *mut PyObject,
    nargs: isize,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    boundary::object(|| {
        let api = api();
        // SAFETY: CPython checked the instance, and passes its fast-call
        // arguments, alive for the call.
        let (fields, args) = unsafe {
            (
                fields(transport),
                super::args::FastArgs::new(args, nargs, kwnames),
            )
        };
        let &[config, name, handshake_ms] = args.positional else {
            return Err(raise(
                api.PyExc_TypeError,
                c"_tls_upgrade(config, server_name, handshake_ms)",
            ));
        };
        let (config, name, handshake_ms) = tls_arguments(config, name, handshake_ms)?;
        let Some((_loop, core)) = super::transport::core(fields) else {
            return int((-libc::EPIPE).into());
        };
        if fields.has(TLS) || fields.stream.get() == 0 {
            return int((-libc::EPIPE).into());
        }
        fields.set(TLS | TLS_HANDSHAKE, true);
        let status = match start(core, transport, config, name, handshake_ms) {
            Ok(()) => 0,
            Err(errno) => {
                fields.set(TLS | TLS_HANDSHAKE, false);
                -errno
            }
        };
        int(status.into())
    })
}

/// `_make_tls_transport`'s and `_tls_upgrade`'s TLS arguments.
fn tls_arguments(
    config: *mut PyObject,
    name: *mut PyObject,
    handshake_ms: *mut PyObject,
) -> PyResult<(usize, Option<Vec<u8>>, u32)> {
    let config = address(config)?;
    let name = if name == api().none {
        None
    } else {
        Some(Bytes::of(name)?.as_slice().to_vec())
    };
    let handshake_ms = u32::try_from(address(handshake_ms)?).unwrap_or(u32::MAX);
    Ok((config, name, handshake_ms))
}

/// An int argument as a `usize` (a pointer or a count).
fn address(value: *mut PyObject) -> PyResult<usize> {
    // SAFETY: a live object of the call; -1 with an exception set on failure.
    let number = unsafe { (api().PyLong_AsSsize_t)(value) };
    if number < 0 {
        // SAFETY: reads the error indicator.
        if unsafe { !(api().PyErr_Occurred)().is_null() } {
            return Err(PyErr::taken());
        }
        return Err(raise(api().PyExc_ValueError, c"a negative number"));
    }
    Ok(number as usize)
}

/// Opens the transport's stream (paused until `connection_made()`: the
/// handshake reads anyway) and starts its session.
fn start(
    core: &LoopCore,
    transport: *mut PyObject,
    config: usize,
    name: Option<Vec<u8>>,
    handshake_ms: u32,
) -> Result<(), crate::sys::Errno> {
    let name = match name {
        Some(name) => Some(CString::new(name).map_err(|_| libc::EINVAL)?),
        None => None,
    };
    if open_stream(core, transport).is_err() {
        // SAFETY: clears the error open_stream raised: the status says it.
        unsafe { (api().PyErr_Clear)() };
        return Err(libc::EBADF);
    }
    // SAFETY: a live transport of the caller.
    let stream = unsafe { fields(transport) }.stream.get();
    // SAFETY: the caller's TLSConfig keeps its evl_tls_config alive for the
    // call (the library's NULL check refuses 0); the name is NUL-terminated.
    let role = unsafe {
        crate::ffi::role(
            config as *mut crate::ffi::evl_tls_config,
            name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr()),
        )
    }?;
    let Ok(mut io) = core.io() else {
        // SAFETY: clears the error io() raised: the status says it.
        unsafe { (api().PyErr_Clear)() };
        return Err(libc::EBADF);
    };
    io.set_idle_timeout(stream, handshake_ms)?;
    io.tls_start(stream, role)
}

/// `transport._tls_idle_timeout(ms)`: closes the stream with ETIMEDOUT
/// when no byte moves for `ms` (0: never); nothing once it has ended.
pub(super) unsafe extern "C" fn set_idle_timeout(
    transport: *mut PyObject,
    ms: *mut PyObject,
) -> *mut PyObject {
    boundary::object(|| {
        // SAFETY: CPython checked the instance, alive for the call.
        let fields = unsafe { fields(transport) };
        let ms = u32::try_from(address(ms)?).unwrap_or(u32::MAX);
        let stream = fields.stream.get();
        if let (Some((_loop, core)), true) = (super::transport::core(fields), stream != 0) {
            core.io()?
                .set_idle_timeout(stream, ms)
                .map_err(raise_errno)?;
        }
        Ok(none())
    })
}

/// The transport of a stream event, if it is still the loop's and the
/// event is about its current stream.
fn transport_of(core: &LoopCore, event: &StreamEvent<Token>) -> Option<Owned> {
    let transport = core
        .transports
        .borrow()
        .get(&(event.data.as_transport() as usize))
        .map(Owned::clone_ref)?;
    // SAFETY: a live transport, held by `transport`.
    let fields = unsafe { fields(transport.as_ptr()) };
    (fields.stream.get() == event.stream).then_some(transport)
}

/// CONNECTED: the handshake of a TLS transport's stream is done (with
/// status 0; a failure's CLOSED follows its CONNECTED, and is
/// [`handshake_failed`]'s).
pub(super) fn connected(core: &LoopCore, event: StreamEvent<Token>) -> PyResult<()> {
    if event.error != 0 {
        return Ok(());
    }
    let Some(transport) = transport_of(core, &event) else {
        return Ok(());
    };
    // SAFETY: a live transport, held by `transport`.
    let fields = unsafe { fields(transport.as_ptr()) };
    if !fields.has(TLS_HANDSHAKE) {
        return Ok(());
    }
    fields.set(TLS_HANDSHAKE, false);
    let info = {
        let mut io = core.io()?;
        // asyncio's transports have no idle timeout.
        io.set_idle_timeout(event.stream, 0).map_err(raise_errno)?;
        session_info(&io, event.stream)?
    };
    // A new transport's protocol is connected now; an upgraded one's was.
    if let Some(context) = fields.context.get_owned().filter(|_| !fields.has(STARTED)) {
        core.push_ready(ReadyItem::ConnectionMade {
            transport: transport.clone_ref(),
            context,
        });
    }
    let told = in_transport_context(fields, || {
        call::method1(
            transport.as_ptr(),
            name(c"_tls_handshake_done")?.as_ptr(),
            info.as_ptr(),
        )
    });
    unreported(told, &transport)
}

/// CLOSED during the handshake: the package's `_tls_handshake_failed`
/// settles the waiter; the transport ends, its protocol never connected.
pub(super) fn handshake_failed(
    core: &LoopCore,
    transport: &Owned,
    event: &StreamEvent<Token>,
) -> PyResult<()> {
    let (status, reason) = failure_of(core, event)?;
    // SAFETY: a live transport, held by the caller.
    let fields = unsafe { fields(transport.as_ptr()) };
    let told = in_transport_context(fields, || {
        call::method2(
            transport.as_ptr(),
            name(c"_tls_handshake_failed")?.as_ptr(),
            status.as_ptr(),
            reason.as_ptr(),
        )
    });
    let told = unreported(told, transport);
    super::protocol::force_close(transport.as_ptr(), None, None)?;
    told
}

/// The exception a TLS transport's stream ended with (`event.error`), as
/// the package's `_tls_failure` makes it.
pub(super) fn failure(
    core: &LoopCore,
    transport: &Owned,
    event: &StreamEvent<Token>,
) -> PyResult<Owned> {
    let (status, reason) = failure_of(core, event)?;
    call::method2(
        transport.as_ptr(),
        name(c"_tls_failure")?.as_ptr(),
        status.as_ptr(),
        reason.as_ptr(),
    )
}

/// The library's negative status and its reason (bytes, or None).
fn failure_of(core: &LoopCore, event: &StreamEvent<Token>) -> PyResult<(Owned, Owned)> {
    let status = int(-i64::from(event.error))?;
    let reason = match core.io()?.tls_error_reason(event.stream) {
        Some(reason) => bytes(reason.as_bytes())?,
        None => none(),
    };
    Ok((status, reason))
}

/// What the handshake agreed on: `(version, suite, alpn, sni, certificates)`.
fn session_info(io: &StreamLoop<Token>, stream: u64) -> PyResult<Owned> {
    let version = int(io.tls_version(stream).map_err(raise_errno)?.into())?;
    let suite = int(io.tls_cipher_suite(stream).map_err(raise_errno)?.into())?;
    let alpn = optional_bytes(io.tls_alpn(stream).map_err(raise_errno)?)?;
    let sni = optional_bytes(
        io.tls_server_name(stream)
            .map_err(raise_errno)?
            .map(str::as_bytes),
    )?;
    let mut certs = Vec::new();
    while let Some(der) = io
        .tls_peer_certificate(stream, certs.len())
        .map_err(raise_errno)?
    {
        certs.push(bytes(der)?);
    }
    tuple(vec![version, suite, alpn, sni, tuple(certs)?])
}

fn bytes(data: &[u8]) -> PyResult<Owned> {
    // SAFETY: a live slice; a new reference or NULL.
    unsafe {
        Owned::new((api().PyBytes_FromStringAndSize)(
            data.as_ptr().cast(),
            data.len() as isize,
        ))
    }
}

fn optional_bytes(data: Option<&[u8]>) -> PyResult<Owned> {
    data.map_or_else(|| Ok(none()), bytes)
}

fn tuple(items: Vec<Owned>) -> PyResult<Owned> {
    let api = api();
    // SAFETY: a new tuple of that size; a new reference or NULL.
    let tuple = unsafe { Owned::new((api.PyTuple_New)(items.len() as isize))? };
    for (at, item) in items.into_iter().enumerate() {
        // SAFETY: a fresh tuple, an index within it; SetItem steals the
        // reference.
        unsafe { (api.PyTuple_SetItem)(tuple.as_ptr(), at as isize, item.into_raw()) };
    }
    Ok(tuple)
}

fn pair(first: Owned, second: Owned) -> PyResult<Owned> {
    tuple(vec![first, second])
}

/// A method name (made per handshake: rare enough not to intern).
fn name(text: &std::ffi::CStr) -> PyResult<Owned> {
    // SAFETY: NUL-terminated; a new reference or NULL.
    unsafe { Owned::new((api().PyUnicode_FromString)(text.as_ptr())) }
}

/// `body` in the transport's contextvars context.
fn in_transport_context(
    fields: &TransportFields,
    body: impl FnOnce() -> PyResult<Owned>,
) -> PyResult<Owned> {
    let context = fields.context.get_owned();
    let context = context.as_ref().map_or(std::ptr::null_mut(), Owned::as_ptr);
    call::in_context(context, body)
}

/// The package's TLS steps raise only on a bug of ours: unraisable (the
/// transport ends), but an exit exception, which ends the iteration.
fn unreported(result: PyResult<Owned>, transport: &Owned) -> PyResult<()> {
    if result.is_ok() {
        return Ok(());
    }
    let exception = Exception::fetch();
    if exception.is_exit() {
        return Err(exception.restore());
    }
    write_unraisable(exception.restore(), transport.as_ptr());
    super::protocol::force_close(transport.as_ptr(), None, None)
}

/// Plaintext for a BufferedProtocol: copied into `get_buffer(n)` and
/// announced with `buffer_updated(n)`, as often as it takes (as asyncio's
/// SSL transport does), unless the transport closes meanwhile. A
/// `pause_reading()` in the middle holds the rest on the transport until
/// `resume_reading()` ([`deliver_held`]); the stream stays paused until
/// then, so nothing of it (more plaintext, its EOF) comes in between.
pub(super) fn into_buffers(
    core: &LoopCore,
    transport: *mut PyObject,
    data: &Owned,
) -> PyResult<()> {
    let names = &rt().names;
    let data = Bytes::of(data.as_ptr())?;
    let mut rest = data.as_slice();
    while !rest.is_empty() {
        // SAFETY: a live transport, held by the core while its stream lives.
        let fields = unsafe { fields(transport) };
        if fields.has(CLOSING) {
            return Ok(());
        }
        if fields.has(PAUSED) {
            let earlier = fields.held_plaintext.replace(Some(bytes(rest)?));
            debug_assert!(earlier.is_none(), "a stream with held plaintext reads");
            return Ok(());
        }
        let protocol = fields.protocol.get_owned().unwrap_or_else(none);
        let hint = int(rest.len() as i64)?;
        let mut copied = 0;
        let message = c"Fatal error: protocol.get_buffer() call failed.";
        let filled = protocol_call(core, transport, message, || {
            let buffer =
                call::method1(protocol.as_ptr(), names.get_buffer.as_ptr(), hint.as_ptr())?;
            let mut view = WritableBuffer::of(buffer.as_ptr())?;
            if view.len() == 0 {
                return Err(raise(
                    api().PyExc_RuntimeError,
                    c"get_buffer() returned an empty buffer",
                ));
            }
            copied = view.len().min(rest.len());
            view.as_mut_slice()[..copied].copy_from_slice(&rest[..copied]);
            Ok(buffer)
        })?;
        if filled.is_none() {
            return Ok(());
        }
        rest = &rest[copied..];
        let nbytes = int(copied as i64)?;
        let message = c"Fatal error: protocol.buffer_updated() call failed.";
        let updated = protocol_call(core, transport, message, || {
            call::method1(
                protocol.as_ptr(),
                names.buffer_updated.as_ptr(),
                nbytes.as_ptr(),
            )
        })?;
        if updated.is_none() {
            return Ok(());
        }
    }
    Ok(())
}

/// After `resume_reading()`: the plaintext a pause held, then the stream
/// reads again (unless its protocol paused anew).
pub(super) fn deliver_held(core: &LoopCore, transport: &Owned) -> PyResult<()> {
    // SAFETY: a live transport, held by `transport`.
    let fields = unsafe { fields(transport.as_ptr()) };
    if fields.has(PAUSED | CLOSING) {
        // Paused again before this ran: the next resume_reading() comes back.
        return Ok(());
    }
    if let Some(held) = fields.held_plaintext.replace(None) {
        into_buffers(core, transport.as_ptr(), &held)?;
    }
    if fields.has(PAUSED | CLOSING) {
        return Ok(());
    }
    resume_stream(core, fields)
}
