//! The datagram transport (UDP over IPv4 and IPv6) of the native loop:
//! `create_datagram_endpoint`'s transport on one of the stream layer's UDP
//! sockets (recvmmsg in, sendto/sendmmsg out, a bounded queue between).
//!
//! The hot path is here: each datagram of a received batch becomes a
//! `bytes` and an address tuple as the socket module makes them (`(host,
//! port)`, `(host, port, flowinfo, scope_id)` for IPv6) and goes to the
//! protocol's `datagram_received` in the transport's contextvars context
//! (an exception to the loop's exception handler, the transport going on,
//! as an exception of asyncio's reader callback does); `sendto(data,
//! addr)` to the peer a datagram just came from, to the last destination
//! given, or to the connected peer goes straight to the socket. Everything
//! else (asyncio's checks and messages, an address to encode, a full
//! queue, closing, `connection_lost`) is the package's Python subclass
//! (`evloop/_native/_datagram.py`), which calls back into the few native
//! methods below and is called for what is rare: a datagram received while
//! reading is paused (`_hold`), a refused send (`_send_outcome`), the
//! socket's errors, its queue drained and its end (`_udp_error`,
//! `_stream_drained`, `_stream_closed`, with 0 or -errno as on the ctypes
//! path).
//!
//! The stream layer's socket is made over a duplicate of the Python
//! socket's fd, so the socket stays open until `connection_lost` has
//! returned, as in asyncio. The loop's core holds the transport from the
//! making of its UDP socket until that socket's `Closed` event (or the
//! loop's close): the socket's token is the transport's address.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void};
use std::mem::offset_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::api::{api, PyObject, METH_FASTCALL, METH_KEYWORDS, METH_NOARGS, METH_O};
use super::args::FastArgs;
use super::boundary;
use super::buffer::Bytes;
use super::call::{self, in_context};
use super::error::{raise, raise_errno, Exception, PyErr, PyResult};
use super::event_loop::{loop_method, tuple, LoopCore, Token};
use super::module::rt;
use super::object::{boolean, int, none, Owned, Slot};
use super::protocol::{report, unreported};
use super::transport::transport_method;
use super::typespec::{refuse_delete, NativeType, TypeBuilder};
use crate::stream::{Datagram, StreamEvent, StreamEventKind};
use crate::sys::SockAddr;

/// Datagrams go to the protocol (connection_made has run, reading is not
/// paused, the transport is not closing); otherwise to `_hold`.
const RECEIVING: u32 = 1 << 0;
/// The socket is connected: sendto takes no address.
const CONNECTED: u32 = 1 << 1;
/// sendto may send natively (nothing waits in Python's overflow, the
/// transport is open).
const FAST_SEND: u32 = 1 << 2;
/// The stream layer's socket ended (or was never made): nothing is sent.
const GONE: u32 = 1 << 3;

/// The transport's payload.
#[repr(C)]
pub(super) struct DatagramFields {
    protocol: Slot,
    /// The contextvars context the protocol's callbacks run in.
    context: Slot,
    /// `protocol.datagram_received`, bound once.
    on_datagram: Slot,
    /// The address tuple of the last datagram received, and its sockaddr.
    last_from: Slot,
    /// The last address sendto was given, and its sockaddr.
    last_to: Slot,
    /// The address tuples of the peers datagrams came from, by their
    /// sockaddr's bytes (a dict, made anew after [`SOURCES_KEPT`]).
    sources: Slot,
    /// The loop's core; NULL before the socket is made and once detached.
    core: Cell<*const LoopCore>,
    /// The stream layer's UDP socket; 0 before it is made and once ended.
    udp: Cell<u64>,
    flags: Cell<u32>,
    sources_kept: Cell<u32>,
    last_from_raw: Cell<SockAddr>,
    last_to_raw: Cell<SockAddr>,
}

impl DatagramFields {
    fn has(&self, flag: u32) -> bool {
        self.flags.get() & flag != 0
    }

    fn set(&self, flag: u32, on: bool) {
        let flags = self.flags.get();
        self.flags
            .set(if on { flags | flag } else { flags & !flag });
    }

    /// The loop's core without a reference to its loop: only for a caller
    /// that runs no Python code while it uses it.
    fn core_unheld(&self) -> Option<&LoopCore> {
        // SAFETY: the core pointer is cleared (detach) before its loop lets
        // go of the transport, so it is live now; the caller runs no Python
        // code while it uses it.
        unsafe { self.core.get().as_ref() }
    }
}

