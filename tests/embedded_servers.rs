//! The echo servers that run evloop inside another program's loop:
//! c-examples/glib_embed.c (a GLib main loop) and
//! python/examples/embedded_in_asyncio.py (an asyncio loop). The echo
//! load of the other servers (common::echo_loads), half-close, evloop's own
//! timers (idle timeouts) firing through the host's timeout, the host's
//! timer ticking beside the echo, and memcheck on the GLib one.

mod common;
use common::*;
use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const GLIB: &str = "glib_embed";
const ASYNCIO: &str = "embedded_in_asyncio.py";

fn start(program: &str, args: &[&str]) -> ExampleServer {
    let mut cmd = example_command(program);
    cmd.args(args);
    ExampleServer::spawn(cmd, false)
}

/// echo_client with `args` against `server`, every reply checked.
fn assert_echoes(program: &str, server: &ExampleServer, args: &[&str]) {
    let output = echo_client(server.port, &[], args);
    assert!(
        output.status.success(),
        "{program} with echo_client {args:?}: {}",
        show(&output)
    );
}

fn echoes_every_byte(program: &str) {
    let mut server = start(program, &["--quiet"]);
    for args in echo_loads(true) {
        assert_echoes(program, &server, &args);
    }
    server.stop_cleanly();
}

#[test]
fn glib_embed_echoes_every_byte() {
    echoes_every_byte(GLIB);
}

#[test]
fn python_embedded_in_asyncio_echoes_every_byte() {
    echoes_every_byte(ASYNCIO);
}

/// The host's timer went on while evloop served: the program's last line
/// says how often it ticked (every 100 ms; at least once in the 0.5 s of
/// echo here, however loaded the machine).
fn host_timer_ticks_beside_the_echo(program: &str, last_line: &str) {
    let mut server = start(program, &["--quiet"]);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) {
        assert_echoes(
            program,
            &server,
            &["--quiet", "--conns", "5", "--size", "1000"],
        );
    }
    let log = server.stop_cleanly();
    let ticks: u64 = log
        .lines()
        .find_map(|l| {
            l.strip_prefix(last_line)?
                .strip_suffix(" times")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{program}: no {last_line:?} line in\n{log}"));
    assert!(ticks >= 1, "{program}: the host's timer never ticked");
}

#[test]
fn glib_timer_ticks_beside_the_echo() {
    host_timer_ticks_beside_the_echo(GLIB, "glib timer ticked ");
}

#[test]
fn asyncio_timer_ticks_beside_the_echo() {
    host_timer_ticks_beside_the_echo(ASYNCIO, "asyncio timer ticked ");
}

#[test]
fn half_closed_client_gets_its_echo_then_eof() {
    for program in [GLIB, ASYNCIO] {
        let mut server = start(program, &["--quiet"]);
        assert_half_closed_echo(program, server.port, 1_000_000);
        server.stop_cleanly();
    }
}

/// An idle timeout is an evloop timer: it fires only if the host wakes
/// evloop for it (its timeout source, or the backend fd's timerfd).
#[test]
fn evloop_timers_fire_inside_the_host() {
    for program in [GLIB, ASYNCIO] {
        let mut server = start(program, &["--quiet", "--idle-timeout", "300"]);
        let start = Instant::now();
        let mut silent = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        silent
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut buf = [0u8; 16];
        let read = silent.read(&mut buf);
        assert!(
            matches!(read, Ok(0)),
            "{program}: the silent connection is closed ({read:?})"
        );
        assert!(
            start.elapsed() >= Duration::from_millis(290),
            "{program}: early"
        );
        server.stop_cleanly();
    }
}

#[test]
fn glib_embed_is_clean_under_memcheck() {
    let mut server = ExampleServer::spawn(valgrind_command(&build_example(GLIB)), false);
    assert_echoes(GLIB, &server, &["--conns", "3"]);
    assert_echoes(
        GLIB,
        &server,
        &["--quiet", "--conns", "2", "--size", "300000"],
    );
    let (status, _, stderr) = server.stop_with(libc::SIGTERM);
    assert!(status.success(), "{status}\n{stderr}");
    assert_memcheck_report_clean(&stderr);
}
