//! Datagrams in batches: what one is ([`Datagram`], laid out as the C
//! header's `evl_udp_datagram`, so a batch crosses the boundary as it is),
//! the loop's receive buffer that recvmmsg fills, and the headers sendmmsg
//! takes.
//!
//! The receive buffer is to datagrams what `read_buffer.rs` is to stream
//! bytes: one per loop, filled end to end and released all at once, so a
//! batch of events may point into it at several places. Each datagram
//! takes a slot of its socket's receive size; its source address goes into
//! an array beside. The recvmmsg headers keep pointing at the slots they
//! were set up for: the usual receive (the buffer empty, the same receive
//! size as last time) sets up nothing. Beside each datagram received waits
//! a sendmmsg header pointing at it and its address, so that an echo (a
//! batch sent back as it came) is one sendmmsg of headers already made.

use std::marker::PhantomData;
use std::os::fd::RawFd;

use crate::sys::{self, Errno, SysResult};

/// The datagram's receive slot was shorter than it: `len` bytes of it
/// are here, the rest was dropped. (MSG_TRUNC's value, as recvmmsg says it.)
pub const TRUNCATED: u32 = libc::MSG_TRUNC as u32;

/// One datagram: its bytes and its peer's address (a `sockaddr_in` or
/// `sockaddr_in6`). Received, it points into the loop's receive buffer; to
/// send, it points at the caller's bytes (see [`Datagram::new`]).
#[repr(C)]
#[derive(Debug)]
pub struct Datagram<'a> {
    data: *const u8,
    len: usize,
    addr: *const libc::sockaddr,
    addr_len: u32,
    flags: u32,
    _bytes: PhantomData<&'a [u8]>,
}

impl<'a> Datagram<'a> {
    /// A datagram to send: `bytes` to `to` (None: to the connected peer).
    pub fn new(bytes: &'a [u8], to: Option<&'a sys::SockAddr>) -> Datagram<'a> {
        let (addr, addr_len) = match to {
            Some(to) => (to.as_ptr(), to.len()),
            None => (std::ptr::null(), 0),
        };
        Datagram {
            data: bytes.as_ptr(),
            len: bytes.len(),
            addr,
            addr_len,
            flags: 0,
            _bytes: PhantomData,
        }
    }

    pub fn bytes(&self) -> &'a [u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: made from a slice that lives for 'a (new), or pointing
        // into the receive buffer, which keeps the bytes while the loop is
        // borrowed for 'a (StreamLoop::datagrams).
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }

    pub fn is_truncated(&self) -> bool {
        self.flags & TRUNCATED != 0
    }

    /// The peer's address: the source of a datagram received.
    pub fn peer(&self) -> Option<std::net::SocketAddr> {
        if self.addr.is_null() {
            return None;
        }
        // SAFETY: non-null, and valid for `addr_len` bytes as `bytes` says
        // of the data; the family tells which struct it is, and the length
        // is checked to cover it.
        unsafe {
            match (*self.addr).sa_family as i32 {
                libc::AF_INET if self.addr_len as usize >= size_of::<libc::sockaddr_in>() => {
                    let sin = &*(self.addr as *const libc::sockaddr_in);
                    let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                    Some((ip, u16::from_be(sin.sin_port)).into())
                }
                libc::AF_INET6 if self.addr_len as usize >= size_of::<libc::sockaddr_in6>() => {
                    let sin6 = &*(self.addr as *const libc::sockaddr_in6);
                    let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                    Some((ip, u16::from_be(sin6.sin6_port)).into())
                }
                _ => None,
            }
        }
    }

    /// What the kernel would refuse of a datagram's pointers and lengths,
    /// refused before they reach it or are copied (a datagram made by the
    /// C caller may have anything): NULL bytes with a length (EFAULT); more
    /// bytes than any UDP datagram has (EMSGSIZE); a NULL address with a
    /// length, or a length longer than any address (EINVAL).
    #[inline]
    pub(crate) fn check(&self) -> Result<(), Errno> {
        let too_long = self.addr_len as usize > size_of::<libc::sockaddr_storage>();
        let no_bytes = self.data.is_null() & (self.len != 0);
        let no_addr = self.addr.is_null() & (self.addr_len != 0);
        let too_big = self.len > MAX_DATAGRAM;
        if no_bytes | no_addr | too_long | too_big {
            return Err(self.why_malformed());
        }
        Ok(())
    }

    #[cold]
    fn why_malformed(&self) -> Errno {
        if self.data.is_null() && self.len != 0 {
            libc::EFAULT
        } else if self.len > MAX_DATAGRAM {
            libc::EMSGSIZE
        } else {
            libc::EINVAL
        }
    }

    /// The peer's address as the kernel takes it: NULL and 0 for none.
    pub(crate) fn raw_addr(&self) -> (*const libc::sockaddr, u32) {
        (self.addr, self.addr_len)
    }

    pub(crate) fn raw_bytes(&self) -> (*const u8, usize) {
        (self.data, self.len)
    }

    /// The datagram's bytes as an iovec: its first two fields are one.
    #[inline]
    pub(crate) fn as_iovec(&self) -> *mut libc::iovec {
        self as *const Datagram<'_> as *mut libc::iovec
    }
}

