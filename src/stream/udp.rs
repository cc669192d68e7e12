//! UDP sockets: bound (and perhaps connected) datagram sockets whose
//! datagrams come in batches, one recvmmsg each, as `Datagrams` events (see
//! `datagrams.rs` for the buffer they point into), and go out with sendmmsg,
//! what the kernel does not take waiting in a bounded queue.
//!
//! A socket's id is of a kind of its own (the slab's third), so stream and
//! listener calls never reach it, nor UDP calls a stream. Like a stream it
//! ends with exactly one `Closed` event, and its id lives until that event
//! is handed out.
//!
//! The queue has the streams' watermarks: above the high one reading
//! pauses and sends are refused (ENOBUFS) until it is down to the low one;
//! `Drained` says it emptied. A datagram counts its length plus
//! [`DATAGRAM_OVERHEAD`], so that empty ones are bounded too. A queued
//! datagram the kernel refuses is dropped and reported (`UdpError`).

use std::collections::VecDeque;
use std::os::fd::RawFd;

use super::datagrams::{Datagram, DatagramBuffer, MAX_RECEIVE_SIZE, SEND_WIDTH};
use super::settings::{DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER};
use super::{Owner, StreamEvent, StreamEventKind, StreamLoop};
use crate::event_loop::EventLoop;
use crate::slab::{Slab, THIRD_KIND};
use crate::sys::{self, Errno, SockAddr, UdpOption, UdpOptions, EDGE, ERROR, READ, WRITE};

/// Names a UDP socket, like a stream id (the two never collide).
pub type UdpId = u64;

/// What a queued datagram counts for besides its length.
pub const DATAGRAM_OVERHEAD: usize = 64;

// Socket flags.
/// The application paused receiving.
const PAUSED: u32 = 1 << 0;
/// The queue went above the high watermark: no receiving, no sending,
/// until it is down to the low one.
const THROTTLED: u32 = 1 << 1;
/// Close once the queue drains.
const CLOSING: u32 = 1 << 2;
/// Test-only: the kernel is taken to refuse every send for now (EAGAIN),
/// as it does on a real network when the socket's send buffer is full,
/// which loopback never makes happen (its datagrams leave at once).
const HELD: u32 = 1 << 3;

const NOT_RECEIVING: u32 = PAUSED | THROTTLED | CLOSING;

pub(super) struct UdpSocket<D> {
    fd: RawFd,
    flags: u32,
    /// The interest epoll has now.
    interest: u32,
    /// The receive slot: longer datagrams are truncated (and say so).
    receive_size: usize,
    /// The length of its family's addresses (sockaddr_in or sockaddr_in6),
    /// the room the kernel gets for each datagram's source.
    addr_room: u32,
    high_water: usize,
    low_water: usize,
    queue: Option<Box<DatagramQueue>>,
    data: D,
}

/// Datagrams the kernel did not take yet: each its address, then its bytes.
#[derive(Default)]
struct DatagramQueue {
    datagrams: VecDeque<QueuedDatagram>,
    /// What they count for (lengths plus overheads).
    size: usize,
}

struct QueuedDatagram {
    addr_and_bytes: Box<[u8]>,
    addr_len: usize,
}

impl QueuedDatagram {
    fn size(&self) -> usize {
        self.addr_and_bytes.len() - self.addr_len + DATAGRAM_OVERHEAD
    }
}

impl<D: Copy> UdpSocket<D> {
    fn event(&self, kind: StreamEventKind, id: UdpId, error: Errno) -> StreamEvent<D> {
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

    fn queued(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.size)
    }

