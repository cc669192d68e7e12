//! The module `evl_cpython_init` returns, made once per process: the
//! native types and functions, and the layer's version. The Python package
//! (`evloop._native`) builds its asyncio loop from it.

use std::ffi::CStr;
use std::sync::OnceLock;

use super::api::{api, PyObject};
use super::error::{PyErr, PyResult};
use super::object::{boolean, Owned};

/// The module, once made. Never freed: the library is never unloaded
/// while Python runs (ctypes does not close what it loaded).
struct Made(*mut PyObject);

// SAFETY: only read with the GIL held, which orders every access.
unsafe impl Sync for Made {}
// SAFETY: as above.
unsafe impl Send for Made {}

static MODULE: OnceLock<Made> = OnceLock::new();

/// A new reference to the module, made on the first call.
pub(super) fn get() -> PyResult<Owned> {
    if let Some(made) = MODULE.get() {
        // SAFETY: the module is kept alive for ever by the reference below.
        return Ok(unsafe { Owned::borrowed(made.0) });
    }
    let module = make()?;
    // The GIL is held: no other thread can have made one meanwhile.
    let kept = MODULE.get_or_init(|| Made(module.clone_ref().into_raw()));
    // SAFETY: as above.
    Ok(unsafe { Owned::borrowed(kept.0) })
}

fn make() -> PyResult<Owned> {
    let api = api();
    // SAFETY: a NUL-terminated name; a new reference or NULL.
    let name = unsafe { Owned::new((api.PyUnicode_FromString)(c"evloop._native.core".as_ptr()))? };
    // SAFETY: a str name; a new reference or NULL.
    let module = unsafe { Owned::new((api.PyModule_NewObject)(name.as_ptr()))? };
    // SAFETY: a plain conversion; a new reference or NULL.
    let version = unsafe {
        Owned::new((api.PyLong_FromLong)(
            super::EVL_CPYTHON_VERSION as std::ffi::c_long,
        ))?
    };
    set(&module, c"version", version)?;
    set(
        &module,
        c"vectorcall",
        boolean(api.PyObject_Vectorcall.is_some()),
    )?;
    Ok(module)
}

/// `module.name = value`.
pub(super) fn set(module: &Owned, name: &CStr, value: Owned) -> PyResult<()> {
    // SAFETY: live objects and a NUL-terminated name; SetAttr takes its own
    // reference to `value`.
    if unsafe { (api().PyObject_SetAttrString)(module.as_ptr(), name.as_ptr(), value.as_ptr()) } < 0
    {
        return Err(PyErr::taken());
    }
    Ok(())
}
