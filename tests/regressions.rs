//! Regression tests for bugs found by hostile use (issues 12 and 25), through the
//! Rust API. Each names the bug it guards against.

use evloop::{Event, EventLoop};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Bug 1: the doorbell's "already rung" flag was cleared before the eventfd
/// was drained, so a post landing between the two lost its ring, and every
/// later post skipped ringing: its task stayed queued until something else
/// woke the loop. Here nothing else ever does: each of 8 threads posts,
/// waits until its task has run, and posts again, 100,000 posts in all.
/// A lost ring fails the test after a generous timeout instead of hanging.
#[test]
fn every_cross_thread_post_runs_without_another_wakeup() {
    const THREADS: usize = 8;
    const POSTS: usize = 100_000;
    const PATIENCE: Duration = Duration::from_secs(10);

    // ran[t]: how many of thread t's tasks have run.
    let ran = Arc::new((Mutex::new([0usize; THREADS]), Condvar::new()));
    let mut lp: EventLoop<u32> = EventLoop::new().unwrap();
    let handle = lp.handle();
    let lost = Arc::new(AtomicBool::new(false));

    let loop_thread = {
        let ran = ran.clone();
        std::thread::spawn(move || loop {
            // No timeout, no timer, no fd: only a ring can end this wait.
            lp.wait(None, 1024).unwrap();
            while let Some(event) = lp.next_event() {
                let Event::Task(t) = event else {
                    panic!("unexpected {event:?}")
                };
                ran.0.lock().unwrap()[t as usize] += 1;
                ran.1.notify_all();
            }
            if lp.take_stop() {
                return;
            }
        })
    };

    let posters: Vec<_> = (0..THREADS)
        .map(|t| {
            let (ran, handle, lost) = (ran.clone(), handle.clone(), lost.clone());
            std::thread::spawn(move || {
                for i in 1..=POSTS / THREADS {
                    if lost.load(Ordering::Relaxed) {
                        return;
                    }
                    handle.post(t as u32);
                    let deadline = Instant::now() + PATIENCE;
                    let mut counts = ran.0.lock().unwrap();
                    while counts[t] < i {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            eprintln!("thread {t}: post {i} never ran");
                            lost.store(true, Ordering::Relaxed);
                            return;
                        }
                        counts = ran.1.wait_timeout(counts, left).unwrap().0;
                    }
                }
            })
        })
        .collect();
    for poster in posters {
        poster.join().unwrap();
    }
    handle.stop();
    loop_thread.join().unwrap();
    assert!(!lost.load(Ordering::Relaxed), "a posted task was lost");
    assert_eq!(*ran.0.lock().unwrap(), [POSTS / THREADS; THREADS]);
}

/// The process's resident size, KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Issue 25, bug 2: registering an fd number that is not open grew the
/// registration table to that number before the kernel was asked:
/// i32::MAX aborted the process (an allocation of 80 GiB), 1,000,000 cost
/// 40 MiB. Now the kernel is asked first: EBADF, and nothing grows.
#[test]
fn registering_a_number_that_is_not_open_allocates_nothing() {
    let mut lp: EventLoop<u32> = EventLoop::new().unwrap();
    let before = rss_kib();
    for fd in [i32::MAX, i32::MAX - 1, 1_000_000, 100_000] {
        // SAFETY: F_GETFD only asks whether the number is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
            continue; // open here (valgrind's own, say): not this test's case
        }
        assert_eq!(
            lp.register(fd, evloop::event_loop::READ, 1),
            Err(libc::EBADF)
        );
        assert_eq!(lp.unregister(fd), Err(libc::ENOENT));
    }
    assert_eq!(
        lp.register(-1, evloop::event_loop::READ, 1),
        Err(libc::EINVAL)
    );
    assert_eq!(
        lp.register(i32::MIN, evloop::event_loop::READ, 1),
        Err(libc::EINVAL)
    );
    let grown = rss_kib().saturating_sub(before);
    assert!(grown < 8192, "the process grew by {grown} KiB");
    assert!(!lp.is_alive(), "something was registered");
}
