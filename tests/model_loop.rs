//! The core loop through its C ABI, driven by seeded random operation
//! sequences and checked against a model of what the header promises.
//!
//! Operations (at top level and from inside every kind of callback): open a
//! socket pair, register / modify / unregister / set_callback (also of fd
//! numbers that are not open: huge, at the limit, negative), close a
//! registered fd without unregistering, dup2 a new socket onto a registered
//! fd, write to or close or shut down the peer, start / stop timers, post
//! tasks, evl_stop, evl_wake; at top level evl_run_once, evl_poll and
//! evl_run (from callbacks they, evl_loop_free and evl_loop_fork must say
//! -EBUSY). What is checked:
//! - every return value, as the model predicts it;
//! - no callback or evl_poll event for an ended registration or one whose
//!   fd was closed or replaced (but see `SAME_BATCH_AFTER_CLOSE`), with the
//!   current callback and userdata, `revents` non-empty and within the
//!   interest plus the always-reported bits (RDHUP only with READ), READ only
//!   when there is something to read, each fd at most once per iteration;
//! - EVL_ONESHOT: at most one report per arm (register or modify);
//! - a level-triggered registration that is ready is reported (in
//!   iterations whose callbacks change nothing, so the model knows);
//! - timers: never early (each beat of a repeating one too), first firings
//!   in deadline order, one-shots exactly once, stopped timers never;
//! - tasks: exactly once, in order, in the iteration after their post;
//! - evl_run_once returns the number of callbacks run (hooks not counted);
//!   evl_run returns at once (running nothing) when a stop was pending;
//! - hooks (evl_hook_start / evl_hook_stop, also from hooks): per iteration
//!   prepare, then check, then idle, each kind in start order, each hook at
//!   most once; every hook active from the call's start to its end runs
//!   (idle ones only when the wait found nothing: then no other callback
//!   follows them); none after it was stopped, none started during its
//!   kind's turn (or after it) in the same iteration; tasks posted by a
//!   prepare hook run in that iteration;
//! - evl_backend_timeout: 0 with tasks queued or an idle hook, -1 with
//!   neither and no timer, else at most the time to the first one-shot
//!   timer's deadline, rounded up; evl_backend_fd: the same fd every time;
//! - at the end, with everything unregistered, nothing calls back.
//!
//! `EVLOOP_MODEL_SEEDS=5000 cargo test --release --test model_loop` runs
//! many seeds; tests/model/mod.rs has the other knobs.

mod common;
mod model;

use evloop::ffi::*;
use model::{
    catch_in_callback, close, fd_limit, is_open, now_ns, read, run_seeds, socketpair,
    steps_per_seed, take_callback_failure, trace, write, Rng,
};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::c_void;
use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

const ALWAYS: u32 = EVL_ERROR | EVL_HUP | EVL_RDHUP;

/// A callback may run for an fd that was closed (or dup2'ed over) without
/// evl_unregister by a callback of the same iteration, when its event had
/// been fetched already: the header asks callers to unregister before
/// closing. Outside that window it never may.
const SAME_BATCH_AFTER_CLOSE: bool = true;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cb {
    A,
    B,
    Null,
}

fn io_fn(cb: Cb) -> evl_io_cb {
    match cb {
        Cb::A => Some(io_a),
        Cb::B => Some(io_b),
        Cb::Null => None,
    }
}

/// One of our socket pairs, named by the end the loop watches.
struct File {
    /// The other end, where the test writes; None once closed.
    peer: Option<RawFd>,
    /// Bytes written to the peer, not yet read from the watched end.
    unread: usize,
    /// The peer was closed or shut down its writing side.
    peer_eof: bool,
}

