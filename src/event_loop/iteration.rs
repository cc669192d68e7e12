//! One iteration, in order. The loop never calls anything: its caller
//! pulls each iteration, and holds no borrow of the loop between two pulls,
//! so whatever it runs may register, modify or unregister anything, start or
//! stop timers, or stop the loop.
//!
//! 1. [`EventLoop::wait`]: block in epoll until I/O is ready, the next timer
//!    is due, a task is posted or a signal comes (not at all if tasks or
//!    signals are waiting already); read the clock; take the posted tasks.
//! 2. [`EventLoop::next_event`] then hands out, one at a time:
//!    signals read during the previous iteration, the timers due by the
//!    clock reading, the tasks taken, and the batch of I/O in the kernel's
//!    order, each checked against its registration as it is now.
//!
//! [`EventLoop::next_io`] is the fast path into the last phase: the next
//! ready registration, once the iteration has reached its I/O. The usual
//! iteration has nothing but I/O, so `wait` starts it there.

use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::registrations::is_registered;
use super::{Event, EventLoop, BATCH};
use crate::sys::{self, Errno, Events};

/// `EventLoop::cursor` before the I/O phase: no batch has an event there,
/// so that `next_io` finds nothing then.
pub(super) const BEFORE_IO: usize = usize::MAX;

/// Where `next_event` is in the current iteration.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Phase {
    /// No iteration is being handed out: `wait` may begin one.
    Idle,
    Signals,
    Timers,
    Tasks,
    Io,
}

impl<D: Copy + Default> EventLoop<D> {
    /// Waits at most `timeout` (`None`: until something happens) for up to
    /// `max_events` events (`usize::MAX`: one batch of 1024; more than
    /// a batch, as `evl_poll` with a big array asks: that many, up to what
    /// the epoll set could report), then prepares the iteration that `next_event`
    /// hands out. Errors: EBUSY while an iteration is still being dispatched,
    /// EINTR when a signal handler interrupted the wait.
    ///
    /// Inlined into the caller's loop, which has its registers saved already.
    #[inline(always)]
    pub fn wait(&mut self, timeout: Option<Duration>, max_events: usize) -> Result<(), Errno> {
        if self.phase != Phase::Idle {
            return Err(libc::EBUSY);
        }
        if std::mem::take(&mut self.panic_armed) {
            panic!("evloop: test panic");
        }
        let timeout = self.effective_timeout(timeout);
        let max_events = if max_events == usize::MAX {
            BATCH
        } else {
            max_events
        };
        if max_events > self.events.capacity() {
            self.grow_events(max_events);
        }
        let registrations = &self.registrations;
        let taken = |fd| is_registered(registrations, fd);
        self.epoll
            .wait(&mut self.events, max_events, timeout, taken)?;
        // The usual iteration has nothing but I/O: start it at the I/O phase,
        // so that next_io hands out the first event without a detour.
        self.phase = Phase::Io;
        self.cursor = 0;
        if self.timers.live() > 0
            || self.shared.queued.load(Ordering::Acquire) > 0
            || self.signals.has_pending()
        {
            self.begin_before_io();
        } else {
            self.now = 0;
        }
        Ok(())
    }

    /// The rest of `wait` when something may come before the I/O: reads
    /// the clock for the timers, takes the posted tasks (the previous
    /// iteration handed out all of its own), and starts at the signals if
    /// any of them has something.
    fn begin_before_io(&mut self) {
        self.now = if self.timers.live() > 0 {
            sys::now_ns()
        } else {
            0
        };
        if self.shared.queued.load(Ordering::Acquire) > 0 {
            let mut queue = self.shared.tasks.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::swap(&mut self.tasks, &mut queue);
            self.shared.queued.store(0, Ordering::Release);
        }
        self.task_cursor = 0;
        let timer_due =
            self.timers.live() > 0 && self.timers.next_deadline().is_some_and(|d| d <= self.now);
        if !self.tasks.is_empty() || self.signals.has_pending() || timer_due {
            self.phase = Phase::Signals;
            self.cursor = BEFORE_IO;
        }
    }

    /// The next thing to dispatch in this iteration, phase by phase, or
    /// `None` when it is over.
    pub fn next_event(&mut self) -> Option<Event<D>> {
        loop {
            match self.phase {
                Phase::Idle => return None,
                Phase::Signals => match self.signals.next_pending() {
                    Some((signo, data)) => return Some(Event::Signal { signo, data }),
                    None => self.phase = Phase::Timers,
                },
                Phase::Timers => match self.timers.pop_due(self.now) {
                    Some((id, data)) => return Some(Event::Timer { id, data }),
                    None => {
                        // For a host loop: the fd follows the next deadline.
                        self.deadline_moved();
                        self.phase = Phase::Tasks;
                    }
                },
                Phase::Tasks => {
                    if let Some(&task) = self.tasks.get(self.task_cursor) {
                        self.task_cursor += 1;
                        return Some(Event::Task(task));
                    }
                    self.tasks.clear();
                    self.phase = Phase::Io;
                    self.cursor = 0;
                }
                Phase::Io => {
                    let (fd, revents, data) = self.next_io()?;
                    return Some(Event::Io { fd, revents, data });
                }
            }
        }
    }

