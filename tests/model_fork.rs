//! evl_loop_fork, seeded: a parent builds a loop with random registrations
//! (some of whose fds it closes without unregistering, some of those
//! numbers reused by unregistered or newly registered fds, ONESHOT ones
//! already reported) and a second loop with streams (over socket pairs and
//! pipes), and forks. Between fork() and the child's evl_loop_fork, the
//! parent acts on its copies (unregisters, closes with or without
//! unregistering, closes and reuses a number, re-arms as ONESHOT, registers
//! new fds, aborts and closes streams), then the child on its own (closes,
//! closes and reuses a number, registers new fds); the plan is drawn before
//! the fork, so both know it. Then the child calls evl_loop_fork on both
//! loops.
//!
//! The model says what the child keeps. After fork() (the usual case, with
//! fork()'s handlers and /proc): exactly what was registered at the fork,
//! less what the child itself closed since, plus what it registered since;
//! nothing the parent did counts. The other ways, each a quarter of the
//! seeds: /proc hidden at the fork, or a raw fork syscall (no fork
//! handlers): the shared set as it is then decides, so what the parent
//! unregistered (or re-armed: a new token) is dropped too; /proc hidden
//! throughout: every registration whose number is open in the child is
//! kept (the documented fallbacks of evl_loop_fork).
//!
//! Checked in the child: evl_loop_fork succeeds; every registration kept
//! is reported when poll(2) finds its fd ready, with its userdata (ONESHOT
//! ones re-armed, once); nothing else is reported; evl_unregister says 0
//! for a kept registration and -ENOENT for any other; streams kept carry
//! bytes both ways (pipes: one way). Checked in the parent after the child
//! ended: its own loops are as its own steps made them (the child's
//! unregistering reached nothing of the parent's, a disarmed ONESHOT stays
//! disarmed, its streams still work).
//!
//! A plain main (`harness = false`): fork is only safe in a process with
//! one thread. The child is killed after 20 s and reaped on every path.
//! `EVLOOP_MODEL_SEEDS=5000 cargo test --release --test model_fork` runs
//! many seeds; tests/model/mod.rs has the other knobs.

mod model;

use evloop::ffi::*;
use model::{close, is_open, pipe, read, run_seeds, socketpair, trace, write, Rng};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::c_void;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
struct Reg {
    ud: usize,
    interest: u32,
    /// EVL_ONESHOT and already reported in the parent.
    disarmed: bool,
}

#[derive(Clone, Copy, Debug)]
struct StreamEnd {
    id: u64,
    /// The other end: a socket, or a pipe's write end (the stream reads).
    peer: RawFd,
    pipe: bool,
}

struct Setup {
    raw: *mut evl_loop,
    streams: *mut evl_loop,
    /// Every open fd of the test's and its peer (socket pairs, and the
    /// numbers reused by them).
    files: BTreeMap<RawFd, RawFd>,
    /// Current registrations, by fd.
    regs: BTreeMap<RawFd, Reg>,
    /// Registrations whose fds were closed without evl_unregister (numbers
    /// perhaps reused by an unregistered fd, never by a registered one).
    closed: BTreeMap<RawFd, Reg>,
    /// Streams not ended by this process.
    streams_open: Vec<StreamEnd>,
    /// The peers of every stream made.
    stream_peers: Vec<RawFd>,
    next_ud: usize,
}

impl Setup {
    fn ud(&mut self) -> usize {
        self.next_ud += 1;
        self.next_ud
    }

    /// A new socket pair with a byte waiting at `fd` (so it is ready
    /// whatever the interest), registered for READ and WRITE if `register`.
    fn new_pair(&mut self, register: bool, who: &str) -> RawFd {
        let (fd, peer) = socketpair();
        assert_eq!(write(peer, b"n"), Ok(1));
        self.files.insert(fd, peer);
        if register {
            self.register(fd, EVL_READ | EVL_WRITE, who);
        }
        fd
    }

