//! The one pattern every C function follows: argument checks, errors as
//! negative errno values, panics caught, and the loop reached through a
//! borrow that lasts one step, never across a callback. Also the type-erased
//! callback the loop keeps for each registration, timer, task and signal.

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use super::types::*;
use crate::stream::{self, StreamLoop};
use crate::sys::Errno;

/// What the loop keeps for each registration, timer, task and signal
/// watcher: a callback with its type erased, and the caller's userdata.
/// 16 bytes and no tag, since the kind of event tells the callback's type.
#[derive(Clone, Copy)]
pub(super) struct Callback {
    func: Option<unsafe extern "C" fn()>,
    pub(super) userdata: *mut c_void,
}

// SAFETY: the pointers are opaque to us; a task posted from another thread
// carries the caller's userdata to the loop's thread, as documented.
unsafe impl Send for Callback {}

impl Default for Callback {
    fn default() -> Self {
        Callback {
            func: None,
            userdata: std::ptr::null_mut(),
        }
    }
}

/// Erases and restores the type of one kind of callback. Sound because a
/// function pointer is only ever called through the type it was stored with:
/// registrations hold I/O callbacks, timers timer callbacks, and so on.
macro_rules! callback_kind {
    ($store:ident, $load:ident, $ty:ty) => {
        impl Callback {
            pub(super) fn $store(cb: $ty, userdata: *mut c_void) -> Callback {
                let func = cb.map(|f| {
                    // SAFETY: fn pointers of any signature have the same size,
                    // and this one is called only through `$load`, as `$ty`.
                    unsafe { std::mem::transmute::<_, unsafe extern "C" fn()>(f) }
                });
                Callback { func, userdata }
            }

            /// # Safety
            /// `self` must have been made by the matching store function.
            pub(super) unsafe fn $load(self) -> $ty {
                // SAFETY: the caller promises the pointer was stored as `$ty`.
                self.func.map(|f| unsafe { std::mem::transmute::<_, _>(f) })
            }
        }
    };
}
callback_kind!(io, as_io, evl_io_cb);
callback_kind!(timer, as_timer, evl_timer_cb);
callback_kind!(task, as_task, evl_task_cb);
callback_kind!(signal, as_signal, evl_signal_cb);
callback_kind!(stream, as_stream, evl_stream_cb);
callback_kind!(hook, as_hook, evl_hook_cb);
callback_kind!(work_done, as_work_done, super::work_api::evl_work_done_cb);
callback_kind!(resolve, as_resolve, super::resolve_api::evl_resolve_cb);
callback_kind!(exit, as_exit, super::process_api::evl_process_cb);

/// Runs `body`, turning `Err(errno)` into `-errno` and a panic into EVL_EPANIC.
pub(super) fn guard(body: impl FnOnce() -> Result<c_int, Errno>) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => value,
        Ok(Err(errno)) => -errno,
        Err(_) => EVL_EPANIC,
    }
}

/// A borrow of the loop for one step. Never keep it across a callback.
///
/// # Safety
/// `lp` must be null or a live pointer from evl_loop_new, used on its
/// thread, and no other borrow of its loop may be in use.
pub(super) unsafe fn core<'a>(lp: *mut evl_loop) -> Result<&'a mut StreamLoop<Callback>, Errno> {
    if lp.is_null() {
        return Err(libc::EINVAL);
    }
    // SAFETY: non-null, so live and ours to borrow alone, as the caller promised.
    Ok(unsafe { &mut *(*lp).core.get() })
}

/// The body of most C functions (those that run no callback): `$body`,
/// with `$core` a borrow of the loop, inside [`guard`]. `$body` is not in
/// the unsafe block: an unsafe operation there needs a block of its own.
macro_rules! with_loop {
    ($lp:expr, |$core:ident| $body:expr) => {
        $crate::ffi::boundary::guard(|| {
            // SAFETY: the header's contract: the loop pointer is NULL or a
            // live loop from evl_loop_new, used on its thread; no callback
            // runs inside `$body`, so no other borrow of it is in use.
            let $core = unsafe { $crate::ffi::boundary::core($lp) }?;
            $body
        })
    };
}
pub(super) use with_loop;

