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
