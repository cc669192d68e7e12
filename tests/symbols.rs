//! What libevloop.so exports is exactly what the header declares and what
//! the version script lists: adding or removing an `evl_*` function without
//! updating all three fails here. The script has one node per ABI version
//! (`EVLOOP_1`), and the library's SONAME carries the ABI version.

mod common;
use common::*;
use std::collections::BTreeSet;

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

fn abi_version() -> u32 {
    evloop::ffi::evl_abi_version()
}

#[test]
fn version_script_has_a_node_per_abi_version() {
    let nodes = script_nodes();
    let names: Vec<&str> = nodes.iter().map(|(name, _)| name.as_str()).collect();
    let expected: Vec<String> = (1..=abi_version()).map(|v| format!("EVLOOP_{v}")).collect();
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
    for (node, symbols) in script_nodes() {
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
