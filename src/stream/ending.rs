//! How a stream's fd ends, once the stream has (`close_now`).
//!
//! Two rules. First, the fd stays open until the stream's `Closed` has been
//! handed out and the application had its turn to see it: its number is
//! not given out again while the application may still hold it as the
//! stream's (an fd map that learns of the end from `Closed`). So an ended
//! stream's fd waits in `to_close`, and [`StreamLoop::close_ended`] closes
//! it: after the `Closed` callback returns, or at the next wait (a caller
//! of the batch interface handles the events of a poll before the next).
//!
//! Second, a graceful close of a socket whose peer may still send lingers.
//! close(2) of a TCP socket with unread input answers with a reset, which
//! throws away what the kernel has not sent yet: the peer loses the end of
//! the reply. So once the queue is sent the writing side is shut down (the
//! peer reads the whole reply, then end-of-file), and the socket stays
//! registered, reading and dropping what the peer still sends, until the
//! peer's end-of-file, an error, more than `linger_bytes` bytes, or
//! `linger_ms`; only then is it closed. A lingering socket keeps its
//! listener's count of connections (it holds an fd) but not the loop
//! alive: `is_alive` leaves it out, and [`StreamLoop::end_lingering`] closes
//! what lingers when nobody will run the loop for it (evl_run returning,
//! the child after fork, the loop freed).

use std::os::fd::RawFd;
use std::time::Duration;

use super::connection::{Stream, PEER_EOF, WRITE_SHUT};
use super::{ListenerId, Owner, StreamId, StreamLoop};
use crate::event_loop::TimerId;
use crate::sys::{self, Discarded, Errno, READ};

/// A socket whose stream closed gracefully, reading and dropping input.
pub(super) struct Lingering {
    fd: RawFd,
    /// The stream it was (its `Closed` may not be handed out yet).
    stream: StreamId,
    listener: ListenerId,
    /// How many more bytes the peer may send before the socket closes anyway.
    budget: usize,
    timer: TimerId,
}

/// An ended stream's fd, to be closed once its `Closed` was handed out.
#[derive(Clone, Copy)]
pub(super) struct Ending {
    fd: RawFd,
    /// The stream (or UDP socket) it was.
    stream: u64,
    listener: ListenerId,
    /// Input to read and drop just before close(2) (0: none), so that a
    /// peer that stopped sending gets end-of-file, not a reset.
    drain: usize,
}

impl<D: Copy + Default> StreamLoop<D> {
    /// What becomes of the fd of stream `id`, which has just ended with
    /// `error`: it lingers (a graceful close of a socket whose peer has not
    /// ended its side), or waits to be closed (drained first after a
    /// graceful end).
    pub(super) fn end_fd(&mut self, id: StreamId, s: &Stream<D>, error: Errno) {
        let graceful = error == 0 && s.socket();
        // (A connect under way may have made it already: a socket that is
        // not connected fails the shutdown and closes at once.)
        let linger = graceful
            && s.flags & PEER_EOF == 0
            && s.settings.linger_ms > 0
            && s.settings.linger_bytes > 0;
        if linger && self.start_lingering(id, s).is_ok() {
            return;
        }
        let drain = if graceful { s.settings.linger_bytes } else { 0 };
        self.close_when_handed_out(id, s.fd, s.listener, drain);
    }

    /// Unregisters `fd`, the fd of stream (or UDP socket) `id`, which has
    /// just ended, and closes it once the `Closed` of `id` was handed out
    /// (at once if none is to come), after reading and dropping up to
    /// `drain` bytes.
    pub(super) fn close_when_handed_out(
        &mut self,
        id: u64,
        fd: RawFd,
        listener: ListenerId,
        drain: usize,
    ) {
        let _ = self.core.unregister(fd);
        self.to_close.push(Ending {
            fd,
            stream: id,
            listener,
            drain,
        });
    }

