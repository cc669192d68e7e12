//! The table of CPython functions this layer calls, found once, at
//! `evl_cpython_init`, in the running process with `dlsym(RTLD_DEFAULT)`:
//! in libpython when the interpreter links it as a shared library (pyenv's),
//! in the executable itself when it links it statically (Debian's). Nothing
//! here comes from a Python header, so one build serves every CPython.
//!
//! Only exported functions and exported data: never a macro and never a
//! field of CPython's own structs. `Py_None` is the address of
//! `_Py_NoneStruct`; each `PyExc_*` symbol is a pointer to the exception
//! type, read once here. A few functions are exported only by newer
//! versions (`PyObject_Vectorcall` from 3.11); they are optional, and the
//! calls fall back when they are missing.
//!
//! The structs CPython reads from us (`PyType_Spec`, `PyMethodDef`,
//! `PyMemberDef`, `PyGetSetDef`, `Py_buffer`) and the constants that go in
//! them are the stable ABI's, unchanged since 3.3 at least; they are in
//! [`super::typespec`] and [`super::buffer`].

use std::ffi::{c_char, c_double, c_int, c_long, c_uint, c_void, CStr};
use std::sync::OnceLock;

/// A Python object: only ever behind a pointer, never dereferenced.
#[repr(C)]
pub(super) struct PyObject {
    _opaque: [u8; 0],
}

/// `Py_ssize_t`.
pub(super) type PySsize = isize;

/// A `PyThreadState *` from `PyEval_SaveThread`, handed back to `PyEval_RestoreThread`.
#[repr(C)]
pub(super) struct PyThreadState {
    _opaque: [u8; 0],
}

type Obj = *mut PyObject;

/// Declares the table: each field is named after its symbol and has the
/// type of its C prototype. `required` ones fail the init when missing,
/// `optional` ones are `None`.
macro_rules! cpython_api {
    (
        required { $( $name:ident: $ty:ty; )* }
        optional { $( $opt:ident: $opt_ty:ty; )* }
        exceptions { $( $exc:ident, )* }
    ) => {
        /// CPython's functions, as found in this process.
        #[allow(non_snake_case)]
        pub(super) struct Api {
            $( pub(super) $name: $ty, )*
            $( pub(super) $opt: Option<$opt_ty>, )*
            /// `Py_None`.
            pub(super) none: Obj,
            /// `Py_True` and `Py_False`.
            pub(super) true_: Obj,
            pub(super) false_: Obj,
            $( pub(super) $exc: Obj, )*
        }

        impl Api {
            /// Every symbol, or the name of the first one missing.
            fn resolve() -> Result<Api, &'static str> {
                Ok(Api {
                    $( $name: {
                        let address = find(concat!(stringify!($name), "\0"))?;
                        // SAFETY: the symbol is CPython's function of this
                        // name, whose C prototype is the field's type (the
                        // documented one, the same in every version 3.8+).
                        unsafe { std::mem::transmute::<*mut c_void, $ty>(address) }
                    }, )*
                    $( $opt: find(concat!(stringify!($opt), "\0")).ok().map(|address| {
                        // SAFETY: as above, for a function newer than 3.8.
                        unsafe { std::mem::transmute::<*mut c_void, $opt_ty>(address) }
                    }), )*
                    none: find("_Py_NoneStruct\0")?.cast(),
                    true_: find("_Py_TrueStruct\0")?.cast(),
                    false_: find("_Py_FalseStruct\0")?.cast(),
                    $( $exc: exception(concat!(stringify!($exc), "\0"))?, )*
                })
            }
        }
    };
}