/// How many peers' address tuples a transport keeps before it starts
/// afresh: a server answering a few clients makes none per datagram.
const SOURCES_KEPT: u32 = 256;

/// The payload of a datagram transport.
///
/// # Safety
/// `transport` is a live instance of the datagram transport type (or a
/// subclass).
#[inline(always)]
unsafe fn fields<'a>(transport: *mut PyObject) -> &'a DatagramFields {
    // SAFETY: as the caller promised.
    unsafe { rt().datagram.payload(transport) }
}

pub(super) fn make_type(
    flow_control: Owned,
    payload_offset: usize,
) -> PyResult<NativeType<DatagramFields>> {
    const FAST: c_int = METH_FASTCALL | METH_KEYWORDS;
    TypeBuilder::<DatagramFields>::new(
        c"evloop._native.DatagramTransport",
        c"The native part of a datagram transport (UDP) of evloop's native asyncio loop.",
        Some(flow_control),
        payload_offset,
    )
    .member(
        c"_protocol",
        offset_of!(DatagramFields, protocol),
        c"the protocol",
    )
    .member(
        c"_context",
        offset_of!(DatagramFields, context),
        c"the context the protocol's callbacks run in",
    )
    .member(
        c"_datagram_received",
        offset_of!(DatagramFields, on_datagram),
        c"the protocol's datagram_received, bound",
    )
    .member(
        c"_last_from",
        offset_of!(DatagramFields, last_from),
        c"the source of the last datagram received",
    )
    .member(
        c"_sources",
        offset_of!(DatagramFields, sources),
        c"the address tuples of the peers datagrams came from",
    )
    .member(
        c"_last_to",
        offset_of!(DatagramFields, last_to),
        c"the last address sendto() was given",
    )
    .getset(
        c"_receiving",
        get_receiving,
        Some(set_receiving),
        c"whether datagrams go to the protocol",
    )
    .getset(
        c"_fast_send",
        get_fast_send,
        Some(set_fast_send),
        c"whether sendto() may send natively",
    )
    .method(
        c"sendto",
        sendto as *mut c_void,
        FAST,
        c"sendto(data, addr=None): sends the datagram, or queues it",
    )
    .method(
        c"_send_to",
        send_to as *mut c_void,
        FAST,
        c"_send_to(data, raw, addr): sends to the sockaddr bytes raw (None: the peer); 0 or -errno",
    )
    .method(
        c"_queued",
        queued as *mut c_void,
        METH_NOARGS,
        c"what the library's queue holds",
    )
    .method(
        c"_set_watermarks",
        set_watermarks as *mut c_void,
        FAST,
        c"_set_watermarks(high, low): the library queue's bounds",
    )
    .method(
        c"_hold_sends",
        hold_sends as *mut c_void,
        METH_O,
        c"_hold_sends(hold): tests only: sends queue as if the kernel's buffer were full",
    )
    .method(
        c"_close_udp",
        close_udp as *mut c_void,
        METH_NOARGS,
        c"ends the library's socket once its queue is sent",
    )
    .method(
        c"set_protocol",
        set_protocol as *mut c_void,
        METH_O,
        c"set_protocol(protocol)",
    )
    .method(
        c"get_protocol",
        get_protocol as *mut c_void,
        METH_NOARGS,
        c"the protocol",
    )
    .build()
}

