//! The one pattern every function that CPython calls follows (methods,
//! getters, setters, slots): its body returns a `PyResult`, and here that
//! becomes what CPython expects (a new reference, or NULL / -1 with the
//! exception set), with any Rust panic caught and turned into a
//! `RuntimeError`: a panic must never unwind into CPython's frames.

use std::ffi::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::null_mut;

use super::api::{api, PyObject};
use super::error::{raise, PyResult};
use super::object::Owned;

/// For functions returning an object: the new reference, or NULL.
#[inline(always)]
pub(super) fn object(body: impl FnOnce() -> PyResult<Owned>) -> *mut PyObject {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(result)) => result.into_raw(),
        Ok(Err(_set)) => null_mut(),
        Err(_) => panicked(),
    }
}

/// For functions returning a status: 0, or -1.
#[inline(always)]
pub(super) fn status(body: impl FnOnce() -> PyResult<()>) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => 0,
        Ok(Err(_set)) => -1,
        Err(_) => {
            panicked();
            -1
        }
    }
}

/// For slots that cannot fail (deallocation, traversal): runs `body`, and
/// aborts the process if it panics (there is no way to report it, and
/// going on would leak or corrupt).
#[inline(always)]
pub(super) fn infallible<T>(body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(_) => std::process::abort(),
    }
}

#[cold]
#[inline(never)]
fn panicked() -> *mut PyObject {
    let _ = raise(
        api().PyExc_RuntimeError,
        c"evloop: internal error (a Rust panic in the CPython layer); please report it",
    );
    null_mut()
}
