//! The bytes of a Python object: `bytes` directly (`PyBytes_AsStringAndSize`),
//! anything else through the buffer protocol (`PyObject_GetBuffer`, whose
//! `Py_buffer` is filled by CPython in a struct of ours: its layout is the
//! stable ABI's, unchanged since 3.3). Writable buffers are how a
//! `BufferedProtocol`'s `get_buffer()` is read into.

use std::ffi::{c_char, c_int, c_void};
use std::ptr::null_mut;

use super::api::{api, PyObject, PySsize};
use super::error::{raise_string, Exception, PyErr, PyResult};
use super::module::rt;
use super::object::Owned;

/// `Py_buffer`.
#[repr(C)]
pub(super) struct PyBuffer {
    buf: *mut c_void,
    obj: *mut PyObject,
    len: PySsize,
    itemsize: PySsize,
    readonly: c_int,
    ndim: c_int,
    format: *mut c_char,
    shape: *mut PySsize,
    strides: *mut PySsize,
    suboffsets: *mut PySsize,
    internal: *mut c_void,
}

const PYBUF_SIMPLE: c_int = 0;
const PYBUF_WRITABLE: c_int = 0x0001;

/// An object's bytes, valid while this lives (the object is kept alive by
/// the caller, or by the buffer for exported ones).
pub(super) enum Bytes {
    /// A `bytes`: its own storage, which never moves nor changes.
    Direct { start: *const u8, len: usize },
    /// Anything else, exported until dropped.
    Exported(Box<PyBuffer>),
}

impl Bytes {
    /// The bytes of `object`, which must be bytes-like: `bytes`,
    /// `bytearray`, `memoryview` (contiguous) or any buffer; otherwise
    /// asyncio's TypeError ("data argument must be a bytes-like object").
    pub(super) fn of(object: *mut PyObject) -> PyResult<Bytes> {
        let api = api();
        let mut start: *mut c_char = null_mut();
        let mut len: PySsize = 0;
        // SAFETY: a live object; for bytes it sets the pointer to its own
        // storage and the length, otherwise it raises TypeError.
        if unsafe { (api.PyBytes_AsStringAndSize)(object, &mut start, &mut len) } == 0 {
            return Ok(Bytes::Direct {
                start: start.cast(),
                len: len as usize,
            });
        }
        // SAFETY: clears the TypeError: the buffer protocol is next.
        unsafe { (api.PyErr_Clear)() };
        match export(object, PYBUF_SIMPLE) {
            Ok(view) => Ok(Bytes::Exported(view)),
            Err(_) => {
                let exception = Exception::fetch();
                if !exception.matches(api.PyExc_TypeError) {
                    return Err(exception.restore());
                }
                Err(not_bytes_like(object))
            }
        }
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        let (start, len) = match self {
            Bytes::Direct { start, len } => (*start, *len),
            Bytes::Exported(view) => (view.buf as *const u8, view.len as usize),
        };
        if len == 0 {
            return &[];
        }
        // SAFETY: bytes' storage or an exported buffer of `len` bytes, kept
        // valid while `self` lives.
        unsafe { std::slice::from_raw_parts(start, len) }
    }
}

impl Drop for Bytes {
    fn drop(&mut self) {
        if let Bytes::Exported(view) = self {
            release(view);
        }
    }
}

/// A writable buffer (a BufferedProtocol's), exported until dropped.
pub(super) struct WritableBuffer(Box<PyBuffer>);

impl WritableBuffer {
    pub(super) fn of(object: *mut PyObject) -> PyResult<WritableBuffer> {
        export(object, PYBUF_WRITABLE).map(WritableBuffer)
    }

    pub(super) fn len(&self) -> usize {
        self.0.len as usize
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [u8] {
        if self.0.len == 0 {
            return &mut [];
        }
        // SAFETY: an exported writable buffer of `len` bytes, kept valid
        // (and not otherwise used by us) while `self` lives.
        unsafe { std::slice::from_raw_parts_mut(self.0.buf.cast(), self.0.len as usize) }
    }
}

impl Drop for WritableBuffer {
    fn drop(&mut self) {
        release(&mut self.0);
    }
}

fn export(object: *mut PyObject, flags: c_int) -> PyResult<Box<PyBuffer>> {
    let mut view = Box::new(PyBuffer {
        buf: null_mut(),
        obj: null_mut(),
        len: 0,
        itemsize: 0,
        readonly: 0,
        ndim: 0,
        format: null_mut(),
        shape: null_mut(),
        strides: null_mut(),
        suboffsets: null_mut(),
        internal: null_mut(),
    });
    let view_ptr: *mut PyBuffer = &mut *view;
    // SAFETY: a live object; the view is ours to be filled; 0 on success.
    if unsafe { (api().PyObject_GetBuffer)(object, view_ptr.cast(), flags) } < 0 {
        return Err(PyErr::taken());
    }
    Ok(view)
}

fn release(view: &mut PyBuffer) {
    // SAFETY: a view filled by PyObject_GetBuffer, released once.
    unsafe { (api().PyBuffer_Release)((view as *mut PyBuffer).cast()) }
}

/// asyncio's TypeError for data that is not bytes-like.
pub(super) fn not_bytes_like(object: *mut PyObject) -> PyErr {
    let name = type_name(object).unwrap_or_else(|| "?".to_string());
    raise_string(
        api().PyExc_TypeError,
        &format!("data argument must be a bytes-like object, not '{name}'"),
    )
}

/// `type(object).__name__`, as text.
fn type_name(object: *mut PyObject) -> Option<String> {
    let api = api();
    // SAFETY: live objects; new references or NULL.
    let ty = unsafe { Owned::new((api.PyObject_Type)(object)) }.ok()?;
    let Ok(name) = super::call::getattr(ty.as_ptr(), rt().names.name.as_ptr()) else {
        // SAFETY: clears the error of a type without a name.
        unsafe { (api.PyErr_Clear)() };
        return None;
    };
    // SAFETY: a str; its UTF-8 stays valid while `name` lives.
    let text = unsafe { (api.PyUnicode_AsUTF8)(name.as_ptr()) };
    if text.is_null() {
        // SAFETY: clears the error of a name that is not a str.
        unsafe { (api.PyErr_Clear)() };
        return None;
    }
    // SAFETY: NUL-terminated UTF-8 from CPython.
    Some(
        unsafe { std::ffi::CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned(),
    )
}
