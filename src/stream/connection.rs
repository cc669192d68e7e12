//! Connections: a stream's state, opening one (accepted, connected or over
//! any fd), writing to it, and ending it.

use std::os::fd::RawFd;

use super::fd_passing::FdPassing;
use super::settings::{Settings, DEFAULT_SETTINGS};
use super::write_queue::WriteQueue;
use super::{ListenerId, Owner, StreamEvent, StreamEventKind, StreamId, StreamLoop};
use crate::event_loop::{EventLoop, TimerId};
use crate::sys::{self, Errno, SockAddr, EDGE, READ, WRITE};

// Stream flags.
/// A socket: writes use send(MSG_NOSIGNAL).
pub(super) const SOCKET: u32 = 1 << 0;

/// A connect is under way.
pub(super) const CONNECTING: u32 = 1 << 1;

/// The application paused reading.
pub(super) const PAUSED: u32 = 1 << 2;

/// The queue went above the high watermark: reading waits for the low one.
pub(super) const THROTTLED: u32 = 1 << 3;

/// The peer shut down its writing side.
pub(super) const PEER_EOF: u32 = 1 << 4;

/// Shut down the writing side once the queue drains.
pub(super) const SHUTDOWN_WANTED: u32 = 1 << 5;

/// The writing side is shut down.
pub(super) const WRITE_SHUT: u32 = 1 << 6;

/// Close once the queue drains.
pub(super) const CLOSING: u32 = 1 << 7;

/// The fd was opened for writing only (a pipe's write end): never read.
pub(super) const WRITE_ONLY: u32 = 1 << 8;

/// The stream takes fds with what it reads (`fd_passing.rs`).
pub(super) const RECV_FDS: u32 = 1 << 9;

/// What stops a stream from reading.
pub(super) const NOT_READING: u32 =
    CONNECTING | PAUSED | THROTTLED | PEER_EOF | CLOSING | WRITE_ONLY;

/// What makes a write fail with EPIPE.
pub(super) const NO_MORE_WRITES: u32 = SHUTDOWN_WANTED | WRITE_SHUT | CLOSING;

// TLS (stream/tls.rs): flags in a range of their own.
/// A TLS stream: reads, writes, shutdown and close go through its session.
pub(super) const TLS: u32 = 1 << 20;

/// Its handshake is under way: it reads even when paused, throttled or
/// closing, since the handshake needs the peer's messages.
pub(super) const TLS_HANDSHAKE: u32 = 1 << 21;

/// Accepted by a TLS listener and not announced yet (EVL_STREAM_ACCEPTED
/// comes once the handshake is done): if it ends before, it ends unseen.
pub(super) const TLS_HIDDEN: u32 = 1 << 22;

/// Input decrypted or read but not delivered (the stream was paused, or
/// the read buffer full): no readiness will tell of it, so a zero-delay
/// timer brings the loop back to it once it reads again (sync_interest).
pub(super) const TLS_HELD: u32 = 1 << 23;

pub(super) struct Stream<D> {
    pub(super) fd: RawFd,
    pub(super) flags: u32,
    /// The interest epoll has now, so that it is changed only when needed.
    pub(super) interest: u32,
    pub(super) settings: Settings,
    /// Allocated while something is queued, released once it drains.
    pub(super) queue: Option<Box<WriteQueue>>,
    /// The listener that accepted the stream (0: none).
    pub(super) listener: ListenerId,
    pub(super) idle_timer: TimerId,
    /// When bytes last moved (the loop's clock, ns), kept while an idle
    /// timeout is set.
    pub(super) last_active: u64,
    pub(super) data: D,
    /// Made when the application passes fds or accepts them.
    pub(super) fd_passing: Option<Box<FdPassing>>,
    /// A TLS stream's session (flag TLS).
    pub(super) tls: Option<Box<super::tls::TlsSession>>,
}

