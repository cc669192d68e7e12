//! The one iteration every running function shares (evl_run, evl_run_once,
//! evl_poll, evl_stream_poll, evl_stream_exchange): wait, then hand each
//! event to a [`Sink`], which says what becomes of ready I/O and stream
//! events (a callback, or an entry in the caller's array). Timers, tasks and
//! signals always run their callbacks. The order of the events is the loop's:
//! see `event_loop/iteration.rs` and `stream/dispatch.rs`.
//!
//! With hooks (evl_hook_start), the wait is surrounded by them: prepare
//! hooks, the wait (which does not block while an idle hook is active),
//! check hooks, and idle hooks if the wait found nothing; then the events
//! as above. An iteration without hooks pays one test for them.

use std::ffi::c_int;
use std::os::fd::RawFd;
use std::time::Duration;

use super::boundary::{core, Callback};
use super::types::*;
use crate::event_loop::HookKind;
use crate::stream::{Event, Ready, StreamEvent, StreamEventKind};
use crate::sys::Errno;

/// What one caller of [`iterate`] does with the events it is handed.
pub(super) trait Sink {
    /// No room for more: the iteration pauses here, and the next wait goes
    /// on with it without blocking.
    fn is_full(&self) -> bool;

    /// A raw registration is ready.
    ///
    /// # Safety
    /// `lp` is live and no borrow of its loop is in use.
    unsafe fn io(&mut self, lp: *mut evl_loop, fd: RawFd, revents: u32, data: Callback);

    /// Something happened to a stream or listener.
    ///
    /// # Safety
    /// As [`io`](Self::io).
    unsafe fn stream(&mut self, lp: *mut evl_loop, event: StreamEvent<Callback>);

    /// A timer, task or signal callback ran.
    fn callback_ran(&mut self) {}
}

/// One iteration: waits at most `timeout` for up to `max_events`, then hands
/// every event to `sink`, in order, until the iteration is over or `sink` is
/// full. The caller holds the loop's `Running` mark.
///
/// # Safety
/// `lp` must be null or a live loop, used on its thread, not borrowed.
#[inline(always)]
pub(super) unsafe fn iterate<S: Sink>(
    lp: *mut evl_loop,
    timeout: Option<Duration>,
    max_events: usize,
    sink: &mut S,
) -> Result<(), Errno> {
    // SAFETY: as the caller promised.
    unsafe { wait(lp, timeout, max_events) }?;
    while !sink.is_full() {
        // SAFETY: `lp` was checked above. This borrow serves one pull: it is
        // not used once the event goes to the sink, which may run callbacks
        // that borrow the loop again.
        let core = unsafe { &mut *(*lp).core.get() };
        // The fast path: ready I/O of a raw registration or a stream,
        // straight to the sink, with no Event built in between.
        // In every arm below, the sink is called once `core` is no longer used.
        match core.next_ready() {
            Some(Ready::Io { fd, revents, data }) => {
                // SAFETY: live, and the borrow above is over.
                unsafe { sink.io(lp, fd, revents, data) }
            }
            Some(Ready::Stream { stream, revents }) => {
                if let Some(event) = core.stream_ready(stream, revents) {
                    // SAFETY: as above.
                    unsafe { sink.stream(lp, event) }
                }
            }
            Some(Ready::Udp { socket, revents }) => {
                if let Some(event) = core.udp_ready(socket, revents) {
                    // SAFETY: as above.
                    unsafe { sink.stream(lp, event) }
                }
            }
            None => match core.next_event() {
                Some(Event::Io { fd, revents, data }) => {
                    // SAFETY: as above.
                    unsafe { sink.io(lp, fd, revents, data) }
                }
                Some(Event::Stream(event)) => {
                    // SAFETY: as above.
                    unsafe { sink.stream(lp, event) }
                }
                Some(other) => {
                    // SAFETY: as above.
                    if unsafe { run_callback(lp, other) } {
                        sink.callback_ran();
                    }
                }
                None => return Ok(()),
            },
        }
    }
    Ok(())
}

/// The wait of one iteration, with the hooks around it when there are any.
///
/// # Safety
/// As [`iterate`].
#[inline(always)]
unsafe fn wait(lp: *mut evl_loop, timeout: Option<Duration>, max: usize) -> Result<(), Errno> {
    // SAFETY: as the caller promised; the borrow is over before any hook runs.
    let core = unsafe { core(lp) }?;
    if core.has_hooks() && !core.continues_iteration() {
        // SAFETY: as the caller promised.
        return unsafe { wait_with_hooks(lp, timeout, max) };
    }
    core.wait(timeout, max)
}

