//! Every program in c-examples/ compiles with -std=c11 -Wall -Wextra -Werror
//! and runs: the demo (also under memcheck) and short benchmark runs.

mod common;
use common::*;
use std::process::Command;

#[test]
fn demo_pings_five_times_and_ends_by_itself() {
    let exe = build_example("demo");
    let output = run(&mut Command::new(&exe));
    assert!(output.status.success(), "{}", show(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    for i in 1..=5 {
        assert!(
            stdout.contains(&format!("answerer got \"ping {i}\"")),
            "{stdout}"
        );
    }
    assert!(stdout.ends_with("loop ended: Success\n"), "{stdout}");

    let checked = run(&mut valgrind_command(&exe));
    assert!(checked.status.success(), "{}", show(&checked));
    assert_memcheck_clean(&checked);
}

fn numbers(stdout: &[u8]) -> Vec<Vec<u64>> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|w| w.parse().expect("a number"))
                .collect()
        })
        .collect()
}

#[test]
fn bench_pipes_relays_every_byte_in_both_modes() {
    let exe = build_example("bench_pipes");
    for mode in [None, Some("--raw")] {
        let mut cmd = Command::new(&exe);
        cmd.args(["-n", "200", "-a", "20", "-w", "5000", "-r", "3"]);
        cmd.args(mode);
        let output = run(&mut cmd);
        assert!(output.status.success(), "{}", show(&output));
        let runs = numbers(&output.stdout);
        assert_eq!(runs.len(), 3, "{}", show(&output));
        assert!(
            runs.iter().all(|r| r.len() == 2 && r[0] >= r[1]),
            "{}",
            show(&output)
        );
    }
    let bad = run(Command::new(&exe).args(["-n", "5", "-a", "10"]));
    assert_eq!(
        bad.status.code(),
        Some(2),
        "more active than pipes is refused"
    );
}

#[test]
fn bench_fork_reports_the_fork_and_the_childs_evl_loop_fork() {
    let exe = build_example("bench_fork");
    let output = run(Command::new(&exe).args(["--regs", "50", "--forks", "5"]));
    assert!(output.status.success(), "{}", show(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("50 registrations: fork()") && stdout.contains("evl_loop_fork"),
        "{stdout}"
    );
    let output = run(Command::new(&exe).args(["--register", "1000"]));
    assert!(output.status.success(), "{}", show(&output));
    let bad = run(Command::new(&exe).arg("--nonsense"));
    assert_eq!(bad.status.code(), Some(2), "{}", show(&bad));
}

#[test]
fn bench_timers_reports_both_waits() {
    let exe = build_example("bench_timers");
    let output =
        run(Command::new(&exe).args(["--rounds", "5", "--pending", "1000", "--delay-ms", "2"]));
    assert!(output.status.success(), "{}", show(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("bare") && stdout.contains("evloop"),
        "{stdout}"
    );
}
