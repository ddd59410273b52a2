"""Child processes that never outlive the process that started them (Envoy, `agentok run --replicas` replicas).

Linux's PR_SET_PDEATHSIG sends the child a signal when its parent goes, however it goes (SIGKILL included),
so an orphaned Envoy can never hold the ports and answer the next `make run` in its place. The signal fires
when the *thread* that forked the child exits, not the process: a child forked from a worker thread
(`asyncio.to_thread`) would be killed when that thread is retired. So children are forked from the main
thread (asyncio's subprocesses, on the event loop of `asyncio.run`) or from `spawn`'s own thread, which
lives as long as the process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# The child's first few milliseconds: a bare interpreter sets the death signal, checks the parent is still
# there (it may have died before prctl), and becomes the real program (exec keeps the death signal).
# Not a preexec_fn: that makes Python fork() instead of vfork(), and a fork() runs gRPC's fork handlers in
# this process, which pause or skip its threads while the server is serving ("skipping fork() handlers").
_TRAMPOLINE = """\
import ctypes, os, sys
parent, sig = int(sys.argv[1]), int(sys.argv[2])
if ctypes.CDLL(None, use_errno=True).prctl(1, sig, 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
    sys.exit("prctl(PR_SET_PDEATHSIG) failed: " + os.strerror(ctypes.get_errno()))
if os.getppid() != parent:
    os.kill(os.getpid(), sig)
os.execv(sys.argv[3], sys.argv[3:])
"""

# One thread that forks, for the life of the process (see the module's docstring). Its pool never retires it.
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentok-spawner")


def dying_with_parent(argv: Sequence[str], sig: signal.Signals = signal.SIGTERM) -> list[str]:
    """`argv`, run so that the child gets `sig` when the thread that forks it exits. SIGTERM lets Envoy and
    a replica exit cleanly (a replica then releases its run leases at once). argv[0] must be a path."""
    return [sys.executable, "-I", "-S", "-c", _TRAMPOLINE, str(os.getpid()), str(int(sig)), *argv]


def spawn(argv: Sequence[str], **popen_options: Any) -> subprocess.Popen[bytes]:
    """subprocess.Popen(argv, ...) dying with this process, forked from the spawner thread (whatever thread
    calls this)."""
    command = dying_with_parent(argv)
    return _spawner.submit(lambda: subprocess.Popen(command, **popen_options)).result()


async def exited(pid: int) -> None:
    """Returns once process `pid` (a child of this process) has exited; it is left for its owner to reap.
    A pidfd says so without a thread or a poll loop."""
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:  # already reaped
        return
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def describe_exit(code: int | None) -> str:
    """`killed by SIGKILL`, `exit code 1`."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
