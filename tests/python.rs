//! The Python package's own tests (python/tests, standard library unittest)
//! against the library this `cargo test` built: on CPython (python3) and on
//! PyPy (pypy3). Without pypy3 the PyPy run is skipped with a notice on the
//! terminal, and fails under CI=true, where .ci/run has installed it.

mod common;
use common::*;
use std::process::Command;

fn run_suite(python: &str) {
    let output = Command::new(python)
        .args(["-m", "unittest", "discover", "-v", "-s"])
        .arg(root().join("python/tests"))
        .env("EVLOOP_LIBRARY", lib_dir().join("libevloop.so"))
        .output()
        .unwrap_or_else(|e| panic!("run {python}: {e}"));
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
