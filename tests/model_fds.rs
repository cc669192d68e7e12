//! Passing fds over Unix-domain streams through the C ABI, driven by
//! seeded random operation sequences and checked against a model.
//!
//! Each seed makes pairs of streams over socket pairs and sends bytes both
//! ways, some writes with fds attached (evl_stream_write_fds): each fd the
//! write end of a fresh pipe whose read end the test keeps, so that it can
//! tell, by the pipe's inode, which fd it got, and, by the read end seeing
//! end-of-file, that no copy of a write end is left open anywhere. Receivers
//! change how many fds they accept (0 to 253), take some of what comes
//! (evl_stream_take_fds, in the event or later), pause and resume, and
//! streams abort. One run drives it through callbacks (evl_run_once, the
//! operations from inside them too), one through evl_stream_poll. Checked:
//! - the bytes are exact both ways, fds or not;
//! - from a pause on, nothing of the stream comes until the resume, FDS or
//!   DATA, not even what was read before it (held, then handed out in order);
//! - an FDS event comes just before the DATA event that has the byte the
//!   fds were attached to, with the first of those fds (as many as were
//!   accepted); each fd taken is one that was sent, and is taken once;
//! - every fd passed is taken exactly once or closed: the ones past what
//!   the receiver accepts, the ones sent to a receiver that accepts none,
//!   the ones not taken when the event's turn is over (the callback
//!   returned; the next poll), and the ones in flight or queued when a
//!   stream ends; at the end, with the loop freed, /proc/self/fd has what
//!   it had before the seed.
//!
//! `EVLOOP_MODEL_SEEDS=2000 cargo test --release --test model_fds` runs
//! many seeds; tests/model/mod.rs has the other knobs.

mod model;

use evloop::ffi::*;
use model::{catch_in_callback, close, pipe, run_seeds, socketpair, steps_per_seed, trace, Rng};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::ffi::c_void;
use std::os::fd::RawFd;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn inode(fd: RawFd) -> u64 {
    // SAFETY: stat is plain data, filled by fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is writable.
    assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0, "fstat({fd})");
    st.st_ino
}

/// Whether any copy of the pipe's write end is still open: its (empty,
/// non-blocking) read end answers EAGAIN while one is, end-of-file after.
fn writer_alive(read_end: RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: one byte into a valid place.
    let n = unsafe { libc::read(read_end, (&mut byte as *mut u8).cast(), 1) };
    assert!(n <= 0, "a byte in a pipe nobody writes to");
    n < 0
}

/// A pipe whose write end is passed: the test keeps the read end.
struct Passed {
    read_end: RawFd,
    /// Received and taken by the application (then closed by it).
    taken: bool,
    /// Known to have no open write end any more.
    dead: bool,
}

/// Fds attached to the byte at `offset` of a stream's output.
struct Attachment {
    offset: usize,
    pipes: Vec<usize>,
}

struct Stream {
    id: u64,
    ud: usize,
    /// The other stream of the pair.
    other: usize,
    /// What it was given to write, and what it received.
    sent: Vec<u8>,
    got: usize,
    /// Attachments of what it writes, in order; what the peer received.
    attachments: Vec<Attachment>,
    next_attachment: usize,
    accept_max: usize,
    /// An FDS event came and its DATA has not: (attachment, fds in it).
    fds_seen: Option<(usize, usize)>,
    /// The call in which pause was asked (its events may come in it).
    paused: Option<u64>,
    aborted: bool,
    closed: Option<i32>,
}

struct World {
    lp: *mut evl_loop,
    rng: Rng,
    batch: bool,
    streams: Vec<Stream>,
    by_id: BTreeMap<u64, usize>,
    pipes: Vec<Passed>,
    by_inode: HashMap<u64, usize>,
    /// Fds the application took and still holds.
    held: Vec<RawFd>,
    /// Pipes whose fds must be closed once the current call is over.
    closed_after_call: Vec<usize>,
    call: u64,
    in_cb: bool,
    finishing: bool,
    /// The FDS events of the poll being looked at: (stream, attachment, fds).
    batch_fds: Vec<(usize, usize, usize)>,
}

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
    /// Fds passed, taken, closed by the library (unaccepted, untaken, past
    /// the limit), FDS events.
    static SEEN: RefCell<[u64; 4]> = const { RefCell::new([0; 4]) };
}

