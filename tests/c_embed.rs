//! tests/c/test_embed.c: hooks and running the loop inside a host loop
//! (evl_backend_fd, evl_backend_timeout), compiled with -std=c11 -Wall
//! -Wextra -Werror against the header, run natively and under memcheck.

mod common;
use common::*;
use std::process::{Command, Output};
use std::sync::OnceLock;

fn test_embed() -> &'static std::path::Path {
    static BUILT: OnceLock<std::path::PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = out_dir("c_embed").join("test_embed");
        compile_c(&[root().join("tests/c/test_embed.c")], &out, &[])
    })
}

fn assert_all_passed(output: &Output) {
    assert!(output.status.success(), "{}", show(output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(" passed, 0 failed"), "{}", show(output));
    // The host-loop wakeup counts, for the record (cargo test -- --nocapture).
    for line in stdout.lines().filter(|l| l.starts_with("host loop")) {
        println!("{line}");
    }
}

#[test]
fn c_embed_tests_pass() {
    assert_all_passed(&Command::new(test_embed()).output().unwrap());
}

#[test]
fn c_embed_tests_are_memcheck_clean() {
    let output = valgrind_command(test_embed()).output().unwrap();
    assert_all_passed(&output);
    assert_memcheck_clean(&output);
}
