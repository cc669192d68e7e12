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

use std::cell::UnsafeCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;
use std::time::Duration;

use crate::event_loop::{Event, EventLoop, LoopHandle};
use crate::sys::Errno;

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
    use crate::sys;
    assert!(EVL_READ == sys::READ && EVL_WRITE == sys::WRITE && EVL_ERROR == sys::ERROR);
    assert!(EVL_HUP == sys::HUP && EVL_RDHUP == sys::RDHUP);
    assert!(EVL_EDGE == sys::EDGE && EVL_ONESHOT == sys::ONESHOT);
};

/// An event loop. Opaque: create it with evl_loop_new, free it with evl_loop_free.
pub struct evl_loop {
    core: UnsafeCell<EventLoop<Callback>>,
    /// The thread-safe part (task queue, doorbell, stop flag).
    handle: LoopHandle<Callback>,
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
unsafe fn core<'a>(lp: *mut evl_loop) -> Result<&'a mut EventLoop<Callback>, Errno> {
    if lp.is_null() {
        return Err(libc::EINVAL);
    }
    Ok(&mut *(*lp).core.get())
}

/// The thread-safe part of the loop.
///
/// # Safety
/// As [`core`]; this may be called from any thread.
unsafe fn handle<'a>(lp: *mut evl_loop) -> Result<&'a LoopHandle<Callback>, Errno> {
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
    }
    true
}

/// One iteration: wait, then run every callback. Returns the number run if
/// `COUNT` (evl_run has no use for it, and its hot path is shorter without).
unsafe fn run_once<const COUNT: bool>(
    lp: *mut evl_loop,
    timeout: Option<Duration>,
) -> Result<c_int, Errno> {
    core(lp)?.wait(timeout, usize::MAX)?;
    let mut ran: c_int = 0;
    // `lp` was checked above; each pull borrows the loop for itself alone.
    loop {
        let core = &mut *(*lp).core.get();
        // The fast path: ready I/O, with no Event built in between.
        if let Some((fd, revents, data)) = core.next_ready() {
            if let Some(cb) = data.as_io() {
                cb(lp, fd, revents, data.userdata);
                ran += COUNT as c_int;
            }
            continue;
        }
        // The I/O phase ends the iteration: no call to the slow path then.
        if !core.is_dispatching() {
            return Ok(ran);
        }
        match core.next_other() {
            Some(event) => ran += (dispatch(lp, event) && COUNT) as c_int,
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
        let core = EventLoop::new()?;
        let handle = core.handle();
        *out = Box::into_raw(Box::new(evl_loop {
            core: UnsafeCell::new(core),
            handle,
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
        if core(r#loop)?.is_dispatching() {
            return Err(libc::EBUSY);
        }
        drop(Box::from_raw(r#loop));
        Ok(0)
    })
}

// ---- registrations ---------------------------------------------------------

/// Watches `fd` for `events` (EVL_READ, EVL_WRITE, optionally EVL_EDGE or
/// EVL_ONESHOT; EVL_ERROR, EVL_HUP and EVL_RDHUP are accepted and always
/// reported anyway). `cb` (may be NULL: the fd is then reported only by
/// evl_poll) is called with `userdata` when the fd is ready.
///
/// Returns 0; -EINVAL for a NULL loop, a negative fd or unknown event bits;
/// -EBADF for a closed fd; -EEXIST if `fd` is registered already; -EPERM for
/// a regular file or directory (epoll cannot watch them); -ENOMEM, -ENOSPC.
/// On error nothing is registered.
/// An fd closed without evl_unregister drops out of the kernel's set; when
/// its number is reused, the new fd can be registered and the old
/// registration never calls back. (If the old fd was dup()ed, the kernel
/// keeps watching the duplicate: unregister before closing.)
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
/// registration. Events already fetched are filtered by the new interest.
///
/// Returns 0; -EINVAL for a NULL loop, a negative fd or unknown bits;
/// -ENOENT if `fd` is not registered; -EBADF if it was closed.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_modify(r#loop: *mut evl_loop, fd: c_int, events: u32) -> c_int {
    guard(|| core(r#loop)?.modify(fd, events).map(|()| 0))
}

/// Replaces the callback and userdata of a registered fd (`cb` may be NULL).
///
/// Returns 0; -EINVAL for a NULL loop or a negative fd; -ENOENT if `fd` is
/// not registered.
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
/// not registered.
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
    guard(|| loop {
        let core = core(r#loop)?;
        if core.is_dispatching() {
            return Err(libc::EBUSY);
        }
        if core.take_stop() || !core.is_alive() {
            return Ok(0);
        }
        match run_once::<false>(r#loop, None) {
            Ok(_) | Err(libc::EINTR) => {}
            Err(e) => return Err(e),
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
    guard(|| run_once::<true>(r#loop, timeout_from_ms(timeout_ms)))
}

/// Waits like evl_run_once, then writes up to `max_events` ready
/// registrations (with or without a callback) into `events` instead of
/// calling their I/O callbacks. Due timers, queued tasks and signal watchers
/// run their callbacks as usual, before the events are written, so every
/// event written is for a registration that is still current.
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
        core(r#loop)?;
        if events.is_null() || max_events <= 0 {
            return Err(libc::EINVAL);
        }
        core(r#loop)?.wait(timeout_from_ms(timeout_ms), max_events as usize)?;
        let mut written = 0;
        while let Some(event) = core(r#loop)?.next_event() {
            match event {
                Event::Io {
                    fd,
                    revents,
                    data: Callback { userdata, .. },
                } => {
                    // wait() fetched at most max_events, one event per fd.
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
/// watchers. A registration whose fd was closed is dropped. An EVL_ONESHOT
/// registration comes back armed.
///
/// Returns 0; -EINVAL for NULL; -EBUSY from one of the loop's callbacks;
/// the errno of a failed syscall (the loop is then unusable: free it).
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_loop_fork(r#loop: *mut evl_loop) -> c_int {
    guard(|| core(r#loop)?.reinit_after_fork().map(|()| 0))
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
