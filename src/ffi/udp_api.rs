//! UDP's C API: datagram sockets, bound and perhaps connected, whose
//! datagrams arrive in batches (one recvmmsg each) as EVL_STREAM_DATAGRAMS
//! events through the stream callback and evl_stream_poll, and leave in
//! batches (sendmmsg), from the same array if the application likes: an
//! echo is one call per batch.

use std::ffi::{c_char, c_int, c_void, CStr};

use super::boundary::{with_loop, with_loop_into, Callback};
use super::stream_api::socket_addr;
use super::types::*;
use crate::stream::{Datagram, StreamEventKind, DATAGRAM_OVERHEAD, TRUNCATED};
use crate::sys::{Errno, Interface, UdpOption, UdpOptions};

/// A UDP socket received datagrams: `data` points to `len` (at least 1)
/// `evl_udp_datagram`s, in the order they came (cast it:
/// `const evl_udp_datagram *d = (const evl_udp_datagram *)ev->data`).
/// They, their bytes and their addresses are valid until the callback
/// returns (with evl_stream_poll: until the next evl_stream_poll), and may
/// be passed as they are to evl_udp_send_batch (an echo). `stream` is the
/// socket's id, `fd` its fd.
pub const EVL_STREAM_DATAGRAMS: u32 = 8;

/// A UDP socket's error, in `status`; the socket goes on. A datagram the
/// kernel refused after it had to wait in the queue (it was dropped), or an
/// ICMP error for a connected socket (-ECONNREFUSED: nobody listens at the
/// peer's port).
pub const EVL_STREAM_UDP_ERROR: u32 = 9;

/// evl_udp_bind flag: SO_REUSEPORT (several sockets, one per thread, share
/// the port and the kernel spreads datagrams by peer).
pub const EVL_UDP_REUSEPORT: u32 = 1;

/// evl_udp_bind flag: SO_BROADCAST (sending to a broadcast address).
pub const EVL_UDP_BROADCAST: u32 = 2;

/// evl_udp_bind flag: an IPv6 socket takes IPv6 only. Without it an IPv6
/// socket is dual-stack: IPv4 peers appear as IPv4-mapped IPv6 addresses
/// (::ffff:a.b.c.d), and it may send to IPv4 addresses too.
pub const EVL_UDP_IPV6_ONLY: u32 = 4;

/// evl_udp_datagram flag: the datagram was longer than the socket's receive
/// size (evl_udp_set_recv_size): `len` bytes of it are here, the rest was
/// dropped. A datagram is never cut short without this flag.
pub const EVL_UDP_TRUNCATED: u32 = 0x20;

/// evl_udp_set_option: SO_BROADCAST, 0 or 1.
pub const EVL_UDP_OPT_BROADCAST: u32 = 1;

/// evl_udp_set_option: whether multicast sent comes back to this host's
/// own members (IP_MULTICAST_LOOP / IPV6_MULTICAST_LOOP), 0 or 1.
pub const EVL_UDP_OPT_MULTICAST_LOOP: u32 = 2;

/// evl_udp_set_option: hop limit of multicast sent (IP_MULTICAST_TTL /
/// IPV6_MULTICAST_HOPS), 0 to 255.
pub const EVL_UDP_OPT_MULTICAST_TTL: u32 = 3;

/// evl_udp_set_option: hop limit of unicast sent (IP_TTL /
/// IPV6_UNICAST_HOPS), 1 to 255.
pub const EVL_UDP_OPT_TTL: u32 = 4;

/// What a queued datagram counts for besides its length (evl_udp_queued,
/// the watermarks): empty datagrams fill the queue too.
pub const EVL_UDP_DATAGRAM_OVERHEAD: u32 = 64;

/// One datagram: as EVL_STREAM_DATAGRAMS hands them out, and as
/// evl_udp_send_batch takes them.
#[repr(C)]
pub struct evl_udp_datagram {
    /// The bytes (NULL only with `len` 0).
    pub data: *const u8,
    pub len: usize,
    /// The peer's address: a `struct sockaddr_in` or `sockaddr_in6` (the
    /// source of a datagram received; where to send one, or NULL for a
    /// connected socket's peer), of `addr_len` bytes.
    pub addr: *const c_void,
    pub addr_len: u32,
    /// EVL_UDP_TRUNCATED on a datagram received; ignored when sending.
    pub flags: u32,
}

