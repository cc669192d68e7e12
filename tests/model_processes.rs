//! Child processes through the C ABI, seeded: `cat`s fed random bytes in
//! random pieces through their stdin pipes (shut at random times), shells
//! that exit with a random code, kill themselves with a random signal or
//! write a random text to stderr, `sleep`s killed with a random signal or
//! left running, programs that do not exist, spawns from inside exit
//! callbacks, the pidfd path and the waiter-thread path (as without
//! pidfds), while the loop runs through evl_run_once, evl_stream_poll and
//! evl_run. Checked against a model:
//! - every child gets exactly one exit callback, with its code or signal;
//!   evl_process_kill and evl_process_pid answer -ENOENT after it;
//! - every pipe is byte-exact: what a cat echoes is what was written, what
//!   a shell writes to stderr arrives whole, then EOF;
//! - evl_run returns only once every child has ended;
//! - evl_loop_free with children running leaves none behind: each is
//!   reaped (waitpid answers ECHILD), none calls back;
//! - across fork (some seeds): in the child, evl_loop_fork gives every
//!   child of the parent not yet reported its exit with -ECHILD, once,
//!   and evl_spawn works there; the parent's children are unaffected.
//!
//! A plain main (`harness = false`): fork is only safe in a process with
//! one thread (the pool's threads are the point here, so the test makes
//! no others). `EVLOOP_MODEL_SEEDS=200 cargo test --release --test
//! model_processes` runs many seeds; tests/model/mod.rs has the knobs.

mod model;

use evloop::ffi::*;
use model::{catch_in_callback, run_seeds, steps_per_seed, take_callback_failure, trace, Rng};
use std::cell::RefCell;
use std::ffi::{c_int, c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Echoes its stdin to its stdout.
    Cat {
        stdin: u64,
        shut: bool,
    },
    Exit(c_int),
    Signal(c_int),
    /// `sleep 30`; killed with this signal, if it was.
    Sleep(Option<c_int>),
    /// Writes this text to its stderr (a pipe), nothing else.
    Stderr,
}

#[derive(Debug)]
struct Child {
    kind: Kind,
    process: u64,
    pid: c_int,
    /// What went to its stdin (cat), or what it writes to stderr.
    sent: Vec<u8>,
    received: Vec<u8>,
    eof: bool,
    /// Its pipes' streams (0: not a pipe).
    streams: [u64; 3],
    /// Its streams' CLOSED events.
    closed: usize,
    pipes: usize,
    exits: Vec<(c_int, c_int, c_int)>,
}

struct Model {
    lp: *mut evl_loop,
    rng: Rng,
    children: Vec<Child>,
    freed: bool,
    in_callback_spawns: bool,
}

thread_local! {
    static MODEL: RefCell<Option<Model>> = const { RefCell::new(None) };
}

fn with_model<R>(f: impl FnOnce(&mut Model) -> R) -> R {
    MODEL.with(|m| f(m.borrow_mut().as_mut().expect("a model")))
}

const SIGNALS: [c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGKILL,
    libc::SIGUSR1,
    libc::SIGHUP,
    libc::SIGALRM,
];

unsafe extern "C" fn on_exit(_lp: *mut evl_loop, exit: *const evl_process_exit) {
    catch_in_callback(|| {
        // SAFETY: valid during the callback.
        let e = unsafe { &*exit };
        with_model(|m| {
            assert!(!m.freed, "an exit after evl_loop_free");
            let index = e.userdata as usize;
            let child = &mut m.children[index];
            trace(|| {
                format!(
                    "exit #{index} {:?}: {} {} {}",
                    child.kind, e.exit_code, e.term_signal, e.status
                )
            });
            assert_eq!(e.process, child.process);
            assert_eq!(e.pid, child.pid);
            child.exits.push((e.exit_code, e.term_signal, e.status));
            assert_eq!(child.exits.len(), 1, "two exits");
            if m.in_callback_spawns && m.rng.percent(20) {
                let code = m.rng.below(256) as c_int;
                m.spawn(Kind::Exit(code));
            }
        })
    });
}

