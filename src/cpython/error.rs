//! Python exceptions. CPython keeps the current exception in the thread's
//! error indicator; a function that fails sets it and returns NULL or -1.
//! Here that is [`PyErr`]: a value that says "the indicator is set", which
//! travels up with `?` until a native function returns NULL to CPython, or
//! until the loop takes the exception out with [`Exception::fetch`] to
//! report it (asyncio's exception handler) or to keep it across Python
//! code that must run first.

use std::ffi::CStr;
use std::ptr::null_mut;

use super::api::{api, PyObject};
use super::object::Owned;
use crate::sys::Errno;

/// A Python exception is set in the error indicator.
#[must_use = "the exception stays set: return it to CPython or fetch it"]
#[derive(Debug)]
pub(super) struct PyErr {
    _private: (),
}

pub(super) type PyResult<T> = Result<T, PyErr>;

impl PyErr {
    /// Stands for the exception a CPython function has just set.
    #[inline]
    pub(super) fn taken() -> PyErr {
        PyErr { _private: () }
    }
}

/// Sets `kind(message)` as the current exception.
pub(super) fn raise(kind: *mut PyObject, message: &CStr) -> PyErr {
    // SAFETY: `kind` is an exception type; `message` is NUL-terminated.
    unsafe { (api().PyErr_SetString)(kind, message.as_ptr()) };
    PyErr::taken()
}

/// Sets `kind(message)` for a message made at run time (a NUL inside it
/// ends it early).
pub(super) fn raise_string(kind: *mut PyObject, message: &str) -> PyErr {
    let text: Vec<u8> = message.bytes().take_while(|&b| b != 0).chain([0]).collect();
    let text = CStr::from_bytes_with_nul(&text).expect("one NUL, at the end");
    raise(kind, text)
}

/// Sets the `OSError` subclass of `errno` (ConnectionResetError...), with
/// its message, as the current exception.
pub(super) fn raise_errno(errno: Errno) -> PyErr {
    // SAFETY: errno is thread-local; PyErr_SetFromErrno reads it at once.
    unsafe {
        *libc::__errno_location() = errno;
        (api().PyErr_SetFromErrno)(api().PyExc_OSError);
    }
    PyErr::taken()
}

/// The `OSError` (subclass) of `errno`, as an object, with no exception set.
pub(super) fn os_error(errno: Errno) -> Owned {
    let _ = raise_errno(errno);
    Exception::fetch().into_value()
}

/// An exception taken out of the error indicator, normalized (an
/// instance, with its traceback attached as `__traceback__`, as
/// `except E as exc` has it).
pub(super) struct Exception {
    kind: Owned,
    value: Owned,
    traceback: Option<Owned>,
}

impl Exception {
    /// Takes the current exception; the indicator is clear afterwards.
    /// (Called only when a [`PyErr`] says one is set; were none set, a
    /// `SystemError` stands in for it.)
    pub(super) fn fetch() -> Exception {
        let api = api();
        let (mut kind, mut value, mut traceback) = (null_mut(), null_mut(), null_mut());
        // SAFETY: the three out-pointers are valid; we receive new
        // references (or NULLs), which the Owned values below take.
        unsafe {
            (api.PyErr_Fetch)(&mut kind, &mut value, &mut traceback);
            if kind.is_null() {
                (api.PyErr_SetString)(
                    api.PyExc_RuntimeError,
                    c"evloop: a failure without a Python exception".as_ptr(),
                );
                (api.PyErr_Fetch)(&mut kind, &mut value, &mut traceback);
            }
            (api.PyErr_NormalizeException)(&mut kind, &mut value, &mut traceback);
            if !traceback.is_null() && !value.is_null() {
                (api.PyException_SetTraceback)(value, traceback);
            }
        }
        // SAFETY: new references or NULL, from PyErr_Fetch/Normalize.
        let (kind, value, traceback) = unsafe {
            (
                Owned::new(kind).ok(),
                Owned::new(value).ok(),
                Owned::new(traceback).ok(),
            )
        };
        let kind = kind.unwrap_or_else(super::object::none);
        let value = value.unwrap_or_else(|| kind.clone_ref());
        Exception {
            kind,
            value,
            traceback,
        }
    }

    pub(super) fn into_value(self) -> Owned {
        self.value
    }

    /// Whether it is one that asyncio lets through every callback:
    /// `SystemExit` or `KeyboardInterrupt` (and their subclasses).
    pub(super) fn is_exit(&self) -> bool {
        let api = api();
        // SAFETY: both are live type objects or instances.
        unsafe {
            (api.PyErr_GivenExceptionMatches)(self.kind.as_ptr(), api.PyExc_SystemExit) != 0
                || (api.PyErr_GivenExceptionMatches)(
                    self.kind.as_ptr(),
                    api.PyExc_KeyboardInterrupt,
                ) != 0
        }
    }

    /// Whether it is an instance of `kind`.
    pub(super) fn matches(&self, kind: *mut PyObject) -> bool {
        // SAFETY: both are live objects.
        unsafe { (api().PyErr_GivenExceptionMatches)(self.kind.as_ptr(), kind) != 0 }
    }

    /// Puts it back in the error indicator.
    pub(super) fn restore(self) -> PyErr {
        let traceback = self.traceback.map_or(null_mut(), Owned::into_raw);
        // SAFETY: PyErr_Restore steals the three references.
        unsafe { (api().PyErr_Restore)(self.kind.into_raw(), self.value.into_raw(), traceback) };
        PyErr::taken()
    }
}

/// Reports the exception set (`_set`) that has nowhere to go (raised while
/// reporting another) as CPython does: "Exception ignored in: context".
pub(super) fn write_unraisable(_set: PyErr, context: *mut PyObject) {
    // SAFETY: an exception is set, as the PyErr says; `context` is a live
    // object or NULL.
    unsafe { (api().PyErr_WriteUnraisable)(context) }
}
