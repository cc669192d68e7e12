//! The articles' last scripts, mirrored in c-examples/ and python/examples/:
//! S2 (select_echo_server --simple), S4 (--dict), S8 (nonblocking_echo_server,
//! and its --evloop twin), S9 (chat_server) and C4 (echo_client --hello); and
//! the servers bench/io_models.py measures. Each server answers the articles'
//! client (tests/py/c1_client.py) and echo_client's byte-exact load; S8 stops
//! by itself; S9 is driven through a pipe as its standard input with two
//! clients, neither waiting on the other's reply; the C ones under memcheck.

mod common;
use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(60);

/// A server program, its flags, and what echo_client must be told to expect.
#[derive(Clone, Copy, Debug)]
struct Mode {
    program: &'static str,
    flags: &'static [&'static str],
    /// The client's flags: ["--upper"] for the servers that reply upper-cased.
    expect: &'static [&'static str],
}

const fn mode(
    program: &'static str,
    flags: &'static [&'static str],
    expect: &'static [&'static str],
) -> Mode {
    Mode {
        program,
        flags,
        expect,
    }
}

const UPPER: &[&str] = &["--upper"];
const S2: [Mode; 2] = [
    mode("select_echo_server", &["--simple"], &[]),
    mode("select_echo_server.py", &["--simple"], &[]),
];
const S4: [Mode; 2] = [
    mode("select_echo_server", &["--dict"], &[]),
    mode("select_echo_server.py", &["--dict"], &[]),
];
const S8: [Mode; 2] = [
    mode("nonblocking_echo_server", &[], UPPER),
    mode("nonblocking_echo_server.py", &[], UPPER),
];
const S8_TWIN: [Mode; 2] = [
    mode("nonblocking_echo_server", &["--evloop"], UPPER),
    mode("nonblocking_echo_server.py", &["--evloop"], UPPER),
];

fn start(mode: Mode, extra: &[&str]) -> ExampleServer {
    let mut cmd = example_command(mode.program);
    cmd.args(mode.flags).args(extra);
    ExampleServer::spawn(cmd, false)
}

fn start_under_memcheck(mode: Mode, piped_stdin: bool) -> ExampleServer {
    let mut cmd = valgrind_command(&build_example(mode.program));
    cmd.args(mode.flags);
    ExampleServer::spawn(cmd, piped_stdin)
}

/// Runs echo_client (the C one, or echo_client.py) against `port`.
fn echo_client(client: &str, port: u16, args: &[&str]) -> std::process::Output {
    example_command(client)
        .args(["--port", &port.to_string(), "--timeout", "120"])
        .args(args)
        .output()
        .expect("run echo_client")
}

fn assert_echoes(mode: Mode, port: u16, args: &[&str]) {
    let output = echo_client("echo_client", port, &[mode.expect, args].concat());
    assert!(
        output.status.success(),
        "{mode:?} with echo_client {args:?}: {}",
        show(&output)
    );
}

/// The byte-exact load of common::echo_loads, and the Python client once.
fn assert_echo_load(mode: Mode, port: u16, large: bool) {
    let loads = echo_loads(large);
    for args in &loads {
        assert_echoes(mode, port, args);
    }
    let output = echo_client(
        "echo_client.py",
        port,
        &[mode.expect, loads.last().unwrap()].concat(),
    );
    assert!(
        output.status.success(),
        "{mode:?} with echo_client.py: {}",
        show(&output)
    );
}

/// C1 against `port`, its whole transcript checked (the replies upper-cased
/// where the mode expects `--upper`); returns the transcript.
fn assert_c1_answered(port: u16, expect: &[&str]) -> String {
    c1_transcript(port, |message| {
        if expect == UPPER {
            message.to_uppercase()
        } else {
            message.to_string()
        }
    })
}

