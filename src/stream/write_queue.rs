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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn small_writes_share_a_chunk_but_not_one_being_sent() {
        let mut q = WriteQueue::default();
        q.push(b"ab");
        q.push(b"cd");
        assert_eq!(q.chunks.len(), 1);
        assert_eq!(q.bytes, 4);
        q.push(&vec![b'x'; COALESCE]);
        assert_eq!(q.chunks.len(), 2, "over COALESCE: a chunk of its own");
        q.chunks.pop_back();
        q.bytes = 4;
        q.sent = 1; // the first chunk is partly sent: its start is gone
        q.push(b"ef");
        assert_eq!(q.chunks.len(), 2);
        assert_eq!(q.bytes, 6);
    }

    /// Seeded random pushes and drains into a socket whose peer reads at
    /// random: the peer gets exactly the bytes pushed, in order, and the
    /// queue's count is what was pushed minus what the peer could take.
    #[test]
    fn random_pushes_and_drains_deliver_every_byte_in_order() {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        peer.set_nonblocking(true).unwrap();
        let mut rng = crate::test_rng::TestRng::new(0x00c0_ffee_1234_5678);
        let mut next = move || rng.next();
        let mut q = WriteQueue::default();
        let (mut pushed, mut received) = (Vec::new(), Vec::new());
        let mut buf = vec![0; 1 << 16];
        for _ in 0..2_000 {
            match next() % 3 {
                0 => {
                    let len = (next() % 40_000) as usize;
                    let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                    q.push(&bytes);
                    pushed.extend_from_slice(&bytes);
                }
                1 => {
                    let left = q.write_to(ours.as_raw_fd(), true).unwrap();
                    assert_eq!(left, q.bytes);
                }
                _ => {
                    if let Ok(n) = peer.read(&mut buf) {
                        received.extend_from_slice(&buf[..n]);
                    }
                }
            }
            let in_flight = pushed.len() - received.len();
            assert!(q.bytes <= in_flight);
            assert_eq!(
                q.bytes,
                q.chunks.iter().map(Vec::len).sum::<usize>() - q.sent
            );
        }
        while q.bytes > 0 || received.len() < pushed.len() {
            q.write_to(ours.as_raw_fd(), true).unwrap();
            if let Ok(n) = peer.read(&mut buf) {
                received.extend_from_slice(&buf[..n]);
            }
        }
        assert!(received == pushed, "the peer got other bytes");
        assert!(q.chunks.is_empty() && q.sent == 0);
    }

    #[test]
    fn a_peer_that_has_gone_is_an_error() {
        let (ours, peer) = UnixStream::pair().unwrap();
        drop(peer);
        let mut q = WriteQueue::default();
        q.push(b"hello");
        assert_eq!(q.write_to(ours.as_raw_fd(), true), Err(libc::EPIPE));
        assert_eq!(q.bytes, 5, "nothing was taken");
    }
}
