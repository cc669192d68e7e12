//! Child processes: spawned with `posix_spawn`, their stdio pipes given
//! back as streams, their end read from their pidfd when epoll says it is
//! readable, and reaped then (`waitid` on that pidfd: never any other
//! child). One `Exited` per child; its id dies with it.
//!
//! Without pidfds (a kernel before 5.3, or valgrind 3.19, which does not
//! know pidfd_open), a thread per child waits for that one pid without
//! reaping it (WNOWAIT) and posts `ProcessEnded`; the loop then reaps it as
//! above. Either way the child is reaped only on the loop's thread, once
//! its event is made, so until then its pid cannot be reused and a kill
//! reaches it and no other process.
//!
//! Freeing the loop kills (SIGKILL) and reaps every child still running,
//! as asyncio's transports do when closed: no zombie is left. In a child
//! after fork the parent's children cannot be waited for: each gets an
//! `Exited` with ECHILD there, its pidfd closed, while the parent goes on
//! watching them.

use std::ffi::{c_char, CString};
use std::os::fd::RawFd;
use std::thread::JoinHandle;

use super::{JobEvent, JobOwner, Jobs, ProcessId};
use crate::stream::{Owner, StreamId, StreamLoop};
use crate::sys::{self, ChildStdio, Errno, Fd, READ};

/// What a child's stdin, stdout or stderr is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stdio {
    /// The parent's own.
    Inherit,
    /// /dev/null.
    Null,
    /// A pipe whose other end is a stream of the loop (write-only for
    /// stdin: shutting it down is the child's end-of-file).
    Pipe,
    /// This fd of the caller's (it stays the caller's).
    Fd(RawFd),
    /// For stderr only: the same as the child's stdout (2>&1).
    Stdout,
}

/// A spawn: what runs, where, with what.
#[derive(Clone, Debug)]
pub struct SpawnOptions {
    /// The program: a path if it has a '/', else searched in PATH.
    pub file: CString,
    /// argv, `argv[0]` included (at least it).
    pub args: Vec<CString>,
    /// The environment ("NAME=value"); `None`: the parent's.
    pub env: Option<Vec<CString>>,
    /// The working directory; `None`: the parent's.
    pub cwd: Option<CString>,
    pub stdio: [Stdio; 3],
    /// setsid: a session of its own, no controlling terminal.
    pub new_session: bool,
    /// setpgid(0, 0): a process group of its own.
    pub new_process_group: bool,
    /// Every fd above 2 closed in the child, close-on-exec or not.
    pub close_fds: bool,
}

/// A child just spawned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spawned {
    pub id: ProcessId,
    pub pid: i32,
    /// The streams of its stdin, stdout and stderr pipes (0: not a pipe).
    pub stdio: [StreamId; 3],
}

/// How a child ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitStatus {
    /// Its exit status (0 to 255), or -1 (a signal ended it, or unknown).
    pub code: i32,
    /// The signal that ended it, or 0.
    pub signal: i32,
    pub core_dumped: bool,
    /// 0, or why the status is unknown: ECHILD when the child was not this
    /// process's to wait for (in a child after fork, or reaped by someone
    /// else, as with SIGCHLD ignored).
    pub error: Errno,
}

pub(super) struct Process<D> {
    pid: i32,
    watch: Watch,
    data: D,
}

/// How the loop learns that a child has ended.
enum Watch {
    /// Its pidfd, in the epoll set.
    Pidfd(RawFd),
    /// A thread waiting for its pid (no pidfds here).
    Waiter(JoinHandle<()>),
    /// Not at all: it is not this process's child (in a child after fork,
    /// or reaped by someone else already); its `ProcessOrphaned` is posted.
    GivenUp,
}

