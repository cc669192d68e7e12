//! The TLS part of the C ABI (tests/c/test_tls.c), each C test a Rust test
//! of its own, `test_tls::NAME`, and the whole program under memcheck.
//! The certificates are made here (tls_certs, with rcgen: no private key is
//! committed) and handed to the program through EVLOOP_TLS_DIR.

mod common;
mod tls_certs;

use common::*;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

fn program() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = out_dir("c_tls");
        let certs = tls_certs::write_to(&tls_certs::make(), &dir.join("certs"));
        let src = root().join("tests/c/test_tls.c");
        (compile_c(&[src], &dir.join("test_tls"), &[]), certs)
    })
}

fn command() -> Command {
    let (program, certs) = program();
    let mut cmd = Command::new(program);
    cmd.env("EVLOOP_TLS_DIR", certs);
    cmd
}

fn assert_passed(output: &Output, expected: &[&str]) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", show(output));
    let summary = format!("{} passed, 0 failed", expected.len());
    assert!(stdout.contains(&summary), "{}", show(output));
    for name in expected {
        let line = format!("ok {name}");
        assert!(stdout.lines().any(|l| l == line), "{}", show(output));
    }
}

macro_rules! c_tests {
    ($($name:ident,)*) => {
        mod test_tls {
            use super::*;
            const NAMES: &[&str] = &[$(stringify!($name)),*];

            $(
                #[test]
                fn $name() {
                    let output = run(command().args(["--exact", stringify!($name)]));
                    assert_passed(&output, &[stringify!($name)]);
                }
            )*

            #[test]
            fn list_is_the_programs() {
                let output = run(command().arg("--list"));
                let listed: Vec<String> = String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .map(String::from)
                    .collect();
                assert_eq!(listed, NAMES, "tests/c/test_tls.c (left) and this list (right) differ");
            }

            #[test]
            fn memcheck_clean() {
                let supp = tls_certs::ring_suppressions(&out_dir("c_tls"));
                let output = run(&mut valgrind_command_suppressing(&program().0, &[supp])
                    .env("EVLOOP_TLS_DIR", &program().1));
                assert_passed(&output, NAMES);
                assert_memcheck_clean(&output);
            }
        }
    };
}

c_tests! {
    test_tls_arguments,
    test_tls_echo_callbacks,
    test_tls_echo_batch,
    test_tls_certificate_errors,
    test_tls_free_loop_mid_handshake,
}
