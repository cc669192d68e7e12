//! The thread pool: work that blocks (a user's work function, a
//! getaddrinfo) runs on one of at most `size` threads, and the pool tells
//! its owner, from that thread, when each job has run. It knows nothing of
//! loops: a loop's jobs code (`stream/jobs/`) hands it boxed closures and a
//! `notify` that posts to the loop.
//!
//! Threads start as jobs arrive, one for each job no idle thread can take,
//! up to the size; they wait for more when idle, and end at [`Pool::shutdown`]
//! or when the size is lowered below their number. Every signal is blocked
//! in them, so a signal meant for the application (or a loop's signalfd)
//! never lands on a pool thread.
//!
//! No lock is held while a job runs or while its owner is told. A job is in
//! the queue until a thread takes it, so [`Pool::cancel`] either removes it
//! (it never runs) or finds it gone (it runs, or ran, and is notified).

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::sys::{self, Errno};

/// Names a job, for `cancel` and the notification.
pub(crate) type JobId = u64;

/// Called on the pool thread with the id of each job that has run.
pub(crate) type Notify = Arc<dyn Fn(JobId) + Send + Sync>;

/// The most threads a pool may be given.
pub(crate) const MAX_POOL_SIZE: usize = 1024;

pub(crate) struct Job {
    pub(crate) id: JobId,
    pub(crate) run: Box<dyn FnOnce() + Send>,
    /// The job touches nothing but what it owns (the library's own jobs,
    /// such as a getaddrinfo): shutting down does not wait for it.
    pub(crate) detached: bool,
}

pub(crate) struct Pool {
    shared: Arc<Shared>,
    /// Indexed by worker number; a finished thread's slot is reused.
    workers: Vec<Option<JoinHandle<()>>>,
}

struct Shared {
    state: Mutex<State>,
    /// A job was queued, the size lowered, or shutdown began.
    wake: Condvar,
    /// An attached job ended (shutdown waits for the last one).
    attached_done: Condvar,
    notify: Notify,
}

