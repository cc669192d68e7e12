//! A transport's calls into its protocol, as asyncio's selector transport
//! makes them: `connection_made`, `data_received` (or `get_buffer` and
//! `buffer_updated` for a `BufferedProtocol`), `eof_received`,
//! `pause_writing`/`resume_writing`, `connection_lost`; all in the
//! transport's contextvars context (the one current when the transport was
//! made), except `pause_writing`, which asyncio calls from `write()` in the
//! writer's own.
//!
//! An exception in one goes to the loop's exception handler with asyncio's
//! context dict (message, exception, transport, protocol) and closes that
//! transport only (`fatal_error`); `SystemExit` and `KeyboardInterrupt` are
//! left set and end the iteration. The transport's end (`connection_lost`,
//! then its stream and socket closed, then the loop lets go of it) is here
//! too.

use std::ffi::CStr;
use std::ptr::null_mut;

use super::api::{api, PyObject};
use super::buffer::WritableBuffer;
use super::call::{self, in_context};
use super::error::{os_error, raise, write_unraisable, Exception, PyErr, PyResult};
use super::event_loop::{LoopCore, Token};
use super::module::rt;
use super::object::{int, none, Owned};
use super::ready::ReadyItem;
use super::transport::{
    close_transport, core, fields, start, write_buffer_size, TransportFields, BUFFERED, CLOSING,
    FINISHED, PROTOCOL_PAUSED, STREAM_GONE, TLS, TLS_HANDSHAKE,
};
use crate::stream::{StreamEvent, StreamEventKind};

/// Calls `body` in the transport's context; an exception it raises is
/// `Err(exception)` unless it is one that ends the iteration (`Ok(Err)`).
fn in_transport_context(
    fields: &TransportFields,
    body: impl FnOnce() -> PyResult<Owned>,
) -> PyResult<Result<Owned, Exception>> {
    in_given_context(fields, None, body)
}

/// As [`in_transport_context`], in `context` if given.
fn in_given_context(
    fields: &TransportFields,
    context: Option<&Owned>,
    body: impl FnOnce() -> PyResult<Owned>,
) -> PyResult<Result<Owned, Exception>> {
    let own = fields.context.get_owned();
    let context = context.or(own.as_ref()).map_or(null_mut(), Owned::as_ptr);
    match in_context(context, body) {
        Ok(value) => Ok(Ok(value)),
        Err(_) => {
            let exception = Exception::fetch();
            if exception.is_exit() {
                return Err(exception.restore());
            }
            Ok(Err(exception))
        }
    }
}

/// A protocol callback made by the loop: `body` in the transport's
/// context. Its exception (but an exit) is asyncio's `_fatal_error` with
/// `message`, and then `None`.
pub(super) fn protocol_call(
    core: &LoopCore,
    transport: *mut PyObject,
    message: &CStr,
    body: impl FnOnce() -> PyResult<Owned>,
) -> PyResult<Option<Owned>> {
    // SAFETY: a live transport of the caller.
    let fields = unsafe { fields(transport) };
    match in_transport_context(fields, body)? {
        Ok(result) => Ok(Some(result)),
        Err(exception) => {
            fatal_error(core, transport, exception.into_value(), message, None)?;
            Ok(None)
        }
    }
}

/// The protocol, owned (the callback may replace it).
fn protocol_of(fields: &TransportFields) -> Owned {
    fields.protocol.get_owned().unwrap_or_else(none)
}

/// A ready item: `connection_made(transport)` in `context`, then reading.
pub(super) fn connection_made(core: &LoopCore, transport: &Owned, context: &Owned) -> PyResult<()> {
    // SAFETY: a live transport, held by the item.
    let fields = unsafe { fields(transport.as_ptr()) };
    if fields.has(FINISHED) || fields.core.get().is_null() {
        return Ok(());
    }
    let protocol = protocol_of(fields);
    let names = &rt().names;
    let result = in_context(context.as_ptr(), || {
        call::method1(
            protocol.as_ptr(),
            names.connection_made.as_ptr(),
            transport.as_ptr(),
        )
    });
    if result.is_err() {
        let exception = Exception::fetch();
        if exception.is_exit() {
            return Err(exception.restore());
        }
        report(
            core,
            c"Exception in callback connection_made()",
            &exception.into_value(),
            transport.as_ptr(),
            &protocol,
        )?;
    }
    if fields.has(FINISHED) {
        return Ok(());
    }
    if let Err(_set) = start(core, transport.as_ptr()) {
        let exception = Exception::fetch();
        if exception.is_exit() {
            return Err(exception.restore());
        }
        return fatal_error(
            core,
            transport.as_ptr(),
            exception.into_value(),
            c"Fatal error on transport",
            None,
        );
    }
    Ok(())
}