fn count(what: usize, n: u64) {
    SEEN.with(|s| s.borrow_mut()[what] += n);
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
            w.on_event(&event);
            w.maybe_pause_after(&event);
            if !w.finishing {
                for _ in 0..[0, 0, 1, 2][w.rng.below(4) as usize] {
                    w.op();
                }
            }
            w.in_cb = false;
        })
    });
}

impl World {
    fn new(seed: u64, batch: bool) -> World {
        let mut lp = std::ptr::null_mut();
        // SAFETY: `lp` is a valid place for the new loop.
        assert_eq!(unsafe { evl_loop_new(&mut lp) }, 0);
        World {
            lp,
            rng: Rng::new(seed),
            batch,
            streams: Vec::new(),
            by_id: BTreeMap::new(),
            pipes: Vec::new(),
            by_inode: HashMap::new(),
            held: Vec::new(),
            closed_after_call: Vec::new(),
            call: 0,
            in_cb: false,
            finishing: false,
            batch_fds: Vec::new(),
        }
    }

    fn where_(&self) -> &'static str {
        if self.in_cb {
            "cb"
        } else {
            "top"
        }
    }

    fn cb(&self) -> evl_stream_cb {
        if self.batch {
            None
        } else {
            Some(on_stream)
        }
    }

    fn open_pair(&mut self) {
        if self.streams.iter().filter(|s| s.closed.is_none()).count() >= 6 {
            return;
        }
        let (a, b) = socketpair();
        let k = self.streams.len();
        for (i, fd) in [a, b].into_iter().enumerate() {
            let mut id = 0;
            let ud = 1000 + k + i;
            // SAFETY: the loop is live; the fd is ours to give.
            let rc = unsafe { evl_stream_open(self.lp, fd, self.cb(), ud as *mut c_void, &mut id) };
            assert_eq!(rc, 0, "evl_stream_open");
            // Never pause for the queue: attachments then wait behind big writes.
            // SAFETY: the loop is live.
            assert_eq!(unsafe { evl_stream_set_watermarks(self.lp, id, 0, 0) }, 0);
            self.by_id.insert(id, k + i);
            self.streams.push(Stream {
                id,
                ud,
                other: k + 1 - i,
                sent: Vec::new(),
                got: 0,
                attachments: Vec::new(),
                next_attachment: 0,
                accept_max: 0,
                fds_seen: None,
                paused: None,
                aborted: false,
                closed: None,
            });
        }
        trace(|| format!("{} open pair {k}, {}", self.where_(), k + 1));
    }

    /// A stream of a pair where neither end aborted (nor closed).
    fn pick(&mut self) -> Option<usize> {
        let alive = |s: &Stream| s.closed.is_none() && !s.aborted;
        let open: Vec<usize> = (0..self.streams.len())
            .filter(|&k| alive(&self.streams[k]) && alive(&self.streams[self.streams[k].other]))
            .collect();
        self.rng.pick(&open)
    }

    // ---- events -------------------------------------------------------------

    fn on_event(&mut self, e: &evl_stream_event) {
        let Some(&k) = self.by_id.get(&e.stream) else {
            panic!("event {} for unknown stream {:#x}", e.kind, e.stream);
        };
        trace(|| {
            format!(
                "    stream {k} event {} len {} status {}",
                e.kind, e.len, e.status
            )
        });
        let call = self.call;
        let s = &self.streams[k];
        assert_eq!(e.userdata as usize, s.ud, "stream {k}: userdata");
        assert!(
            s.closed.is_none(),
            "stream {k}: event {} after CLOSED",
            e.kind
        );
        match e.kind {
            EVL_STREAM_FDS => {
                assert!(!s.aborted, "stream {k}: FDS after abort");
                assert!(
                    s.fds_seen.is_none(),
                    "stream {k}: two FDS events before a DATA"
                );
                assert!(e.data.is_null() && e.len > 0, "stream {k}: FDS event shape");
                // Paused, nothing of the stream comes, not even what was
                // read before the pause (it is held until the resume).
                if let Some(since) = s.paused {
                    panic!("stream {k}: FDS while paused (since call {since}, now {call})");
                }
                let other = &self.streams[s.other];
                // Which attachment: the next one the peer made.
                let a = other.next_attachment;
                let attachment = other
                    .attachments
                    .get(a)
                    .unwrap_or_else(|| panic!("stream {k}: FDS with no attachment sent"));
                assert!(
                    e.len <= attachment.pipes.len() && e.len <= EVL_MAX_FDS as usize,
                    "stream {k}: {} fds of {} sent",
                    e.len,
                    attachment.pipes.len()
                );
                count(3, 1);
                self.streams[k].fds_seen = Some((a, e.len));
                if self.batch {
                    self.batch_fds.push((k, a, e.len));
                } else {
                    self.take(k, &[(a, e.len)]);
                }
            }
            EVL_STREAM_DATA => {
                assert!(!s.aborted, "stream {k}: DATA after abort");
                // Nor a DATA, even the one whose FDS came before the
                // pause (the batch cut between the two).
                if let Some(since) = s.paused {
                    panic!("stream {k}: DATA while paused (since call {since}, now {call})");
                }
                // SAFETY: the library says `data` holds `len` bytes for now.
                let data = unsafe { std::slice::from_raw_parts(e.data, e.len) };
                let other = &self.streams[s.other];
                let expect = &other.sent[s.got.min(other.sent.len())..];
                assert!(
                    data.len() <= expect.len() && data == &expect[..data.len()],
                    "stream {k}: DATA differs from what its peer sent"
                );
                let (start, end) = (s.got, s.got + data.len());
                self.streams[k].got = end;
                self.data_passed_attachments(k, start, end);
            }
            EVL_STREAM_CLOSED => {
                self.streams[k].closed = Some(e.status);
            }
            EVL_STREAM_EOF | EVL_STREAM_DRAINED => {}
            other => panic!("stream {k}: unexpected event {other}"),
        }
    }

    /// Stream `k`'s DATA covered bytes `start..end`: the attachments at
    /// those bytes were received, with the FDS event just before (if the
    /// stream accepted fds) or without (the kernel closed them).
    fn data_passed_attachments(&mut self, k: usize, start: usize, end: usize) {
        let other = self.streams[k].other;
        let fds_seen = self.streams[k].fds_seen.take();
        let mut covered = Vec::new();
        while let Some(a) = self.streams[other]
            .attachments
            .get(self.streams[other].next_attachment)
        {
            if a.offset >= end {
                break;
            }
            assert!(
                a.offset >= start,
                "stream {k}: an attachment's byte passed unnoticed"
            );
            covered.push(self.streams[other].next_attachment);
            self.streams[other].next_attachment += 1;
        }
        // One read brings at most one message's fds: the kernel ends a
        // read after the bytes that carried fds.
        assert!(
            covered.len() <= 1,
            "stream {k}: one DATA past attachments {covered:?}"
        );
        if let Some((a, _)) = fds_seen {
            assert!(
                covered.first() == Some(&a),
                "stream {k}: FDS event not followed by the DATA of its byte (covered {covered:?}, fds of {a})"
            );
        }
        // Every pipe of the attachments covered that was not received is
        // closed by now (not accepted, or past the number accepted); those
        // received and not taken are closed when the call is over.
        for a in covered {
            let taken_from = if fds_seen.map(|(s, _)| s) == Some(a) {
                fds_seen.unwrap().1
            } else {
                0
            };
            let pipes = self.streams[other].attachments[a].pipes.clone();
            for (i, &p) in pipes.iter().enumerate() {
                if i >= taken_from {
                    self.assert_dead(p, "not accepted or past the number accepted");
                } else if !self.pipes[p].taken {
                    self.closed_after_call.push(p);
                }
            }
        }
    }

    /// Takes a random number of what `take_fds` gives stream `k` now: the
    /// fds of its FDS events handed out and not taken, in order. `events`
    /// are those events, (peer's attachment, fds in the event): one from a
    /// callback; with evl_stream_poll, every one of the stream in the batch
    /// (the library hands out the whole batch at once). Checks each fd is
    /// the next one sent, and that a second take gets exactly the rest.
    fn take(&mut self, k: usize, events: &[(usize, usize)]) {
        let other = self.streams[k].other;
        let expected: Vec<usize> = events
            .iter()
            .flat_map(|&(a, n)| self.streams[other].attachments[a].pipes[..n].to_vec())
            .collect();
        let n = expected.len();
        let want = match self.rng.below(4) {
            0 => 0,
            1 => n,
            2 => n + 5,
            _ => self.rng.range(0, n as u64) as usize,
        };
        let got = self.take_some(k, want, &expected);
        assert_eq!(
            got,
            want.min(n),
            "stream {k}: took {got} of {n} (asked {want})"
        );
        // A later take gets the rest, never the same again.
        if want < n && self.rng.percent(50) {
            let again = self.take_some(k, n + 3, &expected[want..]);
            assert_eq!(again, n - want, "stream {k}: the rest of the fds");
        }
    }

    /// One evl_stream_take_fds of up to `want`; each fd must be the next of
    /// `expected`. Returns how many came.
    fn take_some(&mut self, k: usize, want: usize, expected: &[usize]) -> usize {
        let mut out = vec![-1; want.max(1)];
        // SAFETY: the loop is live; `out` has room for `want`.
        let got = unsafe {
            evl_stream_take_fds(self.lp, self.streams[k].id, out.as_mut_ptr(), want as i32)
        };
        trace(|| format!("{} stream {k} take {want} -> {got}", self.where_()));
        assert!(
            got >= 0 && got as usize <= want,
            "stream {k}: take {want} -> {got}"
        );
        for (i, &fd) in out[..got as usize].iter().enumerate() {
            let p = *self
                .by_inode
                .get(&inode(fd))
                .unwrap_or_else(|| panic!("stream {k}: took an fd that is no pipe sent"));
            assert_eq!(
                Some(&p),
                expected.get(i),
                "stream {k}: fd {i} taken is not the next one sent"
            );
            assert!(!self.pipes[p].taken, "pipe {p}: taken twice");
            self.pipes[p].taken = true;
            // SAFETY: F_GETFD on an fd we own.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            assert_eq!(
                flags,
                libc::FD_CLOEXEC,
                "a received fd without close-on-exec"
            );
            self.held.push(fd);
            count(1, 1);
        }
        got as usize
    }

    fn assert_dead(&mut self, p: usize, why: &str) {
        if self.pipes[p].taken {
            return;
        }
        assert!(
            !writer_alive(self.pipes[p].read_end),
            "pipe {p}: its fd is still open ({why})"
        );
        if !self.pipes[p].dead {
            self.pipes[p].dead = true;
            count(2, 1);
        }
    }

    // ---- operations ---------------------------------------------------------

    fn write(&mut self, with_fds: bool) {
        let Some(k) = self.pick() else { return };
        let len = match self.rng.below(8) {
            0..=4 => self.rng.range(1, 2000) as usize,
            5 | 6 => self.rng.range(2000, 100_000) as usize,
            _ => self.rng.range(100_000, 400_000) as usize,
        };
        let bytes = self.rng.bytes(len);
        let id = self.streams[k].id;
        if !with_fds {
            // SAFETY: the loop is live; the bytes are valid.
            let rc = unsafe { evl_stream_write(self.lp, id, bytes.as_ptr().cast(), len) };
            trace(|| format!("{} stream {k} write {len} -> {rc}", self.where_()));
            assert_eq!(rc, 0, "stream {k}: write");
            self.streams[k].sent.extend_from_slice(&bytes);
            return;
        }
        let n = match self.rng.below(6) {
            0..=3 => self.rng.range(1, 3) as usize,
            4 => self.rng.range(4, 20) as usize,
            _ => EVL_MAX_FDS as usize,
        };
        let mut fds = Vec::new();
        let mut pipes = Vec::new();
        for _ in 0..n {
            let (r, w) = pipe();
            let p = self.pipes.len();
            self.by_inode.insert(inode(w), p);
            self.pipes.push(Passed {
                read_end: r,
                taken: false,
                dead: false,
            });
            fds.push(w);
            pipes.push(p);
        }
        // SAFETY: the loop is live; the bytes and fds are valid.
        let rc = unsafe {
            evl_stream_write_fds(
                self.lp,
                id,
                bytes.as_ptr().cast(),
                len,
                fds.as_ptr(),
                n as i32,
            )
        };
        trace(|| {
            format!(
                "{} stream {k} write {len} with {n} fds -> {rc}",
                self.where_()
            )
        });
        assert_eq!(rc, 0, "stream {k}: write_fds");
        // The caller's own copies: closed at once (the stream holds its own).
        for fd in fds {
            close(fd);
        }
        count(0, n as u64);
        let s = &mut self.streams[k];
        s.attachments.push(Attachment {
            offset: s.sent.len(),
            pipes,
        });
        s.sent.extend_from_slice(&bytes);
    }

    fn op(&mut self) {
        let w = self.where_();
        match self.rng.weighted(&[2, 8, 6, 3, 3, 2, 3]) {
            0 => self.open_pair(),
            1 => self.write(false),
            2 => self.write(true),
            3 => {
                let Some(k) = self.pick() else { return };
                let max = [0, 1, 3, 253][self.rng.below(4) as usize];
                // SAFETY: the loop is live.
                let rc = unsafe { evl_stream_accept_fds(self.lp, self.streams[k].id, max) };
                trace(|| format!("{w} stream {k} accept {max} -> {rc}"));
                assert_eq!(rc, 0, "stream {k}: accept_fds");
                self.streams[k].accept_max = max as usize;
            }
            4 => {
                let Some(k) = self.pick() else { return };
                let pause = self.rng.percent(50);
                self.pause_or_resume(k, pause);
            }
            5 => {
                // The application closes fds it took.
                if !self.held.is_empty() {
                    let i = self.rng.below(self.held.len() as u64) as usize;
                    close(self.held.swap_remove(i));
                }
            }
            _ => {
                if self.rng.percent(80) {
                    return;
                }
                // A stream aborts: what its peer sent and it did not read,
                // and what it had queued, ends with it.
                let Some(k) = self.pick() else { return };
                // SAFETY: the loop is live.
                let rc = unsafe { evl_stream_abort(self.lp, self.streams[k].id) };
                trace(|| format!("{w} stream {k} abort -> {rc}"));
                assert_eq!(rc, 0, "stream {k}: abort");
                self.streams[k].aborted = true;
            }
        }
    }

    fn pause_or_resume(&mut self, k: usize, pause: bool) {
        let w = self.where_();
        let id = self.streams[k].id;
        // SAFETY: the loop is live.
        let rc = unsafe {
            if pause {
                evl_stream_pause(self.lp, id)
            } else {
                evl_stream_resume(self.lp, id)
            }
        };
        trace(|| {
            format!(
                "{w} stream {k} {} -> {rc}",
                if pause { "pause" } else { "resume" }
            )
        });
        assert_eq!(rc, 0, "stream {k}: pause/resume");
        let call = self.call;
        let s = &mut self.streams[k];
        if pause {
            s.paused.get_or_insert(call);
        } else {
            s.paused = None;
        }
    }

    /// Now and then, pauses the stream an event was of: events of it read
    /// with this one (an FDS and its DATA behind a DRAINED) may still wait
    /// in the library, and must not come until the resume.
    fn maybe_pause_after(&mut self, e: &evl_stream_event) {
        let Some(&k) = self.by_id.get(&e.stream) else {
            return;
        };
        let alive = |s: &Stream| s.closed.is_none() && !s.aborted;
        let s = &self.streams[k];
        let percent = if e.kind == EVL_STREAM_DRAINED { 50 } else { 10 };
        if !self.finishing && alive(s) && alive(&self.streams[s.other]) && self.rng.percent(percent)
        {
            self.pause_or_resume(k, true);
        }
    }

    /// After a call: what had to be closed by its end is.
    fn after_call(&mut self) {
        for p in std::mem::take(&mut self.closed_after_call) {
            self.assert_dead(p, "received, not taken, and its event is over");
        }
    }
}