    fn register(&mut self, fd: RawFd, interest: u32, who: &str) {
        let ud = self.ud();
        // SAFETY: the loop is live; the fd is ours.
        let rc = unsafe { evl_register(self.raw, fd, interest, None, ud as *mut c_void) };
        assert_eq!(rc, 0, "{who}: register fd {fd}");
        self.regs.insert(
            fd,
            Reg {
                ud,
                interest,
                disarmed: false,
            },
        );
    }

    /// Closes `fd` and its peer (this process's copies).
    fn close_pair(&mut self, fd: RawFd) {
        let peer = self.files.remove(&fd).unwrap();
        close(fd);
        close(peer);
    }

    /// Closes `fd` and its peer, and puts a new socket pair's end (a byte
    /// waiting) at the number `fd`.
    fn reuse_number(&mut self, fd: RawFd) {
        self.close_pair(fd);
        let (new, peer) = socketpair();
        if new != fd {
            // SAFETY: plain dup2 of our own fd onto a free number.
            assert_eq!(unsafe { libc::dup2(new, fd) }, fd);
            close(new);
        }
        assert_eq!(write(peer, b"z"), Ok(1));
        self.files.insert(fd, peer);
    }
}

/// How the child is made and what it finds there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ForkKind {
    /// fork(): the child has the snapshot its fork's handlers took.
    Fork,
    /// fork() with /proc hidden at the fork: no snapshot; the child reads
    /// the shared set as it is when it calls evl_loop_fork.
    NoProcAtFork,
    /// The fork syscall itself, without fork()'s handlers: as above.
    RawFork,
    /// /proc hidden at the fork and in the child: the child keeps every
    /// registration whose fd is open.
    NoProc,
}

/// What the parent does between fork() and the child's evl_loop_fork.
#[derive(Clone, Copy, Debug)]
enum ParentStep {
    Unregister(RawFd),
    UnregisterAndClose(RawFd),
    /// Without evl_unregister.
    Close(RawFd),
    CloseAndReuse {
        fd: RawFd,
        register: bool,
    },
    /// evl_modify with EVL_ONESHOT added: the set's entry gets a new token.
    Rearm(RawFd),
    Register,
    Abort(usize),
    /// Only streams over pipes: the graceful close of a socket acts on the
    /// socket the child shares (it shuts down the writing side).
    CloseStream(usize),
}

/// What the child does before its evl_loop_fork.
#[derive(Clone, Copy, Debug)]
enum ChildStep {
    /// Without evl_unregister (which would act on the parent's set).
    Close(RawFd),
    CloseAndReuse(RawFd),
    Register,
}

/// evl_poll(0) on a loop: the fds reported, checked against `regs`.
fn poll_reported(lp: *mut evl_loop, regs: &BTreeMap<RawFd, Reg>, who: &str) -> Vec<RawFd> {
    let mut events = [model::NO_EVENT; 64];
    // SAFETY: the loop is live; `events` has room for 64.
    let n = unsafe { evl_poll(lp, 0, events.as_mut_ptr(), 64) };
    assert!(n >= 0, "{who}: evl_poll -> {n}");
    let mut fds = Vec::new();
    for e in &events[..n as usize] {
        let Some(reg) = regs.get(&e.fd) else {
            panic!(
                "{who}: event for fd {} that has no current registration (ud {})",
                e.fd, e.userdata as usize
            );
        };
        assert_eq!(e.userdata as usize, reg.ud, "{who}: fd {}: userdata", e.fd);
        fds.push(e.fd);
    }
    fds.sort();
    fds
}

/// Whether poll(2) finds `fd` ready for `interest` (or hung up, or in error).
fn ready(fd: RawFd, interest: u32) -> bool {
    let mut events = 0;
    if interest & EVL_READ != 0 {
        events |= libc::POLLIN;
    }
    if interest & EVL_WRITE != 0 {
        events |= libc::POLLOUT;
    }
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one pollfd, valid for the call.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n == 1 && pfd.revents & libc::POLLNVAL == 0
}