/// Bytes for the stream of `token`: `protocol.data_received(bytes)`.
pub(super) fn data_received(core: &LoopCore, token: Token, bytes: Owned) -> PyResult<()> {
    let transport = token.as_transport();
    // SAFETY: a live stream's token is its transport, held by the core.
    let fields = unsafe { fields(transport) };
    if fields.has(CLOSING) {
        return Ok(());
    }
    if fields.has(BUFFERED) {
        // A TLS stream's plaintext, for a BufferedProtocol.
        return super::tls::into_buffers(core, transport, &bytes);
    }
    let on_data = fields.on_data.get_owned();
    let message = c"Fatal error: protocol.data_received() call failed.";
    protocol_call(core, transport, message, || match &on_data {
        Some(on_data) => call::call1(on_data.as_ptr(), bytes.as_ptr()),
        None => call::method1(
            protocol_of(fields).as_ptr(),
            rt().names.data_received.as_ptr(),
            bytes.as_ptr(),
        ),
    })
    .map(drop)
}

/// Readiness of a BufferedProtocol's stream: the read goes into
/// `get_buffer(-1)`, then `buffer_updated(nbytes)`.
pub(super) fn read_into_buffer(
    core: &LoopCore,
    token: Token,
    stream: u64,
    revents: u32,
) -> PyResult<()> {
    let transport = token.as_transport();
    // SAFETY: a live stream's token is its transport, held by the core.
    let fields = unsafe { fields(transport) };
    let protocol = protocol_of(fields);
    let names = &rt().names;
    let minus_one = int(-1)?;
    let message = c"Fatal error: protocol.get_buffer() call failed.";
    let buffer = protocol_call(core, transport, message, || {
        let buffer = call::method1(
            protocol.as_ptr(),
            names.get_buffer.as_ptr(),
            minus_one.as_ptr(),
        )?;
        let view = WritableBuffer::of(buffer.as_ptr())?;
        if view.len() == 0 {
            return Err(raise(
                api().PyExc_RuntimeError,
                c"get_buffer() returned an empty buffer",
            ));
        }
        drop(view);
        Ok(buffer)
    })?;
    let Some(buffer) = buffer else {
        return Ok(());
    };
    let event = {
        // Exported again: the protocol's code ran in between.
        let mut view = WritableBuffer::of(buffer.as_ptr())?;
        if view.len() == 0 {
            return Ok(());
        }
        let mut io = core.io()?;
        io.stream_ready_into(stream, revents, view.as_mut_slice())
    };
    let Some(event) = event else {
        return Ok(());
    };
    if event.kind != StreamEventKind::Data {
        return stream_event(core, event);
    }
    let nbytes = int(event.len as i64)?;
    let message = c"Fatal error: protocol.buffer_updated() call failed.";
    protocol_call(core, transport, message, || {
        call::method1(
            protocol.as_ptr(),
            names.buffer_updated.as_ptr(),
            nbytes.as_ptr(),
        )
    })
    .map(drop)
}

/// A stream event other than data.
pub(super) fn stream_event(core: &LoopCore, event: StreamEvent<Token>) -> PyResult<()> {
    match event.kind {
        StreamEventKind::Eof => eof_received(core, event.data.as_transport()),
        StreamEventKind::Drained => drained(core, event.data.as_transport()),
        StreamEventKind::Closed => stream_closed(core, event),
        StreamEventKind::Connected => super::tls::connected(core, event),
        _ => Ok(()),
    }
}

/// The peer shut down its side: `eof_received()`; unless it returns true,
/// the transport closes.
fn eof_received(core: &LoopCore, transport: *mut PyObject) -> PyResult<()> {
    // SAFETY: a live stream's token is its transport, held by the core.
    let fields = unsafe { fields(transport) };
    if fields.has(CLOSING) {
        return Ok(());
    }
    let protocol = protocol_of(fields);
    let message = c"Fatal error: protocol.eof_received() call failed.";
    let keep_open = protocol_call(core, transport, message, || {
        call::method0(protocol.as_ptr(), rt().names.eof_received.as_ptr())
    })?;
    if let Some(keep_open) = keep_open {
        if keep_open.is_none() || !call::is_true(keep_open.as_ptr())? {
            close_transport(fields, transport, None)?;
        }
        // Kept open: the stream reads no more; writing goes on.
    }
    Ok(())
}

