//! Hooks into the loop's iterations, as libev's and libuv's prepare, check
//! and idle watchers: code that runs just before the wait (prepare), just
//! after it (check), or in an iteration whose wait found nothing (idle; the
//! loop does not block while one is active).
//!
//! Like everything in the loop, hooks are pulled, never called: the caller
//! starts a [`HookRun`] of one kind and takes the hooks one at a time, with
//! no borrow of the loop held in between, so a hook may start and stop
//! hooks (its own included) and anything else. A hook stopped during a run
//! is not handed out after that; one started during a run of its kind
//! waits for the next iteration.

use super::EventLoop;
use crate::slab::Slab;
use crate::sys::Errno;

/// Names a hook: non-zero, and a stopped hook's id matches nothing again.
pub type HookId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookKind {
    /// Just before the loop waits.
    Prepare = 0,
    /// Just after the wait, before anything it found is handed out.
    Check = 1,
    /// In an iteration whose wait found nothing to do.
    Idle = 2,
}

struct Hook<D> {
    kind: HookKind,
    /// Start order: a run hands out the hooks started before it, in order.
    seq: u64,
    data: D,
}

pub(super) struct Hooks<D> {
    /// Hook ids are the slab's, like timer ids.
    table: Slab<Hook<D>>,
    /// The active hooks of each kind as (seq, id), in start order.
    active: [Vec<(u64, HookId)>; 3],
    next_seq: u64,
}

/// Where a run over the hooks of one kind is.
pub struct HookRun {
    kind: HookKind,
    /// The first sequence number not yet handed out.
    next: u64,
    /// Hooks started from here on wait for the next run.
    end: u64,
}

impl<D: Copy> Hooks<D> {
    pub(super) fn new() -> Self {
        Hooks {
            table: Slab::new(0),
            active: [Vec::new(), Vec::new(), Vec::new()],
            next_seq: 0,
        }
    }

    /// How many hooks are active, of every kind.
    pub(super) fn count(&self) -> usize {
        self.table.len()
    }

    pub(super) fn any_of(&self, kind: HookKind) -> bool {
        !self.active[kind as usize].is_empty()
    }

    fn start(&mut self, kind: HookKind, data: D) -> HookId {
        let seq = self.next_seq;
        self.next_seq += 1;
        let id = self.table.insert(Hook { kind, seq, data });
        // Sequences only grow: the list stays in start order.
        self.active[kind as usize].push((seq, id));
        id
    }

    fn stop(&mut self, id: HookId) -> bool {
        let Some(hook) = self.table.remove(id) else {
            return false;
        };
        let list = &mut self.active[hook.kind as usize];
        if let Ok(at) = list.binary_search(&(hook.seq, id)) {
            list.remove(at);
        }
        true
    }

    fn run(&self, kind: HookKind) -> HookRun {
        HookRun {
            kind,
            next: 0,
            end: self.next_seq,
        }
    }

    fn next(&self, run: &mut HookRun) -> Option<(HookId, D)> {
        let list = &self.active[run.kind as usize];
        let at = list.partition_point(|&(seq, _)| seq < run.next);
        let &(seq, id) = list.get(at).filter(|(seq, _)| *seq < run.end)?;
        run.next = seq + 1;
        self.table.get(id).map(|hook| (id, hook.data))
    }
}

impl<D: Copy + Default> EventLoop<D> {
    /// Starts a hook of `kind`; it runs in every iteration from the next
    /// one on (the current one, if its turn has not come yet) until stopped.
    pub fn start_hook(&mut self, kind: HookKind, data: D) -> HookId {
        self.hooks
            .get_or_insert_with(|| Box::new(Hooks::new()))
            .start(kind, data)
    }

    /// Stops a hook: it is not handed out again, not even later in the run
    /// that is handing it out. ENOENT for an unknown or stopped hook.
    pub fn stop_hook(&mut self, id: HookId) -> Result<(), Errno> {
        if self.hooks.as_mut().is_some_and(|hooks| hooks.stop(id)) {
            Ok(())
        } else {
            Err(libc::ENOENT)
        }
    }

    /// Whether any hook is active: the one question an iteration without
    /// hooks pays for.
    #[inline]
    pub fn has_hooks(&self) -> bool {
        self.hooks.as_ref().is_some_and(|hooks| hooks.count() > 0)
    }

    /// Whether an idle hook is active, so the next wait must not block.
    pub fn has_idle_hooks(&self) -> bool {
        self.hooks
            .as_ref()
            .is_some_and(|hooks| hooks.any_of(HookKind::Idle))
    }

    /// Starts handing out the hooks of `kind` that are active now.
    pub fn hook_run(&self, kind: HookKind) -> HookRun {
        match &self.hooks {
            Some(hooks) => hooks.run(kind),
            // An empty run.
            None => HookRun {
                kind,
                next: 0,
                end: 0,
            },
        }
    }

    /// The next hook of the run that is still active, with its data.
    pub fn next_hook(&self, run: &mut HookRun) -> Option<(HookId, D)> {
        self.hooks.as_ref()?.next(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(hooks: &Hooks<u32>, kind: HookKind) -> Vec<u32> {
        let mut run = hooks.run(kind);
        std::iter::from_fn(|| hooks.next(&mut run))
            .map(|(_, data)| data)
            .collect()
    }

    #[test]
    fn runs_hand_out_each_kind_in_start_order() {
        let mut hooks = Hooks::new();
        let a = hooks.start(HookKind::Prepare, 1);
        hooks.start(HookKind::Check, 2);
        hooks.start(HookKind::Prepare, 3);
        assert_eq!(drain(&hooks, HookKind::Prepare), [1, 3]);
        assert_eq!(drain(&hooks, HookKind::Check), [2]);
        assert!(drain(&hooks, HookKind::Idle).is_empty());
        assert!(hooks.stop(a));
        assert!(!hooks.stop(a), "a stopped hook's id matches nothing");
        assert_eq!(drain(&hooks, HookKind::Prepare), [3]);
        assert_eq!(hooks.count(), 2);
    }

    #[test]
    fn a_run_skips_hooks_stopped_and_defers_hooks_started_during_it() {
        let mut hooks = Hooks::new();
        let ids: Vec<_> = (0..4).map(|i| hooks.start(HookKind::Idle, i)).collect();
        let mut run = hooks.run(HookKind::Idle);
        assert_eq!(hooks.next(&mut run).map(|(_, d)| d), Some(0));
        // The first hook stops itself and the third, and starts another.
        hooks.stop(ids[0]);
        hooks.stop(ids[2]);
        hooks.start(HookKind::Idle, 9);
        let rest: Vec<_> = std::iter::from_fn(|| hooks.next(&mut run))
            .map(|(_, d)| d)
            .collect();
        assert_eq!(rest, [1, 3]);
        assert_eq!(drain(&hooks, HookKind::Idle), [1, 3, 9]);
    }
}