// The batch crosses the boundary as it is: the two layouts are one.
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<evl_udp_datagram>() == size_of::<Datagram<'static>>());
    assert!(align_of::<evl_udp_datagram>() == align_of::<Datagram<'static>>());
    assert!(offset_of!(evl_udp_datagram, len) == 8 && offset_of!(evl_udp_datagram, addr) == 16);
    assert!(offset_of!(evl_udp_datagram, addr_len) == 24);
    assert!(offset_of!(evl_udp_datagram, flags) == 28 && size_of::<evl_udp_datagram>() == 32);
    assert!(StreamEventKind::Datagrams as u32 == EVL_STREAM_DATAGRAMS);
    assert!(StreamEventKind::UdpError as u32 == EVL_STREAM_UDP_ERROR);
    assert!(TRUNCATED == EVL_UDP_TRUNCATED);
    assert!(DATAGRAM_OVERHEAD == EVL_UDP_DATAGRAM_OVERHEAD as usize);
};

/// The C array of `count` datagrams as the stream layer's (same layout).
///
/// # Safety
/// `datagrams` is non-null with `count` entries.
unsafe fn as_datagrams<'a>(datagrams: *const evl_udp_datagram, count: usize) -> &'a [Datagram<'a>] {
    // SAFETY: the layouts are asserted equal above; the entries' pointers
    // are the caller's to vouch for, as the header says.
    unsafe { std::slice::from_raw_parts(datagrams.cast::<Datagram<'a>>(), count) }
}

/// Makes a UDP socket bound to `host` (a numeric IPv4 or IPv6 address, or
/// a name resolved with getaddrinfo, which may block; NULL or "": every
/// IPv4 address; "::": every address, IPv6 and IPv4 unless
/// EVL_UDP_IPV6_ONLY) and `port` (0: any free port, see evl_udp_port), and
/// writes its id to `*out`. `flags`: EVL_UDP_REUSEPORT, EVL_UDP_BROADCAST,
/// EVL_UDP_IPV6_ONLY.
///
/// Its events go to `cb` with `userdata` (evl_stream_poll writes them for
/// a loop driven by it): EVL_STREAM_DATAGRAMS for each batch received,
/// EVL_STREAM_DRAINED when its send queue emptied, EVL_STREAM_UDP_ERROR,
/// and last EVL_STREAM_CLOSED. Its id lives until that event is delivered,
/// as a stream's does (see EVL_STREAM_CLOSED). Up to 32 datagrams come per
/// event; each datagram takes a slot of the receive size (64 KiB, any UDP
/// datagram; evl_udp_set_recv_size), so a batch never cuts one short unless
/// told to, and then says so.
///
/// Returns 0; -EINVAL for a NULL loop or `out`, a port outside 0..65535 or
/// unknown flags; -EADDRINUSE, -EADDRNOTAVAIL (also for a host that does
/// not resolve), -EACCES, -EMFILE...
/// Ownership: the socket is the library's until evl_udp_close or
/// evl_loop_free. Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_udp_bind(
    r#loop: *mut evl_loop,
    host: *const c_char,
    port: c_int,
    flags: u32,
    cb: evl_stream_cb,
    userdata: *mut c_void,
    out: *mut u64,
) -> c_int {
    with_loop_into!(r#loop, out, |core| {
        let known = EVL_UDP_REUSEPORT | EVL_UDP_BROADCAST | EVL_UDP_IPV6_ONLY;
        if flags & !known != 0 {
            return Err(libc::EINVAL);
        }
        // SAFETY: `host` is NULL or NUL-terminated (the header's contract).
        let addr = unsafe { socket_addr(host, port) }?;
        let options = UdpOptions {
            reuse_port: flags & EVL_UDP_REUSEPORT != 0,
            broadcast: flags & EVL_UDP_BROADCAST != 0,
            v6_only: flags & EVL_UDP_IPV6_ONLY != 0,
        };
        core.udp_bind(&addr, options, Callback::stream(cb, userdata))
    })
}

