//! Every program in c-examples/ compiles with -std=c11 -Wall -Wextra -Werror
//! and runs: the demo (also under memcheck), short benchmark runs, and the
//! UDP echo server with its client (byte-exact, truncation, memcheck).

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn demo_pings_five_times_and_ends_by_itself() {
    let exe = build_example("demo");
    let output = run(&mut Command::new(&exe));
    assert!(output.status.success(), "{}", show(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    for i in 1..=5 {
        assert!(
            stdout.contains(&format!("answerer got \"ping {i}\"")),
            "{stdout}"
        );
    }
    assert!(stdout.ends_with("loop ended: Success\n"), "{stdout}");

    let checked = run(&mut valgrind_command(&exe));
    assert!(checked.status.success(), "{}", show(&checked));
    assert_memcheck_clean(&checked);
}

fn numbers(stdout: &[u8]) -> Vec<Vec<u64>> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|w| w.parse().expect("a number"))
                .collect()
        })
        .collect()
}

#[test]
fn bench_pipes_relays_every_byte_in_both_modes() {
    let exe = build_example("bench_pipes");
    for mode in [None, Some("--raw")] {
        let mut cmd = Command::new(&exe);
        cmd.args(["-n", "200", "-a", "20", "-w", "5000", "-r", "3"]);
        cmd.args(mode);
        let output = run(&mut cmd);
        assert!(output.status.success(), "{}", show(&output));
        let runs = numbers(&output.stdout);
        assert_eq!(runs.len(), 3, "{}", show(&output));
        assert!(
            runs.iter().all(|r| r.len() == 2 && r[0] >= r[1]),
            "{}",
            show(&output)
        );
    }
    let bad = run(Command::new(&exe).args(["-n", "5", "-a", "10"]));
    assert_eq!(
        bad.status.code(),
        Some(2),
        "more active than pipes is refused"
    );
}

