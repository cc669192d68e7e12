//! TLS sessions on streams: a rustls connection between the application's
//! plaintext and the stream's fd, on the stream machinery as it is.
//!
//! A TLS stream is a stream with the TLS flag and a session. What the
//! application writes is encrypted at once and the records go where a plain
//! stream's bytes go: straight to the fd while nothing is queued, otherwise
//! into the write queue, which thus holds ciphertext only and is flushed,
//! counted against the watermarks and drained as any other. (rustls's own
//! output buffer is emptied after every step, so the two never both hold
//! bytes.) What the fd gives is read into a scratch buffer the loop's TLS
//! streams share (one syscall), fed to the session, and the plaintext lands
//! in the loop's read buffer where a plain stream's bytes would: DATA
//! events look the same. Handshake messages, alerts and tickets go out the
//! same way as the application's records.
//!
//! The events are a plain stream's: DATA with plaintext, EOF once the
//! peer's close_notify came (or its FIN without one, as Python's default
//! `suppress_ragged_eofs` takes it), CLOSED with one of the ETLS_ codes
//! when TLS failed. A stream the application knows (a TLS connect, or a
//! stream it started TLS on) gets CONNECTED when its handshake ends, with
//! the status; a listener's TLS streams are announced by ACCEPTED once
//! their handshake is done, and one that fails before ends unseen.
//!
//! Shutdown sends close_notify once the handshake is done and what was
//! written before it has gone into the queue, and shuts the fd's writing
//! side once the queue is drained; close sends close_notify first. During
//! the handshake the stream reads even when paused, throttled or closing:
//! it needs the peer's messages. Plaintext that comes then while the
//! application does not take any is held, in the session or as ciphertext
//! (`held`), until it does (flag TLS_HELD, and a zero-delay timer to come
//! back for it, since no readiness will).
//!
//! The hooks in the other files are marked "TLS hook".

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::sync::Arc;

use rustls::{ClientConnection, Connection, IoState, ServerConfig, ServerConnection};

use super::connection::{
    sync_interest, Stream, CLOSING, CONNECTING, NOT_READING, SHUTDOWN_WANTED, THROTTLED, TLS,
    TLS_HANDSHAKE, TLS_HELD, TLS_HIDDEN, WRITE_ONLY,
};
use super::read_buffer::MIN_READ;
use super::write_queue::WriteQueue;
use super::{ListenerId, Owner, StreamEvent, StreamEventKind, StreamId, StreamLoop};
use crate::event_loop::{EventLoop, TimerId};
use crate::sys::{self, Errno, ERROR, HUP, RDHUP, READ, WRITE};
use crate::tls::{classify, TlsRole, ETLS_CONFIG, ETLS_HANDSHAKE};

/// The most plaintext one step of a session can make: a whole record in
/// rustls's input buffer (its largest record on the wire).
const RECORD: usize = 16384 + 2048 + 5;

/// The most ciphertext one read takes.
const SCRATCH: usize = 64 << 10;

/// How many failure reasons a loop remembers (evl_tls_error_reason).
const REASONS: usize = 64;

/// What a loop's TLS streams share.
#[derive(Default)]
pub(super) struct TlsShared {
    /// Where ciphertext is read to, made with the first TLS stream.
    scratch: Vec<u8>,
    /// Why the last TLS streams that failed did, by stream id.
    reasons: VecDeque<(StreamId, String)>,
}

/// Who learns that the handshake ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Announce {
    /// A listener's stream: ACCEPTED, then the application knows it.
    Accepted,
    /// A stream the application knows already: CONNECTED with the status.
    Connected,
}

/// A stream's TLS state.
pub(super) struct TlsSession {
    conn: Connection,
    /// A client's: the name it asked for (rustls keeps no copy to show).
    server_name: Option<Box<str>>,
    announce: Announce,
    /// Plaintext written during the handshake (counted by `queued`).
    pub(super) early_plain: usize,
    /// The application's records went into the write queue since it was
    /// last drained: its DRAINED is news (handshake messages alone are not).
    app_queued: bool,
    /// Ciphertext read and not fed to the session yet (see TLS_HELD).
    held: Vec<u8>,
    /// The zero-delay timer that comes back for held input (0: none).
    held_timer: TimerId,
}

