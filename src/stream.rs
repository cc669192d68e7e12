//! Buffered streams over the event loop: TCP listeners, outgoing
//! connections, and streams over any connected fd, with write queues,
//! backpressure, half-close and idle timeouts.
//!
//! [`StreamLoop`] wraps an [`EventLoop`] and, like it, never calls anything:
//! [`StreamLoop::next_event`] hands out one [`Event`] at a time, either one of
//! the core loop's (raw I/O, timer, task, signal) or a [`StreamEvent`] (data,
//! end-of-file, queue drained, closed, accepted, connected). The caller holds
//! no borrow between two pulls, so whatever it runs may write, close or open
//! anything.
//!
//! The usual exchange costs one `read` and one `write` and no `epoll_ctl`:
//! a stream reads into one buffer the loop shares by all its streams, a write
//! is tried at once, and only what the kernel does not take is copied into
//! the stream's queue, which alone makes the stream ask for EVL_WRITE.
//!
//! Every stream ends with exactly one `Closed` event. Its id lives until
//! that event is handed out: a stream already closed (by the library or the
//! application) answers calls as a closed stream would (see
//! [`StreamLoop::write`]); afterwards the id is dead (ENOENT). When the
//! application ends a stream itself, events of that stream not yet handed
//! out are dropped.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::time::Duration;

use crate::event_loop::{self, EventLoop, LoopHandle, TimerId};
use crate::sys::{self, Errno, SockAddr};

pub use crate::event_loop::{EDGE, ERROR, HUP, RDHUP, READ, WRITE};

/// Names a stream: non-zero, never reused while the loop lives (slot and
/// generation), so a stale id is refused instead of reaching another stream.
pub type StreamId = u64;
/// Names a listener, like a [`StreamId`] (the two never collide).
pub type ListenerId = u64;

/// Default high watermark of a write queue: above it, reading pauses.
pub const DEFAULT_HIGH_WATER: usize = 1 << 20;
/// Default low watermark: at or below it, paused reading resumes.
pub const DEFAULT_LOW_WATER: usize = 256 << 10;

/// The shared read buffer. A batch of events may point into it at several
/// places at once (see [`StreamLoop::release_reads`]).
const READ_BUFFER: usize = 256 << 10;
/// The most one read takes.
const READ_CHUNK: usize = 64 << 10;
/// Below this much room, a batch stops before reading more.
const MIN_READ: usize = 16 << 10;
/// How long accepting pauses after running out of fds (EMFILE, ENFILE).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The discriminants are the C layer's EVL_STREAM_* values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum StreamEventKind {
    /// Bytes arrived: [`StreamLoop::bytes`] gives them.
    Data = 1,
    /// The peer shut down its writing side. Reading stops; writing goes on.
    Eof,
    /// The write queue emptied (reported only when something had been queued).
    Drained,
    /// The stream is over; `error` says why (0: closed as asked, or both
    /// sides shut down). The last event of a stream.
    Closed,
    /// A listener accepted `stream`; `data` is the listener's, which the new
    /// stream starts with too.
    Accepted,
    /// An outgoing connection succeeded (`error` 0) or failed (then
    /// `Closed` follows).
    Connected,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamEvent<D> {
    pub kind: StreamEventKind,
    pub stream: StreamId,
    /// The stream's fd (already closed for `Closed`: for logs only).
    pub fd: RawFd,
    /// `Closed` and `Connected`: 0 or a positive errno.
    pub error: Errno,
    /// `Data`: where the bytes are in the shared read buffer.
    pub offset: usize,
    pub len: usize,
    pub data: D,
}

/// A ready registration, from the fast path [`StreamLoop::next_ready`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ready<D> {
    Io { fd: RawFd, revents: u32, data: D },
    Stream { stream: StreamId, revents: u32 },
}

/// One thing for the caller to dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<D> {
    Io { fd: RawFd, revents: u32, data: D },
    Stream(StreamEvent<D>),
    Timer { id: TimerId, data: D },
    Task(D),
    Signal { signo: i32, data: D },
}

/// Who owns a registration or a timer of the core loop: the application, or
/// one of this module's streams and listeners.
#[derive(Clone, Copy)]
enum Owner<D> {
    User(D),
    Stream(StreamId),
    Listener(ListenerId),
    IdleTimer(StreamId),
    AcceptRetry(ListenerId),
}

impl<D: Default> Default for Owner<D> {
    fn default() -> Self {
        Owner::User(D::default())
    }
}

/// A handle that any thread may use: post tasks, wake, stop.
pub struct Handle<D>(LoopHandle<Owner<D>>);

impl<D> Clone for Handle<D> {
    fn clone(&self) -> Self {
        Handle(self.0.clone())
    }
}

impl<D> Handle<D> {
    pub fn post(&self, task: D) {
        self.0.post(Owner::User(task))
    }
    /// Async-signal-safe.
    pub fn wake(&self) {
        self.0.wake()
    }
    pub fn stop(&self) {
        self.0.stop()
    }
}

// ---- ids -------------------------------------------------------------------

/// A table whose entries are named by generational ids: (generation << 32)
/// | kind | slot. A freed slot's generation moves on, so an old id matches
/// nothing; generations start at 1, so no id is 0.
struct Slab<T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    kind: u64,
}

struct Entry<T> {
    generation: u32,
    value: Option<T>,
    /// The value was taken by `close`: the id still names the slot (which
    /// is not free) until `retire`.
    closed: bool,
}

/// Listener ids have this bit set, stream ids not.
const LISTENER_KIND: u64 = 1 << 31;
const SLOT_MASK: u64 = LISTENER_KIND - 1;

