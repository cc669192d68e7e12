//! The native base of the package's asyncio event loop (`EventLoop` in the
//! module): its state ([`LoopCore`]: the stream layer's loop, the ready
//! queue, the timer heap, the fds and transports it serves), the type's
//! life (made with its core, shown to the garbage collector, torn down),
//! and the methods that replace asyncio's where the hot path runs:
//! `call_soon`, `call_soon_threadsafe`, `call_later`, `call_at`, `time`,
//! `create_future`, `get_debug`, `_run_once` and the attributes
//! `_stopping`, `_debug`, `_closed`. The Python class derives from it and
//! from asyncio's `SelectorEventLoop`, which provides everything else.
//!
//! The iteration itself is in `iteration.rs`; transports in `transport.rs`
//! and `protocol.rs`; raw fds and listeners in `watches.rs`.
//!
//! The rule that keeps re-entry safe: no `RefCell` of the core is borrowed
//! while Python code runs, nor while a reference is released (a release may
//! run a finalizer). Any callback may call any method here.

use std::cell::{Cell, RefCell, RefMut};
use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::os::fd::RawFd;
use std::ptr::null_mut;

use super::api::{
    api, PyObject, METH_FASTCALL, METH_KEYWORDS, METH_NOARGS, METH_O, PY_TPFLAGS_HAVE_GC,
};
use super::args::FastArgs;
use super::boundary;
use super::call::{self, is_true};
use super::error::{raise, raise_errno, PyErr, PyResult};
use super::handle::{self, as_float, float};
use super::module::rt;
use super::object::{boolean, none, Owned};
use super::ready::{ReadyItem, ReadyQueue};
use super::timers::Timers;
use super::typespec::{
    refuse_delete, NativeType, TypeBuilder, PY_TP_CLEAR, PY_TP_DEALLOC, PY_TP_FREE, PY_TP_NEW,
    PY_TP_TRAVERSE,
};
use super::watches::Listener;
use crate::stream::{self, StreamLoop};

/// What the stream layer keeps for a stream or registration: a stream's
/// transport (its address; the core holds the reference), or the kind of a
/// registered fd.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub(super) struct Token(usize);

impl Token {
    /// One of asyncio's readers or writers (`add_reader`...).
    pub(super) const WATCH: Token = Token(1);
    /// A listening socket served natively.
    pub(super) const LISTENER: Token = Token(2);

    pub(super) fn transport(transport: *mut PyObject) -> Token {
        Token(transport as usize)
    }

    pub(super) fn as_transport(self) -> *mut PyObject {
        self.0 as *mut PyObject
    }

    /// A datagram transport's UDP socket: its address, tagged in the low
    /// bit (free in an object's aligned address) to tell it from a stream's.
    pub(super) fn datagram(transport: *mut PyObject) -> Token {
        Token(transport as usize | 1)
    }

    /// The datagram transport of a UDP socket's token.
    pub(super) fn as_datagram(self) -> Option<*mut PyObject> {
        (self.0 & 1 != 0 && self != Token::WATCH).then_some((self.0 & !1) as *mut PyObject)
    }
}

/// The loop object's payload: its core, made with the object.
#[repr(C)]
pub(super) struct LoopFields {
    core: Cell<*mut LoopCore>,
}

/// Everything the native loop keeps.
pub(super) struct LoopCore {
    /// The stream layer's loop; `None` once the loop is closed.
    pub(super) io: RefCell<Option<StreamLoop<Token>>>,
    /// Wakes the wait from any thread (call_soon_threadsafe).
    pub(super) waker: stream::Handle<Token>,
    pub(super) ready: RefCell<ReadyQueue>,
    pub(super) timers: RefCell<Timers>,
    /// asyncio's readers and writers, by fd: (events, (reader, writer)).
    pub(super) watches: RefCell<HashMap<RawFd, (u32, Owned)>>,
    pub(super) listeners: RefCell<HashMap<RawFd, Listener>>,
    /// The transports attached to this loop, by address: each is held
    /// from its making until its connection_lost() has returned.
    pub(super) transports: RefCell<HashMap<usize, Owned>>,
    /// The datagram transports with a UDP socket, by address, held until
    /// the socket's end (datagram.rs).
    pub(super) datagrams: RefCell<HashMap<usize, Owned>>,
    /// Transports whose protocol was told to pause writing.
    pub(super) paused_writers: RefCell<Vec<Owned>>,
    /// `{'loop': self}`, made once: create_future's keyword arguments.
    future_kwargs: RefCell<Option<Owned>>,
    pub(super) stopping: Cell<bool>,
    pub(super) debug: Cell<bool>,
    pub(super) closed: Cell<bool>,
    /// Inside `_run_once` (which does not nest).
    pub(super) running: Cell<bool>,
    /// The loop object, which owns this core (borrowed).
    pub(super) pyloop: *mut PyObject,
}

