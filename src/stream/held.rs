//! DATA read before a pause and not handed out yet: a batch cut short by
//! a full event array leaves the rest of its events in `pending`, DATA
//! among them. Once `pause` returns, no DATA of the stream may go out until
//! `resume`, and none may be lost. Such bytes leave the shared read buffer
//! (which every stream's reads need: keeping them there would stop all
//! reading while the stream stays paused) for a buffer of the stream's own,
//! and come back as DATA after `resume`, ahead of anything read after it.
//! A held event is a marker in `pending` (offset [`HELD`]) whose bytes are
//! copied into the read buffer when it is handed out. The stream's `Eof`
//! waiting behind such bytes (a TLS read makes the data and the end in one
//! step) is held with them and follows them after `resume`.

use super::connection::WRITE_SHUT;
use super::read_buffer::MIN_READ;
use super::{StreamEvent, StreamEventKind, StreamId, StreamLoop};

/// The offset of a `Data` event in `pending` whose bytes are in `held`,
/// not in the read buffer.
pub(super) const HELD: usize = usize::MAX;

/// Bytes of a paused stream read before the pause, in order.
pub(super) struct Held {
    stream: StreamId,
    bytes: Vec<u8>,
    /// The stream's `Eof` came after them.
    eof: bool,
}

impl<D: Copy + Default> StreamLoop<D> {
    /// After `pause`: the `Data` events of `id` waiting in `pending` go to
    /// `held`. A marker left by an earlier `resume` comes before them (it
    /// was handed out before anything read after it), so its bytes stay first.
    #[cold]
    #[inline(never)]
    pub(super) fn hold_data(&mut self, id: StreamId) {
        let of_id = |e: &StreamEvent<D>| e.stream == id && e.kind == StreamEventKind::Data;
        if !self.pending.iter().any(of_id) {
            return;
        }
        let (mut bytes, mut eof) = match self.held.iter().position(|h| h.stream == id) {
            Some(at) => {
                let held = self.held.swap_remove(at);
                (held.bytes, held.eof)
            }
            None => (Vec::new(), false),
        };
        for event in self.pending.iter().filter(|e| of_id(e) && e.offset != HELD) {
            bytes.extend_from_slice(self.bytes(event));
        }
        let eof_of_id = |e: &StreamEvent<D>| e.stream == id && e.kind == StreamEventKind::Eof;
        eof |= self.pending.iter().any(eof_of_id);
        self.pending.retain(|e| !of_id(e) && !eof_of_id(e));
        self.held.push(Held {
            stream: id,
            bytes,
            eof,
        });
    }

    /// After `resume`: what `id` holds goes out as `Data` next, before its
    /// `Closed` if that waits already.
    #[cold]
    #[inline(never)]
    pub(super) fn release_held(&mut self, id: StreamId) {
        let of_id = |e: &StreamEvent<D>| e.stream == id;
        if !self.held.iter().any(|h| h.stream == id)
            || self.pending.iter().any(|e| of_id(e) && e.offset == HELD)
        {
            return;
        }
        let closed = self
            .pending
            .iter()
            .position(|e| of_id(e) && e.kind == StreamEventKind::Closed);
        let (fd, data) = match (self.streams.get(id), closed) {
            (Some(s), _) => (s.fd, s.data),
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
        let at = closed.unwrap_or(self.pending.len());
        self.pending.insert(at, marker);
        if let Some(held) = self.held.iter_mut().find(|h| h.stream == id && h.eof) {
            held.eof = false;
            let eof = StreamEvent {
                kind: StreamEventKind::Eof,
                offset: 0,
                ..marker
            };
            self.pending.insert(at + 1, eof);
            // Its writing side shut down meanwhile: both sides are done now
            // (shutdown_now left it to this).
            if self
                .streams
                .get(id)
                .is_some_and(|s| s.flags & WRITE_SHUT != 0)
            {
                self.close_now(id, 0, false);
            }
        }
    }

    /// Whether the stream's `Eof` is held (with bytes read before it).
    pub(super) fn holds_eof(&self, id: StreamId) -> bool {
        self.held.iter().any(|h| h.stream == id && h.eof)
    }

    /// The first event in `pending` is a held marker: as many of its bytes
    /// as the read buffer has room for, copied there, as a `Data` event
    /// (the marker stays while bytes are left). `None` while the read
    /// buffer is too full, as a read would wait for [`release_reads`](Self::release_reads).
    #[cold]
    #[inline(never)]
    pub(super) fn pop_held(&mut self) -> Option<StreamEvent<D>> {
        let marker = *self.pending.front()?;
        let Some(at) = self.held.iter().position(|h| h.stream == marker.stream) else {
            // (Never so: the bytes go with their marker. Skip it all the same.)
            self.pending.pop_front();
            return self.pop_pending();
        };
        if self.reads.room() < MIN_READ {
            return None;
        }
        let offset = self.reads.used;
        let chunk = self.reads.free_chunk();
        let bytes = &mut self.held[at].bytes;
        let len = chunk.len().min(bytes.len());
        chunk[..len].copy_from_slice(&bytes[..len]);
        bytes.drain(..len);
        self.reads.used += len;
        if bytes.is_empty() {
            self.held.swap_remove(at);
            self.pending.pop_front();
        }
        let data = self
            .streams
            .get(marker.stream)
            .map_or(marker.data, |s| s.data);
        Some(StreamEvent {
            offset,
            len,
            data,
            ..marker
        })
    }

    /// The stream's held bytes are no longer wanted (closed by the
    /// application, or its `Closed` handed out).
    pub(super) fn drop_held(&mut self, id: StreamId) {
        if !self.held.is_empty() {
            self.held.retain(|h| h.stream != id);
        }
    }
}
