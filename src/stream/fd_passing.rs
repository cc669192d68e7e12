//! Passing fds over Unix-domain streams (SCM_RIGHTS), on both sides opt-in.
//!
//! Sending: [`StreamLoop::write_fds`] attaches fds to the first byte of a
//! write. Sent at once, the fds go with it; queued behind other bytes, the
//! stream keeps duplicates of them until that byte leaves (then closes
//! them), and its queue is written piece by piece so that the byte leaves
//! in a message of its own with them.
//!
//! Receiving: a stream reads with recvmsg only once the application said
//! how many fds a message may bring ([`StreamLoop::accept_fds`]); until then
//! it reads with read(2), and the kernel closes whatever fds came. Fds
//! received become an `Fds` event, handed out just before the `Data` event
//! of the bytes they came with. They are the loop's until the application
//! takes them ([`StreamLoop::take_fds`]); those not taken when the event's
//! turn is over (the callback returned; the next poll) are closed, as are
//! those past the number accepted. So no received fd is ever left open
//! without an owner.

use std::collections::VecDeque;
use std::os::fd::RawFd;

use super::connection::{CONNECTING, NO_MORE_WRITES, RECV_FDS};
use super::write_queue::WriteQueue;
use super::{StreamEvent, StreamEventKind, StreamId, StreamLoop};
use crate::sys::{self, Errno, Fd, MAX_FDS_PER_MESSAGE};

/// A stream's side of fd passing.
#[derive(Default)]
pub(super) struct FdPassing {
    /// The most fds kept from one message (0: reading does not ask for them).
    pub(super) accept_max: usize,
    /// Fds to go with queued bytes, in queue order.
    outgoing: VecDeque<Attachment>,
}

/// Duplicates of fds to send with the byte `before` bytes from the front
/// of the write queue.
struct Attachment {
    before: usize,
    fds: Vec<Fd>,
}