/// The loop's clock, as asyncio's `loop.time()`: CLOCK_MONOTONIC in
/// seconds (what `time.monotonic()` reads).
pub(super) fn now() -> f64 {
    crate::sys::now_ns() as f64 / 1e9
}

impl LoopCore {
    fn new(pyloop: *mut PyObject) -> PyResult<LoopCore> {
        let io = StreamLoop::new().map_err(raise_errno)?;
        Ok(LoopCore {
            waker: io.handle(),
            io: RefCell::new(Some(io)),
            ready: RefCell::default(),
            timers: RefCell::default(),
            watches: RefCell::default(),
            listeners: RefCell::default(),
            transports: RefCell::default(),
            datagrams: RefCell::default(),
            paused_writers: RefCell::default(),
            future_kwargs: RefCell::default(),
            stopping: Cell::new(false),
            debug: Cell::new(false),
            closed: Cell::new(false),
            running: Cell::new(false),
            pyloop,
        })
    }

    /// The stream layer's loop, for one step (never across Python code).
    pub(super) fn io(&self) -> PyResult<RefMut<'_, StreamLoop<Token>>> {
        let io = self.io.try_borrow_mut().map_err(|_| {
            raise(
                api().PyExc_RuntimeError,
                c"evloop: the event loop is in use by another thread (waiting for events); \
                  from other threads, use call_soon_threadsafe()",
            )
        })?;
        RefMut::filter_map(io, Option::as_mut)
            .map_err(|_| raise(api().PyExc_RuntimeError, c"Event loop is closed"))
    }

    /// The stream layer's loop for a step that has nothing to do once the
    /// loop is closed (or, never while such a step runs, borrowed).
    pub(super) fn io_if_open(&self) -> Option<RefMut<'_, StreamLoop<Token>>> {
        match self.io() {
            Ok(io) => Some(io),
            Err(_set) => {
                // SAFETY: clears the error io() raised: nothing to report.
                unsafe { (api().PyErr_Clear)() };
                None
            }
        }
    }

    /// `handle` at the end of the ready queue.
    pub(super) fn push_ready(&self, item: ReadyItem) {
        self.ready.borrow_mut().push_back(item);
    }

    /// Lets go of everything the loop holds: queued callbacks, timers, fds,
    /// listeners, and the transports, which are detached (their streams
    /// ended; their sockets stay theirs). The stream layer's loop stays
    /// until `close_io`. Python code may run (finalizers) as this releases.
    pub(super) fn release_all(&self) {
        let transports: Vec<Owned> = self
            .transports
            .borrow_mut()
            .drain()
            .map(|(_, t)| t)
            .collect();
        for transport in &transports {
            super::transport::detach(transport.as_ptr(), self);
        }
        let datagrams: Vec<Owned> = self
            .datagrams
            .borrow_mut()
            .drain()
            .map(|(_, t)| t)
            .collect();
        for transport in &datagrams {
            super::datagram::detach(transport.as_ptr());
        }
        let ready = std::mem::take(&mut *self.ready.borrow_mut());
        let timers = self.timers.borrow_mut().take_all();
        let watches = std::mem::take(&mut *self.watches.borrow_mut());
        let listeners = std::mem::take(&mut *self.listeners.borrow_mut());
        let paused = std::mem::take(&mut *self.paused_writers.borrow_mut());
        let future_kwargs = self.future_kwargs.borrow_mut().take();
        if let Some(mut io) = self.io_if_open() {
            for &fd in watches.keys().chain(listeners.keys()) {
                let _ = io.unregister(fd);
            }
        }
        drop((
            transports,
            datagrams,
            ready,
            timers,
            watches,
            listeners,
            paused,
            future_kwargs,
        ));
    }

    /// Closes the stream layer's loop (its epoll fd and the streams' fds).
    pub(super) fn close_io(&self) {
        let io = self.io.borrow_mut().take();
        drop(io);
    }

    /// Visits every reference the loop holds (the garbage collector's
    /// traversal). Parts borrowed at the moment are skipped: they are being
    /// changed by a method of the loop, which the collector interrupted.
    fn traverse(&self, visit: VisitProc, arg: *mut c_void) -> c_int {
        let mut references: Vec<*mut PyObject> = Vec::new();
        if let Ok(ready) = self.ready.try_borrow() {
            references.extend(
                ready
                    .iter()
                    .flat_map(ReadyItem::references)
                    .map(Owned::as_ptr),
            );
        }
        if let Ok(timers) = self.timers.try_borrow() {
            references.extend(timers.handles().map(Owned::as_ptr));
        }
        if let Ok(watches) = self.watches.try_borrow() {
            references.extend(watches.values().map(|(_, data)| data.as_ptr()));
        }
        if let Ok(listeners) = self.listeners.try_borrow() {
            references.extend(
                listeners
                    .values()
                    .flat_map(Listener::references)
                    .map(Owned::as_ptr),
            );
        }
        if let Ok(transports) = self.transports.try_borrow() {
            references.extend(transports.values().map(Owned::as_ptr));
        }
        if let Ok(datagrams) = self.datagrams.try_borrow() {
            references.extend(datagrams.values().map(Owned::as_ptr));
        }
        if let Ok(paused) = self.paused_writers.try_borrow() {
            references.extend(paused.iter().map(Owned::as_ptr));
        }
        if let Ok(kwargs) = self.future_kwargs.try_borrow() {
            references.extend(kwargs.iter().map(Owned::as_ptr));
        }
        for object in references {
            // SAFETY: a live object the loop holds; visit is the collector's.
            let result = unsafe { visit(object, arg) };
            if result != 0 {
                return result;
            }
        }
        0
    }

    /// A new handle of `callback(*args)` in `context` (a copy of the
    /// current one if `None`): due at `when` in the timer heap, or else at
    /// the end of the ready queue. `method` names the caller (debug mode's
    /// checks; `call_soon_threadsafe` skips the thread's).
    pub(super) fn schedule(
        &self,
        method: &std::ffi::CStr,
        when: Option<f64>,
        callback: *mut PyObject,
        args: &[*mut PyObject],
        context: Option<*mut PyObject>,
    ) -> PyResult<Owned> {
        self.check_open()?;
        if self.debug.get() {
            self.check_callback(callback, method)?;
        }
        let handle = handle::new_handle(rt(), callback, args, given(context), self.pyloop, when)?;
        if self.debug.get() {
            self.set_source_traceback(&handle)?;
        }
        match when {
            Some(when) => {
                // SAFETY: a TimerHandle just made.
                unsafe { handle::fields(handle.as_ptr()) }
                    .scheduled
                    .set(true);
                self.timers.borrow_mut().push(when, handle.clone_ref());
            }
            None => self.push_ready(ReadyItem::Handle(handle.clone_ref())),
        }
        Ok(handle)
    }

    pub(super) fn check_open(&self) -> PyResult<()> {
        if self.closed.get() {
            return Err(raise(api().PyExc_RuntimeError, c"Event loop is closed"));
        }
        Ok(())
    }

    /// Debug mode: asyncio's checks of the thread (but from
    /// call_soon_threadsafe) and of the callback.
    fn check_callback(&self, callback: *mut PyObject, method: &std::ffi::CStr) -> PyResult<()> {
        let names = &rt().names;
        if method != c"call_soon_threadsafe" {
            call::method0(self.pyloop, names.check_thread.as_ptr())?;
        }
        let method = super::module::intern(method)?;
        call::method2(
            self.pyloop,
            names.check_callback.as_ptr(),
            callback,
            method.as_ptr(),
        )?;
        Ok(())
    }

    /// Debug mode: where the handle was made, from the caller of the
    /// method that made it (a native method has no frame of its own).
    fn set_source_traceback(&self, handle: &Owned) -> PyResult<()> {
        if let Some(hook) = rt().hooks.source_traceback.get_owned() {
            let stack = call::call0(hook.as_ptr())?;
            // SAFETY: a handle of ours.
            drop(
                unsafe { handle::fields(handle.as_ptr()) }
                    .source_traceback
                    .replace(Some(stack)),
            );
        }
        Ok(())
    }

    /// Wakes the wait, from any thread.
    pub(super) fn wake(&self) {
        self.waker.wake();
    }
}

