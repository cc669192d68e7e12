//! Calling Python: callables with their arguments, methods by (interned)
//! name, and callbacks inside a contextvars context. Vectorcall where
//! CPython exports it (3.11+); older versions take the variadic
//! `PyObject_CallFunctionObjArgs`, which passes up to five arguments on the
//! C stack without building a tuple either.

use std::ptr::null_mut;

use super::api::{api, PyObject, VECTORCALL_ARGUMENTS_OFFSET};
use super::error::{Exception, PyErr, PyResult};
use super::object::Owned;

/// `callable()`.
pub(super) fn call0(callable: *mut PyObject) -> PyResult<Owned> {
    let api = api();
    // SAFETY: a live callable; a new reference or NULL. Vectorcall gets an
    // empty argument array (which it never reads).
    unsafe {
        match api.PyObject_Vectorcall {
            Some(vectorcall) => Owned::new(vectorcall(callable, null_mut(), 0, null_mut())),
            None => Owned::new((api.PyObject_CallFunctionObjArgs)(
                callable,
                null_mut::<PyObject>(),
            )),
        }
    }
}

/// `callable(arg)`.
#[inline]
pub(super) fn call1(callable: *mut PyObject, arg: *mut PyObject) -> PyResult<Owned> {
    let api = api();
    // SAFETY: live objects; a new reference or NULL. The array has a free
    // slot before the argument, which PY_VECTORCALL_ARGUMENTS_OFFSET lets a
    // bound method use for `self`.
    unsafe {
        match api.PyObject_Vectorcall {
            Some(vectorcall) => {
                let args = [null_mut(), arg];
                Owned::new(vectorcall(
                    callable,
                    args.as_ptr().add(1),
                    1 | VECTORCALL_ARGUMENTS_OFFSET,
                    null_mut(),
                ))
            }
            None => Owned::new((api.PyObject_CallFunctionObjArgs)(
                callable,
                arg,
                null_mut::<PyObject>(),
            )),
        }
    }
}

/// `callable(a, b)`.
#[inline]
pub(super) fn call2(
    callable: *mut PyObject,
    a: *mut PyObject,
    b: *mut PyObject,
) -> PyResult<Owned> {
    let api = api();
    // SAFETY: live objects; a new reference or NULL. As in call1, a free
    // slot before the arguments for a bound method's `self`.
    unsafe {
        match api.PyObject_Vectorcall {
            Some(vectorcall) => {
                let args = [null_mut(), a, b];
                Owned::new(vectorcall(
                    callable,
                    args.as_ptr().add(1),
                    2 | VECTORCALL_ARGUMENTS_OFFSET,
                    null_mut(),
                ))
            }
            None => Owned::new((api.PyObject_CallFunctionObjArgs)(
                callable,
                a,
                b,
                null_mut::<PyObject>(),
            )),
        }
    }
}

/// `callable(*args)`, `args` a tuple.
#[inline]
pub(super) fn call_tuple(callable: *mut PyObject, args: *mut PyObject) -> PyResult<Owned> {
    // SAFETY: a live callable and tuple; a new reference or NULL.
    unsafe { Owned::new((api().PyObject_Call)(callable, args, null_mut())) }
}

/// `object.name()`.
pub(super) fn method0(object: *mut PyObject, name: *mut PyObject) -> PyResult<Owned> {
    // SAFETY: live objects, `name` a str; the variadic list ends with NULL.
    unsafe {
        Owned::new((api().PyObject_CallMethodObjArgs)(
            object,
            name,
            null_mut::<PyObject>(),
        ))
    }
}

/// `object.name(arg)`.
pub(super) fn method1(
    object: *mut PyObject,
    name: *mut PyObject,
    arg: *mut PyObject,
) -> PyResult<Owned> {
    // SAFETY: as in method0.
    unsafe {
        Owned::new((api().PyObject_CallMethodObjArgs)(
            object,
            name,
            arg,
            null_mut::<PyObject>(),
        ))
    }
}

/// `object.name(a, b)`.
pub(super) fn method2(
    object: *mut PyObject,
    name: *mut PyObject,
    a: *mut PyObject,
    b: *mut PyObject,
) -> PyResult<Owned> {
    // SAFETY: as in method0.
    unsafe {
        Owned::new((api().PyObject_CallMethodObjArgs)(
            object,
            name,
            a,
            b,
            null_mut::<PyObject>(),
        ))
    }
}

/// `getattr(object, name)`.
pub(super) fn getattr(object: *mut PyObject, name: *mut PyObject) -> PyResult<Owned> {
    // SAFETY: live objects, `name` a str; a new reference or NULL.
    unsafe { Owned::new((api().PyObject_GetAttr)(object, name)) }
}

/// `setattr(object, name, value)`.
pub(super) fn setattr(
    object: *mut PyObject,
    name: *mut PyObject,
    value: *mut PyObject,
) -> PyResult<()> {
    // SAFETY: live objects, `name` a str.
    if unsafe { (api().PyObject_SetAttr)(object, name, value) } < 0 {
        return Err(PyErr::taken());
    }
    Ok(())
}

/// `bool(object)`.
pub(super) fn is_true(object: *mut PyObject) -> PyResult<bool> {
    // SAFETY: a live object.
    match unsafe { (api().PyObject_IsTrue)(object) } {
        -1 => Err(PyErr::taken()),
        value => Ok(value != 0),
    }
}

/// `isinstance(object, class)`.
pub(super) fn is_instance(object: *mut PyObject, class: *mut PyObject) -> PyResult<bool> {
    // SAFETY: live objects.
    match unsafe { (api().PyObject_IsInstance)(object, class) } {
        -1 => Err(PyErr::taken()),
        value => Ok(value != 0),
    }
}

/// Runs `body` inside the contextvars context `context` (as
/// `context.run(...)` would); `None` or unset: in the current one. The
/// caller holds a reference to `context` throughout (exiting a context
/// needs one besides the thread's).
#[inline]
pub(super) fn in_context<R>(
    context: *mut PyObject,
    body: impl FnOnce() -> PyResult<R>,
) -> PyResult<R> {
    if context.is_null() || context == api().none {
        return body();
    }
    let api = api();
    // SAFETY: a live object; PyContext_Enter refuses (TypeError) anything
    // but a Context, and a context entered already (RuntimeError).
    if unsafe { (api.PyContext_Enter)(context) } < 0 {
        return Err(PyErr::taken());
    }
    let result = body();
    // Exit with no exception set: the body's, if any, waits aside.
    let pending = result.is_err().then(Exception::fetch);
    // SAFETY: the context entered above, on this thread.
    let exited = unsafe { (api.PyContext_Exit)(context) } == 0;
    match pending {
        Some(exception) => {
            if !exited {
                // SAFETY: the exit's own error goes; the body's is kept.
                unsafe { (api.PyErr_Clear)() };
            }
            Err(exception.restore())
        }
        None if !exited => Err(PyErr::taken()),
        None => result,
    }
}
