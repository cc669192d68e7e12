//! The socket transport (TCP and Unix) of the native loop: asyncio's
//! `_SelectorSocketTransport` behaviour on one of the stream layer's
//! streams, with every method native. It derives from asyncio's
//! `_FlowControlMixin` (so it is an `asyncio.Transport`, and asyncio's
//! sendfile and start_tls accept it); the package's Python subclass adds
//! `__repr__` and weak references.
//!
//! The socket object stays the transport's, open and attached, until the
//! protocol's `connection_lost()` has returned, as in asyncio: the stream
//! is made over a duplicate of its fd, which the stream layer may close
//! whenever it ends the stream. The stream is made when the transport first
//! needs it: after `connection_made()`, or at a write before then.
//!
//! What calls the protocol is in `protocol.rs`.

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::mem::offset_of;

use super::api::{api, PyObject, METH_FASTCALL, METH_KEYWORDS, METH_NOARGS, METH_O};
use super::args::FastArgs;
use super::boundary;
use super::buffer::Bytes;
use super::call::{self, is_instance};
use super::error::{raise, raise_errno, raise_string, PyErr, PyResult};
use super::event_loop::{loop_method, LoopCore, Token};
use super::module::rt;
use super::object::{boolean, int, none, Owned, Slot};
use super::protocol;
use super::ready::ReadyItem;
use super::typespec::{NativeType, TypeBuilder};

/// `connection_made()` has run: the transport may read.
pub(super) const STARTED: u32 = 1 << 0;
/// `close()`, `abort()` or a fatal error.
pub(super) const CLOSING: u32 = 1 << 1;
/// `write_eof()`.
pub(super) const EOF: u32 = 1 << 2;
/// `pause_reading()`.
pub(super) const PAUSED: u32 = 1 << 3;
/// The protocol was told `pause_writing()`.
pub(super) const PROTOCOL_PAUSED: u32 = 1 << 4;
/// The protocol is a `BufferedProtocol`.
pub(super) const BUFFERED: u32 = 1 << 5;
/// The stream ended (or was never needed): none will be made.
pub(super) const STREAM_GONE: u32 = 1 << 6;
/// `connection_lost()` has run (or the loop let go of the transport).
pub(super) const FINISHED: u32 = 1 << 7;
/// A TLS stream of the library (`tls.rs`).
pub(super) const TLS: u32 = 1 << 8;
/// Its handshake is under way: `connection_made()` has not run, and a
/// failure ends the transport without `connection_lost()`.
pub(super) const TLS_HANDSHAKE: u32 = 1 << 9;

/// asyncio's default write-buffer limits.
const DEFAULT_HIGH_WATER: usize = 64 * 1024;

/// asyncio's `LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const CONNLOST_WRITES_BEFORE_WARNING: u32 = 5;

/// The transport's payload.
#[repr(C)]
pub(super) struct TransportFields {
    pub(super) protocol: Slot,
    pub(super) extra: Slot,
    pub(super) sock: Slot,
    pub(super) server: Slot,
    pub(super) event_loop: Slot,
    /// The contextvars context the protocol's callbacks run in.
    pub(super) context: Slot,
    /// `protocol.data_received`, bound once (as uvloop does).
    pub(super) on_data: Slot,
    /// asyncio's `_empty_waiter`: a future that native sendfile waits on
    /// for the buffer to empty; writes are refused while it is set.
    pub(super) empty_waiter: Slot,
    /// A TLS stream's plaintext that a BufferedProtocol has not had yet
    /// (bytes): reading paused in the middle of a chunk (`tls::into_buffers`).
    pub(super) held_plaintext: Slot,
    /// The loop's core; NULL once the transport is finished or detached.
    pub(super) core: Cell<*const LoopCore>,
    /// The stream layer's stream; 0 before it is made and once it ended.
    pub(super) stream: Cell<u64>,
    /// The socket's own fd.
    pub(super) fd: Cell<i32>,
    pub(super) flags: Cell<u32>,
    /// asyncio's `_conn_lost`: connection_lost scheduled, then writes dropped.
    pub(super) conn_lost: Cell<u32>,
    pub(super) high_water: Cell<usize>,
    pub(super) low_water: Cell<usize>,
}

