//! Sockets: addresses, listening, connecting, accepting, options.

use std::os::fd::RawFd;

use super::{check, errno, Fd, SysResult};

/// A socket address, IPv4 or IPv6, as the kernel takes it.
#[derive(Clone, Copy)]
pub struct SockAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl SockAddr {
    /// The first address `host` resolves to (numeric addresses never touch
    /// the network; names go through getaddrinfo, which may block). An empty
    /// host means every local IPv4 address.
    pub fn resolve(host: &std::ffi::CStr, port: u16) -> SysResult<SockAddr> {
        let host = if host.is_empty() { c"0.0.0.0" } else { host };
        // SAFETY: addrinfo is plain data; zeroed is a valid empty hint.
        let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
        hints.ai_family = libc::AF_UNSPEC;
        hints.ai_socktype = libc::SOCK_STREAM;
        hints.ai_flags = libc::AI_PASSIVE;
        let mut list: *mut libc::addrinfo = std::ptr::null_mut();
        // SAFETY: `host` is NUL-terminated; `list` is freed below.
        let ret = unsafe { libc::getaddrinfo(host.as_ptr(), std::ptr::null(), &hints, &mut list) };
        if ret != 0 || list.is_null() {
            return Err(match ret {
                libc::EAI_SYSTEM => errno(),
                libc::EAI_MEMORY => libc::ENOMEM,
                libc::EAI_AGAIN => libc::EAGAIN,
                _ => libc::EADDRNOTAVAIL,
            });
        }
        // SAFETY: getaddrinfo returned a list whose first entry has an
        // address of ai_addrlen bytes (at most a sockaddr_storage).
        let addr = unsafe {
            let first = &*list;
            let mut addr = SockAddr {
                storage: std::mem::zeroed(),
                len: first.ai_addrlen,
            };
            std::ptr::copy_nonoverlapping(
                first.ai_addr as *const u8,
                &mut addr.storage as *mut _ as *mut u8,
                (first.ai_addrlen as usize).min(std::mem::size_of::<libc::sockaddr_storage>()),
            );
            libc::freeaddrinfo(list);
            addr
        };
        Ok(addr.with_port(port))
    }

    fn with_port(mut self, port: u16) -> SockAddr {
        let storage = &mut self.storage as *mut libc::sockaddr_storage;
        // SAFETY: the family tells which sockaddr the storage holds.
        unsafe {
            match self.storage.ss_family as i32 {
                libc::AF_INET => (*(storage as *mut libc::sockaddr_in)).sin_port = port.to_be(),
                libc::AF_INET6 => (*(storage as *mut libc::sockaddr_in6)).sin6_port = port.to_be(),
                _ => {}
            }
        }
        self
    }

    pub(crate) fn family(&self) -> i32 {
        self.storage.ss_family as i32
    }

    pub(crate) fn as_ptr(&self) -> *const libc::sockaddr {
        &self.storage as *const _ as *const libc::sockaddr
    }

    pub(crate) fn len(&self) -> libc::socklen_t {
        self.len
    }
}

pub(super) fn set_int_option(fd: RawFd, level: i32, name: i32, value: i32) -> SysResult<()> {
    // SAFETY: passes a valid int of the stated size.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    })
    .map(drop)
}

pub(super) fn int_option(fd: RawFd, level: i32, name: i32) -> SysResult<i32> {
    let mut value: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: room for one int, whose size is passed.
    check(unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            &mut value as *mut i32 as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok(value)
}

fn new_socket(family: i32) -> SysResult<Fd> {
    // SAFETY: plain syscall returning a new fd we own.
    let fd = check(unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    Ok(Fd(fd))
}

/// A non-blocking listening TCP socket on `addr` (port 0: any free port).
pub fn tcp_listen(addr: &SockAddr, backlog: i32, reuse_port: bool) -> SysResult<Fd> {
    let fd = new_socket(addr.family())?;
    set_int_option(fd.raw(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if reuse_port {
        set_int_option(fd.raw(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    // SAFETY: the address is valid for its length.
    check(unsafe { libc::bind(fd.raw(), addr.as_ptr(), addr.len) })?;
    // SAFETY: plain syscall on our socket.
    check(unsafe { libc::listen(fd.raw(), backlog) })?;
    Ok(fd)
}

/// Starts a non-blocking connect to `addr`. The connection is under way when
/// this returns (writable once it is done; then `take_socket_error` tells how).
pub fn tcp_connect(addr: &SockAddr) -> SysResult<Fd> {
    let fd = new_socket(addr.family())?;
    // SAFETY: the address is valid for its length.
    match check(unsafe { libc::connect(fd.raw(), addr.as_ptr(), addr.len) }) {
        Ok(_) | Err(libc::EINPROGRESS) => Ok(fd),
        Err(e) => Err(e),
    }
}

/// Accepts one connection, non-blocking and close-on-exec.
#[inline]
pub fn accept(listener: RawFd) -> SysResult<RawFd> {
    // SAFETY: no peer address is asked for; the new fd is the caller's.
    check(unsafe {
        libc::accept4(
            listener,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    })
}

/// The local port of a bound socket.
pub fn local_port(fd: RawFd) -> SysResult<u16> {
    // SAFETY: sockaddr_storage is plain data with room for any address.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `addr` has `len` bytes.
    check(unsafe { libc::getsockname(fd, &mut addr as *mut _ as *mut libc::sockaddr, &mut len) })?;
    let port = match addr.ss_family as i32 {
        // SAFETY: the family tells which sockaddr the storage holds.
        libc::AF_INET => unsafe { (*(&addr as *const _ as *const libc::sockaddr_in)).sin_port },
        // SAFETY: as above.
        libc::AF_INET6 => unsafe { (*(&addr as *const _ as *const libc::sockaddr_in6)).sin6_port },
        _ => return Err(libc::EAFNOSUPPORT),
    };
    Ok(u16::from_be(port))
}

/// The error a socket holds (0 for none), cleared by reading it: how a
/// non-blocking connect ended.
pub fn take_socket_error(fd: RawFd) -> SysResult<i32> {
    int_option(fd, libc::SOL_SOCKET, libc::SO_ERROR)
}

/// The address family of a socket (AF_INET, AF_INET6, AF_UNIX...).
pub fn socket_family(fd: RawFd) -> SysResult<i32> {
    int_option(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)
}

/// Whether a socket is a datagram socket (SOCK_DGRAM).
pub fn is_datagram_socket(fd: RawFd) -> SysResult<bool> {
    Ok(int_option(fd, libc::SOL_SOCKET, libc::SO_TYPE)? == libc::SOCK_DGRAM)
}

/// Whether `fd` is a socket (sends take MSG_NOSIGNAL) or something else,
/// such as a pipe (writes take `write`).
pub fn is_socket(fd: RawFd) -> bool {
    int_option(fd, libc::SOL_SOCKET, libc::SO_TYPE).is_ok()
}

/// Sends small writes at once (TCP only; an error elsewhere is harmless).
pub fn set_nodelay(fd: RawFd) {
    let _ = set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
}

pub fn set_nonblocking(fd: RawFd) -> SysResult<()> {
    // SAFETY: plain fcntl calls on an fd the caller handed over.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: as above.
        check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    }
    Ok(())
}
/// Shuts down the writing side of a socket: the peer reads end-of-file.
pub fn shutdown_write(fd: RawFd) -> SysResult<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::shutdown(fd, libc::SHUT_WR) }).map(drop)
}
