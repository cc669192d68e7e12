//! The committed header is exactly what cbindgen generates from today's
//! source (plus the section headings added here), it declares nothing
//! outside the `EVL_`/`evl_` namespace, and its version macros agree with
//! Cargo.toml and the library.

use std::path::Path;

/// Where each part of the header begins: (the line that opens it, its heading).
/// cbindgen writes constants, then types, then functions in the order of
/// src/ffi/'s modules; these headings name the parts for a reader.
const SECTIONS: &[(&str, &str)] = &[
    (
        "#define EVL_ABI_VERSION ",
        "Versions, readiness and interest bits, errors",
    ),
    (
        "#define EVL_STREAM_DATA ",
        "Stream event kinds, listener flags, batch operations",
    ),
    (
        "#define EVL_STREAM_DATAGRAMS ",
        "UDP: event kinds, socket flags, datagram flags, options",
    ),
    (
        "#define EVL_UNIX_ABSTRACT ",
        "Unix-domain sockets: flags, the fd-passing event",
    ),
    (
        "#define EVL_ETLS_HANDSHAKE ",
        "TLS error codes, verification modes, versions",
    ),
    ("typedef struct evl_loop ", "Types"),
    (
        "int evl_loop_new(",
        "The loop API: loops, registrations, running, other threads, fork",
    ),
    ("int evl_timer_start(", "Timers"),
    ("int evl_signal_start(", "Signals"),
    (
        "int evl_listen(",
        "The stream API: listeners, connections, streams",
    ),
    (
        "int evl_stream_poll(",
        "The batch API: many events and operations per call",
    ),
    ("int evl_udp_bind(", "UDP sockets"),
    (
        "int evl_listen_unix(",
        "Unix-domain sockets: listeners, connects, credentials, passing fds",
    ),
    (
        "int evl_tls_config_new_server(",
        "TLS: configurations, TLS streams and what they negotiated",
    ),
    ("const char *evl_strerror(", "Errors and versions"),
];

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
    polish(&String::from_utf8(out).expect("utf-8 header"))
}

/// What cbindgen cannot be told: a heading before each part, and negative
/// macro values in parentheses (so `x-EVL_EPANIC` stays a subtraction).
fn polish(generated: &str) -> String {
    let lines: Vec<&str> = generated.lines().collect();
    let mut out = Vec::with_capacity(lines.len() + 4 * SECTIONS.len());
    for (i, line) in lines.iter().enumerate() {
        // A heading goes before the doc comment of the item that opens a part.
        if line.starts_with("/**") {
            let item = lines[i..]
                .iter()
                .find(|l| !l.starts_with("/**") && !l.starts_with(" *"));
            if let Some((_, heading)) = SECTIONS
                .iter()
                .find(|(opener, _)| item.is_some_and(|l| l.starts_with(opener)))
            {
                out.push(format!("/* ==== {heading} ==== */"));
                out.push(String::new());
            }
        }
        match line
            .strip_prefix("#define ")
            .and_then(|d| d.split_once(' '))
        {
            Some((name, value)) if value.starts_with('-') => {
                out.push(format!("#define {name} ({value})"))
            }
            _ => out.push(line.to_string()),
        }
    }
    out.join("\n") + "\n"
}

fn committed_header() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("include/evloop.h"))
        .unwrap_or_default()
}

#[test]
fn header_matches_cbindgen_output() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/evloop.h");
    let generated = generate();
    if std::env::var_os("EVLOOP_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write header");
        return;
    }
    assert!(
        committed_header() == generated,
        "include/evloop.h is out of date with src/ffi/; regenerate it with\n    EVLOOP_BLESS=1 cargo test --test header"
    );
    for (opener, heading) in SECTIONS {
        assert!(
            generated.contains(&format!("/* ==== {heading} ==== */")),
            "no line starts with {opener:?}: update SECTIONS"
        );
    }
}

/// Every name the header defines: macros, types, struct tags, functions.
fn defined_names(header: &str) -> Vec<String> {
    let mut names = Vec::new();
    let identifier = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for line in header.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("#define ") {
            names.push(identifier(rest));
        } else if let Some(rest) = line.strip_prefix("typedef ") {
            if let Some(at) = rest.find("(*") {
                names.push(identifier(&rest[at + 2..])); // a function pointer type
            } else if let Some(tag) = rest
                .strip_prefix("struct ")
                .or_else(|| rest.strip_prefix("enum "))
                .or_else(|| rest.strip_prefix("union "))
            {
                names.push(identifier(tag));
                if let Some(alias) = tag.strip_suffix(';').and_then(|t| t.rsplit(' ').next()) {
                    names.push(identifier(alias));
                }
            } else if let Some(alias) = rest.strip_suffix(';').and_then(|t| t.rsplit(' ').next()) {
                names.push(identifier(alias.trim_start_matches('*')));
            }
        } else if let Some(alias) = line.strip_prefix("} ").and_then(|l| l.strip_suffix(';')) {
            names.push(identifier(alias));
        } else if !line.starts_with([' ', '/', '*', '#', '}']) && line.contains('(') {
            // A function declaration: the name is the word before its '('.
            let head = &line[..line.find('(').unwrap()];
            names.push(identifier(head.rsplit([' ', '*']).next().unwrap()));
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

#[test]
fn header_defines_nothing_outside_the_evl_namespace() {
    let header = committed_header();
    let names = defined_names(&header);
    assert!(
        names.iter().any(|n| n == "evl_loop_new") && names.iter().any(|n| n == "EVL_READ"),
        "the scan found no names: {names:?}"
    );
    let foreign: Vec<_> = names
        .iter()
        .filter(|n| !n.starts_with("EVL_") && !n.starts_with("evl_") && *n != "EVLOOP_H")
        .collect();
    assert!(
        foreign.is_empty(),
        "outside the EVL_/evl_ namespace: {foreign:?}"
    );
}

#[test]
fn namespace_scan_catches_what_the_old_header_leaked() {
    let leaky = "#define EVL_READ 1\n#define DEFAULT_HIGH_WATER (1 << 20)\n\
                 typedef struct Foo Foo;\ntypedef void (*bar_cb)(int x);\nint helper(int a);\n";
    let names = defined_names(leaky);
    for name in ["DEFAULT_HIGH_WATER", "Foo", "bar_cb", "helper"] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} not seen in {names:?}"
        );
    }
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
    let header = committed_header();
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
