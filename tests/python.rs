//! The Python package's own tests (python/tests, standard library unittest)
//! against the library this `cargo test` built: on CPython (python3) and on
//! PyPy (pypy3). Without pypy3 the PyPy run is skipped with a notice on the
//! terminal, and fails under CI=true, where .ci/run has installed it.

mod common;
use common::*;
use std::process::Command;

/// A whole suite: PyPy's took 130 to 230 s beside two CPU hogs, and more
/// than PATIENCE's 300 s beside CPython's and the hogs (test_hundred_connections
/// and test_buffered_protocol alone ~45 s, as on main's library).
const SUITE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(900);

fn run_suite(python: &str) {
    let mut suite = Command::new(python);
    suite
        .args(["-m", "unittest", "discover", "-v", "-s"])
        .arg(root().join("python/tests"))
        .env("EVLOOP_LIBRARY", lib_dir().join("libevloop.so"));
    let output = run_within(&mut suite, SUITE_PATIENCE);
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{python}:\n{}", show(&output));
    // Every test ran: none skipped silently.
    assert!(!report.contains("skipped"), "{python}:\n{report}");
    assert!(report.contains("\nOK"), "{python}:\n{report}");
}

#[test]
fn python_package_unittests() {
    run_suite("python3");
}

#[test]
fn python_package_unittests_on_pypy() {
    if pypy_found("the Python suite") {
        run_suite("pypy3");
    }
}
