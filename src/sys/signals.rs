//! Signals: sets, the thread's signal mask, signalfd, and SIGPIPE for pipes.

use std::os::fd::RawFd;

use super::{check, Fd, SysResult};

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
    /// A signalfd for `mask`, at a number `taken` does not claim (see
    /// [`Fd::renumber_clear_of`]).
    pub fn new(mask: &SigSet, taken: impl Fn(RawFd) -> bool) -> SysResult<SignalFd> {
        // SAFETY: the mask is initialised; -1 asks for a new fd that we own.
        let fd =
            check(unsafe { libc::signalfd(-1, &mask.0, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
        let mut fd = Fd(fd);
        fd.renumber_clear_of(taken)?;
        Ok(SignalFd { fd })
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
