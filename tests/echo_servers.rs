//! The echo servers and client of c-examples/ (the articles' S1, S3, S5, S6,
//! S7 and C1-C3): byte-exact echo at several sizes and connection counts, the
//! original C1 client's transcript, the fixes for the originals' bugs, and
//! memcheck on every server stopped by SIGTERM; unix_echo_server in the same
//! matrix through `echo_client --unix`.

mod common;
mod tls_certs;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A server program and the flags that select its variant; the client gets
/// the same flags so that it knows which reply to expect.
#[derive(Clone, Copy)]
struct Mode {
    server: &'static str,
    flags: &'static [&'static str],
    /// Flags for the server alone.
    server_flags: &'static [&'static str],
}

impl Mode {
    const fn new(server: &'static str, flags: &'static [&'static str]) -> Mode {
        Mode {
            server,
            flags,
            server_flags: &[],
        }
    }

    const fn with_server_flags(self, server_flags: &'static [&'static str]) -> Mode {
        Mode {
            server_flags,
            ..self
        }
    }
}

const SELECT: Mode = Mode::new("select_echo_server", &[]);
const SELECT_UPPER: Mode = Mode::new("select_echo_server", &["--upper"]);
const SELECTORS: Mode = Mode::new("selectors_echo_server", &[]);
const SELECTORS_SB: Mode = Mode::new("selectors_echo_server", &["--sb"]);
const EPOLL: Mode = Mode::new("epoll_echo_server", &[]);
const STREAM: Mode = Mode::new("stream_echo_server", &[]);
const STREAM_WORKERS: Mode =
    Mode::new("stream_echo_server", &[]).with_server_flags(&["--workers", "2"]);
const SERVERS: [Mode; 4] = [SELECT, SELECTORS, EPOLL, STREAM];

// The Python mirrors (python/examples), run by python3 on this build's library.
const PY_SELECT: Mode = Mode::new("select_echo_server.py", &[]);
const PY_SELECT_UPPER: Mode = Mode::new("select_echo_server.py", &["--upper"]);
const PY_SELECTORS: Mode = Mode::new("selectors_echo_server.py", &[]);
const PY_SELECTORS_SB: Mode = Mode::new("selectors_echo_server.py", &["--sb"]);
const PY_EPOLL: Mode = Mode::new("epoll_echo_server.py", &[]);
const PY_STREAM: Mode = Mode::new("stream_echo_server.py", &[]);

struct Server {
    /// Killed if the test ends (or fails) without stopping it.
    child: ChildGuard,
    port: u16,
    /// Reads the server's log as it comes, so a full pipe never blocks it.
    log: std::thread::JoinHandle<String>,
}

impl Server {
    /// Starts `mode` on a free port (the first line it prints).
    fn start(mode: Mode, extra: &[&str]) -> Server {
        let mut cmd = example_command(mode.server);
        cmd.args(extra);
        Server::spawn(cmd, mode)
    }

    /// Starts `mode` under valgrind's memcheck.
    fn start_under_memcheck(mode: Mode) -> Server {
        Server::spawn(valgrind_command(&build_example(mode.server)), mode)
    }

