//! The Python package's own tests (python/tests, standard library unittest)
//! against the library this `cargo test` built.

mod common;
use common::*;
use std::process::Command;

#[test]
fn python_package_unittests() {
    let output = run(Command::new("python3")
        .args(["-m", "unittest", "discover", "-v", "-s"])
        .arg(root().join("python/tests"))
        .env("EVLOOP_LIBRARY", lib_dir().join("libevloop.so")));
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}", show(&output));
    // Every test ran: none skipped silently.
    assert!(!report.contains("skipped"), "{report}");
    assert!(report.contains("\nOK"), "{report}");
}
