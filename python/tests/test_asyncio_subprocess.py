"""asyncio's subprocess_exec and subprocess_shell on evloop's loops (children
of evl_spawn, evloop/_subprocess.py), each scenario run on
asyncio.SelectorEventLoop and on every evloop path, the outcomes asserted
equal: exit codes and signals, byte-exact pipes from 1 byte to 4 MiB
(stdout, stderr, both on one pipe), stdin's end, communicate(), the
exceptions of a program that cannot start, get_extra_info('subprocess'),
no child left unreaped and no fd left open; a seeded random mix of
children at once (EVLOOP_MODEL_SEED=N replays one); and the calls that
go to asyncio's own code (preexec_fn, a replaced Popen...).
"""

import asyncio
import functools
import gc
import os
import random
import signal
import stat
import subprocess
import sys
import tempfile
import unittest
import warnings
from unittest import mock

from loops import EVLOOP_LOOPS, LOOPS, run

PATIENCE = 60  # seconds before a hung scenario fails; never reached when it works
PIPE = asyncio.subprocess.PIPE
ECHO = "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())"
SIZES = (1, 4095, 4096, 65537, 1 << 20, 4 << 20)


def children_of_this_process():
    """The pids whose parent is this process, zombies included."""
    pids = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as children:
                pids.update(int(pid) for pid in children.read().split())
        except FileNotFoundError:  # a thread that ended since the listing (asyncio's child watcher's)
            pass
    return pids


def open_fds():
    """This process's fds (less the one that listed them, closed since),
    once what is unreachable has been collected."""
    gc.collect()
    fds = []
    for fd in map(int, os.listdir("/proc/self/fd")):
        try:
            os.fstat(fd)
        except OSError:
            continue
        fds.append(fd)
    return sorted(fds)


class EachLoop(unittest.TestCase):
    def each(self, scenario, *args, loops=LOOPS):
        """`scenario`'s outcome on each loop, all asserted equal; each run
        leaves no child of this process and no fd open."""
        outcomes = {}
        for name, factory in loops:
            with self.subTest(loop=name):
                fds = open_fds()
                children = children_of_this_process()
                outcomes[name] = run(factory, scenario, *args)
                self.assertEqual(children_of_this_process() - children, set(), "a child left behind")
                self.assertEqual(open_fds(), fds, "an fd left open")
                self.assertEqual(outcomes[name], outcomes[loops[0][0]])
        return outcomes[loops[0][0]]


async def transport_kind():
    """Which code serves subprocess_exec here: evloop's or asyncio's."""
    proc = await asyncio.create_subprocess_exec("true")
    await proc.wait()
    return type(proc._transport).__module__


class CodesAndSignals(EachLoop):
    def test_exit_codes_and_signals(self):
        async def scenario():
            codes = []
            for code in (0, 1, 7, 255):
                proc = await asyncio.create_subprocess_exec(sys.executable, "-c", f"raise SystemExit({code})")
                codes.append(await asyncio.wait_for(proc.wait(), PATIENCE))
            for how in ("terminate", "kill", signal.SIGINT, signal.SIGUSR1):
                proc = await asyncio.create_subprocess_exec("sleep", "60")
                if isinstance(how, str):
                    getattr(proc, how)()
                else:
                    proc.send_signal(how)
                codes.append(await asyncio.wait_for(proc.wait(), PATIENCE))
            # Its own signal, and a signal after the end (nothing happens).
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "import os; os.abort()")
            codes.append(await asyncio.wait_for(proc.wait(), PATIENCE))
            try:
                proc.kill()
            except ProcessLookupError:
                codes.append("ProcessLookupError")
            shell = await asyncio.create_subprocess_shell("exit 3")
            codes.append(await asyncio.wait_for(shell.wait(), PATIENCE))
            return codes

        self.assertEqual(
            self.each(scenario),
            [0, 1, 7, 255, -signal.SIGTERM, -signal.SIGKILL, -signal.SIGINT, -signal.SIGUSR1,
             -signal.SIGABRT, "ProcessLookupError", 3],
        )