loop_method!(
    /// `loop._udp_open(transport, fd, connected)`: the stream layer's UDP
    /// socket for `transport` over a duplicate of `fd`, not receiving yet
    /// (until the transport's `_receiving` is set).
    pub(super) udp_open, |_object, core, args| {
        let api = api();
        let &[transport, fd, connected] = args.positional else {
            return Err(raise(api.PyExc_TypeError, c"_udp_open(transport, fd, connected)"));
        };
        if !rt().datagram.is_instance(transport) {
            return Err(raise(api.PyExc_TypeError, c"_udp_open(): not a native datagram transport"));
        }
        core.check_open()?;
        // SAFETY: checked to be one of ours just above.
        let fields = unsafe { fields(transport) };
        if fields.udp.get() != 0 || fields.has(GONE) {
            return Err(raise(api.PyExc_RuntimeError, c"_udp_open(): the transport has a socket already"));
        }
        // SAFETY: a live object; -1 with an exception set on failure.
        let fd = unsafe { (api.PyLong_AsLong)(fd) };
        if fd < 0 {
            // SAFETY: reads the error indicator.
            if unsafe { !(api.PyErr_Occurred)().is_null() } {
                return Err(PyErr::taken());
            }
            return Err(raise_errno(libc::EBADF));
        }
        let connected = call::is_true(connected)?;
        // SAFETY: duplicates the socket's fd (the socket object keeps its own).
        let copy = unsafe { libc::fcntl(fd as c_int, libc::F_DUPFD_CLOEXEC, 0) };
        if copy < 0 {
            return Err(raise_errno(crate::sys::errno()));
        }
        let opened = {
            let mut io = core.io()?;
            io.udp_open(copy, Token::datagram(transport))
                .and_then(|udp| io.udp_pause(udp).map(|()| udp))
        };
        let udp = match opened {
            Ok(udp) => udp,
            Err(errno) => {
                crate::sys::close(copy);
                return Err(raise_errno(errno));
            }
        };
        fields.udp.set(udp);
        fields.core.set(core);
        fields.set(CONNECTED, connected);
        fields.set(FAST_SEND, true);
        // SAFETY: a live argument of the call.
        let held = unsafe { Owned::borrowed(transport) };
        core.datagrams.borrow_mut().insert(transport as usize, held);
        Ok(none())
});

/// The loop lets go of the transport (it closes): its socket ends with
/// the loop's; its Python socket stays the transport's.
pub(super) fn detach(transport: *mut PyObject) {
    // SAFETY: the loop's core holds only datagram transports there.
    let fields = unsafe { fields(transport) };
    fields.udp.set(0);
    fields.core.set(std::ptr::null());
    fields.set(RECEIVING | FAST_SEND, false);
    fields.set(GONE, true);
}

/// A stream-layer event of a datagram transport's socket (`token` tagged
/// as one): datagrams to the protocol, the rest to the Python subclass.
pub(super) fn event(core: &LoopCore, event: StreamEvent<Token>) -> PyResult<()> {
    let Some(address) = event.data.as_datagram() else {
        return Ok(());
    };
    let transport = core
        .datagrams
        .borrow()
        .get(&(address as usize))
        .map(Owned::clone_ref);
    let Some(transport) = transport else {
        return Ok(());
    };
    // SAFETY: the core holds only datagram transports there.
    let fields = unsafe { fields(transport.as_ptr()) };
    if fields.udp.get() != event.stream {
        return Ok(());
    }
    let names = &rt().names;
    match event.kind {
        StreamEventKind::Datagrams => deliver(core, &transport, fields, &event),
        StreamEventKind::UdpError => {
            let status = int(-i64::from(event.error))?;
            unreported(call::method1(
                transport.as_ptr(),
                names.udp_error.as_ptr(),
                status.as_ptr(),
            ))
        }
        StreamEventKind::Drained => unreported(call::method0(
            transport.as_ptr(),
            names.udp_drained.as_ptr(),
        )),
        StreamEventKind::Closed => {
            fields.udp.set(0);
            fields.set(GONE, true);
            fields.set(FAST_SEND, false);
            let held = core.datagrams.borrow_mut().remove(&(address as usize));
            drop(held);
            let status = int(-i64::from(event.error))?;
            unreported(call::method1(
                transport.as_ptr(),
                names.udp_closed.as_ptr(),
                status.as_ptr(),
            ))
        }
        _ => Ok(()),
    }
}

/// A datagram received, where the receive buffer holds it until the next
/// `release_reads` (made by the iteration's next step, after this one).
struct Received {
    data: *const u8,
    len: usize,
    addr: *const libc::sockaddr,
    addr_len: u32,
}

