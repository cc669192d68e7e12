//! The CPython layer: asyncio's hot path (the event loop's iteration, the
//! ready queue and timers, socket transports) in native code, for the
//! Python package only.
//!
//! It is made for a library loaded with ctypes, never compiled against
//! Python: no Python header, no link to libpython. CPython's exported
//! functions are found at run time in the process ([`api`]), so one
//! `libevloop.so` serves every CPython from 3.8 on, and a C program that
//! links the library never touches any of it (nothing runs at load time;
//! only [`evl_cpython_init`], called by the package through
//! `ctypes.PyDLL`, resolves anything). After that call, Python calls the
//! native methods of the types it returns directly, never through ctypes.
//!
//! One file per concern:
//! - `api.rs`: the table of CPython's functions and the ABI constants;
//! - `object.rs`: reference ownership ([`object::Owned`]), the one place
//!   that holds the rules;
//! - `error.rs`: Python exceptions as `PyResult`;
//! - `boundary.rs`: what every function CPython calls does with results
//!   and panics;
//! - `module.rs`: the module `evl_cpython_init` returns, and the objects of
//!   Python's that the layer uses (made or imported once).
//! - `loop_calls.rs`: the crossings of `evloop.Loop` and `EvloopSelector`
//!   (the C API's exchange and poll called natively, the selector's list
//!   built natively), module functions beside the asyncio loop's types.
//!
//! Every `unsafe` block says why it is sound; most rest on two facts: the
//! GIL is held (every entry comes from CPython with it), and an object
//! pointer CPython passed in is live for the duration of the call.

mod api;
mod args;
mod boundary;
mod buffer;
mod call;
mod datagram;
mod error;
mod event_loop;
mod handle;
mod iteration;
mod loop_calls;
mod module;
mod object;
mod protocol;
mod ready;
mod timers;
mod tls;
mod transport;
mod typespec;
mod watches;

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::null_mut;

/// The version of this layer's interface with the Python package, which
/// the package passes to [`evl_cpython_init`]. A change the package would
/// notice bumps it (and the package with it): the two ship together.
pub const EVL_CPYTHON_VERSION: u32 = 1;

/// The entry point of the Python package's native asyncio loop, and the
/// only function of this layer that the library exports (version node
/// `EVLOOP_CPYTHON_1` of evloop.map, not in evloop.h: it is not part of
/// the C API).
///
/// Called through `ctypes.PyDLL` (so with the GIL held) with
/// `restype = ctypes.py_object`, by the CPython that loaded the library.
/// Finds CPython's functions in the process, checks that `version` is
/// [`EVL_CPYTHON_VERSION`], and returns a new reference to a module of
/// native types and functions (the same module on every call). On failure
/// it returns NULL with `ImportError` set, naming what is missing.
///
/// Called without the GIL (through `ctypes.CDLL`), it takes the GIL itself
/// and returns the `ImportError` instead of raising it (ctypes would crash
/// on NULL there); not from CPython at all, it returns NULL.
#[no_mangle]
pub extern "C" fn evl_cpython_init(version: u32) -> *mut c_void {
    match catch_unwind(AssertUnwindSafe(|| init(version))) {
        Ok(module) => module.cast(),
        Err(_) => null_mut(),
    }
}

fn init(version: u32) -> *mut api::PyObject {
    // Without these no error can be raised: not CPython at all.
    let Some(gil) = api::gil_functions() else {
        return null_mut();
    };
    if (gil.check)() == 1 {
        return init_with_gil(version);
    }
    let state = (gil.ensure)();
    let mut result = init_with_gil(version);
    if result.is_null() && api::init().is_ok() {
        result = error::Exception::fetch().into_value().into_raw();
    }
    (gil.release)(state);
    result
}

fn init_with_gil(version: u32) -> *mut api::PyObject {
    let Some((set_string, import_error)) = api::error_reporter() else {
        return null_mut();
    };
    let raise = |message: String| {
        let text = std::ffi::CString::new(message).unwrap_or_default();
        // SAFETY: CPython's PyErr_SetString with the GIL held, an exception
        // type and a NUL-terminated message.
        unsafe { set_string(import_error, text.as_ptr()) };
        null_mut()
    };
    if let Err(missing) = api::init() {
        return raise(format!(
            "evloop: this Python has no {missing}, which the native asyncio loop needs \
             (CPython 3.8 or later)"
        ));
    }
    if version != EVL_CPYTHON_VERSION {
        return raise(format!(
            "evloop: the library's CPython layer is version {EVL_CPYTHON_VERSION}, \
             the package asked for {version}: install the library and the package together"
        ));
    }
    boundary::object(module::get)
}
