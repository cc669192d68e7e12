//! Raw Linux syscalls behind thin safe wrappers: epoll, eventfd, signalfd,
//! timerfd, the signal mask, sockets (TCP in `socket.rs`, UDP in `udp.rs`,
//! Unix-domain in `unix_socket.rs`) and plain reads and writes. Nothing here
//! knows about loops or callbacks.
//!
//! Errors are plain positive errno values ([`Errno`]); the layers above turn
//! them into whatever their callers expect. The module is the crate's own:
//! its safe wrappers (`close`, `read`, `write`) take any fd number, which is
//! sound inside the crate (it closes and reads only fds it owns) and would not
//! be in a public API.

mod epoll;
mod eventfd;
mod io;
mod process;
mod raw;
mod resolve;
mod signals;
mod socket;
mod udp;
mod unix_socket;

pub use epoll::{epoll_entries, hide_proc_for_tests, Epoll, EpollEntry, Events, TimerFd};
pub use eventfd::{eventfd_drain, eventfd_new, eventfd_notify};
pub use io::{
    check_open, close, discard_input, file_id, is_write_only, open_files_limit, read, write,
    write_vectored, Discarded, FileId,
};
pub use process::{
    find_program, kill_and_reap, kill_and_reap_pid, kill_pid, pidfd_open, pidfd_send_signal, pipe,
    spawn, wait_pid, wait_pid_ended, wait_pidfd, with_signals_blocked, ChildStdio, Spawn,
};
pub use resolve::{gai_strerror, getaddrinfo, numeric_addr, AddrInfo, AddrList, GaiError, Hints};
pub(crate) use resolve::{AI_FLAGS, EAI_CANCELED};
pub use signals::{
    ignore_sigpipe_by_default, set_signal_blocked, signal_is_watchable, SigSet, SignalFd,
};
pub use socket::{
    accept, is_datagram_socket, is_socket, local_port, set_nodelay, set_nonblocking,
    shutdown_write, socket_family, take_socket_error, tcp_connect, tcp_listen, SockAddr,
};
pub use udp::{
    multicast_membership, recvmmsg, sendmmsg, sendto, set_multicast_interface, set_udp_option,
    udp_bind, udp_connect, Interface, UdpOption, UdpOptions,
};
pub use unix_socket::{
    check_unix_socket, duplicate, peer_credentials, recv_with_fds, send_with_fds, unix_connect,
    unix_listen, BoundPath, UnixAddr, MAX_FDS_PER_MESSAGE,
};

use std::os::fd::RawFd;

/// A positive errno value.
pub type Errno = i32;
pub type SysResult<T> = Result<T, Errno>;

pub(crate) fn errno() -> Errno {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// An fd the loop owns. Unlike `OwnedFd` it never aborts the process when the
/// fd was closed behind our back (a caller's mistake must not crash us).
pub struct Fd(pub(crate) RawFd);

impl Fd {
    pub fn raw(&self) -> RawFd {
        self.0
    }

    /// Gives up ownership without closing: for an fd kept as a plain number.
    pub fn into_raw(self) -> RawFd {
        std::mem::ManuallyDrop::new(self).0
    }

    /// Moves the fd to the lowest free number above its own that `taken`
    /// does not claim, if its own is claimed. An owner that matches events
    /// or calls to its fds by number passes the numbers it already uses
    /// that the kernel may give out (those of fds closed behind its back).
    /// On an error the fd keeps the number it had reached.
    pub fn renumber_clear_of(&mut self, taken: impl Fn(RawFd) -> bool) -> SysResult<()> {
        while taken(self.0) {
            // SAFETY: duplicates an fd we own into a new one we own; the old
            // one is closed when `self` is replaced.
            let new = check(unsafe { libc::fcntl(self.0, libc::F_DUPFD_CLOEXEC, self.0 + 1) })?;
            *self = Fd(new);
        }
        Ok(())
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        close(self.0);
    }
}

/// Has `prepare` run in the parent just before every fork() (from the C
/// library, any thread), and `parent` and `child` in each just after, in
/// the thread that forked. glibc drops them if this library is unloaded
/// (pthread_atfork passes the library's own handle). They do not run for a
/// process made some other way (a raw clone(), vfork(), posix_spawn()).
pub fn at_fork(
    prepare: unsafe extern "C" fn(),
    parent: unsafe extern "C" fn(),
    child: unsafe extern "C" fn(),
) -> SysResult<()> {
    // SAFETY: three plain functions with the signature pthread_atfork calls.
    match unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) } {
        0 => Ok(()),
        e => Err(e),
    }
}

/// Turns a `-1 / errno` return into a `Result`.
pub(crate) fn check(ret: libc::c_int) -> SysResult<libc::c_int> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

// evloop's readiness bits (the values of the public EVL_* constants) are
// epoll's own, so that an event's bits need no translation on the way to the
// callback: this runs once per event.
pub const READ: u32 = libc::EPOLLIN as u32;
pub const WRITE: u32 = libc::EPOLLOUT as u32;
pub const ERROR: u32 = libc::EPOLLERR as u32;
pub const HUP: u32 = libc::EPOLLHUP as u32;
pub const RDHUP: u32 = libc::EPOLLRDHUP as u32;
pub const EDGE: u32 = libc::EPOLLET as u32;
pub const ONESHOT: u32 = libc::EPOLLONESHOT as u32;

/// Nanoseconds on CLOCK_MONOTONIC (a vDSO call, no syscall).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is valid; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