impl<D: Copy> Stream<D> {
    /// A stream of `fd` (-1 for one connecting by name, which has none
    /// yet), with the default settings and no queue.
    pub(super) fn new(fd: RawFd, flags: u32, interest: u32, listener: ListenerId, data: D) -> Self {
        Stream {
            fd,
            flags,
            interest,
            settings: DEFAULT_SETTINGS,
            queue: None,
            listener,
            idle_timer: 0,
            last_active: 0,
            data,
            fd_passing: None,
            tls: None,
        }
    }

    /// An event of this stream that carries no bytes.
    pub(super) fn event(
        &self,
        kind: StreamEventKind,
        id: StreamId,
        error: Errno,
    ) -> StreamEvent<D> {
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

    pub(super) fn socket(&self) -> bool {
        self.flags & SOCKET != 0
    }

    pub(super) fn queued(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.bytes)
    }

    /// Whether the stream reads from its fd now. A TLS handshake reads
    /// whatever else stops reading, except a connect under way, the peer's
    /// end and a write-only fd.
    #[inline]
    pub(super) fn reads_now(&self) -> bool {
        self.flags & NOT_READING == 0
            || self.flags & (TLS_HANDSHAKE | CONNECTING | PEER_EOF | WRITE_ONLY) == TLS_HANDSHAKE
    }

