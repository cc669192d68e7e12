//! Connecting by name: a stream whose id exists at once, while its name is
//! resolved on the pool and its addresses are tried with Happy Eyeballs
//! (`happy_eyeballs.rs` says which and when; this file opens, watches and
//! closes the sockets). The first attempt to connect becomes the stream's
//! fd and the stream goes on as one made by `connect`: one `Connected`
//! (0, or the last error, followed by `Closed`).
//!
//! Until then the stream has no fd (-1) and is `CONNECTING`: writes queue,
//! the other calls answer as for a connecting stream, and closing it (or
//! its idle timeout) ends the attempts, the stagger timer and the lookup
//! (`end_host_connect`, which `close_now` calls for a stream without fd).

use std::ffi::{CStr, CString};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::Duration;

use super::happy_eyeballs::{interleave, Stagger, Step};
use super::resolve::{Lookup, Outcome};
use super::work::WorkKind;
use super::{JobOwner, WorkId};
use crate::event_loop::TimerId;
use crate::stream::connection::{Stream, CONNECTING, SOCKET};
use crate::stream::{Owner, StreamEventKind, StreamId, StreamLoop};
use crate::sys::{self, AddrInfo, AddrList, Errno, GaiError, Hints, SockAddr, WRITE};

/// A stand-in for getaddrinfo in connect_host's lookups (tests): the
/// addresses of `host` (any port: `port` is set on them), or an EAI_* code.
pub type HostResolver = fn(host: &CStr, port: u16) -> Result<Vec<SocketAddr>, i32>;

/// A stream connecting by name.
pub(super) struct HostConnect {
    /// The lookup while it runs (0 once it is over).
    lookup: WorkId,
    /// In the order they are tried.
    addrs: Vec<SockAddr>,
    stagger: Stagger,
    /// The sockets of the attempts under way.
    attempts: Vec<RawFd>,
    /// The stagger timer (0: none).
    timer: TimerId,
}

impl<D: Copy + Default> StreamLoop<D> {
    /// Connects to `host` (a name, or a numeric IPv4 or IPv6 address) and
    /// `port`: resolves the name on the pool, then tries its addresses with
    /// Happy Eyeballs (RFC 8305: families interleaved, a new attempt every
    /// 250 ms or as soon as one fails, the first to connect wins). The
    /// stream's id is valid at once; `Connected` tells how it ended (then
    /// `Closed` if it failed: the last attempt's error, ECANCELED, or
    /// EADDRNOTAVAIL... for a name that does not resolve, see
    /// [`gai_errno`]). Writes made before then are queued.
    pub fn connect_host(&mut self, host: &CStr, port: u16, data: D) -> Result<StreamId, Errno>
    where
        D: Send + 'static,
    {
        if host.is_empty() {
            return Err(libc::EINVAL);
        }
        self.reads.ensure();
        let id = self
            .streams
            .insert(Stream::new(-1, SOCKET | CONNECTING, 0, 0, data));
        self.jobs().host_connects.insert(
            id,
            HostConnect {
                lookup: 0,
                addrs: Vec::new(),
                stagger: Stagger::new(0),
                attempts: Vec::new(),
                timer: 0,
            },
        );
        if let Some(addr) = sys::numeric_addr(host, port) {
            self.start_attempts(id, vec![addr]);
            return Ok(id);
        }
        let lookup = host_lookup(host.to_owned(), port, self.jobs().host_resolver);
        match self.submit_lookup(|l| WorkKind::HostLookup(id, l), lookup, D::default()) {
            Ok(work) => {
                if let Some(hc) = self.host_connect(id) {
                    hc.lookup = work;
                }
                Ok(id)
            }
            Err(e) => {
                self.jobs().host_connects.remove(&id);
                self.streams.remove(id);
                Err(e)
            }
        }
    }

