//! Buffered streams over the event loop: TCP and Unix-domain listeners,
//! outgoing connections, and streams over any connected fd, with write
//! queues, backpressure, half-close and idle timeouts; beside them UDP
//! sockets, whose datagrams come in batches.
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
//!
//! One file per part: the shared read buffer
//! (`read_buffer.rs`), write queues (`write_queue.rs`), listeners
//! (`listener.rs`), connections and what the application asks of them
//! (`connection.rs`), what becomes of an ended stream's fd, lingering
//! closes included (`ending.rs`), data held while a stream is paused
//! (`held.rs`), watermarks, idle timeouts and linger bounds
//! (`settings.rs`), and `dispatch.rs`, which turns the core loop's events
//! into stream events; `tls.rs` runs TLS sessions on streams, through a
//! few marked hooks in the others; `embed.rs` passes the core loop's hooks
//! and backend fd and timeout on. Unix-domain listeners and connects are
//! `unix.rs`, passing fds over them `fd_passing.rs`; UDP sockets `udp.rs`,
//! over the datagram buffers of `datagrams.rs`.
//! `jobs/` is what runs beside the streams: work on the thread pool, name
//! resolution, connections by name, child processes.

mod connection;
mod datagrams;
mod dispatch;
mod embed;
mod ending;
mod fd_passing;
mod held;
mod jobs;
mod listener;
mod read_buffer;
mod settings;
mod tls;
mod udp;
mod unix;
mod write_queue;

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::time::Duration;

use crate::event_loop::{EventLoop, LoopHandle, TimerId};
use crate::sys::{self, Errno};

pub use crate::event_loop::{EDGE, ERROR, HUP, RDHUP, READ, WRITE};
pub use datagrams::{Datagram, MAX_RECEIVE_SIZE, TRUNCATED};
pub use jobs::{
    gai_errno, resolve_message, ExitStatus, HostResolver, JobEvent, ProcessId, Resolution,
    ResolveRequest, SpawnOptions, Spawned, Stdio, WorkId,
};
pub use settings::{
    DEFAULT_HIGH_WATER, DEFAULT_LINGER_BYTES, DEFAULT_LINGER_MS, DEFAULT_LOW_WATER,
};
pub use udp::{UdpId, DATAGRAM_OVERHEAD};
pub use unix::PeerCredentials;

use crate::slab::{Slab, OTHER_KIND};
use connection::Stream;
use ending::{Ending, Lingering};
use fd_passing::ReceivedFds;
use held::Held;
use listener::Listener;
use read_buffer::ReadBuffer;
use udp::UdpSockets;

/// Names a stream: non-zero, never reused while the loop lives (slot and
/// generation), so a stale id is refused instead of reaching another stream.
pub type StreamId = u64;

/// Names a listener, like a [`StreamId`] (the two never collide).
pub type ListenerId = u64;

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
    /// A UDP socket received datagrams: [`StreamLoop::datagrams`] gives
    /// them (`offset` and `len` say where they are in the receive buffer).
    Datagrams = 8,
    /// A UDP socket's error (`error`): a queued datagram the kernel refused
    /// (and that was dropped), or an ICMP error for a connected socket.
    /// The socket goes on.
    UdpError,
    /// A Unix-domain stream received `len` fds, with the bytes of the
    /// `Data` event that follows: [`StreamLoop::take_fds`] takes them.
    Fds,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamEvent<D> {
    pub kind: StreamEventKind,
    pub stream: StreamId,
    /// The stream's fd (for `Closed`, for logs only: it closes once that
    /// event was handled, see `ending.rs`).
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
    /// One of the application's registrations is ready.
    Io { fd: RawFd, revents: u32, data: D },
    /// A stream's fd is ready: [`StreamLoop::stream_ready`] reads it and
    /// says what happened (usually `Data`).
    Stream { stream: StreamId, revents: u32 },
    /// A UDP socket is ready: [`StreamLoop::udp_ready`] receives a batch
    /// (usually `Datagrams`).
    Udp { socket: UdpId, revents: u32 },
}

/// One thing for the caller to dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<D> {
    Io {
        fd: RawFd,
        revents: u32,
        data: D,
    },
    Stream(StreamEvent<D>),
    Timer {
        id: TimerId,
        data: D,
    },
    Task(D),
    Signal {
        signo: i32,
        data: D,
    },
    /// Work done, a resolution, a child's exit (see `jobs/`).
    Job(JobEvent<D>),
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
    Udp(UdpId),
    /// A TLS stream has input held back that it may take now (stream/tls.rs).
    TlsHeld(StreamId),
    /// Work, resolutions, child processes, connections by name.
    Job(jobs::JobOwner),
    /// A socket lingering after its stream's graceful close, and its timer.
    Lingering(u64),
    LingerTimer(u64),
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
    udp: UdpSockets<D>,
    /// Fds received over Unix-domain streams, not yet taken or closed.
    passed: ReceivedFds,
    /// What the loop's TLS streams share (stream/tls.rs).
    tls: tls::TlsShared,
    /// Made at first use (see `jobs/`).
    jobs: Option<Box<jobs::Jobs<D>>>,
    /// Sockets lingering after a graceful close (`ending.rs`).
    lingering: Slab<Lingering>,
    /// Ended streams' fds, to be closed once their `Closed` was handed out.
    to_close: Vec<Ending>,
    /// Bytes of paused streams, read before the pause (`held.rs`).
    held: Vec<Held>,
}

impl<D: Copy + Default> StreamLoop<D> {
    pub fn new() -> Result<StreamLoop<D>, Errno> {
        Ok(StreamLoop {
            core: EventLoop::new()?,
            streams: Slab::new(0),
            // Listener ids have the kind bit, stream ids not: neither names the other.
            listeners: Slab::new(OTHER_KIND),
            reads: ReadBuffer {
                buf: Vec::new(),
                used: 0,
            },
            pending: VecDeque::new(),
            udp: UdpSockets::new(),
            passed: ReceivedFds::default(),
            tls: Default::default(),
            jobs: None,
            lingering: Slab::new(0),
            to_close: Vec::new(),
            held: Vec::new(),
        })
    }

    pub fn handle(&self) -> Handle<D> {
        Handle(self.core.handle())
    }

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

    /// Whether anything is left that could produce an event. Lingering
    /// sockets do not count: they never make one.
    pub fn is_alive(&self) -> bool {
        let lingering = self.lingering_count();
        self.core.is_alive_besides(lingering, lingering)
            || !self.pending.is_empty()
            || self.jobs_alive()
    }

    /// In a child after `fork()`: the core loop's kernel objects made anew.
    /// The sockets lingering are the parent's to end: the child closes its
    /// copies (after dropping what has arrived), so that the connection
    /// ends when the parent closes its own.
    pub fn reinit_after_fork(&mut self) -> Result<(), Errno> {
        self.core.reinit_after_fork()?;
        self.reinit_jobs_after_fork()?;
        self.end_lingering();
        Ok(())
    }

    #[doc(hidden)]
    pub fn arm_test_panic(&mut self) {
        self.core.arm_test_panic()
    }
}

impl<D: Copy + Default> Drop for StreamLoop<D> {
    /// Streams and listeners own their fds: they close with the loop, and
    /// so do ended streams' and lingering sockets'.
    fn drop(&mut self) {
        for fd in self.streams.values().map(|s| s.fd) {
            sys::close(fd);
        }
        for fd in self.listeners.values().map(|l| l.fd) {
            sys::close(fd);
        }
        self.close_all_ended();
    }
}