/// Each datagram of a `Datagrams` event: `datagram_received(bytes, addr)`
/// in the transport's context, or `_hold(bytes, addr)` while not receiving.
fn deliver(
    core: &LoopCore,
    transport: &Owned,
    fields: &DatagramFields,
    event: &StreamEvent<Token>,
) -> PyResult<()> {
    let batch: Vec<Received> = {
        let io = core.io()?;
        io.datagrams(event)
            .iter()
            .map(|datagram| {
                let (data, len) = datagram.raw_bytes();
                let (addr, addr_len) = datagram.raw_addr();
                Received {
                    data,
                    len,
                    addr,
                    addr_len,
                }
            })
            .collect()
    };
    let api = api();
    let names = &rt().names;
    // The batch in the transport's context, entered once.
    let context = fields.context.get_owned();
    let context = context.as_ref().map_or(std::ptr::null_mut(), Owned::as_ptr);
    in_context(context, || {
        for received in batch {
            if fields.has(GONE) && !fields.has(RECEIVING) {
                // Closed or aborted meanwhile: the rest is dropped.
                return Ok(());
            }
            // SAFETY: the datagram's bytes, in the receive buffer until the
            // next step releases it (no receive happens meanwhile).
            let bytes = unsafe {
                Owned::new((api.PyBytes_FromStringAndSize)(
                    received.data.cast(),
                    received.len as isize,
                ))?
            };
            // SAFETY: as above, the source address the kernel wrote there.
            let raw = unsafe { raw_bytes(received.addr, received.addr_len) };
            let addr = source(fields, raw)?;
            if !fields.has(RECEIVING) {
                unreported(call::method2(
                    transport.as_ptr(),
                    names.hold.as_ptr(),
                    bytes.as_ptr(),
                    addr.as_ptr(),
                ))?;
                continue;
            }
            let result = match fields.on_datagram.get_owned() {
                Some(on_datagram) => {
                    call::call2(on_datagram.as_ptr(), bytes.as_ptr(), addr.as_ptr())
                }
                None => call::method2(
                    fields.protocol.get_owned().unwrap_or_else(none).as_ptr(),
                    names.datagram_received.as_ptr(),
                    bytes.as_ptr(),
                    addr.as_ptr(),
                ),
            };
            if result.is_err() {
                let exception = Exception::fetch();
                if exception.is_exit() {
                    return Err(exception.restore());
                }
                let protocol = fields.protocol.get_owned().unwrap_or_else(none);
                report(
                    core,
                    c"Exception in callback datagram_received()",
                    &exception.into_value(),
                    transport.as_ptr(),
                    &protocol,
                )?;
            }
        }
        Ok(())
    })
}

/// `len` bytes at `addr` (none for NULL).
///
/// # Safety
/// `addr` is NULL or readable for `len` bytes while the slice is used.
unsafe fn raw_bytes<'a>(addr: *const libc::sockaddr, len: u32) -> &'a [u8] {
    if addr.is_null() {
        return &[];
    }
    // SAFETY: as the caller promised.
    unsafe { std::slice::from_raw_parts(addr.cast::<u8>(), len as usize) }
}

/// The address tuple of a datagram's source: the last one again if it
/// came from the same peer, one kept for that peer, or a new one (then
/// kept); a tuple is immutable, so sharing it changes nothing.
fn source(fields: &DatagramFields, raw: &[u8]) -> PyResult<Owned> {
    if fields.last_from_raw.get().as_bytes() == raw {
        if let Some(tuple) = fields.last_from.get_owned() {
            return Ok(tuple);
        }
    }
    let api = api();
    // SAFETY: a slice of the receive buffer; a new reference or NULL.
    let key = unsafe {
        Owned::new((api.PyBytes_FromStringAndSize)(
            raw.as_ptr().cast(),
            raw.len() as isize,
        ))?
    };
    let Some(addr) = sockaddr_of(raw) else {
        // A family of no tuple (never for UDP over IP): the bytes, as
        // the socket module gives an unknown family's.
        return Ok(key);
    };
    let tuple = match kept_source(fields, &key)? {
        Some(tuple) => tuple,
        None => {
            let tuple = address_tuple(&addr)?;
            keep_source(fields, &key, &tuple)?;
            tuple
        }
    };
    fields.last_from_raw.set(addr);
    drop(fields.last_from.replace(Some(tuple.clone_ref())));
    Ok(tuple)
}

/// The tuple kept for the sockaddr bytes `key`, if any.
fn kept_source(fields: &DatagramFields, key: &Owned) -> PyResult<Option<Owned>> {
    let Some(sources) = fields.sources.get_owned() else {
        return Ok(None);
    };
    let api = api();
    // SAFETY: a live dict (made here) and key; a borrowed reference, or
    // NULL: missing, or an error.
    let found = unsafe { (api.PyDict_GetItemWithError)(sources.as_ptr(), key.as_ptr()) };
    if found.is_null() {
        // SAFETY: reads the error indicator.
        if unsafe { !(api.PyErr_Occurred)().is_null() } {
            return Err(PyErr::taken());
        }
        return Ok(None);
    }
    // SAFETY: the dict's value, alive while the dict is (held above).
    Ok(Some(unsafe { Owned::borrowed(found) }))
}