impl<T> Slab<T> {
    fn new(kind: u64) -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            kind,
        }
    }

    fn insert(&mut self, value: T) -> u64 {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.entries.push(Entry {
                    generation: 1,
                    value: None,
                    closed: false,
                });
                (self.entries.len() - 1) as u32
            }
        };
        let entry = &mut self.entries[slot as usize];
        entry.value = Some(value);
        (entry.generation as u64) << 32 | self.kind | slot as u64
    }

    #[inline]
    fn slot(&self, id: u64) -> Option<usize> {
        // An id of the other kind has its kind bit flipped here: a slot
        // number past 2^31, beyond the end of any table.
        let slot = (id & (SLOT_MASK | LISTENER_KIND)) ^ self.kind;
        let entry = self.entries.get(slot as usize)?;
        (entry.generation == (id >> 32) as u32 && entry.value.is_some()).then_some(slot as usize)
    }

    #[inline]
    fn get(&self, id: u64) -> Option<&T> {
        let slot = self.slot(id)?;
        self.entries[slot].value.as_ref()
    }

    #[inline]
    fn get_mut(&mut self, id: u64) -> Option<&mut T> {
        let slot = self.slot(id)?;
        self.entries[slot].value.as_mut()
    }

    fn remove(&mut self, id: u64) -> Option<T> {
        let slot = self.slot(id)?;
        let entry = &mut self.entries[slot];
        entry.generation = entry.generation.checked_add(1).unwrap_or(1);
        self.free.push(slot as u32);
        entry.value.take()
    }

    /// Takes the value out, keeping the id for `is_closed` until `retire`.
    fn close(&mut self, id: u64) -> Option<T> {
        let slot = self.slot(id)?;
        let entry = &mut self.entries[slot];
        entry.closed = true;
        entry.value.take()
    }

    /// Whether `id` names a value taken by `close` and not yet retired.
    #[cold]
    fn is_closed(&self, id: u64) -> bool {
        let slot = (id & (SLOT_MASK | LISTENER_KIND)) ^ self.kind;
        matches!(self.entries.get(slot as usize),
            Some(entry) if entry.closed && entry.generation == (id >> 32) as u32)
    }

    /// Frees the slot of a closed id: from now on the id matches nothing.
    fn retire(&mut self, id: u64) {
        if self.is_closed(id) {
            let slot = (id & SLOT_MASK) as usize;
            let entry = &mut self.entries[slot];
            entry.closed = false;
            entry.generation = entry.generation.checked_add(1).unwrap_or(1);
            self.free.push(slot as u32);
        }
    }

    fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().filter_map(|e| e.value.as_ref())
    }
}

// ---- streams ---------------------------------------------------------------

/// Settings a stream starts with (a listener hands its own to what it accepts).
#[derive(Clone, Copy)]
struct Settings {
    /// 0: no idle timeout.
    idle_ms: u32,
    /// usize::MAX: reading never pauses for the queue.
    high_water: usize,
    low_water: usize,
}

const DEFAULT_SETTINGS: Settings = Settings {
    idle_ms: 0,
    high_water: DEFAULT_HIGH_WATER,
    low_water: DEFAULT_LOW_WATER,
};

// Stream flags.
/// A socket: writes use send(MSG_NOSIGNAL).
const SOCKET: u32 = 1 << 0;
/// A connect is under way.
const CONNECTING: u32 = 1 << 1;
/// The application paused reading.
const PAUSED: u32 = 1 << 2;
/// The queue went above the high watermark: reading waits for the low one.
const THROTTLED: u32 = 1 << 3;
/// The peer shut down its writing side.
const PEER_EOF: u32 = 1 << 4;
/// Shut down the writing side once the queue drains.
const SHUTDOWN_WANTED: u32 = 1 << 5;
/// The writing side is shut down.
const WRITE_SHUT: u32 = 1 << 6;
/// Close once the queue drains.
const CLOSING: u32 = 1 << 7;

/// What stops a stream from reading.
const NOT_READING: u32 = CONNECTING | PAUSED | THROTTLED | PEER_EOF | CLOSING;
/// What makes a write fail with EPIPE.
const NO_MORE_WRITES: u32 = SHUTDOWN_WANTED | WRITE_SHUT | CLOSING;

struct Stream<D> {
    fd: RawFd,
    flags: u32,
    /// The interest epoll has now, so that it is changed only when needed.
    interest: u32,
    settings: Settings,
    /// Allocated while something is queued, released once it drains.
    queue: Option<Box<WriteQueue>>,
    /// The listener that accepted the stream (0: none).
    listener: ListenerId,
    idle_timer: TimerId,
    /// When bytes last moved (the loop's clock, ns), kept while an idle
    /// timeout is set.
    last_active: u64,
    data: D,
}

/// Bytes the kernel did not take yet: chunks, the first one partly sent.
#[derive(Default)]
struct WriteQueue {
    chunks: VecDeque<Vec<u8>>,
    sent: usize,
    bytes: usize,
}

/// Small writes share a chunk up to this size.
const COALESCE: usize = 16 << 10;

impl WriteQueue {
    fn push(&mut self, bytes: &[u8]) {
        self.bytes += bytes.len();
        // Not into a chunk being sent: its start is gone already.
        let sending = self.chunks.len() == 1 && self.sent > 0;
        if let Some(last) = self.chunks.back_mut() {
            if !sending && last.len() + bytes.len() <= COALESCE {
                last.extend_from_slice(bytes);
                return;
            }
        }
        self.chunks.push_back(bytes.to_vec());
    }

    /// Writes until the kernel takes no more; returns how much is left.
    fn write_to(&mut self, fd: RawFd, socket: bool) -> Result<usize, Errno> {
        while let Some(chunk) = self.chunks.front() {
            match sys::write(fd, &chunk[self.sent..], socket) {
                Ok(n) => {
                    self.sent += n;
                    self.bytes -= n;
                    if self.sent == chunk.len() {
                        self.chunks.pop_front();
                        self.sent = 0;
                    }
                }
                Err(libc::EINTR) => {}
                Err(libc::EAGAIN) => break,
                Err(error) => return Err(error),
            }
        }
        Ok(self.bytes)
    }
}

impl<D: Copy> Stream<D> {
    /// An event of this stream that carries no bytes.
    fn event(&self, kind: StreamEventKind, id: StreamId, error: Errno) -> StreamEvent<D> {
        StreamEvent {
            kind,
            stream: id,
            fd: self.fd,
            error,
            offset: 0,
            len: 0,
            data: self.data,
        }
    }

