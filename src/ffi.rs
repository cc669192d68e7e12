//! The C ABI: a thin layer over [`EventLoop`] that checks arguments,
//! converts errors to negative errno values and catches every panic.
//!
//! Every function body runs inside [`guard`]. The loop is reached only
//! through [`core`], which hands out a borrow for one statement at a time:
//! no borrow is alive while a C callback runs, so callbacks may call back
//! into any function here.

#![allow(non_camel_case_types)]
// The doc comments become the C header, where each function states what its
// pointers must be (NULL is always checked; anything else must come from this
// library and not be freed), so no Rust-style `# Safety` section is repeated.
#![allow(clippy::missing_safety_doc)]

use std::cell::{Cell, UnsafeCell};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;
use std::time::Duration;

use crate::stream::{self, Event, Ready, StreamEvent, StreamEventKind, StreamLoop};
use crate::sys::{Errno, SockAddr};

/// ABI version of this library: bumped on any incompatible change.
pub const EVL_ABI_VERSION: u32 = 1;
pub const EVL_VERSION_MAJOR: u32 = 0;
pub const EVL_VERSION_MINOR: u32 = 1;
pub const EVL_VERSION_PATCH: u32 = 0;

// The event bits have epoll's values (EPOLLIN, EPOLLOUT...), so events reach
// callbacks untranslated. They are not Python's selectors.EVENT_READ (1) and
// EVENT_WRITE (2): the Python package maps those.

/// Interest and readiness: readable (EPOLLIN).
pub const EVL_READ: u32 = 0x1;
/// Interest and readiness: writable (EPOLLOUT).
pub const EVL_WRITE: u32 = 0x4;
/// Readiness only, always reported: an error is pending on the fd (EPOLLERR).
pub const EVL_ERROR: u32 = 0x8;
/// Readiness only, always reported: the peer hung up, both directions
/// closed (EPOLLHUP).
pub const EVL_HUP: u32 = 0x10;
/// Readiness only, reported with read interest: the peer shut down its
/// writing side (half-close, EPOLLRDHUP). Tells a half-closed peer from a
/// dead one.
pub const EVL_RDHUP: u32 = 0x2000;
/// Registration option: edge-triggered, report each change once (EPOLLET).
pub const EVL_EDGE: u32 = 0x8000_0000;
/// Registration option: disarm after one report until evl_modify re-arms
/// (EPOLLONESHOT).
pub const EVL_ONESHOT: u32 = 0x4000_0000;

/// Returned when a Rust panic was caught at the boundary.
pub const EVL_EPANIC: c_int = -1000;

const _: () = {
    assert!(StreamEventKind::Data as u32 == EVL_STREAM_DATA);
    assert!(StreamEventKind::Eof as u32 == EVL_STREAM_EOF);
    assert!(StreamEventKind::Drained as u32 == EVL_STREAM_DRAINED);
    assert!(StreamEventKind::Closed as u32 == EVL_STREAM_CLOSED);
    assert!(StreamEventKind::Accepted as u32 == EVL_STREAM_ACCEPTED);
    assert!(StreamEventKind::Connected as u32 == EVL_STREAM_CONNECTED);
    use crate::sys;
    assert!(EVL_READ == sys::READ && EVL_WRITE == sys::WRITE && EVL_ERROR == sys::ERROR);
    assert!(EVL_HUP == sys::HUP && EVL_RDHUP == sys::RDHUP);
    assert!(EVL_EDGE == sys::EDGE && EVL_ONESHOT == sys::ONESHOT);
};

/// An event loop. Opaque: create it with evl_loop_new, free it with evl_loop_free.
pub struct evl_loop {
    core: UnsafeCell<StreamLoop<Callback>>,
    /// The thread-safe part (task queue, doorbell, stop flag).
    handle: stream::Handle<Callback>,
    /// An evl_run, evl_run_once or poll is under way: they, evl_loop_free
    /// and evl_loop_fork are refused from its callbacks (EBUSY).
    running: Cell<bool>,
}

