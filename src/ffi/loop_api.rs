//! The loop's C API: creating and freeing a loop, registrations, running
//! it (evl_run, evl_run_once, evl_poll) and the calls any thread may make.

use std::cell::{Cell, UnsafeCell};
use std::ffi::{c_int, c_void};
use std::os::fd::RawFd;

use super::boundary::{
    core, guard, handle, not_running, timeout_from_ms, with_loop, Callback, Running,
};
use super::iteration::{dispatch_stream, iterate, RunCallbacks, Sink};
use super::types::*;
use crate::stream::{StreamEvent, StreamLoop};

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
        // SAFETY: non-null, and the caller gives a writable pointer (header).
        unsafe { out.write(std::ptr::null_mut()) };
        let core = StreamLoop::new()?;
        let handle = core.handle();
        let lp = Box::into_raw(Box::new(evl_loop {
            core: UnsafeCell::new(core),
            handle,
            running: Cell::new(false),
        }));
        // SAFETY: as above.
        unsafe { out.write(lp) };
        Ok(0)
    })
}

/// Frees a loop and the kernel objects it owns (epoll set, eventfd,
/// signalfd). Registered fds stay open: they belong to the caller. Streams
/// and listeners are closed with it (no EVL_STREAM_CLOSED is delivered),
/// and so are sockets still lingering (evl_stream_set_linger), after the
/// input that has arrived is discarded. Signals the loop blocked are
/// unblocked again. Queued tasks are dropped uncalled. Work on the pool
/// that has not started is dropped, and work functions running are waited
/// for; children still running are killed and reaped; no work, resolution
/// or exit callback is called (see evl_work_submit, evl_getaddrinfo,
/// evl_spawn).
///
/// Returns 0, -EINVAL for NULL, -EBUSY when called from one of the loop's
/// own callbacks (the loop is left intact).
/// Thread-safety: the loop's thread only, and no other thread may be using
/// the loop (evl_post, evl_wake...) while or after it is freed.
#[no_mangle]
pub unsafe extern "C" fn evl_loop_free(r#loop: *mut evl_loop) -> c_int {
    guard(|| {
        // SAFETY: the header's contract: `loop` is NULL or a live loop, used on
        // its thread, and no other thread uses it while or after it is freed.
        unsafe { not_running(r#loop) }?;
        // Work functions still running may post to the loop: wait for them
        // while it is whole.
        // SAFETY: as above; no borrow of the loop is in use.
        unsafe { core(r#loop) }?.shutdown_jobs();
        // SAFETY: as above; made by Box::into_raw in evl_loop_new, and no
        // callback (so no borrow of it) is running.
        drop(unsafe { Box::from_raw(r#loop) });
        Ok(0)
    })
}

/// Watches `fd` for `events` (EVL_READ, EVL_WRITE, optionally EVL_EDGE or
/// EVL_ONESHOT; EVL_ERROR, EVL_HUP and EVL_RDHUP are accepted and ignored:
/// EVL_ERROR and EVL_HUP are always reported, EVL_RDHUP with EVL_READ).
/// `cb` (may be NULL: the fd is then reported only by
/// evl_poll) is called with `userdata` when the fd is ready.
///
/// Returns 0; -EINVAL for a NULL loop, a negative fd or unknown event bits;
/// -EBADF for an fd that is not open, whatever its number (INT_MAX
/// included: it is refused before anything is allocated for it); -EEXIST
/// if `fd` is registered already; -EPERM for a regular file or directory
/// (epoll cannot watch them); -ENOMEM, -ENOSPC. On error nothing is
/// registered.
/// Cost: the loop keeps one slot per fd number up to the highest it has
/// registered (40 bytes each), never more than RLIMIT_NOFILE allows fds
/// (8192 are made with the loop).
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
    with_loop!(r#loop, |core| {
        core.register(fd, events, Callback::io(cb, userdata))
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
    with_loop!(r#loop, |core| core.modify(fd, events).map(|()| 0))
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
    with_loop!(r#loop, |core| core
        .set_data(fd, Callback::io(cb, userdata))
        .map(|()| 0))
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
    with_loop!(r#loop, |core| core.unregister(fd).map(|()| 0))
}

/// Runs the loop until evl_stop is called or nothing is left to wait for
/// (no registration, timer, signal watcher, hook, stream, listener, queued
/// task or stream event to deliver). Interrupted waits (EINTR) are retried.
/// Sockets lingering after evl_stream_close (evl_stream_set_linger) do not
/// keep it running: when nothing else is left, it closes them (discarding
/// the input that has arrived first) and returns. After evl_stop they are
/// kept, and go on lingering when the loop runs again.
///
/// Returns 0; -EINVAL for NULL; -EBUSY when called from one of the loop's
/// own callbacks; another negative errno if epoll_wait failed.
/// An fd closed without evl_unregister still counts as a registration here.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_run(r#loop: *mut evl_loop) -> c_int {
    guard(|| {
        // SAFETY: the header's contract: `loop` is NULL or a live loop, used on its thread.
        let _running = unsafe { Running::enter(r#loop) }?;
        let mut sink = RunCallbacks::<false> { ran: 0 };
        loop {
            // SAFETY: checked by Running::enter; no other borrow is in use.
            let core = unsafe { core(r#loop) }?;
            if core.take_stop() {
                return Ok(0);
            }
            if !core.is_alive() {
                core.end_lingering();
                return Ok(0);
            }
            // SAFETY: as above.
            match unsafe { iterate(r#loop, None, usize::MAX, &mut sink) } {
                Ok(()) | Err(libc::EINTR) => {}
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
        // SAFETY: the header's contract: `loop` is NULL or a live loop, used on its thread.
        let _running = unsafe { Running::enter(r#loop) }?;
        let mut sink = RunCallbacks::<true> { ran: 0 };
        // SAFETY: checked by Running::enter; no other borrow is in use.
        unsafe { iterate(r#loop, timeout_from_ms(timeout_ms), usize::MAX, &mut sink) }?;
        Ok(sink.ran)
    })
}

/// Waits like evl_run_once, then writes up to `max_events` ready
/// registrations (with or without a callback) into `events` instead of
/// calling their I/O callbacks. Due timers, queued tasks and signal watchers
/// run their callbacks as usual, before the events are written, so every
/// event written is for a registration that is still current.
///
/// With `max_events` at least the number of registrations, every ready one
/// is written (no internal batch size limits it). A huge `max_events`
/// costs nothing: the loop makes room for at most as many events as it has
/// registrations.
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
        // SAFETY: the header's contract: `loop` is NULL or a live loop, used on its thread.
        let _running = unsafe { Running::enter(r#loop) }?;
        if events.is_null() || max_events <= 0 {
            return Err(libc::EINVAL);
        }
        let max = max_events as usize;
        let mut sink = PollArray {
            events,
            max,
            written: 0,
        };
        // SAFETY: checked by Running::enter; no other borrow is in use.
        unsafe { iterate(r#loop, timeout_from_ms(timeout_ms), max, &mut sink) }?;
        Ok(sink.written as c_int)
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
        // SAFETY: the header's contract: `loop` is NULL or a live loop (any thread).
        unsafe { handle(r#loop) }?.stop();
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
        // SAFETY: the header's contract: `loop` is NULL or a live loop (any thread).
        unsafe { handle(r#loop) }?.wake();
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
        // SAFETY: the header's contract: `loop` is NULL or a live loop (any thread).
        let handle = unsafe { handle(r#loop) }?;
        if cb.is_none() {
            return Err(libc::EINVAL);
        }
        handle.post(Callback::task(cb, userdata));
        Ok(0)
    })
}

/// Call in the child after fork(), before any other use of the loop there:
/// re-creates every kernel object the loop owns (epoll set, eventfd,
/// signalfd, timerfd), so parent and child no longer affect each other
/// (until then the child's loop works on the parent's epoll set), and keeps
/// the timers, signal watchers, streams, listeners and registrations.
/// Sockets lingering after a close (evl_stream_set_linger) are the
/// parent's to end: the child closes its copies, so that such a connection
/// ends when the parent closes it.
///
/// The registrations kept are those current at the fork, whatever the
/// parent has done with its copies since: a pre-fork server's parent may
/// hand a connection to the child, then evl_unregister it (or
/// evl_stream_abort its stream) and close its copy, before or after the
/// child calls this. (Hand a stream over with evl_stream_abort:
/// evl_stream_close and evl_stream_shutdown act on the socket itself,
/// which the child shares.) A registration whose fd was closed without
/// evl_unregister before the fork is dropped, also when the number now
/// names another fd (which is then not watched): it never calls back
/// again, and the number may be registered anew. So is one whose fd the
/// child has closed (or closed and reused) since the fork. Registrations
/// the child made itself before calling this are kept. An EVL_ONESHOT
/// registration comes back armed.
///
/// How: fork() runs a handler (pthread_atfork) that lists each loop's
/// epoll set from /proc/self/fdinfo, read-only, into the memory the child
/// inherits; this costs each fork() in the process a few microseconds per
/// registration of every loop, most of it the kernel's (nothing without a
/// loop; c-examples/bench_fork.c measures it). A child
/// made without fork()'s handlers (a raw clone() or fork syscall), or a
/// fork() while /proc could not be read, has no such list: the loop then
/// reads the set it shares with the parent as it is now, so a registration
/// the parent has ended in the meantime is dropped too; without /proc at
/// all, it keeps every registration whose fd is open in the child, even
/// one closed and reused before the fork. A registered fd closed without
/// evl_unregister while a dup() of it (or another process's copy) stays
/// open is still watched by the kernel, and kept if its number was reused
/// by a file of the same inode (eventfds, timerfds and signalfds share
/// one): evl_unregister before closing such an fd.
///
/// Returns 0; -EINVAL for NULL; -EBUSY from one of the loop's callbacks;
/// the errno of a failed syscall (the loop is then unusable: free it).
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_loop_fork(r#loop: *mut evl_loop) -> c_int {
    guard(|| {
        // SAFETY: the header's contract: `loop` is NULL or a live loop, used on its thread.
        let _running = unsafe { Running::enter(r#loop) }?;
        // SAFETY: checked by Running::enter; no other borrow is in use.
        unsafe { core(r#loop) }?.reinit_after_fork().map(|()| 0)
    })
}

/// evl_poll's sink: ready registrations into the caller's array; stream
/// events (of a loop that has streams too) to their callbacks.
struct PollArray {
    events: *mut evl_event,
    max: usize,
    written: usize,
}

impl Sink for PollArray {
    fn is_full(&self) -> bool {
        self.written == self.max
    }

    unsafe fn io(&mut self, _lp: *mut evl_loop, fd: RawFd, revents: u32, data: Callback) {
        let event = evl_event {
            fd,
            revents,
            userdata: data.userdata,
        };
        // SAFETY: `written` < `max`, and the caller's array has room for `max`.
        unsafe { self.events.add(self.written).write(event) };
        self.written += 1;
    }

    unsafe fn stream(&mut self, lp: *mut evl_loop, event: StreamEvent<Callback>) {
        // SAFETY: as the caller promised.
        unsafe { dispatch_stream(lp, event) };
    }
}
