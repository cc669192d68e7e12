//! The library's TLS against other TLS stacks: c-examples/tls_echo_server
//! with Python's `ssl` client and `openssl s_client`; the library's TLS
//! client (echo_client --tls, https_get) with Python's `ssl` servers; ALPN
//! chosen as configured both ways; a wrong name, an expired and a
//! self-signed certificate refused with a clear error; clients that send
//! garbage, stall mid-handshake or drop after their ClientHello, after
//! which the server still serves, holds no more fds than before, and
//! (under memcheck) leaks nothing. Certificates are made by tls_certs.

mod common;
mod tls_certs;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn certs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        tls_certs::write_to(&tls_certs::make(), &out_dir("tls_interop").join("certs"))
    })
}

fn cert(name: &str) -> String {
    certs().join(name).display().to_string()
}

fn peers_script() -> PathBuf {
    root().join("tests/py/tls_peers.py")
}

/// tls_echo_server with the certificate `stem` (.pem/.key) and `extra` flags.
fn tls_server(stem: &str, extra: &[&str]) -> ExampleServer {
    let mut cmd = Command::new(build_example("tls_echo_server"));
    cmd.args(["--cert", &cert(&format!("{stem}.pem"))])
        .args(["--key", &cert(&format!("{stem}.key"))])
        .args(extra);
    ExampleServer::spawn(cmd, false)
}

fn python_client(port: u16, name: &str, alpn: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new("python3");
    cmd.arg(peers_script())
        .args(["client", &port.to_string(), &cert("ca.pem"), name])
        .args(alpn);
    run(&mut cmd)
}

/// A Python ssl echo server (killed when dropped) and its port.
fn python_server(
    stem: &str,
    alpn: Option<&str>,
) -> (ChildGuard, u16, BufReader<std::process::ChildStdout>) {
    let mut cmd = Command::new("python3");
    cmd.arg(peers_script())
        .args([
            "server",
            &cert(&format!("{stem}.pem")),
            &cert(&format!("{stem}.key")),
        ])
        .args(alpn)
        .stdout(Stdio::piped());
    let mut child = ChildGuard(cmd.spawn().expect("python3"));
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("port? {line:?}"));
    (child, port, out)
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn python_ssl_client_against_the_tls_echo_server_alpn_as_configured() {
    let mut server = tls_server("server", &["--quiet", "--alpn", "h2,http/1.1"]);
    for (offer, agreed) in [
        ("http/1.1,h2", "h2"),
        ("http/1.1", "http/1.1"),
        ("h2", "h2"),
    ] {
        let output = python_client(server.port, "localhost", Some(offer));
        assert!(output.status.success(), "{}", show(&output));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            stdout.lines().next(),
            Some(&*format!("TLSv1.3 {agreed}")),
            "offer {offer}"
        );
        assert!(stdout.contains("ok"), "{stdout}");
    }
    // No protocol in common: refused.
    let output = python_client(server.port, "localhost", Some("h3"));
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no application protocol"),
        "{}",
        show(&output)
    );
    server.stop_cleanly();
}

#[test]
fn openssl_s_client_against_the_tls_echo_server() {
    assert!(
        Command::new("openssl").arg("version").output().is_ok(),
        "openssl is needed (Debian: apt-get install openssl)"
    );
    let mut server = tls_server("server", &["--quiet", "--alpn", "http/1.1"]);
    let addr = format!("127.0.0.1:{}", server.port);
    for (version, alpn) in [("-tls1_3", "http/1.1"), ("-tls1_2", "http/1.1")] {
        let mut cmd = Command::new("openssl");
        cmd.args(["s_client", "-connect", &addr, "-CAfile", &cert("ca.pem")])
            .args([
                "-servername",
                "localhost",
                "-verify_return_error",
                "-alpn",
                alpn,
            ])
            .args(["-quiet", "-no_ign_eof", version])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ChildGuard(cmd.spawn().unwrap());
        let mut stdin = child.stdin.take().unwrap();
        let line = format!("hello from s_client {version}\n");
        stdin.write_all(line.as_bytes()).unwrap();
        // The echo, then the end of input: s_client sends close_notify,
        // which the server answers with its own as it closes.
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let echoed = std::thread::spawn(move || {
            let mut echoed = String::new();
            out.read_line(&mut echoed).map(|_| echoed)
        });
        let echoed = echoed.join().unwrap().unwrap();
        assert_eq!(echoed, line);
        drop(stdin);
        let output = wait_with_output_within(child, Duration::from_secs(60));
        assert!(output.status.success(), "{}", show(&output));
    }
    server.stop_cleanly();
}

