//! epoll, with sub-millisecond waits: `epoll_pwait2` where the kernel has it,
//! else a timerfd in the set.

use std::io::Read;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::raw::syscall;
use super::{check, Fd, FileId, SysResult, EDGE, RDHUP, READ};

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
/// as data, and the owner ignores internal data it does not recognise. The
/// owner names the numbers it uses for anything else (`taken`), and the
/// timerfd and the epoll fd keep off them, so that its `delete` or `modify`
/// of such a number never reaches them.
pub struct Epoll {
    fd: Fd,
    /// Fallback clock for kernels without epoll_pwait2, made on first need.
    timer: Option<TimerFd>,
    has_pwait2: bool,
}

impl Epoll {
    /// A new set, its fd at a number `taken` does not claim (see
    /// [`Fd::renumber_clear_of`]).
    pub fn new(taken: impl Fn(RawFd) -> bool) -> SysResult<Epoll> {
        // SAFETY: plain syscall; the returned fd is owned by us alone.
        let mut fd = Fd(check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?);
        fd.renumber_clear_of(taken)?;
        Ok(Epoll {
            fd,
            timer: None,
            has_pwait2: true,
        })
    }

    /// Waits as on a kernel without `epoll_pwait2`, with the fallback timerfd.
    #[cfg(test)]
    pub fn force_timerfd_fallback(&mut self) {
        self.has_pwait2 = false;
    }