/// The registrations that must be reported now (level-triggered, ready:
/// every one wants WRITE or has bytes to read; armed).
fn must_report(regs: &BTreeMap<RawFd, Reg>, armed_again: bool) -> Vec<RawFd> {
    regs.iter()
        .filter(|(_, r)| armed_again || !r.disarmed)
        .map(|(&fd, _)| fd)
        .collect()
}

fn build(rng: &mut Rng) -> Setup {
    let mut raw = std::ptr::null_mut();
    let mut streams = std::ptr::null_mut();
    // SAFETY: valid places for the new loops.
    unsafe {
        assert_eq!(evl_loop_new(&mut raw), 0);
        assert_eq!(evl_loop_new(&mut streams), 0);
    }
    let mut s = Setup {
        raw,
        streams,
        files: BTreeMap::new(),
        regs: BTreeMap::new(),
        closed: BTreeMap::new(),
        streams_open: Vec::new(),
        stream_peers: Vec::new(),
        next_ud: 100,
    };
    for _ in 0..rng.range(3, 12) {
        match rng.below(7) {
            // Register a new socket pair (every one ready: WRITE, or READ
            // with a byte waiting), ONESHOT now and then.
            0..=2 => {
                let (fd, peer) = socketpair();
                s.files.insert(fd, peer);
                let mut interest =
                    [EVL_WRITE, EVL_READ, EVL_READ | EVL_WRITE][rng.below(3) as usize];
                if interest == EVL_READ {
                    assert_eq!(write(peer, b"x"), Ok(1));
                }
                if rng.percent(30) {
                    interest |= EVL_ONESHOT;
                }
                s.register(fd, interest, "build");
                s.closed.remove(&fd);
                trace(|| format!("register fd {fd} interest {interest:#x}"));
            }
            // Close a registered fd without unregistering it.
            3 => {
                let fds: Vec<RawFd> = s.regs.keys().copied().collect();
                if let Some(fd) = rng.pick(&fds) {
                    let reg = s.regs.remove(&fd).unwrap();
                    s.close_pair(fd);
                    s.closed.insert(fd, reg);
                    trace(|| format!("close fd {fd} without unregistering"));
                }
            }
            // An unregistered socket pair (likely on a number just freed).
            4 => {
                let fd = s.new_pair(false, "build");
                trace(|| format!("unregistered pair at fd {fd}"));
            }
            // A stream over a socket pair.
            5 => {
                let (fd, peer) = socketpair();
                open_stream(&mut s, fd, peer, false);
            }
            // A stream over a pipe's read end.
            _ => {
                let (fd, peer) = pipe();
                open_stream(&mut s, fd, peer, true);
            }
        }
    }
    // Report every ONESHOT once in the parent: disarmed from then on.
    if rng.percent(70) {
        for fd in poll_reported(raw, &s.regs, "parent before fork") {
            let reg = s.regs.get_mut(&fd).unwrap();
            assert!(!reg.disarmed, "parent: ONESHOT fd {fd} twice");
            if reg.interest & EVL_ONESHOT != 0 {
                reg.disarmed = true;
            }
        }
    }
    s
}

fn open_stream(s: &mut Setup, fd: RawFd, peer: RawFd, pipe: bool) {
    let mut id = 0;
    // SAFETY: the loop is live; the fd is given to the stream.
    let rc = unsafe { evl_stream_open(s.streams, fd, None, std::ptr::null_mut(), &mut id) };
    assert_eq!(rc, 0);
    trace(|| format!("stream {id:#x} at fd {fd} (pipe: {pipe})"));
    s.streams_open.push(StreamEnd { id, peer, pipe });
    s.stream_peers.push(peer);
}