// ---- the driver --------------------------------------------------------------

fn iteration(timeout: i32) {
    let batch = with_world(|w| {
        w.call += 1;
        w.batch
    });
    let lp = with_world(|w| w.lp);
    if !batch {
        // SAFETY: the loop is live; no borrow of the world is held.
        unsafe { model::run_once(lp, timeout) };
        with_world(|w| w.after_call());
        return;
    }
    let max = with_world(|w| w.rng.range(1, 16)) as usize;
    // SAFETY: the loop is live.
    let events = unsafe { model::stream_poll(lp, timeout, max) };
    let n = events.len();
    with_world(|w| {
        // The previous poll's events are over now.
        w.after_call();
        for e in &events {
            w.on_event(e);
        }
        // The batch's fds, taken stream by stream.
        let batch_fds = std::mem::take(&mut w.batch_fds);
        let mut streams: Vec<usize> = Vec::new();
        for &(k, _, _) in &batch_fds {
            if !streams.contains(&k) {
                streams.push(k);
            }
        }
        for k in streams {
            let of_k: Vec<(usize, usize)> = batch_fds
                .iter()
                .filter(|e| e.0 == k)
                .map(|&(_, a, n)| (a, n))
                .collect();
            w.take(k, &of_k);
        }
        if n == max {
            // Events may wait behind a full array.
            w.maybe_pause_after(&events[max - 1]);
        }
        // Closed by the next poll, not before: check after it.
        let due = std::mem::take(&mut w.closed_after_call);
        if !w.finishing {
            for _ in 0..n.min(3) {
                w.op();
            }
        }
        w.closed_after_call.extend(due);
    });
}