impl Drop for LoopCore {
    fn drop(&mut self) {
        self.release_all();
        self.close_io();
    }
}

/// A context given to call_soon & co: `None` (Python's) means none.
fn given(context: Option<*mut PyObject>) -> Option<Owned> {
    let none_object = api().none;
    // SAFETY: a live argument of the call.
    context
        .filter(|&context| context != none_object)
        .map(|context| unsafe { Owned::borrowed(context) })
}

/// A tuple of the borrowed `items`.
pub(super) fn tuple(items: &[*mut PyObject]) -> PyResult<Owned> {
    if items.is_empty() {
        return Ok(rt().empty_tuple.clone_ref());
    }
    let api = api();
    // SAFETY: a new tuple, a new reference or NULL.
    let tuple = unsafe { Owned::new((api.PyTuple_New)(items.len() as isize))? };
    for (i, &item) in items.iter().enumerate() {
        // SAFETY: SetItem steals the new reference made for it; the index
        // is in range of the fresh tuple.
        unsafe {
            (api.PyTuple_SetItem)(tuple.as_ptr(), i as isize, Owned::borrowed(item).into_raw())
        };
    }
    Ok(tuple)
}

type VisitProc = unsafe extern "C" fn(*mut PyObject, *mut c_void) -> c_int;

