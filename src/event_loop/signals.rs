//! Signal watchers: signals delivered as events, read through a signalfd.

use std::os::fd::RawFd;

use super::registrations::{is_registered, token};
use super::EventLoop;
use crate::sys::{self, Epoll, Errno, SigSet, SignalFd, READ};

impl<D: Copy + Default> EventLoop<D> {
    /// Delivers `signo` as an event instead of its usual action. The signal
    /// is blocked in the calling thread and read through a signalfd.
    pub fn watch_signal(&mut self, signo: i32, data: D) -> Result<(), Errno> {
        let registrations = &self.registrations;
        let taken = |fd| is_registered(registrations, fd);
        self.signals.watch(&self.epoll, signo, data, taken)
    }

    pub fn unwatch_signal(&mut self, signo: i32) -> Result<(), Errno> {
        self.signals.unwatch(signo)
    }
}

pub(super) struct Signals<D> {
    handlers: Vec<Option<D>>,
    pub(super) watched: usize,
    mask: SigSet,
    /// Signals that were unblocked before we watched them, to unblock again.
    blocked_by_us: SigSet,
    fd: Option<SignalFd>,
    pending: Vec<i32>,
    cursor: usize,
}

impl<D: Copy> Signals<D> {
    pub(super) fn new() -> Self {
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

    /// `taken`: the numbers the signalfd, if this makes it, keeps off.
    pub(super) fn watch(
        &mut self,
        epoll: &Epoll,
        signo: i32,
        data: D,
        taken: impl Fn(RawFd) -> bool,
    ) -> Result<(), Errno> {
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
                let fd = SignalFd::new(&mask, taken)?;
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

    pub(super) fn unwatch(&mut self, signo: i32) -> Result<(), Errno> {
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

    pub(super) fn read_pending(&mut self, fd: RawFd) {
        if let Some(signalfd) = self.fd.as_ref().filter(|s| s.raw() == fd) {
            signalfd.read_all(&mut self.pending);
        }
    }

    pub(super) fn has_pending(&self) -> bool {
        self.cursor < self.pending.len()
    }

    pub(super) fn next_pending(&mut self) -> Option<(i32, D)> {
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

    pub(super) fn reinit(
        &mut self,
        epoll: &Epoll,
        taken: impl Fn(RawFd) -> bool,
    ) -> Result<(), Errno> {
        if self.fd.is_some() {
            let fd = SignalFd::new(&self.mask, taken)?;
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