use std::mem::size_of;

// A datagram's bytes are an iovec where they are (see `as_iovec`).
const _: () = {
    assert!(
        std::mem::offset_of!(Datagram<'static>, data)
            == std::mem::offset_of!(libc::iovec, iov_base)
    );
    assert!(
        std::mem::offset_of!(Datagram<'static>, len) == std::mem::offset_of!(libc::iovec, iov_len)
    );
    assert!(size_of::<*const u8>() == size_of::<*mut libc::c_void>());
};

/// The receive buffer's size: 64 slots of the largest receive size.
pub(super) const RECEIVE_BYTES: usize = 64 * MAX_RECEIVE_SIZE;

/// The largest receive size: room for any UDP datagram (65,507 bytes of
/// payload over IPv4, 65,527 over IPv6).
pub const MAX_RECEIVE_SIZE: usize = 64 << 10;

/// The most bytes a UDP datagram has (IPv6's 65,535 less its 8-byte
/// header; IPv4 allows 65,507): the kernel refuses more (EMSGSIZE).
const MAX_DATAGRAM: usize = 65_527;

/// Datagrams one recvmmsg takes at most.
const RECEIVE_WIDTH: usize = 32;

/// Datagrams one sendmmsg takes at most.
pub(super) const SEND_WIDTH: usize = 64;

/// Datagrams the receive buffer holds at most (in a batch of events).
const MAX_HELD: usize = 1024;

/// Datagrams copied out of the receive buffer (`copy_out`), their bytes
/// end to end.
pub(super) struct HeldBatch {
    bytes: Vec<u8>,
    datagrams: Vec<HeldDatagram>,
}

struct HeldDatagram {
    len: usize,
    flags: u32,
    addr: libc::sockaddr_in6,
    addr_len: u32,
}

impl HeldBatch {
    pub(super) fn len(&self) -> usize {
        self.datagrams.len()
    }
}

/// The layout the recvmmsg headers are set up for.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Layout {
    first: usize,
    offset: usize,
    slot: usize,
    count: usize,
    /// The room for each source address: exactly its family's length, so
    /// that the kernel writes back the same length every time.
    addr_room: u32,
}

/// The loop's datagram buffers, made with the first UDP socket.
pub(super) struct DatagramBuffer {
    /// RECEIVE_BYTES, filled from `used` on.
    data: Vec<u8>,
    used: usize,
    /// MAX_HELD datagrams (made with `data`, never moved: events point into
    /// them), the first `held` received and not yet released; their
    /// addresses beside. A slot's bytes and address pointers are set with
    /// the recvmmsg headers (`set_up`); a receive writes the rest.
    received: Vec<Datagram<'static>>,
    held: usize,
    /// Some of the first `held` datagrams were cut short and say so. Every
    /// other entry's flags are 0, so that a receive writes only lengths
    /// (see `receive`); a release clears the flags written.
    flagged: bool,
    addrs: Vec<libc::sockaddr_in6>,
    /// One sendmmsg header per entry of `received`, pointing at it (its
    /// bytes are an iovec, see [`Datagram::as_iovec`]) and at its address,
    /// which `set_up` writes with the entry's: an echo sends them as they are.
    echo_hdrs: Vec<libc::mmsghdr>,
    recv_hdrs: Vec<libc::mmsghdr>,
    recv_iovs: Vec<libc::iovec>,
    layout: Option<Layout>,
    /// The receive size and address room the recvmmsg headers are set up
    /// for from the buffer's start ((0, 0): none), and how many datagrams
    /// they take then: the usual receive checks these and nothing else.
    ready: (usize, u32),
    ready_count: usize,
    pub(super) send_hdrs: Vec<libc::mmsghdr>,
    pub(super) send_iovs: Vec<libc::iovec>,
}

// SAFETY of the raw pointers in these structs: they point into the
// buffer's own heap allocations, which are made once and never resized.

fn empty_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain data; zeroed is an empty header.
    unsafe { std::mem::zeroed() }
}