/// Called when a registered fd is ready. `revents` holds EVL_* readiness bits.
pub type evl_io_cb = Option<
    unsafe extern "C" fn(r#loop: *mut evl_loop, fd: c_int, revents: u32, userdata: *mut c_void),
>;
/// Called when a timer fires. `timer_id` is the id evl_timer_start gave.
pub type evl_timer_cb =
    Option<unsafe extern "C" fn(r#loop: *mut evl_loop, timer_id: u64, userdata: *mut c_void)>;
/// Called once for a task queued with evl_post.
pub type evl_task_cb = Option<unsafe extern "C" fn(r#loop: *mut evl_loop, userdata: *mut c_void)>;
/// Called on the loop's thread when a watched signal arrived.
pub type evl_signal_cb =
    Option<unsafe extern "C" fn(r#loop: *mut evl_loop, signo: c_int, userdata: *mut c_void)>;

/// One ready registration, as written by evl_poll.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct evl_event {
    pub fd: c_int,
    /// EVL_* readiness bits.
    pub revents: u32,
    /// The userdata given to evl_register (or evl_set_callback).
    pub userdata: *mut c_void,
}

// Kinds of evl_stream_event.
/// Bytes arrived: `data` and `len` (never 0). `data` is valid until the
/// callback returns, or with evl_stream_poll until the next evl_stream_poll.
pub const EVL_STREAM_DATA: u32 = 1;
/// The peer shut down its writing side (half-close). Reading stops; the
/// stream can still write, and what is queued is still sent.
pub const EVL_STREAM_EOF: u32 = 2;
/// The write queue emptied (only after something had to be queued).
pub const EVL_STREAM_DRAINED: u32 = 3;
/// The stream is over and its fd closed; `status` is 0 (closed as asked,
/// or both sides shut down) or why: -ECONNRESET, -EPIPE, -ETIMEDOUT (idle
/// timeout), -ECONNABORTED (evl_stream_abort)... The last event of every
/// stream: free what `userdata` points to here.
///
/// A stream's id stays valid until this event has been delivered (to the
/// callback, or written by evl_stream_poll), also when the stream closed
/// earlier (the library closed it, or evl_stream_close or evl_stream_abort
/// did). Until then the functions answer as for a closed stream:
/// evl_stream_write -EPIPE; evl_stream_shutdown, _close, _abort, _pause,
/// _resume, _set_watermarks and _set_idle_timeout 0, with nothing to do;
/// evl_stream_set_callback 0 (this event then goes to the new callback);
/// evl_stream_fd -EBADF; evl_stream_queued 0 bytes. Once it has been
/// delivered the id is dead: every function answers -ENOENT.
pub const EVL_STREAM_CLOSED: u32 = 4;
/// A listener accepted a connection: `stream` is the new stream, which
/// starts with the listener's callback and userdata (`userdata` here) and
/// is read from once this event has been handled; evl_stream_set_callback
/// gives it its own.
pub const EVL_STREAM_ACCEPTED: u32 = 5;
/// An outgoing connection (evl_connect) is made (`status` 0) or failed
/// (`status` -ECONNREFUSED...; EVL_STREAM_CLOSED follows).
pub const EVL_STREAM_CONNECTED: u32 = 6;
/// From evl_stream_poll only: a raw registration (evl_register) is ready;
/// `fd`, `revents` and `userdata` are the registration's, `stream` is 0.
pub const EVL_STREAM_IO: u32 = 7;

/// evl_listen flag: set SO_REUSEPORT, so that several loops (one per thread)
/// can listen on the same port and the kernel spreads connections.
pub const EVL_LISTEN_REUSEPORT: u32 = 1;

// Operations of evl_stream_submit.
/// evl_stream_write(stream, data, len).
pub const EVL_OP_WRITE: u32 = 1;
/// evl_stream_shutdown(stream).
pub const EVL_OP_SHUTDOWN: u32 = 2;
/// evl_stream_close(stream).
pub const EVL_OP_CLOSE: u32 = 3;
/// evl_stream_abort(stream).
pub const EVL_OP_ABORT: u32 = 4;
/// evl_stream_pause(stream).
pub const EVL_OP_PAUSE: u32 = 5;
/// evl_stream_resume(stream).
pub const EVL_OP_RESUME: u32 = 6;

/// Something that happened to a stream (or listener), as handed to an
/// evl_stream_cb or written by evl_stream_poll.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct evl_stream_event {
    /// EVL_STREAM_*.
    pub kind: u32,
    /// The stream's fd (already closed for EVL_STREAM_CLOSED: for logs only),
    /// or the raw registration's for EVL_STREAM_IO.
    pub fd: c_int,
    /// The stream's id (for EVL_STREAM_ACCEPTED, the new stream's).
    pub stream: u64,
    /// EVL_STREAM_DATA: the bytes read; NULL otherwise.
    pub data: *const u8,
    pub len: usize,
    /// The userdata given with the stream's callback (for
    /// EVL_STREAM_ACCEPTED, the listener's; for EVL_STREAM_IO, the registration's).
    pub userdata: *mut c_void,
    /// EVL_STREAM_CLOSED and EVL_STREAM_CONNECTED: 0 or a negative errno.
    pub status: c_int,
    /// EVL_STREAM_IO: EVL_* readiness bits.
    pub revents: u32,
}

/// One operation for evl_stream_submit.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct evl_stream_op {
    pub stream: u64,
    /// EVL_OP_*.
    pub op: u32,
    /// Written by evl_stream_submit: what the operation's own function returned.
    pub status: c_int,
    /// EVL_OP_WRITE: the bytes (copied as far as the kernel does not take them).
    pub data: *const c_void,
    pub len: usize,
}

/// The arguments and results of evl_stream_exchange, kept by the caller
/// from one call to the next.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct evl_stream_exchange_args {
    /// In: the writes, as evl_stream_write_batch's `streams`, `lens` and `data`.
    pub write_streams: *const u64,
    pub write_lens: *const usize,
    pub write_data: *const c_void,
    /// In: where the events go, room for `max_events`.
    pub events: *mut evl_stream_event,
    /// In: how many writes; set to 0 by the call.
    pub write_count: c_int,
    /// In: as evl_stream_poll's.
    pub timeout_ms: c_int,
    pub max_events: c_int,
    /// Out: how many writes failed (as evl_stream_write_batch returns).
    pub write_failed: c_int,
    /// Out: how many events, from the first, are EVL_STREAM_DATA whose bytes
    /// lie end to end, and (`data_len`) their total length.
    pub data_events: c_int,
    pub data_len: usize,
}

/// Called with each event of a stream or listener. `event` and its `data`
/// are valid during the call only.
pub type evl_stream_cb =
    Option<unsafe extern "C" fn(r#loop: *mut evl_loop, event: *const evl_stream_event)>;

/// What the loop keeps for each registration, timer, task and signal
/// watcher: a callback with its type erased, and the caller's userdata.
/// 16 bytes and no tag, since the kind of event tells the callback's type.
#[derive(Clone, Copy)]
struct Callback {
    func: Option<unsafe extern "C" fn()>,
    userdata: *mut c_void,
}

// SAFETY: the pointers are opaque to us; a task posted from another thread
// carries the caller's userdata to the loop's thread, as documented.
unsafe impl Send for Callback {}

impl Default for Callback {
    fn default() -> Self {
        Callback {
            func: None,
            userdata: std::ptr::null_mut(),
        }
    }
}

/// Erases and restores the type of one kind of callback. Sound because a
/// function pointer is only ever called through the type it was stored with:
/// registrations hold I/O callbacks, timers timer callbacks, and so on.
macro_rules! callback_kind {
    ($store:ident, $load:ident, $ty:ty) => {
        impl Callback {
            fn $store(cb: $ty, userdata: *mut c_void) -> Callback {
                // SAFETY: fn pointers of any signature have the same size.
                Callback {
                    func: cb.map(|f| unsafe { std::mem::transmute(f) }),
                    userdata,
                }
            }
            unsafe fn $load(self) -> $ty {
                self.func.map(|f| std::mem::transmute(f))
            }
        }
    };
}
callback_kind!(io, as_io, evl_io_cb);
callback_kind!(timer, as_timer, evl_timer_cb);
callback_kind!(task, as_task, evl_task_cb);
callback_kind!(signal, as_signal, evl_signal_cb);
callback_kind!(stream, as_stream, evl_stream_cb);

// ---- the one pattern every function follows --------------------------------

/// Runs `body`, turning `Err(errno)` into `-errno` and a panic into EVL_EPANIC.
fn guard(body: impl FnOnce() -> Result<c_int, Errno>) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => value,
        Ok(Err(errno)) => -errno,
        Err(_) => EVL_EPANIC,
    }
}

/// A borrow of the loop for one step. Never keep it across a callback.
///
/// # Safety
/// `lp` must be null or a live pointer from evl_loop_new, used on its thread.
unsafe fn core<'a>(lp: *mut evl_loop) -> Result<&'a mut StreamLoop<Callback>, Errno> {
    if lp.is_null() {
        return Err(libc::EINVAL);
    }
    Ok(&mut *(*lp).core.get())
}

/// The thread-safe part of the loop.
///
/// # Safety
/// As [`core`]; this may be called from any thread.
unsafe fn handle<'a>(lp: *mut evl_loop) -> Result<&'a stream::Handle<Callback>, Errno> {
    if lp.is_null() {
        return Err(libc::EINVAL);
    }
    Ok(&(*lp).handle)
}

fn timeout_from_ms(timeout_ms: c_int) -> Option<Duration> {
    u64::try_from(timeout_ms).ok().map(Duration::from_millis)
}

/// Runs the callback an event carries; returns whether one ran.
///
/// # Safety
/// `lp` is live; the callback is the caller's, called with the caller's userdata.
unsafe fn dispatch(lp: *mut evl_loop, event: Event<Callback>) -> bool {
    match event {
        Event::Io { fd, revents, data } => match data.as_io() {
            Some(cb) => cb(lp, fd, revents, data.userdata),
            None => return false,
        },
        Event::Timer { id, data } => match data.as_timer() {
            Some(cb) => cb(lp, id, data.userdata),
            None => return false,
        },
        Event::Task(data) => match data.as_task() {
            Some(cb) => cb(lp, data.userdata),
            None => return false,
        },
        Event::Signal { signo, data } => match data.as_signal() {
            Some(cb) => cb(lp, signo, data.userdata),
            None => return false,
        },
        Event::Stream(event) => return dispatch_stream(lp, event),
    }
    true
}