/// As [`with_loop!`], for a call that makes or reads one value and writes
/// it to `*$out` (an id, a size): a NULL `$out` is refused (-EINVAL) before
/// `$body` runs, so nothing is made that the caller could not be told of;
/// the value `$body` returns is stored, and the call returns 0.
macro_rules! with_loop_into {
    ($lp:expr, $out:expr, |$core:ident| $body:expr) => {
        $crate::ffi::boundary::with_loop!($lp, |$core| {
            let out = $out;
            if out.is_null() {
                return Err(libc::EINVAL);
            }
            // A closure, so that `return Err(..)` in `$body` leaves only `$body`.
            #[allow(clippy::redundant_closure_call)]
            let value = (|| $body)()?;
            // SAFETY: non-null (checked above) and writable: the header's contract.
            unsafe { $crate::ffi::boundary::store(out, value) }?;
            Ok(0)
        })
    };
}
pub(super) use with_loop_into;

/// The thread-safe part of the loop.
///
/// # Safety
/// `lp` must be null or a live pointer from evl_loop_new; any thread.
pub(super) unsafe fn handle<'a>(lp: *mut evl_loop) -> Result<&'a stream::Handle<Callback>, Errno> {
    if lp.is_null() {
        return Err(libc::EINVAL);
    }
    // SAFETY: non-null, so live; the handle is shared, never borrowed mutably.
    Ok(unsafe { &(*lp).handle })
}

/// Marks the loop as running for as long as it lives (a panic included),
/// so that its callbacks cannot start another run or free it.
pub(super) struct Running<'a>(&'a Cell<bool>);

impl Running<'_> {
    /// # Safety
    /// `lp` must be null or a live loop, used on its thread.
    pub(super) unsafe fn enter<'a>(lp: *mut evl_loop) -> Result<Running<'a>, Errno> {
        if lp.is_null() {
            return Err(libc::EINVAL);
        }
        // SAFETY: non-null, so live; the flag is a Cell, shared on one thread.
        let running = unsafe { &(*lp).running };
        if running.replace(true) {
            return Err(libc::EBUSY);
        }
        Ok(Running(running))
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// Refuses with EBUSY when called from one of the loop's callbacks.
///
/// # Safety
/// `lp` must be null or a live loop, used on its thread.
pub(super) unsafe fn not_running(lp: *mut evl_loop) -> Result<(), Errno> {
    if lp.is_null() {
        return Err(libc::EINVAL);
    }
    // SAFETY: non-null, so live; the flag is a Cell, shared on one thread.
    if unsafe { (*lp).running.get() } {
        return Err(libc::EBUSY);
    }
    Ok(())
}

pub(super) fn timeout_from_ms(timeout_ms: c_int) -> Option<Duration> {
    u64::try_from(timeout_ms).ok().map(Duration::from_millis)
}

/// The bytes `data`/`len` as a slice; NULL is fine for 0 bytes.
///
/// # Safety
/// Unless NULL, `data` must be valid for reads of `len` bytes for `'a`.
pub(super) unsafe fn bytes<'a>(data: *const c_void, len: usize) -> Result<&'a [u8], Errno> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() || len > isize::MAX as usize {
        return Err(libc::EINVAL);
    }
    // SAFETY: non-null and readable for `len` bytes, as the caller promised.
    Ok(unsafe { std::slice::from_raw_parts(data as *const u8, len) })
}

/// Stores `value` in `*out` unless `out` is NULL (-EINVAL then).
///
/// # Safety
/// Unless NULL, `out` must be valid for a write of a `T`.
pub(super) unsafe fn store<T>(out: *mut T, value: T) -> Result<(), Errno> {
    if out.is_null() {
        return Err(libc::EINVAL);
    }
    // SAFETY: non-null and writable, as the caller promised.
    unsafe { out.write(value) };
    Ok(())
}

/// Test-only: makes the next wait of `lp` panic, to prove the boundary
/// catches it. Not part of the C header.
///
/// # Safety
/// As [`core`].
#[doc(hidden)]
pub unsafe fn arm_test_panic(lp: *mut evl_loop) {
    // SAFETY: as the caller promised.
    if let Ok(core) = unsafe { core(lp) } {
        core.arm_test_panic();
    }
}

/// Test-only: makes the library find no /proc from now on (true), as on a
/// system without it, or find it again; to test what evl_loop_fork does
/// then. Not part of the C header.
#[doc(hidden)]
pub fn hide_proc_for_tests(hidden: bool) {
    crate::sys::hide_proc_for_tests(hidden);
}
