//! What the header declares besides functions: constants, the opaque loop,
//! callback types and the structs the functions take.

use std::cell::{Cell, UnsafeCell};
use std::ffi::{c_int, c_void};

use super::boundary::Callback;
use crate::stream::{self, StreamEventKind, StreamLoop};

/// ABI version of this library: bumped on any incompatible change.
pub const EVL_ABI_VERSION: u32 = 1;

pub const EVL_VERSION_MAJOR: u32 = 0;

pub const EVL_VERSION_MINOR: u32 = 1;

pub const EVL_VERSION_PATCH: u32 = 0;

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
pub const EVL_EDGE: u32 = 0x8000_0000u32;

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
    use crate::stream::{DEFAULT_LINGER_BYTES, DEFAULT_LINGER_MS};
    assert!(EVL_LINGER_DEFAULT_BYTES == DEFAULT_LINGER_BYTES);
    assert!(EVL_LINGER_DEFAULT_MS == DEFAULT_LINGER_MS);
};

/// An event loop. Opaque: create it with evl_loop_new, free it with evl_loop_free.
pub struct evl_loop {
    pub(super) core: UnsafeCell<StreamLoop<Callback>>,
    /// The thread-safe part (task queue, doorbell, stop flag).
    pub(super) handle: stream::Handle<Callback>,
    /// An evl_run, evl_run_once or poll is under way: they, evl_loop_free
    /// and evl_loop_fork are refused from its callbacks (EBUSY).
    pub(super) running: Cell<bool>,
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

/// Called in each iteration of the loop, as its kind says (EVL_HOOK_*).
/// `hook_id` is the id evl_hook_start gave.
pub type evl_hook_cb =
    Option<unsafe extern "C" fn(r#loop: *mut evl_loop, hook_id: u64, userdata: *mut c_void)>;

/// Hook kind: runs just before the loop waits, in every iteration of
/// evl_run, evl_run_once, evl_poll, evl_stream_poll and evl_stream_exchange
/// (whether or not the wait then blocks).
pub const EVL_HOOK_PREPARE: u32 = 1;
/// Hook kind: runs just after the wait returns, before any callback for
/// what it found.
pub const EVL_HOOK_CHECK: u32 = 2;
/// Hook kind: runs, after the check hooks, in an iteration whose wait found
/// nothing to do. While one is active the loop never blocks: its waits
/// have timeout 0, so evl_run calls the idle hooks over and over until
/// something else happens.
pub const EVL_HOOK_IDLE: u32 = 3;

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

/// The stream is over; `status` is 0 (closed as asked, or both sides shut
/// down) or why: -ECONNRESET, -EPIPE, -ETIMEDOUT (idle timeout),
/// -ECONNABORTED (evl_stream_abort)... The last event of every stream,
/// exactly one per stream: free what `userdata` points to here.
///
/// The stream's (or UDP socket's) fd (`fd`, for logs only) is still open
/// when this event is delivered, so that its number is not given to
/// another file before the application has seen the end: the library
/// closes it once the callback returns (with evl_stream_poll: at the next
/// evl_stream_poll), or later if the socket lingers (evl_stream_set_linger).
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

/// evl_stream_set_linger's default `max_bytes`: a socket lingering after
/// evl_stream_close closes once its peer has sent more than this (1 MiB).
pub const EVL_LINGER_DEFAULT_BYTES: usize = 1048576;

/// evl_stream_set_linger's default `max_ms`: a socket lingers this long at
/// most after evl_stream_close.
pub const EVL_LINGER_DEFAULT_MS: u32 = 2000;

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
    /// The stream's fd (for EVL_STREAM_CLOSED, for logs only: the library
    /// closes it just after, see there), or the raw registration's for
    /// EVL_STREAM_IO.
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
