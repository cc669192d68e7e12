//! Child processes: finding a program, spawning it with `posix_spawn`, and
//! watching, signalling and reaping it through its pidfd. Nothing here ever
//! waits for a process it was not named: no `waitpid(-1)`, no SIGCHLD
//! handler, so children the application spawned itself stay its own.

use std::ffi::{c_char, CStr, CString};
use std::os::fd::RawFd;

use super::{check, errno, Fd, SysResult};

/// What a child's stdin, stdout or stderr is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildStdio {
    /// The parent's own.
    Inherit,
    /// /dev/null, opened for reading and writing.
    Null,
    /// This fd of the parent's (a pipe's end, a file, a socket), dup2()ed.
    Fd(RawFd),
    /// For stderr: the same file as the child's stdout (2>&1).
    Stdout,
}

/// A spawn, as `posix_spawn` takes it. The pointer arrays end with NULL
/// and stay valid for the call.
pub struct Spawn<'a> {
    /// A path (see [`find_program`]).
    pub path: &'a CStr,
    pub argv: &'a [*const c_char],
    /// `None`: the parent's environment.
    pub envp: Option<&'a [*const c_char]>,
    pub cwd: Option<&'a CStr>,
    pub stdio: [ChildStdio; 3],
    /// A session of its own (setsid): no controlling terminal.
    pub new_session: bool,
    /// A process group of its own (setpgid(0, 0)).
    pub new_process_group: bool,
    /// Every fd above 2 closed in the child (close-on-exec or not).
    pub close_fds: bool,
}

extern "C" {
    static environ: *const *mut c_char;
}

/// The path `file` names: itself if it has a '/', else the first
/// executable file of that name in a directory of the parent's PATH (as
/// execvp searches it; "/bin:/usr/bin" without PATH, and an empty entry is
/// the current directory). Errors: ENOENT, or EACCES when only files that
/// may not be executed were found.
pub fn find_program(file: &CStr) -> SysResult<CString> {
    let bytes = file.to_bytes();
    if bytes.is_empty() {
        return Err(libc::ENOENT);
    }
    if bytes.contains(&b'/') {
        executable_file(file)?;
        return Ok(file.to_owned());
    }
    let path = std::env::var_os("PATH");
    let path = path
        .as_deref()
        .map(std::os::unix::ffi::OsStrExt::as_bytes)
        .unwrap_or(b"/bin:/usr/bin");
    let mut denied = false;
    for dir in path.split(|&b| b == b':') {
        let dir = if dir.is_empty() { &b"."[..] } else { dir };
        let mut candidate = dir.to_vec();
        candidate.push(b'/');
        candidate.extend_from_slice(bytes);
        let Ok(candidate) = CString::new(candidate) else {
            continue;
        };
        match executable_file(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(libc::EACCES) => denied = true,
            Err(_) => {}
        }
    }
    Err(if denied { libc::EACCES } else { libc::ENOENT })
}

/// Ok if `path` is a file (not a directory) this process may execute.
fn executable_file(path: &CStr) -> SysResult<()> {
    // SAFETY: a NUL-terminated path; stat is plain data, written by the call.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    check(unsafe { libc::stat(path.as_ptr(), &mut st) })?;
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        return Err(libc::EACCES);
    }
    // SAFETY: a NUL-terminated path.
    check(unsafe { libc::access(path.as_ptr(), libc::X_OK) }).map(drop)
}

/// What would make the child fail before its exec, found in the parent:
/// a `cwd` that is not a directory it may enter, a stdio fd that is not
/// open. glibc's posix_spawn reports those too, but only where the child
/// shares the parent's memory until its exec (not under valgrind, which
/// runs it as a fork), and there a failure would leave a child that exits
/// with 127 instead of an error.
fn check_before_spawn(spawn: &Spawn) -> SysResult<()> {
    if let Some(cwd) = spawn.cwd {
        // SAFETY: a NUL-terminated path; stat is plain data, written by the call.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        check(unsafe { libc::stat(cwd.as_ptr(), &mut st) })?;
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(libc::ENOTDIR);
        }
        // SAFETY: a NUL-terminated path.
        check(unsafe { libc::access(cwd.as_ptr(), libc::X_OK) })?;
    }
    for stdio in spawn.stdio {
        if let ChildStdio::Fd(fd) = stdio {
            // SAFETY: plain fcntl; an fd that is not open answers EBADF.
            check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
        }
    }
    Ok(())
}

