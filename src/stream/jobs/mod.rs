//! What runs beside a loop's own I/O: work on the thread pool
//! (`work.rs`), name resolution on it (`resolve.rs`), connections by name
//! with Happy Eyeballs (`connect_host.rs`, over the pure schedule of
//! `happy_eyeballs.rs`), and child processes watched through their pidfds
//! (`process.rs`).
//!
//! All of it lives in one [`Jobs`] box the loop makes at first use. It
//! reaches the loop through one [`Owner`] variant, `Owner::Job`, whose
//! [`JobOwner`] says what a registration, timer or task is for:
//! - tasks: the pool posts `WorkDone` through the loop's cross-thread
//!   queue when a job has run (a child's waiter thread, where there are
//!   no pidfds, `ProcessEnded`); the loop posts itself `WorkCancelled` and
//!   `ProcessOrphaned`, so that every outcome arrives the same way;
//! - registrations: a child's pidfd, a connection attempt's socket;
//! - timers: the stagger between connection attempts.
//!
//! What they make for the application comes out as [`JobEvent`]s (work
//! done, a resolution, a child's exit), or as ordinary stream events (a
//! connection by name, the pipes of a child).
//!
//! Rules the loop keeps for all of it: each work item, resolution and child
//! gets exactly one event, on the loop's thread; outstanding work,
//! resolutions and children keep the loop alive (`is_alive`); freeing the
//! loop waits for work functions running, drops what has not started,
//! kills and reaps children still running, and calls nothing; in a child
//! after fork the pool's threads are gone and the children are the
//! parent's: `reinit_jobs_after_fork` (from
//! [`StreamLoop::reinit_after_fork`]) settles each outcome, and a child
//! that frees the loop without it leaves the parent's work and children
//! alone (`Jobs::pid`).

mod connect_host;
mod happy_eyeballs;
mod process;
mod resolve;
mod work;

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::Arc;

use super::{Event, Owner, StreamId, StreamLoop};
use crate::event_loop::TimerId;
use crate::pool::{self, Job, Notify, Pool};
use crate::slab::{Slab, OTHER_KIND};
use crate::sys::Errno;

pub use connect_host::{gai_errno, HostResolver};
pub use process::{ExitStatus, SpawnOptions, Spawned, Stdio};
pub use resolve::{resolve_message, Resolution, ResolveRequest};

use connect_host::HostConnect;
use process::Process;
use work::WorkRecord;

/// Names a work item or a resolution (one table: a resolution is work the
/// library gives the pool).
pub type WorkId = u64;

/// Names a child process. Its ids never name a work item.
pub type ProcessId = u64;

/// What one of the loop's registrations, timers or tasks is for, when the
/// jobs code made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum JobOwner {
    /// Task: the pool ran this work item's job.
    WorkDone(WorkId),
    /// Task: this work item ends without its job's result (cancelled, or
    /// left behind by a fork).
    WorkCancelled(WorkId),
    /// Registration: a child's pidfd.
    Process(ProcessId),
    /// Task: a child's waiter thread saw it end (no pidfds here).
    ProcessEnded(ProcessId),
    /// Task: a child of the parent process, seen in a child after fork.
    ProcessOrphaned(ProcessId),
    /// Registration: one connection attempt of a stream connecting by name.
    Attempt(StreamId),
    /// Timer: the next connection attempt's turn.
    Stagger(StreamId),
}

/// What the jobs code has for the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobEvent<D> {
    /// A work item is over: `error` 0 (its function ran) or ECANCELED
    /// (it never started: cancelled, or left behind by a fork).
    WorkDone { id: WorkId, error: Errno, data: D },
    /// A resolution is over: [`StreamLoop::take_resolution`] gives its
    /// result (until the next event is pulled).
    Resolved { id: WorkId, data: D },
    /// A child process has ended (or, in a child after fork, is not this
    /// process's to wait for: `status.error` ECHILD).
    Exited {
        id: ProcessId,
        pid: i32,
        status: ExitStatus,
        data: D,
    },
}

/// The loop's jobs, made at first use.
pub(super) struct Jobs<D> {
    /// Made at the first job; replaced after fork.
    pool: Option<Pool>,
    pool_size: usize,
    /// How the pool tells the loop that a job has run (a post of
    /// `WorkDone`); kept to give a new pool after fork.
    notify: Option<Notify>,
    work: Slab<WorkRecord<D>>,
    processes: Slab<Process<D>>,
    /// Streams connecting by name, until one attempt wins or all fail.
    host_connects: HashMap<StreamId, HostConnect>,
    /// The outcome of the resolution last handed out.
    delivered: Option<Resolution>,
    /// Test hook: resolves connect_host's names instead of getaddrinfo.
    host_resolver: Option<HostResolver>,
    /// Test hook: children are watched as without pidfds (waiter threads).
    no_pidfds: bool,
    /// The process the pool's threads and the children belong to: a child
    /// of a fork that frees the loop without evl_loop_fork must neither
    /// wait for the parent's threads nor kill the parent's children.
    pid: u32,
}