/// Streams resume and accept fds; everything sent arrives; then every
/// stream closes, the loop is freed, and no write end is left open.
fn finish(baseline: usize) {
    with_world(|w| {
        w.finishing = true;
        for k in 0..w.streams.len() {
            let s = &w.streams[k];
            if s.closed.is_some() || s.aborted {
                continue;
            }
            // SAFETY: the loop is live.
            unsafe { assert_eq!(evl_stream_resume(w.lp, s.id), 0) };
            w.streams[k].paused = None;
        }
    });
    let give_up = model::now_ns() + 15_000_000_000;
    loop {
        let done = with_world(|w| {
            (0..w.streams.len()).all(|k| {
                let s = &w.streams[k];
                let o = &w.streams[s.other];
                s.aborted || o.aborted || s.closed.is_some() || s.got == o.sent.len()
            })
        });
        if done {
            break;
        }
        assert!(model::now_ns() < give_up, "after 15 s: bytes still missing");
        iteration(5);
    }
    iteration(0);
    iteration(0);
    with_world(|w| {
        // SAFETY: the loop is live and not running: freeing it closes every
        // stream, and with them whatever fds they held, and the fds of the
        // last poll's events not taken.
        assert_eq!(unsafe { evl_loop_free(w.lp) }, 0);
        w.after_call();
        for fd in w.held.drain(..) {
            close(fd);
        }
        for (p, pipe) in w.pipes.iter().enumerate() {
            assert!(
                !writer_alive(pipe.read_end),
                "pipe {p}: a write end outlived everything"
            );
            close(pipe.read_end);
        }
    });
    assert_eq!(open_fds(), baseline, "fds left open after the seed");
}