impl TlsSession {
    pub(super) fn take_app_queued(&mut self) -> bool {
        std::mem::take(&mut self.app_queued)
    }
}

/// What ended a read.
enum Failure {
    Tls(rustls::Error),
    Errno(Errno),
    /// The peer closed TCP during the handshake.
    ClosedInHandshake,
}

/// What becomes of plaintext the session decrypts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Into the read buffer, for a DATA event.
    Deliver,
    /// Left in the session: the application does not take any now.
    Hold,
    /// Dropped: the stream is closing.
    Discard,
}

/// The part of the loop's read buffer a read fills.
struct Plain<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Plain<'_> {
    fn room(&self) -> usize {
        self.buf.len() - self.len
    }
}

/// The fd as rustls writes to it.
struct FdWriter {
    fd: RawFd,
    socket: bool,
}

impl Write for FdWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sys::write(self.fd, buf, self.socket).map_err(io::Error::from_raw_os_error)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        sys::write_vectored(self.fd, bufs, self.socket).map_err(io::Error::from_raw_os_error)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The write queue as rustls writes to it.
struct QueueWriter<'a>(&'a mut WriteQueue);

impl Write for QueueWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn new_connection(role: TlsRole) -> Result<(Connection, Option<Box<str>>), Errno> {
    let made = match role {
        TlsRole::Server(config) => ServerConnection::new(config).map(|c| (c.into(), None)),
        TlsRole::Client(config, name) => {
            let shown = name.to_str().into_owned().into_boxed_str();
            ClientConnection::new(config, name).map(|c| (c.into(), Some(shown)))
        }
    };
    let (mut conn, name): (Connection, _) = made.map_err(|_| ETLS_CONFIG)?;
    // What the application writes during the handshake waits in the
    // session; queued() counts it.
    conn.set_buffer_limit(None);
    Ok((conn, name))
}

impl<D: Copy + Default> StreamLoop<D> {
    // ---- starting ---------------------------------------------------------

    /// Starts TLS on a stream (STARTTLS): from now on what it reads and
    /// writes goes through a session of `role`. What was written before is
    /// sent first, as it was. CONNECTED comes when the handshake ends.
    /// EALREADY for a TLS stream; EPIPE for one that is ending; EINVAL for a
    /// write-only one.
    pub fn tls_start(&mut self, id: StreamId, role: TlsRole) -> Result<(), Errno> {
        let Some(s) = self.streams.get(id) else {
            return self.not_live(id, Err(libc::EPIPE));
        };
        if s.flags & TLS != 0 {
            return Err(libc::EALREADY);
        }
        if s.flags & WRITE_ONLY != 0 {
            return Err(libc::EINVAL);
        }
        if s.flags & NOT_READING & !(CONNECTING | super::connection::PAUSED | THROTTLED) != 0
            || s.flags & super::connection::NO_MORE_WRITES != 0
        {
            return Err(libc::EPIPE);
        }
        let (conn, name) = new_connection(role)?;
        self.install(id, conn, name, Announce::Connected);
        Ok(())
    }

    /// Connects to `addr` and starts a client session on the stream:
    /// CONNECTED comes when the handshake ends (or the connect failed).
    pub fn tls_connect(
        &mut self,
        addr: &crate::SockAddr,
        role: TlsRole,
        data: D,
    ) -> Result<StreamId, Errno> {
        let (conn, name) = new_connection(role)?;
        let id = self.connect(addr, data)?;
        self.install(id, conn, name, Announce::Connected);
        Ok(id)
    }