impl FdPassing {
    pub(super) fn has_outgoing(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Writes the queue as `WriteQueue::write_to` does, except that a byte
    /// with fds attached starts a message of its own and carries them, and
    /// the message ends before the next such byte. Returns what is left.
    pub(super) fn write_queue(
        &mut self,
        queue: &mut WriteQueue,
        fd: RawFd,
    ) -> Result<usize, Errno> {
        while let Some(next) = self.outgoing.front() {
            let Some(chunk) = queue.chunks.front() else {
                break;
            };
            let chunk = &chunk[queue.sent..];
            let (limit, attached) = match next.before {
                0 => (self.outgoing.get(1).map_or(usize::MAX, |a| a.before), true),
                before => (before, false),
            };
            let piece = &chunk[..chunk.len().min(limit)];
            let result = if attached {
                let fds: Vec<RawFd> = next.fds.iter().map(Fd::raw).collect();
                sys::send_with_fds(fd, piece, &fds)
            } else {
                sys::write(fd, piece, true)
            };
            match result {
                Ok(n) => {
                    if attached && n > 0 {
                        self.outgoing.pop_front(); // closes the duplicates
                    }
                    for attachment in &mut self.outgoing {
                        attachment.before -= n;
                    }
                    consume(queue, n);
                }
                Err(libc::EINTR) => {}
                Err(libc::EAGAIN) => return Ok(queue.bytes),
                Err(error) => return Err(error),
            }
        }
        queue.write_to(fd, true)
    }
}

/// Drops the first `n` bytes of the queue, which the kernel took.
fn consume(queue: &mut WriteQueue, n: usize) {
    queue.sent += n;
    queue.bytes -= n;
    if queue.chunks.front().is_some_and(|c| c.len() == queue.sent) {
        queue.chunks.pop_front();
        queue.sent = 0;
    }
}

/// The fds received and not yet taken or closed, with the stream each came
/// on; an `Fds` event names a run of them (its offset and length). A taken
/// one is -1.
#[derive(Default)]
pub(super) struct ReceivedFds {
    fds: Vec<RawFd>,
    streams: Vec<StreamId>,
}

impl ReceivedFds {
    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// Closes the first `count` that were not taken, and forgets them.
    fn close_first(&mut self, count: usize) {
        for fd in self.fds.drain(..count) {
            if fd >= 0 {
                sys::close(fd);
            }
        }
        self.streams.drain(..count);
    }
}

impl Drop for ReceivedFds {
    fn drop(&mut self) {
        self.close_first(self.fds.len());
    }
}

impl<D: Copy + Default> StreamLoop<D> {
    /// Writes `bytes` (at least one) as [`write`](Self::write) does, with
    /// `fds` (1 to 253) attached to the first of them, on a Unix-domain
    /// stream (EOPNOTSUPP for another socket, ENOTSOCK for a pipe). The
    /// fds stay the caller's: the kernel passes its own references to the
    /// files, and when the bytes must wait in the queue the stream keeps
    /// duplicates until they leave. EBADF for an fd that is not open (or
    /// EMFILE when no duplicate can be made); nothing is written then.
    pub fn write_fds(&mut self, id: StreamId, bytes: &[u8], fds: &[RawFd]) -> Result<(), Errno> {
        if bytes.is_empty() || fds.is_empty() || fds.len() > MAX_FDS_PER_MESSAGE {
            return Err(libc::EINVAL);
        }
        let Some(s) = self.streams.get_mut(id) else {
            return self.not_live(id, Err(libc::EPIPE));
        };
        sys::check_unix_socket(s.fd)?;
        if s.flags & NO_MORE_WRITES != 0 {
            return Err(libc::EPIPE);
        }
        if s.queue.is_none() && s.flags & CONNECTING == 0 {
            match sys::send_with_fds(s.fd, bytes, fds) {
                Ok(n) if n == bytes.len() => {
                    s.last_active = self.core.now();
                    return Ok(());
                }
                Ok(n) => return self.enqueue(id, &bytes[n..]),
                Err(libc::EAGAIN | libc::EINTR) => {}
                // About the fds given, not the stream: nothing was sent.
                Err(error @ (libc::EBADF | libc::ETOOMANYREFS | libc::ENOMEM)) => {
                    return Err(error)
                }
                Err(error) => {
                    self.close_now(id, error, false);
                    return Err(error);
                }
            }
        }
        let duplicates = fds
            .iter()
            .map(|&fd| sys::duplicate(fd))
            .collect::<Result<Vec<Fd>, Errno>>()?;
        let s = self.streams.get_mut(id).ok_or(libc::ENOENT)?;
        let before = s.queued();
        let passing = s.fd_passing.get_or_insert_with(Default::default);
        passing.outgoing.push_back(Attachment {
            before,
            fds: duplicates,
        });
        self.enqueue(id, bytes)
    }

    /// Lets a Unix-domain stream receive fds, at most `max` (0 to 253) from
    /// one message: those past it are closed. 0 stops asking for them
    /// (the kernel then closes what comes). See [`take_fds`](Self::take_fds).
    pub fn accept_fds(&mut self, id: StreamId, max: usize) -> Result<(), Errno> {
        if max > MAX_FDS_PER_MESSAGE {
            return Err(libc::EINVAL);
        }
        let Some(s) = self.streams.get_mut(id) else {
            return self.not_live(id, Ok(()));
        };
        sys::check_unix_socket(s.fd)?;
        s.fd_passing.get_or_insert_with(Default::default).accept_max = max;
        if max > 0 {
            s.flags |= RECV_FDS;
        } else {
            s.flags &= !RECV_FDS;
        }
        Ok(())
    }

