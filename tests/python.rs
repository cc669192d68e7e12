//! The Python package's own tests (python/tests, standard library unittest)
//! against the library this `cargo test` built, on every Python the machine
//! has: pyenv's CPythons 3.8 to 3.13 (`$(pyenv root)/versions`, else
//! ~/.pyenv/versions), Debian's /usr/bin/python3, and PyPy (pypy3): the one
//! libevloop.so serves them all. One test per interpreter, so that a failure
//! names it. The native asyncio loop's own tests (test_native_*.py) are part
//! of the suite: on each CPython they run the one library's CPython layer,
//! on PyPy they check that it says it is unavailable; and
//! `native_loop_memory_is_flat_over_100000_connections` runs its memory test
//! at the count on python3.
//!
//! An interpreter that is not there (or lacks CPython's own test package,
//! which test_selector.py runs against evloop's selector) is skipped with a
//! notice on the terminal, except under CI=true, where the image provides
//! them (.ci/run installs what Debian ships apart) and its absence fails the
//! test. A pyenv CPython this file does not name (a 3.14...) runs in
//! `other_pyenv_cpythons`; `python3` on the PATH runs too if it is none of
//! the above.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The minor versions of pyenv's CPythons in this image, one test each.
const PYENV_MINORS: [u32; 6] = [8, 9, 10, 11, 12, 13];
/// A suite takes 15 to 45 s on an idle machine; a hang fails after this.
const SUITE_LIMIT: Duration = Duration::from_secs(1200);

fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Says that `what` did not run, on the terminal (cargo test captures
/// println! of passing tests); under CI=true, fails instead.
fn not_here(what: &str, why: &str) {
    assert!(
        !under_ci(),
        "{what}: {why} (under CI=true the image must provide it)"
    );
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "NOTE: {what} did not run: {why}");
}

/// pyenv's root: `pyenv root`, else $PYENV_ROOT, else ~/.pyenv.
fn pyenv_root() -> Option<PathBuf> {
    let said = Command::new("pyenv")
        .arg("root")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    said.or_else(|| std::env::var_os("PYENV_ROOT").map(PathBuf::from))
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".pyenv")))
        .filter(|root| root.join("versions").is_dir())
}

