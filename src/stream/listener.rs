//! Listeners: TCP (and Unix-domain, see `unix.rs`) sockets that accept
//! streams, with a connection limit and a pause when the process runs out
//! of fds.

use std::os::fd::RawFd;
use std::time::Duration;

use super::connection::SOCKET;
use super::settings::{Settings, DEFAULT_SETTINGS};
use super::{ListenerId, Owner, StreamEvent, StreamEventKind, StreamLoop};
use crate::event_loop::TimerId;
use crate::sys::{self, BoundPath, Errno, Fd, SockAddr, READ};

/// How long accepting pauses after running out of fds (EMFILE, ENFILE).
pub(super) const ACCEPT_RETRY: Duration = Duration::from_millis(100);

pub(super) struct Listener<D> {
    pub(super) fd: RawFd,
    pub(super) data: D,
    /// 0: no limit.
    pub(super) max_conns: usize,
    pub(super) live: usize,
    /// Out of fds: accepting waits for the retry timer.
    pub(super) paused: bool,
    /// Whether epoll reports connections now.
    pub(super) accepting: bool,
    pub(super) retry_timer: TimerId,
    pub(super) settings: Settings,
    /// A Unix-domain listener (no TCP_NODELAY for what it accepts), and
    /// its socket file, which dropping the listener removes.
    pub(super) unix: bool,
    pub(super) _socket_file: Option<Box<BoundPath>>,
    /// The TLS configuration its streams start with (stream/tls.rs).
    pub(super) tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

impl<D: Copy + Default> StreamLoop<D> {
    /// Listens on `addr` (port 0: any free one). Accepted streams start with
    /// `data` and the listener's settings; `Accepted` announces each.
    pub fn listen(
        &mut self,
        addr: &SockAddr,
        backlog: i32,
        reuse_port: bool,
        data: D,
    ) -> Result<ListenerId, Errno> {
        let fd = sys::tcp_listen(addr, backlog, reuse_port)?;
        self.add_listener(fd, data, None)
    }

    /// A listener over the listening socket `fd`: `unix` is None for TCP,
    /// or a Unix-domain listener's socket file (None inside: an abstract name).
    pub(super) fn add_listener(
        &mut self,
        fd: Fd,
        data: D,
        unix: Option<Option<BoundPath>>,
    ) -> Result<ListenerId, Errno> {
        let id = self.listeners.insert(Listener {
            fd: fd.raw(),
            data,
            max_conns: 0,
            live: 0,
            paused: false,
            accepting: true,
            retry_timer: 0,
            settings: DEFAULT_SETTINGS,
            unix: unix.is_some(),
            _socket_file: unix.flatten().map(Box::new),
            tls: None,
        });
        if let Err(e) = self.core.register(fd.raw(), READ, Owner::Listener(id)) {
            self.listeners.remove(id);
            return Err(e);
        }
        std::mem::forget(fd); // now the listener's
        Ok(id)
    }

    pub(super) fn listener(&self, id: ListenerId) -> Result<&Listener<D>, Errno> {
        self.listeners.get(id).ok_or(libc::ENOENT)
    }

    pub fn listener_port(&self, id: ListenerId) -> Result<u16, Errno> {
        sys::local_port(self.listener(id)?.fd)
    }

    /// At most `max` streams accepted by this listener at once (0: no limit);
    /// at the limit, connections wait in the backlog.
    pub fn set_max_conns(&mut self, id: ListenerId, max: usize) -> Result<(), Errno> {
        self.listeners.get_mut(id).ok_or(libc::ENOENT)?.max_conns = max;
        self.update_accepting(id);
        Ok(())
    }

    /// Closes a listener. The streams it accepted go on.
    pub fn close_listener(&mut self, id: ListenerId) -> Result<(), Errno> {
        let listener = self.listeners.remove(id).ok_or(libc::ENOENT)?;
        if listener.retry_timer != 0 {
            let _ = self.core.stop_timer(listener.retry_timer);
        }
        let _ = self.core.unregister(listener.fd);
        sys::close(listener.fd);
        Ok(())
    }

    /// Accepts until the backlog is empty, the limit is reached or fds run out.
    pub(super) fn on_listener_ready(&mut self, id: ListenerId) {
        loop {
            let Some(l) = self.listeners.get(id) else {
                return;
            };
            if l.paused || (l.max_conns != 0 && l.live >= l.max_conns) {
                break;
            }
            let (listener_fd, data, settings, unix) = (l.fd, l.data, l.settings, l.unix);
            let tls = l.tls.clone();
            match sys::accept(listener_fd) {
                Ok(fd) => {
                    if !unix {
                        sys::set_nodelay(fd);
                    }
                    match self.add_stream(fd, SOCKET, READ, data, settings, id) {
                        Ok(stream) => {
                            if let Some(l) = self.listeners.get_mut(id) {
                                l.live += 1;
                            }
                            if let Some(config) = tls {
                                // TLS hook: ACCEPTED once the handshake is done.
                                self.tls_accepted(stream, config);
                                continue;
                            }
                            self.pending.push_back(StreamEvent {
                                kind: StreamEventKind::Accepted,
                                stream,
                                fd,
                                error: 0,
                                offset: 0,
                                len: 0,
                                data,
                            });
                        }
                        Err(_) => sys::close(fd),
                    }
                }
                Err(libc::EAGAIN) => return,
                // Out of fds or memory: retrying now would spin. Connections
                // wait in the backlog while accepting pauses.
                Err(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                    if let Some(l) = self.listeners.get_mut(id) {
                        l.paused = true;
                        l.retry_timer = self.core.start_timer(
                            ACCEPT_RETRY,
                            Duration::ZERO,
                            Owner::AcceptRetry(id),
                        );
                    }
                    break;
                }
                // The connection went away before it was accepted, or a
                // firewall refused it: on to the next.
                Err(libc::ECONNABORTED | libc::EINTR | libc::EPERM | libc::EPROTO) => {}
                Err(_) => break,
            }
        }
        self.update_accepting(id);
    }

    pub(super) fn on_accept_retry(&mut self, id: ListenerId) {
        if let Some(l) = self.listeners.get_mut(id) {
            l.paused = false;
            l.retry_timer = 0;
        }
        self.update_accepting(id);
    }

    /// Asks epoll for the listener's connections only while it may accept.
    pub(super) fn update_accepting(&mut self, id: ListenerId) {
        if let Some(l) = self.listeners.get_mut(id) {
            let accepting = !l.paused && (l.max_conns == 0 || l.live < l.max_conns);
            if accepting != l.accepting
                && self
                    .core
                    .modify(l.fd, if accepting { READ } else { 0 })
                    .is_ok()
            {
                l.accepting = accepting;
            }
        }
    }
}
