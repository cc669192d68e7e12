//! Generational ids, the crate's one scheme for naming what the caller
//! holds on to: timers, streams and listeners. A table whose entries are
//! named by `(generation << 32) | kind | slot`; a freed slot's generation
//! moves on, so an old id matches nothing, and generations start at 1, so
//! no id is 0. (The registration table is indexed by fd instead, which the
//! kernel picks: see `event_loop/registrations.rs` for why it keeps tokens
//! of the same shape but not this table.)

pub(crate) struct Slab<T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    kind: u64,
    /// How many entries hold a value.
    len: usize,
}

struct Entry<T> {
    generation: u32,
    value: Option<T>,
    /// The value was taken by `close`: the id still names the slot (which
    /// is not free) until `retire`.
    closed: bool,
}

/// A second kind of id from one table's point of view (listener ids have
/// this bit set, stream and timer ids not), so that the two kinds never
/// name each other's entries.
pub(crate) const OTHER_KIND: u64 = 1 << 31;

/// A third kind (UDP socket ids). A table of another kind reads this bit as
/// part of the slot number, 2^30 and up, past the end of any table (which
/// would need a billion entries to reach it).
pub(crate) const THIRD_KIND: u64 = 1 << 30;

const SLOT_MASK: u64 = OTHER_KIND - 1;

