//! Shared by the integration tests: compile C against include/evloop.h and
//! the library cargo just built, run programs, run them under valgrind.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long any program a test runs may take: generous (a loaded machine,
/// valgrind), so that only a hang reaches it, and fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(300);

/// A child process that is killed and reaped when the guard is dropped, so
/// that a test failing (panicking) on any path leaves nothing running.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// Waits for `child` to end; after `limit`, kills it and panics.
pub fn wait_at_most(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            child.kill().ok();
            child.wait().ok();
            panic!("process {} did not end within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `cmd.output()` (stdin empty, stdout and stderr captured) that kills the
/// program and fails if it runs longer than [`PATIENCE`].
pub fn run(cmd: &mut Command) -> Output {
    run_within(cmd, PATIENCE)
}

/// [`run`] with a limit of its own, for what takes long by nature on a
/// loaded machine (a whole test suite, a build from scratch).
pub fn run_within(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    wait_with_output_within(ChildGuard(child), limit)
}

/// `Child::wait_with_output` that kills the program and fails after `limit`
/// (the guard kills it on any other way out too).
pub fn wait_with_output_within(mut child: ChildGuard, limit: Duration) -> Output {
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_at_most(&mut child, limit);
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo put libevloop.so and .a for this test run (beside the test binary).
pub fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().expect("deps dir").to_path_buf();
    assert!(
        dir.join("libevloop.so").exists(),
        "libevloop.so not found in {}",
        dir.display()
    );
    dir
}

/// The target directory of this cargo test (lib_dir() is its debug/deps):
/// builds started by tests (make install, pip's cargo build) reuse it.
pub fn target_dir() -> PathBuf {
    lib_dir().parent().unwrap().parent().unwrap().to_path_buf()
}

/// A scratch directory for build products of one test binary.
pub fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn target_triple() -> String {
    let env = if cfg!(target_env = "musl") {
        "musl"
    } else {
        "gnu"
    };
    format!("{}-unknown-linux-{env}", std::env::consts::ARCH)
}

/// Compiles C `sources` into the executable `out` with the project's flags:
/// -std=c11 -Wall -Wextra -Werror, linked to the freshly built libevloop.so.
pub fn compile_c(sources: &[PathBuf], out: &Path, extra: &[&str]) -> PathBuf {
    let triple = target_triple();
    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .cargo_warnings(false)
        .target(&triple)
        .host(&triple)
        .opt_level(1)
        .debug(true)
        .get_compiler();
    let lib = lib_dir();
    let mut cmd = compiler.to_command();
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror"])
        .arg("-I")
        .arg(root().join("include"))
        .arg("-I")
        .arg(root().join("c-examples"))
        .args(sources)
        .arg("-o")
        .arg(out)
        .arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        // DT_RPATH, not DT_RUNPATH: it wins over LD_LIBRARY_PATH, which cargo
        // test points at target/debug first, where an older `cargo build`
        // may have left an older libevloop.so.
        .arg("-Wl,--disable-new-dtags")
        .args(["-levloop", "-lpthread"])
        .args(extra);
    let output = cmd.output().expect("run the C compiler");
    assert!(
        output.status.success(),
        "compiling {:?} failed:\n{}",
        sources,
        String::from_utf8_lossy(&output.stderr)
    );
    out.to_path_buf()
}

/// Compiles `c-examples/NAME.c` on its own, as its README says, with -O2;
/// once per test binary, however many tests ask for it at the same time.
pub fn build_example(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, exe)) = built.iter().find(|(n, _)| n == name) {
        return exe.clone();
    }
    let out = out_dir("examples").join(name);
    let mut flags = vec!["-O2".to_string()];
    flags.extend(libraries_of_example(name));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let exe = compile_c(&[root().join(format!("c-examples/{name}.c"))], &out, &flags);
    built.push((name.to_string(), exe.clone()));
    exe
}

/// The compiler flags of the libraries an example needs besides evloop
/// (its comment says so too): GLib for glib_embed.
fn libraries_of_example(name: &str) -> Vec<String> {
    if name != "glib_embed" {
        return Vec::new();
    }
    let output = Command::new("pkg-config")
        .args(["--cflags", "--libs", "glib-2.0"])
        .output();
    match output {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .map(String::from)
            .collect(),
        _ => panic!(
            "{name} needs GLib's development files and pkg-config: \
             apt-get install libglib2.0-dev pkg-config (.ci/run does this)"
        ),
    }
}

