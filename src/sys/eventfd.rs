//! The eventfd doorbell: other threads and signal handlers wake a waiting loop.

use std::os::fd::RawFd;

use super::{check, Fd, SysResult};

/// A new non-blocking eventfd: the loop's doorbell for other threads and
/// signal handlers, at a number `taken` does not claim (see
/// [`Fd::renumber_clear_of`]). Returned raw because its owner swaps it
/// after `fork`.
pub fn eventfd_new(taken: impl Fn(RawFd) -> bool) -> SysResult<RawFd> {
    // SAFETY: plain syscall returning a new fd that we own.
    let mut fd = Fd(check(unsafe {
        libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)
    })?);
    fd.renumber_clear_of(taken)?;
    Ok(fd.into_raw())
}

/// Rings an eventfd. Async-signal-safe: one `write`, no allocation, no lock.
pub fn eventfd_notify(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64. A full counter (EAGAIN) still
    // leaves the eventfd readable, which is all a wake-up needs.
    unsafe { libc::write(fd, &one as *const u64 as *const libc::c_void, 8) };
}

/// Empties an eventfd's counter so it stops being readable.
pub fn eventfd_drain(fd: RawFd) {
    let mut count: u64 = 0;
    // SAFETY: reads at most 8 bytes into a valid u64; EAGAIN is fine.
    unsafe { libc::read(fd, &mut count as *mut u64 as *mut libc::c_void, 8) };
}