    /// Shuts down the writing side and keeps the socket registered (now as
    /// a lingering one) until its peer ends or a bound is reached.
    fn start_lingering(&mut self, id: StreamId, s: &Stream<D>) -> Result<(), Errno> {
        if s.flags & WRITE_SHUT == 0 {
            sys::shutdown_write(s.fd)?;
        }
        if s.interest != READ {
            self.core.modify(s.fd, READ)?;
        }
        let lingering = self.lingering.insert(Lingering {
            fd: s.fd,
            stream: id,
            listener: s.listener,
            budget: s.settings.linger_bytes,
            timer: 0,
        });
        // The registration stays, now the lingering socket's (so are events
        // of it already fetched): no epoll_ctl beyond the modify above.
        if let Err(e) = self.core.set_data(s.fd, Owner::Lingering(lingering)) {
            self.lingering.remove(lingering);
            return Err(e);
        }
        let timer = self.core.start_timer(
            Duration::from_millis(s.settings.linger_ms.into()),
            Duration::ZERO,
            Owner::LingerTimer(lingering),
        );
        if let Some(l) = self.lingering.get_mut(lingering) {
            l.timer = timer;
        }
        Ok(())
    }

    /// The lingering socket is readable: drop what came; close at its end
    /// or once the peer sent too much.
    pub(super) fn on_lingering_ready(&mut self, id: u64) {
        let Some(l) = self.lingering.get_mut(id) else {
            return;
        };
        match sys::discard_input(l.fd, l.budget) {
            Discarded::Drained(n) => l.budget -= n,
            Discarded::Ended | Discarded::OverBudget => self.stop_lingering(id, false),
        }
    }

    pub(super) fn on_linger_timer(&mut self, id: u64) {
        if let Some(l) = self.lingering.get_mut(id) {
            l.timer = 0; // a one-shot timer is over once it fired
            self.stop_lingering(id, true);
        }
    }

    /// Ends a lingering: the socket is closed with the next
    /// [`close_ended`](Self::close_ended), after reading and dropping what
    /// has arrived (within the budget) if `drain`.
    fn stop_lingering(&mut self, id: u64, drain: bool) {
        let Some(l) = self.lingering.remove(id) else {
            return;
        };
        if l.timer != 0 {
            let _ = self.core.stop_timer(l.timer);
        }
        let _ = self.core.unregister(l.fd);
        self.to_close.push(l.ending(drain));
    }

    /// Ends every lingering now (what has arrived is read and dropped
    /// first) and closes every fd whose stream's `Closed` was handed out:
    /// for when nobody will run the loop for them (evl_run returning with
    /// nothing else left, the child after fork).
    pub fn end_lingering(&mut self) {
        let lingering = &self.lingering;
        let ids: Vec<u64> = lingering
            .iter()
            .map(|(slot, _)| lingering.id_of(slot))
            .collect();
        for id in ids {
            self.stop_lingering(id, true);
        }
        self.close_ended();
    }

    /// Closes the fds of ended streams whose `Closed` has been handed out
    /// (the application had its turn to see it), and lets their listeners
    /// accept again.
    pub fn close_ended(&mut self) {
        let mut i = 0;
        while i < self.to_close.len() {
            let ending = self.to_close[i];
            if self.streams.is_closed(ending.stream) || self.udp.is_closed(ending.stream) {
                i += 1; // its Closed is still to be handed out
                continue;
            }
            self.to_close.swap_remove(i);
            close(ending);
            if let Some(l) = self.listeners.get_mut(ending.listener) {
                l.live -= 1;
                self.update_accepting(ending.listener);
            }
        }
    }

    /// How many registrations and timers of the core loop are lingering
    /// sockets' (one each), which do not keep the loop alive.
    pub(super) fn lingering_count(&self) -> usize {
        self.lingering.len()
    }

    /// For the loop's end: closes every fd this module holds, ended
    /// streams' and lingering sockets' (what has arrived read first),
    /// without touching the epoll set (which a forked child may share with
    /// its parent).
    pub(super) fn close_all_ended(&mut self) {
        for l in self.lingering.values() {
            close(l.ending(true));
        }
        for ending in std::mem::take(&mut self.to_close) {
            close(ending);
        }
    }
}

impl Lingering {
    /// What is left to do for its fd once it stops lingering.
    fn ending(&self, drain: bool) -> Ending {
        Ending {
            fd: self.fd,
            stream: self.stream,
            listener: self.listener,
            drain: if drain { self.budget } else { 0 },
        }
    }
}

fn close(ending: Ending) {
    if ending.drain > 0 {
        sys::discard_input(ending.fd, ending.drain);
    }
    sys::close(ending.fd);
}