fn one_seed(seed: u64, batch: bool) -> u64 {
    let baseline = open_fds();
    WORLD.with(|w| *w.borrow_mut() = Some(World::new(seed, batch)));
    let steps = steps_per_seed(100);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        with_world(|w| w.open_pair());
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
        finish(baseline);
    }));
    let world = WORLD.with(|w| w.borrow_mut().take());
    if let Err(panic) = result {
        if let Some(w) = world {
            for p in w.pipes {
                // SAFETY: our own fd.
                unsafe { libc::close(p.read_end) };
            }
            for fd in w.held {
                // SAFETY: our own fd.
                unsafe { libc::close(fd) };
            }
        }
        std::panic::resume_unwind(panic);
    }
    steps
}

/// The fd counts are the process's: the tests take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One test, both modes in turn (see ONE_AT_A_TIME).
#[test]
fn fds_model() {
    let _turn = one_at_a_time();
    for batch in [false, true] {
        SEEN.with(|s| *s.borrow_mut() = [0; 4]);
        run_seeds("model_fds", 40, |seed| one_seed(seed, batch));
        let [passed, taken, closed, events] = SEEN.with(|s| *s.borrow());
        eprintln!(
            "model_fds ({}): {passed} fds passed, {taken} taken, {closed} seen closed by the library, \
             {events} FDS events",
            if batch { "batch" } else { "callbacks" }
        );
        let counts = [
            ("fds passed", passed),
            ("fds taken", taken),
            ("fds closed by the library", closed),
            ("FDS events", events),
        ];
        model::assert_coverage("model_fds", &counts);
    }
}

