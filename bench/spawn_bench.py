#!/usr/bin/env python3
"""Spawning /bin/true 1,000 times, one after the other: wall time per spawn
of evloop's evl_spawn against libuv's uv_spawn and Python's subprocess, as
ratios of interleaved runs (median of several rounds).

    cargo build --release && bench/spawn_bench.py [--rounds 7] [-n 1000] [--python PY]

Each round runs the three programs of bench/spawn/ once each, in turn, in
both modes: stdio inherited, and stdout a pipe read to end-of-file (what
asyncio's subprocess with stdout=PIPE does). Every program times its own N
spawns (process start-up is not counted) and awaits each child's exit
before the next spawn. The ratio of a round is evloop's time over the
other's in that round; the table gives the median per-spawn time and the
median ratio. libuv comes from pkg-config (apt-get install libuv1-dev: the
benchmark needs it, the tests do not); Python is pyenv's 3.11 unless
--python says otherwise.
"""
import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "spawn-bench"


def build():
    OUT.mkdir(parents=True, exist_ok=True)
    release = ROOT / "target" / "release"
    if not (release / "libevloop.so").exists():
        sys.exit("build the library first: cargo build --release")
    flags = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2"]
    evl = OUT / "evl_spawn_true"
    subprocess.run(
        ["cc", *flags, f"-I{ROOT / 'include'}", str(ROOT / "bench/spawn/evl_spawn_true.c"),
         f"-L{release}", "-levloop", f"-Wl,-rpath,{release}", "-o", str(evl)],
        check=True,
    )
    uv_flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "libuv"], capture_output=True, text=True
    )
    if uv_flags.returncode != 0:
        sys.exit("libuv not found by pkg-config: apt-get install libuv1-dev")
    uv = OUT / "uv_spawn_true"
    subprocess.run(
        ["cc", *flags, str(ROOT / "bench/spawn/uv_spawn_true.c"), *uv_flags.stdout.split(),
         "-o", str(uv)],
        check=True,
    )
    return evl, uv


def seconds(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("-n", type=int, default=1000)
    default_python = pathlib.Path.home() / ".pyenv/versions/3.11.7/bin/python3"
    parser.add_argument("--python", default=str(default_python)
                        if default_python.exists() else shutil.which("python3"))
    args = parser.parse_args()
    evl, uv = build()
    script = str(ROOT / "bench/spawn/subprocess_true.py")
    version = subprocess.run([args.python, "-c", "import sys; print(sys.version.split()[0])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    programs = {
        "evloop evl_spawn": [str(evl)],
        "libuv uv_spawn": [str(uv)],
        f"Python {version} subprocess": [args.python, script],
    }
    print(f"{os.cpu_count()} CPUs, {args.rounds} rounds of {args.n} spawns of /bin/true each")
    for mode in ([], ["--pipe"]):
        times = {name: [] for name in programs}
        for _ in range(args.rounds):
            for name, cmd in programs.items():
                times[name].append(seconds([*cmd, "-n", str(args.n), *mode]))
        label = "stdout a pipe" if mode else "stdio inherited"
        print(f"\n{label}:")
        print("| | µs per spawn (median) | evloop's time / this one's (median of rounds) |")
        print("|---|---|---|")
        ours = times["evloop evl_spawn"]
        for name, t in times.items():
            ratios = [a / b for a, b in zip(ours, t)]
            per_spawn = statistics.median(t) / args.n * 1e6
            print(f"| {name} | {per_spawn:,.0f} | {statistics.median(ratios):.2f} |")


if __name__ == "__main__":
    main()
