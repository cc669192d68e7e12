//! The C test programs (tests/c/test_api.c for the core, test_streams.c for
//! the streams, test_embed.c for hooks and host loops, test_udp.c and
//! test_unix.c for UDP and Unix-domain sockets, test_jobs.c for the
//! thread pool, name resolution and child processes), compiled with -std=c11 -Wall -Wextra -Werror against the
//! header. Each C test is a Rust test of its own, `test_api::NAME` or
//! `test_streams::NAME` (so `cargo test --test c_api test_timer_order` runs
//! one), run natively; each program also runs whole under memcheck. The
//! lists below must be the programs' own (`PROGRAM --list`): a test fails
//! when they drift.

mod common;
use common::*;
use std::process::{Command, Output};
use std::sync::OnceLock;

fn test_program(name: &str) -> std::path::PathBuf {
    static BUILT: OnceLock<Vec<(String, std::path::PathBuf)>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        [
            "test_api",
            "test_streams",
            "test_embed",
            "test_udp",
            "test_unix",
            "test_jobs",
        ]
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

/// The program passed `expected` tests (by name, each reported "ok") and failed none.
fn assert_passed(output: &Output, expected: &[&str]) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", show(output));
    assert!(
        stdout.contains(&format!("{} passed, 0 failed", expected.len())),
        "{}",
        show(output)
    );
    for name in expected {
        assert!(
            stdout.lines().any(|l| l == format!("ok {name}")),
            "{}",
            show(output)
        );
    }
}

/// Runs the one C test `name` of `program`.
fn run_c_test(program: &str, name: &str) {
    let output = run(Command::new(test_program(program)).args(["--exact", name]));
    assert_passed(&output, &[name]);
}

/// The names `program --list` gives, which must be `names`.
fn assert_list_is(program: &str, names: &[&str]) {
    let output = run(Command::new(test_program(program)).arg("--list"));
    assert!(output.status.success(), "{}", show(&output));
    let listed: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        listed, names,
        "the C program's tests (left) and the list in tests/c_api.rs (right) differ: update the list"
    );
}

/// One Rust test per C test of `program`, a test that the list is the
/// program's, and one run of the whole program under memcheck.
macro_rules! c_tests {
    ($program:ident: $($name:ident,)*) => {
        mod $program {
            use super::*;
            const NAMES: &[&str] = &[$(stringify!($name)),*];

            $(
                #[test]
                fn $name() {
                    run_c_test(stringify!($program), stringify!($name));
                }
            )*

            #[test]
            fn list_is_the_programs() {
                assert_list_is(stringify!($program), NAMES);
            }

            #[test]
            fn memcheck_clean() {
                let output = run(&mut valgrind_command(&test_program(stringify!($program))));
                assert_passed(&output, NAMES);
                assert_memcheck_clean(&output);
            }
        }
    };
}

c_tests! {
    test_api:
        test_versions,
        test_strerror,
        test_null_pointers,
        test_bad_fds_and_bits,
        test_read_callback,
        test_poll_reports_all_and_limits,
        test_hup_rdhup_error,
        test_edge_and_oneshot,
        test_oneshot_rearmed_during_its_batch_reports_once,
        test_rdhup_only_with_read_interest,
        test_callback_ends_other_registrations,
        test_fd_number_reused_in_batch,
        test_closed_without_unregister,
        test_callback_changes_itself,
        test_reentry_is_busy,
        test_timer_order,
        test_timer_stop_rules,
        test_timer_never_early,
        test_many_timers_stopped,
        test_threads_post_wake_stop,
        test_task_posted_from_task_runs_next_iteration,
        test_signals,
        test_eintr,
        test_fork,
        test_fork_after_registered_fds_were_closed,
        test_fork_never_revives_a_closed_registration,
        test_fork_keeps_what_the_parent_lets_go_after_the_fork,
        test_signalfd_never_takes_a_registered_number,
        test_fork_with_signalfd_after_a_stale_registration,
        test_many_fds,
        test_fd_numbers_that_are_not_open_cost_nothing,
        test_fd_at_the_last_number_the_limit_allows,
        test_huge_and_negative_numbers_cost_nothing,
}