impl TransportFields {
    pub(super) fn has(&self, flag: u32) -> bool {
        self.flags.get() & flag != 0
    }

    pub(super) fn set(&self, flag: u32, on: bool) {
        let flags = self.flags.get();
        self.flags
            .set(if on { flags | flag } else { flags & !flag });
    }

    pub(super) fn is_reading(&self) -> bool {
        !self.has(PAUSED | CLOSING)
    }
}

/// The payload of a transport.
///
/// # Safety
/// `transport` is a live instance of the transport type (or a subclass).
#[inline(always)]
pub(super) unsafe fn fields<'a>(transport: *mut PyObject) -> &'a TransportFields {
    // SAFETY: as the caller promised.
    unsafe { rt().transport.payload(transport) }
}

/// Whether the stream of `token` reads into its protocol's buffer now (a
/// BufferedProtocol's transport that is reading).
pub(super) fn reads_into_buffer(token: Token) -> bool {
    let transport = token.as_transport();
    if transport.is_null() {
        return false;
    }
    // SAFETY: a stream's token is its transport, which the loop's core
    // holds while the stream lives.
    let fields = unsafe { fields(transport) };
    // A TLS stream's plaintext comes as DATA (tls::into_buffers).
    fields.has(BUFFERED) && !fields.has(TLS) && fields.is_reading()
}

/// The loop's core, and a reference to the loop that keeps it alive
/// while Python code runs; `None` once finished or detached.
pub(super) fn core(fields: &TransportFields) -> Option<(Owned, &LoopCore)> {
    let core = fields.core.get();
    if core.is_null() {
        return None;
    }
    // SAFETY: a core pointer is cleared before its loop lets go of the
    // transport, so it is live now, and the reference taken to its loop
    // object keeps it so.
    let core = unsafe { &*core };
    // SAFETY: the loop object owns the core: live while the core is.
    Some((unsafe { Owned::borrowed(core.pyloop) }, core))
}

/// The loop's core without a reference to its loop: only for a caller that
/// runs no Python code while it uses it.
fn core_unheld(fields: &TransportFields) -> Option<&LoopCore> {
    // SAFETY: a core pointer is cleared before its loop lets go of the
    // transport, so it is live now; the caller keeps it so by running no
    // Python code meanwhile.
    unsafe { fields.core.get().as_ref() }
}

