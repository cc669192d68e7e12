//! The echo servers that run evloop inside another program's loop:
//! c-examples/glib_embed.c (a GLib main loop) and
//! python/examples/embedded_in_asyncio.py (an asyncio loop). The echo
//! matrix of the other servers, half-close, evloop's own timers (idle
//! timeouts) firing through the host's timeout, the host's timer ticking
//! beside the echo, and memcheck on the GLib one.

mod common;
use common::echo::*;
use common::*;
use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const GLIB: Mode = Mode {
    server: "glib_embed",
    flags: &[],
    server_flags: &[],
};
const ASYNCIO: Mode = Mode {
    server: "embedded_in_asyncio.py",
    flags: &[],
    server_flags: &[],
};

#[test]
fn glib_embed_echoes_every_byte() {
    echoes_every_byte(GLIB, true);
}

#[test]
fn python_embedded_in_asyncio_echoes_every_byte() {
    echoes_every_byte(ASYNCIO, true);
}

/// The host's timer went on while evloop served: the program's last line
/// says how often it ticked, at least once per 100 ms of the 0.5 s here
/// but for a loaded machine's delays.
fn host_timer_ticks_beside_the_echo(mode: Mode, last_line: &str) {
    let server = Server::start(mode, &["--quiet"]);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) {
        assert_echoes(
            &server,
            mode,
            &["--quiet", "--conns", "5", "--size", "1000"],
        );
    }
    let out = server.stop_cleanly();
    let ticks: u64 = out
        .lines()
        .find_map(|l| {
            l.strip_prefix(last_line)?
                .strip_suffix(" times")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{}: no {last_line:?} line in\n{out}", mode.server));
    assert!(ticks >= 1, "{}: the host's timer never ticked", mode.server);
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
    for mode in [GLIB, ASYNCIO] {
        assert_half_closed_echo(mode, 1_000_000);
    }
}

/// An idle timeout is an evloop timer: it fires only if the host wakes
/// evloop for it (its timeout source, or the backend fd's timerfd).
#[test]
fn evloop_timers_fire_inside_the_host() {
    for mode in [GLIB, ASYNCIO] {
        let server = Server::start(mode, &["--quiet", "--idle-timeout", "300"]);
        let start = Instant::now();
        let mut silent = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        silent
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut buf = [0u8; 16];
        let read = silent.read(&mut buf);
        assert!(
            matches!(read, Ok(0)),
            "{}: the silent connection is closed ({read:?})",
            mode.server
        );
        assert!(
            start.elapsed() >= Duration::from_millis(290),
            "{}: early",
            mode.server
        );
        server.stop_cleanly();
    }
}

#[test]
fn glib_embed_is_clean_under_memcheck() {
    let server = Server::start_under_memcheck(GLIB);
    assert_echoes(&server, GLIB, &["--conns", "3"]);
    assert_echoes(
        &server,
        GLIB,
        &["--quiet", "--conns", "2", "--size", "300000"],
    );
    let (status, _, stderr) = server.stop();
    assert!(status.success(), "{status}\n{stderr}");
    assert_memcheck_report_clean(&stderr);
}