    /// Makes connect_host's lookups use `resolver` instead of getaddrinfo
    /// (None: getaddrinfo again). For tests, where names resolving to a mix
    /// of families and ports are wanted without touching /etc/hosts.
    #[doc(hidden)]
    pub fn set_host_resolver(&mut self, resolver: Option<HostResolver>) {
        self.jobs().host_resolver = resolver;
    }

    /// The lookup of a stream connecting by name is over (`None`:
    /// cancelled, as after a failed resubmission in a child after fork).
    pub(super) fn on_host_resolved(
        &mut self,
        id: StreamId,
        work: WorkId,
        outcome: Option<Outcome>,
    ) {
        let Some(hc) = self.host_connect(id) else {
            return;
        };
        if hc.lookup != work {
            return;
        }
        hc.lookup = 0;
        match outcome {
            Some(Ok(list)) => {
                let addrs = list.entries.iter().map(|e| e.addr).collect();
                self.start_attempts(id, addrs);
            }
            Some(Err(e)) => self.fail_host_connect(id, gai_errno(e)),
            None => self.fail_host_connect(id, libc::ECANCELED),
        }
    }

    fn start_attempts(&mut self, id: StreamId, addrs: Vec<SockAddr>) {
        if let Some(hc) = self.host_connect(id) {
            hc.addrs = interleave(addrs);
            hc.stagger = Stagger::new(hc.addrs.len());
        }
        self.advance(id);
    }

    /// Does what the schedule says now: starts attempts, arms the stagger
    /// timer, or gives up.
    fn advance(&mut self, id: StreamId) {
        loop {
            let Some(jobs) = self.jobs.as_mut() else {
                return;
            };
            let Some(hc) = jobs.host_connects.get_mut(&id) else {
                return;
            };
            let now = sys::now_ns();
            match hc.stagger.step(now) {
                Step::Start(index) => {
                    let attempt = sys::tcp_connect(&hc.addrs[index]).and_then(|fd| {
                        let owner = Owner::Job(JobOwner::Attempt(id));
                        self.core.register(fd.raw(), WRITE, owner)?;
                        Ok(fd.into_raw())
                    });
                    match attempt {
                        Ok(fd) => hc.attempts.push(fd),
                        Err(e) => hc.stagger.failed(e),
                    }
                }
                Step::WaitUntil(due) => {
                    if hc.timer != 0 {
                        let _ = self.core.stop_timer(hc.timer);
                    }
                    let delay = Duration::from_nanos(due.saturating_sub(now));
                    let owner = Owner::Job(JobOwner::Stagger(id));
                    hc.timer = self.core.start_timer(delay, Duration::ZERO, owner);
                    return;
                }
                Step::Wait => {
                    if hc.timer != 0 {
                        let _ = self.core.stop_timer(std::mem::take(&mut hc.timer));
                    }
                    return;
                }
                Step::Fail(error) => {
                    self.fail_host_connect(id, error);
                    return;
                }
            }
        }
    }

    pub(super) fn on_stagger_timer(&mut self, id: StreamId, timer: TimerId) {
        match self.host_connect(id) {
            Some(hc) if hc.timer == timer => hc.timer = 0,
            _ => return,
        }
        self.advance(id);
    }

    /// An attempt's socket is ready: connected (the stream takes it, the
    /// other attempts close) or failed (the next one may start).
    pub(super) fn on_attempt_ready(&mut self, id: StreamId, fd: RawFd, _revents: u32) {
        let Some(hc) = self.host_connect(id) else {
            return;
        };
        let Some(at) = hc.attempts.iter().position(|&a| a == fd) else {
            return;
        };
        hc.attempts.swap_remove(at);
        let error = match sys::take_socket_error(fd) {
            Ok(error) | Err(error) => error,
        };
        if error != 0 {
            let _ = self.core.unregister(fd);
            sys::close(fd);
            if let Some(hc) = self.host_connect(id) {
                hc.stagger.failed(error);
            }
            self.advance(id);
            return;
        }
        // The winner: the others end, and the stream takes this socket with
        // the registration it has (asking for WRITE, as a connecting one).
        self.end_host_connect(id);
        let Some(s) = self.streams.get_mut(id) else {
            let _ = self.core.unregister(fd);
            sys::close(fd);
            return;
        };
        s.fd = fd;
        s.interest = WRITE;
        if let Err(e) = self.core.set_data(fd, Owner::Stream(id)) {
            self.fail_host_connect(id, e);
            return;
        }
        sys::set_nodelay(fd);
        if let Some(event) = self.finish_connect(id) {
            self.pending.push_back(event);
        }
    }