#[test]
fn the_library_client_against_python_ssl_servers() {
    let (_server, port, mut log) = python_server("server", Some("h2,http/1.1"));
    let port = port.to_string();
    for args in [
        &["--conns", "3"][..],
        &[
            "--quiet",
            "--conns",
            "20",
            "--size",
            "100000",
            "--rounds",
            "3",
            "--independent",
        ],
    ] {
        let output = run(Command::new(build_example("echo_client"))
            .args([
                "--tls",
                "--ca",
                &cert("ca.pem"),
                "--server-name",
                "localhost",
            ])
            .args(["--port", &port])
            .args(args));
        assert!(output.status.success(), "{}", show(&output));
    }
    // echo_client offers no ALPN: the Python server agreed to none.
    let mut line = String::new();
    log.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "alpn None");

    // https_get offers http/1.1, which a Python HTTPS server picks; the
    // response comes whole (the server closes without close_notify: EOF).
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(
            "import http.server, ssl, sys\n\
             srv = http.server.HTTPServer(('127.0.0.1', 0), http.server.SimpleHTTPRequestHandler)\n\
             ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n\
             ctx.load_cert_chain(sys.argv[1], sys.argv[2])\n\
             ctx.set_alpn_protocols(['h2', 'http/1.1'])\n\
             srv.socket = ctx.wrap_socket(srv.socket, server_side=True)\n\
             print(srv.server_address[1], flush=True)\n\
             srv.handle_request()\n",
        )
        .args([cert("server.pem"), cert("server.key")])
        .current_dir(certs())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut http = ChildGuard(cmd.spawn().unwrap());
    let mut out = BufReader::new(http.stdout.take().unwrap());
    let mut port_line = String::new();
    out.read_line(&mut port_line).unwrap();
    let url = format!("https://localhost:{}/ca.pem", port_line.trim());
    let output =
        run(Command::new(build_example("https_get")).args(["--ca", &cert("ca.pem"), &url]));
    assert!(output.status.success(), "{}", show(&output));
    let body = String::from_utf8_lossy(&output.stdout);
    assert!(body.starts_with("HTTP/1.0 200 OK"), "{body}");
    assert!(body.ends_with(&std::fs::read_to_string(cert("ca.pem")).unwrap()));
    assert!(String::from_utf8_lossy(&output.stderr).contains("ALPN http/1.1"));
}

#[test]
fn wrong_names_expired_and_self_signed_certificates_are_refused_clearly() {
    for (stem, name, words) in [
        (
            "server",
            "example.com",
            "not valid for name \"example.com\"",
        ),
        ("expired", "localhost", "certificate expired"),
        ("self", "localhost", "UnknownIssuer"),
    ] {
        let mut server = tls_server(stem, &["--quiet"]);
        let output = run(Command::new(build_example("echo_client"))
            .args(["--tls", "--ca", &cert("ca.pem"), "--server-name", name])
            .args(["--port", &server.port.to_string(), "--quiet"]));
        assert_eq!(output.status.code(), Some(1), "{}", show(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("TLS certificate verification failed") && stderr.contains(words),
            "{stem}: {stderr}"
        );
        // The Python client refuses it as well, and the server goes on.
        if stem != "server" {
            let output = python_client(server.port, "localhost", None);
            assert!(
                String::from_utf8_lossy(&output.stderr).contains("CERTIFICATE_VERIFY_FAILED"),
                "{}",
                show(&output)
            );
        }
        server.stop_cleanly();
    }
    // https_get says so too.
    let mut server = tls_server("expired", &["--quiet"]);
    let url = format!("https://localhost:{}/", server.port);
    let output =
        run(Command::new(build_example("https_get")).args(["--ca", &cert("ca.pem"), &url]));
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("certificate expired"));
    server.stop_cleanly();
}