/// Makes the type `EventLoop` of the module.
pub(super) fn make_type(object_offset: usize) -> PyResult<NativeType<LoopFields>> {
    const FAST: c_int = METH_FASTCALL | METH_KEYWORDS;
    TypeBuilder::<LoopFields>::new(
        c"evloop._native.EventLoop",
        c"The native part of evloop's asyncio event loop: its iteration, ready queue, timers and socket transports.",
        None,
        object_offset,
    )
    .flags(PY_TPFLAGS_HAVE_GC)
    .slot(PY_TP_NEW, loop_new as *mut c_void)
    .slot(PY_TP_DEALLOC, loop_dealloc as *mut c_void)
    .slot(PY_TP_TRAVERSE, loop_traverse as *mut c_void)
    .slot(PY_TP_CLEAR, loop_clear as *mut c_void)
    .method(c"call_soon", call_soon as *mut c_void, FAST, c"call_soon(callback, *args, context=None) -> Handle")
    .method(c"_call_soon", underscore_call_soon as *mut c_void, FAST, c"_call_soon(callback, args, context) -> Handle")
    .method(
        c"call_soon_threadsafe",
        call_soon_threadsafe as *mut c_void,
        FAST,
        c"call_soon_threadsafe(callback, *args, context=None) -> Handle: from any thread",
    )
    .method(c"call_later", call_later as *mut c_void, FAST, c"call_later(delay, callback, *args, context=None) -> TimerHandle")
    .method(c"call_at", call_at as *mut c_void, FAST, c"call_at(when, callback, *args, context=None) -> TimerHandle")
    .method(c"time", time as *mut c_void, METH_NOARGS, c"the loop's clock (time.monotonic())")
    .method(c"create_future", create_future as *mut c_void, METH_NOARGS, c"a Future of this loop (_asyncio.Future)")
    .method(c"create_task", create_task as *mut c_void, FAST, c"create_task(coro, *, name=None, context=None) -> Task")
    .method(c"get_debug", get_debug as *mut c_void, METH_NOARGS, c"whether debug mode is on")
    .method(c"_add_callback", add_callback as *mut c_void, METH_O, c"_add_callback(handle): queues an asyncio Handle")
    .method(
        c"_timer_handle_cancelled",
        timer_handle_cancelled as *mut c_void,
        METH_O,
        c"_timer_handle_cancelled(handle): counts a cancelled timer",
    )
    .method(c"_run_once", run_once as *mut c_void, METH_NOARGS, c"one iteration: wait, then run what is ready")
    .method(
        c"_run_until_stopped",
        run_until_stopped as *mut c_void,
        METH_NOARGS,
        c"iterations until stop() (run_forever's loop)",
    )
    .method(c"_close_native", close_native as *mut c_void, METH_NOARGS, c"lets go of everything; closes the epoll fd")
    .method(
        c"_make_transport",
        super::transport::make_transport as *mut c_void,
        FAST,
        c"_make_transport(cls, sock, protocol, extra, server) -> transport on the socket",
    )
    .method(c"_make_tls_transport", super::tls::make_tls_transport as *mut c_void, FAST, c"_make_tls_transport(cls, sock, protocol, extra, server, config, server_name, handshake_ms) -> transport over a TLS stream")
    .method(c"_udp_open", super::datagram::udp_open as *mut c_void, FAST, c"_udp_open(transport, fd, connected)")
    .method(c"_watch_fd", super::watches::watch_fd as *mut c_void, FAST, c"_watch_fd(fd, events, data)")
    .method(c"_unwatch_fd", super::watches::unwatch_fd as *mut c_void, METH_O, c"_unwatch_fd(fd)")
    .method(c"_serve", super::watches::serve as *mut c_void, FAST, c"_serve(sock, callback, backlog): accepts natively")
    .method(c"_unserve", super::watches::unserve as *mut c_void, METH_O, c"_unserve(fd)")
    .getset(c"_stopping", get_stopping, Some(set_stopping), c"whether stop() was called")
    .getset(c"_debug", get_debug_attr, Some(set_debug_attr), c"debug mode")
    .getset(c"_closed", get_closed, Some(set_closed), c"whether close() was called")
    .build()
}