/// sendmsg of `bytes` with `fds` attached (SCM_RIGHTS) on a raw socket.
fn send_with_fds(fd: RawFd, bytes: &[u8], fds: &[RawFd]) {
    let fds_len = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(fds_len as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: msghdr is plain data; the fields set point at live buffers
    // (`iov`, `control`, sized as said), and the control message written
    // fits in `control` (CMSG_SPACE of its payload).
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(fds_len as u32) as usize;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast(), fds.len());
        let sent = libc::sendmsg(fd, &msg, 0);
        assert_eq!(sent, bytes.len() as isize, "sendmsg");
    }
}

/// A stream `b` on a loop of its own over a socket pair whose other end
/// (`raw`) the test holds, accepting fds, with an FDS event (a pipe's
/// write end, whose read end is `read_end`) and its DATA ("first")
/// waiting in the library behind b's DRAINED, which a poll of one event
/// handed out: b's queue went out in the readiness that read them.
struct FdsBehindDrained {
    lp: *mut evl_loop,
    raw: RawFd,
    b: u64,
    read_end: RawFd,
}

impl FdsBehindDrained {
    fn new() -> FdsBehindDrained {
        let (raw, fd) = socketpair();
        let mut lp = std::ptr::null_mut();
        let mut b = 0;
        // SAFETY: plain calls on a loop of our own; every pointer is valid.
        unsafe {
            assert_eq!(evl_loop_new(&mut lp), 0);
            assert_eq!(evl_stream_open(lp, fd, None, 7 as *mut c_void, &mut b), 0);
            assert_eq!(evl_stream_accept_fds(lp, b, 4), 0);
            // b writes until a little waits in its queue: the kernel's
            // buffer is full, the queue's rest goes in one write once read.
            let chunk = [b'w'; 4096];
            let mut queued = 0usize;
            while queued == 0 {
                assert_eq!(
                    evl_stream_write(lp, b, chunk.as_ptr().cast(), chunk.len()),
                    0
                );
                assert_eq!(evl_stream_queued(lp, b, &mut queued), 0);
            }
            // The peer sends bytes with a pipe's write end, then reads all it can.
            let (read_end, write_end) = pipe();
            send_with_fds(raw, b"first", &[write_end]);
            close(write_end);
            let mut sink = vec![0u8; 1 << 16];
            while model::read(raw, &mut sink).is_ok_and(|n| n > 0) {}
            let mut events = [model::NO_STREAM_EVENT; 1];
            assert_eq!(evl_stream_poll(lp, 1000, events.as_mut_ptr(), 1), 1);
            assert_eq!(events[0].kind, EVL_STREAM_DRAINED, "the queue went first");
            FdsBehindDrained {
                lp,
                raw,
                b,
                read_end,
            }
        }
    }

