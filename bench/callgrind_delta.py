#!/usr/bin/env python3
"""Instructions per operation, by difference: run a command under callgrind at
two sizes and divide the difference in user-space instructions by the
difference in operations, so start-up and tear-down cancel out.

    bench/callgrind_delta.py OPS1 OPS2 -- CMD... {}

`{}` in CMD is replaced by the size. Example (bench_pipes built against the
library of `cargo build --profile profiling`, the release code with symbols,
as c-examples/README.md shows):
    bench/callgrind_delta.py 10000 20000 -- target/bench_pipes -n 1000 -a 100 -r 1 -w {}
"""
import os
import subprocess
import sys
import tempfile


def callgrind_total(path):
    """The instruction total of a callgrind output file."""
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError("no totals in callgrind output")


def callgrind_calls(path, functions):
    """How many times the named functions were entered from outside the set
    (a wrapper that calls another member counts once), from the call lines of
    a callgrind output file. Function names are compressed there: the first
    `fn=(7) name` or `cfn=(7) name` defines (7), later lines give `(7)` only."""
    names = {}
    target = None
    caller = None
    count = 0
    with open(path) as f:
        for line in f:
            if line.startswith(("fn=", "cfn=")):
                spec = line.split("=", 1)[1].strip()
                if spec.startswith("("):
                    key, _, name = spec.partition(")")
                    name = name.strip() or names.get(key, "")
                    names[key] = name
                else:
                    name = spec
                if line.startswith("fn="):
                    caller = name
                else:
                    target = name
            elif line.startswith("calls="):
                if target in functions and caller not in functions:
                    count += int(line[len("calls="):].split()[0])
    return count


def instructions(cmd):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out] + cmd,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return callgrind_total(out)


def main(argv):
    if len(argv) < 5 or argv[3] != "--":
        sys.exit(__doc__)
    n1, n2 = int(argv[1]), int(argv[2])
    cmd = argv[4:]
    i1 = instructions([a.replace("{}", str(n1)) for a in cmd])
    i2 = instructions([a.replace("{}", str(n2)) for a in cmd])
    print(f"{i1} instructions at {n1}, {i2} at {n2}: {(i2 - i1) / (n2 - n1):.1f} per operation")


if __name__ == "__main__":
    main(sys.argv)