    fn spawn(mut cmd: Command, mode: Mode) -> Server {
        cmd.args(["--port", "0"])
            .args(mode.flags)
            .args(mode.server_flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ChildGuard(cmd.spawn().expect("start the server"));
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let port = first
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{}: first line {first:?} is not a port", mode.server));
        let log = std::thread::spawn(move || {
            let mut rest = String::new();
            stdout.read_to_string(&mut rest).unwrap();
            rest
        });
        Server { child, port, log }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGTERM, then the exit status, the rest of stdout, and stderr.
    fn stop(self) -> (ExitStatus, String, String) {
        self.stop_with(libc::SIGTERM)
    }

    /// `signo`, then the exit status, the rest of stdout, and stderr.
    fn stop_with(mut self, signo: i32) -> (ExitStatus, String, String) {
        // SAFETY: a plain syscall; the pid is our child's, not yet reaped.
        unsafe { libc::kill(self.pid(), signo) };
        let status = wait_at_most(&mut self.child, Duration::from_secs(60));
        let out = self.log.join().unwrap();
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, out, err)
    }

    /// Stops the server and checks that it exited with status 0.
    fn stop_cleanly(self) -> String {
        let (status, out, err) = self.stop();
        assert!(
            status.success(),
            "the server ended with {status}\n{out}\n{err}"
        );
        out
    }
}

/// Runs echo_client with `args` and checks that every reply was right.
fn assert_echoes(server: &Server, mode: Mode, args: &[&str]) {
    let output = echo_client(server.port, mode.flags, args);
    assert!(
        output.status.success(),
        "{} {:?} with echo_client {args:?}: {}",
        mode.server,
        mode.flags,
        show(&output)
    );
}

/// The byte-exact load of common::echo_loads.
fn echoes_every_byte(mode: Mode, large: bool) {
    let server = Server::start(mode, &["--quiet"]);
    for args in echo_loads(large) {
        assert_echoes(&server, mode, &args);
    }
    server.stop_cleanly();
}

#[test]
fn select_echo_server_echoes_every_byte() {
    echoes_every_byte(SELECT, true);
}

#[test]
fn select_echo_server_upper_replies_in_upper_case() {
    echoes_every_byte(SELECT_UPPER, true);
}

#[test]
fn selectors_echo_server_echoes_every_byte() {
    echoes_every_byte(SELECTORS, true);
}

/// S6 appends "_SB" to every recv(1024), so only a message that one recv
/// takes whole has a reply the client can predict: no 4 MiB here.
#[test]
fn selectors_echo_server_sb_replies_upper_sb() {
    echoes_every_byte(SELECTORS_SB, false);
}

#[test]
fn epoll_echo_server_echoes_every_byte() {
    echoes_every_byte(EPOLL, true);
}

#[test]
fn stream_echo_server_echoes_every_byte() {
    echoes_every_byte(STREAM, true);
}

#[test]
fn stream_echo_server_with_two_workers_echoes_every_byte() {
    echoes_every_byte(STREAM_WORKERS, true);
}

#[test]
fn python_select_echo_server_echoes_every_byte() {
    echoes_every_byte(PY_SELECT, true);
    echoes_every_byte(PY_SELECT_UPPER, false);
}

#[test]
fn python_selectors_echo_server_echoes_every_byte() {
    echoes_every_byte(PY_SELECTORS, true);
    echoes_every_byte(PY_SELECTORS_SB, false);
}

#[test]
fn python_epoll_echo_server_echoes_every_byte() {
    echoes_every_byte(PY_EPOLL, true);
}

#[test]
fn python_stream_echo_server_echoes_every_byte() {
    echoes_every_byte(PY_STREAM, true);
}

/// python/examples/echo_client.py against the C stream server: every size,
/// and a wrong reply (an --upper client against a plain echo) is exit status 1.
#[test]
fn python_echo_client_checks_every_byte() {
    let server = Server::start(STREAM, &["--quiet"]);
    let port = server.port.to_string();
    let client = |args: &[&str]| {
        run(example_command("echo_client.py")
            .args(["--port", &port])
            .args(args))
    };
    for args in [
        &["--quiet"][..],
        &["--quiet", "--conns", "100", "--size", "1"],
        &["--quiet", "--conns", "100", "--size", "4194304"],
        &[
            "--quiet",
            "--conns",
            "20",
            "--size",
            "64",
            "--rounds",
            "50",
            "--independent",
        ],
    ] {
        let output = client(args);
        assert!(output.status.success(), "{args:?}: {}", show(&output));
    }
    let transcript = client(&[]);
    let text = String::from_utf8_lossy(&transcript.stdout);
    assert!(
        text.starts_with(&format!("connecting to 127.0.0.1 port {port}\n")),
        "{text}"
    );
    assert!(text.contains("): received \"in parts.\""), "{text}");
    let wrong = client(&["--quiet", "--upper"]);
    assert_eq!(wrong.status.code(), Some(1), "{}", show(&wrong));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("reply byte 1 is 0x68, expected 0x48"));
    server.stop_cleanly();
}