pub(super) fn make_type(
    flow_control: Owned,
    payload_offset: usize,
) -> PyResult<NativeType<TransportFields>> {
    const FAST: c_int = METH_FASTCALL | METH_KEYWORDS;
    TypeBuilder::<TransportFields>::new(
        c"evloop._native.Transport",
        c"A socket transport (TCP or Unix) of evloop's native asyncio loop, with asyncio's interface.",
        Some(flow_control),
        payload_offset,
    )
    .member(c"_protocol", offset_of!(TransportFields, protocol), c"the protocol")
    .member(c"_extra", offset_of!(TransportFields, extra), c"get_extra_info()'s dict")
    .member(c"_sock", offset_of!(TransportFields, sock), c"the socket (None once closed)")
    .member(c"_server", offset_of!(TransportFields, server), c"the asyncio.Server that accepted it")
    .member(c"_loop", offset_of!(TransportFields, event_loop), c"the loop")
    .member(c"_context", offset_of!(TransportFields, context), c"the context the protocol's callbacks run in")
    .member(c"_data_received", offset_of!(TransportFields, on_data), c"the protocol's data_received, bound")
    .member(c"_empty_waiter", offset_of!(TransportFields, empty_waiter), c"sendfile's wait for an empty buffer")
    .member(c"_held_plaintext", offset_of!(TransportFields, held_plaintext), c"TLS plaintext held while reading is paused")
    .getset(c"_sock_fd", get_fd, None, c"the socket's fd")
    .getset(c"_closing", get_closing, None, c"whether the transport is closing")
    .getset(c"_paused", get_paused, None, c"whether reading is paused")
    .getset(c"_eof", get_eof, None, c"whether write_eof() was called")
    .getset(c"_protocol_paused", get_protocol_paused, None, c"whether the protocol was told to pause writing")
    .getset(c"_conn_lost", get_conn_lost, None, c"asyncio's count of the connection's loss")
    .getset(c"_high_water", get_high_water, None, c"the write buffer's high-water mark")
    .getset(c"_low_water", get_low_water, None, c"the write buffer's low-water mark")
    .method(c"write", write as *mut c_void, METH_O, c"write(data): sends at once what the kernel takes, buffers the rest")
    .method(c"writelines", writelines as *mut c_void, METH_O, c"writelines(list_of_data)")
    .method(c"write_eof", write_eof as *mut c_void, METH_NOARGS, c"shuts down the writing side once the buffer is sent")
    .method(c"can_write_eof", can_write_eof as *mut c_void, METH_NOARGS, c"True")
    .method(c"close", close as *mut c_void, METH_NOARGS, c"closes once the buffer is sent; connection_lost(None) follows")
    .method(c"abort", abort as *mut c_void, METH_NOARGS, c"closes now, dropping the buffer; connection_lost(None) follows")
    .method(c"_force_close", force_close as *mut c_void, METH_O, c"_force_close(exc): abort(), connection_lost(exc) follows")
    .method(c"is_closing", is_closing as *mut c_void, METH_NOARGS, c"whether the transport is closing or closed")
    .method(c"pause_reading", pause_reading as *mut c_void, METH_NOARGS, c"stops reading until resume_reading()")
    .method(c"resume_reading", resume_reading as *mut c_void, METH_NOARGS, c"reads again")
    .method(c"is_reading", is_reading as *mut c_void, METH_NOARGS, c"whether the transport reads")
    .method(c"get_write_buffer_size", get_write_buffer_size as *mut c_void, METH_NOARGS, c"bytes buffered, not sent yet")
    .method(c"get_write_buffer_limits", get_write_buffer_limits as *mut c_void, METH_NOARGS, c"(low, high)")
    .method(
        c"set_write_buffer_limits",
        set_write_buffer_limits as *mut c_void,
        FAST,
        c"set_write_buffer_limits(high=None, low=None): pause_writing() above high, resume_writing() at low",
    )
    .method(c"get_extra_info", get_extra_info as *mut c_void, FAST, c"get_extra_info(name, default=None)")
    .method(c"_tls_upgrade", super::tls::upgrade as *mut c_void, FAST, c"_tls_upgrade(config, server_name, handshake_ms): start_tls on the stream")
    .method(c"_tls_idle_timeout", super::tls::set_idle_timeout as *mut c_void, METH_O, c"_tls_idle_timeout(ms): a TLS stream's bound on a close or handshake that stalls")
    .method(c"set_protocol", set_protocol as *mut c_void, METH_O, c"set_protocol(protocol)")
    .method(c"get_protocol", get_protocol as *mut c_void, METH_NOARGS, c"the protocol")
    .build()
}

loop_method!(
    /// `loop._make_transport(cls, sock, protocol, extra, server)`: a transport
    /// of class `cls` (the package's subclass) on `sock`, attached to the loop;
    /// `connection_made()` is queued, with the start of reading after it.
    pub(super) make_transport, |object, core, args| {
        let &[cls, sock, protocol_object, extra, server] = args.positional else {
            return Err(raise(
                api().PyExc_TypeError,
                c"_make_transport(cls, sock, protocol, extra, server)",
            ));
        };
        let transport = new_transport(object, core, [cls, sock, protocol_object, extra, server])?;
        // SAFETY: a new reference (a copy of the current context) or NULL.
        let context = unsafe { Owned::new((api().PyContext_CopyCurrent)())? };
        core.push_ready(ReadyItem::ConnectionMade {
            transport: transport.clone_ref(),
            context,
        });
        Ok(transport)
});