fn plan(s: &Setup, rng: &mut Rng) -> (Vec<ParentStep>, Vec<ChildStep>) {
    let mut parent = Vec::new();
    for &fd in s.regs.keys() {
        parent.push(match rng.below(9) {
            0 => ParentStep::Unregister(fd),
            1 => ParentStep::UnregisterAndClose(fd),
            2 => ParentStep::Close(fd),
            3 => ParentStep::CloseAndReuse {
                fd,
                register: rng.percent(50),
            },
            4 => ParentStep::Rearm(fd),
            _ => continue,
        });
    }
    for _ in 0..rng.below(3) {
        let at = rng.below(parent.len() as u64 + 1) as usize;
        parent.insert(at, ParentStep::Register);
    }
    for (i, end) in s.streams_open.iter().enumerate() {
        if rng.percent(50) {
            parent.push(if end.pipe && rng.percent(50) {
                ParentStep::CloseStream(i)
            } else {
                ParentStep::Abort(i)
            });
        }
    }
    let mut child = Vec::new();
    for &fd in s.regs.keys() {
        match rng.below(8) {
            0 => child.push(ChildStep::Close(fd)),
            1 => child.push(ChildStep::CloseAndReuse(fd)),
            _ => {}
        }
    }
    for _ in 0..rng.below(3) {
        child.push(ChildStep::Register);
    }
    (parent, child)
}

/// The parent's steps, on its own copies; the model follows.
fn parent_acts(s: &mut Setup, steps: &[ParentStep]) {
    for &step in steps {
        trace(|| format!("parent: {step:?}"));
        match step {
            ParentStep::Unregister(fd) | ParentStep::UnregisterAndClose(fd) => {
                // SAFETY: the loop is live.
                let rc = unsafe { evl_unregister(s.raw, fd) };
                assert_eq!(rc, 0, "parent: unregister");
                s.regs.remove(&fd);
                if let ParentStep::UnregisterAndClose(_) = step {
                    s.close_pair(fd);
                }
            }
            ParentStep::Close(fd) => {
                s.regs.remove(&fd);
                s.close_pair(fd);
            }
            ParentStep::CloseAndReuse { fd, register } => {
                s.regs.remove(&fd);
                s.reuse_number(fd);
                if register {
                    s.register(fd, EVL_READ | EVL_WRITE, "parent");
                }
            }
            ParentStep::Rearm(fd) => {
                let reg = s.regs.get_mut(&fd).unwrap();
                reg.interest |= EVL_ONESHOT;
                reg.disarmed = false;
                // SAFETY: the loop is live.
                let rc = unsafe { evl_modify(s.raw, fd, reg.interest) };
                assert_eq!(rc, 0, "parent: modify");
            }
            ParentStep::Register => {
                s.new_pair(true, "parent");
            }
            ParentStep::Abort(i) | ParentStep::CloseStream(i) => {
                let id = s.streams_open[i].id;
                // SAFETY: the loop is live.
                let rc = unsafe {
                    match step {
                        ParentStep::Abort(_) => evl_stream_abort(s.streams, id),
                        _ => evl_stream_close(s.streams, id),
                    }
                };
                assert_eq!(rc, 0, "parent: end stream {id:#x}");
            }
        }
    }
    // The CLOSED events of the streams it ended, and nothing else.
    let ended: BTreeSet<u64> = steps
        .iter()
        .filter_map(|step| match step {
            ParentStep::Abort(i) | ParentStep::CloseStream(i) => Some(s.streams_open[*i].id),
            _ => None,
        })
        .collect();
    let mut closed = BTreeSet::new();
    let mut events = [model::NO_STREAM_EVENT; 16];
    loop {
        // SAFETY: the loop is live; `events` has room for 16.
        let n = unsafe { evl_stream_poll(s.streams, 0, events.as_mut_ptr(), 16) };
        assert!(n >= 0, "parent: evl_stream_poll -> {n}");
        if n == 0 {
            break;
        }
        for e in &events[..n as usize] {
            assert_eq!(e.kind, EVL_STREAM_CLOSED, "parent: stream event");
            closed.insert(e.stream);
        }
    }
    assert_eq!(closed, ended, "parent: the streams it ended, CLOSED");
    s.streams_open.retain(|end| !ended.contains(&end.id));
}