    fn socket(&self) -> bool {
        self.flags & SOCKET != 0
    }

    fn queued(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.bytes)
    }

    /// The interest this stream needs now. With none, it is edge-triggered
    /// nothing: a hang-up or error then wakes the loop once, not forever.
    fn wanted_interest(&self) -> u32 {
        let read = if self.flags & NOT_READING == 0 {
            READ
        } else {
            0
        };
        let write = if self.queue.is_some() || self.flags & CONNECTING != 0 {
            WRITE
        } else {
            0
        };
        match read | write {
            0 => EDGE,
            interest => interest,
        }
    }
}

struct Listener<D> {
    fd: RawFd,
    data: D,
    /// 0: no limit.
    max_conns: usize,
    live: usize,
    /// Out of fds: accepting waits for the retry timer.
    paused: bool,
    /// Whether epoll reports connections now.
    accepting: bool,
    retry_timer: TimerId,
    settings: Settings,
}

/// The loop's read buffer: reads go at `used`, and stay valid until released.
struct ReadBuffer {
    buf: Vec<u8>,
    used: usize,
}

impl ReadBuffer {
    #[inline]
    fn room(&self) -> usize {
        READ_BUFFER - self.used
    }

    /// Makes the buffer, once: with the first stream, or when asked for.
    /// The kernel gives its pages as they are touched.
    #[inline]
    fn ensure(&mut self) {
        if self.buf.is_empty() {
            self.buf = vec![0; READ_BUFFER];
        }
    }

    /// The free part of the buffer, at most `READ_CHUNK` bytes.
    #[inline]
    fn free_chunk(&mut self) -> &mut [u8] {
        let len = self.room().min(READ_CHUNK);
        // SAFETY: `used + len` <= the buffer's length. The slice is made from
        // the raw pointer so that no reference to the whole buffer is made:
        // the bytes before `used` were handed out as pointers that must stay
        // valid (see bytes_ptr).
        unsafe { std::slice::from_raw_parts_mut(self.buf.as_mut_ptr().add(self.used), len) }
    }
}

/// An event loop with buffered streams. `D` is what the caller attaches to
/// registrations, timers, tasks, signal watchers, streams and listeners.
pub struct StreamLoop<D: Copy + Default> {
    core: EventLoop<Owner<D>>,
    streams: Slab<Stream<D>>,
    listeners: Slab<Listener<D>>,
    reads: ReadBuffer,
    /// Stream events made by something other than a read (accepts, closes,
    /// drains), handed out before anything else.
    pending: VecDeque<StreamEvent<D>>,
}

impl<D: Copy + Default> StreamLoop<D> {
    pub fn new() -> Result<StreamLoop<D>, Errno> {
        Ok(StreamLoop {
            core: EventLoop::new()?,
            streams: Slab::new(0),
            listeners: Slab::new(LISTENER_KIND),
            reads: ReadBuffer {
                buf: Vec::new(),
                used: 0,
            },
            pending: VecDeque::new(),
        })
    }

    pub fn handle(&self) -> Handle<D> {
        Handle(self.core.handle())
    }

    // ---- the core loop's services, for the application ---------------------

    pub fn register(&mut self, fd: RawFd, interest: u32, data: D) -> Result<(), Errno> {
        self.core.register(fd, interest, Owner::User(data))
    }

    /// The application's own registration of `fd`: a stream's or a
    /// listener's fd is not the application's to change (EBUSY).
    fn user_fd(&self, fd: RawFd) -> Result<(), Errno> {
        match self.core.data(fd)? {
            Owner::User(_) => Ok(()),
            _ => Err(libc::EBUSY),
        }
    }

    pub fn modify(&mut self, fd: RawFd, interest: u32) -> Result<(), Errno> {
        self.user_fd(fd)?;
        self.core.modify(fd, interest)
    }

    pub fn set_data(&mut self, fd: RawFd, data: D) -> Result<(), Errno> {
        self.user_fd(fd)?;
        self.core.set_data(fd, Owner::User(data))
    }

    pub fn unregister(&mut self, fd: RawFd) -> Result<(), Errno> {
        self.user_fd(fd)?;
        self.core.unregister(fd)
    }

    pub fn start_timer(&mut self, delay: Duration, repeat: Duration, data: D) -> TimerId {
        self.core.start_timer(delay, repeat, Owner::User(data))
    }

    pub fn stop_timer(&mut self, id: TimerId) -> Result<(), Errno> {
        match self.core.timer_data(id) {
            Some(Owner::User(_)) => self.core.stop_timer(id),
            _ => Err(libc::ENOENT),
        }
    }

    pub fn watch_signal(&mut self, signo: i32, data: D) -> Result<(), Errno> {
        self.core.watch_signal(signo, Owner::User(data))
    }

    pub fn unwatch_signal(&mut self, signo: i32) -> Result<(), Errno> {
        self.core.unwatch_signal(signo)
    }

    pub fn post(&self, task: D) {
        self.core.post(Owner::User(task))
    }

    pub fn take_stop(&mut self) -> bool {
        self.core.take_stop()
    }

    /// See [`EventLoop::poll_fd`].
    pub fn poll_fd(&self) -> RawFd {
        self.core.poll_fd()
    }

    /// Whether anything is left that could produce an event.
    pub fn is_alive(&self) -> bool {
        self.core.is_alive() || !self.pending.is_empty()
    }

    pub fn reinit_after_fork(&mut self) -> Result<(), Errno> {
        self.core.reinit_after_fork()
    }

    #[doc(hidden)]
    pub fn arm_test_panic(&mut self) {
        self.core.arm_test_panic()
    }

    // ---- one iteration ---------------------------------------------------

    /// Waits at most `timeout` (`None`: no limit) for up to `max_events`
    /// events. If the previous iteration stopped early (a batch full), it
    /// goes on with that one instead, without waiting.
    pub fn wait(&mut self, timeout: Option<Duration>, max_events: usize) -> Result<(), Errno> {
        if self.core.is_dispatching() {
            if self.core.has_more() {
                return Ok(());
            }
            self.core.finish_iteration();
        }
        let timeout = if self.pending.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        self.core.wait(timeout, max_events)
    }

