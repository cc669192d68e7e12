//! The loop in the child of a fork: what `reinit_after_fork` keeps.
//!
//! After fork() the child's loop shares its epoll set with the parent's,
//! and its table still lists every registration the parent had. Some of
//! those had ended before the fork without `unregister` (their fd closed,
//! the number perhaps reused by another file): the child must drop them,
//! or it would call their callbacks for whatever now has the number. The
//! others must be kept, whatever the parent does with its copies after the
//! fork: a pre-fork server's parent hands a connection to the child, then
//! unregisters and closes its own copy, and the child may call
//! `evl_loop_fork` only later.
//!
//! The kernel knew at the instant of the fork: the set holds an entry for
//! each registration whose file was still open, under the registration's
//! token. But once fork() has returned, the set is the parent's as much as
//! the child's, and asking it then (as this loop once did, adding each fd
//! to see whether the kernel answered EEXIST) hears what the parent has
//! done since. So the set is read at the instant of the fork: a
//! `pthread_atfork` prepare handler lists each live loop's set from
//! /proc/self/fdinfo (read-only: tokens, numbers, and which file each entry
//! is), and the child inherits that snapshot in its memory. The child keeps
//! a registration whose token is in its snapshot and whose fd still names
//! the same file (fstat: the child may have closed it since), or one made
//! in the child itself since the fork (see `Registration::born`).
//!
//! Why not record each file's identity at `register` instead (fstat then,
//! fstat again in the child): that costs a syscall on the path a server
//! takes for every connection (register and unregister make 2 syscalls
//! and 148 user-space instructions; fstat would be a third, 2 to 3 us on
//! the test VM), and files without an inode of their own (eventfd,
//! timerfd, signalfd) all look alike, so an eventfd closed and its number
//! reused by another would be kept. The snapshot costs nothing until a
//! fork, then one read of /proc per loop: the kernel's listing takes about
//! 1.5 us of CPU per entry (5 us of wall time on the loaded test VM: 2 ms
//! of CPU for 1,000 registrations, 7.5 ms for 5,000; c-examples/
//! bench_fork.c), paid by every fork() of a process with loops, also one
//! that never calls evl_loop_fork. It tells such files apart by the
//! kernel's own entries, and compares identities only to catch what the
//! child did itself, or a registered number closed while its file stayed
//! open elsewhere (a dup, another process), which the loop already
//! documents as needing `unregister` first.
//!
//! Without a snapshot (the child was made without fork()'s handlers, by a
//! raw clone() say, or /proc could not be read at the fork) the child reads
//! the shared set as it is now: right about registrations that ended
//! before the fork, wrong about those the parent has let go since (dropped
//! too). Without /proc at all, it keeps every registration whose fd is
//! open in the child, even one whose number was reused before the fork.
//!
//! The prepare handler never touches a loop (another thread may be running
//! it): it reads the kernel's list through the epoll fd each loop
//! registered here, under a lock held until fork() returns, so that no
//! thread is halfway through that list when the child's copy is made.

use std::cell::RefCell;
use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

use super::iteration::Phase;
use super::registrations::{interest_of, is_registered, token, Registration};
use super::EventLoop;
use crate::sys::{self, Epoll, EpollEntry, Errno, FileId};

/// How many fork()s lie between this process and the one that loaded the
/// library: 0 there, one more in each child (counted by the child handler).
/// A registration made at a depth greater than a snapshot's was made in a
/// child since that snapshot's fork.
static DEPTH: AtomicU32 = AtomicU32::new(0);

/// The fork depth of this process, for `Registration::born`.
#[inline]
pub(super) fn depth() -> u32 {
    DEPTH.load(Ordering::Relaxed)
}

/// A loop's set as it was at a fork.
pub(super) struct Snapshot {
    /// The fork depth of the process it was taken in.
    depth: u32,
    /// The set's entries (tokens and files), sorted by token.
    entries: Vec<(u64, Option<FileId>)>,
}

impl Snapshot {
    fn of(entries: Vec<EpollEntry>, depth: u32) -> Snapshot {
        let mut entries: Vec<_> = entries.into_iter().map(|e| (e.data, e.file)).collect();
        entries.sort_unstable_by_key(|&(token, _)| token);
        Snapshot { depth, entries }
    }

    /// Whether a registration (its token and when it was made) was in the
    /// set, as the file its fd names now.
    fn holds(&self, token: u64, born: u32, now: FileId) -> bool {
        if born > self.depth {
            return true; // made in this child since the fork
        }
        // Entries may share a token: a parent and its child each register
        // after the fork with the same next generation, both into the set
        // they share (seen when there is no snapshot).
        let first = self.entries.partition_point(|&(t, _)| t < token);
        self.entries[first..]
            .iter()
            .take_while(|&&(t, _)| t == token)
            .any(|&(_, file)| file.map_or(true, |file| file == now))
    }
}

/// What the fork handlers know of one loop.
struct Watched {
    id: u64,
    epfd: RawFd,
    /// Taken by the prepare handler, for the child about to be made.
    taken: Option<Snapshot>,
    /// This process's snapshot of the loop's set, while the set is still
    /// shared with the process it was forked from (until reinit_after_fork).
    inherited: Option<Snapshot>,
}

/// Every live loop's epoll fd, for the fork handlers.
static LOOPS: Mutex<Vec<Watched>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static HANDLERS: Once = Once::new();