cpython_api! {
    required {
        // Reference counts (functions, not the macros).
        Py_IncRef: unsafe extern "C" fn(Obj);
        Py_DecRef: unsafe extern "C" fn(Obj);

        // Errors.
        PyErr_Occurred: unsafe extern "C" fn() -> Obj;
        PyErr_SetString: unsafe extern "C" fn(Obj, *const c_char);
        PyErr_SetFromErrno: unsafe extern "C" fn(Obj) -> Obj;
        PyErr_Fetch: unsafe extern "C" fn(*mut Obj, *mut Obj, *mut Obj);
        PyErr_Restore: unsafe extern "C" fn(Obj, Obj, Obj);
        PyErr_NormalizeException: unsafe extern "C" fn(*mut Obj, *mut Obj, *mut Obj);
        PyErr_GivenExceptionMatches: unsafe extern "C" fn(Obj, Obj) -> c_int;
        PyErr_Clear: unsafe extern "C" fn();
        PyErr_CheckSignals: unsafe extern "C" fn() -> c_int;
        PyErr_WriteUnraisable: unsafe extern "C" fn(Obj);
        PyException_SetTraceback: unsafe extern "C" fn(Obj, Obj) -> c_int;

        // The GIL, released only around the loop's wait.
        PyEval_SaveThread: unsafe extern "C" fn() -> *mut PyThreadState;
        PyEval_RestoreThread: unsafe extern "C" fn(*mut PyThreadState);

        // Objects.
        PyObject_GetAttr: unsafe extern "C" fn(Obj, Obj) -> Obj;
        PyObject_GetAttrString: unsafe extern "C" fn(Obj, *const c_char) -> Obj;
        PyObject_SetAttr: unsafe extern "C" fn(Obj, Obj, Obj) -> c_int;
        PyObject_SetAttrString: unsafe extern "C" fn(Obj, *const c_char, Obj) -> c_int;
        PyObject_IsTrue: unsafe extern "C" fn(Obj) -> c_int;
        PyObject_IsInstance: unsafe extern "C" fn(Obj, Obj) -> c_int;
        PyObject_Repr: unsafe extern "C" fn(Obj) -> Obj;
        PyObject_Type: unsafe extern "C" fn(Obj) -> Obj;
        PyObject_GetIter: unsafe extern "C" fn(Obj) -> Obj;
        PyIter_Next: unsafe extern "C" fn(Obj) -> Obj;

        // Calls (vectorcall, when there, is below).
        PyObject_Call: unsafe extern "C" fn(Obj, Obj, Obj) -> Obj;
        PyObject_CallFunctionObjArgs: unsafe extern "C" fn(Obj, ...) -> Obj;
        PyObject_CallMethodObjArgs: unsafe extern "C" fn(Obj, Obj, ...) -> Obj;

        // Buffers: bytes made here, and any object's bytes (Py_buffer).
        PyBytes_FromStringAndSize: unsafe extern "C" fn(*const c_char, PySsize) -> Obj;
        PyBytes_AsStringAndSize: unsafe extern "C" fn(Obj, *mut *mut c_char, *mut PySsize) -> c_int;
        PyObject_GetBuffer: unsafe extern "C" fn(Obj, *mut c_void, c_int) -> c_int;
        PyBuffer_Release: unsafe extern "C" fn(*mut c_void);

        // Numbers and strings.
        PyLong_FromLong: unsafe extern "C" fn(c_long) -> Obj;
        PyLong_FromLongLong: unsafe extern "C" fn(i64) -> Obj;
        PyLong_FromUnsignedLongLong: unsafe extern "C" fn(u64) -> Obj;
        PyLong_FromSsize_t: unsafe extern "C" fn(PySsize) -> Obj;
        PyLong_AsLong: unsafe extern "C" fn(Obj) -> c_long;
        PyLong_AsSsize_t: unsafe extern "C" fn(Obj) -> PySsize;
        PyFloat_FromDouble: unsafe extern "C" fn(c_double) -> Obj;
        PyFloat_AsDouble: unsafe extern "C" fn(Obj) -> c_double;
        PyUnicode_FromString: unsafe extern "C" fn(*const c_char) -> Obj;
        PyUnicode_InternFromString: unsafe extern "C" fn(*const c_char) -> Obj;
        PyUnicode_CompareWithASCIIString: unsafe extern "C" fn(Obj, *const c_char) -> c_int;
        PyUnicode_AsUTF8: unsafe extern "C" fn(Obj) -> *const c_char;

        // Containers.
        PyTuple_New: unsafe extern "C" fn(PySsize) -> Obj;
        PyTuple_SetItem: unsafe extern "C" fn(Obj, PySsize, Obj) -> c_int;
        PyTuple_GetItem: unsafe extern "C" fn(Obj, PySsize) -> Obj;
        PyTuple_Size: unsafe extern "C" fn(Obj) -> PySsize;
        PyDict_New: unsafe extern "C" fn() -> Obj;
        PyDict_Copy: unsafe extern "C" fn(Obj) -> Obj;
        PyDict_SetItem: unsafe extern "C" fn(Obj, Obj, Obj) -> c_int;
        PyDict_SetItemString: unsafe extern "C" fn(Obj, *const c_char, Obj) -> c_int;
        PyDict_GetItemWithError: unsafe extern "C" fn(Obj, Obj) -> Obj;
        PyList_New: unsafe extern "C" fn(PySsize) -> Obj;
        PyList_Append: unsafe extern "C" fn(Obj, Obj) -> c_int;

        // Modules and types.
        PyImport_ImportModule: unsafe extern "C" fn(*const c_char) -> Obj;
        PyModule_NewObject: unsafe extern "C" fn(Obj) -> Obj;
        PyType_FromSpecWithBases: unsafe extern "C" fn(*mut c_void, Obj) -> Obj;
        PyType_GenericAlloc: unsafe extern "C" fn(Obj, PySsize) -> Obj;
        PyType_GetSlot: unsafe extern "C" fn(Obj, c_int) -> *mut c_void;
        PyType_IsSubtype: unsafe extern "C" fn(Obj, Obj) -> c_int;
        PyObject_GC_UnTrack: unsafe extern "C" fn(*mut c_void);
        PyObject_ClearWeakRefs: unsafe extern "C" fn(Obj);
        PyCFunction_NewEx: unsafe extern "C" fn(*mut c_void, Obj, Obj) -> Obj;

        // contextvars: callbacks run in a context.
        PyContext_CopyCurrent: unsafe extern "C" fn() -> Obj;
        PyContext_Copy: unsafe extern "C" fn(Obj) -> Obj;
        PyContext_Enter: unsafe extern "C" fn(Obj) -> c_int;
        PyContext_Exit: unsafe extern "C" fn(Obj) -> c_int;

    }
    optional {
        // Exported from 3.11 (a static inline function before);
        // PyObject_CallFunctionObjArgs otherwise.
        PyObject_Vectorcall: unsafe extern "C" fn(Obj, *const Obj, usize, Obj) -> Obj;
    }
    exceptions {
        PyExc_KeyboardInterrupt,
        PyExc_SystemExit,
        PyExc_RuntimeError,
        PyExc_TypeError,
        PyExc_ValueError,
        PyExc_OverflowError,
        PyExc_OSError,
        PyExc_ConnectionError,
        PyExc_AttributeError,
    }
}