#[test]
fn bench_fork_reports_the_fork_and_the_childs_evl_loop_fork() {
    let exe = build_example("bench_fork");
    let output = run(Command::new(&exe).args(["--regs", "50", "--forks", "5"]));
    assert!(output.status.success(), "{}", show(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("50 registrations: fork()") && stdout.contains("evl_loop_fork"),
        "{stdout}"
    );
    let output = run(Command::new(&exe).args(["--register", "1000"]));
    assert!(output.status.success(), "{}", show(&output));
    let bad = run(Command::new(&exe).arg("--nonsense"));
    assert_eq!(bad.status.code(), Some(2), "{}", show(&bad));
}

#[test]
fn bench_timers_reports_both_waits() {
    let exe = build_example("bench_timers");
    let output =
        run(Command::new(&exe).args(["--rounds", "5", "--pending", "1000", "--delay-ms", "2"]));
    assert!(output.status.success(), "{}", show(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("bare") && stdout.contains("evloop"),
        "{stdout}"
    );
}

// ---- udp_echo_server and udp_echo_client --------------------------------------

/// udp_echo_client against `port` with `args`.
fn udp_client(port: u16, args: &[&str]) -> std::process::Output {
    run(Command::new(build_example("udp_echo_client"))
        .args(["--port", &port.to_string(), "--timeout", "60", "--quiet"])
        .args(args))
}

/// Every size a UDP datagram can have, echoed byte for byte, each reply
/// checked by the client; then the benchmarks' load (20 clients, 64-byte
/// datagrams, each one in flight at a time); and the same through a
/// dual-stack server, from IPv6 and from IPv4.
#[test]
fn udp_echo_server_echoes_every_datagram_byte_exact() {
    let mut server = ExampleServer::spawn(example_command("udp_echo_server"), false);
    let port = server.port;
    for (conns, size) in [
        ("1", "0"),
        ("2", "1"),
        ("2", "64"),
        ("2", "1472"),
        ("2", "9000"),
        ("1", "65507"),
    ] {
        let output = udp_client(port, &["--conns", conns, "--size", size, "--rounds", "20"]);
        assert!(
            output.status.success(),
            "{conns} x {size}: {}",
            show(&output)
        );
    }
    let load = udp_client(port, &["--conns", "20", "--size", "64", "--rounds", "500"]);
    assert!(load.status.success(), "{}", show(&load));
    server.stop_cleanly();

    let mut cmd = example_command("udp_echo_server");
    cmd.args(["--host", "::", "--quiet"]);
    let mut dual = ExampleServer::spawn(cmd, false);
    for host in ["::1", "127.0.0.1"] {
        let output = udp_client(
            dual.port,
            &[
                "--host", host, "--conns", "5", "--size", "700", "--rounds", "50",
            ],
        );
        assert!(output.status.success(), "{host}: {}", show(&output));
    }
    dual.stop_cleanly();
}

/// A server whose receive size is smaller than a datagram gets it
/// truncated and says so (in its log and its count); the client sees the
/// shorter reply: accepted with --truncated-to, refused without.
#[test]
fn udp_echo_server_reports_truncated_datagrams() {
    let mut cmd = example_command("udp_echo_server");
    cmd.args(["--recv-size", "100"]);
    let mut server = ExampleServer::spawn(cmd, false);
    let exact = udp_client(server.port, &["--size", "100", "--rounds", "3"]);
    assert!(exact.status.success(), "{}", show(&exact));
    let cut = udp_client(
        server.port,
        &["--size", "1000", "--rounds", "3", "--truncated-to", "100"],
    );
    assert!(cut.status.success(), "{}", show(&cut));
    let refused = udp_client(server.port, &["--size", "1000"]);
    assert_eq!(refused.status.code(), Some(1), "{}", show(&refused));
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("a reply of 100 bytes") && why.contains("expected 1000"),
        "{why}"
    );
    server.wait_for("truncated to 100 bytes", Duration::from_secs(30));
    let log = server.stop_cleanly();
    assert!(log.contains("after 7 datagrams (4 truncated)"), "{log}");
    assert_eq!(log.matches("truncated to 100 bytes").count(), 4, "{log}");
}

/// The server under memcheck, and the client under memcheck.
#[test]
fn udp_echo_server_and_client_are_clean_under_memcheck() {
    let mut cmd = valgrind_command(&build_example("udp_echo_server"));
    cmd.arg("--quiet");
    let mut server = ExampleServer::spawn(cmd, false);
    let load = udp_client(
        server.port,
        &["--conns", "4", "--size", "2000", "--rounds", "20"],
    );
    assert!(load.status.success(), "{}", show(&load));
    let (status, _, stderr) = server.stop_with(libc::SIGTERM);
    assert!(status.success(), "{status}\n{stderr}");
    assert_memcheck_report_clean(&stderr);

    let mut native = ExampleServer::spawn(example_command("udp_echo_server"), false);
    let mut client = valgrind_command(&build_example("udp_echo_client"));
    client.args([
        "--port",
        &native.port.to_string(),
        "--conns",
        "3",
        "--size",
        "300",
        "--rounds",
        "10",
    ]);
    let output = run(&mut client);
    assert!(output.status.success(), "{}", show(&output));
    assert_memcheck_clean(&output);
    native.stop_cleanly();
}

// ---- spawn and resolve --------------------------------------------------------

/// `spawn CMD [ARG...]`: the child's stdout and stderr streamed to its
/// own, then how the child ended, and its status as spawn's own.
#[test]
fn spawn_streams_the_output_and_reports_how_the_child_ended() {
    let exe = build_example("spawn");
    let output = run(Command::new(&exe).args([
        "sh",
        "-c",
        "echo out; echo err >&2; printf 'no newline'; exit 3",
    ]));
    assert_eq!(output.status.code(), Some(3), "{}", show(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with("out\nno newline[sh: pid "),
        "{}",
        show(&output)
    );
    assert!(
        stdout.ends_with(" exited with status 3]\n"),
        "{}",
        show(&output)
    );
    assert_eq!(String::from_utf8_lossy(&output.stderr), "err\n");

    // A megabyte through the pipe, byte for byte.
    let output = run(Command::new(&exe).args(["head", "-c", "1000000", "/dev/zero"]));
    assert!(output.status.success(), "{}", show(&output));
    assert!(output.stdout[..1_000_000].iter().all(|&b| b == 0));
    assert!(
        String::from_utf8_lossy(&output.stdout[1_000_000..]).ends_with("exited with status 0]\n")
    );

    let output = run(Command::new(&exe).args(["sh", "-c", "kill -TERM $$"]));
    assert_eq!(output.status.code(), Some(128 + libc::SIGTERM));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("killed by signal 15"),
        "{}",
        show(&output)
    );

    let output = run(Command::new(&exe).arg("no-such-program-for-evloop"));
    assert_eq!(output.status.code(), Some(127), "{}", show(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "spawn: no-such-program-for-evloop: No such file or directory\n"
    );
    let output = run(&mut Command::new(&exe));
    assert_eq!(output.status.code(), Some(2), "no command");
}

#[test]
fn spawn_passes_sigterm_on_to_its_child() {
    let exe = build_example("spawn");
    let child = Command::new(&exe)
        .args(["sh", "-c", "echo ready; exec sleep 30"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(child);
    // Once the child has started (its line came through), signal spawn.
    let mut stdout = child.stdout.take().unwrap();
    let mut ready = [0u8; 6];
    std::io::Read::read_exact(&mut stdout, &mut ready).unwrap();
    assert_eq!(&ready, b"ready\n");
    // SAFETY: signals our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_at_most(&mut child, PATIENCE);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{rest}");
    assert!(
        rest.contains("sleep: pid") || rest.contains("sh: pid"),
        "{rest}"
    );
    assert!(rest.contains("killed by signal 15"), "{rest}");
}

/// `resolve NAME...`: every name looked up at once on the pool, each
/// address or error printed; `resolve --connect HOST PORT`.
#[test]
fn resolve_prints_each_names_addresses_and_connects_by_name() {
    let exe = build_example("resolve");
    let output = run(Command::new(&exe).args(["127.0.0.1", "::1", "bad..name", "localhost"]));
    assert_eq!(output.status.code(), Some(1), "one name fails");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort();
    assert!(
        lines.contains(&"127.0.0.1: 127.0.0.1 port 0 (IPv4)"),
        "{stdout}"
    );
    assert!(lines.contains(&"::1: ::1 port 0 (IPv6)"), "{stdout}");
    assert!(
        lines.contains(&"bad..name: Name or service not known"),
        "{stdout}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("localhost: ")),
        "{stdout}"
    );

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let output = run(Command::new(&exe).args(["--connect", "localhost", &port]));
    assert!(output.status.success(), "{}", show(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("localhost: connected to 127.0.0.1 port {port}\n")
    );
    drop(listener);
    // A port that refuses: a socket bound there, not listening (a dropped
    // listener is not enough while other tests start processes: a child
    // between its fork and its exec holds a copy).
    // SAFETY: plain socket calls on a socket this test owns and closes.
    let refusing =
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(refusing >= 0);
    // SAFETY: sockaddr_in is plain data; zeroed is valid.
    let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sin.sin_family = libc::AF_INET as libc::sa_family_t;
    sin.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `sin` is a sockaddr_in of `len` bytes.
    unsafe {
        assert_eq!(
            libc::bind(refusing, (&sin as *const libc::sockaddr_in).cast(), len),
            0
        );
        assert_eq!(
            libc::getsockname(
                refusing,
                (&mut sin as *mut libc::sockaddr_in).cast(),
                &mut len
            ),
            0
        );
    }
    let port = u16::from_be(sin.sin_port).to_string();
    let output = run(Command::new(&exe).args(["--connect", "127.0.0.1", &port]));
    // SAFETY: ours, closed once.
    unsafe { libc::close(refusing) };
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "127.0.0.1: could not connect: Connection refused\n"
    );
    assert_eq!(
        run(Command::new(&exe).arg("--connect")).status.code(),
        Some(2)
    );
}

#[test]
fn spawn_and_resolve_are_memcheck_clean() {
    let spawn = build_example("spawn");
    let mut cmd = valgrind_command(&spawn);
    cmd.args(["sh", "-c", "echo out; echo err >&2; exit 4"]);
    let checked = run(&mut cmd);
    assert_eq!(checked.status.code(), Some(4), "{}", show(&checked));
    assert_memcheck_clean(&checked);

    let resolve = build_example("resolve");
    let mut cmd = valgrind_command(&resolve);
    cmd.args(["127.0.0.1", "::1", "localhost"]);
    let checked = run(&mut cmd);
    assert!(checked.status.success(), "{}", show(&checked));
    assert_memcheck_clean(&checked);
}