    /// The next thing to dispatch, or `None` when the iteration is over or
    /// the read buffer is too full to read more before
    /// [`release_reads`](Self::release_reads).
    ///
    /// Inlined into its caller, like the read path below: an event goes
    /// from epoll to the caller without being copied through memory.
    #[inline(always)]
    pub fn next_event(&mut self) -> Option<Event<D>> {
        if !self.pending.is_empty() {
            return self.next_pending();
        }
        loop {
            let (fd, revents, owner) = match self.core.next_ready() {
                Some(ready) => ready,
                None => return self.next_other(),
            };
            match owner {
                Owner::User(data) => return Some(Event::Io { fd, revents, data }),
                Owner::Stream(id) => {
                    if self.reads.room() < MIN_READ {
                        // Keep this event for after release_reads.
                        self.core.unread();
                        return None;
                    }
                    if let Some(event) = self.on_stream_ready(id, revents) {
                        return Some(Event::Stream(event));
                    }
                }
                other => {
                    if let Some(event) = self.on_other_ready(other) {
                        return Some(event);
                    }
                }
            }
        }
    }

    /// The fast path for callers that dispatch events themselves: the next
    /// ready registration if it is the application's own or a stream's
    /// (then [`stream_ready`](Self::stream_ready) handles it). `None` when
    /// the next event is anything else: [`next_event`](Self::next_event) has it.
    #[inline(always)]
    pub fn next_ready(&mut self) -> Option<Ready<D>> {
        if !self.pending.is_empty() {
            return None;
        }
        let (fd, revents, owner) = self.core.next_ready()?;
        match owner {
            Owner::User(data) => Some(Ready::Io { fd, revents, data }),
            Owner::Stream(stream) if self.reads.room() >= MIN_READ => {
                Some(Ready::Stream { stream, revents })
            }
            _ => {
                self.core.unread();
                None
            }
        }
    }

    /// Handles a stream's readiness that [`next_ready`](Self::next_ready)
    /// gave: usually a read, and its `Data` event.
    #[inline(always)]
    pub fn stream_ready(&mut self, stream: StreamId, revents: u32) -> Option<StreamEvent<D>> {
        self.on_stream_ready(stream, revents)
    }

    /// A listener's readiness (the others own no registration).
    #[cold]
    #[inline(never)]
    fn on_other_ready(&mut self, owner: Owner<D>) -> Option<Event<D>> {
        if let Owner::Listener(id) = owner {
            self.on_listener_ready(id);
        }
        self.next_pending()
    }

    #[cold]
    #[inline(never)]
    fn next_pending(&mut self) -> Option<Event<D>> {
        self.pop_pending().map(Event::Stream)
    }

    #[cold]
    #[inline(never)]
    fn pop_pending(&mut self) -> Option<StreamEvent<D>> {
        let event = self.pending.pop_front()?;
        if event.kind == StreamEventKind::Closed {
            // Handed out: the stream's id dies now.
            self.streams.retire(event.stream);
        }
        Some(event)
    }

    /// Signals, timers and tasks; then the iteration's I/O.
    #[cold]
    #[inline(never)]
    fn next_other(&mut self) -> Option<Event<D>> {
        loop {
            match self.core.next_other()? {
                event_loop::Event::Io { fd, revents, data } => match data {
                    Owner::User(data) => return Some(Event::Io { fd, revents, data }),
                    Owner::Stream(id) => {
                        if let Some(event) = self.on_stream_ready(id, revents) {
                            return Some(Event::Stream(event));
                        }
                    }
                    other => {
                        if let Some(event) = self.on_other_ready(other) {
                            return Some(event);
                        }
                    }
                },
                event_loop::Event::Timer { id, data } => match data {
                    Owner::User(data) => return Some(Event::Timer { id, data }),
                    Owner::IdleTimer(stream) => self.on_idle_timer(stream),
                    Owner::AcceptRetry(listener) => self.on_accept_retry(listener),
                    _ => {}
                },
                event_loop::Event::Task(Owner::User(data)) => return Some(Event::Task(data)),
                event_loop::Event::Signal {
                    signo,
                    data: Owner::User(data),
                } => return Some(Event::Signal { signo, data }),
                _ => {}
            }
            if !self.pending.is_empty() {
                return self.next_pending();
            }
            // Once the iteration reaches its I/O, the fast path takes over.
            if self.core.has_more() {
                return self.next_event();
            }
        }
    }

    /// The bytes of a `Data` event. Valid until [`release_reads`](Self::release_reads).
    pub fn bytes(&self, event: &StreamEvent<D>) -> &[u8] {
        &self.reads.buf[event.offset..event.offset + event.len]
    }

    /// Where the bytes of a `Data` event start, for callers (the C layer)
    /// that hand them on while the loop is borrowed again. The pointer stays
    /// valid until [`release_reads`](Self::release_reads): nothing writes to
    /// the bytes handed out or moves the buffer before then.
    pub fn bytes_ptr(&self, event: &StreamEvent<D>) -> *const u8 {
        // No reference to the buffer is made: as_ptr promises that.
        self.reads.buf.as_ptr().wrapping_add(event.offset)
    }

    /// The region every `Data` event's bytes lie in: the shared read buffer,
    /// made here if no stream made it yet. It stays at this address for the
    /// loop's life, so a caller that pays for each call into the library
    /// (Python through ctypes) can map it once and slice it per event.
    pub fn read_buffer(&mut self) -> (*const u8, usize) {
        self.reads.ensure();
        (self.reads.buf.as_ptr(), self.reads.buf.len())
    }

    /// Lets later reads reuse the read buffer: the bytes of every `Data`
    /// event handed out so far are no longer needed. Those of `Data` events
    /// not handed out yet (held over in `pending` when a batch was cut
    /// short) are kept: reads go on after them.
    #[inline]
    pub fn release_reads(&mut self) {
        self.reads.used = if self.pending.is_empty() {
            0
        } else {
            self.pending_reads_end()
        };
    }

