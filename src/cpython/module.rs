//! The module `evl_cpython_init` returns, and what the layer keeps for the
//! process's life ([`Runtime`]): the native types, the attribute names it
//! calls (interned once), the objects of Python's it uses (asyncio's future
//! type and protocol classes), and the hooks the package gives it.
//!
//! The module holds `EventLoop` (the base of the package's asyncio loop),
//! `Transport`, `Handle`, `TimerHandle`, `configure()` (the hooks), and the
//! layer's `version`.

use std::ffi::{c_long, c_void, CStr};
use std::sync::OnceLock;

use super::api::{api, PyObject, METH_FASTCALL, METH_KEYWORDS};
use super::args::FastArgs;
use super::boundary;
use super::error::{raise, PyErr, PyResult};
use super::event_loop::{self, LoopFields};
use super::handle::{self, HandleFields};
use super::object::{boolean, none, Owned, Slot};
use super::transport::{self, TransportFields};
use super::typespec::NativeType;

/// Declares the attribute names the layer uses, each interned once.
macro_rules! names {
    ($($field:ident = $text:literal,)*) => {
        pub(super) struct Names {
            $(pub(super) $field: Owned,)*
        }

        impl Names {
            fn intern() -> PyResult<Names> {
                Ok(Names {
                    $($field: intern($text)?,)*
                })
            }
        }
    };
}

names! {
    buffer_updated = c"buffer_updated",
    call_exception_handler = c"call_exception_handler",
    close = c"close",
    done = c"done",
    set_result = c"set_result",
    set_exception = c"set_exception",
    connection_lost = c"connection_lost",
    connection_made = c"connection_made",
    current_handle = c"_current_handle",
    data_received = c"data_received",
    eof_received = c"eof_received",
    exception = c"exception",
    fileno = c"fileno",
    get_buffer = c"get_buffer",
    get_debug = c"get_debug",
    message = c"message",
    pause_writing = c"pause_writing",
    protocol = c"protocol",
    remove_reader = c"_remove_reader",
    remove_writer = c"_remove_writer",
    resume_writing = c"resume_writing",
    run = c"_run",
    cancelled = c"_cancelled",
    check_callback = c"_check_callback",
    check_thread = c"_check_thread",
    name = c"__name__",
    task_factory = c"_task_factory",
    warning = c"warning",
    server_detach = c"_server_detach",
    timer_handle_cancelled = c"_timer_handle_cancelled",
    transport = c"transport",
    datagram_received = c"datagram_received",
    hold = c"_hold",
    sendto_slow = c"_sendto_slow",
    send_outcome = c"_send_outcome",
    udp_error = c"_udp_error",
    udp_drained = c"_stream_drained",
    udp_closed = c"_stream_closed",
}

/// Python functions the package gives the layer (`configure()`), for what
/// depends on the running Python's asyncio: messages and debug-mode logs.
pub(super) struct Hooks {
    /// `callback_error(handle, exc)`: asyncio's "Exception in callback".
    pub(super) callback_error: Slot,
    /// `source_traceback()`: the stack of the caller of call_soon (debug).
    pub(super) source_traceback: Slot,
    /// `slow_callback(what, seconds)`: the debug-mode warning.
    pub(super) slow_callback: Slot,
    /// `debug_log(message, transport, exc)`: asyncio's debug log of
    /// transports' OSErrors.
    pub(super) debug_log: Slot,
    /// The str object that last named call_soon's `context` keyword.
    pub(super) context_keyword: Slot,
}

/// What the layer keeps for the process's life, made at the first init.
pub(super) struct Runtime {
    pub(super) names: Names,
    pub(super) hooks: Hooks,
    pub(super) event_loop: NativeType<LoopFields>,
    pub(super) transport: NativeType<TransportFields>,
    pub(super) datagram: NativeType<super::datagram::DatagramFields>,
    pub(super) handle: NativeType<HandleFields>,
    pub(super) timer_handle: NativeType<HandleFields>,
    /// `_asyncio.Future` (asyncio.Future where the C one is missing).
    pub(super) future_type: Owned,
    /// `asyncio.Task` (the C one where there is one).
    pub(super) task_type: Owned,
    /// asyncio's own `BaseEventLoop.create_task`, for what the native one
    /// leaves to it (a task factory, debug mode).
    pub(super) base_create_task: Owned,
    pub(super) buffered_protocol: Owned,
    /// asyncio's logger (`asyncio.log.logger`).
    pub(super) logger: Owned,
    pub(super) empty_tuple: Owned,
    pub(super) module: Owned,
}

struct Kept(Runtime);