impl<D: Copy + Default> StreamLoop<D> {
    /// Spawns a child. Its exit comes as `JobEvent::Exited` with
    /// `exit_data`; its pipes' streams start with `stream_data`.
    ///
    /// Errors: EINVAL for no `args` or `Stdio::Stdout` other than for
    /// stderr; those of finding the program (ENOENT, EACCES), of making
    /// the pipes (EMFILE...), of posix_spawn (glibc reports a failed exec:
    /// ENOENT, EACCES, ENOEXEC, E2BIG...; a bad `Stdio::Fd` gives EBADF),
    /// and ENOSYS on a kernel without pidfds (before 5.3). On error no
    /// child is left and every fd made is closed.
    pub fn spawn(
        &mut self,
        options: &SpawnOptions,
        exit_data: D,
        stream_data: D,
    ) -> Result<Spawned, Errno>
    where
        D: Send + 'static,
    {
        if options.args.is_empty() {
            return Err(libc::EINVAL);
        }
        let path = sys::find_program(&options.file)?;
        let mut parent_ends: [Option<Fd>; 3] = [None, None, None];
        let mut child_ends = Vec::new();
        let mut stdio = [ChildStdio::Inherit; 3];
        for (i, wanted) in options.stdio.iter().enumerate() {
            stdio[i] = match *wanted {
                Stdio::Inherit => ChildStdio::Inherit,
                Stdio::Null => ChildStdio::Null,
                Stdio::Fd(fd) if fd < 0 => return Err(libc::EBADF),
                Stdio::Fd(fd) => ChildStdio::Fd(fd),
                Stdio::Stdout if i == 2 => ChildStdio::Stdout,
                Stdio::Stdout => return Err(libc::EINVAL),
                Stdio::Pipe => {
                    let (read, write) = sys::pipe()?;
                    let (parent, child) = if i == 0 { (write, read) } else { (read, write) };
                    let raw = child.raw();
                    child_ends.push(child);
                    parent_ends[i] = Some(parent);
                    ChildStdio::Fd(raw)
                }
            };
        }
        let argv = pointers(&options.args);
        let envp = options.env.as_ref().map(|env| pointers(env));
        let pid = sys::spawn(&sys::Spawn {
            path: &path,
            argv: &argv,
            envp: envp.as_deref(),
            cwd: options.cwd.as_deref(),
            stdio,
            new_session: options.new_session,
            new_process_group: options.new_process_group,
            close_fds: options.close_fds,
        })?;
        drop(child_ends);
        let id = self.watch_child(pid, exit_data)?;
        let mut streams = [0; 3];
        for (i, end) in parent_ends.iter_mut().enumerate() {
            let Some(fd) = end.take() else {
                continue;
            };
            match self.open(fd.raw(), stream_data) {
                Ok(stream) => {
                    fd.into_raw(); // now the stream's
                    streams[i] = stream;
                }
                Err(e) => {
                    streams.iter().for_each(|&s| self.discard_new_stream(s));
                    self.unwatch_child(id);
                    return Err(e);
                }
            }
        }
        Ok(Spawned {
            id,
            pid,
            stdio: streams,
        })
    }

    /// A record for child `pid`, watched through its pidfd in the epoll set
    /// (or a waiter thread). On error the child is killed and reaped.
    fn watch_child(&mut self, pid: i32, data: D) -> Result<ProcessId, Errno>
    where
        D: Send + 'static,
    {
        let pidfd = match sys::pidfd_open(pid) {
            Ok(_) if self.jobs().no_pidfds => None,
            Ok(pidfd) => Some(pidfd),
            Err(libc::ENOSYS) => None,
            // Ended and reaped already (SIGCHLD ignored): its status is
            // lost, which its `Exited` says (ECHILD).
            Err(libc::ESRCH) => {
                let id = self.jobs().processes.insert(Process {
                    pid,
                    watch: Watch::GivenUp,
                    data,
                });
                self.post_job(JobOwner::ProcessOrphaned(id));
                return Ok(id);
            }
            Err(e) => {
                sys::kill_and_reap_pid(pid);
                return Err(e);
            }
        };
        let id = self.jobs().processes.insert(Process {
            pid,
            watch: Watch::GivenUp,
            data,
        });
        let watch = match pidfd {
            Some(pidfd) => {
                let owner = Owner::Job(JobOwner::Process(id));
                self.core
                    .register(pidfd.raw(), READ, owner)
                    .map(|()| Watch::Pidfd(pidfd.into_raw()))
            }
            None => self.start_waiter(pid, id).map(Watch::Waiter),
        };
        let watch = match watch {
            Ok(watch) => watch,
            Err(e) => {
                self.jobs().processes.remove(id);
                sys::kill_and_reap_pid(pid);
                return Err(e);
            }
        };
        if let Some(p) = self.jobs().processes.get_mut(id) {
            p.watch = watch;
        }
        Ok(id)
    }