impl DatagramBuffer {
    pub(super) fn new() -> DatagramBuffer {
        let empty_iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let mut buffer = DatagramBuffer {
            data: Vec::new(),
            used: 0,
            received: Vec::new(),
            held: 0,
            flagged: false,
            addrs: Vec::new(),
            echo_hdrs: Vec::new(),
            recv_hdrs: vec![empty_mmsghdr(); RECEIVE_WIDTH],
            recv_iovs: vec![empty_iov; RECEIVE_WIDTH],
            layout: None,
            ready: (0, 0),
            ready_count: 0,
            send_hdrs: vec![empty_mmsghdr(); SEND_WIDTH],
            send_iovs: vec![empty_iov; SEND_WIDTH],
        };
        // Each send has one iovec (the datagram itself, or one of
        // `send_iovs` for a queued datagram); a send fills in where it is
        // and the address.
        for hdr in buffer.send_hdrs.iter_mut() {
            hdr.msg_hdr.msg_iovlen = 1;
        }
        buffer
    }

    /// Makes the large parts on first need: the pages are the kernel's to
    /// give as they are touched.
    #[cold]
    fn allocate(&mut self) {
        self.data = vec![0; RECEIVE_BYTES];
        self.received = (0..MAX_HELD).map(|_| Datagram::new(&[], None)).collect();
        // SAFETY: sockaddr_in6 is plain data; zeroed is a valid value.
        self.addrs = vec![unsafe { std::mem::zeroed() }; MAX_HELD];
        // Each echo header sends its entry of `received` (no bytes and no
        // address until set_up gives it some).
        self.echo_hdrs = vec![empty_mmsghdr(); MAX_HELD];
        for (hdr, datagram) in self.echo_hdrs.iter_mut().zip(self.received.iter()) {
            hdr.msg_hdr.msg_iov = datagram.as_iovec();
            hdr.msg_hdr.msg_iovlen = 1;
        }
    }

    /// Whether a batch of `slot`-byte datagrams fits now.
    #[inline]
    fn has_room(&self, slot: usize) -> bool {
        self.held < MAX_HELD && self.used + slot <= RECEIVE_BYTES
    }

