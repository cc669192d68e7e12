//! Child processes: evl_spawn, evl_process_kill, evl_process_pid, and the
//! exit event's callback.

use std::ffi::{c_char, c_int, c_void, CStr, CString};

use super::boundary::{with_loop, Callback};
use super::types::*;
use crate::stream::{ExitStatus, SpawnOptions, Stdio};
use crate::sys::Errno;

/// evl_spawn_options.stdio: the parent's own (the default, 0).
pub const EVL_STDIO_INHERIT: u32 = 0;
/// evl_spawn_options.stdio: /dev/null, opened for reading and writing.
pub const EVL_STDIO_NULL: u32 = 1;
/// evl_spawn_options.stdio: a pipe to the child, whose other end is a
/// stream of the loop (evl_spawned.stdio). For stdin it only writes:
/// evl_stream_shutdown (or close) is the child's end-of-file.
pub const EVL_STDIO_PIPE: u32 = 2;
/// evl_spawn_options.stdio: `stdio_fd[i]`, an fd of the caller's (a file, a
/// socket...), which the child gets as its fd i; it stays the caller's.
pub const EVL_STDIO_FD: u32 = 3;

/// evl_spawn_options.stdio, for stderr only: the same file as the child's
/// stdout (2>&1: with EVL_STDIO_PIPE for stdout, both go to its stream).
pub const EVL_STDIO_STDOUT: u32 = 4;

/// evl_spawn_options.flags: the child starts a session of its own
/// (setsid): no controlling terminal, and a terminal's signals (^C) do not
/// reach it.
pub const EVL_SPAWN_SETSID: u32 = 1;
/// evl_spawn_options.flags: the child gets a process group of its own
/// (setpgid(0, 0)).
pub const EVL_SPAWN_SETPGROUP: u32 = 2;

/// evl_spawn_options.flags: every fd above 2 is closed in the child, also
/// those without close-on-exec (as Python's close_fds); without it the
/// child inherits the caller's fds that lack close-on-exec (every fd of
/// the library's has it).
pub const EVL_SPAWN_CLOSE_FDS: u32 = 4;

/// The most entries evl_spawn reads from `argv` or `env` (E2BIG past it).
pub const EVL_SPAWN_MAX_STRINGS: u32 = 1 << 20;

/// How a child ended, as handed to its evl_process_cb.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct evl_process_exit {
    /// The id evl_spawn gave.
    pub process: u64,
    pub pid: c_int,
    /// Its exit status (0 to 255), or -1 when a signal ended it (or the
    /// status is unknown: see `status`).
    pub exit_code: c_int,
    /// The signal that ended it, or 0.
    pub term_signal: c_int,
    /// 1 if it dumped core.
    pub core_dumped: c_int,
    /// 0, or -ECHILD when this process could not wait for the child: in a
    /// child after fork (the child is the parent's), or when something else
    /// reaped it (SIGCHLD set to SIG_IGN, a waitpid(-1) of the
    /// application's).
    pub status: c_int,
    /// The userdata of evl_spawn_options.
    pub userdata: *mut c_void,
}

/// Called once on the loop's thread when a child has ended (it has been
/// reaped: no zombie is left). `exit` is valid during the call only.
pub type evl_process_cb =
    Option<unsafe extern "C" fn(r#loop: *mut evl_loop, exit: *const evl_process_exit)>;

/// What to spawn. Zero-initialise it, then set `argv` (and what else is
/// wanted): all zero means the program `argv[0]` from PATH, the parent's
/// environment, directory and stdio.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct evl_spawn_options {
    /// The program: a path if it has a '/', else searched in the PATH of
    /// the calling process (as execvp does: "/bin:/usr/bin" without PATH).
    /// NULL: `argv[0]`.
    pub file: *const c_char,
    /// The arguments, `argv[0]` first, ending with NULL. Required.
    pub argv: *const *const c_char,
    /// The environment ("NAME=value" strings ending with NULL); NULL: the
    /// calling process's.
    pub env: *const *const c_char,
    /// The child's working directory; NULL: the caller's.
    pub cwd: *const c_char,
    /// What the child's stdin, stdout and stderr are: EVL_STDIO_*.
    pub stdio: [u32; 3],
    /// With EVL_STDIO_FD: the caller's fd for that stdio.
    pub stdio_fd: [c_int; 3],
    /// EVL_SPAWN_* flags.
    pub flags: u32,
    /// Called when the child has ended; may be NULL.
    pub exit_cb: evl_process_cb,
    /// The callback of the pipes' streams (EVL_STDIO_PIPE).
    pub stream_cb: evl_stream_cb,
    /// Passed to `exit_cb` and to `stream_cb` for the pipes' streams.
    pub userdata: *mut c_void,
}

