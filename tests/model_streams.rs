//! Buffered streams through the C ABI, driven by seeded random operation
//! sequences and checked against a model.
//!
//! Each seed opens streams over random peers (AF_UNIX socket pairs, TCP
//! connections on 127.0.0.1, both ends of pipes, and streams made by
//! evl_listen, evl_connect, evl_listen_unix and evl_connect_unix) and makes random writes,
//! shutdowns, closes, aborts, pauses, resumes, watermark and idle-timeout
//! changes on them, and random writes, reads, shutdowns and closes on the
//! peers, and random linger bounds (evl_stream_set_linger) on streams and on
//! the listener. One test drives everything through callbacks (evl_run_once, the
//! operations made from inside the callbacks too); the other through the
//! batch interface (evl_stream_poll, evl_stream_exchange with staged writes,
//! evl_stream_submit, evl_stream_write_batch, evl_stream_exchange_writes).
//! What is checked:
//! - bytes are exact both ways: every DATA event continues what the peer
//!   sent, and what the peer reads continues what the stream was given;
//!   at the end (peers half-close, then streams close) all of it arrived;
//! - every event names a known stream with its userdata; no DATA once EOF
//!   came or the stream was closed or aborted, nor once evl_stream_pause
//!   returned, until evl_stream_resume (and nothing held meanwhile is
//!   lost); EOF only after the peer's end and all its bytes;
//! - exactly one EVL_STREAM_CLOSED per stream and nothing after it, with
//!   the status the model expects (0 for a close the peer waited for,
//!   -ECONNABORTED for an abort, -ETIMEDOUT never before the idle timeout);
//! - a graceful close never resets its peer, who gets all it was sent and
//!   end-of-file, unless the linger bounds may have been reached (the peer
//!   sent more than their bytes, or went on sending past their time): a
//!   peer reads a reset only from a stream aborted, ended by an error (after
//!   its CLOSED was delivered) or so bounded;
//! - return values: 0 while nothing can have gone wrong, -EPIPE for a write
//!   after shutdown or close, -ENOENT once CLOSED was delivered; the queued
//!   count never exceeds what the peer has yet to read.
//!
//! `EVLOOP_MODEL_SEEDS=2000 cargo test --release --test model_streams`
//! runs many seeds; tests/model/mod.rs has the other knobs.

mod model;

use evloop::ffi::*;
use model::{
    catch_in_callback, close, file_id, now_ns, pipe, read, run_seeds, socketpair, steps_per_seed,
    take_callback_failure, trace, write, Rng,
};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::os::fd::{IntoRawFd, RawFd};

/// The linger bounds of a stream (evl_stream_set_linger).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Linger {
    bytes: usize,
    ms: u32,
}

/// How long after its write a byte may reach a lingering socket at most
/// (Nagle's algorithm and delayed ACKs, on a loaded machine), ns.
const LATE: u64 = 1_000_000_000;

const DEFAULT_LINGER: Linger = Linger {
    bytes: EVL_LINGER_DEFAULT_BYTES,
    ms: EVL_LINGER_DEFAULT_MS,
};

impl Linger {
    /// The weaker of two bounds, each part: what may apply when the model
    /// cannot tell which of the two does.
    fn weakest(self, other: Linger) -> Linger {
        Linger {
            bytes: self.bytes.min(other.bytes),
            ms: self.ms.min(other.ms),
        }
    }