/// Checks that `log` has lines containing each of `expected`, in that order.
fn assert_log_has(log: &str, expected: &[&str]) {
    let mut lines = log.lines();
    for want in expected {
        assert!(
            lines.any(|line| line.contains(want)),
            "no line with {want:?} (in this order) in the log:\n{log}"
        );
    }
}

// ---- S2 and S4 ---------------------------------------------------------------

#[test]
fn s2_and_s4_echo_every_byte() {
    for mode in S2.into_iter().chain(S4) {
        let mut server = start(mode, &["--quiet"]);
        assert_echo_load(mode, server.port, true);
        server.stop_cleanly();
    }
}

/// C1 against `mode`, then its log: `expected` in that order.
fn c1_session_logs(mode: Mode, expected: &[&str]) {
    let mut server = start(mode, &[]);
    assert_c1_answered(server.port, mode.expect);
    // Let the server see both connections close before stopping it.
    server.wait_for("client disconnected", LONG);
    assert_log_has(&server.stop_cleanly(), expected);
}

#[test]
fn c1_against_s2_replies_to_the_sender() {
    for mode in S2 {
        c1_session_logs(
            mode,
            &[
                "] [] []", // print(readable, writeable, exceptional)
                "new connection ('127.0.0.1', ",
                "received data b'This is the message. '",
                "received data b'in parts.'",
                "client disconnected ('127.0.0.1', ",
            ],
        );
    }
}

#[test]
fn c1_against_s4_sends_from_the_outputs() {
    for mode in S4 {
        c1_session_logs(
            mode,
            &[
                "new connection ('127.0.0.1', ",
                "received data b'This is the message. '",
                "[] [('127.0.0.1', ", // writable: in outputs until its message is sent
                "received data b'in parts.'",
                "client disconnected ('127.0.0.1', ",
            ],
        );
    }
}

/// What the originals lacked: a client that never reads, and one that resets
/// with a reply on its way, harm no one else (Python's allocator keeps more
/// of what it once held: 16 MiB of growth allowed).
#[test]
fn misbehaving_clients_harm_no_one_else() {
    for mode in S2.into_iter().chain(S4).chain(S8).chain(S8_TWIN) {
        let mut server = start(mode, &["--quiet"]);
        let name = format!("{mode:?}");
        assert_misbehaving_clients_harm_no_one(
            &name,
            server.pid(),
            server.port,
            16 << 10,
            |args| assert_echoes(mode, server.port, args),
        );
        server.stop_cleanly();
    }
}

// ---- S8 and its twin -----------------------------------------------------------

#[test]
fn s8_and_its_twin_answer_in_upper_case() {
    for mode in S8.into_iter().chain(S8_TWIN) {
        let mut server = start(mode, &["--quiet"]);
        assert_c1_answered(server.port, mode.expect);
        assert_echo_load(mode, server.port, true);
        server.stop_cleanly();
    }
}

#[test]
fn s8_logs_its_other_work_and_list_sizes() {
    for mode in S8.into_iter().chain(S8_TWIN) {
        let mut server = start(mode, &[]);
        server.wait_for("doing other work", LONG);
        server.wait_for("rlist: 0", LONG);
        let mut held = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        held.set_read_timeout(Some(LONG)).unwrap();
        held.write_all(b"ping").unwrap();
        let mut reply = [0u8; 4];
        held.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"PING");
        server.wait_for("rlist: 1", LONG);
        server.wait_for("wlist: 0", LONG);
        drop(held);
        server.stop_cleanly();
    }
}