unsafe extern "C" fn on_pipe(lp: *mut evl_loop, ev: *const evl_stream_event) {
    catch_in_callback(|| {
        // SAFETY: valid during the callback.
        let ev = unsafe { &*ev };
        with_model(|m| {
            let child = &mut m.children[ev.userdata as usize];
            match ev.kind {
                EVL_STREAM_DATA => {
                    assert!(!child.eof, "data after EOF");
                    // SAFETY: `len` bytes at `data` during the callback.
                    let bytes = unsafe { std::slice::from_raw_parts(ev.data, ev.len) };
                    child.received.extend_from_slice(bytes);
                }
                EVL_STREAM_EOF => {
                    child.eof = true;
                    // SAFETY: the loop is live, on its thread.
                    assert_eq!(unsafe { evl_stream_close(lp, ev.stream) }, 0);
                }
                EVL_STREAM_CLOSED => {
                    child.closed += 1;
                    assert!(child.closed <= child.pipes, "a pipe closed twice");
                    let expected = [0, -libc::EPIPE, -libc::ECONNABORTED];
                    assert!(expected.contains(&ev.status), "pipe status {}", ev.status);
                }
                EVL_STREAM_DRAINED => {}
                other => panic!("pipe event {other}"),
            }
        })
    });
}

impl Model {
    fn spawn(&mut self, kind: Kind) {
        let index = self.children.len();
        let mut sent = Vec::new();
        let (args, stdio): (Vec<String>, [u32; 3]) = match &kind {
            Kind::Cat { .. } => (
                vec!["cat".into()],
                [EVL_STDIO_PIPE, EVL_STDIO_PIPE, EVL_STDIO_NULL],
            ),
            Kind::Exit(code) => (
                vec!["sh".into(), "-c".into(), format!("exit {code}")],
                [EVL_STDIO_NULL; 3],
            ),
            Kind::Signal(signo) => (
                vec![
                    "sh".into(),
                    "-c".into(),
                    format!("kill -{signo} $$; sleep 30"),
                ],
                [EVL_STDIO_NULL; 3],
            ),
            Kind::Sleep(_) => (vec!["sleep".into(), "30".into()], [EVL_STDIO_NULL; 3]),
            Kind::Stderr => {
                let len = self.rng.range(0, 3000) as usize;
                sent = (0..len)
                    .map(|_| {
                        b"abcdefghijklmnopqrstuvwxyz0123456789 .,"[self.rng.below(39) as usize]
                    })
                    .collect();
                let text = String::from_utf8(sent.clone()).unwrap();
                (
                    vec![
                        "sh".into(),
                        "-c".into(),
                        "printf %s \"$1\" >&2".into(),
                        "sh".into(),
                        text,
                    ],
                    [EVL_STDIO_NULL, EVL_STDIO_NULL, EVL_STDIO_PIPE],
                )
            }
        };
        let args: Vec<CString> = args.into_iter().map(|a| CString::new(a).unwrap()).collect();
        let mut argv: Vec<*const i8> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let options = evl_spawn_options {
            file: std::ptr::null(),
            argv: argv.as_ptr(),
            env: std::ptr::null(),
            cwd: std::ptr::null(),
            stdio,
            stdio_fd: [-1; 3],
            flags: 0,
            exit_cb: Some(on_exit),
            stream_cb: Some(on_pipe),
            userdata: index as *mut c_void,
        };
        let mut out = evl_spawned {
            process: 0,
            pid: 0,
            stdio: [0; 3],
        };
        // SAFETY: the loop is live, on its thread; the options are copied.
        let rc = unsafe { evl_spawn(self.lp, &options, &mut out) };
        assert_eq!(rc, 0, "evl_spawn {kind:?}");
        let pipes = stdio.iter().filter(|&&s| s == EVL_STDIO_PIPE).count();
        let kind = match kind {
            Kind::Cat { .. } => Kind::Cat {
                stdin: out.stdio[0],
                shut: false,
            },
            other => other,
        };
        trace(|| format!("spawn #{index} {kind:?} pid {}", out.pid));
        // SAFETY: as above.
        assert_eq!(unsafe { evl_process_pid(self.lp, out.process) }, out.pid);
        self.children.push(Child {
            kind,
            process: out.process,
            pid: out.pid,
            sent,
            received: Vec::new(),
            eof: false,
            streams: out.stdio,
            closed: 0,
            pipes,
            exits: Vec::new(),
        });
    }

