//! Work items: a function run on the pool, then its `WorkDone` on the
//! loop's thread. One record per item, from submit until its one event is
//! handed out; resolutions (`resolve.rs`) are records of the same table.

use super::resolve::Lookup;
use super::{JobEvent, JobOwner, WorkId};
use crate::pool::{Job, MAX_POOL_SIZE};
use crate::stream::{Event, StreamId, StreamLoop};
use crate::sys::Errno;

pub(super) enum WorkKind {
    /// The application's function.
    User,
    /// An application's resolution (evl_getaddrinfo).
    Resolve(Lookup),
    /// The lookup of a stream connecting by name.
    HostLookup(StreamId, Lookup),
}

pub(super) struct WorkRecord<D> {
    pub(super) kind: WorkKind,
    pub(super) data: D,
    /// Its `WorkCancelled` is posted: that task, not the job's result, is
    /// its outcome.
    pub(super) cancelled: bool,
}

impl<D: Copy + Default> StreamLoop<D> {
    /// Runs `work` on a pool thread; `JobEvent::WorkDone` follows on the
    /// loop's thread. The pool's threads block every signal.
    pub fn submit_work(
        &mut self,
        work: impl FnOnce() + Send + 'static,
        data: D,
    ) -> Result<WorkId, Errno>
    where
        D: Send + 'static,
    {
        self.submit_record(WorkKind::User, data, |id| Job {
            id,
            run: Box::new(work),
            detached: false,
        })
    }

    /// Stores a record and queues the job `job` makes for its id. On error
    /// nothing is left.
    pub(super) fn submit_record(
        &mut self,
        kind: WorkKind,
        data: D,
        job: impl FnOnce(WorkId) -> Job,
    ) -> Result<WorkId, Errno>
    where
        D: Send + 'static,
    {
        let notify = self.work_done_notify();
        let jobs = self.jobs();
        let id = jobs.work.insert(WorkRecord {
            kind,
            data,
            cancelled: false,
        });
        if let Err(e) = jobs.submit(job(id), || notify) {
            jobs.work.remove(id);
            return Err(e);
        }
        Ok(id)
    }

    /// Cancels a work item that has not started: it never runs, and its
    /// `WorkDone` (in a later iteration) says ECANCELED. EBUSY once its
    /// function has started (its `WorkDone` then says 0); ENOENT for an
    /// unknown item or one whose `WorkDone` was handed out. Cancelling
    /// twice is Ok.
    pub fn cancel_work(&mut self, id: WorkId) -> Result<(), Errno> {
        let jobs = self.jobs.as_mut().ok_or(libc::ENOENT)?;
        let record = jobs.work.get_mut(id).ok_or(libc::ENOENT)?;
        if !matches!(record.kind, WorkKind::User) {
            return Err(libc::ENOENT);
        }
        if record.cancelled {
            return Ok(());
        }
        if !jobs.pool.as_mut().is_some_and(|pool| pool.cancel(id)) {
            return Err(libc::EBUSY);
        }
        record.cancelled = true;
        self.post_job(JobOwner::WorkCancelled(id));
        Ok(())
    }

    /// At most `size` pool threads (1..=1024; default: the number of CPUs).
    pub fn set_pool_size(&mut self, size: usize) -> Result<(), Errno> {
        if !(1..=MAX_POOL_SIZE).contains(&size) {
            return Err(libc::EINVAL);
        }
        let jobs = self.jobs();
        jobs.pool_size = size;
        if let Some(pool) = &mut jobs.pool {
            pool.set_size(size);
        }
        Ok(())
    }

    pub fn pool_size(&self) -> usize {
        self.jobs
            .as_ref()
            .map_or_else(crate::pool::default_size, |jobs| jobs.pool_size)
    }

    /// A work item's `WorkDone` (the pool ran its job) or `WorkCancelled`
    /// task: its one event, unless the record is gone (a stale task) or
    /// another task is its outcome.
    pub(super) fn on_work_over(&mut self, id: WorkId, cancelled: bool) -> Option<Event<D>> {
        let jobs = self.jobs.as_mut()?;
        let record = jobs.work.get(id)?;
        if record.cancelled && !cancelled {
            return None; // its WorkCancelled is the outcome
        }
        let data = record.data;
        match &record.kind {
            WorkKind::User => {
                jobs.work.remove(id);
                let error = if cancelled { libc::ECANCELED } else { 0 };
                Some(Event::Job(JobEvent::WorkDone { id, error, data }))
            }
            WorkKind::Resolve(lookup) => {
                let outcome = if cancelled {
                    None
                } else {
                    // None: a result posted before a fork, for a lookup
                    // asked again since; the new one's comes later.
                    Some(lookup.take()?)
                };
                jobs.work.remove(id);
                jobs.delivered = Some(super::resolve::resolution(outcome));
                Some(Event::Job(JobEvent::Resolved { id, data }))
            }
            WorkKind::HostLookup(stream, lookup) => {
                let stream = *stream;
                let outcome = if cancelled {
                    None
                } else {
                    Some(lookup.take()?)
                };
                jobs.work.remove(id);
                self.on_host_resolved(stream, id, outcome);
                None
            }
        }
    }

    /// After a fork (see `reinit_jobs_after_fork`): each outstanding item
    /// gets its outcome in this process.
    pub(super) fn reinit_work_after_fork(&mut self) -> Result<(), Errno> {
        let Some(jobs) = self.jobs.as_mut() else {
            return Ok(());
        };
        let mut cancel = Vec::new();
        let mut again = Vec::new();
        for (slot, record) in jobs.work.iter() {
            let id = jobs.work.id_of(slot);
            if record.cancelled {
                continue; // its WorkCancelled is queued already
            }
            match &record.kind {
                WorkKind::User => cancel.push(id),
                WorkKind::Resolve(lookup) | WorkKind::HostLookup(_, lookup) => {
                    if !lookup.is_done() {
                        again.push((id, lookup.renewed()));
                    }
                }
            }
        }
        for id in cancel {
            self.post_job(JobOwner::WorkCancelled(id));
        }
        for (id, lookup) in again {
            let Some(jobs) = self.jobs.as_mut() else {
                break;
            };
            let job = lookup.job(id);
            if let Some(record) = jobs.work.get_mut(id) {
                match &mut record.kind {
                    WorkKind::Resolve(old) | WorkKind::HostLookup(_, old) => *old = lookup,
                    WorkKind::User => {}
                }
            }
            let submitted = match jobs.notify.clone() {
                Some(notify) => jobs.submit(job, || notify),
                None => Err(libc::EAGAIN),
            };
            if submitted.is_err() {
                if let Some(record) = jobs.work.get_mut(id) {
                    record.cancelled = true;
                }
                self.post_job(JobOwner::WorkCancelled(id));
            }
        }
        Ok(())
    }
}
