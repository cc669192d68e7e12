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