    /// The epoll fd itself: readable while any fd in the set is ready, so a
    /// host loop can watch the whole set through it.
    pub fn raw(&self) -> RawFd {
        self.fd.raw()
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
    /// EINTR is returned as `Err(EINTR)`. `taken` is asked only when the
    /// fallback timerfd is made, which then keeps off the numbers it claims.
    #[inline(always)]
    pub fn wait(
        &mut self,
        events: &mut Events,
        max: usize,
        timeout: Option<Duration>,
        taken: impl Fn(RawFd) -> bool,
    ) -> SysResult<()> {
        let max = max.clamp(1, events.buf.capacity());
        events.buf.clear();
        // No limit, or nothing to wait: epoll_pwait's milliseconds say it as
        // well as epoll_pwait2 (and it is one syscall on every kernel).
        let n = match timeout {
            None => self.pwait(events, max, -1)?,
            Some(d) if d.is_zero() => self.pwait(events, max, 0)?,
            Some(d) => self.timed_wait(events, max, d, taken)?,
        };
        // SAFETY: the kernel initialised the first `n` (<= max <= capacity) events.
        unsafe { events.buf.set_len(n) };
        Ok(())
    }

    /// epoll_pwait (epoll_wait itself is missing on some architectures) with
    /// no signal mask.
    #[inline]
    fn pwait(&self, events: &mut Events, max: usize, ms: libc::c_int) -> SysResult<usize> {
        let (epfd, buf) = (self.fd.raw() as usize, events.buf.as_mut_ptr() as usize);
        // SAFETY: the buffer holds at least `max` events; a NULL mask is not read.
        unsafe { syscall(libc::SYS_epoll_pwait, [epfd, buf, max, ms as usize, 0, 0]) }
    }

    /// A wait of `d`, to the nanosecond: epoll_pwait2, else the timerfd.
    #[inline(never)]
    fn timed_wait(
        &mut self,
        events: &mut Events,
        max: usize,
        d: Duration,
        taken: impl Fn(RawFd) -> bool,
    ) -> SysResult<usize> {
        if self.has_pwait2 {
            match self.pwait2(events, max, d) {
                Err(libc::ENOSYS) => self.has_pwait2 = false,
                other => return other,
            }
        }
        if self.timer.is_none() {
            let timer = TimerFd::new(taken)?;
            // Edge-triggered: an expiry nobody reads wakes the set once.
            self.add(timer.fd.raw(), READ | EDGE, timer.fd.raw() as u64)?;
            self.timer = Some(timer);
        }
        // Re-arming also clears an expiry nobody read: the set stays quiet.
        self.timer.as_ref().map_or(Ok(()), |t| t.arm(d))?;
        self.pwait(events, max, -1)
    }

    fn pwait2(&self, events: &mut Events, max: usize, d: Duration) -> SysResult<usize> {
        let ts = timespec(d);
        let (epfd, buf) = (self.fd.raw() as usize, events.buf.as_mut_ptr() as usize);
        let ts = &ts as *const libc::timespec as usize;
        // SAFETY: the buffer holds at least `max` events; `ts` outlives the
        // call; no signal mask is passed.
        unsafe { syscall(libc::SYS_epoll_pwait2, [epfd, buf, max, ts, 0, 0]) }
    }
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

/// A one-shot CLOCK_MONOTONIC timer.
pub struct TimerFd {
    fd: Fd,
}

impl TimerFd {
    /// A disarmed timer, at a number `taken` does not claim (see
    /// [`Fd::renumber_clear_of`]).
    pub fn new(taken: impl Fn(RawFd) -> bool) -> SysResult<TimerFd> {
        // SAFETY: plain syscall returning a new fd we own.
        let fd = check(unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        })?;
        let mut fd = Fd(fd);
        fd.renumber_clear_of(taken)?;
        Ok(TimerFd { fd })
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

    pub fn raw(&self) -> RawFd {
        self.fd.raw()
    }

    /// Expires at `deadline` (CLOCK_MONOTONIC ns, as `now_ns`), or never
    /// for `None`. Setting it also clears an expiry nobody read.
    pub fn arm_at(&self, deadline: Option<u64>) -> SysResult<()> {
        let value = match deadline {
            // An absolute time in the past expires at once; 0 would disarm.
            Some(ns) => timespec(Duration::from_nanos(ns.max(1))),
            None => timespec(Duration::ZERO),
        };
        let spec = libc::itimerspec {
            it_interval: timespec(Duration::ZERO),
            it_value: value,
        };
        // SAFETY: `spec` is valid for the call; the old value is not wanted.
        check(unsafe {
            libc::timerfd_settime(
                self.fd.raw(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        })
        .map(drop)
    }
}

/// One entry of an epoll set, as the kernel lists it in /proc: the number
/// the file was added under, the data its events carry, and which file it
/// is (`None` from kernels that do not say).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpollEntry {
    pub fd: RawFd,
    pub data: u64,
    pub file: Option<FileId>,
}

/// Test-only: makes [`epoll_entries`] answer as on a system without /proc.
static PROC_HIDDEN: AtomicBool = AtomicBool::new(false);

/// Test-only: hides /proc from [`epoll_entries`] (true) or shows it again.
pub fn hide_proc_for_tests(hidden: bool) {
    PROC_HIDDEN.store(hidden, Ordering::Relaxed);
}

/// The entries of the epoll set `epfd`, read from /proc/self/fdinfo
/// (Linux 3.8; which file each is, 5.x): the one way to look into a set
/// without changing it. ENOENT without /proc; EMFILE when the process has
/// no fd left to open the file with.
pub fn epoll_entries(epfd: RawFd) -> SysResult<Vec<EpollEntry>> {
    if PROC_HIDDEN.load(Ordering::Relaxed) {
        return Err(libc::ENOENT);
    }
    let errno = |e: std::io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    let mut file = std::fs::File::open(format!("/proc/self/fdinfo/{epfd}")).map_err(errno)?;
    // Room for about 50 entries (80 bytes each): a small set takes one read
    // and the one that finds the end; a larger one grows the buffer (the
    // kernel makes the whole text at the first read anyway). Through
    // `take`, so that std does not ask the file's size and position first
    // (two more syscalls, for a size /proc does not know).
    let mut text = Vec::with_capacity(4 << 10);
    Read::take(&mut file, u64::MAX)
        .read_to_end(&mut text)
        .map_err(errno)?;
    Ok(parse_fdinfo(&text))
}

/// The `tfd:` lines of an epoll fd's fdinfo, one per entry:
/// `tfd:        5 events:       19 data:                5  pos:0 ino:3d0c sdev:9`
/// (numbers in hex but the fd; `sdev` is the kernel's dev_t, the major
/// number above the low 20 bits). Bytes, not text: a fork pays for this,
/// once per entry.
fn parse_fdinfo(text: &[u8]) -> Vec<EpollEntry> {
    text.split(|&b| b == b'\n')
        .filter_map(parse_entry)
        .collect()
}

fn parse_entry(line: &[u8]) -> Option<EpollEntry> {
    let mut words = line
        .strip_prefix(b"tfd:")?
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|word| !word.is_empty());
    let fd = std::str::from_utf8(words.next()?).ok()?.parse().ok()?;
    let (mut data, mut ino, mut sdev) = (None, None, None);
    while let Some(word) = words.next() {
        // "key: value" or "key:value".
        let Some(colon) = word.iter().position(|&b| b == b':') else {
            continue;
        };
        let (key, value) = match &word[colon + 1..] {
            [] => (&word[..colon], words.next()?),
            value => (&word[..colon], value),
        };
        let value = hex(value);
        match key {
            b"data" => data = value,
            b"ino" => ino = value,
            b"sdev" => sdev = value,
            _ => {}
        }
    }
    let file = match (ino, sdev) {
        (Some(ino), Some(sdev)) => Some(FileId {
            major: (sdev >> 20) as u32,
            minor: (sdev & 0xf_ffff) as u32,
            ino,
        }),
        _ => None,
    };
    Some(EpollEntry {
        fd,
        data: data?,
        file,
    })
}

fn hex(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        let digit = (d as char).to_digit(16)?;
        Some(n << 4 | digit as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_lines_parse() {
        let text = "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1038\n\
            tfd:        6 events: 40000019 data:                6  pos:0 ino:238b03 sdev:f\n\
            tfd:       12 events:       19 data: ffffffff0000000c  pos:0 ino:40e sdev:100010\n\
            tfd:        4 events:       19 data:                4\n";
        let entries = parse_fdinfo(text.as_bytes());
        assert_eq!(
            entries,
            [
                EpollEntry {
                    fd: 6,
                    data: 6,
                    file: Some(FileId {
                        major: 0,
                        minor: 15,
                        ino: 0x238b03
                    })
                },
                EpollEntry {
                    fd: 12,
                    data: 0xffff_ffff_0000_000c,
                    file: Some(FileId {
                        major: 1,
                        minor: 16,
                        ino: 0x40e
                    })
                },
                EpollEntry {
                    fd: 4,
                    data: 4,
                    file: None
                },
            ]
        );
    }

    #[test]
    fn entries_of_a_live_set_name_its_files() {
        let epoll = Epoll::new(|_| false).unwrap();
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two fds.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        epoll
            .add(fds[0], READ, 0x1234_0000_0000 | fds[0] as u64)
            .unwrap();
        let entries = epoll_entries(epoll.raw()).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].fd, fds[0]);
        assert_eq!(entries[0].data, 0x1234_0000_0000 | fds[0] as u64);
        assert_eq!(
            entries[0].file,
            Some(super::super::file_id(fds[0]).unwrap())
        );
        super::super::close(fds[0]);
        super::super::close(fds[1]);
    }
}