/// A transport of class `cls` on `sock`, attached to the loop `object`
/// (its core), without its `connection_made()`.
pub(super) fn new_transport(
    object: *mut PyObject,
    core: &LoopCore,
    [cls, sock, protocol_object, extra, server]: [*mut PyObject; 5],
) -> PyResult<Owned> {
    let (api, rt) = (api(), rt());
    core.check_open()?;
    // SAFETY: the transport type's metaclass (type); a new reference.
    let metaclass = unsafe { Owned::new((api.PyObject_Type)(rt.transport.type_object()))? };
    let is_type = is_instance(cls, metaclass.as_ptr())?;
    // SAFETY: two live types (the first checked just above).
    if !is_type || unsafe { (api.PyType_IsSubtype)(cls, rt.transport.type_object()) } == 0 {
        return Err(raise(
            api.PyExc_TypeError,
            c"_make_transport(): cls must derive from the native Transport",
        ));
    }
    let fd_object = call::method0(sock, rt.names.fileno.as_ptr())?;
    // SAFETY: a live object; -1 with an exception set on failure.
    let fd = unsafe { (api.PyLong_AsLong)(fd_object.as_ptr()) };
    if fd < 0 {
        // SAFETY: reads the error indicator.
        if unsafe { !(api.PyErr_Occurred)().is_null() } {
            return Err(PyErr::taken());
        }
        return Err(raise_errno(libc::EBADF));
    }
    // SAFETY: `cls` derives from the transport type, checked above.
    let transport = unsafe { rt.transport.alloc(cls)? };
    // SAFETY: a fresh transport.
    let fields = unsafe { fields(transport.as_ptr()) };
    // SAFETY: the arguments are live objects of the call; the context
    // copy is a new reference (or NULL).
    unsafe {
        fields.extra.replace(Some(Owned::borrowed(extra)));
        fields.sock.replace(Some(Owned::borrowed(sock)));
        fields.server.replace(Some(Owned::borrowed(server)));
        fields.event_loop.replace(Some(Owned::borrowed(object)));
        fields
            .context
            .replace(Some(Owned::new((api.PyContext_CopyCurrent)())?));
    }
    fields.empty_waiter.replace(Some(none()));
    fields.core.set(core);
    fields.fd.set(fd as i32);
    fields.high_water.set(DEFAULT_HIGH_WATER);
    fields.low_water.set(DEFAULT_HIGH_WATER / 4);
    change_protocol(fields, protocol_object)?;
    core.transports
        .borrow_mut()
        .insert(transport.as_ptr() as usize, transport.clone_ref());
    Ok(transport)
}

/// Makes the transport's stream, if it has none yet (and may have one):
/// over a duplicate of the socket's fd, reading only if it should.
pub(super) fn open_stream(core: &LoopCore, transport: *mut PyObject) -> PyResult<()> {
    // SAFETY: a live transport of the caller.
    let fields = unsafe { fields(transport) };
    if fields.stream.get() != 0 || fields.has(STREAM_GONE | FINISHED) {
        return Ok(());
    }
    // SAFETY: duplicates the socket's fd (the socket object keeps its own).
    let copy = unsafe { libc::fcntl(fields.fd.get(), libc::F_DUPFD_CLOEXEC, 0) };
    if copy < 0 {
        return Err(raise_errno(crate::sys::errno()));
    }
    let mut io = core.io()?;
    let stream = match io.open(copy, Token::transport(transport)) {
        Ok(stream) => stream,
        Err(errno) => {
            crate::sys::close(copy);
            drop(io);
            return Err(raise_errno(errno));
        }
    };
    // asyncio's transports never stop reading for what waits to be sent:
    // that is the protocol's business (pause_writing).
    let mut result = io.set_watermarks(stream, 0, 0);
    // close() closes once the queue is sent, as asyncio's does: no
    // lingering (a peer still sending gets a reset); what has arrived is
    // discarded first, so a peer that stopped sending reads the whole
    // reply and end-of-file.
    result = result.and(io.set_linger(stream, crate::stream::DEFAULT_LINGER_BYTES, 0));
    if !(fields.has(STARTED) && fields.is_reading()) {
        result = result.and(io.pause(stream));
    }
    drop(io);
    fields.stream.set(stream);
    result.map_err(raise_errno)
}

/// After `connection_made()`: reading starts (unless paused or closing).
pub(super) fn start(core: &LoopCore, transport: *mut PyObject) -> PyResult<()> {
    // SAFETY: a live transport of the caller.
    let fields = unsafe { fields(transport) };
    fields.set(STARTED, true);
    let stream = fields.stream.get();
    if stream == 0 {
        return open_stream(core, transport);
    }
    if fields.is_reading() {
        core.io()?.resume(stream).map_err(raise_errno)?;
    }
    Ok(())
}