// SAFETY: the table holds addresses of CPython's functions and of static
// objects (None, True, False, the exception types), which live as long as
// the process; they are only used with the GIL held, which orders every use.
unsafe impl Sync for Api {}
// SAFETY: as above: nothing in the table belongs to one thread.
unsafe impl Send for Api {}

// Stable ABI values (methodobject.h, object.h, structmember.h, pybuffer.h,
// abstract.h), the same since 3.8.
pub(super) const METH_NOARGS: c_int = 0x0004;
pub(super) const METH_O: c_int = 0x0008;
pub(super) const METH_FASTCALL: c_int = 0x0080;
pub(super) const METH_KEYWORDS: c_int = 0x0002;
pub(super) const PY_TPFLAGS_BASETYPE: c_uint = 1 << 10;
pub(super) const PY_TPFLAGS_HAVE_GC: c_uint = 1 << 14;
pub(super) const PY_TPFLAGS_DEFAULT: c_uint = 1 << 18;
/// `PY_VECTORCALL_ARGUMENTS_OFFSET`: the callee may use `args[-1]`.
pub(super) const VECTORCALL_ARGUMENTS_OFFSET: usize = 1 << (usize::BITS - 1);

static API: OnceLock<Api> = OnceLock::new();

/// The table. Only reachable from code that `evl_cpython_init` made
/// reachable (the types and functions it returns), so it is always there.
#[inline(always)]
pub(super) fn api() -> &'static Api {
    match API.get() {
        Some(api) => api,
        None => unreachable_before_init(),
    }
}

