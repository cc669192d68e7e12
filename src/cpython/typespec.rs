//! Native types, made at run time with `PyType_FromSpecWithBases`: their
//! methods, getters and setters, and the members that hold their
//! references. An instance is the base's part (of a size asked of Python,
//! `base.__basicsize__`, never computed from a header) followed by a
//! `#[repr(C)]` struct of ours, the payload, which [`NativeType::payload`]
//! reaches. Allocation zero-fills it, so every payload is made of cells whose
//! all-zero value is their start (NULL references, 0, false).
//!
//! A payload's references are declared as object members (`T_OBJECT_EX`):
//! CPython then clears them when the object dies and shows them to the
//! garbage collector, as it does for a Python class's `__slots__` (the
//! types that derive from asyncio's classes keep asyncio's deallocation).
//! The structs below are the stable ABI's (`PyType_Spec`, `PyType_Slot`,
//! `PyMethodDef`, `PyMemberDef`, `PyGetSetDef`), which CPython reads.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::marker::PhantomData;
use std::ptr::null_mut;

use super::api::{api, PyObject, PySsize, PY_TPFLAGS_BASETYPE, PY_TPFLAGS_DEFAULT};
use super::error::PyResult;
use super::object::Owned;

/// `PyMethodDef`.
#[repr(C)]
struct MethodDef {
    name: *const c_char,
    function: *mut c_void,
    flags: c_int,
    doc: *const c_char,
}

/// `PyMemberDef`.
#[repr(C)]
struct MemberDef {
    name: *const c_char,
    kind: c_int,
    offset: PySsize,
    flags: c_int,
    doc: *const c_char,
}

/// `PyGetSetDef`.
#[repr(C)]
struct GetSetDef {
    name: *const c_char,
    get: Option<Getter>,
    set: Option<Setter>,
    doc: *const c_char,
    closure: *mut c_void,
}

/// `PyType_Slot`.
#[repr(C)]
struct TypeSlot {
    slot: c_int,
    function: *mut c_void,
}

/// `PyType_Spec`.
#[repr(C)]
struct TypeSpec {
    name: *const c_char,
    basicsize: c_int,
    itemsize: c_int,
    flags: c_uint,
    slots: *mut TypeSlot,
}

/// A getter: `(self, closure) -> new reference or NULL`.
pub(super) type Getter = unsafe extern "C" fn(*mut PyObject, *mut c_void) -> *mut PyObject;
/// A setter: `(self, value or NULL to delete, closure) -> 0 or -1`.
pub(super) type Setter = unsafe extern "C" fn(*mut PyObject, *mut PyObject, *mut c_void) -> c_int;

/// A setter's check: its attribute cannot be deleted (`value` NULL).
pub(super) fn refuse_delete(value: *mut PyObject) -> PyResult<()> {
    if value.is_null() {
        return Err(super::error::raise(
            api().PyExc_AttributeError,
            c"cannot delete this attribute",
        ));
    }
    Ok(())
}

/// `T_OBJECT_EX`: an object reference; unset (NULL) raises AttributeError.
const T_OBJECT_EX: c_int = 16;

// typeslots.h
pub(super) const PY_TP_DEALLOC: c_int = 52;
pub(super) const PY_TP_NEW: c_int = 65;
pub(super) const PY_TP_TRAVERSE: c_int = 71;
pub(super) const PY_TP_CLEAR: c_int = 51;
pub(super) const PY_TP_FREE: c_int = 74;
const PY_TP_METHODS: c_int = 64;
const PY_TP_MEMBERS: c_int = 72;
const PY_TP_GETSET: c_int = 73;
const PY_TP_DOC: c_int = 56;

/// Describes a type, then makes it ([`TypeBuilder::build`]).
pub(super) struct TypeBuilder<T> {
    name: &'static CStr,
    doc: &'static CStr,
    base: Option<Owned>,
    offset: usize,
    flags: c_uint,
    methods: Vec<MethodDef>,
    members: Vec<MemberDef>,
    getsets: Vec<GetSetDef>,
    slots: Vec<TypeSlot>,
    payload: PhantomData<T>,
}

