//! Unix-domain stream sockets: addresses (a filesystem path or a Linux
//! abstract name), listening, connecting, peer credentials, and passing
//! fds (SCM_RIGHTS).

use std::ffi::CString;
use std::os::fd::RawFd;

use super::socket::socket_family;
use super::{check, errno, Fd, SysResult};

/// The most fds one message carries (the kernel's SCM_MAX_FD).
pub const MAX_FDS_PER_MESSAGE: usize = 253;

/// The longest name: `sun_path` less the NUL a path ends with (or the NUL
/// an abstract name starts with).
pub const MAX_UNIX_NAME: usize = 107;

/// A Unix-domain socket address as the kernel takes it.
#[derive(Clone, Copy)]
pub struct UnixAddr {
    addr: libc::sockaddr_un,
    len: libc::socklen_t,
}

impl UnixAddr {
    /// A filesystem path (non-empty, no NUL, at most [`MAX_UNIX_NAME`]
    /// bytes: ENAMETOOLONG beyond), or with `abstract_name` a name in
    /// Linux's abstract namespace (no file; gone with the last socket).
    pub fn new(name: &[u8], abstract_name: bool) -> SysResult<UnixAddr> {
        if name.is_empty() || name.contains(&0) {
            return Err(libc::EINVAL);
        }
        if name.len() > MAX_UNIX_NAME {
            return Err(libc::ENAMETOOLONG);
        }
        // SAFETY: sockaddr_un is plain data; zeroed is a valid empty address.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let start = usize::from(abstract_name);
        for (slot, &byte) in addr.sun_path[start..].iter_mut().zip(name) {
            *slot = byte as libc::c_char;
        }
        // A path counts its NUL; an abstract name is exactly its bytes
        // after the leading NUL.
        let path_offset = std::mem::size_of::<libc::sa_family_t>();
        let len = path_offset + 1 + name.len();
        Ok(UnixAddr {
            addr,
            len: len as libc::socklen_t,
        })
    }

    pub fn is_abstract(&self) -> bool {
        self.addr.sun_path[0] == 0
    }

    /// The filesystem path (None for an abstract name).
    fn path(&self) -> Option<CString> {
        if self.is_abstract() {
            return None;
        }
        let bytes: Vec<u8> = self.addr.sun_path.iter().map(|&c| c as u8).collect();
        let end = bytes.iter().position(|&b| b == 0)?;
        CString::new(&bytes[..end]).ok()
    }

    fn as_ptr(&self) -> *const libc::sockaddr {
        &self.addr as *const libc::sockaddr_un as *const libc::sockaddr
    }
}

fn unix_socket() -> SysResult<Fd> {
    // SAFETY: plain syscall returning a new fd we own.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    Ok(Fd(fd))
}

/// The socket file a listener bound, removed when the listener ends if it
/// is still that file (same device and inode) and this is the process that
/// bound it: a child that inherited the listener, or a later server that
/// bound the path anew, keeps its file.
pub struct BoundPath {
    path: CString,
    dev: libc::dev_t,
    ino: libc::ino_t,
    pid: libc::pid_t,
}

fn lstat(path: &CString) -> SysResult<libc::stat> {
    // SAFETY: stat is plain data, filled by lstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated; `st` is writable.
    check(unsafe { libc::lstat(path.as_ptr(), &mut st) })?;
    Ok(st)
}

impl Drop for BoundPath {
    fn drop(&mut self) {
        // SAFETY: getpid has no preconditions.
        if unsafe { libc::getpid() } != self.pid {
            return;
        }
        if let Ok(st) = lstat(&self.path) {
            if st.st_dev == self.dev && st.st_ino == self.ino {
                // SAFETY: `path` is NUL-terminated.
                unsafe { libc::unlink(self.path.as_ptr()) };
            }
        }
    }
}