/// The write buffer emptied: a close waiting for it completes, as asyncio's
/// `_write_ready` does (connection_lost at once); a paused protocol resumes.
fn drained(core: &LoopCore, transport: *mut PyObject) -> PyResult<()> {
    // SAFETY: a live stream's token is its transport, held by the core.
    let fields = unsafe { fields(transport) };
    // SAFETY: as above; owned for the calls below.
    let transport = unsafe { Owned::borrowed(transport) };
    maybe_resume_writing(core, &transport)?;
    if let Some(waiter) = fields.empty_waiter.get_owned().filter(|w| !w.is_none()) {
        settle(&waiter, None)?;
    }
    if fields.has(CLOSING) && fields.conn_lost.get() == 0 {
        fields.conn_lost.set(1);
        return connection_lost(core, &transport, None, None);
    }
    Ok(())
}

/// The stream layer ended a stream: the peer reset it or an error came (a
/// fatal error, unless the transport is ending anyway), or both sides shut
/// down (the transport stays, as asyncio's does, until it is closed).
fn stream_closed(core: &LoopCore, event: StreamEvent<Token>) -> PyResult<()> {
    // The transport may be gone: look it up instead of trusting the token.
    let transport = core
        .transports
        .borrow()
        .get(&(event.data.as_transport() as usize))
        .map(Owned::clone_ref);
    let Some(transport) = transport else {
        return Ok(());
    };
    // SAFETY: a live transport, held by `transport`.
    let fields = unsafe { fields(transport.as_ptr()) };
    if fields.stream.get() != event.stream {
        return Ok(());
    }
    fields.stream.set(0);
    fields.set(STREAM_GONE, true);
    if fields.has(TLS_HANDSHAKE) {
        return super::tls::handshake_failed(core, &transport, &event);
    }
    if event.error != 0 && fields.conn_lost.get() == 0 {
        let message = if fields.has(CLOSING) {
            c"Fatal write error on socket transport"
        } else {
            c"Fatal read error on socket transport"
        };
        let exc = if fields.has(TLS) {
            super::tls::failure(core, &transport, &event)?
        } else {
            os_error(event.error)
        };
        return fatal_error(core, transport.as_ptr(), exc, message, None);
    }
    Ok(())
}

/// asyncio's `_fatal_error`: the exception to the loop's handler (an
/// OSError only to the debug log), then `_force_close` (connection_lost in
/// `context`: see [`ReadyItem::ConnectionLost`]).
pub(super) fn fatal_error(
    core: &LoopCore,
    transport: *mut PyObject,
    exc: Owned,
    message: &CStr,
    context: Option<Owned>,
) -> PyResult<()> {
    let api = api();
    // SAFETY: a live exception object.
    let is_os_error =
        unsafe { (api.PyErr_GivenExceptionMatches)(exc.as_ptr(), api.PyExc_OSError) } != 0;
    if is_os_error {
        if core.debug.get() {
            if let Some(hook) = rt().hooks.debug_log.get_owned() {
                let text = message_object(message)?;
                // SAFETY: live objects; the argument list ends with NULL.
                let logged = unsafe {
                    Owned::new((api.PyObject_CallFunctionObjArgs)(
                        hook.as_ptr(),
                        text.as_ptr(),
                        transport,
                        exc.as_ptr(),
                        null_mut::<PyObject>(),
                    ))
                };
                unreported(logged)?;
            }
        }
    } else {
        // SAFETY: a live transport of the caller.
        let protocol = protocol_of(unsafe { fields(transport) });
        report(core, message, &exc, transport, &protocol)?;
    }
    force_close(transport, Some(exc), context)
}

/// asyncio's `_force_close`: the buffer dropped, reading stopped,
/// `connection_lost(exc)` queued.
pub(super) fn force_close(
    transport: *mut PyObject,
    exc: Option<Owned>,
    context: Option<Owned>,
) -> PyResult<()> {
    // SAFETY: a live transport of the caller.
    let fields = unsafe { fields(transport) };
    if fields.conn_lost.get() != 0 {
        return Ok(());
    }
    fields.set(CLOSING, true);
    fields.conn_lost.set(1);
    let Some((_loop, core)) = core(fields) else {
        return super::transport::close_detached(fields);
    };
    let stream = fields.stream.replace(0);
    if stream != 0 {
        fields.set(STREAM_GONE, true);
        // Drops the buffer and closes the stream's duplicate fd; the
        // socket stays open until connection_lost() has returned.
        core.io()?
            .abort(stream)
            .map_err(super::error::raise_errno)?;
    }
    // SAFETY: a live transport of the caller.
    let transport = unsafe { Owned::borrowed(transport) };
    core.push_ready(ReadyItem::ConnectionLost {
        transport,
        exc,
        context,
    });
    Ok(())
}