/// The loop lets go of the transport (closed, or collected): its stream
/// ends; its socket stays open, the transport's, as asyncio leaves it.
pub(super) fn detach(transport: *mut PyObject, core: &LoopCore) {
    // SAFETY: a live transport the caller holds.
    let fields = unsafe { fields(transport) };
    let stream = fields.stream.replace(0);
    if stream != 0 {
        if let Some(mut io) = core.io_if_open() {
            let _ = io.abort(stream);
        }
    }
    // Not CLOSING: is_closing() says so already (no loop), and close()
    // still closes the socket (close_detached).
    fields.set(STREAM_GONE, true);
    fields.core.set(std::ptr::null());
}

/// Sets the protocol, and how it is given data (bytes, or its buffer).
fn change_protocol(fields: &TransportFields, protocol_object: *mut PyObject) -> PyResult<()> {
    let rt = rt();
    let buffered = is_instance(protocol_object, rt.buffered_protocol.as_ptr())?;
    let on_data = if buffered {
        None
    } else {
        match call::getattr(protocol_object, rt.names.data_received.as_ptr()) {
            Ok(method) => Some(method),
            Err(_) => {
                // Looked up (and its error raised) when data comes.
                // SAFETY: clears the AttributeError.
                unsafe { (api().PyErr_Clear)() };
                None
            }
        }
    };
    // SAFETY: a live argument of the caller.
    let old = fields
        .protocol
        .replace(Some(unsafe { Owned::borrowed(protocol_object) }));
    let old_data = fields.on_data.replace(on_data);
    fields.set(BUFFERED, buffered);
    drop((old, old_data));
    Ok(())
}

/// The body of a transport method: its payload.
macro_rules! transport_method {
    ($name:ident, |$fields:ident, $transport:ident, $arg:ident| $body:expr) => {
        unsafe extern "C" fn $name(
            $transport: *mut PyObject,
            $arg: *mut PyObject,
        ) -> *mut PyObject {
            boundary::object(|| {
                // SAFETY: CPython checked `transport` is an instance of the
                // transport type, alive for the call.
                let $fields = unsafe { fields($transport) };
                $body
            })
        }
    };
}
// Also the datagram transport's (datagram.rs), over its own `fields`.
pub(super) use transport_method;

transport_method!(write, |fields, transport, data| {
    let bytes = Bytes::of(data)?;
    write_bytes(fields, transport, bytes.as_slice())?;
    Ok(none())
});

transport_method!(writelines, |fields, transport, list| {
    let api = api();
    // SAFETY: a live object; a new reference or NULL (not iterable).
    let iterator = unsafe { Owned::new((api.PyObject_GetIter)(list))? };
    let mut joined = Vec::new();
    loop {
        // SAFETY: a live iterator; a new reference, or NULL at the end or
        // on error.
        let item = unsafe { (api.PyIter_Next)(iterator.as_ptr()) };
        if item.is_null() {
            // SAFETY: reads the error indicator.
            if unsafe { !(api.PyErr_Occurred)().is_null() } {
                return Err(PyErr::taken());
            }
            break;
        }
        // SAFETY: the new reference from PyIter_Next.
        let item = unsafe { Owned::new(item)? };
        joined.extend_from_slice(Bytes::of(item.as_ptr())?.as_slice());
    }
    write_bytes(fields, transport, &joined)?;
    Ok(none())
});

/// asyncio's `write()`: at once as far as the kernel takes it, the rest
/// buffered; `pause_writing()` above the high-water mark.
fn write_bytes(fields: &TransportFields, transport: *mut PyObject, data: &[u8]) -> PyResult<()> {
    if fields.has(EOF) {
        return Err(raise(
            api().PyExc_RuntimeError,
            c"Cannot call write() after write_eof()",
        ));
    }
    if !fields.empty_waiter.is_none_or_unset() {
        return Err(raise(
            api().PyExc_RuntimeError,
            c"unable to write; sendfile is in progress",
        ));
    }
    if data.is_empty() {
        return Ok(());
    }
    // No Python code runs on the way to the write: the core needs no
    // reference to its loop until a slow path below takes one.
    let Some(core) = core_unheld(fields).filter(|_| fields.conn_lost.get() == 0) else {
        return lost_write(fields);
    };
    if fields.stream.get() == 0 {
        open_stream(core, transport)?;
    }
    let stream = fields.stream.get();
    if stream == 0 {
        return lost_write(fields);
    }
    let result = {
        let mut io = core.io()?;
        io.write(stream, data)
            .map(|()| io.queued(stream).unwrap_or(0))
    };
    match result {
        Ok(queued) if queued <= fields.high_water.get() => Ok(()),
        Ok(_) => {
            // SAFETY: the core's loop object, live (no Python code ran).
            let _loop = unsafe { Owned::borrowed(core.pyloop) };
            protocol::maybe_pause_writing(core, transport)
        }
        Err(errno) => {
            // SAFETY: as above.
            let _loop = unsafe { Owned::borrowed(core.pyloop) };
            protocol::fatal_error(
                core,
                transport,
                super::error::os_error(errno),
                c"Fatal write error on socket transport",
                Some(current_context()?),
            )
        }
    }
}