    /// The fast path into the I/O phase: the next ready registration (its
    /// fd, the readiness it asked for, its data); `None` before the I/O
    /// phase, and once the batch is handed out (which ends the iteration).
    #[inline]
    pub fn next_io(&mut self) -> Option<(RawFd, u32, D)> {
        while let Some((token, revents)) = self.events.get(self.cursor) {
            self.cursor += 1;
            let fd = token as u32 as RawFd;
            let reg = match self.registrations.get(fd as usize) {
                // A vacant slot's token matches no event.
                Some(reg) if reg.token == token => reg,
                _ => {
                    if token >> 32 == 0 {
                        self.handle_internal(fd);
                    }
                    continue;
                }
            };
            // Honour the interest as it is now: a callback earlier in this
            // batch may have changed it.
            let revents = revents & reg.wanted;
            if revents != 0 {
                return Some((fd, revents, reg.data));
            }
        }
        if self.phase == Phase::Io {
            self.phase = Phase::Idle;
        }
        None
    }

    /// Takes back the I/O event `next_io` just handed out: the next call
    /// hands it out again.
    pub fn unread(&mut self) {
        if self.phase == Phase::Io && self.cursor > 0 {
            self.cursor -= 1;
        }
    }

    /// Whether an iteration is being dispatched (so `wait` would be EBUSY).
    #[inline]
    pub fn is_dispatching(&self) -> bool {
        self.phase != Phase::Idle
    }

    /// Whether the iteration being dispatched has anything left to hand out
    /// (false once its last event was handed out, or when there is none).
    pub fn has_more(&self) -> bool {
        match self.phase {
            Phase::Idle => false,
            Phase::Io => self.cursor < self.events.len(),
            _ => true,
        }
    }

    /// Ends an iteration whose every event was handed out, so that the next
    /// `wait` may begin (a caller that stopped pulling at the last event).
    pub fn finish_iteration(&mut self) {
        if !self.has_more() {
            self.phase = Phase::Idle;
        }
    }

    /// Makes room for `max_events` events in one wait, but never for more
    /// than the set could report: every registration and the loop's own fds
    /// (doorbell, signalfd, the fallback timerfd).
    #[cold]
    #[inline(never)]
    fn grow_events(&mut self, max_events: usize) {
        let reportable = self.registered + 3;
        let capacity = max_events.min(reportable);
        if capacity > self.events.capacity() {
            self.events = Events::with_capacity(capacity);
        }
    }

    #[inline(always)]
    fn effective_timeout(&mut self, timeout: Option<Duration>) -> Option<Duration> {
        if self.shared.queued.load(Ordering::Acquire) > 0
            || self.shared.stop.load(Ordering::Acquire)
            || self.signals.has_pending()
        {
            return Some(Duration::ZERO);
        }
        match self.timers.next_deadline() {
            None => timeout,
            Some(deadline) => {
                let until = Duration::from_nanos(deadline.saturating_sub(sys::now_ns()));
                Some(timeout.map_or(until, |t| t.min(until)))
            }
        }
    }