class Pipes(EachLoop):
    def test_byte_exact_from_one_byte_to_4_mib(self):
        async def scenario():
            seen = []
            for size in SIZES:
                payload = random.Random(size).randbytes(size) if hasattr(random.Random, "randbytes") else os.urandom(size)
                proc = await asyncio.create_subprocess_exec(sys.executable, "-c", ECHO, stdin=PIPE, stdout=PIPE)
                out, err = await asyncio.wait_for(proc.communicate(payload), PATIENCE)
                seen.append((size, out == payload, err, proc.returncode))
            return seen

        self.assertEqual(self.each(scenario), [(size, True, None, 0) for size in SIZES])

    def test_stderr_and_stdout_apart_and_together(self):
        code = "import sys; sys.stdout.write('o' * 70000); sys.stdout.flush(); sys.stderr.write('e' * 3)"

        async def scenario():
            apart = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdout=PIPE, stderr=PIPE)
            out, err = await asyncio.wait_for(apart.communicate(), PATIENCE)
            together = await asyncio.create_subprocess_exec(
                sys.executable, "-c", code, stdout=PIPE, stderr=asyncio.subprocess.STDOUT
            )
            both, none = await asyncio.wait_for(together.communicate(), PATIENCE)
            quiet = await asyncio.create_subprocess_exec(
                sys.executable, "-c", code, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
            )
            return len(out), err, both == b"o" * 70000 + b"eee", none, await quiet.wait()

        self.assertEqual(self.each(scenario), (70000, b"eee", True, None, 0))

    def test_stdin_closed_is_the_child_s_end_of_file(self):
        async def scenario():
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", "import sys; print(len(sys.stdin.buffer.read()))", stdin=PIPE, stdout=PIPE
            )
            proc.stdin.write(b"x" * 100000)
            await proc.stdin.drain()
            proc.stdin.close()
            line = await asyncio.wait_for(proc.stdout.readline(), PATIENCE)
            eof = await proc.stdout.read()
            return line, eof, await proc.wait(), proc.stdin.is_closing()

        self.assertEqual(self.each(scenario), (b"100000\n", b"", 0, True))

    def test_a_child_that_does_not_read_stdin(self):
        async def scenario():
            proc = await asyncio.create_subprocess_exec("true", stdin=PIPE, stdout=PIPE)
            out, _ = await asyncio.wait_for(proc.communicate(b"y" * (1 << 20)), PATIENCE)
            return out, proc.returncode

        self.assertEqual(self.each(scenario), (b"", 0))

    def test_stdio_to_a_file_given(self):
        async def scenario():
            with tempfile.TemporaryFile() as file:
                proc = await asyncio.create_subprocess_exec("echo", "into a file", stdout=file)
                await asyncio.wait_for(proc.wait(), PATIENCE)
                file.seek(0)
                return file.read()

        self.assertEqual(self.each(scenario), b"into a file\n")


class Environment(EachLoop):
    def test_env_cwd_session_and_shell(self):
        async def scenario():
            with tempfile.TemporaryDirectory() as directory:
                proc = await asyncio.create_subprocess_shell(
                    'echo "$EVLOOP_TEST $(pwd)"', stdout=PIPE, env={"EVLOOP_TEST": "yes", "PATH": os.defpath},
                    cwd=directory,
                )
                said, _ = await asyncio.wait_for(proc.communicate(), PATIENCE)
                where = said == f"yes {os.path.realpath(directory)}\n".encode()
            session = await asyncio.create_subprocess_exec(
                sys.executable, "-c", "import os; print(os.getsid(0) == os.getpid())", stdout=PIPE,
                start_new_session=True,
            )
            own, _ = await asyncio.wait_for(session.communicate(), PATIENCE)
            return where, own

        self.assertEqual(self.each(scenario), (True, b"True\n"))


class Failures(EachLoop):
    def test_a_program_that_cannot_start_raises_what_popen_raises(self):
        async def scenario(directory):
            script = os.path.join(directory, "not-executable")
            with open(script, "w") as file:
                file.write("#!/bin/sh\n")
            os.chmod(script, stat.S_IRUSR | stat.S_IWUSR)
            raised = []
            for args, kwargs in (
                (["/nonexistent/program"], {}),
                (["evloop-no-such-program-in-path"], {}),
                ([script], {}),
                ([directory], {}),
                (["true"], {"cwd": os.path.join(directory, "missing")}),
                (["true"], {"executable": "/nonexistent/exe"}),
                (["true"], {"env": {"PATH": directory}}),  # Popen searches the child's PATH
            ):
                try:
                    await asyncio.create_subprocess_exec(*args, **kwargs)
                except OSError as exc:
                    raised.append((type(exc).__name__, exc.errno, exc.strerror, exc.filename))
            return raised

        with tempfile.TemporaryDirectory() as directory:
            raised = self.each(scenario, directory)
        self.assertEqual([name for name, *_ in raised], [
            "FileNotFoundError", "FileNotFoundError", "PermissionError", "PermissionError",
            "FileNotFoundError", "FileNotFoundError", "FileNotFoundError",
        ])


class PopenObject(EachLoop):
    def test_get_extra_info_subprocess(self):
        async def scenario():
            proc = await asyncio.create_subprocess_exec("sleep", "60")
            popen = proc._transport.get_extra_info("subprocess")
            running = (popen.pid == proc.pid, popen.args, popen.poll(), popen.returncode, popen.stdin, popen.stdout)
            popen.kill()
            code = popen.wait()  # blocks; the transport hears of it after
            heard = proc.returncode
            return running, code, popen.poll(), heard, await asyncio.wait_for(proc.wait(), PATIENCE)

        # Not compared with asyncio's loop: there Popen.wait() races the
        # child watcher for the status (the loser sees 0 or 255).
        self.assertEqual(
            self.each(scenario, loops=EVLOOP_LOOPS),
            ((True, ("sleep", "60"), None, None, None, None), -9, -9, None, -9),
        )

    def test_close_kills_a_running_child_and_reaps_it(self):
        async def scenario():
            transport, _ = await asyncio.get_running_loop().subprocess_exec(asyncio.SubprocessProtocol, "sleep", "60")
            transport.close()
            await asyncio.wait_for(transport._wait(), PATIENCE)
            return transport.get_returncode()

        self.assertEqual(self.each(scenario), -signal.SIGKILL)


