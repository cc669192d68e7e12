//! The event loop: a registration table indexed by fd, a timer heap, signal
//! watchers and a cross-thread task queue, over one epoll set.
//!
//! The loop never calls anything. Each iteration is pulled by its caller:
//! [`EventLoop::wait`] blocks and collects what is ready, then
//! [`EventLoop::next_event`] hands out one [`Event`] at a time (signals,
//! then due timers, then posted tasks, then I/O). Between two pulls the caller
//! holds no borrow of the loop, so whatever it runs may register, modify or
//! unregister anything, start or stop timers, or stop the loop.
//!
//! `D` is what the caller attaches to each registration, timer, signal watcher
//! and task (the C layer keeps a function pointer and userdata there). It is
//! `Copy` so that an event carries its own copy out of the loop.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sys::{self, Epoll, Errno, Events, SigSet, SignalFd};

pub use crate::sys::{EDGE, ERROR, HUP, ONESHOT, RDHUP, READ, WRITE};

/// Every bit `register` and `modify` accept. The readiness-only bits are
/// accepted and ignored: they are always reported.
pub const VALID_INTEREST: u32 = READ | WRITE | ERROR | HUP | RDHUP | EDGE | ONESHOT;

/// Non-zero; the low 32 bits name a slot, the high 32 bits its generation.
pub type TimerId = u64;

/// One thing for the caller to dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<D> {
    Io { fd: RawFd, revents: u32, data: D },
    Timer { id: TimerId, data: D },
    Task(D),
    Signal { signo: i32, data: D },
}

/// Events fetched from the kernel in one wait.
const BATCH: usize = 1024;

#[derive(Clone, Copy)]
struct Registration<D> {
    /// The epoll token of this registration (its generation and fd): an
    /// event with another token is for a registration that has ended. A
    /// vacant slot has VACANT_TOKEN, which no event carries (generation
    /// VACANT is never given out).
    token: u64,
    /// The interest as given (options included) plus the always-reported
    /// readiness bits: masking an event with it keeps what is worth
    /// reporting (epoll never reports the option bits).
    wanted: u32,
    data: D,
}

const VACANT: u32 = u32::MAX;
const VACANT_TOKEN: u64 = (VACANT as u64) << 32;

impl<D: Default> Registration<D> {
    fn vacant() -> Self {
        Registration {
            token: VACANT_TOKEN,
            wanted: 0,
            data: D::default(),
        }
    }

    fn is_vacant(&self) -> bool {
        self.token == VACANT_TOKEN
    }
}

/// Generations run from 1 to VACANT - 1: 0 marks the loop's own fds.
fn next_generation(generation: u32) -> u32 {
    if generation + 1 == VACANT {
        1
    } else {
        generation + 1
    }
}

/// The bits worth reporting for `interest`: ERROR and HUP always, RDHUP
/// only with READ (as epoll is asked for it: see `sys::to_epoll`), so that
/// an event fetched under read interest and filtered after a change to
/// write-only interest does not come through as a bare RDHUP.
fn wanted(interest: u32) -> u32 {
    let rdhup = if interest & READ != 0 { RDHUP } else { 0 };
    (interest & !RDHUP) | ERROR | HUP | rdhup
}

/// The interest a registration was given, from its `wanted` bits.
fn interest_of(wanted: u32) -> u32 {
    wanted & (READ | WRITE | EDGE | ONESHOT)
}

/// Registration slots made at creation (like ae.c's setsize, but the table
/// still grows past it): registering an fd below this never touches the
/// allocator. 8192 slots of 32 bytes (for the C layer) is 256 KiB.
const INITIAL_SLOTS: usize = 8192;

/// epoll token: generation in the high half, fd in the low half. Generation 0
/// marks the loop's own fds.
fn token(generation: u32, fd: RawFd) -> u64 {
    (generation as u64) << 32 | fd as u32 as u64
}

/// `EventLoop::cursor` before the I/O phase: no batch has an event there.
const BEFORE_IO: usize = usize::MAX;

/// Where `next_event` is in the current iteration.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Idle,
    Signals,
    Timers,
    Tasks,
    Io,
}

