//! Shared by the integration tests: compile C against include/evloop.h and
//! the library cargo just built, run programs, run them under valgrind.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo put libevloop.so and .a for this test run (beside the test binary).
pub fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().expect("deps dir").to_path_buf();
    assert!(
        dir.join("libevloop.so").exists(),
        "libevloop.so not found in {}",
        dir.display()
    );
    dir
}

/// The target directory of this cargo test (lib_dir() is its debug/deps):
/// builds started by tests (make install, pip's cargo build) reuse it.
pub fn target_dir() -> PathBuf {
    lib_dir().parent().unwrap().parent().unwrap().to_path_buf()
}

/// A scratch directory for build products of one test binary.
pub fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn target_triple() -> String {
    let env = if cfg!(target_env = "musl") {
        "musl"
    } else {
        "gnu"
    };
    format!("{}-unknown-linux-{env}", std::env::consts::ARCH)
}

/// Compiles C `sources` into the executable `out` with the project's flags:
/// -std=c11 -Wall -Wextra -Werror, linked to the freshly built libevloop.so.
pub fn compile_c(sources: &[PathBuf], out: &Path, extra: &[&str]) -> PathBuf {
    let triple = target_triple();
    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .cargo_warnings(false)
        .target(&triple)
        .host(&triple)
        .opt_level(1)
        .debug(true)
        .get_compiler();
    let lib = lib_dir();
    let mut cmd = compiler.to_command();
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror"])
        .arg("-I")
        .arg(root().join("include"))
        .arg("-I")
        .arg(root().join("c-examples"))
        .args(sources)
        .arg("-o")
        .arg(out)
        .arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        // DT_RPATH, not DT_RUNPATH: it wins over LD_LIBRARY_PATH, which cargo
        // test points at target/debug first, where an older `cargo build`
        // may have left an older libevloop.so.
        .arg("-Wl,--disable-new-dtags")
        .args(["-levloop", "-lpthread"])
        .args(extra);
    let output = cmd.output().expect("run the C compiler");
    assert!(
        output.status.success(),
        "compiling {:?} failed:\n{}",
        sources,
        String::from_utf8_lossy(&output.stderr)
    );
    out.to_path_buf()
}

/// Compiles `c-examples/NAME.c` on its own, as its README says, with -O2;
/// once per test binary, however many tests ask for it at the same time.
pub fn build_example(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, exe)) = built.iter().find(|(n, _)| n == name) {
        return exe.clone();
    }
    let out = out_dir("examples").join(name);
    let exe = compile_c(
        &[root().join(format!("c-examples/{name}.c"))],
        &out,
        &["-O2"],
    );
    built.push((name.to_string(), exe.clone()));
    exe
}

pub fn show(output: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// valgrind's memcheck with every error and every leak counted as failure.
pub fn valgrind_command(program: &Path) -> Command {
    let found = Command::new("valgrind")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "valgrind is needed for the memcheck tests: apt-get install valgrind (.ci/run does this)"
    );
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--tool=memcheck",
        "--error-exitcode=99",
        "--leak-check=full",
        "--show-leak-kinds=definite,indirect,possible",
        "--errors-for-leak-kinds=definite,indirect,possible",
        "--child-silent-after-fork=no",
        "--quiet",
    ])
    .arg(program);
    cmd
}

/// Checks that valgrind's report shows no error and no leak.
pub fn assert_memcheck_clean(output: &Output) {
    assert!(
        output.status.code() != Some(99),
        "memcheck found errors:\n{}",
        show(output)
    );
    assert_memcheck_report_clean(&String::from_utf8_lossy(&output.stderr));
}

/// Checks valgrind's report (its stderr) for errors and leaks.
pub fn assert_memcheck_report_clean(stderr: &str) {
    assert!(
        !stderr.contains("definitely lost") && !stderr.contains("Invalid "),
        "memcheck report:\n{stderr}"
    );
}

/// Runs a tool such as readelf and returns its stdout; fails the test
/// with everything it said when it fails.
pub fn tool_output(cmd: &mut Command) -> String {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e} (is binutils installed?)"));
    assert!(output.status.success(), "{cmd:?}\n{}", show(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The symbols a shared library defines for others, as (name, version)
/// pairs from `readelf --dyn-syms`; the version is "" for an unversioned
/// symbol. Version definitions themselves (ABS) are left out.
pub fn exported_symbols(library: &Path) -> Vec<(String, String)> {
    let table = tool_output(
        Command::new("readelf")
            .args(["--dyn-syms", "-W"])
            .arg(library),
    );
    let mut symbols: Vec<(String, String)> = table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // Num: Value Size Type Bind Vis Ndx Name
            let [num, _, _, _, bind, _, ndx, name] = fields[..] else {
                return None;
            };
            if !num
                .trim_end_matches(':')
                .chars()
                .all(|c| c.is_ascii_digit())
            {
                return None; // the column titles
            }
            if ndx == "UND" || ndx == "ABS" || bind == "LOCAL" {
                return None;
            }
            let (name, version) = match name.split_once("@@") {
                Some((name, version)) => (name, version),
                None => (name, ""),
            };
            Some((name.to_string(), version.to_string()))
        })
        .collect();
    symbols.sort();
    symbols
}

/// The SONAME a shared library records, from `readelf -d`.
pub fn soname(library: &Path) -> Option<String> {
    dynamic_entries(library, "SONAME").pop()
}

/// The libraries a program or library records as NEEDED, from `readelf -d`.
pub fn needed(binary: &Path) -> Vec<String> {
    dynamic_entries(binary, "NEEDED")
}

fn dynamic_entries(binary: &Path, tag: &str) -> Vec<String> {
    let dynamic = tool_output(Command::new("readelf").arg("-d").arg(binary));
    dynamic
        .lines()
        .filter(|line| line.contains(&format!("({tag})")))
        .filter_map(|line| Some(line.split_once('[')?.1.split_once(']')?.0.to_string()))
        .collect()
}

/// Whether `program --version` runs.
pub fn interpreter_found(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether pypy3 is installed. Without it, `what` (a test's PyPy half) is
/// skipped with a notice on the terminal, except under CI=true, where
/// .ci/run has installed it and its absence fails the test.
pub fn pypy_found(what: &str) -> bool {
    if interpreter_found("pypy3") {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "pypy3 not found: under CI=true {what} must run on PyPy (.ci/run installs pypy3)"
    );
    // Straight to the terminal: cargo test captures eprintln! of passing tests.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "NOTE: {what} did not run on PyPy: pypy3 is not installed (apt-get install pypy3)"
    );
    false
}
