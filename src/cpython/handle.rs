//! `Handle` and `TimerHandle`: what `call_soon`, `call_later` and `call_at`
//! return, and what the loop's ready queue and timer heap hold. Each type
//! derives from asyncio's own (`asyncio.Handle`, `asyncio.TimerHandle`), so
//! `isinstance` holds and asyncio's Python `__repr__` and comparisons work:
//! the payload's members and getters carry the attribute names asyncio's
//! methods read (`_callback`, `_args`, `_cancelled`, `_when`...), in front of
//! asyncio's own slots, which stay unused.
//!
//! Both types share one payload at one offset (the larger base's size), so
//! the loop runs either without asking which.

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::mem::offset_of;
use std::ptr::null_mut;

use super::api::{api, PyObject, METH_NOARGS};
use super::boundary;
use super::call::{call1, call_tuple, in_context, is_true, method0, method1};
use super::error::{raise, Exception, PyErr, PyResult};
use super::module::{rt, Runtime};
use super::object::{boolean, none, Owned, Slot};
use super::typespec::{refuse_delete, NativeType, TypeBuilder, PY_TP_DEALLOC, PY_TP_FREE};

/// The payload of both handle types.
#[repr(C)]
pub(super) struct HandleFields {
    pub(super) callback: Slot,
    /// The arguments: a tuple, or when `one_arg`, the only one (call_soon's
    /// usual case, which then needs no tuple); `_args` is always a tuple.
    pub(super) args: Slot,
    pub(super) one_arg: Cell<bool>,
    pub(super) context: Slot,
    pub(super) event_loop: Slot,
    pub(super) source_traceback: Slot,
    pub(super) repr: Slot,
    pub(super) cancelled: Cell<bool>,
    /// TimerHandle: in the loop's heap.
    pub(super) scheduled: Cell<bool>,
    /// TimerHandle: when it is due, on the loop's clock (seconds).
    pub(super) when: Cell<f64>,
}

/// Makes `Handle` (`timer` false) or `TimerHandle`, deriving from asyncio's.
pub(super) fn make_type(
    asyncio_base: Owned,
    payload_offset: usize,
    timer: bool,
) -> PyResult<NativeType<HandleFields>> {
    let (name, doc) = if timer {
        (
            c"evloop._native.TimerHandle",
            c"A callback scheduled with call_later() or call_at(): asyncio.TimerHandle's interface, run by evloop's native loop.",
        )
    } else {
        (
            c"evloop._native.Handle",
            c"A callback scheduled with call_soon(): asyncio.Handle's interface, run by evloop's native loop.",
        )
    };
    let mut builder =
        TypeBuilder::<HandleFields>::new(name, doc, Some(asyncio_base), payload_offset)
            .slot(PY_TP_DEALLOC, dealloc as *mut c_void)
            .member(
                c"_callback",
                offset_of!(HandleFields, callback),
                c"the callback",
            )
            .member(
                c"_evloop_args",
                offset_of!(HandleFields, args),
                c"its arguments: a tuple, or the only one",
            )
            .getset(
                c"_args",
                get_args,
                Some(set_args),
                c"its arguments (a tuple)",
            )
            .member(
                c"_context",
                offset_of!(HandleFields, context),
                c"the contextvars context it runs in",
            )
            .member(c"_loop", offset_of!(HandleFields, event_loop), c"the loop")
            // Stored unset until debug mode sets them (asyncio's repr reads
            // them: None then).
            .member(
                c"_evloop_source_traceback",
                offset_of!(HandleFields, source_traceback),
                c"_source_traceback's storage",
            )
            .member(
                c"_evloop_repr",
                offset_of!(HandleFields, repr),
                c"_repr's storage",
            )
            .getset(
                c"_source_traceback",
                get_source_traceback,
                Some(set_source_traceback),
                c"where it was made (debug mode), or None",
            )
            .getset(
                c"_repr",
                get_repr,
                Some(set_repr),
                c"its repr, kept when cancelled in debug mode, or None",
            )
            .getset(
                c"_cancelled",
                get_cancelled,
                Some(set_cancelled),
                c"whether cancel() was called",
            )
            .method(
                c"cancel",
                cancel as *mut c_void,
                METH_NOARGS,
                c"cancel(): the callback will not be called",
            )
            .method(
                c"cancelled",
                cancelled as *mut c_void,
                METH_NOARGS,
                c"whether cancel() was called",
            )
            .method(
                c"get_context",
                get_context as *mut c_void,
                METH_NOARGS,
                c"the contextvars context it runs in",
            )
            .method(
                c"_run",
                run_method as *mut c_void,
                METH_NOARGS,
                c"runs the callback (errors go to the loop's exception handler)",
            );
    if timer {
        builder = builder
            .getset(
                c"_when",
                get_when,
                Some(set_when),
                c"when it is due (loop.time())",
            )
            .getset(
                c"_scheduled",
                get_scheduled,
                Some(set_scheduled),
                c"whether it is in the loop's heap",
            )
            .method(
                c"when",
                when as *mut c_void,
                METH_NOARGS,
                c"when it is due, on the loop's clock",
            );
    }
    builder.build()
}