struct Reg {
    ud: usize,
    cb: Cb,
    interest: u32,
    /// EVL_ONESHOT: registered or modified since its last report.
    armed: bool,
    /// EVL_ONESHOT without a callback in a run_once or evl_run: its arm
    /// may have gone on a report nobody saw.
    unsure: bool,
    /// The fd was closed or replaced without evl_unregister: Some(the run
    /// call it happened in, 0 between calls).
    stale: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum TimerState {
    Armed,
    Stopped,
    Done,
}

struct Timer {
    id: u64,
    delay_ms: u64,
    repeat_ms: u64,
    /// Our clock before evl_timer_start: the loop's start is no earlier.
    started: u64,
    /// Our clock after it: the loop's start is no later.
    started_by: u64,
    fired: u64,
    state: TimerState,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum HookState {
    Active,
    Stopped,
}

/// A hook, named by its userdata: its index in `World::hooks`, which is
/// also its start order.
struct Hook {
    id: u64,
    kind: u32,
    state: HookState,
    /// The first run call it may run in (one started during its kind's
    /// turn, or after it, waits for the next iteration).
    earliest_call: u64,
    /// Active when the current call started.
    active_at_call_start: bool,
}

struct Task {
    seq: usize,
    /// The run call it must run in (None when an evl_run is involved,
    /// whose iterations we cannot count).
    call: Option<u64>,
    stop: bool,
}

#[derive(Clone, Copy, Debug)]
enum Run {
    Once(i32),
    /// run_once(0) whose callbacks change nothing: every ready
    /// level-triggered registration must be reported.
    QuietOnce,
    Poll(i32, usize),
    QuietPoll,
    Loop,
}

struct World {
    lp: *mut evl_loop,
    rng: Rng,
    files: BTreeMap<RawFd, File>,
    regs: BTreeMap<RawFd, Reg>,
    /// Indexed by the timer's userdata.
    timers: Vec<Timer>,
    tasks: VecDeque<Task>,
    next_task: usize,
    next_ud: usize,
    /// run_once / poll / run calls started so far.
    call: u64,
    /// Inside a run call (its callbacks, or the handling of its poll events).
    in_call: bool,
    /// Inside an evl_run.
    in_loop: bool,
    /// Inside one of our callbacks.
    in_cb: bool,
    quiet: bool,
    /// Callbacks run during the current call.
    ran: i64,
    /// fds reported during the current iteration.
    reported: BTreeSet<RawFd>,
    stop_pending: bool,
    buf: Vec<u8>,
    hooks: Vec<Hook>,
    /// Hooks run during the current call, in order: (kind, key).
    hook_log: Vec<(u32, usize)>,
    /// The kind of the hook whose callback is running (0: none).
    in_hook: u32,
    /// Hook callbacks since the last check of `finish`.
    hook_calls: u64,
    /// The last poll filled its array: the next call may go on with that
    /// iteration, without waiting and so without hooks.
    maybe_unfinished: bool,
    backend_fd: Option<i32>,
    /// The current call drops the reports of registrations without a
    /// callback (run_once, evl_run).
    drops_null: bool,
}

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}

fn with_world<T>(f: impl FnOnce(&mut World) -> T) -> T {
    WORLD.with(|w| f(w.borrow_mut().as_mut().expect("no world")))
}

/// Runs a callback's body with the world, marked as inside a callback.
fn in_callback(body: impl FnOnce(&mut World)) {
    let run = |w: &mut World| {
        w.in_cb = true;
        body(w);
        w.in_cb = false;
    };
    if !catch_in_callback(|| with_world(run)) {
        WORLD.with(|w| {
            if let Ok(mut w) = w.try_borrow_mut() {
                if let Some(w) = w.as_mut() {
                    w.in_cb = false;
                }
            }
        });
    }
}

fn take_failure() {
    take_callback_failure();
}

unsafe extern "C" fn io_a(_lp: *mut evl_loop, fd: i32, revents: u32, ud: *mut c_void) {
    in_callback(|w| w.on_io(Some(Cb::A), fd, revents, ud as usize));
}

unsafe extern "C" fn io_b(_lp: *mut evl_loop, fd: i32, revents: u32, ud: *mut c_void) {
    in_callback(|w| w.on_io(Some(Cb::B), fd, revents, ud as usize));
}

unsafe extern "C" fn on_timer(_lp: *mut evl_loop, id: u64, ud: *mut c_void) {
    in_callback(|w| w.on_timer(id, ud as usize));
}

unsafe extern "C" fn on_task(_lp: *mut evl_loop, ud: *mut c_void) {
    in_callback(|w| w.on_task(ud as usize));
}

unsafe extern "C" fn on_hook(_lp: *mut evl_loop, id: u64, ud: *mut c_void) {
    in_callback(|w| w.on_hook(id, ud as usize));
}

fn hook_kind_name(kind: u32) -> &'static str {
    match kind {
        EVL_HOOK_PREPARE => "prepare",
        EVL_HOOK_CHECK => "check",
        EVL_HOOK_IDLE => "idle",
        _ => "bad kind",
    }
}

fn interest_name(i: u32) -> String {
    let mut s = String::new();
    for (bit, name) in [
        (EVL_READ, "R"),
        (EVL_WRITE, "W"),
        (EVL_EDGE, "|ET"),
        (EVL_ONESHOT, "|1S"),
    ] {
        if i & bit != 0 {
            s.push_str(name);
        }
    }
    s
}

impl World {
    fn new(seed: u64) -> World {
        let mut lp = std::ptr::null_mut();
        // SAFETY: `lp` is a valid place for the new loop.
        assert_eq!(unsafe { evl_loop_new(&mut lp) }, 0);
        World {
            lp,
            rng: Rng::new(seed),
            files: BTreeMap::new(),
            regs: BTreeMap::new(),
            timers: Vec::new(),
            tasks: VecDeque::new(),
            next_task: 0,
            next_ud: 1,
            call: 0,
            in_call: false,
            in_loop: false,
            in_cb: false,
            quiet: false,
            ran: 0,
            reported: BTreeSet::new(),
            stop_pending: false,
            buf: vec![0; 256],
            hooks: Vec::new(),
            hook_log: Vec::new(),
            in_hook: 0,
            hook_calls: 0,
            maybe_unfinished: false,
            backend_fd: None,
            drops_null: false,
        }
    }

    /// A registration without a callback, armed by a prepare hook of a call
    /// that drops such reports: the wait right after may spend its ONESHOT.
    fn armed_unseen(&self, cb: Cb) -> bool {
        cb == Cb::Null && self.drops_null && self.in_hook == EVL_HOOK_PREPARE
    }

