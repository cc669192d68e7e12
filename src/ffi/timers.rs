//! Timers' C API.

use std::ffi::{c_int, c_void};
use std::time::Duration;

use super::boundary::{with_loop, Callback};
use super::types::*;

/// Starts a timer that calls `cb` after `delay_ms` milliseconds, then every
/// `repeat_ms` if that is non-zero. Timers are never early; they fire in
/// deadline order, equal deadlines in start order. The timer's id is
/// written to `*timer_id` unless it is NULL. Any delay or period is
/// accepted: one that reaches past the clock's range (about 584 years of
/// CLOCK_MONOTONIC) never comes.
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
    with_loop!(r#loop, |core| {
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
            // SAFETY: non-null, and the caller gives a writable u64 (header).
            unsafe { timer_id.write(id) };
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
    with_loop!(r#loop, |core| core.stop_timer(timer_id).map(|()| 0))
}