c_tests! {
    test_streams:
        test_read_buffer_and_write_batch,
        test_exchange,
        test_exchange_writes,
        test_stream_arguments,
        test_held_over_data_keeps_its_bytes,
        test_stream_over_a_pipes_write_end,
        test_graceful_close_with_unread_input_sends_everything,
        test_lingering_close_keeps_the_reply_from_a_peer_still_sending,
        test_linger_bounds_end_it,
        test_run_returns_with_only_lingering_sockets,
        test_fork_leaves_lingering_to_the_parent,
        test_fd_stays_open_until_closed_is_delivered,
        test_pause_holds_data_read_before_it,
        test_close_drops_what_pause_held,
        test_stream_without_callback_does_not_stall_the_others,
        test_library_closed_stream_id_lives_until_closed,
        test_stream_callbacks,
        test_stream_batches,
        test_stream_reentry_is_busy,
        test_free_with_streams_open,
        test_huge_and_negative_numbers_cost_nothing,
        test_prefork_server_child_serves_what_the_parent_let_go,
}

#[test]
fn harness_filters_by_name_and_refuses_a_filter_that_matches_nothing() {
    let program = test_program("test_api");
    let output = run(Command::new(&program).arg("test_timer_"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("ok test_timer_order\n"),
        "{}",
        show(&output)
    );
    assert!(!stdout.contains("test_versions"), "{}", show(&output));
    let none = run(Command::new(&program).arg("no_such_test"));
    assert_eq!(none.status.code(), Some(2), "{}", show(&none));
}

/// Unloading the library drops its fork handlers (tests/c/unload_then_fork.c).
#[test]
fn fork_after_the_library_was_unloaded() {
    let dir = out_dir("c_api").join("unload");
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("libevloop-copy.so");
    std::fs::copy(lib_dir().join("libevloop.so"), &copy).unwrap();
    let src = root().join("tests/c/unload_then_fork.c");
    let program = compile_c(&[src], &dir.join("unload_then_fork"), &["-ldl"]);
    let output = run(Command::new(program).arg(&copy));
    assert!(output.status.success(), "{}", show(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("forked after unloading"),
        "{}",
        show(&output)
    );
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
    let ran = run(&mut Command::new(&exe));
    assert!(ran.status.success(), "{}", show(&ran));
}

c_tests! {
    test_embed:
        test_bad_arguments,
        test_backend_timeout_values,
        test_backend_timeout_zero_while_stream_events_wait,
        test_backend_fd_costs_nothing_until_asked,
        test_hook_order_and_counts,
        test_hooks_stop_themselves_and_each_other,
        test_idle_hooks_keep_run_from_blocking,
        test_an_active_hook_is_work_for_run,
        test_a_hook_stops_the_loop,
        test_hook_reentry_is_busy,
        test_host_loop_wakes_once_per_timer_or_batch,
        test_host_follows_timers_started_and_stopped_outside,
        test_host_wakes_for_a_task_from_another_thread,
}

c_tests! {
    test_udp:
        test_udp_arguments,
        test_udp_echo_callbacks,
        test_udp_echo_batch,
        test_udp_dual_stack,
        test_udp_truncation_is_reported,
        test_udp_connected,
        test_udp_broadcast_and_multicast,
        test_udp_reuseport,
        test_udp_close,
        test_udp_pause_and_free,
        test_udp_without_callback_keeps_receiving,
        test_udp_open_an_fd,
}

c_tests! {
    test_unix:
        test_unix_arguments,
        test_unix_listen_and_connect,
        test_unix_stale_socket_file,
        test_pass_fds,
        test_pass_fds_behind_a_queue,
        test_pass_fds_batch,
}

c_tests! {
    test_jobs:
        test_jobs_bad_arguments,
        test_work_runs_on_the_pool_and_done_on_the_loop,
        test_work_cancel,
        test_free_waits_for_running_work_and_calls_no_done,
        test_getaddrinfo_numeric_names_errors_and_cancel,
        test_connect_host_numeric_and_by_name,
        test_connect_host_refused_and_unresolvable,
        test_spawn_pipes_are_byte_exact,
        test_spawn_exit_codes_signals_env_cwd,
        test_kill_and_free_with_children_running,
        test_spawn_leaves_other_children_alone,
        test_spawn_stderr_to_stdout_and_close_fds,
        test_a_fork_child_freeing_the_loop_leaves_the_parents_work_and_children,
}