/// A stream loop's DATA for `id` until `want` bytes came (bounded).
fn stream_receives(lp: *mut evl_loop, id: u64, want: &[u8], who: &str) {
    let mut got = Vec::new();
    let give_up = Instant::now() + Duration::from_secs(10);
    let mut events = [model::NO_STREAM_EVENT; 16];
    while got.len() < want.len() {
        assert!(
            Instant::now() < give_up,
            "{who}: stream {id:#x} got {got:?} of {want:?}"
        );
        // SAFETY: the loop is live; `events` has room for 16.
        let n = unsafe { evl_stream_poll(lp, 10, events.as_mut_ptr(), 16) };
        assert!(n >= 0, "{who}: evl_stream_poll -> {n}");
        for e in &events[..n as usize] {
            assert!(
                e.kind == EVL_STREAM_DATA || e.kind == EVL_STREAM_DRAINED,
                "{who}: event kind {}",
                e.kind
            );
            if e.kind == EVL_STREAM_DATA {
                assert_eq!(e.stream, id, "{who}: DATA for another stream");
                // SAFETY: the library says `data` holds `len` bytes for now.
                got.extend_from_slice(unsafe { std::slice::from_raw_parts(e.data, e.len) });
            }
        }
    }
    assert_eq!(got, want, "{who}: stream bytes");
}

/// What the peer of a stream reads, until `want.len()` bytes (bounded).
fn peer_receives(lp: *mut evl_loop, peer: RawFd, want: &[u8], who: &str) {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    let give_up = Instant::now() + Duration::from_secs(10);
    let mut events = [model::NO_STREAM_EVENT; 16];
    while got.len() < want.len() {
        assert!(
            Instant::now() < give_up,
            "{who}: peer got {got:?} of {want:?}"
        );
        match read(peer, &mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(libc::EAGAIN) => {
                // SAFETY: the loop is live.
                unsafe { evl_stream_poll(lp, 5, events.as_mut_ptr(), 16) };
            }
            Err(e) => panic!("{who}: peer read errno {e}"),
        }
    }
    assert_eq!(got, want, "{who}: peer bytes");
}

/// Waits (at most 10 s) for the byte the parent sends once it has acted.
fn await_go(fd: RawFd) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd, valid for the call.
    let n = unsafe { libc::poll(&mut pfd, 1, 10_000) };
    assert_eq!(n, 1, "child: no go");
    let mut byte = [0u8];
    assert_eq!(read(fd, &mut byte), Ok(1));
}

