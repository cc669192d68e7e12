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
//!
//! One file per concern: `registrations.rs` (the table indexed by fd),
//! `timers.rs` (the deadline heap), `signals.rs` (signalfd watchers),
//! `tasks.rs` (the cross-thread queue and [`LoopHandle`]), `hooks.rs`
//! (prepare, check and idle hooks), `embed.rs` (the backend fd and timeout
//! for a host loop), `fork.rs` (what the child of a fork keeps), and
//! `iteration.rs`, where the order of one iteration reads top to bottom.

mod embed;
mod fork;
mod hooks;
mod iteration;
mod registrations;
mod signals;
mod tasks;
mod timers;

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::sys::{self, Epoll, Errno, Events};

pub use crate::sys::{EDGE, ERROR, HUP, ONESHOT, RDHUP, READ, WRITE};
pub use hooks::{HookId, HookKind, HookRun};
pub use tasks::LoopHandle;

use fork::ForkWatch;
use iteration::{Phase, BEFORE_IO};
use registrations::{token, Registration, INITIAL_SLOTS};
use signals::Signals;
use tasks::Shared;
use timers::Timers;

/// Every bit `register` and `modify` accept. The readiness-only bits are
/// accepted and ignored: they are always reported.
pub const VALID_INTEREST: u32 = READ | WRITE | ERROR | HUP | RDHUP | EDGE | ONESHOT;

/// Names a timer: non-zero, the generation of its slot in the high 32 bits
/// and the slot in the low ones (see `slab.rs`), so that the id of a timer
/// that was stopped or has fired (one-shot) matches no later timer.
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

/// `D: Default` fills vacant slots of the registration table.
pub struct EventLoop<D: Copy + Default> {
    /// The epoll fd as the fork handlers know it (see `fork.rs`). First, so
    /// that it leaves their list before the set is closed.
    fork_watch: ForkWatch,
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
    /// Made by the first hook started; boxed (as the deadline clock) so that
    /// a loop without hooks or host keeps its hot fields close together.
    hooks: Option<Box<hooks::Hooks<D>>>,
    /// Made when a host loop asks for the backend fd (see `embed.rs`).
    deadline_clock: Option<Box<embed::DeadlineClock>>,
}

impl<D: Copy + Default> EventLoop<D> {
    pub fn new() -> Result<EventLoop<D>, Errno> {
        // No registration yet: no number to keep off.
        let epoll = Epoll::new(|_| false)?;
        let doorbell = sys::eventfd_new(|_| false)?;
        let shared = Arc::new(Shared {
            tasks: Mutex::new(Vec::new()),
            queued: AtomicUsize::new(0),
            wake_pending: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            doorbell: AtomicI32::new(doorbell),
        });
        epoll.add(doorbell, READ, token(0, doorbell))?;
        Ok(EventLoop {
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
            hooks: None,
            deadline_clock: None,
            fork_watch: ForkWatch::new(epoll.raw()),
            epoll,
        })
    }

    pub fn handle(&self) -> LoopHandle<D> {
        LoopHandle {
            shared: self.shared.clone(),
        }
    }

    /// Whether anything is left that could produce an event.
    pub fn is_alive(&self) -> bool {
        self.is_alive_besides(0, 0)
    }

    /// Whether anything is left besides `registrations` registrations and
    /// `timers` timers (of a caller's own, which it knows make no event
    /// worth running the loop for).
    pub fn is_alive_besides(&self, registrations: usize, timers: usize) -> bool {
        self.registered > registrations
            || self.timers.live() > timers
            || self.signals.watched > 0
            || self.shared.queued.load(Ordering::Acquire) > 0
            || self.has_hooks()
    }

    #[doc(hidden)]
    pub fn arm_test_panic(&mut self) {
        self.panic_armed = true;
    }
}