/// A write after the connection was lost: dropped, and after a few,
/// asyncio's warning.
fn lost_write(fields: &TransportFields) -> PyResult<()> {
    let count = fields.conn_lost.get();
    if count >= CONNLOST_WRITES_BEFORE_WARNING {
        protocol::log_warning(c"socket.send() raised exception.")?;
    }
    fields.conn_lost.set(count.saturating_add(1));
    Ok(())
}

transport_method!(write_eof, |fields, transport, _unused| {
    if fields.has(CLOSING | EOF) {
        return Ok(none());
    }
    fields.set(EOF, true);
    if let Some((_loop, core)) = core(fields) {
        open_stream(core, transport)?;
        let stream = fields.stream.get();
        if stream != 0 {
            core.io()?.shutdown(stream).map_err(raise_errno)?;
        }
    }
    Ok(none())
});

transport_method!(can_write_eof, |_fields, _transport, _unused| Ok(boolean(
    true
)));

transport_method!(close, |fields, transport, _unused| {
    close_transport(fields, transport, Some(current_context()?))?;
    Ok(none())
});

/// The end of a transport its loop let go of (closed, or collected):
/// nothing will call its protocol again; its socket, open until now, closes.
pub(super) fn close_detached(fields: &TransportFields) -> PyResult<()> {
    match fields.sock.replace(Some(none())) {
        Some(sock) if !sock.is_none() => {
            call::method0(sock.as_ptr(), rt().names.close.as_ptr()).map(drop)
        }
        _ => Ok(()),
    }
}

/// A copy of the current contextvars context (what asyncio's call_soon
/// takes).
pub(super) fn current_context() -> PyResult<Owned> {
    // SAFETY: a new reference or NULL.
    unsafe { Owned::new((api().PyContext_CopyCurrent)()) }
}

/// asyncio's `close()`: reading stops; `connection_lost(None)` comes once
/// the buffer is sent (queued now, in `context`, if it is empty).
pub(super) fn close_transport(
    fields: &TransportFields,
    transport: *mut PyObject,
    context: Option<Owned>,
) -> PyResult<()> {
    if fields.has(CLOSING) {
        return Ok(());
    }
    fields.set(CLOSING, true);
    let Some((_loop, core)) = core(fields) else {
        return close_detached(fields);
    };
    let stream = fields.stream.get();
    let queued = if stream == 0 {
        0
    } else {
        let mut io = core.io()?;
        io.pause(stream).map_err(raise_errno)?;
        io.queued(stream).unwrap_or(0)
    };
    if queued == 0 {
        fields.conn_lost.set(fields.conn_lost.get() + 1);
        // SAFETY: a live transport of the caller.
        let transport = unsafe { Owned::borrowed(transport) };
        core.push_ready(ReadyItem::ConnectionLost {
            transport,
            exc: None,
            context,
        });
    }
    Ok(())
}

transport_method!(abort, |_fields, transport, _unused| {
    protocol::force_close(transport, None, Some(current_context()?))?;
    Ok(none())
});

transport_method!(force_close, |_fields, transport, exc| {
    // SAFETY: a live argument of the call.
    let exc = unsafe { Owned::borrowed(exc) };
    let exc = Some(exc).filter(|exc| !exc.is_none());
    protocol::force_close(transport, exc, Some(current_context()?))?;
    Ok(none())
});