impl<T> TypeBuilder<T> {
    /// A type named `name` ("module.Name") whose payload `T` follows the
    /// part of `base` (`object` if `None`), at `payload_offset` (at least
    /// the base's `__basicsize__`).
    pub(super) fn new(
        name: &'static CStr,
        doc: &'static CStr,
        base: Option<Owned>,
        payload_offset: usize,
    ) -> TypeBuilder<T> {
        let align = std::mem::align_of::<T>();
        TypeBuilder {
            name,
            doc,
            base,
            offset: payload_offset.div_ceil(align) * align,
            flags: PY_TPFLAGS_DEFAULT | PY_TPFLAGS_BASETYPE,
            methods: Vec::new(),
            members: Vec::new(),
            getsets: Vec::new(),
            slots: Vec::new(),
            payload: PhantomData,
        }
    }

    pub(super) fn flags(mut self, flags: c_uint) -> Self {
        self.flags |= flags;
        self
    }

    /// A method: `function` is the C function for `flags` (METH_O,
    /// METH_NOARGS, METH_FASTCALL | METH_KEYWORDS), as a pointer.
    pub(super) fn method(
        mut self,
        name: &'static CStr,
        function: *mut c_void,
        flags: c_int,
        doc: &'static CStr,
    ) -> Self {
        self.methods.push(MethodDef {
            name: name.as_ptr(),
            function,
            flags,
            doc: doc.as_ptr(),
        });
        self
    }

    /// An attribute that owns a reference: the [`Slot`](super::object::Slot)
    /// at `field` (`std::mem::offset_of!(T, field)`) of the payload.
    pub(super) fn member(mut self, name: &'static CStr, field: usize, doc: &'static CStr) -> Self {
        self.members.push(MemberDef {
            name: name.as_ptr(),
            kind: T_OBJECT_EX,
            offset: (self.offset + field) as PySsize,
            flags: 0,
            doc: doc.as_ptr(),
        });
        self
    }

    pub(super) fn getset(
        mut self,
        name: &'static CStr,
        get: Getter,
        set: Option<Setter>,
        doc: &'static CStr,
    ) -> Self {
        self.getsets.push(GetSetDef {
            name: name.as_ptr(),
            get: Some(get),
            set,
            doc: doc.as_ptr(),
            closure: null_mut(),
        });
        self
    }

    /// A slot of typeslots.h (`PY_TP_*`).
    pub(super) fn slot(mut self, slot: c_int, function: *mut c_void) -> Self {
        self.slots.push(TypeSlot { slot, function });
        self
    }

    /// Makes the type. Its tables are kept for the process's life (CPython
    /// keeps pointers to the methods and getters); types are made once.
    pub(super) fn build(self) -> PyResult<NativeType<T>> {
        let api = api();
        let mut slots = self.slots;
        let mut table = |slot: c_int, items: *mut c_void| {
            slots.push(TypeSlot {
                slot,
                function: items,
            })
        };
        table(PY_TP_DOC, self.doc.as_ptr() as *mut c_void);
        table(PY_TP_METHODS, leak_table(self.methods, zeroed_method()));
        table(PY_TP_MEMBERS, leak_table(self.members, zeroed_member()));
        table(PY_TP_GETSET, leak_table(self.getsets, zeroed_getset()));
        slots.push(TypeSlot {
            slot: 0,
            function: null_mut(),
        });
        let size = self.offset + std::mem::size_of::<T>();
        let spec = Box::leak(Box::new(TypeSpec {
            name: self.name.as_ptr(),
            basicsize: c_int::try_from(size).expect("a small payload"),
            itemsize: 0,
            flags: self.flags,
            slots: Box::leak(slots.into_boxed_slice()).as_mut_ptr(),
        }));
        let bases = match &self.base {
            // SAFETY: a one-item tuple of a live type; a new reference or NULL.
            Some(base) => unsafe {
                let tuple = Owned::new((api.PyTuple_New)(1))?;
                (api.PyTuple_SetItem)(tuple.as_ptr(), 0, base.clone_ref().into_raw());
                Some(tuple)
            },
            None => None,
        };
        let bases_ptr = bases.as_ref().map_or(null_mut(), Owned::as_ptr);
        // SAFETY: the spec and its tables are valid and live for ever; bases
        // is NULL (object) or a tuple of types; a new reference or NULL.
        let ty = unsafe {
            Owned::new((api.PyType_FromSpecWithBases)(
                (spec as *mut TypeSpec).cast(),
                bases_ptr,
            ))?
        };
        Ok(NativeType {
            ty,
            offset: self.offset,
            payload: PhantomData,
        })
    }
}

