//! Name resolution: `getaddrinfo`, its list copied into owned values (and
//! freed at once), and socket addresses as the standard library's.

use std::ffi::{CStr, CString};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::socket::SockAddr;
use super::{errno, Errno};

/// What `getaddrinfo` is asked besides the names: its hints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hints {
    /// AI_* flags.
    pub flags: i32,
    /// AF_UNSPEC, AF_INET or AF_INET6.
    pub family: i32,
    /// 0, SOCK_STREAM, SOCK_DGRAM, SOCK_RAW.
    pub socktype: i32,
    pub protocol: i32,
}

/// Every AI_* flag glibc's getaddrinfo knows.
pub(crate) const AI_FLAGS: i32 = libc::AI_PASSIVE
    | libc::AI_CANONNAME
    | libc::AI_NUMERICHOST
    | libc::AI_V4MAPPED
    | libc::AI_ALL
    | libc::AI_ADDRCONFIG
    | libc::AI_NUMERICSERV
    | 0x0040 // AI_IDN
    | 0x0080; // AI_CANONIDN

/// One entry of a result.
#[derive(Clone, Copy)]
pub struct AddrInfo {
    pub family: i32,
    pub socktype: i32,
    pub protocol: i32,
    pub addr: SockAddr,
}

/// A resolved name: its addresses in getaddrinfo's order (RFC 6724's
/// preference), and the canonical name if AI_CANONNAME asked for it.
#[derive(Clone, Default)]
pub struct AddrList {
    pub entries: Vec<AddrInfo>,
    pub canonname: Option<CString>,
}

/// What getaddrinfo returned instead of a list: an EAI_* code, and with
/// EAI_SYSTEM the errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GaiError {
    pub code: i32,
    pub errno: Errno,
}

/// glibc's EAI_CANCELED (a GNU extension the libc crate does not name).
pub(crate) const EAI_CANCELED: i32 = -101;

/// `getaddrinfo(node, service, hints)`. Blocks for as long as the lookup
/// takes (a DNS query may take seconds): call it on the pool.
pub fn getaddrinfo(
    node: Option<&CStr>,
    service: Option<&CStr>,
    hints: &Hints,
) -> Result<AddrList, GaiError> {
    // SAFETY: addrinfo is plain data; zeroed is an empty hint.
    let mut c_hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    c_hints.ai_flags = hints.flags;
    c_hints.ai_family = hints.family;
    c_hints.ai_socktype = hints.socktype;
    c_hints.ai_protocol = hints.protocol;
    let mut list: *mut libc::addrinfo = std::ptr::null_mut();
    let as_ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: the names are NULL or NUL-terminated; `list` is freed below.
    let code = unsafe { libc::getaddrinfo(as_ptr(node), as_ptr(service), &c_hints, &mut list) };
    if code != 0 {
        let errno = if code == libc::EAI_SYSTEM { errno() } else { 0 };
        return Err(GaiError { code, errno });
    }
    let mut out = AddrList::default();
    let mut at = list;
    while !at.is_null() {
        // SAFETY: a node of the list getaddrinfo returned, not yet freed.
        let ai = unsafe { &*at };
        if out.canonname.is_none() && !ai.ai_canonname.is_null() {
            // SAFETY: getaddrinfo's NUL-terminated canonical name.
            out.canonname = Some(unsafe { CStr::from_ptr(ai.ai_canonname) }.to_owned());
        }
        // SAFETY: ai_addr holds ai_addrlen bytes of address.
        if let Some(addr) = unsafe { SockAddr::from_raw(ai.ai_addr, ai.ai_addrlen) } {
            out.entries.push(AddrInfo {
                family: ai.ai_family,
                socktype: ai.ai_socktype,
                protocol: ai.ai_protocol,
                addr,
            });
        }
        at = ai.ai_next;
    }
    // SAFETY: the list getaddrinfo returned, freed once.
    unsafe { libc::freeaddrinfo(list) };
    Ok(out)
}

/// getaddrinfo's description of an EAI_* code (static, never NULL).
pub fn gai_strerror(code: i32) -> &'static CStr {
    // SAFETY: glibc returns a static NUL-terminated string for any code.
    unsafe { CStr::from_ptr(libc::gai_strerror(code)) }
}

/// `host` and `port` as an address, if `host` is a numeric IPv4 or IPv6
/// address (with a scope for a link-local one): never asks a resolver.
pub fn numeric_addr(host: &CStr, port: u16) -> Option<SockAddr> {
    let hints = Hints {
        flags: libc::AI_NUMERICHOST | libc::AI_NUMERICSERV,
        socktype: libc::SOCK_STREAM,
        ..Hints::default()
    };
    let port = CString::new(port.to_string()).ok()?;
    let list = getaddrinfo(Some(host), Some(&port), &hints).ok()?;
    list.entries.first().map(|e| e.addr)
}

