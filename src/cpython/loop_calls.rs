//! The native crossings of `evloop.Loop` and `EvloopSelector`: the library
//! calls their iterations make, called directly instead of through ctypes.
//!
//! Both classes drive a loop of the C API (`evl_loop_new`, through ctypes)
//! and cross into the library once or twice per iteration. Through ctypes
//! each crossing costs a few thousand instructions (argument conversion,
//! the GIL, the result), which with one connection is most of a round trip.
//! These functions make the same calls of the C API ([`crate::ffi`]: the
//! same checks, the same results) as native methods of the module:
//!
//! - `exchange(loop, args)`: `evl_stream_exchange`, the GIL released around
//!   it as ctypes does (timers call back into Python through their ctypes
//!   callbacks, which take it);
//! - `dispatch_data(events, start, end, receivers)`: the DATA events
//!   `start..end` of the exchange's `events` array to their streams'
//!   receivers (`receivers[stream](data)`, a `bytes` made here from the
//!   read buffer; a stream without one was closed since: skipped). At the
//!   first receiver that raises it stops and returns `(next, exc, stream)`
//!   for the package to handle as its ctypes path does; None when done;
//! - `exchange_writes(loop, args)`: `evl_stream_exchange_writes`, the GIL
//!   kept (it never waits);
//! - `select(loop, events, capacity, wait_ms, fd_to_key)`: all of
//!   `EvloopSelector.select()`: `evl_poll` into `events`, retried after a
//!   signal's handlers ran (PEP 475, with what is left of the timeout),
//!   then the list of `(key, events)` built here, each fd's key looked up in
//!   the selector's dict; a failure of evl_poll is returned as its negative
//!   errno, which the package raises as on its ctypes path.
//!
//! The package passes the addresses ctypes would pass (`loop` and `args` as
//! ints, `None` for NULL), under the same contract as the C API: a loop this
//! library made and has not freed, arrays of the sizes given; a NULL loop
//! gets the C API's `-EINVAL`. `evloop/_implementation.py` decides whether
//! the package uses these or its ctypes calls (PyPy, `EVLOOP_IMPL=ctypes`).

use std::ffi::{c_int, c_void, CStr};

use super::api::{api, PyObject, METH_FASTCALL, METH_KEYWORDS};
use super::args::FastArgs;
use super::boundary;
use super::call::call1;
use super::error::{raise, Exception, PyErr, PyResult};
use super::module::{function, FunctionDef};
use super::object::{int, Owned};
use crate::ffi::{
    evl_event, evl_loop, evl_stream_event, evl_stream_exchange_args, EVL_READ, EVL_WRITE,
};

/// `selectors.EVENT_READ` and `EVENT_WRITE`.
const EVENT_READ: u32 = 1;
const EVENT_WRITE: u32 = 2;

/// The module functions of this file, as `(name, table)`.
pub(super) fn functions() -> [(&'static CStr, &'static FunctionDef); 4] {
    [
        (c"exchange", &EXCHANGE),
        (c"dispatch_data", &DISPATCH_DATA),
        (c"exchange_writes", &EXCHANGE_WRITES),
        (c"select", &SELECT),
    ]
}

/// Adds this file's functions to the module.
pub(super) fn add_to(module: &Owned) -> PyResult<()> {
    for (name, def) in functions() {
        let value = function(def, module)?;
        // SAFETY: live objects and a NUL-terminated name; SetAttr takes its
        // own reference to the value.
        if unsafe { (api().PyObject_SetAttrString)(module.as_ptr(), name.as_ptr(), value.as_ptr()) }
            < 0
        {
            return Err(PyErr::taken());
        }
    }
    Ok(())
}