class LoopClosed(unittest.TestCase):
    def test_closing_the_loop_kills_and_reaps_its_running_children(self):
        """Where evloop differs from asyncio (which leaves them running,
        unwatched): nothing is left, not even a zombie."""

        async def scenario():
            proc = await asyncio.create_subprocess_exec("sleep", "60", stdout=PIPE)
            return proc.pid

        for name, factory in EVLOOP_LOOPS:
            with self.subTest(loop=name):
                loop = factory()
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", ResourceWarning)  # the unclosed transport's
                        pid = loop.run_until_complete(scenario())
                finally:
                    loop.close()
                self.assertNotIn(pid, children_of_this_process())
                gc.collect()


class RandomMix(EachLoop):
    def test_a_seeded_random_mix_of_children_at_once(self):
        seed = int(os.environ.get("EVLOOP_MODEL_SEED", random.randrange(1 << 30)))
        rng = random.Random(seed)
        plan = [
            (rng.choice(("echo", "code", "signal", "stderr", "shell")), rng.choice(SIZES[:5]), rng.randrange(256))
            for _ in range(12)
        ]

        async def child(kind, size, number):
            if kind == "echo":
                payload = bytes(random.Random(number).getrandbits(8) for _ in range(min(size, 4096))) * (size // 4096 + 1)
                proc = await asyncio.create_subprocess_exec(sys.executable, "-c", ECHO, stdin=PIPE, stdout=PIPE)
                out, _ = await proc.communicate(payload)
                return kind, out == payload, proc.returncode
            if kind == "code":
                proc = await asyncio.create_subprocess_exec(sys.executable, "-c", f"raise SystemExit({number})")
                return kind, await proc.wait()
            if kind == "signal":
                proc = await asyncio.create_subprocess_exec("sleep", "60", stdout=PIPE)
                proc.send_signal((signal.SIGTERM, signal.SIGKILL, signal.SIGUSR2)[number % 3])
                return kind, await proc.stdout.read(), await proc.wait()
            if kind == "stderr":
                code = f"import sys; sys.stderr.buffer.write(b'e' * {size})"
                proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stderr=PIPE)
                _, err = await proc.communicate()
                return kind, len(err), proc.returncode
            proc = await asyncio.create_subprocess_shell(f"head -c {size} /dev/zero; exit {number}", stdout=PIPE)
            out, _ = await proc.communicate()
            return kind, len(out), proc.returncode

        async def scenario():
            return await asyncio.wait_for(asyncio.gather(*(child(*step) for step in plan)), PATIENCE)

        with self.subTest(seed=seed):
            self.each(scenario)


class WhatGoesWhere(unittest.TestCase):
    """evloop's loops spawn through the library where it does what Popen
    would, and leave the rest to asyncio's code (which still works)."""

    def test_evl_spawn_serves_the_plain_calls(self):
        for name, factory in EVLOOP_LOOPS:
            with self.subTest(loop=name):
                self.assertEqual(run(factory, transport_kind), "evloop._subprocess")

    def test_the_rest_is_asyncio_s_and_works(self):
        async def scenario(**kwargs):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", "import os; print(os.umask(0))", stdout=PIPE, **kwargs
            )
            out, _ = await asyncio.wait_for(proc.communicate(), PATIENCE)
            return type(proc._transport).__module__, out

        for name, factory in EVLOOP_LOOPS:
            with self.subTest(loop=name):
                module, out = run(factory, functools.partial(scenario, preexec_fn=lambda: None))
                self.assertEqual(module, "asyncio.unix_events")
                if sys.version_info >= (3, 9):
                    module, out = run(factory, functools.partial(scenario, umask=0o27))
                    self.assertEqual((module, out), ("asyncio.unix_events", b"23\n"))
                with mock.patch("subprocess.Popen", wraps=subprocess.Popen) as popen:
                    module, _ = run(factory, scenario)
                self.assertEqual(module, "asyncio.unix_events")
                self.assertTrue(popen.called)
                previous = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
                try:
                    module, _ = run(factory, scenario)
                finally:
                    signal.signal(signal.SIGUSR2, previous)
                self.assertEqual(module, "asyncio.unix_events")  # the child would ignore it too


class Resolution(unittest.TestCase):
    def test_getaddrinfo_needs_no_executor_on_any_path(self):
        async def scenario():
            loop = asyncio.get_running_loop()
            result = await loop.getaddrinfo("127.0.0.1", 80)
            return result, loop._default_executor

        import socket

        for name, factory in EVLOOP_LOOPS:
            with self.subTest(loop=name):
                result, executor = run(factory, scenario)
                self.assertEqual(result, socket.getaddrinfo("127.0.0.1", 80))
                self.assertIsNone(executor)


if __name__ == "__main__":
    unittest.main()
