//! The fds the loop watches besides its transports' streams:
//!
//! - asyncio's readers and writers (`add_reader`, `add_writer`, and
//!   through them `sock_*`, pipes, subprocesses, the self-pipe of signals),
//!   which asyncio registers with the package's selector, which registers
//!   them here (`_watch_fd`); their handles run as asyncio's
//!   `_process_events` would queue them;
//! - listening sockets served natively (`_serve`): readiness accepts in a
//!   loop, and each connection's fd goes to the package's callback, which
//!   makes its protocol and transport (in a copy of the context that was
//!   current when serving started, as asyncio's accept task has).

use std::os::fd::RawFd;

use super::api::{api, PyObject};
use super::boundary;
use super::call::{self, in_context};
use super::error::{raise, raise_errno, write_unraisable, Exception, PyErr, PyResult};
use super::event_loop::{core_of, loop_method, LoopCore, Token};
use super::handle;
use super::module::rt;
use super::object::{int, none, Owned};
use super::ready::ReadyItem;
use crate::sys::{self, READ, WRITE};

/// `selectors.EVENT_READ` and `EVENT_WRITE`.
const EVENT_READ: u32 = 1;
const EVENT_WRITE: u32 = 2;

/// A listening socket served natively.
pub(super) struct Listener {
    sock: Owned,
    callback: Owned,
    context: Owned,
    backlog: usize,
}

impl Listener {
    pub(super) fn references(&self) -> impl Iterator<Item = &Owned> {
        [&self.sock, &self.callback, &self.context].into_iter()
    }
}

/// An fd argument.
fn fd_of(object: *mut PyObject) -> PyResult<RawFd> {
    let api = api();
    // SAFETY: a live object; -1 with an exception set on failure.
    let fd = unsafe { (api.PyLong_AsLong)(object) };
    // SAFETY: reads the error indicator.
    if fd == -1 && unsafe { !(api.PyErr_Occurred)().is_null() } {
        return Err(PyErr::taken());
    }
    if fd < 0 {
        return Err(raise(api.PyExc_ValueError, c"invalid file descriptor"));
    }
    // Past a C int, as the standard library's selectors and epoll say it
    // (never truncated to the low 32 bits, which may name an open fd).
    RawFd::try_from(fd).map_err(|_| {
        raise(
            api.PyExc_OverflowError,
            c"file descriptor is greater than maximum",
        )
    })
}

loop_method!(
    /// `loop._watch_fd(fd, events, data)`: watch `fd` for `events` (a
    /// selectors mask); `data` is asyncio's `(reader, writer)`.
    pub(super) watch_fd, |_object, core, args| {
    let &[fd, events, data] = args.positional else {
        return Err(raise(api().PyExc_TypeError, c"_watch_fd(fd, events, data)"));
    };
    let fd = fd_of(fd)?;
    let events = fd_of(events)? as u32;
    let interest = if events & EVENT_READ != 0 { READ } else { 0 }
        | if events & EVENT_WRITE != 0 { WRITE } else { 0 };
    let watched = core.watches.borrow().contains_key(&fd);
    {
        let mut io = core.io()?;
        let result = if watched {
            io.modify(fd, interest)
        } else {
            io.register(fd, interest, Token::WATCH)
        };
        result.map_err(raise_errno)?;
    }
    // SAFETY: a live argument of the call.
    let data = unsafe { Owned::borrowed(data) };
    let old = core.watches.borrow_mut().insert(fd, (events, data));
    drop(old);
    Ok(none())
});

/// `loop._unwatch_fd(fd)`: stops watching `fd` (closed already or not).
pub(super) unsafe extern "C" fn unwatch_fd(
    object: *mut PyObject,
    fd: *mut PyObject,
) -> *mut PyObject {
    boundary::object(|| {
        // SAFETY: CPython checked the instance.
        let core = unsafe { core_of(object)? };
        let fd = fd_of(fd)?;
        let old = core.watches.borrow_mut().remove(&fd);
        forget(core, fd, old)
    })
}

loop_method!(
    /// `loop._serve(sock, callback, backlog)`: accepts on the listening `sock`
    /// natively; `callback(fd)` gets each connection (the fd is then its), and
    /// `callback(-errno)` a failure to accept.
    pub(super) serve, |_object, core, args| {
    let api = api();
    let &[sock, callback, backlog] = args.positional else {
        return Err(raise(api.PyExc_TypeError, c"_serve(sock, callback, backlog)"));
    };
    let fd = fd_of(call::method0(sock, rt().names.fileno.as_ptr())?.as_ptr())?;
    let backlog = fd_of(backlog)?.max(1) as usize;
    if !core.listeners.borrow().contains_key(&fd) {
        core.io()?.register(fd, READ, Token::LISTENER).map_err(raise_errno)?;
    }
    // SAFETY: live arguments of the call; the context copy is a new
    // reference or NULL.
    let listener = unsafe {
        Listener {
            sock: Owned::borrowed(sock),
            callback: Owned::borrowed(callback),
            context: Owned::new((api.PyContext_CopyCurrent)())?,
            backlog,
        }
    };
    let old = core.listeners.borrow_mut().insert(fd, listener);
    drop(old);
    Ok(none())
});

/// `loop._unserve(fd)`: stops accepting on `fd`.
pub(super) unsafe extern "C" fn unserve(object: *mut PyObject, fd: *mut PyObject) -> *mut PyObject {
    boundary::object(|| {
        // SAFETY: CPython checked the instance.
        let core = unsafe { core_of(object)? };
        let fd = fd_of(fd)?;
        let old = core.listeners.borrow_mut().remove(&fd);
        forget(core, fd, old)
    })
}