/// The core of a loop object.
///
/// # Safety
/// `object` is a live instance of the loop type (or a subclass), and stays
/// so while the reference is used.
pub(super) unsafe fn core_of<'a>(object: *mut PyObject) -> PyResult<&'a LoopCore> {
    // SAFETY: as the caller promised.
    let core = unsafe { rt().event_loop.payload(object) }.core.get();
    if core.is_null() {
        return Err(raise(
            api().PyExc_RuntimeError,
            c"evloop: the event loop was torn down",
        ));
    }
    // SAFETY: made in loop_new, freed only in loop_dealloc, when the object dies.
    Ok(unsafe { &*core })
}

unsafe extern "C" fn loop_new(
    subtype: *mut PyObject,
    _args: *mut PyObject,
    _kwargs: *mut PyObject,
) -> *mut PyObject {
    boundary::object(|| {
        let rt = rt();
        // SAFETY: CPython calls tp_new with the type being instantiated: ours
        // or a subclass.
        let object = unsafe { rt.event_loop.alloc(subtype)? };
        let core = LoopCore::new(object.as_ptr())?;
        // SAFETY: a fresh instance.
        unsafe { rt.event_loop.payload(object.as_ptr()) }
            .core
            .set(Box::into_raw(Box::new(core)));
        Ok(object)
    })
}

unsafe extern "C" fn loop_dealloc(object: *mut PyObject) {
    boundary::infallible(|| {
        let api = api();
        // SAFETY: a dying instance of ours: untracked first, as for every
        // garbage-collected type.
        unsafe { (api.PyObject_GC_UnTrack)(object.cast()) };
        // SAFETY: the instance's payload; nothing else uses it now.
        let core = unsafe { rt().event_loop.payload(object) }
            .core
            .replace(null_mut());
        if !core.is_null() {
            // SAFETY: made by Box::into_raw in loop_new, freed once, here.
            drop(unsafe { Box::from_raw(core) });
        }
        // SAFETY: the instance's type (a heap type: ours or a subclass),
        // whose tp_free releases the memory; instances of heap types hold
        // a reference to their type, given back after the memory.
        unsafe {
            let ty = (api.PyObject_Type)(object);
            let free: unsafe extern "C" fn(*mut c_void) =
                std::mem::transmute((api.PyType_GetSlot)(ty, PY_TP_FREE));
            free(object.cast());
            (api.Py_DecRef)(ty);
            (api.Py_DecRef)(ty);
        }
    })
}

unsafe extern "C" fn loop_traverse(
    object: *mut PyObject,
    visit: VisitProc,
    arg: *mut c_void,
) -> c_int {
    boundary::infallible(|| {
        // SAFETY: a live instance of ours, as the collector passes.
        let core = unsafe { rt().event_loop.payload(object) }.core.get();
        if core.is_null() {
            return 0;
        }
        // SAFETY: live until the object dies.
        unsafe { &*core }.traverse(visit, arg)
    })
}

unsafe extern "C" fn loop_clear(object: *mut PyObject) -> c_int {
    boundary::infallible(|| {
        // SAFETY: a live instance of ours, as the collector passes.
        let core = unsafe { rt().event_loop.payload(object) }.core.get();
        if !core.is_null() {
            // SAFETY: live until the object dies.
            unsafe { &*core }.release_all();
        }
        0
    })
}