struct State {
    queue: VecDeque<Job>,
    size: usize,
    /// Threads started and not yet ended.
    live: usize,
    /// Threads waiting for a job.
    idle: usize,
    /// Per worker number: it is running a detached job now.
    in_detached: Vec<bool>,
    /// Attached jobs running now.
    attached_running: usize,
    shutdown: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic never happens with the lock held (jobs run without it).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The number of CPUs this process may run on: the default size.
pub(crate) fn default_size() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Pool {
    pub(crate) fn new(size: usize, notify: Notify) -> Pool {
        Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    size: size.clamp(1, MAX_POOL_SIZE),
                    live: 0,
                    idle: 0,
                    in_detached: Vec::new(),
                    attached_running: 0,
                    shutdown: false,
                }),
                wake: Condvar::new(),
                attached_done: Condvar::new(),
                notify,
            }),
            workers: Vec::new(),
        }
    }

    /// Queues `job`; a thread runs it when one is free. Fails only when no
    /// thread exists and none can be started (EAGAIN...): then nothing is
    /// queued.
    pub(crate) fn submit(&mut self, job: Job) -> Result<(), Errno> {
        let shared = self.shared.clone();
        let mut state = shared.lock();
        state.queue.push_back(job);
        if state.queue.len() > state.idle && state.live < state.size {
            if let Err(e) = self.start_worker(&mut state) {
                if state.live == 0 {
                    state.queue.pop_back();
                    return Err(e);
                }
            }
        } else {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// Takes a job out of the queue: true if it was there (it will never
    /// run); false if a thread took it already (or no such job exists).
    pub(crate) fn cancel(&mut self, id: JobId) -> bool {
        let mut state = self.shared.lock();
        match state.queue.iter().position(|job| job.id == id) {
            Some(at) => {
                let job = state.queue.remove(at);
                drop(state);
                drop(job); // its closure, outside the lock
                true
            }
            None => false,
        }
    }

    /// At most `size` threads from now on (1..=MAX_POOL_SIZE): threads over
    /// it end once their job is done; queued jobs get new threads up to it.
    pub(crate) fn set_size(&mut self, size: usize) {
        let shared = self.shared.clone();
        let mut state = shared.lock();
        state.size = size.clamp(1, MAX_POOL_SIZE);
        self.shared.wake.notify_all();
        let unserved = state.queue.len().saturating_sub(state.idle);
        for _ in 0..unserved.min(state.size.saturating_sub(state.live)) {
            if self.start_worker(&mut state).is_err() {
                break;
            }
        }
    }

    /// Starts a thread, with every signal blocked.
    fn start_worker(&mut self, state: &mut State) -> Result<(), Errno> {
        let slot = self.free_slot(state);
        let shared = self.shared.clone();
        let handle = sys::with_signals_blocked(|| {
            std::thread::Builder::new()
                .name("evloop-pool".into())
                .spawn(move || work(shared, slot))
        })
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EAGAIN))?;
        state.live += 1;
        self.workers[slot] = Some(handle);
        Ok(())
    }

    /// A worker number whose thread has ended (joined now) or never was.
    fn free_slot(&mut self, state: &mut State) -> usize {
        for (slot, worker) in self.workers.iter_mut().enumerate() {
            match worker {
                None => return slot,
                Some(handle) if handle.is_finished() => {
                    let _ = worker.take().map(JoinHandle::join);
                    return slot;
                }
                Some(_) => {}
            }
        }
        self.workers.push(None);
        state.in_detached.push(false);
        self.workers.len() - 1
    }

    /// Ends the pool: queued jobs are dropped without running, jobs running
    /// now are waited for (detached ones are not: their threads end when
    /// they are done), and every other thread is joined.
    pub(crate) fn shutdown(&mut self) {
        let (queued, detached) = {
            let mut state = self.shared.lock();
            state.shutdown = true;
            let queued = std::mem::take(&mut state.queue);
            self.shared.wake.notify_all();
            while state.attached_running > 0 {
                state = self
                    .shared
                    .attached_done
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner());
            }
            (queued, state.in_detached.clone())
        };
        drop(queued);
        for (slot, worker) in self.workers.drain(..).enumerate() {
            match worker {
                // Dropping the handle detaches the thread.
                Some(handle) if !detached[slot] => {
                    let _ = handle.join();
                }
                _ => {}
            }
        }
    }

    /// In a child after fork(): no thread of the pool exists here. The
    /// threads' handles are forgotten (there is nothing to join), the
    /// queued jobs dropped if the queue can be reached (a thread of the
    /// parent may have held its lock at the fork: then the pool's memory
    /// stays, as the threads' own references to it do).
    pub(crate) fn abandon_after_fork(mut self) {
        // Nothing here can free what the threads held (they do not exist
        // in this process): their handles, and the shared state they keep
        // a reference to, stay allocated.
        for handle in self.workers.drain(..).flatten() {
            std::mem::forget(handle);
        }
        if let Ok(mut state) = self.shared.state.try_lock() {
            let queued = std::mem::take(&mut state.queue);
            state.shutdown = true;
            drop(state);
            drop(queued);
        }
        // `self` now holds no thread: Drop has nothing to join.
    }

    #[cfg(test)]
    fn live(&self) -> usize {
        self.shared.lock().live
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if !self.workers.is_empty() {
            self.shutdown();
        }
    }
}

