//! UDP sockets: making one, batches of datagrams in and out (recvmmsg,
//! sendmmsg), and the options a datagram socket has (broadcast, multicast
//! membership, hop limits).

use std::ffi::CStr;
use std::os::fd::RawFd;

use super::raw::syscall;
use super::socket::{set_int_option, socket_family};
use super::{check, Fd, SockAddr, SysResult};

/// What a datagram socket is made with.
#[derive(Clone, Copy, Default)]
pub struct UdpOptions {
    pub reuse_port: bool,
    pub broadcast: bool,
    /// An IPv6 socket takes IPv6 only (else it is dual-stack, IPv4 peers
    /// appearing as IPv4-mapped addresses).
    pub v6_only: bool,
}

/// A non-blocking UDP socket bound to `addr` (port 0: any free port).
pub fn udp_bind(addr: &SockAddr, options: UdpOptions) -> SysResult<Fd> {
    // SAFETY: plain syscall returning a new fd we own.
    let fd = Fd(check(unsafe {
        libc::socket(
            addr.family(),
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?);
    if options.reuse_port {
        set_int_option(fd.raw(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        set_int_option(fd.raw(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    if options.broadcast {
        set_int_option(fd.raw(), libc::SOL_SOCKET, libc::SO_BROADCAST, 1)?;
    }
    if addr.family() == libc::AF_INET6 {
        let v6_only = i32::from(options.v6_only);
        set_int_option(fd.raw(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, v6_only)?;
    }
    // SAFETY: the address is valid for its length.
    check(unsafe { libc::bind(fd.raw(), addr.as_ptr(), addr.len()) })?;
    Ok(fd)
}

/// Sends and receives with `addr` only (None: with anyone again).
pub fn udp_connect(fd: RawFd, addr: Option<&SockAddr>) -> SysResult<()> {
    // SAFETY: sockaddr is plain data; AF_UNSPEC dissolves the association.
    let mut unspec: libc::sockaddr = unsafe { std::mem::zeroed() };
    unspec.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
    let (ptr, len) = match addr {
        Some(addr) => (addr.as_ptr(), addr.len()),
        None => (
            &unspec as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        ),
    };
    // SAFETY: the address is valid for its length.
    check(unsafe { libc::connect(fd, ptr, len) }).map(drop)
}

// recvmmsg, sendmmsg and sendto are the syscall instruction itself
// (`raw.rs`), as `io.rs` explains: glibc's wrappers are cancellation points,
// which costs in a process with threads, and a non-blocking socket never waits.

/// Receives up to `hdrs.len()` datagrams; returns how many. Each header's
/// `msg_len` is the length received, and its `msg_hdr.msg_flags` has
/// MSG_TRUNC when the datagram was longer than its buffer.
///
/// # Safety
/// Every header's name and iovec buffers are valid for writes of the
/// lengths they give.
#[inline]
pub unsafe fn recvmmsg(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> SysResult<usize> {
    // No flags, no timeout.
    let args = [fd as usize, hdrs.as_mut_ptr() as usize, hdrs.len(), 0, 0, 0];
    // SAFETY: the caller vouches for the buffers; the array has `len` headers.
    unsafe { syscall(libc::SYS_recvmmsg, args) }
}

/// Sends up to `hdrs.len()` datagrams; returns how many went (the first
/// one's error when none did).
///
/// # Safety
/// Every header's name and iovec buffers are valid for reads of the
/// lengths they give (or NULL, which the kernel refuses with EFAULT).
#[inline]
pub unsafe fn sendmmsg(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> SysResult<usize> {
    let args = [fd as usize, hdrs.as_mut_ptr() as usize, hdrs.len(), 0, 0, 0];
    // SAFETY: the caller vouches for the buffers; the array has `len` headers.
    unsafe { syscall(libc::SYS_sendmmsg, args) }
}

/// Sends one datagram, `len` bytes from `data`, to `addr` (NULL: the
/// connected peer).
///
/// # Safety
/// `data` is valid for reads of `len` bytes, and `addr` of `addr_len`
/// (either may be NULL: the kernel refuses NULL bytes with EFAULT).
#[inline]
pub unsafe fn sendto(
    fd: RawFd,
    data: *const u8,
    len: usize,
    addr: *const libc::sockaddr,
    addr_len: libc::socklen_t,
) -> SysResult<usize> {
    let (fd, data, addr, addr_len) = (fd as usize, data as usize, addr as usize, addr_len as usize);
    // SAFETY: the caller vouches for the buffers.
    unsafe { syscall(libc::SYS_sendto, [fd, data, len, 0, addr, addr_len]) }
}

/// A network interface for multicast, as a caller names it: "" (the
/// kernel's choice), a number (an interface index), an IPv4 address (the
/// interface that has it), or a name ("lo", "eth0").
#[derive(Clone, Copy)]
pub enum Interface {
    Any,
    Index(u32),
    Ipv4(libc::in_addr),
}

impl Interface {
    pub fn parse(name: &CStr) -> SysResult<Interface> {
        let text = name.to_bytes();
        if text.is_empty() {
            return Ok(Interface::Any);
        }
        if text.iter().all(u8::is_ascii_digit) {
            let index: u32 = std::str::from_utf8(text)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or(libc::ENODEV)?;
            let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
            // SAFETY: `name` has the IF_NAMESIZE bytes if_indextoname writes.
            if unsafe { libc::if_indextoname(index, name.as_mut_ptr()) }.is_null() {
                return Err(libc::ENODEV);
            }
            return Ok(Interface::Index(index));
        }
        let ipv4 = std::str::from_utf8(text).ok().and_then(|t| t.parse().ok());
        if let Some(ipv4) = ipv4 {
            let ipv4: std::net::Ipv4Addr = ipv4;
            return Ok(Interface::Ipv4(libc::in_addr {
                s_addr: u32::from_ne_bytes(ipv4.octets()),
            }));
        }
        // SAFETY: `name` is NUL-terminated.
        match unsafe { libc::if_nametoindex(name.as_ptr()) } {
            0 => Err(libc::ENODEV),
            index => Ok(Interface::Index(index)),
        }
    }

    fn ip_mreqn(self, group: libc::in_addr) -> libc::ip_mreqn {
        let (address, index) = match self {
            Interface::Any => (libc::in_addr { s_addr: 0 }, 0),
            Interface::Index(index) => (libc::in_addr { s_addr: 0 }, index as i32),
            Interface::Ipv4(address) => (address, 0),
        };
        libc::ip_mreqn {
            imr_multiaddr: group,
            imr_address: address,
            imr_ifindex: index,
        }
    }

    /// An IPv6 interface is an index: an IPv4 address names none.
    fn index(self) -> SysResult<u32> {
        match self {
            Interface::Any => Ok(0),
            Interface::Index(index) => Ok(index),
            Interface::Ipv4(_) => Err(libc::EINVAL),
        }
    }
}

fn set_option<T>(fd: RawFd, level: i32, name: i32, value: &T) -> SysResult<()> {
    // SAFETY: passes a valid value of the stated size.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Joins (or leaves) the multicast `group` on `interface`. An IPv4 group
/// on an IPv6 socket takes the IPv4 option (a dual-stack socket).
pub fn multicast_membership(
    fd: RawFd,
    group: &SockAddr,
    interface: Interface,
    join: bool,
) -> SysResult<()> {
    let storage = group.as_ptr();
    match group.family() {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let group = unsafe { (*(storage as *const libc::sockaddr_in)).sin_addr };
            let name = if join {
                libc::IP_ADD_MEMBERSHIP
            } else {
                libc::IP_DROP_MEMBERSHIP
            };
            set_option(fd, libc::IPPROTO_IP, name, &interface.ip_mreqn(group))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let group = unsafe { (*(storage as *const libc::sockaddr_in6)).sin6_addr };
            let request = libc::ipv6_mreq {
                ipv6mr_multiaddr: group,
                ipv6mr_interface: interface.index()?,
            };
            let name = if join {
                libc::IPV6_ADD_MEMBERSHIP
            } else {
                libc::IPV6_DROP_MEMBERSHIP
            };
            set_option(fd, libc::IPPROTO_IPV6, name, &request)
        }
        _ => Err(libc::EAFNOSUPPORT),
    }
}

/// The interface outgoing multicast datagrams leave by.
pub fn set_multicast_interface(fd: RawFd, interface: Interface) -> SysResult<()> {
    let group = libc::in_addr { s_addr: 0 };
    match (socket_family(fd)?, interface) {
        (libc::AF_INET6, Interface::Ipv4(_)) | (libc::AF_INET, _) => set_option(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            &interface.ip_mreqn(group),
        ),
        _ => {
            let index = interface.index()? as i32;
            set_option(fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF, &index)
        }
    }
}

/// The IP-level options of a datagram socket, set for its family (and on
/// a dual-stack IPv6 socket for its IPv4 traffic too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpOption {
    Broadcast,
    MulticastLoop,
    MulticastTtl,
    Ttl,
}

pub fn set_udp_option(fd: RawFd, option: UdpOption, value: i32) -> SysResult<()> {
    let (v4, v6, range) = match option {
        UdpOption::Broadcast => {
            let on = match value {
                0 | 1 => value,
                _ => return Err(libc::EINVAL),
            };
            return set_int_option(fd, libc::SOL_SOCKET, libc::SO_BROADCAST, on);
        }
        UdpOption::MulticastLoop => (libc::IP_MULTICAST_LOOP, libc::IPV6_MULTICAST_LOOP, 0..=1),
        UdpOption::MulticastTtl => (libc::IP_MULTICAST_TTL, libc::IPV6_MULTICAST_HOPS, 0..=255),
        UdpOption::Ttl => (libc::IP_TTL, libc::IPV6_UNICAST_HOPS, 1..=255),
    };
    if !range.contains(&value) {
        return Err(libc::EINVAL);
    }
    if socket_family(fd)? == libc::AF_INET {
        return set_int_option(fd, libc::IPPROTO_IP, v4, value);
    }
    set_int_option(fd, libc::IPPROTO_IPV6, v6, value)?;
    // The IPv4 side of a dual-stack socket; an IPv6-only one refuses it.
    let _ = set_int_option(fd, libc::IPPROTO_IP, v4, value);
    Ok(())
}