/// A new handle of `callback(*args)` in `context` (a copy of the current
/// one if `None`), for `event_loop`; a `TimerHandle` due at `when` if given.
pub(super) fn new_handle(
    rt: &Runtime,
    callback: *mut PyObject,
    args: &[*mut PyObject],
    context: Option<Owned>,
    event_loop: *mut PyObject,
    when: Option<f64>,
) -> PyResult<Owned> {
    let ty = if when.is_some() {
        &rt.timer_handle
    } else {
        &rt.handle
    };
    let context = match context {
        Some(context) => context,
        // SAFETY: a new reference (a copy of the current context) or NULL.
        None => unsafe { Owned::new((api().PyContext_CopyCurrent)())? },
    };
    let handle = ty.new_instance()?;
    // SAFETY: a fresh instance of a handle type.
    let fields = unsafe { ty.payload(handle.as_ptr()) };
    // SAFETY: `callback` and `event_loop` are live objects of the caller.
    unsafe {
        fields.callback.replace(Some(Owned::borrowed(callback)));
        fields.event_loop.replace(Some(Owned::borrowed(event_loop)));
    }
    if let &[only] = args {
        // SAFETY: a live argument of the caller.
        fields.args.replace(Some(unsafe { Owned::borrowed(only) }));
        fields.one_arg.set(true);
    } else {
        fields.args.replace(Some(super::event_loop::tuple(args)?));
    }
    fields.context.replace(Some(context));
    if let Some(when) = when {
        fields.when.set(when);
    }
    Ok(handle)
}

/// The payload of a handle of ours.
///
/// # Safety
/// `handle` is a live instance of one of the two handle types.
#[inline(always)]
pub(super) unsafe fn fields<'a>(handle: *mut PyObject) -> &'a HandleFields {
    // SAFETY: both types have the payload at the same offset, as the caller promised.
    unsafe { rt().handle.payload(handle) }
}

/// Whether `object` is one of our handles (either type).
pub(super) fn is_ours(object: *mut PyObject) -> bool {
    let rt = rt();
    rt.handle.is_instance(object) || rt.timer_handle.is_instance(object)
}

/// Runs the handle's callback in its context. Its exception goes to the
/// loop's exception handler, as asyncio's `Handle._run` sends it, except
/// `SystemExit` and `KeyboardInterrupt`, which are left set: `Err`.
///
/// # Safety
/// `handle` is a live handle of ours.
pub(super) unsafe fn run(handle: *mut PyObject) -> PyResult<()> {
    // SAFETY: as the caller promised.
    let fields = unsafe { fields(handle) };
    // Owned: the callback may cancel its own handle, which lets go of them.
    let (Some(callback), Some(args)) = (fields.callback.get_owned(), fields.args.get_owned())
    else {
        return Ok(()); // cancelled (or never set): nothing to run
    };
    // Owned too: exiting a context needs a reference besides the thread's.
    let context = fields.context.get_owned();
    let context_ptr = context.as_ref().map_or(null_mut(), Owned::as_ptr);
    let one_arg = fields.one_arg.get();
    match in_context(context_ptr, || {
        if one_arg {
            call1(callback.as_ptr(), args.as_ptr())
        } else {
            call_tuple(callback.as_ptr(), args.as_ptr())
        }
    }) {
        Ok(_) => Ok(()),
        Err(_) => {
            let exception = Exception::fetch();
            if exception.is_exit() {
                return Err(exception.restore());
            }
            report_error(handle, exception)
        }
    }
}

/// asyncio's report of a callback's exception ("Exception in callback
/// ..."), made by the package's hook, which knows this Python's asyncio.
fn report_error(handle: *mut PyObject, exception: Exception) -> PyResult<()> {
    let rt = rt();
    let Some(hook) = rt.hooks.callback_error.get_owned() else {
        return Err(exception.restore());
    };
    let value = exception.into_value();
    // SAFETY: live objects.
    match unsafe {
        Owned::new((api().PyObject_CallFunctionObjArgs)(
            hook.as_ptr(),
            handle,
            value.as_ptr(),
            null_mut::<PyObject>(),
        ))
    } {
        Ok(_) => Ok(()),
        Err(_) => {
            let failure = Exception::fetch();
            if failure.is_exit() {
                return Err(failure.restore());
            }
            super::error::write_unraisable(failure.restore(), handle);
            Ok(())
        }
    }
}

