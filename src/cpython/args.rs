//! The arguments of a fast-call function (`METH_FASTCALL | METH_KEYWORDS`):
//! positional values, then one value per keyword name, in one array.
//! Nothing is copied: the calls of the hot path (`call_soon(cb, arg,
//! context=ctx)` from asyncio's C tasks) cost no allocation.

use std::ffi::CStr;

use super::api::{api, PyObject};
use super::error::{raise_string, PyResult};
use super::object::{Owned, Slot};

pub(super) struct FastArgs<'a> {
    pub(super) positional: &'a [*mut PyObject],
    /// The keyword values, in the order of `names`.
    values: &'a [*mut PyObject],
    /// The keywords' names (a tuple of str), or NULL.
    names: *mut PyObject,
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
        let nargs = usize::try_from(nargs).unwrap_or(0);
        let keyword_count = if kwnames.is_null() {
            0
        } else {
            // SAFETY: a tuple of str.
            usize::try_from(unsafe { (api().PyTuple_Size)(kwnames) }).unwrap_or(0)
        };
        let all = if nargs + keyword_count == 0 {
            &[][..]
        } else {
            // SAFETY: that many values at `args`, as the caller promised.
            unsafe { std::slice::from_raw_parts(args, nargs + keyword_count) }
        };
        let (positional, values) = all.split_at(nargs);
        FastArgs {
            positional,
            values,
            names: kwnames,
        }
    }

    /// The value of keyword `name`, refusing any keyword not in `allowed`
    /// (TypeError naming `function`). `seen`, if given, keeps the str object
    /// that last named it, compared by address first: a caller passes the
    /// same object every time (asyncio's C tasks their static `context`).
    pub(super) fn keyword(
        &self,
        function: &str,
        name: &CStr,
        seen: Option<&Slot>,
        allowed: &[&CStr],
    ) -> PyResult<Option<*mut PyObject>> {
        let api = api();
        let mut found = None;
        for (i, &value) in self.values.iter().enumerate() {
            // SAFETY: an index in range of the names tuple (one per value).
            let key = unsafe { (api.PyTuple_GetItem)(self.names, i as isize) };
            // SAFETY: `key` is a str of the call's names.
            let is = |text: &CStr| unsafe { (api.PyUnicode_CompareWithASCIIString)(key, text.as_ptr()) } == 0;
            if seen.is_some_and(|seen| seen.get() == key) {
                found = Some(value);
            } else if is(name) {
                if let Some(seen) = seen {
                    // SAFETY: a live str of the call's names, kept from now on.
                    drop(seen.replace(Some(unsafe { Owned::borrowed(key) })));
                }
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

    /// How many values: positional, then keyword.
    pub(super) fn count(&self) -> usize {
        self.positional.len() + self.values.len()
    }

    /// Every keyword, as (name, value).
    pub(super) fn keywords(&self) -> impl Iterator<Item = (*mut PyObject, *mut PyObject)> + '_ {
        let api = api();
        self.values.iter().enumerate().map(move |(i, &value)| {
            // SAFETY: an index in range of the names tuple (one per value).
            (
                unsafe { (api.PyTuple_GetItem)(self.names, i as isize) },
                value,
            )
        })
    }
}