/// Marks the loop as running for as long as it lives (a panic included),
/// so that its callbacks cannot start another run or free it.
struct Running<'a>(&'a Cell<bool>);

impl Running<'_> {
    /// # Safety
    /// `lp` must be null or a live loop.
    unsafe fn enter<'a>(lp: *mut evl_loop) -> Result<Running<'a>, Errno> {
        if lp.is_null() {
            return Err(libc::EINVAL);
        }
        let running = &(*lp).running;
        if running.replace(true) {
            return Err(libc::EBUSY);
        }
        Ok(Running(running))
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// Refuses with EBUSY when called from one of the loop's callbacks.
///
/// # Safety
/// `lp` must be null or a live loop.
unsafe fn not_running(lp: *mut evl_loop) -> Result<(), Errno> {
    if core(lp).is_ok() && (*lp).running.get() {
        return Err(libc::EBUSY);
    }
    Ok(())
}

/// A stream event as C sees it; `data` points into the loop's read buffer.
fn c_stream_event(event: &StreamEvent<Callback>, data: *const u8) -> evl_stream_event {
    evl_stream_event {
        kind: event.kind as u32,
        fd: event.fd,
        stream: event.stream,
        data,
        len: event.len,
        userdata: event.data.userdata,
        status: -event.error,
        revents: 0,
    }
}

/// Calls a stream's callback with `event`; returns whether one ran. The
/// bytes of a Data event are released once it returns.
///
/// # Safety
/// `lp` is live; the callback is the caller's.
unsafe fn dispatch_stream(lp: *mut evl_loop, event: StreamEvent<Callback>) -> bool {
    let core = &mut *(*lp).core.get();
    let Some(cb) = event.data.as_stream() else {
        return false;
    };
    let c_event = c_stream_event(&event, core.bytes_ptr(&event));
    cb(lp, &c_event);
    // Still live: evl_loop_free is refused from callbacks.
    (*(*lp).core.get()).release_reads();
    true
}

/// One iteration: wait, then run every callback. Returns the number run if
/// `COUNT` (evl_run has no use for it, and its hot path is shorter without).
/// The caller holds the loop's `Running` mark.
unsafe fn run_once<const COUNT: bool>(
    lp: *mut evl_loop,
    timeout: Option<Duration>,
) -> Result<c_int, Errno> {
    core(lp)?.wait(timeout, usize::MAX)?;
    let mut ran: c_int = 0;
    // `lp` was checked above; each pull borrows the loop for itself alone.
    loop {
        let core = &mut *(*lp).core.get();
        // The fast path: ready I/O of a raw registration or a stream,
        // straight to its callback, with no Event built in between.
        match core.next_ready() {
            Some(Ready::Io { fd, revents, data }) => {
                if let Some(cb) = data.as_io() {
                    cb(lp, fd, revents, data.userdata);
                    ran += COUNT as c_int;
                }
                continue;
            }
            Some(Ready::Stream { stream, revents }) => {
                if let Some(event) = core.stream_ready(stream, revents) {
                    ran += (dispatch_stream(lp, event) && COUNT) as c_int;
                }
                continue;
            }
            None => {}
        }
        match core.next_event() {
            Some(Event::Stream(event)) => ran += (dispatch_stream(lp, event) && COUNT) as c_int,
            Some(other) => ran += (dispatch(lp, other) && COUNT) as c_int,
            None => return Ok(ran),
        }
    }
}

// ---- loops -----------------------------------------------------------------

/// Creates a loop and stores it in `*out`.
///
/// Returns 0, -EINVAL if `out` is NULL, or the errno of a failed epoll_create1
/// or eventfd (-EMFILE...), in which case `*out` is set to NULL.
/// Ownership: the caller owns the loop and frees it with evl_loop_free.
/// Thread-safety: the loop belongs to the thread that runs it; only
/// evl_stop, evl_wake and evl_post may be called from other threads.
#[no_mangle]
pub unsafe extern "C" fn evl_loop_new(out: *mut *mut evl_loop) -> c_int {
    guard(|| {
        if out.is_null() {
            return Err(libc::EINVAL);
        }
        *out = std::ptr::null_mut();
        let core = StreamLoop::new()?;
        let handle = core.handle();
        *out = Box::into_raw(Box::new(evl_loop {
            core: UnsafeCell::new(core),
            handle,
            running: Cell::new(false),
        }));
        Ok(0)
    })
}

/// Frees a loop and the kernel objects it owns (epoll set, eventfd,
/// signalfd). Registered fds stay open: they belong to the caller. Signals
/// the loop blocked are unblocked again. Queued tasks are dropped uncalled.
///
/// Returns 0, -EINVAL for NULL, -EBUSY when called from one of the loop's
/// own callbacks (the loop is left intact).
/// Thread-safety: the loop's thread only, and no other thread may be using
/// the loop (evl_post, evl_wake...) while or after it is freed.
#[no_mangle]
pub unsafe extern "C" fn evl_loop_free(r#loop: *mut evl_loop) -> c_int {
    guard(|| {
        core(r#loop)?;
        not_running(r#loop)?;
        drop(Box::from_raw(r#loop));
        Ok(0)
    })
}

// ---- registrations ---------------------------------------------------------

/// Watches `fd` for `events` (EVL_READ, EVL_WRITE, optionally EVL_EDGE or
/// EVL_ONESHOT; EVL_ERROR, EVL_HUP and EVL_RDHUP are accepted and ignored:
/// EVL_ERROR and EVL_HUP are always reported, EVL_RDHUP with EVL_READ).
/// `cb` (may be NULL: the fd is then reported only by
/// evl_poll) is called with `userdata` when the fd is ready.
///
/// Returns 0; -EINVAL for a NULL loop, a negative fd or unknown event bits;
/// -EBADF for a closed fd; -EEXIST if `fd` is registered already; -EPERM for
/// a regular file or directory (epoll cannot watch them); -ENOMEM, -ENOSPC.
/// On error nothing is registered.
/// An fd closed without evl_unregister drops out of the kernel's set; when
/// its number is reused, the new fd can be registered and the old
/// registration never calls back. (If the old fd was dup()ed, the kernel
/// keeps watching the duplicate: unregister before closing.) An event of
/// the closed fd fetched before the close, in the batch being dispatched,
/// is still delivered to the old callback unless the number was registered
/// again first; by then the number may name another file: a callback that
/// closes a registered fd should evl_unregister it before closing.
/// Ownership: the fd stays the caller's; the loop never closes it.
/// `userdata` is the caller's and is only handed back.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_register(
    r#loop: *mut evl_loop,
    fd: c_int,
    events: u32,
    cb: evl_io_cb,
    userdata: *mut c_void,
) -> c_int {
    guard(|| {
        core(r#loop)?
            .register(fd, events, Callback::io(cb, userdata))
            .map(|()| 0)
    })
}

/// Replaces the interest of a registered fd with `events` (the whole mask,
/// options included, like Python's epoll.modify); re-arms an EVL_ONESHOT
/// registration. Events already fetched are filtered by the new interest;
/// with EVL_ONESHOT in `events` they are dropped (they were the previous
/// arm's), so that one arm gives at most one report.
///
/// Returns 0; -EINVAL for a NULL loop, a negative fd or unknown bits;
/// -ENOENT if `fd` is not registered; -EBADF if it was closed; -EBUSY if
/// `fd` is a stream's or a listener's (the library's registration).
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_modify(r#loop: *mut evl_loop, fd: c_int, events: u32) -> c_int {
    guard(|| core(r#loop)?.modify(fd, events).map(|()| 0))
}

/// Replaces the callback and userdata of a registered fd (`cb` may be NULL).
///
/// Returns 0; -EINVAL for a NULL loop or a negative fd; -ENOENT if `fd` is
/// not registered; -EBUSY if `fd` is a stream's or a listener's (the
/// library's registration).
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_set_callback(
    r#loop: *mut evl_loop,
    fd: c_int,
    cb: evl_io_cb,
    userdata: *mut c_void,
) -> c_int {
    guard(|| {
        core(r#loop)?
            .set_data(fd, Callback::io(cb, userdata))
            .map(|()| 0)
    })
}

/// Ends the registration of `fd`. No event for it is delivered afterwards,
/// not even one already fetched in the current batch. Succeeds for an fd
/// that was closed already.
///
/// Returns 0; -EINVAL for a NULL loop or a negative fd; -ENOENT if `fd` is
/// not registered; -EBUSY if `fd` is a stream's or a listener's (close the
/// stream or listener instead).
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_unregister(r#loop: *mut evl_loop, fd: c_int) -> c_int {
    guard(|| core(r#loop)?.unregister(fd).map(|()| 0))
}

// ---- running ---------------------------------------------------------------

/// Runs the loop until evl_stop is called or nothing is left to wait for
/// (no registration, timer, signal watcher or queued task). Interrupted
/// waits (EINTR) are retried.
///
/// Returns 0; -EINVAL for NULL; -EBUSY when called from one of the loop's
/// own callbacks; another negative errno if epoll_wait failed.
/// An fd closed without evl_unregister still counts as a registration here.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_run(r#loop: *mut evl_loop) -> c_int {
    guard(|| {
        let _running = Running::enter(r#loop)?;
        loop {
            let core = core(r#loop)?;
            if core.take_stop() || !core.is_alive() {
                return Ok(0);
            }
            match run_once::<false>(r#loop, None) {
                Ok(_) | Err(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    })
}

/// Runs one iteration: waits up to `timeout_ms` milliseconds (-1 or any
/// negative value: no limit; 0: do not block) for I/O, the next timer, a
/// signal or a task, then runs every callback that is due.
///
/// Returns the number of callbacks it ran (I/O, timer, task and signal
/// callbacks alike); -EINVAL for NULL; -EBUSY when called from one of the
/// loop's own callbacks; -EINTR when a signal handler interrupted the wait
/// (nothing was run: call again).
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_run_once(r#loop: *mut evl_loop, timeout_ms: c_int) -> c_int {
    guard(|| {
        let _running = Running::enter(r#loop)?;
        run_once::<true>(r#loop, timeout_from_ms(timeout_ms))
    })
}

/// Waits like evl_run_once, then writes up to `max_events` ready
/// registrations (with or without a callback) into `events` instead of
/// calling their I/O callbacks. Due timers, queued tasks and signal watchers
/// run their callbacks as usual, before the events are written, so every
/// event written is for a registration that is still current.
///
/// With `max_events` at least the number of registrations, every ready one
/// is written (no internal batch size limits it).
///
/// Returns the number of events written (0 on timeout); -EINVAL for a NULL
/// loop or `events`, or `max_events` <= 0; -EBUSY from one of the loop's own
/// callbacks; -EINTR when a signal handler interrupted the wait.
/// Ownership: `events` is the caller's array of at least `max_events`.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_poll(
    r#loop: *mut evl_loop,
    timeout_ms: c_int,
    events: *mut evl_event,
    max_events: c_int,
) -> c_int {
    guard(|| {
        let _running = Running::enter(r#loop)?;
        if events.is_null() || max_events <= 0 {
            return Err(libc::EINVAL);
        }
        let max = max_events as usize;
        core(r#loop)?.wait(timeout_from_ms(timeout_ms), max)?;
        let mut written = 0;
        while written < max {
            let Some(event) = core(r#loop)?.next_event() else {
                break;
            };
            match event {
                Event::Io {
                    fd,
                    revents,
                    data: Callback { userdata, .. },
                } => {
                    events.add(written).write(evl_event {
                        fd,
                        revents,
                        userdata,
                    });
                    written += 1;
                }
                other => {
                    dispatch(r#loop, other);
                }
            }
        }
        Ok(written as c_int)
    })
}

/// The loop's epoll fd, for a program that waits on several things at once
/// (another event loop, select()): it is readable while a registered fd is
/// ready or evl_wake/evl_post/evl_stop was called; timers do not make it
/// readable (wait on it with the timeout of the next timer). The fd stays
/// the loop's: do not close it; evl_loop_fork replaces it.
///
/// Returns the fd; -EINVAL for NULL.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_loop_fd(r#loop: *mut evl_loop) -> c_int {
    guard(|| Ok(core(r#loop)?.poll_fd()))
}

/// Makes evl_run return after the current iteration (or, if the loop is not
/// running, makes the next evl_run return at once). Wakes a blocked wait.
///
/// Returns 0 or -EINVAL for NULL.
/// Thread-safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn evl_stop(r#loop: *mut evl_loop) -> c_int {
    guard(|| {
        handle(r#loop)?.stop();
        Ok(0)
    })
}

/// Wakes the loop if it is blocked in a wait (the iteration then runs
/// whatever is due, perhaps nothing).
///
/// Returns 0 or -EINVAL for NULL.
/// Thread-safety: any thread, and async-signal-safe (one write to an eventfd).
#[no_mangle]
pub unsafe extern "C" fn evl_wake(r#loop: *mut evl_loop) -> c_int {
    guard(|| {
        handle(r#loop)?.wake();
        Ok(0)
    })
}

/// Queues `cb(loop, userdata)` to run once on the loop's thread, in the next
/// iteration, in the order posted. Wakes the loop.
///
/// Returns 0; -EINVAL for a NULL loop or callback.
/// Ownership: `userdata` passes to the callback; tasks still queued when the
/// loop is freed are dropped uncalled.
/// Thread-safety: any thread (not from a signal handler: it takes a lock).
#[no_mangle]
pub unsafe extern "C" fn evl_post(
    r#loop: *mut evl_loop,
    cb: evl_task_cb,
    userdata: *mut c_void,
) -> c_int {
    guard(|| {
        let handle = handle(r#loop)?;
        if cb.is_none() {
            return Err(libc::EINVAL);
        }
        handle.post(Callback::task(cb, userdata));
        Ok(0)
    })
}

// ---- timers ----------------------------------------------------------------

/// Starts a timer that calls `cb` after `delay_ms` milliseconds, then every
/// `repeat_ms` if that is non-zero. Timers are never early; they fire in
/// deadline order, equal deadlines in start order. The timer's id is
/// written to `*timer_id` unless it is NULL.
///
/// Returns 0; -EINVAL for a NULL loop or callback.
/// A one-shot timer is over once its callback starts; a repeating one goes
/// on until evl_timer_stop, which may be called from its own callback.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_timer_start(
    r#loop: *mut evl_loop,
    delay_ms: u64,
    repeat_ms: u64,
    cb: evl_timer_cb,
    userdata: *mut c_void,
    timer_id: *mut u64,
) -> c_int {
    guard(|| {
        let core = core(r#loop)?;
        if cb.is_none() {
            return Err(libc::EINVAL);
        }
        let delay = Duration::from_millis(delay_ms);
        let id = core.start_timer(
            delay,
            Duration::from_millis(repeat_ms),
            Callback::timer(cb, userdata),
        );
        if !timer_id.is_null() {
            *timer_id = id;
        }
        Ok(0)
    })
}

/// Stops a timer; its callback will not be called again.
///
/// Returns 0; -EINVAL for NULL; -ENOENT for an unknown id, a stopped timer,
/// or a one-shot timer whose callback has started.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_timer_stop(r#loop: *mut evl_loop, timer_id: u64) -> c_int {
    guard(|| core(r#loop)?.stop_timer(timer_id).map(|()| 0))
}

// ---- signals ---------------------------------------------------------------

/// Calls `cb` on the loop's thread whenever `signo` arrives. The signal is
/// blocked in the calling thread and read through a signalfd, so it must be
/// blocked in every thread of the process: call this before starting other
/// threads (they inherit the mask), or block it in them yourself.
///
/// Returns 0; -EINVAL for a NULL loop or callback, or a signal that cannot be
/// watched (SIGKILL, SIGSTOP, out of range); -EEXIST if it is watched already.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_signal_start(
    r#loop: *mut evl_loop,
    signo: c_int,
    cb: evl_signal_cb,
    userdata: *mut c_void,
) -> c_int {
    guard(|| {
        let core = core(r#loop)?;
        if cb.is_none() {
            return Err(libc::EINVAL);
        }
        core.watch_signal(signo, Callback::signal(cb, userdata))
            .map(|()| 0)
    })
}

/// Stops watching `signo` and unblocks it if evl_signal_start blocked it.
///
/// Returns 0; -EINVAL for NULL or a signal out of range; -ENOENT if it is
/// not watched.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_signal_stop(r#loop: *mut evl_loop, signo: c_int) -> c_int {
    guard(|| core(r#loop)?.unwatch_signal(signo).map(|()| 0))
}

/// Call in the child after fork(): re-creates every kernel object the loop
/// owns (epoll set, eventfd, signalfd, timerfd), so parent and child no
/// longer affect each other, and keeps all registrations, timers and signal
/// watchers. A registration whose fd was closed without evl_unregister is
/// dropped, also when the number now names another fd (which is then not
/// watched): it never calls back again, and the number may be registered
/// anew. (Finding out costs the parent's loop at most one wake-up with no
/// callback, when such a number was reused.) An EVL_ONESHOT registration
/// comes back armed.
///
/// Returns 0; -EINVAL for NULL; -EBUSY from one of the loop's callbacks;
/// the errno of a failed syscall (the loop is then unusable: free it).
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_loop_fork(r#loop: *mut evl_loop) -> c_int {
    guard(|| {
        let _running = Running::enter(r#loop)?;
        core(r#loop)?.reinit_after_fork().map(|()| 0)
    })
}

// ---- streams ---------------------------------------------------------------

/// `host` (NULL or "": every IPv4 address) and `port` as a socket address.
unsafe fn socket_addr(host: *const c_char, port: c_int) -> Result<SockAddr, Errno> {
    let port = u16::try_from(port).map_err(|_| libc::EINVAL)?;
    let host = if host.is_null() {
        c""
    } else {
        CStr::from_ptr(host)
    };
    SockAddr::resolve(host, port)
}

/// Writes a new id to `*out`, which was checked to be non-null.
unsafe fn give_id(out: *mut u64, id: u64) -> Result<c_int, Errno> {
    *out = id;
    Ok(0)
}

/// Listens for TCP connections on `host` (a numeric IPv4 or IPv6 address;
/// a name is resolved with getaddrinfo, which may block; NULL or "": every
/// IPv4 address) and `port` (0: any free port, see evl_listener_port), with
/// a backlog of `backlog` (<= 0: SOMAXCONN). `flags`: 0 or
/// EVL_LISTEN_REUSEPORT. The listener's id is written to `*out`.
///
/// Each connection accepted becomes a stream (TCP_NODELAY set), announced
/// by EVL_STREAM_ACCEPTED to `cb` with `userdata`; the stream starts with
/// that callback and userdata. Every readiness drains the backlog. When the
/// process runs out of fds (EMFILE, ENFILE), accepting pauses for 100 ms
/// instead of spinning, and connections wait in the backlog.
///
/// Returns 0; -EINVAL for a NULL loop or `out`, a port outside 0..65535 or
/// unknown flags; -EADDRINUSE, -EADDRNOTAVAIL (also for a host that does
/// not resolve), -EACCES, -EMFILE...
/// Ownership: the listener owns its socket until evl_listener_close or
/// evl_loop_free. Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_listen(
    r#loop: *mut evl_loop,
    host: *const c_char,
    port: c_int,
    backlog: c_int,
    flags: u32,
    cb: evl_stream_cb,
    userdata: *mut c_void,
    out: *mut u64,
) -> c_int {
    guard(|| {
        let core = core(r#loop)?;
        if out.is_null() || flags & !EVL_LISTEN_REUSEPORT != 0 {
            return Err(libc::EINVAL);
        }
        let addr = socket_addr(host, port)?;
        let backlog = if backlog <= 0 {
            libc::SOMAXCONN
        } else {
            backlog
        };
        let reuse_port = flags & EVL_LISTEN_REUSEPORT != 0;
        let id = core.listen(&addr, backlog, reuse_port, Callback::stream(cb, userdata))?;
        give_id(out, id)
    })
}

/// The port a listener is bound to (the one chosen for port 0).
///
/// Returns the port; -EINVAL for a NULL loop; -ENOENT for an unknown listener.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_listener_port(r#loop: *mut evl_loop, listener: u64) -> c_int {
    guard(|| core(r#loop)?.listener_port(listener).map(c_int::from))
}

/// Lets a listener hold at most `max` accepted streams open at once (0: no
/// limit). At the limit, accepting pauses and connections wait in the
/// backlog; it resumes as streams close.
///
/// Returns 0; -EINVAL for a NULL loop or a negative `max`; -ENOENT for an
/// unknown listener. Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_listener_set_max_conns(
    r#loop: *mut evl_loop,
    listener: u64,
    max: c_int,
) -> c_int {
    guard(|| {
        let core = core(r#loop)?;
        let max = usize::try_from(max).map_err(|_| libc::EINVAL)?;
        core.set_max_conns(listener, max).map(|()| 0)
    })
}

/// Closes a listener's socket. The streams it accepted go on.
///
/// Returns 0; -EINVAL for a NULL loop; -ENOENT for an unknown listener.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_listener_close(r#loop: *mut evl_loop, listener: u64) -> c_int {
    guard(|| core(r#loop)?.close_listener(listener).map(|()| 0))
}

/// Starts a TCP connection to `host` (as for evl_listen; NULL is refused)
/// and `port`, without blocking (except to resolve a name). The stream's id
/// is written to `*out`; `cb` gets EVL_STREAM_CONNECTED once the connection
/// is made or has failed. Writes made before then are queued.
///
/// Returns 0; -EINVAL for a NULL loop, host or `out`, or a port outside
/// 0..65535; -EADDRNOTAVAIL for a host that does not resolve; -EMFILE...
/// A refused connection is reported through the callback, not here.
/// Ownership: the stream owns its socket. Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_connect(
    r#loop: *mut evl_loop,
    host: *const c_char,
    port: c_int,
    cb: evl_stream_cb,
    userdata: *mut c_void,
    out: *mut u64,
) -> c_int {
    guard(|| {
        let core = core(r#loop)?;
        if host.is_null() || out.is_null() {
            return Err(libc::EINVAL);
        }
        let addr = socket_addr(host, port)?;
        let id = core.connect(&addr, Callback::stream(cb, userdata))?;
        give_id(out, id)
    })
}

/// Makes a stream of `fd`, a connected socket (TCP, Unix) or a pipe, tty...
/// and writes its id to `*out`. The fd is made non-blocking.
///
/// Returns 0; -EINVAL for a NULL loop or `out`, or a negative fd; -EBADF;
/// -EEXIST if the fd is registered already; -EPERM for a regular file.
/// Ownership: on success the stream owns `fd` and closes it when it ends
/// (do not close it yourself); on error it stays yours. Over anything but a
/// socket, the process ignores SIGPIPE from then on unless it had set its
/// own SIGPIPE disposition, so that writing to a pipe without reader fails
/// with -EPIPE (sockets use MSG_NOSIGNAL and touch nothing).
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_open(
    r#loop: *mut evl_loop,
    fd: c_int,
    cb: evl_stream_cb,
    userdata: *mut c_void,
    out: *mut u64,
) -> c_int {
    guard(|| {
        let core = core(r#loop)?;
        if out.is_null() {
            return Err(libc::EINVAL);
        }
        let id = core.open(fd, Callback::stream(cb, userdata))?;
        give_id(out, id)
    })
}

/// The bytes `data`/`len` as a slice; NULL is fine for 0 bytes.
unsafe fn bytes<'a>(data: *const c_void, len: usize) -> Result<&'a [u8], Errno> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() || len > isize::MAX as usize {
        return Err(libc::EINVAL);
    }
    Ok(std::slice::from_raw_parts(data as *const u8, len))
}

/// Writes `len` bytes: at once as far as the kernel takes them; the rest is
/// copied into the stream's queue and sent as the peer reads. Over the
/// high watermark, reading from the stream pauses (evl_stream_set_watermarks).
///
/// Returns 0 (the bytes are sent or queued); -EINVAL for a NULL loop, or
/// NULL `data` with a non-zero `len`; -ENOENT for an unknown stream (or
/// one whose EVL_STREAM_CLOSED was delivered); -EPIPE after
/// evl_stream_shutdown or evl_stream_close, or once the stream is closed; -EPIPE,
/// -ECONNRESET... when the peer has gone, in which case the stream is
/// closed (EVL_STREAM_CLOSED follows with the same status). Never SIGPIPE.
/// Ownership: `data` stays the caller's; it is not used after the call.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_write(
    r#loop: *mut evl_loop,
    stream: u64,
    data: *const c_void,
    len: usize,
) -> c_int {
    guard(|| {
        let core = core(r#loop)?;
        core.write(stream, bytes(data, len)?).map(|()| 0)
    })
}

/// Shuts down the writing side once the queue has been sent: the peer
/// reads end-of-file. Reading goes on; when the peer's end-of-file has come
/// too, the stream closes (EVL_STREAM_CLOSED, status 0).
///
/// Returns 0; -EINVAL for a NULL loop; -ENOENT for an unknown stream.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_shutdown(r#loop: *mut evl_loop, stream: u64) -> c_int {
    guard(|| core(r#loop)?.shutdown(stream).map(|()| 0))
}

/// Graceful close: stops reading, sends what is queued, then closes
/// (EVL_STREAM_CLOSED, status 0, or an error if the peer went first). Events
/// of the stream not yet delivered are dropped.
///
/// Returns 0; -EINVAL for a NULL loop; -ENOENT for an unknown stream.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_close(r#loop: *mut evl_loop, stream: u64) -> c_int {
    guard(|| core(r#loop)?.close(stream).map(|()| 0))
}

/// Closes now, dropping what is queued (EVL_STREAM_CLOSED follows with
/// -ECONNABORTED). Events of the stream not yet delivered are dropped.
///
/// Returns 0; -EINVAL for a NULL loop; -ENOENT for an unknown stream.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_abort(r#loop: *mut evl_loop, stream: u64) -> c_int {
    guard(|| core(r#loop)?.abort(stream).map(|()| 0))
}

/// Stops reading from the stream until evl_stream_resume.
///
/// Returns 0; -EINVAL for a NULL loop; -ENOENT for an unknown stream.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_pause(r#loop: *mut evl_loop, stream: u64) -> c_int {
    guard(|| core(r#loop)?.pause(stream).map(|()| 0))
}

/// Reads again after evl_stream_pause (unless the queue is still above
/// its high watermark, or the peer's end-of-file came).
///
/// Returns 0; -EINVAL for a NULL loop; -ENOENT for an unknown stream.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_resume(r#loop: *mut evl_loop, stream: u64) -> c_int {
    guard(|| core(r#loop)?.resume(stream).map(|()| 0))
}

/// Backpressure: once more than `high` bytes are queued, reading from the
/// stream pauses, and resumes when the queue is down to `low`. So a peer
/// that sends without reading makes the process hold at most about `high`
/// bytes for it. `high` 0: never pause (the queue may then grow without
/// bound). Defaults: 1 MiB and 256 KiB. Given a listener, sets what the
/// streams it accepts from then on start with.
///
/// Returns 0; -EINVAL for a NULL loop or `low` > `high` (with `high` not 0);
/// -ENOENT for an unknown stream or listener.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_set_watermarks(
    r#loop: *mut evl_loop,
    stream: u64,
    high: usize,
    low: usize,
) -> c_int {
    guard(|| core(r#loop)?.set_watermarks(stream, high, low).map(|()| 0))
}

/// Closes the stream (EVL_STREAM_CLOSED, -ETIMEDOUT) once no byte has moved
/// either way for `timeout_ms` milliseconds (0: never, the default): a
/// peer that connects and stays silent is dropped. Given a listener, sets
/// what the streams it accepts from then on start with.
///
/// Returns 0; -EINVAL for a NULL loop; -ENOENT for an unknown stream or listener.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_set_idle_timeout(
    r#loop: *mut evl_loop,
    stream: u64,
    timeout_ms: u32,
) -> c_int {
    guard(|| {
        core(r#loop)?
            .set_idle_timeout(stream, timeout_ms)
            .map(|()| 0)
    })
}

/// Replaces the callback and userdata of a stream, or of a listener (for the
/// streams it accepts from then on). `cb` may be NULL for a loop driven by
/// evl_stream_poll; evl_run and evl_run_once drop the events of a stream
/// without a callback.
///
/// Returns 0; -EINVAL for a NULL loop; -ENOENT for an unknown stream or listener.
/// Ownership: `userdata` is the caller's and is only handed back.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_set_callback(
    r#loop: *mut evl_loop,
    stream: u64,
    cb: evl_stream_cb,
    userdata: *mut c_void,
) -> c_int {
    guard(|| {
        core(r#loop)?
            .set_stream_data(stream, Callback::stream(cb, userdata))
            .map(|()| 0)
    })
}

/// The stream's fd, for getpeername, setsockopt and the like. It stays the
/// stream's: do not close it, read from it or register it.
///
/// Returns the fd; -EINVAL for a NULL loop; -ENOENT for an unknown stream;
/// -EBADF for a stream closed already (its EVL_STREAM_CLOSED not delivered
/// yet: see there).
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_fd(r#loop: *mut evl_loop, stream: u64) -> c_int {
    guard(|| core(r#loop)?.stream_fd(stream))
}

/// Writes to `*out` how many bytes are queued, not yet taken by the kernel.
///
/// Returns 0; -EINVAL for a NULL loop or `out`; -ENOENT for an unknown stream.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_queued(
    r#loop: *mut evl_loop,
    stream: u64,
    out: *mut usize,
) -> c_int {
    guard(|| {
        let core = core(r#loop)?;
        if out.is_null() {
            return Err(libc::EINVAL);
        }
        *out = core.queued(stream)?;
        Ok(0)
    })
}

/// Where the bytes of every EVL_STREAM_DATA event lie: the loop's read
/// buffer, `*len` bytes from `*start`. It stays at that address until the
/// loop is freed, so a caller that pays for each call into the library
/// (Python through ctypes) can map it once and find each event's bytes at
/// `data - start`, instead of copying them out with one call per event.
///
/// Returns 0; -EINVAL for a NULL pointer.
/// Ownership: the buffer is the loop's; its bytes may be read (never
/// written) as evl_stream_poll's `data` says, until the next evl_stream_poll.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_read_buffer(
    r#loop: *mut evl_loop,
    start: *mut *const u8,
    len: *mut usize,
) -> c_int {
    guard(|| {
        let core = core(r#loop)?;
        if start.is_null() || len.is_null() {
            return Err(libc::EINVAL);
        }
        (*start, *len) = core.read_buffer();
        Ok(0)
    })
}

/// The batch interface, for callers that pay for each call into the
/// library (Python through ctypes): waits like evl_poll, then writes up to
/// `max_events` events into `events` instead of calling callbacks: stream
/// and listener events, and EVL_STREAM_IO for raw registrations. Timers,
/// tasks and signal watchers run their callbacks as usual.
///
/// The `data` of EVL_STREAM_DATA events stays valid until the next call of
/// evl_stream_poll on this loop. If more events were ready than fit, the
/// next call returns them without waiting.
///
/// Returns the number of events written (0 on timeout); -EINVAL for a NULL
/// loop or `events`, or `max_events` <= 0; -EBUSY from one of the loop's own
/// callbacks; -EINTR when a signal handler interrupted the wait.
/// Ownership: `events` is the caller's array of at least `max_events`.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_poll(
    r#loop: *mut evl_loop,
    timeout_ms: c_int,
    events: *mut evl_stream_event,
    max_events: c_int,
) -> c_int {
    guard(|| {
        let _running = Running::enter(r#loop)?;
        poll_events(r#loop, timeout_ms, events, max_events).map(|count| count as c_int)
    })
}

/// evl_stream_poll's work, for it and evl_stream_exchange: waits, then
/// writes up to `max_events` events. The caller holds [`Running`].
unsafe fn poll_events(
    lp: *mut evl_loop,
    timeout_ms: c_int,
    events: *mut evl_stream_event,
    max_events: c_int,
) -> Result<usize, Errno> {
    if events.is_null() || max_events <= 0 {
        return Err(libc::EINVAL);
    }
    let max = max_events as usize;
    // The bytes of the previous batch are no longer needed.
    core(lp)?.release_reads();
    core(lp)?.wait(timeout_from_ms(timeout_ms), max)?;
    let mut written = 0;
    while written < max {
        let core = core(lp)?;
        let event = match core.next_event() {
            Some(Event::Io { fd, revents, data }) => evl_stream_event {
                kind: EVL_STREAM_IO,
                fd,
                stream: 0,
                data: std::ptr::null(),
                len: 0,
                userdata: data.userdata,
                status: 0,
                revents,
            },
            Some(Event::Stream(event)) => c_stream_event(&event, core.bytes_ptr(&event)),
            Some(other) => {
                dispatch(lp, other);
                continue;
            }
            None => break,
        };
        events.add(written).write(event);
        written += 1;
    }
    Ok(written)
}

/// The batch counterpart of the stream functions: runs `count` operations
/// in order, each as its own function would (EVL_OP_WRITE as
/// evl_stream_write, EVL_OP_CLOSE as evl_stream_close...), and writes what
/// that returned into the operation's `status` (-EINVAL for an unknown op).
///
/// Returns the number of operations whose status is negative (0: all went
/// well); -EINVAL for a NULL loop or `ops`, or `count` < 0.
/// Ownership: `ops` and the bytes they point to stay the caller's.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_submit(
    r#loop: *mut evl_loop,
    ops: *mut evl_stream_op,
    count: c_int,
) -> c_int {
    guard(|| {
        core(r#loop)?;
        if ops.is_null() || count < 0 {
            return Err(libc::EINVAL);
        }
        let mut failed = 0;
        for i in 0..count as usize {
            let op = &mut *ops.add(i);
            let core = core(r#loop)?;
            let result = match op.op {
                EVL_OP_WRITE => bytes(op.data, op.len).and_then(|b| core.write(op.stream, b)),
                EVL_OP_SHUTDOWN => core.shutdown(op.stream),
                EVL_OP_CLOSE => core.close(op.stream),
                EVL_OP_ABORT => core.abort(op.stream),
                EVL_OP_PAUSE => core.pause(op.stream),
                EVL_OP_RESUME => core.resume(op.stream),
                _ => Err(libc::EINVAL),
            };
            op.status = match result {
                Ok(()) => 0,
                Err(errno) => {
                    failed += 1;
                    -errno
                }
            };
        }
        Ok(failed)
    })
}

/// Many writes in one call, in the shape that costs least to build from a
/// language that pays per call and per struct field (Python through ctypes
/// builds the two arrays and joins the bytes with one call each): write `i`
/// sends the next `lens[i]` bytes of `data` to `streams[i]`, as
/// evl_stream_write would, in order.
///
/// Returns the number of writes that failed (0: all went well); a write
/// fails only for an unknown stream or one whose EVL_STREAM_CLOSED was
/// delivered (-ENOENT), one shut down or closed (-EPIPE), or a peer that has gone, in which case the stream is closed
/// and EVL_STREAM_CLOSED says why. -EINVAL for a NULL loop, a negative
/// `count`, NULL arrays with a non-zero `count`, or NULL `data` with
/// non-zero lengths (nothing is written then).
/// Ownership: the arrays and bytes stay the caller's; they are not used
/// after the call. Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_write_batch(
    r#loop: *mut evl_loop,
    streams: *const u64,
    lens: *const usize,
    count: c_int,
    data: *const c_void,
) -> c_int {
    guard(|| write_batch(r#loop, streams, lens, count, data))
}

/// evl_stream_write_batch's work, for it and evl_stream_exchange.
unsafe fn write_batch(
    lp: *mut evl_loop,
    streams: *const u64,
    lens: *const usize,
    count: c_int,
    data: *const c_void,
) -> Result<c_int, Errno> {
    // No callback runs during a write, so one borrow serves them all.
    let core = core(lp)?;
    if count < 0 || (count > 0 && (streams.is_null() || lens.is_null())) {
        return Err(libc::EINVAL);
    }
    let count = count as usize;
    let (streams, lens) = if count == 0 {
        (&[][..], &[][..])
    } else {
        (
            std::slice::from_raw_parts(streams, count),
            std::slice::from_raw_parts(lens, count),
        )
    };
    let total = lens
        .iter()
        .try_fold(0usize, |sum, &len| sum.checked_add(len))
        .ok_or(libc::EINVAL)?;
    let data = bytes(data, total)?;
    let mut failed = 0;
    let mut at = 0;
    for (&stream, &len) in streams.iter().zip(lens) {
        if core.write(stream, &data[at..at + len]).is_err() {
            failed += 1;
        }
        at += len;
    }
    Ok(failed)
}

/// One loop iteration for a caller that pays for each call into the
/// library and for each argument (Python through ctypes): the writes of
/// evl_stream_write_batch, then the wait and events of evl_stream_poll, in
/// one call whose arguments live in `x`, filled once and then only updated.
///
/// Writes `x->write_count` writes from `x->write_streams`, `x->write_lens`
/// and `x->write_data` (as evl_stream_write_batch), stores how many failed
/// in `x->write_failed` and sets `x->write_count` to 0, so the same writes
/// are never made twice. Then polls as evl_stream_poll(loop,
/// `x->timeout_ms`, `x->events`, `x->max_events`) and describes the batch:
/// `x->data_events` is how many events, from the first, are EVL_STREAM_DATA
/// whose bytes lie end to end in the read buffer (each starts where the one
/// before ends), and `x->data_len` is their total length, so the caller can
/// copy them in one piece.
///
/// Returns the number of events written (0 on timeout); -EINVAL for a NULL
/// loop or `x`, or arguments evl_stream_write_batch or evl_stream_poll
/// would refuse (then nothing is written or polled); -EBUSY from one of the
/// loop's own callbacks; -EINTR when a signal interrupted the wait (the
/// writes were made).
/// Ownership: `x` and the arrays and bytes it points to are the caller's;
/// the library reads them during the call only. The `data` of the events
/// is valid until the next evl_stream_poll or evl_stream_exchange.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_exchange(
    r#loop: *mut evl_loop,
    x: *mut evl_stream_exchange_args,
) -> c_int {
    guard(|| {
        let _running = Running::enter(r#loop)?;
        if x.is_null() {
            return Err(libc::EINVAL);
        }
        // A copy of the arguments, and single writes of the results: no
        // reference to `*x` is alive while a timer callback runs.
        let args = x.read();
        if args.events.is_null() || args.max_events <= 0 {
            return Err(libc::EINVAL);
        }
        let failed = write_batch(
            r#loop,
            args.write_streams,
            args.write_lens,
            args.write_count,
            args.write_data,
        )?;
        (*x).write_failed = failed;
        (*x).write_count = 0;
        (*x).data_events = 0;
        (*x).data_len = 0;
        let count = poll_events(r#loop, args.timeout_ms, args.events, args.max_events)?;
        let (data_events, data_len) = data_run(std::slice::from_raw_parts(args.events, count));
        (*x).data_events = data_events;
        (*x).data_len = data_len;
        Ok(count as c_int)
    })
}

/// How many events, from the first, are DATA whose bytes lie end to end,
/// and their total length.
fn data_run(events: &[evl_stream_event]) -> (c_int, usize) {
    let mut count = 0;
    let mut len = 0;
    let mut end = events.first().map_or(std::ptr::null(), |e| e.data);
    for event in events {
        if event.kind != EVL_STREAM_DATA || event.data != end {
            break;
        }
        end = event.data.wrapping_add(event.len);
        count += 1;
        len += event.len;
    }
    (count, len)
}

// ---- errors and versions -------------------------------------------------

/// A static, NUL-terminated description of `code`: a negative errno as the
/// functions here return it (a positive errno works too), EVL_EPANIC, or 0.
/// Never NULL, for any int.
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn evl_strerror(code: c_int) -> *const c_char {
    static MESSAGES: OnceLock<Vec<CString>> = OnceLock::new();
    const UNKNOWN: &CStr = c"Unknown error";
    let result = catch_unwind(|| {
        let messages = MESSAGES.get_or_init(|| (0..134).map(errno_message).collect());
        match code {
            0 => c"Success".as_ptr(),
            EVL_EPANIC => c"Rust panic caught inside evloop".as_ptr(),
            _ => match messages.get(code.unsigned_abs() as usize) {
                Some(message) => message.as_ptr(),
                None => UNKNOWN.as_ptr(),
            },
        }
    });
    result.unwrap_or(UNKNOWN.as_ptr())
}

fn errno_message(errno: i32) -> CString {
    // "Invalid argument (os error 22)" -> "Invalid argument"
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    let text = text.split(" (os error").next().unwrap_or("Unknown error");
    CString::new(text).unwrap_or_else(|_| c"Unknown error".to_owned())
}

/// The library's version, "MAJOR.MINOR.PATCH" (static, never NULL).
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn evl_version() -> *const c_char {
    static VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => panic!("version contains NUL"),
        };
    VERSION.as_ptr()
}

/// The ABI version the library implements; compare with EVL_ABI_VERSION.
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn evl_abi_version() -> u32 {
    EVL_ABI_VERSION
}

/// Test-only: makes the next wait of `lp` panic, to prove the boundary
/// catches it. Not part of the C header.
#[doc(hidden)]
pub unsafe fn arm_test_panic(lp: *mut evl_loop) {
    if let Ok(core) = core(lp) {
        core.arm_test_panic();
    }
}