/// Marks the handle cancelled and lets go of its callback, as asyncio's
/// `Handle.cancel()` (keeping its repr first in debug mode); a scheduled
/// timer tells its loop, which counts them to clean its heap.
///
/// # Safety
/// `handle` is a live handle of ours.
pub(super) unsafe fn cancel_handle(handle: *mut PyObject) -> PyResult<()> {
    // SAFETY: as the caller promised.
    let fields = unsafe { fields(handle) };
    if fields.cancelled.get() {
        return Ok(());
    }
    let rt = rt();
    let event_loop = fields.event_loop.get_owned();
    if let Some(event_loop) = &event_loop {
        if fields.scheduled.get() {
            method1(
                event_loop.as_ptr(),
                rt.names.timer_handle_cancelled.as_ptr(),
                handle,
            )?;
        }
    }
    fields.cancelled.set(true);
    if let Some(event_loop) = &event_loop {
        let debug = method0(event_loop.as_ptr(), rt.names.get_debug.as_ptr())?;
        if is_true(debug.as_ptr())? {
            // SAFETY: a live handle; a new reference or NULL.
            let repr = unsafe { Owned::new((api().PyObject_Repr)(handle))? };
            drop(fields.repr.replace(Some(repr)));
        }
    }
    let callback = fields.callback.replace(Some(none()));
    let args = fields.args.replace(Some(none()));
    fields.one_arg.set(false);
    drop((callback, args));
    Ok(())
}

/// A handle's deallocation: asyncio's (subtype_dealloc) would also clear
/// asyncio.Handle's own slots, which are never set here (the payload's
/// attributes of the same names stand before them), and check for a
/// finalizer that no handle has: one handle per call_soon makes the
/// difference worth it.
unsafe extern "C" fn dealloc(handle: *mut PyObject) {
    boundary::infallible(|| {
        let api = api();
        // SAFETY: a dying handle (refcount 0): untracked before anything,
        // its weak references cleared (CPython checks there are any), its
        // references released, then its memory, then the reference every
        // instance of a heap type holds to its type.
        unsafe {
            (api.PyObject_GC_UnTrack)(handle.cast());
            (api.PyObject_ClearWeakRefs)(handle);
            let fields = fields(handle);
            let released = [
                fields.callback.replace(None),
                fields.args.replace(None),
                fields.context.replace(None),
                fields.event_loop.replace(None),
                fields.source_traceback.replace(None),
                fields.repr.replace(None),
            ];
            drop(released);
            let ty = (api.PyObject_Type)(handle);
            let free: unsafe extern "C" fn(*mut c_void) =
                std::mem::transmute((api.PyType_GetSlot)(ty, PY_TP_FREE));
            free(handle.cast());
            (api.Py_DecRef)(ty);
            (api.Py_DecRef)(ty);
        }
    })
}

unsafe extern "C" fn cancel(handle: *mut PyObject, _: *mut PyObject) -> *mut PyObject {
    boundary::object(|| {
        // SAFETY: CPython checked `handle` is an instance of a handle type.
        unsafe { cancel_handle(handle)? };
        Ok(none())
    })
}

unsafe extern "C" fn cancelled(handle: *mut PyObject, _: *mut PyObject) -> *mut PyObject {
    // SAFETY: CPython checked `handle` is an instance of a handle type.
    boundary::object(|| Ok(boolean(unsafe { fields(handle) }.cancelled.get())))
}

unsafe extern "C" fn get_context(handle: *mut PyObject, _: *mut PyObject) -> *mut PyObject {
    boundary::object(|| {
        // SAFETY: CPython checked `handle` is an instance of a handle type.
        let context = unsafe { fields(handle) }.context.get_owned();
        Ok(context.unwrap_or_else(none))
    })
}

unsafe extern "C" fn run_method(handle: *mut PyObject, _: *mut PyObject) -> *mut PyObject {
    boundary::object(|| {
        // SAFETY: CPython checked `handle` is an instance of a handle type.
        unsafe { run(handle)? };
        Ok(none())
    })
}

unsafe extern "C" fn when(handle: *mut PyObject, _: *mut PyObject) -> *mut PyObject {
    // SAFETY: CPython checked `handle` is an instance of the timer type.
    boundary::object(|| float(unsafe { fields(handle) }.when.get()))
}

unsafe extern "C" fn get_cancelled(handle: *mut PyObject, _: *mut c_void) -> *mut PyObject {
    // SAFETY: CPython checked `handle` is an instance of a handle type.
    boundary::object(|| Ok(boolean(unsafe { fields(handle) }.cancelled.get())))
}

