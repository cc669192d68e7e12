//! The read buffer one loop shares among all its streams: each read goes
//! where the last one ended, and the bytes stay put until released, so a
//! batch of events may point into it at several places at once.

use super::held::HELD;
use super::{StreamEvent, StreamEventKind, StreamLoop};

/// The shared read buffer. A batch of events may point into it at several
/// places at once (see [`StreamLoop::release_reads`]).
pub(super) const READ_BUFFER: usize = 256 << 10;

/// The most one read takes.
pub(super) const READ_CHUNK: usize = 64 << 10;

/// Below this much room, a batch stops before reading more. A TLS read
/// needs room for a whole record beyond what it reads (stream/tls.rs).
pub(super) const MIN_READ: usize = 32 << 10;

/// The loop's read buffer: reads go at `used`, and stay valid until released.
pub(super) struct ReadBuffer {
    pub(super) buf: Vec<u8>,
    pub(super) used: usize,
}

impl ReadBuffer {
    #[inline]
    pub(super) fn room(&self) -> usize {
        READ_BUFFER - self.used
    }

    /// Makes the buffer, once: with the first stream, or when asked for.
    /// The kernel gives its pages as they are touched.
    #[inline]
    pub(super) fn ensure(&mut self) {
        if self.buf.is_empty() {
            self.buf = vec![0; READ_BUFFER];
        }
    }

    /// The free part of the buffer, at most `READ_CHUNK` bytes.
    #[inline]
    pub(super) fn free_chunk(&mut self) -> &mut [u8] {
        debug_assert_eq!(self.buf.len(), READ_BUFFER, "made by ensure()");
        let len = self.room().min(READ_CHUNK);
        // SAFETY: `used + len` <= READ_BUFFER, the buffer's length once a
        // stream exists (add_stream calls ensure). The slice is made from
        // the raw pointer so that no reference to the whole buffer is made:
        // the bytes before `used` were handed out as pointers that must stay
        // valid (see bytes_ptr).
        unsafe { std::slice::from_raw_parts_mut(self.buf.as_mut_ptr().add(self.used), len) }
    }
}

impl<D: Copy + Default> StreamLoop<D> {
    /// The bytes of a `Data` event. Valid until [`release_reads`](Self::release_reads).
    pub fn bytes(&self, event: &StreamEvent<D>) -> &[u8] {
        &self.reads.buf[event.offset..event.offset + event.len]
    }

    /// Where the bytes of a `Data` event start, for callers (the C layer)
    /// that hand them on while the loop is borrowed again. The pointer stays
    /// valid until [`release_reads`](Self::release_reads): nothing writes to
    /// the bytes handed out or moves the buffer before then.
    /// For a `Datagrams` event, the first of its datagrams (`Datagram`,
    /// the C header's `evl_udp_datagram`); NULL for the other kinds.
    #[inline]
    pub(crate) fn bytes_ptr(&self, event: &StreamEvent<D>) -> *const u8 {
        match event.kind {
            // No reference to the buffer is made: as_ptr promises that.
            StreamEventKind::Data => self.reads.buf.as_ptr().wrapping_add(event.offset),
            StreamEventKind::Datagrams => self.udp.buffer.batch_ptr(event.offset),
            _ => std::ptr::null(),
        }
    }

    /// The region every `Data` event's bytes lie in: the shared read buffer,
    /// made here if no stream made it yet. It stays at this address for the
    /// loop's life, so a caller that pays for each call into the library
    /// (Python through ctypes) can map it once and slice it per event.
    pub(crate) fn read_buffer(&mut self) -> (*const u8, usize) {
        self.reads.ensure();
        (self.reads.buf.as_ptr(), self.reads.buf.len())
    }

    /// Lets later reads reuse the read buffer: the bytes of every `Data`
    /// event handed out so far are no longer needed. Those of `Data` events
    /// not handed out yet (held over in `pending` when a batch was cut
    /// short) are kept: reads go on after them.
    ///
    /// So are the datagrams of `Datagrams` events handed out, and the fds
    /// of `Fds` events handed out and not taken are closed.
    #[inline]
    pub fn release_reads(&mut self) {
        self.reads.used = if self.pending.is_empty() {
            0
        } else {
            self.pending_reads_end()
        };
        self.release_datagrams();
        if !self.passed.is_empty() {
            self.release_passed_fds();
        }
    }

    #[cold]
    #[inline(never)]
    fn pending_reads_end(&self) -> usize {
        let data = self
            .pending
            .iter()
            .filter(|e| e.kind == StreamEventKind::Data && e.offset != HELD);
        data.map(|e| e.offset + e.len).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_go_end_to_end_until_released() {
        let mut reads = ReadBuffer {
            buf: Vec::new(),
            used: 0,
        };
        reads.ensure();
        assert_eq!(reads.buf.len(), READ_BUFFER);
        let start = reads.buf.as_ptr();
        let mut offsets = Vec::new();
        while reads.room() >= MIN_READ {
            let expected = READ_CHUNK.min(READ_BUFFER - reads.used);
            let chunk = reads.free_chunk();
            assert_eq!(chunk.len(), expected);
            let n = 10_000.min(chunk.len());
            chunk[..n].fill(offsets.len() as u8);
            offsets.push(reads.used);
            reads.used += n;
        }
        // Earlier reads are where they were, untouched by the later ones.
        for (i, &at) in offsets.iter().enumerate() {
            assert!(reads.buf[at..at + 10_000].iter().all(|&b| b == i as u8));
        }
        reads.ensure();
        assert_eq!(reads.buf.as_ptr(), start, "made once, never moved");
        reads.used = 0; // release_reads
        assert_eq!(reads.room(), READ_BUFFER);
        assert_eq!(reads.free_chunk().len(), READ_CHUNK);
    }
}