/// A child just spawned.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct evl_spawned {
    /// Names the child for evl_process_kill and its evl_process_exit.
    pub process: u64,
    pub pid: c_int,
    /// The streams of the child's stdin, stdout and stderr pipes (0 where
    /// the stdio is not EVL_STDIO_PIPE).
    pub stdio: [u64; 3],
}

/// A NULL-terminated array of strings, copied; `max` entries at most.
///
/// # Safety
/// `list` is a NULL-terminated array of NUL-terminated strings.
unsafe fn strings(list: *const *const c_char) -> Result<Vec<CString>, Errno> {
    let mut out = Vec::new();
    loop {
        if out.len() >= EVL_SPAWN_MAX_STRINGS as usize {
            return Err(libc::E2BIG);
        }
        // SAFETY: within the array, which ends with NULL (the caller's
        // promise), and every entry before it is a string.
        let entry = unsafe { list.add(out.len()).read() };
        if entry.is_null() {
            return Ok(out);
        }
        // SAFETY: as above.
        out.push(unsafe { CStr::from_ptr(entry) }.to_owned());
    }
}

/// The C options as the stream layer's.
///
/// # Safety
/// `o`'s pointers are NULL or as the header describes.
unsafe fn spawn_options(o: &evl_spawn_options) -> Result<SpawnOptions, Errno> {
    let flags = EVL_SPAWN_SETSID | EVL_SPAWN_SETPGROUP | EVL_SPAWN_CLOSE_FDS;
    if o.argv.is_null() || o.flags & !flags != 0 {
        return Err(libc::EINVAL);
    }
    // SAFETY: a NULL-terminated array of strings (the header's contract).
    let args = unsafe { strings(o.argv) }?;
    let Some(argv0) = args.first() else {
        return Err(libc::EINVAL);
    };
    let file = if o.file.is_null() {
        argv0.clone()
    } else {
        // SAFETY: NUL-terminated (the header's contract).
        unsafe { CStr::from_ptr(o.file) }.to_owned()
    };
    let env = if o.env.is_null() {
        None
    } else {
        // SAFETY: as for argv.
        Some(unsafe { strings(o.env) }?)
    };
    let cwd = if o.cwd.is_null() {
        None
    } else {
        // SAFETY: NUL-terminated (the header's contract).
        Some(unsafe { CStr::from_ptr(o.cwd) }.to_owned())
    };
    let mut stdio = [Stdio::Inherit; 3];
    for (i, slot) in stdio.iter_mut().enumerate() {
        *slot = match o.stdio[i] {
            EVL_STDIO_INHERIT => Stdio::Inherit,
            EVL_STDIO_NULL => Stdio::Null,
            EVL_STDIO_PIPE => Stdio::Pipe,
            EVL_STDIO_FD => Stdio::Fd(o.stdio_fd[i]),
            EVL_STDIO_STDOUT if i == 2 => Stdio::Stdout,
            _ => return Err(libc::EINVAL),
        };
    }
    Ok(SpawnOptions {
        file,
        args,
        env,
        cwd,
        stdio,
        new_session: o.flags & EVL_SPAWN_SETSID != 0,
        new_process_group: o.flags & EVL_SPAWN_SETPGROUP != 0,
        close_fds: o.flags & EVL_SPAWN_CLOSE_FDS != 0,
    })
}