/// The part of a loop that other threads (and signal handlers) may touch.
struct Shared<D> {
    tasks: Mutex<Vec<D>>,
    /// Length of `tasks`, readable without the lock.
    queued: AtomicUsize,
    /// The doorbell was rung and not yet drained: further rings can be skipped.
    /// Set by `ring` after the task is counted in `queued`; cleared by the
    /// loop only after draining the eventfd (see `handle_internal`).
    wake_pending: AtomicBool,
    stop: AtomicBool,
    /// The eventfd doorbell. Owned here, closed on drop, replaced after fork.
    doorbell: AtomicI32,
}

impl<D> Shared<D> {
    fn post(&self, task: D) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.push(task);
        self.queued.store(tasks.len(), Ordering::Release);
        drop(tasks);
        self.ring();
    }

    fn ring(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            sys::eventfd_notify(self.doorbell.load(Ordering::Acquire));
        }
    }
}

impl<D> Drop for Shared<D> {
    fn drop(&mut self) {
        sys::close(*self.doorbell.get_mut());
    }
}

/// A handle to a loop that any thread may use: post tasks, wake, stop.
pub struct LoopHandle<D> {
    shared: Arc<Shared<D>>,
}

impl<D> Clone for LoopHandle<D> {
    fn clone(&self) -> Self {
        LoopHandle {
            shared: self.shared.clone(),
        }
    }
}

impl<D> LoopHandle<D> {
    /// Queues `task` for the loop's next iteration and wakes it.
    pub fn post(&self, task: D) {
        self.shared.post(task)
    }

    /// Makes a blocked wait return. Async-signal-safe: it writes to an eventfd
    /// and touches nothing else.
    pub fn wake(&self) {
        sys::eventfd_notify(self.shared.doorbell.load(Ordering::Acquire));
    }

    /// Asks the loop to stop after its current iteration.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        self.wake();
    }
}

/// `D: Default` fills vacant slots of the registration table.
pub struct EventLoop<D: Copy + Default> {
    epoll: Epoll,
    events: Events,
    /// Next index into `events` during the I/O phase; `BEFORE_IO` before it,
    /// an index no batch reaches, so that next_ready finds nothing then.
    cursor: usize,
    phase: Phase,
    /// Indexed by fd.
    registrations: Vec<Registration<D>>,
    registered: usize,
    next_generation: u32,
    timers: Timers<D>,
    /// Clock reading taken after the wait: timers due by then fire this iteration.
    now: u64,
    signals: Signals<D>,
    shared: Arc<Shared<D>>,
    /// Tasks taken from the shared queue for this iteration.
    tasks: Vec<D>,
    task_cursor: usize,
    /// Test-only: panic at the next `wait`, to prove the C boundary catches it.
    panic_armed: bool,
}

impl<D: Copy + Default> EventLoop<D> {
    pub fn new() -> Result<EventLoop<D>, Errno> {
        let epoll = Epoll::new()?;
        let doorbell = sys::eventfd_new()?;
        let shared = Arc::new(Shared {
            tasks: Mutex::new(Vec::new()),
            queued: AtomicUsize::new(0),
            wake_pending: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            doorbell: AtomicI32::new(doorbell),
        });
        epoll.add(doorbell, READ, token(0, doorbell))?;
        Ok(EventLoop {
            epoll,
            events: Events::with_capacity(BATCH),
            cursor: BEFORE_IO,
            phase: Phase::Idle,
            registrations: vec![Registration::vacant(); INITIAL_SLOTS],
            registered: 0,
            next_generation: 1,
            timers: Timers::new(),
            now: 0,
            signals: Signals::new(),
            shared,
            tasks: Vec::new(),
            task_cursor: 0,
            panic_armed: false,
        })
    }

    pub fn handle(&self) -> LoopHandle<D> {
        LoopHandle {
            shared: self.shared.clone(),
        }
    }

    // ---- registrations -------------------------------------------------

