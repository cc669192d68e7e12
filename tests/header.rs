//! The committed header is exactly what cbindgen generates from today's
//! source, and its version macros agree with Cargo.toml and the library.

use std::path::Path;

fn generate() -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let config =
        cbindgen::Config::from_file(Path::new(root).join("cbindgen.toml")).expect("cbindgen.toml");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root)
        .with_config(config)
        .generate()
        .expect("cbindgen failed")
        .write(&mut out);
    String::from_utf8(out).expect("utf-8 header")
}

#[test]
fn header_matches_cbindgen_output() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/evloop.h");
    let generated = generate();
    if std::env::var_os("EVLOOP_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write header");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/evloop.h is out of date with src/ffi.rs; regenerate it with\n    EVLOOP_BLESS=1 cargo test --test header"
    );
}

fn macro_value(header: &str, name: &str) -> u32 {
    let line = header
        .lines()
        .find(|l| l.starts_with(&format!("#define {name} ")))
        .unwrap_or_else(|| panic!("{name} missing from the header"));
    line.rsplit(' ')
        .next()
        .unwrap()
        .trim_end_matches('u')
        .trim_end_matches('U')
        .parse()
        .unwrap()
}

#[test]
fn version_macros_agree_with_cargo_and_library() {
    let header =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("include/evloop.h"))
            .unwrap();
    assert_eq!(
        macro_value(&header, "EVL_VERSION_MAJOR").to_string(),
        env!("CARGO_PKG_VERSION_MAJOR")
    );
    assert_eq!(
        macro_value(&header, "EVL_VERSION_MINOR").to_string(),
        env!("CARGO_PKG_VERSION_MINOR")
    );
    assert_eq!(
        macro_value(&header, "EVL_VERSION_PATCH").to_string(),
        env!("CARGO_PKG_VERSION_PATCH")
    );
    assert_eq!(
        macro_value(&header, "EVL_ABI_VERSION"),
        evloop::ffi::evl_abi_version()
    );
    // SAFETY: evl_version returns a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(evloop::ffi::evl_version()) };
    assert_eq!(version.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}
