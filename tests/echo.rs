//! The echo servers and client of c-examples/ (the articles' S1, S3, S5, S6,
//! S7 and C1-C3): byte-exact echo at several sizes and connection counts, the
//! original C1 client's transcript, the fixes for the originals' bugs, and
//! memcheck on every server stopped by SIGTERM.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// A server program and the flags that select its variant; the client gets
/// the same flags so that it knows which reply to expect.
#[derive(Clone, Copy)]
struct Mode {
    server: &'static str,
    flags: &'static [&'static str],
}

const SELECT: Mode = Mode {
    server: "select_echo_server",
    flags: &[],
};
const SELECT_UPPER: Mode = Mode {
    server: "select_echo_server",
    flags: &["--upper"],
};
const SELECTORS: Mode = Mode {
    server: "selectors_echo_server",
    flags: &[],
};
const SELECTORS_SB: Mode = Mode {
    server: "selectors_echo_server",
    flags: &["--sb"],
};
const EPOLL: Mode = Mode {
    server: "epoll_echo_server",
    flags: &[],
};
const SERVERS: [Mode; 3] = [SELECT, SELECTORS, EPOLL];

struct Server {
    child: Child,
    port: u16,
    /// Reads the server's log as it comes, so a full pipe never blocks it.
    log: std::thread::JoinHandle<String>,
}

impl Server {
    /// Starts `mode` on a free port (the first line it prints).
    fn start(mode: Mode, extra: &[&str]) -> Server {
        let mut cmd = Command::new(build_example(mode.server));
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
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start the server");
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

fn wait_at_most(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            child.kill().ok();
            panic!("process {} did not end within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn echo_client(port: u16, flags: &[&str], args: &[&str]) -> Output {
    Command::new(build_example("echo_client"))
        .args(["--port", &port.to_string(), "--timeout", "120"])
        .args(flags)
        .args(args)
        .output()
        .expect("run echo_client")
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

/// 1, 2 and 100 connections with the three messages, 1 byte and 1 KiB, and
/// 4 MiB (forcing partial writes and the servers' queue limit) on 1, 2 and
/// 100 connections unless `large` is false.
fn echoes_every_byte(mode: Mode, large: bool) {
    let server = Server::start(mode, &["--quiet"]);
    for conns in ["1", "2", "100"] {
        assert_echoes(&server, mode, &["--quiet", "--conns", conns]);
        for size in ["1", "1024"] {
            assert_echoes(
                &server,
                mode,
                &["--quiet", "--conns", conns, "--size", size],
            );
        }
        if large {
            assert_echoes(
                &server,
                mode,
                &["--quiet", "--conns", conns, "--size", "4194304"],
            );
        }
    }
    // The benchmarks' load: each connection at its own pace.
    let load = ["--conns", "20", "--size", "64", "--rounds", "50"];
    assert_echoes(
        &server,
        mode,
        &[&load[..], &["--quiet", "--independent"]].concat(),
    );
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

/// The client's address as C1 prints it, `('127.0.0.1', PORT)`, at the start
/// of `line`; returns the rest.
fn after_sockname(line: &str) -> &str {
    let end = line.find("): ").expect("a sockname") + 3;
    assert!(line.starts_with("('127.0.0.1', "), "{line}");
    &line[end..]
}

const MESSAGES: [&str; 3] = ["This is the message. ", "It will be sent ", "in parts."];

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
    let output = Command::new("python3")
        .arg(root().join("tests/py/c1_client.py"))
        .arg(server.port.to_string())
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "{}", show(&output));
    let transcript = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = transcript.lines().collect();
    assert_eq!(
        lines[0],
        format!("connecting to 127.0.0.1 port {}", server.port)
    );
    assert_eq!(lines.len(), 1 + 3 * 4, "{transcript}");
    for (m, message) in MESSAGES.iter().enumerate() {
        let turn = &lines[1 + 4 * m..5 + 4 * m];
        for line in &turn[..2] {
            assert_eq!(after_sockname(line), format!("sending \"{message}\""));
        }
        for line in &turn[2..] {
            assert_eq!(
                after_sockname(line),
                format!("received \"{}\"", reply(mode, message)),
                "{transcript}"
            );
        }
    }
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
    for mode in [SELECT, SELECT_UPPER] {
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
    for mode in [SELECTORS, SELECTORS_SB] {
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
    let (_, log) = c1_session(EPOLL);
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
    let mut client = Command::new(build_example("echo_client"))
        .args(["--port", &server.port.to_string(), "--interactive", "--sb"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    client
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello\n\nsecond line\n")
        .unwrap();
    let output = client.wait_with_output().unwrap();
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
        let mut conn = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let message: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        conn.write_all(&message).unwrap();
        conn.shutdown(Shutdown::Write).unwrap();
        let mut echoed = Vec::new();
        conn.read_to_end(&mut echoed)
            .unwrap_or_else(|e| panic!("{}: {e}", mode.server));
        assert!(echoed == message, "{}: wrong echo", mode.server);
        server.stop_cleanly();
    }
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// One client sends and never reads; another resets its connection in the
/// middle of a reply. The server stops reading from the first (its memory
/// stays bounded), closes the second, and goes on serving everyone else.
#[test]
fn misbehaving_clients_harm_no_one_else() {
    for mode in SERVERS {
        let server = Server::start(mode, &["--quiet"]);
        let rss_before = rss_kib(server.pid());

        let hog = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        hog.set_nonblocking(true).unwrap();
        let chunk = vec![b'x'; 1 << 16];
        let mut sent = 0usize;
        let mut last_progress = Instant::now();
        while sent < (64 << 20) && last_progress.elapsed() < Duration::from_millis(500) {
            match (&hog).write(&chunk) {
                Ok(n) => {
                    sent += n;
                    last_progress = Instant::now();
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        assert!(
            sent < (32 << 20),
            "{}: took {sent} bytes from a client that never reads",
            mode.server
        );
        let growth = rss_kib(server.pid()).saturating_sub(rss_before);
        assert!(
            growth < 8 << 10,
            "{}: grew by {growth} KiB for a client that never reads",
            mode.server
        );

        // A reset with a reply on its way: SO_LINGER 0 makes close() send RST.
        let resetter = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        (&resetter).write_all(&vec![b'y'; 1 << 20]).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&resetter);
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
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

        assert_echoes(
            &server,
            mode,
            &["--quiet", "--conns", "20", "--size", "65536"],
        );
        drop(hog);
        assert_echoes(&server, mode, &["--quiet", "--conns", "2"]);
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
    let output = cmd.output().unwrap();
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
        "echo_client",
    ] {
        let exe = build_example(program);
        for args in [&["--bogus"][..], &["--port", "70000"], &["--port"]] {
            let output = Command::new(&exe).args(args).output().unwrap();
            assert_eq!(output.status.code(), Some(2), "{program} {args:?}");
            assert!(!output.stderr.is_empty(), "{program} {args:?} says why");
        }
        let help = Command::new(&exe).arg("--help").output().unwrap();
        assert!(help.status.success() && help.stdout.starts_with(b"usage: "));
    }
    let output = Command::new(build_example("echo_client"))
        .arg("--independent")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "--independent needs --size");
    // Flags of other programs are refused too.
    let output = Command::new(build_example("epoll_echo_server"))
        .arg("--upper")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}
