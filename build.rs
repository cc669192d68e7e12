//! Gives libevloop.so its SONAME and symbol versions, on every build.
//!
//! The SONAME's major is the ABI version (`EVL_ABI_VERSION` in src/ffi/types.rs),
//! not the crate's 0.x version: a program linked today records
//! `libevloop.so.1` and keeps working until an incompatible ABI change.
//! The version script (evloop.map) exports exactly the `evl_*` functions,
//! in a node per ABI version (`EVLOOP_1`). The ABI version is read from the
//! source and the script must have its node, so the two cannot disagree;
//! tests/symbols.rs checks the script against the header and the library.
//!
//! rustc links a cdylib with a version script of its own, an anonymous one
//! listing the same functions. GNU ld refuses to combine it with a named
//! node, and rust-lld (rustc's default linker since 1.90) lets it win, so
//! every function would keep the base version. The shared library is
//! therefore linked through a small wrapper that drops rustc's script and
//! keeps ours: gcc looks for `ld.bfd` in the `-B` directories first, and the
//! wrapper is the one it finds there.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=src/ffi/types.rs");
    println!("cargo:rerun-if-changed=evloop.map");
    let root = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let abi = abi_version(&read(&root.join("src/ffi/types.rs")));
    let script = root.join("evloop.map");
    let node = format!("EVLOOP_{abi} {{");
    assert!(
        read(&script)
            .lines()
            .any(|line| line.trim_start().starts_with(&node)),
        "evloop.map has no `{node}` node for EVL_ABI_VERSION {abi} (src/ffi/types.rs)"
    );
    if env("CARGO_CFG_TARGET_OS") != "linux" {
        return;
    }

    let out_dir = PathBuf::from(env("OUT_DIR"));
    link_soname_beside_library(&out_dir, abi);
    let version_script = format!("--version-script={}", script.display());
    let wrapper_dir = out_dir.join("linker");
    write_linker_wrapper(&wrapper_dir, &version_script);
    // Only the shared library: the static one and the rlib have no SONAME.
    for arg in [
        format!("-B{}/", wrapper_dir.display()),
        "-fuse-ld=bfd".to_string(),
        format!("-Wl,-soname,libevloop.so.{abi}"),
        format!("-Wl,{version_script}"),
    ] {
        println!("cargo:rustc-cdylib-link-arg={arg}");
    }
}

/// A program linked against target/<profile>/libevloop.so records its
/// SONAME, libevloop.so.N, and the dynamic loader looks for that name in
/// the program's rpath: `libevloop.so.N -> libevloop.so` beside the library
/// (in target/<profile>, where cargo puts it, and in its deps/, where it is
/// linked), as an installed library has it. OUT_DIR is
/// target/<profile>/build/evloop-<hash>/out; the link may come before the
/// library does.
fn link_soname_beside_library(out_dir: &Path, abi: u32) {
    let profile_dir = out_dir
        .ancestors()
        .nth(3)
        .expect("OUT_DIR is target/<profile>/build/<pkg>/out");
    for dir in [profile_dir.to_path_buf(), profile_dir.join("deps")] {
        let link = dir.join(format!("libevloop.so.{abi}"));
        if link.symlink_metadata().is_err() {
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            std::os::unix::fs::symlink("libevloop.so", &link)
                .unwrap_or_else(|e| panic!("{}: {e}", link.display()));
        }
    }
}

/// `dir/ld.bfd`: runs `ld` with every `--version-script` but ours removed.
fn write_linker_wrapper(dir: &Path, ours: &str) {
    let wrapper = format!(
        "#!/bin/sh\n\
         # Written by evloop's build.rs, which says why: links libevloop.so\n\
         # with evloop.map as its only version script.\n\
         ours={}\n\
         for arg do\n    \
             shift\n    \
             case $arg in\n        \
                 --version-script=*) [ \"$arg\" = \"$ours\" ] || continue ;;\n    \
             esac\n    \
             set -- \"$@\" \"$arg\"\n\
         done\n\
         exec ld \"$@\"\n",
        shell_quote(ours)
    );
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let path = dir.join("ld.bfd");
    std::fs::write(&path, wrapper).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The value of `pub const EVL_ABI_VERSION: u32 = N;`.
fn abi_version(ffi: &str) -> u32 {
    let prefix = "pub const EVL_ABI_VERSION: u32 = ";
    let value = ffi
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("src/ffi/types.rs has no line `{prefix}N;`"));
    value
        .trim_end_matches(';')
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("EVL_ABI_VERSION `{value}`: {e}"))
}