    fn spawn_random(&mut self) {
        let kind = match self.rng.below(8) {
            0..=2 => Kind::Cat {
                stdin: 0,
                shut: false,
            },
            3 => Kind::Exit(self.rng.below(256) as c_int),
            4 => Kind::Signal(self.rng.pick(&SIGNALS).unwrap()),
            5 => Kind::Sleep(None),
            6 => Kind::Stderr,
            _ => {
                let argv = [c"no-such-program-for-evloop".as_ptr(), std::ptr::null()];
                let options = evl_spawn_options {
                    file: std::ptr::null(),
                    argv: argv.as_ptr(),
                    env: std::ptr::null(),
                    cwd: std::ptr::null(),
                    stdio: [0; 3],
                    stdio_fd: [-1; 3],
                    flags: 0,
                    exit_cb: Some(on_exit),
                    stream_cb: None,
                    userdata: usize::MAX as *mut c_void,
                };
                // SAFETY: the loop is live, on its thread.
                let rc = unsafe { evl_spawn(self.lp, &options, std::ptr::null_mut()) };
                assert_eq!(rc, -libc::ENOENT);
                return;
            }
        };
        self.spawn(kind);
    }

    fn feed_cat(&mut self) {
        let cats: Vec<usize> = (0..self.children.len())
            .filter(|&i| matches!(self.children[i].kind, Kind::Cat { shut: false, .. }))
            .collect();
        let Some(i) = self.rng.pick(&cats) else {
            return;
        };
        let len = self.rng.range(1, 40_000) as usize;
        let bytes = self.rng.bytes(len);
        let Kind::Cat { stdin, .. } = self.children[i].kind else {
            return;
        };
        // SAFETY: the loop is live, on its thread.
        let rc = unsafe { evl_stream_write(self.lp, stdin, bytes.as_ptr().cast(), len) };
        assert_eq!(rc, 0, "write to cat #{i}");
        self.children[i].sent.extend_from_slice(&bytes);
        trace(|| format!("feed #{i} {len} bytes"));
    }

    fn shut_cat(&mut self, i: usize) {
        if let Kind::Cat { stdin, shut: false } = self.children[i].kind {
            // SAFETY: the loop is live, on its thread.
            assert_eq!(unsafe { evl_stream_shutdown(self.lp, stdin) }, 0);
            self.children[i].kind = Kind::Cat { stdin, shut: true };
            trace(|| format!("shut #{i}"));
        }
    }

    fn kill_random(&mut self) {
        if self.children.is_empty() {
            return;
        }
        let i = self.rng.below(self.children.len() as u64) as usize;
        let signo = self.rng.pick(&SIGNALS).unwrap();
        let child = &mut self.children[i];
        if !child.exits.is_empty() {
            // SAFETY: the loop is live, on its thread.
            let rc = unsafe { evl_process_kill(self.lp, child.process, signo) };
            assert_eq!(rc, -libc::ENOENT, "kill after the exit");
            // SAFETY: as above.
            let rc = unsafe { evl_process_pid(self.lp, child.process) };
            assert_eq!(rc, -libc::ENOENT);
            return;
        }
        if let Kind::Sleep(None) = child.kind {
            // SAFETY: as above.
            let rc = unsafe { evl_process_kill(self.lp, child.process, signo) };
            assert_eq!(rc, 0, "kill a sleep");
            child.kind = Kind::Sleep(Some(signo));
            trace(|| format!("kill #{i} with {signo}"));
        }
    }