    /// Makes the streams a listener accepts from now on TLS streams (None:
    /// plain again).
    pub fn set_listener_tls(
        &mut self,
        id: ListenerId,
        config: Option<Arc<ServerConfig>>,
    ) -> Result<(), Errno> {
        self.listeners.get_mut(id).ok_or(libc::ENOENT)?.tls = config;
        Ok(())
    }

    /// A TLS listener's new stream: announced once its handshake is done.
    pub(super) fn tls_accepted(&mut self, id: StreamId, config: Arc<ServerConfig>) {
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        s.flags |= TLS_HIDDEN;
        match new_connection(TlsRole::Server(config)) {
            Ok((conn, name)) => self.install(id, conn, name, Announce::Accepted),
            Err(e) => self.close_now(id, e, false),
        }
    }

    fn install(
        &mut self,
        id: StreamId,
        conn: Connection,
        server_name: Option<Box<str>>,
        announce: Announce,
    ) {
        if self.tls.scratch.is_empty() {
            self.tls.scratch = vec![0; SCRATCH];
        }
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        s.tls = Some(Box::new(TlsSession {
            conn,
            server_name,
            announce,
            early_plain: 0,
            app_queued: false,
            held: Vec::new(),
            held_timer: 0,
        }));
        s.flags |= TLS | TLS_HANDSHAKE;
        // A client's hello goes out now (or into the queue, while connecting).
        if self.tls_pump(id).is_ok() {
            self.sync_or_close(id);
        }
    }

    /// The connect of a TLS stream is made: its hello, queued meanwhile,
    /// goes out; CONNECTED waits for the handshake.
    pub(super) fn tls_connected(&mut self, id: StreamId) -> Option<StreamEvent<D>> {
        self.flush(id);
        self.sync_or_close(id);
        None
    }

    fn sync_or_close(&mut self, id: StreamId) {
        if let Some(s) = self.streams.get_mut(id) {
            if let Err(e) = sync_interest(&mut self.core, s) {
                self.close_now(id, e, false);
            }
        }
    }

    // ---- writing ----------------------------------------------------------

    /// The application's bytes: encrypted, then sent or queued.
    pub(super) fn tls_write(&mut self, id: StreamId, bytes: &[u8]) -> Result<(), Errno> {
        let s = self.streams.get_mut(id).ok_or(libc::ENOENT)?;
        let Some(t) = s.tls.as_deref_mut() else {
            return Err(libc::EINVAL);
        };
        // With no buffer limit the session takes everything.
        t.conn.writer().write_all(bytes).map_err(|_| libc::EIO)?;
        if s.flags & TLS_HANDSHAKE != 0 {
            t.early_plain += bytes.len();
        }
        self.tls_pump(id)
    }

