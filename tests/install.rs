//! `make install` stages a library that C programs find with pkg-config:
//! c-examples/demo.c compiled against the staged evloop.pc, linked to the
//! shared library (recording its SONAME) and statically, runs; `make
//! uninstall` takes back every file. The Makefile builds with the release
//! profile into this test's own target directory, so a second run costs
//! nothing.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

fn make(stage: &Path, goal: &str) -> String {
    make_with(stage, goal, &[])
}

/// `make GOAL DESTDIR=stage VARIABLES...` in the checkout.
fn make_with(stage: &Path, goal: &str, variables: &[&str]) -> String {
    tool_output(
        Command::new("make")
            .current_dir(root())
            .arg("--no-print-directory")
            .arg(goal)
            .arg(format!("DESTDIR={}", stage.display()))
            .args(variables)
            .env("CARGO_TARGET_DIR", target_dir()),
    )
}

/// Every file and symbolic link under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.is_symlink() {
                walk(base, &path, found);
            } else {
                found.push(format!("/{}", path.strip_prefix(base).unwrap().display()));
            }
        }
    }
    let mut found = Vec::new();
    walk(dir, dir, &mut found);
    found.sort();
    found
}

/// The library's full version, ABI.MINOR.PATCH (Makefile and cargo-c agree).
fn so_version() -> String {
    format!(
        "{}.{}.{}",
        evloop::ffi::evl_abi_version(),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH")
    )
}

fn pkg_config(stage: &Path, args: &[&str]) -> Vec<String> {
    let found = Command::new("pkg-config").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "pkg-config is needed: apt-get install pkg-config (.ci/run does this)"
    );
    let flags = tool_output(
        Command::new("pkg-config")
            .args(args)
            .arg("evloop")
            .env("PKG_CONFIG_LIBDIR", stage.join("usr/local/lib/pkgconfig"))
            .env_remove("PKG_CONFIG_PATH")
            .env("PKG_CONFIG_SYSROOT_DIR", stage),
    );
    flags.split_whitespace().map(str::to_string).collect()
}

/// Compiles demo.c with the project's flags and what pkg-config says.
fn compile_demo(out: &Path, extra: &[&str], pkg_config_flags: &[String]) {
    tool_output(
        Command::new("cc")
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2"])
            .args(extra)
            .arg(root().join("c-examples/demo.c"))
            .args(pkg_config_flags)
            .arg("-o")
            .arg(out),
    );
}

fn run_demo(program: &Path, library_dir: Option<&Path>) {
    let mut cmd = Command::new(program);
    if let Some(dir) = library_dir {
        cmd.env("LD_LIBRARY_PATH", dir);
    }
    let output = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", show(&output));
    assert!(
        stdout.contains("answerer got \"ping 5\""),
        "{}",
        show(&output)
    );
    assert!(stdout.contains("loop ended: Success"), "{}", show(&output));
}

fn has_debug_info(file: &Path) -> bool {
    let sections = tool_output(Command::new("readelf").args(["-S", "-W"]).arg(file));
    sections.contains(".debug_info")
}

#[test]
fn make_install_stages_a_library_that_pkg_config_finds_and_uninstall_removes_it() {
    let stage = out_dir("install/stage");
    let _ = std::fs::remove_dir_all(&stage);
    make(&stage, "install");

    let v = so_version();
    let abi = evloop::ffi::evl_abi_version();
    let expected = [
        "/usr/local/include/evloop.h".to_string(),
        "/usr/local/lib/libevloop.a".to_string(),
        "/usr/local/lib/libevloop.so".to_string(),
        format!("/usr/local/lib/libevloop.so.{abi}"),
        format!("/usr/local/lib/libevloop.so.{v}"),
        "/usr/local/lib/pkgconfig/evloop.pc".to_string(),
    ];
    assert_eq!(files_under(&stage), expected);
    let mut listed: Vec<String> = make(&stage, "print-installed")
        .lines()
        .map(String::from)
        .collect();
    listed.sort();
    assert_eq!(listed, expected, "make print-installed");

    let lib = stage.join("usr/local/lib");
    let links = [
        ("libevloop.so", format!("libevloop.so.{abi}")),
        (&*format!("libevloop.so.{abi}"), format!("libevloop.so.{v}")),
    ];
    for (link, target) in &links {
        assert_eq!(
            std::fs::read_link(lib.join(link)).unwrap(),
            Path::new(target),
            "{link}"
        );
    }
    let shared = lib.join(format!("libevloop.so.{v}"));
    assert_eq!(soname(&shared), Some(format!("libevloop.so.{abi}")));
    let symbols = exported_symbols(&shared);
    assert!(symbols.len() >= 40, "{symbols:?}");
    for (name, version) in &symbols {
        // The C API at EVLOOP_<abi>; the Python package's entry point at its
        // own node (tests/symbols.rs).
        let expected = if name == "evl_cpython_init" {
            "EVLOOP_CPYTHON_1".to_string()
        } else {
            format!("EVLOOP_{abi}")
        };
        assert!(
            name.starts_with("evl_") && version == &expected,
            "{name}@@{version}"
        );
    }
    assert!(
        !has_debug_info(&shared),
        "the installed libevloop.so carries debug info"
    );
    assert!(
        !has_debug_info(&lib.join("libevloop.a")),
        "the installed libevloop.a carries debug info"
    );

    let dir = out_dir("install");
    let dynamic = dir.join("demo_shared");
    compile_demo(&dynamic, &[], &pkg_config(&stage, &["--cflags", "--libs"]));
    assert_eq!(
        needed(&dynamic)
            .iter()
            .filter(|n| n.starts_with("libevloop"))
            .collect::<Vec<_>>(),
        [&format!("libevloop.so.{abi}")]
    );
    run_demo(&dynamic, Some(&lib));

    let fully_static = dir.join("demo_static");
    let static_flags = pkg_config(&stage, &["--static", "--cflags", "--libs"]);
    assert!(
        static_flags.contains(&"-lpthread".to_string()),
        "{static_flags:?}"
    );
    compile_demo(&fully_static, &["-static"], &static_flags);
    assert_eq!(
        needed(&fully_static),
        Vec::<String>::new(),
        "a static program needs no shared library"
    );
    run_demo(&fully_static, None);

    make(&stage, "uninstall");
    assert_eq!(
        files_under(&stage),
        Vec::<String>::new(),
        "make uninstall left files behind"
    );
}

