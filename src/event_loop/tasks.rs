//! The part of a loop other threads may touch: the task queue, the eventfd
//! doorbell and the stop flag, and [`LoopHandle`], through which they do.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::EventLoop;
use crate::sys;

/// The part of a loop that other threads (and signal handlers) may touch.
pub(super) struct Shared<D> {
    pub(super) tasks: Mutex<Vec<D>>,
    /// Length of `tasks`, readable without the lock.
    pub(super) queued: AtomicUsize,
    /// The doorbell was rung and not yet drained: further rings can be skipped.
    /// Set by `ring` after the task is counted in `queued`; cleared by the
    /// loop only after draining the eventfd (see `handle_internal`).
    pub(super) wake_pending: AtomicBool,
    pub(super) stop: AtomicBool,
    /// The eventfd doorbell. Owned here, closed on drop, replaced after fork.
    pub(super) doorbell: AtomicI32,
}

impl<D> Shared<D> {
    pub(super) fn post(&self, task: D) {
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
    pub(super) shared: Arc<Shared<D>>,
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

impl<D: Copy + Default> EventLoop<D> {
    /// Queues a task for the next iteration (from the loop's own thread;
    /// other threads use a [`LoopHandle`]).
    pub fn post(&self, task: D) {
        self.shared.post(task)
    }

    /// Takes a pending stop request, if any.
    pub fn take_stop(&mut self) -> bool {
        self.shared.stop.swap(false, Ordering::AcqRel)
    }
}