/// pyenv's CPythons 3.8 and later: (minor, patch, bin/python3), one per
/// minor version (its highest patch release), in order.
fn pyenv_cpythons() -> Vec<(u32, u32, PathBuf)> {
    let Some(root) = pyenv_root() else {
        return Vec::new();
    };
    let mut found: Vec<(u32, u32, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(root.join("versions"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().to_string();
        let numbers: Vec<Option<u32>> = name.split('.').map(|n| n.parse().ok()).collect();
        let [Some(3), Some(minor), Some(patch)] = numbers[..] else {
            continue; // not a CPython release (pypy3.10-7.3, 3.13-dev, miniconda...)
        };
        let python = entry.path().join("bin/python3");
        if minor >= 8 && python.exists() {
            found.push((minor, patch, python));
        }
    }
    // Highest first, then the first of each minor version, in order.
    found.sort_by(|a, b| b.cmp(a));
    found.dedup_by_key(|(minor, _, _)| *minor);
    found.reverse();
    found
}

/// The real file of an interpreter (through pyenv's shims and symlinks).
fn executable(python: &Path) -> Option<PathBuf> {
    let output = Command::new(python)
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    output
        .status
        .success()
        .then(|| path.canonicalize().unwrap_or(path))
}

/// Runs python/tests on `python`, which must run every test: none skipped.
fn run_suite(name: &str, python: &Path) {
    let has_tests = Command::new(python)
        .args(["-c", "import test.test_selectors"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_tests {
        let package = if name.contains("pypy") {
            "pypy3-lib-testsuite".to_string()
        } else {
            let minor = Command::new(python)
                .args(["-c", "import sys; print(sys.version_info[1])"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            format!("libpython3.{minor}-testsuite")
        };
        return not_here(
            name,
            &format!(
                "{} has no test.test_selectors (apt-get install {package})",
                python.display()
            ),
        );
    }
    let child = Command::new(python)
        .args(["-m", "unittest", "discover", "-v", "-s"])
        .arg(root().join("python/tests"))
        .env("EVLOOP_LIBRARY", lib_dir().join("libevloop.so"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: cannot run {}: {e}", python.display()));
    let output = wait_with_output_within(ChildGuard(child), SUITE_LIMIT);
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{name} ({}):\n{}",
        python.display(),
        show(&output)
    );
    // Every test ran: none skipped silently.
    assert!(!report.contains("skipped"), "{name}:\n{report}");
    assert!(report.contains("\nOK"), "{name}:\n{report}");
}

fn pyenv_cpython(minor: u32) {
    let name = format!("CPython 3.{minor} (pyenv)");
    match pyenv_cpythons().into_iter().find(|(m, _, _)| *m == minor) {
        Some((_, _, python)) => run_suite(&name, &python),
        None => not_here(&name, "not found among pyenv's versions"),
    }
}

#[test]
fn cpython_3_8() {
    pyenv_cpython(8);
}

#[test]
fn cpython_3_9() {
    pyenv_cpython(9);
}

#[test]
fn cpython_3_10() {
    pyenv_cpython(10);
}

#[test]
fn cpython_3_11() {
    pyenv_cpython(11);
}

#[test]
fn cpython_3_12() {
    pyenv_cpython(12);
}

#[test]
fn cpython_3_13() {
    pyenv_cpython(13);
}

#[test]
fn debian_python3() {
    let python = Path::new("/usr/bin/python3");
    if python.exists() {
        run_suite("Debian's python3", python);
    } else {
        not_here("Debian's python3", "/usr/bin/python3 is not installed");
    }
}

#[test]
fn pypy3() {
    if pypy_found("the Python suite") {
        run_suite("PyPy (pypy3)", Path::new("pypy3"));
    }
}

#[test]
fn other_pyenv_cpythons() {
    for (minor, patch, python) in pyenv_cpythons() {
        if !PYENV_MINORS.contains(&minor) {
            run_suite(&format!("CPython 3.{minor}.{patch} (pyenv)"), &python);
        }
    }
}

#[test]
fn python3_on_the_path() {
    let Some(on_path) = executable(Path::new("python3")) else {
        return not_here("python3 on the PATH", "there is none");
    };
    let mut covered: Vec<PathBuf> = pyenv_cpythons().into_iter().map(|(_, _, p)| p).collect();
    covered.push(PathBuf::from("/usr/bin/python3"));
    if covered
        .iter()
        .filter_map(|p| executable(p))
        .any(|p| p == on_path)
    {
        println!(
            "python3 on the PATH is {}, which a test of its own runs",
            on_path.display()
        );
    } else {
        run_suite("python3 on the PATH", &on_path);
    }
}

/// The native asyncio loop's memory over 100,000 connections (accepted
/// natively, closed or aborted at random) stays within 1 MiB after a
/// warm-up: python/tests/test_native_lifetime.py's Memory, which the suites
/// above run with a few thousand, here at the count, on python3.
#[test]
fn native_loop_memory_is_flat_over_100000_connections() {
    let child = Command::new("python3")
        .args(["-m", "unittest", "-v", "test_native_lifetime.Memory"])
        .current_dir(root().join("python/tests"))
        .env("EVLOOP_LIBRARY", lib_dir().join("libevloop.so"))
        .env("EVLOOP_NATIVE_CONNECTIONS", "100000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    let output = wait_with_output_within(ChildGuard(child), SUITE_LIMIT);
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}", show(&output));
    assert!(!report.contains("skipped"), "{report}");
    assert!(report.contains("\nOK"), "{report}");
}

/// evloop.Loop's and EvloopSelector's tests on the ctypes path of CPython
/// (`EVLOOP_IMPL=ctypes`), which the suites above, on the native path by
/// default, leave to PyPy otherwise.
#[test]
fn loop_and_selector_on_the_ctypes_path() {
    let child = Command::new("python3")
        .args(["-m", "unittest", "-v"])
        .args([
            "test_loop",
            "test_selector",
            "test_streams",
            "test_unix",
            "test_udp",
            "test_processes",
            "test_embed",
            "test_bad_fds",
            "test_tls_streams",
            "test_loop_native",
        ])
        .current_dir(root().join("python/tests"))
        .env("EVLOOP_LIBRARY", lib_dir().join("libevloop.so"))
        .env("EVLOOP_IMPL", "ctypes")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    let output = wait_with_output_within(ChildGuard(child), SUITE_LIMIT);
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}", show(&output));
    assert!(!report.contains("skipped"), "{report}");
    assert!(report.contains("\nOK"), "{report}");
}