#[cold]
#[inline(never)]
fn unreachable_before_init() -> ! {
    panic!("evloop: the CPython layer was used before evl_cpython_init")
}

/// Finds every symbol, once; the name of the first one missing otherwise.
pub(super) fn init() -> Result<&'static Api, &'static str> {
    if let Some(api) = API.get() {
        return Ok(api);
    }
    let table = Api::resolve()?;
    Ok(API.get_or_init(|| table))
}

/// `PyGILState_Check`, `_Ensure` and `_Release`, which any thread may call.
pub(super) struct GilFunctions {
    pub(super) check: extern "C" fn() -> c_int,
    pub(super) ensure: extern "C" fn() -> c_int,
    pub(super) release: extern "C" fn(c_int),
}

/// The GIL's functions, found before anything else: whether the caller
/// holds the GIL decides how the init may report errors.
pub(super) fn gil_functions() -> Option<GilFunctions> {
    let (check, ensure, release) = (
        find("PyGILState_Check\0").ok()?,
        find("PyGILState_Ensure\0").ok()?,
        find("PyGILState_Release\0").ok()?,
    );
    // SAFETY: CPython's functions of these prototypes (PyGILState_STATE is
    // a C enum, an int), callable from any thread that has a thread state,
    // as a thread calling through ctypes has.
    unsafe {
        Some(GilFunctions {
            check: std::mem::transmute::<*mut c_void, extern "C" fn() -> c_int>(check),
            ensure: std::mem::transmute::<*mut c_void, extern "C" fn() -> c_int>(ensure),
            release: std::mem::transmute::<*mut c_void, extern "C" fn(c_int)>(release),
        })
    }
}

/// The two symbols that can report a missing one as a Python error.
pub(super) fn error_reporter() -> Option<(unsafe extern "C" fn(Obj, *const c_char), Obj)> {
    let set_string = find("PyErr_SetString\0").ok()?;
    let import_error = exception("PyExc_ImportError\0").ok()?;
    // SAFETY: CPython's PyErr_SetString, of this prototype.
    let set_string = unsafe {
        std::mem::transmute::<*mut c_void, unsafe extern "C" fn(Obj, *const c_char)>(set_string)
    };
    Some((set_string, import_error))
}

/// The address of `name` (NUL-terminated) in the process; the name without
/// its NUL when it is missing.
fn find(name: &'static str) -> Result<*mut c_void, &'static str> {
    let c_name = CStr::from_bytes_with_nul(name.as_bytes()).expect("NUL-terminated name");
    // SAFETY: dlsym reads the NUL-terminated name; RTLD_DEFAULT searches the
    // executable and the libraries loaded globally, and takes no handle.
    let address = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c_name.as_ptr()) };
    if address.is_null() {
        Err(name.trim_end_matches('\0'))
    } else {
        Ok(address)
    }
}

/// A `PyExc_*` type: the symbol is a pointer to it.
fn exception(name: &'static str) -> Result<Obj, &'static str> {
    let slot = find(name)?.cast::<Obj>();
    // SAFETY: `PyExc_*` symbols are `PyObject *` variables, set before any
    // Python code runs (the interpreter is running: it loaded us).
    let exception = unsafe { slot.read() };
    if exception.is_null() {
        Err(name.trim_end_matches('\0'))
    } else {
        Ok(exception)
    }
}
