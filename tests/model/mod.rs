//! Shared by the randomized model tests (tests/model_*.rs): a seeded PRNG,
//! the seed set to run, a trace of the last steps to print when a seed
//! fails, and a few fd helpers.
//!
//! `cargo test` runs a short fixed set of seeds. `EVLOOP_MODEL_SEEDS=N` runs
//! seeds 0..N instead (`EVLOOP_MODEL_SEED_BASE=B`: B..B+N), and
//! `EVLOOP_MODEL_SEED=S` replays seed S alone, with its whole trace.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

/// splitmix64: tiny, fast, and every seed gives its own sequence.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5eed_0fe7_100f)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in lo..=hi.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            None
        } else {
            Some(items[self.below(items.len() as u64) as usize])
        }
    }

    /// An index into `weights`, each chosen in proportion to its weight.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| w as u64).sum();
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < w as u64 {
                return i;
            }
            x -= w as u64;
        }
        unreachable!()
    }

    /// `len` bytes that differ from stream to stream and from offset to offset.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

/// The seeds to run: `EVLOOP_MODEL_SEED` alone, or `EVLOOP_MODEL_SEEDS` of
/// them from `EVLOOP_MODEL_SEED_BASE`, or `default` (the set `cargo test` runs).
pub fn seeds(default: u64) -> Vec<u64> {
    if let Some(seed) = env_u64("EVLOOP_MODEL_SEED") {
        return vec![seed];
    }
    let base = env_u64("EVLOOP_MODEL_SEED_BASE").unwrap_or(0);
    let count = env_u64("EVLOOP_MODEL_SEEDS").unwrap_or(default);
    (base..base + count).collect()
}

/// Whether one seed is being replayed (`EVLOOP_MODEL_SEED`).
pub fn replaying_one_seed() -> bool {
    std::env::var_os("EVLOOP_MODEL_SEED").is_some()
}

/// Checks that the seeds reached what a test checks: each count (what
/// it counts, how many the seeds made) above 0. A full run must; one seed
/// replayed alone need not.
pub fn assert_coverage(test: &str, counts: &[(&str, u64)]) {
    if replaying_one_seed() {
        return;
    }
    let missing: Vec<&str> = counts.iter().filter(|c| c.1 == 0).map(|c| c.0).collect();
    assert!(
        missing.is_empty(),
        "{test}: the seeds never reached {missing:?}"
    );
}

/// Replaying one seed keeps its whole trace; otherwise the last steps.
fn trace_limit() -> usize {
    if replaying_one_seed() {
        usize::MAX
    } else {
        80
    }
}

thread_local! {
    static TRACE: RefCell<VecDeque<String>> = const { RefCell::new(VecDeque::new()) };
}

/// Notes one step; the last ones are printed when the seed fails.
pub fn trace(step: impl FnOnce() -> String) {
    TRACE.with(|t| {
        let mut t = t.borrow_mut();
        if t.len() >= trace_limit() {
            t.pop_front();
        }
        t.push_back(step());
    });
}

/// Prints the steps noted so far (for a forked child, whose trace the
/// parent never sees).
pub fn print_trace(who: &str) {
    TRACE.with(|t| {
        eprintln!("---- last steps of {who}:");
        for line in t.borrow().iter() {
            eprintln!("  {line}");
        }
    });
}

/// Runs `one(seed)` for every seed of [`seeds`]; `one` returns how many
/// steps it ran. A failing seed prints its trace and the command that
/// replays it, then fails the test (with `EVLOOP_MODEL_KEEP_GOING=1`, after
/// the other seeds, naming every seed that failed).
pub fn run_seeds(test: &str, default_seeds: u64, one: impl Fn(u64) -> u64) {
    let seeds = seeds(default_seeds);
    let keep_going = std::env::var_os("EVLOOP_MODEL_KEEP_GOING").is_some();
    let mut steps = 0;
    let mut failed = Vec::new();
    for &seed in &seeds {
        TRACE.with(|t| t.borrow_mut().clear());
        match catch_unwind(AssertUnwindSafe(|| one(seed))) {
            Ok(n) => steps += n,
            Err(panic) => {
                let trace: Vec<String> = TRACE.with(|t| t.borrow_mut().drain(..).collect());
                eprintln!("---- last steps of seed {seed}:");
                for line in trace {
                    eprintln!("  {line}");
                }
                eprintln!(
                    "MODEL FAILURE: {test} seed {seed}: {}; replay with\n  \
                     EVLOOP_MODEL_SEED={seed} cargo test --release --test {test}",
                    panic_message(&*panic)
                );
                if !keep_going {
                    resume_unwind(panic);
                }
                failed.push(seed);
            }
        }
    }
    eprintln!(
        "{test}: {} seeds ({}..={}), {steps} steps, {} failed{}",
        seeds.len(),
        seeds.first().copied().unwrap_or(0),
        seeds.last().copied().unwrap_or(0),
        failed.len(),
        if failed.is_empty() {
            ": all agreed with the model"
        } else {
            ""
        }
    );
    assert!(failed.is_empty(), "{test}: seeds {failed:?} failed");
}

