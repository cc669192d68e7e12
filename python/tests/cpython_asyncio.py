"""CPython's own asyncio tests (the ``test.test_asyncio`` package of the
Python running this: CPython's, or PyPy's copy), pointed at one loop, as a
third-party loop is held to them: ``--loop evloop`` (evloop's asyncio loop;
``--impl ctypes`` or ``--impl native`` chooses its implementation, as
EVLOOP_IMPL does, default: the one evloop chooses) or ``--loop asyncio``
(asyncio.SelectorEventLoop on its default selector, the reference).

    python3 python/tests/cpython_asyncio.py --loop evloop --impl ctypes --out results.txt

Each test's outcome is written to --out as it ends ("pass", "fail",
"error", "skip", "xfail" and the test's id, one a line), so that a run
stopped by the watchdog (a test that hangs) still says what it did. The
Rust test tests/asyncio_loop.rs runs both loops and compares: every test
that passes on asyncio's loop must pass on evloop's, but for the
exclusions listed there with their reasons.

The tests run in a temporary directory of their own, removed at the end:
some write files into the current directory (test_sendfile's
``@test_<pid>_tmp...``).

Not discovered by unittest (the name does not start with "test"): it is run
as a program.
"""

import argparse
import asyncio
import faulthandler
import os
import shutil
import signal
import sys
import tempfile
import unittest

# The suites, by CPython module: the classes that take a loop, rebuilt here
# with the loop under test. A class taking it from the event loop policy
# (asyncio.new_event_loop()) gets the policy set before each test.
MODULES = (
    "test_events",
    "test_sock_lowlevel",
    "test_sendfile",
    "test_streams",
    "test_server",
    "test_buffered_proto",
    "test_sslproto",
    "test_ssl",
    "test_subprocess",
)

# Seconds a single test may take before it fails with TimeoutError (SIGALRM),
# and before the whole run is stopped (a hang the alarm could not break).
TEST_ALARM = int(os.environ.get("CPYTHON_ASYNCIO_ALARM", 60))
TEST_WATCHDOG = 90


def loop_class(name, impl):
    """The event loop class under test: asyncio's, or evloop's (`impl`: an
    implementation of evloop/_implementation.py, None: evloop's choice)."""
    if name == "asyncio":
        return asyncio.SelectorEventLoop
    if impl is not None:
        # What the tests make through evloop's names gets it too.
        os.environ["EVLOOP_IMPL"] = impl
    import evloop

    return evloop.EventLoop


def build_suite(loop_name, impl=None):
    """The test classes, each a subclass of CPython's with the loop set."""
    import importlib

    new_loop = loop_class(loop_name, impl)

    class new_policy(asyncio.DefaultEventLoopPolicy):
        _loop_factory = new_loop

    def with_loop(base, name):
        def create_event_loop(self):
            return new_loop()

        def setUp(self):
            asyncio.set_event_loop_policy(new_policy())
            base.setUp(self)

        namespace = {"create_event_loop": create_event_loop, "new_loop": create_event_loop, "setUp": setUp}
        return type(name, (base,), namespace)

    classes = []
    for module_name in MODULES:
        try:
            module = importlib.import_module("test.test_asyncio." + module_name)
        except ImportError:  # test_ssl is 3.11+: the outcome lists say what ran
            print(f"{module_name}: not in this Python's test package", file=sys.stderr)
            continue
        test_utils = importlib.import_module("test.test_asyncio.utils")
        if module_name == "test_events":
            bases = (module.UnixEventLoopTestsMixin, module.SubprocessTestsMixin, test_utils.TestCase)
            classes.append(with_loop(type("EventLoopTests", bases, {}), "test_events.EventLoopTests"))
        elif module_name in ("test_sock_lowlevel", "test_sendfile"):
            mixin = module.BaseSockTestsMixin if module_name == "test_sock_lowlevel" else module.SendfileTestsBase
            base = type("EventLoopTests", (mixin, test_utils.TestCase), {})
            classes.append(with_loop(base, module_name + ".EventLoopTests"))
        else:
            # Classes of the selector loop (or of the policy's loop), and not
            # the Proactor's (Windows) nor the skipped MultiLoop watcher's.
            for attr, value in sorted(vars(module).items()):
                if (
                    isinstance(value, type)
                    and issubclass(value, unittest.TestCase)
                    and value.__module__ == module.__name__
                    and "Proactor" not in attr
                    and "MultiLoop" not in attr
                    and not getattr(value, "__unittest_skip__", False)
                ):
                    classes.append(with_loop(value, f"{module_name}.{attr}"))
    loader = unittest.TestLoader()
    return unittest.TestSuite(loader.loadTestsFromTestCase(cls) for cls in classes)


def _on_alarm(signo, frame):
    raise TimeoutError(f"the test took more than {TEST_ALARM} s")


class RecordingResult(unittest.TextTestResult):
    """Writes each outcome as it comes, and re-arms the watchdog."""

    def __init__(self, out, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._out = out

    def _record(self, outcome, test):
        self._out.write(f"{outcome} {test.id()}\n")
        self._out.flush()

    def startTest(self, test):
        faulthandler.dump_traceback_later(TEST_WATCHDOG, exit=True)
        # Again each time: tests of signal handling leave SIGALRM's default.
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.alarm(TEST_ALARM)
        super().startTest(test)

    def stopTest(self, test):
        signal.alarm(0)
        super().stopTest(test)

    def addSuccess(self, test):
        super().addSuccess(test)
        self._record("pass", test)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record("fail", test)

    def addError(self, test, err):
        super().addError(test, err)
        self._record("error", test)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._record("skip", test)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._record("xfail", test)

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._record("fail", test)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=("evloop", "asyncio"), required=True)
    parser.add_argument("--impl", help="evloop's implementation (ctypes, native), as EVLOOP_IMPL chooses it")
    parser.add_argument("--out", required=True, help="where the outcomes go, one a line")
    parser.add_argument("-k", dest="patterns", action="append", help="only tests whose id contains this")
    parser.add_argument("-v", dest="verbosity", action="store_const", const=2, default=1)
    args = parser.parse_args()
    out_path = os.path.abspath(args.out)
    suite = build_suite(args.loop, args.impl)
    if args.patterns:
        suite = unittest.TestSuite(
            t for s in suite for t in s if any(p in t.id() for p in args.patterns)
        )
    scratch = tempfile.mkdtemp(prefix="cpython_asyncio-")
    os.chdir(scratch)
    with open(out_path, "w") as out:
        runner = unittest.TextTestRunner(
            verbosity=args.verbosity,
            resultclass=lambda *a, **k: RecordingResult(out, *a, **k),
        )
        result = runner.run(suite)
    faulthandler.cancel_dump_traceback_later()
    os.chdir("/")
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"{args.loop}: {result.testsRun} run, {len(result.failures)} failures, {len(result.errors)} errors, "
          f"{len(result.skipped)} skipped", file=sys.stderr)
    # The outcomes are the result; the exit status says only that the run ended.
    os._exit(0)


if __name__ == "__main__":
    main()
