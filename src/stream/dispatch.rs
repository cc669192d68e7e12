//! The stream layer's part of an iteration. The core loop hands out its
//! events in its order (see `event_loop/iteration.rs`); here a stream's
//! readiness becomes that stream's events (usually one read and its `Data`),
//! a listener's becomes accepted streams, the streams' own timers (idle
//! timeouts, accept retries) are handled, and the application's own
//! registrations, timers, tasks and signals pass through. Stream events made
//! by something other than a read (an accept, a close, a drain) wait in
//! `pending` and go out before the next event the core hands out, so they
//! keep the order in which things happened.
//!
//! Two ways to pull, as in the core loop: [`StreamLoop::next_ready`], the
//! fast path for the usual event (ready I/O of one of the application's
//! registrations, or a stream's read), and [`StreamLoop::next_event`], which
//! hands out everything, in order.

use std::time::Duration;

use super::connection::{CLOSING, CONNECTING, NOT_READING, PEER_EOF, RECV_FDS, TLS, WRITE_SHUT};
use super::held::HELD;
use super::read_buffer::MIN_READ;
use super::{Event, Owner, Ready, StreamEvent, StreamEventKind, StreamId, StreamLoop};
use crate::event_loop;
use crate::sys::{self, Errno, ERROR, HUP, WRITE};