/// A fast-call method of the loop (`METH_FASTCALL | METH_KEYWORDS`): its
/// body gets the loop object, its core and its arguments.
macro_rules! loop_method {
    ($(#[$doc:meta])* $vis:vis $name:ident, |$object:ident, $core:ident, $args:ident| $body:expr) => {
        $(#[$doc])*
        $vis unsafe extern "C" fn $name(
            $object: *mut PyObject,
            args: *const *mut PyObject,
            nargs: isize,
            kwnames: *mut PyObject,
        ) -> *mut PyObject {
            $crate::cpython::boundary::object(|| {
                // SAFETY: CPython checked `object` is an instance of the
                // loop type, alive for the call.
                let $core = unsafe { $crate::cpython::event_loop::core_of($object)? };
                // SAFETY: CPython's fast-call arguments, alive for the call.
                let $args = unsafe { $crate::cpython::args::FastArgs::new(args, nargs, kwnames) };
                $body
            })
        }
    };
}
pub(super) use loop_method;

/// `(first, rest)` of the positional arguments, or TypeError.
fn split<'a>(
    args: &FastArgs<'a>,
    function: &str,
    first: &str,
) -> PyResult<(*mut PyObject, &'a [*mut PyObject])> {
    args.positional
        .split_first()
        .map(|(first, rest)| (*first, rest))
        .ok_or_else(|| {
            super::error::raise_string(
                api().PyExc_TypeError,
                &format!("{function}() missing 1 required positional argument: '{first}'"),
            )
        })
}

loop_method!(call_soon, |_object, core, args| {
    let context = args.keyword(
        "call_soon",
        c"context",
        Some(&rt().hooks.context_keyword),
        &[],
    )?;
    let (callback, rest) = split(&args, "call_soon", "callback")?;
    core.schedule(c"call_soon", None, callback, rest, context)
});

loop_method!(call_soon_threadsafe, |_object, core, args| {
    let context = args.keyword(
        "call_soon_threadsafe",
        c"context",
        Some(&rt().hooks.context_keyword),
        &[],
    )?;
    let (callback, rest) = split(&args, "call_soon_threadsafe", "callback")?;
    let handle = core.schedule(c"call_soon_threadsafe", None, callback, rest, context)?;
    core.wake();
    Ok(handle)
});

loop_method!(underscore_call_soon, |_object, core, args| {
    let &[callback, call_args, context] = args.positional else {
        return Err(raise(
            api().PyExc_TypeError,
            c"_call_soon(callback, args, context)",
        ));
    };
    let call_args = call_args_of(call_args)?;
    core.schedule(c"call_soon", None, callback, &call_args, Some(context))
});

loop_method!(call_later, |_object, core, args| {
    let context = args.keyword(
        "call_later",
        c"context",
        Some(&rt().hooks.context_keyword),
        &[],
    )?;
    let (delay, rest) = split(&args, "call_later", "delay")?;
    let (callback, rest) = split_rest(rest, "call_later", "callback")?;
    let when = now() + as_float(delay)?;
    core.schedule(c"call_later", Some(when), callback, rest, context)
});

loop_method!(call_at, |_object, core, args| {
    let context = args.keyword(
        "call_at",
        c"context",
        Some(&rt().hooks.context_keyword),
        &[],
    )?;
    let (when, rest) = split(&args, "call_at", "when")?;
    let (callback, rest) = split_rest(rest, "call_at", "callback")?;
    core.schedule(c"call_at", Some(as_float(when)?), callback, rest, context)
});

fn split_rest<'a>(
    rest: &'a [*mut PyObject],
    function: &str,
    name: &str,
) -> PyResult<(*mut PyObject, &'a [*mut PyObject])> {
    rest.split_first()
        .map(|(first, rest)| (*first, rest))
        .ok_or_else(|| {
            super::error::raise_string(
                api().PyExc_TypeError,
                &format!("{function}() missing 1 required positional argument: '{name}'"),
            )
        })
}

/// The items of a tuple given as `args` (borrowed from it).
fn call_args_of(args: *mut PyObject) -> PyResult<Vec<*mut PyObject>> {
    let api = api();
    // SAFETY: a live object; -1 with TypeError if it is not a tuple.
    let size = unsafe { (api.PyTuple_Size)(args) };
    if size < 0 {
        return Err(PyErr::taken());
    }
    // SAFETY: indexes in range; borrowed items of a tuple the caller keeps.
    Ok((0..size)
        .map(|i| unsafe { (api.PyTuple_GetItem)(args, i) })
        .collect())
}

unsafe extern "C" fn time(_object: *mut PyObject, _: *mut PyObject) -> *mut PyObject {
    boundary::object(|| float(now()))
}

unsafe extern "C" fn create_future(object: *mut PyObject, _: *mut PyObject) -> *mut PyObject {
    boundary::object(|| {
        let (api, rt) = (api(), rt());
        // SAFETY: CPython checked the instance.
        let core = unsafe { core_of(object)? };
        // `Future(loop=self)`, the keyword arguments made once (the Future
        // type has no vectorcall: keyword names would become a new dict at
        // every call). Not `Future()`, though it parses less: the running
        // loop it would look up costs a getpid() syscall before 3.12.
        let kwargs = core.future_kwargs()?;
        let kwargs = kwargs.as_ptr();
        // SAFETY: live callable, tuple and dict; a new reference or NULL.
        unsafe {
            Owned::new((api.PyObject_Call)(
                rt.future_type.as_ptr(),
                rt.empty_tuple.as_ptr(),
                kwargs,
            ))
        }
    })
}