/// `connection_lost(exc)`, then the end: the stream and the socket close,
/// the server and the loop let go of the transport.
pub(super) fn connection_lost(
    core: &LoopCore,
    transport: &Owned,
    exc: Option<Owned>,
    context: Option<Owned>,
) -> PyResult<()> {
    // SAFETY: a live transport, held by the caller.
    let fields = unsafe { fields(transport.as_ptr()) };
    if fields.has(FINISHED) {
        return Ok(());
    }
    fields.set(FINISHED, true);
    let protocol = protocol_of(fields);
    let exc = exc.unwrap_or_else(none);
    // A new TLS transport whose handshake failed never connected its
    // protocol (one upgraded by start_tls did).
    let connected = !fields.has(TLS_HANDSHAKE) || fields.has(super::transport::STARTED);
    let result = in_given_context(fields, context.as_ref(), || {
        if !connected {
            return Ok(none());
        }
        call::method1(
            protocol.as_ptr(),
            rt().names.connection_lost.as_ptr(),
            exc.as_ptr(),
        )
    });
    let reported = match result {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(exception)) => report(
            core,
            c"Exception in callback connection_lost()",
            &exception.into_value(),
            transport.as_ptr(),
            &protocol,
        ),
        Err(exit) => Err(exit),
    };
    // The end happens whatever connection_lost did; an exit exception
    // waits aside meanwhile.
    let pending = reported.is_err().then(Exception::fetch);
    let mut ended = finish(core, transport);
    if let Some(waiter) = fields.empty_waiter.get_owned().filter(|w| !w.is_none()) {
        let _set = raise(api().PyExc_ConnectionError, c"Connection is closed by peer");
        let error = Exception::fetch().into_value();
        ended = ended.and(settle(&waiter, Some(error)));
    }
    match pending {
        Some(exception) => Err(exception.restore()),
        None => ended,
    }
}

/// After `connection_lost`: the stream, then the socket, close; the
/// server is told; the loop lets go of the transport.
fn finish(core: &LoopCore, transport: &Owned) -> PyResult<()> {
    // SAFETY: a live transport, held by the caller.
    let fields = unsafe { fields(transport.as_ptr()) };
    let stream = fields.stream.replace(0);
    fields.set(STREAM_GONE | CLOSING, true);
    if stream != 0 {
        core.io()?
            .abort(stream)
            .map_err(super::error::raise_errno)?;
    }
    let names = &rt().names;
    let mut result = Ok(());
    if let Some(sock) = fields.sock.replace(Some(none())) {
        if !sock.is_none() {
            result = unreported(call::method0(sock.as_ptr(), names.close.as_ptr()));
        }
    }
    if let Some(server) = fields.server.replace(Some(none())) {
        if !server.is_none() {
            let detached = call::method1(
                transport.as_ptr(),
                names.server_detach.as_ptr(),
                server.as_ptr(),
            );
            result = result.and(unreported(detached));
        }
    }
    fields.core.set(std::ptr::null());
    let protocol = fields.protocol.replace(Some(none()));
    let on_data = fields.on_data.replace(None);
    let event_loop = fields.event_loop.replace(Some(none()));
    let paused = remove_paused(core, transport.as_ptr());
    let held = core
        .transports
        .borrow_mut()
        .remove(&(transport.as_ptr() as usize));
    drop((protocol, on_data, event_loop, paused, held));
    result
}

/// Completes sendfile's empty waiter (unless done): with `None`, or with
/// the exception given.
fn settle(waiter: &Owned, exc: Option<Owned>) -> PyResult<()> {
    let names = &rt().names;
    let done = call::method0(waiter.as_ptr(), names.done.as_ptr())?;
    if call::is_true(done.as_ptr())? {
        return Ok(());
    }
    let result = match exc {
        Some(exc) => call::method1(waiter.as_ptr(), names.set_exception.as_ptr(), exc.as_ptr()),
        None => call::method1(waiter.as_ptr(), names.set_result.as_ptr(), api().none),
    };
    unreported(result)
}