/// --max-idle ends it once no connection is open and nothing moved for that
/// long; --seconds ends it even with a connection open. Either way with
/// status 0, and the open connection sees the end of the stream.
#[test]
fn s8_stops_by_itself() {
    for mode in S8.into_iter().chain(S8_TWIN) {
        let mut server = start(mode, &["--quiet", "--max-idle", "2"]);
        // An open connection is not idle, however long the client takes to start.
        let held = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        assert_c1_answered(server.port, mode.expect);
        drop(held);
        let (status, log, stderr) = server.wait_end(LONG);
        assert!(status.success(), "{mode:?}: {status}\n{log}\n{stderr}");

        let started = Instant::now();
        let mut server = start(mode, &["--quiet", "--seconds", "1", "--max-idle", "1"]);
        let mut held = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        held.set_read_timeout(Some(LONG)).unwrap();
        let (status, log, stderr) = server.wait_end(LONG);
        assert!(status.success(), "{mode:?}: {status}\n{log}\n{stderr}");
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "{mode:?} ended early"
        );
        let mut rest = Vec::new();
        held.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }
}

/// The articles' point: with nothing to do, S8 spins and its twin sleeps.
/// (The busy one is asked for a twentieth of what it takes on an idle
/// machine, so that a loaded one passes.)
#[test]
fn s8_burns_cpu_while_idle_and_its_twin_does_not() {
    for (busy, twin) in S8.into_iter().zip(S8_TWIN) {
        let mut busy = start(busy, &["--quiet", "--seconds", "30"]);
        let mut twin = start(twin, &["--quiet", "--seconds", "30"]);
        std::thread::sleep(Duration::from_millis(300));
        let (busy_before, twin_before) = (cpu_ticks(busy.pid()), cpu_ticks(twin.pid()));
        std::thread::sleep(Duration::from_secs(1));
        let busy_used = cpu_ticks(busy.pid()) - busy_before;
        let twin_used = cpu_ticks(twin.pid()) - twin_before;
        assert!(
            busy_used >= 5,
            "the busy server used {busy_used} ticks in 1 s"
        );
        assert!(
            twin_used <= 3,
            "the twin used {twin_used} ticks in 1 s, idle"
        );
        busy.stop_cleanly();
        twin.stop_cleanly();
    }
}

// ---- C4 -------------------------------------------------------------------------

/// echo_client --hello (C and Python) sends "PID hello" and prints each
/// reply, --rounds times or for --seconds; a wrong reply fails.
#[test]
fn c4_prints_each_reply_of_pid_hello() {
    let mut server = start(S8[0], &["--quiet"]);
    let port = server.port.to_string();
    for client in ["echo_client", "echo_client.py"] {
        let child = example_command(client)
            .args(["--hello", "--upper", "--rounds", "5", "--port", &port])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{client}: {}", show(&output));
        let out = String::from_utf8_lossy(&output.stdout);
        let replies: Vec<&str> = out.lines().filter(|l| l.ends_with(" HELLO")).collect();
        assert_eq!(replies, vec![format!("{pid} HELLO"); 5], "{client}: {out}");
        assert!(out.contains(&format!("sending \"{pid} hello\"")), "{out}");

        let started = Instant::now();
        let output = echo_client(
            client,
            server.port,
            &["--hello", "--upper", "--seconds", "1"],
        );
        assert!(output.status.success(), "{client}: {}", show(&output));
        assert!(started.elapsed() >= Duration::from_secs(1));
        assert!(String::from_utf8_lossy(&output.stdout).contains(" HELLO\n"));

        // S8 answers in upper case: a client expecting the echo as sent fails.
        let output = echo_client(
            client,
            server.port,
            &["--hello", "--rounds", "1", "--quiet"],
        );
        assert_eq!(output.status.code(), Some(1), "{client}: {}", show(&output));
        assert!(String::from_utf8_lossy(&output.stderr).contains("expected 0x68"));
    }
    server.stop_cleanly();
}

// ---- S9 ---------------------------------------------------------------------------

fn chat_client(port: u16) -> TcpStream {
    let conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(LONG)).unwrap();
    conn
}

fn read_reply(conn: &mut TcpStream, expected: &str) {
    let mut reply = vec![0u8; expected.len()];
    conn.read_exact(&mut reply).unwrap();
    assert_eq!(String::from_utf8_lossy(&reply), expected);
}