/// Starts a child process with posix_spawn, as `options` says, and writes
/// what it made to `*out` unless it is NULL. The child starts with every
/// signal at its default action and none blocked (whatever the loop's
/// signal watchers or the caller's handlers do in this process), and with
/// the fds the caller left open without close-on-exec besides its stdio
/// (none with EVL_SPAWN_CLOSE_FDS; every fd of the library's is
/// close-on-exec).
///
/// Its end comes through its pidfd in the loop's epoll set: `exit_cb` is
/// called once, on the loop's thread, with the child reaped. Only children
/// spawned here are waited for (by pidfd; no SIGCHLD handler, no
/// waitpid(-1)). A running child keeps evl_run running. Its pipes are
/// ordinary streams (their EOF may come before or after the exit: read
/// until EOF to get all the output).
///
/// evl_loop_free kills (SIGKILL) and reaps every child still running, and
/// calls no `exit_cb`: no zombie is left behind. (In a child of a fork
/// that frees the loop without evl_loop_fork, the children are the
/// parent's: they are left alone.) In a child after fork,
/// evl_loop_fork gives up the parent's children (they are not its to wait
/// for): each gets its `exit_cb` there with status -ECHILD, while the
/// parent goes on watching them; the pipes' streams are kept there, as
/// every stream is. evl_spawn works in the child as anywhere.
///
/// Returns 0; -EINVAL for a NULL loop or `options`, a NULL or empty
/// `argv`, an unknown stdio mode or flag, EVL_STDIO_STDOUT other than for
/// stderr; -E2BIG for more than
/// EVL_SPAWN_MAX_STRINGS arguments or environment strings (or what the
/// kernel refuses); -ENOENT for a program not found (no child is made);
/// -EACCES, -ENOEXEC... when it cannot be executed (glibc reports a failed
/// exec; no child is left); -EBADF for a bad EVL_STDIO_FD fd; -ENOENT or
/// -ENOTDIR for a bad `cwd`; -EMFILE...; -ENOSYS on a kernel without pidfds
/// (before 5.3). On error no child is left and no fd is kept.
/// Ownership: everything `options` points to is copied; the pipes' streams
/// are the loop's, as any stream; `userdata` stays the caller's.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_spawn(
    r#loop: *mut evl_loop,
    options: *const evl_spawn_options,
    out: *mut evl_spawned,
) -> c_int {
    with_loop!(r#loop, |core| {
        if options.is_null() {
            return Err(libc::EINVAL);
        }
        // SAFETY: non-null, the caller's struct (the header's contract).
        let o = unsafe { options.read() };
        // SAFETY: its pointers are as the header describes.
        let spawn = unsafe { spawn_options(&o) }?;
        let spawned = core.spawn(
            &spawn,
            Callback::exit(o.exit_cb, o.userdata),
            Callback::stream(o.stream_cb, o.userdata),
        )?;
        if !out.is_null() {
            // SAFETY: non-null, and the caller gives a writable struct (header).
            unsafe {
                out.write(evl_spawned {
                    process: spawned.id,
                    pid: spawned.pid,
                    stdio: spawned.stdio,
                })
            };
        }
        Ok(0)
    })
}

/// Sends signal `signo` to a child (0: only checks it is there). The
/// signal goes through the child's pidfd, so it never reaches another
/// process that reused a pid.
///
/// Returns 0 (also for a child that has ended but whose `exit_cb` has not
/// been called yet: the signal does nothing then); -EINVAL for a NULL loop
/// or a signal outside 0..64; -ENOENT for an unknown child or one whose
/// `exit_cb` has been called; -ESRCH for a child given up by evl_loop_fork.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_process_kill(
    r#loop: *mut evl_loop,
    process: u64,
    signo: c_int,
) -> c_int {
    with_loop!(r#loop, |core| core.kill_process(process, signo).map(|()| 0))
}

/// A child's pid.
///
/// Returns the pid; -EINVAL for a NULL loop; -ENOENT for an unknown child
/// or one whose `exit_cb` has been called.
/// Thread-safety: the loop's thread only.
#[no_mangle]
pub unsafe extern "C" fn evl_process_pid(r#loop: *mut evl_loop, process: u64) -> c_int {
    with_loop!(r#loop, |core| core.process_pid(process))
}

/// Test-only: children spawned from now on are watched as where pidfds
/// are missing (a waiter thread each, as under valgrind). Not part of the
/// C header.
///
/// # Safety
/// `lp` is NULL or a live loop, used on its thread, not borrowed.
#[doc(hidden)]
pub unsafe fn test_use_waiter_threads(lp: *mut evl_loop, on: bool) {
    // SAFETY: as the caller promised.
    if let Ok(core) = unsafe { super::boundary::core(lp) } {
        core.use_waiter_threads(on);
    }
}

/// Calls a child's exit callback; returns whether one ran.
///
/// # Safety
/// `lp` is live and not borrowed.
pub(super) unsafe fn deliver(
    lp: *mut evl_loop,
    id: u64,
    pid: i32,
    status: ExitStatus,
    data: Callback,
) -> bool {
    // SAFETY: process records hold exit callbacks.
    let Some(cb) = (unsafe { data.as_exit() }) else {
        return false;
    };
    let exit = evl_process_exit {
        process: id,
        pid,
        exit_code: status.code,
        term_signal: status.signal,
        core_dumped: c_int::from(status.core_dumped),
        status: -status.error,
        userdata: data.userdata,
    };
    // SAFETY: the caller's callback, as given, with `exit` outliving the
    // call; `lp` is live and not borrowed.
    unsafe { cb(lp, &exit) };
    true
}
