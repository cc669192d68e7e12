//! evloop's native asyncio loop (src/cpython/, python/evloop/_native/):
//! its Python tests, `python/tests/test_native_*.py`, run with the one
//! library this build made on every CPython of the machine: pyenv's 3.8 to
//! 3.13 (`~/.pyenv/versions/3.N.*`) and the system's `/usr/bin/python3`
//! (which links libpython statically). A version missing is reported on the
//! terminal, and is a failure under CI=true when pyenv is there at all.
//! (PyPy runs the same files through tests/python.rs, where they check that
//! the native loop says it is unavailable.)

mod common;
use common::*;
use std::path::PathBuf;
use std::process::Command;

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

fn run_native_tests(name: &str, python: &PathBuf) {
    let output = run(Command::new(python)
        .args([
            "-m",
            "unittest",
            "discover",
            "-v",
            "-p",
            "test_native_*.py",
            "-s",
        ])
        .arg(root().join("python/tests"))
        .env("EVLOOP_LIBRARY", lib_dir().join("libevloop.so"))
        .env("PYTHONPATH", root().join("python")));
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{name}:\n{}", show(&output));
    assert!(!report.contains("skipped"), "{name}:\n{report}");
    assert!(report.contains("\nOK"), "{name}:\n{report}");
}

#[test]
fn native_loop_tests_on_every_cpython() {
    let pythons = cpythons();
    assert!(!pythons.is_empty(), "no CPython found at all");
    for (name, python) in &pythons {
        run_native_tests(name, python);
    }
}