/// Makes a UDP socket of `fd`, a datagram socket the caller made (IPv4 or
/// IPv6, bound or not, connected or not, with whatever options it set),
/// and writes its id to `*out`. The fd is made non-blocking. Its events are
/// as for evl_udp_bind.
///
/// Returns 0; -EINVAL for a NULL loop or `out`, or a negative fd; -EBADF;
/// -ENOTSOCK for no socket; -EPROTOTYPE for a stream socket;
/// -EAFNOSUPPORT for a family other than IPv4 and IPv6; -EEXIST if the fd
/// is registered already.
/// Ownership: on success the socket owns `fd` and closes it when it ends
/// (do not close it yourself); on error it stays yours.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_udp_open(
    r#loop: *mut evl_loop,
    fd: c_int,
    cb: evl_stream_cb,
    userdata: *mut c_void,
    out: *mut u64,
) -> c_int {
    with_loop_into!(r#loop, out, |core| {
        core.udp_open(fd, Callback::stream(cb, userdata))
    })
}

/// Connects a UDP socket to `host` and `port` (as for evl_udp_bind; on a
/// dual-stack socket an IPv4 address is fine): from then on it sends there
/// when a datagram gives no address, receives only from there, and gets
/// the peer's ICMP errors (EVL_STREAM_UDP_ERROR with -ECONNREFUSED). NULL
/// `host` dissolves the association.
///
/// Returns 0; -EINVAL for a NULL loop or a port outside 0..65535; -ENOENT
/// for an unknown socket; -EBADF for one closed already; -EAFNOSUPPORT
/// (an IPv6 address for an IPv4 socket), -EADDRNOTAVAIL...
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_udp_connect(
    r#loop: *mut evl_loop,
    udp: u64,
    host: *const c_char,
    port: c_int,
) -> c_int {
    with_loop!(r#loop, |core| {
        if host.is_null() {
            return core.udp_connect(udp, None).map(|()| 0);
        }
        // SAFETY: `host` is NUL-terminated (the header's contract).
        let addr = unsafe { socket_addr(host, port) }?;
        core.udp_connect(udp, Some(&addr)).map(|()| 0)
    })
}

/// Sends one datagram of `len` bytes to `addr` (a `struct sockaddr_in` or
/// `sockaddr_in6` of `addr_len` bytes, such as a received datagram's
/// `addr`; NULL for a connected socket's peer): at once if the kernel
/// takes it, else copied into the socket's queue, sent when it can be.
///
/// Returns 0 (sent or queued); -EINVAL for a NULL loop, or NULL `addr`
/// with a non-zero `addr_len`, or an `addr_len` over 128; -EFAULT for NULL
/// `data` with a non-zero `len`; -ENOBUFS when the queue is over its high
/// watermark (evl_udp_set_watermarks: the datagram is dropped; try again
/// after EVL_STREAM_DRAINED); what the kernel refuses the datagram for:
/// -EMSGSIZE, -EACCES (a broadcast address without EVL_UDP_BROADCAST),
/// -EDESTADDRREQ (no address, not connected), -EAFNOSUPPORT,
/// -ENETUNREACH...; -EPIPE once the socket is closing or closed; -ENOENT
/// for an unknown socket.
/// Ownership: `data` and `addr` stay the caller's; not used after the call.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_udp_send(
    r#loop: *mut evl_loop,
    udp: u64,
    data: *const c_void,
    len: usize,
    addr: *const c_void,
    addr_len: u32,
) -> c_int {
    with_loop!(r#loop, |core| {
        let datagram = evl_udp_datagram {
            data: data.cast(),
            len,
            addr,
            addr_len,
            flags: 0,
        };
        // SAFETY: one datagram, whose pointers the caller vouches for.
        let datagrams = unsafe { as_datagrams(&datagram, 1) };
        let mut status = [0];
        match core.udp_send(udp, datagrams, Some(&mut status))? {
            0 => Ok(0),
            _ => Err(status[0]),
        }
    })
}