/// `create_task(coro, *, name=None, context=None)`: `Task(coro, loop=self,
/// ...)` made here in the usual case (no task factory, debug mode off);
/// asyncio's own method otherwise, which knows this Python's details.
unsafe extern "C" fn create_task(
    object: *mut PyObject,
    args: *const *mut PyObject,
    nargs: isize,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    boundary::object(|| {
        let (api, rt) = (api(), rt());
        // SAFETY: CPython checked the instance and passes its arguments.
        let (core, fast) = unsafe { (core_of(object)?, FastArgs::new(args, nargs, kwnames)) };
        let factory = call::getattr(object, rt.names.task_factory.as_ptr())?;
        if core.debug.get() || !factory.is_none() || fast.positional.len() != 1 {
            // SAFETY: asyncio's function, called with this loop first and
            // the arguments as given (fast-call: self prepended).
            let mut all: Vec<*mut PyObject> = vec![object];
            // SAFETY: `nargs` positional values then one per keyword name.
            let given = unsafe { std::slice::from_raw_parts(args, fast.count()) };
            all.extend_from_slice(given);
            return match api.PyObject_Vectorcall {
                // SAFETY: the arguments of this call, self first.
                Some(vectorcall) => unsafe {
                    Owned::new(vectorcall(
                        rt.base_create_task.as_ptr(),
                        all.as_ptr(),
                        (nargs + 1) as usize,
                        kwnames,
                    ))
                },
                None => call_with(
                    rt.base_create_task.as_ptr(),
                    &all[..=fast.positional.len()],
                    &fast,
                ),
            };
        }
        core.check_open()?;
        let name = fast.keyword("create_task", c"name", None, &[c"context"])?;
        let context = fast.keyword("create_task", c"context", None, &[c"name"])?;
        let kwargs = core.future_kwargs()?;
        let none_object = api.none;
        let extra: Vec<(&std::ffi::CStr, *mut PyObject)> = [(c"name", name), (c"context", context)]
            .into_iter()
            .filter_map(|(key, value)| value.filter(|&v| v != none_object).map(|v| (key, v)))
            .collect();
        let kwargs = if extra.is_empty() {
            kwargs
        } else {
            // SAFETY: a copy of a live dict; a new reference or NULL.
            let copy = unsafe { Owned::new((api.PyDict_Copy)(kwargs.as_ptr()))? };
            for (key, value) in extra {
                // SAFETY: a live dict, key and value; the dict takes its reference.
                if unsafe { (api.PyDict_SetItemString)(copy.as_ptr(), key.as_ptr(), value) } < 0 {
                    return Err(PyErr::taken());
                }
            }
            copy
        };
        let coro = tuple(fast.positional)?;
        // SAFETY: live callable, tuple and dict; a new reference or NULL.
        unsafe {
            Owned::new((api.PyObject_Call)(
                rt.task_type.as_ptr(),
                coro.as_ptr(),
                kwargs.as_ptr(),
            ))
        }
    })
}

/// `callable(*positional, **keywords of `fast`)`, without vectorcall.
fn call_with(
    callable: *mut PyObject,
    positional: &[*mut PyObject],
    fast: &FastArgs<'_>,
) -> PyResult<Owned> {
    let api = api();
    let args = tuple(positional)?;
    // SAFETY: a new dict; a new reference or NULL.
    let kwargs = unsafe { Owned::new((api.PyDict_New)())? };
    for (key, value) in fast.keywords() {
        // SAFETY: a live dict, key and value; the dict takes its references.
        if unsafe { (api.PyDict_SetItem)(kwargs.as_ptr(), key, value) } < 0 {
            return Err(PyErr::taken());
        }
    }
    // SAFETY: live callable, tuple and dict; a new reference or NULL.
    unsafe {
        Owned::new((api.PyObject_Call)(
            callable,
            args.as_ptr(),
            kwargs.as_ptr(),
        ))
    }
}

impl LoopCore {
    /// `{'loop': self}`.
    pub(super) fn future_kwargs(&self) -> PyResult<Owned> {
        if let Some(kwargs) = self.future_kwargs.borrow().as_ref() {
            return Ok(kwargs.clone_ref());
        }
        let api = api();
        // SAFETY: a new dict; a new reference or NULL.
        let kwargs = unsafe { Owned::new((api.PyDict_New)())? };
        // SAFETY: a live dict and value; the dict takes its own reference.
        if unsafe { (api.PyDict_SetItemString)(kwargs.as_ptr(), c"loop".as_ptr(), self.pyloop) } < 0
        {
            return Err(PyErr::taken());
        }
        *self.future_kwargs.borrow_mut() = Some(kwargs.clone_ref());
        Ok(kwargs)
    }
}

