//! The batch interface, for callers that pay for each call into the
//! library (Python through ctypes): many events out, many operations in,
//! one call each.

use std::ffi::{c_int, c_void};
use std::os::fd::RawFd;

use super::boundary::{bytes, core, guard, timeout_from_ms, Callback, Running};
use super::iteration::{c_stream_event, iterate, Sink};
use super::types::*;
use crate::stream::StreamEvent;
use crate::sys::Errno;

/// The batch interface, for callers that pay for each call into the
/// library (Python through ctypes): waits like evl_poll, then writes up to
/// `max_events` events into `events` instead of calling callbacks: stream
/// and listener events, and EVL_STREAM_IO for raw registrations. Timers,
/// tasks and signal watchers run their callbacks as usual.
///
/// The `data` of EVL_STREAM_DATA events stays valid until the next call of
/// evl_stream_poll on this loop. If more events were ready than fit, the
/// next call returns them without waiting. A huge `max_events` costs
/// nothing: only the events that are ready are made and written.
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
        // SAFETY: the header's contract: `loop` is NULL or a live loop, used on its thread.
        let _running = unsafe { Running::enter(r#loop) }?;
        // SAFETY: checked by Running::enter; `events` has room for
        // `max_events` (the header's contract).
        unsafe { poll_events(r#loop, timeout_ms, events, max_events) }.map(|count| count as c_int)
    })
}

/// evl_stream_poll's work, for it and evl_stream_exchange: waits, then
/// writes up to `max_events` events.
///
/// # Safety
/// The caller holds [`Running`] for `lp`; `events` is NULL or has room for
/// `max_events`.
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
    // SAFETY: live, as the caller promised, and not borrowed elsewhere.
    // The bytes of the previous batch are no longer needed.
    unsafe { core(lp) }?.release_reads();
    let mut sink = StreamPollArray {
        events,
        max,
        written: 0,
    };
    // SAFETY: as above.
    unsafe { iterate(lp, timeout_from_ms(timeout_ms), max, &mut sink) }?;
    Ok(sink.written)
}

/// evl_stream_poll's sink: every stream event, and raw registrations as
/// EVL_STREAM_IO, into the caller's array.
struct StreamPollArray {
    events: *mut evl_stream_event,
    max: usize,
    written: usize,
}

impl StreamPollArray {
    fn push(&mut self, event: evl_stream_event) {
        // SAFETY: `written` < `max` (iterate stops when full), and the
        // caller's array has room for `max`.
        unsafe { self.events.add(self.written).write(event) };
        self.written += 1;
    }
}

impl Sink for StreamPollArray {
    fn is_full(&self) -> bool {
        self.written == self.max
    }

    unsafe fn io(&mut self, _lp: *mut evl_loop, fd: RawFd, revents: u32, data: Callback) {
        self.push(evl_stream_event {
            kind: EVL_STREAM_IO,
            fd,
            stream: 0,
            data: std::ptr::null(),
            len: 0,
            userdata: data.userdata,
            status: 0,
            revents,
        });
    }