/// After a watch or listener of `fd` was taken out (`old`, if there was
/// one): epoll forgets the fd, then `old` is released.
fn forget<T>(core: &LoopCore, fd: RawFd, old: Option<T>) -> PyResult<Owned> {
    if old.is_some() {
        if let Some(mut io) = core.io_if_open() {
            let _ = io.unregister(fd);
        }
    }
    drop(old);
    Ok(none())
}

/// A registered fd is ready.
pub(super) fn fd_ready(core: &LoopCore, fd: RawFd, revents: u32, token: Token) -> PyResult<()> {
    match token {
        Token::WATCH => watch_ready(core, fd, revents),
        Token::LISTENER => accept(core, fd),
        _ => Ok(()),
    }
}

/// asyncio's `_process_events` for one fd, then its handles run.
fn watch_ready(core: &LoopCore, fd: RawFd, revents: u32) -> PyResult<()> {
    let Some((events, data)) = core
        .watches
        .borrow()
        .get(&fd)
        .map(|(e, d)| (*e, d.clone_ref()))
    else {
        return Ok(());
    };
    // As EpollSelector: anything but "readable" wakes a writer, anything
    // but "writable" a reader (errors and hang-ups wake both).
    let mut mask = 0;
    if revents & !READ != 0 {
        mask |= EVENT_WRITE;
    }
    if revents & !WRITE != 0 {
        mask |= EVENT_READ;
    }
    mask &= events;
    let api = api();
    let item = |i| {
        // SAFETY: a live object; a borrowed item of the tuple, or NULL with
        // an error (then it is not asyncio's pair: nothing to run).
        let item = unsafe { (api.PyTuple_GetItem)(data.as_ptr(), i) };
        if item.is_null() {
            // SAFETY: clears that error.
            unsafe { (api.PyErr_Clear)() };
            return None;
        }
        // SAFETY: the tuple's item, alive while `data` is.
        Some(unsafe { Owned::borrowed(item) }).filter(|item| !item.is_none())
    };
    let (reader, writer) = (item(0), item(1));
    let names = &rt().names;
    for (wanted, handle, remove) in [
        (EVENT_READ, reader, &names.remove_reader),
        (EVENT_WRITE, writer, &names.remove_writer),
    ] {
        let Some(handle) = handle.filter(|_| mask & wanted != 0) else {
            continue;
        };
        if is_cancelled(&handle)? {
            let fd_object = int(fd.into())?;
            call::method1(core.pyloop, remove.as_ptr(), fd_object.as_ptr())?;
            continue;
        }
        let item = if handle::is_ours(handle.as_ptr()) {
            ReadyItem::Handle(handle)
        } else {
            ReadyItem::Foreign(handle)
        };
        core.run_item(item)?;
    }
    Ok(())
}

fn is_cancelled(handle: &Owned) -> PyResult<bool> {
    if handle::is_ours(handle.as_ptr()) {
        // SAFETY: one of our handles, held by the caller.
        return Ok(unsafe { handle::fields(handle.as_ptr()) }.cancelled.get());
    }
    let cancelled = call::getattr(handle.as_ptr(), rt().names.cancelled.as_ptr())?;
    call::is_true(cancelled.as_ptr())
}

/// A listener is ready: accepts up to its backlog.
fn accept(core: &LoopCore, fd: RawFd) -> PyResult<()> {
    let mut accepted = 0;
    // The listener as it is now: a callback may stop serving (and close
    // the socket, whose number may be another socket's by now, even one
    // served again).
    while let Some((callback, context, backlog)) = core
        .listeners
        .borrow()
        .get(&fd)
        .map(|l| (l.callback.clone_ref(), l.context.clone_ref(), l.backlog))
    {
        if accepted == backlog {
            return Ok(());
        }
        accepted += 1;
        let argument = match sys::accept(fd) {
            Ok(connection) => connection,
            Err(libc::EAGAIN) => return Ok(()),
            // The connection went away before it was taken: on to the next.
            Err(libc::ECONNABORTED | libc::EINTR | libc::EPROTO) => continue,
            Err(errno) => {
                if matches!(
                    errno,
                    libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
                ) {
                    // Out of resources: the package stops serving, says so,
                    // and serves again later (asyncio's ACCEPT_RETRY_DELAY).
                    let old = core.listeners.borrow_mut().remove(&fd);
                    if let Some(mut io) = core.io_if_open() {
                        let _ = io.unregister(fd);
                    }
                    drop(old);
                }
                -errno
            }
        };
        hand_over(&callback, &context, argument)?;
        if argument < 0 {
            return Ok(());
        }
    }
    Ok(())
}

/// `callback(argument)` in a copy of the listener's context; its failure
/// (after which the callback owns nothing) is unraisable.
fn hand_over(callback: &Owned, context: &Owned, argument: RawFd) -> PyResult<()> {
    let api = api();
    // SAFETY: a live Context; a new reference (its copy) or NULL.
    let context = unsafe { Owned::new((api.PyContext_Copy)(context.as_ptr()))? };
    let argument = int(argument.into())?;
    if in_context(context.as_ptr(), || {
        call::call1(callback.as_ptr(), argument.as_ptr())
    })
    .is_err()
    {
        let exception = Exception::fetch();
        if exception.is_exit() {
            return Err(exception.restore());
        }
        write_unraisable(exception.restore(), callback.as_ptr());
    }
    Ok(())
}
