//! Reading, writing and closing fds.

use std::os::fd::RawFd;

use super::{errno, SysResult};

// read and write go through syscall(2) rather than glibc's read() and
// send(): those are cancellation points, and in a process with threads each
// call pays for pthread cancellation bookkeeping (about 30 instructions, as
// much as the call itself). A non-blocking fd never waits, so there is
// nothing to cancel.

/// Reads into `buf`; Ok(0) is end-of-file.
#[inline]
pub fn read(fd: RawFd, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::syscall(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()) };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as usize)
    }
}

/// Writes from `buf`: `send` with MSG_NOSIGNAL on a socket, so that a peer
/// that has gone gives EPIPE instead of killing the process with SIGPIPE;
/// `write` on anything else.
#[inline]
pub fn write(fd: RawFd, buf: &[u8], socket: bool) -> SysResult<usize> {
    let (ptr, len) = (buf.as_ptr(), buf.len());
    // SAFETY: `buf` is valid for reads of its length; no address is given.
    let n = unsafe {
        if socket {
            let none = std::ptr::null::<libc::sockaddr>();
            libc::syscall(libc::SYS_sendto, fd, ptr, len, libc::MSG_NOSIGNAL, none, 0)
        } else {
            libc::syscall(libc::SYS_write, fd, ptr, len)
        }
    };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as usize)
    }
}

pub fn close(fd: RawFd) {
    // SAFETY: the caller owns `fd` and never uses it again.
    unsafe { libc::close(fd) };
}

/// How [`discard_input`] stopped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Discarded {
    /// Nothing more to read for now (or the most one call reads was read):
    /// this many bytes were read.
    Drained(usize),
    /// End-of-file or an error: nothing more will come.
    Ended,
    /// More than the budget was read.
    OverBudget,
}

/// Reads and drops what a non-blocking fd has received, until it would
/// block, its end-of-file (or an error), more than `budget` bytes, or 1 MiB
/// in this call (a peer that keeps sending is not waited for).
pub fn discard_input(fd: RawFd, budget: usize) -> Discarded {
    let mut sink = [0u8; 16 << 10];
    let mut total = 0usize;
    for _ in 0..64 {
        match read(fd, &mut sink) {
            Ok(0) => return Discarded::Ended,
            Ok(n) => {
                total += n;
                if total > budget {
                    return Discarded::OverBudget;
                }
            }
            Err(libc::EINTR) => {}
            Err(libc::EAGAIN) => break,
            Err(_) => return Discarded::Ended,
        }
    }
    Discarded::Drained(total)
}

/// Whether `fd` was opened for writing only (a pipe's write end).
pub fn is_write_only(fd: RawFd) -> bool {
    // SAFETY: plain fcntl call; an error answers false.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    flags >= 0 && flags & libc::O_ACCMODE == libc::O_WRONLY
}
