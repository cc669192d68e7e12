//! What libevloop.so exports is exactly what the header declares and what
//! the version script lists: adding or removing an `evl_*` function without
//! updating all three fails here. The script has one node per ABI version
//! (`EVLOOP_1`), and the library's SONAME carries the ABI version.
//!
//! Beside the C API, one more node, `EVLOOP_CPYTHON_1`: the entry point of
//! the Python package's native asyncio loop (src/cpython/), which the
//! header does not declare. It exports exactly [`CPYTHON_NODE`], and none of
//! it leaks into the C API's nodes; the library does not link libpython nor
//! refer to any of CPython's symbols (it finds them at run time).

mod common;
use common::*;
use std::collections::BTreeSet;
use std::process::Command;

/// The functions include/evloop.h declares: `type name(args);` at column 0.
fn header_functions() -> BTreeSet<String> {
    let header = std::fs::read_to_string(root().join("include/evloop.h")).unwrap();
    header
        .lines()
        .filter(|line| !line.starts_with("typedef") && !line.starts_with('#'))
        .filter(|line| !line.starts_with(' ') && line.ends_with(");"))
        .filter_map(|line| {
            let before_args = line.split_once('(')?.0;
            let name = before_args.rsplit([' ', '*']).next()?;
            Some(name.to_string())
        })
        .collect()
}

/// The version script's nodes in order, each with the symbols it makes
/// global: `NAME { global: a; b; local: *; };`.
fn script_nodes() -> Vec<(String, Vec<String>)> {
    let script = std::fs::read_to_string(root().join("evloop.map")).unwrap();
    let mut text = String::new();
    let mut rest = script.as_str();
    // Comments out, so that what is left is tokens and punctuation.
    while let Some((before, after)) = rest.split_once("/*") {
        text.push_str(before);
        rest = after.split_once("*/").expect("unclosed comment").1;
    }
    text.push_str(rest);

    let mut nodes = Vec::new();
    let mut rest = text.as_str();
    while let Some((name, after)) = rest.split_once('{') {
        let (body, after) = after.split_once('}').expect("node without `}`");
        let mut global = true;
        let mut symbols = Vec::new();
        for item in body.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let item = match item.split_once(':') {
                Some((section, item)) => {
                    global = section.trim() == "global";
                    item.trim()
                }
                None => item,
            };
            if global && !item.is_empty() {
                symbols.push(item.to_string());
            }
        }
        nodes.push((name.trim().to_string(), symbols));
        rest = after.split_once(';').expect("node without `};`").1;
    }
    nodes
}

/// The version node of the CPython layer, and exactly what it exports.
const CPYTHON_NODE: (&str, &[&str]) = ("EVLOOP_CPYTHON_1", &["evl_cpython_init"]);

/// The script's nodes of the C API (all but the CPython layer's).
fn c_api_nodes() -> Vec<(String, Vec<String>)> {
    script_nodes()
        .into_iter()
        .filter(|(name, _)| name != CPYTHON_NODE.0)
        .collect()
}

fn abi_version() -> u32 {
    evloop::ffi::evl_abi_version()
}

#[test]
fn version_script_has_a_node_per_abi_version() {
    let nodes = script_nodes();
    let names: Vec<&str> = nodes.iter().map(|(name, _)| name.as_str()).collect();
    let mut expected: Vec<String> = (1..=abi_version()).map(|v| format!("EVLOOP_{v}")).collect();
    expected.push(CPYTHON_NODE.0.to_string());
    assert_eq!(names, expected, "evloop.map's nodes");
    for (name, symbols) in &nodes {
        assert!(!symbols.is_empty(), "{name} exports nothing");
        for symbol in symbols {
            assert!(
                symbol.starts_with("evl_") && !symbol.contains('*'),
                "{name} exports `{symbol}`: only evl_* functions, by name"
            );
        }
    }
}