    /// A thread that waits for child `pid` to end (without reaping it) and
    /// posts `ProcessEnded(id)`.
    fn start_waiter(&self, pid: i32, id: ProcessId) -> Result<JoinHandle<()>, Errno>
    where
        D: Send + 'static,
    {
        let handle = self.core.handle();
        sys::with_signals_blocked(|| {
            std::thread::Builder::new()
                .name("evloop-child".into())
                .spawn(move || {
                    let _ = sys::wait_pid_ended(pid);
                    handle.post(Owner::Job(JobOwner::ProcessEnded(id)));
                })
        })
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EAGAIN))
    }

    /// Undoes `watch_child`: the child is killed and reaped, its record
    /// and watch gone.
    fn unwatch_child(&mut self, id: ProcessId) {
        let Some(p) = self.jobs.as_mut().and_then(|j| j.processes.remove(id)) else {
            return;
        };
        if let Watch::Pidfd(pidfd) = p.watch {
            let _ = self.core.unregister(pidfd);
        }
        end_child(p.pid, p.watch);
    }

    /// Takes back a stream `spawn` made and has not given out: no event.
    fn discard_new_stream(&mut self, id: StreamId) {
        if let Some(s) = self.streams.remove(id) {
            let _ = self.core.unregister(s.fd);
            sys::close(s.fd);
        }
    }

    /// Watches the children spawned from now on as where pidfds are
    /// missing (a waiter thread each), for tests of that path.
    #[doc(hidden)]
    pub fn use_waiter_threads(&mut self, on: bool) {
        self.jobs().no_pidfds = on;
    }

    /// Sends `signo` (0: only checks the child is there) to a child.
    /// ENOENT for an unknown child or one whose `Exited` was handed out;
    /// EINVAL for a bad signal; ESRCH for one given up after a fork. A
    /// child that has ended but whose `Exited` is still to come takes the
    /// signal without effect.
    pub fn kill_process(&mut self, id: ProcessId, signo: i32) -> Result<(), Errno> {
        if !(0..=64).contains(&signo) {
            return Err(libc::EINVAL);
        }
        let p = self
            .jobs
            .as_ref()
            .and_then(|j| j.processes.get(id))
            .ok_or(libc::ENOENT)?;
        match p.watch {
            Watch::Pidfd(pidfd) => sys::pidfd_send_signal(pidfd, signo),
            // Not reaped before its `Exited` is made: the pid is still its.
            Watch::Waiter(_) => sys::kill_pid(p.pid, signo),
            Watch::GivenUp => Err(libc::ESRCH),
        }
    }

    /// A child's pid (ENOENT once its `Exited` was handed out).
    pub fn process_pid(&self, id: ProcessId) -> Result<i32, Errno> {
        self.jobs
            .as_ref()
            .and_then(|j| j.processes.get(id))
            .map(|p| p.pid)
            .ok_or(libc::ENOENT)
    }

    /// A child's pidfd is readable, or its waiter posted `ProcessEnded`:
    /// it has ended. Reaped, its one event.
    pub(super) fn on_child_ended(&mut self, id: ProcessId) -> Option<JobEvent<D>> {
        let jobs = self.jobs.as_mut()?;
        let p = jobs.processes.get(id)?;
        let reaped = match p.watch {
            Watch::Pidfd(pidfd) => sys::wait_pidfd(pidfd, false),
            Watch::Waiter(_) => sys::wait_pid(p.pid, false),
            Watch::GivenUp => return None,
        };
        let status = match reaped {
            Ok(None) => return None,
            Ok(Some(exit)) => ExitStatus {
                code: exit.code,
                signal: exit.signal,
                core_dumped: exit.core_dumped,
                error: 0,
            },
            Err(error) => ExitStatus {
                code: -1,
                error,
                ..ExitStatus::default()
            },
        };
        let p = jobs.processes.remove(id)?;
        match p.watch {
            Watch::Pidfd(pidfd) => {
                let _ = self.core.unregister(pidfd);
                sys::close(pidfd);
            }
            // It has posted and is ending.
            Watch::Waiter(thread) => {
                let _ = thread.join();
            }
            Watch::GivenUp => {}
        }
        Some(JobEvent::Exited {
            id,
            pid: p.pid,
            status,
            data: p.data,
        })
    }

    /// The `Exited` of a child this process cannot wait for.
    pub(super) fn on_process_orphaned(&mut self, id: ProcessId) -> Option<JobEvent<D>> {
        let p = self.jobs.as_mut()?.processes.remove(id)?;
        Some(JobEvent::Exited {
            id,
            pid: p.pid,
            status: ExitStatus {
                code: -1,
                error: libc::ECHILD,
                ..ExitStatus::default()
            },
            data: p.data,
        })
    }

    /// In a child after fork: the parent's children are not ours. Their
    /// pidfds close here (the parent keeps its own); their waiter threads
    /// did not survive the fork.
    pub(super) fn orphan_children(&mut self) {
        let Some(jobs) = self.jobs.as_mut() else {
            return;
        };
        let ids: Vec<ProcessId> = jobs
            .processes
            .iter()
            .map(|(slot, _)| jobs.processes.id_of(slot))
            .collect();
        for id in ids {
            let Some(p) = self.jobs.as_mut().and_then(|j| j.processes.get_mut(id)) else {
                continue;
            };
            match std::mem::replace(&mut p.watch, Watch::GivenUp) {
                Watch::Pidfd(pidfd) => {
                    let _ = self.core.unregister(pidfd);
                    sys::close(pidfd);
                }
                Watch::Waiter(thread) => std::mem::forget(thread),
                // Its ProcessOrphaned is queued already.
                Watch::GivenUp => continue,
            }
            self.post_job(JobOwner::ProcessOrphaned(id));
        }
    }
}