static EXCHANGE: FunctionDef = FunctionDef::new(
    c"exchange",
    exchange as *mut c_void,
    METH_FASTCALL | METH_KEYWORDS,
    c"exchange(loop, args) -> int: evl_stream_exchange, the GIL released",
);
static EXCHANGE_WRITES: FunctionDef = FunctionDef::new(
    c"exchange_writes",
    exchange_writes as *mut c_void,
    METH_FASTCALL | METH_KEYWORDS,
    c"exchange_writes(loop, args) -> int: evl_stream_exchange_writes",
);
static DISPATCH_DATA: FunctionDef = FunctionDef::new(
    c"dispatch_data",
    dispatch_data as *mut c_void,
    METH_FASTCALL | METH_KEYWORDS,
    c"dispatch_data(events, start, end, receivers) -> None or (next, exc, stream)",
);
static SELECT: FunctionDef = FunctionDef::new(
    c"select",
    select as *mut c_void,
    METH_FASTCALL | METH_KEYWORDS,
    c"select(loop, events, capacity, wait_ms, fd_to_key) -> [(key, events)]: EvloopSelector.select()",
);

/// The positional arguments of a module function that takes exactly `N`.
fn positional<'a, const N: usize>(
    args: &FastArgs<'a>,
    usage: &CStr,
) -> PyResult<&'a [*mut PyObject; N]> {
    if args.count() != N {
        return Err(raise(api().PyExc_TypeError, usage));
    }
    args.positional
        .try_into()
        .map_err(|_| raise(api().PyExc_TypeError, usage))
}

/// An address the package passes as an int (`None`: NULL).
fn address<T>(object: *mut PyObject) -> PyResult<*mut T> {
    let api = api();
    if object == api.none {
        return Ok(std::ptr::null_mut());
    }
    // SAFETY: a live object; -1 with an exception set on failure.
    let value = unsafe { (api.PyLong_AsSsize_t)(object) };
    // SAFETY: reads the error indicator.
    if value == -1 && unsafe { !(api.PyErr_Occurred)().is_null() } {
        return Err(PyErr::taken());
    }
    if value < 0 {
        return Err(raise(api.PyExc_ValueError, c"evloop: a negative address"));
    }
    Ok(value as usize as *mut T)
}

/// A C int argument.
fn c_int_of(object: *mut PyObject) -> PyResult<c_int> {
    let api = api();
    // SAFETY: a live object; -1 with an exception set on failure.
    let value = unsafe { (api.PyLong_AsLong)(object) };
    // SAFETY: reads the error indicator.
    if value == -1 && unsafe { !(api.PyErr_Occurred)().is_null() } {
        return Err(PyErr::taken());
    }
    c_int::try_from(value).map_err(|_| raise(api.PyExc_OverflowError, c"evloop: not a C int"))
}

/// Runs `call` with the GIL released (it touches no Python object).
fn without_gil<R>(call: impl FnOnce() -> R) -> R {
    let api = api();
    // SAFETY: this thread holds the GIL (CPython called us); nothing in
    // `call` touches a Python object until it is taken back.
    let state = unsafe { (api.PyEval_SaveThread)() };
    // The C API's functions catch their own panics: `call` does not unwind.
    let result = call();
    // SAFETY: the state saved above, on this thread.
    unsafe { (api.PyEval_RestoreThread)(state) };
    result
}