fn child(
    s: &mut Setup,
    kind: ForkKind,
    parent_steps: &[ParentStep],
    steps: &[ChildStep],
    go: RawFd,
    rng: &mut Rng,
) {
    if kind == ForkKind::NoProcAtFork {
        hide_proc_for_tests(false);
    }
    await_go(go);
    // The table the child's loop holds: what the parent had, at the fork.
    let mut table: BTreeMap<RawFd, Reg> = s.closed.clone();
    table.extend(s.regs.iter().map(|(&fd, &reg)| (fd, reg)));
    let mut gone = BTreeSet::new(); // closed or reused by the child
    let mut new = BTreeMap::new();
    for &step in steps {
        trace(|| format!("child: {step:?}"));
        match step {
            ChildStep::Close(fd) => {
                s.close_pair(fd);
                gone.insert(fd);
            }
            ChildStep::CloseAndReuse(fd) => {
                s.reuse_number(fd);
                gone.insert(fd);
            }
            ChildStep::Register => {
                let fd = s.new_pair(true, "child");
                new.insert(fd, s.regs[&fd]);
            }
        }
    }
    table.extend(new.iter().map(|(&fd, &reg)| (fd, reg)));
    let let_go = |fd: &RawFd| {
        parent_steps.iter().any(|step| match *step {
            ParentStep::Unregister(f) | ParentStep::UnregisterAndClose(f) => f == *fd,
            ParentStep::Rearm(f) => f == *fd,
            _ => false,
        })
    };
    // What the model keeps (NoProc: every number open now).
    let mut kept: BTreeMap<RawFd, Reg> = match kind {
        ForkKind::Fork => s.regs.clone(),
        ForkKind::NoProcAtFork | ForkKind::RawFork => s
            .regs
            .iter()
            .filter(|(fd, _)| !let_go(fd))
            .map(|(&f, &r)| (f, r))
            .collect(),
        ForkKind::NoProc => table
            .iter()
            .filter(|(&fd, _)| is_open(fd))
            .map(|(&f, &r)| (f, r))
            .collect(),
    };
    if kind != ForkKind::NoProc {
        kept.retain(|fd, _| !gone.contains(fd));
        kept.extend(new.iter().map(|(&fd, &reg)| (fd, reg)));
    }
    // (Before evl_loop_fork, whose new fds take the lowest free numbers.)
    // SAFETY: the loops are live, and this process has one thread.
    unsafe {
        assert_eq!(evl_loop_fork(s.raw), 0, "evl_loop_fork (registrations)");
        assert_eq!(evl_loop_fork(s.streams), 0, "evl_loop_fork (streams)");
    }
    hide_proc_for_tests(false);
    trace(|| {
        format!(
            "child: the model keeps {:?}",
            kept.keys().collect::<Vec<_>>()
        )
    });
    // Every kept registration that is ready is reported (ONESHOT ones armed
    // again), and nothing else.
    let reported = poll_reported(s.raw, &kept, "child");
    let must: Vec<RawFd> = kept
        .iter()
        .filter(|(&fd, reg)| ready(fd, reg.interest))
        .map(|(&fd, _)| fd)
        .collect();
    assert_eq!(reported, must, "child: fds reported after evl_loop_fork");
    for fd in poll_reported(s.raw, &kept, "child, second poll") {
        assert!(
            kept[&fd].interest & EVL_ONESHOT == 0,
            "child: ONESHOT fd {fd} reported twice"
        );
    }
    // The others are gone; unregister some kept ones: the parent's set
    // must not notice.
    for &fd in table.keys() {
        let keep = kept.contains_key(&fd);
        if keep && rng.percent(50) {
            continue;
        }
        // SAFETY: the loop is live.
        let rc = unsafe { evl_unregister(s.raw, fd) };
        let want = if keep { 0 } else { -libc::ENOENT };
        assert_eq!(rc, want, "child: unregister fd {fd} (kept: {keep})");
    }
    // SAFETY: the loop is live.
    assert_eq!(unsafe { evl_wake(s.raw) }, 0);
    // Streams carry bytes both ways (over a pipe: to the child), unless the
    // parent ended them and the child had no snapshot to tell.
    let fallback = matches!(kind, ForkKind::NoProcAtFork | ForkKind::RawFork);
    for end in &s.streams_open {
        let ended_by_parent = parent_steps.iter().any(|step| match *step {
            ParentStep::Abort(i) | ParentStep::CloseStream(i) => s.streams_open[i].id == end.id,
            _ => false,
        });
        if fallback && ended_by_parent {
            continue;
        }
        let msg = format!("to child {:#x}", end.id);
        assert_eq!(write(end.peer, msg.as_bytes()), Ok(msg.len()));
        stream_receives(s.streams, end.id, msg.as_bytes(), "child");
        if end.pipe {
            continue;
        }
        let reply = format!("from child {:#x}", end.id);
        // SAFETY: the loop is live; the bytes are valid.
        let rc = unsafe { evl_stream_write(s.streams, end.id, reply.as_ptr().cast(), reply.len()) };
        assert_eq!(rc, 0, "child: stream write");
        peer_receives(s.streams, end.peer, reply.as_bytes(), "child");
    }
}