pub fn show(output: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// valgrind's memcheck with every error and every leak counted as failure.
pub fn valgrind_command(program: &Path) -> Command {
    valgrind_command_suppressing(program, &[])
}

/// As [`valgrind_command`], with suppression files.
pub fn valgrind_command_suppressing(program: &Path, suppressions: &[PathBuf]) -> Command {
    let found = Command::new("valgrind")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "valgrind is needed for the memcheck tests: apt-get install valgrind (.ci/run does this)"
    );
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--tool=memcheck",
        "--error-exitcode=99",
        "--leak-check=full",
        "--show-leak-kinds=definite,indirect,possible",
        "--errors-for-leak-kinds=definite,indirect,possible",
        "--child-silent-after-fork=no",
        "--quiet",
    ]);
    for file in suppressions {
        cmd.arg(format!("--suppressions={}", file.display()));
    }
    cmd.arg(program);
    cmd
}

/// Runs `program args` under memcheck; checks that it succeeded with no
/// error and no leak.
pub fn assert_runs_clean_under_memcheck(program: &Path, args: &[&str]) {
    let output = valgrind_command(program).args(args).output().unwrap();
    assert!(output.status.success(), "{}", show(&output));
    assert_memcheck_clean(&output);
}

/// Checks that valgrind's report shows no error and no leak.
pub fn assert_memcheck_clean(output: &Output) {
    assert!(
        output.status.code() != Some(99),
        "memcheck found errors:\n{}",
        show(output)
    );
    assert_memcheck_report_clean(&String::from_utf8_lossy(&output.stderr));
}

/// Checks valgrind's report (its stderr) for errors and leaks.
pub fn assert_memcheck_report_clean(stderr: &str) {
    assert!(
        !stderr.contains("definitely lost") && !stderr.contains("Invalid "),
        "memcheck report:\n{stderr}"
    );
}

/// Runs a tool such as readelf and returns its stdout; fails the test
/// with everything it said when it fails.
pub fn tool_output(cmd: &mut Command) -> String {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e} (is binutils installed?)"));
    assert!(output.status.success(), "{cmd:?}\n{}", show(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The symbols a shared library defines for others, as (name, version)
/// pairs from `readelf --dyn-syms`; the version is "" for an unversioned
/// symbol. Version definitions themselves (ABS) are left out.
pub fn exported_symbols(library: &Path) -> Vec<(String, String)> {
    let table = tool_output(
        Command::new("readelf")
            .args(["--dyn-syms", "-W"])
            .arg(library),
    );
    let mut symbols: Vec<(String, String)> = table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // Num: Value Size Type Bind Vis Ndx Name
            let [num, _, _, _, bind, _, ndx, name] = fields[..] else {
                return None;
            };
            if !num
                .trim_end_matches(':')
                .chars()
                .all(|c| c.is_ascii_digit())
            {
                return None; // the column titles
            }
            if ndx == "UND" || ndx == "ABS" || bind == "LOCAL" {
                return None;
            }
            let (name, version) = match name.split_once("@@") {
                Some((name, version)) => (name, version),
                None => (name, ""),
            };
            Some((name.to_string(), version.to_string()))
        })
        .collect();
    symbols.sort();
    symbols
}

/// The SONAME a shared library records, from `readelf -d`.
pub fn soname(library: &Path) -> Option<String> {
    dynamic_entries(library, "SONAME").pop()
}

/// The libraries a program or library records as NEEDED, from `readelf -d`.
pub fn needed(binary: &Path) -> Vec<String> {
    dynamic_entries(binary, "NEEDED")
}

fn dynamic_entries(binary: &Path, tag: &str) -> Vec<String> {
    let dynamic = tool_output(Command::new("readelf").arg("-d").arg(binary));
    dynamic
        .lines()
        .filter(|line| line.contains(&format!("({tag})")))
        .filter_map(|line| Some(line.split_once('[')?.1.split_once(']')?.0.to_string()))
        .collect()
}