    /// Moves everything the session has to send to the fd, as far as it
    /// takes it and nothing is queued before, and the rest into the queue.
    /// A write error closes the stream and is returned.
    fn tls_pump(&mut self, id: StreamId) -> Result<(), Errno> {
        let now = self.core.now();
        let s = self.streams.get_mut(id).ok_or(libc::EPIPE)?;
        let socket = s.socket();
        let Stream {
            fd,
            flags,
            queue,
            tls,
            settings,
            last_active,
            ..
        } = s;
        let Some(t) = tls.as_deref_mut() else {
            return Ok(());
        };
        if !t.conn.wants_write() {
            return Ok(());
        }
        if queue.is_none() && *flags & CONNECTING == 0 {
            let mut fd = FdWriter { fd: *fd, socket };
            while t.conn.wants_write() {
                match t.conn.write_tls(&mut fd) {
                    Ok(0) => break,
                    Ok(_) => *last_active = now,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let errno = e.raw_os_error().unwrap_or(libc::EIO);
                        self.close_now(id, errno, false);
                        return Err(errno);
                    }
                }
            }
            if !t.conn.wants_write() {
                return Ok(());
            }
        }
        let q = queue.get_or_insert_with(Default::default);
        while t.conn.wants_write() {
            // Writing into memory cannot fail.
            let _ = t.conn.write_tls(&mut QueueWriter(q));
        }
        if *flags & TLS_HANDSHAKE == 0 {
            t.app_queued = true;
        }
        if q.bytes > settings.high_water {
            *flags |= THROTTLED;
        }
        if let Err(e) = sync_interest(&mut self.core, s) {
            self.close_now(id, e, false);
            return Err(e);
        }
        Ok(())
    }

    // ---- ending -----------------------------------------------------------

    /// Before the writing side is shut: close_notify, once the handshake is
    /// done, behind what is queued. Whether the fd may be shut now (nothing
    /// left to send); if not, SHUTDOWN_WANTED stays and the drain (or the
    /// handshake's end) comes back here.
    pub(super) fn tls_close_notify(&mut self, id: StreamId) -> bool {
        let Some(s) = self.streams.get_mut(id) else {
            return false;
        };
        if s.flags & TLS_HANDSHAKE != 0 {
            return false;
        }
        if let Some(t) = s.tls.as_deref_mut() {
            // Sent once: later calls do nothing.
            t.conn.send_close_notify();
        }
        if self.tls_pump(id).is_err() {
            return false;
        }
        self.streams.get(id).is_some_and(|s| s.queue.is_none())
    }

    /// Before a close: close_notify, once the handshake is done. Whether
    /// the close has to wait for the handshake, because what was written
    /// during it is still to be sent.
    pub(super) fn tls_before_close(&mut self, id: StreamId) -> bool {
        let Some(s) = self.streams.get_mut(id) else {
            return false;
        };
        let Some(t) = s.tls.as_deref_mut() else {
            return false;
        };
        if s.flags & TLS_HANDSHAKE != 0 {
            return t.early_plain > 0;
        }
        t.conn.send_close_notify();
        // A failure closed the stream, which close() then finds.
        let _ = self.tls_pump(id);
        false
    }

    /// A listener's stream that ended before it was announced.
    pub(super) fn tls_forget_hidden(&mut self, id: StreamId) {
        self.pending.retain(|e| e.stream != id);
        self.streams.retire(id);
    }

    // ---- reading ----------------------------------------------------------

    /// A TLS stream's fd is ready (the slow path of `stream_ready`, which
    /// every TLS stream takes).
    pub(super) fn tls_ready(&mut self, id: StreamId, revents: u32) -> Option<StreamEvent<D>> {
        let s = self.streams.get_mut(id)?;
        if s.flags & CONNECTING != 0 {
            return self.finish_connect(id);
        }
        if s.queue.is_some() && revents & (WRITE | ERROR | HUP) != 0 {
            self.flush(id);
        }
        let s = self.streams.get_mut(id)?;
        if s.reads_now() && (revents & (READ | RDHUP | HUP | ERROR) != 0 || s.flags & TLS_HELD != 0)
        {
            return self.tls_read(id);
        }
        if revents & ERROR != 0 {
            self.close_on_fd_error(id);
        }
        None
    }

    /// Reads the fd once, feeds the session, and hands out what came: the
    /// handshake's end (ACCEPTED, CONNECTED), DATA, EOF, or the failure.
    fn tls_read(&mut self, id: StreamId) -> Option<StreamEvent<D>> {
        let now = self.core.now();
        let offset = self.reads.used;
        let StreamLoop {
            streams,
            reads,
            tls: shared,
            ..
        } = self;
        let s = streams.get_mut(id)?;
        let mode = if s.flags & CLOSING != 0 {
            Mode::Discard
        } else if s.flags & NOT_READING == 0 {
            Mode::Deliver
        } else {
            Mode::Hold
        };
        let was_handshaking = s.flags & TLS_HANDSHAKE != 0;
        let fd = s.fd;
        let t = s.tls.as_deref_mut()?;
        let mut out = Plain {
            buf: reads.free_chunk(),
            len: 0,
        };
        // What the session or `held` kept from before, then the fd.
        let mut result = drain(&mut t.conn, mode, &mut out);
        if result.is_ok() && !t.held.is_empty() {
            let held = std::mem::take(&mut t.held);
            let mut input = &held[..];
            result = feed(&mut t.conn, &mut input, mode, &mut out);
            t.held = input.to_vec();
        }
        let mut tcp_eof = false;
        if result.is_ok() && t.held.is_empty() && takes_more(&t.conn, mode, &out) {
            let max = out.room().saturating_sub(RECORD).clamp(1, SCRATCH);
            match sys::read(fd, &mut shared.scratch[..max]) {
                Ok(0) => tcp_eof = true,
                Ok(n) => {
                    s.last_active = now;
                    let mut input = &shared.scratch[..n];
                    result = feed(&mut t.conn, &mut input, mode, &mut out);
                    t.held.extend_from_slice(input);
                }
                Err(libc::EAGAIN | libc::EINTR) => {}
                Err(e) => result = Err(Failure::Errno(e)),
            }
        }
        let state = match result {
            Ok(()) => t.conn.process_new_packets().map_err(Failure::Tls),
            Err(failure) => Err(failure),
        };
        let plain_left = state
            .as_ref()
            .is_ok_and(|state| state.plaintext_bytes_to_read() > 0);
        if !t.held.is_empty() || plain_left {
            s.flags |= TLS_HELD;
        } else {
            s.flags &= !TLS_HELD;
        }
        let handshake_done = was_handshaking && !t.conn.is_handshaking();
        let peer_closed = !plain_left && state.as_ref().is_ok_and(IoState::peer_has_closed);
        let still_handshaking = t.conn.is_handshaking();
        let len = out.len;

        let mut data = None;
        if len > 0 && mode == Mode::Deliver {
            reads.used += len;
            data = Some(StreamEvent {
                kind: StreamEventKind::Data,
                stream: id,
                fd,
                error: 0,
                offset,
                len,
                data: s.data,
            });
        }
        if handshake_done {
            self.tls_announce(id);
        }
        // From here on, events go behind the DATA.
        let hand_out = |this: &mut Self, data: &mut Option<StreamEvent<D>>| {
            if let Some(event) = data.take() {
                this.pending.push_back(event);
            }
        };
        if !self.pending.is_empty() {
            hand_out(self, &mut data);
        }
        let state = match state {
            Ok(state) => state,
            Err(failure) => {
                hand_out(self, &mut data);
                self.tls_fail(id, failure);
                return None;
            }
        };
        if handshake_done {
            hand_out(self, &mut data);
            self.tls_after_handshake(id);
        } else if state.tls_bytes_to_write() > 0 {
            hand_out(self, &mut data);
            let _ = self.tls_pump(id);
        }
        if tcp_eof || peer_closed {
            hand_out(self, &mut data);
            if still_handshaking {
                self.tls_fail(id, Failure::ClosedInHandshake);
            } else if !plain_left && self.streams.get(id).is_some() {
                if let Some(eof) = self.on_peer_eof(id) {
                    self.pending.push_back(eof);
                }
            }
        }
        if let Some(s) = self.streams.get_mut(id) {
            if let Err(e) = sync_interest(&mut self.core, s) {
                hand_out(self, &mut data);
                self.close_now(id, e, false);
            }
        }
        data
    }

    /// The handshake is done: the application learns it (unless it closed
    /// the stream meanwhile).
    fn tls_announce(&mut self, id: StreamId) {
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        let was_hidden = s.flags & TLS_HIDDEN != 0;
        s.flags &= !(TLS_HANDSHAKE | TLS_HIDDEN);
        let Some(t) = s.tls.as_deref_mut() else {
            return;
        };
        t.early_plain = 0;
        if s.flags & CLOSING != 0 {
            return;
        }
        let event = match t.announce {
            Announce::Accepted if was_hidden => s.event(StreamEventKind::Accepted, id, 0),
            Announce::Accepted => return,
            Announce::Connected => s.event(StreamEventKind::Connected, id, 0),
        };
        self.pending.push_back(event);
    }

    /// What waited for the handshake: what was written during it goes
    /// out, then a close or shutdown asked meanwhile.
    fn tls_after_handshake(&mut self, id: StreamId) {
        if self.tls_pump(id).is_err() {
            return;
        }
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        if s.flags & CLOSING != 0 {
            if let Some(t) = s.tls.as_deref_mut() {
                t.conn.send_close_notify();
            }
            if self.tls_pump(id).is_ok() && self.streams.get(id).is_some_and(|s| s.queue.is_none())
            {
                self.close_now(id, 0, false);
            }
        } else if s.flags & SHUTDOWN_WANTED != 0 && s.queue.is_none() {
            self.shutdown_now(id);
        }
    }

    /// Ends a stream whose TLS failed: its reason kept, the alert rustls
    /// made sent if the fd takes it now, CONNECTED with the status if the
    /// application waits for the handshake, then CLOSED.
    fn tls_fail(&mut self, id: StreamId, failure: Failure) {
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        let handshaking = s.flags & TLS_HANDSHAKE != 0;
        let (code, reason) = match &failure {
            Failure::Tls(e) => (classify(e, handshaking), Some(e.to_string())),
            Failure::Errno(e) => (*e, None),
            Failure::ClosedInHandshake => (
                ETLS_HANDSHAKE,
                Some("the peer closed the connection during the handshake".to_string()),
            ),
        };
        let socket = s.socket();
        if let Some(t) = s.tls.as_deref_mut() {
            if s.queue.is_none() && s.flags & CONNECTING == 0 {
                let _ = t.conn.write_tls(&mut FdWriter { fd: s.fd, socket });
            }
            if handshaking && t.announce == Announce::Connected && s.flags & CLOSING == 0 {
                self.pending
                    .push_back(s.event(StreamEventKind::Connected, id, code));
            }
        }
        if let Some(reason) = reason {
            if self.tls.reasons.len() == REASONS {
                self.tls.reasons.pop_front();
            }
            self.tls.reasons.push_back((id, reason));
        }
        self.close_now(id, code, false);
    }

    /// The held-input timer of a stream fired: it reads what it holds, or
    /// (the read buffer too full for now) comes back once more.
    pub(super) fn tls_held_timer(&mut self, id: StreamId) -> Option<StreamEvent<D>> {
        let s = self.streams.get_mut(id)?;
        if let Some(t) = s.tls.as_deref_mut() {
            t.held_timer = 0;
        }
        if self.reads.room() < MIN_READ {
            come_back_for_held(&mut self.core, s);
            return None;
        }
        self.stream_ready(id, 0)
    }

    // ---- queries ----------------------------------------------------------

    fn session(&self, id: StreamId) -> Result<&TlsSession, Errno> {
        match self.streams.get(id) {
            Some(s) => s.tls.as_deref().ok_or(libc::EINVAL),
            None => self.not_live(id, Err(libc::EBADF)),
        }
    }

    /// Whether the handshake is still under way.
    pub fn tls_handshaking(&self, id: StreamId) -> Result<bool, Errno> {
        Ok(self.session(id)?.conn.is_handshaking())
    }

    /// The ALPN protocol agreed on, if any.
    pub fn tls_alpn(&self, id: StreamId) -> Result<Option<&[u8]>, Errno> {
        Ok(self.session(id)?.conn.alpn_protocol())
    }

    /// The TLS version as on the wire (0x0304: TLS 1.3); 0 during the handshake.
    pub fn tls_version(&self, id: StreamId) -> Result<u16, Errno> {
        let conn = &self.session(id)?.conn;
        Ok(match conn.protocol_version() {
            Some(version) if !conn.is_handshaking() => u16::from(version),
            _ => 0,
        })
    }

    /// The cipher suite's IANA number; 0 during the handshake.
    pub fn tls_cipher_suite(&self, id: StreamId) -> Result<u16, Errno> {
        let conn = &self.session(id)?.conn;
        Ok(match conn.negotiated_cipher_suite() {
            Some(suite) if !conn.is_handshaking() => u16::from(suite.suite()),
            _ => 0,
        })
    }

    /// The peer's certificate `index` (0: its own, then the chain it sent), DER.
    pub fn tls_peer_certificate(&self, id: StreamId, index: usize) -> Result<Option<&[u8]>, Errno> {
        let certs = self.session(id)?.conn.peer_certificates();
        Ok(certs.and_then(|c| c.get(index)).map(|c| c.as_ref()))
    }

    /// The server name: the one a client asked for (SNI) on either side.
    pub fn tls_server_name(&self, id: StreamId) -> Result<Option<&str>, Errno> {
        let t = self.session(id)?;
        Ok(match &t.conn {
            Connection::Server(conn) => conn.server_name(),
            Connection::Client(_) => t.server_name.as_deref(),
        })
    }

    /// Why a TLS stream failed, for one of the last streams that did.
    pub fn tls_error_reason(&self, id: StreamId) -> Option<&str> {
        let mut reasons = self.tls.reasons.iter().rev();
        reasons.find(|(s, _)| *s == id).map(|(_, r)| r.as_str())
    }
}

