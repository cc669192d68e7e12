"""The ctypes layer: every function of the header declared, loading rules,
errors turned into the right exceptions."""

import ctypes
import errno
import os
import re
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import evloop  # noqa: E402
from evloop import _lib  # noqa: E402

# subprocess.run kills a program that runs longer than this (a hang fails, never
# blocks the suite); generous for a loaded machine.
PATIENCE = 120

HEADER = Path(__file__).resolve().parents[2] / "include" / "evloop.h"


def header_functions():
    """name -> number of parameters, for every function the header declares."""
    text = HEADER.read_text()
    found = {}
    for match in re.finditer(r"^[a-z][\w \*]*?\b(evl_\w+)\(([^)]*)\);", text, re.M):
        params = match.group(2).strip()
        found[match.group(1)] = 0 if params in ("", "void") else params.count(",") + 1
    return found


class Declarations(unittest.TestCase):
    def test_every_header_function_is_declared_with_its_arity(self):
        functions = header_functions()
        self.assertGreater(len(functions), 40)
        for name, arity in functions.items():
            with self.subTest(name):
                self.assertIn(name, _lib.DECLARATIONS, f"{name} is in the header but not declared in _lib.py")
                self.assertEqual(len(_lib.DECLARATIONS[name][1]), arity)
                self.assertIsNotNone(getattr(_lib.lib, name).argtypes)
        self.assertEqual(set(_lib.DECLARATIONS) - set(functions), set(), "declared but not in the header")

    def test_constants_match_the_header(self):
        text = HEADER.read_text()
        # Values as cbindgen writes them, negative ones in parentheses, unsigned ones with "u".
        found = re.findall(r"^#define (EVL_\w+) \(?(-?\d+)u?\)?$", text, re.M)
        self.assertIn(("EVL_EPANIC", "-1000"), found)
        self.assertIn(("EVL_EDGE", str(1 << 31)), found)
        for name, value in found:
            if name.startswith("EVL_VERSION") or name == "EVL_ABI_VERSION":
                continue
            with self.subTest(name):
                self.assertEqual(getattr(_lib, name), int(value))
        self.assertEqual(_lib.ABI_VERSION, int(re.search(r"#define EVL_ABI_VERSION (\d+)", text).group(1)))

    def test_structs_have_the_headers_layout(self):
        """Each ctypes Structure has the size and field offsets the C
        compiler gives the header's struct (a C program prints them)."""
        structs = [_lib.evl_event, _lib.evl_stream_event, _lib.evl_stream_op, _lib.evl_stream_exchange_args, _lib.evl_udp_datagram]
        lines = ['#include <stddef.h>', '#include <stdio.h>', '#include "evloop.h"', "int main(void) {"]
        for struct in structs:
            name = struct.__name__
            lines.append(f'printf("{name} %zu\\n", sizeof({name}));')
            for field, _ in struct._fields_:
                lines.append(f'printf("{name}.{field} %zu\\n", offsetof({name}, {field}));')
        lines.append("return 0; }")
        with tempfile.TemporaryDirectory() as tmp:
            source, program = Path(tmp) / "layout.c", Path(tmp) / "layout"
            source.write_text("\n".join(lines))
            subprocess.run(["gcc", "-std=c11", "-I", str(HEADER.parent), "-o", str(program), str(source)], check=True,
                           timeout=PATIENCE)
            printed = subprocess.run([str(program)], check=True, capture_output=True, text=True, timeout=PATIENCE).stdout
        expected = {}
        for struct in structs:
            expected[struct.__name__] = ctypes.sizeof(struct)
            for field, _ in struct._fields_:
                expected[f"{struct.__name__}.{field}"] = getattr(struct, field).offset
        self.assertEqual({k: int(v) for k, v in (line.split() for line in printed.splitlines())}, expected)

    def test_version(self):
        self.assertRegex(evloop.version(), r"^\d+\.\d+\.\d+$")
        self.assertEqual(_lib.lib.evl_abi_version(), evloop.ABI_VERSION)


class Errors(unittest.TestCase):
    def test_errno_becomes_the_matching_exception(self):
        cases = {
            errno.EEXIST: FileExistsError,
            errno.ENOENT: FileNotFoundError,
            errno.EPERM: PermissionError,
            errno.EINTR: InterruptedError,
            errno.ECONNREFUSED: ConnectionRefusedError,
            errno.EBADF: OSError,
        }
        for code, kind in cases.items():
            exc = _lib.error(-code, "evl_x")
            self.assertIs(type(exc), kind)
            self.assertEqual(exc.errno, code)
            self.assertIn("evl_x", str(exc))
        self.assertIsInstance(_lib.error(-errno.EINVAL), ValueError)
        self.assertIsInstance(_lib.error(_lib.EVL_EPANIC), evloop.EvloopPanic)
        self.assertEqual(_lib.check(5), 5)
        with self.assertRaises(FileExistsError):
            _lib.check(-errno.EEXIST)

    def test_strerror(self):
        self.assertIn("exists", evloop.strerror(-errno.EEXIST))
        self.assertTrue(evloop.strerror(-99999))

    def test_null_loop_is_an_error_not_a_crash(self):
        self.assertEqual(_lib.lib.evl_run(None), -errno.EINVAL)
        self.assertEqual(_lib.lib.evl_stream_write_batch(None, None, None, 0, None), -errno.EINVAL)


class Loading(unittest.TestCase):
    def run_import(self, env):
        code = "import evloop; print(evloop.version())"
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              cwd=str(Path(__file__).resolve().parents[1]), timeout=PATIENCE)

    def test_evloop_library_is_used(self):
        env = dict(os.environ, EVLOOP_LIBRARY=_lib.lib._name)
        self.assertEqual(self.run_import(env).returncode, 0)

    def test_a_missing_library_gives_an_import_error_with_the_fix(self):
        env = dict(os.environ, EVLOOP_LIBRARY="/nonexistent/libevloop.so")
        result = self.run_import(env)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("ImportError", result.stderr)
        self.assertIn("/nonexistent/libevloop.so", result.stderr)
        self.assertIn("cargo build --release", result.stderr)

    def test_a_library_that_is_not_evloop_is_refused(self):
        libc = subprocess.run(["sh", "-c", "ldd /bin/sh | grep -o '/[^ ]*libc.so[^ ]*'"],
                              capture_output=True, text=True, timeout=PATIENCE).stdout.strip()
        if not libc:
            self.fail("libc path not found via ldd")
        result = self.run_import(dict(os.environ, EVLOOP_LIBRARY=libc))
        self.assertIn("not libevloop", result.stderr)

    def test_another_abi_version_is_refused_with_the_fix(self):
        with tempfile.TemporaryDirectory() as tmp:
            source, library = Path(tmp) / "other.c", Path(tmp) / "libevloop.so"
            source.write_text(f"unsigned evl_abi_version(void) {{ return {evloop.ABI_VERSION + 1}; }}\n")
            subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True, timeout=PATIENCE)
            result = self.run_import(dict(os.environ, EVLOOP_LIBRARY=str(library)))
        self.assertNotEqual(result.returncode, 0)
        wanted = f"has ABI version {evloop.ABI_VERSION + 1}, this package needs {evloop.ABI_VERSION}"
        self.assertIn(wanted, result.stderr)
        self.assertIn("cargo build --release", result.stderr)


if __name__ == "__main__":
    unittest.main()
