//! The core loop's hooks and its backend fd and timeout (see
//! `event_loop::embed` and `event_loop::hooks`), for the application,
//! counting what only the stream layer knows: stream events made by
//! something other than a read, waiting to be handed out, and fds waiting
//! to be closed.

use std::os::fd::RawFd;
use std::time::Duration;

use super::{Owner, StreamLoop};
use crate::event_loop::{HookId, HookKind, HookRun};
use crate::sys::Errno;

impl<D: Copy + Default> StreamLoop<D> {
    pub fn start_hook(&mut self, kind: HookKind, data: D) -> HookId {
        self.core.start_hook(kind, Owner::User(data))
    }

    pub fn stop_hook(&mut self, id: HookId) -> Result<(), Errno> {
        self.core.stop_hook(id)
    }

    #[inline]
    pub fn has_hooks(&self) -> bool {
        self.core.has_hooks()
    }

    pub fn has_idle_hooks(&self) -> bool {
        self.core.has_idle_hooks()
    }

    pub fn hook_run(&self, kind: HookKind) -> HookRun {
        self.core.hook_run(kind)
    }

    pub fn next_hook(&self, run: &mut HookRun) -> Option<(HookId, D)> {
        match self.core.next_hook(run)? {
            (id, Owner::User(data)) => Some((id, data)),
            // Only the application starts hooks.
            _ => None,
        }
    }

    /// Whether the next [`wait`](Self::wait) goes on with an iteration cut
    /// short instead of waiting (then no hook runs around it).
    pub fn continues_iteration(&self) -> bool {
        self.core.is_dispatching() && self.core.has_more()
    }

    /// Whether the iteration that `wait` prepared has anything to hand
    /// out: an iteration without is the idle hooks' turn.
    pub fn has_work(&self) -> bool {
        !self.pending.is_empty() || self.core.has_more()
    }

    /// See [`EventLoop::backend_fd`](crate::EventLoop::backend_fd).
    pub fn backend_fd(&mut self) -> Result<RawFd, Errno> {
        self.core.backend_fd()
    }

    /// See [`EventLoop::backend_timeout`](crate::EventLoop::backend_timeout);
    /// stream events waiting to be handed out make it zero too, and so do
    /// ended streams' fds waiting to be closed (the next wait closes them).
    pub fn backend_timeout(&mut self) -> Option<Duration> {
        if self.pending.is_empty() && self.to_close.is_empty() {
            self.core.backend_timeout()
        } else {
            Some(Duration::ZERO)
        }
    }
}
