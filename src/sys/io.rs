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

/// Reads and drops what a non-blocking fd has received, up to 1 MiB (a peer
/// that keeps sending is not waited for).
pub fn discard_input(fd: RawFd) {
    let mut sink = [0u8; 16 << 10];
    for _ in 0..64 {
        match read(fd, &mut sink) {
            Ok(n) if n > 0 => {}
            Err(libc::EINTR) => {}
            _ => return,
        }
    }
}

/// Whether `fd` was opened for writing only (a pipe's write end).
pub fn is_write_only(fd: RawFd) -> bool {
    // SAFETY: plain fcntl call; an error answers false.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    flags >= 0 && flags & libc::O_ACCMODE == libc::O_WRONLY
}

/// Writes from several buffers in one call, as [`write`] does from one:
/// `sendmsg` with MSG_NOSIGNAL on a socket, `writev` on anything else.
pub fn write_vectored(fd: RawFd, bufs: &[std::io::IoSlice<'_>], socket: bool) -> SysResult<usize> {
    // IoSlice is an iovec on Unix (std guarantees the layout).
    let iov = bufs.as_ptr() as *mut libc::iovec;
    let count = bufs.len().min(libc::UIO_MAXIOV as usize);
    // SAFETY: `iov` points to `count` valid iovecs whose buffers are valid
    // for reads; the kernel only reads them. The msghdr names no address.
    let n = unsafe {
        if socket {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov;
            msg.msg_iovlen = count as _;
            libc::syscall(libc::SYS_sendmsg, fd, &msg, libc::MSG_NOSIGNAL)
        } else {
            libc::syscall(libc::SYS_writev, fd, iov, count)
        }
    };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as usize)
    }
}