    /// The interest this stream needs now. With none, it is edge-triggered
    /// nothing: a hang-up or error then wakes the loop once, not forever.
    pub(super) fn wanted_interest(&self) -> u32 {
        let read = if self.reads_now() { READ } else { 0 };
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

impl<D: Copy + Default> StreamLoop<D> {
    pub(super) fn add_stream(
        &mut self,
        fd: RawFd,
        flags: u32,
        interest: u32,
        data: D,
        settings: Settings,
        listener: ListenerId,
    ) -> Result<StreamId, Errno> {
        self.reads.ensure();
        let id = self
            .streams
            .insert(Stream::new(fd, flags, interest, listener, data));
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
            if sys::is_write_only(fd) {
                WRITE_ONLY
            } else {
                0
            }
        };
        let interest = if flags & WRITE_ONLY != 0 { EDGE } else { READ };
        self.add_stream(fd, flags, interest, data, DEFAULT_SETTINGS, 0)
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

    pub(super) fn finish_connect(&mut self, id: StreamId) -> Option<StreamEvent<D>> {
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
        if s.flags & TLS != 0 {
            // TLS hook: CONNECTED waits for the handshake.
            return self.tls_connected(id);
        }
        if s.queue.is_none() && s.flags & SHUTDOWN_WANTED != 0 {
            self.pending.push_back(event);
            self.shutdown_now(id);
            return None;
        }
        self.sync_then(id, event)
    }

    /// `event`, once epoll knows what the stream needs now; if telling it
    /// fails, the stream closes, after `event`.
    pub(super) fn sync_then(
        &mut self,
        id: StreamId,
        event: StreamEvent<D>,
    ) -> Option<StreamEvent<D>> {
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

    /// Writes `bytes`: at once as far as the kernel takes them, the rest
    /// copied into the queue. EPIPE once the stream was shut down or is
    /// closing; a write error (the peer has gone) closes the stream and is
    /// returned.
    ///
    /// A stream closed whose `Closed` has not been handed out yet answers
    /// every call as a closed stream: EPIPE here, nothing to do (Ok) for
    /// shutdown, close, abort, pause, resume and the settings, Ok for
    /// `set_stream_data` (the `Closed` event then carries the new data),
    /// EBADF for `stream_fd`, 0 for `queued`. ENOENT once it was handed out.
    #[inline(always)]
    pub fn write(&mut self, id: StreamId, bytes: &[u8]) -> Result<(), Errno> {
        let Some(s) = self.streams.get_mut(id) else {
            return self.not_live(id, Err(libc::EPIPE));
        };
        if s.queue.is_some()
            || s.flags & (NO_MORE_WRITES | CONNECTING | TLS) != 0
            || bytes.is_empty()
        {
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
    pub(super) fn write_slow(&mut self, id: StreamId, bytes: &[u8]) -> Result<(), Errno> {
        let s = self.streams.get_mut(id).ok_or(libc::ENOENT)?;
        if s.flags & NO_MORE_WRITES != 0 {
            return Err(libc::EPIPE);
        }
        if bytes.is_empty() {
            return Ok(());
        }
        if s.flags & TLS != 0 {
            // TLS hook: encrypted, then sent or queued.
            return self.tls_write(id, bytes);
        }
        // Behind a queue (or a connect): keep the order.
        self.enqueue(id, bytes)
    }

    #[cold]
    #[inline(never)]
    pub(super) fn enqueue(&mut self, id: StreamId, bytes: &[u8]) -> Result<(), Errno> {
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
    pub(super) fn flush(&mut self, id: StreamId) {
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        let (fd, socket) = (s.fd, s.socket());
        let Some(queue) = s.queue.as_mut() else {
            return;
        };
        let written = match s.fd_passing.as_deref_mut() {
            Some(passing) if passing.has_outgoing() => passing.write_queue(queue, fd),
            _ => queue.write_to(fd, socket),
        };
        let queued = match written {
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
    pub(super) fn on_drained(&mut self, id: StreamId) {
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        if s.flags & CLOSING != 0 {
            self.close_now(id, 0, false);
            return;
        }
        // TLS hook: a queue of handshake messages only is no news.
        if s.tls.as_mut().map_or(true, |t| t.take_app_queued()) {
            self.pending
                .push_back(s.event(StreamEventKind::Drained, id, 0));
        }
        if s.flags & SHUTDOWN_WANTED != 0 {
            self.shutdown_now(id);
            return;
        }
        if let Err(e) = sync_interest(&mut self.core, s) {
            self.close_now(id, e, false);
        }
    }

    pub(super) fn shutdown_now(&mut self, id: StreamId) {
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        // TLS hook: close_notify first, after the handshake, then its drain.
        if s.flags & TLS != 0 && !self.tls_close_notify(id) {
            return;
        }
        // An end-of-file held by a pause is not the application's yet: the
        // stream ends once it was handed out (pop_held).
        let eof_held = !self.held.is_empty() && self.holds_eof(id);
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
            Ok(()) if s.flags & (PEER_EOF | WRITE_ONLY) != 0 && !eof_held => {
                self.close_now(id, 0, false)
            }
            Ok(()) => {
                if let Err(e) = sync_interest(&mut self.core, s) {
                    self.close_now(id, e, false);
                }
            }
        }
    }

    /// The application ends a stream the library has closed already: its
    /// events not handed out yet are dropped, as for a live one, all but
    /// its `Closed` (a TLS read may make DATA and the end in one step).
    #[cold]
    #[inline(never)]
    fn drop_undelivered(&mut self, id: StreamId) {
        self.pending
            .retain(|e| e.stream != id || e.kind == StreamEventKind::Closed);
    }

    /// What a call given `id`, which names no live stream, answers:
    /// `closed` while the stream's `Closed` waits to be handed out (see
    /// [`write`](Self::write)), ENOENT otherwise.
    #[cold]
    #[inline(never)]
    pub(super) fn not_live<T>(&self, id: StreamId, closed: Result<T, Errno>) -> Result<T, Errno> {
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
            self.drop_undelivered(id);
            return self.not_live(id, Ok(()));
        };
        // TLS hook: close_notify goes out first; what was written during
        // the handshake waits for it to end.
        let wait = s.flags & TLS != 0 && self.tls_before_close(id);
        let Some(s) = self.streams.get_mut(id) else {
            // Its close_notify found the peer gone: closed, as asked.
            self.drop_undelivered(id);
            return Ok(());
        };
        if s.queue.is_none() && !wait {
            self.close_now(id, 0, true);
            return Ok(());
        }
        s.flags |= CLOSING;
        self.pending.retain(|e| e.stream != id);
        // (A resume while the queue drains must not bring them back.)
        self.drop_held(id);
        let Some(s) = self.streams.get_mut(id) else {
            return Ok(());
        };
        if let Err(e) = sync_interest(&mut self.core, s) {
            self.close_now(id, e, true);
        }
        Ok(())
    }

    /// Closes now, dropping whatever is queued (`Closed` with ECONNABORTED).
    pub fn abort(&mut self, id: StreamId) -> Result<(), Errno> {
        if self.streams.get(id).is_none() {
            self.drop_undelivered(id);
            return self.not_live(id, Ok(()));
        }
        self.close_now(id, libc::ECONNABORTED, true);
        Ok(())
    }

    /// Stops reading until [`resume`](Self::resume). No `Data`, `Fds` or
    /// `Eof` of the stream is handed out from now on until then: what was
    /// read already and not handed out yet is held (see `held.rs`). A stream that has
    /// ended already (its `Closed` waits) has nothing to pause: what it
    /// read goes out before its `Closed` (a TLS read makes the data, the
    /// end-of-file and the end in one step; held, they would be lost).
    pub fn pause(&mut self, id: StreamId) -> Result<(), Errno> {
        self.set_flag(id, PAUSED, true)?;
        if !self.pending.is_empty() && self.streams.get(id).is_some() {
            self.hold_events(id);
        }
        Ok(())
    }

    /// Reads again; what `pause` held is handed out first.
    pub fn resume(&mut self, id: StreamId) -> Result<(), Errno> {
        self.set_flag(id, PAUSED, false)?;
        if !self.held.is_empty() {
            self.release_held(id);
        }
        Ok(())
    }

    pub(super) fn set_flag(&mut self, id: StreamId, flag: u32, on: bool) -> Result<(), Errno> {
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
            // Connecting by name, no attempt has won yet.
            Some(s) if s.fd < 0 => Err(libc::ENOTCONN),
            Some(s) => Ok(s.fd),
            None => self.not_live(id, Err(libc::EBADF)),
        }
    }

    /// Bytes queued and not yet taken by the kernel.
    pub fn queued(&self, id: StreamId) -> Result<usize, Errno> {
        match self.streams.get(id) {
            Some(s) => Ok(s.queued() + s.tls.as_ref().map_or(0, |t| t.early_plain)),
            None => self.not_live(id, Ok(0)),
        }
    }

    /// Ends a stream now: `Closed` with `error`. `purge`: the application
    /// ended it, so its events not yet handed out are dropped.
    #[cold]
    #[inline(never)]
    pub(super) fn close_now(&mut self, id: StreamId, error: Errno, purge: bool) {
        // The id lives on until `Closed` is handed out (pop_pending).
        let Some(s) = self.streams.close(id) else {
            return;
        };
        if s.fd < 0 {
            // Connecting by name: its attempts and lookup end too.
            self.end_host_connect(id);
        }
        if s.idle_timer != 0 {
            let _ = self.core.stop_timer(s.idle_timer);
        }
        if purge {
            self.pending.retain(|e| e.stream != id);
            self.drop_held(id);
        }
        if s.flags & TLS_HIDDEN != 0 {
            // TLS hook: never announced, so it ends unseen (its fd closes
            // at the next wait, as nothing waits for its `Closed`).
            self.tls_forget_hidden(id);
        } else {
            self.pending
                .push_back(s.event(StreamEventKind::Closed, id, error));
        }
        // The fd lingers, or closes once `Closed` has been handed out (ending.rs).
        self.end_fd(id, &s, error);
    }
}

/// Tells epoll what the stream needs now, if that changed.
#[inline]
pub(super) fn sync_interest<D: Copy + Default>(
    core: &mut EventLoop<Owner<D>>,
    s: &mut Stream<D>,
) -> Result<(), Errno> {
    let wanted = s.wanted_interest();
    // A stream connecting by name has no fd in epoll until an attempt wins.
    if wanted != s.interest && s.fd >= 0 {
        core.modify(s.fd, wanted)?;
        s.interest = wanted;
    }
    if s.flags & TLS_HELD != 0 {
        // TLS hook: come back for what it holds once it reads.
        super::tls::come_back_for_held(core, s);
    }
    Ok(())
}
