//! Cross-thread posts, wakes and stops, seeded: each of several threads
//! keeps one task in flight (posts, waits until it ran, posts the next) and
//! now and then wakes or stops the loop, while the loop's thread blocks in
//! evl_run_once(-1), evl_poll(-1) or evl_run, chosen at random. Checked:
//! every task runs exactly once and in its thread's order, and none is
//! lost: a poster that waits 10 s for its task fails the test (and stops
//! the loop so that nothing hangs).
//!
//! `EVLOOP_MODEL_SEEDS=1000 cargo test --release --test model_threads`
//! runs many seeds; tests/model/mod.rs has the other knobs.

mod model;

use evloop::ffi::*;
use model::{run_seeds, socketpair, steps_per_seed, trace, Rng};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_THREADS: usize = 6;

/// What the loop's thread and the posters share.
struct Shared {
    lp: *mut evl_loop,
    /// Per thread: how many of its tasks have run.
    done: [AtomicU64; MAX_THREADS],
    failed: Mutex<Option<String>>,
    any_failed: AtomicBool,
    finished: AtomicU64,
}

// SAFETY: other threads only call evl_post, evl_wake and evl_stop, which
// the header allows from any thread; the loop outlives them (scoped).
unsafe impl Sync for Shared {}

impl Shared {
    fn fail(&self, msg: String) {
        self.failed.lock().unwrap().get_or_insert(msg);
        self.any_failed.store(true, Ordering::Release);
        // Unblock the loop's thread, whatever it waits in.
        // SAFETY: the loop is live while the posters run.
        unsafe {
            evl_stop(self.lp);
            evl_wake(self.lp);
        }
    }
}

/// The loop's thread's view: which task of each thread comes next.
struct LoopSide<'a> {
    shared: &'a Shared,
    next: [u64; MAX_THREADS],
    ran: u64,
}

fn task_data(thread: usize, seq: u64) -> *mut c_void {
    ((thread as u64) << 32 | seq) as usize as *mut c_void
}

thread_local! {
    static LOOP_SIDE: std::cell::Cell<*mut LoopSide<'static>> = const { std::cell::Cell::new(std::ptr::null_mut()) };
}

unsafe extern "C" fn on_task(_lp: *mut evl_loop, ud: *mut c_void) {
    let side = LOOP_SIDE.with(|s| s.get());
    // SAFETY: set by the loop's thread for the whole run, used on it only.
    let side = unsafe { &mut *side };
    let thread = (ud as usize as u64 >> 32) as usize;
    let seq = ud as usize as u64 & 0xffff_ffff;
    side.ran += 1;
    if thread >= MAX_THREADS || seq != side.next[thread] {
        side.shared.fail(format!(
            "task {seq} of thread {thread} ran when task {} was next (lost, duplicated or out of order)",
            side.next.get(thread).copied().unwrap_or(0)
        ));
        return;
    }
    side.next[thread] += 1;
    side.shared.done[thread].store(seq + 1, Ordering::Release);
}

fn poster(shared: &Shared, thread: usize, posts: u64, seed: u64) {
    let mut rng = Rng::new(seed ^ ((thread as u64 + 1) * 0x1234_5678));
    for seq in 0..posts {
        if shared.any_failed.load(Ordering::Acquire) {
            break;
        }
        // SAFETY: the loop is live while the posters run.
        let rc = unsafe { evl_post(shared.lp, Some(on_task), task_data(thread, seq)) };
        if rc != 0 {
            shared.fail(format!("thread {thread}: evl_post -> {rc}"));
            break;
        }
        match rng.below(20) {
            // SAFETY: as above.
            0 | 1 => assert_eq!(unsafe { evl_wake(shared.lp) }, 0),
            // SAFETY: as above.
            2 => assert_eq!(unsafe { evl_stop(shared.lp) }, 0),
            3 => std::thread::yield_now(),
            _ => {}
        }
        let give_up = Instant::now() + Duration::from_secs(10);
        let mut spins = 0u32;
        while shared.done[thread].load(Ordering::Acquire) <= seq {
            if shared.any_failed.load(Ordering::Acquire) {
                return;
            }
            if Instant::now() > give_up {
                shared.fail(format!(
                    "thread {thread}: task {seq} not run 10 s after its post (lost)"
                ));
                return;
            }
            spins += 1;
            if spins < 50 {
                std::hint::spin_loop();
            } else if spins < 100 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
    shared.finished.fetch_add(1, Ordering::AcqRel);
    // The last one out makes sure the loop's thread sees it.
    // SAFETY: as above.
    unsafe { evl_stop(shared.lp) };
}

fn one_seed(seed: u64) -> u64 {
    let mut rng = Rng::new(seed);
    let threads = rng.range(2, MAX_THREADS as u64) as usize;
    let posts = steps_per_seed(300);
    trace(|| format!("{threads} threads, {posts} posts each"));
    let mut lp = std::ptr::null_mut();
    // SAFETY: `lp` is a valid place for the new loop.
    assert_eq!(unsafe { evl_loop_new(&mut lp) }, 0);
    // A registration that never fires keeps evl_run waiting (for a stop).
    let (quiet, quiet_peer) = socketpair();
    // SAFETY: the loop is live; the fd is ours.
    let rc = unsafe { evl_register(lp, quiet, EVL_READ, None, std::ptr::null_mut()) };
    assert_eq!(rc, 0);
    let shared = Shared {
        lp,
        done: Default::default(),
        failed: Mutex::new(None),
        any_failed: AtomicBool::new(false),
        finished: AtomicU64::new(0),
    };
    let mut side = LoopSide {
        shared: &shared,
        next: [0; MAX_THREADS],
        ran: 0,
    };
    std::thread::scope(|scope| {
        for t in 0..threads {
            let shared = &shared;
            scope.spawn(move || poster(shared, t, posts, seed));
        }
        let side_ptr: *mut LoopSide = &mut side;
        LOOP_SIDE.with(|s| s.set(side_ptr.cast()));
        let mut events = [model::NO_EVENT; 4];
        while !shared.any_failed.load(Ordering::Acquire)
            && shared.finished.load(Ordering::Acquire) < threads as u64
        {
            // SAFETY: the loop is live, on its own thread.
            let rc = unsafe {
                match rng.below(10) {
                    0..=5 => evl_run_once(lp, -1),
                    6 | 7 => evl_poll(lp, -1, events.as_mut_ptr(), 4),
                    _ => evl_run(lp),
                }
            };
            if rc < 0 {
                shared.fail(format!("the loop's call returned {rc}"));
            }
        }
        LOOP_SIDE.with(|s| s.set(std::ptr::null_mut()));
    });
    // SAFETY: the loop is live; every other thread is gone.
    unsafe {
        assert_eq!(evl_unregister(lp, quiet), 0);
        assert_eq!(evl_loop_free(lp), 0);
    }
    model::close(quiet);
    model::close(quiet_peer);
    if let Some(msg) = shared.failed.lock().unwrap().take() {
        panic!("{msg}");
    }
    for t in 0..threads {
        assert_eq!(
            shared.done[t].load(Ordering::Acquire),
            posts,
            "thread {t}: tasks run"
        );
    }
    assert_eq!(side.ran, posts * threads as u64, "tasks run in all");
    posts * threads as u64
}

#[test]
fn posts_wakes_and_stops_from_threads() {
    run_seeds("model_threads", 20, one_seed);
}