/// CLOCK_MONOTONIC in nanoseconds, the clock the loop's timers use.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A non-blocking AF_UNIX stream socket pair, close-on-exec.
pub fn socketpair() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0, "socketpair: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

/// A non-blocking pipe, close-on-exec: (read end, write end).
pub fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

/// Whether `fd` names an open fd.
pub fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only asks.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// The device and inode an fd is open on (None: not open).
pub fn file_id(fd: RawFd) -> Option<(u64, u64)> {
    // SAFETY: a plain fstat into a zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid place for the result.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

/// RLIMIT_NOFILE's soft limit (at most i32::MAX): no fd is open at it.
pub fn fd_limit() -> RawFd {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit, which `limit` is.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(rc, 0);
    limit.rlim_cur.min(i32::MAX as u64) as RawFd
}

pub fn close(fd: RawFd) {
    // SAFETY: closing an fd the caller owns.
    let rc = unsafe { libc::close(fd) };
    assert_eq!(rc, 0, "close({fd}): {}", std::io::Error::last_os_error());
}

/// write(2) once; the bytes written or the errno.
pub fn write(fd: RawFd, data: &[u8]) -> Result<usize, i32> {
    // SAFETY: `data` is valid for its length.
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    if n < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(n as usize)
    }
}

/// read(2) once into `buf`; the bytes read (0: end of file) or the errno.
pub fn read(fd: RawFd, buf: &mut [u8]) -> Result<usize, i32> {
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(n as usize)
    }
}

thread_local! {
    /// The first check that failed inside a callback (a panic must not
    /// unwind through the C ABI): the driver fails with it after the call.
    static FAILURE: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// Runs a callback's body; a failed check in it is kept for
/// [`take_callback_failure`] instead of unwinding into the library.
pub fn catch_in_callback(body: impl FnOnce()) -> bool {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(()) => true,
        Err(panic) => {
            let msg = panic_message(&*panic);
            FAILURE.with(|f| {
                f.borrow_mut().get_or_insert(msg);
            });
            false
        }
    }
}

/// Fails with the first check that failed in a callback, if any.
pub fn take_callback_failure() {
    if let Some(msg) = FAILURE.with(|f| f.borrow_mut().take()) {
        panic!("in a callback: {msg}");
    }
}

/// Top-level steps per seed: `EVLOOP_MODEL_STEPS`, or `default`.
pub fn steps_per_seed(default: u64) -> u64 {
    env_u64("EVLOOP_MODEL_STEPS").unwrap_or(default)
}

/// For the plain-main (`harness = false`) model tests: true when
/// `cargo test -- FILTER` names tests and none of `names` matches.
pub fn filtered_out(names: &[&str]) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    !filters.is_empty()
        && !names
            .iter()
            .any(|n| filters.iter().any(|f| n.contains(f.as_str())))
}

/// An evl_event to fill an array with before evl_poll writes it.
pub const NO_EVENT: evloop::ffi::evl_event = evloop::ffi::evl_event {
    fd: -1,
    revents: 0,
    userdata: std::ptr::null_mut(),
};

/// An evl_stream_event to fill an array with before evl_stream_poll writes it.
pub const NO_STREAM_EVENT: evloop::ffi::evl_stream_event = evloop::ffi::evl_stream_event {
    kind: 0,
    fd: -1,
    stream: 0,
    data: std::ptr::null(),
    len: 0,
    userdata: std::ptr::null_mut(),
    status: 0,
    revents: 0,
};

/// evl_run_once from the top of a model's driver: traced, a check that
/// failed in a callback raised, an error failed.
///
/// # Safety
/// `lp` is a live loop, not running, and no borrow of the model's world
/// is held (the callbacks take it).
pub unsafe fn run_once(lp: *mut evloop::ffi::evl_loop, timeout: i32) {
    // SAFETY: as the caller promised.
    let rc = unsafe { evloop::ffi::evl_run_once(lp, timeout) };
    trace(|| format!("top run_once({timeout}) -> {rc}"));
    take_callback_failure();
    assert!(rc >= 0, "run_once: {rc}");
}

/// evl_stream_poll from the top of a model's driver into an array of
/// `max`: the events it wrote (their data valid until the next call).
///
/// # Safety
/// `lp` is a live loop, not running.
pub unsafe fn stream_poll(
    lp: *mut evloop::ffi::evl_loop,
    timeout: i32,
    max: usize,
) -> Vec<evloop::ffi::evl_stream_event> {
    let mut events = vec![NO_STREAM_EVENT; max];
    // SAFETY: as the caller promised; `events` has room for `max`.
    let n = unsafe { evloop::ffi::evl_stream_poll(lp, timeout, events.as_mut_ptr(), max as i32) };
    trace(|| format!("top stream_poll({timeout}, {max}) -> {n}"));
    take_callback_failure();
    assert!(n >= 0 && n as usize <= max, "stream_poll: {n}");
    events.truncate(n as usize);
    events
}