    fn where_(&self) -> &'static str {
        if self.in_cb {
            "cb"
        } else {
            "top"
        }
    }

    // ---- checks of what the loop reports -----------------------------------

    /// Checks a report for `fd` (a callback's, or an evl_poll event with
    /// `cb` None) against the model, and updates the model.
    fn check_report(&mut self, fd: RawFd, revents: u32, ud: usize, cb: Option<Cb>) {
        let call = self.call;
        let in_loop = self.in_loop;
        let Some(reg) = self.regs.get_mut(&fd) else {
            panic!("report for fd {fd} (revents {revents:#x}, ud {ud}) with no registration");
        };
        if let Some(since) = reg.stale {
            assert!(
                SAME_BATCH_AFTER_CLOSE && since == call,
                "report for fd {fd} whose registration (ud {}) ended when its fd was closed \
                 or replaced (in call {since}; now call {call})",
                reg.ud
            );
        }
        assert_eq!(ud, reg.ud, "fd {fd}: userdata");
        if let Some(cb) = cb {
            assert_eq!(cb, reg.cb, "fd {fd}: callback");
        }
        assert!(revents != 0, "fd {fd}: empty revents");
        let allowed = reg.interest & (EVL_READ | EVL_WRITE) | ALWAYS;
        assert!(
            revents & !allowed == 0,
            "fd {fd}: revents {revents:#x} outside interest {}",
            interest_name(reg.interest)
        );
        if revents & EVL_RDHUP != 0 {
            assert!(reg.interest & EVL_READ != 0, "fd {fd}: RDHUP without READ");
        }
        if reg.interest & EVL_ONESHOT != 0 {
            assert!(
                reg.armed,
                "fd {fd}: EVL_ONESHOT reported twice after one arm"
            );
            reg.armed = false;
        }
        let stale = reg.stale.is_some();
        if !in_loop {
            assert!(
                self.reported.insert(fd),
                "fd {fd} reported twice in one iteration"
            );
        }
        if revents & EVL_READ != 0 && !stale {
            if let Some(file) = self.files.get(&fd) {
                assert!(
                    file.unread > 0 || file.peer_eof,
                    "fd {fd}: READ reported with nothing to read"
                );
            }
        }
    }

    /// What a handler does with a report: read (some of) what is there,
    /// checking it agrees with the model.
    fn handle(&mut self, fd: RawFd, revents: u32) {
        if revents & EVL_READ == 0 || self.regs.get(&fd).is_some_and(|r| r.stale.is_some()) {
            return;
        }
        let Some(file) = self.files.get_mut(&fd) else {
            return;
        };
        let want = 1 + self.rng.below(file.unread as u64 + 8) as usize;
        let want = want.min(self.buf.len());
        match read(fd, &mut self.buf[..want]) {
            Ok(0) => assert!(
                file.unread == 0 && file.peer_eof,
                "fd {fd}: end of file with {} bytes unread",
                file.unread
            ),
            Ok(n) => {
                assert!(n <= file.unread, "fd {fd}: read {n}, model {}", file.unread);
                file.unread -= n;
            }
            Err(libc::EAGAIN) => assert!(
                file.unread == 0 && !file.peer_eof,
                "fd {fd}: EAGAIN with {} unread",
                file.unread
            ),
            Err(e) => panic!("fd {fd}: read: errno {e}"),
        }
    }

    /// A callback other than a hook: in one iteration, never after its idle hooks.
    fn callback_starts(&mut self) {
        self.ran += 1;
        if !self.in_loop {
            assert!(
                !self.hook_log.iter().any(|&(kind, _)| kind == EVL_HOOK_IDLE),
                "a callback after the idle hooks of its iteration"
            );
        }
    }

    fn on_hook(&mut self, id: u64, key: usize) {
        let hook = &self.hooks[key];
        let kind = hook.kind;
        trace(|| format!("  {} hook {key} runs", hook_kind_name(kind)));
        assert_eq!(id, hook.id, "hook {key}: id");
        assert_eq!(
            hook.state,
            HookState::Active,
            "hook {key} ran after it was stopped"
        );
        assert!(self.in_call, "hook {key} ran outside a run call");
        if !self.in_loop {
            assert!(
                self.call >= hook.earliest_call,
                "hook {key} ran in the iteration it was started in, during or after its kind's turn"
            );
        }
        self.hook_log.push((kind, key));
        self.hook_calls += 1;
        let outer = std::mem::replace(&mut self.in_hook, kind);
        self.callback_ops();
        self.in_hook = outer;
    }

    /// After a run call (not evl_run): the hooks ran in order, and all that
    /// had to.
    fn check_hook_log(&self) {
        let log = &self.hook_log;
        for pair in log.windows(2) {
            let ((k1, h1), (k2, h2)) = (pair[0], pair[1]);
            assert!(
                k1 < k2 || k1 == k2 && h1 < h2,
                "hooks out of order: {} hook {h1} before {} hook {h2}",
                hook_kind_name(k1),
                hook_kind_name(k2)
            );
        }
        if self.maybe_unfinished {
            return;
        }
        for (key, hook) in self.hooks.iter().enumerate() {
            let must = hook.active_at_call_start
                && hook.state == HookState::Active
                && hook.kind != EVL_HOOK_IDLE;
            if must {
                assert!(
                    log.contains(&(hook.kind, key)),
                    "{} hook {key}, active all through the call, did not run",
                    hook_kind_name(hook.kind)
                );
            }
        }
    }

    fn on_io(&mut self, cb: Option<Cb>, fd: RawFd, revents: u32, ud: usize) {
        self.callback_starts();
        trace(|| format!("  io cb {cb:?} fd {fd} revents {revents:#x} ud {ud}"));
        self.check_report(fd, revents, ud, cb);
        self.handle(fd, revents);
        self.callback_ops();
    }

    fn on_timer(&mut self, id: u64, key: usize) {
        self.callback_starts();
        let now = now_ns();
        trace(|| format!("  timer {key} (id {id:#x}) fires"));
        let t = &self.timers[key];
        assert_eq!(id, t.id, "timer {key}: id");
        assert_eq!(
            t.state,
            TimerState::Armed,
            "timer {key} fired when {:?}",
            t.state
        );
        let due = t.started + (t.delay_ms + t.fired * t.repeat_ms) * 1_000_000;
        assert!(
            now >= due,
            "timer {key} (delay {} ms, repeat {} ms) beat {} early by {} ns",
            t.delay_ms,
            t.repeat_ms,
            t.fired,
            due - now
        );
        if t.fired == 0 {
            // Timers started before it with no later delay were due first.
            let delay = t.delay_ms;
            if let Some((k, _)) = self.timers[..key]
                .iter()
                .enumerate()
                .find(|(_, s)| s.state == TimerState::Armed && s.fired == 0 && s.delay_ms <= delay)
            {
                panic!("timer {key} fired before timer {k}, started earlier and due no later");
            }
        }
        let t = &mut self.timers[key];
        t.fired += 1;
        if t.repeat_ms == 0 {
            t.state = TimerState::Done;
        }
        self.callback_ops();
    }

    fn on_task(&mut self, seq: usize) {
        self.callback_starts();
        trace(|| format!("  task {seq} runs"));
        let Some(task) = self.tasks.pop_front() else {
            panic!("task {seq} ran, but none is queued");
        };
        assert_eq!(task.seq, seq, "tasks out of order (or one ran twice)");
        if let Some(call) = task.call {
            assert_eq!(
                call, self.call,
                "task {seq} ran in call {}, expected {call}",
                self.call
            );
        }
        if task.stop {
            // SAFETY: the loop is live.
            assert_eq!(unsafe { evl_stop(self.lp) }, 0);
            self.stop_pending = true;
        }
        self.callback_ops();
    }

    fn callback_ops(&mut self) {
        if self.quiet {
            return;
        }
        let n = [0, 0, 0, 1, 1, 2][self.rng.below(6) as usize];
        for _ in 0..n {
            self.op();
        }
    }

    // ---- operations ---------------------------------------------------------

    fn next_ud(&mut self) -> usize {
        self.next_ud += 1;
        self.next_ud
    }

    fn random_interest(&mut self) -> u32 {
        let mut i =
            [EVL_READ, EVL_READ, EVL_WRITE, EVL_READ | EVL_WRITE][self.rng.below(4) as usize];
        if self.rng.percent(20) {
            i |= EVL_EDGE;
        }
        if self.rng.percent(25) {
            i |= EVL_ONESHOT;
        }
        if self.rng.percent(10) {
            i |= ALWAYS;
        }
        i
    }

    fn random_cb(&mut self) -> Cb {
        [Cb::A, Cb::A, Cb::B, Cb::B, Cb::Null][self.rng.below(5) as usize]
    }

    fn pick_file(&mut self) -> Option<RawFd> {
        let fds: Vec<RawFd> = self.files.keys().copied().collect();
        self.rng.pick(&fds)
    }

    fn pick_reg(&mut self) -> Option<RawFd> {
        let fds: Vec<RawFd> = self.regs.keys().copied().collect();
        self.rng.pick(&fds)
    }

    /// A registered fd most of the time, any of ours otherwise.
    fn pick_target(&mut self) -> Option<RawFd> {
        if self.rng.percent(80) {
            self.pick_reg().or_else(|| self.pick_file())
        } else {
            self.pick_file().or_else(|| self.pick_reg())
        }
    }

    /// An fd argument that names no open fd: the largest int, one of
    /// millions, one at or just under RLIMIT_NOFILE's limit, or a negative
    /// one. The library answers at once, EINVAL for a negative fd, else
    /// EBADF (register) or ENOENT (the others: nothing is registered
    /// there), and nothing changes: the events checked afterwards say so,
    /// and the C tests that it allocates nothing (issue 25).
    fn not_open_fd(&mut self) {
        let w = self.where_();
        let limit = fd_limit();
        let numbers = [
            i32::MAX,
            i32::MAX - 1,
            1_000_000,
            limit,
            limit - 1,
            -1,
            i32::MIN,
        ];
        let fd = numbers[self.rng.below(numbers.len() as u64) as usize];
        if fd >= 0 && (is_open(fd) || self.regs.contains_key(&fd)) {
            return; // valgrind keeps its own fds at the limit
        }
        let ud = self.next_ud();
        let interest = self.random_interest();
        let cb = self.random_cb();
        let op = self.rng.below(4);
        // SAFETY: the loop is live.
        let rc = unsafe {
            match op {
                0 => evl_register(self.lp, fd, interest, io_fn(cb), ud as *mut c_void),
                1 => evl_modify(self.lp, fd, interest),
                2 => evl_set_callback(self.lp, fd, io_fn(cb), ud as *mut c_void),
                _ => evl_unregister(self.lp, fd),
            }
        };
        let name = ["register", "modify", "set_callback", "unregister"][op as usize];
        trace(|| format!("{w} {name} fd {fd} (not open) -> {rc}"));
        let want = match (fd < 0, op) {
            (true, _) => -libc::EINVAL,
            (false, 0) => -libc::EBADF,
            (false, _) => -libc::ENOENT,
        };
        assert_eq!(rc, want, "{name} of fd {fd}, which is not open");
    }

    /// One random operation; run calls only at top level (from a callback
    /// they must be refused), which is then returned for the driver to make.
    fn op(&mut self) -> Option<Run> {
        let top = !self.in_cb;
        let weights = [
            4,                        // open
            8,                        // register
            6,                        // modify
            4,                        // unregister
            3,                        // set_callback
            2,                        // close the watched end
            2,                        // close or shut down the peer
            2,                        // dup2 onto a registered fd
            8,                        // write to a peer
            4,                        // timer start
            3,                        // timer stop
            4,                        // post
            1,                        // stop
            1,                        // wake
            3,                        // hook start
            2,                        // hook stop
            if top { 2 } else { 0 },  // backend timeout
            1,                        // backend fd
            2,                        // an fd number that is not open
            if top { 14 } else { 1 }, // run
        ];
        let w = self.where_();
        match self.rng.weighted(&weights) {
            0 => {
                if self.files.len() < 8 {
                    let (fd, peer) = socketpair();
                    trace(|| format!("{w} open fd {fd} (peer {peer})"));
                    self.files.insert(
                        fd,
                        File {
                            peer: Some(peer),
                            unread: 0,
                            peer_eof: false,
                        },
                    );
                }
            }
            1 => {
                let fd = self.pick_file()?;
                let interest = self.random_interest();
                let cb = self.random_cb();
                let ud = self.next_ud();
                // SAFETY: the loop is live; the fd is ours.
                let rc =
                    unsafe { evl_register(self.lp, fd, interest, io_fn(cb), ud as *mut c_void) };
                trace(|| {
                    format!(
                        "{w} register fd {fd} {} {cb:?} ud {ud} -> {rc}",
                        interest_name(interest)
                    )
                });
                let live = self.regs.get(&fd).is_some_and(|r| r.stale.is_none());
                let unsure = self.armed_unseen(cb);
                if live {
                    assert_eq!(rc, -libc::EEXIST, "register fd {fd} twice");
                } else {
                    assert_eq!(rc, 0, "register fd {fd}");
                    self.regs.insert(
                        fd,
                        Reg {
                            ud,
                            cb,
                            interest,
                            armed: true,
                            unsure,
                            stale: None,
                        },
                    );
                }
            }
            2 => {
                let fd = self.pick_target()?;
                let interest = self.random_interest();
                // SAFETY: the loop is live.
                let rc = unsafe { evl_modify(self.lp, fd, interest) };
                trace(|| format!("{w} modify fd {fd} {} -> {rc}", interest_name(interest)));
                let unsure = self.regs.get(&fd).is_some_and(|r| self.armed_unseen(r.cb));
                match self.regs.get_mut(&fd) {
                    None => assert_eq!(rc, -libc::ENOENT, "modify unregistered fd {fd}"),
                    Some(reg) if reg.stale.is_some() => assert!(
                        rc == -libc::EBADF || rc == -libc::ENOENT,
                        "modify of fd {fd} closed without unregister: {rc}"
                    ),
                    Some(reg) => {
                        assert_eq!(rc, 0, "modify fd {fd}");
                        reg.interest = interest;
                        reg.armed = true;
                        reg.unsure = unsure;
                    }
                }
            }
            3 => {
                let fd = self.pick_target()?;
                // SAFETY: the loop is live.
                let rc = unsafe { evl_unregister(self.lp, fd) };
                trace(|| format!("{w} unregister fd {fd} -> {rc}"));
                match self.regs.remove(&fd) {
                    None => assert_eq!(rc, -libc::ENOENT, "unregister unregistered fd {fd}"),
                    Some(_) => assert_eq!(rc, 0, "unregister fd {fd}"),
                }
            }
            4 => {
                let fd = self.pick_target()?;
                let cb = self.random_cb();
                let ud = self.next_ud();
                // SAFETY: the loop is live.
                let rc = unsafe { evl_set_callback(self.lp, fd, io_fn(cb), ud as *mut c_void) };
                trace(|| format!("{w} set_callback fd {fd} {cb:?} ud {ud} -> {rc}"));
                match self.regs.get_mut(&fd) {
                    None => assert_eq!(rc, -libc::ENOENT, "set_callback unregistered fd {fd}"),
                    Some(reg) => {
                        assert_eq!(rc, 0, "set_callback fd {fd}");
                        reg.cb = cb;
                        reg.ud = ud;
                        reg.unsure |= cb == Cb::Null && self.in_call;
                    }
                }
            }
            5 => {
                let fd = self
                    .pick_target()
                    .filter(|fd| self.files.contains_key(fd))?;
                trace(|| {
                    format!(
                        "{w} close fd {fd} (registered: {})",
                        self.regs.contains_key(&fd)
                    )
                });
                let file = self.files.remove(&fd).unwrap();
                close(fd);
                if let Some(peer) = file.peer {
                    close(peer);
                }
                self.went_stale(fd);
            }
            6 => {
                let fd = self.pick_file()?;
                let file = self.files.get_mut(&fd).unwrap();
                let peer = file.peer?;
                if self.rng.percent(50) {
                    trace(|| format!("{w} close peer of fd {fd}"));
                    close(peer);
                    file.peer = None;
                } else {
                    trace(|| format!("{w} shut down peer of fd {fd}"));
                    // SAFETY: shutting down our own socket.
                    assert_eq!(unsafe { libc::shutdown(peer, libc::SHUT_WR) }, 0);
                }
                file.peer_eof = true;
            }
            7 => {
                let fd = self.pick_reg().filter(|fd| self.files.contains_key(fd))?;
                let (new, peer) = socketpair();
                // SAFETY: both fds are ours; dup2 replaces fd atomically.
                assert_eq!(unsafe { libc::dup2(new, fd) }, fd);
                close(new);
                trace(|| format!("{w} dup2 a new socket onto registered fd {fd}"));
                let old = self.files.insert(
                    fd,
                    File {
                        peer: Some(peer),
                        unread: 0,
                        peer_eof: false,
                    },
                );
                if let Some(old_peer) = old.and_then(|f| f.peer) {
                    close(old_peer);
                }
                self.went_stale(fd);
            }
            8 => {
                let fd = self.pick_file()?;
                let file = self.files.get_mut(&fd).unwrap();
                let peer = file.peer.filter(|_| !file.peer_eof)?;
                let len = 1 + self.rng.below(64) as usize;
                let data = self.rng.bytes(len);
                let n = write(peer, &data).expect("write to a peer");
                assert_eq!(n, data.len());
                file.unread += n;
                trace(|| format!("{w} write {n} to fd {fd}"));
            }
            9 => {
                if self
                    .timers
                    .iter()
                    .filter(|t| t.state == TimerState::Armed)
                    .count()
                    < 12
                {
                    let delay_ms = if self.rng.percent(30) {
                        0
                    } else {
                        self.rng.range(1, 15)
                    };
                    let repeat_ms = if self.rng.percent(70) {
                        0
                    } else {
                        self.rng.range(1, 10)
                    };
                    let key = self.timers.len();
                    let started = now_ns();
                    let mut id = 0;
                    // SAFETY: the loop is live; `id` is a valid place.
                    let rc = unsafe {
                        evl_timer_start(
                            self.lp,
                            delay_ms,
                            repeat_ms,
                            Some(on_timer),
                            key as *mut c_void,
                            &mut id,
                        )
                    };
                    trace(|| {
                        format!(
                            "{w} timer {key} start {delay_ms}/{repeat_ms} ms -> {rc} id {id:#x}"
                        )
                    });
                    let started_by = now_ns();
                    assert_eq!(rc, 0, "timer start");
                    assert!(id != 0, "timer id 0");
                    assert!(
                        !self
                            .timers
                            .iter()
                            .any(|t| t.id == id && t.state == TimerState::Armed),
                        "timer id {id:#x} given twice"
                    );
                    self.timers.push(Timer {
                        id,
                        delay_ms,
                        repeat_ms,
                        started,
                        started_by,
                        fired: 0,
                        state: TimerState::Armed,
                    });
                }
            }
            10 => {
                let key = self.rng.below(self.timers.len() as u64 + 1) as usize;
                if key == self.timers.len() {
                    // SAFETY: the loop is live.
                    let rc = unsafe { evl_timer_stop(self.lp, 0) };
                    assert_eq!(rc, -libc::ENOENT, "timer_stop(0)");
                    return None;
                }
                // SAFETY: the loop is live.
                let rc = unsafe { evl_timer_stop(self.lp, self.timers[key].id) };
                let t = &mut self.timers[key];
                trace(|| format!("{w} timer {key} stop ({:?}) -> {rc}", t.state));
                if t.state == TimerState::Armed {
                    assert_eq!(rc, 0, "stop timer {key}");
                    t.state = TimerState::Stopped;
                } else {
                    assert_eq!(rc, -libc::ENOENT, "stop timer {key} when {:?}", t.state);
                }
            }
            11 => self.post(false),
            12 => {
                trace(|| format!("{w} stop"));
                // SAFETY: the loop is live.
                assert_eq!(unsafe { evl_stop(self.lp) }, 0);
                self.stop_pending = true;
            }
            13 => {
                // SAFETY: the loop is live.
                assert_eq!(unsafe { evl_wake(self.lp) }, 0);
            }
            14 => self.start_hook(),
            15 => self.stop_hook(),
            16 => self.check_backend_timeout(),
            17 => {
                // SAFETY: the loop is live.
                let fd = unsafe { evl_backend_fd(self.lp) };
                trace(|| format!("{w} backend_fd -> {fd}"));
                assert!(fd >= 0, "evl_backend_fd: {fd}");
                assert_eq!(
                    *self.backend_fd.get_or_insert(fd),
                    fd,
                    "evl_backend_fd changed"
                );
            }
            18 => self.not_open_fd(),
            _ if top => {
                return Some(match self.rng.below(10) {
                    0..=3 => Run::Once(if self.rng.percent(80) {
                        0
                    } else {
                        1 + self.rng.below(3) as i32
                    }),
                    4 => Run::QuietOnce,
                    5 | 6 => Run::Poll(
                        if self.rng.percent(80) {
                            0
                        } else {
                            1 + self.rng.below(3) as i32
                        },
                        1 + self.rng.below(16) as usize,
                    ),
                    7 => Run::QuietPoll,
                    _ => Run::Loop,
                })
            }
            _ => self.refused_from_callback(),
        }
        None
    }

    fn went_stale(&mut self, fd: RawFd) {
        let call = if self.in_call { self.call } else { 0 };
        if let Some(reg) = self.regs.get_mut(&fd) {
            if reg.stale.is_none() {
                reg.stale = Some(call);
            }
        }
    }

    fn post(&mut self, stop: bool) {
        let seq = self.next_task;
        self.next_task += 1;
        // A prepare hook runs before the wait that takes the queue.
        let next = if self.in_hook == EVL_HOOK_PREPARE {
            0
        } else {
            1
        };
        let call = (!self.in_loop).then_some(self.call + next);
        // SAFETY: the loop is live.
        let rc = unsafe { evl_post(self.lp, Some(on_task), seq as *mut c_void) };
        trace(|| {
            format!(
                "{} post task {seq}{} -> {rc}",
                self.where_(),
                if stop { " (stop)" } else { "" }
            )
        });
        assert_eq!(rc, 0, "post");
        self.tasks.push_back(Task { seq, call, stop });
    }

    fn start_hook(&mut self) {
        if self
            .hooks
            .iter()
            .filter(|h| h.state == HookState::Active)
            .count()
            >= 6
        {
            return;
        }
        let kind = [EVL_HOOK_PREPARE, EVL_HOOK_CHECK, EVL_HOOK_IDLE, 0, 4]
            [self.rng.weighted(&[4, 4, 2, 1, 1])];
        let key = self.hooks.len();
        let mut id = 0;
        // SAFETY: the loop is live; `id` is a valid place.
        let rc =
            unsafe { evl_hook_start(self.lp, kind, Some(on_hook), key as *mut c_void, &mut id) };
        trace(|| {
            format!(
                "{} hook {key} start {} -> {rc} id {id:#x}",
                self.where_(),
                hook_kind_name(kind)
            )
        });
        if !(EVL_HOOK_PREPARE..=EVL_HOOK_IDLE).contains(&kind) {
            assert_eq!(rc, -libc::EINVAL, "hook of kind {kind}");
            assert_eq!(id, 0, "an id written on error");
            return;
        }
        assert_eq!(rc, 0, "hook start");
        assert!(id != 0, "hook id 0");
        assert!(
            !self
                .hooks
                .iter()
                .any(|h| h.id == id && h.state == HookState::Active),
            "hook id {id:#x} given twice"
        );
        // Started during its kind's turn or after it: from the next
        // iteration (between calls: the next call is the next iteration).
        let waits = self.in_call && (self.in_hook == 0 || self.in_hook >= kind);
        self.hooks.push(Hook {
            id,
            kind,
            state: HookState::Active,
            earliest_call: if waits || !self.in_call {
                self.call + 1
            } else {
                self.call
            },
            active_at_call_start: false,
        });
    }

    fn stop_hook(&mut self) {
        let key = self.rng.below(self.hooks.len() as u64 + 1) as usize;
        if key == self.hooks.len() {
            // SAFETY: the loop is live.
            let rc = unsafe { evl_hook_stop(self.lp, 0) };
            assert_eq!(rc, -libc::ENOENT, "hook_stop(0)");
            return;
        }
        // SAFETY: the loop is live.
        let rc = unsafe { evl_hook_stop(self.lp, self.hooks[key].id) };
        let w = self.where_();
        let hook = &mut self.hooks[key];
        trace(|| format!("{w} hook {key} stop ({:?}) -> {rc}", hook.state));
        if hook.state == HookState::Active {
            assert_eq!(rc, 0, "stop hook {key}");
            hook.state = HookState::Stopped;
        } else {
            assert_eq!(rc, -libc::ENOENT, "stop hook {key} twice");
        }
    }

    /// evl_backend_timeout between calls, against what the model knows.
    fn check_backend_timeout(&mut self) {
        let before = now_ns();
        // SAFETY: the loop is live.
        let rc = unsafe { evl_backend_timeout(self.lp) };
        trace(|| format!("top backend_timeout -> {rc}"));
        let idle = self
            .hooks
            .iter()
            .any(|h| h.state == HookState::Active && h.kind == EVL_HOOK_IDLE);
        let armed: Vec<&Timer> = self
            .timers
            .iter()
            .filter(|t| t.state == TimerState::Armed)
            .collect();
        if idle || !self.tasks.is_empty() {
            assert_eq!(rc, 0, "backend timeout with tasks queued or an idle hook");
        } else if armed.is_empty() {
            // 0 only for an iteration that a full poll left unfinished.
            assert!(
                rc == -1 || rc == 0 && self.maybe_unfinished,
                "backend timeout with nothing to wait for: {rc}"
            );
        } else {
            assert!(rc >= 0, "backend timeout {rc} with timers");
            // The first one-shot deadline, at its latest, rounded up.
            let first = armed
                .iter()
                .filter(|t| t.repeat_ms == 0)
                .map(|t| t.started_by + t.delay_ms * 1_000_000)
                .min();
            if let Some(deadline) = first {
                let bound = deadline.saturating_sub(before).div_ceil(1_000_000);
                assert!(
                    rc as u64 <= bound,
                    "backend timeout {rc} ms, past a timer due in {bound} ms"
                );
            }
        }
    }

    /// What a callback may not do: run the loop, free it, fork it.
    fn refused_from_callback(&mut self) {
        let mut events = [model::NO_EVENT; 4];
        // SAFETY: the loop is live; `events` has room for 4.
        let rcs = unsafe {
            [
                evl_run_once(self.lp, 0),
                evl_poll(self.lp, 0, events.as_mut_ptr(), 4),
                evl_run(self.lp),
                evl_loop_free(self.lp),
                evl_loop_fork(self.lp),
            ]
        };
        trace(|| format!("cb run_once/poll/run/free/fork -> {rcs:?}"));
        assert_eq!(
            rcs,
            [-libc::EBUSY; 5],
            "run_once, poll, run, free, fork from a callback"
        );
    }

    /// Registrations the next iteration must report (ready, level-triggered,
    /// armed, current); with `any_cb`, those without a callback too.
    fn must_report(&self, any_cb: bool) -> BTreeSet<RawFd> {
        self.regs
            .iter()
            .filter(|(fd, r)| {
                let Some(file) = self.files.get(fd) else {
                    return false;
                };
                let ready = r.interest & EVL_WRITE != 0
                    || file.peer.is_none()
                    || r.interest & EVL_READ != 0 && (file.unread > 0 || file.peer_eof);
                r.stale.is_none()
                    && (any_cb || r.cb != Cb::Null)
                    && r.interest & EVL_EDGE == 0
                    && (r.interest & EVL_ONESHOT == 0 || r.armed && !r.unsure)
                    && ready
            })
            .map(|(&fd, _)| fd)
            .collect()
    }
}

