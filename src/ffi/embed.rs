//! Hooks into the loop's iterations, and running the loop inside a host
//! loop (GLib, Qt, libuv, asyncio...): C API. The hooks run in
//! `iteration.rs`, around the wait.

use std::ffi::{c_int, c_void};
use std::time::Duration;

use super::boundary::{with_loop, Callback};
use super::types::*;
use crate::event_loop::HookKind;

/// Starts a hook that calls `cb(loop, id, userdata)` in every iteration, as
/// `kind` says: EVL_HOOK_PREPARE (before the wait), EVL_HOOK_CHECK (after
/// it) or EVL_HOOK_IDLE (in an iteration with nothing to do; the loop then
/// never blocks), until evl_hook_stop. Hooks of one kind run in start
/// order; one started from a hook of its own kind first runs in the next
/// iteration. The hook's id is written to `*hook_id` unless it is NULL.
/// A hook may do anything another callback may: start and stop hooks (its
/// own included), timers, registrations and streams, or stop the loop. An
/// active hook counts as work: evl_run does not return while one is left.
/// Hook callbacks are not counted in what evl_run_once returns.
///
/// Returns 0; -EINVAL for a NULL loop or callback, or an unknown kind
/// (nothing is written to `*hook_id` then).
/// Cost: none while no hook is active; one call per active hook per iteration.
/// Ownership: `userdata` is the caller's and is only handed back.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_hook_start(
    r#loop: *mut evl_loop,
    kind: u32,
    cb: evl_hook_cb,
    userdata: *mut c_void,
    hook_id: *mut u64,
) -> c_int {
    with_loop!(r#loop, |core| {
        let kind = match kind {
            EVL_HOOK_PREPARE => HookKind::Prepare,
            EVL_HOOK_CHECK => HookKind::Check,
            EVL_HOOK_IDLE => HookKind::Idle,
            _ => return Err(libc::EINVAL),
        };
        if cb.is_none() {
            return Err(libc::EINVAL);
        }
        let id = core.start_hook(kind, Callback::hook(cb, userdata));
        if !hook_id.is_null() {
            // SAFETY: non-null, and the caller gives a writable u64 (header).
            unsafe { hook_id.write(id) };
        }
        Ok(0)
    })
}

/// Stops a hook: it is not called again, not even later in the iteration
/// under way. May be called from any callback, the hook's own included.
///
/// Returns 0; -EINVAL for NULL; -ENOENT for an unknown or stopped hook.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_hook_stop(r#loop: *mut evl_loop, hook_id: u64) -> c_int {
    with_loop!(r#loop, |core| core.stop_hook(hook_id).map(|()| 0))
}

/// For a host loop (GLib, Qt, libuv, asyncio...) that runs this one: an fd
/// that becomes readable when the loop has something to do (ready I/O, a
/// due timer, a task from evl_post, an evl_wake, a signal). Watch it for
/// reading, and when it fires, or when evl_backend_timeout's time has come,
/// run one iteration that does not block: evl_run_once(loop, 0), or
/// evl_poll / evl_stream_poll / evl_stream_exchange with timeout 0.
/// It is the loop's epoll fd. From the first call on, a timerfd follows
/// the next timer deadline in its set (a loop nobody asked this of has none).
///
/// Returns the fd; -EINVAL for NULL; -EMFILE, -ENOMEM... if the timerfd
/// could not be made.
/// Ownership: the fd is the loop's: never close, read or write it. It is
/// closed by evl_loop_free and replaced by evl_loop_fork (ask again after).
/// Thread-safety: the loop's thread only; a host on another thread may
/// poll the fd.
#[no_mangle]
pub unsafe extern "C" fn evl_backend_fd(r#loop: *mut evl_loop) -> c_int {
    with_loop!(r#loop, |core| core.backend_fd())
}

/// For a host loop: how many milliseconds it may wait before the loop needs
/// an iteration: 0 if it has work now (queued tasks, a signal or stream
/// events not yet handed out, an iteration that evl_poll or evl_stream_poll
/// cut short, an active idle hook, ended streams' sockets to close), the
/// time to the next timer rounded up
/// (so an iteration then never finds the timer early), or -1 if only I/O,
/// which makes evl_backend_fd readable, can give it work. Ask again after
/// each iteration: callbacks change it.
///
/// Returns 0, a positive time (at most INT_MAX), -1 as above (never an
/// error here), or -EINVAL for NULL.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_backend_timeout(r#loop: *mut evl_loop) -> c_int {
    with_loop!(r#loop, |core| Ok(core
        .backend_timeout()
        .map_or(-1, ms_rounded_up)))
}

/// Whole milliseconds, rounded up, at most `c_int::MAX`.
fn ms_rounded_up(d: Duration) -> c_int {
    let ms = d.as_nanos().div_ceil(1_000_000);
    c_int::try_from(ms).unwrap_or(c_int::MAX)
}