    /// Ends what would run for 30 s, and every cat's input.
    fn wind_down(&mut self) {
        for i in 0..self.children.len() {
            self.shut_cat(i);
            let child = &mut self.children[i];
            if child.exits.is_empty() {
                if let Kind::Sleep(None) = child.kind {
                    // SAFETY: the loop is live, on its thread.
                    let rc = unsafe { evl_process_kill(self.lp, child.process, libc::SIGKILL) };
                    assert_eq!(rc, 0);
                    child.kind = Kind::Sleep(Some(libc::SIGKILL));
                }
            }
        }
    }

    /// Every child against what it should have done.
    fn check_all(&self) {
        for (i, c) in self.children.iter().enumerate() {
            assert_eq!(c.exits.len(), 1, "#{i} {:?}: exits", c.kind);
            let (code, signal, status) = c.exits[0];
            assert_eq!(status, 0, "#{i}");
            match c.kind {
                Kind::Cat { .. } | Kind::Stderr => {
                    assert_eq!((code, signal), (0, 0), "#{i} {:?}", c.kind);
                    assert!(c.eof, "#{i}: no EOF");
                    assert_eq!(c.received.len(), c.sent.len(), "#{i}: bytes");
                    assert!(c.received == c.sent, "#{i}: the bytes differ");
                }
                Kind::Exit(n) => assert_eq!((code, signal), (n, 0), "#{i}"),
                Kind::Signal(s) | Kind::Sleep(Some(s)) => {
                    assert_eq!((code, signal), (-1, s), "#{i} {:?}", c.kind)
                }
                Kind::Sleep(None) => panic!("#{i}: a sleep ended by itself"),
            }
        }
    }
}

fn run_once(lp: *mut evl_loop, rng: &mut Rng) {
    let mut events = [model::NO_STREAM_EVENT; 8];
    // SAFETY: the loop is live, on its thread.
    let rc = unsafe {
        match rng.below(3) {
            0 => evl_run_once(lp, 0),
            1 => evl_run_once(lp, rng.range(1, 10) as c_int),
            // Stream events go to the array here: hand them on.
            _ => {
                let n = evl_stream_poll(lp, rng.range(0, 5) as c_int, events.as_mut_ptr(), 8);
                for e in &events[..n.max(0) as usize] {
                    on_pipe(lp, e);
                }
                n
            }
        }
    };
    assert!(rc >= 0, "a run call -> {rc}");
    take_callback_failure();
}

/// Runs until every child has its exit and its pipes are closed (60 s at most).
fn run_to_the_end(lp: *mut evl_loop) {
    let give_up = Instant::now() + Duration::from_secs(60);
    // SAFETY: the loop is live, on its thread.
    assert_eq!(unsafe { evl_run(lp) }, 0);
    take_callback_failure();
    with_model(|m| {
        for (i, c) in m.children.iter().enumerate() {
            assert!(Instant::now() < give_up);
            assert_eq!(c.closed, c.pipes, "#{i}: pipes still open after evl_run");
        }
    });
}

/// In the child of a fork: the parent's children are not ours.
fn in_forked_child(lp: *mut evl_loop) -> Result<(), String> {
    // SAFETY: the loop is live; this process has one thread.
    let rc = unsafe { evl_loop_fork(lp) };
    if rc != 0 {
        return Err(format!("evl_loop_fork -> {rc}"));
    }
    let (before, unreported, streams) = with_model(|m| {
        m.in_callback_spawns = false;
        let unreported: Vec<usize> = (0..m.children.len())
            .filter(|&i| m.children[i].exits.is_empty())
            .collect();
        let streams: Vec<u64> = m
            .children
            .iter()
            .filter(|c| c.closed < c.pipes)
            .flat_map(|c| c.streams)
            .filter(|&s| s != 0)
            .collect();
        (m.children.len(), unreported, streams)
    });
    // The pipes are the parent's business: our copies go (their CLOSED
    // events come, once each).
    for id in streams {
        // SAFETY: the loop is live, on its thread.
        let _ = unsafe { evl_stream_abort(lp, id) };
    }
    with_model(|m| m.spawn(Kind::Exit(5)));
    // SAFETY: as above.
    let rc = unsafe { evl_run(lp) };
    if rc != 0 {
        return Err(format!("evl_run -> {rc}"));
    }
    take_callback_failure();
    pool_jobs_checked(true)?;
    with_model(|m| {
        for &i in &unreported {
            let c = &m.children[i];
            if c.exits.len() != 1 || c.exits[0] != (-1, 0, -libc::ECHILD) {
                return Err(format!(
                    "#{i} {:?}: exits {:?} in the fork's child",
                    c.kind, c.exits
                ));
            }
        }
        let new = &m.children[before];
        if new.exits != [(5, 0, 0)] {
            return Err(format!("a child spawned after the fork: {:?}", new.exits));
        }
        Ok(())
    })
}