/// Whether `program --version` runs.
pub fn interpreter_found(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether pypy3 is installed. Without it, `what` (a test's PyPy half) is
/// skipped with a notice on the terminal, except under CI=true, where
/// .ci/run has installed it and its absence fails the test.
pub fn pypy_found(what: &str) -> bool {
    if interpreter_found("pypy3") {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "pypy3 not found: under CI=true {what} must run on PyPy (.ci/run installs pypy3)"
    );
    // Straight to the terminal: cargo test captures eprintln! of passing tests.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "NOTE: {what} did not run on PyPy: pypy3 is not installed (apt-get install pypy3)"
    );
    false
}

// ---- example servers ---------------------------------------------------------

/// The command that runs an example: `c-examples/NAME.c` built on its own,
/// or `python/examples/NAME.py` run by python3 on this build's library.
pub fn example_command(program: &str) -> Command {
    if program.ends_with(".py") {
        let mut cmd = Command::new("python3");
        cmd.arg(root().join("python/examples").join(program))
            .env("EVLOOP_LIBRARY", lib_dir().join("libevloop.so"));
        cmd
    } else {
        Command::new(build_example(program))
    }
}

/// echo_client's arguments for the byte-exact load every echo server
/// passes: 1, 2 and 100 connections with the three messages, 1 byte and
/// 1 KiB, and 4 MiB (forcing partial writes and the servers' queue limit)
/// unless `large` is false; then the benchmarks' load, 20 connections each
/// at its own pace.
pub fn echo_loads(large: bool) -> Vec<Vec<&'static str>> {
    let mut loads = Vec::new();
    for conns in ["1", "2", "100"] {
        loads.push(vec!["--quiet", "--conns", conns]);
        for size in ["1", "1024"] {
            loads.push(vec!["--quiet", "--conns", conns, "--size", size]);
        }
        if large {
            loads.push(vec!["--quiet", "--conns", conns, "--size", "4194304"]);
        }
    }
    let independent = "--quiet --conns 20 --size 64 --rounds 50 --independent";
    loads.push(independent.split(' ').collect());
    loads
}

/// c-examples' echo_client against `port`, with `flags` (the server's
/// variant: --upper...) and `args`.
pub fn echo_client(port: u16, flags: &[&str], args: &[&str]) -> Output {
    run(Command::new(build_example("echo_client"))
        .args(["--port", &port.to_string(), "--timeout", "120"])
        .args(flags)
        .args(args))
}

/// A client sends `len` bytes to the echo server `name` on `port`, shuts
/// down its writing side, and must read exactly them back, then end-of-file.
pub fn assert_half_closed_echo(name: &str, port: u16, len: u32) {
    use std::io::Write;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let message: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    conn.write_all(&message).unwrap();
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let mut echoed = Vec::new();
    conn.read_to_end(&mut echoed)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(echoed == message, "{name}: wrong echo");
}