/// Prepare hooks; the wait, which does not block while an idle hook is
/// active (nor when the prepare hooks ended everything); check hooks; and
/// idle hooks if the wait found nothing to hand out.
///
/// # Safety
/// As [`iterate`].
#[cold]
#[inline(never)]
unsafe fn wait_with_hooks(
    lp: *mut evl_loop,
    timeout: Option<Duration>,
    max: usize,
) -> Result<(), Errno> {
    // SAFETY: as the caller promised.
    unsafe { run_hooks(lp, HookKind::Prepare) }?;
    // SAFETY: as the caller promised; this borrow is over before the check hooks.
    let loop_core = unsafe { core(lp) }?;
    let now = loop_core.has_idle_hooks() || !loop_core.is_alive();
    loop_core.wait(if now { Some(Duration::ZERO) } else { timeout }, max)?;
    // SAFETY: as the caller promised.
    unsafe { run_hooks(lp, HookKind::Check) }?;
    // SAFETY: as above.
    if !unsafe { core(lp) }?.has_work() {
        // SAFETY: as above.
        unsafe { run_hooks(lp, HookKind::Idle) }?;
    }
    Ok(())
}

/// Calls every hook of `kind` that is active when the run starts and still
/// active when its turn comes, in start order.
///
/// # Safety
/// As [`iterate`].
unsafe fn run_hooks(lp: *mut evl_loop, kind: HookKind) -> Result<(), Errno> {
    // SAFETY: as the caller promised; each borrow ends before the hook runs.
    let mut run = unsafe { core(lp) }?.hook_run(kind);
    // SAFETY: as above.
    while let Some((id, data)) = unsafe { core(lp) }?.next_hook(&mut run) {
        // SAFETY: hooks hold hook callbacks, called as started, with their
        // userdata; `lp` is live and not borrowed.
        unsafe {
            if let Some(cb) = data.as_hook() {
                cb(lp, id, data.userdata);
            }
        }
    }
    Ok(())
}

/// Runs the callback a timer, task or signal event carries (or an I/O or
/// stream event, for completeness); returns whether one ran.
///
/// # Safety
/// `lp` is live and not borrowed.
unsafe fn run_callback(lp: *mut evl_loop, event: Event<Callback>) -> bool {
    // SAFETY: in every arm, the callback is restored as the type it was
    // stored with (the kind of event tells it), and called as the caller
    // registered it, with its userdata.
    unsafe {
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
            Event::Job(event) => return super::work_api::run_job_callback(lp, event),
        }
    }
    true
}

/// A stream event as C sees it; `data` points into the loop's read buffer.
pub(super) fn c_stream_event(event: &StreamEvent<Callback>, data: *const u8) -> evl_stream_event {
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

/// Calls a stream's callback with `event`; returns whether one ran. Once
/// it returns (or at once, without a callback), the bytes of a Data event
/// are released, and after a Closed event the fds of ended streams close.
///
/// # Safety
/// `lp` is live and not borrowed.
#[inline(always)]
pub(super) unsafe fn dispatch_stream(lp: *mut evl_loop, event: StreamEvent<Callback>) -> bool {
    // SAFETY: stream events carry stream callbacks.
    let cb = unsafe { event.data.as_stream() };
    if let Some(cb) = cb {
        // SAFETY: live and not borrowed, as the caller promised; the borrow ends here.
        let data = unsafe { &*(*lp).core.get() }.bytes_ptr(&event);
        let c_event = c_stream_event(&event, data);
        // SAFETY: the caller's callback, called as registered; `c_event` outlives the call.
        unsafe { cb(lp, &c_event) };
    }
    // Also without a callback (dropped): what it pointed to is done with,
    // or a loop of streams without callbacks would never read again once
    // the buffer filled, nor close an ended stream's fd.
    // SAFETY: still live (evl_loop_free is refused from callbacks), and the
    // callback's borrows are over.
    let core = unsafe { &mut *(*lp).core.get() };
    core.release_reads();
    if event.kind == StreamEventKind::Closed {
        core.close_ended();
    }
    cb.is_some()
}

/// `c_int` count of callbacks, for evl_run_once (evl_run has no use for it,
/// and its hot path is shorter without: `COUNT` false counts nothing).
pub(super) struct RunCallbacks<const COUNT: bool> {
    pub(super) ran: c_int,
}

impl<const COUNT: bool> Sink for RunCallbacks<COUNT> {
    #[inline(always)]
    fn is_full(&self) -> bool {
        false
    }

    #[inline(always)]
    unsafe fn io(&mut self, lp: *mut evl_loop, fd: RawFd, revents: u32, data: Callback) {
        // SAFETY: registrations hold I/O callbacks; called as registered.
        if let Some(cb) = unsafe { data.as_io() } {
            // SAFETY: as registered, with its userdata; `lp` is live and not borrowed.
            unsafe { cb(lp, fd, revents, data.userdata) };
            self.ran += COUNT as c_int;
        }
    }

    #[inline(always)]
    unsafe fn stream(&mut self, lp: *mut evl_loop, event: StreamEvent<Callback>) {
        // SAFETY: as the caller promised.
        if unsafe { dispatch_stream(lp, event) } {
            self.ran += COUNT as c_int;
        }
    }

    #[inline(always)]
    fn callback_ran(&mut self) {
        self.ran += COUNT as c_int;
    }
}
