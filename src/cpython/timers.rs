//! The timer heap: `call_later` and `call_at`'s handles by deadline (the
//! loop's clock, in seconds, as asyncio's `loop.time()`), first made first
//! among equal deadlines. A cancelled timer stays until it reaches the top
//! or, when they are many, until the heap is rebuilt without them, as
//! asyncio does (see `purge`).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::handle;
use super::object::Owned;

/// asyncio's `_MIN_SCHEDULED_TIMER_HANDLES` and
/// `_MIN_CANCELLED_TIMER_HANDLES_FRACTION`: the heap is rebuilt without its
/// cancelled timers when it holds more than 100, over half of them cancelled.
const MIN_SCHEDULED: usize = 100;
const MIN_CANCELLED_FRACTION: f64 = 0.5;

struct Entry {
    when: f64,
    order: u64,
    handle: Owned,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Entry {
    /// The deadline as ordered: NaN is due at once, as asyncio's loop runs
    /// it (it never compares later than anything).
    fn key(&self) -> f64 {
        if self.when.is_nan() {
            f64::NEG_INFINITY
        } else {
            self.when
        }
    }
}

impl Ord for Entry {
    /// Reversed: BinaryHeap's top is then the earliest deadline.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .key()
            .total_cmp(&self.key())
            .then(other.order.cmp(&self.order))
    }
}

#[derive(Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Entry>,
    made: u64,
    /// Scheduled timers cancelled since the last rebuild.
    pub(super) cancelled: usize,
}

impl Timers {
    /// Schedules `handle` (a TimerHandle of ours) at `when`.
    pub(super) fn push(&mut self, when: f64, handle: Owned) {
        self.made += 1;
        self.heap.push(Entry {
            when,
            order: self.made,
            handle,
        });
    }

    /// The earliest deadline, cancelled or not.
    pub(super) fn next_when(&self) -> Option<f64> {
        self.heap.peek().map(|entry| entry.when)
    }

    /// Takes the earliest timer if it is due before `end`.
    pub(super) fn pop_due(&mut self, end: f64) -> Option<Owned> {
        if self.heap.peek()?.when >= end {
            return None;
        }
        self.heap.pop().map(|entry| entry.handle)
    }

    /// Drops cancelled timers: all of them when they are many, otherwise
    /// those at the top, as asyncio's `_run_once` does before it waits.
    /// Returns them, for the caller to release once no borrow is held.
    pub(super) fn purge(&mut self) -> Vec<Owned> {
        let is_cancelled = |entry: &Entry| {
            // SAFETY: the heap holds only our TimerHandles, kept alive by it.
            unsafe { handle::fields(entry.handle.as_ptr()) }
                .cancelled
                .get()
        };
        let mut removed = Vec::new();
        let count = self.heap.len();
        if count > MIN_SCHEDULED && self.cancelled as f64 / count as f64 > MIN_CANCELLED_FRACTION {
            let (dead, live): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut self.heap)
                .into_iter()
                .partition(is_cancelled);
            self.heap = live.into();
            removed.extend(dead.into_iter().map(|entry| entry.handle));
            self.cancelled = 0;
        } else {
            while self.heap.peek().is_some_and(is_cancelled) {
                self.cancelled = self.cancelled.saturating_sub(1);
                removed.extend(self.heap.pop().map(|entry| entry.handle));
            }
        }
        for handle in &removed {
            // SAFETY: as above.
            unsafe { handle::fields(handle.as_ptr()) }
                .scheduled
                .set(false);
        }
        removed
    }

    /// Every handle, for the garbage collector.
    pub(super) fn handles(&self) -> impl Iterator<Item = &Owned> {
        self.heap.iter().map(|entry| &entry.handle)
    }

    pub(super) fn take_all(&mut self) -> Vec<Owned> {
        self.cancelled = 0;
        std::mem::take(&mut self.heap)
            .into_iter()
            .map(|entry| entry.handle)
            .collect()
    }
}
