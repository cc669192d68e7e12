//! Unix-domain sockets: listeners on a filesystem path or a Linux abstract
//! name, connects to them, and the peer's credentials. What they make are
//! ordinary streams; passing fds over them is `fd_passing.rs`.

use super::connection::{CONNECTING, SOCKET};
use super::settings::DEFAULT_SETTINGS;
use super::{ListenerId, StreamEventKind, StreamId, StreamLoop};
use crate::sys::{self, Errno, UnixAddr, EDGE, READ};

/// The credentials of the process at the other end of a Unix-domain
/// stream, as they were when it connected (or made the socket pair).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCredentials {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

impl<D: Copy + Default> StreamLoop<D> {
    /// Listens on the Unix-domain address `addr`. With `remove_stale`, a
    /// socket file left at the path by a listener that has gone (a connect
    /// to it is refused) is removed first; a live socket, or a file that is
    /// no socket, is never removed (EADDRINUSE). The socket file is removed
    /// when the listener closes, if it is still the one it bound and this
    /// is the process that bound it. Accepted streams are announced as for
    /// [`listen`](Self::listen).
    pub fn listen_unix(
        &mut self,
        addr: &UnixAddr,
        backlog: i32,
        remove_stale: bool,
        data: D,
    ) -> Result<ListenerId, Errno> {
        let (fd, bound) = sys::unix_listen(addr, backlog, remove_stale)?;
        self.add_listener(fd, data, Some(bound))
    }

    /// Connects to the Unix-domain address `addr`. Such a connect ends at
    /// once: `Connected` comes with the next events, with 0 (the stream is
    /// open: writes go out at once) or with why it failed (ECONNREFUSED:
    /// nobody listens; ENOENT: no such socket; EAGAIN: the listener's
    /// backlog is full...), then `Closed`.
    pub fn connect_unix(&mut self, addr: &UnixAddr, data: D) -> Result<StreamId, Errno> {
        let (fd, result) = sys::unix_connect(addr)?;
        let (flags, interest) = match result {
            Ok(()) => (SOCKET, READ),
            Err(_) => (SOCKET | CONNECTING, EDGE),
        };
        let id = self.add_stream(fd.raw(), flags, interest, data, DEFAULT_SETTINGS, 0)?;
        fd.into_raw(); // now the stream's
        let error = result.err().unwrap_or(0);
        if let Some(s) = self.streams.get(id) {
            self.pending
                .push_back(s.event(StreamEventKind::Connected, id, error));
        }
        if error != 0 {
            self.close_now(id, error, false);
        }
        Ok(id)
    }

    /// The credentials of the peer of a Unix-domain stream (SO_PEERCRED).
    /// EOPNOTSUPP for a socket of another family, ENOTSOCK for a pipe;
    /// EBADF once the stream is closed.
    pub fn peer_credentials(&self, id: StreamId) -> Result<PeerCredentials, Errno> {
        let (pid, uid, gid) = sys::peer_credentials(self.stream_fd(id)?)?;
        Ok(PeerCredentials { pid, uid, gid })
    }
}