    /// As for streams: read while nothing stops it, write while something
    /// is queued; with neither, edge-triggered nothing.
    fn wanted_interest(&self) -> u32 {
        let read = if self.flags & NOT_RECEIVING == 0 {
            READ
        } else {
            0
        };
        let write = if self.queue.is_some() && self.flags & HELD == 0 {
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

/// Tells epoll what the socket needs now, if that changed.
fn sync_interest<D: Copy + Default>(
    core: &mut EventLoop<Owner<D>>,
    u: &mut UdpSocket<D>,
) -> Result<(), Errno> {
    let wanted = u.wanted_interest();
    if wanted != u.interest {
        core.modify(u.fd, wanted)?;
        u.interest = wanted;
    }
    Ok(())
}

/// The loop's UDP sockets and the buffers their datagrams go through.
pub(super) struct UdpSockets<D> {
    sockets: Slab<UdpSocket<D>>,
    pub(super) buffer: DatagramBuffer,
}

impl<D> UdpSockets<D> {
    pub(super) fn new() -> UdpSockets<D> {
        UdpSockets {
            sockets: Slab::new(THIRD_KIND),
            buffer: DatagramBuffer::new(),
        }
    }

    /// Whether `id` names a socket whose `Closed` waits to be handed out.
    pub(super) fn is_closed(&self, id: UdpId) -> bool {
        self.sockets.is_closed(id)
    }

    /// The id of a socket whose `Closed` was handed out dies now.
    pub(super) fn retire(&mut self, id: UdpId) {
        self.sockets.retire(id);
    }
}

impl<D> Drop for UdpSockets<D> {
    /// Sockets own their fds: they close with the loop.
    fn drop(&mut self) {
        for fd in self.sockets.values().map(|u| u.fd) {
            sys::close(fd);
        }
    }
}

impl<D: Copy + Default> StreamLoop<D> {
    /// A UDP socket bound to `addr` (port 0: any free one; an IPv6 address
    /// makes a dual-stack socket unless `options.v6_only`). Its datagrams
    /// come as `Datagrams` events carrying `data`.
    pub fn udp_bind(
        &mut self,
        addr: &SockAddr,
        options: UdpOptions,
        data: D,
    ) -> Result<UdpId, Errno> {
        let fd = sys::udp_bind(addr, options)?;
        let id = self.add_udp(fd.raw(), addr.family(), data)?;
        fd.into_raw(); // now the socket's
        Ok(id)
    }

    /// A UDP socket over `fd`, a datagram socket of the caller's (IPv4 or
    /// IPv6: EAFNOSUPPORT for another family, EPROTOTYPE for a stream
    /// socket, ENOTSOCK for no socket), made non-blocking. On success the
    /// socket owns the fd and closes it when it ends; on error it stays the
    /// caller's.
    pub fn udp_open(&mut self, fd: RawFd, data: D) -> Result<UdpId, Errno> {
        if fd < 0 {
            return Err(libc::EINVAL);
        }
        let family = sys::socket_family(fd)?;
        if family != libc::AF_INET && family != libc::AF_INET6 {
            return Err(libc::EAFNOSUPPORT);
        }
        if !sys::is_datagram_socket(fd)? {
            return Err(libc::EPROTOTYPE);
        }
        sys::set_nonblocking(fd)?;
        self.add_udp(fd, family, data)
    }

    fn add_udp(&mut self, fd: RawFd, family: i32, data: D) -> Result<UdpId, Errno> {
        let id = self.udp.sockets.insert(UdpSocket {
            fd,
            flags: 0,
            interest: READ,
            receive_size: MAX_RECEIVE_SIZE,
            addr_room: if family == libc::AF_INET {
                std::mem::size_of::<libc::sockaddr_in>() as u32
            } else {
                std::mem::size_of::<libc::sockaddr_in6>() as u32
            },
            high_water: DEFAULT_HIGH_WATER,
            low_water: DEFAULT_LOW_WATER,
            queue: None,
            data,
        });
        if let Err(e) = self.core.register(fd, READ, Owner::Udp(id)) {
            self.udp.sockets.remove(id);
            return Err(e);
        }
        Ok(id)
    }

    fn udp_socket(&self, id: UdpId) -> Result<&UdpSocket<D>, Errno> {
        match self.udp.sockets.get(id) {
            Some(u) => Ok(u),
            None => self.udp_not_live(id, Err(libc::EBADF)),
        }
    }

    /// What a call given an id of no live socket answers: `closed` while
    /// its `Closed` waits to be handed out, ENOENT otherwise.
    #[cold]
    fn udp_not_live<T>(&self, id: UdpId, closed: Result<T, Errno>) -> Result<T, Errno> {
        if self.udp.sockets.is_closed(id) {
            closed
        } else {
            Err(libc::ENOENT)
        }
    }

    /// Sends to and receives from `addr` only (None: anyone again).
    pub fn udp_connect(&mut self, id: UdpId, addr: Option<&SockAddr>) -> Result<(), Errno> {
        sys::udp_connect(self.udp_socket(id)?.fd, addr)
    }

    pub fn udp_port(&self, id: UdpId) -> Result<u16, Errno> {
        sys::local_port(self.udp_socket(id)?.fd)
    }

    /// The socket's fd, for getsockname, setsockopt and the like.
    pub fn udp_fd(&self, id: UdpId) -> Result<RawFd, Errno> {
        Ok(self.udp_socket(id)?.fd)
    }

    /// What the queue holds (lengths plus overheads).
    pub fn udp_queued(&self, id: UdpId) -> Result<usize, Errno> {
        match self.udp.sockets.get(id) {
            Some(u) => Ok(u.queued()),
            None => self.udp_not_live(id, Ok(0)),
        }
    }

    pub fn udp_set_option(
        &mut self,
        id: UdpId,
        option: UdpOption,
        value: i32,
    ) -> Result<(), Errno> {
        sys::set_udp_option(self.udp_socket(id)?.fd, option, value)
    }

    pub fn udp_membership(
        &mut self,
        id: UdpId,
        group: &SockAddr,
        interface: sys::Interface,
        join: bool,
    ) -> Result<(), Errno> {
        sys::multicast_membership(self.udp_socket(id)?.fd, group, interface, join)
    }

    pub fn udp_set_multicast_interface(
        &mut self,
        id: UdpId,
        interface: sys::Interface,
    ) -> Result<(), Errno> {
        sys::set_multicast_interface(self.udp_socket(id)?.fd, interface)
    }

    /// Datagrams longer than `size` (1 to 65536, the default) are received
    /// truncated to it, and say so.
    pub fn udp_set_receive_size(&mut self, id: UdpId, size: usize) -> Result<(), Errno> {
        if size == 0 || size > MAX_RECEIVE_SIZE {
            return Err(libc::EINVAL);
        }
        self.update_udp(id, |u| u.receive_size = size)
    }

    /// The streams' watermarks (see the module's doc); `high` 0: neither
    /// bound nor pause (the queue may then grow without limit).
    pub fn udp_set_watermarks(&mut self, id: UdpId, high: usize, low: usize) -> Result<(), Errno> {
        let (high, low) = match high {
            0 => (usize::MAX, 0),
            _ if low > high => return Err(libc::EINVAL),
            _ => (high, low),
        };
        self.update_udp(id, |u| {
            u.high_water = high;
            u.low_water = low;
            if u.queued() <= low {
                u.flags &= !THROTTLED;
            } else if u.queued() > high {
                u.flags |= THROTTLED;
            }
        })
    }

    /// Test-only: while `hold`, sends are queued as if the kernel's send
    /// buffer were full, and the queue is not sent; afterwards it is, as
    /// the socket becomes writable. (Loopback never fills a UDP socket's
    /// send buffer, so the queue could not be tested without this.)
    #[doc(hidden)]
    pub fn udp_hold_sends(&mut self, id: UdpId, hold: bool) -> Result<(), Errno> {
        self.update_udp(id, |u| {
            if hold {
                u.flags |= HELD;
            } else {
                u.flags &= !HELD;
            }
        })
    }

    /// Stops receiving until [`udp_resume`](Self::udp_resume). No
    /// `Datagrams` of the socket is handed out from now on until then:
    /// batches received already and not handed out yet are held (see
    /// `held.rs`).
    pub fn udp_pause(&mut self, id: UdpId) -> Result<(), Errno> {
        self.update_udp(id, |u| u.flags |= PAUSED)?;
        if !self.pending.is_empty() && self.udp.sockets.get(id).is_some() {
            self.hold_events(id);
        }
        Ok(())
    }

    /// Receives again; what `udp_pause` held is handed out first.
    pub fn udp_resume(&mut self, id: UdpId) -> Result<(), Errno> {
        self.update_udp(id, |u| u.flags &= !PAUSED)?;
        if !self.held.is_empty() {
            self.release_held(id);
        }
        Ok(())
    }

    /// The fd and data of a live socket.
    pub(super) fn udp_fd_and_data(&self, id: UdpId) -> Option<(RawFd, D)> {
        self.udp.sockets.get(id).map(|u| (u.fd, u.data))
    }

    /// Replaces what the socket is attached to (a `Closed` still to be
    /// handed out carries the new data).
    pub fn udp_set_data(&mut self, id: UdpId, data: D) -> Result<(), Errno> {
        match self.udp.sockets.get_mut(id) {
            Some(u) => u.data = data,
            None => {
                self.udp_not_live(id, Ok(()))?;
                let closed = self.pending.iter_mut();
                for e in closed.filter(|e| e.stream == id && e.kind == StreamEventKind::Closed) {
                    e.data = data;
                }
            }
        }
        Ok(())
    }

    /// Changes a live socket, then tells epoll what it needs now. A socket
    /// closed whose `Closed` waits has nothing to change: Ok.
    fn update_udp(
        &mut self,
        id: UdpId,
        change: impl FnOnce(&mut UdpSocket<D>),
    ) -> Result<(), Errno> {
        let Some(u) = self.udp.sockets.get_mut(id) else {
            return self.udp_not_live(id, Ok(()));
        };
        change(u);
        if let Err(e) = sync_interest(&mut self.core, u) {
            self.udp_close_now(id, e, false);
            return Err(e);
        }
        Ok(())
    }

    /// Stops receiving, sends what is queued, then closes (`Closed` with
    /// 0). Events of the socket not yet handed out are dropped.
    pub fn udp_close(&mut self, id: UdpId) -> Result<(), Errno> {
        let Some(u) = self.udp.sockets.get_mut(id) else {
            return self.udp_not_live(id, Ok(()));
        };
        if u.queue.is_none() {
            self.udp_close_now(id, 0, true);
            return Ok(());
        }
        u.flags |= CLOSING;
        self.pending.retain(|e| e.stream != id);
        // (A resume while the queue drains must not bring them back.)
        self.drop_held(id);
        let Some(u) = self.udp.sockets.get_mut(id) else {
            return Ok(());
        };
        if let Err(e) = sync_interest(&mut self.core, u) {
            self.udp_close_now(id, e, true);
        }
        Ok(())
    }

    #[cold]
    fn udp_close_now(&mut self, id: UdpId, error: Errno, purge: bool) {
        let Some(u) = self.udp.sockets.close(id) else {
            return;
        };
        if purge {
            self.pending.retain(|e| e.stream != id);
            self.drop_held(id);
        }
        self.pending
            .push_back(u.event(StreamEventKind::Closed, id, error));
        // As a stream's: the fd closes once `Closed` was handed out (ending.rs).
        self.close_when_handed_out(id, u.fd, 0, 0);
    }

    /// Sends `datagrams` in order: at once with sendmmsg as far as the
    /// kernel takes them, the rest copied into the queue. A datagram the
    /// kernel refuses (EMSGSIZE, EACCES for a broadcast without the
    /// option, a bad address...) is skipped; so is one the full queue
    /// refuses (ENOBUFS). `status`, if given, gets 0 or the errno of each
    /// (as many as it has room for). Returns how many were refused; EPIPE once
    /// the socket is closing or closed, ENOENT for an unknown id.
    #[inline(always)]
    pub fn udp_send(
        &mut self,
        id: UdpId,
        datagrams: &[Datagram<'_>],
        status: Option<&mut [Errno]>,
    ) -> Result<usize, Errno> {
        // The usual echo: a batch received goes back at once through a
        // socket with nothing queued, in one sendmmsg of the headers made
        // when it came. Anything else (or less) takes the whole way.
        let mut tried = None;
        if let Some(u) = self.udp.sockets.get(id) {
            let sending = u.flags & (CLOSING | HELD) == 0 && u.queue.is_none();
            let buffer = &mut self.udp.buffer;
            if let Some(first) = buffer.echo_start(datagrams).filter(|_| sending) {
                if !datagrams.is_empty() {
                    let sent = send_echo(u.fd, buffer, datagrams, first);
                    if sent == Ok(datagrams.len()) {
                        if let Some(status) = status {
                            status.fill(0);
                        }
                        return Ok(0);
                    }
                    tried = Some(sent);
                }
            }
        }
        self.udp_send_slow(id, datagrams, status, tried)
    }

    /// [`udp_send`](Self::udp_send)'s whole way, `tried` what its first
    /// send from the start of `datagrams` gave, if it made one.
    #[inline(never)]
    fn udp_send_slow(
        &mut self,
        id: UdpId,
        datagrams: &[Datagram<'_>],
        mut status: Option<&mut [Errno]>,
        mut tried: Option<Result<usize, Errno>>,
    ) -> Result<usize, Errno> {
        let Some(u) = self.udp.sockets.get_mut(id) else {
            return self.udp_not_live(id, Err(libc::EPIPE));
        };
        if u.flags & CLOSING != 0 {
            return Err(libc::EPIPE);
        }
        if let Some(status) = status.as_deref_mut() {
            status.fill(0);
        }
        let mut refused = 0;
        let mut next = 0;
        if u.queue.is_none() && u.flags & HELD == 0 {
            let buffer = &mut self.udp.buffer;
            // Datagrams received (the same array) are well-formed and have
            // their headers made: an echo of them checks and sets up nothing.
            let echo = buffer.echo_start(datagrams);
            while next < datagrams.len() {
                let sent = match (tried.take(), echo) {
                    (Some(sent), _) => sent,
                    (None, Some(first)) => {
                        send_echo(u.fd, buffer, &datagrams[next..], first + next)
                    }
                    (None, None) => {
                        let batch = &datagrams[next..datagrams.len().min(next + SEND_WIDTH)];
                        send_now(u.fd, buffer, batch)
                    }
                };
                match sent {
                    Ok(sent) => next += sent,
                    Err(libc::EINTR) => {}
                    Err(libc::EAGAIN) => break,
                    Err(error) => {
                        if let Some(slot) = status.as_deref_mut().and_then(|s| s.get_mut(next)) {
                            *slot = error;
                        }
                        refused += 1;
                        next += 1;
                    }
                }
            }
            if next == datagrams.len() {
                return Ok(refused);
            }
        }
        for (i, datagram) in datagrams.iter().enumerate().skip(next) {
            if let Err(error) = enqueue(u, datagram) {
                if let Some(slot) = status.as_deref_mut().and_then(|s| s.get_mut(i)) {
                    *slot = error;
                }
                refused += 1;
            }
        }
        if let Err(e) = sync_interest(&mut self.core, u) {
            self.udp_close_now(id, e, false);
            return Err(e);
        }
        Ok(refused)
    }

    /// Sends what is queued until the kernel takes no more.
    fn udp_flush(&mut self, id: UdpId) {
        let Some(u) = self.udp.sockets.get_mut(id) else {
            return;
        };
        if u.flags & HELD != 0 {
            return;
        }
        let Some(queue) = u.queue.as_mut() else {
            return;
        };
        let closing = u.flags & CLOSING != 0;
        let (fd, data) = (u.fd, u.data);
        while !queue.datagrams.is_empty() {
            match send_queued(fd, &mut self.udp.buffer, queue) {
                Ok(()) => {}
                Err(libc::EINTR) => {}
                Err(libc::EAGAIN) => break,
                Err(error) => {
                    // The kernel refused the first: drop it, say so.
                    if let Some(dropped) = queue.datagrams.pop_front() {
                        queue.size -= dropped.size();
                    }
                    if !closing {
                        self.pending.push_back(StreamEvent {
                            kind: StreamEventKind::UdpError,
                            stream: id,
                            fd,
                            error,
                            offset: 0,
                            len: 0,
                            data,
                        });
                    }
                }
            }
        }
        let queued = queue.size;
        if queued <= u.low_water {
            u.flags &= !THROTTLED;
        }
        if queued == 0 {
            u.queue = None;
            if closing {
                self.udp_close_now(id, 0, false);
                return;
            }
            self.pending
                .push_back(u.event(StreamEventKind::Drained, id, 0));
        }
        if let Err(e) = sync_interest(&mut self.core, u) {
            self.udp_close_now(id, e, false);
        }
    }

    /// What a socket's readiness makes: usually one recvmmsg and its
    /// `Datagrams`; a flush of the queue when writable. The second half of
    /// the fast path, after [`next_ready`](Self::next_ready)'s `Ready::Udp`.
    /// When the receive buffer has no room for a batch (a batch of events
    /// holds it), nothing is received: the socket's readiness, level-
    /// triggered, is reported again once it is released.
    #[inline(always)]
    pub fn udp_ready(&mut self, id: UdpId, revents: u32) -> Option<StreamEvent<D>> {
        let u = self.udp.sockets.get(id)?;
        // Events made earlier (in `pending`) go out first: the slow way.
        if u.queue.is_some()
            || u.flags & NOT_RECEIVING != 0
            || revents & ERROR != 0
            || !self.pending.is_empty()
        {
            return self.udp_ready_slow(id, revents);
        }
        receive(u, id, &mut self.udp.buffer)
    }

    #[cold]
    #[inline(never)]
    fn udp_ready_slow(&mut self, id: UdpId, revents: u32) -> Option<StreamEvent<D>> {
        let u = self.udp.sockets.get(id)?;
        if u.queue.is_some() && revents & (WRITE | ERROR) != 0 {
            self.udp_flush(id);
        }
        let u = self.udp.sockets.get(id)?;
        let event = if u.flags & NOT_RECEIVING == 0 && revents & (READ | ERROR) != 0 {
            self.udp_receive(id)
        } else if revents & ERROR != 0 {
            let error = match sys::take_socket_error(u.fd) {
                Ok(0) => None,
                Ok(error) | Err(error) => Some(error),
            };
            error.map(|e| u.event(StreamEventKind::UdpError, id, e))
        } else {
            None
        };
        if let Some(event) = event {
            self.pending.push_back(event);
        }
        self.pop_pending()
    }

    /// One recvmmsg into the receive buffer, if it has room.
    fn udp_receive(&mut self, id: UdpId) -> Option<StreamEvent<D>> {
        let u = self.udp.sockets.get(id)?;
        receive(u, id, &mut self.udp.buffer)
    }

    /// The regions every received datagram's bytes and source address
    /// lie in, (start, length) each, for callers that pay per call into
    /// the library (Python through ctypes): mapped once, sliced per
    /// datagram. They stay at these addresses for the loop's life.
    pub(crate) fn datagram_regions(&mut self) -> ((*const u8, usize), (*const u8, usize)) {
        self.udp.buffer.regions()
    }

    /// The datagrams of a `Datagrams` event, valid until
    /// [`release_reads`](Self::release_reads).
    pub fn datagrams(&self, event: &StreamEvent<D>) -> &[Datagram<'_>] {
        if event.kind != StreamEventKind::Datagrams {
            return &[];
        }
        self.udp.buffer.batch(event.offset, event.len)
    }

    /// The datagrams handed out are done with (`release_reads`); those of
    /// events still waiting in `pending` are kept, with everything before.
    #[inline]
    pub(super) fn release_datagrams(&mut self) {
        if !self.udp.buffer.is_empty()
            && (self.pending.is_empty()
                || !self
                    .pending
                    .iter()
                    .any(|e| e.kind == StreamEventKind::Datagrams))
        {
            self.udp.buffer.release();
        }
    }
}

/// One recvmmsg of `u`'s into `buffer`, if it has room: its `Datagrams`,
/// its error (an ICMP error for a connected socket, ECONNREFUSED...: the
/// socket goes on), or nothing.
#[inline]
fn receive<D: Copy>(
    u: &UdpSocket<D>,
    id: UdpId,
    buffer: &mut DatagramBuffer,
) -> Option<StreamEvent<D>> {
    match buffer.receive(u.fd, u.receive_size, u.addr_room) {
        Ok((first, count)) => {
            let mut event = u.event(StreamEventKind::Datagrams, id, 0);
            event.offset = first;
            event.len = count;
            Some(event)
        }
        // EAGAIN: nothing waits, or no room for it now.
        Err(libc::EAGAIN | libc::EINTR) => None,
        Err(error) => Some(u.event(StreamEventKind::UdpError, id, error)),
    }
}

/// One sendmmsg of `batch` (at most SEND_WIDTH), or a sendto for one
/// datagram (less work for the kernel); how many went. A malformed datagram
/// (see [`Datagram::check`]) is never handed to the kernel: the send stops
/// before it, or fails with its error if it is the first.
#[inline]
fn send_now(
    fd: RawFd,
    buffer: &mut DatagramBuffer,
    batch: &[Datagram<'_>],
) -> Result<usize, Errno> {
    if let [datagram] = batch {
        datagram.check()?;
        return send_one(fd, datagram);
    }
    let mut count = 0;
    for (datagram, hdr) in batch.iter().zip(buffer.send_hdrs.iter_mut()) {
        if let Err(error) = datagram.check() {
            if count == 0 {
                return Err(error);
            }
            break;
        }
        // A datagram starts with its bytes' pointer and length, laid out as
        // an iovec: the kernel reads them where they are.
        hdr.msg_hdr.msg_iov = datagram.as_iovec();
        let (addr, addr_len) = datagram.raw_addr();
        hdr.msg_hdr.msg_name = addr as *mut libc::c_void;
        hdr.msg_hdr.msg_namelen = addr_len;
        count += 1;
    }
    // SAFETY: the headers point at the datagrams' bytes and addresses,
    // checked well-formed, which their makers vouch for.
    unsafe { sys::sendmmsg(fd, &mut buffer.send_hdrs[..count]) }
}

/// An echo: `batch`, datagrams received lying from `first` on in the
/// receive buffer's array, goes back with one sendmmsg of the headers made
/// for them when they came (a sendto for one); how many went.
#[inline(always)]
fn send_echo(
    fd: RawFd,
    buffer: &mut DatagramBuffer,
    batch: &[Datagram<'_>],
    first: usize,
) -> Result<usize, Errno> {
    if let [datagram] = batch {
        return send_one(fd, datagram);
    }
    // SAFETY: the echo headers point at the datagrams received and their
    // addresses, in the buffer, well-formed whatever their age.
    unsafe { sys::sendmmsg(fd, buffer.echo_hdrs(first, batch.len())) }
}

/// A sendto of one datagram, well-formed (checked, or received).
#[inline]
fn send_one(fd: RawFd, datagram: &Datagram<'_>) -> Result<usize, Errno> {
    let (data, len) = datagram.raw_bytes();
    let (addr, addr_len) = datagram.raw_addr();
    // SAFETY: well-formed; the datagram's maker vouches for its bytes and
    // address (Datagram::new, the C caller, or the receive buffer).
    unsafe { sys::sendto(fd, data, len, addr, addr_len) }.map(|_| 1)
}

/// One sendmmsg from the front of the queue; what went leaves it.
fn send_queued(
    fd: RawFd,
    buffer: &mut DatagramBuffer,
    queue: &mut DatagramQueue,
) -> Result<(), Errno> {
    let count = queue.datagrams.len().min(SEND_WIDTH);
    for (i, queued) in queue.datagrams.iter().take(count).enumerate() {
        let (addr, bytes) = queued.addr_and_bytes.split_at(queued.addr_len);
        buffer.send_iovs[i] = libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        };
        let hdr = &mut buffer.send_hdrs[i].msg_hdr;
        hdr.msg_iov = &mut buffer.send_iovs[i];
        hdr.msg_name = if addr.is_empty() {
            std::ptr::null_mut()
        } else {
            addr.as_ptr() as *mut libc::c_void
        };
        hdr.msg_namelen = addr.len() as u32;
    }
    // SAFETY: the headers point into the queue's own buffers.
    let sent = unsafe { sys::sendmmsg(fd, &mut buffer.send_hdrs[..count]) }?;
    for dropped in queue.datagrams.drain(..sent) {
        queue.size -= dropped.size();
    }
    Ok(())
}

/// Copies `datagram` into the queue, unless it is over its high watermark
/// (ENOBUFS) or the datagram is malformed.
fn enqueue<D: Copy>(u: &mut UdpSocket<D>, datagram: &Datagram<'_>) -> Result<(), Errno> {
    datagram.check()?;
    if u.flags & THROTTLED != 0 {
        return Err(libc::ENOBUFS);
    }
    let (data, len) = datagram.raw_bytes();
    let (addr, addr_len) = datagram.raw_addr();
    let addr_len = if addr.is_null() { 0 } else { addr_len as usize };
    let mut addr_and_bytes = Vec::with_capacity(addr_len + len);
    // SAFETY: checked well-formed (non-null where there are bytes), and
    // valid for these lengths as the datagram's maker vouches.
    unsafe {
        if addr_len > 0 {
            addr_and_bytes
                .extend_from_slice(std::slice::from_raw_parts(addr.cast::<u8>(), addr_len));
        }
        if len > 0 {
            addr_and_bytes.extend_from_slice(std::slice::from_raw_parts(data, len));
        }
    }
    let queued = QueuedDatagram {
        addr_and_bytes: addr_and_bytes.into_boxed_slice(),
        addr_len,
    };
    let queue = u.queue.get_or_insert_with(Default::default);
    queue.size += queued.size();
    queue.datagrams.push_back(queued);
    if queue.size > u.high_water {
        u.flags |= THROTTLED;
    }
    Ok(())
}