/// A fast-call module function: its body gets the arguments.
macro_rules! module_function {
    ($(#[$doc:meta])* $name:ident, |$args:ident| $body:expr) => {
        $(#[$doc])*
        unsafe extern "C" fn $name(
            _module: *mut PyObject,
            args: *const *mut PyObject,
            nargs: isize,
            kwnames: *mut PyObject,
        ) -> *mut PyObject {
            boundary::object(|| {
                // SAFETY: CPython's fast-call arguments, alive for the call.
                let $args = unsafe { FastArgs::new(args, nargs, kwnames) };
                $body
            })
        }
    };
}

module_function!(
    /// `exchange(loop, args)`: `evl_stream_exchange`, as ctypes calls it.
    exchange, |args| {
    let &[lp, exchange_args] = positional::<2>(&args, c"exchange(loop, args)")?;
    let lp: *mut evl_loop = address(lp)?;
    let exchange_args: *mut evl_stream_exchange_args = address(exchange_args)?;
    // SAFETY: the C API's contract, which the package keeps as it does for
    // ctypes: a live loop of this library (or NULL: -EINVAL) used on this
    // thread, and the arguments struct it keeps with its arrays.
    let result = without_gil(|| unsafe { crate::ffi::evl_stream_exchange(lp, exchange_args) });
    int(i64::from(result))
});

module_function!(
    /// `exchange_writes(loop, args)`: `evl_stream_exchange_writes`.
    exchange_writes, |args| {
    let &[lp, exchange_args] = positional::<2>(&args, c"exchange_writes(loop, args)")?;
    let lp: *mut evl_loop = address(lp)?;
    let exchange_args: *mut evl_stream_exchange_args = address(exchange_args)?;
    // SAFETY: as in exchange(); a write never waits, so the GIL is kept.
    let result = unsafe { crate::ffi::evl_stream_exchange_writes(lp, exchange_args) };
    int(i64::from(result))
});

module_function!(
    /// `dispatch_data(events, start, end, receivers)`.
    dispatch_data, |args| {
    let api = api();
    let &[events, start, end, receivers] =
        positional::<4>(&args, c"dispatch_data(events, start, end, receivers)")?;
    let events: *const evl_stream_event = address(events)?;
    let (start, end) = (c_int_of(start)?, c_int_of(end)?);
    if events.is_null() || start < 0 || end < start {
        return Err(raise(api.PyExc_ValueError, c"dispatch_data: bad arguments"));
    }
    for index in start..end {
        // SAFETY: the package passes the events array of the last exchange
        // and a range of the events it wrote (the DATA events at its start,
        // whose bytes stay in the read buffer until the next exchange).
        let event = unsafe { &*events.add(index as usize) };
        // SAFETY: a plain conversion; a new reference or NULL.
        let stream = unsafe { Owned::new((api.PyLong_FromUnsignedLongLong)(event.stream))? };
        // SAFETY: live objects; a borrowed reference, or NULL with or
        // without an exception set (missing: closed since it was read).
        let receiver = unsafe { (api.PyDict_GetItemWithError)(receivers, stream.as_ptr()) };
        if receiver.is_null() {
            // SAFETY: reads the error indicator.
            if unsafe { !(api.PyErr_Occurred)().is_null() } {
                return Err(PyErr::taken());
            }
            continue;
        }
        // SAFETY: the dict's value, held while it runs (it may change the dict).
        let receiver = unsafe { Owned::borrowed(receiver) };
        // SAFETY: `len` bytes at `data`, in the read buffer (see above); a
        // new reference or NULL.
        let data = unsafe {
            Owned::new((api.PyBytes_FromStringAndSize)(event.data.cast(), event.len as isize))?
        };
        if call1(receiver.as_ptr(), data.as_ptr()).is_err() {
            let exception = Exception::fetch().into_value();
            return super::event_loop::tuple(&[
                int(i64::from(index) + 1)?.as_ptr(),
                exception.as_ptr(),
                stream.as_ptr(),
            ]);
        }
    }
    Ok(super::object::none())
});

module_function!(
    /// `select(loop, events, capacity, wait_ms, fd_to_key)`.
    select, |args| {
    let &[lp, events, capacity, wait_ms, fd_to_key] = positional::<5>(
        &args,
        c"select(loop, events, capacity, wait_ms, fd_to_key)",
    )?;
    let lp: *mut evl_loop = address(lp)?;
    let events: *mut evl_event = address(events)?;
    let capacity = c_int_of(capacity)?;
    let count = poll(lp, events, capacity, c_int_of(wait_ms)?)?;
    if count < 0 {
        return int(i64::from(count));
    }
    // SAFETY: evl_poll wrote `count` events (at most `capacity`) there.
    let ready = unsafe { std::slice::from_raw_parts(events, count as usize) };
    ready_list(ready, fd_to_key)
});

/// `evl_poll`, the GIL released, until it is not interrupted by a signal:
/// then Python's handlers run (what they raise is raised), and the wait goes
/// on for what is left of `wait_ms`. Returns the number of events, or the
/// library's negative errno, for the package to raise as its ctypes path does.
fn poll(
    lp: *mut evl_loop,
    events: *mut evl_event,
    capacity: c_int,
    wait_ms: c_int,
) -> PyResult<c_int> {
    let deadline = crate::sys::now_ns() + u64::try_from(wait_ms.max(0)).unwrap_or(0) * 1_000_000;
    let mut wait_ms = wait_ms;
    loop {
        // SAFETY: the C API's contract, kept by the package (see the
        // module's documentation): `events` has room for `capacity`.
        let count = without_gil(|| unsafe { crate::ffi::evl_poll(lp, wait_ms, events, capacity) });
        if count != -libc::EINTR {
            return Ok(count);
        }
        // SAFETY: the GIL is held; runs the handlers of pending signals.
        if unsafe { (api().PyErr_CheckSignals)() } != 0 {
            return Err(PyErr::taken());
        }
        if wait_ms > 0 {
            let left = deadline.saturating_sub(crate::sys::now_ns());
            wait_ms = c_int::try_from(left.div_ceil(1_000_000)).unwrap_or(c_int::MAX);
        }
    }
}

/// The list `select()` returns: `(key, mask)` for each event whose fd is a
/// key of `fd_to_key`, the mask as EpollSelector computes it (anything but
/// readability counts as writable, anything but writability as readable)
/// limited to the key's `events`.
fn ready_list(ready: &[evl_event], fd_to_key: *mut PyObject) -> PyResult<Owned> {
    let api = api();
    // SAFETY: a new list, a new reference or NULL.
    let list = unsafe { Owned::new((api.PyList_New)(0))? };
    for event in ready {
        let fd = int(i64::from(event.fd))?;
        // SAFETY: live objects; a borrowed reference, or NULL with or
        // without an exception set (missing).
        let key = unsafe { (api.PyDict_GetItemWithError)(fd_to_key, fd.as_ptr()) };
        if key.is_null() {
            // SAFETY: reads the error indicator.
            if unsafe { !(api.PyErr_Occurred)().is_null() } {
                return Err(PyErr::taken());
            }
            continue;
        }
        // SAFETY: the dict's value, kept alive by the reference taken now
        // (nothing below runs code that could change the dict before it).
        let key = unsafe { Owned::borrowed(key) };
        let mask = selectors_mask(event.revents) & key_events(&key)?;
        let pair = super::event_loop::tuple(&[key.as_ptr(), int(i64::from(mask))?.as_ptr()])?;
        // SAFETY: live objects; Append takes its own reference.
        if unsafe { (api.PyList_Append)(list.as_ptr(), pair.as_ptr()) } < 0 {
            return Err(PyErr::taken());
        }
    }
    Ok(list)
}

/// The library's readiness bits as a selectors mask.
fn selectors_mask(revents: u32) -> u32 {
    (if revents & !EVL_READ != 0 {
        EVENT_WRITE
    } else {
        0
    }) | (if revents & !EVL_WRITE != 0 {
        EVENT_READ
    } else {
        0
    })
}

/// A `SelectorKey`'s `events` (its third field).
fn key_events(key: &Owned) -> PyResult<u32> {
    let api = api();
    // SAFETY: a live object; a borrowed reference, or NULL with an
    // exception set when it is not a tuple of at least three items.
    let events = unsafe { (api.PyTuple_GetItem)(key.as_ptr(), 2) };
    if events.is_null() {
        return Err(PyErr::taken());
    }
    // SAFETY: a live int (selectors' masks are small ints).
    let value = unsafe { (api.PyLong_AsLong)(events) };
    // SAFETY: reads the error indicator.
    if value == -1 && unsafe { !(api.PyErr_Occurred)().is_null() } {
        return Err(PyErr::taken());
    }
    Ok(value as u32)
}
