//! The thread pool and name resolution through the C ABI, seeded: random
//! submits (work functions that sleep, spin or wait on a gate), cancels
//! (of items queued, running, done, unknown), pool sizes changed on the
//! way, getaddrinfo requests (numeric names, names that fail, localhost),
//! some cancelled, from the driver and from inside done and resolve
//! callbacks, while the loop runs through evl_run_once, evl_stream_poll
//! and evl_run. Checked against a model:
//! - every work item gets its done exactly once, on the loop's thread,
//!   with 0 if its function ran and -ECANCELED if it never started, and
//!   evl_work_cancel's answer agrees (0: never ran; -EBUSY: ran; -ENOENT
//!   only once its done was called);
//! - no more work functions run at once than the largest pool size set;
//! - every resolution gets one callback: its result, or EVL_EAI_CANCELED
//!   exactly when it was cancelled;
//! - evl_run returns only when nothing is outstanding;
//! - evl_loop_free with work outstanding returns once no work function is
//!   running, and calls nothing.
//!
//! `EVLOOP_MODEL_SEEDS=500 cargo test --release --test model_work` runs
//! many seeds; tests/model/mod.rs has the other knobs.

mod model;

use evloop::ffi::*;
use model::{catch_in_callback, run_seeds, steps_per_seed, take_callback_failure, trace, Rng};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_int, c_void, CStr, CString};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What a work function does, decided at submit.
#[derive(Clone, Copy, Debug)]
enum Task {
    Nothing,
    Sleep(u64),
    Spin(u64),
    /// Waits until the model opens the gates.
    Gated,
}

/// One work item, shared with its pool thread (boxed, kept to the end).
struct Item {
    task: Task,
    started: AtomicBool,
    finished: AtomicBool,
}

/// The pool threads' side of a seed.
struct Shared {
    running: AtomicUsize,
    most: AtomicUsize,
    gate_open: AtomicBool,
}

static SHARED: Shared = Shared {
    running: AtomicUsize::new(0),
    most: AtomicUsize::new(0),
    gate_open: AtomicBool::new(false),
};