    /// Moves into `out` the fds of the `Fds` events of stream `id` handed
    /// out so far and not yet taken, in the order they came (as many as fit;
    /// the rest stay for another call until the event's turn is over). They
    /// are the caller's from then on. Returns how many.
    pub fn take_fds(&mut self, id: StreamId, out: &mut [RawFd]) -> usize {
        let handed_out = self.fds_handed_out();
        let received = &mut self.passed;
        let mut taken = 0;
        for (fd, &stream) in received.fds[..handed_out].iter_mut().zip(&received.streams) {
            if taken == out.len() {
                break;
            }
            if stream == id && *fd >= 0 {
                out[taken] = std::mem::replace(fd, -1);
                taken += 1;
            }
        }
        taken
    }

    /// How many received fds, from the first, belong to events handed out
    /// (the others' events wait in `pending`).
    fn fds_handed_out(&self) -> usize {
        let waiting = self
            .pending
            .iter()
            .filter(|e| e.kind == StreamEventKind::Fds);
        waiting
            .map(|e| e.offset)
            .min()
            .unwrap_or(self.passed.fds.len())
    }

    /// A waiting `Fds` event is held by a pause (`held.rs`): its fds leave
    /// the received ones (whose release would close them) for the caller;
    /// the waiting events after it shift down.
    pub(super) fn hold_fds(&mut self, event: &StreamEvent<D>) -> Vec<Fd> {
        let run = event.offset..event.offset + event.len;
        let fds = self.passed.fds.drain(run.clone()).map(Fd).collect();
        self.passed.streams.drain(run);
        for waiting in self.pending.iter_mut() {
            if waiting.kind == StreamEventKind::Fds && waiting.offset > event.offset {
                waiting.offset -= event.len;
            }
        }
        fds
    }

    /// Held fds of stream `id` go out again as an `Fds` event now: they
    /// join the received ones just after those handed out, before the
    /// waiting events' (which shift up). Returns the event's offset and length.
    pub(super) fn restore_fds(&mut self, id: StreamId, fds: Vec<Fd>) -> (usize, usize) {
        let at = self.fds_handed_out();
        let count = fds.len();
        let raw = fds.into_iter().map(Fd::into_raw);
        self.passed.fds.splice(at..at, raw);
        let streams = std::iter::repeat(id).take(count);
        self.passed.streams.splice(at..at, streams);
        for waiting in self.pending.iter_mut() {
            if waiting.kind == StreamEventKind::Fds {
                waiting.offset += count;
            }
        }
        (at, count)
    }

    /// The `Fds` events handed out are over: their fds not taken are closed.
    #[cold]
    #[inline(never)]
    pub(super) fn release_passed_fds(&mut self) {
        let handed_out = self.fds_handed_out();
        self.passed.close_first(handed_out);
        for event in self.pending.iter_mut() {
            if event.kind == StreamEventKind::Fds {
                event.offset -= handed_out;
            }
        }
    }

    /// A read that takes fds too (the stream accepts them): `Data`, after
    /// an `Fds` event if fds came with the bytes.
    #[cold]
    #[inline(never)]
    pub(super) fn read_stream_with_fds(&mut self, id: StreamId) -> Option<StreamEvent<D>> {
        let s = self.streams.get_mut(id)?;
        let accept_max = s.fd_passing.as_ref().map_or(0, |p| p.accept_max);
        let offset = self.reads.used;
        let mut fds = [-1; MAX_FDS_PER_MESSAGE];
        let (len, count) = match sys::recv_with_fds(s.fd, self.reads.free_chunk(), &mut fds) {
            Ok(read) => read,
            Err(libc::EAGAIN | libc::EINTR) => return None,
            Err(error) => {
                self.close_now(id, error, false);
                return None;
            }
        };
        let kept = count.min(accept_max);
        for &fd in &fds[kept..count] {
            sys::close(fd);
        }
        if kept > 0 {
            let first = self.passed.fds.len();
            self.passed.fds.extend_from_slice(&fds[..kept]);
            self.passed.streams.extend(std::iter::repeat(id).take(kept));
            let mut event = s.event(StreamEventKind::Fds, id, 0);
            event.offset = first;
            event.len = kept;
            self.pending.push_back(event);
        }
        if len == 0 {
            return self.on_peer_eof(id);
        }
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
}