    #[cold]
    #[inline(never)]
    fn pending_reads_end(&self) -> usize {
        let data = self
            .pending
            .iter()
            .filter(|e| e.kind == StreamEventKind::Data);
        data.map(|e| e.offset + e.len).max().unwrap_or(0)
    }

    // ---- listeners -------------------------------------------------------

    /// Listens on `addr` (port 0: any free one). Accepted streams start with
    /// `data` and the listener's settings; `Accepted` announces each.
    pub fn listen(
        &mut self,
        addr: &SockAddr,
        backlog: i32,
        reuse_port: bool,
        data: D,
    ) -> Result<ListenerId, Errno> {
        let fd = sys::tcp_listen(addr, backlog, reuse_port)?;
        let id = self.listeners.insert(Listener {
            fd: fd.raw(),
            data,
            max_conns: 0,
            live: 0,
            paused: false,
            accepting: true,
            retry_timer: 0,
            settings: DEFAULT_SETTINGS,
        });
        if let Err(e) = self.core.register(fd.raw(), READ, Owner::Listener(id)) {
            self.listeners.remove(id);
            return Err(e);
        }
        std::mem::forget(fd); // now the listener's
        Ok(id)
    }

    fn listener(&self, id: ListenerId) -> Result<&Listener<D>, Errno> {
        self.listeners.get(id).ok_or(libc::ENOENT)
    }

    pub fn listener_fd(&self, id: ListenerId) -> Result<RawFd, Errno> {
        Ok(self.listener(id)?.fd)
    }

    pub fn listener_port(&self, id: ListenerId) -> Result<u16, Errno> {
        sys::local_port(self.listener(id)?.fd)
    }

    /// At most `max` streams accepted by this listener at once (0: no limit);
    /// at the limit, connections wait in the backlog.
    pub fn set_max_conns(&mut self, id: ListenerId, max: usize) -> Result<(), Errno> {
        self.listeners.get_mut(id).ok_or(libc::ENOENT)?.max_conns = max;
        self.update_accepting(id);
        Ok(())
    }

    /// Closes a listener. The streams it accepted go on.
    pub fn close_listener(&mut self, id: ListenerId) -> Result<(), Errno> {
        let listener = self.listeners.remove(id).ok_or(libc::ENOENT)?;
        if listener.retry_timer != 0 {
            let _ = self.core.stop_timer(listener.retry_timer);
        }
        let _ = self.core.unregister(listener.fd);
        sys::close(listener.fd);
        Ok(())
    }

    /// Accepts until the backlog is empty, the limit is reached or fds run out.
    fn on_listener_ready(&mut self, id: ListenerId) {
        loop {
            let Some(l) = self.listeners.get(id) else {
                return;
            };
            if l.paused || (l.max_conns != 0 && l.live >= l.max_conns) {
                break;
            }
            let (listener_fd, data, settings) = (l.fd, l.data, l.settings);
            match sys::accept(listener_fd) {
                Ok(fd) => {
                    sys::set_nodelay(fd);
                    match self.add_stream(fd, SOCKET, READ, data, settings, id) {
                        Ok(stream) => {
                            if let Some(l) = self.listeners.get_mut(id) {
                                l.live += 1;
                            }
                            self.pending.push_back(StreamEvent {
                                kind: StreamEventKind::Accepted,
                                stream,
                                fd,
                                error: 0,
                                offset: 0,
                                len: 0,
                                data,
                            });
                        }
                        Err(_) => sys::close(fd),
                    }
                }
                Err(libc::EAGAIN) => return,
                // Out of fds or memory: retrying now would spin. Connections
                // wait in the backlog while accepting pauses.
                Err(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                    if let Some(l) = self.listeners.get_mut(id) {
                        l.paused = true;
                        l.retry_timer = self.core.start_timer(
                            ACCEPT_RETRY,
                            Duration::ZERO,
                            Owner::AcceptRetry(id),
                        );
                    }
                    break;
                }
                // The connection went away before it was accepted, or a
                // firewall refused it: on to the next.
                Err(libc::ECONNABORTED | libc::EINTR | libc::EPERM | libc::EPROTO) => {}
                Err(_) => break,
            }
        }
        self.update_accepting(id);
    }

    fn on_accept_retry(&mut self, id: ListenerId) {
        if let Some(l) = self.listeners.get_mut(id) {
            l.paused = false;
            l.retry_timer = 0;
        }
        self.update_accepting(id);
    }

    /// Asks epoll for the listener's connections only while it may accept.
    fn update_accepting(&mut self, id: ListenerId) {
        if let Some(l) = self.listeners.get_mut(id) {
            let accepting = !l.paused && (l.max_conns == 0 || l.live < l.max_conns);
            if accepting != l.accepting
                && self
                    .core
                    .modify(l.fd, if accepting { READ } else { 0 })
                    .is_ok()
            {
                l.accepting = accepting;
            }
        }
    }

    // ---- opening streams ---------------------------------------------------

    fn add_stream(
        &mut self,
        fd: RawFd,
        flags: u32,
        interest: u32,
        data: D,
        settings: Settings,
        listener: ListenerId,
    ) -> Result<StreamId, Errno> {
        self.reads.ensure();
        let id = self.streams.insert(Stream {
            fd,
            flags,
            interest,
            settings: DEFAULT_SETTINGS,
            queue: None,
            listener,
            idle_timer: 0,
            last_active: 0,
            data,
        });
        if let Err(e) = self.core.register(fd, interest, Owner::Stream(id)) {
            self.streams.remove(id);
            return Err(e);
        }
        self.apply_settings(id, settings);
        Ok(id)
    }

    /// Makes a stream of a connected fd (TCP, Unix socket, pipe, tty...),
    /// which the stream then owns: it is closed when the stream ends. On
    /// error the fd stays the caller's. A stream over something other than a
    /// socket makes the process ignore SIGPIPE, unless the application chose
    /// its own disposition, so that writing to a pipe without reader gives
    /// EPIPE.
    pub fn open(&mut self, fd: RawFd, data: D) -> Result<StreamId, Errno> {
        if fd < 0 {
            return Err(libc::EINVAL);
        }
        sys::set_nonblocking(fd)?;
        let flags = if sys::is_socket(fd) {
            SOCKET
        } else {
            sys::ignore_sigpipe_by_default();
            0
        };
        self.add_stream(fd, flags, READ, data, DEFAULT_SETTINGS, 0)
    }