/// Sends `count` datagrams in order, with sendmmsg (up to 64 a call), as
/// far as the kernel takes them; the rest is copied into the socket's
/// queue. A datagram refused (as evl_udp_send would refuse it: -EMSGSIZE,
/// -ENOBUFS for a full queue, -EFAULT for NULL bytes, -EINVAL for a NULL
/// address with a length or one over 128 bytes...) is skipped, the others
/// go on. `status`, if not
/// NULL, has room for `count` results: 0 or the negative errno of each.
/// The datagrams of an EVL_STREAM_DATAGRAMS event may be passed as they
/// are: that is an echo, one call per batch. `flags` of each is ignored.
///
/// Returns how many datagrams were refused (0: all sent or queued);
/// -EINVAL for a NULL loop, a negative `count`, or NULL `datagrams` with a
/// non-zero `count` (nothing is sent); -EPIPE once the socket is closing or
/// closed; -ENOENT for an unknown socket.
/// Ownership: the array, the bytes and the addresses stay the caller's; not
/// used after the call. Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_udp_send_batch(
    r#loop: *mut evl_loop,
    udp: u64,
    datagrams: *const evl_udp_datagram,
    count: c_int,
    status: *mut c_int,
) -> c_int {
    with_loop!(r#loop, |core| {
        let count = usize::try_from(count).map_err(|_| libc::EINVAL)?;
        if count == 0 {
            return core.udp_send(udp, &[], None).map(|_| 0);
        }
        if datagrams.is_null() {
            return Err(libc::EINVAL);
        }
        // SAFETY: non-null with `count` entries (the header's contract).
        let list = unsafe { as_datagrams(datagrams, count) };
        let mut status = if status.is_null() {
            None
        } else {
            // SAFETY: non-null with room for `count` ints (the header's contract).
            Some(unsafe { std::slice::from_raw_parts_mut(status, count) })
        };
        let refused = core.udp_send(udp, list, status.as_deref_mut())?;
        if refused > 0 {
            // The stream layer's errnos are positive.
            for result in status.into_iter().flatten() {
                *result = -*result;
            }
        }
        Ok(refused as c_int)
    })
}

/// Stops receiving, sends what is queued, then closes the socket
/// (EVL_STREAM_CLOSED with 0 follows). Events of the socket not yet
/// delivered are dropped. As a stream's, its fd (and so its port) stays
/// open until its EVL_STREAM_CLOSED has been delivered.
///
/// Returns 0; -EINVAL for a NULL loop; -ENOENT for an unknown socket (0 for
/// one closed whose EVL_STREAM_CLOSED is not delivered yet).
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_udp_close(r#loop: *mut evl_loop, udp: u64) -> c_int {
    with_loop!(r#loop, |core| core.udp_close(udp).map(|()| 0))
}

/// The local port of a UDP socket (the one chosen for port 0).
///
/// Returns the port; -EINVAL for a NULL loop; -ENOENT for an unknown
/// socket; -EBADF for one closed already. Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_udp_port(r#loop: *mut evl_loop, udp: u64) -> c_int {
    with_loop!(r#loop, |core| core.udp_port(udp).map(c_int::from))
}

/// The socket's fd, for getsockname, setsockopt and the like. It stays the
/// library's: do not close it, read from it or register it.
///
/// Returns the fd; -EINVAL for a NULL loop; -ENOENT for an unknown socket;
/// -EBADF for one closed already. Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_udp_fd(r#loop: *mut evl_loop, udp: u64) -> c_int {
    with_loop!(r#loop, |core| core.udp_fd(udp))
}

/// Writes to `*out` what the socket's queue holds: the datagrams' lengths,
/// each plus EVL_UDP_DATAGRAM_OVERHEAD (0: nothing waits).
///
/// Returns 0; -EINVAL for a NULL loop or `out`; -ENOENT for an unknown socket.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_udp_queued(r#loop: *mut evl_loop, udp: u64, out: *mut usize) -> c_int {
    with_loop_into!(r#loop, out, |core| { core.udp_queued(udp) })
}

/// The send queue's bound, as a stream's watermarks: once it holds more
/// than `high` (see evl_udp_queued), sends are refused with -ENOBUFS and
/// receiving pauses (an echo then stops taking what it cannot answer), until
/// it is down to `low`; EVL_STREAM_DRAINED says when it emptied. Defaults:
/// 1 MiB and 256 KiB. `high` 0: no bound and no pause (the queue may then
/// grow without limit).
///
/// Returns 0; -EINVAL for a NULL loop or `low` > `high` (with `high` not 0);
/// -ENOENT for an unknown socket. Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_udp_set_watermarks(
    r#loop: *mut evl_loop,
    udp: u64,
    high: usize,
    low: usize,
) -> c_int {
    with_loop!(r#loop, |core| core
        .udp_set_watermarks(udp, high, low)
        .map(|()| 0))
}