transport_method!(is_closing, |fields, _transport, _unused| Ok(boolean(
    fields.has(CLOSING) || fields.core.get().is_null()
)));

transport_method!(pause_reading, |fields, _transport, _unused| {
    if !fields.is_reading() {
        return Ok(none());
    }
    fields.set(PAUSED, true);
    let stream = fields.stream.get();
    if let (Some((_loop, core)), true) = (core(fields), stream != 0) {
        core.io()?.pause(stream).map_err(raise_errno)?;
    }
    Ok(none())
});

transport_method!(resume_reading, |fields, transport, _unused| {
    if fields.has(CLOSING) || !fields.has(PAUSED) {
        return Ok(none());
    }
    fields.set(PAUSED, false);
    let Some((_loop, core)) = core(fields) else {
        return Ok(none());
    };
    if !fields.held_plaintext.get().is_null() {
        // What the pause held goes out first, from the loop (as asyncio's
        // SSL transport resumes, not from inside this call); the stream,
        // paused meanwhile, reads again after it (tls::deliver_held).
        // SAFETY: the transport of the call, alive for it.
        let transport = unsafe { Owned::borrowed(transport) };
        core.push_ready(ReadyItem::HeldPlaintext(transport));
        return Ok(none());
    }
    resume_stream(core, fields)?;
    Ok(none())
});

/// The stream reads again (once the protocol is connected).
pub(super) fn resume_stream(core: &LoopCore, fields: &TransportFields) -> PyResult<()> {
    let stream = fields.stream.get();
    if stream != 0 && fields.has(STARTED) {
        core.io()?.resume(stream).map_err(raise_errno)?;
    }
    Ok(())
}

transport_method!(is_reading, |fields, _transport, _unused| Ok(boolean(
    fields.is_reading()
)));

transport_method!(get_write_buffer_size, |fields, _transport, _unused| {
    let size = write_buffer_size(fields)?;
    // SAFETY: a plain conversion; a new reference or NULL.
    unsafe { Owned::new((api().PyLong_FromSsize_t)(size as isize)) }
});

/// What the stream has not sent yet.
pub(super) fn write_buffer_size(fields: &TransportFields) -> PyResult<usize> {
    let stream = fields.stream.get();
    match core(fields) {
        Some((_loop, core)) if stream != 0 => Ok(core.io()?.queued(stream).unwrap_or(0)),
        _ => Ok(0),
    }
}

transport_method!(get_write_buffer_limits, |fields, _transport, _unused| {
    let api = api();
    let low = fields.low_water.get() as isize;
    let high = fields.high_water.get() as isize;
    // SAFETY: plain conversions into a fresh pair; new references or NULL,
    // which PyTuple_SetItem steals.
    unsafe {
        let pair = Owned::new((api.PyTuple_New)(2))?;
        (api.PyTuple_SetItem)(
            pair.as_ptr(),
            0,
            Owned::new((api.PyLong_FromSsize_t)(low))?.into_raw(),
        );
        (api.PyTuple_SetItem)(
            pair.as_ptr(),
            1,
            Owned::new((api.PyLong_FromSsize_t)(high))?.into_raw(),
        );
        Ok(pair)
    }
});

unsafe extern "C" fn set_write_buffer_limits(
    transport: *mut PyObject,
    args: *const *mut PyObject,
    nargs: isize,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    boundary::object(|| {
        // SAFETY: CPython checked the instance, and passes its fast-call
        // arguments, alive for the call.
        let (fields, args) = unsafe { (fields(transport), FastArgs::new(args, nargs, kwnames)) };
        let name = "set_write_buffer_limits";
        let high =
            args.positional
                .first()
                .copied()
                .or(args.keyword(name, c"high", None, &[c"low"])?);
        let low =
            args.positional
                .get(1)
                .copied()
                .or(args.keyword(name, c"low", None, &[c"high"])?);
        if args.positional.len() > 2 {
            return Err(raise(
                api().PyExc_TypeError,
                c"set_write_buffer_limits(high=None, low=None)",
            ));
        }
        let (high, low) = (size_or_none(high)?, size_or_none(low)?);
        // asyncio's _FlowControlMixin._set_write_buffer_limits.
        let high = high.unwrap_or_else(|| low.map_or(64 * 1024, |low| 4 * low));
        let low = low.unwrap_or(high / 4);
        if !(high >= low && low >= 0) {
            return Err(raise_string(
                api().PyExc_ValueError,
                &format!("high ({high}) must be >= low ({low}) must be >= 0"),
            ));
        }
        fields.high_water.set(high as usize);
        fields.low_water.set(low as usize);
        if let Some((_loop, core)) = core(fields) {
            if write_buffer_size(fields)? > fields.high_water.get() {
                protocol::maybe_pause_writing(core, transport)?;
            }
        }
        Ok(none())
    })
}

