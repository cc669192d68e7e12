//! Reading, writing and closing fds.

use std::os::fd::RawFd;

use super::raw::syscall;
use super::SysResult;

// read and write are the syscall instruction itself (`raw.rs`) rather than
// glibc's read() and send(): those are cancellation points, and in a process
// with threads each call pays for pthread cancellation bookkeeping (about 30
// instructions, as much as the call itself). A non-blocking fd never waits,
// so there is nothing to cancel.

/// Reads into `buf`; Ok(0) is end-of-file.
#[inline]
pub fn read(fd: RawFd, buf: &mut [u8]) -> SysResult<usize> {
    let args = [fd as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0];
    // SAFETY: `buf` is valid for writes of its length.
    unsafe { syscall(libc::SYS_read, args) }
}

/// Writes from `buf`: `send` with MSG_NOSIGNAL on a socket, so that a peer
/// that has gone gives EPIPE instead of killing the process with SIGPIPE;
/// `write` on anything else.
#[inline]
pub fn write(fd: RawFd, buf: &[u8], socket: bool) -> SysResult<usize> {
    let (ptr, len) = (buf.as_ptr(), buf.len());
    let (fd, ptr) = (fd as usize, ptr as usize);
    // SAFETY: `buf` is valid for reads of its length; no address is given.
    unsafe {
        if socket {
            let flags = libc::MSG_NOSIGNAL as usize;
            syscall(libc::SYS_sendto, [fd, ptr, len, flags, 0, 0])
        } else {
            syscall(libc::SYS_write, [fd, ptr, len, 0, 0, 0])
        }
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

/// Ok if `fd` is open, EBADF if not; asks the kernel, changes nothing.
pub fn check_open(fd: RawFd) -> SysResult<()> {
    // SAFETY: F_GETFD only reads the fd's flags.
    super::check(unsafe { libc::fcntl(fd, libc::F_GETFD) }).map(drop)
}

/// How many fds the process may have open (RLIMIT_NOFILE's soft limit):
/// every fd it can open now is below this number.
pub fn open_files_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit, which `limit` is.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return usize::MAX;
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

/// Whether `fd` was opened for writing only (a pipe's write end).
pub fn is_write_only(fd: RawFd) -> bool {
    // SAFETY: plain fcntl call; an error answers false.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    flags >= 0 && flags & libc::O_ACCMODE == libc::O_WRONLY
}

/// What names an open file to the kernel: its device and inode, as fstat
/// gives them and as /proc writes them (see [`super::epoll_entries`]). Two
/// fds of one file have the same; so do fds of different files that have
/// no inode of their own (eventfds, timerfds, signalfds, epoll sets: the
/// kernel's "anonymous inode" is one for all of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    pub major: u32,
    pub minor: u32,
    pub ino: u64,
}

/// The [`FileId`] of what `fd` names; EBADF for a closed fd.
pub fn file_id(fd: RawFd) -> SysResult<FileId> {
    // SAFETY: fstat writes a `stat` into the zeroed one it is given.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is valid for writes for the call.
    super::check(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(FileId {
        major: libc::major(st.st_dev),
        minor: libc::minor(st.st_dev),
        ino: st.st_ino,
    })
}

/// Writes from several buffers in one call, as [`write`] does from one:
/// `sendmsg` with MSG_NOSIGNAL on a socket, `writev` on anything else.
pub fn write_vectored(fd: RawFd, bufs: &[std::io::IoSlice<'_>], socket: bool) -> SysResult<usize> {
    // IoSlice is an iovec on Unix (std guarantees the layout).
    let iov = bufs.as_ptr() as *mut libc::iovec;
    let count = bufs.len().min(libc::UIO_MAXIOV as usize);
    // SAFETY: `iov` points to `count` valid iovecs whose buffers are valid
    // for reads; the kernel only reads them. The msghdr names no address.
    unsafe {
        if socket {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov;
            msg.msg_iovlen = count as _;
            let (msg, flags) = (&msg as *const libc::msghdr, libc::MSG_NOSIGNAL);
            syscall(
                libc::SYS_sendmsg,
                [fd as usize, msg as usize, flags as usize, 0, 0, 0],
            )
        } else {
            syscall(
                libc::SYS_writev,
                [fd as usize, iov as usize, count, 0, 0, 0],
            )
        }
    }
}
