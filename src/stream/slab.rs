//! Generational ids: a table whose entries are named by ids that a freed
//! slot never gives out again.

/// A table whose entries are named by generational ids: (generation << 32)
/// | kind | slot. A freed slot's generation moves on, so an old id matches
/// nothing; generations start at 1, so no id is 0.
pub(super) struct Slab<T> {
    pub(super) entries: Vec<Entry<T>>,
    pub(super) free: Vec<u32>,
    pub(super) kind: u64,
}

pub(super) struct Entry<T> {
    pub(super) generation: u32,
    pub(super) value: Option<T>,
    /// The value was taken by `close`: the id still names the slot (which
    /// is not free) until `retire`.
    pub(super) closed: bool,
}

/// Listener ids have this bit set, stream ids not.
pub(super) const LISTENER_KIND: u64 = 1 << 31;

pub(super) const SLOT_MASK: u64 = LISTENER_KIND - 1;

impl<T> Slab<T> {
    pub(super) fn new(kind: u64) -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            kind,
        }
    }

    pub(super) fn insert(&mut self, value: T) -> u64 {
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
        (entry.generation as u64) << 32 | self.kind | slot as u64
    }

    #[inline]
    pub(super) fn slot(&self, id: u64) -> Option<usize> {
        // An id of the other kind has its kind bit flipped here: a slot
        // number past 2^31, beyond the end of any table.
        let slot = (id & (SLOT_MASK | LISTENER_KIND)) ^ self.kind;
        let entry = self.entries.get(slot as usize)?;
        (entry.generation == (id >> 32) as u32 && entry.value.is_some()).then_some(slot as usize)
    }

    #[inline]
    pub(super) fn get(&self, id: u64) -> Option<&T> {
        let slot = self.slot(id)?;
        self.entries[slot].value.as_ref()
    }

    #[inline]
    pub(super) fn get_mut(&mut self, id: u64) -> Option<&mut T> {
        let slot = self.slot(id)?;
        self.entries[slot].value.as_mut()
    }

    pub(super) fn remove(&mut self, id: u64) -> Option<T> {
        let slot = self.slot(id)?;
        let entry = &mut self.entries[slot];
        entry.generation = entry.generation.checked_add(1).unwrap_or(1);
        self.free.push(slot as u32);
        entry.value.take()
    }

    /// Takes the value out, keeping the id for `is_closed` until `retire`.
    pub(super) fn close(&mut self, id: u64) -> Option<T> {
        let slot = self.slot(id)?;
        let entry = &mut self.entries[slot];
        entry.closed = true;
        entry.value.take()
    }

    /// Whether `id` names a value taken by `close` and not yet retired.
    #[cold]
    pub(super) fn is_closed(&self, id: u64) -> bool {
        let slot = (id & (SLOT_MASK | LISTENER_KIND)) ^ self.kind;
        matches!(self.entries.get(slot as usize),
            Some(entry) if entry.closed && entry.generation == (id >> 32) as u32)
    }

    /// Frees the slot of a closed id: from now on the id matches nothing.
    pub(super) fn retire(&mut self, id: u64) {
        if self.is_closed(id) {
            let slot = (id & SLOT_MASK) as usize;
            let entry = &mut self.entries[slot];
            entry.closed = false;
            entry.generation = entry.generation.checked_add(1).unwrap_or(1);
            self.free.push(slot as u32);
        }
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().filter_map(|e| e.value.as_ref())
    }
}