// ---- the driver: calls that run callbacks, made with no borrow of the world ----

/// `callbacks`: for run_once and evl_run, which drop the reports of
/// registrations without a callback.
fn start_call(quiet: bool, callbacks: bool) -> *mut evl_loop {
    with_world(|w| {
        if callbacks {
            w.regs
                .values_mut()
                .filter(|r| r.cb == Cb::Null)
                .for_each(|r| r.unsure = true);
        }
        w.call += 1;
        w.in_call = true;
        w.drops_null = callbacks;
        w.quiet = quiet;
        w.ran = 0;
        w.reported.clear();
        w.hook_log.clear();
        for hook in &mut w.hooks {
            hook.active_at_call_start = hook.state == HookState::Active;
        }
        w.lp
    })
}

fn end_call() {
    with_world(|w| {
        w.in_call = false;
        w.quiet = false;
    });
    take_failure();
}

fn run_once(timeout: i32, quiet: bool) {
    let must = with_world(|w| w.must_report(false));
    let lp = start_call(quiet, true);
    // SAFETY: the loop is live; no borrow of the world is held.
    let rc = unsafe { evl_run_once(lp, timeout) };
    trace(|| {
        format!(
            "top run_once({timeout}){} -> {rc}",
            if quiet { " quiet" } else { "" }
        )
    });
    end_call();
    with_world(|w| {
        assert_eq!(rc as i64, w.ran, "run_once's count of callbacks run");
        w.check_hook_log();
        w.maybe_unfinished = false;
        if quiet {
            let missed: Vec<_> = must.difference(&w.reported).collect();
            assert!(missed.is_empty(), "ready fds {missed:?} not reported");
        }
    });
}