/// The longest datagram received whole, 1 to 65536 (the default, room for
/// any UDP datagram). A longer one is received truncated to `size` bytes,
/// with EVL_UDP_TRUNCATED. A smaller size fits more datagrams in the
/// loop's receive buffer at once (64 of 64 KiB; with evl_stream_poll, a
/// batch of events from many sockets shares it).
///
/// Returns 0; -EINVAL for a NULL loop or `size` out of range; -ENOENT for
/// an unknown socket. Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_udp_set_recv_size(
    r#loop: *mut evl_loop,
    udp: u64,
    size: usize,
) -> c_int {
    with_loop!(r#loop, |core| core
        .udp_set_receive_size(udp, size)
        .map(|()| 0))
}

/// Stops receiving until evl_udp_resume (datagrams wait in the kernel's
/// buffer, which drops what does not fit). From its return on no
/// EVL_STREAM_DATAGRAMS of the socket is delivered until then: batches
/// received already and not delivered yet (an evl_stream_poll whose array
/// was full leaves events for the next one) are held, and come first
/// after evl_udp_resume, as they came (dropped if the socket is closed
/// before).
///
/// Returns 0; -EINVAL for a NULL loop; -ENOENT for an unknown socket.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_udp_pause(r#loop: *mut evl_loop, udp: u64) -> c_int {
    with_loop!(r#loop, |core| core.udp_pause(udp).map(|()| 0))
}

/// Receives again after evl_udp_pause (unless the queue is still over its
/// high watermark). What the pause held is delivered first.
///
/// Returns 0; -EINVAL for a NULL loop; -ENOENT for an unknown socket.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_udp_resume(r#loop: *mut evl_loop, udp: u64) -> c_int {
    with_loop!(r#loop, |core| core.udp_resume(udp).map(|()| 0))
}

/// Replaces the callback and userdata of a UDP socket (`cb` may be NULL for
/// a loop driven by evl_stream_poll; evl_run drops the events of a socket
/// without a callback). A closed socket's EVL_STREAM_CLOSED not delivered
/// yet goes to the new callback.
///
/// Returns 0; -EINVAL for a NULL loop; -ENOENT for an unknown socket.
/// Ownership: `userdata` is the caller's and only handed back.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_udp_set_callback(
    r#loop: *mut evl_loop,
    udp: u64,
    cb: evl_stream_cb,
    userdata: *mut c_void,
) -> c_int {
    with_loop!(r#loop, |core| core
        .udp_set_data(udp, Callback::stream(cb, userdata))
        .map(|()| 0))
}

/// Sets an option (EVL_UDP_OPT_*) to `value`, for the socket's family (on
/// a dual-stack socket, for its IPv4 traffic too).
///
/// Returns 0; -EINVAL for a NULL loop, an unknown option or a value out of
/// its range; -ENOENT for an unknown socket; -EBADF for one closed already.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_udp_set_option(
    r#loop: *mut evl_loop,
    udp: u64,
    option: u32,
    value: c_int,
) -> c_int {
    with_loop!(r#loop, |core| {
        let option = match option {
            EVL_UDP_OPT_BROADCAST => UdpOption::Broadcast,
            EVL_UDP_OPT_MULTICAST_LOOP => UdpOption::MulticastLoop,
            EVL_UDP_OPT_MULTICAST_TTL => UdpOption::MulticastTtl,
            EVL_UDP_OPT_TTL => UdpOption::Ttl,
            _ => return Err(libc::EINVAL),
        };
        core.udp_set_option(udp, option, value).map(|()| 0)
    })
}

/// `interface` (NULL: "") as an interface.
///
/// # Safety
/// `interface` is NULL or NUL-terminated.
unsafe fn interface(interface: *const c_char) -> Result<Interface, Errno> {
    if interface.is_null() {
        return Ok(Interface::Any);
    }
    // SAFETY: non-null and NUL-terminated (the header's contract).
    Interface::parse(unsafe { CStr::from_ptr(interface) })
}