/// Keeps `tuple` for the sockaddr bytes `key`, in a dict made anew every
/// [`SOURCES_KEPT`] peers (a server with many short-lived peers keeps few).
fn keep_source(fields: &DatagramFields, key: &Owned, tuple: &Owned) -> PyResult<()> {
    let api = api();
    let sources = match fields.sources.get_owned() {
        Some(sources) if fields.sources_kept.get() < SOURCES_KEPT => sources,
        _ => {
            // SAFETY: a new dict; a new reference or NULL.
            let sources = unsafe { Owned::new((api.PyDict_New)())? };
            drop(fields.sources.replace(Some(sources.clone_ref())));
            fields.sources_kept.set(0);
            sources
        }
    };
    // SAFETY: a live dict, key and value; the dict takes its references.
    if unsafe { (api.PyDict_SetItem)(sources.as_ptr(), key.as_ptr(), tuple.as_ptr()) } < 0 {
        return Err(PyErr::taken());
    }
    fields.sources_kept.set(fields.sources_kept.get() + 1);
    Ok(())
}

/// The socket module's tuple of an address: `(host, port)` for IPv4,
/// `(host, port, flowinfo, scope_id)` for IPv6, the host as inet_ntop
/// writes it.
fn address_tuple(addr: &SockAddr) -> PyResult<Owned> {
    let Some(std) = addr.to_std() else {
        return Ok(none());
    };
    let host = host_string(&std)?;
    let port = int(std.port().into())?;
    match std {
        SocketAddr::V4(_) => tuple(&[host.as_ptr(), port.as_ptr()]),
        SocketAddr::V6(v6) => {
            let flowinfo = int(v6.flowinfo().into())?;
            let scope_id = int(v6.scope_id().into())?;
            tuple(&[
                host.as_ptr(),
                port.as_ptr(),
                flowinfo.as_ptr(),
                scope_id.as_ptr(),
            ])
        }
    }
}

fn host_string(addr: &SocketAddr) -> PyResult<Owned> {
    let mut text = [0 as c_char; 64];
    let (family, packed): (c_int, [u8; 16]) = match addr {
        SocketAddr::V4(a) => {
            let mut packed = [0; 16];
            packed[..4].copy_from_slice(&a.ip().octets());
            (libc::AF_INET, packed)
        }
        SocketAddr::V6(a) => (libc::AF_INET6, a.ip().octets()),
    };
    // SAFETY: `packed` holds an in_addr or in6_addr of `family`; `text`
    // has room for the longest address text and its NUL.
    let written = unsafe {
        inet_ntop(
            family,
            packed.as_ptr().cast(),
            text.as_mut_ptr(),
            text.len() as libc::socklen_t,
        )
    };
    if written.is_null() {
        return Err(raise_errno(crate::sys::errno()));
    }
    // SAFETY: NUL-terminated by inet_ntop; a new reference or NULL.
    unsafe { Owned::new((api().PyUnicode_FromString)(text.as_ptr())) }
}

extern "C" {
    /// libc's (POSIX), which the libc crate does not declare.
    fn inet_ntop(
        family: c_int,
        src: *const c_void,
        dst: *mut c_char,
        size: libc::socklen_t,
    ) -> *const c_char;
}

/// The address in a `sockaddr_in` or `sockaddr_in6`'s bytes (as the kernel
/// and `evloop._sockaddr.encode` lay them out).
fn sockaddr_of(raw: &[u8]) -> Option<SockAddr> {
    let family = i32::from(u16::from_ne_bytes([*raw.first()?, *raw.get(1)?]));
    let port = u16::from_be_bytes([raw[2], raw[3]]);
    let word = |at: usize| -> [u8; 4] { [raw[at], raw[at + 1], raw[at + 2], raw[at + 3]] };
    let std = match family {
        libc::AF_INET if raw.len() >= 16 => {
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(word(4)), port))
        }
        libc::AF_INET6 if raw.len() >= 28 => {
            let mut ip = [0; 16];
            ip.copy_from_slice(&raw[8..24]);
            SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                u32::from_be_bytes(word(4)),
                u32::from_ne_bytes(word(24)),
            ))
        }
        _ => return None,
    };
    Some(SockAddr::from_std(std))
}