    pub(super) fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Receives a batch from `fd` into slots of `slot` bytes (1 to
    /// MAX_RECEIVE_SIZE), its sources' addresses `addr_room` bytes long (the
    /// socket family's). Returns where its datagrams start in `received`
    /// and how many came (0 never: EAGAIN when none waits, and when the
    /// buffer has no room for a batch).
    #[inline(always)]
    pub(super) fn receive(
        &mut self,
        fd: RawFd,
        slot: usize,
        addr_room: u32,
    ) -> SysResult<(usize, usize)> {
        let first = self.held;
        let count = if first == 0 && self.ready == (slot, addr_room) {
            self.ready_count
        } else {
            self.prepare(slot, addr_room)?
        };
        // SAFETY: set_up pointed the first `count` headers at slots of the
        // data buffer and at addresses, `slot` and `addr_room` bytes each.
        let n = unsafe { sys::recvmmsg(fd, &mut self.recv_hdrs[..count]) }?;
        // What the kernel wrote: each datagram's length. (Its address's
        // length is the family's, which set_up wrote: the kernel writes the
        // same back, so the room stays as it was.) A datagram cut short
        // filled its slot, and the lengths OR-ed are at least the longest:
        // only a batch where that reaches the slot has flags to write.
        let mut lengths = 0;
        let hdrs = self.recv_hdrs[..n].iter();
        for (datagram, hdr) in self.received[first..first + n].iter_mut().zip(hdrs) {
            debug_assert_eq!(hdr.msg_hdr.msg_namelen, addr_room);
            datagram.len = hdr.msg_len as usize;
            lengths |= hdr.msg_len;
        }
        if lengths as usize >= slot {
            self.flag_truncated(first, n);
        }
        self.held += n;
        self.used += n * slot;
        Ok((first, n))
    }

    /// Writes whether each of the `n` datagrams received from `first` was
    /// cut short (their flags are 0 until then: see `flagged`).
    #[cold]
    #[inline(never)]
    fn flag_truncated(&mut self, first: usize, n: usize) {
        let hdrs = self.recv_hdrs[..n].iter();
        for (datagram, hdr) in self.received[first..first + n].iter_mut().zip(hdrs) {
            datagram.flags = hdr.msg_hdr.msg_flags as u32 & TRUNCATED;
            self.flagged |= datagram.flags != 0;
        }
    }

    /// What a receive not of the usual kind needs first: room (EAGAIN when
    /// there is none), the buffers, and the headers set up for where it
    /// goes. Returns how many datagrams it may take.
    #[cold]
    #[inline(never)]
    fn prepare(&mut self, slot: usize, addr_room: u32) -> SysResult<usize> {
        if !self.has_room(slot) {
            return Err(libc::EAGAIN);
        }
        if self.data.is_empty() {
            self.allocate();
        }
        let layout = Layout {
            first: self.held,
            offset: self.used,
            slot,
            count: RECEIVE_WIDTH
                .min(MAX_HELD - self.held)
                .min((RECEIVE_BYTES - self.used) / slot),
            addr_room,
        };
        if self.layout != Some(layout) {
            self.set_up(layout);
        }
        Ok(layout.count)
    }

    /// Points the recvmmsg headers, and the datagrams they fill (with their
    /// echo headers), at the slots and addresses `layout` says.
    fn set_up(&mut self, layout: Layout) {
        let base = self.data.as_mut_ptr();
        for i in 0..layout.count {
            // SAFETY: receive() keeps offset + count * slot within the buffer.
            let bytes = unsafe { base.add(layout.offset + i * layout.slot) };
            let addr = &mut self.addrs[layout.first + i] as *mut libc::sockaddr_in6;
            self.recv_iovs[i] = libc::iovec {
                iov_base: bytes.cast(),
                iov_len: layout.slot,
            };
            let hdr = &mut self.recv_hdrs[i].msg_hdr;
            hdr.msg_name = addr.cast();
            hdr.msg_namelen = layout.addr_room;
            hdr.msg_iov = &mut self.recv_iovs[i];
            hdr.msg_iovlen = 1;
            let datagram = &mut self.received[layout.first + i];
            datagram.data = bytes;
            datagram.addr = addr.cast();
            datagram.addr_len = layout.addr_room;
            let echo = &mut self.echo_hdrs[layout.first + i].msg_hdr;
            echo.msg_name = addr.cast();
            echo.msg_namelen = layout.addr_room;
        }
        self.layout = Some(layout);
        self.ready = if layout.first == 0 {
            (layout.slot, layout.addr_room)
        } else {
            (0, 0)
        };
        self.ready_count = layout.count;
    }

    /// Where `datagrams` start in the array of datagrams received, if they
    /// lie in it (exactly on its entries): then each is well-formed,
    /// whatever its age, its pointers into the buffer and its lengths
    /// within them, and has its sendmmsg header in `echo_hdrs`.
    #[inline]
    pub(super) fn echo_start(&self, datagrams: &[Datagram<'_>]) -> Option<usize> {
        let start = self.received.as_ptr() as usize;
        let at = (datagrams.as_ptr() as usize).wrapping_sub(start);
        let first = at / size_of::<Datagram<'_>>();
        let whole = at % size_of::<Datagram<'_>>() == 0;
        (whole && first <= self.received.len() && datagrams.len() <= self.received.len() - first)
            .then_some(first)
    }

    /// The echo headers of `count` datagrams received from `first` (as
    /// [`echo_start`](Self::echo_start) found them), for sendmmsg.
    #[inline]
    pub(super) fn echo_hdrs(&mut self, first: usize, count: usize) -> &mut [libc::mmsghdr] {
        &mut self.echo_hdrs[first..first + count]
    }

    /// Where received datagrams' bytes and addresses lie: the data buffer
    /// and the address array, made here if no receive made them yet. They
    /// stay at these addresses for the loop's life.
    pub(super) fn regions(&mut self) -> ((*const u8, usize), (*const u8, usize)) {
        if self.data.is_empty() {
            self.allocate();
        }
        let addrs = (
            self.addrs.as_ptr().cast(),
            std::mem::size_of_val(&self.addrs[..]),
        );
        ((self.data.as_ptr(), self.data.len()), addrs)
    }

    /// The datagrams of an event: `count` from `first`.
    pub(super) fn batch(&self, first: usize, count: usize) -> &[Datagram<'_>] {
        &self.received[first..first + count]
    }

    pub(super) fn batch_ptr(&self, first: usize) -> *const u8 {
        self.received.as_ptr().wrapping_add(first).cast()
    }

    /// Copies the `count` datagrams received from `first` out of the
    /// buffer, to be put back by [`restore`](Self::restore) after it was
    /// released (a pause holds them: see `held.rs`).
    pub(super) fn copy_out(&self, first: usize, count: usize) -> HeldBatch {
        let mut batch = HeldBatch {
            bytes: Vec::new(),
            datagrams: Vec::with_capacity(count),
        };
        for (i, datagram) in self.received[first..first + count].iter().enumerate() {
            batch.bytes.extend_from_slice(datagram.bytes());
            batch.datagrams.push(HeldDatagram {
                len: datagram.len,
                flags: datagram.flags,
                addr: self.addrs[first + i],
                addr_len: datagram.addr_len,
            });
        }
        batch
    }

    /// Puts a batch [`copy_out`](Self::copy_out) made back into the buffer,
    /// after what it holds, each datagram as it came (bytes, source,
    /// truncation, echo header). Returns where it starts in `received`;
    /// `None` while the buffer has no room for it (it has once released).
    pub(super) fn restore(&mut self, batch: &HeldBatch) -> Option<usize> {
        let count = batch.datagrams.len();
        if self.held + count > MAX_HELD || self.used + batch.bytes.len() > RECEIVE_BYTES {
            return None;
        }
        if self.data.is_empty() {
            self.allocate();
        }
        let base = self.data.as_mut_ptr();
        let first = self.held;
        let mut from = 0;
        for (i, held) in batch.datagrams.iter().enumerate() {
            let entry = first + i;
            // SAFETY: `used` plus the batch's bytes is within the buffer
            // (checked above), and the batch's bytes are `held.len` long
            // from `from` on (copy_out put them end to end).
            let bytes = unsafe {
                let to = base.add(self.used + from);
                std::ptr::copy_nonoverlapping(batch.bytes.as_ptr().add(from), to, held.len);
                to
            };
            from += held.len;
            self.addrs[entry] = held.addr;
            let addr = &mut self.addrs[entry] as *mut libc::sockaddr_in6;
            let datagram = &mut self.received[entry];
            datagram.data = bytes;
            datagram.len = held.len;
            datagram.addr = addr.cast();
            datagram.addr_len = held.addr_len;
            datagram.flags = held.flags;
            self.flagged |= held.flags != 0;
            let echo = &mut self.echo_hdrs[entry].msg_hdr;
            echo.msg_name = addr.cast();
            echo.msg_namelen = held.addr_len;
        }
        self.held += count;
        self.used += from;
        // The entries no longer lie where the recvmmsg headers were set up
        // for: the next receive sets them up anew.
        self.layout = None;
        self.ready = (0, 0);
        Some(first)
    }

    /// Every datagram handed out is done with.
    #[inline]
    pub(super) fn release(&mut self) {
        if self.flagged {
            self.clear_flags();
        }
        self.held = 0;
        self.used = 0;
    }

    #[cold]
    #[inline(never)]
    fn clear_flags(&mut self) {
        for datagram in &mut self.received[..self.held] {
            datagram.flags = 0;
        }
        self.flagged = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    const ROOM: u32 = size_of::<libc::sockaddr_in>() as u32;

    fn pair() -> (UdpSocket, UdpSocket) {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver.set_nonblocking(true).unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.connect(receiver.local_addr().unwrap()).unwrap();
        (receiver, sender)
    }

    /// Receives everything `sent` (loopback delivers at once, in order).
    fn receive_all(buffer: &mut DatagramBuffer, fd: RawFd, slot: usize, sent: usize) -> usize {
        let (first, n) = buffer.receive(fd, slot, ROOM).unwrap();
        assert_eq!(n, sent, "one recvmmsg takes what loopback holds");
        first
    }

    fn seen(buffer: &DatagramBuffer, first: usize, n: usize) -> Vec<(Vec<u8>, bool)> {
        let batch = buffer.batch(first, n);
        batch
            .iter()
            .map(|d| (d.bytes().to_vec(), d.is_truncated()))
            .collect()
    }

    #[test]
    fn truncation_is_flagged_exactly_and_cleared_with_the_release() {
        let (receiver, sender) = pair();
        let fd = receiver.as_raw_fd();
        let mut buffer = DatagramBuffer::new();
        sender.send(b"0123456789").unwrap();
        sender.send(b"abc").unwrap();
        let first = receive_all(&mut buffer, fd, 8, 2);
        let expected = vec![(b"01234567".to_vec(), true), (b"abc".to_vec(), false)];
        assert_eq!(seen(&buffer, first, 2), expected);
        // A later batch before the release lands after it: its own flags.
        sender.send(b"defgh").unwrap();
        let later = receive_all(&mut buffer, fd, 8, 1);
        assert_eq!(later, 2);
        assert_eq!(seen(&buffer, later, 1), vec![(b"defgh".to_vec(), false)]);
        buffer.release();
        // The slot that held a truncated datagram now holds a short one.
        sender.send(b"xy").unwrap();
        let first = receive_all(&mut buffer, fd, 8, 1);
        assert_eq!(seen(&buffer, first, 1), vec![(b"xy".to_vec(), false)]);
        buffer.release();
        // A whole one, then a truncated one.
        sender.send(b"xy").unwrap();
        sender.send(b"klmnopqrstu").unwrap();
        let first = receive_all(&mut buffer, fd, 8, 2);
        let expected = vec![(b"xy".to_vec(), false), (b"klmnopqr".to_vec(), true)];
        assert_eq!(seen(&buffer, first, 2), expected);
        buffer.release();
        // Exactly the slot's length is whole; at the largest receive size
        // nothing is cut.
        sender.send(b"ABCDEFGH").unwrap();
        sender.send(b"z").unwrap();
        let first = receive_all(&mut buffer, fd, 8, 2);
        let expected = vec![(b"ABCDEFGH".to_vec(), false), (b"z".to_vec(), false)];
        assert_eq!(seen(&buffer, first, 2), expected);
        buffer.release();
        sender.send(&[7; 1000]).unwrap();
        let first = receive_all(&mut buffer, fd, MAX_RECEIVE_SIZE, 1);
        assert_eq!(seen(&buffer, first, 1), vec![(vec![7; 1000], false)]);
    }

    #[test]
    fn an_echo_is_found_only_on_the_received_entries() {
        let (receiver, sender) = pair();
        let mut buffer = DatagramBuffer::new();
        for i in 0..5u8 {
            sender.send(&[i; 3]).unwrap();
        }
        let first = receive_all(&mut buffer, receiver.as_raw_fd(), 64, 5);
        let batch = buffer.batch(first, 5);
        assert_eq!(buffer.echo_start(batch), Some(first));
        assert_eq!(buffer.echo_start(&batch[2..4]), Some(first + 2));
        // A copy is the caller's array: checked and sent the long way.
        let copy: Vec<Datagram<'_>> = batch.iter().map(|d| Datagram { ..*d }).collect();
        assert_eq!(buffer.echo_start(&copy), None);
        // The headers made for them send each to its source.
        let hdrs = buffer.echo_hdrs(first + 1, 3).to_vec();
        for (i, hdr) in hdrs.iter().enumerate() {
            let datagram = &buffer.batch(first, 5)[i + 1];
            assert_eq!(hdr.msg_hdr.msg_iov, datagram.as_iovec());
            assert_eq!(hdr.msg_hdr.msg_iovlen, 1);
            assert_eq!(
                hdr.msg_hdr.msg_name.cast_const(),
                datagram.raw_addr().0.cast()
            );
            assert_eq!(hdr.msg_hdr.msg_namelen, ROOM);
        }
        // Nor is an array that starts between two entries.
        let bytes = buffer.received.as_ptr().cast::<u8>();
        // SAFETY: within the entries; the slice is only compared, never read.
        let skewed = unsafe { std::slice::from_raw_parts(bytes.add(8).cast::<Datagram<'_>>(), 1) };
        assert_eq!(buffer.echo_start(skewed), None);
        // The array's last entry is one.
        let end = buffer.received.len() - 1;
        assert_eq!(buffer.echo_start(&buffer.received[end..]), Some(end));
    }
}