/// Waits for the child (killing it after 20 s); true if it exited with 0.
fn reap(pid: libc::pid_t) -> bool {
    let give_up = Instant::now() + Duration::from_secs(20);
    let mut status = 0;
    loop {
        // SAFETY: our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        }
        assert!(r == 0, "waitpid: {}", std::io::Error::last_os_error());
        if Instant::now() > give_up {
            // SAFETY: our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            eprintln!("the child ran for 20 s: killed");
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn one_seed(seed: u64) -> u64 {
    let mut rng = Rng::new(seed);
    let kind = [
        ForkKind::Fork,
        ForkKind::NoProcAtFork,
        ForkKind::RawFork,
        ForkKind::NoProc,
    ][rng.below(4) as usize];
    let mut s = build(&mut rng);
    let (parent_steps, child_steps) = plan(&s, &mut rng);
    trace(|| format!("{kind:?}"));
    let (go_read, go_write) = pipe();
    let mut child_rng = Rng::new(seed ^ 0xc41d);
    if matches!(kind, ForkKind::NoProcAtFork | ForkKind::NoProc) {
        hide_proc_for_tests(true);
    }
    // SAFETY: this process has one thread (harness = false); the raw
    // syscall makes a child as fork() does, without its handlers.
    let pid = unsafe {
        if kind == ForkKind::RawFork {
            libc::syscall(libc::SYS_fork) as libc::pid_t
        } else {
            libc::fork()
        }
    };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            child(
                &mut s,
                kind,
                &parent_steps,
                &child_steps,
                go_read,
                &mut child_rng,
            )
        }))
        .is_ok();
        if !ok {
            model::print_trace("the child");
            eprintln!("MODEL FAILURE in the child of model_fork seed {seed}; replay with\n  EVLOOP_MODEL_SEED={seed} cargo test --release --test model_fork");
        }
        // SAFETY: leave without running the parent's destructors twice.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    hide_proc_for_tests(false);
    // The parent acts before the child's evl_loop_fork, then lets it go on.
    let acted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        parent_acts(&mut s, &parent_steps)
    }));
    assert_eq!(write(go_write, b"g"), Ok(1));
    let child_ok = reap(pid);
    if let Err(panic) = acted {
        std::panic::resume_unwind(panic);
    }
    close(go_read);
    close(go_write);
    // The parent's loops are as its own steps left them: nothing the child
    // did reached them.
    let reported = poll_reported(s.raw, &s.regs, "parent after the child");
    assert_eq!(
        reported,
        must_report(&s.regs, false),
        "parent: fds reported after the child ended (the child shares its epoll set?)"
    );
    for end in &s.streams_open {
        let msg = format!("to parent {:#x}", end.id);
        assert_eq!(write(end.peer, msg.as_bytes()), Ok(msg.len()));
        stream_receives(s.streams, end.id, msg.as_bytes(), "parent");
    }
    assert!(child_ok, "the child failed (its message is above)");
    // SAFETY: the loops are live and not running.
    unsafe {
        assert_eq!(evl_loop_free(s.raw), 0);
        assert_eq!(evl_loop_free(s.streams), 0);
    }
    for (fd, peer) in &s.files {
        close(*fd);
        close(*peer);
    }
    for &peer in &s.stream_peers {
        close(peer);
    }
    1 + parent_steps.len() as u64 + child_steps.len() as u64
}

fn main() {
    if model::filtered_out(&["model_fork"]) {
        return;
    }
    run_seeds("model_fork", 100, one_seed);
}