fn poll(timeout: i32, max: usize, quiet: bool) {
    let must = with_world(|w| w.must_report(true));
    let mut events = vec![model::NO_EVENT; max];
    let lp = start_call(quiet, false);
    // SAFETY: the loop is live; `events` has room for `max`.
    let rc = unsafe { evl_poll(lp, timeout, events.as_mut_ptr(), max as i32) };
    trace(|| {
        format!(
            "top poll({timeout}, {max}){} -> {rc}",
            if quiet { " quiet" } else { "" }
        )
    });
    take_failure();
    assert!(rc >= 0 && rc as usize <= max, "poll returned {rc}");
    let events = &events[..rc as usize];
    with_world(|w| {
        w.check_hook_log();
        w.maybe_unfinished = rc as usize == max;
        for e in events {
            trace(|| {
                format!(
                    "  poll event fd {} revents {:#x} ud {}",
                    e.fd, e.revents, e.userdata as usize
                )
            });
            w.check_report(e.fd, e.revents, e.userdata as usize, None);
        }
        if quiet && events.len() < max {
            let missed: Vec<_> = must.difference(&w.reported).collect();
            assert!(
                missed.is_empty(),
                "ready fds {missed:?} not in poll's events"
            );
        }
        // The caller handles the events as its callbacks would have.
        for e in events {
            w.handle(e.fd, e.revents);
            w.callback_ops();
        }
    });
    end_call();
}

