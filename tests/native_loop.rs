//! evloop's native asyncio loop (src/cpython/, python/evloop/_native/):
//! its Python tests, `python/tests/test_native_*.py`, run with the one
//! library this build made on every CPython of the machine: pyenv's 3.8 to
//! 3.13 (`~/.pyenv/versions/3.N.*`) and the system's `/usr/bin/python3`
//! (which links libpython statically). A version missing is reported on the
//! terminal, and is a failure under CI=true when pyenv is there at all.
//! (PyPy runs the same files through tests/python.rs, where they check that
//! the native loop says it is unavailable.) And CPython's own asyncio suites
//! on the native loop, compared with asyncio's.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The CPython minor versions the layer serves.
const MINORS: std::ops::RangeInclusive<u32> = 8..=13;

/// Every CPython found: (its name for messages, the interpreter).
fn cpythons() -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let pyenv = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".pyenv/versions");
    let mut missing = Vec::new();
    for minor in MINORS {
        let prefix = format!("3.{minor}.");
        let mut versions: Vec<PathBuf> = std::fs::read_dir(&pyenv)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
            .map(|entry| entry.path().join("bin/python3"))
            .filter(|python| python.exists())
            .collect();
        versions.sort();
        match versions.pop() {
            Some(python) => found.push((format!("pyenv 3.{minor}"), python)),
            None => missing.push(format!("3.{minor}")),
        }
    }
    if !missing.is_empty() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true") || !pyenv.exists(),
            "no pyenv CPython {missing:?} in {}: under CI=true every one must run",
            pyenv.display()
        );
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "NOTE: the native loop's tests did not run on CPython {missing:?} (not in {})",
            pyenv.display()
        );
    }
    let system = PathBuf::from("/usr/bin/python3");
    if system.exists() {
        found.push(("/usr/bin/python3".to_string(), system));
    }
    found
}

/// Runs python/tests/test_native_*.py (or the tests `only` names) with
/// `python`, the environment's `settings` added.
fn run_native_tests(name: &str, python: &PathBuf, only: Option<&str>, settings: &[(&str, &str)]) {
    let mut cmd = Command::new(python);
    cmd.current_dir(root().join("python/tests"))
        .args(["-m", "unittest"])
        .env("EVLOOP_LIBRARY", lib_dir().join("libevloop.so"))
        .env("PYTHONPATH", root().join("python"));
    match only {
        Some(test) => cmd.args(["-v", test]),
        None => cmd.args(["discover", "-v", "-p", "test_native_*.py", "-s", "."]),
    };
    for (key, value) in settings {
        cmd.env(key, value);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    // Minutes of waiting for sockets, more on a loaded machine.
    let output = wait_with_output_within(ChildGuard(child), Duration::from_secs(1200));
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{name}:\n{}", show(&output));
    assert!(!report.contains("skipped"), "{name}:\n{report}");
    assert!(report.contains("\nOK"), "{name}:\n{report}");
}

/// The native loop's tests with the one library on every CPython, three
/// interpreters at a time (each is mostly waiting for its sockets).
#[test]
fn native_loop_tests_on_every_cpython() {
    let pythons = cpythons();
    assert!(!pythons.is_empty(), "no CPython found at all");
    for group in pythons.chunks(3) {
        std::thread::scope(|scope| {
            for (name, python) in group {
                scope.spawn(move || run_native_tests(name, python, None, &[]));
            }
        });
    }
}

/// The process's memory over 100,000 connections (accepted natively,
/// closed or aborted at random) stays within 1 MiB after a warm-up
/// (python/tests/test_native_lifetime.py's Memory, on python3).
#[test]
fn native_loop_memory_is_flat_over_100000_connections() {
    run_native_tests(
        "python3",
        &PathBuf::from("python3"),
        Some("test_native_lifetime.Memory"),
        &[("EVLOOP_NATIVE_CONNECTIONS", "100000")],
    );
}

/// Tests of CPython's suites that may fail on the native loop although
/// they pass on asyncio's, each with the reason. (None today.)
const EXCLUDED: &[(&str, &str)] = &[];

/// Runs python/tests/cpython_asyncio.py for `loop_name` (only the tests
/// whose id contains one of `only`, if given) in a directory of its own
/// (CPython's sendfile tests leave files in the current one), and returns
/// each test's outcome.
fn cpython_suites(loop_name: &str, only: &[String]) -> BTreeMap<String, String> {
    let dir = out_dir(&format!("native_loop-{loop_name}-{}", only.len()));
    let out = dir.join("outcomes.txt");
    let _ = std::fs::remove_file(&out);
    let mut cmd = Command::new("python3");
    cmd.arg(root().join("python/tests/cpython_asyncio.py"))
        .args(["--loop", loop_name, "--out"])
        .arg(&out)
        .current_dir(&dir)
        .env("EVLOOP_LIBRARY", lib_dir().join("libevloop.so"))
        .env("PYTHONPATH", root().join("python"));
    for id in only {
        cmd.args(["-k", id]);
    }
    // The suites take about two minutes here; a hang fails after 15.
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    let output = wait_with_output_within(ChildGuard(child), Duration::from_secs(900));
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

/// CPython's own asyncio suites (test_events, test_sock_lowlevel,
/// test_sendfile, test_streams, test_server, test_buffered_proto,
/// test_sslproto, test_ssl, test_subprocess) on the native loop and on
/// asyncio's SelectorEventLoop: every test that passes on asyncio's passes
/// on the native one, but for EXCLUDED.
#[test]
fn cpython_asyncio_suites_pass_on_the_native_loop_as_on_asyncio() {
    let reference = std::thread::spawn(|| cpython_suites("asyncio", &[]));
    let native = cpython_suites("native", &[]);
    let reference = reference.join().unwrap();
    let passed = |outcomes: &BTreeMap<String, String>| {
        outcomes.values().filter(|o| o.as_str() == "pass").count()
    };
    println!(
        "CPython's asyncio suites: {} of {} pass on asyncio.SelectorEventLoop, {} of {} on the native loop",
        passed(&reference),
        reference.len(),
        passed(&native),
        native.len()
    );
    let mut failed: Vec<String> = reference
        .iter()
        .filter(|(id, outcome)| {
            outcome.as_str() == "pass" && native.get(*id).map(String::as_str) != Some("pass")
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
        let again = cpython_suites("native", &names);
        failed.retain(|id| again.get(id).map(String::as_str) != Some("pass"));
    }
    assert!(
        failed.is_empty(),
        "pass on asyncio's loop but not on the native one: {failed:#?}"
    );
}