    /// One evl_stream_poll of up to `max` events.
    fn poll(&self, timeout: i32, max: usize) -> Vec<evl_stream_event> {
        // SAFETY: the loop is live.
        unsafe { model::stream_poll(self.lp, timeout, max) }
    }

    /// Frees the loop, closes `raw`; the read end is the caller's to close.
    fn free(self) -> RawFd {
        // SAFETY: the loop is live and not running.
        assert_eq!(unsafe { evl_loop_free(self.lp) }, 0);
        close(self.raw);
        self.read_end
    }
}

/// An FDS event waiting in the library when its stream is paused (as
/// `FdsBehindDrained` makes it) does not come while it is paused, nor its
/// DATA: after the resume they come in the order received, FDS just
/// before its DATA, with the fds that were sent; and none is left open.
#[test]
fn pause_holds_fds_received_before_it() {
    let _turn = one_at_a_time();
    let before = open_fds();
    let w = FdsBehindDrained::new();
    // SAFETY: the loop is live.
    assert_eq!(unsafe { evl_stream_pause(w.lp, w.b) }, 0);
    let (second_read, second_write) = pipe();
    send_with_fds(w.raw, b"second", &[second_write]);
    close(second_write);
    for _ in 0..10 {
        let kinds: Vec<u32> = w.poll(5, 8).iter().map(|e| e.kind).collect();
        assert!(kinds.is_empty(), "events of a paused stream: {kinds:?}");
    }
    // Resumed: FDS, DATA, FDS, DATA, each FDS with the pipe sent (one
    // event a poll: take_fds takes the fds of every FDS handed out).
    // SAFETY: the loop is live.
    assert_eq!(unsafe { evl_stream_resume(w.lp, w.b) }, 0);
    let mut seen = Vec::new();
    for _ in 0..100 {
        for e in w.poll(10, 1) {
            assert_eq!(e.stream, w.b);
            match e.kind {
                EVL_STREAM_FDS => {
                    assert_eq!(e.len, 1);
                    let mut got = [-1; 4];
                    // SAFETY: the loop is live; `got` has room for 4.
                    let n = unsafe { evl_stream_take_fds(w.lp, w.b, got.as_mut_ptr(), 4) };
                    assert_eq!(n, 1);
                    seen.push(format!("fds {}", inode(got[0])));
                    close(got[0]);
                }
                EVL_STREAM_DATA => {
                    // SAFETY: the bytes are valid until the next poll.
                    let data = unsafe { std::slice::from_raw_parts(e.data, e.len) };
                    seen.push(String::from_utf8(data.to_vec()).unwrap());
                }
                other => panic!("event {other}"),
            }
        }
        if seen.len() >= 4 {
            break;
        }
    }
    let expected = [
        format!("fds {}", inode(w.read_end)),
        "first".to_string(),
        format!("fds {}", inode(second_read)),
        "second".to_string(),
    ];
    assert_eq!(seen, expected);
    close(w.free());
    close(second_read);
    assert_eq!(open_fds(), before, "an fd left open");
}

/// A paused stream's held FDS event that is never handed out (the stream
/// aborted while paused, or the loop freed) has its fds closed.
#[test]
fn held_fds_close_with_their_stream() {
    let _turn = one_at_a_time();
    for abort_first in [true, false] {
        let w = FdsBehindDrained::new();
        // SAFETY: the loop is live.
        assert_eq!(unsafe { evl_stream_pause(w.lp, w.b) }, 0);
        assert!(writer_alive(w.read_end), "held, the fd is open");
        if abort_first {
            // SAFETY: the loop is live.
            assert_eq!(unsafe { evl_stream_abort(w.lp, w.b) }, 0);
            let kinds: Vec<u32> = w.poll(1000, 1).iter().map(|e| e.kind).collect();
            assert_eq!(kinds, [EVL_STREAM_CLOSED]);
            assert!(!writer_alive(w.read_end), "aborted, its held fd is closed");
        }
        let read_end = w.free();
        assert!(!writer_alive(read_end), "the loop freed, no copy is open");
        close(read_end);
    }
}