/// `data` to `to` (None: the connected peer) through the library: 0, or
/// the errno of a refusal (ENOBUFS: the queue is full; EPIPE: the socket
/// ended).
fn send(fields: &DatagramFields, data: &[u8], to: Option<&SockAddr>) -> PyResult<i32> {
    let udp = fields.udp.get();
    let Some(core) = fields.core_unheld().filter(|_| udp != 0) else {
        return Ok(libc::EPIPE);
    };
    let mut status = [0];
    let sent = core
        .io()?
        .udp_send(udp, &[Datagram::new(data, to)], Some(&mut status));
    Ok(match sent {
        Ok(0) => 0,
        Ok(_) => status[0],
        Err(errno) => errno,
    })
}

/// `sendto(data, addr=None)`: natively when the destination is known
/// (the connected peer, the source of the last datagram received, the
/// last destination given) and nothing waits; asyncio's whole way
/// (`_sendto_slow`, Python) otherwise.
unsafe extern "C" fn sendto(
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
        let data = args.positional.first().copied().or(args.keyword(
            "sendto",
            c"data",
            None,
            &[c"addr"],
        )?);
        let addr = args
            .positional
            .get(1)
            .copied()
            .or(args.keyword("sendto", c"addr", None, &[c"data"])?)
            .unwrap_or(api.none);
        let Some(data) = data.filter(|_| args.positional.len() <= 2) else {
            return Err(raise(
                api.PyExc_TypeError,
                c"sendto() takes data and an optional addr",
            ));
        };
        if fields.has(FAST_SEND) && send_known(transport, fields, data, addr)? {
            return Ok(none());
        }
        call::method2(transport, rt().names.sendto_slow.as_ptr(), data, addr)
    })
}

/// The native sendto; false if it is not for here.
fn send_known(
    transport: *mut PyObject,
    fields: &DatagramFields,
    data: *mut PyObject,
    addr: *mut PyObject,
) -> PyResult<bool> {
    let api = api();
    let to = if fields.has(CONNECTED) {
        if addr != api.none {
            return Ok(false);
        }
        None
    } else if addr == fields.last_from.get() {
        Some(fields.last_from_raw.get())
    } else if addr == fields.last_to.get() {
        Some(fields.last_to_raw.get())
    } else {
        return Ok(false);
    };
    let Ok(bytes) = Bytes::of(data) else {
        // SAFETY: clears the TypeError: the Python way raises asyncio's.
        unsafe { (api.PyErr_Clear)() };
        return Ok(false);
    };
    if bytes.as_slice().is_empty() {
        return Ok(false); // sent or not depending on the Python version
    }
    let errno = send(fields, bytes.as_slice(), to.as_ref())?;
    drop(bytes);
    if errno != 0 {
        let code = int(-i64::from(errno))?;
        // SAFETY: live objects; the list of arguments ends with NULL.
        unsafe {
            Owned::new((api.PyObject_CallMethodObjArgs)(
                transport,
                rt().names.send_outcome.as_ptr(),
                code.as_ptr(),
                data,
                addr,
                std::ptr::null_mut::<PyObject>(),
            ))?
        };
    }
    Ok(true)
}

/// `_send_to(data, raw, addr)`: `data` to the sockaddr bytes `raw` (None:
/// the connected peer), `addr` kept as the last destination (its tuple);
/// 0 or -errno.
unsafe extern "C" fn send_to(
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
        let &[data, raw, addr] = args.positional else {
            return Err(raise(api.PyExc_TypeError, c"_send_to(data, raw, addr)"));
        };
        let to = if raw == api.none {
            None
        } else {
            let raw = Bytes::of(raw)?;
            let Some(to) = sockaddr_of(raw.as_slice()) else {
                return Err(raise(
                    api.PyExc_ValueError,
                    c"_send_to(): not an IPv4 or IPv6 sockaddr",
                ));
            };
            if addr != api.none {
                fields.last_to_raw.set(to);
                // SAFETY: a live argument of the call.
                drop(
                    fields
                        .last_to
                        .replace(Some(unsafe { Owned::borrowed(addr) })),
                );
            }
            Some(to)
        };
        let bytes = Bytes::of(data)?;
        let errno = send(fields, bytes.as_slice(), to.as_ref())?;
        int(-i64::from(errno))
    })
}