// SAFETY: only used with the GIL held, which orders every access; the
// references it holds are never released (the library stays loaded).
unsafe impl Sync for Kept {}
// SAFETY: as above.
unsafe impl Send for Kept {}

static RUNTIME: OnceLock<Kept> = OnceLock::new();

/// The runtime: always made before anything that reaches this call exists.
#[inline(always)]
pub(super) fn rt() -> &'static Runtime {
    match RUNTIME.get() {
        Some(kept) => &kept.0,
        None => panic!("evloop: the CPython layer was used before evl_cpython_init"),
    }
}

/// A new reference to the module, made on the first call.
pub(super) fn get() -> PyResult<Owned> {
    if let Some(kept) = RUNTIME.get() {
        return Ok(kept.0.module.clone_ref());
    }
    let runtime = make()?;
    // The GIL is held: no other thread can have made one meanwhile.
    Ok(RUNTIME.get_or_init(|| Kept(runtime)).0.module.clone_ref())
}

fn make() -> PyResult<Runtime> {
    let api = api();
    let asyncio_events = import(c"asyncio.events")?;
    let asyncio_transports = import(c"asyncio.transports")?;
    let asyncio_protocols = import(c"asyncio.protocols")?;
    let handle_base = attribute(&asyncio_events, c"Handle")?;
    let timer_base = attribute(&asyncio_events, c"TimerHandle")?;
    // Both handle types put their payload where the larger base ends.
    let handle_offset = basicsize(&handle_base)?.max(basicsize(&timer_base)?);
    let flow_control = attribute(&asyncio_transports, c"_FlowControlMixin")?;
    let transport_offset = basicsize(&flow_control)?;
    let object_offset = basicsize(&builtin(c"object")?)?;
    let future_type = match import(c"_asyncio") {
        Ok(module) => attribute(&module, c"Future")?,
        Err(_) => {
            // SAFETY: clears the ImportError: the Python Future serves.
            unsafe { (api.PyErr_Clear)() };
            attribute(&import(c"asyncio.futures")?, c"Future")?
        }
    };
    let runtime = Runtime {
        names: Names::intern()?,
        hooks: Hooks {
            callback_error: Slot::default(),
            source_traceback: Slot::default(),
            slow_callback: Slot::default(),
            debug_log: Slot::default(),
            context_keyword: Slot::default(),
        },
        event_loop: event_loop::make_type(object_offset)?,
        transport: transport::make_type(flow_control.clone_ref(), transport_offset)?,
        datagram: super::datagram::make_type(flow_control, transport_offset)?,
        handle: handle::make_type(handle_base, handle_offset, false)?,
        timer_handle: handle::make_type(timer_base, handle_offset, true)?,
        future_type,
        task_type: attribute(&import(c"asyncio.tasks")?, c"Task")?,
        base_create_task: attribute(
            &attribute(&import(c"asyncio.base_events")?, c"BaseEventLoop")?,
            c"create_task",
        )?,
        buffered_protocol: attribute(&asyncio_protocols, c"BufferedProtocol")?,
        logger: attribute(&import(c"asyncio.log")?, c"logger")?,
        // SAFETY: a new reference or NULL.
        empty_tuple: unsafe { Owned::new((api.PyTuple_New)(0))? },
        module: make_module()?,
    };
    let module = &runtime.module;
    set(module, c"EventLoop", runtime.event_loop.type_ref())?;
    set(module, c"Transport", runtime.transport.type_ref())?;
    set(module, c"DatagramTransport", runtime.datagram.type_ref())?;
    set(module, c"Handle", runtime.handle.type_ref())?;
    set(module, c"TimerHandle", runtime.timer_handle.type_ref())?;
    Ok(runtime)
}

fn make_module() -> PyResult<Owned> {
    let api = api();
    let module = {
        let name = intern(c"evloop._native.core")?;
        // SAFETY: a str name; a new reference or NULL.
        unsafe { Owned::new((api.PyModule_NewObject)(name.as_ptr()))? }
    };
    // SAFETY: a plain conversion; a new reference or NULL.
    let version =
        unsafe { Owned::new((api.PyLong_FromLong)(super::EVL_CPYTHON_VERSION as c_long))? };
    set(&module, c"version", version)?;
    set(
        &module,
        c"vectorcall",
        boolean(api.PyObject_Vectorcall.is_some()),
    )?;
    set(&module, c"configure", function(&CONFIGURE, &module)?)?;
    super::loop_calls::add_to(&module)?;
    Ok(module)
}

/// `PyMethodDef` of a module-level function.
#[repr(C)]
pub(super) struct FunctionDef {
    name: *const std::ffi::c_char,
    function: *mut c_void,
    flags: std::ffi::c_int,
    doc: *const std::ffi::c_char,
}

