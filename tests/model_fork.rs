//! evl_loop_fork, seeded: a parent builds a loop with random registrations
//! (some of whose fds it closes without unregistering, some of those
//! numbers reused by unregistered or newly registered fds, ONESHOT ones
//! already reported) and a second loop with streams, forks, and the child
//! calls evl_loop_fork on both. Checked in the child: evl_loop_fork
//! succeeds; every current registration is still reported with its
//! userdata (ONESHOT ones re-armed, once); a registration whose fd was
//! closed is gone (never reported, evl_unregister says -ENOENT); streams
//! carry bytes both ways. Checked in the parent after the child ended: its
//! own loops are untouched (the child's unregistering reached nothing of
//! the parent's, a disarmed ONESHOT stays disarmed, its streams still work).
//!
//! A plain main (`harness = false`): fork is only safe in a process with
//! one thread. The child is killed after 20 s and reaped on every path.
//! `EVLOOP_MODEL_SEEDS=500 cargo test --release --test model_fork` runs many
//! seeds; tests/model/mod.rs has the other knobs.

mod model;

use evloop::ffi::*;
use model::{close, read, run_seeds, socketpair, write, Rng};
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Reg {
    ud: usize,
    interest: u32,
    /// EVL_ONESHOT and already reported in the parent.
    disarmed: bool,
}

struct Setup {
    raw: *mut evl_loop,
    streams: *mut evl_loop,
    /// Watched fd -> its peer, for every socket pair still open.
    files: BTreeMap<RawFd, RawFd>,
    /// Current registrations, by fd.
    regs: BTreeMap<RawFd, Reg>,
    /// fds registered and then closed without evl_unregister (numbers
    /// perhaps reused by an unregistered fd, never by a registered one).
    closed: Vec<RawFd>,
    /// Stream ids and their peers.
    stream_peers: Vec<(u64, RawFd)>,
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
    fds
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
        closed: Vec::new(),
        stream_peers: Vec::new(),
    };
    let mut ud = 100;
    for _ in 0..rng.range(3, 10) {
        match rng.below(6) {
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
                ud += 1;
                // SAFETY: the loop is live; the fd is ours.
                let rc = unsafe { evl_register(raw, fd, interest, None, ud as *mut c_void) };
                assert_eq!(rc, 0, "register");
                s.regs.insert(
                    fd,
                    Reg {
                        ud,
                        interest,
                        disarmed: false,
                    },
                );
            }
            // Close a registered fd without unregistering it.
            3 => {
                let fds: Vec<RawFd> = s.regs.keys().copied().collect();
                if let Some(fd) = rng.pick(&fds) {
                    s.regs.remove(&fd);
                    let peer = s.files.remove(&fd).unwrap();
                    close(fd);
                    close(peer);
                    s.closed.push(fd);
                }
            }
            // An unregistered socket pair (likely on a number just freed).
            4 => {
                let (fd, peer) = socketpair();
                assert_eq!(write(peer, b"y"), Ok(1));
                s.files.insert(fd, peer);
            }
            // A stream with bytes waiting both ways.
            _ => {
                let (fd, peer) = socketpair();
                let mut id = 0;
                // SAFETY: the loop is live; the fd is given to the stream.
                let rc =
                    unsafe { evl_stream_open(streams, fd, None, std::ptr::null_mut(), &mut id) };
                assert_eq!(rc, 0);
                s.stream_peers.push((id, peer));
            }
        }
    }
    // Numbers reused by a registration are that registration's now.
    let current: Vec<RawFd> = s.regs.keys().copied().collect();
    s.closed.retain(|fd| !current.contains(fd));
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

fn child(s: &Setup, rng: &mut Rng) {
    // SAFETY: the loops are live, and this process has one thread.
    unsafe {
        assert_eq!(evl_loop_fork(s.raw), 0, "evl_loop_fork (registrations)");
        assert_eq!(evl_loop_fork(s.streams), 0, "evl_loop_fork (streams)");
    }
    // Every current registration is there, ONESHOT ones armed again.
    let mut reported = poll_reported(s.raw, &s.regs, "child");
    reported.sort();
    let mut must = must_report(&s.regs, true);
    must.sort();
    assert_eq!(reported, must, "child: fds reported after evl_loop_fork");
    let again = poll_reported(s.raw, &s.regs, "child, second poll");
    for fd in again {
        assert!(
            s.regs[&fd].interest & EVL_ONESHOT == 0,
            "child: ONESHOT fd {fd} reported twice"
        );
    }
    // Closed ones are gone.
    for &fd in &s.closed {
        // SAFETY: the loop is live.
        let rc = unsafe { evl_unregister(s.raw, fd) };
        assert_eq!(
            rc,
            -libc::ENOENT,
            "child: unregister fd {fd}, closed before the fork"
        );
    }
    // Unregister some current ones: the parent's set must not notice.
    for &fd in s.regs.keys() {
        if rng.percent(50) {
            // SAFETY: the loop is live.
            let rc = unsafe { evl_unregister(s.raw, fd) };
            assert_eq!(rc, 0, "child: unregister fd {fd}");
        }
    }
    // SAFETY: the loop is live.
    assert_eq!(unsafe { evl_wake(s.raw) }, 0);
    // Streams carry bytes both ways.
    for &(id, peer) in &s.stream_peers {
        let msg = format!("to child {id:#x}");
        assert_eq!(write(peer, msg.as_bytes()), Ok(msg.len()));
        stream_receives(s.streams, id, msg.as_bytes(), "child");
        let reply = format!("from child {id:#x}");
        // SAFETY: the loop is live; the bytes are valid.
        let rc = unsafe { evl_stream_write(s.streams, id, reply.as_ptr().cast(), reply.len()) };
        assert_eq!(rc, 0, "child: stream write");
        peer_receives(s.streams, peer, reply.as_bytes(), "child");
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
    let s = build(&mut rng);
    let mut child_rng = Rng::new(seed ^ 0xc41d);
    // SAFETY: this process has one thread (harness = false).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let ok =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child(&s, &mut child_rng)))
                .is_ok();
        if !ok {
            eprintln!("MODEL FAILURE in the child of model_fork seed {seed}; replay with\n  EVLOOP_MODEL_SEED={seed} cargo test --release --test model_fork");
        }
        // SAFETY: leave without running the parent's destructors twice.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let child_ok = reap(pid);
    // The parent's loops are as they were: nothing the child did reached them.
    let mut reported = poll_reported(s.raw, &s.regs, "parent after the child");
    reported.sort();
    let mut must = must_report(&s.regs, false);
    must.sort();
    assert_eq!(
        reported, must,
        "parent: fds reported after the child ended (the child shares its epoll set?)"
    );
    for &(id, peer) in &s.stream_peers {
        let msg = format!("to parent {id:#x}");
        assert_eq!(write(peer, msg.as_bytes()), Ok(msg.len()));
        stream_receives(s.streams, id, msg.as_bytes(), "parent");
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
    for (_, peer) in &s.stream_peers {
        close(*peer);
    }
    1
}

fn main() {
    if model::filtered_out(&["model_fork"]) {
        return;
    }
    run_seeds("model_fork", 100, one_seed);
}
