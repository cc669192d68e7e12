//! The Python package as a user gets it: an sdist and a wheel built from
//! this checkout (hatchling fetched by pip's build isolation, the library
//! built by hatch_build.py with cargo into this test's target directory),
//! installed into fresh virtual environments and run from outside the
//! repository, with no PYTHONPATH and no EVLOOP_LIBRARY: `python -m evloop`,
//! and an echo through python/examples/stream_echo_server.py. On PyPy too
//! when pypy3 is installed (required under CI=true).

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A command that sees nothing of the repository: cwd `dir`, no
/// PYTHONPATH, no EVLOOP_LIBRARY, no active virtual environment.
fn outside(program: impl AsRef<std::ffi::OsStr>, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir)
        .env_remove("PYTHONPATH")
        .env_remove("EVLOOP_LIBRARY")
        .env_remove("VIRTUAL_ENV")
        .env("CARGO_TARGET_DIR", target_dir())
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
    cmd
}

/// A fresh virtual environment of `python` in `dir`, with pip only if asked
/// (ensurepip takes seconds; pip_for() installs into one without it).
fn venv(python: &str, dir: &Path, with_pip: bool) -> PathBuf {
    let env = dir.join(format!("venv-{python}"));
    let mut cmd = outside(python, dir);
    cmd.args(["-m", "venv"]).arg(&env);
    if !with_pip {
        cmd.arg("--without-pip");
    }
    tool_output(&mut cmd);
    env
}

/// `pip` of environment `env`, installing into environment `target`.
fn pip_for(env: &Path, target: &Path, dir: &Path, args: &[&str]) {
    tool_output(
        outside(env.join("bin/python"), dir)
            .args(["-m", "pip", "--quiet", "--python"])
            .arg(target.join("bin/python"))
            .args(args),
    );
}

fn pip(env: &Path, dir: &Path, args: &[&str]) {
    pip_for(env, env, dir, args);
}

/// The one file in `dir` whose name ends with `suffix`.
fn only_file(dir: &Path, suffix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{suffix} files in {}: {found:?}",
        dir.display()
    );
    found.into_iter().next().unwrap()
}