/// Removes the socket file at `path` if nobody listens on it any more
/// (a connect is refused). Anything else there (a live socket, a file that
/// is not a socket) stays, and EADDRINUSE is the answer.
fn remove_stale(path: &CString) -> SysResult<()> {
    let st = match lstat(path) {
        Ok(st) => st,
        Err(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(libc::EADDRINUSE);
    }
    let addr = UnixAddr::new(path.as_bytes(), false)?;
    let (_probe, result) = unix_connect(&addr)?;
    match result {
        Err(libc::ECONNREFUSED) => {
            // SAFETY: `path` is NUL-terminated.
            match check(unsafe { libc::unlink(path.as_ptr()) }) {
                Ok(_) | Err(libc::ENOENT) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Ok(()) | Err(libc::EAGAIN) => Err(libc::EADDRINUSE),
        Err(e) => Err(e),
    }
}

/// A non-blocking listening Unix-domain socket on `addr`. With
/// `remove_stale`, a socket file nobody listens on is removed first.
/// Returns the socket and, for a path, what removes its file at the end.
pub fn unix_listen(
    addr: &UnixAddr,
    backlog: i32,
    remove_stale_file: bool,
) -> SysResult<(Fd, Option<BoundPath>)> {
    let path = addr.path();
    if let (Some(path), true) = (&path, remove_stale_file) {
        remove_stale(path)?;
    }
    let fd = unix_socket()?;
    // SAFETY: the address is valid for its length.
    check(unsafe { libc::bind(fd.raw(), addr.as_ptr(), addr.len) })?;
    let bound = match path {
        Some(path) => {
            let st = lstat(&path)?;
            Some(BoundPath {
                path,
                dev: st.st_dev,
                ino: st.st_ino,
                // SAFETY: getpid has no preconditions.
                pid: unsafe { libc::getpid() },
            })
        }
        None => None,
    };
    // SAFETY: plain syscall on our socket.
    check(unsafe { libc::listen(fd.raw(), backlog) })?;
    Ok((fd, bound))
}

/// A new non-blocking socket and how its connect to `addr` went: a Unix
/// socket connects at once or fails at once (EAGAIN when the listener's
/// backlog is full, ECONNREFUSED when nobody listens, ENOENT...).
pub fn unix_connect(addr: &UnixAddr) -> SysResult<(Fd, SysResult<()>)> {
    let fd = unix_socket()?;
    // SAFETY: the address is valid for its length.
    let result = match check(unsafe { libc::connect(fd.raw(), addr.as_ptr(), addr.len) }) {
        Ok(_) | Err(libc::EINPROGRESS) => Ok(()),
        Err(e) => Err(e),
    };
    Ok((fd, result))
}

/// Whether `fd` is a Unix-domain socket: ENOTSOCK for anything that is no
/// socket, EOPNOTSUPP for a socket of another family.
pub fn check_unix_socket(fd: RawFd) -> SysResult<()> {
    if socket_family(fd)? == libc::AF_UNIX {
        Ok(())
    } else {
        Err(libc::EOPNOTSUPP)
    }
}

/// The credentials of the peer process of a connected Unix-domain socket,
/// as they were when it connected (or made the socket pair): pid, uid, gid.
pub fn peer_credentials(fd: RawFd) -> SysResult<(i32, u32, u32)> {
    check_unix_socket(fd)?;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: room for one ucred, whose size is passed.
    check(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut libc::ucred as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok((cred.pid, cred.uid, cred.gid))
}

/// Room for the control message of [`MAX_FDS_PER_MESSAGE`] fds, aligned as
/// cmsghdr needs.
#[repr(C, align(8))]
struct FdControl([u8; 16 + 4 * MAX_FDS_PER_MESSAGE + 4]);

/// Sends `bytes` (at least one) with `fds` attached to the first of them
/// (SCM_RIGHTS); never SIGPIPE. Returns how many bytes went: when at least
/// one did, so did the fds.
pub fn send_with_fds(fd: RawFd, bytes: &[u8], fds: &[RawFd]) -> SysResult<usize> {
    debug_assert!(!bytes.is_empty() && !fds.is_empty() && fds.len() <= MAX_FDS_PER_MESSAGE);
    let mut control = FdControl([0; 16 + 4 * MAX_FDS_PER_MESSAGE + 4]);
    let fds_len = std::mem::size_of_val(fds) as u32;
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is an empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr() as *mut libc::c_void;
    // SAFETY: CMSG_SPACE is arithmetic.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(fds_len) } as usize;
    // SAFETY: the control buffer is aligned and has room for one header
    // and MAX_FDS_PER_MESSAGE fds (CMSG_SPACE of them fits in it), so
    // CMSG_FIRSTHDR is non-null and CMSG_DATA has `fds_len` bytes.
    let sent = unsafe {
        let header = libc::CMSG_FIRSTHDR(&msg);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(fds_len) as usize;
        std::ptr::copy_nonoverlapping(
            fds.as_ptr() as *const u8,
            libc::CMSG_DATA(header),
            fds_len as usize,
        );
        libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL)
    };
    if sent < 0 {
        Err(errno())
    } else {
        Ok(sent as usize)
    }
}

/// Reads into `buf`, taking the fds that came with the bytes (close-on-exec)
/// into `fds`. Returns the bytes read (0: end-of-file) and how many fds.
/// The kernel closes fds that did not fit, and those sent with bytes read
/// by a plain `read`.
pub fn recv_with_fds(
    fd: RawFd,
    buf: &mut [u8],
    fds: &mut [RawFd; MAX_FDS_PER_MESSAGE],
) -> SysResult<(usize, usize)> {
    let mut control = FdControl([0; 16 + 4 * MAX_FDS_PER_MESSAGE + 4]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is an empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = control.0.len();
    // SAFETY: the buffers are valid for writes of the lengths given.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(errno());
    }
    let mut count = 0;
    // SAFETY: the kernel wrote `msg_controllen` bytes of well-formed
    // control messages into `control`, which CMSG_FIRSTHDR and CMSG_NXTHDR
    // walk within; each SCM_RIGHTS payload is an array of ints.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&msg);
        while !header.is_null() {
            let h = &*header;
            if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_RIGHTS {
                let payload = h.cmsg_len - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(header) as *const RawFd;
                for i in 0..payload / std::mem::size_of::<RawFd>() {
                    let received = data.add(i).read_unaligned();
                    if count < fds.len() {
                        fds[count] = received;
                        count += 1;
                    } else {
                        libc::close(received);
                    }
                }
            }
            header = libc::CMSG_NXTHDR(&msg, header);
        }
    }
    Ok((n as usize, count))
}

/// A duplicate of `fd` that the caller owns (close-on-exec): EBADF for an
/// fd that is not open.
pub fn duplicate(fd: RawFd) -> SysResult<Fd> {
    if fd < 0 {
        return Err(libc::EBADF);
    }
    // SAFETY: plain fcntl; the new fd is ours.
    let new = check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
    Ok(Fd(new))
}
