//! A stream's write queue: the bytes the kernel did not take yet.

use std::collections::VecDeque;
use std::os::fd::RawFd;

use crate::sys::{self, Errno};

/// Bytes the kernel did not take yet: chunks, the first one partly sent.
#[derive(Default)]
pub(super) struct WriteQueue {
    pub(super) chunks: VecDeque<Vec<u8>>,
    pub(super) sent: usize,
    pub(super) bytes: usize,
}

/// Small writes share a chunk up to this size.
pub(super) const COALESCE: usize = 16 << 10;

impl WriteQueue {
    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.bytes += bytes.len();
        // Not into a chunk being sent: its start is gone already.
        let sending = self.chunks.len() == 1 && self.sent > 0;
        if let Some(last) = self.chunks.back_mut() {
            if !sending && last.len() + bytes.len() <= COALESCE {
                last.extend_from_slice(bytes);
                return;
            }
        }
        self.chunks.push_back(bytes.to_vec());
    }

    /// Writes until the kernel takes no more; returns how much is left.
    pub(super) fn write_to(&mut self, fd: RawFd, socket: bool) -> Result<usize, Errno> {
        while let Some(chunk) = self.chunks.front() {
            match sys::write(fd, &chunk[self.sent..], socket) {
                Ok(n) => {
                    self.sent += n;
                    self.bytes -= n;
                    if self.sent == chunk.len() {
                        self.chunks.pop_front();
                        self.sent = 0;
                    }
                }
                Err(libc::EINTR) => {}
                Err(libc::EAGAIN) => break,
                Err(error) => return Err(error),
            }
        }
        Ok(self.bytes)
    }
}