    /// Watches `fd` for `interest` (READ, WRITE, EDGE, ONESHOT).
    ///
    /// An fd that is still registered gives EEXIST. One that was closed
    /// without `unregister` (so the kernel dropped it) is registered afresh.
    #[inline]
    pub fn register(&mut self, fd: RawFd, interest: u32, data: D) -> Result<(), Errno> {
        if interest & !VALID_INTEREST != 0 {
            return Err(libc::EINVAL);
        }
        // A negative fd becomes an index past any table: checked on that cold path.
        let index = fd as usize;
        if index >= self.registrations.len() {
            self.grow_table(fd)?;
        }
        let slot = &mut self.registrations[index];
        let generation = self.next_generation;
        let token = token(generation, fd);
        // The kernel is the judge of whether an old entry is still alive: ADD
        // answers EEXIST for a live one, and succeeds once the fd was closed.
        self.epoll.add(fd, interest, token)?;
        self.next_generation = next_generation(generation);
        if slot.is_vacant() {
            self.registered += 1;
        }
        *slot = Registration {
            token,
            wanted: wanted(interest),
            data,
        };
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn grow_table(&mut self, fd: RawFd) -> Result<(), Errno> {
        if fd < 0 {
            return Err(libc::EINVAL);
        }
        let len = (fd as usize + 1).next_power_of_two();
        self.registrations.resize(len, Registration::vacant());
        Ok(())
    }

    /// Replaces the interest of a registered fd (the whole mask, options
    /// included, like `epoll.modify`). Re-arms an ONESHOT registration, and
    /// then drops its events already fetched: they were the previous arm's.
    pub fn modify(&mut self, fd: RawFd, interest: u32) -> Result<(), Errno> {
        if interest & !VALID_INTEREST != 0 {
            return Err(libc::EINVAL);
        }
        let slot = registration_in(&mut self.registrations, fd)?;
        if interest & ONESHOT == 0 {
            self.epoll.modify(fd, interest, slot.token)?;
        } else {
            // A new arm: events already fetched under the old token (the
            // previous arm's, in this batch) no longer match, so this arm
            // gives at most the one report the kernel makes for it.
            let generation = self.next_generation;
            let token = token(generation, fd);
            self.epoll.modify(fd, interest, token)?;
            self.next_generation = next_generation(generation);
            slot.token = token;
        }
        slot.wanted = wanted(interest);
        Ok(())
    }

    /// What is attached to a registered fd.
    pub fn data(&self, fd: RawFd) -> Result<D, Errno> {
        match self.registrations.get(fd as usize) {
            Some(reg) if !reg.is_vacant() => Ok(reg.data),
            _ => Err(if fd < 0 { libc::EINVAL } else { libc::ENOENT }),
        }
    }

    /// Replaces what is attached to a registered fd.
    pub fn set_data(&mut self, fd: RawFd, data: D) -> Result<(), Errno> {
        registration_in(&mut self.registrations, fd)?.data = data;
        Ok(())
    }

    /// Ends a registration. No event for it is handed out after this, even
    /// one already fetched. An fd that was closed first is fine.
    #[inline]
    pub fn unregister(&mut self, fd: RawFd) -> Result<(), Errno> {
        let slot = registration_in(&mut self.registrations, fd)?;
        match self.epoll.delete(fd) {
            // EBADF: closed already. ENOENT: closed and the number reused.
            Ok(()) | Err(libc::EBADF) | Err(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        *slot = Registration::vacant();
        self.registered -= 1;
        Ok(())
    }

    // ---- timers, signals, tasks ------------------------------------------

    /// Starts a timer that fires after `delay` and then every `repeat` (if non-zero).
    pub fn start_timer(&mut self, delay: Duration, repeat: Duration, data: D) -> TimerId {
        self.timers
            .start(sys::now_ns(), nanos(delay), nanos(repeat), data)
    }

    /// Stops a timer. A one-shot timer is over once its callback starts.
    pub fn stop_timer(&mut self, id: TimerId) -> Result<(), Errno> {
        if self.timers.stop(id) {
            Ok(())
        } else {
            Err(libc::ENOENT)
        }
    }

    /// What is attached to a running timer.
    pub fn timer_data(&self, id: TimerId) -> Option<D> {
        let slot = self.timers.slot_of(id)?;
        self.timers.slots[slot as usize].armed.map(|a| a.data)
    }

    /// The clock reading (CLOCK_MONOTONIC ns) taken after the last wait, when
    /// timers were running then; 0 otherwise. Costs nothing, unlike a clock call.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Reads the clock into [`now`](Self::now) (after a wait, that happens
    /// only while timers run).
    pub fn refresh_now(&mut self) {
        self.now = sys::now_ns();
    }

    /// Delivers `signo` as an event instead of its usual action. The signal
    /// is blocked in the calling thread and read through a signalfd.
    pub fn watch_signal(&mut self, signo: i32, data: D) -> Result<(), Errno> {
        self.signals.watch(&self.epoll, signo, data)
    }

    pub fn unwatch_signal(&mut self, signo: i32) -> Result<(), Errno> {
        self.signals.unwatch(signo)
    }

    /// Queues a task for the next iteration (from the loop's own thread;
    /// other threads use a [`LoopHandle`]).
    pub fn post(&self, task: D) {
        self.shared.post(task)
    }

    /// Takes a pending stop request, if any.
    pub fn take_stop(&mut self) -> bool {
        self.shared.stop.swap(false, Ordering::AcqRel)
    }

    /// The epoll fd: readable while a registered fd (or the wake-up
    /// eventfd) is ready, so that another poller can wait on this loop.
    pub fn poll_fd(&self) -> RawFd {
        self.epoll.raw()
    }

    /// Whether anything is left that could produce an event.
    pub fn is_alive(&self) -> bool {
        self.registered > 0
            || self.timers.live > 0
            || self.signals.watched > 0
            || self.shared.queued.load(Ordering::Acquire) > 0
    }

    /// Whether an iteration is being dispatched (so `wait` would be EBUSY).
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

    /// Takes back the I/O event `next_ready` just handed out: the next call
    /// hands it out again.
    pub fn unread(&mut self) {
        if self.phase == Phase::Io && self.cursor > 0 {
            self.cursor -= 1;
        }
    }

    /// Ends an iteration whose every event was handed out, so that the next
    /// `wait` may begin (a caller that stopped pulling at the last event).
    pub fn finish_iteration(&mut self) {
        if !self.has_more() {
            self.phase = Phase::Idle;
        }
    }

    #[doc(hidden)]
    pub fn arm_test_panic(&mut self) {
        self.panic_armed = true;
    }

    // ---- one iteration ---------------------------------------------------

    /// Waits at most `timeout` (`None`: until something happens) for up to
    /// `max_events` events (`usize::MAX`: one batch of 1024; more than
    /// a batch, as `evl_poll` with a big array asks: that many, up to what
    /// the epoll set could report), then prepares the iteration that `next_event`
    /// hands out. Errors: EBUSY while an iteration is still being dispatched,
    /// EINTR when a signal handler interrupted the wait.
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
        self.epoll.wait(&mut self.events, max_events, timeout)?;
        self.now = if self.timers.live > 0 {
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
        // The usual iteration has nothing but I/O: start it at the I/O phase,
        // so that next_ready hands out the first event without a detour.
        let timer_due =
            self.timers.live > 0 && self.timers.next_deadline().is_some_and(|d| d <= self.now);
        if self.tasks.is_empty() && !self.signals.has_pending() && !timer_due {
            self.phase = Phase::Io;
            self.cursor = 0;
        } else {
            self.phase = Phase::Signals;
            self.cursor = BEFORE_IO;
        }
        Ok(())
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
    /// (the epoll fallback's timerfd) needs nothing.
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

    /// The next thing to dispatch in this iteration, or `None` when it is over.
    #[inline]
    pub fn next_event(&mut self) -> Option<Event<D>> {
        match self.next_ready() {
            Some((fd, revents, data)) => Some(Event::Io { fd, revents, data }),
            None => self.next_other(),
        }
    }

    /// The fast path of `next_event`: the next ready registration, once the
    /// iteration has reached its I/O phase; `None` before it and after it.
    #[inline]
    pub fn next_ready(&mut self) -> Option<(RawFd, u32, D)> {
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

    /// The slow path of `next_event`: signals, timers and tasks, then the
    /// I/O phase; `None` once the iteration is over.
    #[cold]
    pub fn next_other(&mut self) -> Option<Event<D>> {
        loop {
            match self.phase {
                Phase::Idle => return None,
                Phase::Signals => match self.signals.next_pending() {
                    Some((signo, data)) => return Some(Event::Signal { signo, data }),
                    None => self.phase = Phase::Timers,
                },
                Phase::Timers => match self.timers.pop_due(self.now) {
                    Some((id, data)) => return Some(Event::Timer { id, data }),
                    None => self.phase = Phase::Tasks,
                },
                Phase::Tasks => {
                    if let Some(&task) = self.tasks.get(self.task_cursor) {
                        self.task_cursor += 1;
                        return Some(Event::Task(task));
                    }
                    self.tasks.clear();
                    self.phase = Phase::Io;
                    self.cursor = 0;
                    let (fd, revents, data) = self.next_ready()?;
                    return Some(Event::Io { fd, revents, data });
                }
                // next_ready has handed out the whole batch.
                Phase::Io => return None,
            }
        }
    }

    /// Drops every registration whose fd was closed without `unregister`,
    /// even when its number now names another file (reused by `open`,
    /// `dup2`...). The epoll set knows: its entries are (file, number) pairs,
    /// and the kernel removed the entry of a closed file. ADD of the number
    /// answers EEXIST exactly when the registered entry is still there, and
    /// changes nothing then (MOD would re-arm a spent ONESHOT in the set the
    /// parent shares). Any other answer means the registration has ended; an
    /// ADD that succeeded (the number was reused) is undone at once, and
    /// until then can only report ERROR or HUP, once, under a token that no
    /// loop takes for one of its registrations. Costs one epoll_ctl per
    /// registration, at fork only.
    fn drop_closed_registrations(&mut self) {
        for fd in 0..self.registrations.len() {
            if self.registrations[fd].is_vacant() {
                continue;
            }
            match self.epoll.add(fd as RawFd, ONESHOT, PROBE_TOKEN) {
                Err(libc::EEXIST) => continue,
                Ok(()) => {
                    let _ = self.epoll.delete(fd as RawFd);
                }
                Err(_) => {}
            }
            self.registrations[fd] = Registration::vacant();
            self.registered -= 1;
        }
    }

    /// In a child after `fork()`: new epoll set, doorbell and signalfd, so the
    /// child and the parent stop sharing kernel objects. Registrations (whose
    /// fds are still open), timers and signal watchers are kept.
    pub fn reinit_after_fork(&mut self) -> Result<(), Errno> {
        if self.phase != Phase::Idle {
            return Err(libc::EBUSY);
        }
        // First drop the registrations that ended, while their numbers
        // cannot have been taken by the new kernel objects made below (a
        // live registration's fd is open, so its number is never given out).
        self.drop_closed_registrations();
        let epoll = Epoll::new()?;
        let doorbell = sys::eventfd_new()?;
        if let Err(e) = epoll.add(doorbell, READ, token(0, doorbell)) {
            sys::close(doorbell);
            return Err(e);
        }
        self.signals.reinit(&epoll)?;
        for fd in 0..self.registrations.len() {
            let reg = self.registrations[fd];
            if !reg.is_vacant() {
                epoll.add(fd as RawFd, interest_of(reg.wanted), reg.token)?;
            }
        }
        self.epoll = epoll;
        let old = self.shared.doorbell.swap(doorbell, Ordering::AcqRel);
        sys::close(old);
        self.shared.wake_pending.store(false, Ordering::Release);
        Ok(())
    }
}

/// The epoll token of `reinit_after_fork`'s probe: fd -1 of a generation no
/// registration has, so a loop that fetches it (the parent's) ignores it.
const PROBE_TOKEN: u64 = u64::MAX;

/// The live registration of `fd`. Takes the table alone, so the epoll set
/// can be used while the registration is held.
#[inline]
fn registration_in<D: Default>(
    registrations: &mut [Registration<D>],
    fd: RawFd,
) -> Result<&mut Registration<D>, Errno> {
    match registrations.get_mut(fd as usize) {
        // A negative fd becomes an index past the table: None.
        Some(reg) if !reg.is_vacant() => Ok(reg),
        _ => Err(if fd < 0 { libc::EINVAL } else { libc::ENOENT }),
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

// ---- timers ------------------------------------------------------------

/// A binary heap of deadlines over a slab of timers. Stopping a timer frees
/// its slot at once and leaves its heap entry to be skipped when it surfaces;
/// the heap is rebuilt when such stale entries outnumber the live ones.
struct Timers<D> {
    /// (deadline ns, arming sequence, slot). The sequence breaks ties in
    /// start order and tells a stale entry from the slot's current arming.
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    slots: Vec<TimerSlot<D>>,
    free: Vec<u32>,
    next_seq: u64,
    live: usize,
}

struct TimerSlot<D> {
    generation: u32,
    armed: Option<Armed<D>>,
}

#[derive(Clone, Copy)]
struct Armed<D> {
    deadline: u64,
    seq: u64,
    repeat: u64,
    data: D,
}

impl<D: Copy> Timers<D> {
    fn new() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            next_seq: 0,
            live: 0,
        }
    }

    fn start(&mut self, now: u64, delay: u64, repeat: u64, data: D) -> TimerId {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(TimerSlot {
                    generation: 1,
                    armed: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.live += 1;
        self.arm(slot, now.saturating_add(delay), repeat, data);
        self.id_of(slot)
    }

    fn id_of(&self, slot: u32) -> TimerId {
        (self.slots[slot as usize].generation as u64) << 32 | (slot as u64 + 1)
    }

    fn arm(&mut self, slot: u32, deadline: u64, repeat: u64, data: D) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.slots[slot as usize].armed = Some(Armed {
            deadline,
            seq,
            repeat,
            data,
        });
        self.heap.push(Reverse((deadline, seq, slot)));
    }

    fn slot_of(&self, id: TimerId) -> Option<u32> {
        let slot = (id as u32).checked_sub(1)?;
        let entry = self.slots.get(slot as usize)?;
        (entry.generation == (id >> 32) as u32 && entry.armed.is_some()).then_some(slot)
    }

    fn stop(&mut self, id: TimerId) -> bool {
        let Some(slot) = self.slot_of(id) else {
            return false;
        };
        self.release(slot);
        if self.heap.len() > 64 && self.heap.len() > 2 * self.live {
            self.rebuild_heap();
        }
        true
    }

    fn release(&mut self, slot: u32) {
        let entry = &mut self.slots[slot as usize];
        entry.armed = None;
        entry.generation = entry.generation.checked_add(1).unwrap_or(1);
        self.free.push(slot);
        self.live -= 1;
    }

    fn rebuild_heap(&mut self) {
        let entries = self.slots.iter().enumerate().filter_map(|(slot, entry)| {
            entry
                .armed
                .as_ref()
                .map(|a| Reverse((a.deadline, a.seq, slot as u32)))
        });
        self.heap = entries.collect();
    }

    fn is_current(&self, (_, seq, slot): (u64, u64, u32)) -> bool {
        matches!(&self.slots[slot as usize].armed, Some(a) if a.seq == seq)
    }

    fn next_deadline(&mut self) -> Option<u64> {
        while let Some(&Reverse(top)) = self.heap.peek() {
            if self.is_current(top) {
                return Some(top.0);
            }
            self.heap.pop();
        }
        None
    }

    /// The next timer due by `now`: a repeating one is re-armed, a one-shot one is over.
    fn pop_due(&mut self, now: u64) -> Option<(TimerId, D)> {
        while let Some(&Reverse(top)) = self.heap.peek() {
            let (deadline, _, slot) = top;
            if deadline > now {
                return None;
            }
            self.heap.pop();
            if !self.is_current(top) {
                continue;
            }
            let id = self.id_of(slot);
            let armed = self.slots[slot as usize]
                .armed
                .expect("current entry is armed");
            if armed.repeat > 0 {
                // Keep the cadence; after a long stall, skip the missed beats.
                let mut next = deadline.saturating_add(armed.repeat);
                if next <= now {
                    next = now.saturating_add(armed.repeat);
                }
                self.arm(slot, next, armed.repeat, armed.data);
            } else {
                self.release(slot);
            }
            return Some((id, armed.data));
        }
        None
    }
}

// ---- signals -------------------------------------------------------------

struct Signals<D> {
    handlers: Vec<Option<D>>,
    watched: usize,
    mask: SigSet,
    /// Signals that were unblocked before we watched them, to unblock again.
    blocked_by_us: SigSet,
    fd: Option<SignalFd>,
    pending: Vec<i32>,
    cursor: usize,
}

impl<D: Copy> Signals<D> {
    fn new() -> Self {
        Signals {
            handlers: vec![None; 65],
            watched: 0,
            mask: SigSet::empty(),
            blocked_by_us: SigSet::empty(),
            fd: None,
            pending: Vec::new(),
            cursor: 0,
        }
    }

    fn watch(&mut self, epoll: &Epoll, signo: i32, data: D) -> Result<(), Errno> {
        if !sys::signal_is_watchable(signo) {
            return Err(libc::EINVAL);
        }
        if self.handlers[signo as usize].is_some() {
            return Err(libc::EEXIST);
        }
        let mut mask = self.mask;
        mask.add(signo);
        match &self.fd {
            Some(fd) => fd.set_mask(&mask)?,
            None => {
                let fd = SignalFd::new(&mask)?;
                epoll.add(fd.raw(), READ, token(0, fd.raw()))?;
                self.fd = Some(fd);
            }
        }
        // Block only once the signalfd can take it, so a failure above leaves
        // the process's signal handling as it was.
        if !sys::set_signal_blocked(signo, true)? {
            self.blocked_by_us.add(signo);
        }
        self.mask = mask;
        self.handlers[signo as usize] = Some(data);
        self.watched += 1;
        Ok(())
    }

    fn unwatch(&mut self, signo: i32) -> Result<(), Errno> {
        if !(1..=64).contains(&signo) {
            return Err(libc::EINVAL);
        }
        if self.handlers[signo as usize].take().is_none() {
            return Err(libc::ENOENT);
        }
        self.watched -= 1;
        self.mask.remove(signo);
        if let Some(fd) = &self.fd {
            fd.set_mask(&self.mask)?;
        }
        if self.blocked_by_us.contains(signo) {
            self.blocked_by_us.remove(signo);
            sys::set_signal_blocked(signo, false)?;
        }
        Ok(())
    }

    fn read_pending(&mut self, fd: RawFd) {
        if let Some(signalfd) = self.fd.as_ref().filter(|s| s.raw() == fd) {
            signalfd.read_all(&mut self.pending);
        }
    }

    fn has_pending(&self) -> bool {
        self.cursor < self.pending.len()
    }

    fn next_pending(&mut self) -> Option<(i32, D)> {
        while let Some(&signo) = self.pending.get(self.cursor) {
            self.cursor += 1;
            // Skip a signal whose watcher was stopped earlier in this iteration.
            if let Some(Some(data)) = self.handlers.get(signo as usize) {
                return Some((signo, *data));
            }
        }
        self.pending.clear();
        self.cursor = 0;
        None
    }

    fn reinit(&mut self, epoll: &Epoll) -> Result<(), Errno> {
        if self.fd.is_some() {
            let fd = SignalFd::new(&self.mask)?;
            epoll.add(fd.raw(), READ, token(0, fd.raw()))?;
            self.fd = Some(fd);
        }
        Ok(())
    }
}

impl<D> Drop for Signals<D> {
    fn drop(&mut self) {
        for signo in 1..=64 {
            if self.blocked_by_us.contains(signo) {
                let _ = sys::set_signal_blocked(signo, false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn drain_iteration(lp: &mut EventLoop<u32>, timeout_ms: u64) -> Vec<Event<u32>> {
        lp.wait(Some(Duration::from_millis(timeout_ms)), usize::MAX)
            .unwrap();
        std::iter::from_fn(|| lp.next_event()).collect()
    }

    #[test]
    fn timers_fire_in_deadline_then_start_order() {
        let mut t = Timers::new();
        let ids: Vec<_> = [(30, 1), (10, 2), (10, 3), (0, 4)]
            .iter()
            .map(|&(d, tag)| (t.start(0, d, 0, tag), tag))
            .collect();
        let fired: Vec<u32> = std::iter::from_fn(|| t.pop_due(100))
            .map(|(_, tag)| tag)
            .collect();
        assert_eq!(fired, [4, 2, 3, 1]);
        assert_eq!(t.live, 0);
        for (id, _) in ids {
            assert!(!t.stop(id), "a fired one-shot timer is over");
        }
    }

    #[test]
    fn stopped_timers_are_skipped_and_the_heap_is_compacted() {
        let mut t = Timers::new();
        let ids: Vec<_> = (0..1000u32)
            .map(|i| t.start(0, 10 + i as u64, 0, i))
            .collect();
        for id in ids.iter().step_by(2) {
            assert!(t.stop(*id));
        }
        for id in ids.iter().skip(1).step_by(2).take(400) {
            assert!(t.stop(*id));
        }
        assert_eq!(t.live, 100);
        assert!(
            t.heap.len() <= 2 * t.live + 64,
            "heap of {} for {} live timers",
            t.heap.len(),
            t.live
        );
        let fired: Vec<u32> = std::iter::from_fn(|| t.pop_due(u64::MAX))
            .map(|(_, i)| i)
            .collect();
        assert_eq!(fired, (801..1000).step_by(2).collect::<Vec<_>>());
    }

    #[test]
    fn repeating_timer_rearms_and_skips_missed_beats() {
        let mut t = Timers::new();
        let id = t.start(0, 10, 10, 7u32);
        assert_eq!(t.pop_due(10), Some((id, 7)));
        assert_eq!(t.pop_due(10), None, "re-armed for 20");
        assert_eq!(t.pop_due(1000), Some((id, 7)));
        assert_eq!(t.next_deadline(), Some(1010));
        assert!(t.stop(id));
        assert_eq!(t.next_deadline(), None);
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
