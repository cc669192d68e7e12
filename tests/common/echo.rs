//! The echo servers' test harness, shared by the test files that run them
//! (`echo_servers.rs`, `embedded_servers.rs`): start a server on a free
//! port, run `echo_client` against it, stop it with a signal.

use super::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// A server program and the flags that select its variant; the client gets
/// the same flags so that it knows which reply to expect.
#[derive(Clone, Copy)]
pub struct Mode {
    pub server: &'static str,
    pub flags: &'static [&'static str],
    /// Flags for the server alone.
    pub server_flags: &'static [&'static str],
}

/// The command that runs `program`: a C example, or a Python one.
pub fn program_command(program: &str) -> Command {
    if program.ends_with(".py") {
        let mut cmd = Command::new("python3");
        cmd.arg(root().join("python/examples").join(program))
            .env("EVLOOP_LIBRARY", lib_dir().join("libevloop.so"));
        cmd
    } else {
        Command::new(build_example(program))
    }
}

pub struct Server {
    pub child: Child,
    pub port: u16,
    /// Reads the server's log as it comes, so a full pipe never blocks it.
    pub log: std::thread::JoinHandle<String>,
}

impl Server {
    /// Starts `mode` on a free port (the first line it prints).
    pub fn start(mode: Mode, extra: &[&str]) -> Server {
        let mut cmd = program_command(mode.server);
        cmd.args(extra);
        Server::spawn(cmd, mode)
    }

    /// Starts `mode` under valgrind's memcheck.
    pub fn start_under_memcheck(mode: Mode) -> Server {
        Server::spawn(valgrind_command(&build_example(mode.server)), mode)
    }

    pub fn spawn(mut cmd: Command, mode: Mode) -> Server {
        cmd.args(["--port", "0"])
            .args(mode.flags)
            .args(mode.server_flags)
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

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGTERM, then the exit status, the rest of stdout, and stderr.
    pub fn stop(self) -> (ExitStatus, String, String) {
        self.stop_with(libc::SIGTERM)
    }

    /// `signo`, then the exit status, the rest of stdout, and stderr.
    pub fn stop_with(mut self, signo: i32) -> (ExitStatus, String, String) {
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
    pub fn stop_cleanly(self) -> String {
        let (status, out, err) = self.stop();
        assert!(
            status.success(),
            "the server ended with {status}\n{out}\n{err}"
        );
        out
    }
}

pub fn wait_at_most(child: &mut Child, limit: Duration) -> ExitStatus {
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

pub fn echo_client(port: u16, flags: &[&str], args: &[&str]) -> Output {
    Command::new(build_example("echo_client"))
        .args(["--port", &port.to_string(), "--timeout", "120"])
        .args(flags)
        .args(args)
        .output()
        .expect("run echo_client")
}

/// Runs echo_client with `args` and checks that every reply was right.
pub fn assert_echoes(server: &Server, mode: Mode, args: &[&str]) {
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
pub fn echoes_every_byte(mode: Mode, large: bool) {
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

/// A client sends `len` bytes, shuts down its writing side, and must read
/// exactly them back, then end-of-file.
pub fn assert_half_closed_echo(mode: Mode, len: u32) {
    let server = Server::start(mode, &["--quiet"]);
    let mut conn = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let message: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    conn.write_all(&message).unwrap();
    conn.shutdown(Shutdown::Write).unwrap();
    let mut echoed = Vec::new();
    conn.read_to_end(&mut echoed)
        .unwrap_or_else(|e| panic!("{}: {e}", mode.server));
    assert!(echoed == message, "{}: wrong echo", mode.server);
    server.stop_cleanly();
}