/// The interface multicast datagrams leave by: NULL or "" (the routing
/// table's choice), an interface name ("eth0", "lo"), an index ("2"), or
/// for IPv4 the interface's address ("192.0.2.1").
///
/// Returns 0; -EINVAL for a NULL loop (or an IPv4 address for an IPv6-only
/// socket); -ENODEV for an unknown interface; -ENOENT for an unknown
/// socket; -EBADF for one closed already. Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_udp_set_multicast_interface(
    r#loop: *mut evl_loop,
    udp: u64,
    iface: *const c_char,
) -> c_int {
    with_loop!(r#loop, |core| {
        // SAFETY: `iface` is NULL or NUL-terminated (the header's contract).
        let iface = unsafe { interface(iface) }?;
        core.udp_set_multicast_interface(udp, iface).map(|()| 0)
    })
}

/// Joins (`join` 1) or leaves (0) the multicast group `group` (a numeric
/// IPv4 or IPv6 address) on `iface` (as for evl_udp_set_multicast_interface;
/// an IPv6 group takes a name or an index).
///
/// Returns 0; -EINVAL for a NULL loop or group, or a group that is not
/// multicast; -EADDRNOTAVAIL for a group that does not resolve, or leaving
/// a group not joined; -ENODEV for an unknown interface; -EADDRINUSE for a
/// group joined already; -ENOENT for an unknown socket; -EBADF for one
/// closed already. Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_udp_membership(
    r#loop: *mut evl_loop,
    udp: u64,
    group: *const c_char,
    iface: *const c_char,
    join: c_int,
) -> c_int {
    with_loop!(r#loop, |core| {
        if group.is_null() || !(0..=1).contains(&join) {
            return Err(libc::EINVAL);
        }
        // SAFETY: NUL-terminated (the header's contract).
        let group = unsafe { socket_addr(group, 0) }?;
        // SAFETY: `iface` is NULL or NUL-terminated (the header's contract).
        let iface = unsafe { interface(iface) }?;
        core.udp_membership(udp, &group, iface, join == 1)
            .map(|()| 0)
    })
}

/// Where the bytes and the source addresses of every received datagram lie
/// (what `data` and `addr` of an evl_udp_datagram point into): `*data_len`
/// bytes from `*data`, and `*addrs_len` bytes of addresses from `*addrs`.
/// Both stay at these addresses until the loop is freed, so a caller that
/// pays for each call into the library (Python through ctypes) can map them
/// once and slice each datagram's bytes and address at `data - *data` and
/// `addr - *addrs`, with no call per datagram.
///
/// Returns 0; -EINVAL for a NULL pointer.
/// Ownership: the regions are the loop's; a datagram's bytes and address
/// may be read (never written) while its event is current (see
/// EVL_STREAM_DATAGRAMS). Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_udp_read_buffer(
    r#loop: *mut evl_loop,
    data: *mut *const u8,
    data_len: *mut usize,
    addrs: *mut *const u8,
    addrs_len: *mut usize,
) -> c_int {
    with_loop!(r#loop, |core| {
        if data.is_null() || data_len.is_null() || addrs.is_null() || addrs_len.is_null() {
            return Err(libc::EINVAL);
        }
        let ((bytes, bytes_len), (addr, addr_len)) = core.datagram_regions();
        // SAFETY: all four non-null; the caller gives writable places (header).
        unsafe {
            data.write(bytes);
            data_len.write(bytes_len);
            addrs.write(addr);
            addrs_len.write(addr_len);
        }
        Ok(0)
    })
}

/// Test-only (tests/model_udp.rs), not part of the C header: while `hold`,
/// the UDP socket's sends are queued as if its send buffer were full, and
/// the queue waits; afterwards it is sent. Loopback never fills a UDP
/// socket's send buffer, so the queue could not be tested without this.
///
/// # Safety
/// `lp` is NULL or a live loop, used on its thread.
#[doc(hidden)]
pub unsafe fn test_hold_udp_sends(lp: *mut evl_loop, udp: u64, hold: bool) -> c_int {
    with_loop!(lp, |core| core.udp_hold_sends(udp, hold).map(|()| 0))
}