/// Nothing has come for `conn` (yet).
fn assert_nothing_for(conn: &mut TcpStream) {
    conn.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let got = conn.read(&mut byte);
    conn.set_nonblocking(false).unwrap();
    assert!(
        matches!(&got, Err(e) if e.kind() == ErrorKind::WouldBlock),
        "expected nothing, got {got:?}"
    );
}

/// The operator, on a pipe, answers two clients. While client #1's message
/// waits for its reply, client #2 is accepted, read and answered ("#2 ...");
/// a client that comes while the operator is half-way through a line is
/// served too; a client that leaves is forgotten; and the end of standard
/// input leaves the server serving.
fn chat_session(mut server: ExampleServer) -> String {
    let mut operator = server.stdin.take().expect("a pipe as standard input");
    let mut a = chat_client(server.port);
    server.wait_for("client #1: <socket fd=", LONG);
    let mut b = chat_client(server.port);
    server.wait_for("client #2: <socket fd=", LONG);

    a.write_all(b"question from A").unwrap();
    server.wait_for("client #1: question from A", LONG);
    // The original would be blocked in input() now: B would not be read.
    b.write_all(b"question from B").unwrap();
    server.wait_for("client #2: question from B", LONG);
    server.wait_for("reply to client #1>>>", LONG);

    operator.write_all(b"#2 answer for B\n").unwrap();
    read_reply(&mut b, "answer for B");
    assert_nothing_for(&mut a); // B did not wait for A's reply, nor A got B's
    operator.write_all(b"answer for A\n").unwrap();
    read_reply(&mut a, "answer for A");

    // Half a line typed, then a third client comes and asks.
    operator.write_all(b"half a li").unwrap();
    let mut c = chat_client(server.port);
    c.write_all(b"question from C").unwrap();
    server.wait_for("client #3: question from C", LONG);
    b.write_all(b"again from B").unwrap();
    server.wait_for("client #2: again from B", LONG);
    operator.write_all(b"ne\n").unwrap(); // the oldest question is C's
    read_reply(&mut c, "half a line");
    operator.write_all(b"\nthen B\n").unwrap(); // an empty line sends nothing
    read_reply(&mut b, "then B");
    server.wait_for("an empty reply would send nothing", LONG);

    drop(a);
    server.wait_for("client #1 left", LONG);
    operator.write_all(b"#1 too late\n").unwrap();
    server.wait_for("there is no client #1", LONG);

    drop(operator);
    server.wait_for("end of standard input", LONG);
    b.write_all(b"still there?").unwrap();
    server.wait_for("client #2: still there?", LONG);
    assert_nothing_for(&mut c);
    server.stop_cleanly()
}

#[test]
fn s9_operator_answers_two_clients_through_a_pipe() {
    for program in ["chat_server", "chat_server.py"] {
        let log = chat_session(ExampleServer::spawn(example_command(program), true));
        // print(len(r)) and print('>>', r) each turn.
        assert_log_has(&log, &["1", ">> [('127.0.0.1', "]);
        assert!(log.contains(">> [<stdin>]"), "{log}");
    }
}

/// Without a terminal or a pipe (/dev/null cannot be watched by epoll), the
/// server says so and goes on serving, without replies.
#[test]
fn s9_without_an_operator_still_reads_its_clients() {
    for program in ["chat_server", "chat_server.py"] {
        let mut server = ExampleServer::spawn(example_command(program), false);
        server.wait_for("standard input cannot be watched", LONG);
        let mut a = chat_client(server.port);
        a.write_all(b"anyone?").unwrap();
        server.wait_for("client #1: anyone?", LONG);
        server.stop_cleanly();
    }
}

// ---- the servers bench/io_models.py measures ------------------------------------------

