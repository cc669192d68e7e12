//! Work on the thread pool: evl_work_submit, evl_work_cancel and the
//! pool's size; and the dispatch of every job event (work done, a
//! resolution, a child's exit) to its callback.

use std::ffi::{c_int, c_void};

use super::boundary::{with_loop, Callback};
use super::types::*;
use crate::stream::JobEvent;

/// Called on a pool thread with the userdata given to evl_work_submit. It
/// may block; it must not call the loop's functions (only evl_post,
/// evl_wake and evl_stop, which any thread may call).
pub type evl_work_fn = Option<unsafe extern "C" fn(userdata: *mut c_void)>;

/// Called once on the loop's thread when a work item is over: `status` 0
/// (its work_fn ran and returned) or -ECANCELED (it never started:
/// evl_work_cancel, or a child after fork, see evl_work_submit).
/// `work_id` is the id evl_work_submit gave.
pub type evl_work_done_cb = Option<
    unsafe extern "C" fn(r#loop: *mut evl_loop, work_id: u64, status: c_int, userdata: *mut c_void),
>;

/// The most threads a loop's pool may have (evl_pool_set_size).
pub const EVL_POOL_MAX_SIZE: u32 = 1024;

const _: () = assert!(EVL_POOL_MAX_SIZE as usize == crate::pool::MAX_POOL_SIZE);

/// `work` and its userdata, sent to a pool thread.
struct WorkCall {
    work: unsafe extern "C" fn(*mut c_void),
    userdata: *mut c_void,
}

// SAFETY: the header's contract: work_fn runs on a pool thread with the
// userdata given, which the caller hands over for that.
unsafe impl Send for WorkCall {}

impl WorkCall {
    fn run(self) {
        // SAFETY: the caller's function, called once with its userdata, as
        // evl_work_submit documents.
        unsafe { (self.work)(self.userdata) }
    }
}

/// Runs `work(userdata)` on one of the loop's pool threads, then
/// `done(loop, id, status, userdata)` on the loop's thread, in a later
/// iteration (through the loop's task queue, like evl_post). `done` may be
/// NULL. The pool starts its threads as work comes, at most
/// evl_pool_size(loop) of them (default: the number of CPUs); work waits in
/// order for a free one. Every signal is blocked in pool threads. The id
/// is written to `*work_id` unless it is NULL.
///
/// Work not done yet keeps evl_run running. Every item gets its `done`
/// exactly once, except at evl_loop_free: that drops work not started
/// (calling nothing), waits for work functions already running to return,
/// and calls no `done` either; so free `userdata` in `done`, and let evl_run
/// finish (or cancel and run) before freeing the loop. In a child after
/// fork, evl_loop_fork gives each item not done in the parent its `done`
/// with -ECANCELED (with 0 for one whose work_fn had returned before the
/// fork): no pool thread survives a fork, and a work_fn that was running
/// at the fork may have left its userdata half-done in the child's copy.
/// (A child that frees the loop without evl_loop_fork does not wait for
/// the parent's work functions.)
///
/// Returns 0; -EINVAL for a NULL loop or `work`; -EAGAIN if no thread could
/// be started and none exists (nothing is queued then).
/// Ownership: `userdata` stays the caller's; the library only passes it on.
/// Thread-safety: the loop's thread only (not from `work`).
#[no_mangle]
pub unsafe extern "C" fn evl_work_submit(
    r#loop: *mut evl_loop,
    work: evl_work_fn,
    done: evl_work_done_cb,
    userdata: *mut c_void,
    work_id: *mut u64,
) -> c_int {
    with_loop!(r#loop, |core| {
        let Some(work) = work else {
            return Err(libc::EINVAL);
        };
        let call = WorkCall { work, userdata };
        let id = core.submit_work(move || call.run(), Callback::work_done(done, userdata))?;
        if !work_id.is_null() {
            // SAFETY: non-null, and the caller gives a writable u64 (header).
            unsafe { work_id.write(id) };
        }
        Ok(0)
    })
}

/// Cancels a work item whose work_fn has not started: it never runs, and
/// its `done` gets -ECANCELED in a later iteration.
///
/// Returns 0 (also for an item cancelled already); -EBUSY once its work_fn
/// has started (its `done` then gets 0), and in a child after fork for
/// every item submitted before the fork (its outcome is settled: see
/// evl_work_submit); -EINVAL for a NULL loop; -ENOENT for an unknown id or
/// one whose `done` has been called.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_work_cancel(r#loop: *mut evl_loop, work_id: u64) -> c_int {
    with_loop!(r#loop, |core| core.cancel_work(work_id).map(|()| 0))
}

/// Lets the loop's pool have at most `size` threads (1 to
/// EVL_POOL_MAX_SIZE; default: the number of CPUs this process may run
/// on). Threads over the new size end once their work function returns;
/// work waiting gets new threads up to it. Name resolution (evl_getaddrinfo,
/// evl_connect_host) runs on the same pool.
///
/// Returns 0; -EINVAL for a NULL loop or a size out of range.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_pool_set_size(r#loop: *mut evl_loop, size: u32) -> c_int {
    with_loop!(r#loop, |core| core.set_pool_size(size as usize).map(|()| 0))
}

/// The most threads the loop's pool may have (see evl_pool_set_size).
///
/// Returns the size; -EINVAL for a NULL loop.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_pool_size(r#loop: *mut evl_loop) -> c_int {
    with_loop!(r#loop, |core| Ok(core.pool_size() as c_int))
}

/// Calls the callback a job event carries; returns whether one ran.
///
/// # Safety
/// `lp` is live and not borrowed.
pub(super) unsafe fn run_job_callback(lp: *mut evl_loop, event: JobEvent<Callback>) -> bool {
    match event {
        JobEvent::WorkDone { id, error, data } => {
            // SAFETY: work records hold work-done callbacks.
            let Some(cb) = (unsafe { data.as_work_done() }) else {
                return false;
            };
            // SAFETY: the caller's callback, as submitted, with its
            // userdata; `lp` is live and not borrowed.
            unsafe { cb(lp, id, -error, data.userdata) };
            true
        }
        // SAFETY: as the caller promised.
        JobEvent::Resolved { id, data } => unsafe { super::resolve_api::deliver(lp, id, data) },
        JobEvent::Exited {
            id,
            pid,
            status,
            data,
        } => {
            // SAFETY: as the caller promised.
            unsafe { super::process_api::deliver(lp, id, pid, status, data) }
        }
    }
}