unsafe extern "C" fn set_cancelled(
    handle: *mut PyObject,
    value: *mut PyObject,
    _: *mut c_void,
) -> c_int {
    boundary::status(|| {
        // SAFETY: CPython checked `handle` is an instance of a handle type.
        unsafe { fields(handle) }.cancelled.set(truth(value)?);
        Ok(())
    })
}

unsafe extern "C" fn get_args(handle: *mut PyObject, _: *mut c_void) -> *mut PyObject {
    boundary::object(|| {
        // SAFETY: CPython checked `handle` is an instance of a handle type.
        let fields = unsafe { fields(handle) };
        let args = fields.args.get_owned().unwrap_or_else(none);
        if fields.one_arg.get() {
            return super::event_loop::tuple(&[args.as_ptr()]);
        }
        Ok(args)
    })
}

unsafe extern "C" fn set_args(
    handle: *mut PyObject,
    value: *mut PyObject,
    _: *mut c_void,
) -> c_int {
    boundary::status(|| {
        refuse_delete(value)?;
        // SAFETY: CPython checked `handle` is an instance of a handle type;
        // `value` is live for the call.
        let fields = unsafe { fields(handle) };
        // SAFETY: as above.
        let old = fields.args.replace(Some(unsafe { Owned::borrowed(value) }));
        fields.one_arg.set(false);
        drop(old);
        Ok(())
    })
}

/// A getter and a setter of a slot that reads as None when unset.
macro_rules! optional_attribute {
    ($get:ident, $set:ident, $field:ident) => {
        unsafe extern "C" fn $get(handle: *mut PyObject, _: *mut c_void) -> *mut PyObject {
            boundary::object(|| {
                // SAFETY: CPython checked `handle` is an instance of a handle type.
                let fields = unsafe { fields(handle) };
                Ok(fields.$field.get_owned().unwrap_or_else(none))
            })
        }

        unsafe extern "C" fn $set(
            handle: *mut PyObject,
            value: *mut PyObject,
            _: *mut c_void,
        ) -> c_int {
            boundary::status(|| {
                // SAFETY: CPython checked `handle`; `value` is live or NULL
                // (deleted: unset).
                let old = unsafe { fields(handle).$field.replace(Owned::borrowed_opt(value)) };
                drop(old);
                Ok(())
            })
        }
    };
}

optional_attribute!(get_source_traceback, set_source_traceback, source_traceback);
optional_attribute!(get_repr, set_repr, repr);

unsafe extern "C" fn get_scheduled(handle: *mut PyObject, _: *mut c_void) -> *mut PyObject {
    // SAFETY: CPython checked `handle` is an instance of the timer type.
    boundary::object(|| Ok(boolean(unsafe { fields(handle) }.scheduled.get())))
}

unsafe extern "C" fn set_scheduled(
    handle: *mut PyObject,
    value: *mut PyObject,
    _: *mut c_void,
) -> c_int {
    boundary::status(|| {
        // SAFETY: CPython checked `handle` is an instance of the timer type.
        unsafe { fields(handle) }.scheduled.set(truth(value)?);
        Ok(())
    })
}

unsafe extern "C" fn get_when(handle: *mut PyObject, _: *mut c_void) -> *mut PyObject {
    // SAFETY: CPython checked `handle` is an instance of the timer type.
    boundary::object(|| float(unsafe { fields(handle) }.when.get()))
}

unsafe extern "C" fn set_when(
    handle: *mut PyObject,
    value: *mut PyObject,
    _: *mut c_void,
) -> c_int {
    boundary::status(|| {
        let when = as_float(value)?;
        // SAFETY: CPython checked `handle` is an instance of the timer type.
        unsafe { fields(handle) }.when.set(when);
        Ok(())
    })
}

/// A setter's value as a bool (deleting is refused).
fn truth(value: *mut PyObject) -> PyResult<bool> {
    if value.is_null() {
        return Err(raise(
            api().PyExc_AttributeError,
            c"cannot delete this attribute",
        ));
    }
    is_true(value)
}

pub(super) fn float(value: f64) -> PyResult<Owned> {
    // SAFETY: a plain conversion; a new reference or NULL.
    unsafe { Owned::new((api().PyFloat_FromDouble)(value)) }
}

/// A number as a float (TypeError otherwise; deleting is refused).
pub(super) fn as_float(value: *mut PyObject) -> PyResult<f64> {
    if value.is_null() {
        return Err(raise(
            api().PyExc_AttributeError,
            c"cannot delete this attribute",
        ));
    }
    let api = api();
    // SAFETY: a live object; -1.0 with an exception set means failure.
    let number = unsafe { (api.PyFloat_AsDouble)(value) };
    // SAFETY: reads the error indicator.
    if number == -1.0 && unsafe { !(api.PyErr_Occurred)().is_null() } {
        return Err(PyErr::taken());
    }
    Ok(number)
}