thread_local! {
    /// The lock on LOOPS, held by the forking thread from the prepare
    /// handler until fork() returns (the guard is dropped in both processes).
    static HELD: RefCell<Option<MutexGuard<'static, Vec<Watched>>>> = const { RefCell::new(None) };
}

fn loops() -> MutexGuard<'static, Vec<Watched>> {
    LOOPS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// In the parent, just before fork(): a snapshot of every set that is the
/// process's own (a set still shared with a parent keeps the snapshot of
/// its own fork, which the new child inherits).
unsafe extern "C" fn prepare() {
    let mut loops = loops();
    // A panic must not unwind into the C library; a loop left without its
    // snapshot falls back (see the module's comment).
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let depth = depth();
        for watched in loops.iter_mut().filter(|w| w.inherited.is_none()) {
            watched.taken = sys::epoll_entries(watched.epfd)
                .ok()
                .map(|entries| Snapshot::of(entries, depth));
        }
    }));
    // (Outside a thread's life, with its locals gone: the lock is let go.)
    let _ = HELD.try_with(|held| *held.borrow_mut() = Some(loops));
}

/// The lock the prepare handler took, in the thread that forked.
fn held() -> Option<MutexGuard<'static, Vec<Watched>>> {
    HELD.try_with(|held| held.borrow_mut().take())
        .ok()
        .flatten()
}

/// In the parent, once fork() has returned: the snapshots were the child's.
unsafe extern "C" fn parent() {
    if let Some(mut loops) = held() {
        for watched in loops.iter_mut() {
            watched.taken = None;
        }
    }
}

/// In the child, once fork() has returned: each snapshot becomes the one
/// of this process.
unsafe extern "C" fn child() {
    DEPTH.fetch_add(1, Ordering::Relaxed);
    if let Some(mut loops) = held() {
        for watched in loops.iter_mut() {
            if let Some(snapshot) = watched.taken.take() {
                watched.inherited = Some(snapshot);
            }
        }
    }
}

/// A loop's entry in the list the fork handlers read; removed on drop.
pub(super) struct ForkWatch {
    id: u64,
}

impl ForkWatch {
    pub(super) fn new(epfd: RawFd) -> ForkWatch {
        HANDLERS.call_once(|| {
            // Without the handlers every child falls back (module comment).
            let _ = sys::at_fork(prepare, parent, child);
        });
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        loops().push(Watched {
            id,
            epfd,
            taken: None,
            inherited: None,
        });
        ForkWatch { id }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Watched) -> T) -> Option<T> {
        loops().iter_mut().find(|w| w.id == self.id).map(f)
    }

    /// The snapshot of this process's fork, if there is one (once).
    fn take_snapshot(&self) -> Option<Snapshot> {
        self.with(|w| w.inherited.take()).flatten()
    }

    /// The loop's set is now `epfd`, its own.
    fn set_epfd(&self, epfd: RawFd) {
        self.with(|w| {
            w.epfd = epfd;
            w.inherited = None;
        });
    }
}

impl Drop for ForkWatch {
    fn drop(&mut self) {
        loops().retain(|w| w.id != self.id);
    }
}

impl<D: Copy + Default> EventLoop<D> {
    /// In a child after `fork()`: new epoll set, doorbell and signalfd, so the
    /// child and the parent stop sharing kernel objects. Registrations that
    /// were current at the fork (and whose fds the child has not closed
    /// since), timers and signal watchers are kept.
    pub fn reinit_after_fork(&mut self) -> Result<(), Errno> {
        if self.phase != Phase::Idle {
            return Err(libc::EBUSY);
        }
        // First drop the registrations that ended, while their numbers
        // cannot have been taken by the new kernel objects made below (a
        // live registration's fd is open, so its number is never given out).
        self.drop_ended_registrations();
        let registrations = &self.registrations;
        let taken = |fd| is_registered(registrations, fd);
        let epoll = Epoll::new(taken)?;
        let doorbell = sys::eventfd_new(taken)?;
        if let Err(e) = epoll.add(doorbell, super::READ, token(0, doorbell)) {
            sys::close(doorbell);
            return Err(e);
        }
        self.signals.reinit(&epoll, taken)?;
        for fd in 0..self.registrations.len() {
            let reg = self.registrations[fd];
            if !reg.is_vacant() {
                epoll.add(fd as RawFd, interest_of(reg.wanted), reg.token)?;
            }
        }
        self.fork_watch.set_epfd(epoll.raw());
        self.epoll = epoll;
        let old = self.shared.doorbell.swap(doorbell, Ordering::AcqRel);
        sys::close(old);
        self.shared.wake_pending.store(false, Ordering::Release);
        self.reinit_deadline_clock()
    }

    /// Drops every registration that had ended at the fork, or whose fd
    /// the child has closed since (see the module's comment).
    fn drop_ended_registrations(&mut self) {
        let snapshot = self.fork_watch.take_snapshot().or_else(|| {
            // No snapshot: the set as it is now (the depth makes no
            // registration "made since": all are looked up).
            let entries = sys::epoll_entries(self.epoll.raw()).ok()?;
            Some(Snapshot::of(entries, u32::MAX))
        });
        for fd in 0..self.registrations.len() {
            let reg = &self.registrations[fd];
            if reg.is_vacant() {
                continue;
            }
            let alive = match sys::file_id(fd as RawFd) {
                Err(_) => false,
                Ok(now) => snapshot
                    .as_ref()
                    .map_or(true, |s| s.holds(reg.token, reg.born, now)),
            };
            if !alive {
                self.registrations[fd] = Registration::vacant();
                self.registered -= 1;
            }
        }
    }
}