impl<T> Slab<T> {
    /// A table whose ids carry `kind` (0, [`OTHER_KIND`] or [`THIRD_KIND`]).
    pub(crate) fn new(kind: u64) -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            kind,
            len: 0,
        }
    }

    /// Stores `value`; returns its id.
    pub(crate) fn insert(&mut self, value: T) -> u64 {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.entries.push(Entry {
                    generation: 1,
                    value: None,
                    closed: false,
                });
                (self.entries.len() - 1) as u32
            }
        };
        let entry = &mut self.entries[slot as usize];
        entry.value = Some(value);
        self.len += 1;
        self.id_of(slot)
    }

    /// The id of the value in `slot`.
    pub(crate) fn id_of(&self, slot: u32) -> u64 {
        (self.entries[slot as usize].generation as u64) << 32 | self.kind | slot as u64
    }

    /// The slot an id names, if the id is current.
    #[inline]
    pub(crate) fn slot(&self, id: u64) -> Option<u32> {
        let slot = Self::slot_bits(id, self.kind);
        let entry = self.entries.get(slot as usize)?;
        (entry.generation == (id >> 32) as u32 && entry.value.is_some()).then_some(slot as u32)
    }

    /// The slot part of `id`. An id of the other kind has its kind bit
    /// flipped here: a slot number past 2^31, beyond the end of any table.
    #[inline]
    fn slot_bits(id: u64, kind: u64) -> u64 {
        (id & (SLOT_MASK | OTHER_KIND)) ^ kind
    }

    // get and get_mut find the entry once (not through `slot`, which would
    // have the value checked twice on the hot path of every stream call).
    #[inline]
    pub(crate) fn get(&self, id: u64) -> Option<&T> {
        let entry = self.entries.get(Self::slot_bits(id, self.kind) as usize)?;
        if entry.generation != (id >> 32) as u32 {
            return None;
        }
        entry.value.as_ref()
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut T> {
        let entry = self
            .entries
            .get_mut(Self::slot_bits(id, self.kind) as usize)?;
        if entry.generation != (id >> 32) as u32 {
            return None;
        }
        entry.value.as_mut()
    }

    /// The value in `slot`, whatever its generation.
    #[inline]
    pub(crate) fn in_slot(&self, slot: u32) -> Option<&T> {
        self.entries.get(slot as usize)?.value.as_ref()
    }

    #[inline]
    pub(crate) fn in_slot_mut(&mut self, slot: u32) -> Option<&mut T> {
        self.entries.get_mut(slot as usize)?.value.as_mut()
    }

    /// Takes the value out and frees its slot: the id matches nothing from now on.
    pub(crate) fn remove(&mut self, id: u64) -> Option<T> {
        let slot = self.slot(id)?;
        let entry = &mut self.entries[slot as usize];
        entry.generation = entry.generation.checked_add(1).unwrap_or(1);
        self.free.push(slot);
        self.len -= 1;
        entry.value.take()
    }

    /// Takes the value out, keeping the id for `is_closed` until `retire`.
    pub(crate) fn close(&mut self, id: u64) -> Option<T> {
        let slot = self.slot(id)?;
        let entry = &mut self.entries[slot as usize];
        entry.closed = true;
        self.len -= 1;
        entry.value.take()
    }

    /// Whether `id` names a value taken by `close` and not yet retired.
    #[cold]
    pub(crate) fn is_closed(&self, id: u64) -> bool {
        let slot = Self::slot_bits(id, self.kind);
        matches!(self.entries.get(slot as usize),
            Some(entry) if entry.closed && entry.generation == (id >> 32) as u32)
    }

    /// Frees the slot of a closed id: from now on the id matches nothing.
    pub(crate) fn retire(&mut self, id: u64) {
        if self.is_closed(id) {
            let slot = Self::slot_bits(id, self.kind) as usize;
            let entry = &mut self.entries[slot];
            entry.closed = false;
            entry.generation = entry.generation.checked_add(1).unwrap_or(1);
            self.free.push(slot as u32);
        }
    }

    /// How many values the table holds.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Every value with its slot.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        let values = self.entries.iter().enumerate();
        values.filter_map(|(slot, e)| Some((slot as u32, e.value.as_ref()?)))
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().filter_map(|e| e.value.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_zero_and_a_freed_slot_never_answers_its_old_id() {
        let mut slab = Slab::new(0);
        let a = slab.insert("a");
        let b = slab.insert("b");
        assert!(a != 0 && b != 0 && a != b);
        assert_eq!(slab.get(a), Some(&"a"));
        assert_eq!(slab.remove(a), Some("a"));
        assert_eq!(slab.get(a), None);
        assert_eq!(slab.remove(a), None, "removed twice");
        let c = slab.insert("c");
        assert_eq!(
            slab.slot(c),
            slab.slot(b).map(|_| 0),
            "the freed slot is reused"
        );
        assert_ne!(c, a, "with a new generation");
        assert_eq!(slab.get(a), None);
        assert_eq!(slab.get(c), Some(&"c"));
        assert_eq!(slab.len(), 2);
        assert_eq!(slab.get(0), None);
    }

    #[test]
    fn the_two_kinds_never_name_each_others_entries() {
        let mut streams = Slab::new(0);
        let mut listeners = Slab::new(OTHER_KIND);
        let s = streams.insert(1);
        let l = listeners.insert(2);
        assert_eq!(s & !OTHER_KIND, l & !OTHER_KIND, "same slot and generation");
        assert_eq!(streams.get(l), None);
        assert_eq!(listeners.get(s), None);
        assert_eq!(listeners.get(l), Some(&2));
    }

    #[test]
    fn three_kinds_never_name_each_others_entries() {
        let mut tables = [Slab::new(0), Slab::new(OTHER_KIND), Slab::new(THIRD_KIND)];
        let ids: Vec<u64> = (0..3).map(|k| tables[k].insert(k)).collect();
        for (k, table) in tables.iter().enumerate() {
            for (j, &id) in ids.iter().enumerate() {
                assert_eq!(table.get(id).copied(), (j == k).then_some(k), "{k} {j}");
                assert!(!table.is_closed(id));
            }
        }
        let third = &mut tables[2];
        assert_eq!(third.close(ids[2]), Some(2));
        assert!(third.is_closed(ids[2]));
        third.retire(ids[2]);
        assert!(!third.is_closed(ids[2]));
        let again = third.insert(9);
        assert_ne!(again, ids[2], "retired: a new generation in the freed slot");
        assert_eq!(again as u32, ids[2] as u32);
    }

    #[test]
    fn a_closed_id_is_known_as_closed_until_retired() {
        let mut slab = Slab::new(0);
        let id = slab.insert(5);
        assert_eq!(slab.close(id), Some(5));
        assert_eq!(slab.get(id), None);
        assert!(slab.is_closed(id));
        let other = slab.insert(6);
        assert_ne!(
            slab.slot(other),
            Some(id as u32),
            "a closed slot is not free"
        );
        slab.retire(id);
        assert!(!slab.is_closed(id));
        let reused = slab.insert(7);
        assert_eq!(reused as u32, id as u32, "retired: the slot is free again");
        assert_ne!(reused, id);
        assert!(!slab.is_closed(reused) && !slab.is_closed(id));
    }

    /// Seeded random inserts, removes, closes and retires against a model
    /// (a map from live id to value, and the set of closed ids).
    #[test]
    fn random_operations_agree_with_a_model() {
        use std::collections::{HashMap, HashSet};
        let mut rng = crate::test_rng::TestRng::new(0x5eed_1234_abcd_0001);
        let mut next = move || rng.next();
        let mut slab = Slab::new(0);
        let mut live: HashMap<u64, u64> = HashMap::new();
        let mut closed: HashSet<u64> = HashSet::new();
        let mut dead: Vec<u64> = Vec::new();
        for step in 0..20_000u64 {
            let ids: Vec<u64> = live.keys().copied().collect();
            let pick = |r: u64, v: &[u64]| v.get((r as usize) % v.len().max(1)).copied();
            match next() % 5 {
                0 | 1 => {
                    let id = slab.insert(step);
                    assert!(id != 0 && !live.contains_key(&id) && !dead.contains(&id));
                    live.insert(id, step);
                }
                2 => {
                    if let Some(id) = pick(next(), &ids) {
                        assert_eq!(slab.remove(id), live.remove(&id));
                        dead.push(id);
                    }
                }
                3 => {
                    if let Some(id) = pick(next(), &ids) {
                        assert_eq!(slab.close(id), live.remove(&id));
                        closed.insert(id);
                    }
                }
                _ => {
                    let closed_ids: Vec<u64> = closed.iter().copied().collect();
                    if let Some(id) = pick(next(), &closed_ids) {
                        slab.retire(id);
                        closed.remove(&id);
                        dead.push(id);
                    }
                }
            }
            assert_eq!(slab.len(), live.len());
            for (&id, &value) in &live {
                assert_eq!(slab.get(id), Some(&value));
            }
            for &id in closed.iter().chain(dead.iter().rev().take(50)) {
                assert_eq!(slab.get(id), None, "id {id:#x} of an ended entry");
                assert_eq!(slab.is_closed(id), closed.contains(&id));
            }
        }
    }
}