/// Work and a resolution in flight across the fork.
static GATE: AtomicBool = AtomicBool::new(false);

/// (work index, status) of every done, and every resolution's status.
type PoolEvents = (Vec<(usize, c_int)>, Vec<c_int>);

thread_local! {
    static POOL_EVENTS: RefCell<PoolEvents> = const { RefCell::new((Vec::new(), Vec::new())) };
}

unsafe extern "C" fn gated_work(_ud: *mut c_void) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while !GATE.load(Ordering::SeqCst) && Instant::now() < give_up {
        std::thread::sleep(Duration::from_micros(200));
    }
}

unsafe extern "C" fn quick_work(_ud: *mut c_void) {}

unsafe extern "C" fn pool_done(_lp: *mut evl_loop, _id: u64, status: c_int, ud: *mut c_void) {
    POOL_EVENTS.with(|e| e.borrow_mut().0.push((ud as usize, status)));
}

unsafe extern "C" fn pool_resolved(_lp: *mut evl_loop, r: *const evl_resolve_result) {
    // SAFETY: valid during the callback.
    let r = unsafe { &*r };
    let status = if r.status == 0 && r.count != 1 {
        -999
    } else {
        r.status
    };
    POOL_EVENTS.with(|e| e.borrow_mut().1.push(status));
}

/// Submits a gated work item (0), a quick one (1) and a resolution.
fn pool_jobs_in_flight(lp: *mut evl_loop) {
    GATE.store(false, Ordering::SeqCst);
    POOL_EVENTS.with(|e| *e.borrow_mut() = (Vec::new(), Vec::new()));
    // SAFETY: the loop is live, on its thread; the callbacks use no userdata memory.
    unsafe {
        let gated = Some(gated_work as unsafe extern "C" fn(*mut c_void));
        let quick = Some(quick_work as unsafe extern "C" fn(*mut c_void));
        let done = Some(pool_done as unsafe extern "C" fn(*mut evl_loop, u64, c_int, *mut c_void));
        assert_eq!(
            evl_work_submit(lp, gated, done, std::ptr::null_mut(), std::ptr::null_mut()),
            0
        );
        assert_eq!(
            evl_work_submit(lp, quick, done, 1 as *mut c_void, std::ptr::null_mut()),
            0
        );
        let rc = evl_getaddrinfo(
            lp,
            c"127.0.0.1".as_ptr(),
            std::ptr::null(),
            &evl_addrinfo_hints {
                flags: 0,
                family: 0,
                socktype: libc::SOCK_STREAM,
                protocol: 0,
            },
            Some(pool_resolved),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        assert_eq!(rc, 0);
    }
}

/// Each work item done once (the gated one: -ECANCELED in the fork's
/// child, where it never ended, 0 in the parent; the quick one: either),
/// and the resolution answered once, with its address.
fn pool_jobs_checked(in_fork_child: bool) -> Result<(), String> {
    POOL_EVENTS.with(|e| {
        let (mut done, resolved) = e.borrow().clone();
        done.sort();
        let gated = if in_fork_child { -libc::ECANCELED } else { 0 };
        let ok = done.len() == 2
            && done[0] == (0, gated)
            && done[1].0 == 1
            && (done[1].1 == 0 || (in_fork_child && done[1].1 == -libc::ECANCELED))
            && resolved == [0];
        if ok {
            Ok(())
        } else {
            Err(format!(
                "work done {done:?}, resolved {resolved:?} (in the fork's child: {in_fork_child})"
            ))
        }
    })
}

fn fork_and_check(lp: *mut evl_loop) {
    trace(|| "fork".into());
    pool_jobs_in_flight(lp);
    // SAFETY: fork; the child only runs the checks above and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        let code =
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| in_forked_child(lp))) {
                Ok(Ok(())) => 0,
                Ok(Err(msg)) => {
                    eprintln!("fork's child: {msg}");
                    1
                }
                Err(_) => {
                    eprintln!("fork's child: a check failed");
                    1
                }
            };
        // SAFETY: ends the fork's child without running the parent's exit code.
        unsafe { libc::_exit(code) };
    }
    let give_up = Instant::now() + Duration::from_secs(60);
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc == pid {
            break;
        }
        if Instant::now() > give_up {
            // SAFETY: kills and reaps our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the fork's child hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the fork's child failed (status {status:#x})"
    );
    // The parent's pool went on: its work ends when the gate opens.
    GATE.store(true, Ordering::SeqCst);
    let give_up = Instant::now() + Duration::from_secs(60);
    while POOL_EVENTS.with(|e| e.borrow().0.len() < 2 || e.borrow().1.is_empty()) {
        assert!(Instant::now() < give_up, "the parent's work never ended");
        // SAFETY: the loop is live, on its thread.
        assert!(unsafe { evl_run_once(lp, 10) } >= 0);
        take_callback_failure();
    }
    pool_jobs_checked(false).unwrap();
}