    /// Starts connecting to `addr`; `Connected` tells how it ended. Writes
    /// made before then are queued.
    pub fn connect(&mut self, addr: &SockAddr, data: D) -> Result<StreamId, Errno> {
        let fd = sys::tcp_connect(addr)?;
        sys::set_nodelay(fd.raw());
        let id = self.add_stream(
            fd.raw(),
            SOCKET | CONNECTING,
            WRITE,
            data,
            DEFAULT_SETTINGS,
            0,
        )?;
        std::mem::forget(fd); // now the stream's
        Ok(id)
    }

    fn finish_connect(&mut self, id: StreamId) -> Option<StreamEvent<D>> {
        let s = self.streams.get_mut(id)?;
        let error = match sys::take_socket_error(s.fd) {
            Ok(error) => error,
            Err(error) => error,
        };
        let event = s.event(StreamEventKind::Connected, id, error);
        if error != 0 {
            self.pending.push_back(event);
            self.close_now(id, error, false);
            return None;
        }
        s.flags &= !CONNECTING;
        s.last_active = self.core.now();
        if s.queue.is_none() && s.flags & SHUTDOWN_WANTED != 0 {
            self.pending.push_back(event);
            self.shutdown_now(id);
            return None;
        }
        self.sync_then(id, event)
    }

    /// `event`, once epoll knows what the stream needs now; if telling it
    /// fails, the stream closes, after `event`.
    fn sync_then(&mut self, id: StreamId, event: StreamEvent<D>) -> Option<StreamEvent<D>> {
        let s = self.streams.get_mut(id)?;
        match sync_interest(&mut self.core, s) {
            Ok(()) => Some(event),
            Err(e) => {
                self.pending.push_back(event);
                self.close_now(id, e, false);
                None
            }
        }
    }

    // ---- I/O ---------------------------------------------------------------

    /// A stream's readiness. Usually: read, hand out the bytes. Events
    /// that other paths make wait in `pending`, behind this one.
    #[inline(always)]
    fn on_stream_ready(&mut self, id: StreamId, revents: u32) -> Option<StreamEvent<D>> {
        let s = self.streams.get_mut(id)?;
        let event = if s.flags & (CONNECTING | CLOSING | NOT_READING) != 0
            || s.queue.is_some()
            || revents & ERROR != 0
        {
            self.on_stream_ready_slow(id, revents)
        } else {
            self.read_stream(id)
        };
        match event {
            Some(event) if self.pending.is_empty() => Some(event),
            Some(event) => {
                // Keep the order in which things happened.
                self.pending.push_back(event);
                self.pop_pending()
            }
            None => self.pop_pending(),
        }
    }

    #[cold]
    #[inline(never)]
    fn on_stream_ready_slow(&mut self, id: StreamId, revents: u32) -> Option<StreamEvent<D>> {
        let s = self.streams.get_mut(id)?;
        if s.flags & CONNECTING != 0 {
            return self.finish_connect(id);
        }
        if s.queue.is_some() && revents & (WRITE | ERROR | HUP) != 0 {
            self.flush(id);
        }
        let s = self.streams.get_mut(id)?;
        if s.flags & NOT_READING == 0 && (s.socket() || revents & ERROR == 0) {
            return self.read_stream(id);
        }
        if revents & ERROR != 0 {
            let error = match sys::take_socket_error(s.fd) {
                Ok(0) => libc::EPIPE,
                Ok(error) | Err(error) => error,
            };
            self.close_now(id, error, false);
        }
        None
    }