/// A server started with `--port 0`, whose log is read line by line as it
/// comes (so a full pipe never blocks it) and can be waited on. Dropping it
/// kills the process, so a failing test leaves nothing running.
pub struct ExampleServer {
    child: Child,
    pub port: u16,
    /// Its standard input, when started with one to write to.
    pub stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// The log lines received so far.
    pub seen: Vec<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl ExampleServer {
    /// Starts `cmd --port 0`, its stdin a pipe if `piped_stdin` (else
    /// /dev/null), and reads the port from the first line.
    pub fn spawn(mut cmd: Command, piped_stdin: bool) -> ExampleServer {
        cmd.args(["--port", "0"])
            .stdin(if piped_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start the server");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || loop {
            let mut line = String::new();
            match stdout.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if sender
                        .send(line.trim_end_matches('\n').to_string())
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = Some(std::thread::spawn(move || {
            let mut text = String::new();
            stderr.read_to_string(&mut text).ok();
            text
        }));
        let stdin = child.stdin.take();
        let mut server = ExampleServer {
            child,
            port: 0,
            stdin,
            lines,
            seen: Vec::new(),
            stderr,
        };
        let first = server.lines.recv_timeout(Duration::from_secs(60));
        server.port = match first.as_deref().map(str::parse) {
            Ok(Ok(port)) => port,
            _ => panic!("{cmd:?}: the first line {first:?} is not a port"),
        };
        server
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits (at most `limit`) for a log line containing `needle`; returns it.
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.seen.push(line);
                    if found {
                        return self.seen.last().unwrap().clone();
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => panic!(
                    "no log line with {needle:?} within {limit:?}; the log:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for the process to end by itself (at most `limit`); returns
    /// its status, its whole log and its stderr.
    pub fn wait_end(&mut self, limit: Duration) -> (ExitStatus, String, String) {
        let status = wait_at_most(&mut self.child, limit);
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(line);
        }
        let stderr = self
            .stderr
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default();
        (status, self.seen.join("\n"), stderr)
    }

    /// `signo`, then what wait_end returns.
    pub fn stop_with(&mut self, signo: i32) -> (ExitStatus, String, String) {
        // SAFETY: kill() only sends a signal to our own child, by its pid.
        unsafe { libc::kill(self.pid(), signo) };
        self.wait_end(Duration::from_secs(60))
    }

    /// SIGTERM; checks that it ended with status 0; returns the log.
    pub fn stop_cleanly(&mut self) -> String {
        let (status, log, stderr) = self.stop_with(libc::SIGTERM);
        assert!(
            status.success(),
            "the server ended with {status}\n{log}\n{stderr}"
        );
        log
    }
}

impl Drop for ExampleServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.child.kill().ok();
        }
        self.child.wait().ok();
    }
}

/// CPU time (user + system, clock ticks) a process has used.
pub fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// A process's resident memory, KiB.
pub fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Sends up to 64 MiB on `conn` without ever reading, until the server has
/// taken nothing for `patience`; returns how much it took.
pub fn flood(conn: &std::net::TcpStream, patience: Duration) -> usize {
    conn.set_nonblocking(true).unwrap();
    let chunk = vec![b'x'; 1 << 16];
    let (mut sent, mut last_progress) = (0usize, Instant::now());
    while sent < (64 << 20) && last_progress.elapsed() < patience {
        match std::io::Write::write(&mut &*conn, &chunk) {
            Ok(n) => {
                sent += n;
                last_progress = Instant::now();
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    sent
}

/// Sends 1 MiB to the server at `port` and resets the connection (SO_LINGER
/// 0 makes close() send RST) while the reply is on its way.
pub fn reset_with_a_reply_on_its_way(port: u16) {
    let resetter = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(&mut &resetter, &vec![b'y'; 1 << 20]).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&resetter);
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `linger` is a valid struct of the size given, for an open socket.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as u32,
        )
    };
    drop(resetter);
}

/// One client sends and never reads; another resets its connection in the
/// middle of a reply. The server at `port` (process `pid`) stops reading
/// from the first, so it takes under 32 MiB from it and its memory grows by
/// less than `max_growth_kib`; it closes the second; and `echo(args)` (an
/// echo_client run with `args`) still succeeds, before and after the first
/// one leaves.
pub fn assert_misbehaving_clients_harm_no_one(
    name: &str,
    pid: i32,
    port: u16,
    max_growth_kib: u64,
    echo: impl Fn(&[&str]),
) {
    let rss_before = rss_kib(pid);
    let hog = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let sent = flood(&hog, Duration::from_millis(500));
    assert!(
        sent < (32 << 20),
        "{name}: took {sent} bytes from a client that never reads"
    );
    let growth = rss_kib(pid).saturating_sub(rss_before);
    assert!(
        growth < max_growth_kib,
        "{name}: grew by {growth} KiB for a client that never reads"
    );
    reset_with_a_reply_on_its_way(port);
    echo(&["--quiet", "--conns", "20", "--size", "65536"]);
    drop(hog);
    echo(&["--quiet", "--conns", "2"]);
}

/// The articles' three messages, in the order their C1 client sends them.
pub const C1_MESSAGES: [&str; 3] = ["This is the message. ", "It will be sent ", "in parts."];

/// Runs the articles' C1 client (tests/py/c1_client.py, standard library
/// only) against 127.0.0.1:`port`, under run()'s time limit, and checks its
/// whole transcript: the connect line, then for each message both sockets'
/// "sending" lines and both "received" lines, whose reply is
/// `reply(message)`. Returns the transcript.
pub fn c1_transcript(port: u16, reply: impl Fn(&str) -> String) -> String {
    let output = run(Command::new("python3")
        .arg(root().join("tests/py/c1_client.py"))
        .arg(port.to_string()));
    assert!(output.status.success(), "{}", show(&output));
    let transcript = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = transcript.lines().collect();
    assert_eq!(lines.len(), 1 + 3 * 4, "{transcript}");
    assert_eq!(
        lines[0],
        format!("connecting to 127.0.0.1 port {port}"),
        "{transcript}"
    );
    for (m, message) in C1_MESSAGES.iter().enumerate() {
        for (i, line) in lines[1 + 4 * m..5 + 4 * m].iter().enumerate() {
            // Each line starts with the client's address, ('127.0.0.1', PORT).
            let said = if i < 2 {
                format!("): sending \"{message}\"")
            } else {
                format!("): received \"{}\"", reply(message))
            };
            assert!(
                line.starts_with("('127.0.0.1', ") && line.ends_with(&said),
                "{transcript}"
            );
        }
    }
    transcript
}