    fn random(rng: &mut Rng) -> Linger {
        let bytes = [0, 1, 1000, 100_000, EVL_LINGER_DEFAULT_BYTES, usize::MAX];
        let ms = [0, 1, 5, 50, EVL_LINGER_DEFAULT_MS, 60_000];
        Linger {
            bytes: bytes[rng.below(bytes.len() as u64) as usize],
            ms: ms[rng.below(ms.len() as u64) as usize],
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Peer {
    Unix,
    Tcp,
    /// The stream reads a pipe the peer writes.
    PipeIn,
    /// The stream writes a pipe the peer reads.
    PipeOut,
    /// A TCP stream accepted by an evl_listen listener.
    Accepted,
    /// A TCP stream made by evl_connect.
    Connected,
    /// A Unix-domain stream accepted by an evl_listen_unix listener.
    UnixListened,
    /// A Unix-domain stream made by evl_connect_unix.
    UnixConnected,
}

impl Peer {
    fn stream_writes(self) -> bool {
        self != Peer::PipeIn
    }
    fn stream_reads(self) -> bool {
        self != Peer::PipeOut
    }
    fn tcp(self) -> bool {
        matches!(self, Peer::Tcp | Peer::Accepted | Peer::Connected)
    }
    /// A socket (TCP or Unix-domain), which has a shutdown and may linger.
    fn socket(self) -> bool {
        !matches!(self, Peer::PipeIn | Peer::PipeOut)
    }
}

struct Stream {
    id: u64,
    /// The stream's fd and what it is open on: until CLOSED is delivered
    /// the library keeps it open, so the number names the same file.
    fd: RawFd,
    file: (u64, u64),
    ud: usize,
    peer_kind: Peer,
    /// Our end; None once closed.
    peer: Option<RawFd>,
    /// What the stream was given to write, and how much of it the peer read.
    sent: Vec<u8>,
    peer_got: usize,
    peer_saw_eof: bool,
    /// What the peer wrote, and how much of it came in DATA events.
    peer_sent: Vec<u8>,
    got: usize,
    peer_shut: bool,
    peer_closed: bool,
    eof: bool,
    shutdown: bool,
    closing: bool,
    aborted: bool,
    /// When the peer last wrote (0: never), and when the stream was first
    /// asked to close (0: not yet), as lower bounds (the start of the call).
    peer_wrote_at: u64,
    close_asked_at: u64,
    /// The weakest linger bounds that may apply to the stream's close.
    linger: Linger,
    /// evl_connect's EVL_STREAM_CONNECTED is still to come.
    connecting: bool,
    /// It was aborted while nothing else could have ended it.
    abort_when_healthy: bool,
    /// evl_stream_pause returned 0, and evl_stream_resume did not since.
    paused: bool,
    /// The shortest idle timeout ever set (0: none), and a lower bound of
    /// when a byte last moved (open, or the start of a call that delivered
    /// DATA: the library's clock read no earlier).
    idle_ms: u32,
    last_moved: u64,
    closed: Option<i32>,
    /// The call that delivered CLOSED.
    closed_call: u64,
    /// At the end, the peer goes on sending after the stream's close (once
    /// its CLOSED was delivered and its fd could have been closed), and has.
    late_talker: bool,
    /// Its writes after the close: how many so far, and in which call the last.
    late_writes: u8,
    late_call: u64,
    late_sent: bool,
}

impl Stream {
    /// Nothing can have made the library end it by itself.
    fn healthy(&self) -> bool {
        !self.peer_shut
            && !self.peer_closed
            && self.idle_ms == 0
            && !self.shutdown
            && !self.closing
            && !self.aborted
            && self.closed.is_none()
    }

    fn asked_to_end(&self) -> bool {
        self.closing || self.aborted
    }

    /// Whether a graceful close may have closed the socket with input
    /// unread (which makes TCP answer with a reset that drops what was not
    /// sent yet, and a Unix socket's peer read ECONNRESET after the data):
    /// lingering was off or a bound may have been reached. The input the
    /// stream never delivered is what the close discarded. Without
    /// lingering, any of it may arrive after the close (a write returns
    /// before its bytes leave: Nagle's algorithm holds a small one until the
    /// last is acknowledged, which a delayed ACK makes take 40 ms or more).
    /// With it, bytes written up to [`LATE`] before the time bound.
    fn close_may_reset(&self) -> bool {
        if !self.closing || self.aborted {
            return false;
        }
        let Linger { bytes, ms } = self.linger;
        let discarded = self.peer_sent.len() - self.got;
        if ms == 0 || bytes == 0 {
            return discarded > 0;
        }
        let deadline = self.close_asked_at + ms as u64 * 1_000_000;
        let late = self.peer_wrote_at != 0 && self.peer_wrote_at + LATE >= deadline;
        discarded > bytes || (discarded > 0 && late)
    }

    /// Whether the stream's socket may refuse what its peer writes `now`:
    /// it is not a socket (a pipe's reader has gone), or it was closed
    /// without lingering (aborted, ended by an error, lingering off) or its
    /// lingering may have ended by its bounds (the peer sent more than its
    /// bytes, or writes about its time after the close or later).
    fn write_refusal_excused(&self, now: u64) -> bool {
        let socket = self.peer_kind.socket();
        let ended_by_error = self.closed.is_some_and(|status| status != 0);
        let Linger { bytes, ms } = self.linger;
        let lingers = ms > 0 && bytes > 0;
        let timed_out = self.closing && now + LATE >= self.close_asked_at + ms as u64 * 1_000_000;
        !socket || self.aborted || ended_by_error || !lingers || timed_out || self.close_may_reset()
    }

    /// Whether the peer may lose the end of what the stream was given:
    /// a TCP reset drops what was not sent yet.
    fn loss_excused(&self) -> bool {
        self.peer_kind.tcp() && self.close_may_reset()
    }
}

struct World {
    lp: *mut evl_loop,
    rng: Rng,
    /// Batch interface (no callbacks) or callbacks.
    batch: bool,
    streams: Vec<Stream>,
    by_id: BTreeMap<u64, usize>,
    call: u64,
    call_started: u64,
    in_cb: bool,
    /// The end of a seed: no more random operations.
    finishing: bool,
    /// Inside the CLOSED callback of this stream (its id may be dead).
    delivering_closed: Option<usize>,
    tcp: std::net::TcpListener,
    /// An evl_listen listener, its port, and the peers connected to it
    /// whose EVL_STREAM_ACCEPTED is still to come (in order).
    listener: u64,
    listener_port: u16,
    pending_accepts: std::collections::VecDeque<(RawFd, Linger)>,
    /// What the listener's streams start with (set_linger on the listener).
    listener_linger: Linger,
    /// An evl_listen_unix listener on `unix_path`, the peers connected to
    /// it whose EVL_STREAM_ACCEPTED is still to come, what its streams
    /// start with, and a plain listener (on `unix_server_path`) for
    /// evl_connect_unix, in a directory of the seed's own.
    unix_listener: u64,
    unix_path: std::path::PathBuf,
    pending_unix_accepts: std::collections::VecDeque<(RawFd, Linger)>,
    unix_listener_linger: Linger,
    unix_server: std::os::unix::net::UnixListener,
    unix_server_path: std::path::PathBuf,
    dir: std::path::PathBuf,
    buf: Vec<u8>,
}

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}

fn with_world<T>(f: impl FnOnce(&mut World) -> T) -> T {
    WORLD.with(|w| f(w.borrow_mut().as_mut().expect("no world")))
}

unsafe extern "C" fn on_stream(_lp: *mut evl_loop, event: *const evl_stream_event) {
    // SAFETY: the library passes a valid event for the length of the call.
    let event = unsafe { *event };
    catch_in_callback(|| {
        with_world(|w| {
            w.in_cb = true;
            if event.kind == EVL_STREAM_CLOSED {
                w.delivering_closed = w.by_id.get(&event.stream).copied();
            }
            w.on_event(&event);
            w.ops_from_callback();
            w.delivering_closed = None;
            w.in_cb = false;
        })
    });
}

/// Writes planned for evl_stream_write_batch or evl_stream_exchange.
#[derive(Default)]
struct WritePlan {
    ids: Vec<u64>,
    lens: Vec<usize>,
    data: Vec<u8>,
    /// Which stream each write goes to, and its bytes.
    plan: Vec<(usize, Vec<u8>)>,
}

/// The userdata of the listener (and of the streams it accepts).
const LISTENER_UD: usize = 7;

/// The userdata of the Unix-domain listener (and of what it accepts).
const UNIX_LISTENER_UD: usize = 8;

fn status_name(rc: i32) -> String {
    format!("{rc}")
}

impl World {
    fn new(seed: u64, batch: bool) -> World {
        let mut lp = std::ptr::null_mut();
        // SAFETY: `lp` is a valid place for the new loop.
        assert_eq!(unsafe { evl_loop_new(&mut lp) }, 0);
        let mut listener = 0;
        let cb: evl_stream_cb = if batch { None } else { Some(on_stream) };
        // SAFETY: the loop is live; `listener` is a valid place.
        let rc = unsafe {
            evl_listen(
                lp,
                c"127.0.0.1".as_ptr(),
                0,
                0,
                0,
                cb,
                LISTENER_UD as *mut c_void,
                &mut listener,
            )
        };
        assert_eq!(rc, 0, "evl_listen");
        // SAFETY: the loop is live.
        let port = unsafe { evl_listener_port(lp, listener) };
        assert!(port > 0, "evl_listener_port -> {port}");
        let dir = std::env::temp_dir().join(format!(
            "evl_model_streams_{}_{seed}_{}",
            std::process::id(),
            if batch { "b" } else { "c" }
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let unix_path = dir.join("evloop.sock");
        let c_path = std::ffi::CString::new(unix_path.as_os_str().as_encoded_bytes()).unwrap();
        let mut unix_listener = 0;
        // SAFETY: the loop is live; the path is NUL-terminated; `unix_listener` is a valid place.
        let rc = unsafe {
            evl_listen_unix(
                lp,
                c_path.as_ptr(),
                0,
                0,
                cb,
                UNIX_LISTENER_UD as *mut c_void,
                &mut unix_listener,
            )
        };
        assert_eq!(rc, 0, "evl_listen_unix");
        let unix_server_path = dir.join("plain.sock");
        let unix_server = std::os::unix::net::UnixListener::bind(&unix_server_path).unwrap();
        World {
            unix_listener,
            unix_path,
            pending_unix_accepts: Default::default(),
            unix_server,
            unix_server_path,
            dir,
            listener,
            listener_port: port as u16,
            pending_accepts: Default::default(),
            listener_linger: DEFAULT_LINGER,
            unix_listener_linger: DEFAULT_LINGER,
            lp,
            rng: Rng::new(seed),
            batch,
            streams: Vec::new(),
            by_id: BTreeMap::new(),
            call: 0,
            call_started: 0,
            in_cb: false,
            finishing: false,
            delivering_closed: None,
            tcp: std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            buf: vec![0; 1 << 16],
        }
    }

    fn where_(&self) -> &'static str {
        if self.in_cb {
            "cb"
        } else {
            "top"
        }
    }

    /// The earliest moment the library may count as "now" for an
    /// operation made now: the start of the call we are in, if any.
    fn op_time(&self) -> u64 {
        if self.call_started != 0 {
            self.call_started
        } else {
            now_ns()
        }
    }

    fn cb(&self) -> evl_stream_cb {
        if self.batch {
            None
        } else {
            Some(on_stream)
        }
    }

    // ---- events -------------------------------------------------------------

    fn on_event(&mut self, e: &evl_stream_event) {
        if e.kind == EVL_STREAM_ACCEPTED {
            trace(|| format!("    listener ACCEPTED stream {:#x}", e.stream));
            let ud = e.userdata as usize;
            assert!(
                ud == LISTENER_UD || ud == UNIX_LISTENER_UD,
                "ACCEPTED: the listener's userdata"
            );
            assert!(
                !self.by_id.contains_key(&e.stream),
                "ACCEPTED: a stream id given twice"
            );
            let (queue, kind) = if ud == LISTENER_UD {
                (&mut self.pending_accepts, Peer::Accepted)
            } else {
                (&mut self.pending_unix_accepts, Peer::UnixListened)
            };
            let (peer, linger) = queue
                .pop_front()
                .expect("ACCEPTED with no connection waiting");
            self.add_stream(e.stream, ud, kind, peer);
            // Any of the listener's bounds since the connect may apply.
            self.streams.last_mut().unwrap().linger = linger;
            return;
        }
        let Some(&k) = self.by_id.get(&e.stream) else {
            panic!("event {} for unknown stream {:#x}", e.kind, e.stream);
        };
        let s = &mut self.streams[k];
        trace(|| {
            format!(
                "    stream {k} event {} len {} status {}",
                e.kind, e.len, e.status
            )
        });
        assert_eq!(e.userdata as usize, s.ud, "stream {k}: userdata");
        assert!(
            s.closed.is_none(),
            "stream {k}: event {} after CLOSED",
            e.kind
        );
        match e.kind {
            EVL_STREAM_DATA => {
                assert!(e.len > 0 && !e.data.is_null(), "stream {k}: empty DATA");
                assert!(!s.asked_to_end(), "stream {k}: DATA after close/abort");
                assert!(!s.eof, "stream {k}: DATA after EOF");
                assert!(!s.connecting, "stream {k}: DATA before CONNECTED");
                assert!(!s.paused, "stream {k}: DATA while paused");
                // SAFETY: the library says `data` holds `len` bytes for now.
                let data = unsafe { std::slice::from_raw_parts(e.data, e.len) };
                let expect = &s.peer_sent[s.got.min(s.peer_sent.len())..];
                let first_diff = data.iter().zip(expect).position(|(a, b)| a != b);
                if let Some(at) = first_diff {
                    // Whose bytes are they? (Diagnosis only.)
                    let probe = &data[at..][..16.min(data.len() - at)];
                    for (j, other) in self.streams.iter().enumerate() {
                        for (name, bytes) in
                            [("peer sent", &other.peer_sent), ("was given", &other.sent)]
                        {
                            if let Some(at) = bytes.windows(probe.len()).position(|w| w == probe) {
                                eprintln!("stream {k}'s wrong DATA: stream {j} {name} them, at offset {at}");
                            }
                        }
                    }
                }
                let s = &mut self.streams[k];
                let expect = &s.peer_sent[s.got.min(s.peer_sent.len())..];
                assert!(
                    data.len() <= expect.len() && first_diff.is_none(),
                    "stream {k}: DATA of {} bytes at offset {} differs from what the peer sent ({} bytes) \
                     from byte {first_diff:?} on",
                    data.len(),
                    s.got,
                    s.peer_sent.len()
                );
                s.got += data.len();
                s.last_moved = s.last_moved.max(self.call_started);
            }
            EVL_STREAM_EOF => {
                assert!(!s.eof, "stream {k}: EOF twice");
                assert!(
                    s.peer_shut || s.peer_closed,
                    "stream {k}: EOF but the peer did not end"
                );
                assert_eq!(
                    s.got,
                    s.peer_sent.len(),
                    "stream {k}: EOF before all the peer's bytes"
                );
                s.eof = true;
            }
            EVL_STREAM_DRAINED => {}
            EVL_STREAM_CONNECTED => {
                assert!(
                    s.connecting,
                    "stream {k}: CONNECTED twice, or not from evl_connect"
                );
                assert_eq!(e.status, 0, "stream {k}: connecting to our own listener");
                s.connecting = false;
            }
            EVL_STREAM_CLOSED => {
                assert_eq!(e.fd, s.fd, "stream {k}: CLOSED names another fd");
                let status = e.status;
                if s.aborted {
                    // An abort, unless the stream had ended itself before it.
                    assert!(
                        status == -libc::ECONNABORTED || !s.healthy_before_abort(),
                        "stream {k}: aborted, CLOSED with {}",
                        status_name(status)
                    );
                } else if status == -libc::ETIMEDOUT {
                    assert!(
                        s.idle_ms > 0,
                        "stream {k}: -ETIMEDOUT without an idle timeout"
                    );
                    let due = s.last_moved + s.idle_ms as u64 * 1_000_000;
                    let now = now_ns();
                    assert!(
                        now >= due,
                        "stream {k}: idle timeout {} ns early",
                        due - now
                    );
                } else if status == 0 {
                    assert!(
                        // (A pipe's write end only writes: its shutdown ends it.)
                        s.closing
                            || s.shutdown
                                && (s.peer_shut || s.peer_closed || s.peer_kind == Peer::PipeOut),
                        "stream {k}: CLOSED 0 without close, or both sides shut down"
                    );
                } else {
                    assert!(
                        s.peer_closed || s.peer_shut || s.peer_kind == Peer::PipeOut,
                        "stream {k}: CLOSED with {status} while the peer is alive"
                    );
                }
                s.closed = Some(status);
                s.closed_call = self.call;
            }
            other => panic!("stream {k}: unexpected event kind {other}"),
        }
    }

    // ---- operations on streams -----------------------------------------------

    fn open(&mut self) {
        if self.streams.iter().filter(|s| s.closed.is_none()).count() >= 6 {
            return;
        }
        let kind = [
            Peer::Unix,
            Peer::Unix,
            Peer::Tcp,
            Peer::PipeIn,
            Peer::PipeOut,
            Peer::Accepted,
            Peer::Connected,
            Peer::UnixListened,
            Peer::UnixConnected,
        ][self.rng.below(9) as usize];
        let (ours, theirs) = match kind {
            Peer::Unix => socketpair(),
            Peer::Tcp => {
                let client = std::net::TcpStream::connect(self.tcp.local_addr().unwrap()).unwrap();
                let (server, _) = self.tcp.accept().unwrap();
                client.set_nonblocking(true).unwrap();
                (client.into_raw_fd(), server.into_raw_fd())
            }
            Peer::PipeIn => {
                let (r, w) = pipe();
                (w, r)
            }
            Peer::PipeOut => pipe(),
            Peer::Accepted => {
                // The stream comes with its EVL_STREAM_ACCEPTED.
                let client =
                    std::net::TcpStream::connect(("127.0.0.1", self.listener_port)).unwrap();
                client.set_nonblocking(true).unwrap();
                trace(|| format!("{} connect to the listener", self.where_()));
                let linger = self.listener_linger;
                self.pending_accepts
                    .push_back((client.into_raw_fd(), linger));
                return;
            }
            Peer::UnixListened => {
                // The stream comes with its EVL_STREAM_ACCEPTED.
                let client = std::os::unix::net::UnixStream::connect(&self.unix_path).unwrap();
                client.set_nonblocking(true).unwrap();
                trace(|| format!("{} connect to the Unix listener", self.where_()));
                let linger = self.unix_listener_linger;
                self.pending_unix_accepts
                    .push_back((client.into_raw_fd(), linger));
                return;
            }
            Peer::UnixConnected => {
                let k = self.streams.len();
                let ud = 1000 + k;
                let path =
                    std::ffi::CString::new(self.unix_server_path.as_os_str().as_encoded_bytes())
                        .unwrap();
                let mut id = 0;
                // SAFETY: the loop is live; the path is NUL-terminated; `id` is a valid place.
                let rc = unsafe {
                    evl_connect_unix(
                        self.lp,
                        path.as_ptr(),
                        0,
                        self.cb(),
                        ud as *mut c_void,
                        &mut id,
                    )
                };
                trace(|| {
                    format!(
                        "{} unix connect stream {k} -> {rc} id {id:#x}",
                        self.where_()
                    )
                });
                assert_eq!(rc, 0, "evl_connect_unix");
                let (server, _) = self.unix_server.accept().unwrap();
                server.set_nonblocking(true).unwrap();
                self.add_stream(id, ud, kind, server.into_raw_fd());
                return;
            }
            Peer::Connected => {
                let k = self.streams.len();
                let ud = 1000 + k;
                let port = self.tcp.local_addr().unwrap().port() as i32;
                let mut id = 0;
                // SAFETY: the loop is live; `id` is a valid place.
                let rc = unsafe {
                    evl_connect(
                        self.lp,
                        c"127.0.0.1".as_ptr(),
                        port,
                        self.cb(),
                        ud as *mut c_void,
                        &mut id,
                    )
                };
                trace(|| format!("{} connect stream {k} -> {rc} id {id:#x}", self.where_()));
                assert_eq!(rc, 0, "evl_connect");
                let (server, _) = self.tcp.accept().unwrap();
                server.set_nonblocking(true).unwrap();
                self.add_stream(id, ud, kind, server.into_raw_fd());
                return;
            }
        };
        let k = self.streams.len();
        let ud = 1000 + k;
        let mut id = 0;
        // SAFETY: the loop is live; the fd is ours to give.
        let rc = unsafe { evl_stream_open(self.lp, theirs, self.cb(), ud as *mut c_void, &mut id) };
        trace(|| {
            format!(
                "{} open stream {k} over {kind:?} -> {rc} id {id:#x}",
                self.where_()
            )
        });
        assert_eq!(rc, 0, "evl_stream_open");
        self.add_stream(id, ud, kind, ours);
    }

    fn add_stream(&mut self, id: u64, ud: usize, kind: Peer, ours: RawFd) {
        let k = self.streams.len();
        self.by_id.insert(id, k);
        // SAFETY: the loop is live.
        let fd = unsafe { evl_stream_fd(self.lp, id) };
        assert!(fd >= 0, "stream {k}: evl_stream_fd -> {fd}");
        let file = file_id(fd).expect("a new stream's fd is open");
        self.streams.push(Stream {
            id,
            fd,
            file,
            ud,
            peer_kind: kind,
            peer: Some(ours),
            sent: Vec::new(),
            peer_got: 0,
            peer_saw_eof: false,
            peer_sent: Vec::new(),
            got: 0,
            peer_shut: false,
            peer_closed: false,
            eof: false,
            shutdown: false,
            closing: false,
            aborted: false,
            connecting: kind == Peer::Connected || kind == Peer::UnixConnected,
            peer_wrote_at: 0,
            close_asked_at: 0,
            linger: DEFAULT_LINGER,
            abort_when_healthy: false,
            paused: false,
            idle_ms: 0,
            last_moved: self.op_time(),
            closed: None,
            closed_call: 0,
            late_talker: false,
            late_writes: 0,
            late_call: 0,
            late_sent: false,
        });
    }

    fn pick(&mut self) -> Option<usize> {
        if self.streams.is_empty() {
            return None;
        }
        // Mostly streams still open; now and then an ended one.
        let open: Vec<usize> = (0..self.streams.len())
            .filter(|&k| self.streams[k].closed.is_none())
            .collect();
        if !open.is_empty() && self.rng.percent(90) {
            self.rng.pick(&open)
        } else {
            Some(self.rng.below(self.streams.len() as u64) as usize)
        }
    }

    fn write_len(&mut self) -> usize {
        match self.rng.below(10) {
            0 => 1,
            1..=6 => self.rng.range(1, 4096) as usize,
            7 | 8 => self.rng.range(4096, 65536) as usize,
            _ => self.rng.range(65536, 400_000) as usize,
        }
    }

    /// What evl_stream_write (or an op of submit) returned, checked and
    /// recorded: `data` counts as sent when it says 0.
    fn wrote(&mut self, k: usize, data: &[u8], rc: i32) {
        let lenient = self.delivering_closed == Some(k);
        let s = &mut self.streams[k];
        if lenient {
            assert!(
                rc == -libc::ENOENT || rc == -libc::EPIPE,
                "stream {k}: write in its CLOSED callback: {rc}"
            );
        } else if s.closed.is_some() {
            assert_eq!(rc, -libc::ENOENT, "stream {k}: write after CLOSED");
        } else if s.shutdown || s.closing || s.aborted {
            assert_eq!(
                rc,
                -libc::EPIPE,
                "stream {k}: write after shutdown, close or abort"
            );
        } else if s.healthy() {
            assert_eq!(rc, 0, "stream {k}: write to a healthy stream");
        } else {
            // The peer may have gone: an error, but the id lives until CLOSED.
            assert!(
                rc != -libc::ENOENT,
                "stream {k}: write -ENOENT before its CLOSED was delivered"
            );
        }
        if rc == 0 {
            // Not a move for the idle timeout: the bytes may only be queued.
            s.sent.extend_from_slice(data);
        }
    }

    /// An operation other than a write: 0 until CLOSED was delivered,
    /// -ENOENT after.
    fn did(&mut self, k: usize, what: &str, rc: i32) {
        let s = &self.streams[k];
        if self.delivering_closed == Some(k) {
            assert!(
                rc == 0 || rc == -libc::ENOENT,
                "stream {k}: {what} in its CLOSED callback: {rc}"
            );
        } else if s.closed.is_some() {
            assert_eq!(rc, -libc::ENOENT, "stream {k}: {what} after CLOSED");
        } else {
            assert_eq!(rc, 0, "stream {k}: {what} before CLOSED was delivered");
        }
    }

    /// Marks in the model what a successful (or possibly successful) op did.
    fn apply(&mut self, k: usize, op: u32) {
        let now = self.op_time();
        let s = &mut self.streams[k];
        if s.closed.is_some() {
            return;
        }
        match op {
            EVL_OP_SHUTDOWN => s.shutdown = true,
            EVL_OP_CLOSE => {
                if !s.closing {
                    s.close_asked_at = now;
                }
                s.closing = true;
            }
            EVL_OP_ABORT => {
                s.abort_when_healthy =
                    !s.peer_shut && !s.peer_closed && s.idle_ms == 0 && !s.closing && !s.shutdown;
                s.aborted = true;
            }
            EVL_OP_PAUSE => s.paused = true,
            EVL_OP_RESUME => s.paused = false,
            _ => unreachable!(),
        }
    }

    fn stream_op(&mut self, k: usize, op: u32) -> i32 {
        let id = self.streams[k].id;
        // SAFETY: the loop is live.
        unsafe {
            match op {
                EVL_OP_SHUTDOWN => evl_stream_shutdown(self.lp, id),
                EVL_OP_CLOSE => evl_stream_close(self.lp, id),
                EVL_OP_ABORT => evl_stream_abort(self.lp, id),
                EVL_OP_PAUSE => evl_stream_pause(self.lp, id),
                EVL_OP_RESUME => evl_stream_resume(self.lp, id),
                _ => unreachable!(),
            }
        }
    }

    fn random_stream_op(&mut self) -> u32 {
        match self.rng.below(20) {
            0 | 1 => EVL_OP_SHUTDOWN,
            2 => EVL_OP_CLOSE,
            3 => EVL_OP_ABORT,
            4..=10 => EVL_OP_PAUSE,
            _ => EVL_OP_RESUME,
        }
    }

    /// Several operations in one evl_stream_submit.
    fn submit(&mut self) {
        let n = self.rng.range(1, 5) as usize;
        let mut plan = Vec::new();
        for _ in 0..n {
            let Some(k) = self.pick() else { return };
            if self.rng.percent(50) && self.streams[k].peer_kind.stream_writes() {
                let len = self.write_len().min(20_000);
                plan.push((k, EVL_OP_WRITE, self.rng.bytes(len)));
            } else {
                let op = self.random_stream_op();
                plan.push((k, op, Vec::new()));
            }
        }
        let mut ops: Vec<evl_stream_op> = plan
            .iter()
            .map(|(k, op, data)| evl_stream_op {
                stream: self.streams[*k].id,
                op: *op,
                status: 12345,
                data: data.as_ptr().cast(),
                len: data.len(),
            })
            .collect();
        // SAFETY: the loop is live; `ops` and the bytes they point to are valid.
        let rc = unsafe { evl_stream_submit(self.lp, ops.as_mut_ptr(), ops.len() as i32) };
        trace(|| {
            format!(
                "{} submit {:?} -> {rc}",
                self.where_(),
                plan.iter()
                    .map(|(k, op, d)| (*k, *op, d.len()))
                    .collect::<Vec<_>>()
            )
        });
        assert_eq!(
            rc,
            ops.iter().filter(|o| o.status < 0).count() as i32,
            "submit's count of failures"
        );
        for ((k, op, data), o) in plan.iter().zip(&ops) {
            if *op == EVL_OP_WRITE {
                self.wrote(*k, data, o.status);
            } else {
                self.did(*k, "submitted op", o.status);
                if o.status == 0 {
                    self.apply(*k, *op);
                }
            }
        }
    }

    /// Streams that can be written to and could not have ended.
    fn healthy_writers(&self) -> Vec<usize> {
        (0..self.streams.len())
            .filter(|&k| self.streams[k].healthy() && self.streams[k].peer_kind.stream_writes())
            .collect()
    }

    /// `count` writes of random bytes to healthy streams, in the shape of
    /// evl_stream_write_batch's arguments.
    fn plan_writes(&mut self, count: u64) -> WritePlan {
        let healthy = self.healthy_writers();
        let mut w = WritePlan::default();
        if healthy.is_empty() {
            return w;
        }
        for _ in 0..count {
            let k = self.rng.pick(&healthy).unwrap();
            let len = self.write_len().min(30_000);
            let bytes = self.rng.bytes(len);
            w.ids.push(self.streams[k].id);
            w.lens.push(len);
            w.data.extend_from_slice(&bytes);
            w.plan.push((k, bytes));
        }
        w
    }

    /// Several writes in one evl_stream_write_batch, to healthy streams
    /// only (it does not say which failed).
    fn write_batch(&mut self) {
        let count = self.rng.range(1, 4);
        let WritePlan {
            ids,
            lens,
            data,
            plan,
        } = self.plan_writes(count);
        if ids.is_empty() {
            return;
        }
        // Half of them through evl_stream_exchange_writes: the same writes,
        // from an exchange's arguments, whose other fields it leaves alone.
        let staged = self.rng.percent(50);
        let rc = if staged {
            let mut x = evl_stream_exchange_args {
                write_streams: ids.as_ptr(),
                write_lens: lens.as_ptr(),
                write_data: data.as_ptr().cast(),
                events: std::ptr::null_mut(),
                write_count: ids.len() as i32,
                timeout_ms: 7,
                max_events: 0,
                write_failed: -1,
                data_events: 5,
                data_len: 9,
            };
            // SAFETY: the loop is live; the arrays and bytes are valid.
            let rc = unsafe { evl_stream_exchange_writes(self.lp, &mut x) };
            assert_eq!(
                (x.write_count, x.write_failed),
                (0, rc),
                "exchange_writes' results"
            );
            assert_eq!(
                (x.timeout_ms, x.max_events, x.data_events, x.data_len),
                (7, 0, 5, 9),
                "exchange_writes changed what is not its own"
            );
            rc
        } else {
            // SAFETY: the loop is live; the arrays and bytes are valid.
            unsafe {
                evl_stream_write_batch(
                    self.lp,
                    ids.as_ptr(),
                    lens.as_ptr(),
                    ids.len() as i32,
                    data.as_ptr().cast(),
                )
            }
        };
        trace(|| {
            format!(
                "{} {} {:?} -> {rc}",
                self.where_(),
                if staged {
                    "exchange_writes"
                } else {
                    "write_batch"
                },
                plan.iter().map(|(k, b)| (*k, b.len())).collect::<Vec<_>>()
            )
        });
        assert_eq!(rc, 0, "write_batch to healthy streams");
        for (k, bytes) in plan {
            self.wrote(k, &bytes, 0);
        }
    }

    // ---- the peers --------------------------------------------------------------

    fn peer_write(&mut self, k: usize) {
        let len = self.write_len().min(100_000);
        self.peer_write_len(k, len);
    }

    fn peer_write_len(&mut self, k: usize, len: usize) {
        let data = self.rng.bytes(len);
        let s = &mut self.streams[k];
        let Some(fd) = s
            .peer
            .filter(|_| !s.peer_shut && s.peer_kind.stream_reads())
        else {
            return;
        };
        match write(fd, &data) {
            Ok(n) => {
                s.peer_sent.extend_from_slice(&data[..n]);
                s.peer_wrote_at = now_ns();
                trace(|| {
                    format!(
                        "{} peer {k} writes {n}",
                        if self.in_cb { "cb" } else { "top" }
                    )
                });
            }
            Err(libc::EAGAIN) => {}
            Err(e @ (libc::EPIPE | libc::ECONNRESET)) => {
                // The stream's socket was closed: the peer's bytes are
                // refused only once nothing lingers for them.
                trace(|| format!("peer {k} writes: errno {e}"));
                assert!(
                    s.write_refusal_excused(now_ns()),
                    "peer {k}: write refused (errno {e}) by a stream neither aborted nor ended by \
                     an error, lingering within its bounds ({:?}): peer sent {} (stream got {})",
                    s.linger,
                    s.peer_sent.len(),
                    s.got
                );
            }
            Err(e) => panic!("peer {k}: write: errno {e}"),
        }
    }

    /// Reads what the peer can; true if it read anything or end of file.
    fn peer_read(&mut self, k: usize, max: usize) -> bool {
        let s = &mut self.streams[k];
        let Some(fd) = s
            .peer
            .filter(|_| !s.peer_saw_eof && s.peer_kind.stream_writes())
        else {
            return false;
        };
        let max = max.min(self.buf.len());
        match read(fd, &mut self.buf[..max]) {
            Ok(0) => {
                s.peer_saw_eof = true;
                trace(|| format!("peer {k} reads end of file after {}", s.peer_got));
                if s.shutdown || s.closing {
                    // A shutdown or close sends everything first.
                    // Unless it ended otherwise: an idle timeout may end a
                    // flush the peer does not read (CLOSED says -ETIMEDOUT).
                    let ended_otherwise = s.idle_ms > 0 || s.closed.is_some_and(|st| st != 0);
                    if !s.aborted && !ended_otherwise && !s.loss_excused() {
                        assert_eq!(
                            s.peer_got,
                            s.sent.len(),
                            "peer {k}: end of file before all was sent"
                        );
                    }
                }
                true
            }
            Ok(n) => {
                let expect = &s.sent[s.peer_got.min(s.sent.len())..];
                assert!(
                    n <= expect.len() && self.buf[..n] == expect[..n],
                    "peer {k}: {n} bytes read at offset {} differ from what the stream was given ({} bytes)",
                    s.peer_got,
                    s.sent.len()
                );
                s.peer_got += n;
                true
            }
            Err(libc::EAGAIN) => false,
            Err(libc::ECONNRESET) => {
                trace(|| format!("peer {k} reads a reset after {}", s.peer_got));
                // (A stream's fd closes only after its CLOSED was delivered.)
                let ended_by_error = s.closed.is_some_and(|status| status != 0);
                assert!(
                    s.aborted || s.peer_closed || ended_by_error || s.close_may_reset(),
                    "peer {k}: reset by a stream neither aborted nor ended by an error, \
                     its close within its linger bounds ({:?}): peer sent {} (stream got {}), \
                     last at {} ns after the close",
                    s.linger,
                    s.peer_sent.len(),
                    s.got,
                    s.peer_wrote_at.saturating_sub(s.close_asked_at)
                );
                s.peer_saw_eof = true;
                true
            }
            Err(e) => panic!("peer {k}: read: errno {e}"),
        }
    }

    fn peer_end(&mut self, k: usize, close_it: bool) {
        let s = &mut self.streams[k];
        let Some(fd) = s.peer else { return };
        if close_it || !s.peer_kind.socket() {
            close(fd);
            s.peer = None;
            s.peer_closed = true;
        } else if !s.peer_shut {
            // SAFETY: our own socket.
            let rc = unsafe { libc::shutdown(fd, libc::SHUT_WR) };
            let errno = std::io::Error::last_os_error().raw_os_error();
            // ENOTCONN: a TCP connection the stream's side already reset.
            assert!(
                rc == 0 || errno == Some(libc::ENOTCONN),
                "peer {k}: shutdown: {errno:?}"
            );
        }
        s.peer_shut = true;
    }

    // ---- random steps -----------------------------------------------------------

    /// The fd of every stream whose CLOSED was not delivered is still open
    /// on the same file (a new socket cannot have taken its number).
    fn check_fds_open(&self) {
        for (k, s) in self.streams.iter().enumerate() {
            if s.closed.is_none() {
                assert_eq!(
                    file_id(s.fd),
                    Some(s.file),
                    "stream {k}: its fd {} was closed before its CLOSED was delivered",
                    s.fd
                );
            }
        }
    }

    fn op(&mut self) {
        self.check_fds_open();
        let w = self.where_();
        match self.rng.weighted(&[3, 10, 6, 10, 8, 3, 2, 2, 2, 3, 3, 2]) {
            0 => self.open(),
            1 => {
                let Some(k) = self.pick() else { return };
                if !self.streams[k].peer_kind.stream_writes() {
                    return;
                }
                let len = self.write_len();
                let data = self.rng.bytes(len);
                // SAFETY: the loop is live; `data` is valid.
                let rc = unsafe {
                    evl_stream_write(self.lp, self.streams[k].id, data.as_ptr().cast(), len)
                };
                trace(|| format!("{w} stream {k} write {len} -> {rc}"));
                self.wrote(k, &data, rc);
            }
            2 => {
                let Some(k) = self.pick() else { return };
                let op = self.random_stream_op();
                let rc = self.stream_op(k, op);
                trace(|| format!("{w} stream {k} op {op} -> {rc}"));
                self.did(k, "op", rc);
                if rc == 0 {
                    self.apply(k, op);
                }
            }
            3 => {
                let Some(k) = self.pick() else { return };
                self.peer_write(k);
            }
            4 => {
                let Some(k) = self.pick() else { return };
                let max = self.rng.range(1, 1 << 16) as usize;
                self.peer_read(k, max);
            }
            5 => {
                let Some(k) = self.pick() else { return };
                let close_it = self.rng.percent(40);
                trace(|| {
                    format!(
                        "{w} peer {k} {}",
                        if close_it { "closes" } else { "shuts down" }
                    )
                });
                self.peer_end(k, close_it);
            }
            6 => {
                let Some(k) = self.pick() else { return };
                let high = [0, 1, 1000, 65536, 300_000][self.rng.below(5) as usize];
                let low = if self.rng.percent(85) {
                    self.rng.below(high as u64 + 1) as usize
                } else {
                    high + 1
                };
                // SAFETY: the loop is live.
                let rc =
                    unsafe { evl_stream_set_watermarks(self.lp, self.streams[k].id, high, low) };
                trace(|| format!("{w} stream {k} watermarks {high}/{low} -> {rc}"));
                if low > high && high != 0 {
                    let closed = self.streams[k].closed.is_some();
                    assert!(
                        rc == -libc::EINVAL || closed && rc == -libc::ENOENT,
                        "watermarks low > high: {rc}"
                    );
                } else {
                    self.did(k, "set_watermarks", rc);
                }
            }
            7 => {
                let Some(k) = self.pick() else { return };
                let ms = if self.rng.percent(50) {
                    0
                } else {
                    self.rng.range(5, 60) as u32
                };
                // SAFETY: the loop is live.
                let rc = unsafe { evl_stream_set_idle_timeout(self.lp, self.streams[k].id, ms) };
                trace(|| format!("{w} stream {k} idle timeout {ms} -> {rc}"));
                self.did(k, "set_idle_timeout", rc);
                let s = &mut self.streams[k];
                if rc == 0 && ms > 0 {
                    s.idle_ms = if s.idle_ms == 0 {
                        ms
                    } else {
                        s.idle_ms.min(ms)
                    };
                }
            }
            8 => self.submit(),
            9 => self.write_batch(),
            10 => self.set_linger(),
            _ => {
                let Some(k) = self.pick() else { return };
                let mut queued = usize::MAX;
                // SAFETY: the loop is live; `queued` is a valid place.
                let rc = unsafe { evl_stream_queued(self.lp, self.streams[k].id, &mut queued) };
                let s = &self.streams[k];
                if self.delivering_closed == Some(k) {
                } else if s.closed.is_some() {
                    assert_eq!(rc, -libc::ENOENT, "stream {k}: queued after CLOSED");
                } else {
                    assert_eq!(rc, 0, "stream {k}: queued before CLOSED was delivered");
                }
                if rc == 0 && !s.aborted {
                    assert!(
                        queued <= s.sent.len() - s.peer_got,
                        "stream {k}: {queued} queued, but the peer has only {} left to read",
                        s.sent.len() - s.peer_got
                    );
                }
            }
        }
    }

    /// evl_stream_set_linger on a stream, or on the listener (for the
    /// streams it accepts from then on).
    fn set_linger(&mut self) {
        let w = self.where_();
        let linger = Linger::random(&mut self.rng);
        let Linger { bytes, ms } = linger;
        if self.rng.percent(25) {
            let unix = self.rng.percent(50);
            let (listener, current, waiting) = if unix {
                let waiting = &mut self.pending_unix_accepts;
                (self.unix_listener, &mut self.unix_listener_linger, waiting)
            } else {
                (
                    self.listener,
                    &mut self.listener_linger,
                    &mut self.pending_accepts,
                )
            };
            // SAFETY: the loop is live.
            let rc = unsafe { evl_stream_set_linger(self.lp, listener, bytes, ms) };
            trace(|| format!("{w} listener {listener:#x} linger {linger:?} -> {rc}"));
            assert_eq!(rc, 0, "set_linger on a listener");
            *current = linger;
            // Accepted already or not: either may apply to them.
            for (_, waiting) in waiting.iter_mut() {
                *waiting = waiting.weakest(linger);
            }
            return;
        }
        let Some(k) = self.pick() else { return };
        // SAFETY: the loop is live.
        let rc = unsafe { evl_stream_set_linger(self.lp, self.streams[k].id, bytes, ms) };
        trace(|| format!("{w} stream {k} linger {linger:?} -> {rc}"));
        self.did(k, "set_linger", rc);
        let s = &mut self.streams[k];
        if rc == 0 {
            // While closing, the close may have begun with the bounds before.
            s.linger = if s.closing {
                s.linger.weakest(linger)
            } else {
                linger
            };
        }
    }

    fn ops_from_callback(&mut self) {
        if self.finishing {
            return;
        }
        for _ in 0..[0, 0, 1, 1, 2][self.rng.below(5) as usize] {
            self.op();
        }
        if self.rng.percent(3) {
            let mut events = [model::NO_STREAM_EVENT; 2];
            // SAFETY: the loop is live; `events` has room for 2.
            let rc = unsafe { evl_stream_poll(self.lp, 0, events.as_mut_ptr(), 2) };
            assert_eq!(rc, -libc::EBUSY, "evl_stream_poll from a callback");
        }
    }
}

impl Stream {
    fn healthy_before_abort(&self) -> bool {
        self.abort_when_healthy
    }
}

// ---- the driver --------------------------------------------------------------

fn begin_call() -> *mut evl_loop {
    with_world(|w| {
        w.call += 1;
        w.call_started = now_ns();
        w.lp
    })
}

fn end_call() {
    with_world(|w| w.call_started = 0);
    take_callback_failure();
}

/// One iteration: evl_run_once, or in batch mode evl_stream_poll or
/// evl_stream_exchange (with writes staged to healthy streams).
fn iteration(timeout: i32) {
    let batch = with_world(|w| w.batch);
    if !batch {
        let lp = begin_call();
        // SAFETY: the loop is live; no borrow of the world is held.
        let rc = unsafe { evl_run_once(lp, timeout) };
        trace(|| format!("top run_once({timeout}) -> {rc}"));
        end_call();
        assert!(rc >= 0, "run_once: {rc}");
        return;
    }
    let max = with_world(|w| w.rng.range(1, 16)) as usize;
    let mut events = vec![model::NO_STREAM_EVENT; max];
    let exchange = with_world(|w| w.rng.percent(50));
    let n = if exchange {
        let WritePlan {
            ids,
            lens,
            data,
            plan,
        } = with_world(|w| {
            let count = if w.finishing { 0 } else { w.rng.below(3) };
            w.plan_writes(count)
        });
        let mut x = evl_stream_exchange_args {
            write_streams: ids.as_ptr(),
            write_lens: lens.as_ptr(),
            write_data: data.as_ptr().cast(),
            events: events.as_mut_ptr(),
            write_count: ids.len() as i32,
            timeout_ms: timeout,
            max_events: max as i32,
            write_failed: -1,
            data_events: -1,
            data_len: 0,
        };
        let lp = begin_call();
        // SAFETY: the loop is live; `x` and what it points to are valid.
        let rc = unsafe { evl_stream_exchange(lp, &mut x) };
        trace(|| {
            format!(
                "top exchange({timeout}, {max}) writes {:?} -> {rc}",
                plan.iter().map(|(k, b)| (*k, b.len())).collect::<Vec<_>>()
            )
        });
        take_callback_failure();
        assert!(rc >= 0, "exchange: {rc}");
        assert_eq!(x.write_count, 0, "exchange leaves write_count 0");
        assert_eq!(x.write_failed, 0, "exchange's writes to healthy streams");
        with_world(|w| {
            for (k, bytes) in plan {
                w.wrote(k, &bytes, 0);
            }
        });
        // The run of DATA events lying end to end, as described.
        let run = &events[..x.data_events as usize];
        assert!(
            run.iter().all(|e| e.kind == EVL_STREAM_DATA),
            "data_events counts a non-DATA event"
        );
        assert_eq!(
            run.iter().map(|e| e.len).sum::<usize>(),
            x.data_len,
            "data_len"
        );
        for pair in run.windows(2) {
            // SAFETY: pointer arithmetic within the loop's read buffer.
            let end = unsafe { pair[0].data.add(pair[0].len) };
            assert_eq!(end, pair[1].data, "DATA run not end to end");
        }
        if let (Some(last), Some(next)) = (run.last(), events[..rc as usize].get(run.len())) {
            // SAFETY: as above.
            let follows =
                next.kind == EVL_STREAM_DATA && unsafe { last.data.add(last.len) } == next.data;
            assert!(!follows, "data_events stops short of the run");
        } else if run.is_empty() {
            if let Some(first) = events[..rc as usize].first() {
                assert!(
                    first.kind != EVL_STREAM_DATA,
                    "data_events 0 before a DATA event"
                );
            }
        }
        rc
    } else {
        let lp = begin_call();
        // SAFETY: the loop is live; `events` has room for `max`.
        let rc = unsafe { evl_stream_poll(lp, timeout, events.as_mut_ptr(), max as i32) };
        trace(|| format!("top stream_poll({timeout}, {max}) -> {rc}"));
        take_callback_failure();
        assert!(rc >= 0, "stream_poll: {rc}");
        rc
    };
    assert!(n as usize <= max);
    with_world(|w| {
        for e in &events[..n as usize] {
            w.on_event(e);
        }
        // Act on what came, as callbacks would.
        for _ in 0..if w.finishing { 0 } else { n.min(3) } {
            w.op();
        }
    });
    end_call();
}

/// Peers half-close and read everything; then every stream is closed and
/// must end with all its bytes delivered both ways. Bounded: a lost byte or
/// a missing CLOSED fails after 15 s instead of hanging.
fn finish() {
    with_world(|w| {
        w.finishing = true;
        for k in 0..w.streams.len() {
            if w.streams[k].closed.is_none() && !w.streams[k].asked_to_end() {
                let rc = w.stream_op(k, EVL_OP_RESUME);
                w.did(k, "resume", rc);
                w.apply(k, EVL_OP_RESUME);
                // SAFETY: the loop is live.
                let rc = unsafe { evl_stream_set_idle_timeout(w.lp, w.streams[k].id, 0) };
                w.did(k, "set_idle_timeout", rc);
            }
            // Half of the sockets' peers go on sending after the close
            // (which a lingering close survives); the others end first.
            let s = &w.streams[k];
            let socket = s.peer_kind.socket();
            let open = s.closed.is_none() && !s.asked_to_end() && s.peer.is_some() && !s.peer_shut;
            if socket && open && w.rng.percent(50) {
                w.streams[k].late_talker = true;
            } else {
                w.peer_end(k, false);
            }
        }
    });
    let give_up = now_ns() + 15_000_000_000;
    let mut closing = false;
    loop {
        let (left, all_closed) = with_world(|w| {
            for k in 0..w.streams.len() {
                let s = &w.streams[k];
                if !s.late_talker {
                    // Streams accepted since also get their peer's end.
                    w.peer_end(k, false);
                } else if !s.late_sent
                    && s.closed.is_some()
                    && w.call > s.closed_call.max(s.late_call)
                {
                    // Twice, an iteration apart (the first may be what makes
                    // a closed socket answer with a reset, the second then
                    // learns of it); then the peer's end.
                    let len = w.rng.range(1, 20_000) as usize;
                    trace(|| format!("end: peer {k} writes {len} after the close"));
                    w.peer_write_len(k, len);
                    let s = &mut w.streams[k];
                    s.late_writes += 1;
                    s.late_call = w.call;
                    if s.late_writes == 2 {
                        s.late_sent = true;
                        w.peer_end(k, false);
                    }
                }
                let s = &w.streams[k];
                if s.late_talker && s.closed.is_some() && !s.late_sent {
                    continue; // the reply stays in flight meanwhile
                }
                while w.peer_read(k, 1 << 16) {}
            }
            let left: Vec<usize> = (0..w.streams.len())
                .filter(|&k| {
                    let s = &w.streams[k];
                    let read_all = if s.late_talker {
                        s.got == s.peer_sent.len()
                    } else {
                        s.eof
                    };
                    s.closed.is_none()
                        && !s.asked_to_end()
                        && s.peer_kind.stream_reads()
                        && !read_all
                })
                .collect();
            let all_closed = w.pending_accepts.is_empty()
                && w.pending_unix_accepts.is_empty()
                && w.streams
                    .iter()
                    .all(|s| s.closed.is_some() && s.late_talker == s.late_sent);
            (left, all_closed)
        });
        let accepted =
            with_world(|w| w.pending_accepts.is_empty() && w.pending_unix_accepts.is_empty());
        if left.is_empty() && accepted && !closing {
            // Every stream that could read has read all the peer sent.
            with_world(|w| {
                for k in 0..w.streams.len() {
                    let s = &w.streams[k];
                    if s.closed.is_none() && !s.asked_to_end() && s.peer_kind.stream_reads() {
                        assert_eq!(
                            s.got,
                            s.peer_sent.len(),
                            "stream {k}: bytes lost before EOF"
                        );
                    }
                    if s.closed.is_none() && !s.aborted {
                        let rc = w.stream_op(k, EVL_OP_CLOSE);
                        trace(|| format!("end: close stream {k} -> {rc}"));
                        w.did(k, "close", rc);
                        w.apply(k, EVL_OP_CLOSE);
                    }
                }
            });
            closing = true;
        }
        if closing && all_closed {
            break;
        }
        if now_ns() > give_up {
            with_world(|w| {
                for (k, s) in w
                    .streams
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.closed.is_none())
                {
                    eprintln!(
                        "stream {k} {:?}: sent {} (peer got {}, eof {}), peer sent {} (got {}, eof {}), \
                         shutdown {} closing {} aborted {} paused {:?} idle {} peer shut {} closed {}",
                        s.peer_kind, s.sent.len(), s.peer_got, s.peer_saw_eof, s.peer_sent.len(), s.got, s.eof,
                        s.shutdown, s.closing, s.aborted, s.paused, s.idle_ms, s.peer_shut, s.peer_closed
                    );
                }
            });
            panic!("after 15 s: streams {left:?} still waiting for EOF, or a CLOSED missing (closing: {closing})");
        }
        iteration(5);
    }
    // Every peer reads to its end, while the loop runs: a stream's fd
    // closes once its CLOSED was delivered, or lingers until its peer's end.
    loop {
        let reading: Vec<usize> = with_world(|w| {
            (0..w.streams.len())
                .filter(|&k| {
                    while w.peer_read(k, 1 << 16) {}
                    let s = &w.streams[k];
                    s.peer.is_some() && !s.peer_saw_eof && s.peer_kind.stream_writes()
                })
                .collect()
        });
        if reading.is_empty() {
            break;
        }
        assert!(
            now_ns() < give_up,
            "after 15 s: peers {reading:?} still wait for their end"
        );
        iteration(5);
    }
    with_world(|w| {
        for k in 0..w.streams.len() {
            let s = &w.streams[k];
            // Everything given to a stream that was closed (not aborted) and
            // whose peer stayed to read, arrived.
            if !s.aborted
                && !s.peer_closed
                && s.closed == Some(0)
                && s.peer_kind.stream_writes()
                && !s.loss_excused()
            {
                assert_eq!(
                    s.peer_got,
                    s.sent.len(),
                    "stream {k}: the peer got {} of {} bytes",
                    s.peer_got,
                    s.sent.len()
                );
            }
            // SAFETY: the loop is live.
            let rc = unsafe { evl_stream_close(w.lp, s.id) };
            assert_eq!(rc, -libc::ENOENT, "stream {k}: its id lives after CLOSED");
        }
        // SAFETY: the loop is live.
        let rc = unsafe { evl_listener_close(w.lp, w.listener) };
        assert_eq!(rc, 0, "evl_listener_close");
        // SAFETY: the loop is live.
        let rc = unsafe { evl_listener_close(w.lp, w.unix_listener) };
        assert_eq!(rc, 0, "evl_listener_close (Unix)");
        assert!(
            !w.unix_path.exists(),
            "the Unix listener's socket file outlived it"
        );
        std::fs::remove_file(&w.unix_server_path).unwrap();
        std::fs::remove_dir(&w.dir).unwrap();
        // SAFETY: the loop is live and not running.
        assert_eq!(unsafe { evl_loop_free(w.lp) }, 0);
        for s in &mut w.streams {
            if let Some(fd) = s.peer.take() {
                close(fd);
            }
        }
    });
}

fn one_seed(seed: u64, batch: bool) -> u64 {
    WORLD.with(|w| *w.borrow_mut() = Some(World::new(seed, batch)));
    let steps = steps_per_seed(120);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for _ in 0..steps {
            let run = with_world(|w| {
                if w.rng.percent(30) {
                    Some(if w.rng.percent(80) { 0 } else { 2 })
                } else {
                    w.op();
                    None
                }
            });
            if let Some(timeout) = run {
                iteration(timeout);
            }
        }
        finish();
    }));
    let world = WORLD.with(|w| w.borrow_mut().take());
    if let Err(panic) = result {
        if let Some(w) = world {
            let _ = std::fs::remove_dir_all(&w.dir);
            for (fd, _) in w.pending_unix_accepts {
                // SAFETY: our own fd.
                unsafe { libc::close(fd) };
            }
            for (fd, _) in w.pending_accepts {
                // SAFETY: our own fd.
                unsafe { libc::close(fd) };
            }
            for s in w.streams {
                if let Some(fd) = s.peer {
                    // SAFETY: our own fd.
                    unsafe { libc::close(fd) };
                }
            }
        }
        std::panic::resume_unwind(panic);
    }
    steps
}

#[test]
fn streams_model_callbacks() {
    run_seeds("model_streams", 100, |seed| one_seed(seed, false));
}

#[test]
fn streams_model_batch() {
    run_seeds("model_streams", 100, |seed| one_seed(seed, true));
}
