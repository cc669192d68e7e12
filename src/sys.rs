//! Raw Linux syscalls behind thin safe wrappers: epoll, eventfd, signalfd,
//! timerfd and the signal mask. Nothing here knows about loops or callbacks.
//!
//! Errors are plain positive errno values ([`Errno`]); the layers above turn
//! them into whatever their callers expect.

use std::os::fd::RawFd;
use std::time::Duration;

/// A positive errno value.
pub type Errno = i32;
pub type SysResult<T> = Result<T, Errno>;

fn errno() -> Errno {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// An fd the loop owns. Unlike `OwnedFd` it never aborts the process when the
/// fd was closed behind our back (a caller's mistake must not crash us).
pub struct Fd(RawFd);

impl Fd {
    pub fn raw(&self) -> RawFd {
        self.0
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        close(self.0);
    }
}

/// Turns a `-1 / errno` return into a `Result`.
fn check(ret: libc::c_int) -> SysResult<libc::c_int> {
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

/// evloop interest bits to epoll's: the same, except that read interest also
/// asks for EPOLLRDHUP, so that a half-closed peer can be told apart from a
/// dead one. It is not asked for without read interest, where a half-closed
/// peer would otherwise wake a level-triggered loop forever.
#[inline]
fn to_epoll(interest: u32) -> u32 {
    let rdhup = if interest & READ != 0 { RDHUP } else { 0 };
    (interest & !RDHUP) | rdhup
}

/// Events returned by one wait: `(data, readiness bits)`.
pub struct Events {
    /// Holds exactly the events the kernel wrote in the last wait.
    buf: Vec<libc::epoll_event>,
}

impl Events {
    pub fn with_capacity(capacity: usize) -> Events {
        Events {
            buf: Vec::with_capacity(capacity.max(1)),
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// How many events one wait can return.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    #[inline]
    pub fn get(&self, i: usize) -> Option<(u64, u32)> {
        self.buf.get(i).map(|ev| (ev.u64, ev.events))
    }
}

/// An epoll set. Waits take a sub-millisecond timeout: `epoll_pwait2` where the
/// kernel has it, else (ENOSYS, as under valgrind 3.19) a timerfd in the set.
///
/// Data values whose high 32 bits are zero are reserved for the owner's
/// internal fds: the fallback timerfd's events come back with its fd number
/// as data, and the owner ignores internal data it does not recognise.
pub struct Epoll {
    fd: Fd,
    /// Fallback clock for kernels without epoll_pwait2, made on first need.
    timer: Option<TimerFd>,
    has_pwait2: bool,
}

impl Epoll {
    /// The epoll fd itself (readable while a registered fd is ready).
    pub fn raw(&self) -> RawFd {
        self.fd.raw()
    }

    pub fn new() -> SysResult<Epoll> {
        // SAFETY: plain syscall; the returned fd is owned by us alone.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Epoll {
            fd: Fd(fd),
            timer: None,
            has_pwait2: true,
        })
    }

    #[inline]
    fn ctl(&self, op: libc::c_int, fd: RawFd, interest: u32, data: u64) -> SysResult<()> {
        let mut ev = libc::epoll_event {
            events: to_epoll(interest),
            u64: data,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        check(unsafe { libc::epoll_ctl(self.fd.raw(), op, fd, &mut ev) }).map(drop)
    }

    /// Adds `fd` with evloop `interest` bits; `data` comes back with its events.
    #[inline]
    pub fn add(&self, fd: RawFd, interest: u32, data: u64) -> SysResult<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, interest, data)
    }

    pub fn modify(&self, fd: RawFd, interest: u32, data: u64) -> SysResult<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, interest, data)
    }

    #[inline]
    pub fn delete(&self, fd: RawFd) -> SysResult<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Waits for at most `max` events (`None` waits forever) into `events`.
    /// EINTR is returned as `Err(EINTR)`.
    pub fn wait(
        &mut self,
        events: &mut Events,
        max: usize,
        timeout: Option<Duration>,
    ) -> SysResult<()> {
        let max = max.clamp(1, events.buf.capacity()) as libc::c_int;
        events.buf.clear();
        let n = if self.has_pwait2 {
            match self.pwait2(events, max, timeout) {
                Err(libc::ENOSYS) => {
                    self.has_pwait2 = false;
                    self.wait_with_timerfd(events, max, timeout)?
                }
                other => other?,
            }
        } else {
            self.wait_with_timerfd(events, max, timeout)?
        };
        // SAFETY: the kernel initialised the first `n` (<= max <= capacity) events.
        unsafe { events.buf.set_len(n) };
        Ok(())
    }

    fn pwait2(
        &self,
        events: &mut Events,
        max: libc::c_int,
        timeout: Option<Duration>,
    ) -> SysResult<usize> {
        let ts = timeout.map(timespec);
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: the buffer holds at least `max` events; `ts_ptr` is null or
        // points at a timespec that outlives the call; no signal mask is passed.
        let n = unsafe {
            libc::syscall(
                libc::SYS_epoll_pwait2,
                self.fd.raw(),
                events.buf.as_mut_ptr(),
                max,
                ts_ptr,
                std::ptr::null::<libc::sigset_t>(),
                0usize,
            )
        };
        if n < 0 {
            Err(errno())
        } else {
            Ok(n as usize)
        }
    }

    fn wait_with_timerfd(
        &mut self,
        events: &mut Events,
        max: libc::c_int,
        timeout: Option<Duration>,
    ) -> SysResult<usize> {
        let ms = match timeout {
            None => -1,
            Some(d) if d.is_zero() => 0,
            Some(d) => {
                if self.timer.is_none() {
                    let timer = TimerFd::new()?;
                    // Edge-triggered: an expiry nobody reads wakes the set once.
                    self.add(timer.fd.raw(), READ | EDGE, timer.fd.raw() as u64)?;
                    self.timer = Some(timer);
                }
                // Re-arming also clears an expiry nobody read: the set stays quiet.
                self.timer.as_ref().map_or(Ok(()), |t| t.arm(d))?;
                -1
            }
        };
        // SAFETY: the buffer holds at least `max` events.
        check(unsafe { libc::epoll_wait(self.fd.raw(), events.buf.as_mut_ptr(), max, ms) })
            .map(|n| n as usize)
    }
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