    /// Handles one of the loop's own fds (generation 0), met during the I/O
    /// phase. Signals read here are dispatched at the start of the next
    /// iteration, which then does not block. Anything else of generation 0
    /// (the epoll fallback's timerfd, `embed.rs`'s deadline clock) needs nothing.
    #[cold]
    fn handle_internal(&mut self, fd: RawFd) {
        if fd == self.shared.doorbell.load(Ordering::Relaxed) {
            // Drain first, then clear: a post whose ring this drain swallowed
            // had set the flag (or found it set) before the clear below, so
            // the clear, an acquiring swap reading that flag, sees its task
            // in `queued`, and the next wait does not block (its timeout is
            // zero while `queued` > 0). A post that finds the flag clear
            // rings after this drain, so the eventfd stays readable. There is
            // no third case: no post can lose both its ring and its count.
            sys::eventfd_drain(fd);
            self.shared.wake_pending.swap(false, Ordering::AcqRel);
        } else {
            self.signals.read_pending(fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_loop::READ;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn drain_iteration(lp: &mut EventLoop<u32>, timeout_ms: u64) -> Vec<Event<u32>> {
        lp.wait(Some(Duration::from_millis(timeout_ms)), usize::MAX)
            .unwrap();
        std::iter::from_fn(|| lp.next_event()).collect()
    }

    #[test]
    fn event_of_an_ended_registration_is_never_handed_out() {
        let mut lp: EventLoop<u32> = EventLoop::new().unwrap();
        let (a, mut a_peer) = UnixStream::pair().unwrap();
        let (b, mut b_peer) = UnixStream::pair().unwrap();
        lp.register(a.as_raw_fd(), READ, 1).unwrap();
        lp.register(b.as_raw_fd(), READ, 2).unwrap();
        a_peer.write_all(b"a").unwrap();
        b_peer.write_all(b"b").unwrap();
        lp.wait(Some(Duration::from_secs(1)), usize::MAX).unwrap();
        let first = lp.next_event().unwrap();
        let Event::Io { data, .. } = first else {
            panic!("{first:?}")
        };
        // The first handler ends the other registration and re-registers the
        // same fd with new data: the fetched event must not reach either.
        let other = if data == 1 {
            b.as_raw_fd()
        } else {
            a.as_raw_fd()
        };
        lp.unregister(other).unwrap();
        lp.register(other, READ, 99).unwrap();
        assert_eq!(lp.next_event(), None);
        assert_eq!(lp.wait(None, 1), Ok(()));
        let events: Vec<_> = std::iter::from_fn(|| lp.next_event()).collect();
        assert!(events.iter().all(|e| matches!(
            e,
            Event::Io {
                data: 1 | 2 | 99,
                ..
            }
        )));
    }

    /// The loop's own fds (doorbell, signalfd) sit at fds whose registration
    /// slots are vacant: their events must still be handled, or they stay
    /// readable and every later wait returns at once.
    #[test]
    fn doorbell_and_signalfd_are_drained() {
        let mut lp: EventLoop<u32> = EventLoop::new().unwrap();
        lp.post(1);
        assert_eq!(drain_iteration(&mut lp, 0), [Event::Task(1)]);
        assert!(drain_iteration(&mut lp, 0).is_empty());
        // Drained: a wait now blocks for its whole timeout.
        let start = std::time::Instant::now();
        assert!(drain_iteration(&mut lp, 30).is_empty());
        assert!(
            start.elapsed() >= Duration::from_millis(25),
            "the doorbell was left readable"
        );

        lp.watch_signal(libc::SIGUSR2, 7).unwrap();
        // SAFETY: a plain syscall; SIGUSR2 is blocked and watched by the loop.
        unsafe { libc::raise(libc::SIGUSR2) };
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.extend(drain_iteration(&mut lp, 100));
        }
        assert_eq!(
            seen,
            [Event::Signal {
                signo: libc::SIGUSR2,
                data: 7
            }]
        );
        let start = std::time::Instant::now();
        assert!(drain_iteration(&mut lp, 30).is_empty());
        assert!(
            start.elapsed() >= Duration::from_millis(25),
            "the signalfd was left readable"
        );
        lp.unwatch_signal(libc::SIGUSR2).unwrap();
    }

    /// The fallback timerfd (a kernel without epoll_pwait2, as under
    /// valgrind) is made at the first timed wait, when a registration whose
    /// fd was closed without `unregister` may have left the lowest number
    /// free. It must keep off that number, or `unregister` of the old
    /// registration takes it out of the set and a timed wait then blocks
    /// until some fd is ready.
    #[test]
    fn fallback_timerfd_never_takes_a_registered_number() {
        let mut lp: EventLoop<u32> = EventLoop::new().unwrap();
        lp.epoll.force_timerfd_fallback();
        let (a, _peer) = UnixStream::pair().unwrap();
        let number = a.as_raw_fd();
        lp.register(number, READ, 1).unwrap();
        drop(a); // never unregistered
        assert!(drain_iteration(&mut lp, 1).is_empty());
        assert_eq!(lp.unregister(number), Ok(()));
        // A post ends the wait if the timerfd left the set.
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let handle = lp.handle();
        let watchdog = std::thread::spawn(move || {
            if finished.recv_timeout(Duration::from_secs(2)).is_err() {
                handle.post(2);
            }
        });
        let start = std::time::Instant::now();
        let events = drain_iteration(&mut lp, 30);
        let elapsed = start.elapsed();
        let _ = done.send(());
        watchdog.join().unwrap();
        assert!(
            elapsed < Duration::from_secs(1),
            "a 30 ms wait took {elapsed:?}: the timerfd left the set ({events:?})"
        );
    }

    #[test]
    fn wait_during_dispatch_is_busy_and_tasks_keep_order() {
        let mut lp: EventLoop<u32> = EventLoop::new().unwrap();
        let handle = lp.handle();
        let poster = std::thread::spawn(move || (0..100).for_each(|i| handle.post(i)));
        poster.join().unwrap();
        lp.post(100);
        lp.wait(Some(Duration::ZERO), usize::MAX).unwrap();
        assert_eq!(lp.wait(None, 1), Err(libc::EBUSY));
        let tasks: Vec<u32> = std::iter::from_fn(|| lp.next_event())
            .map(|e| match e {
                Event::Task(i) => i,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(tasks, (0..=100).collect::<Vec<_>>());
        assert!(drain_iteration(&mut lp, 0).is_empty());
        assert!(!lp.is_alive());
    }
}
