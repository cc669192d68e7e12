//! The registration table: one slot per fd number, each with the epoll
//! token that tells a current event from one of a registration that ended.
//!
//! Why not the generational slab that names timers, streams and listeners:
//! here the kernel picks the slot (the fd number), so there is no free list
//! to draw from, and an fd closed without `unregister` is re-registered over
//! its old slot. The token has the slab's layout all the same (generation in
//! the high half, slot in the low half), with one generation counter for the
//! whole table, so that a new registration on a reused fd number never has
//! the token of the old one.

use std::os::fd::RawFd;

use super::fork;
use super::EventLoop;
use super::VALID_INTEREST;
use crate::sys::{self, Errno, EDGE, ERROR, HUP, ONESHOT, RDHUP, READ, WRITE};

#[derive(Clone, Copy)]
pub(super) struct Registration<D> {
    /// The epoll token of this registration (its generation and fd): an
    /// event with another token is for a registration that has ended. A
    /// vacant slot has VACANT_TOKEN, which no event carries (generation
    /// VACANT is never given out).
    pub(super) token: u64,
    /// The interest as given (options included) plus the always-reported
    /// readiness bits: masking an event with it keeps what is worth
    /// reporting (epoll never reports the option bits).
    pub(super) wanted: u32,
    /// The fork depth of the process that made `token` (see `fork.rs`):
    /// tells, in the child of a fork, a registration made in the child
    /// itself from one the parent had.
    pub(super) born: u32,
    pub(super) data: D,
}

const VACANT: u32 = u32::MAX;
const VACANT_TOKEN: u64 = (VACANT as u64) << 32;

impl<D: Default> Registration<D> {
    pub(super) fn vacant() -> Self {
        Registration {
            token: VACANT_TOKEN,
            wanted: 0,
            born: 0,
            data: D::default(),
        }
    }

    pub(super) fn is_vacant(&self) -> bool {
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
pub(super) fn wanted(interest: u32) -> u32 {
    let rdhup = if interest & READ != 0 { RDHUP } else { 0 };
    (interest & !RDHUP) | ERROR | HUP | rdhup
}

/// The interest a registration was given, from its `wanted` bits.
pub(super) fn interest_of(wanted: u32) -> u32 {
    wanted & (READ | WRITE | EDGE | ONESHOT)
}

/// Registration slots made at creation (like ae.c's setsize, but the table
/// still grows past it): registering an fd below this never touches the
/// allocator. 8192 slots of 32 bytes (for the C layer) is 256 KiB.
pub(super) const INITIAL_SLOTS: usize = 8192;

/// epoll token: generation in the high half, fd in the low half. Generation 0
/// marks the loop's own fds.
pub(super) fn token(generation: u32, fd: RawFd) -> u64 {
    (generation as u64) << 32 | fd as u32 as u64
}

impl<D: Copy + Default> EventLoop<D> {
    /// Watches `fd` for `interest` (READ, WRITE, EDGE, ONESHOT).
    ///
    /// An fd that is still registered gives EEXIST. One that was closed
    /// without `unregister` (so the kernel dropped it) is registered afresh.
    ///
    /// Inlined into its callers: setting up an fd is a hot path of servers
    /// that accept and close all day.
    #[inline(always)]
    pub fn register(&mut self, fd: RawFd, interest: u32, data: D) -> Result<(), Errno> {
        if interest & !VALID_INTEREST != 0 {
            return Err(libc::EINVAL);
        }
        // A negative fd becomes an index past any table: checked on that cold path.
        let Some(slot) = self.registrations.get_mut(fd as usize) else {
            return self.register_past_table(fd, interest, data);
        };
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
            born: fork::depth(),
            data,
        };
        Ok(())
    }

    /// `register` of an fd past the end of the table: the table grows first,
    /// once the kernel has said the fd is open, so that a number that is
    /// not (INT_MAX, say) costs nothing but EBADF. It doubles, but never
    /// past the number of fds RLIMIT_NOFILE lets the process open (unless
    /// `fd` itself is past it: one opened before the limit was lowered).
    #[cold]
    #[inline(never)]
    fn register_past_table(&mut self, fd: RawFd, interest: u32, data: D) -> Result<(), Errno> {
        if fd < 0 {
            return Err(libc::EINVAL);
        }
        sys::check_open(fd)?;
        let needed = fd as usize + 1;
        let len = needed
            .next_power_of_two()
            .min(sys::open_files_limit().max(needed));
        let more = len - self.registrations.len();
        // An fd can be open at a number whose table would not fit in memory
        // (with RLIMIT_NOFILE raised near fs.nr_open): ENOMEM, not an abort.
        if self.registrations.try_reserve_exact(more).is_err() {
            return Err(libc::ENOMEM);
        }
        self.registrations.resize(len, Registration::vacant());
        self.register(fd, interest, data)
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
            slot.born = fork::depth();
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
}

/// Whether a registration holds the number `fd`, also one whose fd was
/// closed without `unregister`: the kernel may give that number out again,
/// and the loop's own fds keep off it, or `modify` or `unregister` of the
/// old registration would reach them.
pub(super) fn is_registered<D: Default>(registrations: &[Registration<D>], fd: RawFd) -> bool {
    // A negative fd becomes an index past the table: None.
    registrations
        .get(fd as usize)
        .is_some_and(|slot| !slot.is_vacant())
}

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
