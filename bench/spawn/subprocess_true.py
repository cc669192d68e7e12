"""The same as evl_spawn_true.c with Python's subprocess: PROGRAM N times,
one after the other (subprocess.run); --pipe captures stdout. Prints the
seconds the N runs took. Part of bench/spawn_bench.py."""
import subprocess
import sys
import time

args = sys.argv[1:]
piped = "--pipe" in args
n = int(args[args.index("-n") + 1]) if "-n" in args else 1000
rest = [a for i, a in enumerate(args) if a != "--pipe" and a != "-n" and (i == 0 or args[i - 1] != "-n")]
program = rest[0] if rest else "/bin/true"
stdout = subprocess.PIPE if piped else None
start = time.monotonic()
for _ in range(n):
    subprocess.run([program], stdout=stdout, check=True)
print(f"{time.monotonic() - start:.6f}")