    fn host_connect(&mut self, id: StreamId) -> Option<&mut HostConnect> {
        self.jobs.as_mut()?.host_connects.get_mut(&id)
    }

    /// Gives up: `Connected` with `error`, then `Closed`.
    fn fail_host_connect(&mut self, id: StreamId, error: Errno) {
        self.end_host_connect(id);
        if let Some(s) = self.streams.get(id) {
            let event = s.event(StreamEventKind::Connected, id, error);
            self.pending.push_back(event);
            self.close_now(id, error, false);
        }
    }

    /// Ends what connecting by name has under way for stream `id`: the
    /// attempts' sockets, the stagger timer, the lookup (its record goes, so
    /// its result is dropped when it comes). For `close_now` too.
    pub(in crate::stream) fn end_host_connect(&mut self, id: StreamId) {
        let Some(jobs) = self.jobs.as_mut() else {
            return;
        };
        let Some(hc) = jobs.host_connects.remove(&id) else {
            return;
        };
        for fd in hc.attempts {
            let _ = self.core.unregister(fd);
            sys::close(fd);
        }
        if hc.timer != 0 {
            let _ = self.core.stop_timer(hc.timer);
        }
        if hc.lookup != 0 {
            if let Some(pool) = &mut jobs.pool {
                pool.cancel(hc.lookup);
            }
            jobs.work.remove(hc.lookup);
        }
    }
}

impl<D> super::Jobs<D> {
    /// Closes every attempt's socket (the loop is being freed).
    pub(super) fn close_attempts(&mut self) {
        for (_, hc) in self.host_connects.drain() {
            hc.attempts.into_iter().for_each(sys::close);
        }
    }
}

/// The errno a failed lookup ends a connection with: EADDRNOTAVAIL for a
/// name that does not resolve (as evl_connect), EAGAIN for a temporary
/// failure, ENOMEM, or the errno of EAI_SYSTEM.
pub fn gai_errno(e: GaiError) -> Errno {
    match e.code {
        libc::EAI_SYSTEM if e.errno != 0 => e.errno,
        libc::EAI_AGAIN => libc::EAGAIN,
        libc::EAI_MEMORY => libc::ENOMEM,
        _ => libc::EADDRNOTAVAIL,
    }
}

/// The lookup of `host`'s TCP addresses, with `port` set on them.
fn host_lookup(host: CString, port: u16, resolver: Option<HostResolver>) -> Lookup {
    let service = CString::new(port.to_string()).unwrap_or_default();
    Lookup::new(move || match resolver {
        Some(resolve) => match resolve(&host, port) {
            Ok(addrs) => Ok(AddrList {
                entries: addrs
                    .into_iter()
                    .map(|mut a| {
                        a.set_port(port);
                        let addr = SockAddr::from_std(a);
                        AddrInfo {
                            family: addr.family(),
                            socktype: libc::SOCK_STREAM,
                            protocol: libc::IPPROTO_TCP,
                            addr,
                        }
                    })
                    .collect(),
                canonname: None,
            }),
            Err(code) => Err(GaiError { code, errno: 0 }),
        },
        None => {
            let hints = Hints {
                flags: libc::AI_NUMERICSERV,
                socktype: libc::SOCK_STREAM,
                ..Hints::default()
            };
            sys::getaddrinfo(Some(&host), Some(&service), &hints)
        }
    })
}