#[test]
fn install_directories_follow_prefix_libdir_and_includedir() {
    let stage = out_dir("install/stage-opt");
    let _ = std::fs::remove_dir_all(&stage);
    let variables = [
        "PREFIX=/opt/evloop",
        "LIBDIR=/opt/evloop/lib64",
        "INCLUDEDIR=/usr/include/evloop",
    ];
    make_with(&stage, "install", &variables);
    let v = so_version();
    let abi = evloop::ffi::evl_abi_version();
    let expected = [
        "/opt/evloop/lib64/libevloop.a".to_string(),
        "/opt/evloop/lib64/libevloop.so".to_string(),
        format!("/opt/evloop/lib64/libevloop.so.{abi}"),
        format!("/opt/evloop/lib64/libevloop.so.{v}"),
        "/opt/evloop/lib64/pkgconfig/evloop.pc".to_string(),
        "/usr/include/evloop/evloop.h".to_string(),
    ];
    assert_eq!(files_under(&stage), expected);
    let pc = std::fs::read_to_string(stage.join("opt/evloop/lib64/pkgconfig/evloop.pc")).unwrap();
    for line in [
        "prefix=/opt/evloop",
        "libdir=${prefix}/lib64",
        "includedir=/usr/include/evloop",
        "Libs: -L${libdir} -levloop",
        "Cflags: -I${includedir}",
        &format!("Version: {}", env!("CARGO_PKG_VERSION")),
    ] {
        assert!(
            pc.lines().any(|l| l == line),
            "no line {line:?} in evloop.pc:\n{pc}"
        );
    }
    make_with(&stage, "uninstall", &variables);
    assert_eq!(
        files_under(&stage),
        Vec::<String>::new(),
        "make uninstall left files behind"
    );
}

/// A copy of what the Makefile builds from, in a directory of this test's
/// own, modification times kept (`cp -a`), so that the copy's own target
/// directory is rebuilt only when the checkout changed.
fn copy_of_the_build_tree() -> std::path::PathBuf {
    let tree = out_dir("install/tree");
    std::fs::remove_dir_all(&tree).unwrap();
    std::fs::create_dir_all(&tree).unwrap();
    // tests/: Cargo.toml declares some of them, and cargo reads every target.
    let inputs = [
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "evloop.map",
        "Makefile",
        "src",
        "include",
        "tests",
    ];
    tool_output(
        Command::new("cp")
            .arg("-a")
            .args(inputs.iter().map(|name| root().join(name)))
            .arg(&tree),
    );
    tree
}

fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// `make GOAL VARIABLES...` in `tree`, building into `target`.
fn make_in(tree: &Path, target: &Path, goal: &str, variables: &[&str]) -> std::process::Output {
    let mut make = Command::new("make");
    make.current_dir(tree)
        .arg("--no-print-directory")
        .arg(goal)
        .args(variables)
        .env("CARGO_TARGET_DIR", target);
    run_within(&mut make, BUILD_PATIENCE)
}

/// The first build in the tree's own target directory compiles every
/// dependency with the release profile (ring's C and assembly among them):
/// on a loaded 2-core machine, beside the other install tests' builds,
/// that took more than PATIENCE's 300 s.
const BUILD_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1200);