/// A one-shot relative CLOCK_MONOTONIC timer.
struct TimerFd {
    fd: Fd,
}

impl TimerFd {
    fn new() -> SysResult<TimerFd> {
        // SAFETY: plain syscall returning a new fd we own.
        let fd = check(unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        })?;
        Ok(TimerFd { fd: Fd(fd) })
    }

    fn arm(&self, after: Duration) -> SysResult<()> {
        let spec = libc::itimerspec {
            it_interval: timespec(Duration::ZERO),
            // A zero it_value would disarm; a nanosecond is "now".
            it_value: timespec(after.max(Duration::from_nanos(1))),
        };
        // SAFETY: `spec` is valid for the call; the old value is not wanted.
        check(unsafe { libc::timerfd_settime(self.fd.raw(), 0, &spec, std::ptr::null_mut()) })
            .map(drop)
    }
}

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

/// A new non-blocking eventfd: the loop's doorbell for other threads and
/// signal handlers. Returned raw because its owner swaps it after `fork`.
pub fn eventfd_new() -> SysResult<RawFd> {
    // SAFETY: plain syscall returning a new fd that the caller owns.
    check(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })
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

pub fn close(fd: RawFd) {
    // SAFETY: the caller owns `fd` and never uses it again.
    unsafe { libc::close(fd) };
}

/// A set of signal numbers.
#[derive(Clone, Copy)]
pub struct SigSet(libc::sigset_t);

impl SigSet {
    pub fn empty() -> SigSet {
        // SAFETY: sigemptyset initialises the set it is given.
        unsafe {
            let mut set = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            SigSet(set)
        }
    }

    pub fn add(&mut self, signo: i32) {
        // SAFETY: the set is initialised; an invalid signo only returns EINVAL.
        unsafe { libc::sigaddset(&mut self.0, signo) };
    }