/// An error of Python code whose result nobody waits for: an exit
/// exception is returned, anything else reported as unraisable.
pub(super) fn unreported(result: PyResult<Owned>) -> PyResult<()> {
    if result.is_ok() {
        return Ok(());
    }
    let exception = Exception::fetch();
    if exception.is_exit() {
        return Err(exception.restore());
    }
    write_unraisable(exception.restore(), null_mut());
    Ok(())
}

/// `pause_writing()` when the buffer passed its high-water mark (asyncio's
/// `_maybe_pause_protocol`), in the writer's context.
pub(super) fn maybe_pause_writing(core: &LoopCore, transport: *mut PyObject) -> PyResult<()> {
    // SAFETY: a live transport of the caller.
    let fields = unsafe { fields(transport) };
    if fields.has(PROTOCOL_PAUSED) || write_buffer_size(fields)? <= fields.high_water.get() {
        return Ok(());
    }
    fields.set(PROTOCOL_PAUSED, true);
    // SAFETY: a live transport of the caller.
    core.paused_writers
        .borrow_mut()
        .push(unsafe { Owned::borrowed(transport) });
    let protocol = protocol_of(fields);
    if call::method0(protocol.as_ptr(), rt().names.pause_writing.as_ptr()).is_err() {
        let exception = Exception::fetch();
        if exception.is_exit() {
            return Err(exception.restore());
        }
        report(
            core,
            c"protocol.pause_writing() failed",
            &exception.into_value(),
            transport,
            &protocol,
        )?;
    }
    Ok(())
}

/// `resume_writing()` once the buffer is down to its low-water mark
/// (asyncio's `_maybe_resume_protocol`), in the transport's context.
pub(super) fn maybe_resume_writing(core: &LoopCore, transport: &Owned) -> PyResult<()> {
    // SAFETY: a live transport, held by the caller.
    let fields = unsafe { fields(transport.as_ptr()) };
    if !fields.has(PROTOCOL_PAUSED) || write_buffer_size(fields)? > fields.low_water.get() {
        return Ok(());
    }
    fields.set(PROTOCOL_PAUSED, false);
    drop(remove_paused(core, transport.as_ptr()));
    let protocol = protocol_of(fields);
    let result = in_transport_context(fields, || {
        call::method0(protocol.as_ptr(), rt().names.resume_writing.as_ptr())
    })?;
    if let Err(exception) = result {
        report(
            core,
            c"protocol.resume_writing() failed",
            &exception.into_value(),
            transport.as_ptr(),
            &protocol,
        )?;
    }
    Ok(())
}

/// Takes `transport` out of the paused writers (for the caller to drop).
fn remove_paused(core: &LoopCore, transport: *mut PyObject) -> Option<Owned> {
    let mut paused = core.paused_writers.borrow_mut();
    let at = paused.iter().position(|t| t.as_ptr() == transport)?;
    Some(paused.swap_remove(at))
}

/// `loop.call_exception_handler({'message', 'exception', 'transport',
/// 'protocol'})`; a failure of the handler itself is unraisable.
pub(super) fn report(
    core: &LoopCore,
    message: &CStr,
    exc: &Owned,
    transport: *mut PyObject,
    protocol: &Owned,
) -> PyResult<()> {
    let (api, names) = (api(), &rt().names);
    // SAFETY: a new dict; a new reference or NULL.
    let context = unsafe { Owned::new((api.PyDict_New)())? };
    let text = message_object(message)?;
    for (key, value) in [
        (&names.message, text.as_ptr()),
        (&names.exception, exc.as_ptr()),
        (&names.transport, transport),
        (&names.protocol, protocol.as_ptr()),
    ] {
        // SAFETY: a live dict, key and value; the dict takes its references.
        if unsafe { (api.PyDict_SetItem)(context.as_ptr(), key.as_ptr(), value) } < 0 {
            return Err(PyErr::taken());
        }
    }
    unreported(call::method1(
        core.pyloop,
        names.call_exception_handler.as_ptr(),
        context.as_ptr(),
    ))
}

/// asyncio's logger: `logger.warning(message)`.
pub(super) fn log_warning(message: &CStr) -> PyResult<()> {
    let rt = rt();
    let text = message_object(message)?;
    unreported(call::method1(
        rt.logger.as_ptr(),
        rt.names.warning.as_ptr(),
        text.as_ptr(),
    ))
}

fn message_object(message: &CStr) -> PyResult<Owned> {
    // SAFETY: NUL-terminated; a new reference or NULL.
    unsafe { Owned::new((api().PyUnicode_FromString)(message.as_ptr())) }
}