/// Starts the zero-delay timer that brings the loop back to a stream with
/// held input (TLS_HELD), once it reads again: no readiness would.
pub(super) fn come_back_for_held<D: Copy + Default>(
    core: &mut EventLoop<Owner<D>>,
    s: &mut Stream<D>,
) {
    if !s.reads_now() {
        return;
    }
    let Some(t) = s.tls.as_deref_mut() else {
        return;
    };
    if t.held_timer == 0 {
        if let Ok(Owner::Stream(id)) = core.data(s.fd) {
            let zero = std::time::Duration::ZERO;
            t.held_timer = core.start_timer(zero, zero, Owner::TlsHeld(id));
        }
    }
}

/// Whether a read of the fd can be fed now: the session can take more and
/// what it gives has room.
fn takes_more(conn: &Connection, mode: Mode, out: &Plain<'_>) -> bool {
    match mode {
        Mode::Deliver => out.room() > RECORD,
        Mode::Hold => conn.is_handshaking(),
        Mode::Discard => true,
    }
}

/// Feeds `input` to the session, one step at a time (rustls takes up to a
/// few KiB a step), each step's plaintext drained, until it is all fed or
/// the plaintext has no more room; the rest stays in `input`.
fn feed(
    conn: &mut Connection,
    input: &mut &[u8],
    mode: Mode,
    out: &mut Plain<'_>,
) -> Result<(), Failure> {
    while !input.is_empty() && takes_more(conn, mode, out) {
        match conn.read_tls(input) {
            // close_notify came: nothing after it is read.
            Ok(0) => {
                *input = &[];
                break;
            }
            Ok(_) => {}
            Err(_) => return Err(Failure::Errno(libc::EPROTO)),
        }
        let state = conn.process_new_packets().map_err(Failure::Tls)?;
        drain(conn, mode, out)?;
        if state.peer_has_closed() {
            *input = &[];
        }
    }
    Ok(())
}

/// Takes the plaintext the session has, as `mode` says.
fn drain(conn: &mut Connection, mode: Mode, out: &mut Plain<'_>) -> Result<(), Failure> {
    match mode {
        Mode::Hold => {}
        Mode::Discard => {
            let mut sink = [0u8; 4096];
            while matches!(conn.reader().read(&mut sink), Ok(n) if n > 0) {}
        }
        Mode::Deliver => {
            while out.room() > 0 {
                match conn.reader().read(&mut out.buf[out.len..]) {
                    Ok(n) if n > 0 => out.len += n,
                    _ => break,
                }
            }
        }
    }
    Ok(())
}