#[test]
fn echo_client_reports_a_wrong_reply() {
    // Expecting upper case from a plain echo server must fail, and say where.
    let server = Server::start(SELECTORS, &["--quiet"]);
    let output = echo_client(server.port, &["--upper"], &["--quiet", "--conns", "1"]);
    assert_eq!(output.status.code(), Some(1), "{}", show(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("reply byte 1 is 0x68, expected 0x48"),
        "{stderr}"
    );
    server.stop_cleanly();
}

/// The reply `mode` gives to `message`.
fn reply(mode: Mode, message: &str) -> String {
    match mode.flags {
        ["--upper"] => message.to_uppercase(),
        ["--sb"] => message.to_uppercase() + "_SB",
        _ => message.to_string(),
    }
}

/// The original C1 (tests/py/c1_client.py, standard library only) against
/// `mode`: its transcript, and the server's log lines for the session.
fn c1_session(mode: Mode) -> (String, String) {
    let server = Server::start(mode, &[]);
    let transcript = c1_transcript(server.port, |message| reply(mode, message));
    // Let the server see both connections close before stopping it.
    std::thread::sleep(Duration::from_millis(200));
    (transcript, server.stop_cleanly())
}

/// Whether `line` matches `pattern`, where `*` stands for any text.
fn matches(pattern: &str, line: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap();
    let Some(mut rest) = line.strip_prefix(first) else {
        return false;
    };
    let mut parts = parts.peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// Checks that `log` has lines matching `expected`, in that order (other
/// lines may come between).
fn assert_log_has(log: &str, expected: &[&str]) {
    let mut lines = log.lines();
    for want in expected {
        assert!(
            lines.any(|line| matches(want, line)),
            "no line like {want:?} (in this order) in the log:\n{log}"
        );
    }
}

#[test]
fn c1_against_select_echo_server() {
    for mode in [SELECT, SELECT_UPPER, PY_SELECT, PY_SELECT_UPPER] {
        let (_, log) = c1_session(mode);
        let upper = reply(mode, "This is the message. ");
        assert_log_has(
            &log,
            &[
                "starting up on 127.0.0.1 port *",
                "",
                "waiting for the next event",
                "new connection from ('127.0.0.1', *)",
                "received \"This is the message. \" from ('127.0.0.1', *)",
                &format!("sending \"{upper}\" to ('127.0.0.1', *)"),
                "output queue for ('127.0.0.1', *) is empty",
                "received \"in parts.\" from *",
                "closing ('127.0.0.1', *) after reading no data",
                "closing ('127.0.0.1', *) after reading no data",
                "waiting for the next event",
            ],
        );
    }
}

#[test]
fn c1_against_selectors_echo_server() {
    for mode in [SELECTORS, SELECTORS_SB, PY_SELECTORS, PY_SELECTORS_SB] {
        let (_, log) = c1_session(mode);
        assert_log_has(
            &log,
            &[
                "accepted <socket fd=*, laddr=('127.0.0.1', *), raddr=('127.0.0.1', *)> from ('127.0.0.1', *)",
                "accepted <socket fd=*",
                "echoing b'This is the message. ' to <socket fd=*>",
                "echoing b'in parts.' to <socket fd=*>",
                "closing <socket fd=*>",
                "closing <socket fd=*>",
            ],
        );
    }
}

#[test]
fn c1_against_epoll_echo_server() {
    for mode in [EPOLL, PY_EPOLL] {
        let (_, log) = c1_session(mode);
        assert_log_has(
            &log,
            &[
                "server started, listening on ('127.0.0.1', *)",
                "waiting for active connections",
                "1 new events",
                "new connection ('127.0.0.1', *)",
                "received This is the message.  from ('127.0.0.1', *)",
                "sending This is the message.  to ('127.0.0.1', *)",
                "('127.0.0.1', *) queue empty",
                "received in parts. from *",
                "client closed",
                "client closed",
            ],
        );
    }
}

#[test]
fn epoll_echo_server_reports_idle_timeouts() {
    let server = Server::start(EPOLL, &["--timeout", "1"]);
    std::thread::sleep(Duration::from_millis(2500));
    let log = server.stop_cleanly();
    assert_log_has(
        &log,
        &[
            "epoll timed out, no active connections, polling again",
            "epoll timed out, no active connections, polling again",
        ],
    );
}

#[test]
fn interactive_client_sends_each_line() {
    let server = Server::start(SELECTORS_SB, &["--quiet"]);
    let mut client = ChildGuard(
        Command::new(build_example("echo_client"))
            .args(["--port", &server.port.to_string(), "--interactive", "--sb"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    client
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello\n\nsecond line\n")
        .unwrap();
    let output = wait_with_output_within(client, PATIENCE);
    assert!(output.status.success(), "{}", show(&output));
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(out.contains("received \"HELLO_SB\""), "{out}");
    assert!(out.contains("received \"SECOND LINE_SB\""), "{out}");
    assert_eq!(out.matches("sending").count(), 2, "{out}");
    server.stop_cleanly();
}

/// A client that shuts down its write side (S7 never noticed: no EPOLLHUP)
/// still gets its whole echo, then end-of-file, and the server closes.
#[test]
fn half_closed_client_gets_its_echo_then_eof() {
    for mode in SERVERS {
        let server = Server::start(mode, &["--quiet"]);
        assert_half_closed_echo(mode.server, server.port, 100_000);
        server.stop_cleanly();
    }
}

/// One client sends and never reads; another resets its connection in the
/// middle of a reply. The server stops reading from the first (its memory
/// stays bounded), closes the second, and goes on serving everyone else.
#[test]
fn misbehaving_clients_harm_no_one_else() {
    for mode in SERVERS {
        let server = Server::start(mode, &["--quiet"]);
        assert_misbehaving_clients_harm_no_one(
            mode.server,
            server.pid(),
            server.port,
            8 << 10,
            |args| assert_echoes(&server, mode, args),
        );
        server.stop_cleanly();
    }
}

#[test]
fn every_server_is_clean_under_memcheck() {
    // SIGINT (Ctrl-C) ends a server as cleanly as SIGTERM.
    for (mode, signo) in [
        (SELECT_UPPER, libc::SIGTERM),
        (SELECTORS_SB, libc::SIGINT),
        (EPOLL, libc::SIGTERM),
        (STREAM, libc::SIGINT),
        (STREAM_WORKERS, libc::SIGTERM),
    ] {
        let server = Server::start_under_memcheck(mode);
        assert_echoes(&server, mode, &["--conns", "3"]);
        assert_echoes(
            &server,
            mode,
            &["--quiet", "--conns", "2", "--size", "1000"],
        );
        if mode.flags.is_empty() {
            assert_echoes(
                &server,
                mode,
                &["--quiet", "--conns", "2", "--size", "300000"],
            );
        }
        let (status, _, stderr) = server.stop_with(signo);
        assert!(status.success(), "{}: {status}\n{stderr}", mode.server);
        assert_memcheck_report_clean(&stderr);
    }
}

#[test]
fn echo_client_is_clean_under_memcheck() {
    let server = Server::start(SELECTORS, &["--quiet"]);
    let mut cmd = valgrind_command(&build_example("echo_client"));
    cmd.args(["--port", &server.port.to_string(), "--conns", "3"]);
    let output = run(&mut cmd);
    assert!(output.status.success(), "{}", show(&output));
    assert_memcheck_clean(&output);
    server.stop_cleanly();
}

#[test]
fn bad_arguments_exit_with_status_2() {
    for program in [
        "select_echo_server",
        "selectors_echo_server",
        "epoll_echo_server",
        "stream_echo_server",
        "tls_echo_server",
        "echo_client",
        "unix_echo_server",
        "udp_echo_server",
        "udp_echo_client",
    ] {
        let exe = build_example(program);
        for args in [&["--bogus"][..], &["--port", "70000"], &["--port"]] {
            let output = run(Command::new(&exe).args(args));
            assert_eq!(output.status.code(), Some(2), "{program} {args:?}");
            assert!(!output.stderr.is_empty(), "{program} {args:?} says why");
        }
        let help = run(Command::new(&exe).arg("--help"));
        assert!(help.status.success() && help.stdout.starts_with(b"usage: "));
    }
    let output = run(Command::new(build_example("echo_client")).arg("--independent"));
    assert_eq!(output.status.code(), Some(2), "--independent needs --size");
    // Flags of other programs are refused too.
    let output = run(Command::new(build_example("epoll_echo_server")).arg("--upper"));
    assert_eq!(output.status.code(), Some(2));
}

// ---- stream_echo_server: what the buffered streams promise ------------------

/// A connection that the test reads and writes with timeouts.
fn connect(port: u16) -> TcpStream {
    let conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    conn
}

/// Sends `message` and checks that exactly it comes back.
fn assert_round_trip(conn: &mut TcpStream, message: &[u8]) {
    conn.write_all(message).unwrap();
    let mut echoed = vec![0; message.len()];
    conn.read_exact(&mut echoed).unwrap();
    assert!(echoed == message, "wrong echo");
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed) % 251) as u8)
        .collect()
}

#[test]
fn stream_server_echoes_a_half_closed_mebibyte_then_eof() {
    let server = Server::start(STREAM, &["--quiet"]);
    let conn = connect(server.port);
    let message = pattern(1 << 20, 7);
    let writer = {
        let (mut conn, message) = (conn.try_clone().unwrap(), message.clone());
        std::thread::spawn(move || {
            conn.write_all(&message).unwrap();
            conn.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut echoed = Vec::new();
    (&conn).read_to_end(&mut echoed).unwrap();
    writer.join().unwrap();
    assert!(echoed == message, "{} bytes echoed of 1 MiB", echoed.len());
    server.stop_cleanly();
}

/// A client that sends 64 MiB and never reads costs the server no more than
/// the high watermark (1 MiB) plus a fixed overhead: reading from it pauses.
#[test]
fn stream_server_memory_stays_under_the_high_watermark() {
    const HIGH_WATER: u64 = 1 << 10; // KiB
    const OVERHEAD: u64 = 2 << 10; // KiB: the read buffer, allocator slack
    let server = Server::start(STREAM, &["--quiet"]);
    // Warm up: the read buffer and the first connection's allocations.
    assert_round_trip(&mut connect(server.port), b"warm up");
    let rss_before = rss_kib(server.pid());
    let hog = connect(server.port);
    let sent = flood(&hog, Duration::from_millis(1000));
    assert!(sent < (16 << 20), "the server took {sent} bytes");
    let growth = rss_kib(server.pid()).saturating_sub(rss_before);
    assert!(
        growth < HIGH_WATER + OVERHEAD,
        "grew by {growth} KiB for a client that never reads ({sent} bytes sent)"
    );
    assert_echoes(
        &server,
        STREAM,
        &["--quiet", "--conns", "20", "--size", "65536"],
    );
    drop(hog);
    server.stop_cleanly();
}

/// Which of `conns` have their echo of `message` ready now (reads it).
fn echoed_now(conns: &mut [TcpStream], message: &[u8]) -> Vec<bool> {
    conns
        .iter_mut()
        .map(|conn| {
            conn.set_nonblocking(true).unwrap();
            let mut echoed = vec![0; message.len()];
            let got = conn.read_exact(&mut echoed).is_ok();
            conn.set_nonblocking(false).unwrap();
            assert!(!got || echoed == message, "wrong echo");
            got
        })
        .collect()
}

/// With its fd limit lowered, the server runs out of fds: it goes on serving
/// the connections it has, does not spin, and accepts the waiting ones once
/// some close.
#[test]
fn stream_server_survives_running_out_of_fds() {
    let mut cmd = Command::new(build_example("stream_echo_server"));
    cmd.arg("--quiet");
    // SAFETY: the closure only calls setrlimit, which is async-signal-safe,
    // as code between fork and exec must be.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let limit = libc::rlimit {
                rlim_cur: 40,
                rlim_max: 40,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let server = Server::spawn(cmd, STREAM);
    let message = b"are you there?";
    let mut conns: Vec<TcpStream> = (0..60).map(|_| connect(server.port)).collect();
    for conn in &mut conns {
        conn.write_all(message).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    let served = echoed_now(&mut conns, message);
    let count = served.iter().filter(|&&s| s).count();
    assert!(
        (20..60).contains(&count),
        "{count} of 60 served with 40 fds"
    );
    // Out of fds with connections waiting: no busy loop.
    let before = cpu_ticks(server.pid());
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(server.pid()) - before;
    assert!(
        used < 30,
        "the server used {used} ticks in 1 s while out of fds"
    );
    // The served ones still work.
    for (conn, _) in conns.iter_mut().zip(&served).filter(|(_, &s)| s).take(3) {
        assert_round_trip(conn, b"still here");
    }
    // Free fds: every waiting connection is accepted and served.
    let mut waiting: Vec<TcpStream> = conns
        .into_iter()
        .zip(served)
        .filter_map(|(conn, served)| (!served).then_some(conn))
        .collect();
    for conn in &mut waiting {
        let mut echoed = vec![0; message.len()];
        conn.read_exact(&mut echoed).unwrap();
        assert!(echoed == message);
        assert_round_trip(conn, b"and again");
    }
    server.stop_cleanly();
}

#[test]
fn stream_server_closes_idle_connections() {
    // The timeout is ten times the active one's pace: on a loaded machine
    // this test can be held up for a few hundred ms between two pings (with
    // 300 ms, the active one was closed once under two CPU hogs).
    let server = Server::start(STREAM, &["--quiet", "--idle-timeout", "1000"]);
    let start = Instant::now();
    let mut silent = connect(server.port);
    let mut active = connect(server.port);
    // The active one talks every 100 ms for 1.5 s and is never dropped.
    for i in 0..15 {
        assert_round_trip(&mut active, format!("ping {i}").as_bytes());
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut buf = [0u8; 16];
    assert_eq!(
        silent.read(&mut buf).unwrap(),
        0,
        "the silent one is closed"
    );
    assert!(start.elapsed() >= Duration::from_millis(1000));
    assert_round_trip(&mut active, b"still served");
    server.stop_cleanly();
}

#[test]
fn stream_server_keeps_at_most_max_conns() {
    let server = Server::start(STREAM, &["--quiet", "--max-conns", "5"]);
    let mut conns: Vec<TcpStream> = (0..7).map(|_| connect(server.port)).collect();
    for conn in &mut conns {
        conn.write_all(b"hello").unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let served = echoed_now(&mut conns, b"hello");
    assert_eq!(served, [true, true, true, true, true, false, false]);
    drop(conns.remove(0));
    let mut echoed = [0u8; 5];
    conns[4].read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"hello");
    server.stop_cleanly();
}

/// C2's ten thousand connections on one loop, every byte checked (the
/// client is another process: one process may hold 20,000 fds here).
#[test]
fn stream_server_serves_10000_concurrent_connections() {
    let server = Server::start(STREAM, &["--quiet"]);
    assert_echoes(
        &server,
        STREAM,
        &["--quiet", "--conns", "10000", "--size", "100"],
    );
    server.stop_cleanly();
}

// ---- unix_echo_server: the same service on a Unix-domain socket --------------

/// unix_echo_server on `path` (with `extra` flags), its first line read
/// (the path it listens on); killed if the test ends without stopping it.
struct UnixServer {
    child: ChildGuard,
    log: std::thread::JoinHandle<String>,
}

impl UnixServer {
    fn start(mut cmd: Command, path: &str, extra: &[&str]) -> UnixServer {
        cmd.args(["--path", path])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ChildGuard(cmd.spawn().expect("start unix_echo_server"));
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        assert_eq!(first.trim_end(), path, "the first line is the path");
        let log = std::thread::spawn(move || {
            let mut rest = String::new();
            stdout.read_to_string(&mut rest).unwrap();
            rest
        });
        UnixServer { child, log }
    }

    /// SIGTERM; the exit status, the rest of stdout and stderr.
    fn stop(mut self) -> (ExitStatus, String, String) {
        // SAFETY: a plain syscall; the pid is our child's, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = wait_at_most(&mut self.child, Duration::from_secs(60));
        let out = self.log.join().unwrap();
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, out, err)
    }
}

/// A fresh directory for socket files.
fn socket_dir(name: &str) -> std::path::PathBuf {
    let dir = out_dir("unix").join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn unix_echo(target: &str, args: &[&str]) {
    let output = run(Command::new(build_example("echo_client"))
        .args(["--unix", target, "--timeout", "120"])
        .args(args));
    assert!(
        output.status.success(),
        "echo_client --unix {target} {args:?}: {}",
        show(&output)
    );
}

/// The echo matrix of every server (1 to 100 connections, 1 byte to 4 MiB,
/// the benchmarks' 20 independent connections), over a Unix-domain socket;
/// the server removes its socket file when it ends.
#[test]
fn unix_echo_server_echoes_every_byte() {
    let dir = socket_dir("matrix");
    let path = dir.join("echo.sock");
    let path = path.to_str().unwrap();
    let server = UnixServer::start(example_command("unix_echo_server"), path, &["--quiet"]);
    for args in echo_loads(true) {
        unix_echo(path, &args);
    }
    let (status, _, err) = server.stop();
    assert!(status.success(), "{status}\n{err}");
    assert!(
        !std::path::Path::new(path).exists(),
        "the socket file outlived the server"
    );
    std::fs::remove_dir(&dir).unwrap();
}

/// An abstract name leaves no file; the server logs each peer's credentials.
#[test]
fn unix_echo_server_on_an_abstract_name_logs_peer_credentials() {
    let name = format!("evloop-test-echo-{}", std::process::id());
    let server = UnixServer::start(example_command("unix_echo_server"), &name, &["--abstract"]);
    unix_echo(&format!("@{name}"), &["--quiet", "--conns", "3"]);
    unix_echo(
        &format!("@{name}"),
        &["--quiet", "--conns", "2", "--size", "100000"],
    );
    let (status, log, err) = server.stop();
    assert!(status.success(), "{status}\n{err}");
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let accepted: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("new connection"))
        .collect();
    assert_eq!(accepted.len(), 5, "{log}");
    for line in accepted {
        assert!(line.contains(&format!(", uid {uid}, ")), "{line}");
    }
}

/// A socket file left by a server that died is refused, unless the server
/// is told to remove it (and then it serves); a live server's is never
/// removed. Under memcheck.
#[test]
fn unix_echo_server_removes_a_stale_socket_only_when_told_and_is_clean_under_memcheck() {
    let dir = socket_dir("stale");
    let path = dir.join("echo.sock");
    let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(stale); // the file stays: nobody listens
    let path = path.to_str().unwrap();
    let refused = run(Command::new(build_example("unix_echo_server")).args(["--path", path]));
    assert_eq!(refused.status.code(), Some(1), "{}", show(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("in use"),
        "{}",
        show(&refused)
    );
    let server = UnixServer::start(
        valgrind_command(&build_example("unix_echo_server")),
        path,
        &["--remove-stale", "--quiet"],
    );
    // A second server must not take the live one's socket away.
    let second = run(Command::new(build_example("unix_echo_server")).args([
        "--path",
        path,
        "--remove-stale",
    ]));
    assert_eq!(second.status.code(), Some(1), "{}", show(&second));
    unix_echo(path, &["--conns", "3"]);
    unix_echo(path, &["--quiet", "--conns", "2", "--size", "300000"]);
    let (status, _, err) = server.stop();
    assert!(status.success(), "{status}\n{err}");
    assert_memcheck_report_clean(&err);
    assert!(!std::path::Path::new(path).exists());
    std::fs::remove_dir(&dir).unwrap();
}

// ---- tls_echo_server: the matrix over TLS -----------------------------------

/// The certificates (tls_certs, made by this run) as `--ca` for echo_client
/// and `--cert`/`--key` for tls_echo_server, leaked for `Mode`'s statics.
fn tls_flags() -> (&'static [&'static str], Mode) {
    static FLAGS: std::sync::OnceLock<(Vec<&'static str>, Vec<&'static str>)> =
        std::sync::OnceLock::new();
    let (client, server) = FLAGS.get_or_init(|| {
        let dir = tls_certs::write_to(&tls_certs::make(), &out_dir("echo_servers").join("certs"));
        let path = |name: &str| &*Box::leak(dir.join(name).display().to_string().into_boxed_str());
        let client = vec![
            "--tls",
            "--ca",
            path("ca.pem"),
            "--server-name",
            "localhost",
        ];
        let server = vec!["--cert", path("server.pem"), "--key", path("server.key")];
        (client, server)
    });
    let mode = Mode::new("tls_echo_server", &[]).with_server_flags(server);
    (client, mode)
}

/// The byte-exact matrix every echo server passes, over TLS (echo_client
/// --tls); tests/tls_interop.rs has the other TLS stacks and memcheck.
#[test]
fn tls_echo_server_echoes_every_byte() {
    let (client_flags, mode) = tls_flags();
    let server = Server::start(mode, &["--quiet"]);
    for args in echo_loads(true) {
        let output = echo_client(server.port, client_flags, &args);
        assert!(
            output.status.success(),
            "tls_echo_server with echo_client --tls {args:?}: {}",
            show(&output)
        );
    }
    // C1's transcript over TLS: the same lines as in the clear.
    let output = echo_client(server.port, client_flags, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", show(&output));
    assert!(stdout.contains("received \"in parts.\""), "{stdout}");
    server.stop_cleanly();
}