impl SockAddr {
    /// A copy of the `len` bytes at `addr`, if they hold an IPv4 or IPv6
    /// address.
    ///
    /// # Safety
    /// `addr` is NULL or valid for reads of `len` bytes.
    pub(super) unsafe fn from_raw(
        addr: *const libc::sockaddr,
        len: libc::socklen_t,
    ) -> Option<Self> {
        let size = match i32::from(if addr.is_null() {
            0
        } else {
            // SAFETY: non-null and readable, as the caller promised.
            unsafe { (*addr).sa_family }
        }) {
            libc::AF_INET => std::mem::size_of::<libc::sockaddr_in>(),
            libc::AF_INET6 => std::mem::size_of::<libc::sockaddr_in6>(),
            _ => return None,
        };
        if (len as usize) < size {
            return None;
        }
        let mut out = SockAddr {
            // SAFETY: sockaddr_storage is plain data, with room for `size`.
            storage: unsafe { std::mem::zeroed() },
            len: size as libc::socklen_t,
        };
        // SAFETY: `size` bytes are readable at `addr` (len >= size) and fit
        // in the storage.
        unsafe {
            std::ptr::copy_nonoverlapping(
                addr as *const u8,
                &mut out.storage as *mut _ as *mut u8,
                size,
            )
        };
        Some(out)
    }

    /// The address as the kernel takes it: `sockaddr_in` or `sockaddr_in6`.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: the storage is plain data, `len` of it in use.
        unsafe {
            std::slice::from_raw_parts(&self.storage as *const _ as *const u8, self.len as usize)
        }
    }

    /// The same address as the standard library's type.
    pub fn to_std(&self) -> Option<SocketAddr> {
        let storage = &self.storage as *const libc::sockaddr_storage;
        match self.family() {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let a = unsafe { &*(storage as *const libc::sockaddr_in) };
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let a = unsafe { &*(storage as *const libc::sockaddr_in6) };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    u32::from_be(a.sin6_flowinfo),
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    /// The standard library's address as one the kernel takes.
    pub fn from_std(addr: SocketAddr) -> SockAddr {
        let mut out = SockAddr {
            // SAFETY: sockaddr_storage is plain data; zeroed is valid.
            storage: unsafe { std::mem::zeroed() },
            len: 0,
        };
        let storage = &mut out.storage as *mut libc::sockaddr_storage;
        match addr {
            SocketAddr::V4(a) => {
                // SAFETY: the storage has room for a sockaddr_in (zeroed: valid).
                let sin = unsafe { &mut *(storage as *mut libc::sockaddr_in) };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
                out.len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            }
            SocketAddr::V6(a) => {
                // SAFETY: as above, for a sockaddr_in6.
                let sin6 = unsafe { &mut *(storage as *mut libc::sockaddr_in6) };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_flowinfo = a.flowinfo().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_scope_id = a.scope_id();
                out.len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            }
        }
        out
    }
}

impl std::fmt::Debug for SockAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.to_std() {
            Some(addr) => write!(f, "{addr}"),
            None => write!(f, "(family {})", self.family()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_hosts_resolve_without_a_resolver_and_names_do_not() {
        let v4 = numeric_addr(c"127.0.0.1", 80).unwrap();
        assert_eq!(v4.to_std(), Some("127.0.0.1:80".parse().unwrap()));
        let v6 = numeric_addr(c"::1", 443).unwrap();
        assert_eq!(v6.to_std(), Some("[::1]:443".parse().unwrap()));
        assert!(numeric_addr(c"localhost", 80).is_none());
        assert!(numeric_addr(c"", 80).is_none());
    }

    #[test]
    fn std_addresses_go_both_ways() {
        for text in ["127.0.0.1:9", "[::1]:65535", "[fe80::1%2]:7"] {
            let addr: SocketAddr = text.parse().unwrap();
            let ours = SockAddr::from_std(addr);
            assert_eq!(ours.to_std(), Some(addr), "{text}");
            // SAFETY: the bytes of a valid address, their length with them.
            let copy =
                unsafe { SockAddr::from_raw(ours.as_bytes().as_ptr().cast(), ours.len) }.unwrap();
            assert_eq!(copy.to_std(), Some(addr));
        }
        // SAFETY: NULL is allowed.
        assert!(unsafe { SockAddr::from_raw(std::ptr::null(), 16) }.is_none());
    }

    #[test]
    fn a_failure_keeps_its_code_and_text() {
        let hints = Hints {
            flags: libc::AI_NUMERICHOST,
            ..Hints::default()
        };
        let err = getaddrinfo(Some(c"not a number"), None, &hints)
            .err()
            .unwrap();
        assert_eq!(err.code, libc::EAI_NONAME);
        assert!(!gai_strerror(err.code).to_bytes().is_empty());
        assert_eq!(
            gai_strerror(EAI_CANCELED).to_str().unwrap(),
            "Request canceled"
        );
    }
}
