//! The C test programs (tests/c/test_api.c for the core, test_streams.c for
//! the streams), compiled with -std=c11 -Wall -Wextra -Werror against the
//! header, run natively and under memcheck.

mod common;
use common::*;
use std::process::Command;
use std::sync::OnceLock;

fn test_program(name: &str) -> std::path::PathBuf {
    static BUILT: OnceLock<Vec<(String, std::path::PathBuf)>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        ["test_api", "test_streams"]
            .iter()
            .map(|name| {
                let out = out_dir("c_api").join(name);
                let src = root().join(format!("tests/c/{name}.c"));
                (name.to_string(), compile_c(&[src], &out, &[]))
            })
            .collect()
    });
    built.iter().find(|(n, _)| n == name).unwrap().1.clone()
}

fn assert_all_passed(output: &std::process::Output) {
    assert!(output.status.success(), "{}", show(output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(" passed, 0 failed"),
        "{}",
        show(output)
    );
}

#[test]
fn c_api_tests_pass() {
    assert_all_passed(&Command::new(test_program("test_api")).output().unwrap());
}

#[test]
fn c_api_tests_are_memcheck_clean() {
    let output = valgrind_command(&test_program("test_api"))
        .output()
        .unwrap();
    assert_all_passed(&output);
    assert_memcheck_clean(&output);
}

#[test]
fn c_stream_tests_pass() {
    assert_all_passed(&Command::new(test_program("test_streams")).output().unwrap());
}

#[test]
fn c_stream_tests_are_memcheck_clean() {
    let output = valgrind_command(&test_program("test_streams"))
        .output()
        .unwrap();
    assert_all_passed(&output);
    assert_memcheck_clean(&output);
}

#[test]
fn header_compiles_as_cpp() {
    let src = out_dir("c_api").join("header_check.cpp");
    std::fs::write(
        &src,
        "#include \"evloop.h\"\nint main() { evl_loop *l = nullptr; int rc = evl_loop_new(&l); \
         rc |= evl_loop_free(l); return rc == 0 && evl_abi_version() == EVL_ABI_VERSION ? 0 : 1; }\n",
    )
    .unwrap();
    let exe = out_dir("c_api").join("header_check");
    let lib = lib_dir();
    let output = Command::new("c++")
        .args(["-std=c++11", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(root().join("include"))
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-Wl,--disable-new-dtags") // see compile_c
        .arg("-levloop")
        .output()
        .expect("c++ is needed to check the header compiles as C++: apt-get install g++");
    assert!(output.status.success(), "{}", show(&output));
    let run = Command::new(&exe).output().unwrap();
    assert!(run.status.success(), "{}", show(&run));
}