// SAFETY: a constant table of static strings and a function, never written.
unsafe impl Sync for FunctionDef {}

impl FunctionDef {
    /// The table of function `function` (a C function for `flags`).
    pub(super) const fn new(
        name: &'static CStr,
        function: *mut c_void,
        flags: std::ffi::c_int,
        doc: &'static CStr,
    ) -> FunctionDef {
        FunctionDef {
            name: name.as_ptr(),
            function,
            flags,
            doc: doc.as_ptr(),
        }
    }
}

static CONFIGURE: FunctionDef = FunctionDef {
    name: c"configure".as_ptr(),
    function: configure as *mut c_void,
    flags: METH_FASTCALL | METH_KEYWORDS,
    doc: c"configure(*, callback_error, source_traceback, slow_callback, debug_log): the package's hooks".as_ptr(),
};

pub(super) fn function(def: &'static FunctionDef, module: &Owned) -> PyResult<Owned> {
    // SAFETY: a static method table; the module is its `self`; a new
    // reference or NULL.
    unsafe {
        Owned::new((api().PyCFunction_NewEx)(
            def as *const FunctionDef as *mut c_void,
            module.as_ptr(),
            std::ptr::null_mut(),
        ))
    }
}

/// `configure(**hooks)`: the package's Python functions (see [`Hooks`]).
unsafe extern "C" fn configure(
    _module: *mut PyObject,
    args: *const *mut PyObject,
    nargs: isize,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    boundary::object(|| {
        let api = api();
        // SAFETY: CPython's fast-call convention: `nargs` positional values
        // then one per keyword name at `args`.
        let args = unsafe { FastArgs::new(args, nargs, kwnames) };
        if !args.positional.is_empty() {
            return Err(raise(
                api.PyExc_TypeError,
                c"configure() takes keyword arguments only",
            ));
        }
        let hooks = &rt().hooks;
        for (name, value) in args.keywords() {
            let slot = [
                (c"callback_error", &hooks.callback_error),
                (c"source_traceback", &hooks.source_traceback),
                (c"slow_callback", &hooks.slow_callback),
                (c"debug_log", &hooks.debug_log),
            ]
            .into_iter()
            // SAFETY: `name` is a str of the kwnames tuple.
            .find(|(text, _)| unsafe { (api.PyUnicode_CompareWithASCIIString)(name, text.as_ptr()) } == 0)
            .map(|(_, slot)| slot);
            let Some(slot) = slot else {
                return Err(raise(api.PyExc_TypeError, c"configure(): unknown hook"));
            };
            // SAFETY: a live argument of the call.
            drop(slot.replace(Some(unsafe { Owned::borrowed(value) })));
        }
        Ok(none())
    })
}

/// An interned str.
pub(super) fn intern(text: &CStr) -> PyResult<Owned> {
    // SAFETY: NUL-terminated; a new reference or NULL.
    unsafe { Owned::new((api().PyUnicode_InternFromString)(text.as_ptr())) }
}

fn import(name: &CStr) -> PyResult<Owned> {
    // SAFETY: NUL-terminated; a new reference or NULL.
    unsafe { Owned::new((api().PyImport_ImportModule)(name.as_ptr())) }
}

fn attribute(object: &Owned, name: &CStr) -> PyResult<Owned> {
    // SAFETY: a live object and a NUL-terminated name; new reference or NULL.
    unsafe {
        Owned::new((api().PyObject_GetAttrString)(
            object.as_ptr(),
            name.as_ptr(),
        ))
    }
}

fn builtin(name: &CStr) -> PyResult<Owned> {
    attribute(&import(c"builtins")?, name)
}

/// `cls.__basicsize__`: the size of an instance's fixed part, asked of
/// Python (it differs between versions and builds).
fn basicsize(class: &Owned) -> PyResult<usize> {
    let size = attribute(class, c"__basicsize__")?;
    // SAFETY: a live int; -1 with an exception set on failure.
    let value = unsafe { (api().PyLong_AsSsize_t)(size.as_ptr()) };
    usize::try_from(value).map_err(|_| PyErr::taken())
}

/// `module.name = value`.
fn set(module: &Owned, name: &CStr, value: Owned) -> PyResult<()> {
    // SAFETY: live objects and a NUL-terminated name; SetAttr takes its own
    // reference to `value`.
    if unsafe { (api().PyObject_SetAttrString)(module.as_ptr(), name.as_ptr(), value.as_ptr()) } < 0
    {
        return Err(PyErr::taken());
    }
    Ok(())
}
