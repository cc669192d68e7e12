//! evloop's asyncio loop (python/evloop/_asyncio.py): CPython's own asyncio
//! test suites run against it and against asyncio's SelectorEventLoop, every
//! test that passes on asyncio's passing on evloop's; and
//! python/examples/asyncio_echo_server.py (the articles' S5 on asyncio
//! streams) on both loops, with echo_client and the articles' C1 client.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Tests of CPython's suites that may fail on evloop's loop although they
/// pass on asyncio's, each with the reason. (None today.)
const EXCLUDED: &[(&str, &str)] = &[];

fn python_env(cmd: &mut Command) -> &mut Command {
    cmd.env("EVLOOP_LIBRARY", lib_dir().join("libevloop.so"))
        .env("PYTHONPATH", root().join("python"))
}

/// Runs python/tests/cpython_asyncio.py for `loop_name` (with `-k` filters
/// if any) and returns each test's outcome.
fn cpython_suites(loop_name: &str, only: &[String]) -> BTreeMap<String, String> {
    let out = out_dir("asyncio_loop").join(format!("{loop_name}-{}.txt", only.len()));
    let mut cmd = Command::new("python3");
    cmd.arg(root().join("python/tests/cpython_asyncio.py"))
        .args(["--loop", loop_name, "--out"])
        .arg(&out);
    for id in only {
        cmd.args(["-k", id]);
    }
    let output = python_env(&mut cmd).output().expect("run python3");
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let outcomes: BTreeMap<String, String> = text
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(outcome, id)| (id.to_string(), outcome.to_string()))
        .collect();
    assert!(
        !outcomes.is_empty(),
        "{loop_name}: no test ran\n{}",
        show(&output)
    );
    outcomes
}

#[test]
fn cpython_asyncio_suites_pass_on_evloop_as_on_asyncio() {
    let reference = std::thread::spawn(|| cpython_suites("asyncio", &[]));
    let evloop = cpython_suites("evloop", &[]);
    let reference = reference.join().unwrap();
    let passed = |outcomes: &BTreeMap<String, String>| {
        outcomes.values().filter(|o| o.as_str() == "pass").count()
    };
    println!(
        "CPython's asyncio suites: {} of {} pass on asyncio.SelectorEventLoop, {} of {} on evloop",
        passed(&reference),
        reference.len(),
        passed(&evloop),
        evloop.len()
    );
    let mut failed: Vec<String> = reference
        .iter()
        .filter(|(id, outcome)| {
            outcome.as_str() == "pass" && evloop.get(*id).map(String::as_str) != Some("pass")
        })
        .map(|(id, _)| id.clone())
        .filter(|id| !EXCLUDED.iter().any(|(excluded, _)| id.ends_with(excluded)))
        .collect();
    if !failed.is_empty() {
        // Once more, alone: on a loaded machine a timing-sensitive test of
        // CPython's may fail on either loop. What fails twice is a failure.
        let names: Vec<String> = failed
            .iter()
            .map(|id| id.rsplit('.').next().unwrap().to_string())
            .collect();
        println!("again, alone: {names:?}");
        let again = cpython_suites("evloop", &names);
        failed.retain(|id| again.get(id).map(String::as_str) != Some("pass"));
    }
    assert!(
        failed.is_empty(),
        "pass on asyncio's loop but not on evloop's: {failed:#?}"
    );
}

/// The example server on a free port, with its log read as it comes.
struct Server {
    child: Child,
    port: u16,
    log: Option<std::thread::JoinHandle<String>>,
}

impl Server {
    fn start(loop_name: &str, extra: &[&str]) -> Server {
        let mut cmd = Command::new("python3");
        cmd.arg(root().join("python/examples/asyncio_echo_server.py"))
            .args(["--port", "0", "--loop", loop_name])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = python_env(&mut cmd).spawn().expect("start the server");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let Ok(port) = first.trim().parse() else {
            child.kill().ok();
            panic!("first line {first:?} is not a port");
        };
        let log = std::thread::spawn(move || {
            let mut rest = String::new();
            stdout.read_to_string(&mut rest).unwrap();
            rest
        });
        Server {
            child,
            port,
            log: Some(log),
        }
    }

    /// SIGTERM; asserts the exit status 0 and returns the log.
    fn stop(mut self) -> String {
        // SAFETY: kill() with our own child's pid and a valid signal number.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > Duration::from_secs(60) {
                self.child.kill().ok();
                panic!("the server did not stop within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = self.log.take().unwrap().join().unwrap();
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(
            status.success(),
            "the server ended with {status}\n{log}\n{err}"
        );
        log
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
    }
}

fn assert_echoes(server: &Server, args: &[&str]) {
    let output = Command::new(build_example("echo_client"))
        .args([
            "--port",
            &server.port.to_string(),
            "--timeout",
            "120",
            "--quiet",
        ])
        .args(args)
        .output()
        .expect("run echo_client");
    assert!(
        output.status.success(),
        "echo_client {args:?}: {}",
        show(&output)
    );
}

#[test]
fn asyncio_echo_server_echoes_every_byte_on_both_loops() {
    for loop_name in ["evloop", "asyncio"] {
        let server = Server::start(loop_name, &["--quiet"]);
        for conns in ["1", "2", "100"] {
            assert_echoes(&server, &["--conns", conns]);
            for size in ["1", "1024", "4194304"] {
                assert_echoes(&server, &["--conns", conns, "--size", size]);
            }
        }
        // The benchmarks' load: each connection at its own pace.
        assert_echoes(
            &server,
            &[
                "--conns",
                "20",
                "--size",
                "64",
                "--rounds",
                "50",
                "--independent",
            ],
        );
        server.stop();
    }
}

#[test]
fn c1_against_asyncio_echo_server() {
    const MESSAGES: [&str; 3] = ["This is the message. ", "It will be sent ", "in parts."];
    for loop_name in ["evloop", "asyncio"] {
        let server = Server::start(loop_name, &[]);
        let output = Command::new("python3")
            .arg(root().join("tests/py/c1_client.py"))
            .arg(server.port.to_string())
            .output()
            .expect("python3 runs");
        assert!(output.status.success(), "{}", show(&output));
        let transcript = String::from_utf8(output.stdout).unwrap();
        let lines: Vec<&str> = transcript.lines().collect();
        assert_eq!(lines.len(), 1 + 3 * 4, "{transcript}");
        for (m, message) in MESSAGES.iter().enumerate() {
            for line in &lines[1 + 4 * m..3 + 4 * m] {
                assert!(
                    line.ends_with(&format!("sending \"{message}\"")),
                    "{transcript}"
                );
            }
            for line in &lines[3 + 4 * m..5 + 4 * m] {
                assert!(
                    line.ends_with(&format!("received \"{message}\"")),
                    "{transcript}"
                );
            }
        }
        // Let the server see both connections close before stopping it.
        std::thread::sleep(Duration::from_millis(200));
        let log = server.stop();
        let expected = [
            "starting up on 127.0.0.1 port ",
            "accepted <socket fd=",
            "accepted <socket fd=",
            "echoing b'This is the message. ' to <socket fd=",
            "echoing b'in parts.' to <socket fd=",
            "closing <socket fd=",
            "closing <socket fd=",
        ];
        let mut rest = log.lines();
        for want in expected {
            assert!(
                rest.any(|line| line.starts_with(want)),
                "{loop_name}: no {want:?} (in order) in\n{log}"
            );
        }
    }
}