/// `python -m evloop` from `dir`: passes, and says it loaded the library
/// installed inside `env`.
fn self_check(env: &Path, dir: &Path) {
    let output = outside(env.join("bin/python"), dir)
        .args(["-m", "evloop"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", show(&output));
    assert!(stdout.contains("self-check passed"), "{}", show(&output));
    assert!(
        stdout.contains(&format!("evloop {}", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    assert!(stdout.contains("ABI version: 1"), "{stdout}");
    let library = stdout
        .lines()
        .find_map(|l| l.strip_prefix("library: "))
        .unwrap();
    let env = env.canonicalize().unwrap();
    assert!(
        Path::new(library).starts_with(&env)
            && library.ends_with("site-packages/evloop/libevloop.so"),
        "loaded {library}, not the one installed in {}",
        env.display()
    );
}

/// Kills the server on every path out of the test.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a copy of stream_echo_server.py (and the common.py it imports)
/// outside the repository, so that the evloop it imports is the installed
/// one, and echoes 256 KiB through it.
fn echo_through_example_server(env: &Path, dir: &Path) {
    let examples = dir.join("examples");
    std::fs::create_dir_all(&examples).unwrap();
    for name in ["stream_echo_server.py", "common.py"] {
        std::fs::copy(
            root().join("python/examples").join(name),
            examples.join(name),
        )
        .unwrap();
    }
    let python = env.join("bin/python");
    let imported = tool_output(
        outside(&python, &examples).args(["-c", "import common; print(common.evloop.__file__)"]),
    );
    assert!(
        Path::new(imported.trim()).starts_with(env.canonicalize().unwrap()),
        "the example imported {imported}"
    );

    let mut server = Server(
        outside(&python, &examples)
            .args(["stream_echo_server.py", "--port", "0", "--quiet"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut first_line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut first_line)
        .unwrap();
    let port: u16 = first_line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("server said {first_line:?}"));

    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let message: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
    // A writer thread, so that neither side waits on a full socket buffer.
    let mut writer = client.try_clone().unwrap();
    let sent = message.clone();
    let sending = std::thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut echoed = Vec::new();
    client.read_to_end(&mut echoed).unwrap(); // the server closes after EOF
    sending.join().unwrap();
    assert!(
        echoed == message,
        "echoed {} bytes, sent {}",
        echoed.len(),
        message.len()
    );
    assert!(server.0.try_wait().unwrap().is_none(), "the server exited");
}

fn wheel_contents(wheel: &Path, dir: &Path) -> Vec<String> {
    let names = tool_output(
        outside("python3", dir)
            .arg("-c")
            .arg("import sys, zipfile; print('\\n'.join(zipfile.ZipFile(sys.argv[1]).namelist()))")
            .arg(wheel),
    );
    names.lines().map(String::from).collect()
}

#[test]
fn sdist_and_wheel_install_into_fresh_environments_and_run_outside_the_repository() {
    let dir = out_dir("wheel");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dist = dir.join("dist");
    let env = venv("python3", &dir, true);
    let checkout = root().to_str().unwrap();

    // The wheel from the checkout, as `pip install .` builds it.
    pip(
        &env,
        &dir,
        &[
            "wheel",
            "--no-deps",
            "--wheel-dir",
            dist.to_str().unwrap(),
            checkout,
        ],
    );
    let wheel = only_file(&dist, ".whl");
    let name = wheel.file_name().unwrap().to_string_lossy().into_owned();
    let expected = format!(
        "evloop-{}-py3-none-linux_{}.whl",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    assert_eq!(name, expected);
    let contents = wheel_contents(&wheel, &dir);
    for module in std::fs::read_dir(root().join("python/evloop")).unwrap() {
        let module = module.unwrap().file_name().to_string_lossy().into_owned();
        if module.ends_with(".py") || module == "py.typed" {
            assert!(
                contents.contains(&format!("evloop/{module}")),
                "{module} missing from {contents:?}"
            );
        }
    }
    assert!(
        contents.contains(&"evloop/libevloop.so".to_string()),
        "{contents:?}"
    );
    assert!(
        contents
            .iter()
            .all(|f| !f.contains("__pycache__") && !f.starts_with("tests")),
        "{contents:?}"
    );

    // The sdist, and pip's install of it (which builds the library again).
    pip(&env, &dir, &["install", "build"]);
    tool_output(
        outside(env.join("bin/python"), &dir)
            .args(["-m", "build", "--sdist", "--outdir"])
            .arg(&dist)
            .arg(checkout),
    );
    let sdist = only_file(&dist, ".tar.gz");
    pip(&env, &dir, &["install", sdist.to_str().unwrap()]);
    self_check(&env, &dir);

    // The checkout's wheel in the same environment, in place of the sdist's.
    pip(
        &env,
        &dir,
        &[
            "install",
            "--force-reinstall",
            "--no-deps",
            wheel.to_str().unwrap(),
        ],
    );
    self_check(&env, &dir);
    let installed = env.canonicalize().unwrap();
    let library = std::fs::read_dir(installed.join("lib"))
        .unwrap()
        .map(|e| e.unwrap().path().join("site-packages/evloop/libevloop.so"))
        .find(|p| p.exists())
        .expect("libevloop.so in site-packages");
    assert_eq!(soname(&library).as_deref(), Some("libevloop.so.1"));
    let sections = tool_output(Command::new("readelf").args(["-S", "-W"]).arg(&library));
    assert!(
        !sections.contains(".debug_info"),
        "the wheel's library carries debug info"
    );
    echo_through_example_server(&env, &dir);

    if pypy_found("the wheel's test") {
        let pypy = venv("pypy3", &dir, false);
        pip_for(&env, &pypy, &dir, &["install", wheel.to_str().unwrap()]);
        self_check(&pypy, &dir);
        echo_through_example_server(&pypy, &dir);
    }
}