/// A pipe whose two ends are close-on-exec (and blocking: the child's end
/// is a child's stdio); (read end, write end).
pub fn pipe() -> SysResult<(Fd, Fd)> {
    let mut fds = [0; 2];
    // SAFETY: room for the two fds, which are ours from here on.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok((Fd(fds[0]), Fd(fds[1])))
}

/// The file actions and attributes of one spawn, destroyed on drop.
struct SpawnSetup {
    actions: libc::posix_spawn_file_actions_t,
    attr: libc::posix_spawnattr_t,
    /// Copies of stdio sources below 3, so that setting up one of 0, 1, 2
    /// never overwrites the source of another.
    lifted: Vec<Fd>,
}

impl SpawnSetup {
    fn new() -> SysResult<Box<SpawnSetup>> {
        // Boxed: posix_spawn's objects stay at one address from init to destroy.
        // SAFETY: both are plain data, initialised by the init calls below.
        let mut setup = Box::new(unsafe {
            SpawnSetup {
                actions: std::mem::zeroed(),
                attr: std::mem::zeroed(),
                lifted: Vec::new(),
            }
        });
        // SAFETY: initialises the zeroed object in place.
        let rc = unsafe { libc::posix_spawn_file_actions_init(&mut setup.actions) };
        if rc != 0 {
            return Err(rc);
        }
        // SAFETY: as above.
        let rc = unsafe { libc::posix_spawnattr_init(&mut setup.attr) };
        if rc != 0 {
            // SAFETY: initialised above, destroyed once.
            unsafe { libc::posix_spawn_file_actions_destroy(&mut setup.actions) };
            return Err(rc);
        }
        Ok(setup)
    }

    /// Makes fd `target` of the child what `stdio` says.
    fn stdio(&mut self, target: RawFd, stdio: ChildStdio) -> SysResult<()> {
        let rc = match stdio {
            ChildStdio::Inherit => 0,
            // SAFETY: the actions are initialised; the path is NUL-terminated
            // and static.
            ChildStdio::Null => unsafe {
                libc::posix_spawn_file_actions_addopen(
                    &mut self.actions,
                    target,
                    c"/dev/null".as_ptr(),
                    libc::O_RDWR,
                    0,
                )
            },
            // SAFETY: the actions are initialised; fd 1 is set up before 2.
            ChildStdio::Stdout => unsafe {
                libc::posix_spawn_file_actions_adddup2(&mut self.actions, 1, target)
            },
            ChildStdio::Fd(source) => {
                let source = if source < 3 && source != target {
                    // SAFETY: duplicates the caller's fd into one we own.
                    let copy = check(unsafe { libc::fcntl(source, libc::F_DUPFD_CLOEXEC, 3) })?;
                    self.lifted.push(Fd(copy));
                    copy
                } else {
                    source
                };
                // SAFETY: the actions are initialised. (dup2 onto itself
                // clears close-on-exec, glibc 2.29 on.)
                unsafe { libc::posix_spawn_file_actions_adddup2(&mut self.actions, source, target) }
            }
        };
        if rc != 0 {
            return Err(rc);
        }
        Ok(())
    }