struct SendLoop(*mut evl_loop);
// SAFETY: only evl_stop, which any thread may call, is used through it.
unsafe impl Send for SendLoop {}

/// evl_run after posting a task that stops it; a watchdog thread stops a
/// run that goes on for 20 s and fails the test.
fn run_loop() {
    let was_pending = with_world(|w| {
        for task in w.tasks.iter_mut() {
            task.call = None;
        }
        w.in_loop = true;
        w.post(true);
        w.stop_pending
    });
    let lp = start_call(false, true);
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let watched = SendLoop(lp);
    let watchdog = std::thread::spawn(move || {
        let watched = watched;
        let timed_out = wait.recv_timeout(Duration::from_secs(20)).is_err();
        if timed_out {
            // SAFETY: the loop outlives this thread (joined below).
            unsafe { evl_stop(watched.0) };
        }
        timed_out
    });
    // SAFETY: the loop is live; no borrow of the world is held.
    let rc = unsafe { evl_run(lp) };
    done.send(()).unwrap();
    let timed_out = watchdog.join().unwrap();
    trace(|| format!("top run (stop pending: {was_pending}) -> {rc}"));
    end_call();
    assert!(!timed_out, "evl_run did not stop within 20 s");
    with_world(|w| {
        w.in_loop = false;
        w.maybe_unfinished = false;
        assert_eq!(rc, 0, "evl_run");
        if was_pending {
            assert_eq!(w.ran, 0, "evl_run with a stop pending ran callbacks");
        }
        w.stop_pending = false;
    });
}