/// A pool thread: takes jobs until shutdown, or until there are more
/// threads than the size.
fn work(shared: Arc<Shared>, me: usize) {
    let mut state = shared.lock();
    loop {
        if state.shutdown || state.live > state.size {
            break;
        }
        let Some(job) = state.queue.pop_front() else {
            state.idle += 1;
            state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            state.idle -= 1;
            continue;
        };
        if job.detached {
            state.in_detached[me] = true;
        } else {
            state.attached_running += 1;
        }
        drop(state);
        let (id, detached) = (job.id, job.detached);
        // A panicking job still counts as run; the thread goes on.
        let _ = catch_unwind(AssertUnwindSafe(job.run));
        (shared.notify)(id);
        state = shared.lock();
        if detached {
            state.in_detached[me] = false;
        } else {
            state.attached_running -= 1;
            if state.attached_running == 0 {
                shared.attached_done.notify_all();
            }
        }
    }
    state.live -= 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    fn counting_pool(size: usize) -> (Pool, mpsc::Receiver<JobId>) {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let notify: Notify = Arc::new(move |id| {
            let _ = tx.lock().unwrap().send(id);
        });
        (Pool::new(size, notify), rx)
    }

    fn job(id: JobId, run: impl FnOnce() + Send + 'static) -> Job {
        Job {
            id,
            run: Box::new(run),
            detached: false,
        }
    }

    #[test]
    fn every_job_runs_once_on_at_most_size_threads() {
        let (mut pool, done) = counting_pool(3);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        for id in 0..40 {
            let (running, most) = (running.clone(), most.clone());
            pool.submit(job(id, move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
                running.fetch_sub(1, Ordering::SeqCst);
            }))
            .unwrap();
        }
        let mut ids: Vec<JobId> = (0..40)
            .map(|_| done.recv_timeout(Duration::from_secs(60)).unwrap())
            .collect();
        ids.sort();
        assert_eq!(ids, (0..40).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) <= 3, "{most:?} at once");
        assert!(pool.live() <= 3);
    }

    #[test]
    fn a_cancelled_job_never_runs_and_a_taken_one_cannot_be_cancelled() {
        let (mut pool, done) = counting_pool(1);
        let (started_tx, started) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        pool.submit(job(1, move || {
            started_tx.send(()).unwrap();
            released.recv().unwrap();
        }))
        .unwrap();
        started.recv_timeout(Duration::from_secs(60)).unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let ran2 = ran.clone();
        pool.submit(job(2, move || {
            ran2.fetch_add(1, Ordering::SeqCst);
        }))
        .unwrap();
        assert!(!pool.cancel(1), "job 1 is running");
        assert!(pool.cancel(2));
        assert!(!pool.cancel(2));
        release.send(()).unwrap();
        assert_eq!(done.recv_timeout(Duration::from_secs(60)), Ok(1));
        pool.shutdown();
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        assert!(done.try_recv().is_err(), "job 2 was notified");
    }

    #[test]
    fn shutdown_waits_for_running_jobs_but_not_detached_ones() {
        let (mut pool, _done) = counting_pool(2);
        let finished = Arc::new(AtomicUsize::new(0));
        let (started_tx, started) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let started_tx2 = started_tx.clone();
        pool.submit(Job {
            id: 1,
            run: Box::new(move || {
                started_tx2.send(()).unwrap();
                let _ = released.recv();
            }),
            detached: true,
        })
        .unwrap();
        let finished2 = finished.clone();
        pool.submit(job(2, move || {
            started_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            finished2.fetch_add(1, Ordering::SeqCst);
        }))
        .unwrap();
        started.recv_timeout(Duration::from_secs(60)).unwrap();
        started.recv_timeout(Duration::from_secs(60)).unwrap();
        let queued_ran = Arc::new(AtomicUsize::new(0));
        let queued_ran2 = queued_ran.clone();
        pool.submit(job(3, move || {
            queued_ran2.fetch_add(1, Ordering::SeqCst);
        }))
        .unwrap();
        pool.shutdown();
        assert_eq!(finished.load(Ordering::SeqCst), 1, "job 2 was waited for");
        assert_eq!(queued_ran.load(Ordering::SeqCst), 0, "job 3 was dropped");
        // The detached job still waits; letting it go ends its thread.
        release.send(()).unwrap();
    }

    #[test]
    fn lowering_the_size_ends_threads_and_raising_it_starts_them() {
        let (mut pool, done) = counting_pool(4);
        for id in 0..8 {
            pool.submit(job(id, || std::thread::sleep(Duration::from_millis(5))))
                .unwrap();
        }
        for _ in 0..8 {
            done.recv_timeout(Duration::from_secs(60)).unwrap();
        }
        pool.set_size(1);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while pool.live() > 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "threads over the size stay"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        pool.submit(job(100, || {})).unwrap();
        assert_eq!(done.recv_timeout(Duration::from_secs(60)), Ok(100));
    }

    #[test]
    fn pool_threads_block_every_signal() {
        let (mut pool, done) = counting_pool(1);
        let (tx, rx) = mpsc::channel();
        pool.submit(job(1, move || {
            // SAFETY: reads the calling thread's mask into a zeroed set.
            let blocked = unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut set);
                libc::sigismember(&set, libc::SIGINT) == 1
                    && libc::sigismember(&set, libc::SIGTERM) == 1
            };
            tx.send(blocked).unwrap();
        }))
        .unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(true));
        done.recv_timeout(Duration::from_secs(60)).unwrap();
    }
}
