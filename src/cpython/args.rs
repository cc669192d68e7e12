//! The arguments of a fast-call function (`METH_FASTCALL | METH_KEYWORDS`):
//! positional values, then one value per keyword name, in one array.

use std::ffi::CStr;

use super::api::{api, PyObject};
use super::error::{raise_string, PyResult};

pub(super) struct FastArgs<'a> {
    pub(super) positional: &'a [*mut PyObject],
    /// (name, value) pairs, borrowed from the call.
    pub(super) keywords: Vec<(*mut PyObject, *mut PyObject)>,
}

impl<'a> FastArgs<'a> {
    /// # Safety
    /// What CPython passes a fast-call function: `nargs` positional values
    /// at `args`, then one per name of the tuple `kwnames` (or NULL), all
    /// live for the call.
    pub(super) unsafe fn new(
        args: *const *mut PyObject,
        nargs: isize,
        kwnames: *mut PyObject,
    ) -> FastArgs<'a> {
        let api = api();
        let nargs = usize::try_from(nargs).unwrap_or(0);
        let keyword_count = if kwnames.is_null() {
            0
        } else {
            // SAFETY: a tuple of str.
            usize::try_from(unsafe { (api.PyTuple_Size)(kwnames) }).unwrap_or(0)
        };
        let positional = if nargs == 0 {
            &[][..]
        } else {
            // SAFETY: `nargs` values at `args`, as the caller promised.
            unsafe { std::slice::from_raw_parts(args, nargs) }
        };
        let keywords = (0..keyword_count)
            .map(|i| {
                // SAFETY: index in range of the tuple; its item and the value
                // after the positional ones are borrowed for the call.
                unsafe {
                    (
                        (api.PyTuple_GetItem)(kwnames, i as isize),
                        *args.add(nargs + i),
                    )
                }
            })
            .collect();
        FastArgs {
            positional,
            keywords,
        }
    }

    /// The value of keyword `name`, refusing any keyword not in `allowed`
    /// (TypeError naming `function`).
    pub(super) fn keyword(
        &self,
        function: &str,
        name: &CStr,
        allowed: &[&CStr],
    ) -> PyResult<Option<*mut PyObject>> {
        let api = api();
        let mut found = None;
        for &(key, value) in &self.keywords {
            // SAFETY: `key` is a str of the call's kwnames.
            let is = |text: &CStr| unsafe { (api.PyUnicode_CompareWithASCIIString)(key, text.as_ptr()) } == 0;
            if is(name) {
                found = Some(value);
            } else if !allowed.iter().any(|text| is(text)) {
                return Err(raise_string(
                    api.PyExc_TypeError,
                    &format!("{function}() got an unexpected keyword argument"),
                ));
            }
        }
        Ok(found)
    }
}