fn one_seed(seed: u64) -> u64 {
    let steps = steps_per_seed(40);
    let mut driver = Rng::new(seed ^ 0x9e0c);
    let mut lp = std::ptr::null_mut();
    // SAFETY: a valid place for the new loop.
    assert_eq!(unsafe { evl_loop_new(&mut lp) }, 0);
    let waiters = driver.percent(30);
    if waiters {
        // SAFETY: the loop is live, on its thread.
        unsafe { test_use_waiter_threads(lp, true) };
    }
    trace(|| format!("seed {seed}: waiter threads {waiters}"));
    MODEL.with(|m| {
        *m.borrow_mut() = Some(Model {
            lp,
            rng: Rng::new(seed),
            children: Vec::new(),
            freed: false,
            in_callback_spawns: true,
        })
    });
    for _ in 0..steps {
        match driver.below(12) {
            0..=3 => with_model(Model::spawn_random),
            4..=5 => with_model(Model::feed_cat),
            6 => {
                let n = with_model(|m| m.children.len());
                if n > 0 {
                    let i = driver.below(n as u64) as usize;
                    with_model(|m| m.shut_cat(i));
                }
            }
            7 => with_model(Model::kill_random),
            _ => run_once(lp, &mut driver),
        }
    }
    if driver.percent(15) {
        fork_and_check(lp);
    }
    if driver.percent(20) {
        // Freed with children running: each is killed and reaped, none
        // calls back.
        trace(|| "free with children running".into());
        let pids: Vec<c_int> = with_model(|m| {
            m.freed = true;
            m.children.iter().map(|c| c.pid).collect()
        });
        // SAFETY: the loop is live, on its thread.
        assert_eq!(unsafe { evl_loop_free(lp) }, 0);
        for pid in pids {
            // SAFETY: plain waitpid on a pid this process spawned.
            let rc = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
            let errno = std::io::Error::last_os_error().raw_os_error();
            assert!(
                rc == -1 && errno == Some(libc::ECHILD),
                "pid {pid} left behind (waitpid -> {rc})"
            );
        }
    } else {
        with_model(|m| {
            m.in_callback_spawns = false;
            m.wind_down();
        });
        run_to_the_end(lp);
        with_model(|m| m.check_all());
        with_model(|m| m.freed = true);
        // SAFETY: the loop is live, on its thread.
        assert_eq!(unsafe { evl_loop_free(lp) }, 0);
    }
    MODEL.with(|m| m.borrow_mut().take());
    steps
}

fn main() {
    if model::filtered_out(&["model_processes"]) {
        return;
    }
    run_seeds("model_processes", 20, one_seed);
}