impl<D> Jobs<D> {
    fn new() -> Self {
        Jobs {
            pool: None,
            pool_size: pool::default_size(),
            notify: None,
            work: Slab::new(0),
            processes: Slab::new(OTHER_KIND),
            host_connects: HashMap::new(),
            delivered: None,
            host_resolver: None,
            no_pidfds: false,
            pid: std::process::id(),
        }
    }

    /// Queues `job` on the pool, making it (and its notify) first if need be.
    fn submit(&mut self, job: Job, notify: impl FnOnce() -> Notify) -> Result<(), Errno> {
        if self.pool.is_none() {
            let notify = self.notify.get_or_insert_with(notify).clone();
            self.pool = Some(Pool::new(self.pool_size, notify));
        }
        match &mut self.pool {
            Some(pool) => pool.submit(job),
            None => Err(libc::EAGAIN),
        }
    }

    /// The pool, if made, without its threads: queued jobs dropped, running
    /// work functions waited for. Freeing the loop starts with this. (In a
    /// child of a fork, whose threads are the parent's, it is abandoned.)
    pub(super) fn shutdown_pool(&mut self) {
        if let Some(mut pool) = self.pool.take() {
            if self.is_forked() {
                pool.abandon_after_fork();
            } else {
                pool.shutdown();
            }
        }
    }

    /// Whether this is a child of a fork that has not called
    /// `reinit_after_fork` (the threads and children are the parent's).
    fn is_forked(&self) -> bool {
        self.pid != std::process::id()
    }
}

impl<D> Drop for Jobs<D> {
    fn drop(&mut self) {
        self.shutdown_pool();
        self.kill_children();
        self.close_attempts();
    }
}

impl<D: Copy + Default> StreamLoop<D> {
    fn jobs(&mut self) -> &mut Jobs<D> {
        self.jobs.get_or_insert_with(|| Box::new(Jobs::new()))
    }

    /// A notify that posts `WorkDone(id)` to this loop, from any thread.
    fn work_done_notify(&self) -> Notify
    where
        D: Send + 'static,
    {
        let handle = self.core.handle();
        Arc::new(move |id| handle.post(Owner::Job(JobOwner::WorkDone(id))))
    }

    /// Posts to this loop's own queue, from its thread: the outcomes the
    /// loop decides itself arrive in order with the pool's.
    fn post_job(&self, job: JobOwner) {
        self.core.post(Owner::Job(job));
    }

    /// Whether work, resolutions or children are outstanding (connection
    /// attempts are registrations, which the core counts; so is a child's
    /// pidfd, but not a child watched by a waiter thread).
    pub(super) fn jobs_alive(&self) -> bool {
        self.jobs
            .as_ref()
            .is_some_and(|jobs| jobs.work.len() > 0 || jobs.processes.len() > 0)
    }

    /// A registration of the jobs code is ready.
    pub(super) fn job_ready(&mut self, job: JobOwner, fd: RawFd, revents: u32) -> Option<Event<D>> {
        match job {
            JobOwner::Process(id) => self.on_child_ended(id).map(Event::Job),
            JobOwner::Attempt(stream) => {
                self.on_attempt_ready(stream, fd, revents);
                None
            }
            _ => None,
        }
    }

    /// A timer of the jobs code is due.
    pub(super) fn job_timer(&mut self, job: JobOwner, timer: TimerId) {
        if let JobOwner::Stagger(stream) = job {
            self.on_stagger_timer(stream, timer);
        }
    }

    /// A task of the jobs code has come.
    pub(super) fn job_task(&mut self, job: JobOwner) -> Option<Event<D>> {
        match job {
            JobOwner::WorkDone(id) => self.on_work_over(id, false),
            JobOwner::WorkCancelled(id) => self.on_work_over(id, true),
            JobOwner::ProcessEnded(id) => self.on_child_ended(id).map(Event::Job),
            JobOwner::ProcessOrphaned(id) => self.on_process_orphaned(id).map(Event::Job),
            _ => None,
        }
    }

    /// Frees the pool's threads ahead of the loop itself: running work
    /// functions are waited for, queued ones dropped. (Dropping the loop
    /// does this too; evl_loop_free calls it first, while the loop is
    /// whole, so that a work function may still post to it.)
    pub fn shutdown_jobs(&mut self) {
        if let Some(jobs) = self.jobs.as_mut() {
            jobs.shutdown_pool();
        }
    }

    /// In a child after fork, after the core's own reinit: the pool's
    /// threads are gone, so work not known to have run is cancelled
    /// (ECANCELED; what the pool had posted before the fork still arrives
    /// first), resolutions are asked again of a new pool (a lookup has no
    /// effect to repeat), and the parent's children are given up (their
    /// pidfds closed, `Exited` with ECHILD).
    pub(super) fn reinit_jobs_after_fork(&mut self) -> Result<(), Errno> {
        let Some(jobs) = self.jobs.as_mut() else {
            return Ok(());
        };
        jobs.pid = std::process::id();
        if let Some(pool) = jobs.pool.take() {
            pool.abandon_after_fork();
        }
        self.reinit_work_after_fork()?;
        self.orphan_children();
        Ok(())
    }
}