impl<D: Copy + Default> StreamLoop<D> {
    /// Waits at most `timeout` (`None`: no limit) for up to `max_events`
    /// events. If the previous iteration stopped early (a batch full), it
    /// goes on with that one instead, without waiting.
    ///
    /// Inlined into the caller's loop, which has its registers saved already.
    #[inline(always)]
    pub fn wait(&mut self, timeout: Option<Duration>, max_events: usize) -> Result<(), Errno> {
        // The caller has handled the events handed out so far: their bytes
        // are no longer needed, and ended streams' fds may close.
        self.release_reads();
        if !self.to_close.is_empty() {
            self.close_ended();
        }
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

    /// The fast path: the next ready registration, if it is one of the
    /// application's (`Ready::Io`) or a stream's (`Ready::Stream`, which
    /// [`stream_ready`](Self::stream_ready) turns into the stream's event,
    /// usually `Data`). `None` whenever anything else comes next, or nothing:
    /// [`next_event`](Self::next_event) then says which.
    ///
    /// Inlined into its caller, like the read path below: an event goes
    /// from epoll to the caller without being copied through memory (a
    /// `Ready` fits in registers; a `StreamEvent` does not, which is why the
    /// read is a second call and not part of this one).
    #[inline(always)]
    pub fn next_ready(&mut self) -> Option<Ready<D>> {
        if !self.pending.is_empty() {
            return None;
        }
        let (fd, revents, owner) = self.core.next_io()?;
        match owner {
            Owner::User(data) => Some(Ready::Io { fd, revents, data }),
            Owner::Stream(stream) if self.reads.room() >= MIN_READ => {
                Some(Ready::Stream { stream, revents })
            }
            Owner::Udp(socket) => Some(Ready::Udp { socket, revents }),
            _ => {
                // A listener's, or the read buffer is nearly full: next_event's.
                self.core.unread();
                None
            }
        }
    }

    /// Everything, in order: first the stream events made since the last
    /// pull by something other than a read (accepts, closes, drains), then
    /// the core loop's next event (signals, due timers, tasks, then I/O), as
    /// the application's own or as what it means for a stream or listener.
    /// `None` once the iteration is over, or when the read buffer is too full
    /// to read more before [`release_reads`](Self::release_reads); the rest
    /// of the iteration then comes with the next `wait`, which does not block.
    #[inline(always)]
    pub fn next_event(&mut self) -> Option<Event<D>> {
        // The usual end of an iteration, its batch handed out by the fast
        // path and nothing left over: said here, without the call below.
        if self.pending.is_empty() && !self.core.is_dispatching() {
            return None;
        }
        self.next_event_in_order()
    }

    #[inline(never)]
    fn next_event_in_order(&mut self) -> Option<Event<D>> {
        loop {
            if !self.pending.is_empty() {
                return self.pop_pending().map(Event::Stream);
            }
            match self.core.next_event()? {
                event_loop::Event::Io { fd, revents, data } => match data {
                    Owner::User(data) => return Some(Event::Io { fd, revents, data }),
                    Owner::Stream(id) => {
                        if self.reads.room() < MIN_READ {
                            // Keep this event for after release_reads.
                            self.core.unread();
                            return None;
                        }
                        if let Some(event) = self.stream_ready(id, revents) {
                            return Some(Event::Stream(event));
                        }
                    }
                    Owner::Listener(id) => self.on_listener_ready(id),
                    Owner::Udp(id) => {
                        if let Some(event) = self.udp_ready(id, revents) {
                            return Some(Event::Stream(event));
                        }
                    }
                    Owner::Job(job) => {
                        if let Some(event) = self.job_ready(job, fd, revents) {
                            return Some(event);
                        }
                    }
                    Owner::Lingering(id) => self.on_lingering_ready(id),
                    // Timers own no registration.
                    Owner::IdleTimer(_)
                    | Owner::AcceptRetry(_)
                    | Owner::TlsHeld(_)
                    | Owner::LingerTimer(_) => {}
                },
                event_loop::Event::Timer { id, data } => match data {
                    Owner::User(data) => return Some(Event::Timer { id, data }),
                    Owner::IdleTimer(stream) => self.on_idle_timer(stream),
                    Owner::AcceptRetry(listener) => self.on_accept_retry(listener),
                    // TLS hook: held input, taken without a readiness.
                    Owner::TlsHeld(stream) => {
                        if let Some(event) = self.tls_held_timer(stream) {
                            return Some(Event::Stream(event));
                        }
                    }
                    Owner::Job(job) => self.job_timer(job, id),
                    Owner::LingerTimer(lingering) => self.on_linger_timer(lingering),
                    // Streams, listeners, UDP sockets and lingering sockets
                    // own no timer of their own kind.
                    Owner::Stream(_) | Owner::Listener(_) | Owner::Udp(_) | Owner::Lingering(_) => {
                    }
                },
                event_loop::Event::Task(Owner::User(data)) => return Some(Event::Task(data)),
                event_loop::Event::Task(Owner::Job(job)) => {
                    if let Some(event) = self.job_task(job) {
                        return Some(event);
                    }
                }
                event_loop::Event::Signal {
                    signo,
                    data: Owner::User(data),
                } => return Some(Event::Signal { signo, data }),
                // Only the application and the jobs post tasks; only the
                // application watches signals.
                event_loop::Event::Task(_) | event_loop::Event::Signal { .. } => {}
            }
        }
    }

    /// The oldest event in `pending`: the one way events leave it.
    #[cold]
    #[inline(never)]
    pub(super) fn pop_pending(&mut self) -> Option<StreamEvent<D>> {
        if self.pending.front()?.offset == HELD {
            return self.pop_held();
        }
        let event = self.pending.pop_front()?;
        if event.kind == StreamEventKind::Closed {
            // Handed out: the stream's (or UDP socket's) id dies now, and
            // what it held.
            self.streams.retire(event.stream);
            self.udp.retire(event.stream);
            self.drop_held(event.stream);
        }
        Some(event)
    }

    /// The second half of the fast path: what a stream's readiness from
    /// [`next_ready`](Self::next_ready) makes. Usually: read, hand out the
    /// bytes. Events that other paths make wait in `pending`, behind this
    /// one; `None` when there is nothing (yet) to hand out.
    #[inline(always)]
    pub fn stream_ready(&mut self, id: StreamId, revents: u32) -> Option<StreamEvent<D>> {
        self.stream_ready_to(id, revents, None)
    }

    /// [`stream_ready`](Self::stream_ready) for a caller that reads into a
    /// buffer of its own (Python's `BufferedProtocol`): a read, if the
    /// stream makes one, goes into `buf` (not empty) instead of the shared
    /// buffer, and a `Data` event's bytes are then `buf[..len]`.
    pub fn stream_ready_into(
        &mut self,
        id: StreamId,
        revents: u32,
        buf: &mut [u8],
    ) -> Option<StreamEvent<D>> {
        debug_assert!(
            !buf.is_empty(),
            "a read into nothing looks like end-of-file"
        );
        self.stream_ready_to(id, revents, Some(buf))
    }

    /// What the application attached to a live stream.
    pub fn stream_data(&self, id: StreamId) -> Option<D> {
        self.streams.get(id).map(|s| s.data)
    }

    #[inline(always)]
    fn stream_ready_to(
        &mut self,
        id: StreamId,
        revents: u32,
        into: Option<&mut [u8]>,
    ) -> Option<StreamEvent<D>> {
        let s = self.streams.get_mut(id)?;
        let own_buffer = into.is_some();
        let event = if s.flags & (CONNECTING | CLOSING | NOT_READING | RECV_FDS | TLS) != 0
            || s.queue.is_some()
            || revents & ERROR != 0
        {
            self.stream_ready_slow(id, revents, into)
        } else {
            self.read_stream(id, into)
        };
        match event {
            Some(event) if self.pending.is_empty() => Some(event),
            // Bytes read into the caller's buffer are the caller's now: in
            // `pending` they would later pass for the shared buffer's. They go
            // out first; what the flush before the read made (a drain, as
            // asyncio handles a readiness's read before its write) follows.
            Some(event) if own_buffer && event.kind == StreamEventKind::Data => Some(event),
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
    fn stream_ready_slow(
        &mut self,
        id: StreamId,
        revents: u32,
        into: Option<&mut [u8]>,
    ) -> Option<StreamEvent<D>> {
        let s = self.streams.get_mut(id)?;
        if s.flags & TLS != 0 {
            // TLS hook: the session reads, writes and connects.
            return self.tls_ready(id, revents);
        }
        if s.flags & CONNECTING != 0 {
            return self.finish_connect(id);
        }
        if s.queue.is_some() && revents & (WRITE | ERROR | HUP) != 0 {
            self.flush(id);
        }
        let s = self.streams.get_mut(id)?;
        if s.flags & NOT_READING == 0 && (s.socket() || revents & ERROR == 0) {
            if s.flags & RECV_FDS != 0 {
                // Descriptors come with the bytes: the shared buffer only
                // (the native layer never passes fds).
                return self.read_stream_with_fds(id);
            }
            return self.read_stream(id, into);
        }
        if revents & ERROR != 0 {
            self.close_on_fd_error(id);
        }
        None
    }

    /// The fd reported an error: the stream ends with it.
    pub(super) fn close_on_fd_error(&mut self, id: StreamId) {
        let Some(s) = self.streams.get(id) else {
            return;
        };
        let error = match sys::take_socket_error(s.fd) {
            // A pipe's write end whose reader has gone is not a socket.
            Ok(0) | Err(libc::ENOTSOCK) => libc::EPIPE,
            Ok(error) | Err(error) => error,
        };
        self.close_now(id, error, false);
    }

    /// Reads into the shared buffer, or into `into` when given.
    #[inline(always)]
    fn read_stream(&mut self, id: StreamId, into: Option<&mut [u8]>) -> Option<StreamEvent<D>> {
        let s = self.streams.get_mut(id)?;
        let shared = into.is_none();
        let offset = if shared { self.reads.used } else { 0 };
        let target = match into {
            Some(buf) => buf,
            None => self.reads.free_chunk(),
        };
        match sys::read(s.fd, target) {
            Ok(0) => self.on_peer_eof(id),
            Ok(len) => {
                if shared {
                    self.reads.used += len;
                }
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
    pub(super) fn on_peer_eof(&mut self, id: StreamId) -> Option<StreamEvent<D>> {
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
}