/// Issue 25: the Makefile knew only src/*.rs, so after a change in a nested
/// file (src/ffi/batch.rs) `make` said there was nothing to do and `make
/// install` installed the stale library. `make` now always asks cargo, and
/// `make install` asks it whenever the library is older than a file of the
/// list cargo wrote beside it; when the library is up to date it needs no
/// cargo (`sudo make install` after `make`, with no cargo on root's PATH).
#[test]
fn a_change_in_a_nested_source_is_built_and_installed() {
    let tree = copy_of_the_build_tree();
    let target = out_dir("install/tree-target");
    let stage = out_dir("install/tree-stage");
    let built = target.join("release/libevloop.so");
    let installed = stage.join(format!("usr/local/lib/libevloop.so.{}", so_version()));
    let destdir = format!("DESTDIR={}", stage.display());
    let ok = |output: std::process::Output| {
        assert!(output.status.success(), "{}", show(&output));
    };
    let install_without_cargo = || make_in(&tree, &target, "install", &[&destdir, "CARGO=false"]);
    let assert_installed_is_built = || {
        let (installed, built) = (std::fs::read(&installed), std::fs::read(&built));
        assert_eq!(installed.unwrap(), built.unwrap(), "installed, built");
    };

    // The checkout's release build seeds the tree's target directory: cargo
    // then compiles evloop again (its path differs) but not ring and the
    // other dependencies, minutes on a loaded 2-core machine.
    if !target.join("release").exists() {
        make(&stage, "all");
        tool_output(
            Command::new("cp")
                .arg("-a")
                .arg(target_dir().join("release"))
                .arg(&target),
        );
    }
    ok(make_in(&tree, &target, "all", &[]));
    ok(install_without_cargo());
    assert_installed_is_built();

    // A change in a nested file, a comment: cargo rebuilds all the same.
    let nested = tree.join("src/ffi/batch.rs");
    let mut text = std::fs::read_to_string(&nested).unwrap();
    text.push_str("// changed by tests/install.rs\n");
    std::fs::write(&nested, text).unwrap();
    assert!(modified(&built) < modified(&nested));

    let stale = install_without_cargo();
    assert!(
        !stale.status.success(),
        "make install installed a library older than src/ffi/batch.rs without building it:\n{}",
        show(&stale)
    );
    ok(make_in(&tree, &target, "all", &[]));
    assert!(
        modified(&built) >= modified(&nested),
        "make did not rebuild after a change in src/ffi/batch.rs"
    );
    ok(install_without_cargo());
    assert_installed_is_built();

    // And make install alone builds what changed, then installs it.
    std::fs::write(&nested, std::fs::read(&nested).unwrap()).unwrap();
    let before = modified(&built);
    ok(make_in(&tree, &target, "install", &[&destdir]));
    assert!(modified(&built) > before, "make install did not rebuild");
    assert_installed_is_built();
    ok(make_in(&tree, &target, "uninstall", &[&destdir]));
}

/// `make check` installs what .ci/prerequisites.sh lists and is missing:
/// `.ci/check --missing` says what that is. With only a shell, valgrind and
/// pkg-config on the PATH, valgrind, pkg-config and GLib (found through
/// pkg-config) are there and the rest is missing.
#[test]
fn make_check_finds_what_is_missing() {
    let bin = out_dir("install/bare-path");
    for tool in ["sh", "dirname", "valgrind", "pkg-config"] {
        let link = bin.join(tool);
        let _ = std::fs::remove_file(&link);
        let found = tool_output(Command::new("sh").args(["-c", &format!("command -v {tool}")]));
        std::os::unix::fs::symlink(found.trim(), &link).unwrap();
    }
    let output = run(Command::new("sh")
        .arg(root().join(".ci/check"))
        .arg("--missing")
        .env_clear()
        .env("PATH", &bin));
    assert_eq!(output.status.code(), Some(1), "{}", show(&output));
    let report = String::from_utf8_lossy(&output.stdout);
    let missing: Vec<&str> = report
        .lines()
        .map(|line| line.strip_prefix("missing: ").expect(line))
        .map(|line| line.split(" (`").next().unwrap())
        .collect();
    for there in ["valgrind", "pkg-config", "libglib2.0-dev"] {
        assert!(!missing.contains(&there), "{there}:\n{report}");
    }
    for absent in [
        "g++",
        "make",
        "binutils",
        "pypy3",
        "pypy3-lib-testsuite",
        "python3-venv",
        "rustup component rustfmt",
        "rustup component clippy",
    ] {
        assert!(missing.contains(&absent), "{absent}:\n{report}");
    }

    let bad = run(Command::new("sh")
        .arg(root().join(".ci/check"))
        .arg("--nothing"));
    assert_eq!(bad.status.code(), Some(2), "{}", show(&bad));
}

#[test]
fn cargo_c_metadata_names_the_same_library_version() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let section = manifest
        .split("[package.metadata.capi.library]")
        .nth(1)
        .expect("Cargo.toml has [package.metadata.capi.library]");
    let version = section
        .lines()
        .find_map(|line| line.strip_prefix("version = "))
        .expect("a version in [package.metadata.capi.library]");
    assert_eq!(
        version.trim_matches('"'),
        so_version(),
        "cargo cinstall would install another libevloop.so.N.M.P than make install"
    );
}