unsafe extern "C" fn get_debug(object: *mut PyObject, _: *mut PyObject) -> *mut PyObject {
    boundary::object(|| {
        // SAFETY: CPython checked the instance.
        Ok(boolean(unsafe { core_of(object)? }.debug.get()))
    })
}

unsafe extern "C" fn add_callback(object: *mut PyObject, handle: *mut PyObject) -> *mut PyObject {
    boundary::object(|| {
        // SAFETY: CPython checked the instance.
        let core = unsafe { core_of(object)? };
        // SAFETY: a live argument of the call.
        let owned = unsafe { Owned::borrowed(handle) };
        if handle::is_ours(handle) {
            // SAFETY: one of our handles.
            if !unsafe { handle::fields(handle) }.cancelled.get() {
                core.push_ready(ReadyItem::Handle(owned));
            }
        } else {
            let cancelled = call::getattr(handle, rt().names.cancelled.as_ptr())?;
            if !is_true(cancelled.as_ptr())? {
                core.push_ready(ReadyItem::Foreign(owned));
            }
        }
        Ok(none())
    })
}

unsafe extern "C" fn timer_handle_cancelled(
    object: *mut PyObject,
    handle: *mut PyObject,
) -> *mut PyObject {
    boundary::object(|| {
        // SAFETY: CPython checked the instance.
        let core = unsafe { core_of(object)? };
        // SAFETY: one of our handles when is_ours says so.
        if handle::is_ours(handle) && unsafe { handle::fields(handle) }.scheduled.get() {
            core.timers.borrow_mut().cancelled += 1;
        }
        Ok(none())
    })
}

unsafe extern "C" fn run_once(object: *mut PyObject, _: *mut PyObject) -> *mut PyObject {
    boundary::object(|| {
        // SAFETY: CPython checked the instance.
        let core = unsafe { core_of(object)? };
        core.guarded_run(|core| core.run_once())?;
        Ok(none())
    })
}

unsafe extern "C" fn run_until_stopped(object: *mut PyObject, _: *mut PyObject) -> *mut PyObject {
    boundary::object(|| {
        // SAFETY: CPython checked the instance.
        let core = unsafe { core_of(object)? };
        core.guarded_run(|core| loop {
            core.run_once()?;
            if core.stopping.get() {
                return Ok(());
            }
        })?;
        Ok(none())
    })
}

impl LoopCore {
    /// Runs iterations, refusing to nest (a callback running the loop).
    fn guarded_run(&self, body: impl FnOnce(&LoopCore) -> PyResult<()>) -> PyResult<()> {
        if self.running.replace(true) {
            return Err(raise(
                api().PyExc_RuntimeError,
                c"This event loop is already running",
            ));
        }
        let result = body(self);
        self.running.set(false);
        result
    }
}

unsafe extern "C" fn close_native(object: *mut PyObject, _: *mut PyObject) -> *mut PyObject {
    boundary::object(|| {
        // SAFETY: CPython checked the instance.
        let core = unsafe { core_of(object)? };
        if core.running.get() {
            return Err(raise(
                api().PyExc_RuntimeError,
                c"Cannot close a running event loop",
            ));
        }
        core.closed.set(true);
        core.release_all();
        core.close_io();
        Ok(none())
    })
}

/// A getter and a setter of a flag of the core.
macro_rules! flag_attribute {
    ($get:ident, $set:ident, $field:ident) => {
        unsafe extern "C" fn $get(object: *mut PyObject, _: *mut c_void) -> *mut PyObject {
            boundary::object(|| {
                // SAFETY: CPython checked the instance.
                Ok(boolean(unsafe { core_of(object)? }.$field.get()))
            })
        }

        unsafe extern "C" fn $set(
            object: *mut PyObject,
            value: *mut PyObject,
            _: *mut c_void,
        ) -> c_int {
            boundary::status(|| {
                refuse_delete(value)?;
                // SAFETY: CPython checked the instance.
                let core = unsafe { core_of(object)? };
                core.$field.set(is_true(value)?);
                Ok(())
            })
        }
    };
}

flag_attribute!(get_stopping, set_stopping, stopping);
flag_attribute!(get_debug_attr, set_debug_attr, debug);
flag_attribute!(get_closed, set_closed, closed);