unsafe extern "C" fn work(ud: *mut c_void) {
    // SAFETY: the model keeps every item alive until the loop is freed.
    let item = unsafe { &*(ud as *const Item) };
    item.started.store(true, Ordering::SeqCst);
    let now = SHARED.running.fetch_add(1, Ordering::SeqCst) + 1;
    SHARED.most.fetch_max(now, Ordering::SeqCst);
    match item.task {
        Task::Nothing => {}
        Task::Sleep(us) => std::thread::sleep(Duration::from_micros(us)),
        Task::Spin(n) => {
            let mut x = 0u64;
            for i in 0..n {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x);
        }
        Task::Gated => {
            let give_up = Instant::now() + Duration::from_secs(60);
            while !SHARED.gate_open.load(Ordering::SeqCst) && Instant::now() < give_up {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
    SHARED.running.fetch_sub(1, Ordering::SeqCst);
    item.finished.store(true, Ordering::SeqCst);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The addresses of this name: one entry per (family).
    Families(&'static [c_int]),
    /// getaddrinfo fails with this EAI code.
    Fails(c_int),
    /// Anything but an error (localhost: whatever /etc/hosts says).
    Resolves,
}

struct WorkModel {
    /// Index of the item in `items`.
    index: usize,
    /// What evl_work_cancel answered (the last time).
    cancel: Option<c_int>,
    done: Vec<c_int>,
}

struct ResolveModel {
    expect: Expect,
    cancelled: bool,
    results: Vec<c_int>,
}

/// The loop's side of a seed.
struct Model {
    lp: *mut evl_loop,
    rng: Rng,
    loop_thread: std::thread::ThreadId,
    /// Boxed: pool threads hold their addresses while the Vec grows.
    #[allow(clippy::vec_box)]
    items: Vec<Box<Item>>,
    work: HashMap<u64, WorkModel>,
    resolutions: HashMap<u64, ResolveModel>,
    largest_size: usize,
    /// Evl_loop_free has been called: no callback may come.
    freed: bool,
    /// Callbacks may act on the loop (off while the driver checks counts).
    reentrant: bool,
}

thread_local! {
    static MODEL: RefCell<Option<Model>> = const { RefCell::new(None) };
}

fn with_model<R>(f: impl FnOnce(&mut Model) -> R) -> R {
    MODEL.with(|m| f(m.borrow_mut().as_mut().expect("a model")))
}

impl Model {
    fn outstanding(&self) -> usize {
        self.work.values().filter(|w| w.done.is_empty()).count()
            + self
                .resolutions
                .values()
                .filter(|r| r.results.is_empty())
                .count()
    }

    fn submit(&mut self) {
        let task = match self.rng.below(10) {
            0..=2 => Task::Nothing,
            3..=5 => Task::Sleep(self.rng.range(10, 2_000)),
            6..=7 => Task::Spin(self.rng.range(100, 100_000)),
            _ => Task::Gated,
        };
        let item = Box::new(Item {
            task,
            started: AtomicBool::new(false),
            finished: AtomicBool::new(false),
        });
        let ud = &*item as *const Item as *mut c_void;
        self.items.push(item);
        let mut id = 0;
        // SAFETY: the loop is live, on its thread; the item outlives it.
        let rc = unsafe { evl_work_submit(self.lp, Some(work), Some(on_done), ud, &mut id) };
        assert_eq!(rc, 0, "evl_work_submit");
        trace(|| format!("submit {id:#x} {task:?}"));
        self.work.insert(
            id,
            WorkModel {
                index: self.items.len() - 1,
                cancel: None,
                done: Vec::new(),
            },
        );
    }

    fn cancel_work(&mut self) {
        let ids: Vec<u64> = self.work.keys().copied().collect();
        let id = match self.rng.pick(&ids) {
            Some(id) if !self.rng.percent(5) => id,
            _ => 0xdead_0000_0001,
        };
        // SAFETY: the loop is live, on its thread.
        let rc = unsafe { evl_work_cancel(self.lp, id) };
        trace(|| format!("cancel {id:#x} -> {rc}"));
        let Some(w) = self.work.get_mut(&id) else {
            assert_eq!(rc, -libc::ENOENT, "cancel of an unknown id");
            return;
        };
        if !w.done.is_empty() {
            assert_eq!(rc, -libc::ENOENT, "cancel after done");
            return;
        }
        match rc {
            0 => {
                assert_ne!(w.cancel, Some(-libc::EBUSY), "0 after EBUSY");
                let item = &self.items[w.index];
                assert!(
                    !item.started.load(Ordering::SeqCst),
                    "cancelled, yet its function started"
                );
                w.cancel = Some(0);
            }
            // Taken by a thread (its function may not have set `started`
            // yet): its done must say 0.
            rc if rc == -libc::EBUSY => {
                assert_ne!(w.cancel, Some(0), "EBUSY after a cancel");
                w.cancel = Some(rc);
            }
            rc => panic!("evl_work_cancel -> {rc}"),
        }
    }

    fn resolve(&mut self) {
        let (node, service, hints, expect): (&CStr, Option<&CStr>, evl_addrinfo_hints, Expect) =
            match self.rng.below(7) {
                0 => (
                    c"127.0.0.1",
                    Some(c"80"),
                    stream_hints(0),
                    Expect::Families(&[libc::AF_INET]),
                ),
                1 => (
                    c"::1",
                    None,
                    stream_hints(0),
                    Expect::Families(&[libc::AF_INET6]),
                ),
                2 => (
                    c"not a number",
                    None,
                    stream_hints(libc::AI_NUMERICHOST),
                    Expect::Fails(libc::EAI_NONAME),
                ),
                3 => (
                    c"127.0.0.1",
                    Some(c"no-such-service-here"),
                    stream_hints(0),
                    Expect::Fails(libc::EAI_SERVICE),
                ),
                4 => (
                    c"bad..name",
                    None,
                    stream_hints(0),
                    Expect::Fails(libc::EAI_NONAME),
                ),
                5 => (c"localhost", None, stream_hints(0), Expect::Resolves),
                _ => (
                    c"::1",
                    Some(c"443"),
                    evl_addrinfo_hints {
                        flags: libc::AI_NUMERICSERV,
                        family: libc::AF_INET6,
                        socktype: 0,
                        protocol: 0,
                    },
                    // Any socket type: stream, datagram and raw.
                    Expect::Families(&[libc::AF_INET6, libc::AF_INET6, libc::AF_INET6]),
                ),
            };
        let service_ptr = service.map_or(std::ptr::null(), CStr::as_ptr);
        let mut id = 0;
        // SAFETY: the loop is live, on its thread; names and hints are copied.
        let rc = unsafe {
            evl_getaddrinfo(
                self.lp,
                node.as_ptr(),
                service_ptr,
                &hints,
                Some(on_resolved),
                std::ptr::null_mut(),
                &mut id,
            )
        };
        assert_eq!(rc, 0, "evl_getaddrinfo");
        trace(|| format!("resolve {id:#x} {node:?} {service:?} {expect:?}"));
        self.resolutions.insert(
            id,
            ResolveModel {
                expect,
                cancelled: false,
                results: Vec::new(),
            },
        );
        if self.rng.percent(30) {
            self.cancel_resolution(id);
        }
    }

    fn cancel_resolution(&mut self, id: u64) {
        // SAFETY: the loop is live, on its thread.
        let rc = unsafe { evl_getaddrinfo_cancel(self.lp, id) };
        trace(|| format!("cancel resolution {id:#x} -> {rc}"));
        match self.resolutions.get_mut(&id) {
            Some(r) if r.results.is_empty() => {
                assert_eq!(rc, 0);
                r.cancelled = true;
            }
            _ => assert_eq!(rc, -libc::ENOENT),
        }
    }

    fn set_size(&mut self) {
        let size = self.rng.range(1, 4) as u32;
        // SAFETY: the loop is live, on its thread.
        assert_eq!(unsafe { evl_pool_set_size(self.lp, size) }, 0);
        // SAFETY: as above.
        assert_eq!(unsafe { evl_pool_size(self.lp) }, size as c_int);
        self.largest_size = self.largest_size.max(size as usize);
        trace(|| format!("pool size {size}"));
    }

    /// Something a callback does now and then: submit, cancel, resolve.
    fn act_in_callback(&mut self) {
        if !self.reentrant {
            return;
        }
        match self.rng.below(10) {
            0 => self.submit(),
            1 => self.cancel_work(),
            2 => self.resolve(),
            3 => self.set_size(),
            _ => {}
        }
    }
}

fn stream_hints(flags: c_int) -> evl_addrinfo_hints {
    evl_addrinfo_hints {
        flags,
        family: 0,
        socktype: libc::SOCK_STREAM,
        protocol: 0,
    }
}

unsafe extern "C" fn on_done(_lp: *mut evl_loop, id: u64, status: c_int, _ud: *mut c_void) {
    catch_in_callback(|| {
        with_model(|m| {
            assert!(!m.freed, "done after evl_loop_free");
            assert_eq!(
                std::thread::current().id(),
                m.loop_thread,
                "done off the loop thread"
            );
            trace(|| format!("done {id:#x} {status}"));
            let w = m.work.get_mut(&id).expect("done of an unknown id");
            w.done.push(status);
            assert_eq!(w.done.len(), 1, "done twice");
            let item = &m.items[w.index];
            match status {
                0 => {
                    assert!(
                        item.finished.load(Ordering::SeqCst),
                        "done before its function ended"
                    );
                    assert_ne!(w.cancel, Some(0), "cancelled, yet done with 0");
                }
                s if s == -libc::ECANCELED => {
                    assert!(
                        !item.started.load(Ordering::SeqCst),
                        "ECANCELED after it ran"
                    );
                    assert_eq!(w.cancel, Some(0), "ECANCELED without a cancel");
                }
                other => panic!("done status {other}"),
            }
            m.act_in_callback();
        })
    });
}

unsafe extern "C" fn on_resolved(_lp: *mut evl_loop, result: *const evl_resolve_result) {
    catch_in_callback(|| {
        // SAFETY: valid during the callback.
        let r = unsafe { &*result };
        with_model(|m| {
            assert!(!m.freed, "resolution after evl_loop_free");
            assert_eq!(std::thread::current().id(), m.loop_thread);
            trace(|| format!("resolved {:#x} {} x{}", r.request, r.status, r.count));
            let model = m.resolutions.get_mut(&r.request).expect("unknown request");
            model.results.push(r.status);
            assert_eq!(model.results.len(), 1, "two results");
            assert!(!r.message.is_null());
            // SAFETY: a static string.
            let message = unsafe { CStr::from_ptr(r.message) }.to_str().unwrap();
            assert!(!message.is_empty());
            if model.cancelled {
                assert_eq!(r.status, EVL_EAI_CANCELED, "a cancelled request's result");
                assert_eq!(r.count, 0);
            } else {
                match model.expect {
                    Expect::Families(families) => {
                        assert_eq!(r.status, 0, "{message}");
                        // SAFETY: `count` entries.
                        let addrs = unsafe { std::slice::from_raw_parts(r.addrs, r.count) };
                        let got: Vec<c_int> = addrs.iter().map(|a| a.family).collect();
                        assert_eq!(got, families);
                    }
                    Expect::Fails(code) => {
                        assert_eq!(r.status, code, "{message}");
                        assert_eq!(r.count, 0);
                        assert!(r.addrs.is_null());
                    }
                    Expect::Resolves => {
                        assert_eq!(r.status, 0, "{message}");
                        assert!(r.count > 0);
                    }
                }
            }
            m.act_in_callback();
        })
    });
}

fn run_once(lp: *mut evl_loop, rng: &mut Rng) {
    let mut events = [model::NO_STREAM_EVENT; 4];
    // SAFETY: the loop is live, on its thread.
    let rc = unsafe {
        match rng.below(4) {
            0 => evl_run_once(lp, 0),
            1 => evl_run_once(lp, rng.range(1, 5) as c_int),
            2 => evl_stream_poll(lp, rng.range(0, 3) as c_int, events.as_mut_ptr(), 4),
            _ => evl_run_once(lp, 1),
        }
    };
    assert!(rc >= 0, "a run call -> {rc}");
    take_callback_failure();
}

fn one_seed(seed: u64) -> u64 {
    let steps = steps_per_seed(120);
    let mut lp = std::ptr::null_mut();
    // SAFETY: a valid place for the new loop.
    assert_eq!(unsafe { evl_loop_new(&mut lp) }, 0);
    SHARED.running.store(0, Ordering::SeqCst);
    SHARED.most.store(0, Ordering::SeqCst);
    SHARED.gate_open.store(false, Ordering::SeqCst);
    let mut driver = Rng::new(seed ^ 0xd21e);
    MODEL.with(|m| {
        *m.borrow_mut() = Some(Model {
            lp,
            rng: Rng::new(seed),
            loop_thread: std::thread::current().id(),
            items: Vec::new(),
            work: HashMap::new(),
            resolutions: HashMap::new(),
            largest_size: 0,
            freed: false,
            reentrant: true,
        })
    });
    with_model(Model::set_size);
    for _ in 0..steps {
        match driver.below(20) {
            0..=6 => with_model(Model::submit),
            7..=8 => with_model(Model::cancel_work),
            9..=10 => with_model(Model::resolve),
            11 => {
                let ids: Vec<u64> = with_model(|m| m.resolutions.keys().copied().collect());
                if let Some(id) = driver.pick(&ids) {
                    with_model(|m| m.cancel_resolution(id));
                }
            }
            12 => with_model(Model::set_size),
            13 => {
                trace(|| "gates open".into());
                SHARED.gate_open.store(true, Ordering::SeqCst);
            }
            _ => run_once(lp, &mut driver),
        }
    }
    SHARED.gate_open.store(true, Ordering::SeqCst);
    let free_early = driver.percent(25);
    if free_early {
        // Freed with work outstanding: every function running is over when
        // evl_loop_free returns, and nothing is called.
        trace(|| "free with work outstanding".into());
        with_model(|m| m.freed = true);
        // SAFETY: the loop is live, on its thread; nothing runs on it.
        assert_eq!(unsafe { evl_loop_free(lp) }, 0);
        with_model(|m| {
            for item in &m.items {
                assert!(
                    !item.started.load(Ordering::SeqCst) || item.finished.load(Ordering::SeqCst),
                    "a work function still runs after evl_loop_free"
                );
            }
        });
    } else {
        // SAFETY: the loop is live, on its thread.
        assert_eq!(unsafe { evl_run(lp) }, 0);
        take_callback_failure();
        with_model(|m| {
            assert_eq!(m.outstanding(), 0, "evl_run returned with work outstanding");
            for w in m.work.values() {
                assert_eq!(w.done.len(), 1);
            }
            for r in m.resolutions.values() {
                assert_eq!(r.results.len(), 1);
            }
            m.freed = true;
        });
        // SAFETY: as above.
        assert_eq!(unsafe { evl_loop_free(lp) }, 0);
    }
    let (largest, most) = with_model(|m| (m.largest_size, SHARED.most.load(Ordering::SeqCst)));
    assert!(
        most <= largest,
        "{most} work functions at once, the pool was never over {largest}"
    );
    MODEL.with(|m| m.borrow_mut().take());
    steps
}

#[test]
fn work_and_resolutions_agree_with_the_model() {
    run_seeds("model_work", 30, one_seed);
}

#[test]
fn names_are_copied_and_long_ones_refused() {
    let mut lp = std::ptr::null_mut();
    // SAFETY: a valid place for the new loop.
    assert_eq!(unsafe { evl_loop_new(&mut lp) }, 0);
    let long = CString::new(vec![b'a'; EVL_NAME_MAX as usize + 1]).unwrap();
    // SAFETY: the loop is live, on its thread.
    let rc = unsafe {
        evl_getaddrinfo(
            lp,
            long.as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            Some(on_resolved),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, -libc::ENAMETOOLONG);
    // SAFETY: as above.
    assert_eq!(unsafe { evl_loop_free(lp) }, 0);
}