fn leak_table<E>(mut items: Vec<E>, end: E) -> *mut c_void {
    items.push(end);
    Box::leak(items.into_boxed_slice()).as_mut_ptr().cast()
}

fn zeroed_method() -> MethodDef {
    MethodDef {
        name: std::ptr::null(),
        function: null_mut(),
        flags: 0,
        doc: std::ptr::null(),
    }
}

fn zeroed_member() -> MemberDef {
    MemberDef {
        name: std::ptr::null(),
        kind: 0,
        offset: 0,
        flags: 0,
        doc: std::ptr::null(),
    }
}

fn zeroed_getset() -> GetSetDef {
    GetSetDef {
        name: std::ptr::null(),
        get: None,
        set: None,
        doc: std::ptr::null(),
        closure: null_mut(),
    }
}

/// A type made here, with where its payload is.
pub(super) struct NativeType<T> {
    ty: Owned,
    offset: usize,
    payload: PhantomData<T>,
}

impl<T> NativeType<T> {
    pub(super) fn type_object(&self) -> *mut PyObject {
        self.ty.as_ptr()
    }

    /// A new reference to the type.
    pub(super) fn type_ref(&self) -> Owned {
        self.ty.clone_ref()
    }

    /// The payload of `object`.
    ///
    /// # Safety
    /// `object` is a live instance of this type (or of a subclass), and
    /// stays so while the reference is used.
    #[inline(always)]
    pub(super) unsafe fn payload<'a>(&self, object: *mut PyObject) -> &'a T {
        // SAFETY: instances of this type (and its subclasses) have the
        // payload at `offset`, zero-filled at allocation, and T is made of
        // cells valid when zeroed; shared references only (cells inside).
        unsafe { &*object.cast::<u8>().add(self.offset).cast::<T>() }
    }

    /// Whether `object` is an instance of this type or of a subclass.
    pub(super) fn is_instance(&self, object: *mut PyObject) -> bool {
        let api = api();
        // SAFETY: a live object; PyObject_Type gives a new reference.
        match unsafe { Owned::new((api.PyObject_Type)(object)) } {
            // SAFETY: two live type objects.
            Ok(ty) => unsafe { (api.PyType_IsSubtype)(ty.as_ptr(), self.ty.as_ptr()) != 0 },
            Err(_) => false,
        }
    }

    /// A new instance of `subtype` (this type or a subclass), payload zeroed.
    ///
    /// # Safety
    /// `subtype` is this type or one of its subclasses.
    pub(super) unsafe fn alloc(&self, subtype: *mut PyObject) -> PyResult<Owned> {
        // SAFETY: a type of ours (or a subclass); a new reference or NULL.
        unsafe { Owned::new((api().PyType_GenericAlloc)(subtype, 0)) }
    }

    /// A new instance of this very type.
    pub(super) fn new_instance(&self) -> PyResult<Owned> {
        // SAFETY: our own type.
        unsafe { self.alloc(self.ty.as_ptr()) }
    }
}