fn perform(run: Run) {
    match run {
        Run::Once(t) => run_once(t, false),
        Run::QuietOnce => run_once(0, true),
        Run::Poll(t, max) => poll(t, max, false),
        Run::QuietPoll => poll(0, 64, true),
        Run::Loop => run_loop(),
    }
}

/// Until every one-shot timer has fired and every task has run (bounded),
/// then ends everything and checks that nothing calls back.
fn finish() {
    with_world(|w| {
        for key in 0..w.hooks.len() {
            if w.hooks[key].state == HookState::Active {
                // SAFETY: the loop is live.
                let rc = unsafe { evl_hook_stop(w.lp, w.hooks[key].id) };
                assert_eq!(rc, 0, "stop hook {key}");
                w.hooks[key].state = HookState::Stopped;
            }
        }
        w.hook_calls = 0;
        for key in 0..w.timers.len() {
            if w.timers[key].state == TimerState::Armed && w.timers[key].repeat_ms > 0 {
                // SAFETY: the loop is live.
                let rc = unsafe { evl_timer_stop(w.lp, w.timers[key].id) };
                assert_eq!(rc, 0, "stop timer {key}");
                w.timers[key].state = TimerState::Stopped;
            }
        }
    });
    let give_up = now_ns() + 10_000_000_000;
    loop {
        let left = with_world(|w| {
            let timers = w
                .timers
                .iter()
                .filter(|t| t.state == TimerState::Armed)
                .count();
            (timers, w.tasks.len())
        });
        if left == (0, 0) {
            break;
        }
        assert!(
            now_ns() < give_up,
            "after 10 s, {} one-shot timers never fired and {} tasks never ran",
            left.0,
            left.1
        );
        run_once(5, true);
    }
    with_world(|w| {
        let fds: Vec<RawFd> = w.regs.keys().copied().collect();
        for fd in fds {
            // SAFETY: the loop is live.
            assert_eq!(unsafe { evl_unregister(w.lp, fd) }, 0, "unregister fd {fd}");
            w.regs.remove(&fd);
        }
    });
    run_once(0, true);
    with_world(|w| {
        assert_eq!(w.ran, 0, "callbacks after everything ended");
        assert_eq!(w.hook_calls, 0, "hooks ran after they were stopped");
        // SAFETY: the loop is live and not running.
        assert_eq!(unsafe { evl_loop_free(w.lp) }, 0, "evl_loop_free");
        for (fd, file) in std::mem::take(&mut w.files) {
            close(fd);
            if let Some(peer) = file.peer {
                close(peer);
            }
        }
    });
}