/// An int argument, or `None`.
fn size_or_none(value: Option<*mut PyObject>) -> PyResult<Option<i64>> {
    let api = api();
    match value {
        None => Ok(None),
        Some(value) if value == api.none => Ok(None),
        Some(value) => {
            // SAFETY: a live object; -1 with an exception set on failure.
            let number = unsafe { (api.PyLong_AsLong)(value) };
            // SAFETY: reads the error indicator.
            if number == -1 && unsafe { !(api.PyErr_Occurred)().is_null() } {
                return Err(PyErr::taken());
            }
            Ok(Some(number))
        }
    }
}

unsafe extern "C" fn get_extra_info(
    transport: *mut PyObject,
    args: *const *mut PyObject,
    nargs: isize,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    boundary::object(|| {
        let api = api();
        // SAFETY: CPython checked the instance, and passes its fast-call
        // arguments, alive for the call.
        let (fields, args) = unsafe { (fields(transport), FastArgs::new(args, nargs, kwnames)) };
        let name = args.positional.first().copied().or(args.keyword(
            "get_extra_info",
            c"name",
            None,
            &[c"default"],
        )?);
        let default = args.positional.get(1).copied().or(args.keyword(
            "get_extra_info",
            c"default",
            None,
            &[c"name"],
        )?);
        let Some(name) = name else {
            return Err(raise(
                api.PyExc_TypeError,
                c"get_extra_info() missing 1 required positional argument: 'name'",
            ));
        };
        let Some(extra) = fields.extra.get_owned() else {
            // SAFETY: a live argument of the call, or None.
            return Ok(unsafe { Owned::borrowed(default.unwrap_or(api.none)) });
        };
        // SAFETY: a live dict (else SystemError) and key; a borrowed
        // reference, or NULL: missing or an error.
        let value = unsafe { (api.PyDict_GetItemWithError)(extra.as_ptr(), name) };
        if value.is_null() {
            // SAFETY: reads the error indicator.
            if unsafe { !(api.PyErr_Occurred)().is_null() } {
                return Err(PyErr::taken());
            }
            // SAFETY: as above.
            return Ok(unsafe { Owned::borrowed(default.unwrap_or(api.none)) });
        }
        // SAFETY: the dict's value, alive while the dict is.
        Ok(unsafe { Owned::borrowed(value) })
    })
}

transport_method!(set_protocol, |fields, _transport, protocol_object| {
    change_protocol(fields, protocol_object)?;
    Ok(none())
});

transport_method!(get_protocol, |fields, _transport, _unused| Ok(fields
    .protocol
    .get_owned()
    .unwrap_or_else(none)));

/// A read-only attribute made from the payload.
macro_rules! getter {
    ($name:ident, |$fields:ident| $value:expr) => {
        unsafe extern "C" fn $name(transport: *mut PyObject, _: *mut c_void) -> *mut PyObject {
            boundary::object(|| {
                // SAFETY: CPython checked the instance.
                let $fields = unsafe { fields(transport) };
                $value
            })
        }
    };
}

getter!(get_fd, |fields| int(fields.fd.get().into()));
getter!(get_closing, |fields| Ok(boolean(fields.has(CLOSING))));
getter!(get_paused, |fields| Ok(boolean(fields.has(PAUSED))));
getter!(get_eof, |fields| Ok(boolean(fields.has(EOF))));
getter!(get_protocol_paused, |fields| Ok(boolean(
    fields.has(PROTOCOL_PAUSED)
)));
getter!(get_conn_lost, |fields| int(fields.conn_lost.get().into()));
getter!(get_high_water, |fields| int(fields.high_water.get() as i64));
getter!(get_low_water, |fields| int(fields.low_water.get() as i64));
