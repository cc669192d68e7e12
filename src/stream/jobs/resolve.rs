//! Name resolution: getaddrinfo on the pool, its outcome handed out as
//! `JobEvent::Resolved` and kept for [`StreamLoop::take_resolution`].
//!
//! A lookup touches nothing of the application's (it owns copies of the
//! names), so it is a detached job: freeing the loop does not wait for a
//! getaddrinfo under way, and cancelling one under way ends the request at
//! once (its result is dropped when it comes).

use std::ffi::{CStr, CString};
use std::sync::{Arc, Mutex};

use super::work::WorkKind;
use super::{JobOwner, WorkId};
use crate::pool::Job;
use crate::stream::StreamLoop;
use crate::sys::{self, AddrList, Errno, GaiError, Hints, EAI_CANCELED};

/// What a lookup gives: the addresses, or getaddrinfo's error.
pub(super) type Outcome = Result<AddrList, GaiError>;

/// What getaddrinfo is asked, owned.
#[derive(Clone, Debug, Default)]
pub struct ResolveRequest {
    pub node: Option<CString>,
    pub service: Option<CString>,
    pub hints: Hints,
}

/// The outcome of a resolution, as handed out.
#[derive(Clone, Default)]
pub struct Resolution {
    /// 0, getaddrinfo's EAI_* code, or EAI_CANCELED (-101) when cancelled.
    pub status: i32,
    /// With EAI_SYSTEM: the errno; else 0.
    pub errno: Errno,
    /// The addresses (empty unless `status` is 0).
    pub list: AddrList,
}

/// A lookup in progress: how to run it (again, after a fork) and where
/// its thread leaves the outcome before posting `WorkDone`. A clone shares
/// the slot.
#[derive(Clone)]
pub(super) struct Lookup {
    query: Arc<dyn Fn() -> Outcome + Send + Sync>,
    slot: Arc<Mutex<Option<Outcome>>>,
}

impl Lookup {
    pub(super) fn new(query: impl Fn() -> Outcome + Send + Sync + 'static) -> Lookup {
        Lookup {
            query: Arc::new(query),
            slot: Arc::new(Mutex::new(None)),
        }
    }

    /// The pool's job for this lookup: run the query, keep its outcome.
    pub(super) fn job(&self, id: WorkId) -> Job {
        let (query, slot) = (self.query.clone(), self.slot.clone());
        Job {
            id,
            run: Box::new(move || {
                let outcome = query();
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
            }),
            detached: true,
        }
    }

    /// The outcome its thread left, if any. Never blocks: a lock a thread
    /// of the parent held at a fork reads as no outcome.
    pub(super) fn take(&self) -> Option<Outcome> {
        self.slot.try_lock().ok()?.take()
    }

    pub(super) fn is_done(&self) -> bool {
        self.slot.try_lock().is_ok_and(|slot| slot.is_some())
    }

    /// The same query with a fresh slot, to ask again after a fork.
    pub(super) fn renewed(&self) -> Lookup {
        Lookup {
            query: self.query.clone(),
            slot: Arc::new(Mutex::new(None)),
        }
    }
}

/// An outcome (`None`: cancelled) as handed out.
pub(super) fn resolution(outcome: Option<Outcome>) -> Resolution {
    match outcome {
        Some(Ok(list)) => Resolution {
            status: 0,
            errno: 0,
            list,
        },
        Some(Err(e)) => Resolution {
            status: e.code,
            errno: e.errno,
            list: AddrList::default(),
        },
        None => Resolution {
            status: EAI_CANCELED,
            ..Resolution::default()
        },
    }
}

impl<D: Copy + Default> StreamLoop<D> {
    /// Runs getaddrinfo(`request`) on the pool; `JobEvent::Resolved`
    /// follows, and [`take_resolution`](Self::take_resolution) gives the
    /// outcome.
    pub fn getaddrinfo(&mut self, request: ResolveRequest, data: D) -> Result<WorkId, Errno>
    where
        D: Send + 'static,
    {
        let lookup = Lookup::new(move || {
            sys::getaddrinfo(
                request.node.as_deref(),
                request.service.as_deref(),
                &request.hints,
            )
        });
        self.submit_lookup(WorkKind::Resolve, lookup, data)
    }

    /// Stores the record of a lookup (made by `kind`) and queues its job.
    pub(super) fn submit_lookup(
        &mut self,
        kind: impl FnOnce(Lookup) -> WorkKind,
        lookup: Lookup,
        data: D,
    ) -> Result<WorkId, Errno>
    where
        D: Send + 'static,
    {
        let source = lookup.clone();
        self.submit_record(kind(lookup), data, |id| source.job(id))
    }

    /// Ends a resolution now: its `Resolved` (in a later iteration) says
    /// EAI_CANCELED, whether or not its getaddrinfo had started (a running
    /// one's result is dropped). ENOENT for an unknown request or one whose
    /// `Resolved` was handed out; cancelling twice is Ok.
    pub fn cancel_getaddrinfo(&mut self, id: WorkId) -> Result<(), Errno> {
        let jobs = self.jobs.as_mut().ok_or(libc::ENOENT)?;
        let record = jobs.work.get_mut(id).ok_or(libc::ENOENT)?;
        if !matches!(record.kind, WorkKind::Resolve(_)) {
            return Err(libc::ENOENT);
        }
        if record.cancelled {
            return Ok(());
        }
        record.cancelled = true;
        if let Some(pool) = &mut jobs.pool {
            pool.cancel(id);
        }
        self.post_job(JobOwner::WorkCancelled(id));
        Ok(())
    }

    /// The outcome of the resolution whose `Resolved` was handed out last
    /// (once: it is moved out).
    pub fn take_resolution(&mut self) -> Option<Resolution> {
        self.jobs.as_mut()?.delivered.take()
    }
}

/// getaddrinfo's description of `status` (0: "Success").
pub fn resolve_message(status: i32) -> &'static CStr {
    if status == 0 {
        c"Success"
    } else {
        sys::gai_strerror(status)
    }
}
