"""python -m evloop: its report, and a failing check turning into exit status 1."""

import contextlib
import io
import os
import subprocess
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import evloop  # noqa: E402
from evloop import __main__ as main_module, _lib  # noqa: E402


def run_main():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main_module.main()
    return status, out.getvalue()


class SelfCheck(unittest.TestCase):
    def test_reports_version_library_abi_and_passes(self):
        status, out = run_main()
        self.assertEqual(status, 0, out)
        lines = out.splitlines()
        self.assertEqual(lines[0], f"evloop {evloop.__version__}")
        library = lines[1].split(": ", 1)[1]
        self.assertTrue(os.path.samefile(library, os.environ.get("EVLOOP_LIBRARY", library)), out)
        self.assertIn("libevloop", os.path.basename(library))
        self.assertEqual(lines[2], f"ABI version: {evloop.ABI_VERSION} (the package needs {evloop.ABI_VERSION})")
        for check in ("ABI", "timer", "socketpair echo"):
            self.assertIn(f"ok   {check}:", out)
        self.assertEqual(lines[-1], "self-check passed")

    def test_a_failed_check_exits_1(self):
        real = _lib.lib.evl_abi_version
        _lib.lib.evl_abi_version = lambda: evloop.ABI_VERSION + 1
        try:
            status, out = run_main()
        finally:
            _lib.lib.evl_abi_version = real
        self.assertEqual(status, 1, out)
        self.assertIn("FAIL ABI:", out)
        self.assertEqual(out.splitlines()[-1], "self-check FAILED: ABI")

    def test_python_m_evloop_runs_and_exits_0(self):
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        done = subprocess.run([sys.executable, "-m", "evloop"], env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn("self-check passed", done.stdout)


if __name__ == "__main__":
    unittest.main()
