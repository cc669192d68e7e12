//! Timers: a deadline heap over a slab of timers.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use super::{EventLoop, TimerId};
use crate::slab::Slab;
use crate::sys::{self, Errno};

impl<D: Copy + Default> EventLoop<D> {
    /// Starts a timer that fires after `delay` and then every `repeat` (if non-zero).
    pub fn start_timer(&mut self, delay: Duration, repeat: Duration, data: D) -> TimerId {
        let id = self
            .timers
            .start(sys::now_ns(), nanos(delay), nanos(repeat), data);
        self.deadline_moved();
        id
    }

    /// Stops a timer. A one-shot timer is over once its callback starts.
    pub fn stop_timer(&mut self, id: TimerId) -> Result<(), Errno> {
        if self.timers.stop(id) {
            self.deadline_moved();
            Ok(())
        } else {
            Err(libc::ENOENT)
        }
    }

    /// What is attached to a running timer.
    pub fn timer_data(&self, id: TimerId) -> Option<D> {
        self.timers.data(id)
    }

    /// The clock reading (CLOCK_MONOTONIC ns) taken after the last wait, when
    /// timers were running then; 0 otherwise. Costs nothing, unlike a clock call.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Reads the clock into [`now`](Self::now) (after a wait, that happens
    /// only while timers run).
    pub fn refresh_now(&mut self) {
        self.now = sys::now_ns();
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A binary heap of deadlines over a slab of timers (their ids are the
/// slab's). Stopping a timer frees its slot at once and leaves its heap entry
/// to be skipped when it surfaces; the heap is rebuilt when such stale
/// entries outnumber the live ones.
pub(super) struct Timers<D> {
    /// (deadline ns, arming sequence, slot). The sequence breaks ties in
    /// start order and tells a stale entry from the slot's current arming.
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    armed: Slab<Armed<D>>,
    next_seq: u64,
}

#[derive(Clone, Copy)]
struct Armed<D> {
    deadline: u64,
    seq: u64,
    repeat: u64,
    data: D,
}

impl<D: Copy> Timers<D> {
    pub(super) fn new() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            armed: Slab::new(0),
            next_seq: 0,
        }
    }

    /// How many timers run.
    pub(super) fn live(&self) -> usize {
        self.armed.len()
    }

    pub(super) fn start(&mut self, now: u64, delay: u64, repeat: u64, data: D) -> TimerId {
        let deadline = now.saturating_add(delay);
        let seq = self.next_seq();
        let id = self.armed.insert(Armed {
            deadline,
            seq,
            repeat,
            data,
        });
        let slot = self.armed.slot(id).expect("just inserted");
        self.heap.push(Reverse((deadline, seq, slot)));
        id
    }

    fn next_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// What is attached to a running timer.
    pub(super) fn data(&self, id: TimerId) -> Option<D> {
        self.armed.get(id).map(|a| a.data)
    }

    pub(super) fn stop(&mut self, id: TimerId) -> bool {
        if self.armed.remove(id).is_none() {
            return false;
        }
        if self.heap.len() > 64 && self.heap.len() > 2 * self.live() {
            self.rebuild_heap();
        }
        true
    }

    fn rebuild_heap(&mut self) {
        let entries = self.armed.iter();
        self.heap = entries
            .map(|(slot, a)| Reverse((a.deadline, a.seq, slot)))
            .collect();
    }

    fn is_current(&self, (_, seq, slot): (u64, u64, u32)) -> bool {
        matches!(self.armed.in_slot(slot), Some(a) if a.seq == seq)
    }

    pub(super) fn next_deadline(&mut self) -> Option<u64> {
        while let Some(&Reverse(top)) = self.heap.peek() {
            if self.is_current(top) {
                return Some(top.0);
            }
            self.heap.pop();
        }
        None
    }

    /// The next timer due by `now`: a repeating one is re-armed, a one-shot one is over.
    pub(super) fn pop_due(&mut self, now: u64) -> Option<(TimerId, D)> {
        while let Some(&Reverse(top)) = self.heap.peek() {
            let (deadline, _, slot) = top;
            if deadline > now {
                return None;
            }
            self.heap.pop();
            if !self.is_current(top) {
                continue;
            }
            let id = self.armed.id_of(slot);
            let armed = *self.armed.in_slot(slot).expect("current entry is armed");
            if armed.repeat > 0 {
                // Keep the cadence; after a long stall, skip the missed beats.
                let mut next = deadline.saturating_add(armed.repeat);
                if next <= now {
                    next = now.saturating_add(armed.repeat);
                }
                let seq = self.next_seq();
                let entry = self
                    .armed
                    .in_slot_mut(slot)
                    .expect("current entry is armed");
                entry.deadline = next;
                entry.seq = seq;
                self.heap.push(Reverse((next, seq, slot)));
            } else {
                self.armed.remove(id);
            }
            return Some((id, armed.data));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_deadline_then_start_order() {
        let mut t = Timers::new();
        let ids: Vec<_> = [(30, 1), (10, 2), (10, 3), (0, 4)]
            .iter()
            .map(|&(d, tag)| (t.start(0, d, 0, tag), tag))
            .collect();
        let fired: Vec<u32> = std::iter::from_fn(|| t.pop_due(100))
            .map(|(_, tag)| tag)
            .collect();
        assert_eq!(fired, [4, 2, 3, 1]);
        assert_eq!(t.live(), 0);
        for (id, _) in ids {
            assert!(!t.stop(id), "a fired one-shot timer is over");
        }
    }

    #[test]
    fn stopped_timers_are_skipped_and_the_heap_is_compacted() {
        let mut t = Timers::new();
        let ids: Vec<_> = (0..1000u32)
            .map(|i| t.start(0, 10 + i as u64, 0, i))
            .collect();
        for id in ids.iter().step_by(2) {
            assert!(t.stop(*id));
        }
        for id in ids.iter().skip(1).step_by(2).take(400) {
            assert!(t.stop(*id));
        }
        assert_eq!(t.live(), 100);
        assert!(
            t.heap.len() <= 2 * t.live() + 64,
            "heap of {} for {} live timers",
            t.heap.len(),
            t.live()
        );
        let fired: Vec<u32> = std::iter::from_fn(|| t.pop_due(u64::MAX))
            .map(|(_, i)| i)
            .collect();
        assert_eq!(fired, (801..1000).step_by(2).collect::<Vec<_>>());
    }

    #[test]
    fn repeating_timer_rearms_and_skips_missed_beats() {
        let mut t = Timers::new();
        let id = t.start(0, 10, 10, 7u32);
        assert_eq!(t.pop_due(10), Some((id, 7)));
        assert_eq!(t.pop_due(10), None, "re-armed for 20");
        assert_eq!(t.pop_due(1000), Some((id, 7)));
        assert_eq!(t.next_deadline(), Some(1010));
        assert!(t.stop(id));
        assert_eq!(t.next_deadline(), None);
    }
}