transport_method!(queued, |fields, _transport, _unused| {
    let udp = fields.udp.get();
    let size = match fields.core_unheld() {
        Some(core) if udp != 0 => core.io()?.udp_queued(udp).unwrap_or(0),
        _ => 0,
    };
    int(size as i64)
});

transport_method!(hold_sends, |fields, _transport, hold| {
    let hold = call::is_true(hold)?;
    let udp = fields.udp.get();
    if let (Some(core), true) = (fields.core_unheld(), udp != 0) {
        core.io()?.udp_hold_sends(udp, hold).map_err(raise_errno)?;
    }
    Ok(none())
});

transport_method!(close_udp, |fields, _transport, _unused| {
    fields.set(RECEIVING | FAST_SEND, false);
    fields.set(GONE, true);
    let udp = fields.udp.get();
    if let (Some(core), true) = (fields.core_unheld(), udp != 0) {
        // The Closed event follows, once the queue is sent.
        core.io()?.udp_close(udp).map_err(raise_errno)?;
    }
    Ok(none())
});

transport_method!(set_protocol, |fields, _transport, protocol| {
    let on_datagram = if protocol == api().none {
        None
    } else {
        match call::getattr(protocol, rt().names.datagram_received.as_ptr()) {
            Ok(method) => Some(method),
            Err(_) => {
                // Looked up (and its error reported) when a datagram comes.
                // SAFETY: clears the AttributeError.
                unsafe { (api().PyErr_Clear)() };
                None
            }
        }
    };
    // SAFETY: a live argument of the call.
    let old = fields
        .protocol
        .replace(Some(unsafe { Owned::borrowed(protocol) }));
    let old_method = fields.on_datagram.replace(on_datagram);
    drop((old, old_method));
    Ok(none())
});

transport_method!(get_protocol, |fields, _transport, _unused| Ok(fields
    .protocol
    .get_owned()
    .unwrap_or_else(none)));

unsafe extern "C" fn set_watermarks(
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
        let &[high, low] = args.positional else {
            return Err(raise(api.PyExc_TypeError, c"_set_watermarks(high, low)"));
        };
        // SAFETY: live objects; -1 with an exception set on failure.
        let (high, low) = unsafe { ((api.PyLong_AsSsize_t)(high), (api.PyLong_AsSsize_t)(low)) };
        if high < 0 || low < 0 {
            // SAFETY: reads the error indicator.
            if unsafe { !(api.PyErr_Occurred)().is_null() } {
                return Err(PyErr::taken());
            }
            return Err(raise(api.PyExc_ValueError, c"negative watermark"));
        }
        let udp = fields.udp.get();
        if let (Some(core), true) = (fields.core_unheld(), udp != 0) {
            core.io()?
                .udp_set_watermarks(udp, high as usize, low as usize)
                .map_err(raise_errno)?;
        }
        Ok(none())
    })
}

/// A flag of the payload as a bool attribute, and what setting it does.
macro_rules! flag_attribute {
    ($get:ident, $set:ident, $flag:expr, |$fields:ident, $on:ident| $changed:expr) => {
        unsafe extern "C" fn $get(transport: *mut PyObject, _: *mut c_void) -> *mut PyObject {
            boundary::object(|| {
                // SAFETY: CPython checked the instance.
                Ok(boolean(unsafe { fields(transport) }.has($flag)))
            })
        }

        unsafe extern "C" fn $set(
            transport: *mut PyObject,
            value: *mut PyObject,
            _: *mut c_void,
        ) -> c_int {
            boundary::status(|| {
                refuse_delete(value)?;
                // SAFETY: CPython checked the instance.
                let $fields = unsafe { fields(transport) };
                let $on = call::is_true(value)?;
                $fields.set($flag, $on);
                $changed
            })
        }
    };
}

flag_attribute!(get_receiving, set_receiving, RECEIVING, |fields, on| {
    // The library receives while the protocol does (what a batch brings
    // after a pause is held in Python).
    let udp = fields.udp.get();
    match fields.core_unheld() {
        Some(core) if udp != 0 => {
            let mut io = core.io()?;
            let changed = if on {
                io.udp_resume(udp)
            } else {
                io.udp_pause(udp)
            };
            changed.map_err(raise_errno)
        }
        _ => Ok(()),
    }
});

flag_attribute!(get_fast_send, set_fast_send, FAST_SEND, |fields, on| {
    if on && fields.has(GONE) {
        fields.set(FAST_SEND, false);
    }
    Ok(())
});