    fn attributes(&mut self, spawn: &Spawn) -> SysResult<()> {
        // The child starts with every signal at its default action and none
        // blocked, whatever the loop (signalfd watchers block signals) or the
        // application (SIGPIPE ignored for pipes) did in the parent.
        let mut flags = libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
        if spawn.new_session {
            flags |= libc::POSIX_SPAWN_SETSID as libc::c_int;
        }
        if spawn.new_process_group {
            flags |= libc::POSIX_SPAWN_SETPGROUP;
        }
        // SAFETY: the sets are plain data, initialised by sigemptyset and
        // sigfillset; the attributes are initialised.
        let rc = unsafe {
            let mut none: libc::sigset_t = std::mem::zeroed();
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigfillset(&mut all);
            let mut rc = libc::posix_spawnattr_setsigmask(&mut self.attr, &none);
            if rc == 0 {
                rc = libc::posix_spawnattr_setsigdefault(&mut self.attr, &all);
            }
            if rc == 0 {
                rc = libc::posix_spawnattr_setpgroup(&mut self.attr, 0);
            }
            if rc == 0 {
                rc = libc::posix_spawnattr_setflags(&mut self.attr, flags as libc::c_short);
            }
            rc
        };
        if rc != 0 {
            return Err(rc);
        }
        Ok(())
    }
}

impl Drop for SpawnSetup {
    fn drop(&mut self) {
        // SAFETY: both were initialised in `new`, and are destroyed once.
        unsafe {
            libc::posix_spawn_file_actions_destroy(&mut self.actions);
            libc::posix_spawnattr_destroy(&mut self.attr);
        }
    }
}

/// Starts `spawn.path` and returns its pid. glibc reports a failed exec
/// here (ENOENT, EACCES, ENOEXEC...), having reaped the child itself.
pub fn spawn(spawn: &Spawn) -> SysResult<libc::pid_t> {
    let terminated =
        |list: &[*const c_char]| list.last().is_some_and(|p| p.is_null()) && list.len() > 1;
    if !terminated(spawn.argv)
        || spawn
            .envp
            .is_some_and(|e| !e.last().is_some_and(|p| p.is_null()))
    {
        return Err(libc::EINVAL);
    }
    check_before_spawn(spawn)?;
    let mut setup = SpawnSetup::new()?;
    for (target, stdio) in spawn.stdio.iter().enumerate() {
        setup.stdio(target as RawFd, *stdio)?;
    }
    if spawn.close_fds {
        // After the stdio's dup2s, which may read fds above 2.
        // SAFETY: the actions are initialised.
        let rc = unsafe { libc::posix_spawn_file_actions_addclosefrom_np(&mut setup.actions, 3) };
        if rc != 0 {
            return Err(rc);
        }
    }
    if let Some(cwd) = spawn.cwd {
        // SAFETY: the actions are initialised; `cwd` is NUL-terminated and
        // copied by the call.
        let rc =
            unsafe { libc::posix_spawn_file_actions_addchdir_np(&mut setup.actions, cwd.as_ptr()) };
        if rc != 0 {
            return Err(rc);
        }
    }
    setup.attributes(spawn)?;
    let envp = match spawn.envp {
        Some(envp) => envp.as_ptr() as *const *mut c_char,
        // SAFETY: reading the process's environment pointer, as execv does.
        None => unsafe { environ },
    };
    let mut pid: libc::pid_t = 0;
    // SAFETY: every pointer is valid and NUL-terminated for the call (the
    // arrays end with NULL, checked above), the setup is initialised.
    let rc = unsafe {
        libc::posix_spawn(
            &mut pid,
            spawn.path.as_ptr(),
            &setup.actions,
            &setup.attr,
            spawn.argv.as_ptr() as *const *mut c_char,
            envp,
        )
    };
    if rc != 0 {
        return Err(rc);
    }
    Ok(pid)
}

/// A pidfd for `pid`, close-on-exec: readable once the process has ended.
pub fn pidfd_open(pid: libc::pid_t) -> SysResult<Fd> {
    // SAFETY: plain syscall returning a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(errno());
    }
    Ok(Fd(fd as RawFd))
}

