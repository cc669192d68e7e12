//! Signal watchers' C API.

use std::ffi::{c_int, c_void};

use super::boundary::{with_loop, Callback};
use super::types::*;

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
    with_loop!(r#loop, |core| {
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
    with_loop!(r#loop, |core| core.unwatch_signal(signo).map(|()| 0))
}
