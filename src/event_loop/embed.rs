//! Running a loop inside another one (a GLib or Qt main loop, asyncio, a
//! game loop): the host watches one fd, the epoll set's own, and wakes up
//! at the time [`EventLoop::backend_timeout`] says, then runs one iteration
//! that does not block.
//!
//! The epoll fd is readable whenever an fd in its set is ready, and the
//! doorbell (tasks, wakes) and the signalfd are in the set. Timers are not
//! fds: for them a timerfd joins the set, armed at the next deadline, but
//! only once a caller has asked for the backend fd, so a loop that is not
//! embedded pays nothing for it.

use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::registrations::{is_registered, token};
use super::EventLoop;
use crate::sys::{self, Errno, TimerFd, EDGE, READ};

/// The timerfd that makes the epoll fd readable when a timer is due.
pub(super) struct DeadlineClock {
    timer: TimerFd,
    /// The deadline it is armed at (`None`: disarmed).
    armed: Option<u64>,
}

impl DeadlineClock {
    fn new(epoll: &sys::Epoll, timer: TimerFd) -> Result<DeadlineClock, Errno> {
        // Edge-triggered: an expiry makes the set readable until one wait
        // has seen it, and the iteration re-arms it for the next deadline.
        epoll.add(timer.raw(), READ | EDGE, token(0, timer.raw()))?;
        Ok(DeadlineClock { timer, armed: None })
    }
}

impl<D: Copy + Default> EventLoop<D> {
    /// The epoll fd: readable when the loop has something to do (ready I/O,
    /// a due timer, a posted task or a wake, a signal). From the first call
    /// on, a timerfd in the set follows the next timer deadline. The fd is
    /// the loop's (never close it) and changes after a fork.
    pub fn backend_fd(&mut self) -> Result<RawFd, Errno> {
        if self.deadline_clock.is_none() {
            self.deadline_clock = Some(Box::new(self.new_deadline_clock()?));
            self.follow_next_deadline()?;
        }
        Ok(self.epoll.raw())
    }

    /// A deadline clock whose fd number no registration has: one closed
    /// without `unregister` keeps its slot, and `modify` or `unregister` of
    /// it must not reach the loop's own timerfd.
    fn new_deadline_clock(&self) -> Result<DeadlineClock, Errno> {
        let timer = TimerFd::new(|fd| is_registered(&self.registrations, fd))?;
        DeadlineClock::new(&self.epoll, timer)
    }

    /// How long the host may wait before the loop needs an iteration:
    /// `Some(ZERO)` if it has work now (tasks, signals read but not yet
    /// handed out, an iteration not finished, an idle hook), the time to
    /// the next timer, or `None` when only I/O (the backend fd) can give it
    /// work.
    pub fn backend_timeout(&mut self) -> Option<Duration> {
        if self.shared.queued.load(Ordering::Acquire) > 0
            || self.signals.has_pending()
            || self.has_more()
            || self.has_idle_hooks()
        {
            return Some(Duration::ZERO);
        }
        let deadline = self.timers.next_deadline()?;
        Some(Duration::from_nanos(deadline.saturating_sub(sys::now_ns())))
    }

    /// Arms the deadline clock at the next timer deadline, if a caller asked
    /// for the backend fd and the deadline moved. Called wherever the next
    /// deadline may change: a timer started or stopped, the due ones fired.
    #[inline]
    pub(super) fn deadline_moved(&mut self) {
        if self.deadline_clock.is_some() {
            // A timerfd that cannot be set leaves the host to the timeout.
            let _ = self.follow_next_deadline();
        }
    }

    #[cold]
    fn follow_next_deadline(&mut self) -> Result<(), Errno> {
        let next = self.timers.next_deadline();
        match &mut self.deadline_clock {
            Some(clock) if clock.armed != next => {
                clock.timer.arm_at(next)?;
                clock.armed = next;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// After a fork: a timerfd of the child's own in the new epoll set.
    pub(super) fn reinit_deadline_clock(&mut self) -> Result<(), Errno> {
        if self.deadline_clock.is_some() {
            self.deadline_clock = Some(Box::new(self.new_deadline_clock()?));
            self.follow_next_deadline()?;
        }
        Ok(())
    }
}