/// Their replies are cut short when the socket does not take them whole, so
/// no 4 MiB; everything else must come back byte for byte.
#[test]
fn io_model_bench_servers_echo_every_byte() {
    for model in ["select", "poll", "epoll"] {
        let mut cmd = Command::new(build_example("bench_io_models"));
        cmd.args(["--model", model]);
        let mut server = ExampleServer::spawn(cmd, false);
        assert_echo_load(mode("bench_io_models", &[], &[]), server.port, false);
        server.stop_cleanly();
    }
    for model in ["select", "poll", "epoll-selector", "evloop-selector"] {
        let mut cmd = Command::new("python3");
        cmd.arg(root().join("bench/io_models_server.py"))
            .args(["--model", model])
            .env("EVLOOP_LIBRARY", lib_dir().join("libevloop.so"));
        let mut server = ExampleServer::spawn(cmd, false);
        assert_echo_load(mode("io_models_server.py", &[], &[]), server.port, false);
        server.stop_cleanly();
    }
}

// ---- memcheck, arguments ---------------------------------------------------------

#[test]
fn the_new_c_servers_are_clean_under_memcheck() {
    // SIGINT (Ctrl-C) ends a server as cleanly as SIGTERM.
    for (mode, signo) in [
        (S2[0], libc::SIGTERM),
        (S4[0], libc::SIGINT),
        (S8[0], libc::SIGTERM),
        (S8_TWIN[0], libc::SIGINT),
    ] {
        let mut server = start_under_memcheck(mode, false);
        assert_c1_answered(server.port, mode.expect);
        assert_echoes(
            mode,
            server.port,
            &["--quiet", "--conns", "3", "--size", "300000"],
        );
        let (status, _, stderr) = server.stop_with(signo);
        assert!(status.success(), "{mode:?}: {status}\n{stderr}");
        assert_memcheck_report_clean(&stderr);
    }
    let mut server = start_under_memcheck(mode("chat_server", &[], &[]), true);
    let mut operator = server.stdin.take().unwrap();
    let mut a = chat_client(server.port);
    a.write_all(b"hello?").unwrap();
    server.wait_for("client #1: hello?", LONG);
    operator.write_all(b"hello!\n").unwrap();
    read_reply(&mut a, "hello!");
    drop(a);
    server.wait_for("client #1 left", LONG);
    let (status, _, stderr) = server.stop_with(libc::SIGTERM);
    assert!(status.success(), "chat_server: {status}\n{stderr}");
    assert_memcheck_report_clean(&stderr);
}

#[test]
fn c4_client_is_clean_under_memcheck() {
    let mut server = start(S8_TWIN[0], &["--quiet"]);
    let port = server.port.to_string();
    let args = ["--hello", "--upper", "--rounds", "20", "--port", &port];
    assert_runs_clean_under_memcheck(&build_example("echo_client"), &args);
    server.stop_cleanly();
}

#[test]
fn bad_arguments_exit_with_status_2() {
    let cases: [(&str, &[&str]); 7] = [
        ("select_echo_server", &["--simple", "--dict"]),
        ("nonblocking_echo_server", &["--seconds", "0"]),
        ("nonblocking_echo_server", &["--upper"]),
        ("chat_server", &["--bogus"]),
        ("echo_client", &["--seconds", "1"]),
        ("echo_client", &["--hello", "--size", "10"]),
        ("echo_client", &["--hello", "--interactive"]),
    ];
    for (program, args) in cases {
        for program in [program.to_string(), format!("{program}.py")] {
            let output = example_command(&program).args(args).output().unwrap();
            assert_eq!(
                output.status.code(),
                Some(2),
                "{program} {args:?}: {}",
                show(&output)
            );
            assert!(!output.stderr.is_empty(), "{program} {args:?} says why");
        }
    }
    for program in ["nonblocking_echo_server", "chat_server", "bench_io_models"] {
        let help = Command::new(build_example(program))
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            help.status.success() && help.stdout.starts_with(b"usage: "),
            "{program}"
        );
    }
}