impl<D> Jobs<D> {
    /// Kills and reaps every child still watched (the loop is being
    /// freed). In a child of a fork that did not call `reinit_after_fork`
    /// they are the parent's: only our copies of their pidfds close.
    pub(super) fn kill_children(&mut self) {
        let forked = self.is_forked();
        let slots: Vec<u32> = self.processes.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            let id = self.processes.id_of(slot);
            let Some(p) = self.processes.remove(id) else {
                continue;
            };
            match (forked, p.watch) {
                (false, watch) => end_child(p.pid, watch),
                (true, Watch::Pidfd(pidfd)) => sys::close(pidfd),
                (true, Watch::Waiter(thread)) => std::mem::forget(thread),
                (true, Watch::GivenUp) => {}
            }
        }
    }
}

/// Kills and reaps a child, and ends its watch.
fn end_child(pid: i32, watch: Watch) {
    match watch {
        Watch::Pidfd(pidfd) => {
            sys::kill_and_reap(pidfd);
            sys::close(pidfd);
        }
        Watch::Waiter(thread) => {
            sys::kill_and_reap_pid(pid);
            // Reaped: its waiter returns at once.
            let _ = thread.join();
        }
        Watch::GivenUp => {}
    }
}

/// The NULL-terminated array of pointers to `strings`, for exec.
fn pointers(strings: &[CString]) -> Vec<*const c_char> {
    let mut out: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
    out.push(std::ptr::null());
    out
}