fn one_seed(seed: u64) -> u64 {
    WORLD.with(|w| *w.borrow_mut() = Some(World::new(seed)));
    let steps = steps_per_seed(150);
    let result = catch_unwind(AssertUnwindSafe(|| {
        for _ in 0..steps {
            if let Some(run) = with_world(|w| w.op()) {
                perform(run);
            }
        }
        finish();
    }));
    let world = WORLD.with(|w| w.borrow_mut().take());
    if let Err(panic) = result {
        // Leave no fd behind (the loop is leaked: it may be mid-call).
        if let Some(w) = world {
            for (fd, file) in w.files {
                // SAFETY: our own fds.
                unsafe { libc::close(fd) };
                if let Some(peer) = file.peer {
                    // SAFETY: as above.
                    unsafe { libc::close(peer) };
                }
            }
        }
        std::panic::resume_unwind(panic);
    }
    steps
}

/// A plain main (`harness = false`): libtest's own threads would show as
/// "possibly lost" under memcheck. Runs the seeds, then (unless it is that
/// run) three seeds again under valgrind memcheck: no invalid access, no leak,
/// the callbacks' re-entry into the loop included.
fn main() {
    if model::filtered_out(&["model_loop", "core_model", "core_model_is_memcheck_clean"]) {
        return;
    }
    if std::env::var_os("EVLOOP_MODEL_UNDER_VALGRIND").is_some() {
        run_seeds("model_loop", 3, one_seed);
        return;
    }
    run_seeds("model_loop", 200, one_seed);
    if std::env::var_os("EVLOOP_MODEL_SEED").is_some()
        || std::env::var_os("EVLOOP_MODEL_SEEDS").is_some()
    {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let output = common::valgrind_command(&exe)
        .env("EVLOOP_MODEL_UNDER_VALGRIND", "1")
        .env("EVLOOP_MODEL_SEED_BASE", "1000")
        .env("EVLOOP_MODEL_STEPS", "150")
        .output()
        .unwrap();
    assert!(
        output.status.success()
            && String::from_utf8_lossy(&output.stderr).contains("all agreed with the model"),
        "the model under memcheck failed:\n{}",
        common::show(&output)
    );
    common::assert_memcheck_clean(&output);
    eprintln!("model_loop: 3 seeds under memcheck, clean");
}