#[test]
fn header_and_version_script_name_the_same_functions() {
    let header = header_functions();
    assert!(header.len() >= 40, "header parse found only {header:?}");
    let mut scripted = BTreeSet::new();
    for (node, symbols) in c_api_nodes() {
        for symbol in symbols {
            assert!(
                scripted.insert(symbol.clone()),
                "{symbol} twice in evloop.map (again in {node})"
            );
        }
    }
    let unscripted: Vec<_> = header.difference(&scripted).collect();
    let undeclared: Vec<_> = scripted.difference(&header).collect();
    assert!(
        unscripted.is_empty() && undeclared.is_empty(),
        "declared in include/evloop.h but not in evloop.map: {unscripted:?}\n\
         in evloop.map but not declared in the header: {undeclared:?}\n\
         a new function goes into the node of the ABI version it first appears in"
    );
}

#[test]
fn library_exports_exactly_the_scripted_functions_with_their_versions() {
    let library = lib_dir().join("libevloop.so");
    let expected: BTreeSet<(String, String)> = script_nodes()
        .into_iter()
        .flat_map(|(node, symbols)| symbols.into_iter().map(move |s| (s, node.clone())))
        .collect();
    let exported: BTreeSet<(String, String)> = exported_symbols(&library).into_iter().collect();
    let extra: Vec<_> = exported.difference(&expected).collect();
    let missing: Vec<_> = expected.difference(&exported).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "{}: exported but not as evloop.map says: {extra:?}\nin evloop.map but not exported so: {missing:?}",
        library.display()
    );
}

#[test]
fn soname_carries_the_abi_version() {
    let library = lib_dir().join("libevloop.so");
    assert_eq!(
        soname(&library).as_deref(),
        Some(format!("libevloop.so.{}", abi_version()).as_str())
    );
    // Programs linked in the build tree load it by that name (build.rs).
    let by_soname = lib_dir().join(format!("libevloop.so.{}", abi_version()));
    assert_eq!(
        by_soname.canonicalize().unwrap(),
        library.canonicalize().unwrap()
    );
}

#[test]
fn cpython_node_exports_exactly_its_entry_point_and_nothing_of_it_is_in_the_header() {
    let nodes = script_nodes();
    let (_, symbols) = nodes
        .iter()
        .find(|(name, _)| name == CPYTHON_NODE.0)
        .unwrap_or_else(|| panic!("evloop.map has no {} node", CPYTHON_NODE.0));
    assert_eq!(symbols, CPYTHON_NODE.1, "{}'s symbols", CPYTHON_NODE.0);
    let header = header_functions();
    for symbol in CPYTHON_NODE.1 {
        assert!(
            !header.contains(*symbol),
            "{symbol} is the Python package's, not the C API's: keep it out of include/evloop.h"
        );
        for (node, c_symbols) in c_api_nodes() {
            assert!(
                !c_symbols.iter().any(|s| s == symbol),
                "{symbol} in {node}: it belongs to {} only",
                CPYTHON_NODE.0
            );
        }
    }
    let exported = exported_symbols(&lib_dir().join("libevloop.so"));
    for symbol in CPYTHON_NODE.1 {
        assert!(
            exported.contains(&(symbol.to_string(), CPYTHON_NODE.0.to_string())),
            "{symbol}@@{} is not exported: {exported:?}",
            CPYTHON_NODE.0
        );
    }
}

/// A C program that links the library never loads Python: no libpython
/// among its dependencies, and no reference to any of CPython's symbols
/// (the CPython layer finds them with dlsym when the Python package asks).
#[test]
fn library_neither_links_nor_refers_to_python() {
    let library = lib_dir().join("libevloop.so");
    let needed = needed(&library);
    assert!(
        !needed.iter().any(|n| n.contains("python")),
        "libevloop.so needs {needed:?}"
    );
    let table = tool_output(
        Command::new("readelf")
            .args(["--dyn-syms", "-W"])
            .arg(&library),
    );
    let python_symbols: Vec<&str> = table
        .lines()
        .filter_map(|line| line.split_whitespace().nth(7))
        .filter(|name| name.starts_with("Py") || name.starts_with("_Py"))
        .collect();
    assert!(
        python_symbols.is_empty(),
        "libevloop.so refers to CPython's symbols: {python_symbols:?}"
    );
}
