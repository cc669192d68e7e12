//! Reference counting, in one place. Every strong reference this layer
//! holds is an [`Owned`], whose `Drop` gives it back; everything else is a
//! borrowed `*mut PyObject` that the caller keeps alive for the duration of
//! the call. The rules:
//!
//! - a function of CPython that returns a new reference goes through
//!   [`Owned::new`] (NULL there means a Python exception is set);
//! - a borrowed object kept beyond the call becomes [`Owned::borrowed`];
//! - an `Owned` handed back to CPython (a function's result, a reference a
//!   slot will own) leaves through [`Owned::into_raw`];
//! - nothing is dropped while a `RefCell` of the loop is borrowed: a drop may
//!   run any Python code (a finalizer), which may call back into the loop.
//!
//! All of it needs the GIL, which every entry into this layer holds (the
//! loop's wait, which releases it, touches no Python object).

use std::ptr::NonNull;

use super::api::{api, PyObject};
use super::error::{PyErr, PyResult};

/// A strong reference to a Python object.
pub(super) struct Owned(NonNull<PyObject>);

impl Owned {
    /// Takes the new reference a CPython function returned; NULL means it
    /// raised (the exception is set), which becomes `Err(PyErr)`.
    ///
    /// # Safety
    /// `ptr` is NULL or a new reference that the caller gives up.
    #[inline]
    pub(super) unsafe fn new(ptr: *mut PyObject) -> PyResult<Owned> {
        match NonNull::new(ptr) {
            Some(ptr) => Ok(Owned(ptr)),
            None => Err(PyErr::taken()),
        }
    }

    /// A new strong reference to a borrowed object.
    ///
    /// # Safety
    /// `ptr` is a live object (not NULL).
    #[inline]
    pub(super) unsafe fn borrowed(ptr: *mut PyObject) -> Owned {
        debug_assert!(!ptr.is_null());
        // SAFETY: a live object, as the caller promised.
        unsafe { (api().Py_IncRef)(ptr) };
        // SAFETY: not NULL, as the caller promised.
        Owned(unsafe { NonNull::new_unchecked(ptr) })
    }

    /// A new strong reference to a borrowed object that may be NULL.
    ///
    /// # Safety
    /// `ptr` is NULL or a live object.
    #[inline]
    pub(super) unsafe fn borrowed_opt(ptr: *mut PyObject) -> Option<Owned> {
        // SAFETY: not NULL here, and live, as the caller promised.
        NonNull::new(ptr).map(|p| unsafe { Owned::borrowed(p.as_ptr()) })
    }

    #[inline]
    pub(super) fn as_ptr(&self) -> *mut PyObject {
        self.0.as_ptr()
    }

    /// Gives the reference up to the caller (CPython, or a slot that owns it).
    #[inline]
    pub(super) fn into_raw(self) -> *mut PyObject {
        std::mem::ManuallyDrop::new(self).0.as_ptr()
    }

    /// Another strong reference to the same object.
    #[inline]
    pub(super) fn clone_ref(&self) -> Owned {
        // SAFETY: `self` keeps the object alive.
        unsafe { Owned::borrowed(self.as_ptr()) }
    }

    /// Whether this is `None`.
    #[inline]
    pub(super) fn is_none(&self) -> bool {
        self.as_ptr() == api().none
    }
}

impl Drop for Owned {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the reference is ours to give back; the GIL is held (see
        // the module's documentation).
        unsafe { (api().Py_DecRef)(self.0.as_ptr()) }
    }
}

/// `None`, as a new reference.
#[inline]
pub(super) fn none() -> Owned {
    // SAFETY: None is immortal in practice and always live.
    unsafe { Owned::borrowed(api().none) }
}

/// `True` or `False`, as a new reference.
#[inline]
pub(super) fn boolean(value: bool) -> Owned {
    let api = api();
    // SAFETY: True and False are always live.
    unsafe { Owned::borrowed(if value { api.true_ } else { api.false_ }) }
}

/// An int, as a new reference.
pub(super) fn int(value: i64) -> PyResult<Owned> {
    // SAFETY: a plain conversion; a new reference or NULL.
    unsafe { Owned::new((api().PyLong_FromLongLong)(value)) }
}

/// A slot of an object of ours that owns a reference (NULL: unset), as
/// the type's member table declares it (see `typespec.rs`): reading borrows,
/// writing replaces and gives the old reference back.
#[repr(transparent)]
#[derive(Default)]
pub(super) struct Slot(std::cell::Cell<*mut PyObject>);

impl Slot {
    /// The object, borrowed: valid until the slot is next written (which
    /// may be by Python code: take an [`Owned`] before calling any, unless
    /// something else keeps the object alive).
    #[inline]
    pub(super) fn get(&self) -> *mut PyObject {
        self.0.get()
    }

    /// A strong reference to the object, if set.
    #[inline]
    pub(super) fn get_owned(&self) -> Option<Owned> {
        // SAFETY: the slot owns a reference to its object, so it is live.
        unsafe { Owned::borrowed_opt(self.0.get()) }
    }

    /// Stores `value` (NULL for `None` given) and returns what was there,
    /// for the caller to drop when no borrow of the loop is held.
    #[inline]
    pub(super) fn replace(&self, value: Option<Owned>) -> Option<Owned> {
        let new = value.map_or(std::ptr::null_mut(), Owned::into_raw);
        // The old pointer was an owned reference of the slot (or NULL).
        NonNull::new(self.0.replace(new)).map(Owned)
    }

    /// Whether the slot holds `None` or nothing.
    #[inline]
    pub(super) fn is_none_or_unset(&self) -> bool {
        let ptr = self.0.get();
        ptr.is_null() || ptr == api().none
    }
}
