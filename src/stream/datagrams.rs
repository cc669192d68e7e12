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
//! size as last time) sets up nothing.

use std::marker::PhantomData;
use std::os::fd::RawFd;

use crate::sys::{self, SysResult};

/// The datagram's receive slot was shorter than it: `len` bytes of it
/// are here, the rest was dropped.
pub const TRUNCATED: u32 = 1;

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

    /// The peer's address as the kernel takes it: NULL and 0 for none.
    pub(crate) fn raw_addr(&self) -> (*const libc::sockaddr, u32) {
        (self.addr, self.addr_len)
    }

    pub(crate) fn raw_bytes(&self) -> (*const u8, usize) {
        (self.data, self.len)
    }
}

use std::mem::size_of;

/// The receive buffer's size: 64 slots of the largest receive size.
pub(super) const RECEIVE_BYTES: usize = 64 * MAX_RECEIVE_SIZE;

/// The largest receive size: room for any UDP datagram (65,507 bytes of
/// payload over IPv4, 65,527 over IPv6).
pub const MAX_RECEIVE_SIZE: usize = 64 << 10;

/// Datagrams one recvmmsg takes at most.
const RECEIVE_WIDTH: usize = 32;

/// Datagrams one sendmmsg takes at most.
pub(super) const SEND_WIDTH: usize = 64;

/// Datagrams the receive buffer holds at most (in a batch of events).
const MAX_HELD: usize = 1024;

/// The layout the recvmmsg headers are set up for.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Layout {
    first: usize,
    offset: usize,
    slot: usize,
    count: usize,
}

/// The loop's datagram buffers, made with the first UDP socket.
pub(super) struct DatagramBuffer {
    /// RECEIVE_BYTES, filled from `used` on.
    data: Vec<u8>,
    used: usize,
    /// The datagrams received and not yet released (capacity MAX_HELD,
    /// never moved: events point into it), their addresses beside.
    received: Vec<Datagram<'static>>,
    addrs: Vec<libc::sockaddr_in6>,
    recv_hdrs: Vec<libc::mmsghdr>,
    recv_iovs: Vec<libc::iovec>,
    layout: Option<Layout>,
    pub(super) send_hdrs: Vec<libc::mmsghdr>,
    pub(super) send_iovs: Vec<libc::iovec>,
}

// SAFETY of the raw pointers in these structs: they point into the
// buffer's own heap allocations, which are made once and never resized.

fn empty_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain data; zeroed is an empty header.
    unsafe { std::mem::zeroed() }
}

const ADDR_LEN: u32 = size_of::<libc::sockaddr_in6>() as u32;

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
            addrs: Vec::new(),
            recv_hdrs: vec![empty_mmsghdr(); RECEIVE_WIDTH],
            recv_iovs: vec![empty_iov; RECEIVE_WIDTH],
            layout: None,
            send_hdrs: vec![empty_mmsghdr(); SEND_WIDTH],
            send_iovs: vec![empty_iov; SEND_WIDTH],
        };
        // Each send header has its one iovec for good; a send fills in the
        // address and the iovec.
        for (hdr, iov) in buffer.send_hdrs.iter_mut().zip(&mut buffer.send_iovs) {
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
        }
        buffer
    }

    /// Makes the large parts on first need: the pages are the kernel's to
    /// give as they are touched.
    #[cold]
    fn allocate(&mut self) {
        self.data = vec![0; RECEIVE_BYTES];
        self.received = Vec::with_capacity(MAX_HELD);
        // SAFETY: sockaddr_in6 is plain data; zeroed is a valid value.
        self.addrs = vec![unsafe { std::mem::zeroed() }; MAX_HELD];
    }

    /// Whether a batch of `slot`-byte datagrams fits now.
    #[inline]
    pub(super) fn has_room(&self, slot: usize) -> bool {
        self.received.len() < MAX_HELD && self.used + slot <= RECEIVE_BYTES
    }

    pub(super) fn is_empty(&self) -> bool {
        self.received.is_empty()
    }

    /// Receives a batch from `fd` into slots of `slot` bytes (<=
    /// MAX_RECEIVE_SIZE). Returns where its datagrams start in `received`
    /// and how many came (0 never: EAGAIN when none waits).
    #[inline]
    pub(super) fn receive(&mut self, fd: RawFd, slot: usize) -> SysResult<(usize, usize)> {
        if self.data.is_empty() {
            self.allocate();
        }
        let first = self.received.len();
        let offset = self.used;
        let count = RECEIVE_WIDTH
            .min(MAX_HELD - first)
            .min((RECEIVE_BYTES - offset) / slot);
        let layout = Layout {
            first,
            offset,
            slot,
            count,
        };
        if self.layout != Some(layout) {
            self.set_up(layout);
        }
        // SAFETY: set_up pointed the first `count` headers at slots of the
        // data buffer and at addresses, `slot` and ADDR_LEN bytes each.
        let n = unsafe { sys::recvmmsg(fd, &mut self.recv_hdrs[..count]) }?;
        let hdrs = &mut self.recv_hdrs[..n];
        for (i, hdr) in hdrs.iter_mut().enumerate() {
            let truncated = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.received.push(Datagram {
                // SAFETY: within the data buffer (set_up's slot i).
                data: unsafe { self.data.as_ptr().add(offset + i * slot) },
                len: (hdr.msg_len as usize).min(slot),
                addr: &self.addrs[first + i] as *const libc::sockaddr_in6 as *const libc::sockaddr,
                addr_len: hdr.msg_hdr.msg_namelen,
                flags: if truncated { TRUNCATED } else { 0 },
                _bytes: PhantomData,
            });
            // The kernel wrote the address's length here: room for the next.
            hdr.msg_hdr.msg_namelen = ADDR_LEN;
        }
        self.used += n * slot;
        Ok((first, n))
    }

    /// Points the recvmmsg headers at the slots `layout` says.
    #[cold]
    #[inline(never)]
    fn set_up(&mut self, layout: Layout) {
        let base = self.data.as_mut_ptr();
        for i in 0..layout.count {
            self.recv_iovs[i] = libc::iovec {
                // SAFETY: receive() keeps offset + count * slot within the buffer.
                iov_base: unsafe { base.add(layout.offset + i * layout.slot) }.cast(),
                iov_len: layout.slot,
            };
            let hdr = &mut self.recv_hdrs[i].msg_hdr;
            hdr.msg_name = (&mut self.addrs[layout.first + i] as *mut libc::sockaddr_in6).cast();
            hdr.msg_namelen = ADDR_LEN;
            hdr.msg_iov = &mut self.recv_iovs[i];
            hdr.msg_iovlen = 1;
        }
        self.layout = Some(layout);
    }

    /// The datagrams of an event: `count` from `first`.
    pub(super) fn batch(&self, first: usize, count: usize) -> &[Datagram<'_>] {
        &self.received[first..first + count]
    }

    pub(super) fn batch_ptr(&self, first: usize) -> *const u8 {
        self.received.as_ptr().wrapping_add(first).cast()
    }

    /// Every datagram handed out is done with.
    #[inline]
    pub(super) fn release(&mut self) {
        self.received.clear();
        self.used = 0;
    }
}