    #[inline(always)]
    fn read_stream(&mut self, id: StreamId) -> Option<StreamEvent<D>> {
        let s = self.streams.get_mut(id)?;
        let offset = self.reads.used;
        match sys::read(s.fd, self.reads.free_chunk()) {
            Ok(0) => self.on_peer_eof(id),
            Ok(len) => {
                self.reads.used += len;
                s.last_active = self.core.now();
                Some(StreamEvent {
                    kind: StreamEventKind::Data,
                    stream: id,
                    fd: s.fd,
                    error: 0,
                    offset,
                    len,
                    data: s.data,
                })
            }
            Err(libc::EAGAIN | libc::EINTR) => None,
            Err(error) => {
                self.close_now(id, error, false);
                None
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn on_peer_eof(&mut self, id: StreamId) -> Option<StreamEvent<D>> {
        let s = self.streams.get_mut(id)?;
        s.flags |= PEER_EOF;
        let event = s.event(StreamEventKind::Eof, id, 0);
        if s.flags & WRITE_SHUT != 0 {
            // Both directions are done: nothing more can happen.
            self.pending.push_back(event);
            self.close_now(id, 0, false);
            return None;
        }
        self.sync_then(id, event)
    }

    /// Writes `bytes`: at once as far as the kernel takes them, the rest
    /// copied into the queue. EPIPE once the stream was shut down or is
    /// closing; a write error (the peer has gone) closes the stream and is
    /// returned.
    #[inline(always)]
    ///
    /// A stream closed whose `Closed` has not been handed out yet answers
    /// every call as a closed stream: EPIPE here, nothing to do (Ok) for
    /// shutdown, close, abort, pause, resume and the settings, Ok for
    /// `set_stream_data` (the `Closed` event then carries the new data),
    /// EBADF for `stream_fd`, 0 for `queued`. ENOENT once it was handed out.
    pub fn write(&mut self, id: StreamId, bytes: &[u8]) -> Result<(), Errno> {
        let Some(s) = self.streams.get_mut(id) else {
            return self.not_live(id, Err(libc::EPIPE));
        };
        if s.queue.is_some() || s.flags & (NO_MORE_WRITES | CONNECTING) != 0 || bytes.is_empty() {
            return self.write_slow(id, bytes);
        }
        match sys::write(s.fd, bytes, s.socket()) {
            Ok(n) if n == bytes.len() => {
                s.last_active = self.core.now();
                Ok(())
            }
            Ok(n) => self.enqueue(id, &bytes[n..]),
            Err(libc::EAGAIN | libc::EINTR) => self.enqueue(id, bytes),
            Err(error) => {
                self.close_now(id, error, false);
                Err(error)
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn write_slow(&mut self, id: StreamId, bytes: &[u8]) -> Result<(), Errno> {
        let s = self.streams.get_mut(id).ok_or(libc::ENOENT)?;
        if s.flags & NO_MORE_WRITES != 0 {
            return Err(libc::EPIPE);
        }
        if bytes.is_empty() {
            return Ok(());
        }
        // Behind a queue (or a connect): keep the order.
        self.enqueue(id, bytes)
    }

    #[cold]
    #[inline(never)]
    fn enqueue(&mut self, id: StreamId, bytes: &[u8]) -> Result<(), Errno> {
        let s = self.streams.get_mut(id).ok_or(libc::ENOENT)?;
        s.queue.get_or_insert_with(Default::default).push(bytes);
        if s.queued() > s.settings.high_water {
            s.flags |= THROTTLED;
        }
        if let Err(e) = sync_interest(&mut self.core, s) {
            self.close_now(id, e, false);
            return Err(e);
        }
        Ok(())
    }

    /// Writes what is queued until the kernel takes no more.
    fn flush(&mut self, id: StreamId) {
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        let (fd, socket) = (s.fd, s.socket());
        let Some(queue) = s.queue.as_mut() else {
            return;
        };
        let queued = match queue.write_to(fd, socket) {
            Ok(queued) => queued,
            Err(error) => {
                self.close_now(id, error, false);
                return;
            }
        };
        s.last_active = self.core.now();
        if queued <= s.settings.low_water {
            s.flags &= !THROTTLED;
        }
        if queued == 0 {
            s.queue = None;
            self.on_drained(id);
        } else if let Err(e) = sync_interest(&mut self.core, s) {
            self.close_now(id, e, false);
        }
    }

    /// The queue has emptied: a shutdown or close waiting for it happens now.
    fn on_drained(&mut self, id: StreamId) {
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        if s.flags & CLOSING != 0 {
            self.close_now(id, 0, false);
            return;
        }
        self.pending
            .push_back(s.event(StreamEventKind::Drained, id, 0));
        if s.flags & SHUTDOWN_WANTED != 0 {
            self.shutdown_now(id);
            return;
        }
        if let Err(e) = sync_interest(&mut self.core, s) {
            self.close_now(id, e, false);
        }
    }

    fn shutdown_now(&mut self, id: StreamId) {
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        s.flags = (s.flags & !SHUTDOWN_WANTED) | WRITE_SHUT;
        // A pipe has no shutdown: its writing end closes with the stream.
        let result = if s.socket() {
            sys::shutdown_write(s.fd)
        } else {
            Ok(())
        };
        match result {
            Err(error) => self.close_now(id, error, false),
            // Both directions are done: nothing more can happen.
            Ok(()) if s.flags & PEER_EOF != 0 => self.close_now(id, 0, false),
            Ok(()) => {
                if let Err(e) = sync_interest(&mut self.core, s) {
                    self.close_now(id, e, false);
                }
            }
        }
    }

    // ---- what the application asks of a stream ------------------------------

    /// What a call given `id`, which names no live stream, answers:
    /// `closed` while the stream's `Closed` waits to be handed out (see
    /// [`write`](Self::write)), ENOENT otherwise.
    #[cold]
    #[inline(never)]
    fn not_live<T>(&self, id: StreamId, closed: Result<T, Errno>) -> Result<T, Errno> {
        if self.streams.is_closed(id) {
            closed
        } else {
            Err(libc::ENOENT)
        }
    }

    /// Shuts down the writing side once the queue drains (the peer then
    /// reads end-of-file); reading goes on. Later writes give EPIPE.
    pub fn shutdown(&mut self, id: StreamId) -> Result<(), Errno> {
        let Some(s) = self.streams.get_mut(id) else {
            return self.not_live(id, Ok(()));
        };
        if s.flags & NO_MORE_WRITES != 0 {
            return Ok(());
        }
        s.flags |= SHUTDOWN_WANTED;
        if s.queue.is_none() && s.flags & CONNECTING == 0 {
            self.shutdown_now(id);
        }
        Ok(())
    }

    /// Stops reading and closes once the queue drains (`Closed` with 0).
    /// Events of this stream not yet handed out are dropped.
    pub fn close(&mut self, id: StreamId) -> Result<(), Errno> {
        let Some(s) = self.streams.get_mut(id) else {
            return self.not_live(id, Ok(()));
        };
        if s.queue.is_none() {
            self.close_now(id, 0, true);
            return Ok(());
        }
        s.flags |= CLOSING;
        self.pending.retain(|e| e.stream != id);
        if let Err(e) = sync_interest(&mut self.core, s) {
            self.close_now(id, e, true);
        }
        Ok(())
    }

    /// Closes now, dropping whatever is queued (`Closed` with ECONNABORTED).
    pub fn abort(&mut self, id: StreamId) -> Result<(), Errno> {
        if self.streams.get(id).is_none() {
            return self.not_live(id, Ok(()));
        }
        self.close_now(id, libc::ECONNABORTED, true);
        Ok(())
    }

    /// Stops reading until [`resume`](Self::resume).
    pub fn pause(&mut self, id: StreamId) -> Result<(), Errno> {
        self.set_flag(id, PAUSED, true)
    }

    pub fn resume(&mut self, id: StreamId) -> Result<(), Errno> {
        self.set_flag(id, PAUSED, false)
    }

    fn set_flag(&mut self, id: StreamId, flag: u32, on: bool) -> Result<(), Errno> {
        let Some(s) = self.streams.get_mut(id) else {
            return self.not_live(id, Ok(()));
        };
        if on {
            s.flags |= flag;
        } else {
            s.flags &= !flag;
        }
        if let Err(e) = sync_interest(&mut self.core, s) {
            self.close_now(id, e, false);
            return Err(e);
        }
        Ok(())
    }

    /// Above `high` queued bytes reading pauses, until the queue is down to
    /// `low` (EINVAL if `low` > `high`). `high` 0: reading never pauses for
    /// the queue. Given a listener, sets what the streams it accepts start with.
    pub fn set_watermarks(&mut self, id: u64, high: usize, low: usize) -> Result<(), Errno> {
        let (high, low) = match high {
            0 => (usize::MAX, 0), // `low` means nothing then
            _ if low > high => return Err(libc::EINVAL),
            _ => (high, low),
        };
        self.update_settings(id, |s| {
            s.high_water = high;
            s.low_water = low;
        })
    }

    /// Closes the stream (`Closed` with ETIMEDOUT) when no byte has moved
    /// either way for `ms` milliseconds; 0 turns it off. Given a listener,
    /// sets what the streams it accepts start with.
    pub fn set_idle_timeout(&mut self, id: u64, ms: u32) -> Result<(), Errno> {
        self.update_settings(id, |s| s.idle_ms = ms)
    }

    fn update_settings(&mut self, id: u64, change: impl Fn(&mut Settings)) -> Result<(), Errno> {
        if let Some(l) = self.listeners.get_mut(id) {
            change(&mut l.settings);
            return Ok(());
        }
        let Some(s) = self.streams.get(id) else {
            return self.not_live(id, Ok(()));
        };
        let mut settings = s.settings;
        change(&mut settings);
        self.apply_settings(id, settings);
        Ok(())
    }

    fn apply_settings(&mut self, id: StreamId, settings: Settings) {
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        let old = std::mem::replace(&mut s.settings, settings);
        if s.queued() <= settings.low_water {
            s.flags &= !THROTTLED;
        } else if s.queued() > settings.high_water {
            s.flags |= THROTTLED;
        }
        if old.idle_ms != settings.idle_ms {
            if s.idle_timer != 0 {
                let _ = self.core.stop_timer(std::mem::take(&mut s.idle_timer));
            }
            if settings.idle_ms != 0 {
                // The loop's clock, fresh now, and after every wait from now
                // on (a timer runs): what I/O stamps streams with.
                self.core.refresh_now();
                s.last_active = self.core.now();
                s.idle_timer = self.core.start_timer(
                    Duration::from_millis(settings.idle_ms.into()),
                    Duration::ZERO,
                    Owner::IdleTimer(id),
                );
            }
        }
        if let Err(e) = sync_interest(&mut self.core, s) {
            self.close_now(id, e, false);
        }
    }

    fn on_idle_timer(&mut self, id: StreamId) {
        let now = self.core.now();
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        let deadline = s.last_active + s.settings.idle_ms as u64 * 1_000_000;
        if now >= deadline {
            s.idle_timer = 0; // a one-shot timer is over once it fired
            self.close_now(id, libc::ETIMEDOUT, false);
        } else {
            // Bytes moved since it was set: wait for the rest of the timeout.
            s.idle_timer = self.core.start_timer(
                Duration::from_nanos(deadline - now),
                Duration::ZERO,
                Owner::IdleTimer(id),
            );
        }
    }

    /// Replaces what the stream (or listener) is attached to.
    pub fn set_stream_data(&mut self, id: u64, data: D) -> Result<(), Errno> {
        if let Some(l) = self.listeners.get_mut(id) {
            l.data = data;
            return Ok(());
        }
        match self.streams.get_mut(id) {
            Some(s) => s.data = data,
            None => {
                self.not_live(id, Ok(()))?;
                let closed = self.pending.iter_mut();
                for e in closed.filter(|e| e.stream == id && e.kind == StreamEventKind::Closed) {
                    e.data = data;
                }
            }
        }
        Ok(())
    }

    pub fn stream_fd(&self, id: StreamId) -> Result<RawFd, Errno> {
        match self.streams.get(id) {
            Some(s) => Ok(s.fd),
            None => self.not_live(id, Err(libc::EBADF)),
        }
    }

    /// Bytes queued and not yet taken by the kernel.
    pub fn queued(&self, id: StreamId) -> Result<usize, Errno> {
        match self.streams.get(id) {
            Some(s) => Ok(s.queued()),
            None => self.not_live(id, Ok(0)),
        }
    }

    /// Ends a stream now: `Closed` with `error`. `purge`: the application
    /// ended it, so its events not yet handed out are dropped.
    #[cold]
    #[inline(never)]
    fn close_now(&mut self, id: StreamId, error: Errno, purge: bool) {
        // The id lives on until `Closed` is handed out (pop_pending).
        let Some(s) = self.streams.close(id) else {
            return;
        };
        if s.idle_timer != 0 {
            let _ = self.core.stop_timer(s.idle_timer);
        }
        let _ = self.core.unregister(s.fd);
        sys::close(s.fd);
        if purge {
            self.pending.retain(|e| e.stream != id);
        }
        self.pending
            .push_back(s.event(StreamEventKind::Closed, id, error));
        if let Some(l) = self.listeners.get_mut(s.listener) {
            l.live -= 1;
            self.update_accepting(s.listener);
        }
    }
}

/// Tells epoll what the stream needs now, if that changed.
#[inline]
fn sync_interest<D: Copy + Default>(
    core: &mut EventLoop<Owner<D>>,
    s: &mut Stream<D>,
) -> Result<(), Errno> {
    let wanted = s.wanted_interest();
    if wanted != s.interest {
        core.modify(s.fd, wanted)?;
        s.interest = wanted;
    }
    Ok(())
}

impl<D: Copy + Default> Drop for StreamLoop<D> {
    /// Streams and listeners own their fds: they close with the loop.
    fn drop(&mut self) {
        for fd in self.streams.values().map(|s| s.fd) {
            sys::close(fd);
        }
        for fd in self.listeners.values().map(|l| l.fd) {
            sys::close(fd);
        }
    }
}