    pub fn remove(&mut self, signo: i32) {
        // SAFETY: as above.
        unsafe { libc::sigdelset(&mut self.0, signo) };
    }

    pub fn contains(&self, signo: i32) -> bool {
        // SAFETY: the set is initialised.
        unsafe { libc::sigismember(&self.0, signo) == 1 }
    }
}

/// Blocks or unblocks one signal in the calling thread; returns whether it was blocked before.
pub fn set_signal_blocked(signo: i32, blocked: bool) -> SysResult<bool> {
    let mut set = SigSet::empty();
    set.add(signo);
    let mut old = SigSet::empty();
    let how = if blocked {
        libc::SIG_BLOCK
    } else {
        libc::SIG_UNBLOCK
    };
    // SAFETY: both sets are initialised and valid for the call.
    let ret = unsafe { libc::pthread_sigmask(how, &set.0, &mut old.0) };
    if ret != 0 {
        return Err(ret);
    }
    Ok(old.contains(signo))
}

/// Whether `signo` can be caught through a signalfd: not SIGKILL or SIGSTOP,
/// nor the two real-time signals glibc keeps for itself.
pub fn signal_is_watchable(signo: i32) -> bool {
    (1..=64).contains(&signo)
        && signo != libc::SIGKILL
        && signo != libc::SIGSTOP
        && signo != 32
        && signo != 33
}

/// A non-blocking signalfd over a changing set of signals.
pub struct SignalFd {
    fd: Fd,
}

impl SignalFd {
    pub fn new(mask: &SigSet) -> SysResult<SignalFd> {
        // SAFETY: the mask is initialised; -1 asks for a new fd that we own.
        let fd =
            check(unsafe { libc::signalfd(-1, &mask.0, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
        Ok(SignalFd { fd: Fd(fd) })
    }

    pub fn raw(&self) -> RawFd {
        self.fd.raw()
    }

    pub fn set_mask(&self, mask: &SigSet) -> SysResult<()> {
        // SAFETY: updates the mask of the fd we own.
        check(unsafe { libc::signalfd(self.fd.raw(), &mask.0, 0) }).map(drop)
    }

    /// Reads every pending signal number into `out`.
    pub fn read_all(&self, out: &mut Vec<i32>) {
        // SAFETY: signalfd_siginfo is plain data; a zeroed one is valid.
        let mut infos: [libc::signalfd_siginfo; 8] = unsafe { std::mem::zeroed() };
        loop {
            let size = std::mem::size_of_val(&infos);
            // SAFETY: reads whole records into a buffer of `size` bytes.
            let n =
                unsafe { libc::read(self.fd.raw(), infos.as_mut_ptr() as *mut libc::c_void, size) };
            if n <= 0 {
                return;
            }
            let count = n as usize / std::mem::size_of::<libc::signalfd_siginfo>();
            out.extend(infos[..count].iter().map(|i| i.ssi_signo as i32));
            if (n as usize) < size {
                return;
            }
        }
    }
}

// ---- sockets and byte streams ----------------------------------------------

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

    fn family(&self) -> i32 {
        self.storage.ss_family as i32
    }

    fn as_ptr(&self) -> *const libc::sockaddr {
        &self.storage as *const _ as *const libc::sockaddr
    }
}

fn set_int_option(fd: RawFd, level: i32, name: i32, value: i32) -> SysResult<()> {
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

fn int_option(fd: RawFd, level: i32, name: i32) -> SysResult<i32> {
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
        check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    }
    Ok(())
}

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

/// Shuts down the writing side of a socket: the peer reads end-of-file.
pub fn shutdown_write(fd: RawFd) -> SysResult<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::shutdown(fd, libc::SHUT_WR) }).map(drop)
}

/// Makes writes to a pipe whose reader has gone fail with EPIPE instead of
/// killing the process, by ignoring SIGPIPE, unless the application has set
/// its own disposition. There is no per-call flag for pipes, as
/// MSG_NOSIGNAL is for sockets.
pub fn ignore_sigpipe_by_default() {
    // SAFETY: reads the current action, and replaces it only if it is the default.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_DFL
        {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
    }
}
