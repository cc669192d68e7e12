//! What a paused stream or UDP socket received before the pause and has
//! not handed out yet: a batch cut short by a full event array leaves the
//! rest of its events in `pending`, DATA, FDS, EOF or DATAGRAMS among them.
//! Once `pause` returns, none of these may go out until `resume`, and none
//! may be lost. What they carry leaves the loop's shared buffers (which
//! every stream's and socket's reads need: keeping it there would stop all
//! reading while the stream stays paused) for the stream's own list of
//! [`Item`]s, one per event, and comes back as the same events after
//! `resume`, in the order received, ahead of anything read after it.
//!
//! A held list is a marker in `pending` (offset [`HELD`]) while it is
//! being handed out: each time the marker is first, its first item is put
//! back where such an event's contents live (bytes into the read buffer,
//! fds among the received ones, datagrams into the receive buffer) and goes
//! out as its event. The stream's EOF waiting behind bytes (a TLS read
//! makes the data and the end in one step) is an item too and follows them.

use std::collections::VecDeque;
use std::os::fd::RawFd;

use super::connection::WRITE_SHUT;
use super::datagrams::HeldBatch;
use super::read_buffer::MIN_READ;
use super::{StreamEvent, StreamEventKind, StreamLoop};
use crate::sys::Fd;

/// The offset of the marker in `pending` of a held list (its kind is
/// `Data`, whatever its items are).
pub(super) const HELD: usize = usize::MAX;

/// What a paused stream (or UDP socket) received before the pause, in order.
pub(super) struct Held {
    /// A stream's or a UDP socket's id (the two never collide).
    id: u64,
    items: VecDeque<Item>,
}

/// What one event carried (kept one per event: a DATA event is one read,
/// and the FDS event before it names its first byte).
enum Item {
    Bytes(Vec<u8>),
    /// Received fds, the loop's (closed if dropped) until handed out again.
    Fds(Vec<Fd>),
    Datagrams(HeldBatch),
    Eof,
}

/// The kinds of event a pause holds.
fn is_held_kind(kind: StreamEventKind) -> bool {
    matches!(
        kind,
        StreamEventKind::Data
            | StreamEventKind::Fds
            | StreamEventKind::Eof
            | StreamEventKind::Datagrams
    )
}

impl<D: Copy + Default> StreamLoop<D> {
    /// After a pause of `id` (a stream or a UDP socket): its events in
    /// `pending` that carry what it received go to its held list. A marker
    /// left by an earlier resume comes before them (it was handed out
    /// before anything read after it), so its items stay first.
    #[cold]
    #[inline(never)]
    pub(super) fn hold_events(&mut self, id: u64) {
        let of_id = |e: &StreamEvent<D>| e.stream == id && is_held_kind(e.kind);
        if !self.pending.iter().any(of_id) {
            return;
        }
        let mut items = match self.held.iter().position(|h| h.id == id) {
            Some(at) => self.held.swap_remove(at).items,
            None => VecDeque::new(),
        };
        let mut at = 0;
        while at < self.pending.len() {
            let event = self.pending[at];
            if !of_id(&event) {
                at += 1;
                continue;
            }
            match event.kind {
                _ if event.offset == HELD => {} // its items are first already
                StreamEventKind::Data => items.push_back(Item::Bytes(self.bytes(&event).to_vec())),
                StreamEventKind::Fds => items.push_back(Item::Fds(self.hold_fds(&event))),
                StreamEventKind::Datagrams => {
                    let batch = self.udp.buffer.copy_out(event.offset, event.len);
                    items.push_back(Item::Datagrams(batch));
                }
                _ => items.push_back(Item::Eof),
            }
            self.pending.remove(at);
        }
        self.held.push(Held { id, items });
    }