    unsafe fn stream(&mut self, lp: *mut evl_loop, event: StreamEvent<Callback>) {
        // SAFETY: live and not borrowed, as the caller promised; the borrow
        // ends here.
        let data = unsafe { &*(*lp).core.get() }.bytes_ptr(&event);
        self.push(c_stream_event(&event, data));
    }
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
        // SAFETY: the header's contract: `loop` is NULL or a live loop, used on its thread.
        // No callback runs during these operations, so one borrow serves them all.
        let core = unsafe { core(r#loop) }?;
        if ops.is_null() || count < 0 {
            return Err(libc::EINVAL);
        }
        let mut failed = 0;
        for i in 0..count as usize {
            // SAFETY: `ops` holds `count` operations (the header's contract).
            let op = unsafe { &mut *ops.add(i) };
            let result = match op.op {
                EVL_OP_WRITE => {
                    // SAFETY: the bytes are readable (the header's contract).
                    let data = unsafe { bytes(op.data, op.len) };
                    data.and_then(|b| core.write(op.stream, b))
                }
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
/// `count`, NULL arrays with a non-zero `count`, NULL `data` with non-zero
/// lengths, or lengths whose sum is over PTRDIFF_MAX (nothing is written
/// then).
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
    // SAFETY: the header's contract: `loop` is NULL or a live loop, used on
    // its thread; the arrays hold `count` entries, `data` their total length.
    guard(|| unsafe { write_batch(r#loop, streams, lens, count, data) })
}

/// evl_stream_write_batch's work, for it and evl_stream_exchange.
///
/// # Safety
/// `lp` is NULL or live and not borrowed; unless NULL, `streams` and
/// `lens` hold `count` entries and `data` the sum of `lens` bytes.
unsafe fn write_batch(
    lp: *mut evl_loop,
    streams: *const u64,
    lens: *const usize,
    count: c_int,
    data: *const c_void,
) -> Result<c_int, Errno> {
    // No callback runs during a write, so one borrow serves them all.
    // SAFETY: as the caller promised.
    let core = unsafe { core(lp) }?;
    if count < 0 || (count > 0 && (streams.is_null() || lens.is_null())) {
        return Err(libc::EINVAL);
    }
    let count = count as usize;
    let (streams, lens) = if count == 0 {
        (&[][..], &[][..])
    } else {
        // SAFETY: both non-null, with `count` entries, as the caller promised.
        unsafe {
            (
                std::slice::from_raw_parts(streams, count),
                std::slice::from_raw_parts(lens, count),
            )
        }
    };
    let total = lens
        .iter()
        .try_fold(0usize, |sum, &len| sum.checked_add(len))
        .ok_or(libc::EINVAL)?;
    // SAFETY: `data` has the sum of `lens` bytes, as the caller promised.
    let data = unsafe { bytes(data, total) }?;
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
        // SAFETY: the header's contract: `loop` is NULL or a live loop, used on its thread.
        let _running = unsafe { Running::enter(r#loop) }?;
        if x.is_null() {
            return Err(libc::EINVAL);
        }
        // A copy of the arguments, and single writes of the results: no
        // reference to `*x` is alive while a timer callback runs.
        // SAFETY: non-null, and the caller's struct (the header's contract).
        let args = unsafe { x.read() };
        if args.events.is_null() || args.max_events <= 0 {
            return Err(libc::EINVAL);
        }
        // SAFETY: checked by Running::enter; `x` is the caller's struct of
        // arrays as evl_stream_write_batch takes them (the header's contract).
        unsafe { staged_writes(r#loop, x) }?;
        // SAFETY: `x` is writable (the header's contract) and no reference
        // to it is alive.
        unsafe {
            (*x).data_events = 0;
            (*x).data_len = 0;
        }
        // SAFETY: checked by Running::enter; `events` has room for `max_events`.
        let count = unsafe { poll_events(r#loop, args.timeout_ms, args.events, args.max_events) }?;
        // SAFETY: poll_events wrote the first `count` events.
        let written = unsafe { std::slice::from_raw_parts(args.events, count) };
        let (data_events, data_len) = data_run(written);
        // SAFETY: as above.
        unsafe {
            (*x).data_events = data_events;
            (*x).data_len = data_len;
        }
        Ok(count as c_int)
    })
}

/// The writes of evl_stream_exchange without its wait, for a caller that
/// wants what it wrote on its way at once (before the rest of its
/// iteration) and pays for each argument: makes `x->write_count` writes
/// from `x->write_streams`, `x->write_lens` and `x->write_data` (as
/// evl_stream_write_batch), stores how many failed in `x->write_failed`
/// and sets `x->write_count` to 0. Polls nothing: the other fields of `x`
/// are neither read nor changed, and the events of the last
/// evl_stream_exchange (and their `data`) stay valid.
///
/// Returns the number of writes that failed (as evl_stream_write_batch);
/// -EINVAL for a NULL loop or `x`, or writes evl_stream_write_batch would
/// refuse (then nothing is written, and `x` is not changed).
/// Ownership: `x` and the arrays and bytes it points to are the caller's;
/// the library reads them during the call only.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_stream_exchange_writes(
    r#loop: *mut evl_loop,
    x: *mut evl_stream_exchange_args,
) -> c_int {
    guard(|| {
        if x.is_null() {
            return Err(libc::EINVAL);
        }
        // SAFETY: the header's contract: `loop` is NULL or a live loop, used
        // on its thread; `x` is the caller's struct, as evl_stream_exchange
        // takes it.
        unsafe { staged_writes(r#loop, x) }
    })
}

/// The writes of an exchange's arguments, for evl_stream_exchange and
/// evl_stream_exchange_writes: made, then counted in `write_failed`, with
/// `write_count` back to 0 so that they are never made twice.
///
/// # Safety
/// `lp` is NULL or live and not borrowed; `x` is non-null and writable, and
/// its write arrays are as evl_stream_write_batch takes them.
unsafe fn staged_writes(
    lp: *mut evl_loop,
    x: *mut evl_stream_exchange_args,
) -> Result<c_int, Errno> {
    // A copy: no reference to `*x` is alive while it is written below.
    // SAFETY: as the caller promised.
    let args = unsafe { x.read() };
    // SAFETY: as the caller promised.
    let failed = unsafe {
        write_batch(
            lp,
            args.write_streams,
            args.write_lens,
            args.write_count,
            args.write_data,
        )
    }?;
    // SAFETY: `x` is writable and no reference to it is alive.
    unsafe {
        (*x).write_failed = failed;
        (*x).write_count = 0;
    }
    Ok(failed)
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