/// Garbage, a stalled handshake and one dropped after its ClientHello, in
/// `server`'s face (waiting for their ends at most `patience_s`); then a
/// good client. Returns the log of the misbehaving.
fn misbehave_then_serve(server: &ExampleServer, patience_s: u32) -> String {
    let output = run(Command::new("python3").arg(peers_script()).args([
        "misbehave",
        &server.port.to_string(),
        &patience_s.to_string(),
    ]));
    assert!(output.status.success(), "{}", show(&output));
    let log = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(log.contains("server closed garbage"), "{log}");
    assert!(log.contains("server closed stalled"), "{log}");
    let output = python_client(server.port, "localhost", None);
    assert!(output.status.success(), "{}", show(&output));
    log
}

#[test]
fn misbehaving_clients_cost_the_server_nothing() {
    // The idle timeout bounds the stalled handshake; it is long enough
    // for a good client on a loaded machine.
    let mut server = tls_server("server", &["--quiet", "--idle-timeout", "2000"]);
    // The baseline once the server is whole: it prints its port before it
    // makes its signalfd, and a first client makes everything else it keeps.
    let output = python_client(server.port, "localhost", None);
    assert!(output.status.success(), "{}", show(&output));
    let before = open_fds(server.pid());
    let started = Instant::now();
    for _ in 0..2 {
        misbehave_then_serve(&server, 30);
    }
    assert!(
        started.elapsed() >= Duration::from_millis(4000),
        "idle timeout early"
    );
    // The dropped connection's stream ends when the server reads its end.
    let deadline = Instant::now() + Duration::from_secs(30);
    while open_fds(server.pid()) > before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(open_fds(server.pid()), before, "fds leaked");
    server.stop_cleanly();
}

#[test]
fn tls_echo_server_and_client_are_clean_under_memcheck() {
    let supp = tls_certs::ring_suppressions(&out_dir("tls_interop"));
    let mut cmd = valgrind_command_suppressing(
        &build_example("tls_echo_server"),
        std::slice::from_ref(&supp),
    );
    cmd.args(["--cert", &cert("server.pem"), "--key", &cert("server.key")])
        // Long enough for a server and client under valgrind on a loaded
        // machine; it still ends the stalled handshake.
        .args(["--idle-timeout", "60000", "--alpn", "h2,http/1.1"]);
    let mut server = ExampleServer::spawn(cmd, false);
    let output = run(Command::new(build_example("echo_client"))
        .args([
            "--tls",
            "--ca",
            &cert("ca.pem"),
            "--server-name",
            "localhost",
        ])
        .args([
            "--port",
            &server.port.to_string(),
            "--quiet",
            "--conns",
            "3",
            "--size",
            "300000",
        ]));
    assert!(output.status.success(), "{}", show(&output));
    misbehave_then_serve(&server, 180);
    // The client under memcheck too, against the same server.
    let mut client = valgrind_command_suppressing(&build_example("echo_client"), &[supp]);
    client
        .args([
            "--tls",
            "--ca",
            &cert("ca.pem"),
            "--server-name",
            "localhost",
        ])
        .args(["--port", &server.port.to_string(), "--conns", "2"]);
    let output = run(&mut client);
    assert!(output.status.success(), "{}", show(&output));
    assert_memcheck_clean(&output);
    let (status, _, stderr) = server.stop_with(libc::SIGTERM);
    assert!(status.success(), "{status}\n{stderr}");
    assert_memcheck_report_clean(&stderr);
}
