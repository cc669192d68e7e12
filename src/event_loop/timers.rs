//! Timers: a deadline heap over a slab of timers.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use super::{EventLoop, TimerId};
use crate::sys::{self, Errno};

impl<D: Copy + Default> EventLoop<D> {
    /// Starts a timer that fires after `delay` and then every `repeat` (if non-zero).
    pub fn start_timer(&mut self, delay: Duration, repeat: Duration, data: D) -> TimerId {
        self.timers
            .start(sys::now_ns(), nanos(delay), nanos(repeat), data)
    }

    /// Stops a timer. A one-shot timer is over once its callback starts.
    pub fn stop_timer(&mut self, id: TimerId) -> Result<(), Errno> {
        if self.timers.stop(id) {
            Ok(())
        } else {
            Err(libc::ENOENT)
        }
    }

    /// What is attached to a running timer.
    pub fn timer_data(&self, id: TimerId) -> Option<D> {
        let slot = self.timers.slot_of(id)?;
        self.timers.slots[slot as usize].armed.map(|a| a.data)
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

/// A binary heap of deadlines over a slab of timers. Stopping a timer frees
/// its slot at once and leaves its heap entry to be skipped when it surfaces;
/// the heap is rebuilt when such stale entries outnumber the live ones.
pub(super) struct Timers<D> {
    /// (deadline ns, arming sequence, slot). The sequence breaks ties in
    /// start order and tells a stale entry from the slot's current arming.
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    slots: Vec<TimerSlot<D>>,
    free: Vec<u32>,
    next_seq: u64,
    pub(super) live: usize,
}

struct TimerSlot<D> {
    generation: u32,
    armed: Option<Armed<D>>,
}

#[derive(Clone, Copy)]
struct Armed<D> {
    deadline: u64,
    seq: u64,
    repeat: u64,
    pub(super) data: D,
}

impl<D: Copy> Timers<D> {
    pub(super) fn new() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            next_seq: 0,
            live: 0,
        }
    }

    pub(super) fn start(&mut self, now: u64, delay: u64, repeat: u64, data: D) -> TimerId {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(TimerSlot {
                    generation: 1,
                    armed: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.live += 1;
        self.arm(slot, now.saturating_add(delay), repeat, data);
        self.id_of(slot)
    }

    fn id_of(&self, slot: u32) -> TimerId {
        (self.slots[slot as usize].generation as u64) << 32 | (slot as u64 + 1)
    }

    fn arm(&mut self, slot: u32, deadline: u64, repeat: u64, data: D) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.slots[slot as usize].armed = Some(Armed {
            deadline,
            seq,
            repeat,
            data,
        });
        self.heap.push(Reverse((deadline, seq, slot)));
    }

    pub(super) fn slot_of(&self, id: TimerId) -> Option<u32> {
        let slot = (id as u32).checked_sub(1)?;
        let entry = self.slots.get(slot as usize)?;
        (entry.generation == (id >> 32) as u32 && entry.armed.is_some()).then_some(slot)
    }

    pub(super) fn stop(&mut self, id: TimerId) -> bool {
        let Some(slot) = self.slot_of(id) else {
            return false;
        };
        self.release(slot);
        if self.heap.len() > 64 && self.heap.len() > 2 * self.live {
            self.rebuild_heap();
        }
        true
    }

    fn release(&mut self, slot: u32) {
        let entry = &mut self.slots[slot as usize];
        entry.armed = None;
        entry.generation = entry.generation.checked_add(1).unwrap_or(1);
        self.free.push(slot);
        self.live -= 1;
    }

    fn rebuild_heap(&mut self) {
        let entries = self.slots.iter().enumerate().filter_map(|(slot, entry)| {
            entry
                .armed
                .as_ref()
                .map(|a| Reverse((a.deadline, a.seq, slot as u32)))
        });
        self.heap = entries.collect();
    }

    fn is_current(&self, (_, seq, slot): (u64, u64, u32)) -> bool {
        matches!(&self.slots[slot as usize].armed, Some(a) if a.seq == seq)
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
            let id = self.id_of(slot);
            let armed = self.slots[slot as usize]
                .armed
                .expect("current entry is armed");
            if armed.repeat > 0 {
                // Keep the cadence; after a long stall, skip the missed beats.
                let mut next = deadline.saturating_add(armed.repeat);
                if next <= now {
                    next = now.saturating_add(armed.repeat);
                }
                self.arm(slot, next, armed.repeat, armed.data);
            } else {
                self.release(slot);
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
        assert_eq!(t.live, 0);
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
        assert_eq!(t.live, 100);
        assert!(
            t.heap.len() <= 2 * t.live + 64,
            "heap of {} for {} live timers",
            t.heap.len(),
            t.live
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