    /// After `resume`: what `id` holds goes out next, before its `Closed`
    /// if that waits already.
    #[cold]
    #[inline(never)]
    pub(super) fn release_held(&mut self, id: u64) {
        let of_id = |e: &StreamEvent<D>| e.stream == id;
        if !self.held.iter().any(|h| h.id == id)
            || self.pending.iter().any(|e| of_id(e) && e.offset == HELD)
        {
            return;
        }
        let closed = self
            .pending
            .iter()
            .position(|e| of_id(e) && e.kind == StreamEventKind::Closed);
        let (fd, data) = match (self.fd_and_data(id), closed) {
            (Some(live), _) => live,
            (None, Some(at)) => (self.pending[at].fd, self.pending[at].data),
            (None, None) => return,
        };
        let marker = StreamEvent {
            kind: StreamEventKind::Data,
            stream: id,
            fd,
            error: 0,
            offset: HELD,
            len: 0,
            data,
        };
        self.pending
            .insert(closed.unwrap_or(self.pending.len()), marker);
    }

    /// The fd and data of a live stream or UDP socket.
    fn fd_and_data(&self, id: u64) -> Option<(RawFd, D)> {
        match self.streams.get(id) {
            Some(s) => Some((s.fd, s.data)),
            None => self.udp_fd_and_data(id),
        }
    }

    /// Whether the stream's `Eof` is held.
    pub(super) fn holds_eof(&self, id: u64) -> bool {
        let held = self.held.iter().find(|h| h.id == id);
        held.is_some_and(|h| matches!(h.items.back(), Some(Item::Eof)))
    }

    /// The first event in `pending` is a held marker: its first item, put
    /// back, as its event (bytes as far as the read buffer has room; the
    /// marker stays while items are left). `None` while the buffer the item
    /// goes to is too full, as a read would wait for
    /// [`release_reads`](Self::release_reads).
    #[cold]
    #[inline(never)]
    pub(super) fn pop_held(&mut self) -> Option<StreamEvent<D>> {
        let marker = *self.pending.front()?;
        let id = marker.stream;
        let Some(at) = self.held.iter().position(|h| h.id == id) else {
            // (Never so: the items go with their marker. Skip it all the same.)
            self.pending.pop_front();
            return self.pop_pending();
        };
        let (fd, data) = self.fd_and_data(id).unwrap_or((marker.fd, marker.data));
        let mut event = StreamEvent { fd, data, ..marker };
        match self.held[at].items.front_mut() {
            Some(Item::Bytes(bytes)) => {
                if self.reads.room() < MIN_READ {
                    return None;
                }
                let chunk = self.reads.free_chunk();
                let len = chunk.len().min(bytes.len());
                chunk[..len].copy_from_slice(&bytes[..len]);
                bytes.drain(..len);
                let whole = bytes.is_empty();
                (event.offset, event.len) = (self.reads.used, len);
                self.reads.used += len;
                if whole {
                    self.held[at].items.pop_front();
                }
            }
            Some(Item::Datagrams(batch)) => {
                event.kind = StreamEventKind::Datagrams;
                (event.offset, event.len) = (self.udp.buffer.restore(batch)?, batch.len());
                self.held[at].items.pop_front();
            }
            Some(Item::Fds(_)) => {
                let Some(Item::Fds(fds)) = self.held[at].items.pop_front() else {
                    unreachable!()
                };
                event.kind = StreamEventKind::Fds;
                (event.offset, event.len) = self.restore_fds(id, fds);
            }
            Some(Item::Eof) => {
                event.kind = StreamEventKind::Eof;
                event.offset = 0;
                self.held[at].items.pop_front();
            }
            None => {}
        }
        if self.held[at].items.is_empty() {
            self.held.swap_remove(at);
            self.pending.pop_front();
        }
        if event.kind == StreamEventKind::Eof {
            // Its writing side shut down meanwhile: both sides are done now
            // (shutdown_now left it to this).
            if self
                .streams
                .get(id)
                .is_some_and(|s| s.flags & WRITE_SHUT != 0)
            {
                self.close_now(id, 0, false);
            }
        } else if event.offset == HELD {
            // (An empty list: never so. Nothing to hand out from it.)
            return self.pop_pending();
        }
        Some(event)
    }

    /// What `id` holds is no longer wanted (closed by the application, or
    /// its `Closed` handed out): dropped, fds closed.
    pub(super) fn drop_held(&mut self, id: u64) {
        if !self.held.is_empty() {
            self.held.retain(|h| h.id != id);
        }
    }
}
