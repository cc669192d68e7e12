//! How a stream's fd ends, once the stream has (`close_now`).
//!
//! The fd stays open until the stream's `Closed` has been handed out and
//! the application had its turn to see it: its number is not given out
//! again while the application may still hold it as the stream's (an fd
//! map that learns of the end from `Closed`). So an ended stream's fd
//! waits in `to_close`, and [`StreamLoop::close_ended`] closes it: after
//! the `Closed` callback returns, or at the next wait (a caller of the
//! batch interface handles the events of a poll before the next).

use std::os::fd::RawFd;

use super::connection::Stream;
use super::{ListenerId, StreamId, StreamLoop};
use crate::sys::{self, Errno};

/// An ended stream's fd, to be closed once its `Closed` was handed out.
#[derive(Clone, Copy)]
pub(super) struct Ending {
    fd: RawFd,
    stream: StreamId,
    listener: ListenerId,
    /// Read and drop the input just before close(2): a graceful end, whose
    /// unread input would make close(2) answer with a reset, which throws
    /// away what the kernel still has to send (and the peer reads
    /// ECONNRESET, not end-of-file).
    drain: bool,
}

impl<D: Copy + Default> StreamLoop<D> {
    /// What becomes of the fd of stream `id`, which has just ended with
    /// `error`: it waits to be closed.
    pub(super) fn end_fd(&mut self, id: StreamId, s: &Stream<D>, error: Errno) {
        let _ = self.core.unregister(s.fd);
        self.to_close.push(Ending {
            fd: s.fd,
            stream: id,
            listener: s.listener,
            drain: error == 0 && s.socket(),
        });
    }

    /// Closes the fds of ended streams whose `Closed` has been handed out
    /// (the application had its turn to see it), and lets their listeners
    /// accept again.
    pub fn close_ended(&mut self) {
        let mut i = 0;
        while i < self.to_close.len() {
            let ending = self.to_close[i];
            if self.streams.is_closed(ending.stream) {
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

    /// For the loop's end: closes the fds of every ended stream.
    pub(super) fn close_all_ended(&mut self) {
        for ending in std::mem::take(&mut self.to_close) {
            close(ending);
        }
    }
}

fn close(ending: Ending) {
    if ending.drain {
        sys::discard_input(ending.fd);
    }
    sys::close(ending.fd);
}