/// Sends `signo` (0: only checks) to the process of `pidfd`; never to
/// another process that reused its pid.
pub fn pidfd_send_signal(pidfd: RawFd, signo: i32) -> SysResult<()> {
    // SAFETY: plain syscall; no siginfo is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            signo,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(errno());
    }
    Ok(())
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// Its exit status (0 to 255), or -1 if a signal ended it.
    pub code: i32,
    /// The signal that ended it, or 0.
    pub signal: i32,
    pub core_dumped: bool,
}

/// Reaps the child of `pidfd` if it has ended (`block`: waits until it
/// has). `Ok(None)`: still running. ECHILD: not this process's child (or
/// reaped by someone else already).
pub fn wait_pidfd(pidfd: RawFd, block: bool) -> SysResult<Option<Exit>> {
    let options = libc::WEXITED | if block { 0 } else { libc::WNOHANG };
    waitid(libc::P_PIDFD, pidfd as libc::id_t, options)
}

/// Reaps child `pid` if it has ended, as [`wait_pidfd`]: for a child
/// watched without a pidfd (a kernel or a valgrind without pidfd_open).
pub fn wait_pid(pid: libc::pid_t, block: bool) -> SysResult<Option<Exit>> {
    let options = libc::WEXITED | if block { 0 } else { libc::WNOHANG };
    waitid(libc::P_PID, pid as libc::id_t, options)
}

/// Blocks until child `pid` has ended, without reaping it (WNOWAIT): it
/// stays a zombie, holding its pid, until [`wait_pid`] reaps it. Returns
/// at once (ECHILD) if it was reaped meanwhile.
pub fn wait_pid_ended(pid: libc::pid_t) -> SysResult<()> {
    waitid(
        libc::P_PID,
        pid as libc::id_t,
        libc::WEXITED | libc::WNOWAIT,
    )
    .map(drop)
}

fn waitid(idtype: libc::idtype_t, id: libc::id_t, options: i32) -> SysResult<Option<Exit>> {
    // SAFETY: siginfo_t is plain data, written by waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `info` is valid for the call.
        match check(unsafe { libc::waitid(idtype, id, &mut info, options) }) {
            Err(libc::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(_) => break,
        }
    }
    // SAFETY: waitid filled a SIGCHLD siginfo (or left it zeroed: pid 0).
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(match info.si_code {
        libc::CLD_EXITED => Exit {
            code: status,
            signal: 0,
            core_dumped: false,
        },
        code => Exit {
            code: -1,
            signal: status,
            core_dumped: code == libc::CLD_DUMPED,
        },
    }))
}

/// Sends `signo` to child `pid`, for one watched without a pidfd: sound
/// while the child is not reaped (a zombie keeps its pid).
pub fn kill_pid(pid: libc::pid_t, signo: i32) -> SysResult<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::kill(pid, signo) }).map(drop)
}

/// Kills the child of `pidfd` and reaps it: what freeing a loop does to a
/// child still running. Waits only as long as the kernel takes to end it.
pub fn kill_and_reap(pidfd: RawFd) {
    let _ = pidfd_send_signal(pidfd, libc::SIGKILL);
    let _ = wait_pidfd(pidfd, true);
}

/// Kills child `pid` and reaps it: for a child watched without a pidfd,
/// or one whose pidfd could not be made (nobody else has waited for it).
pub fn kill_and_reap_pid(pid: libc::pid_t) {
    let _ = kill_pid(pid, libc::SIGKILL);
    let _ = wait_pid(pid, true);
}

/// Runs `f` with every signal blocked in the calling thread: a thread
/// started inside inherits that mask, so no signal meant for the
/// application (or the loop's signalfd) is ever delivered to it.
pub fn with_signals_blocked<R>(f: impl FnOnce() -> R) -> R {
    /// Restores the mask it holds when dropped (a panic in `f` included).
    struct Restore(libc::sigset_t);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: restores a mask read by pthread_sigmask.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
        }
    }
    // SAFETY: the sets are plain data, initialised by sigfillset and by
    // pthread_sigmask.
    let _restore = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        Restore(old)
    };
    f()
}
